//! Statistics over raw samples.

pub mod bootstrap;
pub mod histogram;
pub mod percentile;
pub mod quantile_ci;
pub mod sample;
