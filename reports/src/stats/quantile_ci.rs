//! Distribution-free confidence intervals for a quantile of one sample, from order statistics
//! (the method of asv's `quantile_ci` in `asv/statistics.py`, github.com/airspeed-velocity/asv;
//! H. A. David and H. N. Nagaraja, *Order Statistics*, 3rd ed., Wiley 2003, section 7.1).
//!
//! If `K` counts the sample values below the true `q`-quantile, `K ~ Binomial(n, q)` whatever
//! the distribution (for continuous data). The interval `[x(r), x(s)]` of order statistics
//! covers the quantile with probability at least `1 - P(K < r) - P(K >= s)`; the two tails are
//! each kept at most `(1 - confidence) / 2`, taking the narrowest such ranks. With too few
//! values a side has no order statistic that far out: a 95% interval for p99 has no upper end
//! below n = 368 (n = 100: the lower end is the 4th largest value, the upper is "unbounded").
//! That side is then `None`: nothing in the sample bounds the quantile.

use crate::stats::bootstrap::ln_binomial_pmf;

/// The two ends of a quantile's interval; `None` for an end no order statistic reaches.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QuantileBounds {
    pub low: Option<f64>,
    pub high: Option<f64>,
}

/// Two-sided interval at `confidence` for the `q`-quantile (0 < q < 1) of the sample `sorted`
/// (ascending). `None` unless both ends exist; see [`quantile_bounds`] for one end at a time.
pub fn quantile_ci(sorted: &[f64], q: f64, confidence: f64) -> Option<(f64, f64)> {
    let b = quantile_bounds(sorted, q, confidence);
    Some((b.low?, b.high?))
}

/// [`quantile_ci`], one end at a time (for "p99 <= unbounded" style displays).
pub fn quantile_bounds(sorted: &[f64], q: f64, confidence: f64) -> QuantileBounds {
    let (lo, hi) = quantile_ci_ranks(sorted.len(), q, confidence);
    QuantileBounds {
        low: lo.map(|i| sorted[i]),
        high: hi.map(|i| sorted[i]),
    }
}

/// The 0-based indices into a sorted sample of `n` values of the two ends of the
/// `confidence` interval for the `q`-quantile. An end is `None` when even the extreme order
/// statistic leaves more than `(1 - confidence) / 2` in that tail, or when `q` is not inside
/// (0, 1) or `n` is 0.
pub fn quantile_ci_ranks(n: usize, q: f64, confidence: f64) -> (Option<usize>, Option<usize>) {
    let tail = (1.0 - confidence) / 2.0;
    match Tails::new(n, q) {
        Some(t) => (t.lower_rank(tail), t.upper_rank(tail)),
        None => (None, None),
    }
}

/// One-sided upper confidence bound for the `q`-quantile (MLPerf's "conservative percentile"):
/// the smallest order statistic at or above the quantile with probability `confidence`. `None`
/// when the sample is too small (p99 at 95%: below 299 values).
pub fn quantile_upper_bound(sorted: &[f64], q: f64, confidence: f64) -> Option<f64> {
    let t = Tails::new(sorted.len(), q)?;
    t.upper_rank(1.0 - confidence).map(|i| sorted[i])
}

/// `P(K = k)` for `K ~ Binomial(n, q)` over the window of `k` holding all but a negligible mass.
struct Tails {
    n: usize,
    first: usize,
    pmf: Vec<f64>,
}

impl Tails {
    fn new(n: usize, q: f64) -> Option<Tails> {
        if n == 0 || q.is_nan() || q <= 0.0 || q >= 1.0 {
            return None;
        }
        let mean = n as f64 * q;
        let sd = (mean * (1.0 - q)).sqrt();
        // Beyond 40 standard deviations (and 40 steps) the mass is below 1e-300.
        let reach = 40.0 * sd + 40.0;
        let first = (mean - reach).floor().max(0.0) as usize;
        let last = ((mean + reach).ceil() as usize).min(n);
        let pmf = (first..=last)
            .map(|k| ln_binomial_pmf(n as u64, k as u64, q).exp())
            .collect();
        Some(Tails { n, first, pmf })
    }

    fn p(&self, k: usize) -> f64 {
        k.checked_sub(self.first)
            .and_then(|i| self.pmf.get(i))
            .copied()
            .unwrap_or(0.0)
    }

    /// Largest `j` with `P(K <= j) <= tail`: then `x(j)` (0-based) lies below the quantile
    /// with probability at least `1 - tail`.
    fn lower_rank(&self, tail: f64) -> Option<usize> {
        let mut cdf = 0.0;
        let mut best = None;
        for j in 0..self.n {
            cdf += self.p(j);
            if cdf > tail {
                break;
            }
            best = Some(j);
        }
        best
    }

