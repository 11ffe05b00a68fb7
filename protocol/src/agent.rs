//! What the controller sends the on-device agent ([`AgentJob`]) and what the agent sends back
//! ([`AgentEvent`], one JSON object per line on stdout and in the device's `events.jsonl`).

use crate::engine::{EngineJob, LoadRecord, PassRecord};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Everything one device runs for one run: cells in order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentJob {
    /// [`crate::PROTOCOL_VERSION`] of the controller that wrote the job.
    pub protocol: String,
    pub run_id: String,
    /// Path of the engine binary on the device.
    pub engine: String,
    /// A command the engine runs under (e.g. `["qemu-aarch64-static"]` for a cross-built bundle
    /// on a laptop without binfmt); empty: the engine runs directly.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub engine_wrapper: Vec<String>,
    /// The other engines a cell may name ([`Cell::engine`]), by name: programs that speak the
    /// bench contract (`docs/engine-contract.md`). `bundled` is always [`AgentJob::engine`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub engines: BTreeMap<String, EngineProgram>,
    /// Where the agent keeps `events.jsonl` and scratch files for this run.
    pub workdir: String,
    pub cells: Vec<Cell>,
}

/// The name of the engine in the bundle, the default of [`Cell::engine`].
pub const BUNDLED_ENGINE: &str = "bundled";

/// A program the agent starts as it starts the bundled engine:
/// `[WRAPPER...] PROGRAM [ARGS...] bench MODEL --job FILE`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineProgram {
    /// Its path on the device.
    pub program: String,
    /// Arguments before `bench` (an adapter's settings, e.g. `adapter openai --url ...`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Runs under [`AgentJob::engine_wrapper`] like the bundled engine: the agent's own
    /// adapters are built for the bundle's target, which the wrapper may emulate.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub wrapped: bool,
}

/// One point of the suite matrix on one device: model x precision x scenario x threads x state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cell {
    /// Stable key, e.g. `smollm2-135m/q4_1/short/t2/any`.
    pub id: String,
    pub model: String,
    /// Path of the model file (already in the requested precision) on the device.
    pub model_path: String,
    pub model_sha256: String,
    pub precision: String,
    pub scenario: String,
    pub threads: usize,
    /// Requested device state: `<thermal>` (`any`, `cool`, `warm` or `hot`) or
    /// `<thermal>+battery<LEVEL>-<MODE>` (LEVEL 1..=100, MODE `wait`, `drain` or `simulate`),
    /// e.g. `cool+battery20-wait`. An agent that cannot establish it fails the cell with a
    /// `CellError` rather than run it in another state.
    pub state: String,
    /// Longest wait (s) for the agent to establish `state` before the cell fails; 0 = the
    /// agent's default (900 s).
    #[serde(default)]
    pub state_timeout_s: u64,
    /// Which engine runs the cell: [`BUNDLED_ENGINE`] or a key of [`AgentJob::engines`].
    #[serde(default = "bundled", skip_serializing_if = "is_bundled")]
    pub engine: String,
    /// Cells of one comparison: adjacent cells with the same group share one device state and
    /// run their sessions alternately (A B B A ...), so drift falls on every engine alike.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interleave: Option<u32>,
    /// The bench job handed to the engine (passes, warm-up, prompt, tokens to generate).
    pub engine_job: EngineJob,
    /// Fresh-process runs measuring process start -> model ready -> first token.
    pub cold_start_runs: usize,
    /// How many times the measured passes run, each time in a fresh engine process (a session).
    /// The gate resamples sessions, because a fresh process can land in a different state
    /// (placement, frequency, memory layout) and passes within one process do not show that.
    #[serde(default = "one")]
    pub sessions: usize,
    /// The cell fails if the engine has not finished after this many seconds.
    pub timeout_s: u64,
    /// Resuming: cold starts `0..first_cold_start` and sessions `0..first_session` are already
    /// complete in the run directory, so the agent starts at these (session numbers in its
    /// events stay absolute, so the controller can tell a rerun session from the partial one).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub first_cold_start: usize,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub first_session: usize,
}

fn bundled() -> String {
    BUNDLED_ENGINE.to_string()
}

fn is_bundled(name: &String) -> bool {
    name == BUNDLED_ENGINE
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// One CPU cluster: cores sharing a maximum frequency (big.LITTLE phones have two or three).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cluster {
    pub cpus: Vec<usize>,
    pub max_khz: Option<u64>,
}

