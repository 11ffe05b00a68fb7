//! The sampling thread: reads every [`Group`] at its rate on absolute CLOCK_MONOTONIC deadlines
//! (`clock_nanosleep(TIMER_ABSTIME)`, so the period does not drift with read time), stamps each
//! group's values with CLOCK_MONOTONIC nanoseconds (the clock of the engine's
//! `start_mono_ns`/`end_mono_ns`), forms the total power, and measures its own CPU time
//! (`CLOCK_THREAD_CPUTIME_ID`) so its cost can be reported.

use super::energy::{self, Sample, WindowStats};
use super::{Discovery, Group, Kind, PowerTotal, Rate, Reading, Series};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Sampling rates (Hz).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Config {
    /// Power and energy files (INA3221, hwmon power, RAPL, battery).
    pub power_hz: f64,
    /// Temperatures and clocks.
    pub slow_hz: f64,
    /// Readers that spawn a process (vcgencmd, dumpsys, a meter command): each spawn costs
    /// milliseconds of CPU, and vcgencmd at 50 Hz has been seen to slow decoding 6x.
    pub command_hz: f64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            power_hz: 20.0,
            slow_hz: 2.0,
            command_hz: 2.0,
        }
    }
}

impl Config {
    pub fn period_ns(&self, rate: Rate) -> u64 {
        let hz = match rate {
            Rate::Power => self.power_hz,
            Rate::Slow => self.slow_hz,
            Rate::Command => self.command_hz,
        };
        (1e9 / hz.max(0.001)) as u64
    }
}

pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

fn thread_cpu_ns() -> u64 {
    clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn sleep_until(deadline_ns: u64) {
    let ts = libc::timespec {
        // `as _` takes the field's own type: naming `libc::time_t` warns on musl, whose
        // definition libc is about to change.
        tv_sec: (deadline_ns / 1_000_000_000) as _,
        tv_nsec: (deadline_ns % 1_000_000_000) as _,
    };
    // SAFETY: plain syscall with a timespec we own; EINTR just ends the sleep early, and the
    // loop re-checks the time.
    unsafe {
        libc::clock_nanosleep(
            libc::CLOCK_MONOTONIC,
            libc::TIMER_ABSTIME,
            &ts,
            std::ptr::null_mut(),
        )
    };
}

/// Everything sampled so far.
#[derive(Debug, Default)]
pub struct Store {
    /// One list per series, in [`Sampler::series`] order.
    pub series: Vec<Vec<Sample>>,
    /// The device total (W, or cumulative J for a counter total).
    pub total: Vec<Sample>,
    /// CPU time of the sampling thread so far.
    pub cpu_ns: u64,
    pub started_ns: u64,
    pub last_tick_ns: u64,
    /// Group reads done, and deadlines skipped because a read overran.
    pub reads: u64,
    pub missed: u64,
}

struct Shared {
    stop: AtomicBool,
    store: Mutex<Store>,
}

/// What a pass cost and the conditions it ran under.
#[derive(Clone, Debug, PartialEq)]
pub struct PassFigures {
    /// Primary temperature at start, maximum, at end (°C).
    pub temp_c: Option<(f64, f64, f64)>,
    /// Energy and power of the device total over the pass.
    pub power: Reading<WindowStats>,
    pub lower_bound: bool,
    /// Highest Android thermal status seen.
    pub thermal_status_max: Option<f64>,
    /// Raspberry Pi `get_throttled` bits seen during the pass (OR of the samples).
    pub throttled_bits: Option<u32>,
    /// Most frequency-limiting cooling devices active at once.
    pub throttling_devices_max: Option<f64>,
    /// Mean frequency per CPU cluster (MHz), by series name.
    pub cpu_mhz: Vec<(String, f64)>,
}

/// Sampler's own cost.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Overhead {
    pub wall_ns: u64,
    pub cpu_ns: u64,
    pub reads: u64,
    pub missed: u64,
}

