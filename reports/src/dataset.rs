//! The measurements of one or more runs, regrouped for statistics: per cell (keyed like
//! `run.json`'s cells), its sessions (fresh engine processes) and, per session, its passes.
//!
//! Several run directories merge into one [`Dataset`]: farm shards add devices, repeated runs of
//! the same suite add sessions to the same cells.

use crate::cell_key::CellKey;
use crate::runstore::LoadedRun;
use meltbench_protocol::agent::AgentEvent;
use std::collections::BTreeMap;

/// One measured (or warm-up) pass, in report units.
#[derive(Clone, Debug, PartialEq)]
pub struct PassData {
    /// Seconds since the first pass of the cell on the device's monotonic clock (so sessions of
    /// one run lie one after another on a timeline).
    pub start_s: f64,
    pub warmup: bool,
    /// Tokenize + prefill + every decode step + detokenize, milliseconds.
    pub latency_ms: f64,
    pub ttft_ms: f64,
    /// Every decode step after the first token, milliseconds.
    pub decode_step_ms: Vec<f64>,
    pub prefill_tokens_per_s: Option<f64>,
    pub decode_tokens_per_s: Option<f64>,
    pub rss_hwm_bytes: Option<u64>,
    pub temp_c: Option<f64>,
    pub power_w: Option<f64>,
    /// Energy of the pass divided by the tokens it generated.
    pub energy_j_per_token: Option<f64>,
    /// Mean frequency of the fastest CPU cluster during the pass (MHz).
    pub cpu_mhz: Option<f64>,
    /// The engine's own record of the pass, unrounded: timelines and llama-bench rows need
    /// the device clock and the phases one by one, not just the report's milliseconds.
    pub split: PassSplit,
}

/// A pass's phases in nanoseconds, on the device's monotonic clock, as the engine recorded them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PassSplit {
    /// The pass's start on the device's monotonic clock; only comparable within one run of
    /// one device (a reboot or another device restarts it).
    pub start_mono_ns: u64,
    pub tokenize_ns: u64,
    pub prefill_ns: u64,
    /// Every decode step together.
    pub decode_ns: u64,
    pub detokenize_ns: u64,
    pub prompt_tokens: usize,
    /// Tokens generated, the first one (picked by the prefill) included.
    pub gen_tokens: usize,
}

/// One fresh engine process of a cell.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionData {
    pub run_id: String,
    /// The session's index within its run's cell.
    pub index: usize,
    /// Measured passes only, in order.
    pub passes: Vec<PassData>,
    pub warmups: Vec<PassData>,
    /// Largest VmHWM seen in this session.
    pub peak_rss_bytes: Option<u64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CellData {
    /// From the first run that has this cell; `key.id` is the suite's cell id.
    pub key: CellKey,
    pub sessions: Vec<SessionData>,
    pub cold_start_ms: Vec<f64>,
    /// Whether every cold start ran with the page cache dropped.
    pub cold_start_page_cache_dropped: Option<bool>,
    /// Why the cell (in some run) did not finish.
    pub errors: Vec<String>,
    /// The device state each run established before measuring, as the agent reported it
    /// (`hot after 42 s: 71.2 °C, cooling device active`).
    pub states_reached: Vec<String>,
    pub prompt_tokens: Option<usize>,
    pub gen_tokens: Option<usize>,
    pub model_file_bytes: Option<u64>,
    pub weight_bytes_per_token: Option<u64>,
    pub kernels: Option<String>,
    /// The largest end-of-cell peak the agent reported (`cell_end`: VmHWM sampled while the
    /// engine ran, which can exceed every per-pass reading).
    pub reported_peak_rss_bytes: Option<u64>,
    /// What the agent spent before the first pass (state waits, cold starts), in the order
    /// it reported them, for timelines.
    pub preludes: Vec<Prelude>,
    /// Pass fields the engine program said it cannot measure (its load records'
    /// `unmeasured`): zeros there are not measurements.
    pub unmeasured: std::collections::BTreeSet<String>,
    /// Whose memory the peak RSS figures are when not the engine process's own (an adapter
    /// in front of a server).
    pub memory_of: Option<String>,
}

/// A step of a cell before its passes. The agent reports how long it took but not when it
/// started, so a timeline has to place it.
#[derive(Clone, Debug, PartialEq)]
pub struct Prelude {
    pub run_id: String,
    /// `wait for hot`, `cold start 0`, ...
    pub name: String,
    pub dur_ns: u64,
}

impl CellData {
    pub fn measured_passes(&self) -> usize {
        self.sessions.iter().map(|s| s.passes.len()).sum()
    }

    /// Largest VmHWM of the engine over every session (each session's peak already covers its
    /// passes and warm-ups) and the agent's end-of-cell readings.
    pub fn peak_rss_bytes(&self) -> Option<u64> {
        self.sessions
            .iter()
            .filter_map(|s| s.peak_rss_bytes)
            .max()
            .max(self.reported_peak_rss_bytes)
    }

