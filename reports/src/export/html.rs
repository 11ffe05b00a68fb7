//! The release-review report: one self-contained HTML5 file (inline CSS, inline SVG charts
//! drawn with plotters, a few lines of script for the dark/light toggle; nothing fetched).
//!
//! Sections, each `<section id=…>` in this order: `verdict`, `summary`, `engines`, `cdf`,
//! `timeline`, `coldstart`, `ladder`, `history`, `environment`, `reproduce`, `method`. Each candidate cell
//! has a stable anchor ([`cell_anchor`]) that the tables link to.
//!
//! Every string that comes from suites, devices or runs is escaped ([`esc`]) before it enters
//! the page; text handed to plotters is escaped by its SVG backend.
//!
//! Every per-cell figure comes from [`CellFigures`], as in every other format; the page adds
//! charts drawn from reduced points: at most [`ECDF_POINTS`] per CDF curve and
//! [`TIMELINE_POINTS`] per timeline, whatever the number of passes. One file per section under
//! `html/`; this one holds the page frame, the per-cell context and the shared formatting.

use super::number as num;
use crate::compare::{GateConfig, GateOutcome, GateRow, Verdict};
use crate::dataset::{CellData, Dataset, PassData};
use crate::figures::CellFigures;
use crate::history::History;
use crate::metric::Metric;
use crate::report::ReportInput;
use crate::stats::percentile::{
    percentile_select, percentile_sorted, Distribution, Interval, INTERVAL_CONFIDENCE,
};
use crate::stats::quantile_ci::quantile_bounds;
use cdf::cdf;
use charts::{Secondary, Shape, Timeline};
use coldstart::coldstart;
use engines::engines;
use environment::{environment, reproduce};
use history::history;
use ladder::ladder;
use method::method;
use std::collections::BTreeMap;
use std::fmt::Write;
use summary::summary;
use timeline::timeline;
use verdict::{header, verdict};

/// Most points drawn per ECDF curve.
pub const ECDF_POINTS: usize = 500;
/// Most measured-pass marks drawn per cell timeline (beyond it, a bucket's median and slowest).
pub const TIMELINE_POINTS: usize = 2000;
/// Most warm-up points drawn per cell timeline.
const WARMUP_POINTS: usize = 300;

const CSS: &str = include_str!("html/style.css");
const SCRIPT: &str = include_str!("html/theme.js");

/// The section ids, in page order.
pub const SECTIONS: [(&str, &str); 11] = [
    ("verdict", "Verdict"),
    ("summary", "Summary"),
    ("engines", "Engines side by side"),
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

// After `w!`: macros are in scope only below their definition.
mod cdf;
mod charts;
mod coldstart;
mod engines;
mod environment;
mod history;
mod ladder;
mod method;
mod summary;
#[cfg(test)]
mod tests;
mod timeline;
mod verdict;

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
            "engines" => engines(&mut out, &ctx),
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

/// What the report shows of one cell: its [`CellFigures`] (the numbers every export prints)
/// and the sorted latencies the CDF is drawn from.
struct Stats {
    figures: CellFigures,
    /// Every measured pass latency, ascending (the one sort per cell).
    sorted_latency: Vec<f64>,
}

impl Stats {
    fn of(c: &CellData) -> Stats {
        let mut sorted: Vec<f64> = c.passes().map(|p| p.latency_ms).collect();
        sorted.sort_unstable_by(f64::total_cmp);
        Stats {
            figures: CellFigures::of(c),
            sorted_latency: sorted,
        }
    }

    fn passes(&self) -> usize {
        self.figures.passes
    }

    fn decode_tps(&self) -> Option<f64> {
        median(&self.figures.decode_tokens_per_s)
    }

    fn prefill_tps(&self) -> Option<f64> {
        median(&self.figures.prefill_tokens_per_s)
    }

    fn energy(&self) -> Option<f64> {
        median(&self.figures.energy_j_per_token)
    }

    fn cold_median(&self) -> Option<f64> {
        median(&self.figures.cold_start_ms)
    }

    fn peak_rss_mib(&self) -> Option<f64> {
        self.figures.peak_rss_bytes.map(mib)
    }

    /// A latency percentile and its interval: p50, p95 and p99 as [`CellFigures`] has them,
    /// any other (p90) by the same method from the sorted latencies.
    fn latency(&self, p: f64) -> Option<(f64, Interval)> {
        let d = self.figures.latency_ms.as_ref()?;
        Some(match p {
            50.0 => (d.p50, d.ci95.p50),
            95.0 => (d.p95, d.ci95.p95),
            99.0 => (d.p99, d.ci95.p99),
            _ => (
                percentile_sorted(&self.sorted_latency, p),
                quantile_bounds(&self.sorted_latency, p / 100.0, INTERVAL_CONFIDENCE).into(),
            ),
        })
    }
}

/// The candidate cells' indices grouped by `key`, groups and cells in first-seen order.
fn grouped<'c, K: PartialEq>(
    cells: &'c [CellData],
    key: impl Fn(&'c crate::cell_key::CellKey) -> K,
) -> Vec<(K, Vec<usize>)> {
    let mut groups: Vec<(K, Vec<usize>)> = Vec::new();
    for (i, c) in cells.iter().enumerate() {
        let g = key(&c.key);
        match groups.iter_mut().find(|(h, _)| *h == g) {
            Some((_, v)) => v.push(i),
            None => groups.push((g, vec![i])),
        }
    }
    groups
}

/// The median of a per-pass figure.
fn median(d: &Option<Distribution>) -> Option<f64> {
    d.as_ref().map(|d| d.p50)
}

/// A percentile's interval, with "unbounded" for an end the sample is too small to give (p99
/// needs 368 passes for its top); printed like the figure beside it (`num`).
fn interval(i: Option<Interval>) -> String {
    let Some(i) = i else {
        return "-".into();
    };
    let end = |v: Option<f64>| v.map_or("unbounded".to_string(), num);
    format!("[{}, {}]", end(i.low), end(i.high))
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

/// report.html: the self-contained release-review report.
pub struct Html;

impl super::Exporter for Html {
    fn name(&self) -> &'static str {
        "html"
    }

    fn about(&self) -> &'static str {
        "report.html: the self-contained release-review report with charts"
    }

    fn extension(&self) -> &'static str {
        "html"
    }

    fn render(&self, input: &ReportInput) -> Result<String, super::ExportError> {
        Ok(render(input))
    }
}
