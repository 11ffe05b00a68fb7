//! Percentiles of raw samples, never of averages.
//!
//! Method: linear interpolation between the two nearest ranks (Hyndman & Fan type 7, numpy's
//! default): the p-th percentile of sorted `x[0..n]` is `x[h] + (h - floor(h)) * (x[h+1] - x[h])`
//! with `h = (n - 1) * p / 100`. It is defined for any n >= 1 and equals the median at p = 50.

use serde::{Deserialize, Serialize};

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
}

/// The `p`-th percentile (0..=100) of `sorted`, which must be sorted ascending and non-empty.
pub fn percentile_sorted(sorted: &[f64], p: f64) -> f64 {
    assert!(!sorted.is_empty(), "percentile of no samples");
    let h = (sorted.len() - 1) as f64 * p / 100.0;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
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
        Some(Distribution {
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
        assert!(Distribution::of(&[]).is_none());
    }
}
