//! Thermal device states: before a cell's passes, establish the state the cell asks for
//! (`cool`, `warm`, `hot`; `any` needs nothing), from the telemetry sampler's readings, or fail
//! the cell saying what was reached. The `+battery<LEVEL>-<MODE>` part of a state is parsed here
//! and established by [`super::battery`], before the thermal gate (see `runner.rs` for why).
//!
//! Rules (device-telemetry §7; the thresholds are suggestions there and the achieved values are
//! reported in [`Reached`] and in every pass's telemetry):
//!
//! - **Primary sensor**: the discovery's primary temperature ([`crate::telemetry::thermal::primary`]:
//!   Jetson `tj-therm`, Pi `cpu-thermal`/`cpu_thermal`, Intel `x86_pkg_temp`, ..., else the
//!   first zone whose type contains `cpu`, else the first zone).
//! - **Idle reference**: the lowest primary temperature this agent has seen during this run
//!   (every sample still in the sampler's store when a cell starts, and every reading while a
//!   state is being established). This is honest but limited: it is not an ambient-soaked idle
//!   temperature. On a device that arrives hot, the first `cool` reference is only as low as
//!   what was seen so far, and the "no longer falling" rule is what makes that cell wait until
//!   the device has settled; later cells are held to the lowest value seen.
//! - **cool**: no load of ours runs, and the agent waits until, at one poll, (1) the primary
//!   sensor is within [`TOLERANCE_C`] of the reference, (2) it is no longer falling: the
//!   least-squares line through its samples of the last `W` seconds drops by less than
//!   [`FLAT_DROP_C`] across the window (W = 60 s by default, i.e. less than 0.1 °C/min;
//!   `MELTBENCH_COOL_WINDOW_S` changes W; the wait lasts at least W, so the samples cover it), and (3) Android thermal
//!   status, when the device has that source, is 0.
//! - **warm**: pre-heat until the primary sensor is at least [`WARM_ABOVE_C`] above the
//!   reference; no throttling required.
//! - **hot**: pre-heat until a throttling indicator trips: a frequency-limiting cooling device
//!   active (`cur_state > 0`), Android thermal status ≥ 1, a Raspberry Pi `get_throttled`
//!   "now" bit (arm frequency capped, throttled, soft temperature limit), or a CPU policy's
//!   `scaling_max_freq` dropping below both its value when the pre-heat started and
//!   `cpuinfo_max_freq` (a cap that was already there, e.g. a power profile, does not count).
//!   The pre-heat stops and measurement starts as soon as one trips.
//! - **Pre-heat load**: the engine's own `bench` on the cell's model and engine job (its
//!   threads, prompt and generation length) with a very large number of passes, so the device
//!   heats the way the passes will. It is killed on every exit path ([`Preheat`]'s `Drop`).
//! - Readings come from the sampler (2 Hz for temperatures and throttling series); the gate polls
//!   at that rate. There are no fixed sleeps standing in for a measurement.
//! - Each state has the cell's `state_timeout_s` (0: [`super::wait::DEFAULT_TIMEOUT_S`]); on timeout the cell
//!   fails with what was reached, and no passes are measured for it.

use super::request::Requested;
use super::wait::{check_signal, poll_pause, timeout_s};
use crate::engine_process::{EngineSpec, Preheat};
use crate::fsroot::FsRoot;
use crate::telemetry::energy::Sample;
use crate::telemetry::sampler::Sampler;
use crate::telemetry::{rpi, sysfs, Kind, Reading};
use meltbench_protocol::agent::Cell;
use std::time::{Duration, Instant};

/// `cool`: how close to the idle reference (°C).
pub const TOLERANCE_C: f64 = 2.0;
/// `cool`: largest drop (°C) of the fitted line across the window that still counts as flat.
pub const FLAT_DROP_C: f64 = 0.1;
/// `cool`: default window (s) of the "no longer falling" rule.
pub const WINDOW_DEFAULT_S: f64 = 60.0;
pub const WINDOW_ENV: &str = "MELTBENCH_COOL_WINDOW_S";
/// `warm`: how far above the idle reference (°C).
pub const WARM_ABOVE_C: f64 = 10.0;
/// Raspberry Pi `get_throttled` bits that mean "now": arm frequency capped, throttled, soft
/// temperature limit (under-voltage alone is not thermal).
const RPI_NOW_BITS: u32 = 0x2 | 0x4 | 0x8;

