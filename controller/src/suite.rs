//! Benchmark suites: the YAML files in `suites/`, parsed and validated with positions.
//!
//! A suite says *what* to measure; the device inventory ([`crate::devices`]) says *where*.
//! [`validate_suite_file`] checks both and returns a [`ValidatedSuite`], whose
//! [`cells`](ValidatedSuite::cells) are the benchmark matrix
//! models x precisions x scenarios x threads x states, in that nesting order.
//!
//! ```yaml
//! name: quickstart              # optional; default: the file name without .yaml
//! description: a first look     # optional free text, shown in reports
//! devices: [local]              # device names from the inventory, or tag:<tag>; default: every
//!                               # device of the inventory; `--only`/`--tags` replace this list
//! models:
//!   - name: smollm2-135m        # registry name, `synth`, a name pulled with --name, or a .gguf path
//! precisions: [q4_1]            # f32 f16 q8_0 q4_0 q4_1; default: the model file's own type
//! scenarios:
//!   - name: short-chat
//!     prompt: "Explain what a thermal zone is."   # exactly one of prompt | prompt_file | prompt_tokens
//!     new_tokens: 32
//!     chat: true                # optional, default false: send the prompt as one user turn of the
//!                               # model's own chat template (tokenizer.chat_template), as apps do
//!     models: [smollm2-135m]    # optional: run this scenario on these of the suite's models only
//!     depth: 4096               # optional, default 0: tokens put in the KV cache (unmeasured) before
//!                               # each pass's prompt, as llama-bench -d; the scenario is NAME@d4096
//! threads: [2]                  # default: the device's performance cores
//! engines:                     # default [{name: bundled}]; several make one more axis, and their
//!   - name: bundled             # sessions alternate on the device (A B B A ...) for `gate
//!   - name: baseline            # --baseline-engine`; `command:` a program here that speaks the
//!     command: ../old/meltbench-engine   # bench contract (docs/engine-contract.md), pushed and
//!                               # verified like the bundle; `device_command:` a path on the device
//!   - name: server              # an OpenAI-compatible server the device reaches (plain HTTP),
//!     openai: {url: "http://127.0.0.1:8080/v1", model: smollm2, memory_of: llama-server}
//!                               # measured by the agent's openai adapter; memory_of: the server's
//!                               # process name or pid on the device, for peak memory
//!   - name: llama               # llama.cpp's own tools, run by the agent's llama.cpp adapter:
//!     llama.cpp: {dir: ../llama.cpp/build/bin, args: [-ngl, 99]}  # dir: a build here (its
//!                               # tool and libraries pushed), or device_dir: /abs on the device;
//!                               # tool: llama-server (default where the build has it, every
//!                               # figure) | llama-bench (prefill and the decode as a whole)
//! states: [{thermal: any}]      # thermal: cool|warm|hot|any; battery: [100, 50, 20] levels with
//!                               # battery_mode: wait (default) | drain | simulate (Android only)
//! passes: 100                   # measured passes per cell, default 100
//! warmup: 10                    # unmeasured passes first, default 10
//! sessions: 5                   # fresh engine processes per cell, each running warmup + passes;
//!                               # the gate resamples sessions; default 1 (use >= 3 for gating)
//! cold_start: 5                 # fresh-process runs per cell, default 5; 0 disables
//! timeout_s: 1800               # per cell, default 1800
//! state_timeout_s: 900          # how long a cell may wait for its thermal state, default 900
//! gate:                         # budgets of `meltbench gate` (default 10% each), or `off`
//!   latency_p95: 10%            # latency_p95 latency_p99 ttft_p95 decode_p95 peak_rss
//!   decode_tokens_per_s: 5%     # decode_tokens_per_s prefill_tokens_per_s energy_per_token
//!   noise_floor: 2%             # changes below this are never "regressed" or "improved"
//!   size_budget: 100MB          # each model file at most this (default 500MB; `off`)
//!   memory_budget: 4GB          # each cell's peak RSS + 20% at most this (default 2GB; `off`)
//! ```
//!
//! Every problem is reported ripgrep style, `suites/x.yaml:7:14: unknown precision 'q5_9'
//! (allowed: f32, f16, q8_0, q4_0, q4_1)`, and all of them are reported at once.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use meltbench_protocol::engine::Prompt;
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::devices::{self, Device, Inventory};
use crate::models::REGISTRY;
use crate::selection::Selection;
use crate::yaml::shape::Shape;
use crate::yaml::{self, present, Field, Pos, Raw, Report};
use meltbench_reports::compare::GateConfig;
use meltbench_reports::metric::Metric;

