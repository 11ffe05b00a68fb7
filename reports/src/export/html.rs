//! The release-review report: one self-contained HTML5 file (inline CSS, inline SVG charts
//! drawn with plotters, a few lines of script for the dark/light toggle; nothing fetched).
//!
//! Sections, each `<section id=…>` in this order: `verdict`, `summary`, `cdf`, `timeline`,
//! `coldstart`, `ladder`, `history`, `environment`, `reproduce`, `method`. Each candidate cell
//! has a stable anchor ([`cell_anchor`]) that the tables link to.
//!
//! Every string that comes from suites, devices or runs is escaped ([`esc`]) before it enters
//! the page; text handed to plotters is escaped by its SVG backend.
//!
//! Cost: one sort of each cell's latencies (for the CDF and percentiles), linear-time selection
//! for every other statistic, and charts drawn from reduced points: at most [`ECDF_POINTS`] per
//! CDF curve and [`TIMELINE_POINTS`] per timeline, whatever the number of passes.

mod charts;

use crate::compare::{GateConfig, GateOutcome, GateRow, Verdict};
use crate::dataset::{CellData, Dataset, PassData};
use crate::history::History;
use crate::metric::Metric;
use crate::report::ReportInput;
use crate::stats::percentile::{percentile_sorted, Distribution};
use charts::{Secondary, Shape, Timeline};
use std::collections::BTreeMap;
use std::fmt::Write;

/// Most points drawn per ECDF curve.
pub const ECDF_POINTS: usize = 500;
/// Most measured-pass marks drawn per cell timeline (beyond it, a bucket's median and slowest).
pub const TIMELINE_POINTS: usize = 2000;
/// Most warm-up points drawn per cell timeline.
const WARMUP_POINTS: usize = 300;

const CSS: &str = include_str!("html/style.css");
const SCRIPT: &str = include_str!("html/theme.js");

/// The section ids, in page order.
pub const SECTIONS: [(&str, &str); 10] = [
    ("verdict", "Verdict"),
    ("summary", "Summary"),
    ("cdf", "Latency distributions"),
    ("timeline", "Per-pass timeline"),
    ("coldstart", "Cold start"),
    ("ladder", "Precision ladder"),
    ("history", "History across releases"),
    ("environment", "Environment"),
    ("reproduce", "Reproduce"),
    ("method", "Method"),
];

/// Writing to a `String` cannot fail.
macro_rules! w {
    ($dst:expr, $($arg:tt)*) => {
        let _ = write!($dst, $($arg)*);
    };
}

/// Renders the whole report as one HTML5 document.
pub fn render(input: &ReportInput) -> String {
    let ctx = Ctx::new(input);
    let mut out = String::with_capacity(256 * 1024);
    w!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"generator\" content=\"meltbench-reports {}\">\n\
         <title>{}</title>\n<style>\n{CSS}</style>\n</head>\n<body>\n",
        env!("CARGO_PKG_VERSION"),
        esc(&input.title)
    );
    header(&mut out, &ctx);
    for (id, title) in SECTIONS {
        w!(out, "<section id=\"{id}\">\n<h2>{title}</h2>\n");
        match id {
            "verdict" => verdict(&mut out, &ctx),
            "summary" => summary(&mut out, &ctx),
            "cdf" => cdf(&mut out, &ctx),
            "timeline" => timeline(&mut out, &ctx),
            "coldstart" => coldstart(&mut out, &ctx),
            "ladder" => ladder(&mut out, &ctx),
            "history" => history(&mut out, &ctx),
            "environment" => environment(&mut out, &ctx),
            "reproduce" => reproduce(&mut out, &ctx),
            _ => method(&mut out, &ctx),
        }
        out.push_str("</section>\n");
    }
    w!(
        out,
        "<footer>Made by meltbench-reports {} on {}. One file: no scripts, fonts or images \
         are fetched.</footer>\n<script>\n{SCRIPT}</script>\n</body>\n</html>\n",
        env!("CARGO_PKG_VERSION"),
        esc(&input.generated_utc)
    );
    out
}

/// `s` safe as HTML text and as a double- or single-quoted attribute value.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The anchor of a cell: readable (device and cell id with anything but `[A-Za-z0-9_-]`
/// replaced) and unique (a hash of the exact names, so `a.b` and `a-b` differ).
pub fn cell_anchor(device: &str, cell: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .take(48)
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect()
    };
    // FNV-1a: stable across builds and platforms.
    let mut h: u32 = 0x811c_9dc5;
    for b in device.bytes().chain([0u8]).chain(cell.bytes()) {
        h ^= b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("cell-{}--{}-{h:08x}", clean(device), clean(cell))
}

// ---------------------------------------------------------------------------------------------
// Numbers computed once per cell.

/// What the report shows of one cell, computed once.
struct Stats {
    /// Every measured pass latency, ascending (the one sort per cell).
    sorted_latency: Vec<f64>,
    sessions: usize,
    warmups: usize,
    p50: Option<f64>,
    p95: Option<f64>,
    p99: Option<f64>,
    /// Time to first token per pass, ms.
    ttft: Option<Distribution>,
    /// Every decode step of every measured pass, ms per token (as the terminal table).
    decode_step: Option<Distribution>,
    decode_tps: Option<f64>,
    prefill_tps: Option<f64>,
    energy: Option<f64>,
    peak_rss_mib: Option<f64>,
    cold_median: Option<f64>,
}

impl Stats {
    fn of(c: &CellData) -> Stats {
        let mut sorted: Vec<f64> = c.passes().map(|p| p.latency_ms).collect();
        sorted.sort_unstable_by(f64::total_cmp);
        let q = |p: f64| (!sorted.is_empty()).then(|| percentile_sorted(&sorted, p));
        let (p50, p95, p99) = (q(50.0), q(95.0), q(99.0));
        let select = |f: &dyn Fn(&PassData) -> Option<f64>, p: f64| {
            let mut v: Vec<f64> = c.passes().filter_map(f).collect();
            quantile_select(&mut v, p)
        };
        let peak = c.peak_rss_bytes();
        let ttft: Vec<f64> = c.passes().map(|p| p.ttft_ms).collect();
        let steps: Vec<f64> = c
            .passes()
            .flat_map(|p| p.decode_step_ms.iter().copied())
            .collect();
        Stats {
            sessions: c.sessions.len(),
            warmups: c.sessions.iter().map(|s| s.warmups.len()).sum(),
            p50,
            p95,
            p99,
            ttft: Distribution::of(&ttft),
            decode_step: Distribution::of(&steps),
            decode_tps: select(&|p| p.decode_tokens_per_s, 50.0),
            prefill_tps: select(&|p| p.prefill_tokens_per_s, 50.0),
            energy: select(&|p| p.energy_j_per_token, 50.0),
            peak_rss_mib: peak.map(mib),
            cold_median: quantile_select(&mut c.cold_start_ms.clone(), 50.0),
            sorted_latency: sorted,
        }
    }

    fn passes(&self) -> usize {
        self.sorted_latency.len()
    }
}

/// The distribution-free (order-statistic) 95% interval of the `q`-quantile of `sorted`, with
/// "unbounded" for an end the sample is too small to give (p99 needs 368 passes for its top).
fn order_ci(sorted: &[f64], q: f64) -> String {
    if sorted.is_empty() {
        return "-".into();
    }
    let b = crate::stats::quantile_ci::quantile_bounds(sorted, q, 0.95);
    // Printed like the figure beside it (`num`), so both show the same digits.
    let end = |v: Option<f64>, none: &str| v.map_or(none.to_string(), num);
    format!(
        "[{}, {}]",
        end(b.low, "unbounded"),
        end(b.high, "unbounded")
    )
}

/// The type-7 `p`-th percentile (0..=100) of unsorted `v` in linear time; equal to
/// [`percentile_sorted`] of the sorted values.
fn quantile_select(v: &mut [f64], p: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let n = v.len();
    let h = (n - 1) as f64 * p / 100.0;
    let lo = (h.floor() as usize).min(n - 1);
    let (_, a, right) = v.select_nth_unstable_by(lo, f64::total_cmp);
    let a = *a;
    let b = right.iter().copied().min_by(f64::total_cmp).unwrap_or(a);
    Some(a + (h - lo as f64) * (b - a))
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1048576.0
}

struct Ctx<'a> {
    input: &'a ReportInput<'a>,
    cand: Vec<Stats>,
    /// Per candidate cell: the index of its baseline cell, when there is a comparable one.
    pair: Vec<Option<usize>>,
    /// Stats of the baseline cells that have a candidate partner.
    base: BTreeMap<usize, Stats>,
    anchors: Vec<String>,
}

impl<'a> Ctx<'a> {
    fn new(input: &'a ReportInput<'a>) -> Ctx<'a> {
        let cells = &input.candidate.cells;
        let cand: Vec<Stats> = cells.iter().map(Stats::of).collect();
        let pair: Vec<Option<usize>> = cells.iter().map(|c| partner(input, c)).collect();
        let mut base = BTreeMap::new();
        if let Some(b) = input.baseline {
            for &i in pair.iter().flatten() {
                base.entry(i).or_insert_with(|| Stats::of(&b.cells[i]));
            }
        }
        let anchors = cells
            .iter()
            .map(|c| cell_anchor(&c.key.device, &c.key.id))
            .collect();
        Ctx {
            input,
            cand,
            pair,
            base,
            anchors,
        }
    }

    fn cells(&self) -> &'a [CellData] {
        &self.input.candidate.cells
    }

    fn baseline_of(&self, i: usize) -> Option<(&'a CellData, &Stats)> {
        let b = self.input.baseline?;
        let j = self.pair[i]?;
        Some((&b.cells[j], self.base.get(&j)?))
    }

    /// The anchor of a candidate cell, when the candidate has it.
    fn anchor_of(&self, device: &str, cell: &str) -> Option<&str> {
        self.cells()
            .iter()
            .position(|c| c.key.device == device && c.key.id == cell)
            .map(|i| self.anchors[i].as_str())
    }

    /// `device / cell` linked to the cell's CDF block when the candidate has the cell.
    fn cell_link(&self, device: &str, cell: &str) -> String {
        match self.anchor_of(device, cell) {
            Some(a) => format!("<a href=\"#{a}\">{}</a>", esc(cell)),
            None => esc(cell),
        }
    }
}

