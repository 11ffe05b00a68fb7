//! What the terminal shows: the end-of-run table (one row per cell, the figures of
//! [`CellFigures`]) and the gate's verdict table with the lines that explain it.

use super::{ExportError, Exporter};
use crate::cell_key::CellKey;
use crate::compare::GateOutcome;
use crate::figures::CellFigures;
use crate::history::History;
use crate::report::ReportInput;
use crate::stats::percentile::Distribution;
use crate::summary::CellSummary;
use tabled::builder::Builder;
use tabled::settings::Style;

/// The cells table without a gate, the gate's table and lines with one.
pub struct Terminal;

impl Exporter for Terminal {
    fn name(&self) -> &'static str {
        "terminal"
    }

    fn about(&self) -> &'static str {
        "the table `meltbench run` prints (or, with a gate, the verdicts `meltbench gate` prints)"
    }

    fn extension(&self) -> &'static str {
        "txt"
    }

    fn render(&self, input: &ReportInput) -> Result<String, ExportError> {
        Ok(match input.gate {
            Some(g) => gate_text(g, input.history),
            None => {
                let rows: Vec<CellRow> = input
                    .candidate
                    .cells
                    .iter()
                    .map(|c| CellRow {
                        key: &c.key,
                        figures: CellFigures::of(c),
                        failed: !c.errors.is_empty(),
                    })
                    .collect();
                cells_table(&rows) + "\n"
            }
        })
    }
}

/// One row of [`cells_table`].
pub struct CellRow<'a> {
    pub key: &'a CellKey,
    pub figures: CellFigures,
    /// The cell did not finish; its figures cover the passes that did.
    pub failed: bool,
}

impl<'a> From<&'a CellSummary> for CellRow<'a> {
    fn from(c: &'a CellSummary) -> CellRow<'a> {
        CellRow {
            key: &c.key,
            figures: c.figures.clone(),
            failed: c.error.is_some(),
        }
    }
}

fn ms3(d: &Option<Distribution>) -> String {
    d.as_ref().map_or("-".into(), |d| {
        format!("{:.1} / {:.1} / {:.1}", d.p50, d.p95, d.p99)
    })
}

fn median(d: &Option<Distribution>) -> String {
    d.as_ref().map_or("-".into(), |d| format!("{:.1}", d.p50))
}

/// The end-of-run table: one row per cell.
pub fn cells_table(cells: &[CellRow]) -> String {
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
        let f = &c.figures;
        let passes = if c.failed {
            format!("{} (failed)", f.passes)
        } else {
            f.passes.to_string()
        };
        b.push_record([
            c.key.device.clone(),
            c.key.id.clone(),
            passes,
            ms3(&f.ttft_ms),
            ms3(&f.decode_ms_per_token),
            median(&f.prefill_tokens_per_s),
            median(&f.decode_tokens_per_s),
            f.peak_rss_bytes
                .map_or("-".into(), |b| format!("{:.1}", b as f64 / 1048576.0)),
            median(&f.cold_start_ms),
        ]);
    }
    let mut t = b.build();
    t.with(Style::rounded());
    t.to_string()
}

/// The gate's verdicts, worst first.
pub fn gate_table(outcome: &GateOutcome) -> String {
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

/// What `meltbench gate` prints: the verdict table, what could not be compared or measured,
/// trend alerts, and the headline with the outcome.
pub fn gate_text(outcome: &GateOutcome, history: Option<&History>) -> String {
    let mut human = String::new();
    if !outcome.rows.is_empty() {
        human.push_str(&gate_table(outcome));
        human.push('\n');
    }
    for n in &outcome.not_comparable {
        human.push_str(&format!(
            "not comparable: {} {} (only in the {}): {}\n",
            n.device, n.cell, n.side, n.reason
        ));
    }
    for n in &outcome.not_measured {
        human.push_str(&format!("not measured: {n}\n"));
    }
    // Over-budget lines only: a run of fitting models would repeat "within" for every cell.
    for r in outcome.limit_rows.iter().filter(|r| r.over) {
        human.push_str(&format!(
            "OVER {}: {} {}: {}\n",
            r.limit.key(),
            r.device,
            r.cell,
            r.message
        ));
    }
    if let Some(h) = history {
        for a in &h.alerts {
            human.push_str(&format!(
                "trend alert: {} {}: {}\n",
                a.device, a.cell, a.message
            ));
        }
    }
    human.push_str(&format!(
        "{}: {}\n",
        match outcome.exit_code {
            0 => "gate passed",
            1 => "gate FAILED",
            _ => "gate inconclusive",
        },
        outcome.headline
    ));
    human
}
