//! Token ids equal llama.cpp's for SmolLM2 (fixture: fixtures/tokenizer-smollm2.json, see its provenance).

mod common;

use meltbench_engine::gguf::Gguf;
use meltbench_engine::tokenizer::Tokenizer;

#[test]
fn smollm2_token_ids_equal_llama_cpp() {
    let Some(model) = common::smollm2() else {
        return;
    };
    let tok = Tokenizer::from_gguf(&Gguf::open(&model).unwrap()).unwrap();
    let fx = common::fixture("tokenizer-smollm2.json");
    let cases = fx["cases"].as_array().unwrap();
    assert!(
        cases.len() >= 20,
        "the fixture should hold at least 20 strings"
    );
    let failures = mismatches(&tok, cases);
    println!(
        "{} of {} strings tokenized identically to llama.cpp",
        cases.len() - failures.len(),
        cases.len()
    );
    assert!(
        failures.is_empty(),
        "token ids differ from llama.cpp:\n{}",
        failures.join("\n")
    );
}

/// SentencePiece: our synthetic SPM model (byte fallback, BOS, space prefix) against
/// llama.cpp's tokenizer on the same file (fixture: fixtures/tokenizer-synth-spm.json).
#[test]
fn sentencepiece_token_ids_equal_llama_cpp() {
    use meltbench_engine::synth::{write_synth, SynthConfig, SynthVocab};
    use sha2::{Digest, Sha256};
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
    let tok = Tokenizer::from_gguf(&Gguf::open(&model).unwrap()).unwrap();
    let failures = mismatches(&tok, fx["cases"].as_array().unwrap());
    assert!(
        failures.is_empty(),
        "token ids differ from llama.cpp:\n{}",
        failures.join("\n")
    );
}

/// Every fixture case whose ids differ from ours, described; decoding our ids must give the
/// text back in any case (both vocabularies here are lossless).
fn mismatches(tok: &Tokenizer, cases: &[serde_json::Value]) -> Vec<String> {
    let mut failures = Vec::new();
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let want: Vec<u32> = case["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        // llama-tokenize was run without special-token parsing; BOS only if the model asks.
        let got = tok.encode(text, true, false);
        if got != want {
            failures.push(format!(
                "{text:?}\n  llama.cpp {want:?}\n  ours      {got:?}"
            ));
        }
        assert_eq!(tok.decode(&got), text, "decode round trip of {text:?}");
    }
    failures
}
