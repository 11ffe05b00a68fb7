use super::*;
use crate::cell_key::CellKey;
use crate::dataset::{PassData, SessionData};
use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const SHA_A: &str = "1a2b3c4d5e6f77889900aabbccddeeff1a2b3c4d5e6f77889900aabbccddeeff";
const SHA_B: &str = "5e6f7a8b00112233445566778899aabbccddeeff00112233445566778899aabb";

fn key(id: &str, threads: usize, sha: &str) -> CellKey {
    CellKey {
        id: id.to_string(),
        device: "pi5".to_string(),
        model: "tiny".to_string(),
        model_sha256: sha.to_string(),
        precision: "q4_0".to_string(),
        // Cells of a suite differ in more than their id.
        scenario: id.to_string(),
        threads,
        state: "cool".to_string(),
        engine: "bundled".to_string(),
    }
}

/// `sessions` x `passes` passes of about 100 ms * `scale` (1% noise), decode at about
/// 50 tok/s * `tps_scale`.
fn cell(
    key: CellKey,
    sessions: usize,
    passes: usize,
    scale: f64,
    tps_scale: f64,
    seed: u64,
) -> CellData {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut noise = move || 1.0 + 0.01 * ((rng.next_u32() as f64 / u32::MAX as f64) - 0.5);
    let sessions = (0..sessions)
        .map(|index| SessionData {
            run_id: "r".to_string(),
            index,
            passes: (0..passes)
                .map(|_| PassData {
                    start_s: 0.0,
                    warmup: false,
                    latency_ms: 100.0 * scale * noise(),
                    ttft_ms: 20.0,
                    decode_step_ms: Vec::new(),
                    prefill_tokens_per_s: None,
                    decode_tokens_per_s: Some(50.0 * tps_scale * noise()),
                    rss_hwm_bytes: Some(1 << 30),
                    temp_c: None,
                    power_w: None,
                    energy_j_per_token: None,
                    cpu_mhz: None,
                    split: Default::default(),
                })
                .collect(),
            warmups: Vec::new(),
            peak_rss_bytes: Some(1 << 30),
        })
        .collect();
    CellData {
        key,
        sessions,
        cold_start_ms: Vec::new(),
        cold_start_page_cache_dropped: None,
        errors: Vec::new(),
        states_reached: Vec::new(),
        prompt_tokens: None,
        gen_tokens: None,
        model_file_bytes: None,
        weight_bytes_per_token: None,
        kernels: None,
        reported_peak_rss_bytes: None,
        preludes: vec![],
        unmeasured: Default::default(),
        memory_of: None,
    }
}

fn simple(id: &str, scale: f64, tps_scale: f64, seed: u64) -> CellData {
    cell(key(id, 2, SHA_A), 5, 60, scale, tps_scale, seed)
}

fn data(cells: Vec<CellData>) -> Dataset {
    Dataset {
        runs: Vec::new(),
        cells,
    }
}

fn config(metrics: &[Metric]) -> GateConfig {
    GateConfig {
        budgets: metrics.iter().map(|&m| (m, 0.10)).collect(),
        resamples: 500,
        ..GateConfig::default()
    }
}

fn row(outcome: &GateOutcome, cell: &str, metric: Metric) -> GateRow {
    outcome
        .rows
        .iter()
        .find(|r| r.cell == cell && r.metric == metric)
        .unwrap_or_else(|| panic!("no row {cell} {metric:?} in {outcome:#?}"))
        .clone()
}

