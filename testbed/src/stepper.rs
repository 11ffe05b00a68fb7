//! What the simulated battery and thermal zone share: a fake sysfs tree in a temporary
//! directory, a state behind a lock, and a thread that steps the model until it is dropped.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

pub struct Stepper<S> {
    /// The fake filesystem root the model writes its sysfs files under.
    pub root: PathBuf,
    _dir: tempfile::TempDir,
    state: Arc<Mutex<S>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// A stepping loop: runs until the flag is set, updating the shared state.
pub type Steps<S> = Box<dyn FnOnce(Arc<Mutex<S>>, Arc<AtomicBool>) + Send>;

impl<S: Send + 'static> Stepper<S> {
    /// A fresh root for `what` (the model's name, for the thread and messages); `lay_out`
    /// writes the tree and gives the initial state and the stepping loop.
    pub fn start(what: &str, lay_out: impl FnOnce(&std::path::Path) -> (S, Steps<S>)) -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir for the {what}: {e}"));
        let root = dir.path().to_path_buf();
        let (initial, steps) = lay_out(&root);
        let state = Arc::new(Mutex::new(initial));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name(what.replace(' ', "-"))
            .spawn(move || steps(st, sp))
            .unwrap_or_else(|e| panic!("spawn the {what}: {e}"));
        Stepper {
            root,
            _dir: dir,
            state,
            stop,
            thread: Some(thread),
        }
    }

    pub fn state(&self) -> MutexGuard<'_, S> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Whether a stepping loop should go on.
pub fn running(stop: &AtomicBool) -> bool {
    !stop.load(Ordering::Relaxed)
}

impl<S> Drop for Stepper<S> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One `pwrite` at offset 0 of a text as long as the file's (the callers keep widths fixed).
pub fn write_in_place(path: &Path, text: &str) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path);
    if let Ok(f) = f {
        let _ = f.write_all_at(text.as_bytes(), 0);
    }
}

/// (busy, total) jiffies of all CPUs from the first line of `/proc/stat`.
pub fn cpu_jiffies() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest times are inside user/nice).
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

/// CPU utilisation between two `/proc/stat` readings, 0..1.
pub fn load_between(a: (u64, u64), b: (u64, u64)) -> f64 {
    let total = b.1.saturating_sub(a.1);
    if total == 0 {
        return 0.0;
    }
    (b.0.saturating_sub(a.0) as f64 / total as f64).clamp(0.0, 1.0)
}
