//! `meltbench-agent run --job FILE`: runs the job's cells in order, supervising one engine
//! process at a time, and turns its output into [`AgentEvent`]s.
//!
//! A cell that fails (engine crash, non-zero exit, timeout) ends with `CellError` and the run goes
//! on: one bad cell must not cost the device's other results, and the passes it completed were
//! already logged and stay valid.
//!
//! A cell's state is established in this order: battery first ([`battery::establish`]:
//! `wait` checks, `drain` loads the device down, `simulate` fakes the level), then the thermal
//! gate (`cool` waits at rest, idle power is measured, `warm`/`hot` pre-heat), then a last
//! battery check (`wait`/`drain`: the level is still within tolerance), then the passes.
//! Battery comes first because draining loads the device with the engine and heats it: done
//! after the thermal gate it would undo `cool`, and a cool wait after it lets the device settle.
//! The battery state is undone (charging back on, overrides reset) when the cell ends, however
//! it ends ([`Guard`]), and on SIGINT/SIGTERM/SIGHUP ([`crate::interrupt`]): then
//! the run stops with [`RunError::Interrupted`]: the interrupted cell ends with `CellError`, a
//! `Warning` names the signal and what was restored, and no `Done` follows.

use crate::arms;
use crate::coldstart;
use crate::engine_process::{engine, EngineSpec, Launch};
use crate::events::EventLog;
use crate::fsroot::FsRoot;
use crate::interrupt::{self, signal_name};
use crate::model_check::ModelCheck;
use crate::probe;
use crate::states::battery;
use crate::states::request::{self, Requested};
use crate::states::thermal;
use crate::telemetry::sampler::monotonic_ns;
use crate::telemetry::{self, cmd::Commands, sampler::Sampler};
use crate::undo::Guard;
use meltbench_protocol::agent::{AgentEvent, AgentJob, Cell, PassTelemetry, BUNDLED_ENGINE};
use meltbench_protocol::engine::{
    DoneRecord, EngineRecord, LoadRecord, PassRecord, UNMEASURED_PEAK_RSS,
};
use meltbench_protocol::{protocol_major, PROTOCOL_VERSION};
use std::fmt;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub enum RunError {
    /// The job cannot be run as given (unreadable, malformed, other protocol): exit 2.
    BadJob(String),
    /// The agent could not do its own work (e.g. create the work directory): exit 1.
    Failed(String),
    /// A signal (SIGINT, SIGTERM, SIGHUP) stopped the run after the device was restored:
    /// exit 128 + the signal.
    Interrupted(i32),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::BadJob(m) | RunError::Failed(m) => f.write_str(m),
            RunError::Interrupted(sig) => write!(f, "interrupted by {}", signal_name(*sig)),
        }
    }
}

pub struct Summary {
    pub cells_ok: usize,
    pub cells_failed: usize,
}

/// Reads and checks a job file. The protocol is checked before the shape, so a job from a newer
/// controller is refused for the right reason rather than for a field this agent does not know.
pub fn read_job(path: &Path) -> Result<AgentJob, RunError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        RunError::BadJob(format!("cannot read the job file {}: {e}", path.display()))
    })?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        RunError::BadJob(format!("the job file {} is not JSON: {e}", path.display()))
    })?;
    let theirs = value.get("protocol").and_then(|v| v.as_str()).unwrap_or("");
    if theirs.is_empty() || protocol_major(theirs) != protocol_major(PROTOCOL_VERSION) {
        return Err(RunError::BadJob(format!(
            "the job was written for protocol {theirs:?}, but this agent speaks protocol \
             {PROTOCOL_VERSION}; update the agent or the controller so both have the same \
             major version (the controller pushes the agent bundled with it)"
        )));
    }
    serde_json::from_value(value).map_err(|e| {
        RunError::BadJob(format!(
            "the job file {} is not a valid job: {e}",
            path.display()
        ))
    })
}

/// The agent's process id, in the job's work directory while it runs.
pub const PID_FILE: &str = "agent.pid";