/// What was established, for `StateReached`.
#[derive(Clone, Debug, PartialEq)]
pub struct Reached {
    pub waited_s: f64,
    pub temp_c: Option<f64>,
    pub reference_temp_c: Option<f64>,
    pub thermal_status: Option<u8>,
    pub indicator: Option<String>,
}

/// The idle reference, kept for the whole run.
#[derive(Debug, Default)]
pub struct Tracker {
    min_seen: Option<f64>,
}

impl Tracker {
    /// Takes every primary temperature still in the sampler's store into the reference.
    pub fn observe(&mut self, sampler: Option<&Sampler>) {
        let Some(s) = sampler else { return };
        let Some(name) = s.primary_temp.as_deref() else {
            return;
        };
        for (_, v) in s.samples(name) {
            if let Reading::Ok(t) = v {
                self.see(t);
            }
        }
    }

    fn see(&mut self, t: f64) {
        self.min_seen = Some(self.min_seen.map_or(t, |m| m.min(t)));
    }

    pub fn reference(&self) -> Option<f64> {
        self.min_seen
    }
}

/// Establishes `want` for `cell`. `Err` says what was reached instead.
pub fn establish(
    want: Requested,
    cell: &Cell,
    sampler: Option<&Sampler>,
    root: &FsRoot,
    tracker: &mut Tracker,
    engine: &EngineSpec,
) -> Result<Reached, String> {
    let timeout_s = timeout_s(cell);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(timeout_s);
    tracker.observe(sampler);
    let mut probe = Probe::new(sampler, root);
    let result = match want {
        Requested::Any => Ok(Reached {
            waited_s: 0.0,
            temp_c: None,
            reference_temp_c: None,
            thermal_status: None,
            indicator: None,
        }),
        Requested::Cool => cool(&mut probe, tracker, started, deadline, timeout_s),
        Requested::Warm | Requested::Hot => heat(
            want, cell, &mut probe, tracker, engine, started, deadline, timeout_s,
        ),
    };
    // The waiting time's samples are no longer needed (the reference has taken them in).
    if let Some(s) = sampler {
        s.trim_before(crate::telemetry::sampler::monotonic_ns());
    }
    result
}

/// The latest readings the gate decides on.
struct Probe<'a> {
    sampler: Option<&'a Sampler>,
    root: &'a FsRoot,
    /// Per CPU policy: (scaling_max_freq path, its value at the start, cpuinfo_max_freq).
    freq_caps: Vec<(String, i64, Option<i64>)>,
}

