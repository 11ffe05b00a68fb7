//! The engine as a child process: started in its own process group with its job file and a
//! stderr file, watched by a timeout, its peak RSS sampled, reaped with its `ru_maxrss`; and the
//! pre-heat engine that loads the device for the thermal and battery states.

use crate::interrupt::{self, signal_name};
use crate::rss::PeakSampler;
use meltbench_protocol::agent::Cell;
use meltbench_protocol::engine::{EngineJob, EngineRecord};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

/// Pre-heat passes: more than any timeout lets run; the engine is restarted if it finishes.
const PREHEAT_PASSES: usize = 1_000_000;

/// How an engine process ended.
pub(crate) struct Finished {
    /// CLOCK_MONOTONIC just before the spawn.
    pub spawn_mono_ns: u64,
    /// Raw `wait4` status.
    pub status: i32,
    pub timed_out: bool,
    pub peak_rss_bytes: Option<u64>,
    pub ru_maxrss_bytes: Option<u64>,
    /// `"; stderr: ..."` with the last lines of its stderr, or empty.
    pub stderr_tail: String,
}

impl Finished {
    /// What went wrong, if the process did not exit with status 0.
    pub fn failure(&self, timeout_s: u64) -> Option<String> {
        if let Some(sig) = interrupt::signalled().filter(|_| libc::WIFSIGNALED(self.status)) {
            return Some(format!(
                "the engine was killed by the agent on {}",
                signal_name(sig)
            ));
        }
        if self.timed_out {
            return Some(format!(
                "the engine did not finish within the cell's timeout of {timeout_s} s and was killed"
            ));
        }
        if libc::WIFSIGNALED(self.status) {
            let sig = libc::WTERMSIG(self.status);
            let hint = if sig == libc::SIGKILL {
                " (not sent by the agent: often the out-of-memory killer, see dmesg or logcat)"
            } else {
                ""
            };
            return Some(format!(
                "the engine was killed by {}{hint}",
                signal_name(sig)
            ));
        }
        match libc::WEXITSTATUS(self.status) {
            0 => None,
            code => Some(format!("the engine exited with status {code}")),
        }
    }
}

/// Runs `<engine> bench <model> --job <stem>.job.json` to the end, handing each stdout line to
/// `on_line` as it arrives, with the process's VmHWM sampler. `Err` only when it cannot start.
pub(crate) fn engine(
    launch: Launch,
    workdir: &Path,
    cell: &Cell,
    job: &EngineJob,
    stem: &str,
    on_line: &mut dyn FnMut(Result<EngineRecord, String>, &PeakSampler),
) -> Result<Finished, String> {
    let Spawned {
        mut child,
        stderr,
        spawn_mono_ns,
    } = spawn_engine(launch, workdir, &cell.model_path, job, stem)?;
    let pid = child.id();
    let watchdog = Watchdog::start(pid as i32, cell.timeout_s);
    let sampler = PeakSampler::start(pid);
    each_line(child.stdout.take().expect("stdout is piped"), |bytes| {
        let line = String::from_utf8_lossy(bytes);
        let line = line.trim();
        if !line.is_empty() {
            on_line(
                serde_json::from_str(line).map_err(|_| line.to_string()),
                &sampler,
            );
        }
    });
    // Wait for the exit without reaping, so the pid cannot be reused while the watchdog may
    // still signal its group; then stop the watchdog and reap with wait4 for ru_maxrss.
    wait_exited(pid);
    interrupt::untrack(pid);
    let peak_rss_bytes = sampler.finish();
    let timed_out = watchdog.stop();
    let (status, ru_maxrss_bytes) = reap(pid);
    Ok(Finished {
        spawn_mono_ns,
        status,
        timed_out,
        peak_rss_bytes,
        ru_maxrss_bytes,
        stderr_tail: stderr_tail(stderr),
    })
}

