//! One device's part of a run: reach it, put the right binaries and models on it (through the
//! push cache), run the agent over the job, and store every event line as it arrives.
//!
//! A device that fails does so alone: its error is returned for the run's end summary and the
//! other devices go on. Whatever the agent said before a failure is already in the event log.

use crate::bins;
use crate::bundle;
use crate::device_error::DeviceError;
use crate::devices::{Device, Transport as Via};
use crate::models;
use crate::prepare::PreparedModel;
use crate::push::{self, Artifact};
use crate::store::{RunStore, Transfer};
use crate::suite::SuiteCell;
use crate::transport::{self, local::LocalTransport, Transport};
use indicatif::ProgressBar;
use meltbench_protocol::agent::{AgentEvent, AgentJob, Cell, DeviceInfo};
use meltbench_protocol::engine::EngineJob;
use meltbench_protocol::{protocol_major, PROTOCOL_VERSION};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Prepared models by (model, precision).
pub type Prepared = BTreeMap<(String, String), PreparedModel>;

/// Everything one device task needs; owned, so the task can run on its own thread.
pub struct DeviceRun {
    pub store: Arc<RunStore>,
    pub run_id: String,
    pub device: Device,
    pub cells: Arc<Vec<SuiteCell>>,
    pub prepared: Arc<Prepared>,
    pub bar: ProgressBar,
    /// Bound on connecting and on each setup command.
    pub connect_timeout: Duration,
}

/// How a device's part ended.
#[derive(Debug, Default)]
pub struct DeviceOutcome {
    pub info: Option<DeviceInfo>,
    pub transfer: Option<Transfer>,
    /// Why the device failed as a whole (cells that failed say so in their own events).
    pub error: Option<DeviceError>,
}

/// Passes, warm-ups and cold starts the device will report: the progress bar's length.
pub fn total_steps(cells: &[SuiteCell]) -> u64 {
    cells
        .iter()
        .map(|c| ((c.warmup + c.passes) * c.sessions + c.cold_start) as u64)
        .sum()
}

/// A line for the user: above the bar when it is drawn, on stderr when bars are hidden (CI logs).
pub fn say(bar: &ProgressBar, msg: String) {
    if bar.is_hidden() {
        eprintln!("{msg}");
    } else {
        bar.println(msg);
    }
}

pub fn run(d: &DeviceRun) -> DeviceOutcome {
    let mut outcome = DeviceOutcome::default();
    d.bar.set_message("connecting");
    let placed = match place(d) {
        Ok(p) => p,
        Err(e) => {
            outcome.error = Some(e);
            return outcome;
        }
    };
    outcome.transfer = placed.transfer;
    if let Some(t) = &placed.transfer {
        say(&d.bar, format!("{}: {t}", d.device.name));
    }
    match run_agent(d, placed) {
        Ok(info) => outcome.info = info,
        Err(e) => outcome.error = Some(e),
    }
    outcome
}

/// The device reached and stocked: its transport, how to start the agent, and the job.
struct Placed {
    transport: Box<dyn Transport>,
    /// The agent's command line up to its arguments: an emulator wrapper, then the agent.
    agent: Vec<String>,
    /// Where the job file is, as the agent sees it.
    job_path: String,
    transfer: Option<Transfer>,
}

fn place(d: &DeviceRun) -> Result<Placed, DeviceError> {
    let name = &d.device.name;
    match &d.device.transport {
        Via::Local { emulator, target } => {
            let (agent, engine) = local_programs(target.as_deref())?;
            let wrapper = emulator.clone().unwrap_or_default();
            let workdir = match &d.device.workdir {
                Some(w) => PathBuf::from(w).join("runs").join(&d.run_id),
                None => models::cache_dir()?
                    .parent()
                    .map(|p| p.join("work").join(&d.run_id).join(name))
                    .ok_or_else(|| DeviceError::Setup("no cache directory".into()))?,
            };
            let models = d
                .prepared
                .iter()
                .map(|(k, m)| (k.clone(), m.path.display().to_string()))
                .collect();
            let job = job(
                d,
                engine.display().to_string(),
                wrapper.clone(),
                workdir.display().to_string(),
                &models,
            );
            let job_path = write_job(d, &job)?;
            let mut agent_argv = wrapper;
            agent_argv.push(agent.display().to_string());
            Ok(Placed {
                transport: Box::new(LocalTransport),
                agent: agent_argv,
                job_path: job_path.display().to_string(),
                transfer: None,
            })
        }
        // Every remote transport: `transport::connect` opens it, the trait says the rest.
        _ => {
            d.bar.set_message("connecting");
            let Reached {
                mut t,
                bundle: b,
                workdir,
            } = reach(&d.device, d.connect_timeout)?;
            let mut artifacts: Vec<Artifact> = bundle::PROGRAMS
                .iter()
                .map(|p| program_artifact(&b, p))
                .collect();
            let keys: Vec<&(String, String)> = d.prepared.keys().collect();
            for k in &keys {
                let m = &d.prepared[*k];
                artifacts.push(Artifact {
                    local: m.path.clone(),
                    sha256: m.sha256.clone(),
                    bytes: std::fs::metadata(&m.path).map(|md| md.len()).unwrap_or(0),
                    mode: 0o644,
                });
            }
            d.bar.set_message("pushing binaries and models");
            let blobs = format!("{workdir}/blobs");
            let (paths, transfer) = push::ensure(t.as_mut(), &blobs, &artifacts)?;
            let models = keys
                .iter()
                .zip(&paths[bundle::PROGRAMS.len()..])
                .map(|(k, p)| ((*k).clone(), p.clone()))
                .collect();
            let run_dir = format!("{workdir}/runs/{}", d.run_id);
            let job = job(d, paths[1].clone(), Vec::new(), run_dir, &models);
            let local_job = write_job(d, &job)?;
            let jobs_dir = format!("{workdir}/jobs");
            let job_path = format!("{jobs_dir}/{}.json", d.run_id);
            let mkdir = t.exec(&["mkdir", "-p", &jobs_dir], d.connect_timeout)?;
            if !mkdir.success() {
                return Err(DeviceError::Setup(format!(
                    "{}: cannot create {jobs_dir}: {}",
                    t.describe(),
                    mkdir.stderr_text().trim()
                )));
            }
            t.push(&local_job, &job_path, 0o644)?;
            Ok(Placed {
                transport: t,
                agent: vec![paths[0].clone()],
                job_path,
                transfer: Some(transfer),
            })
        }
    }
}

