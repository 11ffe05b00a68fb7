//! Main-memory read bandwidth: the ceiling for decode speed, since every generated token reads
//! all the weights once ([`crate::model::Weights::bytes_per_token`]). Dividing the bandwidth by
//! the bytes per token gives the tokens/s a device could reach if decode were purely
//! memory-bound, which tells a report how far the engine is from that limit.
//!
//! The method is STREAM's read-only variant: a buffer far larger than the last-level cache, each
//! thread summing its own contiguous slice, best of several repetitions.

use serde::Serialize;
use std::sync::Barrier;
use std::time::{Duration, Instant};

/// Default buffer when the cache size is unknown, and the least we use when it is known: large
/// enough to swamp any phone or laptop cache while fitting comfortably in a 4 GB device.
const MIN_DEFAULT_BYTES: usize = 512 << 20;

/// How many times the last-level cache the default buffer is, so that at most an eighth of what
/// a repetition reads could come from the cache left warm by the one before.
const LLC_FACTOR: usize = 8;

/// A way of reading the buffer. Several exist because which load width reaches the memory
/// controller's limit depends on the core (see [`readers`]).
#[derive(Clone, Copy)]
pub struct Reader {
    pub name: &'static str,
    read: fn(&[u64]) -> u64,
}

/// One thread count's result.
#[derive(Clone, Debug, Serialize)]
pub struct Measurement {
    pub threads: usize,
    /// Bytes read per second, in 1e9 bytes.
    pub gbs: f64,
    /// The fastest repetition's wall time, from the first thread starting to the last finishing.
    pub best_ns: u64,
    /// The reader that achieved `gbs`.
    pub reader: &'static str,
}

/// The whole run, as `bandwidth --json` prints it.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub buffer_bytes: usize,
    /// The cache the buffer is sized against, when sysfs describes it.
    pub llc_bytes: Option<usize>,
    pub repetitions: usize,
    /// The CPUs the threads were allowed on (`sched_getaffinity`), e.g. "0-3".
    pub cpus: Option<String>,
    pub results: Vec<Measurement>,
}

/// The largest data or unified cache of CPU 0, in bytes, from sysfs. On big.LITTLE chips the
/// clusters may differ; the shared last level is what cpu0 reports as well, so one core suffices.
pub fn last_level_cache_bytes() -> Option<usize> {
    let dir = std::fs::read_dir("/sys/devices/system/cpu/cpu0/cache").ok()?;
    dir.filter_map(|e| {
        let p = e.ok()?.path();
        let ty = std::fs::read_to_string(p.join("type")).ok()?;
        if ty.trim() == "Instruction" {
            return None;
        }
        parse_cache_size(&std::fs::read_to_string(p.join("size")).ok()?)
    })
    .max()
}

/// sysfs writes cache sizes as "48K", "2048K" or "32M".
fn parse_cache_size(s: &str) -> Option<usize> {
    let s = s.trim();
    let (num, mult) = match s.as_bytes().last()? {
        b'K' => (&s[..s.len() - 1], 1 << 10),
        b'M' => (&s[..s.len() - 1], 1 << 20),
        b'G' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<usize>().ok().map(|n| n * mult)
}

/// MemAvailable from /proc/meminfo, in bytes.
fn mem_available_bytes() -> Option<usize> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The default buffer: 8x the last-level cache, at least 512 MiB, but never more than half of
/// the memory currently available, because on a phone the low-memory killer would end the run
/// (or evict the model that the next benchmark needs) long before we finished measuring.
pub fn default_buffer_bytes(llc: Option<usize>) -> usize {
    let want = llc.map_or(MIN_DEFAULT_BYTES, |c| {
        (c * LLC_FACTOR).max(MIN_DEFAULT_BYTES)
    });
    let cap = mem_available_bytes().map_or(usize::MAX, |m| m / 2);
    want.min(cap).max(1 << 20)
}

/// The readers this CPU can run, widest first.
///
/// The portable loop is what the baseline target vectorises (SSE2 on x86_64, NEON on aarch64):
/// 16-byte loads. Most cores saturate DRAM with those, but some x86 cores issue too few
/// outstanding loads per thread at 16 bytes to do so, so where AVX2 or AVX-512 exist the same
/// loop is compiled again with them and all are tried; the best one counts.
pub fn readers() -> Vec<Reader> {
    #[allow(unused_mut)]
    let mut out = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            out.push(Reader {
                name: "avx512",
                read: x86::sum_avx512_checked,
            });
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            out.push(Reader {
                name: "avx2",
                read: x86::sum_avx2_checked,
            });
        }
    }
    out.push(Reader {
        name: if cfg!(target_arch = "aarch64") {
            "neon"
        } else {
            "portable"
        },
        read: sum_portable,
    });
    out
}

