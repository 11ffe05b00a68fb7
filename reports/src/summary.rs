//! `summary.json`: per cell, the distributions of every measured metric, computed from the raw
//! events of the run store (warm-up passes excluded, every measured pass included).

use crate::stats::percentile::Distribution;
use meltbench_protocol::agent::AgentEvent;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a cell is, as the run recorded it in `run.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CellKey {
    pub id: String,
    pub device: String,
    pub model: String,
    pub model_sha256: String,
    pub precision: String,
    pub scenario: String,
    pub threads: usize,
    pub state: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CellSummary {
    pub key: CellKey,
    pub passes: usize,
    pub warmup_passes: usize,
    pub prompt_tokens: Option<usize>,
    pub gen_tokens: Option<usize>,
    /// Time to first token per pass (tokenize + prefill), milliseconds.
    pub ttft_ms: Option<Distribution>,
    /// Every decode step of every measured pass, milliseconds per token.
    pub decode_ms_per_token: Option<Distribution>,
    /// Per pass: prompt tokens / prefill time.
    pub prefill_tokens_per_s: Option<Distribution>,
    /// Per pass: decode steps / total decode time.
    pub decode_tokens_per_s: Option<Distribution>,
    /// Largest resident set of the engine over the cell.
    pub peak_rss_bytes: Option<u64>,
    /// Fresh process to first token, milliseconds.
    pub cold_start_ms: Option<Distribution>,
    pub cold_start_page_cache_dropped: Option<bool>,
    /// Set when the cell did not finish; the numbers cover the passes that did.
    pub error: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub run_id: String,
    pub cells: Vec<CellSummary>,
}

const MS: f64 = 1e6;

/// Summarises one device's events for the cells in `keys` (cells with no events still appear,
/// with no numbers).
pub fn summarize_device(keys: &[CellKey], events: &[AgentEvent]) -> Vec<CellSummary> {
    let mut by_cell: BTreeMap<&str, Vec<&AgentEvent>> = BTreeMap::new();
    for e in events {
        if let Some(c) = e.cell() {
            by_cell.entry(c).or_default().push(e);
        }
    }
    keys.iter()
        .map(|k| summarize_cell(k, by_cell.get(k.id.as_str()).map_or(&[][..], |v| v)))
        .collect()
}

fn summarize_cell(key: &CellKey, events: &[&AgentEvent]) -> CellSummary {
    let (mut ttft, mut step, mut pre, mut dec, mut cold) = (vec![], vec![], vec![], vec![], vec![]);
    let (mut passes, mut warmup) = (0, 0);
    let (mut prompt_tokens, mut gen_tokens, mut rss, mut dropped, mut error) =
        (None, None, None, None, None);
    // Option orders None below any value, so max keeps the largest reading seen.
    let max = |a: Option<u64>, b: Option<u64>| a.max(b);
    for e in events {
        match e {
            AgentEvent::Pass {
                pass,
                rss_hwm_bytes,
                ..
            } => {
                rss = max(rss, *rss_hwm_bytes);
                if pass.warmup {
                    warmup += 1;
                    continue;
                }
                passes += 1;
                prompt_tokens = Some(pass.prompt_tokens);
                gen_tokens = Some(pass.gen_tokens);
                ttft.push(pass.ttft_ns as f64 / MS);
                step.extend(pass.decode_ns.iter().map(|&d| d as f64 / MS));
                if pass.prefill_ns > 0 {
                    pre.push(pass.prompt_tokens as f64 / (pass.prefill_ns as f64 / 1e9));
                }
                let total: u64 = pass.decode_ns.iter().sum();
                if total > 0 {
                    dec.push(pass.decode_ns.len() as f64 / (total as f64 / 1e9));
                }
            }
            AgentEvent::ColdStart {
                first_token_ns,
                page_cache_dropped,
                ..
            } => {
                cold.push(*first_token_ns as f64 / MS);
                dropped = Some(dropped.unwrap_or(true) && *page_cache_dropped);
            }
            AgentEvent::CellEnd { peak_rss_bytes, .. } => rss = max(rss, *peak_rss_bytes),
            AgentEvent::CellError { message, .. } => error = Some(message.clone()),
            _ => {}
        }
    }
    CellSummary {
        key: key.clone(),
        passes,
        warmup_passes: warmup,
        prompt_tokens,
        gen_tokens,
        ttft_ms: Distribution::of(&ttft),
        decode_ms_per_token: Distribution::of(&step),
        prefill_tokens_per_s: Distribution::of(&pre),
        decode_tokens_per_s: Distribution::of(&dec),
        peak_rss_bytes: rss,
        cold_start_ms: Distribution::of(&cold),
        cold_start_page_cache_dropped: dropped,
        error,
    }
}
