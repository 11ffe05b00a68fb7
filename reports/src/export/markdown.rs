//! Markdown for pull-request comments and CI job summaries (GitHub-flavoured: tables and
//! `<details>` blocks).
//!
//! With a gate outcome: the verdict with its headline, a table of the rows that matter (FAIL,
//! WARN, INCONCLUSIVE, PASS regressed within budget, IMPROVED), every row in a collapsed
//! block, cells that could not be compared and why, gated metrics nobody measured, trend alerts,
//! environment differences and the commands that reproduce the runs. Without one: a table of
//! each cell's measurements.
//!
//! Every string that comes from a suite, a device or a message goes through [`escape`], so
//! that a device called `<script>` or a cell id with a `|` shows as text and cannot break
//! the table or inject HTML.

use crate::budget::fmt_bytes;
use crate::compare::{GateOutcome, GateRow, Verdict};
use crate::dataset::CellData;
use crate::figures::CellFigures;
use crate::metric::Metric;
use crate::report::ReportInput;
use crate::stats::percentile::Distribution;
use std::fmt::Write;

/// Rows shown in the "All N results" block before it is cut short (a GitHub comment holds
/// at most 65536 characters).
pub const MAX_ALL_ROWS: usize = 250;

/// The whole report as GitHub-flavoured Markdown.
pub fn render(input: &ReportInput) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## meltbench: {}\n", escape(&input.title));
    match input.gate {
        Some(g) => gate_sections(&mut out, g),
        None => measurements(&mut out, input),
    }
    trend_alerts(&mut out, input);
    environment(&mut out, input);
    let skipped: usize = input
        .candidate
        .runs
        .iter()
        .chain(input.baseline.iter().flat_map(|b| b.runs.iter()))
        .map(|r| r.skipped_lines.len())
        .sum();
    if skipped > 0 {
        let _ = writeln!(
            out,
            "⚠️ {skipped} event line(s) could not be read and were left out (a run that \
             crashed mid-write); the HTML report lists them.\n"
        );
    }
    reproduce(&mut out, &input.reproduce());
    let _ = writeln!(
        out,
        "<sub>Generated {} by meltbench.</sub>",
        escape(&input.generated_utc)
    );
    out
}

fn gate_sections(out: &mut String, g: &GateOutcome) {
    let warned = g.rows.iter().any(|r| r.verdict == Verdict::Warn);
    let verdict = match g.exit_code {
        0 if warned => "✅ PASS (with warnings)",
        0 => "✅ PASS",
        1 => "❌ FAIL",
        _ => "⚠️ INCONCLUSIVE",
    };
    let _ = writeln!(out, "### {verdict}: {}\n", escape(&g.headline));
    let worst = g.worst_row();
    if let Some(r) = worst {
        let _ = write!(
            out,
            "{}: **{}** {} on {} / {} (budget {})",
            if r.verdict == Verdict::Fail {
                "Worst regression"
            } else {
                "Worst case"
            },
            r.metric.label(),
            fmt_change(r.ratio, r.ci_low, r.ci_high),
            escape(&r.device),
            escape(&r.cell),
            fmt_budget(r.metric, r.budget),
        );
        if let (Verdict::Inconclusive, Some(s)) = (r.verdict, r.sessions_needed) {
            let _ = write!(out, "; about {s} sessions per build would decide");
        }
        out.push_str(".\n\n");
    }

    let ci = format!("{:.0}% CI", g.config.confidence * 100.0);
    let matter: Vec<&GateRow> = g
        .rows
        .iter()
        .filter(|r| r.verdict != Verdict::Pass)
        .collect();
    if matter.is_empty() {
        if !g.rows.is_empty() {
            let _ = writeln!(
                out,
                "No gated metric changed by more than the noise floor ({}%).\n",
                fmt_pct_number(g.config.noise_floor * 100.0)
            );
        }
    } else {
        rows_table(out, &matter, &ci);
        out.push('\n');
    }

    if !g.rows.is_empty() {
        let _ = writeln!(
            out,
            "<details><summary>All {} results</summary>\n",
            g.rows.len()
        );
        let all: Vec<&GateRow> = g.rows.iter().take(MAX_ALL_ROWS).collect();
        rows_table(out, &all, &ci);
        if g.rows.len() > MAX_ALL_ROWS {
            let _ = writeln!(
                out,
                "\n… and {} more; `meltbench gate --json` and the HTML report have them all.",
                g.rows.len() - MAX_ALL_ROWS
            );
        }
        out.push_str("\n</details>\n\n");
    }

    if !g.not_comparable.is_empty() {
        let _ = writeln!(
            out,
            "<details{}><summary>Not comparable: {} cell(s)</summary>\n",
            if g.rows.is_empty() { " open" } else { "" },
            g.not_comparable.len()
        );
        out.push_str("| Device | Cell | Side | Reason |\n|---|---|---|---|\n");
        for n in &g.not_comparable {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                escape(&n.device),
                escape(&n.cell),
                escape(&n.side),
                escape(&n.reason)
            );
        }
        out.push_str("\n</details>\n\n");
    }

    limits_table(out, g);

    if !g.not_measured.is_empty() {
        out.push_str("**Not measured** (gated, but neither build has data):\n\n");
        for m in &g.not_measured {
            let _ = writeln!(out, "- {}", escape(m));
        }
        out.push('\n');
    }
}

