//! Candidate against baseline: which cells are comparable, the ratio of each gated metric with
//! a hierarchical bootstrap confidence interval, and the verdicts the gate's exit code follows.

use crate::budget::{self, LimitRow, Limits};
use crate::dataset::{CellData, Dataset};
use crate::metric::{Metric, SessionValues, P99_MIN_POOLED_PASSES};
use crate::stats::bootstrap::{self, BootstrapConfig};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The parts of a cell's identity that must match for two cells to be compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyField {
    Device,
    Model,
    Precision,
    Scenario,
    Threads,
    State,
    Engine,
}

impl KeyField {
    pub const ALL: [KeyField; 7] = [
        KeyField::Device,
        KeyField::Model,
        KeyField::Precision,
        KeyField::Scenario,
        KeyField::Threads,
        KeyField::State,
        KeyField::Engine,
    ];

    pub fn name(self) -> &'static str {
        match self {
            KeyField::Device => "device",
            KeyField::Model => "model",
            KeyField::Precision => "precision",
            KeyField::Scenario => "scenario",
            KeyField::Threads => "threads",
            KeyField::State => "state",
            KeyField::Engine => "engine",
        }
    }

    pub fn from_name(s: &str) -> Option<KeyField> {
        KeyField::ALL.into_iter().find(|k| k.name() == s)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GateConfig {
    /// Budget per gated metric (0.10 = 10% worse allowed); a metric not in the map is not gated.
    pub budgets: BTreeMap<Metric, f64>,
    /// Changes smaller than this are noise, never "regressed" or "improved" (0.02).
    pub noise_floor: f64,
    /// Two-sided confidence level of the intervals (0.95).
    pub confidence: f64,
    /// Bootstrap resamples per metric and cell (2000).
    pub resamples: usize,
    /// Seed of the bootstrap's random numbers, so a gate run is reproducible.
    pub seed: u64,
    /// Key fields allowed to differ between paired cells (e.g. `threads` to gate a thread-count
    /// change); empty for an ordinary build-against-build gate.
    pub ignore_key: Vec<KeyField>,
    /// The two sides' sessions ran in pairs (engines of one run, alternating on the device):
    /// session `i` of one beside session `i` of the other, resampled together.
    #[serde(default)]
    pub paired_sessions: bool,
    /// Size and memory limits the candidate must keep on its own (`size_budget`,
    /// `memory_budget`).
    #[serde(default)]
    pub limits: Limits,
}

impl Default for GateConfig {
    fn default() -> Self {
        GateConfig {
            budgets: Metric::ALL
                .into_iter()
                .map(|m| (m, m.default_budget()))
                .collect(),
            noise_floor: 0.02,
            confidence: 0.95,
            resamples: 2000,
            seed: 0x6d656c74,
            ignore_key: Vec::new(),
            paired_sessions: false,
            limits: Limits::default(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The whole interval lies beyond the budget: exit 1.
    Fail,
    /// Would have failed, but the metric cannot gate at this sample size (p99 below 1000
    /// pooled passes): exit 0, shown for a human.
    Warn,
    /// The interval straddles the budget: exit 2, with how many more sessions would decide.
    Inconclusive,
    /// Worse beyond the noise floor, but the whole interval lies within budget.
    PassWithNote,
    Pass,
    /// Better beyond the noise floor, with the whole interval on the better side of no change.
    Improved,
}

impl Verdict {
    /// Every verdict, most severe first (the order of tables and counts).
    pub const ALL: [Verdict; 6] = [
        Verdict::Fail,
        Verdict::Warn,
        Verdict::Inconclusive,
        Verdict::PassWithNote,
        Verdict::Pass,
        Verdict::Improved,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Verdict::Fail => "FAIL",
            Verdict::Warn => "WARN",
            Verdict::Inconclusive => "INCONCLUSIVE",
            Verdict::PassWithNote => "PASS (regressed within budget)",
            Verdict::Pass => "PASS",
            Verdict::Improved => "IMPROVED",
        }
    }
}

/// One gated metric of one pair of cells.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GateRow {
    pub device: String,
    /// The candidate's cell id (and the baseline's, when ignored key fields make them differ).
    pub cell: String,
    pub baseline_cell: String,
    pub metric: Metric,
    pub baseline: f64,
    pub candidate: f64,
    /// candidate / baseline of the metric itself (for tokens/s, below 1 is worse).
    pub ratio: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    pub budget: f64,
    pub verdict: Verdict,
    /// Sessions and pooled values (passes, or decode steps) behind each side.
    pub baseline_sessions: usize,
    pub candidate_sessions: usize,
    pub baseline_n: usize,
    pub candidate_n: usize,
    /// For INCONCLUSIVE: sessions per build that would likely decide it.
    pub sessions_needed: Option<usize>,
    /// Why a verdict was capped or what a reader should know (few sessions, p99 sample size).
    pub note: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NotComparable {
    pub device: String,
    pub cell: String,
    /// `candidate` or `baseline`: which side has the cell without a partner.
    pub side: String,
    /// e.g. "model SHA-256 differs (baseline 1a2b..., candidate 3c4d...)".
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GateOutcome {
    pub config: GateConfig,
    /// Sorted by severity (FAIL first), then device and cell.
    pub rows: Vec<GateRow>,
    pub not_comparable: Vec<NotComparable>,
    /// Gated metrics neither build measured (e.g. energy without a power sensor), per cell.
    pub not_measured: Vec<String>,
    /// The candidate against its size and memory limits, those over first.
    #[serde(default)]
    pub limit_rows: Vec<LimitRow>,
    /// 0 pass/warn, 1 fail, 2 inconclusive or nothing comparable.
    pub exit_code: i32,
    /// One sentence: "1 regression over budget, 2 inconclusive, 3 improved, 18 unchanged".
    pub headline: String,
}

impl GateOutcome {
    /// The row a headline should name: the first FAIL, else INCONCLUSIVE, else WARN.
    pub fn worst_row(&self) -> Option<&GateRow> {
        [Verdict::Fail, Verdict::Inconclusive, Verdict::Warn]
            .into_iter()
            .find_map(|v| self.rows.iter().find(|r| r.verdict == v))
    }
}

/// Compares every candidate cell with the baseline cell of the same key.
///
/// Cells pair when [`comparable`] says so; every gated metric of every pair gets a row with
/// the ratio candidate/baseline of the pooled statistic, a hierarchical bootstrap interval
/// (sessions, then passes within them; see [`crate::stats::bootstrap`]) and a verdict against
/// the metric's budget. Rows are computed in parallel on every core; each row draws from its own
/// stream seeded by `config.seed`, the device, the cells and the metric, so the outcome does not
/// depend on the thread count.
pub fn gate(baseline: &Dataset, candidate: &Dataset, config: &GateConfig) -> GateOutcome {
    let (pairs, not_comparable) = pair_cells(baseline, candidate, &config.ignore_key);

    let mut jobs: Vec<(&CellData, &CellData, Metric, f64)> = Vec::new();
    for &(b, c) in &pairs {
        for (&metric, &budget) in &config.budgets {
            jobs.push((b, c, metric, budget));
        }
    }
    let results = run_parallel(&jobs, config);

    let mut rows = Vec::new();
    let mut not_measured = Vec::new();
    for r in results {
        match r {
            Evaluated::Row(row) => rows.push(*row),
            Evaluated::NotMeasured(why) => not_measured.push(why),
        }
    }
    rows.sort_by(|a, b| {
        (a.verdict, &a.device, &a.cell, a.metric).cmp(&(b.verdict, &b.device, &b.cell, b.metric))
    });
    let limit_rows = budget::check(candidate, &config.limits);
    let over = limit_rows.iter().filter(|r| r.over).count();
    let exit_code = if over > 0 || rows.iter().any(|r| r.verdict == Verdict::Fail) {
        1
    } else if rows.is_empty() || rows.iter().any(|r| r.verdict == Verdict::Inconclusive) {
        2
    } else {
        0
    };
    let mut headline = headline(&rows, not_comparable.len());
    if over > 0 {
        headline = format!("{over} over a size or memory budget; {headline}");
    }
    GateOutcome {
        config: config.clone(),
        rows,
        not_comparable,
        not_measured,
        limit_rows,
        exit_code,
        headline,
    }
}

/// Whether `a` (baseline) and `b` (candidate) may be compared, ignoring `ignore`; `Err` says
/// what differs, e.g. "threads differ (baseline 2, candidate 1)", several differences joined
/// by "; ".
pub fn comparable(a: &CellData, b: &CellData, ignore: &[KeyField]) -> Result<(), String> {
    let (x, y) = (&a.key, &b.key);
    let mut diffs = Vec::new();
    for field in KeyField::ALL {
        if ignore.contains(&field) {
            continue;
        }
        let differs = |what: &str, verb: &str, p: &str, q: &str| {
            format!("{what} {verb} (baseline {p}, candidate {q})")
        };
        match field {
            KeyField::Device if x.device != y.device => {
                diffs.push(differs("device", "differs", &x.device, &y.device))
            }
            KeyField::Model if x.model_sha256 != y.model_sha256 => diffs.push(differs(
                "model SHA-256",
                "differs",
                &short_sha(&x.model_sha256),
                &short_sha(&y.model_sha256),
            )),
            KeyField::Precision if x.precision != y.precision => {
                diffs.push(differs("precision", "differs", &x.precision, &y.precision))
            }
            KeyField::Scenario if x.scenario != y.scenario => {
                diffs.push(differs("scenario", "differs", &x.scenario, &y.scenario))
            }
            KeyField::Threads if x.threads != y.threads => diffs.push(differs(
                "threads",
                "differ",
                &x.threads.to_string(),
                &y.threads.to_string(),
            )),
            KeyField::State if x.state != y.state => {
                diffs.push(differs("state", "differs", &x.state, &y.state))
            }
            KeyField::Engine if x.engine != y.engine => {
                diffs.push(differs("engine", "differs", &x.engine, &y.engine))
            }
            _ => {}
        }
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(diffs.join("; "))
    }
}

fn short_sha(sha: &str) -> String {
    match sha.char_indices().nth(8) {
        Some((i, _)) => format!("{}…", &sha[..i]),
        None if sha.is_empty() => "(none)".to_string(),
        None => sha.to_string(),
    }
}

type Pair<'a> = (&'a CellData, &'a CellData);

/// (baseline, candidate) pairs with measured passes on both sides, and every cell that has
/// no partner (or nothing to compare), with the reason.
fn pair_cells<'a>(
    baseline: &'a Dataset,
    candidate: &'a Dataset,
    ignore: &[KeyField],
) -> (Vec<Pair<'a>>, Vec<NotComparable>) {
    let mut pairs = Vec::new();
    let mut not_comparable = Vec::new();
    let mut touched = vec![false; baseline.cells.len()];
    let nc = |cell: &CellData, side: &str, reason: String| NotComparable {
        device: cell.key.device.clone(),
        cell: cell.key.id.clone(),
        side: side.to_string(),
        reason,
    };
    for c in &candidate.cells {
        let matches: Vec<usize> = (0..baseline.cells.len())
            .filter(|&i| comparable(&baseline.cells[i], c, ignore).is_ok())
            .collect();
        for &i in &matches {
            touched[i] = true;
        }
        match matches[..] {
            [] => {
                let reason = match baseline.cell(&c.key.device, &c.key.id) {
                    Some(b) => comparable(b, c, ignore).err().unwrap_or_default(),
                    None => "no baseline cell with this key".to_string(),
                };
                not_comparable.push(nc(c, "candidate", reason));
            }
            [i] => {
                let b = &baseline.cells[i];
                match (b.measured_passes() == 0, c.measured_passes() == 0) {
                    (false, false) => pairs.push((b, c)),
                    (true, false) => {
                        not_comparable.push(nc(b, "baseline", no_passes("the baseline", &[b])))
                    }
                    (false, true) => {
                        not_comparable.push(nc(c, "candidate", no_passes("the candidate", &[c])))
                    }
                    (true, true) => not_comparable.push(nc(
                        c,
                        "candidate",
                        no_passes("the baseline or the candidate", &[c, b]),
                    )),
                }
            }
            _ => {
                let ids: Vec<&str> = matches
                    .iter()
                    .map(|&i| baseline.cells[i].key.id.as_str())
                    .collect();
                let mut reason = format!(
                    "ambiguous: {} baseline cells match ({})",
                    matches.len(),
                    ids.join(", ")
                );
                if !ignore.is_empty() {
                    let names: Vec<&str> = ignore.iter().map(|k| k.name()).collect();
                    reason.push_str(&format!("; do not ignore {}", names.join(", ")));
                }
                not_comparable.push(nc(c, "candidate", reason));
            }
        }
    }
    for (b, _) in baseline.cells.iter().zip(&touched).filter(|(_, &t)| !t) {
        let reason = match candidate.cell(&b.key.device, &b.key.id) {
            Some(c) => comparable(b, c, ignore).err().unwrap_or_default(),
            None => "no candidate cell with this key".to_string(),
        };
        not_comparable.push(nc(b, "baseline", reason));
    }
    (pairs, not_comparable)
}

fn no_passes(side: &str, cells: &[&CellData]) -> String {
    match cells.iter().find_map(|c| c.errors.first()) {
        Some(e) => format!("no measured passes in {side} (the cell failed: {e})"),
        None => format!("no measured passes in {side}"),
    }
}

enum Evaluated {
    Row(Box<GateRow>),
    NotMeasured(String),
}

/// Evaluates the jobs on every core (largest first), returning results in job order.
fn run_parallel(
    jobs: &[(&CellData, &CellData, Metric, f64)],
    config: &GateConfig,
) -> Vec<Evaluated> {
    let cost = |&(b, c, m, _): &(&CellData, &CellData, Metric, f64)| {
        let passes = b.measured_passes() + c.measured_passes();
        if m == Metric::DecodeP95 {
            passes * 8
        } else {
            passes
        }
    };
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(cost(&jobs[i])));
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(jobs.len());
    let run = |i: usize| {
        let (b, c, m, budget) = jobs[i];
        (i, evaluate(b, c, m, budget, config))
    };
    let mut done: Vec<(usize, Evaluated)> = if threads <= 1 {
        order.iter().map(|&i| run(i)).collect()
    } else {
        let next = AtomicUsize::new(0);
        std::thread::scope(|s| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(|| {
                        let mut out = Vec::new();
                        loop {
                            let k = next.fetch_add(1, Ordering::Relaxed);
                            let Some(&i) = order.get(k) else { break };
                            out.push(run(i));
                        }
                        out
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().expect("a gate worker panicked"))
                .collect()
        })
    };
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, e)| e).collect()
}

