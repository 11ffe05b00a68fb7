//! One device's part of a run: reach it, put the right binaries and models on it (through the
//! push cache), run the agent over the job, and store every event line as it arrives.
//!
//! A device that fails does so alone: its error is returned for the run's end summary and the
//! other devices go on. Whatever the agent said before a failure is already in the event log.

use crate::bins;
use crate::bundle;
use crate::device_error::DeviceError;
use crate::devices::{Device, Transport as Via};
use crate::engine_programs::{self, Program};
use crate::models;
use crate::prepare::PreparedModel;
use crate::push::{self, Artifact};
use crate::slots::Slots;
use crate::store::{RunStore, Transfer};
use crate::suite::{EngineDef, SuiteCell};
use crate::transport::{self, local::LocalTransport, Transport};
use indicatif::ProgressBar;
use meltbench_protocol::agent::{AgentEvent, AgentJob, Cell, DeviceInfo, EngineProgram};
use meltbench_protocol::engine::EngineJob;
use meltbench_protocol::{protocol_major, PROTOCOL_VERSION};
use meltbench_reports::runstore::attempt_suffix;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Prepared models by (model, precision).
pub type Prepared = BTreeMap<(String, String), PreparedModel>;

/// Everything one device task needs; owned, so the task can run on its own thread.
pub struct DeviceRun {
    pub store: Arc<RunStore>,
    pub run_id: String,
    pub device: Device,
    /// This device's cells in this attempt (all of them in a fresh run; those with something
    /// missing when resuming).
    pub cells: Arc<Vec<SuiteCell>>,
    /// The suite's engines (cells name them).
    pub engines: Arc<Vec<EngineDef>>,
    /// Where each cell starts (by cell id) when resuming; absent = from the beginning.
    pub starts: BTreeMap<String, Start>,
    /// 1-based: the run's first go, or a `--resume`.
    pub attempt: usize,
    pub prepared: Arc<Prepared>,
    pub bar: ProgressBar,
    /// Bound on connecting and on each setup command.
    pub connect_timeout: Duration,
}

/// Where a resumed cell picks up: its first missing cold start and first incomplete session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Start {
    pub cold_start: usize,
    pub session: usize,
}

/// The device-side directory name of an attempt's job (its `events.jsonl`, `agent.pid`).
pub fn attempt_dir(run_id: &str, attempt: usize) -> String {
    format!("{run_id}{}", attempt_suffix(attempt))
}

/// How a device's part ended.
#[derive(Debug, Default)]
pub struct DeviceOutcome {
    pub info: Option<DeviceInfo>,
    pub transfer: Option<Transfer>,
    /// Why the device failed as a whole (cells that failed say so in their own events).
    pub error: Option<DeviceError>,
    /// Event lines taken back from the device's own log after the stream broke.
    pub recovered_lines: usize,
}

/// Passes, warm-ups and cold starts the device will report: the progress bar's length.
pub fn total_steps(cells: &[SuiteCell], starts: &BTreeMap<String, Start>) -> u64 {
    cells
        .iter()
        .map(|c| {
            let s = starts.get(&c.id).copied().unwrap_or_default();
            ((c.warmup + c.passes) * c.sessions.max(1).saturating_sub(s.session)
                + c.cold_start.saturating_sub(s.cold_start)) as u64
        })
        .sum()
}

/// Devices being reached and stocked at once (see [`run`]).
pub const SETUP_AT_ONCE: usize = 8;
static SETUP_SLOTS: Slots = Slots::new(SETUP_AT_ONCE);

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
    if crate::stop::requested() {
        outcome.error = Some(DeviceError::Stopped);
        return outcome;
    }
    d.bar.set_message("waiting to connect");
    let placed = {
        // Reaching and stocking a device is bounded in number at once: 64 devices pushing
        // their files at the same moment share one link (and, on a test bed, one CPU), and
        // each setup command has a deadline. Measuring is not bounded.
        let _slot = SETUP_SLOTS.take();
        d.bar.set_message("connecting");
        match place(d) {
            Ok(p) => p,
            Err(e) => {
                outcome.error = Some(e);
                return outcome;
            }
        }
    };
    outcome.transfer = placed.transfer;
    if let Some(t) = &placed.transfer {
        say(&d.bar, format!("{}: {t}", d.device.name));
    }
    let remote_log = format!("{}/events.jsonl", placed.run_dir);
    match run_agent(d, placed) {
        Ok(info) => outcome.info = info,
        Err(e) => {
            if crate::stop::requested() {
                outcome.error = Some(DeviceError::Stopped);
            } else {
                // The agent keeps its own log: take back what the stream lost.
                d.bar.set_message("recovering events from the device");
                outcome.recovered_lines = recover_events(d, &remote_log);
                outcome.error = Some(e);
            }
        }
    }
    outcome
}

