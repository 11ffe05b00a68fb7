//! `meltbench run`: prepare the models, hand each device its cells, store every event as it
//! arrives, then summarise from the stored events.

use crate::bins;
use crate::models;
use crate::prepare::{self, PreparedModel};
use crate::store::{DeviceRecord, RunManifest, RunStore};
use crate::transport::local;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use meltbench_protocol::agent::{AgentEvent, AgentJob, Cell};
use meltbench_protocol::engine::{EngineJob, Prompt};
use meltbench_protocol::{protocol_major, PROTOCOL_VERSION};
use meltbench_reports::summary::{summarize_device, CellKey, Summary};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// One cell of the suite matrix, before it is placed on a device.
#[derive(Clone, Debug)]
pub struct PlannedCell {
    /// Stable key, `model/precision/scenario/t<threads>/state`.
    pub id: String,
    /// The model's name in ids and reports.
    pub model: String,
    /// What [`prepare::prepare`] resolves: a registry or cached name, `synth`, or a path.
    pub model_source: String,
    pub precision: String,
    pub scenario: String,
    pub prompt: Prompt,
    pub new_tokens: usize,
    /// `None`: the device's default (its performance cores).
    pub threads: Option<usize>,
    pub state: String,
    pub passes: usize,
    pub warmup: usize,
    pub sessions: usize,
    pub cold_start: usize,
    pub timeout_s: u64,
}

#[derive(Clone, Debug)]
pub struct DeviceTarget {
    pub name: String,
    pub transport: String,
}

pub struct RunPlan {
    pub suite_name: String,
    pub suite_path: PathBuf,
    pub devices: Vec<DeviceTarget>,
    pub cells: Vec<PlannedCell>,
    pub command: String,
}

