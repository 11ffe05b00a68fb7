//! A fake battery whose level follows this machine's real CPU load and a charging switch: a
//! thread owns a sysfs tree
//! `sys/class/power_supply/battery/{type,present,status,capacity,current_now,voltage_now}` plus
//! the root charging switch `charging_enabled` (acc's `battery/charging_enabled 1 0`) and every
//! ~50 ms steps the model
//!
//! ```text
//! charging (plugged and charging_enabled = 1): level' = +charge_pct_per_s (up to 100, then Full)
//! otherwise:                                  level' = -(idle_pct_per_s + load_pct_per_s * load)
//! ```
//!
//! where `load` (0..1) is the utilisation of all CPUs from `/proc/stat`, so the engine's real
//! work drains it. `status` is `Charging`/`Full` while charging, else `Discharging`; the current
//! is positive while charging and negative while discharging (kernel ABI), in µA.
//!
//! The agent writes the switch file itself (as root would), so nothing stands in for the
//! kernel but this thread. For Android, [`Params::android`] adds `system/build.prop`, which
//! makes the agent treat the tree as an Android device; `dumpsys`/`setprop` are then answered
//! from a `MELTBENCH_COMMANDS_DIR` of files the test writes, and `MELTBENCH_COMMANDS_LOG`
//! records which command lines the agent ran (see the agent's `telemetry/cmd.rs`).
//!
//! Values are written in place with fixed widths (one `pwrite` at offset 0), as in
//! [`crate::thermal_model`]: the agent's sampler keeps the files open and `pread`s them.
//! Because `load` is the whole machine's, tests using the model should run alone.

use crate::stepper::{cpu_jiffies, load_between, running, write_in_place, Stepper, Steps};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Params {
    /// Level at the start (%).
    pub level_pct: f64,
    /// A charger is connected.
    pub plugged: bool,
    /// `charging_enabled` at the start.
    pub charging_enabled: bool,
    /// Charging rate (%/s).
    pub charge_pct_per_s: f64,
    /// Discharge at rest (%/s).
    pub idle_pct_per_s: f64,
    /// Extra discharge at full load on every CPU (%/s).
    pub load_pct_per_s: f64,
    /// Add `system/build.prop` (an Android device).
    pub android: bool,
}

impl Default for Params {
    /// 50%, unplugged, barely draining at rest (0.02 %/s), 6 %/s more at full load; charging
    /// +1 %/s.
    fn default() -> Params {
        Params {
            level_pct: 50.0,
            plugged: false,
            charging_enabled: true,
            charge_pct_per_s: 1.0,
            idle_pct_per_s: 0.02,
            load_pct_per_s: 6.0,
            android: false,
        }
    }
}

struct State {
    level: f64,
    min_level: f64,
    /// The switch was seen off at some step.
    seen_disabled: bool,
}

pub struct BatteryModel {
    /// The fake filesystem root (it holds `sys/class/power_supply/battery/...`).
    pub root: PathBuf,
    pub params: Params,
    stepper: Stepper<State>,
}

impl BatteryModel {
    pub fn start(params: Params) -> BatteryModel {
        let stepper = Stepper::start("battery model", |root| {
            let bat = root.join("sys/class/power_supply/battery");
            std::fs::create_dir_all(&bat).unwrap();
            std::fs::write(bat.join("type"), "Battery\n").unwrap();
            std::fs::write(bat.join("present"), "1\n").unwrap();
            std::fs::write(bat.join("voltage_now"), "3900000\n").unwrap();
            std::fs::write(
                bat.join("charging_enabled"),
                if params.charging_enabled {
                    "1\n"
                } else {
                    "0\n"
                },
            )
            .unwrap();
            if params.android {
                std::fs::create_dir_all(root.join("system")).unwrap();
                std::fs::write(
                    root.join("system/build.prop"),
                    "ro.product.model=Battery Model\nro.product.manufacturer=meltbench\n\
                     ro.build.version.release=14\n",
                )
                .unwrap();
            }
            let initial = State {
                level: params.level_pct,
                min_level: params.level_pct,
                seen_disabled: !params.charging_enabled,
            };
            write_all(
                &bat,
                &params,
                params.level_pct,
                params.charging_enabled,
                0.0,
            );
            let steps: Steps<State> = Box::new(move |st, sp| run(params, bat, st, sp));
            (initial, steps)
        });
        BatteryModel {
            root: stepper.root.clone(),
            params,
            stepper,
        }
    }

