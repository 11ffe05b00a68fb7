//! Every per-cell number a report shows, computed once from the cell's raw passes: the
//! terminal table, summary.json, report.md, report.html and the JSON exports all print these
//! values, so the same cell has the same p95 (and the same interval) everywhere.

use crate::dataset::CellData;
use crate::stats::percentile::Distribution;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CellFigures {
    /// Measured passes (warm-ups excluded) over every session.
    pub passes: usize,
    pub warmup_passes: usize,
    /// Engine processes that produced at least one pass.
    pub sessions: usize,
    /// Whole-pass latency (tokenize + prefill + decode + detokenize), ms.
    #[serde(default)]
    pub latency_ms: Option<Distribution>,
    pub ttft_ms: Option<Distribution>,
    /// Every decode step of every measured pass, ms per token.
    pub decode_ms_per_token: Option<Distribution>,
    /// One rate per pass.
    pub prefill_tokens_per_s: Option<Distribution>,
    pub decode_tokens_per_s: Option<Distribution>,
    /// Energy of a pass over the tokens it generated, where the device measures energy.
    #[serde(default)]
    pub energy_j_per_token: Option<Distribution>,
    /// Largest resident set the engine reached (VmHWM) in any session.
    pub peak_rss_bytes: Option<u64>,
    /// Process start to first token, one per cold start.
    pub cold_start_ms: Option<Distribution>,
}

impl CellFigures {
    pub fn of(c: &CellData) -> CellFigures {
        let of = |v: Vec<f64>| {
            let finite: Vec<f64> = v.into_iter().filter(|x| x.is_finite()).collect();
            Distribution::of(&finite)
        };
        let per_pass = |f: fn(&crate::dataset::PassData) -> Option<f64>| {
            of(c.passes().filter_map(f).collect())
        };
        CellFigures {
            passes: c.measured_passes(),
            warmup_passes: c.sessions.iter().map(|s| s.warmups.len()).sum(),
            sessions: c.sessions.len(),
            latency_ms: per_pass(|p| Some(p.latency_ms)),
            ttft_ms: per_pass(|p| Some(p.ttft_ms)),
            decode_ms_per_token: of(c
                .passes()
                .flat_map(|p| p.decode_step_ms.iter().copied())
                .collect()),
            prefill_tokens_per_s: per_pass(|p| p.prefill_tokens_per_s),
            decode_tokens_per_s: per_pass(|p| p.decode_tokens_per_s),
            energy_j_per_token: per_pass(|p| p.energy_j_per_token),
            peak_rss_bytes: c.peak_rss_bytes(),
            cold_start_ms: of(c.cold_start_ms.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cell_key::CellKey;
    use crate::dataset::{PassData, SessionData};

    fn pass(latency_ms: f64, ttft_ms: f64, steps: &[f64], warmup: bool) -> PassData {
        let decode: f64 = steps.iter().sum();
        PassData {
            start_s: 0.0,
            warmup,
            latency_ms,
            ttft_ms,
            decode_step_ms: steps.to_vec(),
            prefill_tokens_per_s: Some(16.0 / (ttft_ms / 1e3)),
            decode_tokens_per_s: Some(steps.len() as f64 / (decode / 1e3)),
            rss_hwm_bytes: None,
            temp_c: None,
            power_w: None,
            energy_j_per_token: None,
            cpu_mhz: None,
            split: Default::default(),
        }
    }

    /// Figures against values worked out by hand (type-7 percentiles, numpy's default).
    #[test]
    fn figures_match_hand_computed_values() {
        let session = |index, passes: Vec<PassData>, peak| SessionData {
            run_id: "r".into(),
            index,
            passes,
            warmups: vec![pass(99.0, 9.0, &[9.0], true)],
            peak_rss_bytes: peak,
        };
        let cell = CellData {
            key: CellKey::default(),
            sessions: vec![
                session(
                    0,
                    vec![
                        pass(10.0, 2.0, &[1.0, 3.0], false),
                        pass(20.0, 4.0, &[2.0, 2.0], false),
                    ],
                    Some(100),
                ),
                session(1, vec![pass(40.0, 8.0, &[4.0, 4.0], false)], Some(300)),
            ],
            cold_start_ms: vec![50.0, 70.0],
            cold_start_page_cache_dropped: None,
            errors: vec![],
            states_reached: vec![],
            prompt_tokens: Some(16),
            gen_tokens: Some(3),
            model_file_bytes: None,
            weight_bytes_per_token: None,
            kernels: None,
            reported_peak_rss_bytes: Some(200),
            preludes: vec![],
            unmeasured: Default::default(),
            memory_of: None,
        };
        let f = CellFigures::of(&cell);
        assert_eq!((f.passes, f.warmup_passes, f.sessions), (3, 2, 2));
        // Latencies 10, 20, 40: h = 2 * p; p95 = 20 + 0.9 * 20, p99 = 20 + 0.98 * 20.
        let lat = f.latency_ms.unwrap();
        assert_eq!(
            (lat.p50, lat.mean, lat.min, lat.max),
            (20.0, 70.0 / 3.0, 10.0, 40.0)
        );
        assert!((lat.p95 - 38.0).abs() < 1e-12 && (lat.p99 - 39.6).abs() < 1e-12);
        // Decode steps 1, 3, 2, 2, 4, 4 sorted 1 2 2 3 4 4: h = 5 * p; p50 = 2 + 0.5 * 1.
        let step = f.decode_ms_per_token.unwrap();
        assert_eq!((step.n, step.p50, step.p95), (6, 2.5, 4.0));
        // Decode rates 2 / 4 ms, 2 / 4 ms, 2 / 8 ms: 500, 500, 250 tokens/s.
        assert_eq!(f.decode_tokens_per_s.unwrap().p50, 500.0);
        // Prefill 16 tokens in 2, 4, 8 ms: 8000, 4000, 2000 tokens/s.
        assert_eq!(f.prefill_tokens_per_s.unwrap().p50, 4000.0);
        assert_eq!(f.cold_start_ms.unwrap().p50, 60.0);
        // The largest of the sessions' peaks and the agent's end-of-cell reading.
        assert_eq!(f.peak_rss_bytes, Some(300));
        assert_eq!(f.energy_j_per_token, None);
        // Three values bound no percentile at 95%.
        assert_eq!(lat.ci95.p50.low, None);
    }
}