    /// All measured passes, session after session.
    pub fn passes(&self) -> impl Iterator<Item = &PassData> {
        self.sessions.iter().flat_map(|s| s.passes.iter())
    }
}

/// Cells of one or more runs, in the order the runs list them.
#[derive(Clone, Debug, Default)]
pub struct Dataset {
    pub runs: Vec<LoadedRunInfo>,
    pub cells: Vec<CellData>,
}

/// What a report needs of a run besides its cells.
#[derive(Clone, Debug)]
pub struct LoadedRunInfo {
    pub dir: std::path::PathBuf,
    pub manifest: crate::runstore::RunManifest,
    pub skipped_lines: Vec<String>,
}

const MS: f64 = 1e6;

impl Dataset {
    /// Merges runs: cells with the same device and id gather the sessions of every run.
    pub fn from_runs(runs: Vec<LoadedRun>) -> Dataset {
        let mut cells: Vec<CellData> = Vec::new();
        let mut index: BTreeMap<(String, String), usize> = BTreeMap::new();
        let mut infos = Vec::new();
        for run in runs {
            for key in &run.manifest.cells {
                let k = (key.device.clone(), key.id.clone());
                index.entry(k).or_insert_with(|| {
                    cells.push(empty_cell(key.clone()));
                    cells.len() - 1
                });
            }
            for (device, events) in &run.events {
                add_device_events(&mut cells, &index, device, &run.manifest.run_id, events);
            }
            infos.push(LoadedRunInfo {
                dir: run.dir,
                manifest: run.manifest,
                skipped_lines: run.skipped_lines,
            });
        }
        Dataset { runs: infos, cells }
    }

    pub fn cell(&self, device: &str, id: &str) -> Option<&CellData> {
        self.cells
            .iter()
            .find(|c| c.key.device == device && c.key.id == id)
    }

    pub fn total_passes(&self) -> usize {
        self.cells.iter().map(CellData::measured_passes).sum()
    }
}

/// The cells `keys` of one device (all on the same device) from that device's events, as
/// [`Dataset::from_runs`] would build them; a cell with no events has no sessions.
pub fn device_cells(keys: &[CellKey], events: &[AgentEvent]) -> Vec<CellData> {
    let Some(device) = keys.first().map(|k| k.device.clone()) else {
        return Vec::new();
    };
    let mut cells: Vec<CellData> = keys.iter().cloned().map(empty_cell).collect();
    let index = keys
        .iter()
        .enumerate()
        .map(|(i, k)| ((k.device.clone(), k.id.clone()), i))
        .collect();
    add_device_events(&mut cells, &index, &device, "", events);
    cells
}

fn empty_cell(key: CellKey) -> CellData {
    CellData {
        key,
        sessions: Vec::new(),
        cold_start_ms: Vec::new(),
        cold_start_page_cache_dropped: None,
        errors: Vec::new(),
        states_reached: Vec::new(),
        prompt_tokens: None,
        gen_tokens: None,
        model_file_bytes: None,
        weight_bytes_per_token: None,
        kernels: None,
        reported_peak_rss_bytes: None,
        preludes: Vec::new(),
        unmeasured: Default::default(),
        memory_of: None,
    }
}

