//! Renderers: one file per format, each an [`Exporter`] over a [`ReportInput`], so a caller
//! picks formats from [`ALL`] by name instead of wiring each one by hand (hyperfine's
//! `src/export/` is the model). Every per-cell figure comes from
//! [`crate::figures::CellFigures`]; no exporter computes its own.

pub mod bencher;
pub mod csv;
pub mod html;
pub mod json;
pub mod junit;
pub mod llama_bench;
pub mod markdown;
pub mod perfetto;
pub mod terminal;

use crate::report::ReportInput;

/// One output format.
pub trait Exporter: Sync {
    /// The format's name (`meltbench export --format NAME`).
    fn name(&self) -> &'static str;
    /// What the format is for, one line (`--help`).
    fn about(&self) -> &'static str;
    /// The file extension a file of this format gets, without the dot.
    fn extension(&self) -> &'static str;
    /// The whole document. Formats about the gate's verdicts need `input.gate`.
    fn render(&self, input: &ReportInput) -> Result<String, ExportError>;
}

#[derive(Debug, PartialEq)]
pub enum ExportError {
    /// The format shows gate verdicts and the input has none.
    NeedsGate(&'static str),
    /// No format has this name.
    UnknownFormat(String),
}

impl std::fmt::Display for ExportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExportError::NeedsGate(name) => write!(
                f,
                "the {name} format holds gate verdicts; use `meltbench gate RUN --baseline BASE \
                 --{name} FILE` (a baseline to compare against is needed)"
            ),
            ExportError::UnknownFormat(name) => write!(
                f,
                "unknown format '{name}'; the formats are: {}",
                names().join(", ")
            ),
        }
    }
}

impl std::error::Error for ExportError {}

/// A figure as the human-readable formats print it (HTML, Markdown): about four significant
/// digits, fewer decimals as the value grows. An interval's ends are printed the same way, so
/// a figure and its interval show the same digits.
pub fn number(v: f64) -> String {
    let a = v.abs();
    if !v.is_finite() {
        format!("{v}")
    } else if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 10.0 {
        format!("{v:.2}")
    } else if a >= 0.01 || a == 0.0 {
        format!("{v:.3}")
    } else {
        format!("{v:.2e}")
    }
}

/// Every format, in the order `--help` lists them.
pub const ALL: &[&dyn Exporter] = &[
    &terminal::Terminal,
    &markdown::Markdown,
    &html::Html,
    &json::GateJson,
    &junit::Junit,
    &bencher::Bencher,
    &csv::PassesCsv,
    &perfetto::Perfetto,
    &llama_bench::JSON,
    &llama_bench::JSONL,
    &llama_bench::CSV,
    &llama_bench::SQL,
];

/// The exporter called `name`.
pub fn by_name(name: &str) -> Result<&'static dyn Exporter, ExportError> {
    ALL.iter()
        .copied()
        .find(|e| e.name() == name)
        .ok_or_else(|| ExportError::UnknownFormat(name.to_string()))
}

/// The names of [`ALL`], for error messages.
pub fn names() -> Vec<&'static str> {
    ALL.iter().map(|e| e.name()).collect()
}
