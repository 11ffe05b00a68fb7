//! `meltbench-reports`: statistics over raw per-pass samples, comparisons keyed by
//! device x model x precision x scenario x state, the regression gate, history and trends, and
//! the renderers (terminal, Markdown, self-contained HTML, JSON, JUnit).
//!
//! Placeholder: this crate is filled in by the issue "Reports and the regression gate".
//! It deliberately exports nothing yet.
