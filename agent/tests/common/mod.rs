//! Shared helpers for the agent's integration tests: the agent and engine binaries, a synth
//! model, and job files.
#![allow(dead_code)]

use meltbench_protocol::agent::{AgentEvent, AgentJob, Cell};
use meltbench_protocol::engine::{EngineJob, Prompt};
use meltbench_protocol::PROTOCOL_VERSION;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

pub fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_meltbench-agent"))
}

/// The real engine binary. Cargo only gives `CARGO_BIN_EXE_*` for the package's own binaries,
/// and a binary that merely sits in `target/debug` may be stale or missing (`cargo test -p
/// meltbench-agent` does not build it). So the test asks cargo to build it (a no-op when it is
/// up to date; same target directory, dev profile) and takes the path cargo reports, which
/// stays right under `CARGO_TARGET_DIR` or a custom target directory.
pub fn engine() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let out = Command::new(env!("CARGO"))
            .args([
                "build",
                "-p",
                "meltbench-engine",
                "--bin",
                "meltbench-engine",
                "--message-format=json-render-diagnostics",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stderr(Stdio::inherit())
            .output()
            .expect("running cargo to build meltbench-engine");
        assert!(
            out.status.success(),
            "cargo build -p meltbench-engine failed"
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|m| {
                m["reason"] == "compiler-artifact" && m["target"]["name"] == "meltbench-engine"
            })
            .find_map(|m| m["executable"].as_str().map(PathBuf::from))
            .expect("cargo reported no meltbench-engine executable")
    })
}

/// A tiny deterministic model written by `meltbench-engine synth`.
pub fn synth_model(dir: &Path) -> PathBuf {
    let p = dir.join("synth.gguf");
    let st = Command::new(engine())
        .arg("synth")
        .arg(&p)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "synth: {}",
        String::from_utf8_lossy(&st.stderr)
    );
    p
}

/// The SHA-256 the agent checks a model against (zeros for a file that does not exist, which
/// the agent reports as such).
pub fn file_sha256(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    match std::fs::read(path) {
        Ok(bytes) => Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
        Err(_) => "0".repeat(64),
    }
}

pub fn cell(id: &str, model: &Path, passes: usize, warmup: usize, cold: usize) -> Cell {
    Cell {
        id: id.to_string(),
        model: "synth".into(),
        model_path: model.display().to_string(),
        model_sha256: file_sha256(model),
        precision: "f32".into(),
        scenario: "short".into(),
        threads: 1,
        state: "any".into(),
        state_timeout_s: 0,
        engine: "bundled".into(),
        interleave: None,
        engine_job: EngineJob {
            prompt: Prompt::Tokens(16),
            n_gen: 8,
            passes,
            warmup,
            threads: Some(1),
            ignore_eos: true,
            temperature: 0.0,
            seed: 0,
            kernels: None,
            chat: false,
            depth: 0,
        },
        cold_start_runs: cold,
        sessions: 1,
        timeout_s: 120,
        first_cold_start: 0,
        first_session: 0,
    }
}

pub fn job(dir: &Path, engine: &Path, cells: Vec<Cell>) -> AgentJob {
    AgentJob {
        engine_wrapper: Vec::new(),
        protocol: PROTOCOL_VERSION.to_string(),
        run_id: "test-run".into(),
        engine: engine.display().to_string(),
        engines: Default::default(),
        workdir: dir.join("work").display().to_string(),
        cells,
    }
}

pub struct Ran {
    pub out: Output,
    pub stdout_lines: Vec<String>,
    pub events: Vec<AgentEvent>,
    pub log_lines: Vec<String>,
}

/// Writes `job` next to its workdir, runs `meltbench-agent run --job`, parses what it printed.
pub fn run_job(dir: &Path, job: &AgentJob) -> Ran {
    let path = dir.join("job.json");
    std::fs::write(&path, serde_json::to_vec(job).unwrap()).unwrap();
    let out = agent().arg("run").arg("--job").arg(&path).output().unwrap();
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    let stdout_lines: Vec<String> = stdout.lines().map(String::from).collect();
    let events = stdout_lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad event {l}: {e}")))
        .collect();
    let log =
        std::fs::read_to_string(Path::new(&job.workdir).join("events.jsonl")).unwrap_or_default();
    Ran {
        out,
        stdout_lines,
        events,
        log_lines: log.lines().map(String::from).collect(),
    }
}

impl Ran {
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }

    pub fn for_cell<'a>(&'a self, id: &'a str) -> impl Iterator<Item = &'a AgentEvent> + 'a {
        self.events.iter().filter(move |e| e.cell() == Some(id))
    }
}

static ALONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Serialises the tests of one binary that drive a simulated device's sysfs: the state tests
/// time how the device answers, which another test's engine would disturb.
pub fn alone() -> std::sync::MutexGuard<'static, ()> {
    ALONE.lock().unwrap_or_else(|e| e.into_inner())
}

/// `c` with a device state to reach before its passes, within `timeout_s`.
pub fn stated(c: Cell, state: &str, timeout_s: u64) -> Cell {
    Cell {
        state: state.into(),
        state_timeout_s: timeout_s,
        ..c
    }
}

/// `meltbench-agent run` of `cells` on a simulated device whose sysfs lives at `sysfs_root`
/// (no command shims, no idle wait); the caller adds what its states need and runs it.
pub fn device_agent(dir: &Path, sysfs_root: &Path, cells: Vec<Cell>) -> Command {
    let j = job(dir, engine(), cells);
    let path = dir.join("job.json");
    std::fs::write(&path, serde_json::to_vec(&j).unwrap()).unwrap();
    let mut c = agent();
    c.arg("run")
        .arg("--job")
        .arg(&path)
        .env("MELTBENCH_SYSFS_ROOT", sysfs_root)
        .env_remove("MELTBENCH_COMMANDS_DIR")
        .env("MELTBENCH_IDLE_S", "0");
    c
}

/// What a state test's agent run left: its events, stderr, exit code and how long it took.
pub struct Timed {
    pub events: Vec<AgentEvent>,
    pub stderr: String,
    pub code: Option<i32>,
    pub elapsed: std::time::Duration,
}

/// The agent's event lines.
pub fn parse_events(stdout: &str) -> Vec<AgentEvent> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad event {l}: {e}")))
        .collect()
}

/// Runs `cmd` to the end and parses its events.
pub fn timed(mut cmd: Command) -> Timed {
    let t0 = std::time::Instant::now();
    let out = cmd.output().unwrap();
    Timed {
        events: parse_events(&String::from_utf8(out.stdout).unwrap()),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        code: out.status.code(),
        elapsed: t0.elapsed(),
    }
}

impl Timed {
    pub fn of<'a>(&'a self, id: &'a str) -> impl Iterator<Item = &'a AgentEvent> + 'a {
        self.events.iter().filter(move |e| e.cell() == Some(id))
    }

    /// Measured passes of cell `id`.
    pub fn measured(&self, id: &str) -> usize {
        self.of(id)
            .filter(|e| matches!(e, AgentEvent::Pass { pass, .. } if !pass.warmup))
            .count()
    }

    pub fn error<'a>(&'a self, id: &'a str) -> Option<&'a str> {
        self.of(id).find_map(|e| match e {
            AgentEvent::CellError { message, .. } => Some(message.as_str()),
            _ => None,
        })
    }

    pub fn ended(&self, id: &str) -> bool {
        self.of(id).any(|e| matches!(e, AgentEvent::CellEnd { .. }))
    }
}