/// The agent and engine a local device runs: the controller's own build, or a bundle (for an
/// emulator-wrapped cross target).
fn local_programs(target: Option<&str>) -> Result<(PathBuf, PathBuf), DeviceError> {
    match target {
        None => Ok((bins::agent()?, bins::engine()?)),
        Some(t) => {
            let b =
                bundle::find(&bundle::bundles_dir(), t).map_err(|source| DeviceError::Bundle {
                    device: "this machine".into(),
                    target: t.to_string(),
                    source: Box::new(source),
                })?;
            Ok((b.path("meltbench-agent"), b.path("meltbench-engine")))
        }
    }
}

/// A remote device, connected, with the bundle its ABI needs and its working directory.
struct Reached {
    t: Box<dyn Transport>,
    bundle: bundle::Bundle,
    workdir: String,
}

fn reach(device: &Device, timeout: Duration) -> Result<Reached, DeviceError> {
    let mut t = transport::connect(device, timeout)?;
    let target = t.bundle_target(timeout).map_err(DeviceError::Setup)?;
    let bundle =
        bundle::find(&bundle::bundles_dir(), target).map_err(|source| DeviceError::Bundle {
            device: t.describe(),
            target: target.to_string(),
            source: Box::new(source),
        })?;
    let workdir = match &device.workdir {
        Some(w) => w.trim_end_matches('/').to_string(),
        None => t.default_workdir(timeout).map_err(DeviceError::Setup)?,
    };
    Ok(Reached { t, bundle, workdir })
}

fn program_artifact(b: &bundle::Bundle, program: &str) -> Artifact {
    let f = b.file(program).expect("bundle::find checked both programs");
    Artifact {
        local: b.path(program),
        sha256: f.sha256.clone(),
        bytes: f.bytes,
        mode: 0o755,
    }
}

/// Runs the agent's `probe` on a device (pushing the agent first when it is remote).
pub fn probe(device: &Device, timeout: Duration) -> Result<DeviceInfo, DeviceError> {
    let (mut t, argv): (Box<dyn Transport>, Vec<String>) = match &device.transport {
        Via::Local { emulator, target } => {
            let (agent, _) = local_programs(target.as_deref())?;
            let mut argv = emulator.clone().unwrap_or_default();
            argv.push(agent.display().to_string());
            (Box::new(LocalTransport), argv)
        }
        // Every remote transport: `transport::connect` opens it, the trait says the rest.
        _ => {
            let mut r = reach(device, timeout)?;
            let agent = program_artifact(&r.bundle, "meltbench-agent");
            let blobs = format!("{}/blobs", r.workdir);
            let (paths, _) = push::ensure(r.t.as_mut(), &blobs, &[agent])?;
            (r.t, paths)
        }
    };
    let mut argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    argv.push("probe");
    let o = t.exec(&argv, timeout)?;
    if !o.success() {
        return Err(DeviceError::Probe(format!(
            "{}: the agent's probe failed ({:?}): {}",
            t.describe(),
            o.status,
            transport::tail(&o.stderr_text(), 5)
        )));
    }
    serde_json::from_slice(&o.stdout).map_err(|e| {
        DeviceError::Probe(format!(
            "{}: the agent's probe printed something else than device info ({e}); is the bundle from this checkout?",
            t.describe()
        ))
    })
}

