//! Perplexity within 1% of llama.cpp's on the same files (fixture: fixtures/perplexity-smollm2.json).
//! The Q8_0, Q4_0 and F16 files are made by our own `quantize` from the Q4_1 download; their
//! SHA-256 in the fixture proves llama.cpp scored the very bytes we score.
//! The Q4_K_M file is the other way round: llama.cpp's `llama-quantize` made it from our F16
//! file, and our `q4_k_m` target re-creates it byte for byte.

mod common;

use meltbench_engine::dtype::DType;
use meltbench_engine::load::load;
use meltbench_engine::perplexity::perplexity;
use meltbench_engine::quantize::{hex, quantize, quantize_q4_k_m};
use meltbench_engine::session::Session;
use sha2::{Digest, Sha256};
use std::path::PathBuf;

const TOLERANCE: f64 = 0.01;

fn check(ty: &str) {
    let Some(source) = common::smollm2() else {
        return;
    };
    let fx = common::fixture("perplexity-smollm2.json");
    let want = &fx["results"][ty];
    assert!(
        want.is_object(),
        "no llama.cpp reference for {ty} in the fixture"
    );
    let dir = tempfile::tempdir().unwrap();
    let model: PathBuf = match ty {
        "q4_1" => source,
        "q4_k_m" => {
            let f16 = dir.path().join("smollm2-f16.gguf");
            quantize(&source, &f16, DType::F16).unwrap();
            let out = dir.path().join("smollm2-q4_k_m.gguf");
            quantize_q4_k_m(&f16, &out).unwrap();
            out
        }
        _ => {
            let out = dir.path().join(format!("smollm2-{ty}.gguf"));
            quantize(&source, &out, ty.parse::<DType>().unwrap()).unwrap();
            out
        }
    };
    let sha = hex(&Sha256::digest(std::fs::read(&model).unwrap()));
    assert_eq!(
        sha,
        want["model_sha256"].as_str().unwrap(),
        "{ty}: the file differs from the one llama.cpp scored"
    );
    let text = common::dataset(
        fx["dataset"]["path"].as_str().unwrap(),
        fx["dataset"]["sha256"].as_str().unwrap(),
    );
    let text = text.strip_suffix('\n').unwrap_or(&text);
    let ctx = fx["ctx"].as_u64().unwrap() as usize;
    let l = load(&model).unwrap();
    let mut session = Session::new(&l.model, common::kernels(), common::threads(), ctx);
    let p = perplexity(&mut session, &l.tokenizer, text, ctx, |_, _, _| {}).unwrap();
    let reference = want["ppl"].as_f64().unwrap();
    let rel = p.ppl / reference - 1.0;
    println!(
        "{ty}: ours {:.4} over {} chunks, llama.cpp {reference:.4}: {:+.3}%",
        p.ppl,
        p.chunks,
        rel * 100.0
    );
    assert_eq!(
        p.chunks as u64,
        want["chunks"].as_u64().unwrap(),
        "{ty}: chunk count"
    );
    assert!(
        rel.abs() < TOLERANCE,
        "{ty}: perplexity {} is {:+.2}% from llama.cpp's {reference}",
        p.ppl,
        rel * 100.0
    );
}

#[test]
fn q4_1() {
    check("q4_1");
}

#[test]
fn q8_0() {
    check("q8_0");
}

#[test]
fn q4_0() {
    check("q4_0");
}

#[test]
fn f16() {
    check("f16");
}

/// Needs the engine to run Q4_K, Q6_K and Q5_0 (SmolLM2's 576-wide rows send most matrices to
/// llama.cpp's Q5_0 fallback); until it does, the hash check passes and loading fails.
#[test]
fn q4_k_m() {
    check("q4_k_m");
}
