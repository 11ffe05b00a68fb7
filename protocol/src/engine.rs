//! The engine's bench contract: the job it reads and the JSON lines it writes.
//!
//! `meltbench-engine bench MODEL --job FILE` reads an [`EngineJob`], writes one [`EngineRecord::Load`]
//! line, then one [`EngineRecord::Pass`] line per pass (warm-ups included, flagged), then
//! [`EngineRecord::Done`]. Times are nanoseconds; `*_mono_ns` stamps are CLOCK_MONOTONIC so the
//! agent can line them up with its telemetry samples.

use serde::{Deserialize, Serialize};

/// The English text a [`Prompt::Tokens`] prompt is cut from (repeated as often as needed), so
/// every program of the contract can send the same prompt the bundled engine sends.
pub const FILLER_TEXT: &str =
    "The history of computing is a story of machines that became smaller, faster and \
cheaper, until they fit in a pocket. Engineers measured every step: how long a program took to \
start, how much memory it held, how hot the chip became and how quickly the battery drained. ";

/// What to feed the model in each pass.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Prompt {
    /// A literal prompt.
    Text(String),
    /// A prompt of exactly this many tokens, made by tokenizing a fixed English text.
    Tokens(usize),
}

/// The work of one engine process: the file named by `--job`. Unknown keys are refused.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct EngineJob {
    /// The prompt every pass sends.
    pub prompt: Prompt,
    /// Tokens to generate per pass (the first comes from the prefill).
    pub n_gen: usize,
    /// Measured passes.
    pub passes: usize,
    /// Passes run first and reported with `warmup: true`, never counted.
    #[serde(default)]
    pub warmup: usize,
    /// Worker threads; default: the device's performance cores.
    #[serde(default)]
    pub threads: Option<usize>,
    /// Keep generating past end-of-generation tokens so every pass does the same work
    /// (default true, like llama-bench).
    #[serde(default = "yes")]
    pub ignore_eos: bool,
    /// 0 = greedy.
    #[serde(default)]
    pub temperature: f32,
    /// Sampling seed (only matters when `temperature` > 0).
    #[serde(default)]
    pub seed: u64,
    /// Kernel table to force (`scalar`, `avx2`, `avx512`, `neon`); default: the best one.
    #[serde(default)]
    pub kernels: Option<String>,
    /// Send the prompt as an app would: the text (for a token count, the English text cut to
    /// that many tokens) becomes one user turn of the model's own `tokenizer.chat_template`,
    /// with the generation prompt added, and the rendered text is what gets tokenized. A model
    /// without a template fails the job. Default false, so older jobs mean what they meant;
    /// left out when false, so a program written before it never meets the key unasked.
    #[serde(default, skip_serializing_if = "is_false")]
    pub chat: bool,
    /// Tokens (of the same English text) put in the KV cache before each pass's prompt and
    /// not measured, so decode is timed at that context depth (llama-bench `-d`). Left out
    /// when 0, so jobs without it read as before.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub depth: usize,
}

fn yes() -> bool {
    true
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// One line of `bench` output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
// One record lives at a time, per line read: boxing the load record would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum EngineRecord {
    /// The first line: what was loaded and how long loading took.
    Load(LoadRecord),
    /// One line per pass, warm-ups included (flagged).
    Pass(PassRecord),
    /// The last line, after every pass.
    Done(DoneRecord),
    /// A pass that did not complete (a dropped stream, a server error) while the program goes
    /// on with the next: the agent turns it into a warning naming the pass and the reason.
    Failed(FailedPass),
}

/// A pass the program gave up on, with why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct FailedPass {
    /// The position the pass would have had (see [`PassRecord::index`]).
    pub index: usize,
    /// Whether it was a warm-up.
    pub warmup: bool,
    /// What went wrong, for a person.
    pub reason: String,
}

/// How long loading took, phase by phase, and what was loaded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LoadRecord {
    /// The protocol version (`MAJOR.MINOR`, `meltbench_protocol::PROTOCOL_VERSION`) of the
    /// contract the engine writes.
    pub protocol: String,
    /// The engine's own version, free text.
    pub engine_version: String,
    /// The model path as given on the command line.
    pub model_path: String,
    /// Model architecture (GGUF `general.architecture`, e.g. `llama`, `qwen2`).
    pub architecture: String,
    /// Type of most weight matrices (`q4_1`, ...).
    pub dtype: String,
    /// Parameters: elements of all the model's tensors.
    pub n_params: u64,
    /// Size of the model file in bytes.
    pub file_bytes: u64,
    /// Bytes of weights one decode step reads.
    pub weight_bytes_per_token: u64,
    /// Worker threads the passes run on.
    pub threads: usize,
    /// The CPUs the threads may run on (`sched_getaffinity`, e.g. "0-3"), where the OS says.
    #[serde(default)]
    pub cpus: Option<String>,
    /// Where the threads were placed when the engine chose (on a big.LITTLE device, e.g.
    /// "performance cores 4-7 of 8 (by cpu_capacity)"); absent when the OS placed them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<String>,
    /// The compute kernels (or backend) the passes run on, e.g. `neon`.
    pub kernels: String,
    /// Opening and mapping the file, parsing the header.
    pub open_ns: u64,
    /// Building weight views (and reading the small tensors).
    pub weights_ns: u64,
    /// Reading the tokenizer (and, for a chat job, compiling the chat template).
    pub tokenizer_ns: u64,
    /// Allocating the KV cache and starting threads.
    pub session_ns: u64,
    /// CLOCK_MONOTONIC (ns) when loading began.
    pub start_mono_ns: u64,
    /// CLOCK_MONOTONIC (ns) when the model was ready for its first pass.
    pub end_mono_ns: u64,
    /// Set when the job's prompt went through the model's chat template (`EngineJob::chat`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat: Option<ChatPrompt>,
    /// Pass fields this program cannot measure and writes as 0, by their names in the pass
    /// record (`tokenize_ns`, `detokenize_ns`), and `peak_rss` when the program's own memory
    /// is not the model's and nothing stands in for it. Reports list them in their method
    /// section instead of taking the zeros as measured.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unmeasured: Vec<String>,
    /// Whose memory `rss_hwm_bytes` and `peak_rss_bytes` report when not this program's own
    /// process, e.g. `llama-server (pid 812)` for an adapter in front of a server. The agent
    /// then takes the reported figures instead of sampling the program.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_of: Option<String>,
}

