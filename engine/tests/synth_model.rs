//! The tiny synthetic model: deterministic files, identical greedy tokens on every kernel table
//! (and on every architecture, via the reference in fixtures/synth-greedy.json), and the bench contract.

mod common;

use meltbench_engine::dtype::DType;
use meltbench_engine::kernels::{self, Kernels};
use meltbench_engine::load::load;
use meltbench_engine::synth::{write_synth, SynthArch, SynthConfig};
use meltbench_protocol::engine::EngineRecord;
use std::path::Path;

const PROMPT: &str = "The engineers measured the heat of 42 phones, and the battery";
const N: usize = 24;

fn greedy(model: &Path, k: &'static Kernels, threads: usize) -> Vec<u32> {
    common::greedy_tokens(&load(model).unwrap(), k, threads, PROMPT, N)
}

#[test]
fn synth_files_are_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.gguf"), dir.path().join("b.gguf"));
    write_synth(&a, &SynthConfig::default()).unwrap();
    write_synth(&b, &SynthConfig::default()).unwrap();
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    let c = dir.path().join("c.gguf");
    write_synth(
        &c,
        &SynthConfig {
            seed: 2,
            ..Default::default()
        },
    )
    .unwrap();
    assert_ne!(std::fs::read(&a).unwrap(), std::fs::read(&c).unwrap());
}

/// Greedy tokens of the synth model per weight type, on every kernel table this CPU has and
/// with 1 and 2 threads, equal the reference recorded from the x86_64 build. Under
/// `cargo test --target aarch64-unknown-linux-musl` (qemu) the same check runs the NEON kernels,
/// which is how the aarch64 build is shown to produce the x86_64 build's tokens.
#[test]
fn greedy_tokens_match_the_reference_on_every_kernel_table() {
    let fx = common::fixture("synth-greedy.json");
    assert_eq!(fx["prompt"].as_str().unwrap(), PROMPT);
    let dir = tempfile::tempdir().unwrap();
    for ty in DType::ALL {
        let model = dir.path().join(format!("synth-{ty}.gguf"));
        write_synth(
            &model,
            &SynthConfig {
                dtype: ty,
                ..Default::default()
            },
        )
        .unwrap();
        let want: Vec<u32> = fx["tokens"][ty.name()]
            .as_array()
            .unwrap_or_else(|| panic!("no reference for {ty}"))
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        // Every variant: both AVX2 tables on an AVX-VNNI CPU, not only the one picked.
        for k in kernels::variants() {
            for threads in [1, 2] {
                let got = greedy(&model, k, threads);
                println!("{ty} {} x{threads}: {got:?}", k.isa);
                assert_eq!(
                    got, want,
                    "{ty} with {} kernels and {threads} threads",
                    k.isa
                );
            }
        }
    }
}

/// Every architecture's synthetic model (llama 3, qwen2, qwen3, gemma3 layouts) gives the greedy
/// tokens llama.cpp gave for the same file, on every kernel table this CPU has (NEON under qemu
/// on aarch64) and at 1 and 2 threads: the four forward passes agree with llama.cpp's, and the
/// aarch64 build with the x86_64 one.
#[test]
fn every_architecture_gives_llama_cpp_greedy_tokens_on_every_kernel_table() {
    let fx = common::fixture("synth-greedy.json");
    let dir = tempfile::tempdir().unwrap();
    for arch in SynthArch::ALL
        .into_iter()
        .filter(|&a| a != SynthArch::Llama)
    {
        let entry = &fx["archs"][arch.name()];
        let ids = |key: &str| -> Vec<u32> {
            entry[key]
                .as_array()
                .unwrap_or_else(|| panic!("no {key} for {}", arch.name()))
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect()
        };
        let (want, llama_cpp) = (ids("tokens"), ids("llama_cpp"));
        assert_eq!(want, llama_cpp, "{}: the recorded reference", arch.name());
        let model = dir.path().join(format!("synth-{}.gguf", arch.name()));
        write_synth(
            &model,
            &SynthConfig {
                arch,
                ..Default::default()
            },
        )
        .unwrap();
        let l = load(&model).unwrap();
        assert_eq!(
            l.tokenizer.encode(PROMPT, true, false),
            ids("llama_cpp_prompt_ids"),
            "{}: prompt tokens",
            arch.name()
        );
        // Every variant: both AVX2 tables on an AVX-VNNI CPU, not only the one picked.
        for k in kernels::variants() {
            for threads in [1, 2] {
                let got = greedy(&model, k, threads);
                assert_eq!(
                    got,
                    want,
                    "{} with {} kernels and {threads} threads",
                    arch.name(),
                    k.isa
                );
            }
        }
    }
}

