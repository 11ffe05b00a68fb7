//! A fake device whose temperature follows this machine's real CPU load: a thread owns a sysfs
//! tree (`sys/class/thermal/thermal_zone0/{type,temp,mode}` and
//! `sys/class/thermal/cooling_device0/{type,cur_state,max_state}`) and every ~50 ms integrates
//! the first-order model
//!
//! ```text
//! T' = heat_c_per_s * load - cool_per_s * (T - ambient_c)
//! ```
//!
//! where `load` (0..1) is the utilisation of all CPUs from `/proc/stat` since the last step. So
//! the engine's real work heats it and rest cools it. The temperature is written in m°C, and the
//! cooling device's `cur_state` is 1 above `trip_c` and back to 0 below `trip_c - 3` (hysteresis,
//! like a kernel trip point).
//!
//! Each value is written atomically in place: one `pwrite` at offset 0 of a fixed-width text
//! (`0052311\n`), so a reader sees the old or the new value, never an empty or half file. Not a
//! temporary file renamed over it: the agent's sampler keeps sysfs attributes open and `pread`s
//! them, as one does with real sysfs, and would go on reading the replaced file.
//!
//! Point the agent's `MELTBENCH_SYSFS_ROOT` at [`ThermalModel::root`]. Because `load` is the
//! whole machine's, tests that use the model should not run beside other CPU-heavy tests.

use crate::stepper::{cpu_jiffies, load_between, running, write_in_place, Stepper, Steps};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Params {
    /// Temperature at rest (°C); the model starts here.
    pub ambient_c: f64,
    /// Heating rate at full load on every CPU (°C/s).
    pub heat_c_per_s: f64,
    /// Inverse time constant of cooling (1/s).
    pub cool_per_s: f64,
    /// The cooling device turns on above this (°C), and off below `trip_c - 3`.
    pub trip_c: f64,
    /// `type` of the thermal zone.
    pub zone_type: &'static str,
}

impl Default for Params {
    /// 35 °C ambient; at full load it heats at 12 °C/s and settles 48 °C above ambient (time
    /// constant 4 s), at half load (one busy core of two) 24 °C above; trip at 60 °C.
    fn default() -> Params {
        Params {
            ambient_c: 35.0,
            heat_c_per_s: 12.0,
            cool_per_s: 0.25,
            trip_c: 60.0,
            zone_type: "cpu-thermal",
        }
    }
}

/// Hysteresis of the trip point (°C).
pub const HYSTERESIS_C: f64 = 3.0;

struct State {
    temp_c: f64,
    peak_c: f64,
    cooling: bool,
}

pub struct ThermalModel {
    /// The fake filesystem root (it holds `sys/class/thermal/...`).
    pub root: PathBuf,
    pub params: Params,
    stepper: Stepper<State>,
}

impl ThermalModel {
    pub fn start(params: Params) -> ThermalModel {
        let stepper = Stepper::start("thermal model", |root| {
            let zone = root.join("sys/class/thermal/thermal_zone0");
            let cdev = root.join("sys/class/thermal/cooling_device0");
            std::fs::create_dir_all(&zone).unwrap();
            std::fs::create_dir_all(&cdev).unwrap();
            std::fs::write(zone.join("type"), format!("{}\n", params.zone_type)).unwrap();
            std::fs::write(zone.join("mode"), "enabled\n").unwrap();
            std::fs::write(cdev.join("type"), "thermal-cpufreq-0\n").unwrap();
            std::fs::write(cdev.join("max_state"), "3\n").unwrap();
            std::fs::write(cdev.join("cur_state"), "0\n").unwrap();
            write_temp(&zone, params.ambient_c);
            let initial = State {
                temp_c: params.ambient_c,
                peak_c: params.ambient_c,
                cooling: false,
            };
            let steps: Steps<State> = Box::new(move |st, sp| run(params, zone, cdev, st, sp));
            (initial, steps)
        });
        ThermalModel {
            root: stepper.root.clone(),
            params,
            stepper,
        }
    }

