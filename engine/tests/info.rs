//! `meltbench-engine info` describes any GGUF file from its header, including ones the engine
//! cannot run, and names what is missing.

mod common;

use meltbench_engine::dtype::DType;
use meltbench_engine::gguf::{self, Gguf, RawTensorOut, Value};
use sha2::{Digest, Sha256};
use std::path::Path;

struct Info {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn info(model: &Path, extra: &[&str]) -> Info {
    let out = common::engine()
        .arg("info")
        .arg(model)
        .args(extra)
        .output()
        .unwrap();
    let r = Info {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    r
}

/// The value printed after `label` at the start of a line of the report.
fn field<'a>(report: &'a str, label: &str) -> &'a str {
    report
        .lines()
        .find_map(|l| l.strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label:?} line in:\n{report}"))
        .trim()
}

fn sha256_hex(path: &Path) -> String {
    Sha256::digest(std::fs::read(path).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The synth model's tokenizer metadata, so a hand-written file has a tokenizer that loads.
fn tokenizer_metadata(g: &Gguf) -> Vec<(String, Value)> {
    g.metadata
        .iter()
        .filter(|(k, _)| k.starts_with("tokenizer."))
        .cloned()
        .collect()
}

#[test]
fn a_synth_model_is_described_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::synth_model(dir.path(), DType::Q8_0);
    let g = Gguf::open(&model).unwrap();
    let r = info(&model, &[]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    let out = &r.stdout;
    assert_eq!(field(out, "sha256"), sha256_hex(&model));
    assert_eq!(field(out, "architecture"), "llama");
    let n_params: u64 = g.tensors.iter().map(|t| t.n_elements()).sum();
    assert!(
        field(out, "parameters").starts_with(&format!("{n_params} (")),
        "{out}"
    );
    let dim = g.get("llama.embedding_length").unwrap().as_u64().unwrap();
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["embedding_length", &dim.to_string()]),
        "{out}"
    );
    // Every type in the file, with its tensor count.
    let q8 = g.tensors.iter().filter(|t| t.ggml_type == 8).count();
    let f32s = g.tensors.iter().filter(|t| t.ggml_type == 0).count();
    assert!(out.contains(&format!("q8_0     {q8:>4} tensors")), "{out}");
    assert!(
        out.contains(&format!("f32      {f32s:>4} tensors")),
        "{out}"
    );
    let vocab = g
        .get("tokenizer.ggml.tokens")
        .unwrap()
        .as_array()
        .unwrap()
        .len();
    assert!(
        field(out, "tokenizer").contains(&format!("vocab {vocab}")),
        "{out}"
    );
    assert!(
        field(out, "tokenizer").contains("no chat template"),
        "{out}"
    );
    assert_eq!(field(out, "runs"), "yes");
}

