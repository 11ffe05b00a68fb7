//! How long a report of 1,000,000 passes takes: the gate over a 500,000-pass candidate and a
//! 500,000-pass baseline, then the HTML and Markdown renderers; and the renderers alone over
//! 1,000,000 passes. All in memory: reading run directories is measured end to end with
//! `meltbench report` (see the README).
//!
//! `cargo bench -p meltbench-reports --bench report`

use criterion::{criterion_group, criterion_main, Criterion};
use meltbench_reports::cell_key::CellKey;
use meltbench_reports::compare::{gate, GateConfig};
use meltbench_reports::dataset::{CellData, Dataset, LoadedRunInfo, PassData, SessionData};
use meltbench_reports::export::{html, markdown};
use meltbench_reports::report::ReportInput;
use meltbench_reports::runstore::RunManifest;
use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;

const CELLS: usize = 10;
const SESSIONS: usize = 5;
const STEPS: usize = 7;

/// `passes` in total over `CELLS` x `SESSIONS`, each session with its own offset. The shape of
/// the noise does not matter for timing, only the counts.
fn dataset(run_id: &str, passes: usize, factor: f64, seed: u64) -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut u = move || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    let per = passes / (CELLS * SESSIONS);
    let cells = (0..CELLS)
        .map(|c| CellData {
            key: CellKey {
                id: format!("synth/f32/s{c}/t2/any"),
                device: "local".into(),
                model: "synth".into(),
                model_sha256: "00".repeat(32),
                precision: "f32".into(),
                scenario: format!("s{c}"),
                threads: 2,
                state: "any".into(),
                engine: "bundled".into(),
            },
            sessions: (0..SESSIONS)
                .map(|s| {
                    let offset = factor * (1.0 + 0.06 * (u() - 0.5));
                    SessionData {
                        run_id: run_id.into(),
                        index: s,
                        passes: (0..per)
                            .map(|i| {
                                let steps: Vec<f64> = (0..STEPS)
                                    .map(|_| 0.02 * offset * (0.9 + 0.2 * u()))
                                    .collect();
                                let ttft = 0.3 * offset * (0.9 + 0.2 * u());
                                let decode: f64 = steps.iter().sum();
                                PassData {
                                    start_s: i as f64 * 0.001,
                                    warmup: false,
                                    latency_ms: ttft + decode,
                                    ttft_ms: ttft,
                                    prefill_tokens_per_s: Some(16.0 / (ttft / 1e3)),
                                    decode_tokens_per_s: Some(STEPS as f64 / (decode / 1e3)),
                                    decode_step_ms: steps,
                                    rss_hwm_bytes: Some(4_600_000),
                                    temp_c: None,
                                    power_w: None,
                                    energy_j_per_token: None,
                                    cpu_mhz: None,
                                    split: Default::default(),
                                }
                            })
                            .collect(),
                        warmups: Vec::new(),
                        peak_rss_bytes: Some(4_600_000),
                    }
                })
                .collect(),
            cold_start_ms: vec![6.0, 6.2, 5.9],
            cold_start_page_cache_dropped: Some(false),
            errors: Vec::new(),
            states_reached: Vec::new(),
            prompt_tokens: Some(16),
            gen_tokens: Some(8),
            model_file_bytes: Some(550_112),
            weight_bytes_per_token: Some(500_000),
            kernels: Some("avx512".into()),
            reported_peak_rss_bytes: None,
            preludes: vec![],
            unmeasured: Default::default(),
            memory_of: None,
        })
        .collect();
    Dataset {
        runs: vec![LoadedRunInfo {
            dir: run_id.into(),
            manifest: RunManifest {
                run_id: run_id.into(),
                suite_name: "bench".into(),
                suite_path: "bench.yaml".into(),
                suite_yaml: String::new(),
                meltbench_version: "0.1.0".into(),
                meltbench_commit: "bench".into(),
                suite_git_commit: None,
                started_utc: "2026-11-22T00:00:00Z".into(),
                finished_utc: None,
                command: "meltbench run bench.yaml".into(),
                devices: Vec::new(),
                cells: Vec::new(),
                devices_path: None,
                attempts: Vec::new(),
            },
            skipped_lines: Vec::new(),
        }],
        cells,
    }
}

fn input<'a>(
    cand: &'a Dataset,
    base: Option<&'a Dataset>,
    outcome: Option<&'a meltbench_reports::compare::GateOutcome>,
) -> ReportInput<'a> {
    ReportInput {
        title: "bench".into(),
        candidate: cand,
        baseline: base,
        gate: outcome,
        history: None,
        generated_utc: "2026-11-22T00:00:00Z".into(),
        command: "meltbench report".into(),
    }
}

fn report_of_a_million_passes(c: &mut Criterion) {
    let base = dataset("base", 500_000, 1.0, 1);
    let cand = dataset("cand", 500_000, 1.05, 2);
    assert_eq!(base.total_passes() + cand.total_passes(), 1_000_000);
    let config = GateConfig::default();
    let mut g = c.benchmark_group("report");
    g.sample_size(10);
    g.bench_function("gate + html + markdown, 500k vs 500k passes", |b| {
        b.iter(|| {
            let outcome = gate(&base, &cand, &config);
            let i = input(&cand, Some(&base), Some(&outcome));
            black_box((html::render(&i), markdown::render(&i)))
        })
    });
    let alone = dataset("alone", 1_000_000, 1.0, 3);
    g.bench_function("html + markdown, 1M passes, no baseline", |b| {
        b.iter(|| {
            let i = input(&alone, None, None);
            black_box((html::render(&i), markdown::render(&i)))
        })
    });
    g.finish();
}

criterion_group!(benches, report_of_a_million_passes);
criterion_main!(benches);