/// Whether a telemetry source can be read on this device.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourceStatus {
    pub name: String,
    /// `ok`, `unreadable` or `absent`.
    pub status: String,
    pub detail: Option<String>,
}

/// Identity and capabilities of a device, as `meltbench-agent probe` reports them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceInfo {
    pub hostname: String,
    /// `linux` or `android`.
    pub os: String,
    pub os_release: Option<String>,
    pub kernel: String,
    /// `uname -m`, e.g. `x86_64`, `aarch64`.
    pub arch: String,
    /// The ABI binaries must be built for, e.g. `arm64-v8a` on Android, the arch elsewhere.
    pub abi: String,
    pub cpu_model: Option<String>,
    pub cores: usize,
    pub clusters: Vec<Cluster>,
    pub ram_bytes: Option<u64>,
    pub root: bool,
    /// Whether the page cache can be dropped (for cold starts).
    pub can_drop_caches: bool,
    pub telemetry: Vec<SourceStatus>,
}

/// Conditions and cost of one pass, from the agent's telemetry sampler. Every field is absent
/// when no readable source provides it: never a silent zero.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PassTelemetry {
    pub temp_c_start: Option<f64>,
    pub temp_c_max: Option<f64>,
    pub temp_c_end: Option<f64>,
    pub power_w_avg: Option<f64>,
    pub power_w_peak: Option<f64>,
    /// Energy over the pass window (joules).
    pub energy_j: Option<f64>,
    /// `energy_j` divided by the pass's generated tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_j_per_token: Option<f64>,
    /// Why there is no energy although the device has a power source (e.g. the battery was
    /// charging, so battery-side power is not the device's power).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_invalid: Option<String>,
    /// Which sensors the power figures come from and how they are summed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_source: Option<String>,
    /// The power figures leave known consumers out (Raspberry Pi 5 PMIC rails).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_lower_bound: Option<bool>,
    /// Power samples inside the pass window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_samples: Option<usize>,
    /// Largest gap between the power samples used (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_max_gap_ms: Option<f64>,
    /// Few samples, a large gap, or a window not covered by samples at both ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low_confidence: Option<bool>,
    /// Highest Android thermal status (0 none .. 6 shutdown) during the pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thermal_status_max: Option<u8>,
    /// Raspberry Pi `get_throttled` bits seen during the pass (OR of the samples).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttled_bits: Option<u32>,
    /// Most frequency-limiting cooling devices (Linux `cooling_device*` of CPU/GPU frequency
    /// type) active at once during the pass; 0 = none throttling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttling_devices_max: Option<u32>,
    /// Device power at rest (W), measured just before the cell's passes: reported beside the
    /// pass's own power, never subtracted from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_power_w: Option<f64>,
    /// `energy_j` minus `idle_power_w` times the pass duration: the pass's energy above rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_j_above_idle: Option<f64>,
    /// Mean frequency during the pass of the CPU cluster that ran fastest (MHz).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_mhz_mean: Option<f64>,
    /// Set on every pass of a cell in a battery state: `true` when the level is Android's
    /// framework-only override (`dumpsys battery set level`, mode `simulate`: the fuel gauge,
    /// PMIC limits and voltage are the real ones), `false` for a real level (`wait`, `drain`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub battery_simulated: Option<bool>,
    /// Battery level (%) of the pass in a battery state: the simulated level when
    /// `battery_simulated`, else the last real reading at or before the pass's end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub battery_level: Option<u8>,
}

fn one() -> usize {
    1
}