impl<'a> Probe<'a> {
    fn new(sampler: Option<&'a Sampler>, root: &'a FsRoot) -> Probe<'a> {
        Probe {
            sampler,
            root,
            freq_caps: Vec::new(),
        }
    }

    fn primary_name(&self) -> Option<&str> {
        self.sampler?.primary_temp.as_deref()
    }

    fn primary_samples(&self) -> Vec<Sample> {
        match (self.sampler, self.primary_name()) {
            (Some(s), Some(n)) => s.samples(n),
            _ => Vec::new(),
        }
    }

    /// Latest primary temperature and its time (CLOCK_MONOTONIC ns).
    fn temp(&self) -> Option<(u64, f64)> {
        self.primary_samples()
            .into_iter()
            .rev()
            .find_map(|(t, v)| v.ok().map(|c| (t, c)))
    }

    /// Latest value of each series of one kind.
    fn latest(&self, kind: Kind) -> Vec<(String, f64)> {
        let Some(s) = self.sampler else {
            return Vec::new();
        };
        s.series
            .iter()
            .filter(|x| x.kind == kind)
            .filter_map(|x| {
                let v = s
                    .samples(&x.name)
                    .into_iter()
                    .rev()
                    .find_map(|(_, v)| v.ok())?;
                Some((x.name.clone(), v))
            })
            .collect()
    }

    fn has_kind(&self, kind: Kind) -> bool {
        self.sampler
            .is_some_and(|s| s.series.iter().any(|x| x.kind == kind))
    }

    fn thermal_status(&self) -> Option<u8> {
        self.latest(Kind::ThermalStatus)
            .into_iter()
            .map(|(_, v)| v as u8)
            .max()
    }

    /// Records the CPU policies' `scaling_max_freq` now, as the baseline of the cap indicator.
    fn arm_freq_caps(&mut self) {
        const DIR: &str = "/sys/devices/system/cpu/cpufreq";
        self.freq_caps.clear();
        for p in sysfs::entries(self.root, DIR, "policy").unwrap_or_default() {
            let path = format!("{DIR}/{p}/scaling_max_freq");
            if let Reading::Ok(v) = sysfs::read_i64(self.root, &path) {
                let max = sysfs::read_i64(self.root, &format!("{DIR}/{p}/cpuinfo_max_freq")).ok();
                self.freq_caps.push((path, v, max));
            }
        }
    }

    /// Whether hot has any indicator to wait for.
    fn has_indicator(&self) -> bool {
        self.has_kind(Kind::ThrottleCount)
            || self.has_kind(Kind::ThermalStatus)
            || self.has_kind(Kind::ThrottleBits)
            || !self.freq_caps.is_empty()
    }

    /// The first throttling indicator that has tripped, described.
    fn tripped(&self) -> Option<String> {
        if let Some((n, v)) = self
            .latest(Kind::ThrottleCount)
            .into_iter()
            .find(|(_, v)| *v > 0.0)
        {
            return Some(format!("cooling device active ({n} = {v}: cur_state > 0)"));
        }
        if let Some(st) = self.thermal_status().filter(|s| *s >= 1) {
            return Some(format!("Android thermal status {st} (>= 1, LIGHT)"));
        }
        if let Some((_, v)) = self
            .latest(Kind::ThrottleBits)
            .into_iter()
            .find(|(_, v)| (*v as u32) & RPI_NOW_BITS != 0)
        {
            let bits = v as u32;
            return Some(format!(
                "get_throttled=0x{bits:x} ({})",
                rpi::describe_throttled(bits & RPI_NOW_BITS)
            ));
        }
        for (path, start, max) in &self.freq_caps {
            if let Reading::Ok(now) = sysfs::read_i64(self.root, path) {
                if now < *start && max.is_none_or(|m| now < m) {
                    return Some(format!(
                        "CPU frequency capped: {path} {now} kHz, was {start} kHz (max {})",
                        max.map_or("?".into(), |m| format!("{m} kHz"))
                    ));
                }
            }
        }
        None
    }
}

