//! Inputs the fuzzer (`fuzz/`, target `gguf_reader`) once crashed the reader with: each is now
//! refused with a message, and stays here so it cannot come back.

use std::path::Path;

/// (file in tests/fuzz-regressions, phrase of the error it must get)
const CASES: &[(&str, &str)] = &[
    // A 4 x 2^61 f32 tensor: its byte count overflowed (a panic with overflow checks, a wrapped
    // size without them).
    (
        "size-overflow.gguf",
        "more bytes than this machine can address",
    ),
];

#[test]
fn every_input_that_once_crashed_is_refused() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions");
    for (file, phrase) in CASES {
        let path = dir.join(file);
        let bytes = std::fs::read(&path).unwrap();
        for result in [
            meltbench_gguf::Gguf::from_bytes(&path, &bytes),
            meltbench_gguf::Gguf::open(&path),
        ] {
            let e = result
                .err()
                .unwrap_or_else(|| panic!("{file} was accepted"));
            assert!(e.to_string().contains(phrase), "{file}: {e}");
        }
    }
    let listed = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(
        listed,
        CASES.len(),
        "every file in {} has a case",
        dir.display()
    );
}