/// FNV-1a of the parts, each followed by a separator byte.
fn row_hash(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &byte in p.as_bytes().iter().chain(&[0xff]) {
            h ^= byte as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

fn side_values(cell: &CellData, metric: Metric) -> Vec<SessionValues> {
    cell.sessions
        .iter()
        .map(|s| metric.session_values(s))
        .filter(|v| !v.is_empty())
        .collect()
}

/// Each side's sessions in pairs by (run, session number), when every session with values on
/// one side has its partner on the other.
fn paired_sessions(
    b: &CellData,
    c: &CellData,
    metric: Metric,
) -> Option<(Vec<SessionValues>, Vec<SessionValues>)> {
    let with_values = |cell: &CellData| -> BTreeMap<(String, usize), SessionValues> {
        cell.sessions
            .iter()
            .map(|s| ((s.run_id.clone(), s.index), metric.session_values(s)))
            .filter(|(_, v)| !v.is_empty())
            .collect()
    };
    let (mut bs, mut cs) = (with_values(b), with_values(c));
    if bs.len() < 2 || bs.keys().ne(cs.keys()) {
        return None;
    }
    let keys: Vec<(String, usize)> = bs.keys().cloned().collect();
    Some(
        keys.iter()
            .map(|k| (bs.remove(k).unwrap(), cs.remove(k).unwrap()))
            .unzip(),
    )
}

fn evaluate(
    b: &CellData,
    c: &CellData,
    metric: Metric,
    budget: f64,
    config: &GateConfig,
) -> Evaluated {
    let (device, cell) = (&c.key.device, &c.key.id);
    let base = side_values(b, metric);
    let cand = side_values(c, metric);
    if base.is_empty() || cand.is_empty() {
        return Evaluated::NotMeasured(format!("{device} {cell}: {} not measured", metric.name()));
    }
    let stat = metric.statistic();
    let (Some(bp), Some(cp)) = (
        bootstrap::pooled_statistic(&base, stat),
        bootstrap::pooled_statistic(&cand, stat),
    ) else {
        return Evaluated::NotMeasured(format!("{device} {cell}: {} not measured", metric.name()));
    };
    if !(bp > 0.0 && bp.is_finite() && cp.is_finite()) {
        return Evaluated::NotMeasured(format!(
            "{device} {cell}: {} is {bp} in the baseline and {cp} in the candidate; no ratio",
            metric.name()
        ));
    }
    let ratio = cp / bp;
    let seed = bootstrap::mix(
        config.seed,
        row_hash(&[device, cell, &b.key.device, &b.key.id, metric.name()]),
    );
    let bootstrap = BootstrapConfig {
        resamples: config.resamples,
        confidence: config.confidence,
        seed,
    };
    let mut notes = Vec::new();
    let paired = if config.paired_sessions {
        let interval = paired_sessions(b, c, metric)
            .and_then(|(pb, pc)| bootstrap::paired_ratio_interval(&pb, &pc, stat, &bootstrap));
        notes.push(match interval {
            Some(_) => format!("{} sessions paired in the order they ran", base.len()),
            None => "sessions could not be paired one to one (a session failed or is \
                     missing); resampled independently"
                .to_string(),
        });
        interval
    } else {
        None
    };
    let interval = paired
        .or_else(|| bootstrap::ratio_interval(&base, &cand, stat, &bootstrap))
        .expect("both builds have values");
    let (low, high) = (interval.low, interval.high);
    let higher = metric.higher_is_better();
    let mut verdict = classify(ratio, low, high, budget, config.noise_floor, higher);

    let count = |v: &[SessionValues]| v.iter().map(|s| s.values.len()).sum::<usize>();
    let (base_n, cand_n) = (count(&base), count(&cand));
    let (kb, kc) = (base.len(), cand.len());
    let mut sessions_needed = None;
    if verdict == Verdict::Inconclusive {
        let limit = if higher { 1.0 - budget } else { 1.0 + budget };
        let half_width = (high.ln() - low.ln()) / 2.0;
        let distance = (ratio.ln() - limit.ln()).abs();
        if distance > 0.0 && limit > 0.0 {
            let k = kb.max(kc);
            let needed = (k as f64 * (half_width / distance).powi(2)).ceil();
            sessions_needed = Some(if needed.is_finite() {
                (needed as usize).max(k + 1).min(1000)
            } else {
                1000
            });
        }
    }
    let pooled_passes = base_n.min(cand_n);
    if metric == Metric::LatencyP99 && pooled_passes < P99_MIN_POOLED_PASSES {
        if matches!(verdict, Verdict::Fail | Verdict::Inconclusive) {
            verdict = Verdict::Warn;
            sessions_needed = None;
        }
        notes.push(format!(
            "p99 from {pooled_passes} passes per build: informational below {P99_MIN_POOLED_PASSES}"
        ));
    }
    if kb == 1 && kc == 1 {
        notes.push(
            "1 session per build: the interval covers pass-to-pass noise only; \
             use sessions: 3 or more for gating"
                .to_string(),
        );
    } else if kb.min(kc) < 3 {
        notes.push(format!(
            "{kb} session{} in the baseline, {kc} in the candidate: the interval understates \
             session-to-session noise; use sessions: 3 or more for gating",
            if kb == 1 { "" } else { "s" }
        ));
    }
    if interval.resamples < config.resamples {
        notes.push(format!(
            "bootstrap of {} pooled values per build used {} resamples instead of {}",
            base_n.max(cand_n),
            interval.resamples,
            config.resamples
        ));
    }
    Evaluated::Row(Box::new(GateRow {
        device: device.clone(),
        cell: cell.clone(),
        baseline_cell: b.key.id.clone(),
        metric,
        baseline: bp,
        candidate: cp,
        ratio,
        ci_low: low,
        ci_high: high,
        budget,
        verdict,
        baseline_sessions: kb,
        candidate_sessions: kc,
        baseline_n: base_n,
        candidate_n: cand_n,
        sessions_needed,
        note: (!notes.is_empty()).then(|| notes.join("; ")),
    }))
}

/// The verdict of one ratio and its interval against budget `t` and noise floor `n`.
fn classify(ratio: f64, low: f64, high: f64, t: f64, n: f64, higher_is_better: bool) -> Verdict {
    if higher_is_better {
        let limit = 1.0 - t;
        if high < limit {
            Verdict::Fail
        } else if low >= limit {
            if ratio > 1.0 + n && low > 1.0 {
                Verdict::Improved
            } else if high < 1.0 - n {
                Verdict::PassWithNote
            } else {
                Verdict::Pass
            }
        } else {
            Verdict::Inconclusive
        }
    } else {
        let limit = 1.0 + t;
        if low > limit {
            Verdict::Fail
        } else if high <= limit {
            if ratio < 1.0 - n && high < 1.0 {
                Verdict::Improved
            } else if low > 1.0 + n {
                Verdict::PassWithNote
            } else {
                Verdict::Pass
            }
        } else {
            Verdict::Inconclusive
        }
    }
}

fn percent(r: f64) -> String {
    format!("{:+.1}%", (r - 1.0) * 100.0)
}

fn headline(rows: &[GateRow], not_comparable: usize) -> String {
    if rows.is_empty() {
        return if not_comparable == 0 {
            "nothing comparable".to_string()
        } else {
            format!("nothing comparable ({not_comparable} not comparable)")
        };
    }
    let count = |v: Verdict| rows.iter().filter(|r| r.verdict == v).count();
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let parts = [
        (
            count(Verdict::Fail),
            plural(
                count(Verdict::Fail),
                "regression over budget",
                "regressions over budget",
            ),
        ),
        (
            count(Verdict::Inconclusive),
            format!("{} inconclusive", count(Verdict::Inconclusive)),
        ),
        (
            count(Verdict::Warn),
            plural(count(Verdict::Warn), "warning", "warnings"),
        ),
        (
            count(Verdict::PassWithNote),
            format!("{} regressed within budget", count(Verdict::PassWithNote)),
        ),
        (
            count(Verdict::Pass),
            format!("{} unchanged", count(Verdict::Pass)),
        ),
        (
            count(Verdict::Improved),
            format!("{} improved", count(Verdict::Improved)),
        ),
        (not_comparable, format!("{not_comparable} not comparable")),
    ];
    let mut text = parts
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(_, s)| s)
        .collect::<Vec<_>>()
        .join(", ");
    let badness = |r: &GateRow| {
        if r.metric.higher_is_better() {
            -r.ratio.ln()
        } else {
            r.ratio.ln()
        }
    };
    if let Some(w) = rows
        .iter()
        .filter(|r| r.verdict == Verdict::Fail)
        .max_by(|a, b| badness(a).total_cmp(&badness(b)))
    {
        text.push_str(&format!(
            "; worst: {} {} [{}, {}] on {} / {}",
            w.metric.label(),
            percent(w.ratio),
            percent(w.ci_low),
            percent(w.ci_high),
            w.device,
            w.cell
        ));
    }
    text
}

#[cfg(test)]
mod tests;