#[test]
fn comparable_names_every_difference() {
    let a = simple("c", 1.0, 1.0, 1);
    let mut b = a.clone();
    assert_eq!(comparable(&a, &b, &[]), Ok(()));
    b.key.threads = 1;
    b.key.model_sha256 = SHA_B.to_string();
    assert_eq!(
        comparable(&a, &b, &[]),
        Err(
            "model SHA-256 differs (baseline 1a2b3c4d…, candidate 5e6f7a8b…); \
                 threads differ (baseline 2, candidate 1)"
                .to_string()
        )
    );
    assert_eq!(
        comparable(&a, &b, &[KeyField::Threads]),
        Err("model SHA-256 differs (baseline 1a2b3c4d…, candidate 5e6f7a8b…)".to_string())
    );
    assert_eq!(
        comparable(&a, &b, &[KeyField::Threads, KeyField::Model]),
        Ok(())
    );
    b.key.state = "hot".to_string();
    b.key.device = "rpi4".to_string();
    let err = comparable(&a, &b, &[KeyField::Threads, KeyField::Model]).unwrap_err();
    assert_eq!(
            err,
            "device differs (baseline pi5, candidate rpi4); state differs (baseline cool, candidate hot)"
        );
}

#[test]
fn unpaired_cells_are_not_comparable_with_a_reason() {
    let base = data(vec![
        cell(key("threads", 2, SHA_A), 3, 20, 1.0, 1.0, 1),
        cell(key("model", 2, SHA_A), 3, 20, 1.0, 1.0, 2),
        cell(key("gone", 4, SHA_A), 3, 20, 1.0, 1.0, 3),
    ]);
    let cand = data(vec![
        cell(key("threads", 1, SHA_A), 3, 20, 1.0, 1.0, 4),
        cell(key("model", 2, SHA_B), 3, 20, 1.0, 1.0, 5),
        cell(key("new", 8, SHA_A), 3, 20, 1.0, 1.0, 6),
    ]);
    let out = gate(&base, &cand, &config(&[Metric::LatencyP95]));
    let reasons: Vec<(&str, &str, &str)> = out
        .not_comparable
        .iter()
        .map(|n| (n.side.as_str(), n.cell.as_str(), n.reason.as_str()))
        .collect();
    assert_eq!(
        reasons,
        [
            (
                "candidate",
                "threads",
                "threads differ (baseline 2, candidate 1)"
            ),
            (
                "candidate",
                "model",
                "model SHA-256 differs (baseline 1a2b3c4d…, candidate 5e6f7a8b…)"
            ),
            ("candidate", "new", "no baseline cell with this key"),
            (
                "baseline",
                "threads",
                "threads differ (baseline 2, candidate 1)"
            ),
            (
                "baseline",
                "model",
                "model SHA-256 differs (baseline 1a2b3c4d…, candidate 5e6f7a8b…)"
            ),
            ("baseline", "gone", "no candidate cell with this key"),
        ]
    );
    assert!(out.rows.is_empty());
    assert_eq!(out.exit_code, 2);
    assert_eq!(out.headline, "nothing comparable (6 not comparable)");
}

#[test]
fn ignored_threads_pair_cells_and_ambiguity_is_reported() {
    let same_scenario = |id: &str, threads| CellKey {
        scenario: "chat".to_string(),
        ..key(id, threads, SHA_A)
    };
    let base = data(vec![cell(same_scenario("t2", 2), 3, 30, 1.0, 1.0, 1)]);
    let cand = data(vec![cell(same_scenario("t1", 1), 3, 30, 1.0, 1.0, 2)]);
    let mut cfg = config(&[Metric::LatencyP95]);
    assert!(gate(&base, &cand, &cfg).rows.is_empty());
    cfg.ignore_key = vec![KeyField::Threads];
    let out = gate(&base, &cand, &cfg);
    assert!(out.not_comparable.is_empty(), "{:?}", out.not_comparable);
    let r = row(&out, "t1", Metric::LatencyP95);
    assert_eq!((r.baseline_cell.as_str(), r.baseline_sessions), ("t2", 3));

    let base = data(vec![
        cell(same_scenario("t2", 2), 3, 30, 1.0, 1.0, 1),
        cell(same_scenario("t4", 4), 3, 30, 1.0, 1.0, 3),
    ]);
    let out = gate(&base, &cand, &cfg);
    assert!(out.rows.is_empty());
    assert_eq!(out.not_comparable.len(), 1, "{:?}", out.not_comparable);
    assert_eq!(
        out.not_comparable[0].reason,
        "ambiguous: 2 baseline cells match (t2, t4); do not ignore threads"
    );
}

