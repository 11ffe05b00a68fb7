//! The GGUF reader on arbitrary bytes: it must return an error, never panic, abort or allocate
//! what the file only claims to hold; what it accepts must describe tensors inside the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(g) = meltbench_gguf::Gguf::from_bytes(Path::new("fuzz.gguf"), data) else {
        return;
    };
    let _ = g.get("general.architecture").map(|v| v.summary());
    for t in &g.tensors {
        // Accepted tensors must be readable: their bytes lie inside the image.
        let _ = g.tensor_data(t);
        let _ = t.type_name();
    }
});