/// The baseline cell compared with candidate cell `c`: the gate's pairing when a gate ran
/// (none for cells it found not comparable), else the cell with the same device and id.
fn partner(input: &ReportInput, c: &CellData) -> Option<usize> {
    let base = input.baseline?;
    let mut id = c.key.id.as_str();
    if let Some(g) = input.gate {
        let not_comparable = g
            .not_comparable
            .iter()
            .any(|n| n.side == "candidate" && n.device == c.key.device && n.cell == c.key.id);
        if not_comparable {
            return None;
        }
        if let Some(r) = g
            .rows
            .iter()
            .find(|r| r.device == c.key.device && r.cell == c.key.id)
        {
            id = &r.baseline_cell;
        }
    }
    base.cells
        .iter()
        .position(|b| b.key.device == c.key.device && b.key.id == id)
}

// ---------------------------------------------------------------------------------------------
// Formatting.

/// A measurement with about four significant digits.
fn num(v: f64) -> String {
    let a = v.abs();
    if !v.is_finite() {
        format!("{v}")
    } else if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 10.0 {
        format!("{v:.2}")
    } else if a >= 0.01 || a == 0.0 {
        format!("{v:.3}")
    } else {
        format!("{v:.2e}")
    }
}

/// A cell id that may break after each `/`, so the summary table fits a 1280-px window.
fn breakable_id(id: &str) -> String {
    esc(id).replace('/', "/<wbr>")
}

/// `p50 / p95 / p99`, each like [`num`].
fn three(d: &Option<Distribution>) -> String {
    match d {
        Some(d) => format!("{} / {} / {}", num(d.p50), num(d.p95), num(d.p99)),
        None => "&ndash;".into(),
    }
}

fn opt(v: Option<f64>) -> String {
    v.map(num).unwrap_or_else(|| "&ndash;".into())
}

/// A relative change: `+4.3%`.
fn pct(change: f64) -> String {
    format!("{:+.1}%", change * 100.0)
}

fn delta(cand: Option<f64>, base: Option<f64>) -> String {
    match (cand, base) {
        (Some(c), Some(b)) if b != 0.0 => pct(c / b - 1.0),
        _ => "&ndash;".into(),
    }
}

fn verdict_class(v: Verdict) -> &'static str {
    match v {
        Verdict::Fail => "v-fail",
        Verdict::Warn => "v-warn",
        Verdict::Inconclusive => "v-inconclusive",
        Verdict::PassWithNote => "v-passnote",
        Verdict::Pass => "v-pass",
        Verdict::Improved => "v-improved",
    }
}

fn verdict_icon(v: Verdict) -> &'static str {
    match v {
        Verdict::Fail => "&#10006;",          // heavy multiplication x
        Verdict::Warn => "&#9888;",           // warning sign
        Verdict::Inconclusive => "?",         // question mark
        Verdict::PassWithNote => "&#10003;~", // check mark, tilde
        Verdict::Pass => "&#10003;",          // check mark
        Verdict::Improved => "&#9733;",       // star
    }
}

fn chip(v: Verdict) -> String {
    format!(
        "<span class=\"chip {}\">{} {}</span>",
        verdict_class(v),
        verdict_icon(v),
        v.name()
    )
}

const VERDICTS: [Verdict; 6] = [
    Verdict::Fail,
    Verdict::Warn,
    Verdict::Inconclusive,
    Verdict::PassWithNote,
    Verdict::Pass,
    Verdict::Improved,
];

/// The change of a gate row and its interval: `+4.3% [+1.1%, +7.9%]`, with `~` when the
/// interval includes no change.
fn row_delta(r: &GateRow) -> String {
    let tilde = if r.ci_low <= 1.0 && r.ci_high >= 1.0 {
        " <span title=\"not significant: the interval includes no change\">~</span>"
    } else {
        ""
    };
    format!(
        "{} [{}, {}]{tilde}",
        pct(r.ratio - 1.0),
        pct(r.ci_low - 1.0),
        pct(r.ci_high - 1.0)
    )
}

fn budget_text(m: Metric, b: f64) -> String {
    let sign = if m.higher_is_better() { "&minus;" } else { "+" };
    format!("{sign}{}%", plain(b * 100.0))
}

/// `v` with at most two decimals and no trailing zeros: `10`, `12.5`.
fn plain(v: f64) -> String {
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" {
        "0".into()
    } else {
        s.to_string()
    }
}

/// `sessions × values per session` (or the totals when they do not divide evenly).
fn sessions_by_values(sessions: usize, n: usize) -> String {
    if sessions > 0 && n.is_multiple_of(sessions) {
        format!("{sessions}&times;{}", n / sessions)
    } else {
        format!("{sessions} sessions, {n} values")
    }
}

// ---------------------------------------------------------------------------------------------
// Sections.

fn header(out: &mut String, ctx: &Ctx) {
    let input = ctx.input;
    let runs = |d: &Dataset| {
        let ids: Vec<String> = d.runs.iter().map(|r| esc(&r.manifest.run_id)).collect();
        if ids.is_empty() {
            "&ndash;".to_string()
        } else {
            ids.join(", ")
        }
    };
    w!(
        out,
        "<header>\n<button id=\"theme-toggle\" type=\"button\" hidden>dark / light</button>\n\
         <h1>{}</h1>\n<p class=\"meta\">Generated {} &middot; candidate runs: {} ({} cells, {} \
         measured passes)",
        esc(&input.title),
        esc(&input.generated_utc),
        runs(input.candidate),
        input.candidate.cells.len(),
        input.candidate.total_passes()
    );
    if let Some(b) = input.baseline {
        w!(
            out,
            " &middot; baseline runs: {} ({} cells, {} measured passes)",
            runs(b),
            b.cells.len(),
            b.total_passes()
        );
    }
    out.push_str("</p>\n<nav aria-label=\"sections\">");
    for (id, title) in SECTIONS {
        w!(out, "<a href=\"#{id}\">{title}</a>");
    }
    out.push_str("</nav>\n</header>\n");
}

fn verdict(out: &mut String, ctx: &Ctx) {
    let Some(g) = ctx.input.gate else {
        let text = if ctx.input.baseline.is_some() {
            "no gate: measurements only (a baseline was loaded but not gated)"
        } else {
            "no baseline: measurements only"
        };
        w!(
            out,
            "<div class=\"banner v-neutral\" role=\"status\"><span class=\"icon\" \
             aria-hidden=\"true\">&#8505;</span><div><p class=\"overall\">{text}</p>\
             <p>{} cells, {} measured passes. Pass a baseline to <code>meltbench gate</code> for \
             verdicts.</p></div></div>\n",
            ctx.cells().len(),
            ctx.input.candidate.total_passes()
        );
        return;
    };
    let any = |v: Verdict| g.rows.iter().any(|r| r.verdict == v);
    let (class, icon, overall) = match g.exit_code {
        1 => (
            "v-fail",
            "&#10006;",
            "FAIL: a regression over budget".to_string(),
        ),
        2 if g.rows.is_empty() => (
            "v-inconclusive",
            "?",
            "INCONCLUSIVE: nothing comparable".to_string(),
        ),
        2 => (
            "v-inconclusive",
            "?",
            "INCONCLUSIVE: more sessions needed".to_string(),
        ),
        0 if any(Verdict::Warn) => ("v-warn", "&#9888;", "PASS with warnings".to_string()),
        0 => ("v-pass", "&#10003;", "PASS".to_string()),
        c => (
            "v-neutral",
            "?",
            format!("unknown gate result (exit code {c})"),
        ),
    };
    w!(
        out,
        "<div class=\"banner {class}\" role=\"status\"><span class=\"icon\" \
         aria-hidden=\"true\">{icon}</span><div>\n<p class=\"overall\">{overall} \
         <span class=\"exit\">(exit code {})</span></p>\n<p class=\"headline\">{}</p>\n",
        g.exit_code,
        esc(&g.headline)
    );
    let worst = [Verdict::Fail, Verdict::Inconclusive, Verdict::Warn]
        .into_iter()
        .find_map(|v| g.rows.iter().find(|r| r.verdict == v));
    if let Some(r) = worst {
        w!(
            out,
            "<p class=\"worst\">Worst: {} {} {} on {} / {}</p>\n",
            chip(r.verdict),
            esc(r.metric.label()),
            row_delta(r),
            esc(&r.device),
            ctx.cell_link(&r.device, &r.cell)
        );
    }
    out.push_str("<p class=\"counts\">");
    for v in VERDICTS {
        let n = g.rows.iter().filter(|r| r.verdict == v).count();
        if n > 0 {
            w!(
                out,
                "<span class=\"chip {}\">{} {n} {}</span>",
                verdict_class(v),
                verdict_icon(v),
                v.name()
            );
        }
    }
    if !g.not_comparable.is_empty() {
        w!(
            out,
            "<span class=\"chip v-nc\">&#8800; {} not comparable</span>",
            g.not_comparable.len()
        );
    }
    out.push_str("</p>\n</div></div>\n");
}

fn summary(out: &mut String, ctx: &Ctx) {
    let input = ctx.input;
    if let Some(g) = input.gate {
        gate_table(out, ctx, g);
    } else {
        out.push_str(
            "<p class=\"note\">No gate ran: the table lists the candidate's measurements.</p>\n",
        );
    }
    skipped_lines(out, input);
    if input.gate.is_some() {
        out.push_str("<h3>Measurements per cell (candidate)</h3>\n");
    }
    cell_table(out, ctx);
}