/// One line from the agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AgentEvent {
    Hello {
        protocol: String,
        agent_version: String,
        run_id: String,
        device: DeviceInfo,
    },
    CellStart {
        cell: String,
        index: usize,
        of: usize,
    },
    /// The engine's load phases for this cell (one per session).
    Load {
        cell: String,
        #[serde(default)]
        session: usize,
        load: LoadRecord,
    },
    /// One engine pass (warm-ups included, flagged in `pass.warmup`).
    Pass {
        cell: String,
        /// Which engine process (0-based) of the cell ran this pass.
        #[serde(default)]
        session: usize,
        pass: PassRecord,
        /// The engine's VmHWM when the pass ended.
        rss_hwm_bytes: Option<u64>,
        /// What the device's sensors saw during the pass, when it has readable sensors.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        telemetry: Option<PassTelemetry>,
    },
    /// One fresh-process run: start -> model ready -> first token.
    ColdStart {
        cell: String,
        run: usize,
        /// Process spawn to the end of loading.
        load_ns: u64,
        /// Process spawn to the first token.
        first_token_ns: u64,
        /// Whether the model's pages were evicted from the page cache first, and how (or why not).
        page_cache_dropped: bool,
        page_cache_note: String,
    },
    CellEnd {
        cell: String,
        passes: usize,
        /// Peak resident set of the engine (VmHWM sampled while it ran).
        peak_rss_bytes: Option<u64>,
        /// `ru_maxrss` of the engine at exit.
        ru_maxrss_bytes: Option<u64>,
    },
    /// The cell's requested state was established; its passes follow. Sent only for states
    /// other than `any`: for `<thermal>+battery<L>-<mode>` once for the battery part (first)
    /// and once for the thermal part (unless `any`).
    StateReached {
        cell: String,
        /// `cool`, `warm` or `hot`; `battery<L>-<mode>` for the battery part.
        state: String,
        /// Seconds spent establishing it (cooling down or pre-heating).
        waited_s: f64,
        /// Primary temperature sensor (°C) when the state was reached.
        temp_c: Option<f64>,
        /// The idle reference (°C) `cool` and `warm` are measured against.
        reference_temp_c: Option<f64>,
        /// Android thermal status (0 none .. 6 shutdown) when the state was reached.
        thermal_status: Option<u8>,
        /// What tripped, for `hot` (e.g. `cooling device active (thermal:throttling_devices = 1)`).
        indicator: Option<String>,
        /// Battery level (%) reached, for a battery state (the simulated level for `simulate`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        battery_level: Option<u8>,
        /// `wait`, `drain` or `simulate`, for a battery state.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        battery_mode: Option<String>,
    },
    /// The cell could not finish; completed passes stay valid.
    CellError {
        cell: String,
        message: String,
        completed_passes: usize,
    },
    Warning {
        message: String,
    },
    Done {
        cells_ok: usize,
        cells_failed: usize,
    },
}

impl AgentEvent {
    /// The cell an event belongs to, if any.
    pub fn cell(&self) -> Option<&str> {
        match self {
            AgentEvent::CellStart { cell, .. }
            | AgentEvent::Load { cell, .. }
            | AgentEvent::Pass { cell, .. }
            | AgentEvent::ColdStart { cell, .. }
            | AgentEvent::StateReached { cell, .. }
            | AgentEvent::CellEnd { cell, .. }
            | AgentEvent::CellError { cell, .. } => Some(cell),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_without_a_state_timeout_still_parse() {
        let old = r#"{"id":"c","model":"m","model_path":"/m","model_sha256":"0","precision":"f32",
            "scenario":"short","threads":1,"state":"any","engine_job":{"prompt":{"tokens":4},
            "n_gen":2,"passes":1},"cold_start_runs":0,"timeout_s":60}"#;
        let c: Cell = serde_json::from_str(old).unwrap();
        assert_eq!(c.state_timeout_s, 0, "0 = the agent's default");
        let e = AgentEvent::StateReached {
            cell: "c".into(),
            state: "hot".into(),
            waited_s: 1.5,
            temp_c: Some(61.0),
            reference_temp_c: Some(35.0),
            thermal_status: None,
            indicator: Some("cooling device active".into()),
            battery_level: None,
            battery_mode: None,
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["event"], "state_reached");
        assert!(
            v.get("battery_level").is_none(),
            "unset additions are not written"
        );
        let back: AgentEvent = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
        assert_eq!(e.cell(), Some("c"));
    }

    #[test]
    fn pass_telemetry_stays_backward_compatible() {
        let old = r#"{"temp_c_start":40.0,"temp_c_max":45.0,"temp_c_end":44.0,"power_w_avg":3.0,"power_w_peak":4.0,"energy_j":12.0}"#;
        let t: PassTelemetry = serde_json::from_str(old).unwrap();
        assert_eq!(t.energy_j, Some(12.0));
        assert_eq!(t.low_confidence, None);
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            old,
            "unset additions are not written"
        );
    }
}