pub struct RunOutcome {
    pub dir: PathBuf,
    pub summary: Summary,
    /// Devices that failed as a whole, with the reason.
    pub device_errors: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Bins(#[from] bins::BinError),
    #[error(transparent)]
    Prepare(#[from] prepare::PrepareError),
    #[error(transparent)]
    Pull(#[from] models::PullError),
    #[error("writing the run directory {dir}: {source}")]
    Store { dir: String, source: std::io::Error },
}

pub fn run(plan: &RunPlan, out_root: &Path) -> Result<RunOutcome, RunError> {
    let engine = bins::engine()?;
    let agent = bins::agent()?;
    let started = jiff::Timestamp::now();

    // Every (model, precision) once, before any device starts.
    let mut prepared: BTreeMap<(String, String), PreparedModel> = BTreeMap::new();
    for c in &plan.cells {
        if let std::collections::btree_map::Entry::Vacant(slot) =
            prepared.entry((c.model.clone(), c.precision.clone()))
        {
            eprintln!("preparing {} ({})", c.model, c.precision);
            slot.insert(prepare::prepare(&engine, &c.model_source, &c.precision)?);
        }
    }

    let store = RunStore::create(out_root, &started, &plan.suite_name).map_err(|source| {
        RunError::Store {
            dir: out_root.display().to_string(),
            source,
        }
    })?;
    let store_err = |source| RunError::Store {
        dir: store.dir.display().to_string(),
        source,
    };
    let mut manifest = RunManifest {
        run_id: store
            .dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned(),
        suite_name: plan.suite_name.clone(),
        suite_path: plan.suite_path.display().to_string(),
        suite_yaml: std::fs::read_to_string(&plan.suite_path).unwrap_or_default(),
        meltbench_version: env!("CARGO_PKG_VERSION").to_string(),
        meltbench_commit: env!("MELTBENCH_GIT_COMMIT").to_string(),
        suite_git_commit: git_commit(&plan.suite_path),
        started_utc: started.to_string(),
        finished_utc: None,
        command: plan.command.clone(),
        devices: plan
            .devices
            .iter()
            .map(|d| DeviceRecord {
                name: d.name.clone(),
                transport: d.transport.clone(),
                info: None,
                error: None,
            })
            .collect(),
        cells: Vec::new(),
    };
    for d in &plan.devices {
        for c in &plan.cells {
            manifest.cells.push(cell_key(
                &d.name,
                c,
                &prepared[&(c.model.clone(), c.precision.clone())],
            ));
        }
    }
    store.write_manifest(&manifest).map_err(store_err)?;
    eprintln!("run directory: {}", store.dir.display());

    let mut device_errors = Vec::new();
    let mut summary = Summary {
        run_id: manifest.run_id.clone(),
        cells: Vec::new(),
    };
    for (di, d) in plan.devices.iter().enumerate() {
        let result = if d.transport == "local" {
            run_local(
                &store,
                &manifest.run_id,
                &engine,
                &agent,
                d,
                &plan.cells,
                &prepared,
            )
        } else {
            Err(format!(
                "the {} transport is not available in this build yet (it arrives with the issue \"Device farm\"); run with --only local",
                d.transport
            ))
        };
        match result {
            Ok(info) => manifest.devices[di].info = info,
            Err(e) => {
                eprintln!("error: device {}: {e}", d.name);
                manifest.devices[di].error = Some(e.clone());
                device_errors.push((d.name.clone(), e));
            }
        }
        // Summaries come from the stored raw events, never from what was seen in flight.
        let events = read_events(&store.dir.join("events").join(format!("{}.jsonl", d.name)));
        let keys: Vec<CellKey> = manifest
            .cells
            .iter()
            .filter(|k| k.device == d.name)
            .cloned()
            .collect();
        summary.cells.extend(summarize_device(&keys, &events));
    }
    manifest.finished_utc = Some(jiff::Timestamp::now().to_string());
    store.write_manifest(&manifest).map_err(store_err)?;
    store.write_summary(&summary).map_err(store_err)?;
    Ok(RunOutcome {
        dir: store.dir,
        summary,
        device_errors,
    })
}

fn cell_key(device: &str, c: &PlannedCell, m: &PreparedModel) -> CellKey {
    CellKey {
        id: c.id.clone(),
        device: device.to_string(),
        model: c.model.clone(),
        model_sha256: m.sha256.clone(),
        precision: m.precision.clone(),
        scenario: c.scenario.clone(),
        threads: c.threads.unwrap_or(0),
        state: c.state.clone(),
    }
}

/// Runs every cell on the local machine; returns the device's probe, or why the device failed.
fn run_local(
    store: &RunStore,
    run_id: &str,
    engine: &Path,
    agent: &Path,
    device: &DeviceTarget,
    cells: &[PlannedCell],
    prepared: &BTreeMap<(String, String), PreparedModel>,
) -> Result<Option<meltbench_protocol::agent::DeviceInfo>, String> {
    let workdir = models::cache_dir()
        .map_err(|e| e.to_string())?
        .parent()
        .map(|p| p.join("work").join(run_id).join(&device.name))
        .ok_or("no cache directory")?;
    let job = AgentJob {
        protocol: PROTOCOL_VERSION.to_string(),
        run_id: run_id.to_string(),
        engine: engine.display().to_string(),
        workdir: workdir.display().to_string(),
        cells: cells
            .iter()
            .map(|c| {
                let m = &prepared[&(c.model.clone(), c.precision.clone())];
                Cell {
                    id: c.id.clone(),
                    model: c.model.clone(),
                    model_path: m.path.display().to_string(),
                    model_sha256: m.sha256.clone(),
                    precision: m.precision.clone(),
                    scenario: c.scenario.clone(),
                    threads: c.threads.unwrap_or(0),
                    state: c.state.clone(),
                    engine_job: EngineJob {
                        prompt: c.prompt.clone(),
                        n_gen: c.new_tokens,
                        passes: c.passes,
                        warmup: c.warmup,
                        threads: c.threads,
                        ignore_eos: true,
                        temperature: 0.0,
                        seed: 0,
                        kernels: None,
                    },
                    cold_start_runs: c.cold_start,
                    sessions: c.sessions,
                    timeout_s: c.timeout_s,
                }
            })
            .collect(),
    };
    let jobs_dir = store.dir.join("jobs");
    std::fs::create_dir_all(&jobs_dir).map_err(|e| e.to_string())?;
    let job_path = jobs_dir.join(format!("{}.json", device.name));
    std::fs::write(
        &job_path,
        serde_json::to_vec_pretty(&job).expect("serialisable"),
    )
    .map_err(|e| e.to_string())?;

    let total: u64 = cells
        .iter()
        .map(|c| ((c.warmup + c.passes) * c.sessions + c.cold_start) as u64)
        .sum();
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>8} [{elapsed_precise}] {bar:30} {pos}/{len} passes  {msg}",
        )
        .expect("valid template"),
    );
    bar.set_prefix(device.name.clone());
    let mut log = store.event_log(&device.name).map_err(|e| e.to_string())?;
    let mut info = None;
    let mut protocol_error = None;
    let mut done = false;
    let (status, stderr) = local::run_agent(agent, &job_path, |line| {
        // Raw line first: whatever happens next, what the agent said is kept.
        let _ = writeln!(log, "{line}");
        let _ = log.flush();
        match serde_json::from_str::<AgentEvent>(line) {
            Ok(AgentEvent::Hello { protocol, device: d, .. }) => {
                if protocol_major(&protocol) != protocol_major(PROTOCOL_VERSION) {
                    protocol_error = Some(format!(
                        "the agent speaks protocol {protocol} but this controller speaks {PROTOCOL_VERSION}; rebuild both from the same checkout (`cargo build --release`)"
                    ));
                }
                info = Some(d);
            }
            Ok(AgentEvent::CellStart { cell, index, of }) => bar.set_message(format!("cell {}/{of}: {cell}", index + 1)),
            Ok(AgentEvent::Pass { .. } | AgentEvent::ColdStart { .. }) => bar.inc(1),
            Ok(AgentEvent::CellError { cell, message, completed_passes }) => {
                bar.println(format!("error: {cell}: {message} ({completed_passes} passes kept)"))
            }
            Ok(AgentEvent::Done { .. }) => done = true,
            Ok(AgentEvent::Warning { message }) => bar.println(format!("warning: {}: {message}", device.name)),
            Ok(_) => {}
            Err(e) => bar.println(format!("warning: {}: unreadable agent line ({e}): {line}", device.name)),
        }
    })
    .map_err(|e| format!("cannot run the agent {}: {e}", agent.display()))?;
    bar.finish_and_clear();
    if let Some(e) = protocol_error {
        return Err(e);
    }
    // After `done`, a non-zero exit only repeats that some cells failed, which their own
    // events already say; without it, the device itself is in trouble.
    if !done {
        return Err(format!(
            "the agent stopped before finishing ({status}): {stderr}"
        ));
    }
    Ok(info)
}

/// Every parseable event of a stored log (a torn last line from a crash is skipped).
pub fn read_events(path: &Path) -> Vec<AgentEvent> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn git_commit(suite: &Path) -> Option<String> {
    let dir = suite
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}
