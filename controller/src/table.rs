//! The end-of-run table: one row per cell, percentiles from the raw passes.

use meltbench_reports::stats::percentile::Distribution;
use meltbench_reports::summary::CellSummary;
use tabled::builder::Builder;
use tabled::settings::Style;

fn ms3(d: &Option<Distribution>) -> String {
    d.as_ref().map_or("-".into(), |d| {
        format!("{:.1} / {:.1} / {:.1}", d.p50, d.p95, d.p99)
    })
}

fn rate(d: &Option<Distribution>) -> String {
    d.as_ref().map_or("-".into(), |d| format!("{:.1}", d.p50))
}

pub fn render(cells: &[CellSummary]) -> String {
    let mut b = Builder::default();
    b.push_record([
        "device",
        "cell",
        "passes",
        "TTFT ms p50/p95/p99",
        "decode ms/tok p50/p95/p99",
        "prefill tok/s",
        "decode tok/s",
        "peak RSS MiB",
        "cold start ms p50",
    ]);
    for c in cells {
        let passes = match &c.error {
            Some(_) => format!("{} (failed)", c.passes),
            None => c.passes.to_string(),
        };
        b.push_record([
            c.key.device.clone(),
            c.key.id.clone(),
            passes,
            ms3(&c.ttft_ms),
            ms3(&c.decode_ms_per_token),
            rate(&c.prefill_tokens_per_s),
            rate(&c.decode_tokens_per_s),
            c.peak_rss_bytes
                .map_or("-".into(), |b| format!("{:.1}", b as f64 / 1048576.0)),
            c.cold_start_ms
                .as_ref()
                .map_or("-".into(), |d| format!("{:.1}", d.p50)),
        ]);
    }
    let mut t = b.build();
    t.with(Style::rounded());
    t.to_string()
}

/// The gate's verdicts, worst first, as the terminal shows them.
pub fn render_gate(outcome: &meltbench_reports::compare::GateOutcome) -> String {
    let mut b = Builder::default();
    b.push_record([
        "verdict",
        "device",
        "cell",
        "metric",
        "baseline",
        "candidate",
        "change [CI]",
        "budget",
        "sessions",
        "note",
    ]);
    let pct = |r: f64| format!("{:+.1}%", (r - 1.0) * 100.0);
    for r in &outcome.rows {
        let mut note = r.note.clone().unwrap_or_default();
        if let Some(k) = r.sessions_needed {
            if !note.is_empty() {
                note.push_str("; ");
            }
            note.push_str(&format!("about {k} sessions per build would decide"));
        }
        let cell = if r.cell == r.baseline_cell {
            r.cell.clone()
        } else {
            format!("{} (baseline {})", r.cell, r.baseline_cell)
        };
        b.push_record([
            r.verdict.name().to_string(),
            r.device.clone(),
            cell,
            r.metric.label().to_string(),
            format!("{:.4} {}", r.baseline, r.metric.unit()),
            format!("{:.4} {}", r.candidate, r.metric.unit()),
            format!("{} [{}, {}]", pct(r.ratio), pct(r.ci_low), pct(r.ci_high)),
            format!(
                "{}{:.0}%",
                if r.metric.higher_is_better() {
                    "-"
                } else {
                    "+"
                },
                r.budget * 100.0
            ),
            format!("{} vs {}", r.baseline_sessions, r.candidate_sessions),
            note,
        ]);
    }
    let mut t = b.build();
    t.with(Style::rounded());
    t.to_string()
}
