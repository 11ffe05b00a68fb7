//! Hierarchical (two-stage) bootstrap of a statistic over one build's sessions, and the
//! percentile interval of the candidate/baseline ratio built from two of them.
//!
//! One resample of a build with K sessions picks K sessions with replacement, then, within each
//! picked session, as many groups (passes) as it has, with replacement, pools their values and
//! computes the statistic (a type-7 quantile or the maximum) of the pool. Resampling sessions
//! first makes the session, a fresh engine process, the replication unit: passes of one session
//! share its thermal state and load, and a pass-level ("flat") bootstrap is badly overconfident
//! when sessions differ (Saravanan, Berman and Sober, "Application of the hierarchical
//! bootstrap to multi-level data in neuroscience", Neurons, Behavior, Data analysis, and
//! Theory, 2020; `reports/tests/gate_statistics.rs` measures the false alarm rates here).
//!
//! Two ways to draw a resample, chosen per build; both draw from exactly that distribution
//! (up to binomial counts of variance above 1000, drawn from their normal approximation):
//! * **One value per group** (every per-pass metric, and peak RSS): a session picked `c` times
//!   contributes `c * m` uniform draws from its `m` values. The statistic needs only one or two
//!   order statistics of the pool, so a resample never materialises the pool: it descends a
//!   binary partition of the values, splitting each session's draw count binomially, down to a
//!   handful of values (cost about K log m per resample, whatever the number of passes).
//! * **Several values per group** (decode steps per pass): the groups are drawn (cost: one
//!   draw per group); values below a band around the target quantile are only counted, values in
//!   it are counted per bin, and only the bin holding the wanted rank is expanded and selected
//!   in. A resample whose order statistic falls outside the band is redone from every value it
//!   drew, so the band changes speed, never results. Above [`LARGE_SAMPLE`] pooled values per
//!   build this path draws fewer resamples (never below [`MIN_RESAMPLES`]); see
//!   [`effective_resamples`].
//!
//! Builds whose sessions ran in pairs (engines alternating on one device) can be resampled
//! together: [`paired_ratio_interval`] draws session numbers once per resample for both.
//!
//! Everything is seeded ChaCha8: a seed gives the same interval on every machine.

use crate::stats::sample::{SessionValues, Statistic};
use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cmp::Ordering;

/// Above this many pooled values in a build whose groups hold several values, the bootstrap
/// draws fewer resamples (see [`effective_resamples`]).
pub const LARGE_SAMPLE: usize = 20_000;
/// The fewest resamples a reduced bootstrap draws.
pub const MIN_RESAMPLES: usize = 400;

/// How to bootstrap a ratio.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BootstrapConfig {
    /// Resamples requested (before any reduction for large grouped samples).
    pub resamples: usize,
    /// Two-sided confidence of the percentile interval (0.95).
    pub confidence: f64,
    pub seed: u64,
}

/// The percentile interval of candidate / baseline.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RatioInterval {
    pub low: f64,
    pub high: f64,
    /// Resamples actually drawn (fewer than requested for large grouped samples).
    pub resamples: usize,
}

/// Position of the type-7 quantile `q` (0..=1) in `n` sorted values: the lower order statistic
/// (0-based) and the interpolation weight of the next one. Computed exactly as
/// [`crate::stats::percentile::percentile_sorted`] does, so both give the same bits.
pub fn type7_position(n: usize, q: f64) -> (usize, f64) {
    assert!(n > 0, "quantile of no values");
    let h = (n - 1) as f64 * (q * 100.0) / 100.0;
    let lo = (h.floor().max(0.0) as usize).min(n - 1);
    (lo, h - lo as f64)
}

/// The order statistics a statistic needs out of `n` values: (lower, upper, weight of upper).
fn targets(stat: Statistic, n: usize) -> (usize, usize, f64) {
    match stat {
        Statistic::Quantile(q) => {
            let (lo, frac) = type7_position(n, q);
            (lo, (lo + 1).min(n - 1), frac)
        }
        Statistic::Max => (n - 1, n - 1, 0.0),
    }
}

fn combine(x_lo: f64, x_hi: f64, frac: f64) -> f64 {
    x_lo + frac * (x_hi - x_lo)
}

/// The `lo`-th and `hi`-th (0-based, `hi` is `lo` or `lo + 1`) smallest of `buf`, which it
/// reorders.
fn select_pair(buf: &mut [f64], lo: usize, hi: usize) -> (f64, f64) {
    let (_, x_lo, right) = buf.select_nth_unstable_by(lo, f64::total_cmp);
    let x_lo = *x_lo;
    if hi == lo {
        return (x_lo, x_lo);
    }
    let x_hi = right.iter().copied().min_by(f64::total_cmp).unwrap_or(x_lo);
    (x_lo, x_hi)
}

/// The statistic of `values` (reordered in place); `None` when empty.
pub fn statistic_of(values: &mut [f64], stat: Statistic) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let (lo, hi, frac) = targets(stat, values.len());
    let (a, b) = select_pair(values, lo, hi);
    Some(combine(a, b, frac))
}

/// The statistic over the pooled values of every session (the gate's point estimate).
pub fn pooled_statistic(sessions: &[SessionValues], stat: Statistic) -> Option<f64> {
    let mut all: Vec<f64> = sessions
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .collect();
    statistic_of(&mut all, stat)
}