/// The [`LoadRecord::unmeasured`] entry saying the program's memory is not the model's.
pub const UNMEASURED_PEAK_RSS: &str = "peak_rss";

/// How a chat job's prompt was templated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ChatPrompt {
    /// Tokens of the rendered prompt (template, user text, generation prompt, BOS where the
    /// model asks for one): the `prompt_tokens` every pass reports.
    pub prompt_tokens: usize,
    /// Tokens of the user text alone, without template or BOS.
    pub user_tokens: usize,
    /// SHA-256 of the template text, so two runs can tell whether they used the same one.
    pub template_sha256: String,
}

/// One pass: the prompt's tokenizing, prefill, decode steps and detokenizing, timed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PassRecord {
    /// 0-based position among the process's passes, warm-ups included (they come first).
    pub index: usize,
    /// A warm-up pass: reported, never counted as measured.
    pub warmup: bool,
    /// Tokens prefilled; for a chat job, of the templated prompt.
    pub prompt_tokens: usize,
    /// Tokens generated, the first one (picked by the prefill) included.
    pub gen_tokens: usize,
    /// Tokenizing the prompt; for a chat job, rendering the template and then tokenizing, as an
    /// app does for each request.
    pub tokenize_ns: u64,
    /// Prompt evaluation plus picking the first token: the time to first token after tokenizing.
    pub prefill_ns: u64,
    /// One entry per generated token after the first.
    pub decode_ns: Vec<u64>,
    /// The decode of the tokens after the first as a whole (1.5), from an engine that times it
    /// only as a whole (llama-bench): `decode_ns` is then empty, and the load record lists
    /// `decode_ns` as unmeasured. Never a sum of `decode_ns` written beside it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decode_total_ns: Option<u64>,
    /// Turning the generated tokens back into text.
    pub detokenize_ns: u64,
    /// `tokenize_ns + prefill_ns`: what a user waits for the first token.
    pub ttft_ns: u64,
    /// Why generation stopped: `length` or `eos`.
    pub stop: String,
    /// CLOCK_MONOTONIC (ns) when the pass began (before tokenizing).
    pub start_mono_ns: u64,
    /// CLOCK_MONOTONIC (ns) when the pass ended (after detokenizing).
    pub end_mono_ns: u64,
    /// The engine's own peak resident set (VmHWM) when the pass ended, read after
    /// `end_mono_ns`. The agent reads the same figure from outside, but a fast engine can exit
    /// before the agent gets to its pass lines, and then only this one is left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_hwm_bytes: Option<u64>,
    /// The prompt went through the model's chat template (see [`LoadRecord::chat`]).
    #[serde(default, skip_serializing_if = "is_false")]
    pub chat: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The end of the passes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DoneRecord {
    /// Measured passes run.
    pub passes: usize,
    /// Warm-up passes run.
    pub warmup: usize,
    /// Peak resident set of the engine process (VmHWM), when the OS reports it.
    pub peak_rss_bytes: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_defaults_and_unknown_keys() {
        let j: EngineJob =
            serde_json::from_str(r#"{"prompt":{"tokens":64},"n_gen":16,"passes":3}"#).unwrap();
        assert!(j.ignore_eos);
        assert_eq!(j.warmup, 0);
        // A job from an older controller has no `chat` and means a plain prompt.
        assert!(!j.chat);
        let j: EngineJob =
            serde_json::from_str(r#"{"prompt":{"text":"Hi"},"n_gen":1,"passes":1,"chat":true}"#)
                .unwrap();
        assert!(j.chat);
        assert!(serde_json::from_str::<EngineJob>(
            r#"{"prompt":{"tokens":1},"n_gen":1,"passes":1,"pases":2}"#
        )
        .is_err());
    }

    #[test]
    fn records_are_tagged() {
        let d = EngineRecord::Done(DoneRecord {
            passes: 1,
            warmup: 0,
            peak_rss_bytes: None,
        });
        let s = serde_json::to_string(&d).unwrap();
        assert!(s.starts_with(r#"{"type":"done""#), "{s}");
    }
}
