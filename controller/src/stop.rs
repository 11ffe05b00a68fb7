//! Ctrl-C (SIGINT) and SIGTERM on the controller during `meltbench run`.
//!
//! The first stops the run cleanly: no device starts anything new, and every running agent is
//! sent SIGINT through a second connection to its device (`kill -INT` of the pid in its
//! `agent.pid`): over ssh and adb a signal to the controller never reaches the device, and the
//! connection that streams events may be the one that broke. Each agent then kills its engine,
//! restores the device (charging, battery overrides), says so and exits; the controller waits
//! for that, writes the summary and report of what completed and exits 130. The second signal
//! exits at once (130); the run directory is resumable either way (`meltbench run --resume`).

use crate::devices::Device;
use crate::transport;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

static SIGNALS: AtomicUsize = AtomicUsize::new(0);
static RUNNING: Mutex<Vec<Running>> = Mutex::new(Vec::new());

/// An agent running on a device, and where its pid is.
#[derive(Clone)]
struct Running {
    id: usize,
    device: Device,
    agent: AgentRef,
}

/// How to find one agent on its device: its pid file, and its job file's path, which its
/// command line holds (so a pid reused by another process is never signalled).
#[derive(Clone, Debug)]
pub struct AgentRef {
    pub pid_file: String,
    pub job: String,
}

extern "C" fn on_signal(_: libc::c_int) {
    if SIGNALS.fetch_add(1, Ordering::SeqCst) >= 1 {
        let msg = b"\nmeltbench: stopped at once; the run directory can be resumed with --resume\n";
        // SAFETY: write(2) and _exit(2) are async-signal-safe.
        unsafe {
            libc::write(2, msg.as_ptr().cast(), msg.len());
            libc::_exit(130);
        }
    }
}

/// Installs the handlers and the thread that stops remote agents on the first signal.
pub fn install() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction with our handler and an empty mask.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            sa.sa_flags = libc::SA_RESTART;
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
    std::thread::Builder::new()
        .name("stop".into())
        .spawn(|| {
            while !requested() {
                std::thread::sleep(Duration::from_millis(50));
            }
            eprintln!(
                "\nmeltbench: stopping every device (its agent restores the device state); \
                 press Ctrl-C again to quit at once"
            );
            let running: Vec<Running> = running().clone();
            let stoppers: Vec<_> = running
                .into_iter()
                .map(|r| {
                    std::thread::spawn(move || {
                        report(&r.device, stop_agent(&r.device, &r.agent, false))
                    })
                })
                .collect();
            for s in stoppers {
                let _ = s.join();
            }
        })
        .expect("spawn the stop thread");
}

/// Whether the run was asked to stop.
pub fn requested() -> bool {
    SIGNALS.load(Ordering::SeqCst) > 0
}

fn running() -> std::sync::MutexGuard<'static, Vec<Running>> {
    RUNNING.lock().unwrap_or_else(|e| e.into_inner())
}

/// Registered while an agent runs: a stop request reaches it through `pid_file`.
pub struct AgentGuard {
    id: usize,
}

impl Drop for AgentGuard {
    fn drop(&mut self) {
        running().retain(|r| r.id != self.id);
    }
}

/// Records that an agent is about to run on `device`. If a stop was already requested, it is
/// sent as soon as the agent's pid file exists.
pub fn register(device: &Device, agent: AgentRef) -> AgentGuard {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let id = NEXT.fetch_add(1, Ordering::SeqCst);
    let r = Running {
        id,
        device: device.clone(),
        agent,
    };
    running().push(r.clone());
    if requested() {
        // The stop thread may have looked before this agent registered.
        std::thread::spawn(move || report(&r.device, stop_agent(&r.device, &r.agent, false)));
    }
    AgentGuard { id }
}

/// What [`stop_agent`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Stopped {
    /// SIGINT sent (and, when waiting, the agent is gone).
    Signalled,
    /// No such agent runs (no pid file yet, or its process ended or is another program).
    NotRunning,
}

/// The agent's pid is read on the device, checked to be a number and to belong to a process
/// whose command line holds the job path, then signalled; with `wait`, until it has exited
/// (its state restored). The pid file may lag the agent's start by a moment: it is awaited.
const STOP_SCRIPT: &str = r#"pid_file=$1 job=$2 wait=$3
i=0
while [ ! -s "$pid_file" ]; do
  i=$((i+1)); [ $i -gt 10 ] && exit 10; sleep 1
done
p=$(cat "$pid_file")
case "$p" in ''|*[!0-9]*) exit 11;; esac
tr '\000' ' ' < /proc/$p/cmdline 2>/dev/null | grep -q -F -- "$job" || exit 10
kill -INT "$p" || exit 10
[ "$wait" = wait ] || exit 0
i=0
while kill -0 "$p" 2>/dev/null; do
  i=$((i+1)); [ $i -gt 300 ] && exit 12; sleep 0.1
done
exit 0"#;

/// Sends SIGINT to the agent `agent` on `device` over a new connection.
pub fn stop_agent(device: &Device, agent: &AgentRef, wait: bool) -> Result<Stopped, String> {
    let timeout = Duration::from_secs(45);
    let mut t = transport::connect(device, timeout).map_err(|e| e.to_string())?;
    let wait = if wait { "wait" } else { "nowait" };
    let o = t
        .exec(
            &[
                "sh",
                "-c",
                STOP_SCRIPT,
                "sh",
                &agent.pid_file,
                &agent.job,
                wait,
            ],
            timeout,
        )
        .map_err(|e| e.to_string())?;
    match o.status {
        Some(0) => Ok(Stopped::Signalled),
        Some(10) => Ok(Stopped::NotRunning),
        Some(12) => Err("it did not exit within 30 s of SIGINT".into()),
        s => Err(format!(
            "the stop command failed ({s:?}): {}",
            o.stderr_text().trim()
        )),
    }
}

fn report(device: &Device, r: Result<Stopped, String>) {
    if let Err(e) = r {
        eprintln!("warning: {}: could not stop its agent: {e}", device.name);
    }
}
