//! Peak resident memory of the engine, from `/proc/<pid>/status` `VmHWM`.
//!
//! The kernel keeps VmHWM as a high-water mark, so reading it at any moment gives the peak so
//! far; it is read when each pass line arrives and by a background thread every ~50 ms, because
//! the process record disappears once the engine exits (a peak during the last pass, or in a
//! crash, would otherwise be lost). `ru_maxrss` from `wait4` is reported separately as a
//! cross-check. This reads the live `/proc`, not [`crate::fsroot`]: the engine is our own child.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub const PERIOD: Duration = Duration::from_millis(50);

/// `VmHWM` of a live process, in bytes.
pub fn vm_hwm_bytes(pid: u32) -> Option<u64> {
    parse_vm_hwm(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

pub fn parse_vm_hwm(status: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let kb: u64 = l
            .strip_prefix("VmHWM:")?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kb * 1024)
    })
}

/// Samples one process's VmHWM in the background and on demand, keeping the maximum.
pub struct PeakSampler {
    pid: u32,
    /// 0 = nothing read yet (a live process always has VmHWM > 0).
    max: Arc<AtomicU64>,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl PeakSampler {
    pub fn start(pid: u32) -> PeakSampler {
        let max = Arc::new(AtomicU64::new(0));
        let (stop, stopped) = mpsc::channel::<()>();
        let shared = Arc::clone(&max);
        let thread = std::thread::Builder::new()
            .name("rss-sampler".into())
            .spawn(move || loop {
                if let Some(v) = vm_hwm_bytes(pid) {
                    shared.fetch_max(v, Ordering::Relaxed);
                }
                // A channel rather than sleep, so stopping does not wait out the period.
                match stopped.recv_timeout(PERIOD) {
                    Err(RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
            })
            .ok();
        PeakSampler {
            pid,
            max,
            stop: Some(stop),
            thread,
        }
    }

    /// Folds in a peak the engine reported about itself (its pass and done records). Without
    /// it, an engine that finishes before its first pass line is read leaves only the reading
    /// taken just after exec (a few hundred KiB) to stand in for every pass.
    pub fn note(&self, reported: Option<u64>) {
        if let Some(v) = reported {
            self.max.fetch_max(v, Ordering::Relaxed);
        }
    }

    /// Reads VmHWM now (folding it into the maximum) and returns it. The engine may already
    /// have exited by the time its last line is read (a zombie's status has no VmHWM): then the
    /// largest value so far (read or [`PeakSampler::note`]d) stands in, since VmHWM only ever
    /// grows.
    pub fn sample(&self) -> Option<u64> {
        match vm_hwm_bytes(self.pid) {
            Some(v) => {
                self.max.fetch_max(v, Ordering::Relaxed);
                Some(v)
            }
            None => Some(self.max.load(Ordering::Relaxed)).filter(|&v| v > 0),
        }
    }

    /// Stops the thread; the largest VmHWM seen, if any was readable.
    pub fn finish(mut self) -> Option<u64> {
        self.sample();
        self.shutdown();
        Some(self.max.load(Ordering::Relaxed)).filter(|&v| v > 0)
    }

    fn shutdown(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for PeakSampler {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vm_hwm() {
        let s = "Name:\tengine\nVmPeak:\t  20000 kB\nVmHWM:\t    1234 kB\nVmRSS:\t 1000 kB\n";
        assert_eq!(parse_vm_hwm(s), Some(1234 * 1024));
        assert_eq!(parse_vm_hwm("Name:\tzombie\nState:\tZ (zombie)\n"), None);
    }

    #[test]
    fn samples_this_process() {
        let s = PeakSampler::start(std::process::id());
        assert!(s.sample().unwrap() > 0);
        std::thread::sleep(PERIOD * 2);
        assert!(s.finish().unwrap() > 0);
    }
}
