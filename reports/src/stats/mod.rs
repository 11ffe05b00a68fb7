//! Statistics over raw samples.

pub mod percentile;