#[test]
fn failed_cells_are_not_comparable() {
    let base = data(vec![simple("a", 1.0, 1.0, 1), simple("b", 1.0, 1.0, 2)]);
    let mut failed = simple("a", 1.0, 1.0, 3);
    failed.sessions.clear();
    failed.errors = vec![
        "engine exited with signal 9".to_string(),
        "later".to_string(),
    ];
    let cand = data(vec![failed, simple("b", 1.0, 1.0, 4)]);
    let out = gate(&base, &cand, &config(&[Metric::LatencyP95]));
    assert_eq!(out.not_comparable.len(), 1);
    let nc = &out.not_comparable[0];
    assert_eq!((nc.side.as_str(), nc.cell.as_str()), ("candidate", "a"));
    assert_eq!(
        nc.reason,
        "no measured passes in the candidate (the cell failed: engine exited with signal 9)"
    );
    assert_eq!(out.rows.len(), 1);
    assert_eq!(out.rows[0].verdict, Verdict::Pass);
    assert_eq!(out.exit_code, 0);
    assert_eq!(out.headline, "1 unchanged, 1 not comparable");
    // And the other way round, without a recorded error.
    let out = gate(&cand, &base, &config(&[Metric::LatencyP95]));
    assert_eq!(out.not_comparable[0].side, "baseline");
    assert_eq!(
        out.not_comparable[0].reason,
        "no measured passes in the baseline (the cell failed: engine exited with signal 9)"
    );
}

#[test]
fn verdicts_follow_each_metrics_direction() {
    let base = data(vec![
        simple("slower", 1.0, 1.0, 1),
        simple("faster", 1.0, 1.0, 2),
        simple("same", 1.0, 1.0, 3),
        simple("bit_slower", 1.0, 1.0, 4),
    ]);
    let cand = data(vec![
        simple("slower", 1.3, 0.7, 5),
        simple("faster", 0.7, 1.3, 6),
        simple("same", 1.0, 1.0, 7),
        simple("bit_slower", 1.05, 0.95, 8),
    ]);
    let out = gate(
        &base,
        &cand,
        &config(&[
            Metric::LatencyP95,
            Metric::DecodeTokensPerS,
            Metric::EnergyPerToken,
        ]),
    );
    let v = |c: &str, m: Metric| row(&out, c, m).verdict;
    assert_eq!(v("slower", Metric::LatencyP95), Verdict::Fail);
    // A 30% throughput drop fails; a 30% gain is an improvement.
    assert_eq!(v("slower", Metric::DecodeTokensPerS), Verdict::Fail);
    assert_eq!(v("faster", Metric::LatencyP95), Verdict::Improved);
    assert_eq!(v("faster", Metric::DecodeTokensPerS), Verdict::Improved);
    assert_eq!(v("same", Metric::LatencyP95), Verdict::Pass);
    assert_eq!(v("same", Metric::DecodeTokensPerS), Verdict::Pass);
    assert_eq!(v("bit_slower", Metric::LatencyP95), Verdict::PassWithNote);
    assert_eq!(
        v("bit_slower", Metric::DecodeTokensPerS),
        Verdict::PassWithNote
    );
    let r = row(&out, "slower", Metric::DecodeTokensPerS);
    assert!(
        r.ratio < 0.75 && r.ci_low <= r.ratio && r.ratio <= r.ci_high,
        "{r:?}"
    );
    assert_eq!(
        (r.baseline_n, r.candidate_n, r.candidate_sessions),
        (300, 300, 5)
    );
    assert!(r.note.is_none(), "{:?}", r.note);
    // Energy was not measured by either build.
    assert_eq!(out.not_measured.len(), 4);
    assert_eq!(
        out.not_measured[0],
        "pi5 slower: energy_per_token not measured"
    );
    // Rows: failures first, then by device, cell, metric.
    let order: Vec<(Verdict, &str)> = out
        .rows
        .iter()
        .map(|r| (r.verdict, r.cell.as_str()))
        .collect();
    assert_eq!(order[0], (Verdict::Fail, "slower"));
    assert!(order.windows(2).all(|w| w[0] <= w[1]), "{order:?}");
    assert_eq!(out.exit_code, 1);
    let worst = row(&out, "slower", Metric::DecodeTokensPerS);
    let expected_worst =
        if (1.0 / worst.ratio).ln() > row(&out, "slower", Metric::LatencyP95).ratio.ln() {
            "median decode tokens/s -3"
        } else {
            "p95 pass latency +3"
        };
    assert!(
            out.headline.starts_with(
                "2 regressions over budget, 2 regressed within budget, 2 unchanged, 2 improved; worst: "
            ) && out.headline.contains(expected_worst)
                && out.headline.ends_with(" on pi5 / slower"),
            "{}",
            out.headline
        );
    // The same inputs give the same outcome.
    assert_eq!(
        out,
        gate(
            &base,
            &cand,
            &config(&[
                Metric::LatencyP95,
                Metric::DecodeTokensPerS,
                Metric::EnergyPerToken
            ])
        )
    );
}