pub fn run(job: &AgentJob, root: &FsRoot) -> Result<Summary, RunError> {
    let workdir = PathBuf::from(&job.workdir);
    std::fs::create_dir_all(&workdir).map_err(|e| {
        RunError::Failed(format!(
            "cannot create the work directory {}: {e}",
            workdir.display()
        ))
    })?;
    // The controller stops a remote agent through a second connection (`kill -INT`): its own
    // connection may be the one that broke, and adb and ssh do not forward signals.
    let pid_path = workdir.join(PID_FILE);
    std::fs::write(&pid_path, std::process::id().to_string())
        .map_err(|e| RunError::Failed(format!("cannot write {}: {e}", pid_path.display())))?;
    let events_path = workdir.join("events.jsonl");
    let log = EventLog::open(&events_path, io::stdout())
        .map_err(|e| RunError::Failed(format!("cannot open {}: {e}", events_path.display())))?;
    let device = probe::probe(root);
    // One sampling thread for the whole run, started only when the device has something to
    // sample; its samples are cut to each pass's CLOCK_MONOTONIC window.
    let cmds = Commands::from_env(root);
    let mut discovery = telemetry::discover(root, &cmds);
    let android = discovery.family == telemetry::Family::Android;
    let sampler = (!discovery.groups.is_empty())
        .then(|| Sampler::start(&mut discovery, telemetry::sampler::Config::default()));
    let mut runner = Runner {
        job,
        root,
        workdir,
        can_drop_caches: device.can_drop_caches,
        log,
        sampler,
        idle_w: None,
        thermal: thermal::Tracker::default(),
        cmds,
        android,
        models: ModelCheck::default(),
    };
    runner.log.emit(&AgentEvent::Hello {
        protocol: PROTOCOL_VERSION.to_string(),
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        run_id: job.run_id.clone(),
        device,
    });
    let mut summary = Summary {
        cells_ok: 0,
        cells_failed: 0,
    };
    for group in arms::groups(&job.cells) {
        if interrupt::signalled().is_none() {
            for ok in runner.group(group) {
                if ok {
                    summary.cells_ok += 1;
                } else {
                    summary.cells_failed += 1;
                }
            }
        }
        if let Some(sig) = interrupt::signalled() {
            runner.log.emit(&AgentEvent::Warning {
                message: interrupt::message(sig),
            });
            return Err(RunError::Interrupted(sig));
        }
    }
    if let Some(s) = runner.sampler.take() {
        let cost = s.stop();
        if cost.core_pct() > 1.0 {
            runner.log.emit(&AgentEvent::Warning {
                message: format!(
                    "the telemetry sampler used {:.2}% of one core ({} reads, {} deadlines missed); \
                     its readings may have disturbed the passes",
                    cost.core_pct(),
                    cost.reads,
                    cost.missed
                ),
            });
        }
    }
    runner.log.emit(&AgentEvent::Done {
        cells_ok: summary.cells_ok,
        cells_failed: summary.cells_failed,
    });
    Ok(summary)
}

struct Runner<'a> {
    job: &'a AgentJob,
    root: &'a FsRoot,
    workdir: PathBuf,
    can_drop_caches: bool,
    log: EventLog<io::Stdout>,
    sampler: Option<Sampler>,
    /// Device power at rest measured before the current cell's passes.
    idle_w: Option<f64>,
    /// The idle temperature reference of the thermal states.
    thermal: thermal::Tracker,
    /// For the battery states' commands (dumpsys, setprop).
    cmds: Commands,
    android: bool,
    models: ModelCheck,
}

/// How the passes of a cell in a battery state are labelled: simulated or not, and the
/// simulated level (a real level is read per pass).
#[derive(Clone, Copy)]
struct BatteryLabel {
    simulated: bool,
    level: Option<u8>,
}

/// Seconds of rest before each cell over which idle power is measured (when the device has a
/// power source); `MELTBENCH_IDLE_S`, 0 turns it off. The reference recommends 30-60 s for a
/// stable baseline; the default keeps cells short.
const IDLE_ENV: &str = "MELTBENCH_IDLE_S";
const IDLE_DEFAULT_S: f64 = 10.0;

