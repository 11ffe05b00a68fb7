//! `meltbench-reports`: statistics over raw per-pass samples, comparisons keyed by
//! device x model x precision x scenario x state, the regression gate, history and trends, and
//! the renderers (terminal, Markdown, self-contained HTML, JSON, JUnit).
//!
//! Today it holds the percentile statistics and `summary.json`; comparisons, the gate and the
//! renderers come with the issue "Reports and the regression gate". It reads only run-store files.

pub mod stats;
pub mod summary;