mod axes;
mod engines;
mod gate;
mod llama_cpp;
mod models;
mod parts;
mod scenarios;
use axes::*;
use engines::*;
pub use engines::{EngineDef, EngineProgramRef, OpenAiEndpoint};
pub use gate::gate_spec;
use gate::*;
pub use llama_cpp::{LlamaCppTools, ToolsPlace, LLAMA_BENCH, LLAMA_SERVER};
use models::*;
pub use parts::*;
use scenarios::*;

pub use crate::yaml::{Diagnostic, Diagnostics as SuiteErrors};

/// A path as a suite writes it (a model file, a prompt file, an engine's program or build):
/// absolute, or relative to the suite file's directory `base`.
fn suite_relative(written: &str, base: &Path) -> PathBuf {
    let w = Path::new(written);
    if w.is_absolute() {
        w.to_path_buf()
    } else {
        base.join(w)
    }
}

/// The name a suite uses for the synthetic test model: a tiny llama model with random weights
/// that the runner makes with `meltbench-engine synth` (f32, seed 1) instead of downloading.
/// Fast and offline, for CI and smoke tests; its numbers say nothing about real models.
pub const SYNTH_MODEL: &str = "synth";

/// Defaults of the optional keys.
pub const DEFAULT_PASSES: usize = 100;
pub const DEFAULT_WARMUP: usize = 10;
pub const DEFAULT_SESSIONS: usize = 1;
pub const DEFAULT_COLD_START: usize = 5;
pub const DEFAULT_TIMEOUT_S: u64 = 1800;
/// How long a cell may wait for its thermal state (cool down, or heat until throttling).
pub const DEFAULT_STATE_TIMEOUT_S: u64 = 900;

/// Upper bounds that catch typos (an extra zero or three) before a run is started.
const MAX_PASSES: u64 = 1_000_000;
const MAX_WARMUP: u64 = 100_000;
const MAX_SESSIONS: u64 = 1000;
const MAX_COLD_START: u64 = 10_000;
const MAX_TOKENS: u64 = 1_000_000;
const MAX_THREADS: u64 = 1024;
const MAX_TIMEOUT_S: u64 = 7 * 24 * 3600;

/// Read, parse and validate a suite, checking its device names against the inventory in
/// `devices` (or, without one, [`Inventory::default_local`]). A non-empty `pick` (`--only`,
/// `--tags`) replaces the suite's `devices:`. All problems of both files come back together;
/// their `Display` is one `file:line:column: message` per line.
pub fn validate_suite_file(
    path: &Path,
    devices: Option<&Path>,
    pick: &Selection,
) -> Result<ValidatedSuite, SuiteErrors> {
    let inventory = match devices {
        Some(p) => devices::load_inventory(p),
        None => Ok(Inventory::default_local()),
    };
    let text = match yaml::read(path) {
        Ok(text) => text,
        Err(mut e) => {
            if let Err(d) = inventory {
                e.extend(d);
            }
            return Err(e);
        }
    };
    let (targets, mut errors) = match inventory {
        Ok(inv) if pick.is_empty() => return check_suite(path, &text, Targets::Suite(&inv)),
        Ok(inv) => match pick.pick(&inv) {
            Ok(picked) => return check_suite(path, &text, Targets::Picked(picked)),
            Err(message) => {
                let named = devices.unwrap_or(Path::new("the inventory (no --devices file)"));
                (Targets::Unknown, SuiteErrors::file(named, message))
            }
        },
        // Still report the suite's own problems; device names cannot be checked.
        Err(errors) => (Targets::Unknown, errors),
    };
    if let Err(e) = check_suite(path, &text, targets) {
        errors.extend(e);
    }
    Err(errors)
}