#[test]
fn p99_below_1000_passes_only_warns() {
    let base = data(vec![simple("c", 1.0, 1.0, 1)]);
    let cand = data(vec![simple("c", 1.3, 1.0, 2)]);
    let out = gate(
        &base,
        &cand,
        &config(&[Metric::LatencyP99, Metric::PeakRss]),
    );
    let r = row(&out, "c", Metric::LatencyP99);
    assert_eq!(r.verdict, Verdict::Warn);
    assert_eq!(
        r.note.as_deref(),
        Some("p99 from 300 passes per build: informational below 1000")
    );
    assert_eq!(row(&out, "c", Metric::PeakRss).verdict, Verdict::Pass);
    assert_eq!(out.exit_code, 0);
    assert_eq!(out.headline, "1 warning, 1 unchanged");
    // With 1000 passes per build it fails.
    let base = data(vec![cell(key("c", 2, SHA_A), 5, 200, 1.0, 1.0, 1)]);
    let cand = data(vec![cell(key("c", 2, SHA_A), 5, 200, 1.3, 1.0, 2)]);
    let out = gate(&base, &cand, &config(&[Metric::LatencyP99]));
    assert_eq!(out.rows[0].verdict, Verdict::Fail);
    assert_eq!(out.rows[0].note, None);
    assert_eq!(out.exit_code, 1);
}

#[test]
fn few_sessions_are_noted() {
    let base = data(vec![cell(key("c", 2, SHA_A), 1, 100, 1.0, 1.0, 1)]);
    let cand = data(vec![cell(key("c", 2, SHA_A), 1, 100, 1.0, 1.0, 2)]);
    let out = gate(&base, &cand, &config(&[Metric::LatencyP95]));
    assert_eq!(
            out.rows[0].note.as_deref(),
            Some("1 session per build: the interval covers pass-to-pass noise only; use sessions: 3 or more for gating")
        );
    let cand = data(vec![cell(key("c", 2, SHA_A), 2, 100, 1.0, 1.0, 2)]);
    let out = gate(&base, &cand, &config(&[Metric::LatencyP95]));
    assert!(out.rows[0]
        .note
        .as_deref()
        .unwrap()
        .starts_with("1 session in the baseline, 2 in the candidate"));
}