/// Fills this attempt's local log from the device's own (see [`crate::recover`]); the lines
/// recovered.
fn recover_events(d: &DeviceRun, remote_log: &str) -> usize {
    let local = d.store.event_log_path(&d.device.name, d.attempt);
    match crate::recover::fill(
        &d.device,
        remote_log,
        &local,
        d.connect_timeout,
        &crate::recover::BACKOFF,
    ) {
        Ok(crate::recover::Recovered::Lines(n)) => {
            say(
                &d.bar,
                format!(
                    "{}: recovered {n} event lines from the device's own log",
                    d.device.name
                ),
            );
            n
        }
        Ok(crate::recover::Recovered::Nothing) => 0,
        Err(e) => {
            say(
                &d.bar,
                format!(
                    "warning: {}: could not recover events from the device: {e}",
                    d.device.name
                ),
            );
            0
        }
    }
}

/// The device reached and stocked: its transport, how to start the agent, and the job.
struct Placed {
    transport: Box<dyn Transport>,
    /// The agent's command line up to its arguments: an emulator wrapper, then the agent.
    agent: Vec<String>,
    /// Where the job file is, as the agent sees it.
    job_path: String,
    /// The agent's directory for this attempt on the device (its `events.jsonl`, `agent.pid`).
    run_dir: String,
    transfer: Option<Transfer>,
}

fn place(d: &DeviceRun) -> Result<Placed, DeviceError> {
    match &d.device.transport {
        Via::Local { emulator, target } => {
            let (agent, engine) = local_programs(target.as_deref())?;
            let wrapper = emulator.clone().unwrap_or_default();
            let workdir = local_run_dir(&d.device, &attempt_dir(&d.run_id, d.attempt))?;
            let models = d
                .prepared
                .iter()
                .map(|(k, m)| (k.clone(), m.path.display().to_string()))
                .collect();
            let host = target
                .clone()
                .unwrap_or_else(|| std::env::consts::ARCH.to_string());
            let agent_path = agent.display().to_string();
            let others = engine_programs::for_device(&d.engines, &host)?
                .into_iter()
                .map(|p| match p {
                    Program::Local { name, path } => (name, plain(path.display().to_string())),
                    Program::OnDevice { name, path } => (name, plain(path)),
                    Program::Agent { name, args } => (name, adapter(&agent_path, args)),
                    Program::AgentWithFiles { name, files, tools } => {
                        let args = Program::in_place(&tools, &files);
                        (name, adapter(&agent_path, args))
                    }
                })
                .collect();
            let job = job(
                d,
                engine.display().to_string(),
                wrapper.clone(),
                workdir.display().to_string(),
                &models,
                others,
            );
            let job_path = write_job(d, &job)?;
            let mut agent_argv = wrapper;
            agent_argv.push(agent.display().to_string());
            Ok(Placed {
                transport: Box::new(LocalTransport),
                agent: agent_argv,
                job_path: job_path.display().to_string(),
                run_dir: workdir.display().to_string(),
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
            let mut others = BTreeMap::new();
            let mut pushed_engines = Vec::new();
            let mut adapters = Vec::new();
            // Adapters whose files are pushed: their name, tools, and the files' names and
            // places in `artifacts`.
            let mut with_files = Vec::new();
            for p in engine_programs::for_device(&d.engines, &b.manifest.target)? {
                match p {
                    Program::Local { name, path } => {
                        let artifact = engine_programs::artifact(&name, &path)?;
                        pushed_engines.push((name, artifacts.len()));
                        artifacts.push(artifact);
                    }
                    Program::OnDevice { name, path } => {
                        others.insert(name, plain(path));
                    }
                    Program::Agent { name, args } => {
                        adapters.push((name, args));
                    }
                    Program::AgentWithFiles { name, files, tools } => {
                        let mut placed = Vec::new();
                        for (file, path) in files {
                            placed.push((file, artifacts.len()));
                            artifacts.push(engine_programs::artifact(&name, &path)?);
                        }
                        with_files.push((name, tools, placed));
                    }
                }
            }
            let first_model = artifacts.len();
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
                .zip(&paths[first_model..])
                .map(|(k, p)| ((*k).clone(), p.clone()))
                .collect();
            others.extend(
                pushed_engines
                    .into_iter()
                    .map(|(name, at)| (name, plain(paths[at].clone()))),
            );
            // paths[0] is the agent (bundle::PROGRAMS).
            others.extend(
                adapters
                    .into_iter()
                    .map(|(name, args)| (name, adapter(&paths[0], args))),
            );
            for (name, tools, placed) in with_files {
                let on_device: Vec<(String, String)> = placed
                    .into_iter()
                    .map(|(file, at)| (file, paths[at].clone()))
                    .collect();
                others.insert(name, adapter(&paths[0], tools.adapter_args(&on_device)));
            }
            let run_dir = remote_run_dir(&workdir, &d.run_id, d.attempt);
            let job = job(
                d,
                paths[1].clone(),
                Vec::new(),
                run_dir.clone(),
                &models,
                others,
            );
            let local_job = write_job(d, &job)?;
            let jobs_dir = format!("{workdir}/jobs");
            let job_path = remote_job_path(&workdir, &d.run_id, d.attempt);
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
                run_dir,
                transfer: Some(transfer),
            })
        }
    }
}