impl Runner<'_> {
    /// Runs a group of cells (one cell, or the engines of one comparison) in one device state;
    /// for each, whether it ended with `CellEnd`. The battery state is undone after them.
    fn group(&mut self, group: Range<usize>) -> Vec<bool> {
        let job = self.job;
        let members: Vec<(usize, &Cell)> = group.map(|i| (i, &job.cells[i])).collect();
        for &(index, cell) in &members {
            self.log.emit(&AgentEvent::CellStart {
                cell: cell.id.clone(),
                index,
                of: job.cells.len(),
            });
        }
        let mut guard = Guard::default();
        let ok = self.group_in_state(&members, &mut guard);
        let failed = guard.restore();
        if !failed.is_empty() {
            let ids: Vec<&str> = members.iter().map(|(_, c)| c.id.as_str()).collect();
            self.log.emit(&AgentEvent::Warning {
                message: format!(
                    "cell {}: restoring the battery state failed: {}",
                    ids.join(", "),
                    failed.join("; ")
                ),
            });
        }
        ok
    }

    /// Model checks, the shared state, then cold starts and sessions with the members taking
    /// turns ([`arms::order`]). A member that fails drops out; the others go on.
    fn group_in_state(&mut self, members: &[(usize, &Cell)], guard: &mut Guard) -> Vec<bool> {
        let mut live = vec![true; members.len()];
        for (k, &(_, cell)) in members.iter().enumerate() {
            let checked = program(self.job, cell)
                .map(|_| ())
                .and_then(|()| self.models.verify(&cell.model_path, &cell.model_sha256));
            if let Err(message) = checked {
                live[k] = self.cell_error(cell, message);
            }
        }
        let Some(lead) = live.iter().position(|&l| l) else {
            return live;
        };
        // The controller groups only cells whose state is the same.
        let (index, cell) = members[lead];
        let label = match self.states(index, cell, guard) {
            Ok((reached, label)) => {
                for event in reached {
                    for (k, &(_, c)) in members.iter().enumerate() {
                        if live[k] {
                            self.log.emit(&for_cell(&event, &c.id));
                        }
                    }
                }
                label
            }
            Err(message) => {
                for (k, &(_, c)) in members.iter().enumerate() {
                    if live[k] {
                        live[k] = self.cell_error(c, message.clone());
                    }
                }
                return live;
            }
        };
        let rounds = members.iter().map(|(_, c)| c.cold_start_runs).max();
        for run in 0..rounds.unwrap_or(0) {
            for k in arms::order(members.len(), run) {
                let (index, cell) = members[k];
                if !live[k] || run < cell.first_cold_start || run >= cell.cold_start_runs {
                    continue;
                }
                if let Err(message) = self.cold_start(index, cell, run) {
                    let message = format!(
                        "cold start {} of {}: {message}",
                        run + 1,
                        cell.cold_start_runs
                    );
                    live[k] = self.cell_error(cell, message);
                }
                // Stopping: no other cold start begins, and no session.
                if interrupt::signalled().is_some() {
                    return vec![false; members.len()];
                }
            }
        }
        let mut tally: Vec<Tally> = members.iter().map(|_| Tally::default()).collect();
        let rounds = members.iter().map(|(_, c)| c.sessions.max(1)).max();
        for session in 0..rounds.unwrap_or(0) {
            for k in arms::order(members.len(), session) {
                let (index, cell) = members[k];
                let sessions = cell.sessions.max(1);
                if !live[k] || session < cell.first_session || session >= sessions {
                    continue;
                }
                let t = &mut tally[k];
                match self.session(index, cell, session, t.measured, label) {
                    Ok(s) => {
                        t.measured += s.measured;
                        t.peak = t.peak.max(s.peak_rss_bytes);
                        t.ru_max = t.ru_max.max(s.ru_maxrss_bytes);
                    }
                    Err((message, partial)) => {
                        let of = if sessions > 1 {
                            format!("session {} of {sessions}: ", session + 1)
                        } else {
                            String::new()
                        };
                        self.log.emit(&AgentEvent::CellError {
                            cell: cell.id.clone(),
                            message: format!("{of}{message}"),
                            completed_passes: t.measured + partial,
                        });
                        live[k] = false;
                    }
                }
                // Stopping: no other member starts a session.
                if interrupt::signalled().is_some() {
                    return vec![false; members.len()];
                }
            }
        }
        for (k, &(_, cell)) in members.iter().enumerate() {
            if live[k] {
                self.log.emit(&AgentEvent::CellEnd {
                    cell: cell.id.clone(),
                    passes: tally[k].measured,
                    peak_rss_bytes: tally[k].peak,
                    ru_maxrss_bytes: tally[k].ru_max,
                });
            }
        }
        live
    }

    /// Brings the device into the cell's state: battery first, then the thermal gate, with idle
    /// power measured at rest between them (see the module comment). The `StateReached`
    /// events to report, and how passes are labelled.
    fn states(
        &mut self,
        index: usize,
        cell: &Cell,
        guard: &mut Guard,
    ) -> Result<(Vec<AgentEvent>, Option<BatteryLabel>), String> {
        let (want, battery_want) = request::parse(&cell.state).map(|w| (w.thermal, w.battery))?;
        self.thermal.observe(self.sampler.as_ref());
        let (mut reached, mut label) = (Vec::new(), None);
        if let Some(b) = battery_want {
            let (event, l) = self.establish_battery(index, cell, b, guard)?;
            reached.push(event);
            label = Some(l);
        }
        // Cooling down is rest too, so idle power is measured after it; pre-heating comes last,
        // so the passes start from the state reached.
        if want == Requested::Cool {
            reached.push(self.establish(index, cell, want)?);
        }
        // At rest, before this cell's cold starts and passes load the device.
        self.idle_w = self.idle_power();
        if matches!(want, Requested::Warm | Requested::Hot) {
            reached.push(self.establish(index, cell, want)?);
        }
        // The thermal gate took time (and pre-heating drains): the real level must still hold.
        if let Some(b) = battery_want.filter(|b| b.mode != battery::Mode::Simulate) {
            battery::check_level(b, self.sampler.as_ref())
                .map_err(|message| format!("after the thermal state: {message}"))?;
        }
        Ok((reached, label))
    }

    /// Establishes the cell's battery state: its `StateReached` and the passes' label.
    fn establish_battery(
        &mut self,
        index: usize,
        cell: &Cell,
        want: battery::Want,
        guard: &mut Guard,
    ) -> Result<(AgentEvent, BatteryLabel), String> {
        let spec = EngineSpec {
            launch: bundled(self.job),
            workdir: &self.workdir,
            stem: format!("cell-{index:03}-drain"),
        };
        let result = battery::establish(
            want,
            cell,
            self.sampler.as_ref(),
            self.root,
            &self.cmds,
            self.android,
            &spec,
            guard,
        );
        if let Some(s) = &self.sampler {
            s.trim_before(monotonic_ns());
        }
        let r = result?;
        let event = AgentEvent::StateReached {
            cell: cell.id.clone(),
            state: want.name(),
            waited_s: r.waited_s,
            temp_c: None,
            reference_temp_c: None,
            thermal_status: None,
            indicator: r.method.map(|m| format!("charging disabled: {m}")),
            battery_level: Some(r.level),
            battery_mode: Some(want.mode.name().to_string()),
        };
        let label = BatteryLabel {
            simulated: r.simulated,
            level: r.simulated.then_some(r.level),
        };
        Ok((event, label))
    }

    /// `CellError` for a cell that never reached its passes; false, the cell's outcome.
    fn cell_error(&mut self, cell: &Cell, message: String) -> bool {
        self.log.emit(&AgentEvent::CellError {
            cell: cell.id.clone(),
            message,
            completed_passes: 0,
        });
        false
    }

    /// Establishes the cell's thermal state: its `StateReached`.
    fn establish(
        &mut self,
        index: usize,
        cell: &Cell,
        want: Requested,
    ) -> Result<AgentEvent, String> {
        let spec = EngineSpec {
            launch: bundled(self.job),
            workdir: &self.workdir,
            stem: format!("cell-{index:03}-preheat"),
        };
        let r = thermal::establish(
            want,
            cell,
            self.sampler.as_ref(),
            self.root,
            &mut self.thermal,
            &spec,
        )?;
        Ok(AgentEvent::StateReached {
            cell: cell.id.clone(),
            state: want.name().to_string(),
            waited_s: r.waited_s,
            temp_c: r.temp_c,
            reference_temp_c: r.reference_temp_c,
            thermal_status: r.thermal_status,
            indicator: r.indicator,
            battery_level: None,
            battery_mode: None,
        })
    }

    /// Average device power over a rest period, when the device has a power source.
    fn idle_power(&self) -> Option<f64> {
        let sampler = self.sampler.as_ref()?;
        sampler.power.as_ref()?;
        let secs = std::env::var(IDLE_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite())
            .unwrap_or(IDLE_DEFAULT_S);
        if secs <= 0.0 {
            return None;
        }
        let start = monotonic_ns();
        interrupt::sleep(Duration::from_secs_f64(secs));
        let end = monotonic_ns();
        sampler.wait_past(end);
        let idle = sampler.pass(start, end).power.ok().map(|st| st.avg_w);
        sampler.trim_before(end);
        idle
    }

    fn cold_start(&mut self, index: usize, cell: &Cell, run: usize) -> Result<(), String> {
        let eviction =
            coldstart::evict(self.root, Path::new(&cell.model_path), self.can_drop_caches);
        let mut load: Option<LoadRecord> = None;
        let mut pass: Option<PassRecord> = None;
        let launch = program(self.job, cell)?;
        let log = &mut self.log;
        let fin = engine(
            launch,
            &self.workdir,
            cell,
            &coldstart::cold_job(&cell.engine_job),
            &format!("cell-{index:03}-cold-{run}"),
            &mut |line, _| match line {
                Ok(EngineRecord::Load(l)) => load = Some(l),
                Ok(EngineRecord::Pass(p)) if pass.is_none() => pass = Some(p),
                Ok(_) => {}
                Err(text) => log.emit(&stray_warning(&cell.id, &text)),
            },
        )?;
        if let Some(failure) = fin.failure(cell.timeout_s) {
            return Err(format!("{failure}{}", fin.stderr_tail));
        }
        let (Some(load), Some(pass)) = (load, pass) else {
            return Err("the engine exited without a load and a pass record".to_string());
        };
        if protocol_major(&load.protocol) != protocol_major(PROTOCOL_VERSION) {
            return Err(foreign_protocol(&load.protocol));
        }
        let (load_ns, first_token_ns) = coldstart::timings(fin.spawn_mono_ns, &load, &pass);
        self.log.emit(&AgentEvent::ColdStart {
            cell: cell.id.clone(),
            run,
            load_ns,
            first_token_ns,
            page_cache_dropped: eviction.dropped,
            page_cache_note: eviction.note,
        });
        Ok(())
    }

    /// One engine process running the cell's warm-ups and measured passes. `before` counts the
    /// measured passes of earlier sessions, for the error message. A failure comes with the
    /// measured passes this session completed before it.
    fn session(
        &mut self,
        index: usize,
        cell: &Cell,
        session: usize,
        before: usize,
        label: Option<BatteryLabel>,
    ) -> Result<SessionEnd, (String, usize)> {
        let id = cell.id.clone();
        let mut measured = 0usize;
        let mut warmups = 0usize;
        let mut done: Option<DoneRecord> = None;
        let mut foreign: Option<String> = None;
        // Set by a load record whose memory figures are not the program's own (an adapter in
        // front of a server): then only the reported figures count.
        let mut reported_only = false;
        let mut reported_peak: Option<u64> = None;
        let mut contract_warned = false;
        let log = &mut self.log;
        let tel = self.sampler.as_ref();
        let idle_w = self.idle_w;
        let launch = program(self.job, cell).map_err(|m| (m, 0))?;
        let fin = engine(
            launch,
            &self.workdir,
            cell,
            &cell.engine_job,
            &format!("cell-{index:03}-s{session}"),
            &mut |line, sampler| match line {
                // A program of another contract major would be misread: stopped at once.
                Ok(EngineRecord::Load(load))
                    if protocol_major(&load.protocol) != protocol_major(PROTOCOL_VERSION) =>
                {
                    foreign = Some(load.protocol);
                    interrupt::kill_engines();
                }
                Ok(_) if foreign.is_some() => {}
                Ok(EngineRecord::Load(load)) => {
                    reported_only = load.memory_of.is_some()
                        || load.unmeasured.iter().any(|u| u == UNMEASURED_PEAK_RSS);
                    log.emit(&AgentEvent::Load {
                        cell: id.clone(),
                        session,
                        load,
                    })
                }
                Ok(EngineRecord::Pass(pass)) => {
                    if pass.warmup {
                        warmups += 1;
                    } else {
                        measured += 1;
                    }
                    // Once a session: a broken program breaks every pass alike.
                    if !contract_warned {
                        if let Some(problem) = crate::pass_check::problem(&pass) {
                            contract_warned = true;
                            log.emit(&AgentEvent::Warning {
                                message: format!(
                                    "cell {id} session {session}: pass {} breaks the bench \
                                     contract: {problem} (docs/engine-contract.md, `pass`); \
                                     kept as written, later passes of the session not \
                                     checked again",
                                    pass.index
                                ),
                            });
                        }
                    }
                    let rss_hwm_bytes = if reported_only {
                        reported_peak = reported_peak.max(pass.rss_hwm_bytes);
                        pass.rss_hwm_bytes
                    } else {
                        sampler.note(pass.rss_hwm_bytes);
                        sampler.sample()
                    };
                    let mut telemetry = tel.and_then(|t| pass_telemetry(t, &pass, idle_w));
                    if let Some(l) = label {
                        let t = telemetry.get_or_insert_with(PassTelemetry::default);
                        t.battery_simulated = Some(l.simulated);
                        t.battery_level = l
                            .level
                            .or_else(|| tel.and_then(|s| battery::level_at(s, pass.end_mono_ns)));
                    }
                    log.emit(&AgentEvent::Pass {
                        cell: id.clone(),
                        session,
                        rss_hwm_bytes,
                        pass,
                        telemetry,
                    });
                    // Stopping: the pass just recorded is the last (see `interrupt`).
                    if interrupt::signalled().is_some() {
                        interrupt::kill_engines();
                    }
                }
                Ok(EngineRecord::Done(d)) => {
                    if reported_only {
                        reported_peak = reported_peak.max(d.peak_rss_bytes);
                    } else {
                        sampler.note(d.peak_rss_bytes);
                    }
                    done = Some(d)
                }
                Ok(EngineRecord::Failed(f)) => log.emit(&AgentEvent::Warning {
                    message: format!(
                        "cell {id} session {session}: {} {} failed: {}",
                        if f.warmup { "warm-up pass" } else { "pass" },
                        f.index,
                        f.reason
                    ),
                }),
                Err(text) => log.emit(&stray_warning(&id, &text)),
            },
        )
        .map_err(|message| (message, 0))?;
        if let Some(theirs) = foreign {
            return Err((foreign_protocol(&theirs), 0));
        }
        let job = &cell.engine_job;
        let failure = fin.failure(cell.timeout_s).or_else(|| {
            done.is_none()
                .then(|| "the engine exited with status 0 but never wrote its done record".into())
        });
        if let Some(failure) = failure {
            return Err((
                format!(
                    "{failure} after {} of {} measured passes ({warmups} of {} warm-ups){}",
                    before + measured,
                    job.passes * cell.sessions.max(1),
                    job.warmup,
                    fin.stderr_tail
                ),
                measured,
            ));
        }
        if measured != job.passes {
            self.log.emit(&AgentEvent::Warning {
                message: format!(
                    "cell {id} session {session}: the engine finished after {measured} measured \
                     passes, but the job asked for {}",
                    job.passes
                ),
            });
        }
        // The program's own memory is not the model's when it said so: only reported figures.
        let (peak_rss_bytes, ru_maxrss_bytes) = if reported_only {
            (reported_peak, None)
        } else {
            (fin.peak_rss_bytes, fin.ru_maxrss_bytes)
        };
        Ok(SessionEnd {
            measured,
            peak_rss_bytes,
            ru_maxrss_bytes,
        })
    }
}

