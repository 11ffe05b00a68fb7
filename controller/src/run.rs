//! `meltbench run`: prepare the models, hand each device its cells, store every event as it
//! arrives, then summarise from the stored events.

use crate::bins;
use crate::device_error::DeviceError;
use crate::device_run::{self, DeviceRun};
use crate::models;
use crate::prepare::{self, PreparedModel};
use crate::scheduler;
use crate::store::{DeviceRecord, RunManifest, RunStore};
pub use crate::suite::SuiteCell;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use meltbench_protocol::agent::AgentEvent;
use meltbench_reports::cell_key::CellKey;
use meltbench_reports::summary::{summarize_device, Summary};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use crate::plan::RunPlan;

pub struct RunOutcome {
    pub dir: PathBuf,
    pub summary: Summary,
    /// Devices that failed as a whole, with the reason.
    pub device_errors: Vec<(String, DeviceError)>,
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

/// How long connecting to a device, and each setup command on it, may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

pub fn run(plan: &RunPlan, out_root: &Path) -> Result<RunOutcome, RunError> {
    let engine = bins::engine()?;
    let started = jiff::Timestamp::now();

    // Every (model, precision) once, before any device starts.
    let mut prepared: BTreeMap<(String, String), PreparedModel> = BTreeMap::new();
    for c in &plan.cells {
        if let std::collections::btree_map::Entry::Vacant(slot) = prepared.entry(c.model_key()) {
            eprintln!("preparing {} ({})", c.model.label(), c.precision);
            slot.insert(prepare::prepare(
                &engine,
                &c.model.source(),
                c.precision.as_str(),
            )?);
        }
    }

    let store = RunStore::create(out_root, &started, &plan.suite_name).map_err(|source| {
        RunError::Store {
            dir: out_root.display().to_string(),
            source,
        }
    })?;
    let store_dir = store.dir.display().to_string();
    let store_err = |source| RunError::Store {
        dir: store_dir.clone(),
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
                transport: d.transport.kind().to_string(),
                info: None,
                error: None,
                transfer: None,
            })
            .collect(),
        cells: Vec::new(),
    };
    for d in &plan.devices {
        for c in &plan.cells {
            manifest
                .cells
                .push(cell_key(&d.name, c, &prepared[&c.model_key()]));
        }
    }
    store.write_manifest(&manifest).map_err(store_err)?;
    eprintln!("run directory: {}", store.dir.display());

    let store = Arc::new(store);
    let cells = Arc::new(plan.cells.clone());
    let prepared = Arc::new(prepared);
    let bars = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    let width = plan.devices.iter().map(|d| d.name.len()).max().unwrap_or(8);
    let style = ProgressStyle::with_template(&format!(
        "{{prefix:>{width}}} [{{elapsed_precise}}] {{bar:30}} {{pos}}/{{len}} passes  {{msg}}"
    ))
    .expect("valid template");
    let runs: Vec<DeviceRun> = plan
        .devices
        .iter()
        .map(|d| DeviceRun {
            store: store.clone(),
            run_id: manifest.run_id.clone(),
            device: d.clone(),
            cells: cells.clone(),
            prepared: prepared.clone(),
            bar: bars
                .add(ProgressBar::new(device_run::total_steps(&cells)))
                .with_style(style.clone())
                .with_prefix(d.name.clone()),
            connect_timeout: CONNECT_TIMEOUT,
        })
        .collect();
    let outcomes = scheduler::run_devices(runs);

    let mut device_errors = Vec::new();
    let mut summary = Summary {
        run_id: manifest.run_id.clone(),
        cells: Vec::new(),
    };
    for ((d, outcome), record) in plan
        .devices
        .iter()
        .zip(outcomes)
        .zip(manifest.devices.iter_mut())
    {
        record.info = outcome.info;
        record.transfer = outcome.transfer;
        if let Some(e) = outcome.error {
            record.error = Some(e.to_string());
            device_errors.push((d.name.clone(), e));
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
        dir: store.dir.clone(),
        summary,
        device_errors,
    })
}

fn cell_key(device: &str, c: &SuiteCell, m: &PreparedModel) -> CellKey {
    CellKey {
        id: c.id.clone(),
        device: device.to_string(),
        model: c.model.label(),
        model_sha256: m.sha256.clone(),
        precision: m.precision.clone(),
        scenario: c.scenario.clone(),
        threads: c.threads.unwrap_or(0),
        state: c.state.to_string(),
    }
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
