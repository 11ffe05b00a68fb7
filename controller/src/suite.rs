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
//! devices: [local]              # device names from the inventory, or tag:<tag>; default [local]
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
use crate::yaml::{self, present, Field, Pos, Raw, Report};
use meltbench_reports::compare::GateConfig;
use meltbench_reports::metric::Metric;

pub use crate::yaml::{Diagnostic, Diagnostics as SuiteErrors};

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
/// `devices` (or, without one, [`Inventory::default_local`]). All problems of both files come
/// back together; their `Display` is one `file:line:column: message` per line.
pub fn validate_suite_file(
    path: &Path,
    devices: Option<&Path>,
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
    match inventory {
        Ok(inv) => parse_suite(path, &text, &inv),
        Err(mut errors) => {
            // Still report the suite's own problems; device names cannot be checked.
            if let Err(e) = check_suite(path, &text, None) {
                errors.extend(e);
            }
            Err(errors)
        }
    }
}

/// Validate suite `text` as if read from `path` (which names it in messages and anchors
/// `prompt_file` and model paths) against `inventory`.
pub fn parse_suite(
    path: &Path,
    text: &str,
    inventory: &Inventory,
) -> Result<ValidatedSuite, SuiteErrors> {
    check_suite(path, text, Some(inventory))
}

/// A suite that passed validation: every value is in range and every reference resolves.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidatedSuite {
    /// The suite's name (run directories are named after it).
    pub name: String,
    pub description: Option<String>,
    /// The file it was read from.
    pub path: PathBuf,
    /// Devices to run on, resolved from the inventory, in the suite's order, each once.
    pub devices: Vec<Device>,
    pub models: Vec<ModelRef>,
    pub precisions: Vec<Precision>,
    pub scenarios: Vec<Scenario>,
    /// `None`: the device's default.
    pub threads: Vec<Option<usize>>,
    pub states: Vec<State>,
    pub passes: usize,
    pub warmup: usize,
    pub sessions: usize,
    pub cold_start: usize,
    pub timeout_s: u64,
    pub state_timeout_s: u64,
    pub gate: GateSpec,
}

/// The suite's `gate:` section: budgets that differ from the defaults.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GateSpec {
    /// `None`: the metric is not gated (`off`).
    pub budgets: BTreeMap<Metric, Option<f64>>,
    pub noise_floor: Option<f64>,
}

impl GateSpec {
    /// The gate's configuration: defaults, then this section.
    pub fn apply(&self, config: &mut GateConfig) {
        for (m, b) in &self.budgets {
            match b {
                Some(b) => config.budgets.insert(*m, *b),
                None => config.budgets.remove(m),
            };
        }
        if let Some(n) = self.noise_floor {
            config.noise_floor = n;
        }
    }
}

/// A model as a suite names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelRef {
    /// A model in [`crate::models::REGISTRY`] (downloaded and verified on first use).
    Registry(String),
    /// A name recorded by `meltbench models pull --name` in the local cache.
    Cached(String),
    /// [`SYNTH_MODEL`]: generated by `meltbench-engine synth`.
    Synth,
    /// A `.gguf` file; relative paths in the suite are resolved against the suite's directory.
    File(PathBuf),
}

impl ModelRef {
    /// The model's name in cell ids and reports: the registry or cache name, `synth`, or the
    /// file name without `.gguf` (characters other than letters, digits, `.`, `_`, `-` become `_`).
    pub fn label(&self) -> String {
        match self {
            ModelRef::Registry(n) | ModelRef::Cached(n) => n.clone(),
            ModelRef::Synth => SYNTH_MODEL.into(),
            ModelRef::File(p) => {
                let stem = p
                    .file_stem()
                    .map(|s| s.to_string_lossy())
                    .unwrap_or_default();
                let label: String = stem
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                            c
                        } else {
                            '_'
                        }
                    })
                    .collect();
                if label.is_empty() {
                    "model".into()
                } else {
                    label
                }
            }
        }
    }

    /// What to hand `models::resolve_model` / `prepare::prepare`: a name, `synth`, or a path.
    pub fn source(&self) -> String {
        match self {
            ModelRef::Registry(n) | ModelRef::Cached(n) => n.clone(),
            ModelRef::Synth => SYNTH_MODEL.into(),
            ModelRef::File(p) => p.display().to_string(),
        }
    }
}

/// A weight type to benchmark the model in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Precision {
    /// The model file as it is, whatever its type (the default when `precisions` is omitted).
    Native,
    F32,
    F16,
    Q8_0,
    Q4_0,
    Q4_1,
}

