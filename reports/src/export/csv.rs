//! Every pass as one CSV row (warm-ups included and flagged), for spreadsheets and pandas:
//! the raw samples every figure of the other formats is computed from.

use super::{ExportError, Exporter};
use crate::report::ReportInput;
use serde::Serialize;

pub struct PassesCsv;

/// One row; the column names are the field names.
#[derive(Serialize)]
struct Row<'a> {
    run_id: &'a str,
    device: &'a str,
    cell: &'a str,
    model: &'a str,
    precision: &'a str,
    scenario: &'a str,
    threads: usize,
    state: &'a str,
    session: usize,
    /// Position among the session's measured passes (or among its warm-ups).
    pass: usize,
    warmup: bool,
    start_s: f64,
    latency_ms: f64,
    ttft_ms: f64,
    decode_steps: usize,
    decode_ms_total: f64,
    prefill_tokens_per_s: Option<f64>,
    decode_tokens_per_s: Option<f64>,
    rss_hwm_bytes: Option<u64>,
    temp_c: Option<f64>,
    power_w: Option<f64>,
    energy_j_per_token: Option<f64>,
}

impl Exporter for PassesCsv {
    fn name(&self) -> &'static str {
        "csv"
    }

    fn about(&self) -> &'static str {
        "every pass as a CSV row (warm-ups flagged), the raw samples behind every figure"
    }

    fn extension(&self) -> &'static str {
        "csv"
    }

    fn render(&self, input: &ReportInput) -> Result<String, ExportError> {
        let mut w = csv::Writer::from_writer(Vec::new());
        for c in &input.candidate.cells {
            let k = &c.key;
            for s in &c.sessions {
                let kinds = [(true, &s.warmups), (false, &s.passes)];
                for (warmup, passes) in kinds {
                    for (i, p) in passes.iter().enumerate() {
                        w.serialize(Row {
                            run_id: &s.run_id,
                            device: &k.device,
                            cell: &k.id,
                            model: &k.model,
                            precision: &k.precision,
                            scenario: &k.scenario,
                            threads: k.threads,
                            state: &k.state,
                            session: s.index,
                            pass: i,
                            warmup,
                            start_s: p.start_s,
                            latency_ms: p.latency_ms,
                            ttft_ms: p.ttft_ms,
                            // An engine that times the decode only as a whole has no steps.
                            decode_steps: match p.decode_step_ms.len() {
                                0 => p.split.gen_tokens.saturating_sub(1),
                                n => n,
                            },
                            decode_ms_total: p.split.decode_ns as f64 / 1e6,
                            prefill_tokens_per_s: p.prefill_tokens_per_s,
                            decode_tokens_per_s: p.decode_tokens_per_s,
                            rss_hwm_bytes: p.rss_hwm_bytes,
                            temp_c: p.temp_c,
                            power_w: p.power_w,
                            energy_j_per_token: p.energy_j_per_token,
                        })
                        .expect("a row of numbers and strings always serializes");
                    }
                }
            }
        }
        let bytes = w.into_inner().expect("writing to memory cannot fail");
        Ok(String::from_utf8(bytes).expect("the fields are UTF-8"))
    }
}