/// Where a local device's agent keeps an attempt's files.
fn local_run_dir(device: &Device, attempt_dir: &str) -> Result<PathBuf, DeviceError> {
    match &device.workdir {
        Some(w) => Ok(PathBuf::from(w).join("runs").join(attempt_dir)),
        None => models::cache_dir()?
            .parent()
            .map(|p| p.join("work").join(attempt_dir).join(&device.name))
            .ok_or_else(|| DeviceError::Setup("no cache directory".into())),
    }
}

/// Where an attempt's agent keeps its files on a device.
pub struct AgentFiles {
    /// Its directory: `events.jsonl`, `agent.pid`.
    pub run_dir: String,
    /// Its job file (on its command line).
    pub job: String,
}

impl AgentFiles {
    pub fn events(&self) -> String {
        format!("{}/events.jsonl", self.run_dir)
    }

    pub fn agent(&self) -> crate::stop::AgentRef {
        crate::stop::AgentRef {
            pid_file: format!("{}/agent.pid", self.run_dir),
            job: self.job.clone(),
        }
    }
}

/// Where attempt `attempt` of the run in `store_dir` put its agent's files on `device`.
pub fn agent_files(
    device: &Device,
    store_dir: &Path,
    run_id: &str,
    attempt: usize,
    timeout: Duration,
) -> Result<AgentFiles, DeviceError> {
    Ok(match &device.transport {
        Via::Local { .. } => AgentFiles {
            run_dir: local_run_dir(device, &attempt_dir(run_id, attempt))?
                .display()
                .to_string(),
            job: local_job_path(store_dir, &device.name, attempt)
                .display()
                .to_string(),
        },
        _ => {
            let workdir = match &device.workdir {
                Some(w) => w.trim_end_matches('/').to_string(),
                None => transport::connect(device, timeout)?
                    .default_workdir(timeout)
                    .map_err(DeviceError::Setup)?,
            };
            AgentFiles {
                run_dir: remote_run_dir(&workdir, run_id, attempt),
                job: remote_job_path(&workdir, run_id, attempt),
            }
        }
    })
}

fn remote_job_path(workdir: &str, run_id: &str, attempt: usize) -> String {
    format!("{workdir}/jobs/{}.json", attempt_dir(run_id, attempt))
}

/// The job as kept in the run directory; the local device's agent reads it there.
fn local_job_path(store_dir: &Path, device: &str, attempt: usize) -> PathBuf {
    store_dir
        .join("jobs")
        .join(format!("{device}{}.json", attempt_suffix(attempt)))
}

fn remote_run_dir(workdir: &str, run_id: &str, attempt: usize) -> String {
    format!("{workdir}/runs/{}", attempt_dir(run_id, attempt))
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

/// A contract program started as it is.
fn plain(program: String) -> EngineProgram {
    EngineProgram {
        program,
        args: Vec::new(),
        wrapped: false,
    }
}

/// The agent at `agent` as an adapter: built for the bundle's target, so it runs under the
/// bundled engine's wrapper (an emulator) too.
fn adapter(agent: &str, args: Vec<String>) -> EngineProgram {
    EngineProgram {
        program: agent.to_string(),
        args,
        wrapped: true,
    }
}

/// The agent job for this device, with device-side paths.
fn job(
    d: &DeviceRun,
    engine: String,
    engine_wrapper: Vec<String>,
    workdir: String,
    model_paths: &BTreeMap<(String, String), String>,
    other_engines: BTreeMap<String, EngineProgram>,
) -> AgentJob {
    AgentJob {
        protocol: PROTOCOL_VERSION.to_string(),
        run_id: d.run_id.clone(),
        engine,
        engine_wrapper,
        engines: other_engines,
        workdir,
        cells: d
            .cells
            .iter()
            .map(|c| {
                let key = c.model_key();
                let m = &d.prepared[&key];
                let start = d.starts.get(&c.id).copied().unwrap_or_default();
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
                    engine: c.engine.clone(),
                    interleave: c.interleave,
                    first_cold_start: start.cold_start,
                    first_session: start.session,
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
    let path = local_job_path(&d.store.dir, &d.device.name, d.attempt);
    let jobs_dir = path.parent().expect("a jobs directory");
    std::fs::create_dir_all(jobs_dir).map_err(store_err(jobs_dir))?;
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
        .event_log(name, d.attempt)
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
    let _registered = crate::stop::register(
        &d.device,
        AgentFiles {
            run_dir: placed.run_dir.clone(),
            job: placed.job_path.clone(),
        }
        .agent(),
    );
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
