//! `summary.json`: per cell, the figures every report shows ([`CellFigures`]), computed from the
//! raw events the run stored (warm-ups excluded).

use crate::cell_key::CellKey;
use crate::dataset::device_cells;
use crate::figures::CellFigures;
use meltbench_protocol::agent::AgentEvent;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CellSummary {
    pub key: CellKey,
    #[serde(flatten)]
    pub figures: CellFigures,
    pub prompt_tokens: Option<usize>,
    pub gen_tokens: Option<usize>,
    pub cold_start_page_cache_dropped: Option<bool>,
    /// Set when the cell did not finish; the numbers cover the passes that did.
    pub error: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub run_id: String,
    pub cells: Vec<CellSummary>,
}

/// Summarises one device's events for the cells in `keys` (cells with no events still appear,
/// with no numbers).
pub fn summarize_device(keys: &[CellKey], events: &[AgentEvent]) -> Vec<CellSummary> {
    device_cells(keys, events)
        .iter()
        .map(|c| CellSummary {
            key: c.key.clone(),
            figures: CellFigures::of(c),
            prompt_tokens: c.prompt_tokens,
            gen_tokens: c.gen_tokens,
            cold_start_page_cache_dropped: c.cold_start_page_cache_dropped,
            error: c.errors.last().cloned(),
        })
        .collect()
}