/// Eight independent accumulators so the loop carries no dependency from one load to the next
/// and LLVM can keep several vector registers of loads in flight.
#[inline(always)]
fn sum_lanes(buf: &[u64]) -> u64 {
    let mut acc = [0u64; 8];
    let chunks = buf.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for i in 0..8 {
            acc[i] = acc[i].wrapping_add(c[i]);
        }
    }
    let mut s = tail.iter().fold(0u64, |a, &v| a.wrapping_add(v));
    for a in acc {
        s = s.wrapping_add(a);
    }
    s
}

fn sum_portable(buf: &[u64]) -> u64 {
    sum_lanes(buf)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::sum_lanes;

    #[target_feature(enable = "avx2")]
    unsafe fn sum_avx2(buf: &[u64]) -> u64 {
        sum_lanes(buf)
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn sum_avx512(buf: &[u64]) -> u64 {
        sum_lanes(buf)
    }

    pub fn sum_avx2_checked(buf: &[u64]) -> u64 {
        // SAFETY: `readers()` hands this out only after detecting AVX2.
        unsafe { sum_avx2(buf) }
    }

    pub fn sum_avx512_checked(buf: &[u64]) -> u64 {
        // SAFETY: `readers()` hands this out only after detecting AVX-512F.
        unsafe { sum_avx512(buf) }
    }
}

/// A buffer of `bytes` (rounded down to whole u64s), every page written before any timing.
///
/// Writing a non-zero pattern matters twice over: an untouched allocation would make the first
/// repetition pay for page faults, and a zeroed one (calloc) may map every page to the kernel's
/// single shared zero page, which sits in the cache and reads absurdly fast. The pages are
/// written by `threads` threads over the same slices they will later read, so on a NUMA machine
/// each thread's slice lives on its own node (first-touch placement).
pub fn touched_buffer(bytes: usize, threads: usize) -> Vec<u64> {
    let n = (bytes / 8).max(8);
    let mut buf: Vec<u64> = Vec::with_capacity(n);
    let spare = &mut buf.spare_capacity_mut()[..n];
    let per = n.div_ceil(threads.max(1));
    std::thread::scope(|s| {
        for (t, part) in spare.chunks_mut(per).enumerate() {
            s.spawn(move || {
                let base = (t * per) as u64;
                for (i, v) in part.iter_mut().enumerate() {
                    v.write((base + i as u64) | 1);
                }
            });
        }
    });
    // SAFETY: every element of 0..n was initialised by the loop above.
    unsafe { buf.set_len(n) };
    buf
}

/// Reads `buf` with `threads` threads, each its own contiguous slice, `reps` times per reader,
/// and returns the best repetition.
///
/// Threads come from `std::thread::scope` rather than the engine's `ThreadPool`: the pool hands
/// out tasks one at a time from a shared counter, so a thread that starts early would steal
/// another's slice and a single slow wake-up would be hidden, whereas this measurement needs
/// exactly one slice per thread, all started together at a barrier. The pool's fast wake-up
/// matters for microsecond regions, not for repetitions of tens of milliseconds.
pub fn measure(buf: &[u64], threads: usize, reps: usize, readers: &[Reader]) -> Measurement {
    let threads = threads.max(1);
    let reps = reps.max(1);
    let per = buf.len().div_ceil(threads);
    let slices: Vec<&[u64]> = buf.chunks(per).collect();
    let barrier = Barrier::new(slices.len());
    // Each thread returns (start, end) of every (reader, repetition), in the same order.
    let spans: Vec<Vec<(Instant, Instant)>> = std::thread::scope(|s| {
        let handles: Vec<_> = slices
            .iter()
            .map(|&slice| {
                let barrier = &barrier;
                s.spawn(move || {
                    let mut out = Vec::with_capacity(readers.len() * reps);
                    for r in readers {
                        for _ in 0..reps {
                            barrier.wait();
                            let t0 = Instant::now();
                            std::hint::black_box((r.read)(std::hint::black_box(slice)));
                            out.push((t0, Instant::now()));
                        }
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a bandwidth thread panicked"))
            .collect()
    });
    let bytes = std::mem::size_of_val(buf) as f64;
    let mut best = (Duration::MAX, readers[0].name);
    for (i, r) in readers.iter().enumerate() {
        for rep in 0..reps {
            let k = i * reps + rep;
            let start = spans.iter().map(|v| v[k].0).min().expect("one thread");
            let end = spans.iter().map(|v| v[k].1).max().expect("one thread");
            let d = end - start;
            if d < best.0 {
                best = (d, r.name);
            }
        }
    }
    let secs = best.0.as_secs_f64().max(1e-9);
    Measurement {
        threads: slices.len(),
        gbs: bytes / secs / 1e9,
        best_ns: best.0.as_nanos() as u64,
        reader: best.1,
    }
}

/// One thread and every core this process may use (`available_parallelism` follows the affinity
/// mask), the two points a report needs: what one core can pull and what the device can.
pub fn default_thread_counts() -> Vec<usize> {
    let all = std::thread::available_parallelism().map_or(1, |n| n.get());
    if all > 1 {
        vec![1, all]
    } else {
        vec![1]
    }
}

/// Measures at every thread count in `thread_counts` on a buffer of `bytes` (default: see
/// [`default_buffer_bytes`]).
pub fn run(bytes: Option<usize>, thread_counts: &[usize], reps: usize) -> Report {
    let llc = last_level_cache_bytes();
    let bytes = bytes.unwrap_or_else(|| default_buffer_bytes(llc));
    let max_threads = thread_counts.iter().copied().max().unwrap_or(1);
    let buf = touched_buffer(bytes, max_threads);
    let readers = readers();
    // One untimed pass so that each reader's code and the TLB state are warm before timing.
    measure(&buf, max_threads, 1, &readers);
    let results = thread_counts
        .iter()
        .map(|&t| measure(&buf, t, reps, &readers))
        .collect();
    Report {
        buffer_bytes: std::mem::size_of_val(buf.as_slice()),
        llc_bytes: llc,
        repetitions: reps,
        cpus: crate::pool::allowed_cpus().map(|c| crate::pool::cpu_list(&c)),
        results,
    }
}

impl Report {
    /// The table `bandwidth` prints for people.
    pub fn table(&self) -> String {
        let mib = |b: usize| b as f64 / 1048576.0;
        let mut s = format!(
            "buffer {:.0} MiB{}, best of {} repetitions, cpus {}\n",
            mib(self.buffer_bytes),
            self.llc_bytes
                .map(|c| format!(" (last-level cache {:.1} MiB)", mib(c)))
                .unwrap_or_default(),
            self.repetitions,
            self.cpus.as_deref().unwrap_or("unknown"),
        );
        s.push_str("threads     GB/s  best ms  reader\n");
        for m in &self.results {
            s.push_str(&format!(
                "{:>7} {:>8.2} {:>8.2}  {}\n",
                m.threads,
                m.gbs,
                m.best_ns as f64 / 1e6,
                m.reader
            ));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_buffer_gives_a_finite_positive_rate_on_every_reader() {
        let buf = touched_buffer(4 << 20, 2);
        for threads in [1, 2] {
            let m = measure(&buf, threads, 2, &readers());
            assert!(m.gbs.is_finite() && m.gbs > 0.0, "{m:?}");
            assert_eq!(m.threads, threads);
        }
    }

    #[test]
    fn every_reader_sums_alike() {
        let buf = touched_buffer(1000 * 8 + 24, 3);
        let want = buf.iter().fold(0u64, |a, &v| a.wrapping_add(v));
        for r in readers() {
            assert_eq!((r.read)(&buf), want, "{}", r.name);
        }
        assert!(buf.iter().all(|&v| v != 0));
    }

    #[test]
    fn cache_sizes_parse() {
        assert_eq!(parse_cache_size("48K\n"), Some(48 << 10));
        assert_eq!(parse_cache_size("32M"), Some(32 << 20));
        assert_eq!(parse_cache_size("512"), Some(512));
        assert_eq!(parse_cache_size("x"), None);
    }
}