/// Validate suite `text` as if read from `path` (which names it in messages and anchors
/// `prompt_file` and model paths) against `inventory`.
pub fn parse_suite(
    path: &Path,
    text: &str,
    inventory: &Inventory,
) -> Result<ValidatedSuite, SuiteErrors> {
    check_suite(path, text, Targets::Suite(inventory))
}

/// Where a suite's devices come from.
enum Targets<'a> {
    /// The inventory could not be read or the selection failed: device names go unchecked.
    Unknown,
    /// The suite's `devices:` (every device of the inventory when absent).
    Suite(&'a Inventory),
    /// Picked on the command line; the suite's `devices:` is not consulted.
    Picked(Vec<Device>),
}

/// A suite that passed validation: every value is in range and every reference resolves.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidatedSuite {
    /// The suite's name (run directories are named after it).
    pub name: String,
    pub description: Option<String>,
    /// The file it was read from.
    pub path: PathBuf,
    /// Devices to run on, resolved from the inventory, in the suite's order, each once (or
    /// picked on the command line, in inventory order).
    pub devices: Vec<Device>,
    pub models: Vec<ModelRef>,
    pub precisions: Vec<Precision>,
    pub scenarios: Vec<Scenario>,
    /// `None`: the device's default.
    pub threads: Vec<Option<usize>>,
    pub states: Vec<State>,
    /// At least one; `[bundled]` when the suite says nothing.
    pub engines: Vec<EngineDef>,
    pub passes: usize,
    pub warmup: usize,
    pub sessions: usize,
    pub cold_start: usize,
    pub timeout_s: u64,
    pub state_timeout_s: u64,
    pub gate: GateSpec,
}

/// One point of the matrix, before it is placed on a device.
#[derive(Clone, Debug, PartialEq)]
pub struct SuiteCell {
    /// Stable key: `model/precision/scenario/t<threads>|tdefault/state`,
    /// e.g. `smollm2-135m/q4_1/short-chat/t2/any` (`.../short-chat+chat/...` for a chat
    /// scenario). Unique within a suite.
    pub id: String,
    pub model: ModelRef,
    pub precision: Precision,
    /// The scenario's [`Scenario::label`].
    pub scenario: String,
    pub prompt: Prompt,
    pub new_tokens: usize,
    /// The engine renders the prompt with the model's chat template.
    pub chat: bool,
    /// Tokens in the KV cache before each pass's prompt.
    pub depth: usize,
    /// `None`: the device's default.
    pub threads: Option<usize>,
    pub state: State,
    /// The engine's name ([`EngineDef::name`]).
    pub engine: String,
    /// With several engines: the cells of one comparison (all but the engine equal) share a
    /// group, and the agent alternates their sessions.
    pub interleave: Option<u32>,
    pub passes: usize,
    pub warmup: usize,
    pub sessions: usize,
    pub cold_start: usize,
    pub timeout_s: u64,
    /// How long the agent may take to bring the device into `state`.
    pub state_timeout_s: u64,
}

impl SuiteCell {
    /// The (model label, precision) pair a run prepares once, and sends to each device once.
    pub fn model_key(&self) -> (String, String) {
        (self.model.label(), self.precision.as_str().to_string())
    }
}