/// Hands `each` every line of `r` (raw bytes) until end of file or a read error. Bytes, not
/// `lines()`, which stops at invalid UTF-8: an engine left writing into a pipe nobody reads
/// would block until its timeout.
fn each_line(r: impl Read, mut each: impl FnMut(&[u8])) {
    let mut r = BufReader::new(r);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match r.read_until(b'\n', &mut buf) {
            Ok(0) => break,
            Ok(_) => each(&buf),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
}

/// An engine process just started, in its own process group (its pid is the group id).
pub(crate) struct Spawned {
    pub child: std::process::Child,
    /// Its stderr file (`<stem>.stderr.txt`), for [`stderr_tail`].
    pub stderr: File,
    /// CLOCK_MONOTONIC just before the spawn.
    pub spawn_mono_ns: u64,
}

/// How an engine program is started: `[WRAPPER...] PROGRAM [ARGS...] bench MODEL --job FILE`.
#[derive(Clone, Copy)]
pub struct Launch<'a> {
    pub program: &'a str,
    /// A command the program runs under (an emulator); usually empty.
    pub wrapper: &'a [String],
    /// Arguments before `bench` (an adapter's settings).
    pub args: &'a [String],
}

/// Writes the engine job to `<stem>.job.json` and starts `<engine> bench <model> --job ...` with
/// stdout piped and stderr to `<stem>.stderr.txt`. Used for measured sessions, cold starts and
/// the thermal pre-heat.
pub(crate) fn spawn_engine(
    launch: Launch,
    workdir: &Path,
    model_path: &str,
    job: &EngineJob,
    stem: &str,
) -> Result<Spawned, String> {
    let job_path = workdir.join(format!("{stem}.job.json"));
    let stderr_path = workdir.join(format!("{stem}.stderr.txt"));
    let json = serde_json::to_vec_pretty(job).expect("engine jobs always serialize");
    std::fs::write(&job_path, json)
        .map_err(|e| format!("cannot write {}: {e}", job_path.display()))?;
    let stderr = File::options()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&stderr_path)
        .map_err(|e| format!("cannot create {}: {e}", stderr_path.display()))?;
    let mut cmd = match launch.wrapper.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(launch.program);
            c
        }
        None => Command::new(launch.program),
    };
    cmd.args(launch.args)
        .arg("bench")
        .arg(model_path)
        .arg("--job")
        .arg(&job_path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr.try_clone().map_err(|e| e.to_string())?)
        // Its own process group, so a timeout kill also reaches anything it started (a wrapper
        // script's children). If the agent dies, the engine gets EPIPE on its next line and exits.
        .process_group(0);
    let spawn_mono_ns = crate::telemetry::sampler::monotonic_ns();
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start the engine {}: {e}", launch.program))?;
    interrupt::track(child.id());
    Ok(Spawned {
        child,
        stderr,
        spawn_mono_ns,
    })
}

fn wait_exited(pid: u32) {
    loop {
        // SAFETY: siginfo_t is plain data that waitid fills in.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if rc == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
    }
}

/// Reaps the child: raw status and `ru_maxrss` in bytes (Linux reports kilobytes).
fn reap(pid: u32) -> (i32, Option<u64>) {
    let mut status = 0;
    // SAFETY: rusage is plain data that wait4 fills in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        let rc = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
        if rc == pid as libc::pid_t {
            let kb = usage.ru_maxrss as u64;
            return (status, (kb > 0).then_some(kb * 1024));
        }
        if io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            // Nothing to reap (should not happen): report it as an abnormal exit.
            return (255 << 8, None);
        }
    }
}

/// `"; stderr: <last lines>"`, bounded so one event stays small.
pub(crate) fn stderr_tail(mut f: File) -> String {
    const MAX: u64 = 4096;
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let mut buf = String::new();
    if f.seek(SeekFrom::Start(len.saturating_sub(MAX))).is_err()
        || f.read_to_string(&mut buf).is_err()
    {
        let mut bytes = Vec::new();
        let _ = f.read_to_end(&mut bytes);
        buf = String::from_utf8_lossy(&bytes).into_owned();
    }
    let lines: Vec<&str> = buf.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = &lines[lines.len().saturating_sub(8)..];
    if tail.is_empty() {
        String::new()
    } else {
        format!("; stderr: {}", tail.join(" | "))
    }
}

/// Kills the engine's process group when the cell's timeout passes (0 = no timeout).
struct Watchdog {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<bool>>,
}

impl Watchdog {
    fn start(pgid: i32, timeout_s: u64) -> Watchdog {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = (timeout_s > 0).then(|| {
            std::thread::spawn(move || {
                match stopped.recv_timeout(Duration::from_secs(timeout_s)) {
                    Err(RecvTimeoutError::Timeout) => {
                        // SAFETY: the group leader is our unreaped child, so the id is ours.
                        unsafe { libc::kill(-pgid, libc::SIGKILL) };
                        true
                    }
                    _ => false,
                }
            })
        });
        Watchdog {
            stop: Some(stop),
            thread,
        }
    }