    /// Smallest 0-based `i` with `P(K >= i + 1) <= tail`: `x(i)` lies above the quantile with
    /// probability at least `1 - tail`.
    fn upper_rank(&self, tail: f64) -> Option<usize> {
        let mut sf = 0.0; // P(K >= s), s counting down from n
        let mut best = None;
        for s in (1..=self.n).rev() {
            sf += self.p(s);
            if sf > tail {
                break;
            }
            best = Some(s - 1);
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// "k-th largest" of n values as a 0-based index.
    fn largest(n: usize, k: usize) -> usize {
        n - k
    }

    #[test]
    fn matches_the_reference_table() {
        // Section 4.2: n, p95 interval (k-th largest), p99 interval (None = unbounded).
        type Row = (usize, (usize, usize), (usize, Option<usize>));
        let rows: [Row; 6] = [
            (100, (11, 1), (4, None)),
            (200, (17, 4), (6, None)),
            (300, (24, 8), (8, None)),
            (500, (36, 16), (11, Some(1))),
            (1000, (65, 37), (18, Some(4))),
            (2000, (121, 81), (30, Some(12))),
        ];
        for (n, (p95_lo, p95_hi), (p99_lo, p99_hi)) in rows {
            assert_eq!(
                quantile_ci_ranks(n, 0.95, 0.95),
                (Some(largest(n, p95_lo)), Some(largest(n, p95_hi))),
                "p95, n={n}"
            );
            assert_eq!(
                quantile_ci_ranks(n, 0.99, 0.95),
                (Some(largest(n, p99_lo)), p99_hi.map(|k| largest(n, k))),
                "p99, n={n}"
            );
        }
        // The upper end of p99 appears at n = 368.
        assert_eq!(quantile_ci_ranks(367, 0.99, 0.95).1, None);
        assert!(quantile_ci_ranks(368, 0.99, 0.95).1.is_some());
    }

    #[test]
    fn values_and_one_sided_bounds() {
        let sorted: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile_ci(&sorted, 0.95, 0.95), Some((90.0, 100.0)));
        assert_eq!(quantile_ci(&sorted, 0.99, 0.95), None);
        assert_eq!(
            quantile_bounds(&sorted, 0.99, 0.95),
            QuantileBounds {
                low: Some(97.0),
                high: None
            }
        );
        // Median of 100 at 95%: the 40th to 61st values, the textbook answer.
        assert_eq!(quantile_ci(&sorted, 0.5, 0.95), Some((40.0, 61.0)));
        // One-sided upper bounds: the smallest rank r with P(Binomial(n, q) < r) >= confidence.
        assert_eq!(quantile_upper_bound(&sorted, 0.95, 0.95), Some(99.0));
        assert_eq!(quantile_upper_bound(&sorted, 0.95, 0.99), Some(100.0));
        assert_eq!(quantile_upper_bound(&sorted, 0.90, 0.95), Some(96.0));
        let big: Vec<f64> = (1..=1000).map(f64::from).collect();
        assert_eq!(quantile_upper_bound(&big, 0.99, 0.95), Some(996.0));
        assert_eq!(quantile_upper_bound(&big, 0.99, 0.99), Some(998.0));
        assert_eq!(quantile_upper_bound(&big[..298], 0.99, 0.95), None);
        assert!(quantile_upper_bound(&big[..299], 0.99, 0.95).is_some());
        assert_eq!(quantile_ci(&[], 0.5, 0.95), None);
        assert_eq!(quantile_ci_ranks(10, 1.0, 0.95), (None, None));
    }

    #[test]
    fn binomial_ranks() {
        let both = |n, q| match quantile_ci_ranks(n, q, 0.95) {
            (Some(lo), Some(hi)) => Some((lo, hi)),
            _ => None,
        };
        // Median of 6: P(K=0) = P(K=6) = 1/64 < 0.025, so ranks 1 and 6 (0-based 0 and 5).
        assert_eq!(both(6, 0.5), Some((0, 5)));
        assert_eq!(both(5, 0.5), None);
        // p95 has an upper end only from n = 72 (0.95^71 > 0.025 > 0.95^72), p99 from 368.
        assert_eq!(quantile_ci_ranks(71, 0.95, 0.95).1, None);
        assert!(quantile_ci_ranks(72, 0.95, 0.95).1.is_some());
        assert_eq!(quantile_ci_ranks(367, 0.99, 0.95).1, None);
        assert!(quantile_ci_ranks(368, 0.99, 0.95).1.is_some());
        // Textbook: median of 100 at 95% is ranks 40 and 61 (1-based).
        assert_eq!(both(100, 0.5), Some((39, 60)));
        // Large n neither overflows nor loses the tails.
        let (lo, hi) = both(100_000, 0.99).unwrap();
        assert!(lo < 99_000 && hi > 99_000 && hi < 99_200, "{lo} {hi}");
    }
}