fn add_device_events(
    cells: &mut [CellData],
    index: &BTreeMap<(String, String), usize>,
    device: &str,
    run_id: &str,
    events: &[AgentEvent],
) {
    // Sessions of this run, per cell: (cell index, session index) -> position in `sessions`.
    let mut first_start: BTreeMap<usize, u64> = BTreeMap::new();
    let mut session_slot: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    for e in events {
        let Some(cell_id) = e.cell() else { continue };
        let Some(&ci) = index.get(&(device.to_string(), cell_id.to_string())) else {
            continue;
        };
        let cell = &mut cells[ci];
        match e {
            AgentEvent::Load { session, load, .. } => {
                slot(cell, &mut session_slot, ci, *session, run_id);
                cell.model_file_bytes = Some(load.file_bytes);
                cell.weight_bytes_per_token = Some(load.weight_bytes_per_token);
                cell.kernels = Some(load.kernels.clone());
                cell.unmeasured.extend(load.unmeasured.iter().cloned());
                if load.memory_of.is_some() {
                    cell.memory_of = load.memory_of.clone();
                }
            }
            AgentEvent::Pass {
                session,
                pass,
                rss_hwm_bytes,
                telemetry,
                ..
            } => {
                let t0 = *first_start.entry(ci).or_insert(pass.start_mono_ns);
                let (decode_steps, decode_total) = decode_steps_and_total(pass);
                let latency_ns = pass.ttft_ns + decode_total + pass.detokenize_ns;
                let energy_per_token = telemetry
                    .as_ref()
                    .and_then(|t| t.energy_j)
                    .filter(|_| pass.gen_tokens > 0)
                    .map(|e| e / pass.gen_tokens as f64);
                let p = PassData {
                    start_s: pass.start_mono_ns.saturating_sub(t0) as f64 / 1e9,
                    warmup: pass.warmup,
                    latency_ms: latency_ns as f64 / MS,
                    ttft_ms: pass.ttft_ns as f64 / MS,
                    decode_step_ms: pass.decode_ns.iter().map(|&d| d as f64 / MS).collect(),
                    prefill_tokens_per_s: (pass.prefill_ns > 0)
                        .then(|| pass.prompt_tokens as f64 / (pass.prefill_ns as f64 / 1e9)),
                    decode_tokens_per_s: (decode_total > 0)
                        .then(|| decode_steps as f64 / (decode_total as f64 / 1e9)),
                    rss_hwm_bytes: *rss_hwm_bytes,
                    temp_c: telemetry
                        .as_ref()
                        .and_then(|t| t.temp_c_max.or(t.temp_c_end)),
                    power_w: telemetry.as_ref().and_then(|t| t.power_w_avg),
                    energy_j_per_token: energy_per_token,
                    cpu_mhz: telemetry.as_ref().and_then(|t| t.cpu_mhz_mean),
                    split: PassSplit {
                        start_mono_ns: pass.start_mono_ns,
                        tokenize_ns: pass.tokenize_ns,
                        prefill_ns: pass.prefill_ns,
                        decode_ns: decode_total,
                        detokenize_ns: pass.detokenize_ns,
                        prompt_tokens: pass.prompt_tokens,
                        gen_tokens: pass.gen_tokens,
                    },
                };
                let s = slot(cell, &mut session_slot, ci, *session, run_id);
                let sess = &mut cell.sessions[s];
                sess.peak_rss_bytes = sess.peak_rss_bytes.max(*rss_hwm_bytes);
                if p.warmup {
                    sess.warmups.push(p);
                } else {
                    cell.prompt_tokens = Some(pass.prompt_tokens);
                    cell.gen_tokens = Some(pass.gen_tokens);
                    sess.passes.push(p);
                }
            }
            AgentEvent::ColdStart {
                run,
                first_token_ns,
                page_cache_dropped,
                ..
            } => {
                cell.cold_start_ms.push(*first_token_ns as f64 / MS);
                cell.preludes.push(Prelude {
                    run_id: run_id.to_string(),
                    name: format!("cold start {run}"),
                    dur_ns: *first_token_ns,
                });
                cell.cold_start_page_cache_dropped =
                    Some(cell.cold_start_page_cache_dropped.unwrap_or(true) && *page_cache_dropped);
            }
            AgentEvent::CellEnd { peak_rss_bytes, .. } => {
                cell.reported_peak_rss_bytes = cell.reported_peak_rss_bytes.max(*peak_rss_bytes);
            }
            AgentEvent::CellError { message, .. } => cell.errors.push(message.clone()),
            AgentEvent::StateReached {
                state,
                waited_s,
                temp_c,
                indicator,
                ..
            } => {
                cell.states_reached.push(format!(
                    "{state} after {waited_s:.0} s{}{}",
                    temp_c.map(|t| format!(": {t:.1} °C")).unwrap_or_default(),
                    indicator
                        .as_ref()
                        .map(|i| format!(", {i}"))
                        .unwrap_or_default()
                ));
                cell.preludes.push(Prelude {
                    run_id: run_id.to_string(),
                    name: format!("wait for {state}"),
                    dur_ns: (waited_s.max(0.0) * 1e9) as u64,
                });
            }
            _ => {}
        }
    }
    // A session that never produced a measured pass (it failed while loading) carries no data.
    for c in cells.iter_mut() {
        c.sessions
            .retain(|s| !(s.run_id == run_id && s.passes.is_empty() && s.warmups.is_empty()));
    }
}

fn slot(
    cell: &mut CellData,
    slots: &mut BTreeMap<(usize, usize), usize>,
    ci: usize,
    session: usize,
    run_id: &str,
) -> usize {
    *slots.entry((ci, session)).or_insert_with(|| {
        cell.sessions.push(SessionData {
            run_id: run_id.to_string(),
            index: session,
            passes: Vec::new(),
            warmups: Vec::new(),
            peak_rss_bytes: None,
        });
        cell.sessions.len() - 1
    })
}

/// The decode after the first token: how many steps it took and how long, from the per-token
/// times or, where the engine timed only the whole (llama-bench), from `decode_total_ns`.
fn decode_steps_and_total(pass: &meltbench_protocol::engine::PassRecord) -> (usize, u64) {
    match pass.decode_total_ns {
        Some(total) => (pass.gen_tokens.saturating_sub(1), total),
        None => (pass.decode_ns.len(), pass.decode_ns.iter().sum()),
    }
}