    pub fn level(&self) -> f64 {
        self.stepper.state().level
    }

    /// Lowest level since the start.
    pub fn min_level(&self) -> f64 {
        self.stepper.state().min_level
    }

    /// Whether the switch was ever seen turning charging off.
    pub fn seen_disabled(&self) -> bool {
        self.stepper.state().seen_disabled
    }

    /// The charging switch file.
    pub fn switch_path(&self) -> PathBuf {
        self.root
            .join("sys/class/power_supply/battery/charging_enabled")
    }

    /// The switch as the file says now: `Some(true)` = charging enabled.
    pub fn charging_enabled(&self) -> Option<bool> {
        read_switch(&self.switch_path())
    }
}

fn read_switch(p: &Path) -> Option<bool> {
    match std::fs::read_to_string(p).ok()?.trim() {
        "1" => Some(true),
        "0" => Some(false),
        _ => None,
    }
}

fn write_all(bat: &Path, p: &Params, level: f64, enabled: bool, load: f64) {
    let charging = p.plugged && enabled;
    let (status, current_ua) = if charging && level >= 100.0 {
        ("Full", 0)
    } else if charging {
        ("Charging", 1_000_000)
    } else {
        ("Discharging", -(200_000 + (1_500_000.0 * load) as i64))
    };
    // Fixed widths: status padded with spaces (sysfs readers trim), numbers zero-padded.
    write_in_place(&bat.join("status"), &format!("{status:<12}\n"));
    let pct = level.round().clamp(0.0, 100.0) as i64;
    write_in_place(&bat.join("capacity"), &format!("{pct:03}\n"));
    write_in_place(&bat.join("current_now"), &format!("{current_ua:+09}\n"));
}

fn run(p: Params, bat: PathBuf, state: Arc<Mutex<State>>, stop: Arc<AtomicBool>) {
    const STEP: Duration = Duration::from_millis(50);
    let switch = bat.join("charging_enabled");
    let mut enabled = p.charging_enabled;
    let mut last = cpu_jiffies();
    let mut last_t = Instant::now();
    let mut load = 0.0;
    while running(&stop) {
        std::thread::sleep(STEP);
        // A switch being rewritten can read empty for a moment: keep the last value then.
        if let Some(e) = read_switch(&switch) {
            enabled = e;
        }
        let now = cpu_jiffies();
        let t = Instant::now();
        let dt = (t - last_t).as_secs_f64();
        last_t = t;
        if let (Some(a), Some(b)) = (last, now) {
            load = 0.6 * load + 0.4 * load_between(a, b);
        }
        last = now;
        let mut s = state.lock().unwrap();
        let d = if p.plugged && enabled {
            p.charge_pct_per_s
        } else {
            -(p.idle_pct_per_s + p.load_pct_per_s * load)
        };
        s.level = (s.level + d * dt).clamp(0.0, 100.0);
        s.min_level = s.min_level.min(s.level);
        s.seen_disabled |= !enabled;
        write_all(&bat, &p, s.level, enabled, load);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(m: &BatteryModel, f: &str) -> String {
        std::fs::read_to_string(m.root.join("sys/class/power_supply/battery").join(f))
            .unwrap()
            .trim()
            .to_string()
    }

    #[test]
    fn charges_while_enabled_and_drains_when_the_switch_is_off() {
        let m = BatteryModel::start(Params {
            level_pct: 50.0,
            plugged: true,
            charge_pct_per_s: 20.0,
            idle_pct_per_s: 20.0,
            ..Params::default()
        });
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(read(&m, "status"), "Charging");
        assert!(m.level() > 52.0, "charges: {}", m.level());
        std::fs::write(m.switch_path(), "0\n").unwrap();
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(read(&m, "status"), "Discharging");
        assert!(read(&m, "current_now").parse::<i64>().unwrap() < 0);
        let l = m.level();
        std::thread::sleep(Duration::from_millis(300));
        assert!(m.level() < l - 3.0, "drains: {} -> {}", l, m.level());
        assert!(m.seen_disabled());
        assert_eq!(
            read(&m, "capacity").parse::<i64>().unwrap(),
            m.level().round() as i64
        );
    }
}
