//! Bencher Metric Format (BMF) of the candidate's figures, for `bencher run --adapter json`.

use crate::dataset::CellData;
use crate::figures::CellFigures;
use crate::report::ReportInput;
use crate::stats::percentile::Distribution;
use serde_json::{json, Map, Value};

/// Bencher Metric Format for the candidate runs:
/// `{ "<device>/<cell id>": { "<measure>": {"value": x, "lower_value": l, "upper_value": u} } }`.
///
/// Measures, each from the pooled measured passes of the cell (type-7 percentiles):
/// `latency-p95-ms`, `latency-p99-ms`, `ttft-p95-ms`, `decode-step-p95-ms` (every decode step),
/// `decode-tokens-per-s` and `prefill-tokens-per-s` (medians of the per-pass rates),
/// `peak-rss-bytes` (the largest VmHWM of any session), `cold-start-ms` (median) and
/// `energy-j-per-token` (median). A measure without data is left out, and so is a cell
/// without any measure.
///
/// `lower_value` / `upper_value` are the ends of the distribution-free 95% interval of the
/// quantile from order statistics (binomial ranks), the interval every report prints
/// ([`CellFigures`]); an end is left out when the sample is too small to give it (p95's upper
/// end needs n >= 72, p99's n >= 368, the median's n >= 6). The interval treats
/// pooled passes as independent, so it is narrower than the gate's session-level bootstrap;
/// it is meant for Bencher's plots, not for verdicts. `peak-rss-bytes` has no interval.
pub fn bencher_bmf(input: &ReportInput) -> Value {
    let mut out = Map::new();
    for cell in &input.candidate.cells {
        let measures = cell_measures(cell);
        if !measures.is_empty() {
            out.insert(
                format!("{}/{}", cell.key.device, cell.key.id),
                Value::Object(measures),
            );
        }
    }
    Value::Object(out)
}

fn cell_measures(cell: &CellData) -> Map<String, Value> {
    let f = CellFigures::of(cell);
    let mut m = Map::new();
    let mut quantile = |slug: &str, d: &Option<Distribution>, p: Percentile| {
        if let Some(d) = d {
            m.insert(slug.to_string(), measure(d, p));
        }
    };
    quantile("latency-p95-ms", &f.latency_ms, Percentile::P95);
    quantile("latency-p99-ms", &f.latency_ms, Percentile::P99);
    quantile("ttft-p95-ms", &f.ttft_ms, Percentile::P95);
    quantile(
        "decode-step-p95-ms",
        &f.decode_ms_per_token,
        Percentile::P95,
    );
    quantile(
        "decode-tokens-per-s",
        &f.decode_tokens_per_s,
        Percentile::P50,
    );
    quantile(
        "prefill-tokens-per-s",
        &f.prefill_tokens_per_s,
        Percentile::P50,
    );
    quantile("cold-start-ms", &f.cold_start_ms, Percentile::P50);
    quantile("energy-j-per-token", &f.energy_j_per_token, Percentile::P50);
    if let Some(b) = f.peak_rss_bytes {
        m.insert("peak-rss-bytes".to_string(), json!({ "value": b }));
    }
    m
}

#[derive(Clone, Copy)]
enum Percentile {
    P50,
    P95,
    P99,
}

/// `{"value": ...}` with each end of its interval that the sample gives ([`CellFigures`]).
fn measure(d: &Distribution, p: Percentile) -> Value {
    let (value, ci) = match p {
        Percentile::P50 => (d.p50, d.ci95.p50),
        Percentile::P95 => (d.p95, d.ci95.p95),
        Percentile::P99 => (d.p99, d.ci95.p99),
    };
    let mut o = Map::new();
    o.insert("value".into(), json!(value));
    if let Some(lo) = ci.low {
        o.insert("lower_value".into(), json!(lo));
    }
    if let Some(hi) = ci.high {
        o.insert("upper_value".into(), json!(hi));
    }
    Value::Object(o)
}

/// Bencher Metric Format ([`bencher_bmf`]).
pub struct Bencher;

