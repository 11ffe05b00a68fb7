//! A fixed set of worker threads that split each parallel step into small tasks.
//!
//! Why not a general-purpose pool: a decode step issues a few hundred short parallel regions
//! (one per matrix), each lasting tens of microseconds, so waking threads through the OS every
//! time would cost as much as the work. Workers spin briefly on an epoch counter and only then
//! sleep. Tasks are handed out one at a time from an atomic counter rather than split in equal
//! parts up front, so when another process takes a core the remaining threads simply take more
//! tasks instead of waiting for the descheduled one.

use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long an idle worker spins before sleeping. Between the matrices of one token the gap is
/// a few microseconds; between tokens (sampling, output) it can be longer.
const SPIN: Duration = Duration::from_micros(200);

/// The work of one parallel region, on the caller's stack while the region runs.
struct Job<'a> {
    task: &'a (dyn Fn(usize) + Sync),
    n_tasks: usize,
    next: AtomicUsize,
    done: AtomicUsize,
}

struct Shared {
    epoch: AtomicU64,
    /// Points at the caller's `Job` while a region runs, null otherwise.
    job: AtomicPtr<Job<'static>>,
    /// Workers currently holding a reference to `job`.
    in_job: AtomicUsize,
    sleepers: AtomicUsize,
    lock: Mutex<bool>,
    wake: Condvar,
    /// Serialises callers: a pool runs one region at a time.
    caller: Mutex<()>,
}

pub struct ThreadPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl ThreadPool {
    /// A pool that runs regions on `n_threads` threads: the caller plus `n_threads - 1` workers.
    pub fn new(n_threads: usize) -> ThreadPool {
        let shared = Arc::new(Shared {
            epoch: AtomicU64::new(0),
            job: AtomicPtr::new(std::ptr::null_mut()),
            in_job: AtomicUsize::new(0),
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(false),
            wake: Condvar::new(),
            caller: Mutex::new(()),
        });
        let workers = (1..n_threads.max(1))
            .map(|i| {
                let s = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name(format!("meltbench-worker-{i}"))
                    .spawn(move || worker(&s))
                    .expect("spawning a worker thread")
            })
            .collect();
        ThreadPool { shared, workers }
    }