/// How many resamples a build of `pooled_values` values in groups of several values gets when
/// `requested` were asked for: all of them up to [`LARGE_SAMPLE`] values, then proportionally
/// fewer (the same total work), never fewer than [`MIN_RESAMPLES`] (or `requested`, if less).
pub fn effective_resamples(requested: usize, pooled_values: usize) -> usize {
    let requested = requested.max(1);
    if pooled_values <= LARGE_SAMPLE {
        return requested;
    }
    let scaled = (requested as f64 * LARGE_SAMPLE as f64 / pooled_values as f64).ceil() as usize;
    scaled.max(MIN_RESAMPLES).min(requested)
}

/// Resamples [`ratio_interval`] will draw for these two builds.
pub fn planned_resamples(
    baseline: &[SessionValues],
    candidate: &[SessionValues],
    requested: usize,
) -> usize {
    let need = |side: &[SessionValues]| {
        let grouped = side.iter().any(|s| s.values.len() != s.group_count());
        let n: usize = side.iter().map(|s| s.values.len()).sum();
        if grouped {
            effective_resamples(requested, n)
        } else {
            requested.max(1)
        }
    };
    need(baseline).min(need(candidate))
}

/// Percentile interval, at `config.confidence`, of candidate / baseline of `stat`, from a
/// hierarchical bootstrap of each build (the two builds resample independently; the interval is
/// taken on the log ratio). `None` when either build has no values.
pub fn ratio_interval(
    baseline: &[SessionValues],
    candidate: &[SessionValues],
    stat: Statistic,
    config: &BootstrapConfig,
) -> Option<RatioInterval> {
    let b = planned_resamples(baseline, candidate, config.resamples);
    let base = resample_statistics(baseline, stat, b, mix(config.seed, 0x62617365))?;
    let cand = resample_statistics(candidate, stat, b, mix(config.seed, 0x63616e64))?;
    let logs: Vec<f64> = base
        .iter()
        .zip(&cand)
        .map(|(&x, &y)| (y / x).ln())
        .collect();
    Some(percentile_interval(logs, config.confidence))
}

/// Like [`ratio_interval`], for builds whose sessions ran in pairs: session `i` of the baseline
/// beside session `i` of the candidate (engines alternating on one device). Each resample
/// picks session indices once for both builds, so what a pair shared (the device's state at
/// that time) stays in the pair and cancels in the ratio, instead of widening the interval as
/// two independent draws would; passes within each picked session are drawn per build as
/// before. `None` unless both builds have the same number (at least one) of sessions, all with
/// values.
pub fn paired_ratio_interval(
    baseline: &[SessionValues],
    candidate: &[SessionValues],
    stat: Statistic,
    config: &BootstrapConfig,
) -> Option<RatioInterval> {
    if baseline.is_empty()
        || baseline.len() != candidate.len()
        || baseline.iter().chain(candidate).any(|s| s.is_empty())
    {
        return None;
    }
    let b = planned_resamples(baseline, candidate, config.resamples);
    let mut base = Resampler::new(&baseline.iter().collect::<Vec<_>>(), stat);
    let mut cand = Resampler::new(&candidate.iter().collect::<Vec<_>>(), stat);
    let mut picks = ChaCha8Rng::seed_from_u64(mix(config.seed, 0x70616972));
    let mut rng_b = ChaCha8Rng::seed_from_u64(mix(config.seed, 0x62617365));
    let mut rng_c = ChaCha8Rng::seed_from_u64(mix(config.seed, 0x63616e64));
    let mut counts = vec![0u64; baseline.len()];
    let logs: Vec<f64> = (0..b)
        .map(|_| {
            pick_sessions(&mut picks, &mut counts);
            let x = base.resample_picked(&counts, &mut rng_b, stat);
            let y = cand.resample_picked(&counts, &mut rng_c, stat);
            (y / x).ln()
        })
        .collect();
    Some(percentile_interval(logs, config.confidence))
}

/// The two-sided percentile interval of bootstrap log ratios, back on the ratio scale.
fn percentile_interval(mut logs: Vec<f64>, confidence: f64) -> RatioInterval {
    let b = logs.len();
    logs.sort_by(f64::total_cmp);
    let alpha = (1.0 - confidence).clamp(0.0, 1.0);
    let at = |q: f64| {
        let (lo, frac) = type7_position(logs.len(), q);
        combine(logs[lo], logs[(lo + 1).min(logs.len() - 1)], frac)
    };
    RatioInterval {
        low: at(alpha / 2.0).exp(),
        high: at(1.0 - alpha / 2.0).exp(),
        resamples: b,
    }
}

/// One build's resampler, of either kind (see the module comment).
enum Resampler {
    Flat(Tree),
    Grouped(Grouped),
}

impl Resampler {
    fn new(sessions: &[&SessionValues], stat: Statistic) -> Resampler {
        if sessions.iter().all(|s| s.values.len() == s.group_count()) {
            Resampler::Flat(Tree::new(sessions))
        } else {
            Resampler::Grouped(Grouped::new(sessions, stat))
        }
    }

    /// A replicate: sessions picked, then groups within them.
    fn resample<R: Rng>(&mut self, rng: &mut R, stat: Statistic) -> f64 {
        match self {
            Resampler::Flat(t) => t.resample(rng, stat),
            Resampler::Grouped(g) => g.resample(rng, stat),
        }
    }