impl super::Exporter for Bencher {
    fn name(&self) -> &'static str {
        "bencher"
    }

    fn about(&self) -> &'static str {
        "Bencher Metric Format JSON of the candidate's figures (`bencher run --adapter json`)"
    }

    fn extension(&self) -> &'static str {
        "json"
    }

    fn render(&self, input: &ReportInput) -> Result<String, super::ExportError> {
        Ok(super::json::pretty(&bencher_bmf(input)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cell_key::CellKey;
    use crate::dataset::{Dataset, PassData, SessionData};

    fn pass(latency: f64) -> PassData {
        PassData {
            start_s: 0.0,
            warmup: false,
            latency_ms: latency,
            ttft_ms: latency / 10.0,
            decode_step_ms: vec![1.0, 2.0],
            prefill_tokens_per_s: Some(1000.0 / latency),
            decode_tokens_per_s: Some(latency),
            rss_hwm_bytes: Some(1000),
            temp_c: None,
            power_w: None,
            energy_j_per_token: None,
            cpu_mhz: None,
            split: Default::default(),
        }
    }

    fn cell(device: &str, id: &str, sessions: Vec<SessionData>, cold: Vec<f64>) -> CellData {
        CellData {
            key: CellKey {
                id: id.into(),
                device: device.into(),
                model: "m".into(),
                model_sha256: "abc".into(),
                precision: "q4_0".into(),
                scenario: "chat".into(),
                threads: 4,
                state: "cool".into(),
                engine: "bundled".into(),
            },
            sessions,
            cold_start_ms: cold,
            cold_start_page_cache_dropped: None,
            errors: vec![],
            states_reached: vec![],
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

    fn session(lat: &[f64], peak: Option<u64>) -> SessionData {
        SessionData {
            run_id: "r".into(),
            index: 0,
            passes: lat.iter().map(|&l| pass(l)).collect(),
            warmups: vec![],
            peak_rss_bytes: peak,
        }
    }

    fn input(d: &Dataset) -> ReportInput<'_> {
        ReportInput {
            title: "t".into(),
            candidate: d,
            baseline: None,
            gate: None,
            history: None,
            generated_utc: "2026-01-01T00:00:00Z".into(),
            command: "meltbench report".into(),
        }
    }

    fn close(v: &Value, x: f64) -> bool {
        (v.as_f64().unwrap() - x).abs() < 1e-9
    }

    #[test]
    fn bmf_keys_and_type_7_values() {
        // Latencies 1, 2, 3, 4 and 10 over two sessions: numpy gives p95 8.8, p99 9.76,
        // median 3.
        let d = Dataset {
            runs: vec![],
            cells: vec![
                cell(
                    "pixel8",
                    "chat-q4",
                    vec![
                        session(&[10.0, 1.0], Some(5000)),
                        session(&[3.0, 2.0, 4.0], None),
                    ],
                    vec![900.0, 700.0, 800.0],
                ),
                // A cell that produced nothing is not exported.
                cell("pixel8", "failed", vec![], vec![]),
            ],
        };
        let v = bencher_bmf(&input(&d));
        let o = v.as_object().unwrap();
        assert_eq!(o.keys().collect::<Vec<_>>(), ["pixel8/chat-q4"]);
        let c = &o["pixel8/chat-q4"];
        assert!(close(&c["latency-p95-ms"]["value"], 8.8));
        assert!(close(&c["latency-p99-ms"]["value"], 9.76));
        assert!(close(&c["ttft-p95-ms"]["value"], 0.88));
        assert!(close(&c["decode-tokens-per-s"]["value"], 3.0));
        // 1000 / latency: 100, 1000, 333.3, 500, 250 -> median 333.3.
        assert!(close(&c["prefill-tokens-per-s"]["value"], 1000.0 / 3.0));
        // Steps 1, 2 per pass (5 each): p95 of [1 x5, 2 x5] is 2.
        assert!(close(&c["decode-step-p95-ms"]["value"], 2.0));
        assert_eq!(c["peak-rss-bytes"]["value"], json!(5000u64));
        assert!(close(&c["cold-start-ms"]["value"], 800.0));
        assert!(c.get("energy-j-per-token").is_none());
        // Five samples bound p95 from below only (its upper end needs 72), and give the
        // median no interval at all.
        assert!(c["latency-p95-ms"].get("lower_value").is_some());
        assert!(c["latency-p95-ms"].get("upper_value").is_none());
        assert!(c["decode-tokens-per-s"].get("lower_value").is_none());
        assert!(c["decode-tokens-per-s"].get("upper_value").is_none());
    }

    #[test]
    fn bmf_interval_brackets_the_value() {
        let lat: Vec<f64> = (1..=200).map(f64::from).collect();
        let mut s = session(&lat, Some(1));
        s.passes[0].energy_j_per_token = Some(0.5);
        let d = Dataset {
            runs: vec![],
            cells: vec![cell("rpi5", "c", vec![s], vec![])],
        };
        let v = bencher_bmf(&input(&d));
        let m = &v["rpi5/c"]["latency-p95-ms"];
        let (lo, val, hi) = (
            m["lower_value"].as_f64().unwrap(),
            m["value"].as_f64().unwrap(),
            m["upper_value"].as_f64().unwrap(),
        );
        assert!(close(&m["value"], 190.05));
        assert!(lo < val && val < hi && hi <= 200.0, "{lo} {val} {hi}");
        assert!(close(&v["rpi5/c"]["energy-j-per-token"]["value"], 0.5));
        assert!(v["rpi5/c"].get("cold-start-ms").is_none());
    }
}