impl Overhead {
    /// CPU time as a percentage of one core.
    pub fn core_pct(&self) -> f64 {
        if self.wall_ns == 0 {
            0.0
        } else {
            self.cpu_ns as f64 / self.wall_ns as f64 * 100.0
        }
    }
}

pub struct Sampler {
    pub series: Vec<Series>,
    pub power: Option<PowerTotal>,
    pub primary_temp: Option<String>,
    pub config: Config,
    total_rate: Rate,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Sampler {
    /// Starts sampling the discovered groups (the discovery keeps identity and sources).
    pub fn start(discovery: &mut Discovery, config: Config) -> Sampler {
        let groups = std::mem::take(&mut discovery.groups);
        let series: Vec<Series> = groups.iter().flat_map(|g| g.series.clone()).collect();
        let power = discovery.power.clone();
        let now = monotonic_ns();
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            store: Mutex::new(Store {
                series: vec![Vec::new(); series.len()],
                started_ns: now,
                ..Store::default()
            }),
        });
        let members: Vec<usize> = power
            .as_ref()
            .map(|p| {
                p.members
                    .iter()
                    .filter_map(|m| series.iter().position(|s| &s.name == m))
                    .collect()
            })
            .unwrap_or_default();
        // The total is formed at the ticks of its first member's rate.
        let total_rate = members.first().and_then(|&i| {
            let mut off = 0;
            groups.iter().find_map(|g| {
                let hit = (off..off + g.series.len()).contains(&i);
                off += g.series.len();
                hit.then_some(g.rate)
            })
        });
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("meltbench-telemetry".into())
            .spawn(move || run(groups, members, total_rate, config, sh))
            .expect("spawn the telemetry thread");
        Sampler {
            series,
            power,
            primary_temp: discovery.primary_temp.clone(),
            config,
            total_rate: total_rate.unwrap_or(Rate::Power),
            shared,
            thread: Some(thread),
        }
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.series.iter().position(|s| s.name == name)
    }

    #[allow(dead_code)] // used by the sampler tests
    /// A copy of one series' samples.
    pub fn samples(&self, name: &str) -> Vec<Sample> {
        let i = match self.index(name) {
            Some(i) => i,
            None => return Vec::new(),
        };
        self.shared.store.lock().expect("store").series[i].clone()
    }

    #[allow(dead_code)] // used by the sampler tests
    pub fn total_samples(&self) -> Vec<Sample> {
        self.shared.store.lock().expect("store").total.clone()
    }

    /// Figures for the window `[start_ns, end_ns]` (CLOCK_MONOTONIC).
    pub fn pass(&self, start_ns: u64, end_ns: u64) -> PassFigures {
        let store = self.shared.store.lock().expect("store");
        let power = match &self.power {
            None => Reading::Absent,
            Some(p) => {
                let period = self.config.period_ns(self.total_rate);
                if p.kind == Kind::EnergyJ {
                    energy::counter_energy(&store.total, start_ns, end_ns, period)
                } else {
                    energy::integrate_power(&store.total, start_ns, end_ns, period)
                }
            }
        };
        let temp_c = self
            .primary_temp
            .as_deref()
            .and_then(|n| self.index(n))
            .and_then(|i| energy::levels(&store.series[i], start_ns, end_ns));
        let by_kind = |k: Kind| {
            self.series
                .iter()
                .enumerate()
                .filter(move |(_, s)| s.kind == k)
                .map(|(i, s)| (i, s.name.clone()))
        };
        let thermal_status_max = by_kind(Kind::ThermalStatus)
            .filter_map(|(i, _)| energy::levels(&store.series[i], start_ns, end_ns))
            .map(|l| l.1)
            .reduce(f64::max);
        let throttled_bits = by_kind(Kind::ThrottleBits)
            .flat_map(|(i, _)| {
                store.series[i]
                    .iter()
                    .filter(|s| s.0 >= start_ns && s.0 <= end_ns)
                    .filter_map(|s| s.1.clone().ok())
                    .collect::<Vec<_>>()
            })
            .map(|b| b as u32)
            .reduce(|a, b| a | b);
        let throttling_devices_max = by_kind(Kind::ThrottleCount)
            .filter_map(|(i, _)| energy::levels(&store.series[i], start_ns, end_ns))
            .map(|l| l.1)
            .reduce(f64::max);
        let cpu_mhz = by_kind(Kind::FreqMhz)
            .filter(|(_, n)| n.starts_with("cpufreq:"))
            .filter_map(|(i, n)| Some((n, energy::mean(&store.series[i], start_ns, end_ns)?)))
            .collect();
        PassFigures {
            temp_c,
            power,
            lower_bound: self.power.as_ref().is_some_and(|p| p.lower_bound),
            thermal_status_max,
            throttled_bits,
            throttling_devices_max,
            cpu_mhz,
        }
    }

    /// Waits (at most one sampling period of the total, plus a little) until the total has a
    /// sample at or after `t_ns`, so a pass that just ended is bracketed at its end.
    pub fn wait_past(&self, t_ns: u64) {
        if self.power.is_none() {
            return;
        }
        let deadline = monotonic_ns() + self.config.period_ns(self.total_rate) + 30_000_000;
        loop {
            let last = self
                .shared
                .store
                .lock()
                .expect("store")
                .total
                .last()
                .map(|s| s.0);
            if last.is_some_and(|l| l >= t_ns) || monotonic_ns() >= deadline {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Drops samples older than `t_ns`, keeping the last one before it (it brackets the next
    /// window).
    pub fn trim_before(&self, t_ns: u64) {
        let mut store = self.shared.store.lock().expect("store");
        let trim = |v: &mut Vec<Sample>| {
            let keep_from = v.iter().rposition(|s| s.0 <= t_ns).unwrap_or(0);
            v.drain(..keep_from);
        };
        for s in &mut store.series {
            trim(s);
        }
        trim(&mut store.total);
    }

    /// Cost so far.
    pub fn overhead(&self) -> Overhead {
        let store = self.shared.store.lock().expect("store");
        Overhead {
            wall_ns: store.last_tick_ns.saturating_sub(store.started_ns),
            cpu_ns: store.cpu_ns,
            reads: store.reads,
            missed: store.missed,
        }
    }

    /// Stops the thread and returns its cost.
    pub fn stop(mut self) -> Overhead {
        self.halt();
        self.overhead()
    }

    fn halt(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.halt();
    }
}

fn run(
    mut groups: Vec<Group>,
    members: Vec<usize>,
    total_rate: Option<Rate>,
    config: Config,
    shared: Arc<Shared>,
) {
    let rates = [Rate::Power, Rate::Slow, Rate::Command];
    let start = monotonic_ns();
    let mut next = [start; 3];
    let offsets: Vec<usize> = groups
        .iter()
        .scan(0, |off, g| {
            let o = *off;
            *off += g.series.len();
            Some(o)
        })
        .collect();
    let active: Vec<bool> = rates
        .iter()
        .map(|r| groups.iter().any(|g| g.rate == *r))
        .collect();
    let mut batch: Vec<(usize, Sample)> = Vec::new();
    const MAX_SLEEP: u64 = 50_000_000;
    while !shared.stop.load(Ordering::Relaxed) {
        let now = monotonic_ns();
        let due = (0..3).filter(|&i| active[i]).map(|i| next[i]).min();
        let Some(due) = due else {
            sleep_until(now + MAX_SLEEP);
            continue;
        };
        if due > now {
            sleep_until(due.min(now + MAX_SLEEP));
            continue;
        }
        let mut reads = 0;
        let mut missed = 0;
        let mut total_due = false;
        for (ri, rate) in rates.iter().enumerate() {
            if !active[ri] || next[ri] > now {
                continue;
            }
            for (gi, g) in groups.iter_mut().enumerate() {
                if g.rate != *rate {
                    continue;
                }
                let t = monotonic_ns();
                for (k, v) in g.read().into_iter().enumerate() {
                    batch.push((offsets[gi] + k, (t, v)));
                }
                reads += 1;
            }
            if total_rate == Some(*rate) {
                total_due = true;
            }
            let period = config.period_ns(*rate);
            next[ri] += period;
            let after = monotonic_ns();
            if next[ri] <= after {
                let behind = (after - next[ri]) / period + 1;
                missed += behind;
                next[ri] += behind * period;
            }
        }
        let cpu = thread_cpu_ns();
        let mut store = shared.store.lock().expect("store");
        for (i, s) in batch.drain(..) {
            store.series[i].push(s);
        }
        if total_due {
            let mut t = u64::MAX;
            let mut sum = Reading::Ok(0.0);
            for &m in &members {
                let last = store.series[m].last().cloned();
                sum = match (sum, last) {
                    (Reading::Ok(a), Some((ts, Reading::Ok(b)))) => {
                        t = t.min(ts);
                        Reading::Ok(a + b)
                    }
                    (Reading::Ok(_), Some((ts, other))) => {
                        t = t.min(ts);
                        other
                    }
                    (Reading::Ok(_), None) => Reading::Absent,
                    (done, _) => done,
                };
            }
            if t != u64::MAX {
                store.total.push((t, sum));
            }
        }
        store.reads += reads;
        store.missed += missed;
        store.cpu_ns = cpu;
        store.last_tick_ns = monotonic_ns();
    }
    let cpu = thread_cpu_ns();
    let mut store = shared.store.lock().expect("store");
    store.cpu_ns = cpu;
    store.last_tick_ns = monotonic_ns();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::{Family, Identity};
    use std::sync::atomic::AtomicU64;

    fn discovery(groups: Vec<Group>, power: Option<PowerTotal>) -> Discovery {
        Discovery {
            family: Family::Linux,
            identity: Identity::default(),
            sources: Vec::new(),
            groups,
            power,
            primary_temp: Some("t".into()),
        }
    }

    #[test]
    fn samples_at_its_rates_and_integrates_the_total() {
        let calls = Arc::new(AtomicU64::new(0));
        let c = calls.clone();
        let groups = vec![
            Group::single(Rate::Power, "p".into(), Kind::PowerW, move || {
                c.fetch_add(1, Ordering::Relaxed);
                Reading::Ok(3.0)
            }),
            Group::single(Rate::Slow, "t".into(), Kind::TempC, || Reading::Ok(50.0)),
        ];
        let total = PowerTotal {
            members: vec!["p".into()],
            kind: Kind::PowerW,
            rule: "test".into(),
            lower_bound: false,
            battery_side: false,
        };
        let mut d = discovery(groups, Some(total));
        let cfg = Config {
            power_hz: 100.0,
            slow_hz: 10.0,
            command_hz: 1.0,
        };
        let s = Sampler::start(&mut d, cfg);
        std::thread::sleep(std::time::Duration::from_millis(150));
        let a = monotonic_ns();
        std::thread::sleep(std::time::Duration::from_millis(300));
        let b = monotonic_ns();
        std::thread::sleep(std::time::Duration::from_millis(60));
        let f = s.pass(a, b);
        let st = f.power.clone().ok().expect("power");
        let want = 3.0 * (b - a) as f64 / 1e9;
        assert!((st.energy_j - want).abs() / want < 0.01, "{st:?}");
        assert!(st.samples >= 20, "{st:?}");
        assert_eq!(f.temp_c, Some((50.0, 50.0, 50.0)));
        let o = s.stop();
        assert!(calls.load(Ordering::Relaxed) >= 40);
        assert!(o.cpu_ns > 0 && o.wall_ns > 0, "{o:?}");
    }
}
