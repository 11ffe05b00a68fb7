//! SIGINT/SIGTERM/SIGHUP: finish the current pass, restore the device, exit promptly.
//!
//! The handler only records the signal in an atomic and writes one byte to a self-pipe (both
//! async-signal-safe). A watcher thread blocked on the pipe then, outside signal context, lets
//! the pass under way end: the main thread kills its engine when the pass's record arrives
//! ([`kill_engines`]), so what was measured is kept and nothing half-measured is. A second
//! signal more than 2 s after the first (a terminal's Ctrl-C and the controller's stop both
//! reach a local agent: that is one request), or [`PASS_WAIT_S`] without a pass ending, kills
//! every engine process group the agent started ([`track`]ed) at once. Then the watcher runs
//! every pending undo (charging back on, `dumpsys battery reset`) and marks the restore done.
//! The main thread sees [`signalled`] in its loops (engine output ends since the engine was
//! killed; the state loops poll it), ends the cell with a `CellError`, emits a `Warning`
//! naming the signal and what was restored, and the agent exits with 128 + the signal (130 for
//! SIGINT). If the main thread has not exited [`GRACE_S`] seconds later, the watcher prints
//! that warning on stdout itself and exits with the same code. A signal the agent inherited as
//! ignored (`nohup`) stays ignored.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const GRACE_S: u64 = 5;
/// Longest wait for the pass under way to end after the first signal.
pub const PASS_WAIT_S: u64 = 120;
/// Signals this soon after the first are the same request.
const SAME_REQUEST_S: u64 = 2;
static SIGNAL: AtomicI32 = AtomicI32::new(0);
static PIPE_W: AtomicI32 = AtomicI32::new(-1);
static RESTORED: AtomicBool = AtomicBool::new(false);
static SUMMARY: Mutex<String> = Mutex::new(String::new());
static ENGINES: Mutex<Vec<i32>> = Mutex::new(Vec::new());

extern "C" fn on_signal(sig: libc::c_int) {
    let _ = SIGNAL.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst);
    let fd = PIPE_W.load(Ordering::SeqCst);
    if fd >= 0 {
        let b = [sig as u8];
        // SAFETY: write(2) is async-signal-safe; the buffer lives on this stack.
        unsafe { libc::write(fd, b.as_ptr().cast(), 1) };
    }
}

/// Installs the handlers and starts the watcher (once, for `run`).
pub fn install() {
    let mut fds = [-1; 2];
    // SAFETY: pipe2 fills the two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return;
    }
    let read_fd = fds[0];
    PIPE_W.store(fds[1], Ordering::SeqCst);
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || watch(read_fd))
        .expect("spawn the signal watcher");
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: zeroed sigactions; ours has our handler, an empty mask and SA_RESTART.
        unsafe {
            // A signal ignored when the agent started (`nohup`) stays ignored.
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) == 0
                && old.sa_sigaction == libc::SIG_IGN
            {
                continue;
            }
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            sa.sa_flags = libc::SA_RESTART;
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

fn watch(fd: i32) {
    let mut b = [0u8; 1];
    loop {
        // SAFETY: reads into our one-byte buffer.
        let n = unsafe { libc::read(fd, b.as_mut_ptr().cast(), 1) };
        if n == 1 {
            break;
        }
        if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        return;
    }
    let sig = SIGNAL.load(Ordering::SeqCst);
    let mark = crate::undo::mark();
    wait_for_pass_end(fd);
    kill_engines();
    let (done, failed) = crate::undo::restore_all_since(mark);
    let mut s = if done.is_empty() {
        "nothing to restore".to_string()
    } else {
        format!("restored: {}", done.join(", "))
    };
    if !failed.is_empty() {
        s += &format!("; RESTORE FAILED: {}", failed.join("; "));
    }
    *SUMMARY.lock().unwrap_or_else(|e| e.into_inner()) = s;
    RESTORED.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_secs(GRACE_S));
    // The main thread did not exit in time: say so ourselves and go.
    let ev = meltbench_protocol::agent::AgentEvent::Warning {
        message: message(sig),
    };
    if let Ok(line) = serde_json::to_string(&ev) {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
    std::process::exit(128 + sig);
}

/// Until no engine runs (the main thread stopped it after its pass), a second signal arrives,
/// or [`PASS_WAIT_S`] pass.
fn wait_for_pass_end(fd: i32) {
    let first = Instant::now();
    let until = first + Duration::from_secs(PASS_WAIT_S);
    while !engines().is_empty() && Instant::now() < until {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut pfd, 1, 50) } > 0 {
            let mut b = [0u8; 1];
            // SAFETY: reads into our one-byte buffer.
            unsafe { libc::read(fd, b.as_mut_ptr().cast(), 1) };
            // One Ctrl-C can arrive twice: from the terminal (a local agent shares the
            // controller's process group) and from the controller's stop. Only a signal well
            // after the first is a second request.
            if first.elapsed() > Duration::from_secs(SAME_REQUEST_S) {
                return;
            }
        }
    }
}

/// The signal received, if any.
pub fn signalled() -> Option<i32> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// Waits (bounded) for the watcher's restore; the warning to emit.
pub fn message(sig: i32) -> String {
    let until = Instant::now() + Duration::from_secs(3);
    while !RESTORED.load(Ordering::SeqCst) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    let summary = SUMMARY.lock().unwrap_or_else(|e| e.into_inner()).clone();
    format!(
        "interrupted by {}: the engine was killed, {}; exiting without running the \
         remaining cells",
        signal_name(sig),
        if summary.is_empty() {
            "restore not confirmed".to_string()
        } else {
            summary
        }
    )
}

/// Sleeps `d`, returning early (false) when a signal has arrived.
pub fn sleep(d: Duration) -> bool {
    let until = Instant::now() + d;
    loop {
        if signalled().is_some() {
            return false;
        }
        let now = Instant::now();
        if now >= until {
            return true;
        }
        std::thread::sleep((until - now).min(Duration::from_millis(50)));
    }
}

fn engines() -> std::sync::MutexGuard<'static, Vec<i32>> {
    ENGINES.lock().unwrap_or_else(|e| e.into_inner())
}

/// An engine process group the agent started (its pid): killed on a signal. If the signal
/// already came, it is killed now.
pub fn track(pid: u32) {
    let mut e = engines();
    e.push(pid as i32);
    if signalled().is_some() {
        // SAFETY: our unreaped child's group.
        unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
    }
}

/// Before reaping it (so its id cannot be reused while tracked).
pub fn untrack(pid: u32) {
    engines().retain(|p| *p != pid as i32);
}

/// Kills every tracked engine: the main thread calls it when a pass ends after a signal.
pub fn kill_engines() {
    for pg in engines().iter() {
        // SAFETY: tracked groups are our unreaped children's.
        unsafe { libc::kill(-pg, libc::SIGKILL) };
    }
}

pub fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGSYS => "SIGSYS",
        _ => return format!("signal {sig}"),
    };
    format!("{name} (signal {sig})")
}
