//! What the statistics take: one session's values of a metric, grouped by the pass they came
//! from, and the statistic computed over them. Plain data, so `stats/` needs nothing else of
//! the crate.

/// What is computed over the pooled values of a build.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Statistic {
    /// Type-7 quantile, `q` in 0..=1.
    Quantile(f64),
    /// The largest value (for peak RSS: one value per session).
    Max,
}

/// A session's contribution to one metric: `values[groups[i]..groups[i+1]]` came from pass `i`
/// (one value per pass for per-pass metrics, one per decode step for per-token metrics,
/// and a single group for peak RSS). Resampling picks whole groups.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SessionValues {
    pub values: Vec<f64>,
    pub groups: Vec<usize>,
}

impl SessionValues {
    pub fn group_count(&self) -> usize {
        self.groups.len().saturating_sub(1)
    }

    pub fn group(&self, i: usize) -> &[f64] {
        &self.values[self.groups[i]..self.groups[i + 1]]
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}