    /// A replicate with the sessions already picked (`counts`: times each is picked).
    fn resample_picked<R: Rng>(&mut self, counts: &[u64], rng: &mut R, stat: Statistic) -> f64 {
        match self {
            Resampler::Flat(t) => {
                t.counts.copy_from_slice(counts);
                t.resample_counted(rng, stat)
            }
            Resampler::Grouped(g) => {
                g.counts.copy_from_slice(counts);
                g.resample_counted(rng, stat)
            }
        }
    }
}

/// `resamples` bootstrap replicates of `stat` over one build (empty sessions are ignored);
/// `None` when there are no values at all.
pub fn resample_statistics(
    sessions: &[SessionValues],
    stat: Statistic,
    resamples: usize,
    seed: u64,
) -> Option<Vec<f64>> {
    let sessions: Vec<&SessionValues> = sessions.iter().filter(|s| !s.is_empty()).collect();
    if sessions.is_empty() {
        return None;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut side = Resampler::new(&sessions, stat);
    Some(
        (0..resamples)
            .map(|_| side.resample(&mut rng, stat))
            .collect(),
    )
}

/// A seed derived from `seed` and `salt` (splitmix64 finaliser), for independent streams.
pub fn mix(seed: u64, salt: u64) -> u64 {
    let mut z = seed ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Uniform in `0..n` (`n` below 2^32; the bias of the multiply-shift is below n / 2^32).
fn below<R: Rng>(rng: &mut R, n: usize) -> usize {
    ((rng.next_u32() as u64 * n as u64) >> 32) as usize
}

/// Uniform in (0, 1).
fn unit<R: Rng>(rng: &mut R) -> f64 {
    ((rng.next_u64() >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
}

fn standard_normal<R: Rng>(rng: &mut R) -> f64 {
    let (u, v) = (unit(rng), unit(rng));
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// `ln(k!)`: exact sums below 20, Stirling's series above (relative error below 1e-14).
pub(crate) fn ln_factorial(k: u64) -> f64 {
    if k < 20 {
        return (2..=k).map(|i| (i as f64).ln()).sum();
    }
    let x = k as f64;
    let x2 = x * x;
    x * x.ln() - x + 0.5 * (std::f64::consts::TAU * x).ln() + 1.0 / (12.0 * x)
        - 1.0 / (360.0 * x * x2)
        + 1.0 / (1260.0 * x * x2 * x2)
}

/// `ln P(K = k)` for `K ~ Binomial(n, p)`, `0 < p < 1`.
pub(crate) fn ln_binomial_pmf(n: u64, k: u64, p: f64) -> f64 {
    ln_factorial(n) - ln_factorial(k) - ln_factorial(n - k)
        + k as f64 * p.ln()
        + (n - k) as f64 * (-p).ln_1p()
}

/// Above this variance a binomial is drawn from its normal approximation (with continuity
/// correction); the distortion of a count is then far below one draw.
const NORMAL_BINOMIAL_VARIANCE: f64 = 1000.0;

/// A draw of `Binomial(n, p)`: exact inversion below [`NORMAL_BINOMIAL_VARIANCE`] (from zero
/// when the mean is small, else outward from the mode), normal approximation above.
fn binomial<R: Rng>(rng: &mut R, n: u64, p: f64) -> u64 {
    if n == 0 || p <= 0.0 {
        return 0;
    }
    if p >= 1.0 {
        return n;
    }
    if p > 0.5 {
        return n - binomial(rng, n, 1.0 - p);
    }
    let nf = n as f64;
    let mean = nf * p;
    let var = mean * (1.0 - p);
    if var > NORMAL_BINOMIAL_VARIANCE {
        let x = (mean + var.sqrt() * standard_normal(rng) + 0.5).floor();
        return x.clamp(0.0, nf) as u64;
    }
    let odds = p / (1.0 - p);
    let u = unit(rng);
    if mean < 20.0 {
        // Sequential search from 0: P(0) = (1-p)^n, P(k+1) = P(k) (n-k)/(k+1) odds.
        let mut pk = (nf * (-p).ln_1p()).exp();
        let mut acc = pk;
        let mut k = 0u64;
        while acc < u && k < n {
            pk *= (n - k) as f64 / (k + 1) as f64 * odds;
            k += 1;
            acc += pk;
            if pk == 0.0 && acc < u {
                // Rounding left a sliver of mass unaccounted for; the mode is as good as any.
                return ((nf + 1.0) * p).floor() as u64;
            }
        }
        return k;
    }
    // Inversion over the order mode, mode+1, mode-1, mode+2, ...: exact for any fixed order.
    let mode = (((nf + 1.0) * p).floor() as u64).min(n);
    let p_mode = ln_binomial_pmf(n, mode, p).exp();
    let mut acc = p_mode;
    if acc >= u {
        return mode;
    }
    let (mut up, mut p_up) = (mode, p_mode);
    let (mut down, mut p_down) = (mode, p_mode);
    loop {
        let mut moved = false;
        if up < n {
            p_up *= (n - up) as f64 / (up + 1) as f64 * odds;
            up += 1;
            acc += p_up;
            moved = true;
            if acc >= u {
                return up;
            }
        }
        if down > 0 {
            p_down *= down as f64 / (n - down + 1) as f64 / odds;
            down -= 1;
            acc += p_down;
            moved = true;
            if acc >= u {
                return down;
            }
        }
        if !moved || (p_up < 1e-300 && p_down < 1e-300) {
            return mode;
        }
    }
}

/// Picks K sessions with replacement: how often each was picked.
fn pick_sessions<R: Rng>(rng: &mut R, counts: &mut [u64]) {
    counts.iter_mut().for_each(|c| *c = 0);
    let k = counts.len();
    for _ in 0..k {
        counts[below(rng, k)] += 1;
    }
}

/// One session's slice of a node of the value partition: sorted values `lo..hi` of session `s`
/// received `n` draws.
#[derive(Clone, Copy, Debug)]
struct Range {
    s: usize,
    lo: usize,
    hi: usize,
    n: u64,
}

/// A node is a leaf when no session has more than this many values in it.
const LEAF_VALUES: usize = 16;

/// The exact resampler of builds with one value per group.
struct Tree {
    /// Each session's values, sorted.
    sessions: Vec<Vec<f64>>,
    counts: Vec<u64>,
    /// Ranges of the node at each depth (reused between resamples).
    levels: Vec<Vec<Range>>,
    /// Per range of the node at each depth: split index and draws sent left.
    splits: Vec<Vec<(usize, u64)>>,
    leaf: Vec<(f64, u64)>,
}

impl Tree {
    fn new(sessions: &[&SessionValues]) -> Tree {
        let sessions: Vec<Vec<f64>> = sessions
            .iter()
            .map(|s| {
                let mut v = s.values.clone();
                v.sort_by(f64::total_cmp);
                v
            })
            .collect();
        Tree {
            counts: vec![0; sessions.len()],
            sessions,
            levels: vec![Vec::new()],
            splits: vec![Vec::new()],
            leaf: Vec::new(),
        }
    }

    fn resample<R: Rng>(&mut self, rng: &mut R, stat: Statistic) -> f64 {
        pick_sessions(rng, &mut self.counts);
        self.resample_counted(rng, stat)
    }

    /// A replicate from the sessions picked in `self.counts`.
    fn resample_counted<R: Rng>(&mut self, rng: &mut R, stat: Statistic) -> f64 {
        let root = &mut self.levels[0];
        root.clear();
        let mut total = 0u64;
        for (s, &c) in self.counts.iter().enumerate() {
            if c > 0 {
                let m = self.sessions[s].len();
                root.push(Range {
                    s,
                    lo: 0,
                    hi: m,
                    n: c * m as u64,
                });
                total += c * m as u64;
            }
        }
        let (lo, hi, frac) = targets(stat, total as usize);
        let mut out = [0.0; 2];
        let wanted = if hi == lo {
            &[(lo as u64, 0usize)][..]
        } else {
            &[(lo as u64, 0usize), (hi as u64, 1usize)][..]
        };
        self.find(0, wanted, rng, &mut out);
        if hi == lo {
            out[1] = out[0];
        }
        combine(out[0], out[1], frac)
    }

    /// Writes into `out[slot]` the value of rank `rank` (0-based, among the node's draws) for
    /// every `(rank, slot)` of `wanted` (ascending ranks).
    fn find<R: Rng>(
        &mut self,
        depth: usize,
        wanted: &[(u64, usize)],
        rng: &mut R,
        out: &mut [f64; 2],
    ) {
        let node = &self.levels[depth];
        let widest = node
            .iter()
            .enumerate()
            .max_by_key(|(_, r)| r.hi - r.lo)
            .map(|(i, r)| (i, r.hi - r.lo));
        let Some((wi, width)) = widest else { return };
        if width <= LEAF_VALUES {
            self.leaf(depth, wanted, rng, out);
            return;
        }
        // Split every session at the pivot: the middle value of the widest range, ties
        // broken by (session, index) so that the pooled order is strict.
        let pivot_range = node[wi];
        let pivot_idx = pivot_range.lo + (pivot_range.hi - pivot_range.lo) / 2;
        let pivot = self.sessions[pivot_range.s][pivot_idx];
        let mut left_total = 0u64;
        {
            let splits = &mut self.splits[depth];
            splits.clear();
            for r in node {
                let mid = if r.s == pivot_range.s {
                    pivot_idx
                } else {
                    let vals = &self.sessions[r.s][r.lo..r.hi];
                    let before = if r.s < pivot_range.s {
                        vals.partition_point(|x| x.total_cmp(&pivot) != Ordering::Greater)
                    } else {
                        vals.partition_point(|x| x.total_cmp(&pivot) == Ordering::Less)
                    };
                    r.lo + before
                };
                let left = binomial(rng, r.n, (mid - r.lo) as f64 / (r.hi - r.lo) as f64);
                left_total += left;
                splits.push((mid, left));
            }
        }
        if self.levels.len() <= depth + 1 {
            self.levels.push(Vec::new());
            self.splits.push(Vec::new());
        }
        let split_at = wanted.partition_point(|&(rank, _)| rank < left_total);
        let (go_left, go_right) = wanted.split_at(split_at);
        if !go_left.is_empty() {
            self.build_child(depth, true);
            self.find(depth + 1, go_left, rng, out);
        }
        if !go_right.is_empty() {
            self.build_child(depth, false);
            let mut shifted = [(0u64, 0usize); 2];
            for (dst, &(rank, slot)) in shifted.iter_mut().zip(go_right) {
                *dst = (rank - left_total, slot);
            }
            self.find(depth + 1, &shifted[..go_right.len()], rng, out);
        }
    }

    fn build_child(&mut self, depth: usize, left: bool) {
        let (head, tail) = self.levels.split_at_mut(depth + 1);
        let (node, child) = (&head[depth], &mut tail[0]);
        child.clear();
        for (r, &(mid, n_left)) in node.iter().zip(&self.splits[depth]) {
            let c = if left {
                Range {
                    s: r.s,
                    lo: r.lo,
                    hi: mid,
                    n: n_left,
                }
            } else {
                Range {
                    s: r.s,
                    lo: mid,
                    hi: r.hi,
                    n: r.n - n_left,
                }
            };
            if c.n > 0 {
                child.push(c);
            }
        }
    }

    /// Spreads each range's draws over its (few) values and reads the wanted ranks.
    fn leaf<R: Rng>(
        &mut self,
        depth: usize,
        wanted: &[(u64, usize)],
        rng: &mut R,
        out: &mut [f64; 2],
    ) {
        self.leaf.clear();
        for r in &self.levels[depth] {
            let vals = &self.sessions[r.s][r.lo..r.hi];
            let mut left = r.n;
            for (j, &v) in vals.iter().enumerate() {
                if left == 0 {
                    break;
                }
                let c = if j + 1 == vals.len() {
                    left
                } else {
                    binomial(rng, left, 1.0 / (vals.len() - j) as f64)
                };
                if c > 0 {
                    self.leaf.push((v, c));
                }
                left -= c;
            }
        }
        self.leaf.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut seen = 0u64;
        let mut w = wanted.iter().peekable();
        for &(v, c) in &self.leaf {
            seen += c;
            while let Some(&&(rank, slot)) = w.peek() {
                if rank < seen {
                    out[slot] = v;
                    w.next();
                } else {
                    break;
                }
            }
        }
    }
}

/// One session of a build whose groups hold several values, arranged for banded resampling.
struct GroupedSession {
    /// The session's values, group after group.
    values: Vec<f64>,
    groups: Vec<GroupSlot>,
    /// Bin of every in-band value, group after group.
    band_bins: Vec<u32>,
    /// Times each group was drawn in the current resample.
    hits: Vec<u32>,
}

#[derive(Clone, Copy)]
struct GroupSlot {
    /// Where the group's values start in `values` and how many it has.
    start: u32,
    len: u32,
    /// How many of its values lie below the band.
    below: u32,
    /// Where its in-band values' bins start in `band_bins` and how many there are.
    band_start: u32,
    band_len: u32,
}

/// An in-band value: which session and group it belongs to.
#[derive(Clone, Copy)]
struct BandEntry {
    session: u32,
    group: u32,
    value: f64,
}

/// In-band values per bin: bins partition the band in value order, about this many each.
const BAND_BIN_VALUES: usize = 64;

/// The resampler of builds whose groups hold several values (decode steps per pass).
///
/// A resample counts how often each group of each picked session is drawn (random increments
/// into a small array), then walks the groups in order: values below the band are only counted,
/// values in it add their draws to the count of their bin (the band split in value order into
/// bins of about [`BAND_BIN_VALUES`] values). Only the bins holding the wanted ranks are then
/// expanded into values and selected in.
struct Grouped {
    sessions: Vec<GroupedSession>,
    /// In-band entries of each bin, bin after bin (`bin_starts` has one more element).
    bins: Vec<BandEntry>,
    bin_starts: Vec<usize>,
    bin_counts: Vec<u64>,
    counts: Vec<u64>,
    buf: Vec<f64>,
}

impl Grouped {
    fn new(sessions: &[&SessionValues], stat: Statistic) -> Grouped {
        // The band: from the lowest to the highest per-session quantile, widened by six
        // standard errors of a quantile of that session's size. A pooled resample's quantile
        // lies between its sessions' quantiles up to resampling noise; when it does not, the
        // resample is redone from every value, so the band only changes speed.
        let q = match stat {
            Statistic::Quantile(q) => q,
            Statistic::Max => 1.0,
        };
        let (mut t_low, mut t_high) = (f64::INFINITY, f64::NEG_INFINITY);
        for s in sessions {
            let mut v = s.values.clone();
            v.sort_by(f64::total_cmp);
            let m = v.len() as f64;
            let delta = 6.0 * (q * (1.0 - q) / m).sqrt() + 2.0 / m;
            let at = |p: f64| {
                let (lo, frac) = type7_position(v.len(), p);
                combine(v[lo], v[(lo + 1).min(v.len() - 1)], frac)
            };
            t_low = t_low.min(if q - delta <= 0.0 {
                f64::NEG_INFINITY
            } else {
                at(q - delta)
            });
            t_high = t_high.max(if q + delta >= 1.0 {
                f64::INFINITY
            } else {
                at(q + delta)
            });
        }
        let in_band = |x: f64| x >= t_low && x <= t_high;
        let mut entries: Vec<BandEntry> = Vec::new();
        for (si, s) in sessions.iter().enumerate() {
            for g in 0..s.group_count() {
                for &value in s.group(g).iter().filter(|&&x| in_band(x)) {
                    entries.push(BandEntry {
                        session: si as u32,
                        group: g as u32,
                        value,
                    });
                }
            }
        }
        entries.sort_by(|a, b| a.value.total_cmp(&b.value));
        let n_bins = entries.len().div_ceil(BAND_BIN_VALUES).max(1);
        let bin_of = |rank: usize| rank * n_bins / entries.len().max(1);
        let mut bin_starts = vec![0; n_bins + 1];
        for rank in 0..entries.len() {
            bin_starts[bin_of(rank) + 1] = rank + 1;
        }
        for b in 1..=n_bins {
            bin_starts[b] = bin_starts[b].max(bin_starts[b - 1]);
        }
        // Each session's in-band values, as bins, group after group.
        let mut per_group: Vec<Vec<Vec<u32>>> = sessions
            .iter()
            .map(|s| vec![Vec::new(); s.group_count()])
            .collect();
        for (rank, e) in entries.iter().enumerate() {
            per_group[e.session as usize][e.group as usize].push(bin_of(rank) as u32);
        }
        let sessions = sessions
            .iter()
            .zip(per_group)
            .map(|(s, bins)| {
                let mut band_bins = Vec::new();
                let groups = (0..s.group_count())
                    .map(|g| {
                        let slot = GroupSlot {
                            start: s.groups[g] as u32,
                            len: s.group(g).len() as u32,
                            below: s.group(g).iter().filter(|&&x| x < t_low).count() as u32,
                            band_start: band_bins.len() as u32,
                            band_len: bins[g].len() as u32,
                        };
                        band_bins.extend_from_slice(&bins[g]);
                        slot
                    })
                    .collect::<Vec<_>>();
                GroupedSession {
                    values: s.values.clone(),
                    hits: vec![0; groups.len()],
                    groups,
                    band_bins,
                }
            })
            .collect::<Vec<_>>();
        Grouped {
            counts: vec![0; sessions.len()],
            sessions,
            bins: entries,
            bin_counts: vec![0; n_bins],
            bin_starts,
            buf: Vec::new(),
        }
    }

    fn resample<R: Rng>(&mut self, rng: &mut R, stat: Statistic) -> f64 {
        pick_sessions(rng, &mut self.counts);
        self.resample_counted(rng, stat)
    }

    /// A replicate from the sessions picked in `self.counts`.
    fn resample_counted<R: Rng>(&mut self, rng: &mut R, stat: Statistic) -> f64 {
        self.bin_counts.iter_mut().for_each(|c| *c = 0);
        let (mut below_band, mut total) = (0u64, 0u64);
        for (s, &c) in self.sessions.iter_mut().zip(&self.counts) {
            s.hits.iter_mut().for_each(|h| *h = 0);
            if c == 0 {
                continue;
            }
            let m = s.groups.len();
            for _ in 0..c as usize * m {
                s.hits[below(rng, m)] += 1;
            }
            for (slot, &h) in s.groups.iter().zip(&s.hits) {
                if h == 0 {
                    continue;
                }
                let h = h as u64;
                below_band += h * slot.below as u64;
                total += h * slot.len as u64;
                let start = slot.band_start as usize;
                for &b in &s.band_bins[start..start + slot.band_len as usize] {
                    self.bin_counts[b as usize] += h;
                }
            }
        }
        let (lo, hi, frac) = targets(stat, total as usize);
        let (lo, hi) = (lo as u64, hi as u64);
        let in_band: u64 = self.bin_counts.iter().sum();
        let (a, b) = if lo >= below_band && hi < below_band + in_band {
            let x_lo = self.rank_in_band(lo - below_band);
            let x_hi = if hi == lo {
                x_lo
            } else {
                self.rank_in_band(hi - below_band)
            };
            (x_lo, x_hi)
        } else {
            // The order statistic left the band: pool every drawn value.
            self.buf.clear();
            for s in &self.sessions {
                for (slot, &h) in s.groups.iter().zip(&s.hits) {
                    let vals = &s.values[slot.start as usize..(slot.start + slot.len) as usize];
                    for _ in 0..h {
                        self.buf.extend_from_slice(vals);
                    }
                }
            }
            select_pair(&mut self.buf, lo as usize, hi as usize)
        };
        combine(a, b, frac)
    }

    /// The value of rank `rank` (0-based) among this resample's in-band draws.
    fn rank_in_band(&mut self, rank: u64) -> f64 {
        let mut before = 0u64;
        let mut bin = 0;
        while before + self.bin_counts[bin] <= rank {
            before += self.bin_counts[bin];
            bin += 1;
        }
        self.buf.clear();
        for e in &self.bins[self.bin_starts[bin]..self.bin_starts[bin + 1]] {
            let h = self.sessions[e.session as usize].hits[e.group as usize];
            for _ in 0..h {
                self.buf.push(e.value);
            }
        }
        let k = (rank - before) as usize;
        *self.buf.select_nth_unstable_by(k, f64::total_cmp).1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::percentile::percentile_sorted;

    fn session(values: &[f64]) -> SessionValues {
        SessionValues {
            values: values.to_vec(),
            groups: (0..=values.len()).collect(),
        }
    }

    fn grouped(groups: &[&[f64]]) -> SessionValues {
        let mut s = SessionValues {
            values: Vec::new(),
            groups: vec![0],
        };
        for g in groups {
            s.values.extend_from_slice(g);
            s.groups.push(s.values.len());
        }
        s
    }

    fn noise(seed: u64, n: usize, scale: f64) -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n)
            .map(|_| 100.0 * (scale * standard_normal(&mut rng)).exp())
            .collect()
    }

    #[test]
    fn statistic_matches_percentile_sorted_bit_for_bit() {
        for n in [1usize, 2, 3, 5, 20, 99, 100, 101, 1000, 1001] {
            let mut v = noise(n as u64, n, 0.2);
            let mut sorted = v.clone();
            sorted.sort_by(f64::total_cmp);
            for q in [0.0, 0.05, 0.5, 0.9, 0.95, 0.99, 1.0] {
                let got = statistic_of(&mut v, Statistic::Quantile(q)).unwrap();
                assert_eq!(got, percentile_sorted(&sorted, q * 100.0), "n={n} q={q}");
            }
            assert_eq!(statistic_of(&mut v, Statistic::Max).unwrap(), sorted[n - 1]);
        }
        assert_eq!(statistic_of(&mut [], Statistic::Max), None);
    }

    #[test]
    fn binomial_draws_have_the_right_mean_and_variance() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for &(n, p) in &[
            (10u64, 0.3),
            (50, 0.02),
            (200, 0.5),
            (1000, 0.9),
            (3000, 0.25),
            (100_000, 0.95),
            (1_000_000, 0.5),
        ] {
            let draws = 20_000;
            let xs: Vec<f64> = (0..draws)
                .map(|_| binomial(&mut rng, n, p) as f64)
                .collect();
            let mean = xs.iter().sum::<f64>() / draws as f64;
            let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (draws - 1) as f64;
            let (m, v) = (n as f64 * p, n as f64 * p * (1.0 - p));
            assert!(
                (mean - m).abs() < 5.0 * (v / draws as f64).sqrt() + 1e-9,
                "n={n} p={p}: mean {mean} vs {m}"
            );
            assert!(
                (var / v - 1.0).abs() < 0.06,
                "n={n} p={p}: var {var} vs {v}"
            );
            assert!(xs.iter().all(|&x| x >= 0.0 && x <= n as f64));
        }
        assert_eq!(binomial(&mut rng, 0, 0.5), 0);
        assert_eq!(binomial(&mut rng, 9, 1.0), 9);
        assert_eq!(binomial(&mut rng, 9, 0.0), 0);
    }

    #[test]
    fn ln_factorial_is_accurate() {
        let mut exact = 0.0f64;
        for k in 1..200u64 {
            exact += (k as f64).ln();
            assert!(
                (ln_factorial(k) - exact).abs() < 1e-10 * exact.max(1.0),
                "k={k}"
            );
        }
    }

    /// The tree resampler and the explicit one draw from the same bootstrap distribution.
    fn explicit_replicates(sessions: &[SessionValues], stat: Statistic, b: usize) -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(99);
        let k = sessions.len();
        (0..b)
            .map(|_| {
                let mut pool = Vec::new();
                for _ in 0..k {
                    let s = &sessions[below(&mut rng, k)];
                    for _ in 0..s.group_count() {
                        pool.extend_from_slice(s.group(below(&mut rng, s.group_count())));
                    }
                }
                statistic_of(&mut pool, stat).unwrap()
            })
            .collect()
    }

    fn quantiles_of(mut v: Vec<f64>) -> [f64; 3] {
        v.sort_by(f64::total_cmp);
        [0.025, 0.5, 0.975].map(|q| percentile_sorted(&v, q * 100.0))
    }

    #[test]
    fn tree_resampler_matches_the_explicit_bootstrap() {
        let offsets = [1.0, 1.04, 0.97, 1.01];
        let sessions: Vec<SessionValues> = offsets
            .iter()
            .enumerate()
            .map(|(i, o)| {
                let v: Vec<f64> = noise(i as u64 + 10, 300, 0.05)
                    .into_iter()
                    .map(|x| x * o)
                    .collect();
                session(&v)
            })
            .collect();
        // The maximum: how often a resample keeps the overall maximum (about one half with 4
        // sessions, so its median is a knife edge) and its lower tail.
        let top = sessions
            .iter()
            .flat_map(|s| s.values.iter().copied())
            .fold(f64::MIN, f64::max);
        let share = |v: &[f64]| v.iter().filter(|&&x| x == top).count() as f64 / v.len() as f64;
        let tree = resample_statistics(&sessions, Statistic::Max, 4000, 5).unwrap();
        let explicit = explicit_replicates(&sessions, Statistic::Max, 4000);
        assert!((share(&tree) - share(&explicit)).abs() < 0.035);
        let (t, e) = (quantiles_of(tree)[0], quantiles_of(explicit)[0]);
        assert!((t / e - 1.0).abs() < 0.006, "max: {t} vs {e}");
        for stat in [Statistic::Quantile(0.95), Statistic::Quantile(0.5)] {
            let tree = quantiles_of(resample_statistics(&sessions, stat, 4000, 5).unwrap());
            let explicit = quantiles_of(explicit_replicates(&sessions, stat, 4000));
            for (t, e) in tree.iter().zip(&explicit) {
                assert!(
                    (t / e - 1.0).abs() < 0.006,
                    "{stat:?}: tree {tree:?} explicit {explicit:?}"
                );
            }
        }
    }

    #[test]
    fn grouped_resampler_matches_the_explicit_bootstrap() {
        // Passes with 8 decode steps each; a narrow band forces some fallbacks too.
        let sessions: Vec<SessionValues> = (0..3)
            .map(|i| {
                let v = noise(i + 40, 8 * 200, 0.1);
                let groups: Vec<&[f64]> = v.chunks(8).collect();
                grouped(&groups)
            })
            .collect();
        for stat in [Statistic::Quantile(0.95), Statistic::Quantile(0.5)] {
            let fast = quantiles_of(resample_statistics(&sessions, stat, 3000, 5).unwrap());
            let explicit = quantiles_of(explicit_replicates(&sessions, stat, 3000));
            for (t, e) in fast.iter().zip(&explicit) {
                assert!(
                    (t / e - 1.0).abs() < 0.006,
                    "{stat:?}: {fast:?} vs {explicit:?}"
                );
            }
        }
    }

    #[test]
    fn ratio_interval_is_reproducible_and_covers_the_truth() {
        let base = vec![session(&noise(1, 200, 0.05)), session(&noise(2, 200, 0.05))];
        let cand: Vec<SessionValues> = [3, 4]
            .iter()
            .map(|&s| {
                session(
                    &noise(s, 200, 0.05)
                        .iter()
                        .map(|x| x * 1.3)
                        .collect::<Vec<_>>(),
                )
            })
            .collect();
        let cfg = BootstrapConfig {
            resamples: 1000,
            confidence: 0.95,
            seed: 1,
        };
        let a = ratio_interval(&base, &cand, Statistic::Quantile(0.5), &cfg).unwrap();
        let b = ratio_interval(&base, &cand, Statistic::Quantile(0.5), &cfg).unwrap();
        assert_eq!(a, b);
        assert!(
            a.low < 1.3 && 1.3 < a.high && a.low > 1.2 && a.high < 1.4,
            "{a:?}"
        );
        assert_eq!(a.resamples, 1000);
        assert!(ratio_interval(&[], &cand, Statistic::Max, &cfg).is_none());
    }

    #[test]
    fn large_grouped_samples_use_fewer_resamples() {
        assert_eq!(effective_resamples(2000, 20_000), 2000);
        assert_eq!(effective_resamples(2000, 40_000), 1000);
        assert_eq!(effective_resamples(2000, 1_000_000), MIN_RESAMPLES);
        assert_eq!(effective_resamples(100, 1_000_000), 100);
        let flat = vec![session(&noise(1, 30_000, 0.05))];
        assert_eq!(planned_resamples(&flat, &flat, 2000), 2000);
        let v = noise(2, 40_000, 0.05);
        let groups: Vec<&[f64]> = v.chunks(4).collect();
        let many = vec![grouped(&groups)];
        assert_eq!(planned_resamples(&flat, &many, 2000), 1000);
    }

    #[test]
    fn one_value_sessions_and_ties() {
        // Peak RSS: one value per session.
        let sessions: Vec<SessionValues> = [100.0, 101.0, 100.0]
            .iter()
            .map(|&v| session(&[v]))
            .collect();
        let reps = resample_statistics(&sessions, Statistic::Max, 500, 3).unwrap();
        assert!(reps.iter().all(|&r| r == 100.0 || r == 101.0));
        assert!(reps.contains(&100.0) && reps.contains(&101.0));
        // Every value equal: every replicate is that value.
        let same = vec![session(&[5.0; 1000]), session(&[5.0; 700])];
        let reps = resample_statistics(&same, Statistic::Quantile(0.95), 200, 3).unwrap();
        assert!(reps.iter().all(|&r| r == 5.0));
    }

    /// Sessions that drift together (a device heating, a neighbour's load): each pair shares a
    /// factor between 0.75 and 1.3, passes add 2% noise. Resampled independently, the drift
    /// widens the interval past a 10% budget; paired, it cancels, so identical builds are
    /// told apart from a 5% change.
    #[test]
    fn pairing_cancels_drift_shared_by_a_pair() {
        let drift = [1.0, 1.3, 0.75, 1.15, 0.85, 1.25, 0.8, 1.1, 0.9, 1.0];
        let build = |seed: u64, scale: f64, grouped_passes: bool| -> Vec<SessionValues> {
            drift
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    let v: Vec<f64> = noise(seed + i as u64, 40, 0.02)
                        .into_iter()
                        .map(|x| x * d * scale)
                        .collect();
                    if grouped_passes {
                        let groups: Vec<&[f64]> = v.chunks(4).collect();
                        grouped(&groups)
                    } else {
                        session(&v)
                    }
                })
                .collect()
        };
        let config = BootstrapConfig {
            resamples: 2000,
            confidence: 0.95,
            seed: 7,
        };
        for grouped_passes in [false, true] {
            let a = build(100, 1.0, grouped_passes);
            let same = build(200, 1.0, grouped_passes);
            let slower = build(300, 1.05, grouped_passes);
            let stat = Statistic::Quantile(0.95);
            let apart = ratio_interval(&a, &same, stat, &config).unwrap();
            assert!(
                apart.low < 0.9 && apart.high > 1.1,
                "drift widens independent draws: {apart:?}"
            );
            let paired = paired_ratio_interval(&a, &same, stat, &config).unwrap();
            assert!(
                paired.low > 0.97 && paired.high < 1.03,
                "pairs cancel it: {paired:?}"
            );
            let paired = paired_ratio_interval(&a, &slower, stat, &config).unwrap();
            assert!(
                paired.low > 1.02 && paired.high < 1.08,
                "and a 5% change stands out: {paired:?}"
            );
        }
        // Unequal session counts cannot be paired.
        let a = build(100, 1.0, false);
        let config = BootstrapConfig {
            resamples: 10,
            ..config
        };
        assert!(paired_ratio_interval(&a, &a[1..], Statistic::Quantile(0.5), &config).is_none());
    }
}
