//! The gate's verdict document (`meltbench gate --json`).
//!
//! Built as a [`serde_json::Value`] so that callers decide how to print it; a value that is not
//! a finite number (a ratio over a zero baseline) becomes `null`.

use crate::compare::{GateOutcome, GateRow, Verdict};
use crate::report::ReportInput;
use serde_json::{json, Map, Value};

/// Version of the verdict document; bumped when a field changes meaning or disappears.
pub const GATE_SCHEMA_VERSION: &str = "1";

/// The verdict document: what the gate decided and why, one object per gated metric of each
/// cell pair, in the outcome's order (most severe first).
///
/// `verdict` is `pass`, `fail` or `inconclusive` and follows `exit_code` (0, 1, 2); each row's
/// `verdict` is the snake_case code of [`Verdict`] (`fail`, `warn`, `inconclusive`,
/// `pass_with_note`, `pass`, `improved`) and `verdict_name` the words the other reports show.
/// `delta_pct` and `ci_pct` are the change of the metric itself in percent (for tokens/s a
/// negative change is the bad direction; `higher_is_better` says which applies).
pub fn gate_json(outcome: &GateOutcome) -> Value {
    let verdict = match outcome.exit_code {
        0 => "pass",
        1 => "fail",
        _ => "inconclusive",
    };
    let mut counts = Map::new();
    for v in Verdict::ALL {
        let n = outcome.rows.iter().filter(|r| r.verdict == v).count();
        counts.insert(verdict_code(v).to_string(), json!(n));
    }
    counts.insert(
        "not_comparable".to_string(),
        json!(outcome.not_comparable.len()),
    );
    counts.insert(
        "not_measured".to_string(),
        json!(outcome.not_measured.len()),
    );
    counts.insert(
        "over_limit".to_string(),
        json!(outcome.limit_rows.iter().filter(|r| r.over).count()),
    );
    let config = serde_json::to_value(&outcome.config).unwrap_or(Value::Null);
    json!({
        "schema_version": GATE_SCHEMA_VERSION,
        "exit_code": outcome.exit_code,
        "verdict": verdict,
        "headline": outcome.headline,
        "counts": counts,
        "rows": outcome.rows.iter().map(row_json).collect::<Vec<_>>(),
        "not_comparable": outcome
            .not_comparable
            .iter()
            .map(|n| json!({
                "device": n.device,
                "cell": n.cell,
                "side": n.side,
                "reason": n.reason,
            }))
            .collect::<Vec<_>>(),
        "not_measured": outcome.not_measured,
        "limits": serde_json::to_value(&outcome.limit_rows).unwrap_or(Value::Null),
        "config": config,
    })
}

fn verdict_code(v: Verdict) -> &'static str {
    match v {
        Verdict::Fail => "fail",
        Verdict::Warn => "warn",
        Verdict::Inconclusive => "inconclusive",
        Verdict::PassWithNote => "pass_with_note",
        Verdict::Pass => "pass",
        Verdict::Improved => "improved",
    }
}

/// A finite number, or `null`.
fn num(x: f64) -> Value {
    if x.is_finite() {
        json!(x)
    } else {
        Value::Null
    }
}

fn pct(ratio: f64) -> Value {
    num((ratio - 1.0) * 100.0)
}

fn row_json(r: &GateRow) -> Value {
    json!({
        "device": r.device,
        "cell": r.cell,
        "baseline_cell": r.baseline_cell,
        "metric": r.metric.name(),
        "metric_label": r.metric.label(),
        "unit": r.metric.unit(),
        "higher_is_better": r.metric.higher_is_better(),
        "baseline": num(r.baseline),
        "candidate": num(r.candidate),
        "ratio": num(r.ratio),
        "ci_low": num(r.ci_low),
        "ci_high": num(r.ci_high),
        "delta_pct": pct(r.ratio),
        "ci_pct": [pct(r.ci_low), pct(r.ci_high)],
        "budget": num(r.budget),
        "verdict": verdict_code(r.verdict),
        "verdict_name": r.verdict.name(),
        "baseline_sessions": r.baseline_sessions,
        "candidate_sessions": r.candidate_sessions,
        "baseline_n": r.baseline_n,
        "candidate_n": r.candidate_n,
        "sessions_needed": r.sessions_needed,
        "note": r.note,
    })
}

/// The gate's verdict document ([`gate_json`]).
pub struct GateJson;

impl super::Exporter for GateJson {
    fn name(&self) -> &'static str {
        "json"
    }

    fn about(&self) -> &'static str {
        "the gate's verdicts as JSON (needs a gate)"
    }

    fn extension(&self) -> &'static str {
        "json"
    }

    fn render(&self, input: &ReportInput) -> Result<String, super::ExportError> {
        let g = input.gate.ok_or(super::ExportError::NeedsGate("json"))?;
        Ok(pretty(&gate_json(g)))
    }
}

pub(super) fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).expect("a JSON value always prints") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::{GateConfig, NotComparable};
    use crate::metric::Metric;

    fn close(v: &Value, x: f64) -> bool {
        (v.as_f64().unwrap() - x).abs() < 1e-9
    }

    #[test]
    fn gate_document() {
        let outcome = GateOutcome {
            config: GateConfig::default(),
            rows: vec![GateRow {
                device: "pixel8".into(),
                cell: "chat".into(),
                baseline_cell: "chat".into(),
                metric: Metric::LatencyP95,
                baseline: 100.0,
                candidate: 114.0,
                ratio: 1.14,
                ci_low: 1.11,
                ci_high: f64::INFINITY,
                budget: 0.10,
                verdict: Verdict::Fail,
                baseline_sessions: 5,
                candidate_sessions: 5,
                baseline_n: 500,
                candidate_n: 500,
                sessions_needed: None,
                note: Some("few sessions".into()),
            }],
            not_comparable: vec![NotComparable {
                device: "rpi5".into(),
                cell: "x".into(),
                side: "candidate".into(),
                reason: "model SHA-256 differs".into(),
            }],
            not_measured: vec!["pixel8/chat: energy_per_token".into()],
            limit_rows: vec![],
            exit_code: 1,
            headline: "1 regression over budget".into(),
        };
        let v = gate_json(&outcome);
        assert_eq!(v["schema_version"], "1");
        assert_eq!(v["exit_code"], 1);
        assert_eq!(v["verdict"], "fail");
        assert_eq!(v["counts"]["fail"], 1);
        assert_eq!(v["counts"]["pass"], 0);
        assert_eq!(v["counts"]["not_comparable"], 1);
        let r = &v["rows"][0];
        assert_eq!(r["metric"], "latency_p95");
        assert_eq!(r["verdict"], "fail");
        assert_eq!(r["verdict_name"], "FAIL");
        assert!(close(&r["delta_pct"], 14.0));
        assert!(r["ci_high"].is_null() && r["ci_pct"][1].is_null());
        assert_eq!(r["sessions_needed"], Value::Null);
        assert_eq!(v["not_comparable"][0]["reason"], "model SHA-256 differs");
        assert_eq!(v["not_measured"][0], "pixel8/chat: energy_per_token");
        assert_eq!(v["config"]["budgets"]["latency_p95"], 0.1);
        assert_eq!(v["config"]["noise_floor"], 0.02);
        // The document survives a round trip through text.
        let text = serde_json::to_string(&v).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), v);
    }
}
