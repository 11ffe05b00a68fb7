//! `meltbench run --resume RUN_DIR`: what a stopped or broken run still lacks.
//!
//! A session is the unit (see `meltbench_reports::attempts`): every cell of every device whose
//! cold starts or sessions are not all in the run directory's logs runs again from its first
//! missing cold start and first incomplete session, as a new attempt with its own log per
//! device. Before counting, each device whose last log lacks the agent's `done` is asked for its
//! own copy of that log, which may hold what the stream lost.

use crate::device_run::{self, Start};
use crate::devices::Device;
use crate::plan::RunPlan;
use crate::store::RunManifest;
use crate::suite::SuiteCell;
use meltbench_protocol::agent::AgentEvent;
use meltbench_reports::attempts::{self, CellPlan};
use meltbench_reports::runstore;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// Input `--resume` cannot use: exits 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ResumeError(pub String);

/// The run directory's `run.json`, checked to be resumable.
pub fn read_manifest(dir: &Path) -> Result<RunManifest, ResumeError> {
    let m = runstore::read_manifest(dir).map_err(|e| ResumeError(format!("cannot resume: {e}")))?;
    if m.meltbench_commit != env!("MELTBENCH_GIT_COMMIT") {
        eprintln!(
            "warning: {} was started by meltbench {} and is resumed by {}; its passes may not be \
             comparable",
            dir.display(),
            m.meltbench_commit,
            env!("MELTBENCH_GIT_COMMIT")
        );
    }
    let now = std::fs::read_to_string(&m.suite_path).map_err(|e| {
        ResumeError(format!(
            "cannot resume {}: its suite {} cannot be read ({e}); resume from the directory the \
             run was started in",
            dir.display(),
            m.suite_path
        ))
    })?;
    if now != m.suite_yaml {
        return Err(ResumeError(format!(
            "cannot resume {}: its suite {} changed since the run started (run.json keeps the \
             original); restore it, or start a new run",
            dir.display(),
            m.suite_path
        )));
    }
    Ok(m)
}

/// One device's share of an attempt: the cells with something missing, and where each starts.
pub struct DeviceWork {
    pub device: Device,
    pub cells: Vec<SuiteCell>,
    pub starts: BTreeMap<String, Start>,
}

impl DeviceWork {
    /// The whole matrix, from the beginning (a fresh run).
    pub fn all(device: &Device, cells: &[SuiteCell]) -> DeviceWork {
        DeviceWork {
            device: device.clone(),
            cells: cells.to_vec(),
            starts: BTreeMap::new(),
        }
    }
}

/// Pulls, for each device, what its agents logged on the device and the stream missed, for
/// every attempt whose log lacks `done`. Returns lines recovered per device.
pub fn recover_all(
    dir: &Path,
    manifest: &RunManifest,
    devices: &[Device],
    timeout: Duration,
) -> Vec<String> {
    let attempts = manifest.attempts.len().max(1);
    let mut said = Vec::new();
    for d in devices {
        for n in 1..=attempts {
            let local = runstore::events_path(dir, &d.name, n);
            let Ok(text) = std::fs::read_to_string(&local) else {
                continue;
            };
            let done = text
                .lines()
                .rev()
                .take(3)
                .any(|l| matches!(serde_json::from_str(l), Ok(AgentEvent::Done { .. })));
            if done {
                continue;
            }
            let files = match device_run::agent_files(d, dir, &manifest.run_id, n, timeout) {
                Ok(f) => f,
                Err(e) => {
                    eprintln!(
                        "warning: {}: cannot look for its own event log: {e}",
                        d.name
                    );
                    continue;
                }
            };
            // An agent of that attempt may still be running (its connection broke, it did
            // not): stop it first, so its log is final and two agents never share the device.
            match crate::stop::stop_agent(d, &files.agent(), true) {
                Ok(crate::stop::Stopped::Signalled) => eprintln!(
                    "{}: stopped the agent of attempt {n}, still running on the device",
                    d.name
                ),
                Ok(crate::stop::Stopped::NotRunning) => {}
                Err(e) => eprintln!(
                    "warning: {}: could not check for a running agent of attempt {n}: {e}",
                    d.name
                ),
            }
            let remote = files.events();
            match crate::recover::fill(d, &remote, &local, timeout, &[]) {
                Ok(crate::recover::Recovered::Lines(k)) => {
                    eprintln!(
                        "{}: recovered {k} event lines of attempt {n} from the device",
                        d.name
                    );
                    said.push(format!("{}: {k} lines of attempt {n}", d.name));
                }
                Ok(crate::recover::Recovered::Nothing) => {}
                Err(e) => eprintln!(
                    "warning: {}: no events recovered for attempt {n}: {e}",
                    d.name
                ),
            }
        }
    }
    said
}

/// What each device still lacks, from the run directory's merged logs.
pub fn missing(
    dir: &Path,
    manifest: &RunManifest,
    plan: &RunPlan,
) -> Result<Vec<DeviceWork>, ResumeError> {
    let mut work = Vec::new();
    for d in &plan.devices {
        let record = manifest
            .devices
            .iter()
            .find(|r| r.name == d.name)
            .ok_or_else(|| {
                ResumeError(format!(
                    "device '{}' is not part of the run in {}",
                    d.name,
                    dir.display()
                ))
            })?;
        let mut skipped = Vec::new();
        let (events, _) = runstore::device_events(dir, manifest, record, &mut skipped)
            .map_err(|e| ResumeError(e.to_string()))?;
        let mut cells = Vec::new();
        let mut starts = BTreeMap::new();
        for c in &plan.cells {
            let want = CellPlan {
                warmup: c.warmup,
                passes: c.passes,
                sessions: c.sessions,
                cold_starts: c.cold_start,
            };
            let got = attempts::progress(&events, &c.id, &want);
            if got.complete(&want) {
                continue;
            }
            starts.insert(
                c.id.clone(),
                Start {
                    cold_start: got.cold_starts,
                    // Cold starts come first: a cell short of them has run no session yet.
                    session: if got.cold_starts < c.cold_start {
                        0
                    } else {
                        got.sessions
                    },
                },
            );
            cells.push(c.clone());
        }
        if !cells.is_empty() {
            work.push(DeviceWork {
                device: d.clone(),
                cells,
                starts,
            });
        }
    }
    Ok(work)
}
