//! Percentiles of raw samples, never of averages.
//!
//! Method: linear interpolation between the two nearest ranks (Hyndman & Fan type 7, numpy's
//! default): the p-th percentile of sorted `x[0..n]` is `x[h] + (h - floor(h)) * (x[h+1] - x[h])`
//! with `h = (n - 1) * p / 100`. It is defined for any n >= 1 and equals the median at p = 50.
//!
//! Each percentile carries its distribution-free 95% interval ([`crate::stats::quantile_ci`]),
//! computed here once, so every report that prints a percentile prints the same interval.

use crate::stats::quantile_ci::{quantile_bounds, QuantileBounds};
use serde::{Deserialize, Serialize};

/// The confidence of the intervals a [`Distribution`] carries.
pub const INTERVAL_CONFIDENCE: f64 = 0.95;

/// The usual summary of one metric over passes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Distribution {
    pub n: usize,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
    /// The [`INTERVAL_CONFIDENCE`] interval of `p50`, `p95` and `p99` from order statistics;
    /// an end is `null` where the sample is too small to give it (p99's top below 368 values).
    pub ci95: PercentileIntervals,
}

/// Order-statistic intervals of the three percentiles of a [`Distribution`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PercentileIntervals {
    pub p50: Interval,
    pub p95: Interval,
    pub p99: Interval,
}

/// The two ends of one percentile's interval; `None` for an end no order statistic reaches.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub low: Option<f64>,
    pub high: Option<f64>,
}

impl From<QuantileBounds> for Interval {
    fn from(b: QuantileBounds) -> Interval {
        Interval {
            low: b.low,
            high: b.high,
        }
    }
}

/// The `p`-th percentile (0..=100) of `sorted`, which must be sorted ascending and non-empty.
pub fn percentile_sorted(sorted: &[f64], p: f64) -> f64 {
    assert!(!sorted.is_empty(), "percentile of no samples");
    let h = (sorted.len() - 1) as f64 * p / 100.0;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// The `p`-th percentile (0..=100) of unsorted `v` in linear time (reordering `v`); equal to
/// [`percentile_sorted`] of the sorted values. `None` for no values.
pub fn percentile_select(v: &mut [f64], p: f64) -> Option<f64> {
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

impl Distribution {
    /// `None` for no samples. NaNs are not expected (durations) and sort last.
    pub fn of(samples: &[f64]) -> Option<Distribution> {
        if samples.is_empty() {
            return None;
        }
        // The mean sums in the order the samples were taken, so anyone recomputing it from
        // the raw events in file order gets the same bits.
        let mean = samples.iter().sum::<f64>() / samples.len() as f64;
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        let ci = |p: f64| Interval::from(quantile_bounds(&s, p / 100.0, INTERVAL_CONFIDENCE));
        Some(Distribution {
            ci95: PercentileIntervals {
                p50: ci(50.0),
                p95: ci(95.0),
                p99: ci(99.0),
            },
            n: s.len(),
            p50: percentile_sorted(&s, 50.0),
            p95: percentile_sorted(&s, 95.0),
            p99: percentile_sorted(&s, 99.0),
            mean,
            min: s[0],
            max: s[s.len() - 1],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_numpy_type_7() {
        // numpy.percentile([1, 2, 3, 4, 10], [50, 95, 99]) = [3.0, 8.8, 9.76]
        let d = Distribution::of(&[10.0, 1.0, 3.0, 2.0, 4.0]).unwrap();
        assert_eq!(d.p50, 3.0);
        assert!((d.p95 - 8.8).abs() < 1e-12 && (d.p99 - 9.76).abs() < 1e-12);
        assert_eq!((d.min, d.max, d.mean), (1.0, 10.0, 4.0));
        let one = Distribution::of(&[7.0]).unwrap();
        assert_eq!((one.p50, one.p99), (7.0, 7.0));
        let none = Interval {
            low: None,
            high: None,
        };
        assert_eq!(one.ci95.p50, none, "one value bounds no percentile");
        assert!(Distribution::of(&[]).is_none());
    }

    #[test]
    fn intervals_are_order_statistics() {
        // 100 values 1..=100: the 95% interval of the median is [x(40), x(61)] (1-based ranks,
        // Binomial(100, 0.5) tails of at most 2.5% each); p99 has a lower end (the 4th largest
        // value... x(97)) and no upper end below 368 values.
        let v: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let d = Distribution::of(&v).unwrap();
        assert_eq!((d.ci95.p50.low, d.ci95.p50.high), (Some(40.0), Some(61.0)));
        assert_eq!(d.ci95.p99.high, None);
        assert!(d.ci95.p99.low.is_some());
        assert!(d.ci95.p95.low.unwrap() <= d.p95 && d.p95 <= d.ci95.p95.high.unwrap());
    }

    #[test]
    fn select_matches_sorted_percentile() {
        let mut state = 11u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        for n in [1usize, 2, 3, 10, 101, 1000] {
            let v: Vec<f64> = (0..n).map(|_| next() * 100.0).collect();
            let mut s = v.clone();
            s.sort_by(f64::total_cmp);
            for p in [0.0, 1.0, 50.0, 95.0, 99.0, 100.0] {
                let got = percentile_select(&mut v.clone(), p).unwrap();
                assert_eq!(got, percentile_sorted(&s, p), "n={n} p={p}");
            }
        }
        assert_eq!(percentile_select(&mut [], 50.0), None);
    }
}
