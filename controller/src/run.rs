//! `meltbench run`: prepare the models, hand each device its cells, store every event as it
//! arrives, then summarise from the stored events.

use crate::bins;
use crate::device_error::DeviceError;
use crate::device_run::{self, DeviceRun};
use crate::models;
use crate::prepare::{self, PreparedModel};
use crate::resume::{self, DeviceWork, ResumeError};
use crate::scheduler;
use crate::stop;
use crate::store::{DeviceRecord, RunManifest, RunStore};
pub use crate::suite::SuiteCell;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use meltbench_reports::cell_key::CellKey;
use meltbench_reports::runstore::{self, Attempt, SupersededSession};
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
    /// Ctrl-C or SIGTERM stopped the run (exit 130).
    pub interrupted: bool,
    /// Devices a resume found nothing missing on.
    pub already_complete: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Bins(#[from] bins::BinError),
    #[error(transparent)]
    Prepare(#[from] prepare::PrepareError),
    #[error(transparent)]
    Pull(#[from] models::PullError),
    #[error(transparent)]
    Resume(#[from] ResumeError),
    #[error("writing the run directory {dir}: {source}")]
    Store { dir: String, source: std::io::Error },
}

/// How long connecting to a device, and each setup command on it, may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// A fresh run: a new run directory under `out_root`, every cell on every device.
pub fn run(plan: &RunPlan, out_root: &Path) -> Result<RunOutcome, RunError> {
    let engine = bins::engine()?;
    let started = jiff::Timestamp::now();
    let prepared = prepare_models(plan, &engine)?;
    let store = RunStore::create(out_root, &started, &plan.suite_name).map_err(|source| {
        RunError::Store {
            dir: out_root.display().to_string(),
            source,
        }
    })?;
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
        devices_path: plan.devices_path.as_ref().map(|p| p.display().to_string()),
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
        attempts: Vec::new(),
    };
    manifest.cells = cell_keys(plan, &prepared);
    eprintln!("run directory: {}", store.dir.display());
    let work = plan
        .devices
        .iter()
        .map(|d| DeviceWork::all(d, &plan.cells))
        .collect();
    attempt(plan, store, manifest, prepared, work, Vec::new())
}

/// `--resume`: runs in `dir` what its logs lack, as one more attempt.
pub fn resume(
    plan: &RunPlan,
    dir: &Path,
    mut manifest: RunManifest,
) -> Result<RunOutcome, RunError> {
    if manifest.attempts.is_empty() {
        // A run from before attempts were recorded: its first go, as it was.
        manifest.attempts.push(Attempt {
            number: 1,
            started_utc: manifest.started_utc.clone(),
            finished_utc: manifest.finished_utc.clone(),
            command: manifest.command.clone(),
            devices: manifest.devices.iter().map(|d| d.name.clone()).collect(),
            ..Attempt::default()
        });
    }
    let engine = bins::engine()?;
    let prepared = prepare_models(plan, &engine)?;
    // The same files must be measured: a model re-quantised or re-downloaded since would mix
    // two models in one cell.
    let keys = cell_keys(plan, &prepared);
    if let Some(k) = keys.iter().find(|k| !manifest.cells.contains(k)) {
        return Err(ResumeError(format!(
            "cannot resume {}: cell {} on {} is not the one the run started with (model \
             {} {}, SHA-256 {}); a model or the suite's matrix changed, so start a new run",
            dir.display(),
            k.id,
            k.device,
            k.model,
            k.precision,
            k.model_sha256
        ))
        .into());
    }
    eprintln!("resuming {}", dir.display());
    let recovered = resume::recover_all(dir, &manifest, &plan.devices, CONNECT_TIMEOUT);
    let work = resume::missing(dir, &manifest, plan)?;
    let already_complete: Vec<String> = plan
        .devices
        .iter()
        .filter(|d| !work.iter().any(|w| w.device.name == d.name))
        .map(|d| d.name.clone())
        .collect();
    // A device whose stream broke after its last pass has nothing missing: no longer failed.
    for r in manifest.devices.iter_mut() {
        if already_complete.contains(&r.name) {
            r.error = None;
        }
    }
    let mut outcome = attempt(
        plan,
        RunStore::open(dir),
        manifest,
        prepared,
        work,
        recovered,
    )?;
    outcome.already_complete = already_complete;
    Ok(outcome)
}

/// Every (model, precision) once, before any device starts.
fn prepare_models(
    plan: &RunPlan,
    engine: &Path,
) -> Result<BTreeMap<(String, String), PreparedModel>, RunError> {
    let mut prepared: BTreeMap<(String, String), PreparedModel> = BTreeMap::new();
    for c in &plan.cells {
        if let std::collections::btree_map::Entry::Vacant(slot) = prepared.entry(c.model_key()) {
            eprintln!("preparing {} ({})", c.model.label(), c.precision);
            slot.insert(prepare::prepare(
                engine,
                &c.model.source(),
                c.precision.as_str(),
            )?);
        }
    }
    Ok(prepared)
}

fn cell_keys(plan: &RunPlan, prepared: &device_run::Prepared) -> Vec<CellKey> {
    let mut keys = Vec::new();
    for d in &plan.devices {
        for c in &plan.cells {
            keys.push(cell_key(&d.name, c, &prepared[&c.model_key()]));
        }
    }
    keys
}

/// One go at the run: `work` on its devices, every event stored as it arrives, then the
/// summary of all attempts from the stored events.
fn attempt(
    plan: &RunPlan,
    store: RunStore,
    mut manifest: RunManifest,
    prepared: device_run::Prepared,
    work: Vec<DeviceWork>,
    recovered: Vec<String>,
) -> Result<RunOutcome, RunError> {
    let store_dir = store.dir.display().to_string();
    let store_err = |source| RunError::Store {
        dir: store_dir.clone(),
        source,
    };
    let number = manifest.attempts.len() + 1;
    manifest.attempts.push(Attempt {
        number,
        started_utc: jiff::Timestamp::now().to_string(),
        finished_utc: None,
        command: plan.command.clone(),
        devices: work.iter().map(|w| w.device.name.clone()).collect(),
        recovered,
        ..Attempt::default()
    });
    manifest.finished_utc = None;
    store.write_manifest(&manifest).map_err(store_err)?;

    let store = Arc::new(store);
    let prepared = Arc::new(prepared);
    let engines = Arc::new(plan.engines.clone());
    let bars = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    let width = work.iter().map(|w| w.device.name.len()).max().unwrap_or(8);
    let style = ProgressStyle::with_template(&format!(
        "{{prefix:>{width}}} [{{elapsed_precise}}] {{bar:30}} {{pos}}/{{len}} passes  {{msg}}"
    ))
    .expect("valid template");
    let names: Vec<String> = work.iter().map(|w| w.device.name.clone()).collect();
    let runs: Vec<DeviceRun> = work
        .into_iter()
        .map(|w| DeviceRun {
            store: store.clone(),
            run_id: manifest.run_id.clone(),
            bar: bars
                .add(ProgressBar::new(device_run::total_steps(
                    &w.cells, &w.starts,
                )))
                .with_style(style.clone())
                .with_prefix(w.device.name.clone()),
            device: w.device,
            cells: Arc::new(w.cells),
            engines: engines.clone(),
            starts: w.starts,
            attempt: number,
            prepared: prepared.clone(),
            connect_timeout: CONNECT_TIMEOUT,
        })
        .collect();
    // From here on Ctrl-C stops the devices cleanly; before (preparing models, a resume's
    // recovery) it stops the controller as usual.
    stop::install();
    let outcomes = scheduler::run_devices(runs);

    let this = manifest.attempts.len() - 1;
    let mut device_errors = Vec::new();
    for (name, outcome) in names.iter().zip(outcomes) {
        let record = manifest
            .devices
            .iter_mut()
            .find(|r| &r.name == name)
            .expect("every device of an attempt is in run.json");
        record.info = outcome.info.or(record.info.take());
        record.transfer = outcome.transfer.or(record.transfer);
        record.error = outcome.error.as_ref().map(|e| e.to_string());
        if outcome.recovered_lines > 0 {
            manifest.attempts[this]
                .recovered
                .push(format!("{name}: {} lines", outcome.recovered_lines));
        }
        if let Some(e) = outcome.error {
            manifest.attempts[this].errors.push(format!("{name}: {e}"));
            device_errors.push((name.clone(), e));
        }
    }
    // Summaries come from the stored raw events of every attempt, never from what was seen in
    // flight.
    let mut summary = Summary {
        run_id: manifest.run_id.clone(),
        cells: Vec::new(),
    };
    let mut superseded = Vec::new();
    for record in &manifest.devices {
        let (events, dropped) =
            runstore::device_events(&store.dir, &manifest, record, &mut Vec::new())
                .unwrap_or_default();
        superseded.extend(
            dropped
                .into_iter()
                .filter(|s| {
                    !manifest.attempts.iter().any(|a| {
                        a.superseded.iter().any(|x| {
                            x.device == record.name
                                && x.cell == s.cell
                                && x.session == s.session
                                && x.attempt == s.attempt
                        })
                    })
                })
                .map(|s| SupersededSession {
                    device: record.name.clone(),
                    cell: s.cell,
                    session: s.session,
                    attempt: s.attempt,
                    passes: s.passes,
                }),
        );
        let keys: Vec<CellKey> = manifest
            .cells
            .iter()
            .filter(|k| k.device == record.name)
            .cloned()
            .collect();
        summary.cells.extend(summarize_device(&keys, &events));
    }
    let interrupted = stop::requested();
    let now = jiff::Timestamp::now().to_string();
    let a = &mut manifest.attempts[this];
    a.superseded = superseded;
    a.interrupted = interrupted;
    a.finished_utc = Some(now.clone());
    manifest.finished_utc = Some(now);
    store.write_manifest(&manifest).map_err(store_err)?;
    store.write_summary(&summary).map_err(store_err)?;
    Ok(RunOutcome {
        dir: store.dir.clone(),
        summary,
        device_errors,
        interrupted,
        already_complete: Vec::new(),
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
        engine: c.engine.clone(),
    }
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