/// Slope (°C/s) of the least-squares line through the samples.
fn slope(points: &[(f64, f64)]) -> Option<f64> {
    if points.len() < 3 {
        return None;
    }
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

fn window_s() -> f64 {
    std::env::var(WINDOW_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|w| w.is_finite() && *w > 0.0)
        .unwrap_or(WINDOW_DEFAULT_S)
}

fn cool(
    probe: &mut Probe,
    tracker: &mut Tracker,
    started: Instant,
    deadline: Instant,
    timeout_s: u64,
) -> Result<Reached, String> {
    if probe.primary_name().is_none() {
        return Err(
            "cannot establish cool: no temperature sensor (no readable thermal zone) on this device"
                .into(),
        );
    }
    let window = window_s();
    let window_ns = (window * 1e9) as u64;
    let started_ns = crate::telemetry::sampler::monotonic_ns();
    loop {
        check_signal("cool")?;
        let samples = probe.primary_samples();
        for (_, v) in &samples {
            if let Reading::Ok(t) = v {
                tracker.see(*t);
            }
        }
        let now_ns = crate::telemetry::sampler::monotonic_ns();
        let reference = tracker.reference();
        let temp = probe.temp();
        let status = probe.thermal_status();
        // Only what was sampled since the wait began counts, and it must span the window.
        let from = now_ns.saturating_sub(window_ns).max(started_ns);
        let pts: Vec<(f64, f64)> = samples
            .iter()
            .filter(|(t, _)| *t >= from)
            .filter_map(|(t, v)| Some((*t as f64 / 1e9, v.clone().ok()?)))
            .collect();
        // The sampler reads at a steady rate, so waiting the whole window covers it.
        let covered = now_ns.saturating_sub(started_ns) >= window_ns;
        let slope_c_s = slope(&pts);
        if let (Some((_, t)), Some(r)) = (temp, reference) {
            let near = t <= r + TOLERANCE_C;
            let flat = covered && slope_c_s.is_some_and(|s| -s * window < FLAT_DROP_C);
            let calm = !probe.has_kind(Kind::ThermalStatus) || status == Some(0);
            if near && flat && calm {
                return Ok(Reached {
                    waited_s: started.elapsed().as_secs_f64(),
                    temp_c: Some(t),
                    reference_temp_c: Some(r),
                    thermal_status: status,
                    indicator: None,
                });
            }
        }
        if Instant::now() >= deadline {
            let (t, s, st) = (temp.map(|t| t.1), slope_c_s, status);
            let mut msg = format!("could not reach cool within {timeout_s} s: ");
            match (t, reference) {
                (Some(t), Some(r)) => {
                    msg += &format!(
                    "{t:.1} °C against an idle reference of {r:.1} °C (tolerance {TOLERANCE_C} °C)"
                )
                }
                _ => msg += "no readable temperature",
            }
            if let Some(s) = s {
                msg += &format!(
                    ", trend {:+.2} °C/min over the last {window:.0} s",
                    s * 60.0
                );
            }
            if let Some(st) = st.filter(|s| *s > 0) {
                msg += &format!(", Android thermal status {st}");
            }
            return Err(msg);
        }
        poll_pause(probe.sampler);
    }
}

#[allow(clippy::too_many_arguments)]
fn heat(
    want: Requested,
    cell: &Cell,
    probe: &mut Probe,
    tracker: &mut Tracker,
    engine: &EngineSpec,
    started: Instant,
    deadline: Instant,
    timeout_s: u64,
) -> Result<Reached, String> {
    probe.arm_freq_caps();
    let name = want.name();
    let target = match want {
        Requested::Warm => {
            if probe.primary_name().is_none() {
                return Err(
                    "cannot establish warm: no temperature sensor (no readable thermal zone) on \
                     this device"
                        .into(),
                );
            }
            let Some(r) = tracker.reference().or(probe.temp().map(|t| t.1)) else {
                return Err(
                    "cannot establish warm: the temperature sensor has given no reading yet".into(),
                );
            };
            tracker.see(r);
            Some(r + WARM_ABOVE_C)
        }
        _ => {
            if !probe.has_indicator() {
                return Err(
                    "cannot establish hot: this device has no throttling indicator (no \
                     frequency-limiting cooling device, Android thermal status, Raspberry Pi \
                     get_throttled or cpufreq policy)"
                        .into(),
                );
            }
            None
        }
    };
    let mut peak: Option<f64> = None;
    let mut preheat: Option<Preheat> = None;
    loop {
        if let Err(e) = check_signal(name) {
            drop(preheat.take());
            return Err(e);
        }
        let temp = probe.temp().map(|t| t.1);
        if let Some(t) = temp {
            tracker.see(t);
            peak = Some(peak.map_or(t, |p: f64| p.max(t)));
        }
        let reached = match target {
            Some(target) => temp
                .filter(|t| *t >= target)
                .map(|t| format!("{t:.1} °C >= reference + {WARM_ABOVE_C} °C ({target:.1} °C)")),
            None => probe.tripped(),
        };
        if let Some(indicator) = reached {
            // Stop the load before anything else, so the passes start from this state.
            drop(preheat.take());
            return Ok(Reached {
                waited_s: started.elapsed().as_secs_f64(),
                temp_c: temp,
                reference_temp_c: tracker.reference(),
                thermal_status: probe.thermal_status(),
                indicator: (want == Requested::Hot).then_some(indicator),
            });
        }
        if Instant::now() >= deadline {
            drop(preheat.take());
            let peak = peak.map_or("no readable temperature".to_string(), |p| {
                format!("peak {p:.1} °C")
            });
            return Err(match target {
                Some(t) => format!(
                    "could not reach {name} within {timeout_s} s: {peak}, target {t:.1} °C \
                     (idle reference + {WARM_ABOVE_C} °C)"
                ),
                None => format!(
                    "could not reach {name} within {timeout_s} s: {peak}, no throttling \
                     indicator tripped"
                ),
            });
        }
        // (Re)start the load when none runs; an engine that failed ends the attempt.
        let running = match preheat.as_mut() {
            Some(p) => p.check()?,
            None => false,
        };
        if !running {
            preheat = Some(Preheat::start(cell, engine)?);
        }
        poll_pause(probe.sampler);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_of_a_line() {
        let pts: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 50.0 - 0.5 * i as f64)).collect();
        assert!((slope(&pts).unwrap() + 0.5).abs() < 1e-12);
        assert_eq!(slope(&pts[..2]), None);
    }
}
