//! `meltbench-reports`: statistics over raw per-pass samples, comparisons keyed by
//! device x model x precision x scenario x threads x state, the regression gate, history and
//! trends, and the renderers (terminal, Markdown, self-contained HTML, JSON, JUnit).
//! It reads only run-store files.

pub mod attempts;
pub mod budget;
pub mod cell_key;
pub mod compare;
pub mod dataset;
pub mod export;
pub mod figures;
pub mod history;
pub mod metric;
pub mod report;
pub mod runstore;
pub mod stats;
pub mod summary;