fn gate_table(out: &mut String, ctx: &Ctx, g: &GateOutcome) {
    if g.rows.is_empty() {
        out.push_str("<p class=\"warn\">No gated metric could be compared.</p>\n");
    } else {
        out.push_str(
            "<div class=\"scroll\"><table class=\"gate\">\n<thead><tr><th>Device</th>\
             <th>Cell</th><th>Metric</th><th class=\"num\">Baseline</th>\
             <th class=\"num\">Candidate</th><th class=\"num\">&Delta; [CI]</th>\
             <th class=\"num\">Budget</th><th>Verdict</th>\
             <th class=\"num\" title=\"sessions &times; values per session\">n baseline / \
             candidate</th><th>Note</th></tr></thead>\n<tbody>\n",
        );
        for r in &g.rows {
            let cell = if r.baseline_cell != r.cell {
                format!(
                    "{} <span class=\"note\">(baseline {})</span>",
                    ctx.cell_link(&r.device, &r.cell),
                    esc(&r.baseline_cell)
                )
            } else {
                ctx.cell_link(&r.device, &r.cell)
            };
            let mut note = r.note.as_deref().map(esc).unwrap_or_default();
            if let Some(n) = r.sessions_needed {
                if !note.is_empty() {
                    note.push_str("; ");
                }
                w!(note, "about {n} sessions per build would decide");
            }
            w!(
                out,
                "<tr class=\"row-{}\"><td>{}</td><td class=\"id\">{cell}</td><td>{} ({})</td>\
                 <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
                 <td class=\"num\">{}</td><td>{}</td><td class=\"num\">{} / {}</td>\
                 <td class=\"wrap\">{note}</td></tr>\n",
                verdict_class(r.verdict),
                esc(&r.device),
                esc(r.metric.label()),
                esc(r.metric.unit()),
                num(r.baseline),
                num(r.candidate),
                row_delta(r),
                budget_text(r.metric, r.budget),
                chip(r.verdict),
                sessions_by_values(r.baseline_sessions, r.baseline_n),
                sessions_by_values(r.candidate_sessions, r.candidate_n),
            );
        }
        out.push_str("</tbody></table></div>\n");
    }
    out.push_str("<h3>Not comparable</h3>\n");
    if g.not_comparable.is_empty() {
        out.push_str("<p class=\"note\">Every cell had a comparable partner.</p>\n");
    } else {
        out.push_str(
            "<p>These cells are never counted as regressions: their keys differ or one build \
             lacks them.</p>\n<div class=\"scroll\"><table class=\"not-comparable\">\n\
             <thead><tr><th>Device</th><th>Cell</th><th>Only in</th><th>Reason</th></tr>\
             </thead>\n<tbody>\n",
        );
        for n in &g.not_comparable {
            let cell = if n.side == "candidate" {
                ctx.cell_link(&n.device, &n.cell)
            } else {
                esc(&n.cell)
            };
            w!(
                out,
                "<tr><td>&#8800; {}</td><td>{cell}</td><td>{}</td><td class=\"wrap\">{}</td>\
                 </tr>\n",
                esc(&n.device),
                esc(&n.side),
                esc(&n.reason)
            );
        }
        out.push_str("</tbody></table></div>\n");
    }
    if !g.not_measured.is_empty() {
        out.push_str("<h4>Gated metrics neither build measured</h4>\n<ul>\n");
        for m in &g.not_measured {
            w!(out, "<li>{}</li>\n", esc(m));
        }
        out.push_str("</ul>\n");
    }
}

fn skipped_lines(out: &mut String, input: &ReportInput) {
    let sides = [
        ("candidate", Some(input.candidate)),
        ("baseline", input.baseline),
    ];
    for (side, d) in sides {
        for r in d.map(|d| d.runs.as_slice()).unwrap_or_default() {
            if r.skipped_lines.is_empty() {
                continue;
            }
            w!(
                out,
                "<p class=\"warn\">&#9888; {side} run {}: {} unreadable event lines were \
                 skipped (first: {}).</p>\n",
                esc(&r.manifest.run_id),
                r.skipped_lines.len(),
                esc(&r.skipped_lines[0])
            );
        }
    }
}

fn cell_table(out: &mut String, ctx: &Ctx) {
    if ctx.cells().is_empty() {
        out.push_str("<p class=\"warn\">The candidate has no cells.</p>\n");
        return;
    }
    out.push_str(
        "<div class=\"scroll\"><table class=\"cells\">\n<thead><tr><th rowspan=\"2\">Device</th>\
         <th rowspan=\"2\">Cell</th><th class=\"num\" rowspan=\"2\">Passes</th>\
         <th class=\"num\" rowspan=\"2\">Sessions</th><th colspan=\"3\">Pass latency (ms)</th>\
         <th class=\"num\" rowspan=\"2\">TTFT (ms)<br>p50 / p95 / p99</th>\
         <th class=\"num\" rowspan=\"2\">Decode (ms/token)<br>p50 / p95 / p99</th>\
         <th colspan=\"2\">Median tok/s</th>\
         <th class=\"num\" rowspan=\"2\">Peak RSS (MiB)</th>\
         <th class=\"num\" rowspan=\"2\">Cold start median (ms)</th><th rowspan=\"2\">Notes</th>\
         </tr>\n<tr><th class=\"num\">p50</th><th class=\"num\">p95</th><th class=\"num\">p99</th>\
         <th class=\"num\">decode</th><th class=\"num\">prefill</th></tr></thead>\n<tbody>\n",
    );
    for (i, c) in ctx.cells().iter().enumerate() {
        let s = &ctx.cand[i];
        let notes = cell_notes(c, s);
        w!(
            out,
            "<tr><td>{}</td><td class=\"id-wrap\"><a href=\"#{}\">{}</a></td>\
             <td class=\"num\" title=\"{} warm-up passes not counted\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num tri\">{}</td><td class=\"num tri\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"notes\">{notes}</td></tr>\n",
            esc(&c.key.device),
            ctx.anchors[i],
            breakable_id(&c.key.id),
            s.warmups,
            s.passes(),
            s.sessions,
            opt(s.p50),
            opt(s.p95),
            opt(s.p99),
            three(&s.ttft),
            three(&s.decode_step),
            opt(s.decode_tps),
            opt(s.prefill_tps),
            opt(s.peak_rss_mib),
            opt(s.cold_median),
        );
    }
    out.push_str("</tbody></table></div>\n");
}

fn cell_notes(c: &CellData, s: &Stats) -> String {
    let mut notes: Vec<String> = c
        .errors
        .iter()
        .map(|e| format!("&#9888; error: {}", esc(e)))
        .collect();
    if s.passes() == 0 {
        notes.push("no measured passes".into());
    } else if s.passes() < crate::metric::P99_MIN_POOLED_PASSES {
        notes.push(format!(
            "p99 informational: n = {} &lt; {}",
            s.passes(),
            crate::metric::P99_MIN_POOLED_PASSES
        ));
    }
    notes.join("<br>")
}

fn key_line(c: &CellData) -> String {
    let k = &c.key;
    format!(
        "<p class=\"meta\">model {} ({}) &middot; precision {} &middot; scenario {} &middot; \
         {} threads &middot; state {}</p>\n",
        esc(&k.model),
        esc(&charts::short(&k.model_sha256, 12)),
        esc(&k.precision),
        esc(&k.scenario),
        k.threads,
        esc(&k.state)
    )
}

/// Points of the empirical CDF of `sorted` (ascending): every point when there are at most
/// `max`, else four fifths evenly spaced by rank and one fifth log-spaced through the tail
/// above p99, so the tail keeps its shape.
fn ecdf_points(sorted: &[f64], max: usize) -> Vec<(f64, f64)> {
    let n = sorted.len();
    let at = |i: usize| (sorted[i], (i + 1) as f64 / n as f64);
    if n <= max {
        return (0..n).map(at).collect();
    }
    let body = max * 4 / 5;
    let tail = max - body;
    let mut idx: Vec<usize> = (0..body)
        .map(|k| ((k as f64) * (n - 1) as f64 / (body - 1) as f64).round() as usize)
        .collect();
    // 1 - q from 0.01 down to 1/n, geometrically.
    let (a, b) = (0.01f64, 1.0 / n as f64);
    for j in 0..tail {
        let f = j as f64 / (tail - 1).max(1) as f64;
        let q = 1.0 - a * (b / a).powf(f);
        let i = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
        idx.push(i);
    }
    idx.push(n - 1);
    idx.sort_unstable();
    idx.dedup();
    idx.into_iter().map(at).collect()
}

fn markers(s: &Stats) -> Vec<(f64, f64, &'static str)> {
    [
        (s.p50, 0.5, "p50"),
        (s.p95, 0.95, "p95"),
        (s.p99, 0.99, "p99"),
    ]
    .into_iter()
    .filter_map(|(v, f, l)| v.map(|v| (v, f, l)))
    .collect()
}