impl ValidatedSuite {
    /// The matrix in a deterministic order: models, then precisions, scenarios, threads,
    /// states and engines, each in the order the suite lists them (the last varies fastest).
    /// A cell of the bundled engine keeps the id it had before engines were an axis; another
    /// engine's cell adds `/<engine>`.
    pub fn cells(&self) -> Vec<SuiteCell> {
        let mut cells = Vec::new();
        let mut group = 0u32;
        for model in &self.models {
            let label = model.label();
            for &precision in &self.precisions {
                for scenario in &self.scenarios {
                    if scenario
                        .models
                        .as_ref()
                        .is_some_and(|only| !only.contains(&label))
                    {
                        continue;
                    }
                    for &threads in &self.threads {
                        for &state in &self.states {
                            group += 1;
                            for engine in &self.engines {
                                let t = threads
                                    .map_or_else(|| "tdefault".to_string(), |n| format!("t{n}"));
                                let scenario_label = scenario.label();
                                let mut id =
                                    format!("{label}/{precision}/{scenario_label}/{t}/{state}");
                                if engine.name != meltbench_protocol::agent::BUNDLED_ENGINE {
                                    id = format!("{id}/{}", engine.name);
                                }
                                cells.push(SuiteCell {
                                    id,
                                    model: model.clone(),
                                    precision,
                                    scenario: scenario_label,
                                    prompt: scenario.prompt.clone(),
                                    new_tokens: scenario.new_tokens,
                                    chat: scenario.chat,
                                    depth: scenario.depth,
                                    threads,
                                    state,
                                    engine: engine.name.clone(),
                                    interleave: (self.engines.len() > 1).then_some(group),
                                    passes: self.passes,
                                    warmup: self.warmup,
                                    sessions: self.sessions,
                                    cold_start: engine.cold_start_runs(self.cold_start),
                                    timeout_s: self.timeout_s,
                                    state_timeout_s: self.state_timeout_s,
                                });
                            }
                        }
                    }
                }
            }
        }
        cells
    }
}

// ---------------------------------------------------------------------------------------------
// The file as written. Every key is optional here so that a missing one is reported by the
// validator with a position and a hint, and `key:` with no value is reported rather than
// taken as "default".

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SuiteFile {
    #[serde(default, deserialize_with = "present")]
    name: Field<String>,
    #[serde(default, deserialize_with = "present")]
    description: Field<String>,
    #[serde(default, deserialize_with = "present")]
    devices: Field<Vec<Spanned<String>>>,
    #[serde(default, deserialize_with = "present")]
    models: Field<Vec<Spanned<ModelFile>>>,
    #[serde(default, deserialize_with = "present")]
    precisions: Field<Vec<Spanned<String>>>,
    #[serde(default, deserialize_with = "present")]
    scenarios: Field<Vec<Spanned<ScenarioFile>>>,
    #[serde(default, deserialize_with = "present")]
    threads: Field<Vec<Spanned<Raw>>>,
    #[serde(default, deserialize_with = "present")]
    states: Field<Vec<Spanned<StateFile>>>,
    #[serde(default, deserialize_with = "present")]
    engines: Field<Vec<Spanned<EngineFile>>>,
    #[serde(default, deserialize_with = "present")]
    passes: Field<Raw>,
    #[serde(default, deserialize_with = "present")]
    warmup: Field<Raw>,
    #[serde(default, deserialize_with = "present")]
    sessions: Field<Raw>,
    #[serde(default, deserialize_with = "present")]
    cold_start: Field<Raw>,
    #[serde(default, deserialize_with = "present")]
    timeout_s: Field<Raw>,
    #[serde(default, deserialize_with = "present")]
    state_timeout_s: Field<Raw>,
    #[serde(default, deserialize_with = "present")]
    gate: Field<BTreeMap<String, Spanned<Raw>>>,
}

/// The suite's shape, for reporting every unknown key and misshapen value at once.
fn suite_shape() -> Shape {
    let names = || Shape::list_of(Shape::Value);
    Shape::map_of::<SuiteFile>(vec![
        ("name", Shape::Value),
        ("description", Shape::Value),
        ("devices", names()),
        ("models", Shape::list_of(Shape::map_of::<ModelFile>(vec![]))),
        ("precisions", names()),
        (
            "scenarios",
            Shape::list_of(Shape::map_of::<ScenarioFile>(vec![("models", names())])),
        ),
        // Numbers are checked by the validator, which names the key and the range.
        ("threads", Shape::list_of(Shape::Any)),
        (
            "states",
            Shape::list_of(Shape::map_of::<StateFile>(vec![
                ("thermal", Shape::Value),
                ("battery", Shape::list_of(Shape::Any)),
                ("battery_mode", Shape::Value),
            ])),
        ),
        (
            "engines",
            Shape::list_of(Shape::map_of::<EngineFile>(vec![])),
        ),
    ])
}