/// The candidate against its size and memory budgets: open when one is over.
fn limits_table(out: &mut String, g: &GateOutcome) {
    if g.limit_rows.is_empty() {
        return;
    }
    let over = g.limit_rows.iter().filter(|r| r.over).count();
    let _ = writeln!(
        out,
        "<details{}><summary>Size and memory budgets: {over} of {} over</summary>\n",
        if over > 0 { " open" } else { "" },
        g.limit_rows.len()
    );
    out.push_str(
        "| Device | Cell | Budget | Measured | Limit | Verdict |\n|---|---|---|---:|---:|---|\n",
    );
    for r in &g.limit_rows {
        let _ = writeln!(
            out,
            "| {} | {} | `{}` ({}) | {} | {} | {} |",
            escape(&r.device),
            escape(&r.cell),
            r.limit.key(),
            r.limit.measured(),
            fmt_bytes(r.measured_bytes),
            fmt_bytes(r.budget_bytes),
            if r.over { "❌ OVER" } else { "✅ within" }
        );
    }
    out.push_str("\n</details>\n\n");
}

fn rows_table(out: &mut String, rows: &[&GateRow], ci: &str) {
    let _ = writeln!(
        out,
        "| Device | Cell | Metric | Baseline | Candidate | Δ % [{ci}] | Budget | Verdict | \
         Sessions (n) | Note |"
    );
    out.push_str("|---|---|---|--:|--:|--:|--:|---|--:|---|\n");
    for r in rows {
        let cell = if r.baseline_cell != r.cell {
            format!(
                "{} (baseline {})",
                escape(&r.cell),
                escape(&r.baseline_cell)
            )
        } else {
            escape(&r.cell)
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} ({}) / {} ({}) | {} |",
            escape(&r.device),
            cell,
            r.metric.label(),
            fmt_value(r.baseline, r.metric.unit()),
            fmt_value(r.candidate, r.metric.unit()),
            fmt_change(r.ratio, r.ci_low, r.ci_high),
            fmt_budget(r.metric, r.budget),
            chip(r.verdict),
            r.baseline_sessions,
            r.baseline_n,
            r.candidate_sessions,
            r.candidate_n,
            row_note(r).map(|n| escape(&n)).unwrap_or_default(),
        );
    }
}

/// Icon and word, never colour or icon alone.
fn chip(v: Verdict) -> String {
    let icon = match v {
        Verdict::Fail => "❌",
        Verdict::Warn => "⚠️",
        Verdict::Inconclusive => "❔",
        Verdict::PassWithNote => "🔸",
        Verdict::Pass => "✅",
        Verdict::Improved => "⚡",
    };
    format!("{icon} {}", v.name())
}

