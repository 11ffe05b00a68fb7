//! Broken model files end in a clear message and exit code 2, never a panic.

mod common;

use meltbench_engine::dtype::DType;
use meltbench_engine::gguf::{self, Gguf, TensorOut, Value};
use std::path::Path;

fn synth(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("synth.gguf");
    let st = common::engine().arg("synth").arg(&p).status().unwrap();
    assert!(st.success());
    p
}

/// Where tensor `name`'s entry in the tensor table continues after its name (at its rank).
fn table_entry(bytes: &[u8], name: &str) -> usize {
    let name = name.as_bytes();
    bytes.windows(name.len()).position(|w| w == name).unwrap() + name.len()
}

/// Runs `info` on `model` and returns stderr, asserting exit code 2 and no panic.
fn info_fails(model: &Path) -> String {
    let out = common::engine().arg("info").arg(model).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(2),
        "exit code for {}: stderr: {err}",
        model.display()
    );
    assert!(!err.contains("panicked"), "panic: {err}");
    assert!(err.starts_with("error: "), "message: {err}");
    err
}

#[test]
fn every_truncation_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(synth(dir.path())).unwrap();
    let cut = dir.path().join("cut.gguf");
    for i in 0..64 {
        let at = bytes.len() * i / 64;
        std::fs::write(&cut, &bytes[..at]).unwrap();
        let err = info_fails(&cut);
        assert!(
            err.contains("truncated") || err.contains("not a GGUF file"),
            "cut at {at} of {}: {err}",
            bytes.len()
        );
    }
}

#[test]
fn wrong_magic() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(synth(dir.path())).unwrap();
    bytes[..4].copy_from_slice(b"GGML");
    let p = dir.path().join("magic.gguf");
    std::fs::write(&p, &bytes).unwrap();
    let err = info_fails(&p);
    assert!(
        err.contains("not a GGUF file") && err.contains("GGML"),
        "{err}"
    );
}

#[test]
fn unknown_tensor_type_names_the_tensor_and_type() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(synth(dir.path())).unwrap();
    // In the tensor table: name, then rank (u32), dims (2 x u64), then the type id (u32).
    let ty = table_entry(&bytes, "blk.0.attn_q.weight") + 4 + 16;
    // 10 is q2_k, a type this engine does not run.
    bytes[ty..ty + 4].copy_from_slice(&10u32.to_le_bytes());
    let p = dir.path().join("type.gguf");
    std::fs::write(&p, &bytes).unwrap();
    let err = info_fails(&p);
    assert!(
        err.contains("blk.0.attn_q.weight") && err.contains("q2_k"),
        "{err}"
    );
    // The list of what runs comes from the type table, so it names every type that does.
    assert!(err.contains("q5_1") && err.contains("q5_k"), "{err}");
}

#[test]
fn unknown_architecture_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let p = with_metadata(dir.path(), "arch.gguf", |k, v| {
        if k == "general.architecture" {
            *v = Value::String("mamba".into());
        }
    });
    let err = info_fails(&p);
    assert!(
        err.contains("architecture 'mamba' is not supported"),
        "{err}"
    );
}

#[test]
fn missing_file_and_bad_job_are_input_errors() {
    let dir = tempfile::tempdir().unwrap();
    info_fails(&dir.path().join("nope.gguf"));
    let model = synth(dir.path());
    let job = dir.path().join("job.json");
    std::fs::write(&job, r#"{"prompt": {"tokens": 8}, "n_gen": 4, "pases": 1}"#).unwrap();
    let out = common::engine()
        .arg("bench")
        .arg(&model)
        .arg("--job")
        .arg(&job)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("job.json:1:") && err.contains("pases"),
        "{err}"
    );
}

/// Rewrites the synth model with `edit` applied to its metadata.
fn with_metadata(dir: &Path, name: &str, edit: impl Fn(&str, &mut Value)) -> std::path::PathBuf {
    let g = Gguf::open(&synth(dir)).unwrap();
    let mut meta = g.metadata.clone();
    for (k, v) in meta.iter_mut() {
        edit(k, v);
    }
    let tensors: Vec<TensorOut> = g
        .tensors
        .iter()
        .map(|t| TensorOut {
            name: t.name.clone(),
            dims: t.dims.clone(),
            dtype: DType::from_ggml(t.ggml_type).unwrap(),
            data: g.tensor_data(t).unwrap().to_vec(),
        })
        .collect();
    let p = dir.join(name);
    gguf::write(&p, &meta, &tensors).unwrap();
    p
}

#[test]
fn a_block_count_beyond_the_tensor_table_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = with_metadata(dir.path(), "layers.gguf", |k, v| {
        if k.ends_with(".block_count") {
            *v = Value::U32(4_000_000_000);
        }
    });
    let err = info_fails(&p);
    assert!(
        err.contains("block_count is 4000000000 but the file holds"),
        "{err}"
    );
}

#[test]
fn overlapping_tensors_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(synth(dir.path())).unwrap();
    // In the tensor table: name, rank (u32), then the first dimension (u64): doubling it makes
    // the tensor run into the next one's bytes, as a retyped tensor with its old offset would.
    let at = table_entry(&bytes, "blk.0.attn_q.weight") + 4;
    let d0 = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    bytes[at..at + 8].copy_from_slice(&(2 * d0).to_le_bytes());
    let p = dir.path().join("overlap.gguf");
    std::fs::write(&p, &bytes).unwrap();
    let err = info_fails(&p);
    assert!(err.contains("overlap"), "{err}");
}

#[test]
fn a_directory_or_fifo_is_not_a_model_and_nothing_waits() {
    let dir = tempfile::tempdir().unwrap();
    let err = info_fails(dir.path());
    assert!(err.contains("is a directory, not a GGUF file"), "{err}");
    let fifo = dir.path().join("fifo.gguf");
    let st = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(st.success());
    // Opening a FIFO for reading would wait for a writer; the engine must refuse it at once.
    let mut child = common::engine()
        .arg("info")
        .arg(&fifo)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > std::time::Duration::from_secs(20) {
            let _ = child.kill();
            panic!("info on a FIFO still waits after 20 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("not a regular file"), "{err}");
}

#[test]
fn an_error_says_its_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let err = info_fails(&dir.path().join("nope.gguf"));
    assert_eq!(err.matches("os error 2").count(), 1, "{err}");
}

#[test]
fn thread_counts_outside_1_to_1024_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = synth(dir.path());
    for t in ["0", "100000", "two"] {
        let out = common::engine()
            .args(["generate", "-n", "1", "-t", t])
            .arg(&model)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "-t {t}: {err}");
        assert!(!err.contains("panicked"), "-t {t}: {err}");
        assert!(err.contains("not a thread count"), "-t {t}: {err}");
    }
}
