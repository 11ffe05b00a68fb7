//! Token ids equal llama.cpp's (`llama-tokenize`) for every vocabulary the shipped models use:
//! SmolLM2 (byte-level BPE, `smollm`), Gemma 3 (SentencePiece without a space prefix), and
//! llama.cpp's vocabulary-only files for `llama-bpe` (Llama 3), `qwen2` (Qwen2.5, Qwen3) and
//! `gpt-2`. Fixtures and their provenance: fixtures/tokenizer-*.json, fixtures/README.md.

mod common;

use meltbench_engine::load::load_tokenizer;
use meltbench_engine::tokenizer::Tokenizer;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// SHA-256 of llama.cpp's vocabulary-only files (models/ggml-vocab-*.gguf at commit 0c1e570,
/// from the PyPI sdist llama-cpp-python 0.3.36).
const VOCAB_LLAMA_BPE_SHA256: &str =
    "97272e430d53bc7688f52d5e0ad8ea8f163ede9f1bbd1694feaa504797d5d96e";
const VOCAB_QWEN2_SHA256: &str = "44c2f46b715f585c6ab513970e8a006bfa5badd6108560054921cf598d154d8c";
const VOCAB_GPT2_SHA256: &str = "cedc56ca6e2e89f63e781696d1fd76b4b1d49e6720dee86463e915f6e90016ac";

fn llama_bpe() -> Option<PathBuf> {
    common::cached_model(
        "llama-vocab-llama-bpe",
        VOCAB_LLAMA_BPE_SHA256,
        "MELTBENCH_VOCAB_LLAMA_BPE",
    )
}

fn qwen2() -> Option<PathBuf> {
    common::cached_model(
        "llama-vocab-qwen2",
        VOCAB_QWEN2_SHA256,
        "MELTBENCH_VOCAB_QWEN2",
    )
}

fn gpt2() -> Option<PathBuf> {
    common::cached_model(
        "llama-vocab-gpt-2",
        VOCAB_GPT2_SHA256,
        "MELTBENCH_VOCAB_GPT2",
    )
}

/// Files small enough to hash in a test are checked against the fixture's SHA-256, so a
/// fixture is never compared with another file's vocabulary. (The large model files are named
/// by their SHA-256 in the cache, which `meltbench models pull` verified.)
fn check_file_matches(model: &Path, fx: &serde_json::Value) {
    let size = std::fs::metadata(model).unwrap().len();
    if size > 64 << 20 {
        return;
    }
    let sha = meltbench_engine::quantize::hex(&Sha256::digest(std::fs::read(model).unwrap()));
    assert_eq!(
        sha,
        fx["provenance"]["model_sha256"].as_str().unwrap(),
        "{} is not the file the fixture was made from",
        model.display()
    );
}

/// Every case of fixture `name` tokenized with the vocabulary of `model`, which must give
/// llama.cpp's ids exactly.
fn fixture_matches(name: &str, model: &Path) {
    let fx = common::fixture(name);
    check_file_matches(model, &fx);
    let tok = load_tokenizer(model).unwrap();
    let cases = fx["cases"].as_array().unwrap();
    assert!(
        cases.len() >= 60,
        "{name} should hold at least 60 strings, has {}",
        cases.len()
    );
    // The fixtures were made with --no-bos unless their provenance says BOS was allowed.
    let add_special = fx["provenance"]["add_special"].as_bool().unwrap_or(true);
    let failures = mismatches(&tok, cases, add_special);
    println!(
        "{name}: {} of {} strings tokenized identically to llama.cpp",
        cases.len() - failures.len(),
        cases.len()
    );
    assert!(
        failures.is_empty(),
        "token ids differ from llama.cpp:\n{}",
        failures.join("\n")
    );
}

#[test]
fn smollm2_token_ids_equal_llama_cpp() {
    let Some(model) = common::smollm2() else {
        return;
    };
    fixture_matches("tokenizer-smollm2.json", &model);
}

#[test]
fn gemma3_token_ids_equal_llama_cpp() {
    let Some(model) = common::gemma3() else {
        return;
    };
    fixture_matches("tokenizer-gemma3.json", &model);
}

#[test]
fn llama_bpe_token_ids_equal_llama_cpp() {
    let Some(model) = llama_bpe() else {
        return;
    };
    fixture_matches("tokenizer-llama-bpe.json", &model);
}

#[test]
fn qwen2_token_ids_equal_llama_cpp() {
    let Some(model) = qwen2() else {
        return;
    };
    fixture_matches("tokenizer-qwen2.json", &model);
}

#[test]
fn gpt2_token_ids_equal_llama_cpp() {
    let Some(model) = gpt2() else {
        return;
    };
    fixture_matches("tokenizer-gpt-2.json", &model);
}

