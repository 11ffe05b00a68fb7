//! What identifies a cell across runs: the comparison key of reports and the gate.

use serde::{Deserialize, Serialize};

/// What a cell is, as the run recorded it in `run.json`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CellKey {
    pub id: String,
    pub device: String,
    pub model: String,
    pub model_sha256: String,
    pub precision: String,
    pub scenario: String,
    pub threads: usize,
    pub state: String,
    /// The engine that ran it (`bundled` in runs from before engines were an axis).
    #[serde(default = "bundled")]
    pub engine: String,
}

fn bundled() -> String {
    meltbench_protocol::agent::BUNDLED_ENGINE.to_string()
}