impl Precision {
    /// The types a suite may list.
    pub const LISTABLE: [Precision; 5] = [
        Precision::F32,
        Precision::F16,
        Precision::Q8_0,
        Precision::Q4_0,
        Precision::Q4_1,
    ];

    /// Lower-case name as in suites and cell ids (`native`, `f32`, ..., `q4_1`); this is also
    /// what `prepare::prepare` and `meltbench-engine quantize --type` accept.
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Native => "native",
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Q8_0 => "q8_0",
            Precision::Q4_0 => "q4_0",
            Precision::Q4_1 => "q4_1",
        }
    }

    /// A listable precision by name, case-insensitively.
    pub fn parse(s: &str) -> Option<Precision> {
        Precision::LISTABLE
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One workload: what to prompt with and how many tokens to generate.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    pub name: String,
    /// The prompt text (a `prompt_file` is read at validation time) or a token count.
    pub prompt: Prompt,
    pub new_tokens: usize,
    /// Render the prompt as one user turn of the model's chat template (`chat: true`).
    pub chat: bool,
    /// Tokens in the KV cache before each pass's prompt (`depth: N`, default 0).
    pub depth: usize,
    /// The model labels this scenario runs on (`models:` in the scenario); `None` runs it on
    /// every model of the suite. A chat turn only makes sense for models with a template.
    pub models: Option<Vec<String>>,
}

impl Scenario {
    /// The scenario as cell ids and reports name it: `NAME`, then `+chat` when its prompt goes
    /// through the model's chat template and `@dN` when it runs at depth N, so a report shows
    /// both (names cannot contain `+` or `@`, so this never collides with another scenario).
    pub fn label(&self) -> String {
        let mut l = self.name.clone();
        if self.chat {
            l.push_str("+chat");
        }
        if self.depth > 0 {
            l.push_str(&format!("@d{}", self.depth));
        }
        l
    }
}

/// Thermal state a cell waits for before measuring (see DESIGN.md, "States").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Thermal {
    Cool,
    Warm,
    Hot,
    /// No gating: measure in whatever state the device is in.
    Any,
}

/// Battery handling of a cell (see DESIGN.md, "States").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Battery {
    /// Wait until the device runs on battery.
    Wait,
    /// Drain the battery to a level first.
    Drain,
    /// Android only: make the framework believe it is unplugged (labelled as simulated).
    Simulate,
}

/// A battery level a cell runs at, and how the agent gets there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BatteryState {
    /// Percent, 1..=100.
    pub level: u8,
    pub mode: Battery,
}

/// The device state a cell is measured in; the agent establishes it (or fails the cell saying
/// why) before the cell's first pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct State {
    pub thermal: Thermal,
    /// `None`: no battery requirement.
    pub battery: Option<BatteryState>,
}

impl State {
    /// `thermal: any` and no battery requirement: the default, and all that runs today.
    pub const ANY: State = State {
        thermal: Thermal::Any,
        battery: None,
    };
}

impl Thermal {
    pub const ALL: [Thermal; 4] = [Thermal::Cool, Thermal::Warm, Thermal::Hot, Thermal::Any];
    pub fn as_str(self) -> &'static str {
        match self {
            Thermal::Cool => "cool",
            Thermal::Warm => "warm",
            Thermal::Hot => "hot",
            Thermal::Any => "any",
        }
    }
}

impl Battery {
    pub const ALL: [Battery; 3] = [Battery::Wait, Battery::Drain, Battery::Simulate];
    pub fn as_str(self) -> &'static str {
        match self {
            Battery::Wait => "wait",
            Battery::Drain => "drain",
            Battery::Simulate => "simulate",
        }
    }
}