/// A whole file at once: the GPL-3 text (35 KB) through Gemma 3's 262,144-token SentencePiece
/// vocabulary, as perplexity runs need it. The fixture keeps the count, the SHA-256 of the ids
/// and the first 200 of them.
#[test]
fn gemma3_tokenizes_the_gpl3_text_like_llama_cpp() {
    let Some(model) = common::gemma3() else {
        return;
    };
    let fx = common::fixture("tokenizer-gemma3-gpl3.json");
    let text_path = fx["provenance"]["text_file"].as_str().unwrap();
    let text = common::dataset(text_path, fx["provenance"]["text_sha256"].as_str().unwrap());
    let tok = load_tokenizer(&model).unwrap();
    let ids = tok.encode(&text, false, false);
    let head: Vec<u64> = fx["first_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let ours: Vec<u64> = ids.iter().take(head.len()).map(|&i| i as u64).collect();
    assert_eq!(
        ours,
        head,
        "the first {} ids differ from llama.cpp's",
        head.len()
    );
    assert_eq!(
        ids.len() as u64,
        fx["n_ids"].as_u64().unwrap(),
        "token count"
    );
    assert_eq!(
        ids_sha256(&ids),
        fx["ids_sha256"].as_str().unwrap(),
        "the id list differs from llama.cpp's (same length, same first ids)"
    );
    assert_eq!(tok.decode(&ids), text, "decode round trip");
}

/// SHA-256 of an id list written as a compact JSON array (`[1,2,3]`), as the fixture states.
fn ids_sha256(ids: &[u32]) -> String {
    meltbench_engine::quantize::hex(&Sha256::digest(serde_json::to_string(ids).unwrap()))
}

/// The command line on a vocabulary-only file (no tensors): `tokenize FILE TEXT --no-bos`
/// prints llama.cpp's ids as one JSON array; without `--no-bos` the vocabulary's BOS leads
/// where it asks for one; `--special` turns written control tokens into their ids.
#[test]
fn tokenize_command_reads_vocabulary_only_files() {
    let Some(model) = llama_bpe() else {
        return;
    };
    let tok = load_tokenizer(&model).unwrap();
    let fx = common::fixture("tokenizer-llama-bpe.json");
    let case = fx["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["text"] == "We've been told you'd LIKE it, didn't you?")
        .expect("the fixture holds the contraction case");
    let text = case["text"].as_str().unwrap();
    let want: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();

    let run = |args: &[&str]| -> Vec<u32> {
        let out = common::engine()
            .arg("tokenize")
            .arg(&model)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tokenize failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    assert_eq!(run(&[text, "--no-bos"]), want);
    let with_bos = run(&[text]);
    assert!(tok.add_bos, "Llama 3's vocabulary asks for BOS");
    assert_eq!(with_bos[0], tok.bos.unwrap());
    assert_eq!(&with_bos[1..], &want[..]);

    let eot = "<|eot_id|>";
    let plain = run(&[eot, "--no-bos"]);
    assert!(
        plain.len() > 1,
        "without --special, {eot} is text: {plain:?}"
    );
    let special = run(&[eot, "--no-bos", "--special"]);
    assert_eq!(special.len(), 1, "with --special, {eot} is one token");
    assert_eq!(tok.token_text(special[0]), Some(eot));
}

/// SentencePiece: our synthetic SPM model (byte fallback, BOS, space prefix) against
/// llama.cpp's tokenizer on the same file (fixture: fixtures/tokenizer-synth-spm.json).
#[test]
fn sentencepiece_token_ids_equal_llama_cpp() {
    use meltbench_engine::synth::{write_synth, SynthConfig, SynthVocab};
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("spm.gguf");
    write_synth(
        &model,
        &SynthConfig {
            vocab: SynthVocab::Spm,
            ..Default::default()
        },
    )
    .unwrap();
    let fx = common::fixture("tokenizer-synth-spm.json");
    let sha = meltbench_engine::quantize::hex(&Sha256::digest(std::fs::read(&model).unwrap()));
    assert_eq!(
        sha,
        fx["provenance"]["model_sha256"].as_str().unwrap(),
        "the synth SPM model changed; regenerate the fixture"
    );
    let tok = load_tokenizer(&model).unwrap();
    let failures = mismatches(&tok, fx["cases"].as_array().unwrap(), true);
    assert!(
        failures.is_empty(),
        "token ids differ from llama.cpp:\n{}",
        failures.join("\n")
    );
}

/// Every fixture case whose ids differ from ours, described; decoding our ids must give the
/// text back in any case (all these vocabularies are lossless).
fn mismatches(tok: &Tokenizer, cases: &[serde_json::Value], add_special: bool) -> Vec<String> {
    let mut failures = Vec::new();
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let want: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        // llama-tokenize was run without special-token parsing.
        let got = tok.encode(text, add_special, false);
        if got != want {
            failures.push(format!(
                "{text:?}\n  llama.cpp {want:?}\n  ours      {got:?}"
            ));
        }
        let body = match (add_special && tok.add_bos, got.first()) {
            (true, Some(&b)) if Some(b) == tok.bos => &got[1..],
            _ => &got[..],
        };
        assert_eq!(tok.decode(body), text, "decode round trip of {text:?}");
    }
    failures
}