/// The agent job for this device, with device-side paths.
fn job(
    d: &DeviceRun,
    engine: String,
    engine_wrapper: Vec<String>,
    workdir: String,
    model_paths: &BTreeMap<(String, String), String>,
) -> AgentJob {
    AgentJob {
        protocol: PROTOCOL_VERSION.to_string(),
        run_id: d.run_id.clone(),
        engine,
        engine_wrapper,
        workdir,
        cells: d
            .cells
            .iter()
            .map(|c| {
                let key = c.model_key();
                let m = &d.prepared[&key];
                Cell {
                    id: c.id.clone(),
                    model: c.model.label(),
                    model_path: model_paths[&key].clone(),
                    model_sha256: m.sha256.clone(),
                    precision: m.precision.clone(),
                    scenario: c.scenario.clone(),
                    threads: c.threads.unwrap_or(0),
                    state: c.state.to_string(),
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
                        chat: c.chat,
                        depth: c.depth,
                    },
                    cold_start_runs: c.cold_start,
                    sessions: c.sessions,
                    timeout_s: c.timeout_s,
                    state_timeout_s: c.state_timeout_s,
                }
            })
            .collect(),
    }
}

/// Keeps the exact job in the run directory (`jobs/<device>.json`), for reproduction.
fn write_job(d: &DeviceRun, job: &AgentJob) -> Result<PathBuf, DeviceError> {
    let store_err = |path: &std::path::Path| {
        let path = path.display().to_string();
        move |source| DeviceError::RunStore { path, source }
    };
    let jobs_dir = d.store.dir.join("jobs");
    std::fs::create_dir_all(&jobs_dir).map_err(store_err(&jobs_dir))?;
    let path = jobs_dir.join(format!("{}.json", d.device.name));
    std::fs::write(&path, serde_json::to_vec_pretty(job).expect("serialisable"))
        .map_err(store_err(&path))?;
    Ok(path)
}

/// Streams the agent's events into the device's log; returns its probe.
fn run_agent(d: &DeviceRun, mut placed: Placed) -> Result<Option<DeviceInfo>, DeviceError> {
    let name = &d.device.name;
    let bar = &d.bar;
    let mut log = d
        .store
        .event_log(name)
        .map_err(|source| DeviceError::RunStore {
            path: d.store.dir.join("events").display().to_string(),
            source,
        })?;
    let mut info = None;
    let mut protocol_error = None;
    let mut done = false;
    let mut argv: Vec<&str> = placed.agent.iter().map(String::as_str).collect();
    argv.extend(["run", "--job", &placed.job_path]);
    bar.set_message("starting the agent");
    let (status, stderr) = placed
        .transport
        .stream(&argv, &mut |line| {
            // Raw line first: whatever happens next, what the agent said is kept.
            let _ = writeln!(log, "{line}");
            let _ = log.flush();
            match serde_json::from_str::<AgentEvent>(line) {
                Ok(AgentEvent::Hello {
                    protocol, device, ..
                }) => {
                    if protocol_major(&protocol) != protocol_major(PROTOCOL_VERSION) {
                        protocol_error = Some(DeviceError::Protocol {
                            agent: protocol.clone(),
                            ours: PROTOCOL_VERSION.to_string(),
                        });
                    }
                    info = Some(device);
                }
                Ok(AgentEvent::CellStart { cell, index, of }) => {
                    bar.set_message(format!("cell {}/{of}: {cell}", index + 1))
                }
                Ok(AgentEvent::Pass { .. } | AgentEvent::ColdStart { .. }) => bar.inc(1),
                Ok(AgentEvent::CellError {
                    cell,
                    message,
                    completed_passes,
                }) => say(
                    bar,
                    format!("error: {name}: {cell}: {message} ({completed_passes} passes kept)"),
                ),
                Ok(AgentEvent::StateReached {
                    cell,
                    state,
                    waited_s,
                    temp_c,
                    indicator,
                    ..
                }) => say(
                    bar,
                    format!(
                        "{name}: {cell}: {state} after {waited_s:.0} s{}{}",
                        temp_c.map(|t| format!(", {t:.1} °C")).unwrap_or_default(),
                        indicator.map(|i| format!(", {i}")).unwrap_or_default()
                    ),
                ),
                Ok(AgentEvent::Done { .. }) => done = true,
                Ok(AgentEvent::Warning { message }) => {
                    say(bar, format!("warning: {name}: {message}"))
                }
                Ok(_) => {}
                Err(e) => say(
                    bar,
                    format!("warning: {name}: unreadable agent line ({e}): {line}"),
                ),
            }
        })
        .map_err(|source| DeviceError::AgentStream {
            device: placed.transport.describe(),
            source,
        })?;
    if let Some(e) = protocol_error {
        return Err(e);
    }
    // After `done`, a non-zero exit only repeats that some cells failed, which their own
    // events already say; without it, the device itself is in trouble.
    if !done {
        let status = status.map_or("killed by a signal or cut off".to_string(), |c| {
            format!("exit status {c}")
        });
        return Err(DeviceError::AgentStopped { status, stderr });
    }
    Ok(info)
}