impl fmt::Display for State {
    /// The state as it appears in cell ids and in the agent job: `any`, `hot`,
    /// `cool+battery50-drain`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.thermal.as_str())?;
        if let Some(b) = self.battery {
            write!(f, "+battery{}-{}", b.level, b.mode.as_str())?;
        }
        Ok(())
    }
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
    /// The matrix in a deterministic order: models, then precisions, scenarios, threads and
    /// states, each in the order the suite lists them (the last varies fastest).
    pub fn cells(&self) -> Vec<SuiteCell> {
        let mut cells = Vec::new();
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
                            let t =
                                threads.map_or_else(|| "tdefault".to_string(), |n| format!("t{n}"));
                            let scenario_label = scenario.label();
                            cells.push(SuiteCell {
                                id: format!("{label}/{precision}/{scenario_label}/{t}/{state}"),
                                model: model.clone(),
                                precision,
                                scenario: scenario_label,
                                prompt: scenario.prompt.clone(),
                                new_tokens: scenario.new_tokens,
                                chat: scenario.chat,
                                depth: scenario.depth,
                                threads,
                                state,
                                passes: self.passes,
                                warmup: self.warmup,
                                sessions: self.sessions,
                                cold_start: self.cold_start,
                                timeout_s: self.timeout_s,
                                state_timeout_s: self.state_timeout_s,
                            });
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

/// Only the `gate:` section, for reading it back from a run's suite snapshot.
#[derive(Debug, Deserialize)]
struct GateOnly {
    #[serde(default, deserialize_with = "present")]
    gate: Field<BTreeMap<String, Spanned<Raw>>>,
}

/// The `gate:` section of a suite's text (as a run directory keeps it in `run.json`).
pub fn gate_spec(file: &Path, text: &str) -> Result<GateSpec, SuiteErrors> {
    let only: GateOnly = yaml::parse(file, text)?;
    let mut r = Report::new(file, text);
    let spec = check_gate(&mut r, only.gate.as_ref());
    if r.has_errors() {
        return Err(r.finish());
    }
    Ok(spec)
}

fn check_gate(r: &mut Report, gate: Option<&Spanned<BTreeMap<String, Spanned<Raw>>>>) -> GateSpec {
    let mut spec = GateSpec::default();
    let Some(gate) = gate else { return spec };
    for (key, value) in &gate.value {
        let metric = Metric::from_name(key);
        if metric.is_none() && key != "noise_floor" {
            let names: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
            r.on(
                value,
                format!(
                    "unknown gate key '{key}' (allowed: {}, noise_floor)",
                    names.join(", ")
                ),
            );
            continue;
        }
        let pct = match &value.value {
            Raw::Str(s) if s.trim() == "off" && metric.is_some() => {
                spec.budgets.insert(metric.unwrap(), None);
                continue;
            }
            Raw::Str(s) => s
                .trim()
                .strip_suffix('%')
                .and_then(|n| n.trim().parse::<f64>().ok())
                .filter(|p| p.is_finite() && *p >= 0.0 && *p < 1000.0),
            _ => None,
        };
        let Some(pct) = pct else {
            let off = if metric.is_some() { " or `off`" } else { "" };
            r.on(
                value,
                format!(
                    "gate {key} must be a percentage such as 10%{off}, got '{}'",
                    value.value
                ),
            );
            continue;
        };
        match metric {
            Some(m) => {
                spec.budgets.insert(m, Some(pct / 100.0));
            }
            None => spec.noise_floor = Some(pct / 100.0),
        }
    }
    spec
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelFile {
    #[serde(default, deserialize_with = "present")]
    name: Field<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    #[serde(default, deserialize_with = "present")]
    name: Field<String>,
    #[serde(default, deserialize_with = "present")]
    prompt: Field<String>,
    #[serde(default, deserialize_with = "present")]
    prompt_file: Field<String>,
    #[serde(default, deserialize_with = "present")]
    prompt_tokens: Field<Raw>,
    #[serde(default, deserialize_with = "present")]
    new_tokens: Field<Raw>,
    #[serde(default, deserialize_with = "present")]
    chat: Field<Raw>,
    #[serde(default, deserialize_with = "present")]
    depth: Field<Raw>,
    #[serde(default, deserialize_with = "present")]
    models: Field<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    #[serde(default, deserialize_with = "present")]
    thermal: Field<String>,
    /// Levels in percent; each makes its own state.
    #[serde(default, deserialize_with = "present")]
    battery: Field<Vec<Spanned<Raw>>>,
    #[serde(default, deserialize_with = "present")]
    battery_mode: Field<String>,
}

fn check_suite(
    path: &Path,
    text: &str,
    inventory: Option<&Inventory>,
) -> Result<ValidatedSuite, SuiteErrors> {
    let file: SuiteFile = yaml::parse(path, text)?;
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
    let devices = inventory
        .map(|inv| check_devices(&mut r, file.devices.as_ref(), inv))
        .unwrap_or_default();
    let models = check_models(&mut r, file.models.as_ref(), base);
    let precisions = check_precisions(&mut r, file.precisions.as_ref());
    let model_labels: Vec<String> = models.iter().map(ModelRef::label).collect();
    let scenarios = check_scenarios(&mut r, file.scenarios.as_ref(), base, &model_labels);
    let threads = check_threads(&mut r, file.threads.as_ref());
    let states = check_states(&mut r, file.states.as_ref());

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

fn check_devices(
    r: &mut Report,
    list: Option<&Spanned<Vec<Spanned<String>>>>,
    inv: &Inventory,
) -> Vec<Device> {
    let where_ = inv.path.as_ref().map_or_else(
        || "the inventory (no devices file was given)".to_string(),
        |p| p.display().to_string(),
    );
    let known = match &inv.path {
        Some(p) => format!(
            "devices in {}: {}; or tag:<tag>",
            p.display(),
            inv.names().join(", ")
        ),
        None => format!(
            "without a devices file only {} exists; pass one with --devices",
            inv.names()
                .iter()
                .map(|n| format!("'{n}'"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut out: Vec<Device> = Vec::new();
    let Some(list) = list else {
        match inv.get(devices::LOCAL) {
            Some(d) => out.push(d.clone()),
            None => r.at(
                Pos::START,
                format!(
                    "the suite runs on 'local' by default, but {where_} has no device named 'local' \
                     (list devices in the suite, e.g. `devices: [{}]`)",
                    inv.names().first().copied().unwrap_or("NAME")
                ),
            ),
        }
        return out;
    };
    if list.value.is_empty() {
        r.on(
            list,
            format!("devices is empty: name at least one ({known}), or omit it to run on 'local'"),
        );
    }
    let mut seen: BTreeMap<&str, Pos> = BTreeMap::new();
    for entry in &list.value {
        let name = entry.value.as_str();
        if let Some(first) = seen.get(name) {
            r.on(
                entry,
                format!(
                    "device '{name}' is listed twice (first at line {})",
                    first.line
                ),
            );
            continue;
        }
        seen.insert(name, Pos::of(entry));
        let picked: Vec<&Device> = if let Some(tag) = name.strip_prefix("tag:") {
            let tagged: Vec<&Device> = inv.tagged(tag).collect();
            if tagged.is_empty() {
                r.on(entry, format!("no device in {where_} has tag '{tag}'"));
            }
            tagged
        } else if let Some(d) = inv.get(name) {
            vec![d]
        } else {
            r.on(entry, format!("unknown device '{name}' ({known})"));
            Vec::new()
        };
        for d in picked {
            if !out.iter().any(|o| o.name == d.name) {
                out.push(d.clone());
            }
        }
    }
    out
}

fn check_models(
    r: &mut Report,
    list: Option<&Spanned<Vec<Spanned<ModelFile>>>>,
    base: &Path,
) -> Vec<ModelRef> {
    let Some(list) = list else {
        r.at(
            Pos::START,
            "missing key 'models' (e.g. `models: [{name: smollm2-135m}]`)",
        );
        return Vec::new();
    };
    if list.value.is_empty() {
        r.on(
            list,
            "models is empty: list at least one model (e.g. `- name: smollm2-135m`)",
        );
    }
    let mut out = Vec::new();
    let mut labels: BTreeMap<String, Pos> = BTreeMap::new();
    for entry in &list.value {
        let Some(name) = &entry.value.name else {
            r.on(entry, "model has no 'name' (a registry name such as smollm2-135m, synth, or a path to a .gguf file)");
            continue;
        };
        let Some(model) = check_model(r, name, base) else {
            continue;
        };
        let label = model.label();
        if let Some(first) = labels.get(&label) {
            r.on(
                name,
                format!(
                    "model '{}' has the same name in cell ids, '{label}', as the model at line {}",
                    name.value, first.line
                ),
            );
            continue;
        }
        labels.insert(label, Pos::of(name));
        out.push(model);
    }
    out
}

fn check_model(r: &mut Report, name: &Spanned<String>, base: &Path) -> Option<ModelRef> {
    let n = name.value.trim();
    if n == SYNTH_MODEL {
        return Some(ModelRef::Synth);
    }
    if REGISTRY.iter().any(|m| m.name == n) {
        return Some(ModelRef::Registry(n.to_string()));
    }
    if n.contains('/') || n.contains('\\') || n.to_ascii_lowercase().ends_with(".gguf") {
        let written = Path::new(n);
        let path = if written.is_absolute() {
            written.to_path_buf()
        } else {
            base.join(written)
        };
        if path.is_file() {
            return Some(ModelRef::File(path));
        }
        r.on(
            name,
            format!(
                "model file '{n}' does not exist (looked for {}; paths are relative to the suite file)",
                path.display()
            ),
        );
        return None;
    }
    if crate::cache::is_valid_name(n)
        && matches!(
            crate::cache::ModelCache::from_env().map(|c| c.lookup_name(n)),
            Ok(Ok(Some(_)))
        )
    {
        return Some(ModelRef::Cached(n.to_string()));
    }
    let registry: Vec<&str> = REGISTRY.iter().map(|m| m.name).collect();
    r.on(
        name,
        format!(
            "unknown model '{n}' (registry: {}; also allowed: {SYNTH_MODEL}, a name given to \
             `meltbench models pull --name`, or a path to a .gguf file)",
            registry.join(", ")
        ),
    );
    None
}

fn listable() -> String {
    Precision::LISTABLE.map(|p| p.as_str()).join(", ")
}

fn check_precisions(
    r: &mut Report,
    list: Option<&Spanned<Vec<Spanned<String>>>>,
) -> Vec<Precision> {
    let Some(list) = list else {
        return vec![Precision::Native];
    };
    if list.value.is_empty() {
        r.on(
            list,
            format!(
                "precisions is empty: list some of {} or omit it to use the model's own type",
                listable()
            ),
        );
    }
    let mut out = Vec::new();
    for p in &list.value {
        match Precision::parse(p.value.trim()) {
            Some(prec) if out.contains(&prec) => {
                r.on(p, format!("precision '{}' is listed twice", p.value));
            }
            Some(prec) => out.push(prec),
            None => r.on(
                p,
                format!("unknown precision '{}' (allowed: {})", p.value, listable()),
            ),
        }
    }
    out
}

fn check_scenarios(
    r: &mut Report,
    list: Option<&Spanned<Vec<Spanned<ScenarioFile>>>>,
    base: &Path,
    model_labels: &[String],
) -> Vec<Scenario> {
    let Some(list) = list else {
        r.at(
            Pos::START,
            "missing key 'scenarios' (e.g. `scenarios: [{name: chat, prompt: \"Hello\", new_tokens: 32}]`)",
        );
        return Vec::new();
    };
    if list.value.is_empty() {
        r.on(list, "scenarios is empty: list at least one scenario");
    }
    let mut out = Vec::new();
    let mut names: BTreeMap<String, Pos> = BTreeMap::new();
    for entry in &list.value {
        let s = &entry.value;
        let name = match &s.name {
            None => {
                r.on(entry, "scenario has no 'name' (e.g. `name: short-chat`)");
                None
            }
            Some(n) if !yaml::is_simple_name(&n.value) => {
                r.on(
                    n,
                    format!(
                        "invalid scenario name '{}' (allowed: {})",
                        n.value,
                        yaml::SIMPLE_NAME_RULE
                    ),
                );
                None
            }
            Some(n) => {
                if let Some(first) = names.get(&n.value) {
                    r.on(
                        n,
                        format!("duplicate scenario name '{}' (first used at line {}); scenario names must be unique", n.value, first.line),
                    );
                    None
                } else {
                    names.insert(n.value.clone(), Pos::of(n));
                    Some(n.value.clone())
                }
            }
        };
        let what = name
            .as_deref()
            .map_or_else(|| "scenario".to_string(), |n| format!("scenario '{n}'"));
        let prompt = check_prompt(r, entry, &what, base);
        let new_tokens = match &s.new_tokens {
            None => {
                r.on(entry, format!("{what} has no 'new_tokens' (how many tokens to generate per pass, e.g. `new_tokens: 32`)"));
                None
            }
            Some(v) => r.whole("new_tokens", v, 1, MAX_TOKENS),
        };
        let chat = match &s.chat {
            None => Some(false),
            Some(v) => match v.value {
                Raw::Bool(b) => Some(b),
                _ => {
                    let shown = match r.source(v) {
                        t if t.is_empty() => format!("'{}'", v.value),
                        t => format!("'{t}'"),
                    };
                    r.on(
                        v,
                        format!(
                            "chat must be true or false (true sends the prompt as one user turn \
                             of the model's chat template), got {shown}"
                        ),
                    );
                    None
                }
            },
        };
        let depth = match &s.depth {
            None => Some(0),
            Some(v) => r.whole("depth", v, 0, MAX_TOKENS),
        };
        let models = s.models.as_ref().map(|list| {
            if list.value.is_empty() {
                r.on(
                    list,
                    format!("{what} has an empty 'models' list: name some of the suite's models ({}) or drop the key", model_labels.join(", ")),
                );
            }
            for m in &list.value {
                if !model_labels.contains(&m.value) {
                    r.on(
                        m,
                        format!(
                            "{what} names model '{}', which the suite does not list (its models: {})",
                            m.value,
                            model_labels.join(", ")
                        ),
                    );
                }
            }
            list.value.iter().map(|m| m.value.clone()).collect::<Vec<_>>()
        });
        if let (Some(name), Some(prompt), Some(new_tokens), Some(chat), Some(depth)) =
            (name, prompt, new_tokens, chat, depth)
        {
            out.push(Scenario {
                name,
                prompt,
                new_tokens: new_tokens as usize,
                chat,
                depth: depth as usize,
                models,
            });
        }
    }
    out
}

fn check_prompt(
    r: &mut Report,
    entry: &Spanned<ScenarioFile>,
    what: &str,
    base: &Path,
) -> Option<Prompt> {
    let s = &entry.value;
    let given: Vec<(&str, Pos)> = [
        ("prompt", s.prompt.as_ref().map(Pos::of)),
        ("prompt_file", s.prompt_file.as_ref().map(Pos::of)),
        ("prompt_tokens", s.prompt_tokens.as_ref().map(Pos::of)),
    ]
    .into_iter()
    .filter_map(|(k, p)| p.map(|p| (k, p)))
    .collect();
    match given.as_slice() {
        [] => {
            r.on(
                entry,
                format!(
                    "{what} has no prompt (give exactly one of prompt, prompt_file, prompt_tokens)"
                ),
            );
            return None;
        }
        [_] => {}
        [(first, _), rest @ ..] => {
            for (key, pos) in rest {
                r.at(*pos, format!("{what} has both {first} and {key}; give exactly one of prompt, prompt_file, prompt_tokens"));
            }
            return None;
        }
    }
    if let Some(p) = &s.prompt {
        if p.value.trim().is_empty() {
            r.on(p, format!("{what} has an empty prompt"));
            return None;
        }
        return Some(Prompt::Text(p.value.clone()));
    }
    if let Some(f) = &s.prompt_file {
        let written = Path::new(&f.value);
        let path = if written.is_absolute() {
            written.to_path_buf()
        } else {
            base.join(written)
        };
        return match std::fs::read(&path) {
            Err(e) => {
                r.on(
                    f,
                    format!(
                        "cannot read prompt_file '{}' ({}: {e}; paths are relative to the suite file)",
                        f.value,
                        path.display()
                    ),
                );
                None
            }
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) if text.trim().is_empty() => {
                    r.on(f, format!("prompt_file '{}' is empty", f.value));
                    None
                }
                Ok(text) => Some(Prompt::Text(text)),
                Err(_) => {
                    r.on(f, format!("prompt_file '{}' is not UTF-8 text", f.value));
                    None
                }
            },
        };
    }
    let t = s.prompt_tokens.as_ref()?;
    r.whole("prompt_tokens", t, 1, MAX_TOKENS)
        .map(|n| Prompt::Tokens(n as usize))
}

fn check_threads(r: &mut Report, list: Option<&Spanned<Vec<Spanned<Raw>>>>) -> Vec<Option<usize>> {
    let Some(list) = list else {
        return vec![None];
    };
    if list.value.is_empty() {
        r.on(list, "threads is empty: list thread counts (e.g. [1, 2, 4]) or omit it to use the device's default");
    }
    let mut out = Vec::new();
    for t in &list.value {
        if let Some(n) = r.whole("threads", t, 1, MAX_THREADS) {
            let n = Some(n as usize);
            if out.contains(&n) {
                r.on(t, format!("thread count {} is listed twice", t.value));
            } else {
                out.push(n);
            }
        }
    }
    out
}

fn check_states(r: &mut Report, list: Option<&Spanned<Vec<Spanned<StateFile>>>>) -> Vec<State> {
    let Some(list) = list else {
        return vec![State::ANY];
    };
    if list.value.is_empty() {
        r.on(
            list,
            "states is empty: list states (e.g. [{thermal: any}]) or omit it",
        );
    }
    let mut out: Vec<State> = Vec::new();
    for entry in &list.value {
        let s = &entry.value;
        let thermal = match &s.thermal {
            None => Some(Thermal::Any),
            Some(t) => {
                let found = Thermal::ALL
                    .into_iter()
                    .find(|x| x.as_str() == t.value.trim());
                if found.is_none() {
                    let allowed = Thermal::ALL.map(Thermal::as_str).join(", ");
                    r.on(
                        t,
                        format!("unknown thermal state '{}' (allowed: {allowed})", t.value),
                    );
                }
                found
            }
        };
        let mode = match &s.battery_mode {
            None => Some(Battery::Wait),
            Some(m) => {
                let found = Battery::ALL
                    .into_iter()
                    .find(|x| x.as_str() == m.value.trim());
                if found.is_none() {
                    let allowed = Battery::ALL.map(Battery::as_str).join(", ");
                    r.on(
                        m,
                        format!("unknown battery_mode '{}' (allowed: {allowed})", m.value),
                    );
                }
                if s.battery.is_none() {
                    r.on(
                        m,
                        "battery_mode needs battery levels beside it (e.g. battery: [100, 50, 20])",
                    );
                }
                found
            }
        };
        // Levels are checked whatever the mode, so one pass over the file reports everything.
        let levels: Option<Vec<u8>> = s.battery.as_ref().map(|levels| {
            if levels.value.is_empty() {
                r.on(
                    levels,
                    "battery is empty: list levels in percent (e.g. [100, 50, 20]) or omit it",
                );
            }
            levels
                .value
                .iter()
                .filter_map(|l| r.whole("battery", l, 1, 100))
                .map(|l| l as u8)
                .collect()
        });
        let batteries: Vec<Option<BatteryState>> = match (levels, mode) {
            (None, _) => vec![None],
            (Some(levels), Some(mode)) => levels
                .into_iter()
                .map(|level| Some(BatteryState { level, mode }))
                .collect(),
            (Some(_), None) => Vec::new(),
        };
        let Some(thermal) = thermal else { continue };
        for battery in batteries {
            let state = State { thermal, battery };
            if out.contains(&state) {
                r.on(entry, format!("state '{state}' is listed twice"));
            } else {
                out.push(state);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> ValidatedSuite {
        parse_suite(Path::new("s.yaml"), text, &Inventory::default_local())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn err(text: &str) -> String {
        parse_suite(Path::new("s.yaml"), text, &Inventory::default_local())
            .unwrap_err()
            .to_string()
    }

    const MINIMAL: &str =
        "models: [{name: synth}]\nscenarios: [{name: a, prompt_tokens: 4, new_tokens: 2}]\n";

    #[test]
    fn defaults_fill_a_minimal_suite() {
        let s = ok(MINIMAL);
        assert_eq!(s.name, "s");
        assert_eq!(s.devices.len(), 1);
        assert_eq!(s.precisions, [Precision::Native]);
        assert_eq!(s.threads, [None]);
        assert_eq!(s.states, [State::ANY]);
        assert_eq!(
            (s.passes, s.warmup, s.cold_start, s.timeout_s),
            (100, 10, 5, 1800)
        );
        let cells = s.cells();
        assert_eq!(cells.len(), 1);
        assert_eq!(cells[0].id, "synth/native/a/tdefault/any");
        assert_eq!(cells[0].prompt, Prompt::Tokens(4));
    }

    #[test]
    fn depth_fills_the_cache_and_names_the_cell() {
        let s = ok("models: [{name: synth}]\n\
                    scenarios: [{name: a, prompt_tokens: 4, new_tokens: 2, depth: 4096}, {name: b, prompt: hi, new_tokens: 2, chat: true, depth: 16}, {name: c, prompt: hi, new_tokens: 2, depth: 0}]\n");
        let cells = s.cells();
        let got: Vec<(&str, usize)> = cells.iter().map(|c| (c.id.as_str(), c.depth)).collect();
        assert_eq!(
            got,
            [
                ("synth/native/a@d4096/tdefault/any", 4096),
                ("synth/native/b+chat@d16/tdefault/any", 16),
                ("synth/native/c/tdefault/any", 0)
            ]
        );
        let e = err("models: [{name: synth}]\n\
                     scenarios: [{name: a, prompt: hi, new_tokens: 2, depth: -1}, {name: b, prompt: hi, new_tokens: 2, depth: deep}]\n");
        assert!(
            e.contains("s.yaml:2:57: depth must be a whole number from 0 to 1000000, got '-1'"),
            "{e}"
        );
        assert!(
            e.contains("depth must be a whole number from 0 to 1000000, got 'deep'"),
            "{e}"
        );
    }

    #[test]
    fn a_scenario_can_run_on_some_models_only() {
        let s = ok("models: [{name: synth}, {name: smollm2-135m}]\n\
                    scenarios: [{name: a, prompt: hi, new_tokens: 2}, {name: b, prompt: hi, new_tokens: 2, chat: true, models: [smollm2-135m]}]\n");
        let ids: Vec<String> = s.cells().into_iter().map(|c| c.id).collect();
        assert_eq!(
            ids,
            [
                "synth/native/a/tdefault/any",
                "smollm2-135m/native/a/tdefault/any",
                "smollm2-135m/native/b+chat/tdefault/any"
            ]
        );
        let e = err("models: [{name: synth}]\n\
                     scenarios: [{name: a, prompt: hi, new_tokens: 2, models: [gemma3-270m]}]\n");
        assert!(
            e.contains("s.yaml:2:59: scenario 'a' names model 'gemma3-270m', which the suite does not list (its models: synth)"),
            "{e}"
        );
    }

    #[test]
    fn cells_nest_in_a_fixed_order() {
        let s = ok("models: [{name: synth}, {name: smollm2-135m}]\n\
                    precisions: [q4_0, f16]\n\
                    scenarios: [{name: a, prompt: hi, new_tokens: 2}, {name: b, prompt_tokens: 3, new_tokens: 1}]\n\
                    threads: [1, 4]\n\
                    states: [{thermal: any}, {thermal: hot, battery: [50], battery_mode: drain}]\n");
        let ids: Vec<String> = s.cells().into_iter().map(|c| c.id).collect();
        assert_eq!(ids.len(), 2 * 2 * 2 * 2 * 2);
        assert_eq!(ids[0], "synth/q4_0/a/t1/any");
        assert_eq!(ids[1], "synth/q4_0/a/t1/hot+battery50-drain");
        assert_eq!(ids[2], "synth/q4_0/a/t4/any");
        assert_eq!(ids[31], "smollm2-135m/f16/b/t4/hot+battery50-drain");
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ids.len());
    }

    #[test]
    fn battery_levels_expand_into_states_and_bad_ones_are_located() {
        let s = ok("models: [{name: synth}]\n\
                    scenarios: [{name: a, prompt: hi, new_tokens: 2}]\n\
                    states: [{thermal: cool, battery: [100, 50, 20], battery_mode: simulate}]\n");
        let states: Vec<String> = s.states.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            states,
            [
                "cool+battery100-simulate",
                "cool+battery50-simulate",
                "cool+battery20-simulate"
            ]
        );
        let s = ok("models: [{name: synth}]\n\
                    scenarios: [{name: a, prompt: hi, new_tokens: 2}]\n\
                    states: [{battery: [30]}]\n");
        assert_eq!(s.states[0].to_string(), "any+battery30-wait");
        let e = err("models: [{name: synth}]\n\
                     scenarios: [{name: a, prompt: hi, new_tokens: 2}]\n\
                     states: [{battery: [0, 50], battery_mode: drian}, {battery_mode: drain}]\n");
        assert!(
            e.contains("s.yaml:3:21: battery must be a whole number from 1 to 100, got '0'"),
            "{e}"
        );
        assert!(e.contains("unknown battery_mode 'drian'"), "{e}");
        assert!(e.contains("battery_mode needs battery levels"), "{e}");
    }

    #[test]
    fn all_problems_are_reported_in_file_order() {
        let e = err("models: [{name: synth}]\n\
                     precisions: [q5_9]\n\
                     scenarios: [{name: a, new_tokens: 0}]\n\
                     passes: 0\n");
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(lines.len(), 4, "{e}");
        assert_eq!(
            lines[0],
            "s.yaml:2:14: unknown precision 'q5_9' (allowed: f32, f16, q8_0, q4_0, q4_1)"
        );
        assert!(
            lines[1].starts_with("s.yaml:3:13: scenario 'a' has no prompt"),
            "{e}"
        );
        assert_eq!(
            lines[2],
            "s.yaml:3:35: new_tokens must be a whole number from 1 to 1000000, got '0'"
        );
        assert_eq!(
            lines[3],
            "s.yaml:4:9: passes must be a whole number from 1 to 1000000, got '0'"
        );
    }

    #[test]
    fn devices_resolve_by_name_and_tag() {
        let inv = devices::parse_inventory(
            Path::new("d.yaml"),
            "devices:\n- {name: local, transport: local}\n- {name: p1, transport: adb, serial: x, tags: [phone]}\n- {name: p2, transport: adb, serial: y, tags: [phone]}\n",
        )
        .unwrap();
        let text = format!("devices: [local, tag:phone, p1]\n{MINIMAL}");
        let s = parse_suite(Path::new("s.yaml"), &text, &inv).unwrap();
        let names: Vec<&str> = s.devices.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["local", "p1", "p2"]);
        let text = format!("devices: [tag:board]\n{MINIMAL}");
        let e = parse_suite(Path::new("s.yaml"), &text, &inv)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "s.yaml:1:11: no device in d.yaml has tag 'board'");
    }
}