    /// Whether it fired.
    fn stop(mut self) -> bool {
        drop(self.stop.take());
        self.thread
            .take()
            .map(|t| t.join().unwrap_or(false))
            .unwrap_or(false)
    }
}

/// How to start the pre-heat engine for a cell.
pub struct EngineSpec<'a> {
    pub launch: Launch<'a>,
    pub workdir: &'a Path,
    pub stem: String,
}

/// The pre-heat engine (also the battery drain's load). Dropping it kills its process group
/// and reaps it.
pub(crate) struct Preheat {
    child: Option<std::process::Child>,
    stderr: Option<std::fs::File>,
    drain: Option<JoinHandle<()>>,
}

impl Preheat {
    pub(crate) fn start(cell: &Cell, spec: &EngineSpec) -> Result<Preheat, String> {
        let mut job = cell.engine_job.clone();
        job.passes = PREHEAT_PASSES;
        job.warmup = 0;
        let mut sp = spawn_engine(
            spec.launch,
            spec.workdir,
            &cell.model_path,
            &job,
            &spec.stem,
        )
        .map_err(|e| format!("pre-heat: {e}"))?;
        let stdout = sp.child.stdout.take().expect("stdout is piped");
        // Read and drop its pass lines, so it never blocks on a full pipe.
        let drain = std::thread::spawn(move || each_line(stdout, |_| {}));
        Ok(Preheat {
            child: Some(sp.child),
            stderr: Some(sp.stderr),
            drain: Some(drain),
        })
    }

    /// Whether it still runs: `Ok(false)` if it finished its passes with status 0 (start
    /// another), `Err` if it failed.
    pub(crate) fn check(&mut self) -> Result<bool, String> {
        let Some(child) = self.child.as_mut() else {
            return Ok(false);
        };
        // Look without reaping, so the group id stays ours until `finish`.
        // SAFETY: siginfo_t is plain data that waitid fills in.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                child.id() as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        // SAFETY: si_pid is valid to read after waitid with WEXITED.
        if rc != 0 || unsafe { info.si_pid() } == 0 {
            return Ok(true);
        }
        let status = self.finish();
        match status {
            Some(s) if s.success() => Ok(false),
            other => {
                let how = match other {
                    Some(s) => {
                        match (s.code(), std::os::unix::process::ExitStatusExt::signal(&s)) {
                            (Some(c), _) => format!("exited with status {c}"),
                            (_, Some(sig)) => format!("was killed by {}", signal_name(sig)),
                            _ => "ended".into(),
                        }
                    }
                    None => "ended".into(),
                };
                let tail = self.stderr.take().map(stderr_tail).unwrap_or_default();
                Err(format!("the pre-heat engine {how}{tail}"))
            }
        }
    }

    /// Kills the group (if it still runs), reaps it and joins the stdout reader.
    fn finish(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        // SAFETY: the group leader is our unreaped child, so the group id is still ours.
        unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
        interrupt::untrack(child.id());
        let status = child.wait().ok();
        if let Some(d) = self.drain.take() {
            let _ = d.join();
        }
        status
    }
}

impl Drop for Preheat {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses_are_described() {
        let fin = |status| Finished {
            spawn_mono_ns: 0,
            status,
            timed_out: false,
            peak_rss_bytes: None,
            ru_maxrss_bytes: None,
            stderr_tail: String::new(),
        };
        assert_eq!(fin(0).failure(5), None);
        assert_eq!(
            fin(3 << 8).failure(5).unwrap(),
            "the engine exited with status 3"
        );
        let killed = fin(libc::SIGSEGV).failure(5).unwrap();
        assert!(killed.contains("SIGSEGV (signal 11)"), "{killed}");
    }

    #[test]
    fn stderr_tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("err");
        let text: String = (0..20).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&p, text).unwrap();
        let t = stderr_tail(File::open(&p).unwrap());
        assert!(t.starts_with("; stderr: line 12 | "), "{t}");
        assert!(t.ends_with("line 19"), "{t}");
    }
}
