//! Which cores the engine's threads run on: on a big.LITTLE device, the performance cores.
//!
//! A phone's SoC pairs a few fast cores with slower, efficient ones. A matrix product split
//! evenly over all of them finishes when the slowest core does, so llama.cpp's advice is to run
//! as many threads as there are fast cores; and the scheduler may still park a busy thread on a
//! little core when the device is warm. So by default the engine counts the performance cores
//! and restricts its threads to them.
//!
//! Arm64 kernels describe each core's relative speed in `cpuN/cpu_capacity` (1024 for the
//! fastest); where that is missing the per-core maximum frequency (`cpufreq/cpuinfo_max_freq`)
//! stands in, which misses cores of the same clock but different design, hence capacity first.
//! Cores within 80% of the fastest count as performance cores (prime plus big cores on a
//! tri-cluster phone). Only the cores this process may use (`sched_getaffinity`) are considered,
//! so a benchmark started under `taskset` on the little cores measures the little cores.

use std::path::Path;

/// Where a core's speed was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpeedSource {
    Capacity,
    MaxFrequency,
}

impl SpeedSource {
    fn name(self) -> &'static str {
        match self {
            SpeedSource::Capacity => "cpu_capacity",
            SpeedSource::MaxFrequency => "cpuinfo_max_freq",
        }
    }
}

/// The performance cores among the cores a process may use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PerformanceCores {
    /// Ascending CPU numbers.
    pub cpus: Vec<usize>,
    /// How many cores were considered.
    pub of: usize,
    pub source: SpeedSource,
}

impl PerformanceCores {
    /// Whether some considered cores are slower than the rest (big.LITTLE).
    pub fn heterogeneous(&self) -> bool {
        self.cpus.len() < self.of
    }
}

/// Cores at least this fraction of the fastest one's speed are performance cores.
const FAST_ENOUGH: (u64, u64) = (8, 10);

/// Reads the speed of each of `cpus` under `sysfs` (normally `/sys/devices/system/cpu`) and
/// returns the fast ones; `None` when the speeds cannot be read for every core.
pub fn performance_cores_in(sysfs: &Path, cpus: &[usize]) -> Option<PerformanceCores> {
    if cpus.is_empty() {
        return None;
    }
    let read_all = |rel: &dyn Fn(usize) -> String| -> Option<Vec<u64>> {
        cpus.iter()
            .map(|&c| {
                std::fs::read_to_string(sysfs.join(rel(c)))
                    .ok()?
                    .trim()
                    .parse()
                    .ok()
            })
            .collect()
    };
    let (speeds, source) = match read_all(&|c| format!("cpu{c}/cpu_capacity")) {
        Some(s) => (s, SpeedSource::Capacity),
        None => (
            read_all(&|c| format!("cpu{c}/cpufreq/cpuinfo_max_freq"))?,
            SpeedSource::MaxFrequency,
        ),
    };
    let top = *speeds.iter().max()?;
    let fast = cpus
        .iter()
        .zip(&speeds)
        .filter(|&(_, &s)| s * FAST_ENOUGH.1 >= top * FAST_ENOUGH.0)
        .map(|(&c, _)| c)
        .collect();
    Some(PerformanceCores {
        cpus: fast,
        of: cpus.len(),
        source,
    })
}

/// This device's performance cores among those this process may use.
pub fn performance_cores() -> Option<PerformanceCores> {
    let allowed = crate::pool::allowed_cpus()?;
    performance_cores_in(Path::new("/sys/devices/system/cpu"), &allowed)
}

/// The default thread count: one per performance core, or one per available core where the
/// cores' speeds are unknown.
pub fn default_threads() -> usize {
    let all = std::thread::available_parallelism().map_or(1, |n| n.get());
    performance_cores()
        .map(|p| p.cpus.len())
        .filter(|&n| n > 0 && n <= all)
        .unwrap_or(all)
}

