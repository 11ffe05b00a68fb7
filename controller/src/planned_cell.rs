//! One cell of the suite matrix as `meltbench run` plans it: built by the CLI from the suite,
//! read by the run, the scheduler and each device's runner. Its own room, so that the device
//! runner does not import the run that drives it.

use meltbench_protocol::engine::Prompt;

/// One cell of the suite matrix, before it is placed on a device.
#[derive(Clone, Debug)]
pub struct PlannedCell {
    /// Stable key, `model/precision/scenario/t<threads>/state`.
    pub id: String,
    /// The model's name in ids and reports.
    pub model: String,
    /// What [`crate::prepare::prepare`] resolves: a registry or cached name, `synth`, or a path.
    pub model_source: String,
    pub precision: String,
    pub scenario: String,
    pub prompt: Prompt,
    pub new_tokens: usize,
    /// The engine renders the prompt with the model's chat template.
    pub chat: bool,
    /// Tokens in the KV cache before each pass's prompt (`depth:`).
    pub depth: usize,
    /// `None`: the device's default (its performance cores).
    pub threads: Option<usize>,
    pub state: String,
    pub passes: usize,
    pub warmup: usize,
    pub sessions: usize,
    pub cold_start: usize,
    pub timeout_s: u64,
    pub state_timeout_s: u64,
}
