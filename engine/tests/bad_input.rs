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
    let name = b"blk.0.attn_q.weight";
    let at = bytes.windows(name.len()).position(|w| w == name).unwrap() + name.len();
    let ty = at + 4 + 16;
    // 10 is q2_k, a type this engine does not run.
    bytes[ty..ty + 4].copy_from_slice(&10u32.to_le_bytes());
    let p = dir.path().join("type.gguf");
    std::fs::write(&p, &bytes).unwrap();
    let err = info_fails(&p);
    assert!(
        err.contains("blk.0.attn_q.weight") && err.contains("q2_k"),
        "{err}"
    );
}

#[test]
fn unknown_architecture_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let g = Gguf::open(&synth(dir.path())).unwrap();
    let mut meta = g.metadata.clone();
    for (k, v) in meta.iter_mut() {
        if k == "general.architecture" {
            *v = Value::String("mamba".into());
        }
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
    let p = dir.path().join("arch.gguf");
    gguf::write(&p, &meta, &tensors).unwrap();
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