#[test]
fn an_unknown_architecture_is_described_and_what_is_missing_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let synth = Gguf::open(&common::synth_model(dir.path(), DType::F32)).unwrap();
    let mut meta = vec![
        (
            "general.architecture".to_owned(),
            Value::String("mamba".into()),
        ),
        ("mamba.embedding_length".to_owned(), Value::U32(64)),
        ("mamba.block_count".to_owned(), Value::U32(2)),
        ("mamba.ssm.state_size".to_owned(), Value::U32(16)),
    ];
    meta.extend(tokenizer_metadata(&synth));
    // iq2_xxs (GGML type 16, 66 bytes per 256 elements) has no kernels here; f32 does. 16 rows
    // make 1056 bytes, a whole number of 32-byte alignments, so no padding follows the data.
    let tensors = vec![
        RawTensorOut {
            name: "token_embd.weight".into(),
            dims: vec![64, 4],
            ggml_type: 0,
            data: vec![0; 64 * 4 * 4],
        },
        RawTensorOut {
            name: "blk.0.ssm_in.weight".into(),
            dims: vec![256, 16],
            ggml_type: 16,
            data: vec![0; 66 * 16],
        },
        RawTensorOut {
            name: "blk.1.ssm_in.weight".into(),
            dims: vec![256, 16],
            ggml_type: 16,
            data: vec![0; 66 * 16],
        },
    ];
    let p = dir.path().join("mamba.gguf");
    gguf::write_raw(&p, &meta, &tensors).unwrap();

    let r = info(&p, &["--tensors"]);
    let out = &r.stdout;
    assert_eq!(r.code, Some(2), "{out}{}", r.stderr);
    assert_eq!(field(out, "architecture"), "mamba");
    assert!(field(out, "parameters").starts_with("8448 ("), "{out}");
    assert!(out.contains("ssm.state_size"), "{out}");
    assert!(
        out.contains("iq2_xxs     2 tensors") && out.contains("(not run by this engine)"),
        "{out}"
    );
    assert!(out.contains("runs          no; missing:"), "{out}");
    assert!(
        out.contains("tensor type iq2_xxs: 2 tensors of a type this engine has no kernels for"),
        "{out}"
    );
    // The model loader's own verdict on the architecture, quoted.
    let model_line = out
        .lines()
        .find(|l| l.starts_with("  - model: "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(model_line.contains("mamba"), "{model_line}");
    assert!(
        !out.contains("  - tokenizer: "),
        "the tokenizer loads: {out}"
    );
    // --tensors sizes the tensors whose type it does not know from their offsets.
    assert!(
        out.lines()
            .any(|l| l.starts_with("blk.1.ssm_in.weight") && l.ends_with(" 1056 bytes")),
        "{out}"
    );
    assert!(
        r.stderr.starts_with("error: ") && r.stderr.contains("mamba"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_vocabulary_only_file_is_described_with_metadata_and_no_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let synth = Gguf::open(&common::synth_model(dir.path(), DType::F32)).unwrap();
    let mut meta = vec![
        (
            "general.architecture".to_owned(),
            Value::String("llama".into()),
        ),
        (
            "general.name".to_owned(),
            Value::String("vocab only".into()),
        ),
    ];
    meta.extend(tokenizer_metadata(&synth));
    let p = dir.path().join("vocab.gguf");
    gguf::write_raw(&p, &meta, &[]).unwrap();

    let r = info(&p, &["--metadata", "--tensors"]);
    let out = &r.stdout;
    assert_eq!(r.code, Some(0), "{out}{}", r.stderr);
    assert_eq!(field(out, "parameters"), "0 (0.0 M)");
    assert_eq!(field(out, "tensors"), "none (a vocabulary-only file)");
    assert!(field(out, "runs").starts_with("tokenizer only"), "{out}");
    // --metadata lists every key; --tensors has nothing to add.
    for (k, _) in &meta {
        assert!(out.lines().any(|l| l.starts_with(k.as_str())), "{k}: {out}");
    }
    let without_tensors = info(&p, &["--metadata"]);
    assert_eq!(without_tensors.stdout, r.stdout);
}

/// llama.cpp's own vocabulary-only file for the qwen2 pre-tokenizer (no tensors at all).
#[test]
fn llama_cpps_qwen2_vocabulary_file_is_described() {
    let Some(p) = common::cached_model(
        "llama-vocab-qwen2",
        "44c2f46b715f585c6ab513970e8a006bfa5badd6108560054921cf598d154d8c",
        "MELTBENCH_VOCAB_QWEN2",
    ) else {
        return;
    };
    let r = info(&p, &["--metadata", "--tensors"]);
    let out = &r.stdout;
    assert_eq!(field(out, "architecture"), "qwen2");
    assert_eq!(field(out, "tensors"), "none (a vocabulary-only file)");
    let tok = field(out, "tokenizer");
    assert!(tok.starts_with("model gpt2, pre qwen2, vocab "), "{tok}");
    assert!(out.contains("tokenizer.ggml.merges"), "--metadata: {out}");
    match r.code {
        Some(0) => assert!(field(out, "runs").starts_with("tokenizer only"), "{out}"),
        // Until the qwen2 pre-tokenizer lands, the tokenizer's own error says so.
        Some(2) => assert!(
            out.contains("  - tokenizer: ") && r.stderr.contains("qwen2"),
            "{out}{}",
            r.stderr
        ),
        other => panic!("exit {other:?}: {out}{}", r.stderr),
    }
}

/// The real Gemma 3 file: counts from the description of it (llama.cpp's loader
/// prints the same per-type counts).
#[test]
fn gemma3_270m_is_described() {
    let Some(p) = common::gemma3() else {
        return;
    };
    let r = info(&p, &[]);
    let out = &r.stdout;
    assert_eq!(field(out, "sha256"), common::GEMMA3_SHA256);
    assert_eq!(field(out, "architecture"), "gemma3");
    for (ty, n) in [
        ("f32", 109),
        ("q5_0", 81),
        ("q8_0", 10),
        ("q4_k", 27),
        ("q6_k", 9),
    ] {
        assert!(
            out.contains(&format!("  {ty:<8} {n:>4} tensors")),
            "{ty} x{n}: {out}"
        );
    }
    // The published file is the base model: SentencePiece without a space prefix, and no
    // tokenizer.chat_template key (a chat scenario needs a template from elsewhere).
    assert_eq!(
        field(out, "tokenizer"),
        "model llama, pre default, vocab 262144, no chat template"
    );
    assert!(
        out.contains("block_count                              18"),
        "{out}"
    );
    assert!(out.contains("attention.sliding_window"), "{out}");
}