/// On a big.LITTLE device, restricts the calling thread (and so every thread it starts later,
/// which inherit its affinity: call this before creating a session's pool) to the performance
/// cores, when `n_threads` fit on them. Returns how the threads were placed, for the load
/// record; `None` when nothing was changed (a homogeneous CPU, more threads than fast cores,
/// unknown speeds).
pub fn place_on_performance_cores(n_threads: usize) -> Option<String> {
    let perf = performance_cores()?;
    if !perf.heterogeneous() || n_threads > perf.cpus.len() {
        return None;
    }
    set_affinity(&perf.cpus).then(|| {
        format!(
            "performance cores {} of {} (by {})",
            crate::pool::cpu_list(&perf.cpus),
            perf.of,
            perf.source.name()
        )
    })
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn set_affinity(cpus: &[usize]) -> bool {
    // SAFETY: cpu_set_t is plain data and zero is the empty set; CPU_SET only writes bits for
    // CPU numbers below the set's size, which the filter ensures.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        let max = 8 * std::mem::size_of::<libc::cpu_set_t>();
        for &c in cpus.iter().filter(|&&c| c < max) {
            libc::CPU_SET(c, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn set_affinity(_: &[usize]) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sysfs cpu directory with the given per-core files.
    fn sysfs(files: &[(usize, &str, u64)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for &(cpu, file, value) in files {
            let p = dir.path().join(format!("cpu{cpu}")).join(file);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, format!("{value}\n")).unwrap();
        }
        dir
    }

    #[test]
    fn capacity_picks_prime_and_big_cores_of_a_tri_cluster_phone() {
        // 4 little (capacity 325), 3 big (870), 1 prime (1024): big is 85% of prime.
        let mut files = Vec::new();
        for c in 0..8 {
            let cap = match c {
                0..=3 => 325,
                4..=6 => 870,
                _ => 1024,
            };
            files.push((c, "cpu_capacity", cap));
            // Frequencies that would put the big cores below the cut, to show capacity wins.
            files.push((
                c,
                "cpufreq/cpuinfo_max_freq",
                if c == 7 { 3_200_000 } else { 2_400_000 },
            ));
        }
        let dir = sysfs(&files);
        let p = performance_cores_in(dir.path(), &(0..8).collect::<Vec<_>>()).unwrap();
        assert_eq!(p.cpus, vec![4, 5, 6, 7]);
        assert_eq!(p.source, SpeedSource::Capacity);
        assert!(p.heterogeneous());
    }

    #[test]
    fn max_frequency_stands_in_without_capacity() {
        let files: Vec<_> = (0..6)
            .map(|c| {
                let f = if c < 4 { 1_800_000 } else { 2_400_000 };
                (c, "cpufreq/cpuinfo_max_freq", f)
            })
            .collect();
        let dir = sysfs(&files);
        let p = performance_cores_in(dir.path(), &(0..6).collect::<Vec<_>>()).unwrap();
        assert_eq!(p.cpus, vec![4, 5]);
        assert_eq!(p.source, SpeedSource::MaxFrequency);
    }

    #[test]
    fn only_allowed_cores_count_and_equal_cores_are_all_fast() {
        let files: Vec<_> = (0..4)
            .map(|c| (c, "cpu_capacity", if c < 2 { 400 } else { 1024 }))
            .collect();
        let dir = sysfs(&files);
        // Confined to the little cores (taskset -c 0,1): those are the ones to use.
        let p = performance_cores_in(dir.path(), &[0, 1]).unwrap();
        assert_eq!(p.cpus, vec![0, 1]);
        assert!(!p.heterogeneous());
    }

    #[test]
    fn unreadable_speeds_give_none() {
        let dir = sysfs(&[(0, "cpu_capacity", 1024)]);
        // cpu1 has neither file.
        assert_eq!(performance_cores_in(dir.path(), &[0, 1]), None);
        assert_eq!(performance_cores_in(dir.path(), &[]), None);
    }
}