fn check_suite(
    path: &Path,
    text: &str,
    targets: Targets<'_>,
) -> Result<ValidatedSuite, SuiteErrors> {
    let file: SuiteFile = yaml::parse_shaped(path, text, &suite_shape())?;
    let mut r = Report::new(path, text);
    let base = path.parent().unwrap_or(Path::new(""));

    let name = match &file.name {
        Some(n) if yaml::is_simple_name(&n.value) => n.value.clone(),
        Some(n) => {
            r.on(
                n,
                format!(
                    "invalid suite name '{}' (allowed: {})",
                    n.value,
                    yaml::SIMPLE_NAME_RULE
                ),
            );
            String::new()
        }
        None => default_name(path),
    };
    let description = file.description.as_ref().map(|d| d.value.clone());
    let devices = match targets {
        Targets::Unknown => Vec::new(),
        Targets::Suite(inv) => check_devices(&mut r, file.devices.as_ref(), inv),
        Targets::Picked(picked) => picked,
    };
    let models = check_models(&mut r, file.models.as_ref(), base);
    let precisions = check_precisions(&mut r, file.precisions.as_ref());
    let contexts: Vec<ModelContext> = models
        .iter()
        .map(|m| ModelContext {
            label: m.label(),
            context_length: context_length(m),
        })
        .collect();
    let scenarios = check_scenarios(&mut r, file.scenarios.as_ref(), base, &contexts);
    let threads = check_threads(&mut r, file.threads.as_ref());
    let states = check_states(&mut r, file.states.as_ref());
    let engines = check_engines(&mut r, file.engines.as_ref(), base);

    let mut number = |key: &str, v: &Field<Raw>, min: u64, max: u64, default: u64| -> u64 {
        v.as_ref()
            .map_or(Some(default), |v| r.whole(key, v, min, max))
            .unwrap_or(default)
    };
    let passes = number("passes", &file.passes, 1, MAX_PASSES, DEFAULT_PASSES as u64) as usize;
    let warmup = number("warmup", &file.warmup, 0, MAX_WARMUP, DEFAULT_WARMUP as u64) as usize;
    let sessions = number(
        "sessions",
        &file.sessions,
        1,
        MAX_SESSIONS,
        DEFAULT_SESSIONS as u64,
    ) as usize;
    let cold_start = number(
        "cold_start",
        &file.cold_start,
        0,
        MAX_COLD_START,
        DEFAULT_COLD_START as u64,
    ) as usize;
    let timeout_s = number(
        "timeout_s",
        &file.timeout_s,
        1,
        MAX_TIMEOUT_S,
        DEFAULT_TIMEOUT_S,
    );
    let state_timeout_s = number(
        "state_timeout_s",
        &file.state_timeout_s,
        1,
        MAX_TIMEOUT_S,
        DEFAULT_STATE_TIMEOUT_S,
    );
    let gate = check_gate(&mut r, file.gate.as_ref());

    if r.has_errors() {
        return Err(r.finish());
    }
    Ok(ValidatedSuite {
        name,
        description,
        path: path.to_path_buf(),
        devices,
        models,
        precisions,
        scenarios,
        threads,
        states,
        engines,
        passes,
        warmup,
        sessions,
        cold_start,
        timeout_s,
        state_timeout_s,
        gate,
    })
}

/// The file stem, with characters that cannot appear in a run directory name replaced.
fn default_name(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy())
        .unwrap_or_default();
    let name: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    if yaml::is_simple_name(&name) {
        name
    } else {
        "suite".into()
    }
}

#[cfg(test)]
mod tests;