/// How the bundled engine starts.
fn bundled(job: &AgentJob) -> Launch<'_> {
    Launch {
        program: &job.engine,
        wrapper: &job.engine_wrapper,
        args: &[],
    }
}

/// How the engine program that runs `cell` starts.
fn program<'a>(job: &'a AgentJob, cell: &Cell) -> Result<Launch<'a>, String> {
    if cell.engine == BUNDLED_ENGINE {
        return Ok(bundled(job));
    }
    match job.engines.get(&cell.engine) {
        Some(p) => Ok(Launch {
            program: &p.program,
            wrapper: if p.wrapped { &job.engine_wrapper } else { &[] },
            args: &p.args,
        }),
        None => Err(format!(
            "the job names no program for engine '{}' (it has: {})",
            cell.engine,
            std::iter::once(BUNDLED_ENGINE)
                .chain(job.engines.keys().map(String::as_str))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Why a program whose load record names another contract major version is not measured.
fn foreign_protocol(theirs: &str) -> String {
    format!(
        "the engine speaks bench contract protocol {theirs:?}, this agent {PROTOCOL_VERSION}; \
         use a build of the engine for protocol {PROTOCOL_VERSION} (docs/engine-contract.md, \
         Versioning)"
    )
}

/// A member's measured passes and peak memory over its sessions so far.
#[derive(Default)]
struct Tally {
    measured: usize,
    peak: Option<u64>,
    ru_max: Option<u64>,
}

/// A `StateReached` of the group's lead as the event of cell `id`: the members of a group
/// share one state, and each cell's own record says what it ran in.
fn for_cell(event: &AgentEvent, id: &str) -> AgentEvent {
    let mut event = event.clone();
    if let AgentEvent::StateReached { cell, .. } = &mut event {
        *cell = id.to_string();
    }
    event
}

struct SessionEnd {
    measured: usize,
    peak_rss_bytes: Option<u64>,
    ru_maxrss_bytes: Option<u64>,
}

/// What the sampler saw during the pass. Waits (at most one power period) for a sample past the
/// pass's end so the window is bracketed, then drops the samples before it.
fn pass_telemetry(
    sampler: &Sampler,
    pass: &PassRecord,
    idle_w: Option<f64>,
) -> Option<PassTelemetry> {
    sampler.wait_past(pass.end_mono_ns);
    let figures = sampler.pass(pass.start_mono_ns, pass.end_mono_ns);
    sampler.trim_before(pass.end_mono_ns);
    let secs = pass.end_mono_ns.saturating_sub(pass.start_mono_ns) as f64 / 1e9;
    telemetry::pass::to_protocol(
        &figures,
        sampler.power.as_ref(),
        pass.gen_tokens,
        idle_w,
        secs,
    )
}

fn stray_warning(cell: &str, text: &str) -> AgentEvent {
    let shown: String = text.chars().take(200).collect();
    AgentEvent::Warning {
        message: format!(
            "cell {cell}: the engine printed a line that is not a bench record: {shown}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job_file(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("job.json");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn other_major_versions_are_refused_before_parsing() {
        let dir = tempfile::tempdir().unwrap();
        let p = job_file(dir.path(), r#"{"protocol":"2.0","future_field":1}"#);
        match read_job(&p) {
            Err(RunError::BadJob(m)) => assert!(m.contains("update the agent"), "{m}"),
            _ => panic!("accepted a 2.0 job"),
        }
        let p = job_file(
            dir.path(),
            r#"{"protocol":"1.7","run_id":"r","engine":"e","workdir":"w","cells":[]}"#,
        );
        assert!(read_job(&p).is_ok(), "minor versions are compatible");
    }
}