fn measurements(out: &mut String, input: &ReportInput) {
    let d = input.candidate;
    let mut devices: Vec<&str> = d.cells.iter().map(|c| c.key.device.as_str()).collect();
    devices.sort_unstable();
    devices.dedup();
    let _ = writeln!(
        out,
        "### Measurements: {} cell(s) on {} device(s), {} measured passes\n",
        d.cells.len(),
        devices.len(),
        d.total_passes()
    );
    if d.cells.is_empty() {
        out.push_str("No cells were recorded.\n\n");
        return;
    }
    out.push_str(
        "| Device | Cell | Passes | Sessions | p50 ms | p95 ms | p99 ms | TTFT p95 ms | \
         Decode tok/s (median) | Peak RSS MiB | Note |\n\
         |---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|\n",
    );
    for c in &d.cells {
        measurement_row(out, c);
    }
    out.push('\n');
}

fn measurement_row(out: &mut String, c: &CellData) {
    let f = CellFigures::of(c);
    let dash = || "-".to_string();
    let q = |d: &Option<Distribution>, p: fn(&Distribution) -> f64| {
        d.as_ref().map(|d| super::number(p(d))).unwrap_or_else(dash)
    };
    let note = if c.errors.is_empty() {
        String::new()
    } else {
        format!("error: {}", escape(&c.errors.join("; ")))
    };
    let _ = writeln!(
        out,
        "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
        escape(&c.key.device),
        escape(&c.key.id),
        f.passes,
        f.sessions,
        q(&f.latency_ms, |d| d.p50),
        q(&f.latency_ms, |d| d.p95),
        q(&f.latency_ms, |d| d.p99),
        q(&f.ttft_ms, |d| d.p95),
        q(&f.decode_tokens_per_s, |d| d.p50),
        f.peak_rss_bytes
            .map(|b| format!("{:.1}", b as f64 / 1048576.0))
            .unwrap_or_else(dash),
        note,
    );
}

fn trend_alerts(out: &mut String, input: &ReportInput) {
    let Some(h) = input.history else { return };
    if h.alerts.is_empty() {
        return;
    }
    out.push_str("### Trend alerts\n\n");
    for a in &h.alerts {
        let steps: Vec<String> = a.step_ratios.iter().map(|r| fmt_pct(*r)).collect();
        let releases: Vec<String> = a.releases.iter().map(|r| escape(r)).collect();
        let _ = writeln!(
            out,
            "- ⚠️ **{} / {}**, {}: {} (each step worse by {}). {}",
            escape(&a.device),
            escape(&a.cell),
            a.metric.label(),
            releases.join(" → "),
            steps.join(", "),
            escape(&a.message),
        );
    }
    out.push('\n');
}

fn environment(out: &mut String, input: &ReportInput) {
    if input.baseline.is_none() {
        return;
    }
    let diffs: Vec<_> = input
        .environment()
        .into_iter()
        .filter(|r| r.differs)
        .collect();
    if diffs.is_empty() {
        out.push_str("Environment: baseline and candidate match on every recorded field.\n\n");
        return;
    }
    out.push_str(
        "### Environment differences\n\n| Field | Baseline | Candidate |\n|---|---|---|\n",
    );
    for r in diffs {
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            escape(&r.field),
            escape(&r.baseline),
            escape(&r.candidate)
        );
    }
    out.push('\n');
}

fn reproduce(out: &mut String, commands: &[String]) {
    if commands.is_empty() {
        return;
    }
    let body = commands.join("\n");
    // A fence longer than any run of backticks inside, so a command cannot close it.
    let longest = body.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    let _ = writeln!(out, "### Reproduce\n\n{fence}sh\n{body}\n{fence}\n");
}

/// Makes `s` plain text in Markdown, inline or in a table cell: HTML-significant characters
/// become entities, Markdown punctuation is backslash-escaped, `|` cannot end a cell, and line
/// breaks become `<br>`; other control characters are dropped.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '`' => out.push_str("&#96;"),
            '\\' | '|' | '*' | '_' | '[' | ']' | '~' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("<br>"),
            '\t' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// A number with about three significant digits after the point for small values.