    /// Sets the temperature now (to start hot or cold); the model goes on from there.
    pub fn set_temp(&self, c: f64) {
        let mut s = self.stepper.state();
        s.temp_c = c;
        s.peak_c = c;
        write_temp(&self.zone(), c);
    }

    pub fn temp(&self) -> f64 {
        self.stepper.state().temp_c
    }

    /// Highest temperature since the start or the last [`ThermalModel::set_temp`].
    pub fn peak(&self) -> f64 {
        self.stepper.state().peak_c
    }

    /// Whether the cooling device is on.
    pub fn cooling(&self) -> bool {
        self.stepper.state().cooling
    }

    fn zone(&self) -> PathBuf {
        self.root.join("sys/class/thermal/thermal_zone0")
    }
}

fn write_temp(zone: &Path, c: f64) {
    let mc = (c * 1000.0).round().clamp(-9_999_999.0, 99_999_999.0) as i64;
    write_in_place(&zone.join("temp"), &format!("{mc:08}\n"));
}

fn run(p: Params, zone: PathBuf, cdev: PathBuf, state: Arc<Mutex<State>>, stop: Arc<AtomicBool>) {
    const STEP: Duration = Duration::from_millis(50);
    let mut last = cpu_jiffies();
    let mut last_t = Instant::now();
    // /proc/stat counts in jiffies (10 ms at USER_HZ 100), so a 50 ms step on 2 CPUs sees ~10
    // of them: the load is smoothed over the last few steps.
    let mut load = 0.0;
    while running(&stop) {
        std::thread::sleep(STEP);
        let now = cpu_jiffies();
        let t = Instant::now();
        let dt = (t - last_t).as_secs_f64();
        last_t = t;
        if let (Some(a), Some(b)) = (last, now) {
            load = 0.6 * load + 0.4 * load_between(a, b);
        }
        last = now;
        let mut s = state.lock().unwrap();
        let d = p.heat_c_per_s * load - p.cool_per_s * (s.temp_c - p.ambient_c);
        s.temp_c += d * dt;
        s.peak_c = s.peak_c.max(s.temp_c);
        let cooling = if s.temp_c > p.trip_c {
            true
        } else if s.temp_c < p.trip_c - HYSTERESIS_C {
            false
        } else {
            s.cooling
        };
        if cooling != s.cooling {
            s.cooling = cooling;
            write_in_place(&cdev.join("cur_state"), if cooling { "1\n" } else { "0\n" });
        }
        write_temp(&zone, s.temp_c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_heats_and_rest_cools() {
        // Cooling alone (no heating term), so other work on this machine cannot hide it.
        let cold = ThermalModel::start(Params {
            heat_c_per_s: 0.0,
            ..Params::default()
        });
        cold.set_temp(70.0);
        std::thread::sleep(Duration::from_millis(1500));
        let rest = cold.temp();
        assert!(rest < 66.0 && rest > 35.0, "cools towards ambient: {rest}");
        let m = ThermalModel::start(Params::default());
        let read = || -> f64 {
            let s = std::fs::read_to_string(m.root.join("sys/class/thermal/thermal_zone0/temp"))
                .unwrap();
            s.trim().parse::<f64>().unwrap() / 1000.0
        };
        assert!((read() - m.temp()).abs() < 2.0);
        // Spin both cores for a second.
        m.set_temp(35.0);
        let until = Instant::now() + Duration::from_millis(1500);
        let spin = move || {
            let mut x = 0u64;
            while Instant::now() < until {
                x = x.wrapping_mul(31).wrapping_add(7);
            }
            x
        };
        let h = std::thread::spawn(spin);
        spin();
        h.join().unwrap();
        assert!(m.temp() > 40.0, "heats under load: {}", m.temp());
    }

    #[test]
    fn cooling_device_follows_the_trip_point() {
        let m = ThermalModel::start(Params::default());
        let cur = || {
            std::fs::read_to_string(m.root.join("sys/class/thermal/cooling_device0/cur_state"))
                .unwrap()
        };
        m.set_temp(80.0);
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(cur().trim(), "1");
        m.set_temp(40.0);
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(cur().trim(), "0");
    }
}