#[test]
fn bench_writes_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::synth_model(dir.path(), DType::Q4_0);
    let out = common::engine()
        .args([
            "bench",
            "--prompt-tokens",
            "20",
            "-n",
            "6",
            "--passes",
            "3",
            "--warmup",
            "2",
            "-t",
            "2",
        ])
        .arg(&model)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs: Vec<EngineRecord> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(recs.len(), 1 + 5 + 1, "load, 2 warm-up + 3 passes, done");
    let EngineRecord::Load(load) = &recs[0] else {
        panic!("first line is not the load record")
    };
    assert_eq!((load.threads, load.dtype.as_str()), (2, "q4_0"));
    assert!(load.start_mono_ns <= load.end_mono_ns);
    let mut last_end = load.end_mono_ns;
    for (i, r) in recs[1..6].iter().enumerate() {
        let EngineRecord::Pass(p) = r else {
            panic!("line {} is not a pass", i + 2)
        };
        assert_eq!(p.index, i);
        assert_eq!(p.warmup, i < 2, "pass {i} warm-up flag");
        assert_eq!(
            (p.prompt_tokens, p.gen_tokens, p.decode_ns.len()),
            (20, 6, 5)
        );
        assert_eq!(p.ttft_ns, p.tokenize_ns + p.prefill_ns);
        assert!(
            p.start_mono_ns >= last_end && p.end_mono_ns > p.start_mono_ns,
            "pass {i} stamps out of order"
        );
        assert!(p.prefill_ns > 0 && p.decode_ns.iter().all(|&d| d > 0));
        last_end = p.end_mono_ns;
    }
    let EngineRecord::Done(done) = &recs[6] else {
        panic!("last line is not done")
    };
    assert_eq!((done.passes, done.warmup), (3, 2));
    // Every weight is read in a pass: the resident peak holds at least the model, mapped or
    // repacked, and a MiB of code and buffers (a reading right after exec, about 200 KiB,
    // cannot pass).
    let rss_floor = std::fs::metadata(&model).unwrap().len() + (1 << 20);
    let peak = done.peak_rss_bytes.expect("Linux reports the peak RSS");
    assert!(
        peak >= rss_floor,
        "peak RSS {peak} < model + 1 MiB = {rss_floor}"
    );
}

#[test]
fn quantize_converts_every_matrix_and_keeps_norms_f32() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.gguf");
    write_synth(&src, &SynthConfig::default()).unwrap();
    for ty in DType::ALL {
        let out = dir.path().join(format!("{ty}.gguf"));
        meltbench_engine::quantize::quantize(&src, &out, ty).unwrap();
        let l = load(&out).unwrap();
        for t in &l.gguf.tensors {
            let want = if t.dims.len() == 2 { ty } else { DType::F32 };
            assert_eq!(t.ggml_type, want.ggml_id(), "{} in the {ty} file", t.name);
        }
        let conv = l
            .gguf
            .get("meltbench.conversion")
            .and_then(|v| v.as_str())
            .unwrap();
        assert!(conv.contains(&format!("f32 -> {ty}")), "{conv}");
        assert_eq!(
            l.gguf.get("general.file_type").and_then(|v| v.as_u64()),
            Some(ty.llama_file_type() as u64)
        );
        assert_eq!(
            l.tokenizer.vocab_size(),
            load(&src).unwrap().tokenizer.vocab_size()
        );
    }
}
