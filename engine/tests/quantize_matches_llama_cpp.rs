//! Our `q5_k_m` target writes the very bytes `llama-quantize F16FILE OUT Q5_K_M` writes
//! (fixture: fixtures/quantize-smollm2.json), as the `q4_k_m` target does for Q4_K_M (checked in
//! perplexity_matches_llama_cpp.rs). SmolLM2's 576-wide rows send most matrices to Q5_K's
//! fallback, Q5_1, so this pins the Q5_1 and Q5_K quantizers to ggml's reference ones, and the
//! engine then loads and runs the file with its own Q5_1 / Q5_K kernels.

mod common;

use meltbench_engine::dtype::{ggml_type_name, DType};
use meltbench_engine::load::load;
use meltbench_engine::quantize::{hex, quantize, quantize_q5_k_m};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

fn sha256(path: &std::path::Path) -> String {
    hex(&Sha256::digest(std::fs::read(path).unwrap()))
}

#[test]
fn q5_k_m_is_byte_identical_to_llama_quantize() {
    let Some(source) = common::smollm2() else {
        return;
    };
    let fx = common::fixture("quantize-smollm2.json");
    let want = &fx["results"]["q5_k_m"];
    let dir = tempfile::tempdir().unwrap();
    let f16 = dir.path().join("smollm2-f16.gguf");
    quantize(&source, &f16, DType::F16).unwrap();
    assert_eq!(
        sha256(&f16),
        fx["source"]["model_sha256"].as_str().unwrap(),
        "the F16 file llama-quantize started from differs from ours"
    );
    let out = dir.path().join("smollm2-q5_k_m.gguf");
    quantize_q5_k_m(&f16, &out).unwrap();
    assert_eq!(
        sha256(&out),
        want["model_sha256"].as_str().unwrap(),
        "q5_k_m: our file differs from the one llama-quantize wrote"
    );

    // The engine runs the file as it is: every tensor keeps the type llama-quantize chose.
    let l = load(&out).unwrap();
    let mut types: BTreeMap<String, u64> = BTreeMap::new();
    for t in &l.gguf.tensors {
        *types.entry(ggml_type_name(t.ggml_type)).or_default() += 1;
    }
    let want_types: BTreeMap<String, u64> = want["tensor_type_counts"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect();
    assert_eq!(types, want_types);
}