fn cdf(out: &mut String, ctx: &Ctx) {
    if ctx.cells().is_empty() {
        out.push_str("<p class=\"note\">No cells.</p>\n");
        return;
    }
    w!(
        out,
        "<p>Empirical CDF of every measured pass's latency (warm-ups excluded) on a log-x axis; \
         the tail is the upper right. Markers: &#9679; p50, &#9650; p95, &#10005; p99. Curves \
         are drawn through at most {ECDF_POINTS} points with the tail above p99 kept. \
         Percentile intervals are distribution-free: order statistics chosen by the exact \
         binomial, so they need no assumption about the latency distribution, and an end the \
         sample cannot bound says so.</p>\n"
    );
    for (i, c) in ctx.cells().iter().enumerate() {
        let s = &ctx.cand[i];
        let a = &ctx.anchors[i];
        w!(
            out,
            "<article class=\"cell\" id=\"{a}\">\n<h3>{} / {}</h3>\n{}",
            esc(&c.key.device),
            esc(&c.key.id),
            key_line(c)
        );
        for e in &c.errors {
            w!(
                out,
                "<p class=\"warn\">&#9888; cell error: {}</p>\n",
                esc(e)
            );
        }
        for st in &c.states_reached {
            w!(out, "<p>device state reached: {}</p>\n", esc(st));
        }
        let base = ctx.baseline_of(i);
        let cand_pts = ecdf_points(&s.sorted_latency, ECDF_POINTS);
        let cand_marks = markers(s);
        let base_pts = base.map(|(_, bs)| ecdf_points(&bs.sorted_latency, ECDF_POINTS));
        let base_marks = base.map(|(_, bs)| markers(bs)).unwrap_or_default();
        let mut curves = vec![charts::Ecdf {
            points: &cand_pts,
            color: charts::CANDIDATE,
            dashed: false,
            markers: &cand_marks,
            label_markers: true,
        }];
        if let Some(bp) = &base_pts {
            curves.push(charts::Ecdf {
                points: bp,
                color: charts::BASELINE,
                dashed: true,
                markers: &base_marks,
                label_markers: false,
            });
        }
        w!(
            out,
            "<div class=\"legend\"><span><span class=\"swatch-line\" style=\"border-color:{}\">\
             </span> candidate ({} passes)</span>",
            charts::hex(charts::CANDIDATE),
            s.passes()
        );
        match base {
            Some((_, bs)) => {
                w!(
                    out,
                    "<span><span class=\"swatch-line dashed\" style=\"border-color:{}\"></span> \
                     baseline, dashed ({} passes)</span>",
                    charts::hex(charts::BASELINE),
                    bs.passes()
                );
            }
            None if ctx.input.baseline.is_some() => {
                out.push_str("<span class=\"note\">no comparable baseline cell</span>");
            }
            None => {}
        }
        w!(
            out,
            "<span><a href=\"#timeline-{a}\">timeline</a></span></div>\n<div class=\"chart\">{}\
             </div>\n",
            charts::ecdf_chart(
                &curves,
                &format!("latency CDF of {} / {}", c.key.device, c.key.id)
            )
        );
        out.push_str(
            "<table class=\"pct\"><thead><tr><th>Percentile (ms)</th><th class=\"num\">\
             Candidate</th><th class=\"num\">95% CI</th>",
        );
        if base.is_some() {
            out.push_str(
                "<th class=\"num\">Baseline</th><th class=\"num\">95% CI</th>\
                 <th class=\"num\">&Delta;</th>",
            );
        }
        out.push_str("</tr></thead><tbody>\n");
        for (label, q) in [("p50", 50.0), ("p90", 90.0), ("p95", 95.0), ("p99", 99.0)] {
            let at = |st: &Stats| {
                (!st.sorted_latency.is_empty()).then(|| percentile_sorted(&st.sorted_latency, q))
            };
            let cv = at(s);
            let bv = base.and_then(|(_, b)| at(b));
            w!(
                out,
                "<tr><td>{label}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>",
                opt(cv),
                order_ci(&s.sorted_latency, q / 100.0)
            );
            if let Some((_, b)) = base {
                w!(
                    out,
                    "<td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>",
                    opt(bv),
                    order_ci(&b.sorted_latency, q / 100.0),
                    delta(cv, bv)
                );
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</tbody></table>\n</article>\n");
    }
}

/// A cell's passes reduced to at most `budget` marks, plus warm-ups and sensor readings. Up
/// to `budget` passes are drawn one by one; beyond that, consecutive passes of a session form
/// buckets, each drawn twice: its median (the typical pass) and its slowest pass (so spikes
/// stay visible). Returns the timeline and the bucket size (1: every pass drawn).
fn timeline_data(c: &CellData, budget: usize) -> (Timeline, usize) {
    let n: usize = c.measured_passes();
    let sessions = c.sessions.len();
    let mut t = Timeline {
        sessions: vec![Vec::new(); sessions],
        slowest: vec![Vec::new(); sessions],
        temp: vec![Vec::new(); sessions],
        power: vec![Vec::new(); sessions],
        ..Timeline::default()
    };
    // One bucket of (session slot, pass): its median and slowest pass (or the pass itself),
    // the hottest reading and the highest power.
    let mut scratch: Vec<f64> = Vec::new();
    let mut emit = |t: &mut Timeline, chunk: &[(usize, &PassData)]| {
        let (Some(&(slot, first)), Some(&(slow_slot, slow))) = (
            chunk.first(),
            chunk
                .iter()
                .max_by(|a, b| a.1.latency_ms.total_cmp(&b.1.latency_ms)),
        ) else {
            return;
        };
        if chunk.len() == 1 {
            t.sessions[slot].push((first.start_s, first.latency_ms));
        } else {
            scratch.clear();
            scratch.extend(chunk.iter().map(|(_, p)| p.latency_ms));
            let median = quantile_select(&mut scratch, 50.0).unwrap_or(slow.latency_ms);
            let (mid_slot, mid) = chunk[chunk.len() / 2];
            t.sessions[mid_slot].push((mid.start_s, median));
            t.slowest[slow_slot].push((slow.start_s, slow.latency_ms));
        }
        let max_of = |f: &dyn Fn(&PassData) -> Option<f64>| {
            chunk
                .iter()
                .filter_map(|(_, p)| f(p))
                .max_by(f64::total_cmp)
        };
        if let Some(v) = max_of(&|p| p.temp_c) {
            t.temp[slot].push((first.start_s, v));
        }
        if let Some(v) = max_of(&|p| p.power_w) {
            t.power[slot].push((first.start_s, v));
        }
    };
    let mut chunk: Vec<(usize, &PassData)> = Vec::new();
    // Two marks per bucket once passes are bucketed.
    let buckets = (budget / 2).max(1);
    let k;
    if n <= budget || sessions * 2 <= buckets {
        // Buckets never straddle sessions: at most n/k + sessions <= buckets of them.
        k = if n <= budget {
            1
        } else {
            n.div_ceil(buckets - sessions)
        };
        for (slot, s) in c.sessions.iter().enumerate() {
            for ps in s.passes.chunks(k) {
                chunk.clear();
                chunk.extend(ps.iter().map(|p| (slot, p)));
                emit(&mut t, &chunk);
            }
        }
    } else {
        // More sessions than buckets: buckets run across sessions; each mark takes the colour
        // of the session its pass came from.
        k = n.div_ceil(buckets);
        for (slot, s) in c.sessions.iter().enumerate() {
            for p in &s.passes {
                chunk.push((slot, p));
                if chunk.len() == k {
                    emit(&mut t, &chunk);
                    chunk.clear();
                }
            }
        }
        emit(&mut t, &chunk);
    }
    let warm_total: usize = c.sessions.iter().map(|s| s.warmups.len()).sum();
    let wk = warm_total.div_ceil(WARMUP_POINTS).max(1);
    for s in &c.sessions {
        for ws in s.warmups.chunks(wk) {
            if let Some(p) = ws
                .iter()
                .max_by(|a, b| a.latency_ms.total_cmp(&b.latency_ms))
            {
                t.warmups.push((p.start_s, p.latency_ms));
            }
        }
        let span = s.warmups.iter().fold(None, |acc: Option<(f64, f64)>, p| {
            let end = p.start_s + p.latency_ms / 1000.0;
            Some(match acc {
                None => (p.start_s, end),
                Some((a, b)) => (a.min(p.start_s), b.max(end)),
            })
        });
        t.warmup_spans.extend(span);
    }
    (t, k)
}

fn timeline(out: &mut String, ctx: &Ctx) {
    if ctx.cells().is_empty() {
        out.push_str("<p class=\"note\">No cells.</p>\n");
        return;
    }
    out.push_str(
        "<p>Latency of each pass against its start time, one colour (and shape) per session; \
         warm-up passes are hollow grey and their span is shaded. Drift upward within a session \
         suggests thermal throttling; a slow start suggests too few warm-ups.</p>\n",
    );
    for (i, c) in ctx.cells().iter().enumerate() {
        let a = &ctx.anchors[i];
        w!(
            out,
            "<article class=\"cell\" id=\"timeline-{a}\">\n<h3><a href=\"#{a}\">{} / {}</a></h3>\n",
            esc(&c.key.device),
            esc(&c.key.id)
        );
        let (t, k) = timeline_data(c, TIMELINE_POINTS);
        let secondary = if t.has_temp() {
            Secondary::Temp
        } else if t.has_power() {
            Secondary::Power
        } else {
            Secondary::None
        };
        // Legend: sessions, warm-ups, sensors.
        out.push_str("<div class=\"legend\">");
        const LEGEND_SESSIONS: usize = 24;
        for (j, s) in c.sessions.iter().enumerate().take(LEGEND_SESSIONS) {
            w!(
                out,
                "<span><span class=\"sw\" style=\"color:{}\">{}</span> session {} of run {}\
                 </span>",
                charts::hex(charts::session_color(j)),
                Shape::of_session(j).glyph(),
                s.index,
                esc(&s.run_id)
            );
        }
        if c.sessions.len() > LEGEND_SESSIONS {
            w!(
                out,
                "<span>and {} more sessions (colours repeat)</span>",
                c.sessions.len() - LEGEND_SESSIONS
            );
        }
        if !t.warmups.is_empty() {
            out.push_str("<span><span class=\"swatch-box\"></span> &#9675; warm-up passes</span>");
        }
        match secondary {
            Secondary::Temp => {
                w!(
                    out,
                    "<span><span class=\"swatch-line\" style=\"border-color:#d55e00\">\
                     </span> temperature, &deg;C (right axis, highest per bucket)</span>"
                );
            }
            Secondary::Power => {
                w!(
                    out,
                    "<span><span class=\"swatch-line\" style=\"border-color:#cc79a7\">\
                     </span> power, W (right axis, highest per bucket)</span>"
                );
            }
            Secondary::None => {}
        }
        out.push_str("</div>\n");
        if c.measured_passes() == 0 && t.warmups.is_empty() {
            out.push_str("<p class=\"note\">no passes recorded for this cell</p>\n");
            out.push_str("</article>\n");
            continue;
        }
        let aria = format!("per-pass timeline of {} / {}", c.key.device, c.key.id);
        w!(
            out,
            "<div class=\"chart\">{}</div>\n",
            charts::timeline_chart(&t, secondary, &aria)
        );
        if secondary == Secondary::Temp && t.has_power() {
            w!(
                out,
                "<div class=\"chart\">{}</div>\n",
                charts::power_strip(&t, &format!("power during {} / {}", c.key.device, c.key.id))
            );
        }
        if secondary == Secondary::None {
            out.push_str(
                "<p class=\"note\">no temperature or power samples in this run (no readable \
                 sensor)</p>\n",
            );
        }
        if k > 1 {
            w!(
                out,
                "<p class=\"note\">{} measured passes, drawn in buckets of {k} consecutive \
                 passes: a filled mark is the bucket's median pass, a hollow mark its slowest \
                 pass (so spikes stay visible).</p>\n",
                c.measured_passes()
            );
        }
        out.push_str("</article>\n");
    }
}

fn page_cache_text(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "dropped before every cold start",
        Some(false) => "&#9888; not dropped (the model may have been cached: times are optimistic)",
        None => "unknown",
    }
}

fn coldstart(out: &mut String, ctx: &Ctx) {
    let with: Vec<usize> = (0..ctx.cells().len())
        .filter(|&i| {
            !ctx.cells()[i].cold_start_ms.is_empty()
                || ctx
                    .baseline_of(i)
                    .is_some_and(|(b, _)| !b.cold_start_ms.is_empty())
        })
        .collect();
    if with.is_empty() {
        out.push_str(
            "<p class=\"note\">No cold starts recorded (no cell of the suite measures a fresh \
             process to first token).</p>\n",
        );
        return;
    }
    let has_base = with.iter().any(|&i| ctx.baseline_of(i).is_some());
    out.push_str(
        "<p>Fresh engine process to first token, one value per cold start.</p>\n\
         <div class=\"scroll\"><table class=\"coldstart\">\n<thead><tr><th>Device</th>\
         <th>Cell</th><th class=\"num\">n</th><th class=\"num\">min (ms)</th>\
         <th class=\"num\">median (ms)</th><th class=\"num\">max (ms)</th>",
    );
    if has_base {
        out.push_str(
            "<th class=\"num\">baseline median (ms)</th><th class=\"num\">&Delta; median</th>",
        );
    }
    out.push_str("<th>Page cache</th></tr></thead>\n<tbody>\n");
    let mut strips = Vec::new();
    for &i in &with {
        let c = &ctx.cells()[i];
        let v = &c.cold_start_ms;
        let min = v.iter().copied().min_by(f64::total_cmp);
        let max = v.iter().copied().max_by(f64::total_cmp);
        w!(
            out,
            "<tr id=\"coldstart-{}\"><td>{}</td><td><a href=\"#{}\">{}</a></td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td>",
            ctx.anchors[i],
            esc(&c.key.device),
            ctx.anchors[i],
            esc(&c.key.id),
            v.len(),
            opt(min),
            opt(ctx.cand[i].cold_median),
            opt(max)
        );
        let base = ctx.baseline_of(i);
        if has_base {
            let bm = base.and_then(|(_, bs)| bs.cold_median);
            w!(
                out,
                "<td class=\"num\">{}</td><td class=\"num\">{}</td>",
                opt(bm),
                delta(ctx.cand[i].cold_median, bm)
            );
        }
        let mut cache = page_cache_text(c.cold_start_page_cache_dropped).to_string();
        if let Some((b, _)) = base {
            if b.cold_start_page_cache_dropped != c.cold_start_page_cache_dropped {
                w!(
                    cache,
                    "; baseline: {}",
                    page_cache_text(b.cold_start_page_cache_dropped)
                );
            }
        }
        w!(out, "<td>{cache}</td></tr>\n");
        let label = charts::short(&format!("{} / {}", c.key.device, c.key.id), 40);
        strips.push(charts::Strip {
            label: label.clone(),
            values: thin(v, 200),
            baseline: false,
        });
        if let Some((b, _)) = base {
            strips.push(charts::Strip {
                label: format!("{} (baseline)", charts::short(&label, 28)),
                values: thin(&b.cold_start_ms, 200),
                baseline: true,
            });
        }
    }
    out.push_str("</tbody></table></div>\n");
    const MAX_ROWS: usize = 60;
    if strips.len() > MAX_ROWS {
        w!(
            out,
            "<p class=\"note\">The chart shows the first {MAX_ROWS} of {} rows; the table \
             lists every cell.</p>\n",
            strips.len()
        );
        strips.truncate(MAX_ROWS);
    }
    w!(
        out,
        "<div class=\"legend\"><span><span class=\"sw\" style=\"color:{}\">&#9679;</span> \
         candidate</span>{}</div>\n<div class=\"chart\">{}</div>\n",
        charts::hex(charts::CANDIDATE),
        if has_base {
            format!(
                "<span><span class=\"sw\" style=\"color:{}\">&#9651;</span> baseline</span>",
                charts::hex(charts::BASELINE)
            )
        } else {
            String::new()
        },
        charts::strip_chart(&strips, "cold-start times per cell")
    );
}

/// At most `max` of `v`, evenly strided.
fn thin(v: &[f64], max: usize) -> Vec<f64> {
    if v.len() <= max {
        return v.to_vec();
    }
    let step = v.len().div_ceil(max);
    v.iter().step_by(step).copied().collect()
}

fn ladder(out: &mut String, ctx: &Ctx) {
    // Group by everything but precision, in first-seen order.
    type Group<'g> = (&'g str, &'g str, &'g str, usize, &'g str);
    let mut groups: Vec<(Group, Vec<usize>)> = Vec::new();
    for (i, c) in ctx.cells().iter().enumerate() {
        let k = &c.key;
        let g: Group = (&k.device, &k.model, &k.scenario, k.threads, &k.state);
        match groups.iter_mut().find(|(h, _)| *h == g) {
            Some((_, v)) => v.push(i),
            None => groups.push((g, vec![i])),
        }
    }
    if groups.is_empty() {
        out.push_str("<p class=\"note\">No cells.</p>\n");
        return;
    }
    out.push_str(
        "<p>Per device, model and scenario: each precision the suite ran, largest model file \
         first (candidate build). Speed-up is decode tokens/s relative to the first row.</p>\n",
    );
    for ((device, model, scenario, threads, state), mut idx) in groups {
        idx.sort_by_key(|&i| std::cmp::Reverse(ctx.cells()[i].model_file_bytes));
        let energy = idx.iter().any(|&i| ctx.cand[i].energy.is_some());
        w!(
            out,
            "<h3>{} &middot; {} &middot; {}</h3>\n<p class=\"meta\">{threads} threads &middot; \
             state {}{}</p>\n<div class=\"scroll\"><table class=\"ladder\">\n<thead><tr>\
             <th>Precision</th><th>Cell</th><th class=\"num\">Model file (MiB)</th>\
             <th class=\"num\">Decode tok/s (median)</th><th class=\"num\">Speed-up</th>\
             <th class=\"num\">Prefill tok/s (median)</th><th class=\"num\">Peak RSS (MiB)</th>",
            esc(device),
            esc(model),
            esc(scenario),
            esc(state),
            if idx.len() == 1 {
                " &middot; one precision only"
            } else {
                ""
            }
        );
        if energy {
            out.push_str("<th class=\"num\">Energy (J/token, median)</th>");
        }
        out.push_str("</tr></thead>\n<tbody>\n");
        let top = ctx.cand[idx[0]].decode_tps;
        for &i in &idx {
            let c = &ctx.cells()[i];
            let s = &ctx.cand[i];
            let speedup = match (s.decode_tps, top) {
                (Some(d), Some(t)) if t > 0.0 => format!("&times;{:.2}", d / t),
                _ => "&ndash;".into(),
            };
            w!(
                out,
                "<tr><td>{}</td><td><a href=\"#{}\">{}</a></td><td class=\"num\">{}</td>\
                 <td class=\"num\">{}</td><td class=\"num\">{speedup}</td>\
                 <td class=\"num\">{}</td><td class=\"num\">{}</td>",
                esc(&c.key.precision),
                ctx.anchors[i],
                esc(&c.key.id),
                opt(c.model_file_bytes.map(mib)),
                opt(s.decode_tps),
                opt(s.prefill_tps),
                opt(s.peak_rss_mib)
            );
            if energy {
                w!(out, "<td class=\"num\">{}</td>", opt(s.energy));
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</tbody></table></div>\n");
    }
    out.push_str(
        "<p class=\"note\">Quality (perplexity) per precision is not part of these runs.</p>\n",
    );
}

fn history(out: &mut String, ctx: &Ctx) {
    let Some(h) = ctx.input.history.filter(|h| !h.entries.is_empty()) else {
        out.push_str("<p class=\"note\">no history: pass --history DIR to meltbench gate</p>\n");
        return;
    };
    history_charts(out, ctx, h);
}

fn history_charts(out: &mut String, ctx: &Ctx, h: &History) {
    // (device, cell) in first-seen order; per cell the metrics to draw: latency_p95, and every
    // metric an alert names.
    let mut keys: Vec<(&str, &str)> = Vec::new();
    for e in &h.entries {
        for c in &e.cells {
            let k = (c.device.as_str(), c.cell.as_str());
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
    }
    w!(
        out,
        "<p>{} releases, oldest first, evenly spaced. Each point is the mean of the per-session \
         values of the release; bars span the smallest to the largest session. &#9650; marks the \
         last release of a trend alert (three consecutive steps each more than 5% worse).</p>\n",
        h.entries.len()
    );
    for (device, cell) in keys {
        let mut metrics = vec![Metric::LatencyP95];
        for a in &h.alerts {
            if a.device == device && a.cell == cell && !metrics.contains(&a.metric) {
                metrics.push(a.metric);
            }
        }
        for m in metrics {
            let points: Vec<charts::HistoryPoint> = h
                .entries
                .iter()
                .map(|e| {
                    let vals = e
                        .cells
                        .iter()
                        .find(|c| c.device == device && c.cell == cell)
                        .and_then(|c| c.sessions.get(&m))
                        .filter(|v| !v.is_empty());
                    let stats = vals.map(|v| {
                        let mean = v.iter().sum::<f64>() / v.len() as f64;
                        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
                        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                        (mean, lo, hi)
                    });
                    let alert = h.alerts.iter().any(|a| {
                        a.device == device
                            && a.cell == cell
                            && a.metric == m
                            && a.releases.last() == Some(&e.release)
                    });
                    charts::HistoryPoint {
                        release: e.release.clone(),
                        stats,
                        alert,
                    }
                })
                .collect();
            if points.iter().all(|p| p.stats.is_none()) {
                continue;
            }
            let link = ctx
                .anchor_of(device, cell)
                .map(|a| format!(" <a href=\"#{a}\">(cell)</a>"))
                .unwrap_or_default();
            w!(
                out,
                "<h3 id=\"history-{}-{}\">{} / {} &middot; {}{link}</h3>\n",
                cell_anchor(device, cell),
                m.name(),
                esc(device),
                esc(cell),
                esc(m.label())
            );
            let y = format!("{} ({})", m.label(), m.unit());
            let aria = format!("history of {} for {device} / {cell}", m.label());
            w!(
                out,
                "<div class=\"chart\">{}</div>\n",
                charts::history_chart(&points, &y, &aria)
            );
            out.push_str(
                "<details><summary>values</summary><table class=\"history\"><thead><tr>\
                 <th>Release</th><th class=\"num\">mean</th><th class=\"num\">min</th>\
                 <th class=\"num\">max</th></tr></thead><tbody>\n",
            );
            for p in &points {
                let (m_, lo, hi) = match p.stats {
                    Some((m_, lo, hi)) => (num(m_), num(lo), num(hi)),
                    None => ("&ndash;".into(), "&ndash;".into(), "&ndash;".into()),
                };
                w!(
                    out,
                    "<tr><td>{}{}</td><td class=\"num\">{m_}</td><td class=\"num\">{lo}</td>\
                     <td class=\"num\">{hi}</td></tr>\n",
                    esc(&p.release),
                    if p.alert { " &#9650; alert" } else { "" }
                );
            }
            out.push_str("</tbody></table></details>\n");
        }
    }
    out.push_str("<h3>Trend alerts</h3>\n");
    if h.alerts.is_empty() {
        out.push_str("<p class=\"note\">No trend alerts.</p>\n");
        return;
    }
    out.push_str("<ul class=\"alerts\">\n");
    for a in &h.alerts {
        let steps: Vec<String> = a.step_ratios.iter().map(|r| pct(r - 1.0)).collect();
        let releases: Vec<String> = a.releases.iter().map(|r| esc(r)).collect();
        w!(
            out,
            "<li><span class=\"chip v-fail\">&#9650; ALERT</span> {} / {} &middot; {}: {} \
             <span class=\"meta\">(releases {}; steps {})</span></li>\n",
            esc(&a.device),
            ctx.cell_link(&a.device, &a.cell),
            esc(a.metric.label()),
            esc(&a.message),
            releases.join(" &rarr; "),
            steps.join(", ")
        );
    }
    out.push_str("</ul>\n");
}

fn environment(out: &mut String, ctx: &Ctx) {
    let rows = ctx.input.environment();
    if rows.is_empty() {
        out.push_str("<p class=\"note\">No provenance recorded.</p>\n");
        return;
    }
    let base = ctx.input.baseline.is_some();
    let differing = rows.iter().filter(|r| r.differs).count();
    if base {
        w!(
            out,
            "<p>{differing} of {} fields differ between the builds (marked &#8800;, listed \
             first).</p>\n",
            rows.len()
        );
    }
    out.push_str(
        "<div class=\"scroll\"><table class=\"environment\">\n<thead><tr><th></th><th>Field</th>",
    );
    if base {
        out.push_str("<th>Baseline</th>");
    }
    out.push_str("<th>Candidate</th></tr></thead>\n<tbody>\n");
    for r in &rows {
        let (class, mark) = if r.differs {
            (
                " class=\"differs\"",
                "<span class=\"mark\" title=\"differs\">&#8800;</span>",
            )
        } else {
            ("", "")
        };
        w!(out, "<tr{class}><td>{mark}</td><td>{}</td>", esc(&r.field));
        if base {
            w!(out, "<td class=\"wrap\">{}</td>", esc(&r.baseline));
        }
        w!(out, "<td class=\"wrap\">{}</td></tr>\n", esc(&r.candidate));
    }
    out.push_str("</tbody></table></div>\n");
}

fn reproduce(out: &mut String, ctx: &Ctx) {
    let cmds = ctx.input.reproduce();
    out.push_str("<p>The commands that made the candidate runs, then this report:</p>\n");
    for c in &cmds {
        w!(out, "<pre><code>{}</code></pre>\n", esc(c));
    }
}

fn method(out: &mut String, ctx: &Ctx) {
    let gate = ctx.input.gate;
    let default_config = GateConfig::default();
    let config = gate.map(|g| &g.config).unwrap_or(&default_config);
    out.push_str("<dl class=\"method\">\n");
    out.push_str(
        "<dt>Percentiles</dt><dd>From the raw latency of every measured pass (warm-ups \
         excluded), never from averages: Hyndman &amp; Fan type 7 (linear interpolation \
         between the two nearest ranks, numpy's default). Medians of tokens/s and energy per \
         token use the same estimator over per-pass values.</dd>\n",
    );
    if gate.is_none() {
        out.push_str(
            "<dt>Gate</dt><dd>No gate ran for this report, so there are no intervals or \
             verdicts. The defaults <code>meltbench gate</code> would use follow.</dd>\n",
        );
    }
    w!(
        out,
        "<dt>Confidence intervals</dt><dd>Hierarchical bootstrap of the ratio candidate / \
         baseline: each of B = {} resamples draws sessions with replacement, then passes with \
         replacement within each drawn session, and recomputes the metric on both builds; the \
         interval is the {}% two-sided percentile interval of the ratios (seed {}).</dd>\n",
        config.resamples,
        plain(config.confidence * 100.0),
        config.seed
    );
    out.push_str(
        "<dt>Budgets</dt><dd><table class=\"budgets\"><thead><tr><th>Metric</th>\
         <th>Statistic</th><th class=\"num\">Budget</th></tr></thead><tbody>\n",
    );
    for (m, b) in &config.budgets {
        w!(
            out,
            "<tr><td>{}</td><td>{} ({})</td><td class=\"num\">{}</td></tr>\n",
            m.name(),
            esc(m.label()),
            esc(m.unit()),
            budget_text(*m, *b)
        );
    }
    w!(
        out,
        "</tbody></table>Metrics not listed are not gated. Budgets are in the bad direction: \
         slower, less throughput, more memory or energy.</dd>\n<dt>Noise floor</dt><dd>Changes \
         within &plusmn;{} are noise: never reported as regressed or improved.</dd>\n",
        pct(config.noise_floor).trim_start_matches('+')
    );
    let ignored: Vec<&str> = config.ignore_key.iter().map(|k| k.name()).collect();
    w!(
        out,
        "<dt>Comparable cells</dt><dd>Cells are paired by device, model SHA-256, precision, \
         scenario, threads and state{}. A cell without a partner is listed as not comparable, \
         never as a regression.</dd>\n",
        if ignored.is_empty() {
            String::new()
        } else {
            format!(" (this gate ignored: {})", ignored.join(", "))
        }
    );
    w!(
        out,
        "<dt>Verdicts</dt><dd><ul>\
         <li>{}: the whole interval lies beyond the budget.</li>\
         <li>{}: the interval straddles the budget; more sessions would decide.</li>\
         <li>{}: would have failed, but p99 cannot gate below {} pooled passes per build.</li>\
         <li>{}: worse beyond the noise floor, but the whole interval lies within budget.</li>\
         <li>{}: within the noise floor or budget.</li>\
         <li>{}: better beyond the noise floor with the whole interval on the better side.</li>\
         </ul>A <code>~</code> after an interval means it includes no change.</dd>\n",
        chip(Verdict::Fail),
        chip(Verdict::Inconclusive),
        chip(Verdict::Warn),
        crate::metric::P99_MIN_POOLED_PASSES,
        chip(Verdict::PassWithNote),
        chip(Verdict::Pass),
        chip(Verdict::Improved),
    );
    w!(
        out,
        "<dt>Exit codes of <code>meltbench gate</code></dt><dd>0: pass (including warnings); \
         1: a regression over budget; 2: inconclusive or nothing comparable.{}</dd>\n",
        gate.map(|g| format!(" This gate exited {}.", g.exit_code))
            .unwrap_or_default()
    );
    w!(
        out,
        "<dt>Charts</dt><dd>CDF curves are drawn through at most {ECDF_POINTS} points (tail above \
         p99 kept); timelines show at most {TIMELINE_POINTS} marks per cell: every pass, or per \
         bucket of consecutive passes its median and its slowest pass. Every statistic uses all \
         passes.</dd>\n"
    );
    out.push_str("</dl>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::NotComparable;
    use crate::dataset::{LoadedRunInfo, SessionData};

    #[test]
    fn summary_shows_ttft_and_decode_percentiles() {
        let mut d = dataset(
            "run-a",
            "rpi5",
            vec![cell("rpi5", "tiny-q4", "q4_0", 2, 50, 50.0, false, 1)],
        );
        for (i, p) in d.cells[0]
            .sessions
            .iter_mut()
            .flat_map(|s| s.passes.iter_mut())
            .enumerate()
        {
            p.decode_step_ms = vec![10.0 + i as f64, 20.0 + i as f64];
        }
        let ttft: Vec<f64> = d.cells[0].passes().map(|p| p.ttft_ms).collect();
        let steps: Vec<f64> = d.cells[0]
            .passes()
            .flat_map(|p| p.decode_step_ms.clone())
            .collect();
        let html = render(&input(&d, None, None, None));
        let table = &html[html.find("<table class=\"cells\">").unwrap()..];
        let table = &table[..table.find("</table>").unwrap()];
        assert!(table.contains("TTFT (ms)<br>p50 / p95 / p99"), "{table}");
        assert!(
            table.contains("Decode (ms/token)<br>p50 / p95 / p99"),
            "{table}"
        );
        for v in [ttft, steps] {
            let want = three(&Distribution::of(&v));
            assert!(
                table.contains(&format!(">{want}<")),
                "{want} not in {table}"
            );
        }
    }

    #[test]
    fn an_interval_has_the_digits_of_its_figure() {
        // 100 passes from 650.123 to 749.123 ms: p50 is near 700, printed with one decimal,
        // and so are its interval's ends (not `[680.267, 735.584]`).
        let sorted: Vec<f64> = (0..100).map(|i| 650.123 + i as f64).collect();
        let ci = order_ci(&sorted, 0.5);
        let ends: Vec<&str> = ci.trim_matches(['[', ']']).split(", ").collect();
        assert_eq!(ends.len(), 2, "{ci}");
        for e in ends {
            assert_eq!(e.split('.').nth(1).map(str::len), Some(1), "{ci}");
        }
    }
    use crate::history::{HistoryCell, HistoryEntry, TrendAlert};
    use crate::runstore::{DeviceRecord, RunManifest};
    use crate::summary::CellKey;
    use meltbench_protocol::agent::DeviceInfo;

    /// A deterministic pseudo-random stream in [0, 1).
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    fn key(device: &str, id: &str, precision: &str) -> CellKey {
        CellKey {
            id: id.into(),
            device: device.into(),
            model: "tinyllama-1.1b".into(),
            model_sha256: "1a2b3c4d5e6f".into(),
            precision: precision.into(),
            scenario: "chat-short".into(),
            threads: 4,
            state: "cool".into(),
        }
    }

    fn pass(start_s: f64, latency_ms: f64, warmup: bool, sensors: bool) -> PassData {
        PassData {
            start_s,
            warmup,
            latency_ms,
            ttft_ms: latency_ms * 0.2,
            decode_step_ms: Vec::new(),
            prefill_tokens_per_s: Some(400.0 + latency_ms.fract() * 10.0),
            decode_tokens_per_s: Some(1000.0 / latency_ms * 32.0),
            rss_hwm_bytes: Some(700 << 20),
            temp_c: sensors.then_some(40.0 + start_s / 10.0),
            power_w: sensors.then_some(3.5 + latency_ms.fract()),
            energy_j_per_token: sensors.then_some(0.12),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn cell(
        device: &str,
        id: &str,
        precision: &str,
        sessions: usize,
        passes: usize,
        base_ms: f64,
        sensors: bool,
        seed: u64,
    ) -> CellData {
        let mut rng = Lcg(seed);
        let mut t = 0.0;
        let sessions = (0..sessions)
            .map(|s| {
                let mut warm = Vec::new();
                for _ in 0..2 {
                    warm.push(pass(t, base_ms * 1.5, true, sensors));
                    t += base_ms * 1.5 / 1000.0;
                }
                let ps = (0..passes)
                    .map(|_| {
                        let spike = if rng.next() < 0.01 { 3.0 } else { 1.0 };
                        let l = base_ms * (1.0 + 0.1 * rng.next()) * spike;
                        let p = pass(t, l, false, sensors);
                        t += l / 1000.0;
                        p
                    })
                    .collect();
                SessionData {
                    run_id: "20261122T101500Z-ci-smoke".into(),
                    index: s,
                    passes: ps,
                    warmups: warm,
                    peak_rss_bytes: Some(712 << 20),
                }
            })
            .collect();
        CellData {
            key: key(device, id, precision),
            sessions,
            cold_start_ms: vec![base_ms * 8.0, base_ms * 8.5, base_ms * 7.9],
            cold_start_page_cache_dropped: Some(true),
            errors: Vec::new(),
            states_reached: Vec::new(),
            prompt_tokens: Some(64),
            gen_tokens: Some(32),
            model_file_bytes: Some(match precision {
                "f16" => 2200 << 20,
                "q8_0" => 1170 << 20,
                _ => 640 << 20,
            }),
            weight_bytes_per_token: None,
            kernels: Some("avx2".into()),
        }
    }

    fn run_info(run_id: &str, device: &str, cells: &[CellData]) -> LoadedRunInfo {
        LoadedRunInfo {
            dir: format!("runs/{run_id}").into(),
            manifest: RunManifest {
                run_id: run_id.into(),
                suite_name: "ci-smoke".into(),
                suite_path: "suites/ci-smoke.yaml".into(),
                suite_yaml: String::new(),
                meltbench_version: "0.1.0".into(),
                meltbench_commit: "f41b2fe".into(),
                suite_git_commit: None,
                started_utc: "2026-11-22T10:15:00Z".into(),
                finished_utc: None,
                command: format!("meltbench run suites/ci-smoke.yaml --device '{device}'"),
                devices: vec![DeviceRecord {
                    name: device.into(),
                    transport: "ssh".into(),
                    info: Some(DeviceInfo {
                        hostname: format!("{device}-host"),
                        os: "linux".into(),
                        os_release: Some("6.1".into()),
                        kernel: "6.1.0".into(),
                        arch: "aarch64".into(),
                        abi: "aarch64".into(),
                        cpu_model: Some("Cortex-A76".into()),
                        cores: 4,
                        clusters: Vec::new(),
                        ram_bytes: Some(8 << 30),
                        root: false,
                        can_drop_caches: true,
                        telemetry: Vec::new(),
                    }),
                    error: None,
                    transfer: None,
                }],
                cells: cells.iter().map(|c| c.key.clone()).collect(),
            },
            skipped_lines: Vec::new(),
        }
    }

    fn dataset(run_id: &str, device: &str, cells: Vec<CellData>) -> Dataset {
        Dataset {
            runs: vec![run_info(run_id, device, &cells)],
            cells,
        }
    }

    fn input<'a>(
        cand: &'a Dataset,
        base: Option<&'a Dataset>,
        gate: Option<&'a GateOutcome>,
        history: Option<&'a History>,
    ) -> ReportInput<'a> {
        ReportInput {
            title: "ci-smoke: cand vs base".into(),
            candidate: cand,
            baseline: base,
            gate,
            history,
            generated_utc: "2026-11-22T11:00:00Z".into(),
            command: "meltbench gate runs/base runs/cand --html report.html".into(),
        }
    }

    /// Every section present once, in order, each closed; tags balanced enough to trust.
    /// With `MELTBENCH_HTML_DUMP=dir` set, also writes the page there for a look in a browser.
    fn check_structure(html: &str) {
        if let Some(dir) = std::env::var_os("MELTBENCH_HTML_DUMP") {
            let name = std::thread::current()
                .name()
                .unwrap_or("page")
                .replace("::", "_");
            std::fs::write(
                std::path::Path::new(&dir).join(format!("{name}.html")),
                html,
            )
            .unwrap();
        }
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.trim_end().ends_with("</html>"));
        let mut last = 0;
        for (id, _) in SECTIONS {
            let needle = format!("<section id=\"{id}\">");
            assert_eq!(html.matches(&needle).count(), 1, "section {id}");
            let at = html.find(&needle).unwrap();
            assert!(at > last, "section {id} out of order");
            last = at;
            assert_eq!(
                html.matches(&format!("id=\"{id}\"")).count(),
                1,
                "id {id} unique"
            );
        }
        for tag in [
            "section", "table", "article", "svg", "div", "pre", "ul", "details",
        ] {
            let open = html.matches(&format!("<{tag}>")).count()
                + html.matches(&format!("<{tag} ")).count();
            let close = html.matches(&format!("</{tag}>")).count();
            assert_eq!(open, close, "<{tag}> balanced");
        }
        assert_eq!(html.matches("<section").count(), SECTIONS.len());
        assert_eq!(html.matches("<script>").count(), 1, "only the theme script");
        let outside_svg_ns = html.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
        for external in [
            "http://",
            "https://",
            "<img",
            "<link",
            "<iframe",
            "<script src",
            "@import",
            "url(",
        ] {
            assert!(
                !outside_svg_ns.contains(external),
                "external reference {external}"
            );
        }
        // Ids unique over the whole page.
        let mut ids: Vec<&str> = html
            .match_indices(" id=\"")
            .map(|(i, m)| {
                let rest = &html[i + m.len()..];
                &rest[..rest.find('"').unwrap()]
            })
            .collect();
        let n = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), n, "duplicate ids");
    }

    #[test]
    fn no_baseline_render() {
        let d = dataset(
            "run-a",
            "rpi5",
            vec![
                cell("rpi5", "tiny-q4", "q4_0", 3, 40, 50.0, false, 1),
                cell("rpi5", "tiny-f16", "f16", 3, 40, 120.0, false, 2),
            ],
        );
        let html = render(&input(&d, None, None, None));
        check_structure(&html);
        assert!(html.contains("no baseline: measurements only"));
        assert!(html.contains("no history: pass --history DIR to meltbench gate"));
        assert!(html.contains("no temperature or power samples in this run (no readable sensor)"));
        let a = cell_anchor("rpi5", "tiny-q4");
        assert!(html.contains(&format!("id=\"{a}\"")));
        assert!(html.contains(&format!("href=\"#{a}\"")));
        assert!(html.contains(&format!("id=\"timeline-{a}\"")));
        // Axis labels reach the SVG.
        assert!(html.contains("pass latency (ms, log scale)"));
        assert!(html.contains("fraction of passes at or below"));
        assert!(html.contains("time since the cell&apos;s first pass (s)"));
        assert!(html.contains("fresh process to first token (ms)"));
        // Ladder: f16 first (largest file).
        let lad = &html[html.find("<section id=\"ladder\">").unwrap()..];
        assert!(lad.find(">f16<").unwrap() < lad.find(">q4_0<").unwrap());
        assert!(html.contains("dropped before every cold start"));
        assert!(html.contains(
            "<pre><code>meltbench run suites/ci-smoke.yaml --device &#39;rpi5&#39;</code></pre>"
        ));
    }

    #[test]
    fn escapes_every_string() {
        let evil = "<script>alert(1)</script>";
        let mut c = cell(evil, "cell\"<b>&", "q4_0", 2, 30, 40.0, true, 3);
        c.errors
            .push("engine died: <img src=x onerror=alert(2)>".into());
        c.key.model = "<i>model</i>".into();
        let mut d = dataset("run-<x>", evil, vec![c]);
        d.runs[0]
            .skipped_lines
            .push("events/x.jsonl:3: <bad>".into());
        let h = History {
            entries: vec![HistoryEntry {
                release: "v1<script>".into(),
                recorded_utc: String::new(),
                run_ids: vec![],
                meltbench_commit: String::new(),
                cells: vec![HistoryCell {
                    device: evil.into(),
                    cell: "cell\"<b>&".into(),
                    model_sha256: String::new(),
                    precision: String::new(),
                    scenario: String::new(),
                    threads: 1,
                    state: String::new(),
                    sessions: [(Metric::LatencyP95, vec![1.0, 2.0])].into_iter().collect(),
                }],
            }],
            alerts: vec![],
        };
        let html = render(&input(&d, None, None, Some(&h)));
        check_structure(&html);
        assert!(!html.contains("<script>alert(1)"));
        assert!(!html.contains("<img"));
        assert!(!html.contains("<b>&"));
        assert!(!html.contains("<i>model"));
        assert!(!html.contains("v1<script>"));
        assert!(!html.contains("<bad>"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        // Only the theme script.
        assert_eq!(html.matches("<script").count(), 1);
        // Anchors keep only safe characters.
        let a = cell_anchor(evil, "cell\"<b>&");
        assert!(a
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    }

    #[test]
    fn plotters_escapes_svg_text() {
        let pts = [charts::HistoryPoint {
            release: "<b>&\"'".into(),
            stats: Some((1.0, 0.5, 1.5)),
            alert: true,
        }];
        let svg = charts::history_chart(&pts, "y <unit>", "aria <x>");
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("&lt;b&gt;&amp;&quot;&apos;"));
        assert!(svg.contains("y &lt;unit&gt;"));
        assert!(svg.contains("aria-label=\"aria &lt;x&gt;\""));
        assert!(!svg.contains("<b>"));
        assert!(svg.contains("trend alert"));
    }

    fn row(device: &str, cell: &str, metric: Metric, ratio: f64, v: Verdict) -> GateRow {
        GateRow {
            device: device.into(),
            cell: cell.into(),
            baseline_cell: cell.into(),
            metric,
            baseline: 100.0,
            candidate: 100.0 * ratio,
            ratio,
            ci_low: ratio - 0.03,
            ci_high: ratio + 0.04,
            budget: 0.10,
            verdict: v,
            baseline_sessions: 3,
            candidate_sessions: 3,
            baseline_n: 120,
            candidate_n: 120,
            sessions_needed: (v == Verdict::Inconclusive).then_some(9),
            note: (v == Verdict::Fail).then(|| "p95 over budget <check>".to_string()),
        }
    }

    #[test]
    fn with_gate_render() {
        let cand = dataset(
            "run-c",
            "pixel8",
            vec![
                cell("pixel8", "chat-q4", "q4_0", 3, 40, 60.0, true, 4),
                cell("pixel8", "chat-q8", "q8_0", 3, 40, 80.0, true, 5),
                cell("pixel8", "new-cell", "q4_0", 2, 20, 70.0, true, 6),
            ],
        );
        let mut base = dataset(
            "run-b",
            "pixel8",
            vec![
                cell("pixel8", "chat-q4", "q4_0", 3, 40, 50.0, true, 7),
                cell("pixel8", "chat-q8", "q8_0", 3, 40, 80.0, true, 8),
            ],
        );
        base.runs[0].manifest.meltbench_commit = "0ldc0mm".into();
        let gate = GateOutcome {
            config: GateConfig::default(),
            rows: vec![
                row("pixel8", "chat-q4", Metric::LatencyP95, 1.2, Verdict::Fail),
                row(
                    "pixel8",
                    "chat-q8",
                    Metric::LatencyP95,
                    1.05,
                    Verdict::Inconclusive,
                ),
                row(
                    "pixel8",
                    "chat-q8",
                    Metric::DecodeTokensPerS,
                    1.0,
                    Verdict::Pass,
                ),
            ],
            not_comparable: vec![NotComparable {
                device: "pixel8".into(),
                cell: "new-cell".into(),
                side: "candidate".into(),
                reason: "no baseline cell with this key".into(),
            }],
            not_measured: vec!["pixel8 / chat-q4: energy_per_token".into()],
            exit_code: 1,
            headline: "1 regression over budget, 1 inconclusive, 1 unchanged".into(),
        };
        let html = render(&input(&cand, Some(&base), Some(&gate), None));
        check_structure(&html);
        let verdict = &html[html.find("<section id=\"verdict\">").unwrap()
            ..html.find("<section id=\"summary\">").unwrap()];
        assert!(verdict.contains("banner v-fail"));
        assert!(verdict.contains("FAIL"));
        assert!(verdict.contains("1 regression over budget, 1 inconclusive, 1 unchanged"));
        assert!(verdict.contains("Worst:"));
        assert!(verdict.contains("+20.0% [+17.0%, +24.0%]"));
        let summary = &html[html.find("<section id=\"summary\">").unwrap()
            ..html.find("<section id=\"cdf\">").unwrap()];
        assert!(summary.contains("p95 over budget &lt;check&gt;"));
        assert!(summary.contains("about 9 sessions per build would decide"));
        assert!(summary.contains("no baseline cell with this key"));
        assert!(
            summary.contains("&minus;10%"),
            "tokens/s budget is a decrease"
        );
        assert!(summary.contains("3&times;40 / 3&times;40"));
        assert!(summary.contains(&format!("href=\"#{}\"", cell_anchor("pixel8", "chat-q4"))));
        assert!(summary.contains("energy_per_token"));
        // Baseline overlaid where comparable, not for the new cell.
        assert_eq!(html.matches("baseline, dashed").count(), 2);
        assert!(html.contains("no comparable baseline cell"));
        // Sensors present: secondary axes, no missing-sensor note.
        assert!(html.contains("temperature (°C), line"));
        assert!(html.contains("power (W)"));
        assert!(!html.contains("no readable sensor"));
        // Environment compares both builds; a differing row is marked, not only coloured.
        assert!(html.contains("<th>Baseline</th><th>Candidate</th>"));
        assert!(html.contains(
            "<tr class=\"differs\"><td><span class=\"mark\" title=\"differs\">&#8800;</span>\
             </td><td>meltbench commit</td><td class=\"wrap\">0ldc0mm</td>"
        ));
        assert!(html.contains("This gate exited 1."));
        assert!(html.contains("B = 2000"));
    }

    #[test]
    fn history_render() {
        let d = dataset(
            "run-a",
            "rpi5",
            vec![cell("rpi5", "tiny-q4", "q4_0", 2, 30, 50.0, false, 9)],
        );
        let entries: Vec<HistoryEntry> = (0..4)
            .map(|i| HistoryEntry {
                release: format!("v1.{i}.0"),
                recorded_utc: format!("2026-11-0{}T00:00:00Z", i + 1),
                run_ids: vec![format!("run-{i}")],
                meltbench_commit: "abc".into(),
                cells: vec![HistoryCell {
                    device: "rpi5".into(),
                    cell: "tiny-q4".into(),
                    model_sha256: "1a2b".into(),
                    precision: "q4_0".into(),
                    scenario: "chat-short".into(),
                    threads: 4,
                    state: "cool".into(),
                    sessions: [
                        (
                            Metric::LatencyP95,
                            vec![50.0 * 1.07f64.powi(i), 52.0 * 1.07f64.powi(i)],
                        ),
                        (Metric::TtftP95, vec![10.0, 11.0]),
                    ]
                    .into_iter()
                    .collect(),
                }],
            })
            .collect();
        let h = History {
            alerts: vec![TrendAlert {
                device: "rpi5".into(),
                cell: "tiny-q4".into(),
                metric: Metric::LatencyP95,
                releases: entries.iter().map(|e| e.release.clone()).collect(),
                step_ratios: vec![1.07, 1.07, 1.07],
                message: "p95 latency worse by more than 5% in 3 consecutive releases".into(),
            }],
            entries,
        };
        let html = render(&input(&d, None, None, Some(&h)));
        check_structure(&html);
        let hist = &html[html.find("<section id=\"history\">").unwrap()
            ..html.find("<section id=\"environment\">").unwrap()];
        assert!(!hist.contains("no history"));
        assert_eq!(hist.matches("<svg").count(), 1, "one chart: latency_p95");
        for r in ["v1.0.0", "v1.1.0", "v1.2.0", "v1.3.0"] {
            assert!(hist.contains(&format!(">{r}<")), "release {r} labelled");
        }
        assert!(hist.contains("trend alert"));
        assert!(hist.contains("p95 latency worse by more than 5% in 3 consecutive releases"));
        assert!(hist.contains("+7.0%, +7.0%, +7.0%"));
        assert!(hist.contains("v1.0.0 &rarr; v1.1.0"));
    }

    #[test]
    fn select_matches_sorted_percentile() {
        let mut rng = Lcg(11);
        for n in [1usize, 2, 3, 10, 101, 1000] {
            let v: Vec<f64> = (0..n).map(|_| rng.next() * 100.0).collect();
            let mut s = v.clone();
            s.sort_by(f64::total_cmp);
            for p in [0.0, 1.0, 50.0, 95.0, 99.0, 100.0] {
                let got = quantile_select(&mut v.clone(), p).unwrap();
                assert_eq!(got, percentile_sorted(&s, p), "n={n} p={p}");
            }
        }
        assert_eq!(quantile_select(&mut [], 50.0), None);
    }

    #[test]
    fn reductions_are_bounded() {
        let c = cell("d", "c", "q4_0", 7, 20_000, 10.0, true, 12);
        let s = Stats::of(&c);
        let pts = ecdf_points(&s.sorted_latency, ECDF_POINTS);
        assert!(pts.len() <= ECDF_POINTS + 1);
        assert_eq!(pts.last().unwrap().1, 1.0);
        assert_eq!(pts.last().unwrap().0, *s.sorted_latency.last().unwrap());
        let marks = |t: &Timeline| -> usize {
            t.sessions
                .iter()
                .chain(t.slowest.iter())
                .map(Vec::len)
                .sum()
        };
        let (t, k) = timeline_data(&c, TIMELINE_POINTS);
        assert!(marks(&t) <= TIMELINE_POINTS, "{}", marks(&t));
        assert!(k > 1);
        // The slowest pass survives.
        let max = t.slowest.iter().flatten().map(|p| p.1).fold(0.0, f64::max);
        assert_eq!(max, *s.sorted_latency.last().unwrap());
        // Medians sit in the body, below the spikes.
        let typical = t.sessions.iter().flatten().map(|p| p.1).fold(0.0, f64::max);
        assert!(typical < 11.5, "{typical}");
        // Few passes: every pass drawn as itself.
        let small = cell("d", "c", "q4_0", 3, 100, 10.0, false, 14);
        let (t, k) = timeline_data(&small, TIMELINE_POINTS);
        assert_eq!((k, marks(&t)), (1, 300));
        // Many short sessions: buckets cross sessions, still bounded.
        let many = cell("d", "c", "q4_0", 3000, 3, 10.0, false, 13);
        let (t, _) = timeline_data(&many, TIMELINE_POINTS);
        assert!(marks(&t) <= TIMELINE_POINTS, "{}", marks(&t));
    }

    fn big(cells: usize, passes_per_cell: usize) -> (Dataset, Dataset) {
        let mk = |seed: u64, base: f64| {
            let cs: Vec<CellData> = (0..cells)
                .map(|i| {
                    cell(
                        "pixel8",
                        &format!("cell-{i}"),
                        "q4_0",
                        10,
                        passes_per_cell / 10,
                        base + i as f64,
                        true,
                        seed + i as u64,
                    )
                })
                .collect();
            dataset("run", "pixel8", cs)
        };
        (mk(100, 40.0), mk(200, 41.0))
    }

    #[test]
    fn large_dataset_renders() {
        let (cand, base) = big(2, 100_000);
        assert_eq!(cand.total_passes(), 200_000);
        let t = std::time::Instant::now();
        let html = render(&input(&cand, Some(&base), None, None));
        let took = t.elapsed();
        check_structure(&html);
        eprintln!(
            "200,000 + 200,000 baseline passes: {took:?}, {} KiB",
            html.len() / 1024
        );
        assert!(
            html.len() < 2 << 20,
            "page stays small: {} bytes",
            html.len()
        );
    }

    /// `cargo test --release -p meltbench-reports --lib export::html -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn million_passes_timing() {
        let (cand, base) = big(10, 100_000);
        assert_eq!(cand.total_passes(), 1_000_000);
        let t = std::time::Instant::now();
        let html = render(&input(&cand, Some(&base), None, None));
        let took = t.elapsed();
        check_structure(&html);
        eprintln!(
            "1,000,000 candidate + 1,000,000 baseline passes: rendered in {took:?}, {} KiB",
            html.len() / 1024
        );
    }
}