    pub fn n_threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Runs `task(i)` for every `i` in `0..n_tasks`, spread over the pool, and returns when all
    /// are done. Tasks must be independent.
    pub fn run(&self, n_tasks: usize, task: &(dyn Fn(usize) + Sync)) {
        if n_tasks == 0 {
            return;
        }
        if self.workers.is_empty() || n_tasks == 1 {
            (0..n_tasks).for_each(task);
            return;
        }
        let _one_at_a_time = self.shared.caller.lock().unwrap_or_else(|e| e.into_inner());
        let job = Job {
            task,
            n_tasks,
            next: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
        };
        let s = &*self.shared;
        // SAFETY (lifetime erasure): the pointer is withdrawn and every worker that could have
        // read it has left (`in_job == 0`) before this function returns and `job` is dropped.
        let ptr = &job as *const Job<'_> as *mut Job<'static>;
        s.job.store(ptr, SeqCst);
        s.epoch.fetch_add(1, SeqCst);
        if s.sleepers.load(SeqCst) > 0 {
            let _g = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        run_tasks(&job);
        while job.done.load(Acquire) < n_tasks {
            std::hint::spin_loop();
            std::thread::yield_now();
        }
        s.job.store(std::ptr::null_mut(), SeqCst);
        while s.in_job.load(SeqCst) > 0 {
            std::hint::spin_loop();
        }
    }
}

fn run_tasks(job: &Job<'_>) {
    loop {
        let i = job.next.fetch_add(1, Relaxed);
        if i >= job.n_tasks {
            return;
        }
        (job.task)(i);
        job.done.fetch_add(1, Release);
    }
}

fn worker(s: &Shared) {
    let mut seen = s.epoch.load(SeqCst);
    loop {
        // Wait for a new epoch: spin first, then sleep. The clock is read once per 64 spins:
        // reading it every time made clock_gettime a visible part of a prefill profile.
        let start = Instant::now();
        let mut spins = 0u32;
        while s.epoch.load(SeqCst) == seen {
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(64) && start.elapsed() > SPIN {
                let mut stop = s.lock.lock().unwrap_or_else(|e| e.into_inner());
                s.sleepers.fetch_add(1, SeqCst);
                while s.epoch.load(SeqCst) == seen && !*stop {
                    stop = s.wake.wait(stop).unwrap_or_else(|e| e.into_inner());
                }
                s.sleepers.fetch_sub(1, SeqCst);
                if *stop {
                    return;
                }
                break;
            }
            std::hint::spin_loop();
        }
        seen = s.epoch.load(SeqCst);
        // Register before looking at the job so the caller cannot retire it under us.
        s.in_job.fetch_add(1, SeqCst);
        let ptr = s.job.load(SeqCst);
        if !ptr.is_null() {
            // SAFETY: non-null while registered means the caller is still inside `run`, which
            // keeps the job alive until `in_job` drops back to zero.
            run_tasks(unsafe { &*ptr });
        }
        s.in_job.fetch_sub(1, SeqCst);
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        *self.shared.lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        // Bump the epoch too so spinning workers go round to the sleeping branch and see `stop`.
        self.shared.epoch.fetch_add(1, SeqCst);
        self.shared.wake.notify_all();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// A raw pointer that tasks may share when each writes a disjoint part of one output slice.
#[derive(Clone, Copy)]
pub struct SharedMut<T>(*mut T);

// SAFETY: users guarantee disjoint writes (documented at each use); the pointee outlives the region.
unsafe impl<T: Send> Send for SharedMut<T> {}
unsafe impl<T: Send> Sync for SharedMut<T> {}

impl<T> SharedMut<T> {
    pub fn new(slice: &mut [T]) -> Self {
        SharedMut(slice.as_mut_ptr())
    }

    /// The start of the slice, for kernels that write strided elements through it.
    pub fn ptr(&self) -> *mut T {
        self.0
    }

    /// # Safety
    /// `start..start+len` must lie within the original slice and no other task may touch it
    /// during the region.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slice(&self, start: usize, len: usize) -> &mut [T] {
        std::slice::from_raw_parts_mut(self.0.add(start), len)
    }
}

/// The CPUs this process may run on (`sched_getaffinity`), ascending. A benchmark started under
/// `taskset` or in a cgroup-restricted container has fewer cores than the device; recording which
/// ones lets a report tell a slow result from a confined one.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn allowed_cpus() -> Option<Vec<usize>> {
    // SAFETY: cpu_set_t is plain data, zero is a valid (empty) set, and sched_getaffinity writes
    // at most size_of::<cpu_set_t>() bytes into the set we own.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return None;
        }
        let max = 8 * std::mem::size_of::<libc::cpu_set_t>();
        Some((0..max).filter(|&c| libc::CPU_ISSET(c, &set)).collect())
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub fn allowed_cpus() -> Option<Vec<usize>> {
    None
}

/// CPU numbers in the kernel's list syntax, as `taskset -c` takes them: `[0, 1, 2, 5]` -> "0-2,5".
pub fn cpu_list(cpus: &[usize]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let mut j = i;
        while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
            j += 1;
        }
        parts.push(if j == i {
            cpus[i].to_string()
        } else {
            format!("{}-{}", cpus[i], cpus[j])
        });
        i = j + 1;
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn cpu_lists_use_ranges() {
        assert_eq!(cpu_list(&[0, 1, 2, 5, 7, 8]), "0-2,5,7-8");
        assert_eq!(cpu_list(&[3]), "3");
        assert_eq!(cpu_list(&[]), "");
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn this_process_may_run_somewhere() {
        let cpus = allowed_cpus().unwrap();
        assert!(!cpus.is_empty());
        assert!(cpus.len() >= std::thread::available_parallelism().unwrap().get());
    }

    #[test]
    fn every_task_runs_exactly_once() {
        let pool = ThreadPool::new(3);
        for round in 0..200 {
            let n = 1 + round % 37;
            let hits: Vec<AtomicU32> = (0..n).map(|_| AtomicU32::new(0)).collect();
            pool.run(n, &|i| {
                hits[i].fetch_add(1, Relaxed);
            });
            assert!(hits.iter().all(|h| h.load(Relaxed) == 1), "round {round}");
        }
    }

    #[test]
    fn survives_idle_gaps_longer_than_the_spin() {
        let pool = ThreadPool::new(2);
        let sum = AtomicUsize::new(0);
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(5));
            pool.run(10, &|i| {
                sum.fetch_add(i, Relaxed);
            });
        }
        assert_eq!(sum.load(Relaxed), 3 * 45);
    }
}