pub(crate) fn fmt_num(x: f64) -> String {
    if x.is_nan() {
        return "n/a".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "∞" } else { "-∞" }.into();
    }
    let a = x.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 100.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        let decimals = (2 - a.log10().floor() as i32).clamp(3, 9) as usize;
        format!("{x:.decimals$}")
    }
}

/// `137.0 ms`, `42.10 tok/s`.
pub(crate) fn fmt_value(x: f64, unit: &str) -> String {
    format!("{} {unit}", fmt_num(x))
}

/// A ratio as a signed change: `+14.2%`.
pub(crate) fn fmt_pct(ratio: f64) -> String {
    let d = (ratio - 1.0) * 100.0;
    if d.is_nan() {
        return "n/a".into();
    }
    if d.is_infinite() {
        return if d > 0.0 { "+∞%" } else { "-∞%" }.into();
    }
    // Rounded first so that a tiny negative change does not print as "-0.0%".
    let r = (d * 10.0).round() / 10.0;
    let r = if r == 0.0 { 0.0 } else { r };
    format!("{r:+.1}%")
}

/// The change with its interval: `+14.2% [+11.0%, +17.9%]`.
pub(crate) fn fmt_change(ratio: f64, ci_low: f64, ci_high: f64) -> String {
    format!(
        "{} [{}, {}]",
        fmt_pct(ratio),
        fmt_pct(ci_low),
        fmt_pct(ci_high)
    )
}

fn fmt_pct_number(p: f64) -> String {
    if (p - p.round()).abs() < 1e-9 {
        format!("{p:.0}")
    } else {
        format!("{p:.1}")
    }
}

/// The budget in the metric's bad direction: `+10%` for latency, `-10%` for tokens/s.
pub(crate) fn fmt_budget(metric: Metric, budget: f64) -> String {
    let sign = if metric.higher_is_better() { "-" } else { "+" };
    format!("{sign}{}%", fmt_pct_number(budget * 100.0))
}