#[test]
fn classification_and_sessions_needed() {
    use Verdict::*;
    let c = |r, l, h| classify(r, l, h, 0.10, 0.02, false);
    assert_eq!(c(1.15, 1.11, 1.2), Fail);
    assert_eq!(c(1.08, 1.04, 1.12), Inconclusive);
    assert_eq!(c(1.06, 1.03, 1.09), PassWithNote);
    assert_eq!(c(1.06, 1.01, 1.09), Pass);
    assert_eq!(c(0.95, 0.93, 0.99), Improved);
    assert_eq!(c(0.99, 0.97, 0.999), Pass);
    assert_eq!(c(1.0, 1.0, 1.10), Pass);
    let h = |r, l, h| classify(r, l, h, 0.10, 0.02, true);
    assert_eq!(h(0.8, 0.75, 0.85), Fail);
    assert_eq!(h(0.9, 0.85, 0.95), Inconclusive);
    assert_eq!(h(0.95, 0.92, 0.97), PassWithNote);
    assert_eq!(h(1.05, 1.01, 1.1), Improved);
    assert_eq!(h(1.0, 0.9, 1.1), Pass);

    // An inconclusive row says how many sessions would decide it.
    let base = data(vec![simple("c", 1.0, 1.0, 1)]);
    let mut cand = data(vec![simple("c", 1.1, 1.0, 2)]);
    // Session offsets make the interval wide enough to straddle +10%.
    for (i, s) in cand.cells[0].sessions.iter_mut().enumerate() {
        for p in &mut s.passes {
            p.latency_ms *= [0.94, 1.06, 1.0, 0.97, 1.03][i];
        }
    }
    let out = gate(&base, &cand, &config(&[Metric::LatencyP95]));
    let r = &out.rows[0];
    assert_eq!(r.verdict, Verdict::Inconclusive, "{r:?}");
    let needed = r.sessions_needed.unwrap();
    assert!((6..=1000).contains(&needed), "{needed}");
    assert_eq!(out.exit_code, 2);
    assert_eq!(out.headline, "1 inconclusive");
}

#[test]
fn the_candidate_must_fit_its_size_and_memory_budgets_whatever_the_baseline() {
    let baseline = data(vec![simple("c", 1.0, 1.0, 1), simple("d", 1.0, 1.0, 2)]);
    let with_file = |id: &str, seed: u64| {
        let mut c = simple(id, 1.0, 1.0, seed);
        c.model_file_bytes = Some(253_113_024);
        c
    };
    // Two cells of one model file: one size row; a memory row each (peak 1 GiB).
    let candidate = data(vec![with_file("c", 3), with_file("d", 4)]);
    let mut cfg = config(&[Metric::LatencyP95]);
    let o = gate(&baseline, &candidate, &cfg);
    assert_eq!(o.exit_code, 0, "{:#?}", o.limit_rows);
    assert_eq!(o.limit_rows.len(), 3, "{:#?}", o.limit_rows);
    assert!(o.limit_rows.iter().all(|r| !r.over), "the defaults fit");

    cfg.limits.size_bytes = Some(100_000_000);
    cfg.limits.memory_bytes = Some(1_200_000_000);
    let o = gate(&baseline, &candidate, &cfg);
    assert_eq!(o.exit_code, 1, "no regression, but over both limits");
    assert!(o.rows.iter().all(|r| r.verdict != Verdict::Fail));
    assert!(
        o.headline.starts_with("3 over a size or memory budget"),
        "{}",
        o.headline
    );
    let size = o
        .limit_rows
        .iter()
        .find(|r| r.limit == crate::budget::Limit::Size)
        .unwrap();
    assert_eq!(
        size.message,
        "model file = 253.1 MB is over the size budget of 100.0 MB by 153.1 MB"
    );
    let memory = o
        .limit_rows
        .iter()
        .find(|r| r.limit == crate::budget::Limit::Memory)
        .unwrap();
    assert_eq!(
        memory.measured_bytes,
        ((1u64 << 30) as f64 * 1.2).round() as u64
    );
    assert!(
        memory.message.starts_with(
            "peak RSS 1.07 GB (1024.0 MiB) + 20% = 1.29 GB is over the memory budget of \
                 1.20 GB"
        ),
        "{}",
        memory.message
    );

    cfg.limits = Limits {
        size_bytes: None,
        memory_bytes: None,
    };
    let o = gate(&baseline, &candidate, &cfg);
    assert!(o.limit_rows.is_empty());
    assert_eq!(o.exit_code, 0);
}