/// The row's note, with how many sessions would decide an INCONCLUSIVE row.
pub(crate) fn row_note(r: &GateRow) -> Option<String> {
    let mut parts: Vec<String> = r.note.iter().cloned().collect();
    if let (Verdict::Inconclusive, Some(s)) = (r.verdict, r.sessions_needed) {
        parts.push(format!("about {s} sessions per build would decide"));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// report.md: the gate's verdicts when there is a gate, the measurements, the environment.
pub struct Markdown;

impl super::Exporter for Markdown {
    fn name(&self) -> &'static str {
        "markdown"
    }

    fn about(&self) -> &'static str {
        "report.md: verdicts, measurements and environment for a pull-request comment"
    }

    fn extension(&self) -> &'static str {
        "md"
    }

    fn render(&self, input: &ReportInput) -> Result<String, super::ExportError> {
        Ok(render(input))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cell_key::CellKey;
    use crate::compare::{GateConfig, NotComparable};
    use crate::dataset::{Dataset, LoadedRunInfo, PassData, SessionData};
    use crate::history::{History, TrendAlert};
    use crate::runstore::RunManifest;

    fn row(device: &str, cell: &str, metric: Metric, verdict: Verdict, ratio: f64) -> GateRow {
        GateRow {
            device: device.into(),
            cell: cell.into(),
            baseline_cell: cell.into(),
            metric,
            baseline: 120.0,
            candidate: 120.0 * ratio,
            ratio,
            ci_low: ratio - 0.03,
            ci_high: ratio + 0.03,
            budget: 0.10,
            verdict,
            baseline_sessions: 5,
            candidate_sessions: 5,
            baseline_n: 500,
            candidate_n: 500,
            sessions_needed: None,
            note: None,
        }
    }

    fn run(version: &str, command: &str) -> LoadedRunInfo {
        LoadedRunInfo {
            dir: "runs/x".into(),
            manifest: RunManifest {
                run_id: "r".into(),
                suite_name: "ci-smoke".into(),
                suite_path: "suites/ci-smoke.yaml".into(),
                suite_yaml: String::new(),
                meltbench_version: version.into(),
                meltbench_commit: "abc".into(),
                suite_git_commit: None,
                started_utc: "2026-01-01T00:00:00Z".into(),
                finished_utc: None,
                command: command.into(),
                devices: vec![],
                cells: vec![],
                devices_path: None,
                attempts: Vec::new(),
            },
            skipped_lines: vec![],
        }
    }

    fn input<'a>(
        cand: &'a Dataset,
        base: Option<&'a Dataset>,
        gate: Option<&'a GateOutcome>,
        history: Option<&'a History>,
    ) -> ReportInput<'a> {
        ReportInput {
            title: "ci-smoke: b vs a".into(),
            candidate: cand,
            baseline: base,
            gate,
            history,
            generated_utc: "2026-01-02T00:00:00Z".into(),
            command: "meltbench gate runs/a runs/b".into(),
        }
    }

    /// Every table line has as many unescaped `|` as its header.
    fn check_tables(md: &str) {
        let pipes = |l: &str| {
            let b = l.as_bytes();
            (0..b.len())
                .filter(|&i| b[i] == b'|' && (i == 0 || b[i - 1] != b'\\'))
                .count()
        };
        let mut want = None;
        for l in md.lines() {
            if l.starts_with('|') {
                let n = pipes(l);
                assert_eq!(*want.get_or_insert(n), n, "ragged table line: {l}");
            } else {
                want = None;
            }
        }
    }

    #[test]
    fn gate_report_escapes_and_sections() {
        let evil = "<script>alert(1)</script>";
        let mut inc = row(
            "pixel8",
            "chat",
            Metric::TtftP95,
            Verdict::Inconclusive,
            1.08,
        );
        inc.sessions_needed = Some(12);
        let mut warn = row("pixel8", "chat", Metric::LatencyP99, Verdict::Warn, 1.2);
        warn.note = Some("p99 with 500 passes\nwarning only".into());
        let g = GateOutcome {
            config: GateConfig::default(),
            rows: vec![
                row(evil, "chat|q4", Metric::LatencyP95, Verdict::Fail, 1.142),
                warn,
                inc,
                row(
                    "pixel8",
                    "chat",
                    Metric::DecodeTokensPerS,
                    Verdict::Improved,
                    1.2,
                ),
                row("pixel8", "chat", Metric::PeakRss, Verdict::Pass, 1.0),
            ],
            not_comparable: vec![NotComparable {
                device: "rpi5".into(),
                cell: "q8`x`".into(),
                side: "candidate".into(),
                reason: "model SHA-256 differs (baseline 1a2b, candidate 3c4d)".into(),
            }],
            not_measured: vec!["pixel8/chat: energy_per_token".into()],
            limit_rows: vec![],
            exit_code: 1,
            headline: "1 regression over budget, 1 inconclusive, 1 improved, 1 unchanged".into(),
        };
        let history = History {
            entries: vec![],
            alerts: vec![TrendAlert {
                device: "pixel8".into(),
                cell: "chat".into(),
                metric: Metric::LatencyP95,
                releases: vec!["v1".into(), "v2".into(), "v3".into(), "v4".into()],
                step_ratios: vec![1.06, 1.07, 1.055],
                message: "three releases each more than 5% slower".into(),
            }],
        };
        let mut cand = Dataset::default();
        cand.runs
            .push(run("0.2.0", "meltbench run suites/ci-smoke.yaml ```"));
        let mut base = Dataset::default();
        base.runs
            .push(run("0.1.0", "meltbench run suites/ci-smoke.yaml"));
        let md = render(&input(&cand, Some(&base), Some(&g), Some(&history)));

        assert!(!md.contains("<script>"), "{md}");
        assert!(md.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(md.contains("chat\\|q4"));
        assert!(md.contains("q8&#96;x&#96;"));
        check_tables(&md);

        assert!(md.starts_with("## meltbench: ci-smoke: b vs a\n"));
        assert!(md.contains("### ❌ FAIL: 1 regression over budget"));
        assert!(md.contains(
            "Worst regression: **p95 pass latency** +14.2% [+11.2%, +17.2%] on \
             &lt;script&gt;alert(1)&lt;/script&gt; / chat\\|q4 (budget +10%)."
        ));
        // The table of rows that matter has the four non-PASS rows; all five are in details.
        let (top, rest) = md
            .split_once("<details><summary>All 5 results</summary>")
            .unwrap();
        assert!(top.contains("❌ FAIL") && top.contains("⚠️ WARN"));
        assert!(top.contains("❔ INCONCLUSIVE") && top.contains("⚡ IMPROVED"));
        assert!(!top.contains("peak RSS"));
        assert!(top.contains("about 12 sessions per build would decide"));
        assert!(top.contains("p99 with 500 passes<br>warning only"));
        assert!(top.contains("| 120.0 ms | 137.0 ms | +14.2% [+11.2%, +17.2%] | +10% |"));
        assert!(top.contains("| -10% | ⚡ IMPROVED |"));
        let (all, rest) = rest.split_once("</details>").unwrap();
        assert_eq!(all.lines().filter(|l| l.starts_with("| ")).count(), 6);
        assert!(all.contains("✅ PASS"));

        assert!(rest.contains("<details><summary>Not comparable: 1 cell(s)</summary>"));
        assert!(rest.contains("| rpi5 | q8&#96;x&#96; | candidate | model SHA-256 differs"));
        assert!(rest.contains("- pixel8/chat: energy\\_per\\_token"));
        assert!(rest.contains("### Trend alerts"));
        assert!(rest.contains("v1 → v2 → v3 → v4 (each step worse by +6.0%, +7.0%, +5.5%)"));
        assert!(rest.contains("| meltbench version | 0.1.0 | 0.2.0 |"));
        // A command with backticks cannot close the fence.
        assert!(rest.contains(
            "### Reproduce\n\n````sh\nmeltbench run suites/ci-smoke.yaml ```\n\
             meltbench gate runs/a runs/b\n````\n"
        ));
    }

    #[test]
    fn reproduce_lists_each_command_once() {
        // As `meltbench run` leaves it: the report's command is the run's own.
        let mut cand = Dataset::default();
        cand.runs.push(run("0.2.0", "meltbench gate runs/a runs/b"));
        cand.runs.push(run("0.2.0", "meltbench gate runs/a runs/b"));
        let md = render(&input(&cand, None, None, None));
        assert!(
            md.contains("### Reproduce\n\n```sh\nmeltbench gate runs/a runs/b\n```\n"),
            "{md}"
        );
    }

    #[test]
    fn limits_over_budget_open_their_table() {
        let d = Dataset::default();
        let g = GateOutcome {
            config: GateConfig::default(),
            rows: vec![row("d", "c", Metric::LatencyP95, Verdict::Pass, 1.0)],
            not_comparable: vec![],
            not_measured: vec![],
            limit_rows: vec![crate::budget::LimitRow {
                device: "d".into(),
                cell: "c".into(),
                limit: crate::budget::Limit::Memory,
                budget_bytes: 2_000_000_000,
                measured_bytes: 2_400_000_000,
                over: true,
                message: "peak RSS 2.00 GB + 20% = 2.40 GB is over".into(),
            }],
            exit_code: 1,
            headline: "1 over a size or memory budget; 1 unchanged".into(),
        };
        let md = render(&input(&d, None, Some(&g), None));
        assert!(
            md.contains("### ❌ FAIL: 1 over a size or memory budget"),
            "{md}"
        );
        assert!(
            md.contains("<details open><summary>Size and memory budgets: 1 of 1 over</summary>"),
            "{md}"
        );
        assert!(
            md.contains(
                "| d | c | `memory_budget` (peak RSS + 20%) | 2.40 GB | 2.00 GB | ❌ OVER |"
            ),
            "{md}"
        );
    }

    #[test]
    fn verdict_words() {
        let d = Dataset::default();
        let mut g = GateOutcome {
            config: GateConfig::default(),
            rows: vec![row("d", "c", Metric::LatencyP95, Verdict::Pass, 1.0)],
            not_comparable: vec![],
            not_measured: vec![],
            limit_rows: vec![],
            exit_code: 0,
            headline: "1 unchanged".into(),
        };
        let md = render(&input(&d, None, Some(&g), None));
        assert!(md.contains("### ✅ PASS: 1 unchanged"));
        assert!(md.contains("No gated metric changed by more than the noise floor (2%)."));
        assert!(!md.contains("Environment"));
        g.rows.clear();
        g.exit_code = 2;
        g.headline = "nothing comparable".into();
        g.not_comparable.push(NotComparable {
            device: "d".into(),
            cell: "c".into(),
            side: "baseline".into(),
            reason: "no candidate cell".into(),
        });
        let md = render(&input(&d, None, Some(&g), None));
        assert!(md.contains("### ⚠️ INCONCLUSIVE: nothing comparable"));
        assert!(md.contains("<details open><summary>Not comparable: 1 cell(s)</summary>"));
        assert!(!md.contains("All 0 results"));
    }

    #[test]
    fn measurements_without_a_gate() {
        let pass = |l: f64| PassData {
            start_s: 0.0,
            warmup: false,
            latency_ms: l,
            ttft_ms: l / 10.0,
            decode_step_ms: vec![],
            prefill_tokens_per_s: None,
            decode_tokens_per_s: Some(2.0 * l),
            rss_hwm_bytes: Some(3 << 20),
            temp_c: None,
            power_w: None,
            energy_j_per_token: None,
            cpu_mhz: None,
            split: Default::default(),
        };
        let key = |id: &str| CellKey {
            id: id.into(),
            device: "pixel8".into(),
            model: "m".into(),
            model_sha256: "s".into(),
            precision: "q4_0".into(),
            scenario: "chat".into(),
            threads: 4,
            state: "cool".into(),
            engine: "bundled".into(),
        };
        let cell = |id: &str, sessions: Vec<SessionData>, errors: Vec<String>| CellData {
            key: key(id),
            sessions,
            cold_start_ms: vec![],
            cold_start_page_cache_dropped: None,
            errors,
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
        };
        let session = |l: &[f64]| SessionData {
            run_id: "r".into(),
            index: 0,
            passes: l.iter().map(|&x| pass(x)).collect(),
            warmups: vec![],
            peak_rss_bytes: Some(5 << 20),
        };
        let d = Dataset {
            runs: vec![],
            cells: vec![
                cell(
                    "chat",
                    vec![session(&[10.0, 1.0]), session(&[3.0, 2.0, 4.0])],
                    vec![],
                ),
                cell("big|one", vec![], vec!["out of memory <oom>".into()]),
            ],
        };
        let md = render(&input(&d, None, None, None));
        check_tables(&md);
        assert!(md.contains("### Measurements: 2 cell(s) on 1 device(s), 5 measured passes"));
        // numpy: percentile([1, 2, 3, 4, 10], [50, 95, 99]) = 3, 8.8, 9.76.
        assert!(
            md.contains(
                "| pixel8 | chat | 5 | 2 | 3.000 | 8.800 | 9.760 | 0.880 | 6.000 | 5.0 |  |"
            ),
            "{md}"
        );
        assert!(md.contains(
            "| pixel8 | big\\|one | 0 | 0 | - | - | - | - | - | - | error: out of memory &lt;oom&gt; |"
        ));
        assert!(md.contains("```sh\nmeltbench gate runs/a runs/b\n```"));
    }

    #[test]
    fn number_formats() {
        assert_eq!(fmt_num(1234.56), "1234.6");
        assert_eq!(fmt_num(42.1), "42.10");
        assert_eq!(fmt_num(0.01234), "0.0123");
        assert_eq!(fmt_num(0.5), "0.500");
        assert_eq!(fmt_pct(0.9996), "+0.0%");
        assert_eq!(fmt_pct(0.9), "-10.0%");
        assert_eq!(fmt_pct(f64::INFINITY), "+∞%");
        assert_eq!(fmt_budget(Metric::PrefillTokensPerS, 0.125), "-12.5%");
        assert_eq!(escape("a\\b*c_d[e]~f\r\u{7}"), "a\\\\b\\*c\\_d\\[e\\]\\~f");
    }
}
