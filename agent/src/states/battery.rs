//! Battery device states: the `+battery<LEVEL>-<MODE>` part of a cell's state (e.g.
//! `cool+battery20-wait`), established before the thermal gate, and the restoring of the device
//! afterwards on every exit path, signals included ([`interrupt`]).
//!
//! Modes (device-telemetry §1.2, §1.3, §7):
//!
//! - **wait**: the level is read from the telemetry battery source (the sampler's
//!   `CapacityPct`/`BatteryStatus` series); the cell runs only if it is within
//!   [`TOLERANCE_PCT`] of LEVEL *and* the battery is discharging (status Discharging or Not
//!   charging), else it is skipped with a `CellError` saying what was read. It is checked again
//!   after the thermal gate, just before the passes.
//! - **drain**: charging is disabled (below), verified (the status must leave Charging/Full
//!   within [`VERIFY_S`]), then the device is loaded with the engine's own workload (the thermal
//!   pre-heat helper, [`Preheat`]) until the level is at most LEVEL, bounded by the
//!   cell's state timeout. Charging stays disabled for the cell's passes, so they run on the
//!   battery, and is re-enabled after the cell. A level already below LEVEL - tolerance cannot
//!   be drained up to it: the cell fails. No usable charging switch: the cell fails rather than
//!   drain while charging.
//! - **simulate** (Android only): `dumpsys battery unplug` + `dumpsys battery set level LEVEL`,
//!   a framework-only override (the fuel gauge, PMIC limits and voltage stay real; physical
//!   charging continues). Every pass of the cell carries `battery_simulated: true` and the
//!   simulated level. Never level 0 (the framework shuts the device down). `dumpsys battery
//!   reset` always follows.
//!
//! Charging switches, tried in order, the first that takes effect is used:
//! 1. root sysfs switches (`path ON OFF`, acc `charging-switches.txt`) under the battery supply
//!    (its discovered name, and `battery`): `input_suspend 0 1`, `charging_enabled 1 0`,
//!    `battery_charging_enabled 1 0`, `batt_slate_mode 0 1`, `charge_control_limit 0 1`,
//!    `op_disable_charge 0 1`, `mmi_charging_enable 1 0`, and
//!    `/sys/kernel/debug/google_charger/input_suspend 0 1`; on Linux boards and laptops the
//!    kernel's `charge_behaviour` (`inhibit-charge`, back to `auto`) and
//!    `charge_control_end_threshold` (set to LEVEL, back to its old value). A write that fails
//!    (no root: EACCES) just moves on to the next.
//! 2. Android: `setprop power.battery_input.suspended true` (shell may set it; `false` after).
//! 3. Android: `cmd battery suspend_input` (debuggable builds; `cmd battery reset` after).
//!
//! `dumpsys battery unplug` is never used to stop charging: it is a framework-only fake.
//!
//! Restoring: every change registers its undo in a process-wide list *before* it is made. A
//! [`Guard`] owned by the cell undoes its entries when the cell ends (normally, on error, or
//! while unwinding from a panic: `Drop`), and [`interrupt`]'s watcher thread undoes whatever is
//! pending when SIGINT/SIGTERM/SIGHUP arrives. Undo runs under the list's lock, so a process
//! exiting after either has finished never leaves an undo half done.

use super::wait::{poll_pause, timeout_s};
use crate::engine_process::{EngineSpec, Preheat};
use crate::fsroot::FsRoot;
use crate::interrupt::{self, signal_name};
use crate::telemetry::cmd::Commands;
use crate::telemetry::sampler::Sampler;
use crate::telemetry::{Kind, Reading};
use crate::undo::{Guard, Undo};
use meltbench_protocol::agent::Cell;
use std::time::{Duration, Instant};

/// `wait`/`drain`: how far (percentage points) the level may be from LEVEL.
pub const TOLERANCE_PCT: u8 = 5;
/// How long a charging switch has to take effect (status leaves Charging/Full), seconds.
pub const VERIFY_S: u64 = 5;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Wait,
    Drain,
    Simulate,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Wait => "wait",
            Mode::Drain => "drain",
            Mode::Simulate => "simulate",
        }
    }
}

/// A requested battery state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Want {
    /// 1..=100.
    pub level: u8,
    pub mode: Mode,
}

impl Want {
    /// `battery<LEVEL>-<MODE>`, as in the cell's state.
    pub fn name(self) -> String {
        format!("battery{}-{}", self.level, self.mode.name())
    }
}

/// Parses `battery<LEVEL>-<MODE>` (already lower-cased).
pub fn parse(s: &str) -> Result<Want, String> {
    let bad = || {
        format!(
            "unknown battery state {s:?}: this agent knows battery<LEVEL>-<MODE> with LEVEL \
             1..=100 and MODE wait, drain or simulate (e.g. battery50-drain)"
        )
    };
    let rest = s.strip_prefix("battery").ok_or_else(bad)?;
    let (level, mode) = rest.split_once('-').ok_or_else(bad)?;
    let level: u8 = level.parse().map_err(|_| bad())?;
    if !(1..=100).contains(&level) {
        return Err(format!(
            "battery level {level} in {s:?} is out of range: LEVEL is 1..=100 (never 0: a faked \
             level 0 shuts an Android device down)"
        ));
    }
    let mode = match mode {
        "wait" => Mode::Wait,
        "drain" => Mode::Drain,
        "simulate" => Mode::Simulate,
        _ => return Err(bad()),
    };
    Ok(Want { level, mode })
}

/// What was established, for `StateReached` and the passes' labels.
#[derive(Clone, Debug, PartialEq)]
pub struct Reached {
    pub waited_s: f64,
    /// The level reached (the simulated one for `simulate`).
    pub level: u8,
    pub simulated: bool,
    /// How charging was disabled (`drain`).
    pub method: Option<String>,
}

/// The latest battery level (%) and status (`dumpsys battery` numbering) from the sampler, the
/// sysfs battery preferred over the `dumpsys battery` fallback.
pub fn read(sampler: Option<&Sampler>) -> Option<(f64, Option<u8>)> {
    let s = sampler?;
    let latest = |kind: Kind| -> Option<f64> {
        let mut names: Vec<&str> = s
            .series
            .iter()
            .filter(|x| x.kind == kind)
            .map(|x| x.name.as_str())
            .collect();
        names.sort_by_key(|n| !n.starts_with("battery:"));
        names
            .into_iter()
            .find_map(|n| s.samples(n).into_iter().rev().find_map(|(_, v)| v.ok()))
    };
    let level = latest(Kind::CapacityPct)?;
    Some((level, latest(Kind::BatteryStatus).map(|v| v as u8)))
}

/// Like [`read`], waiting up to a second for the sampler's first battery sample.
fn read_now(sampler: Option<&Sampler>) -> Option<(f64, Option<u8>)> {
    let until = Instant::now() + Duration::from_secs(1);
    loop {
        let r = read(sampler);
        if r.is_some() || Instant::now() >= until || sampler.is_none() {
            return r;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The level (%) to label a pass with: the last reading at or before `end_ns`.
pub fn level_at(sampler: &Sampler, end_ns: u64) -> Option<u8> {
    let mut names: Vec<&str> = sampler
        .series
        .iter()
        .filter(|x| x.kind == Kind::CapacityPct)
        .map(|x| x.name.as_str())
        .collect();
    names.sort_by_key(|n| !n.starts_with("battery:"));
    names.into_iter().find_map(|n| {
        sampler
            .samples(n)
            .into_iter()
            .rev()
            .filter(|(t, _)| *t <= end_ns)
            .find_map(|(_, v)| v.ok())
            .map(|v| v.round().clamp(0.0, 100.0) as u8)
    })
}

fn status_name(s: Option<u8>) -> &'static str {
    match s {
        Some(2) => "Charging",
        Some(3) => "Discharging",
        Some(4) => "Not charging",
        Some(5) => "Full",
        _ => "Unknown",
    }
}

fn discharging(s: Option<u8>) -> bool {
    matches!(s, Some(3) | Some(4))
}

fn no_battery(want: Want) -> String {
    format!(
        "cannot establish {}: this device has no readable battery (no power_supply of type \
         Battery, no dumpsys battery)",
        want.name()
    )
}

/// Checks `wait` (and, before the passes, that `wait`/`drain` still hold): `Err` is the
/// skip reason.
pub fn check_level(want: Want, sampler: Option<&Sampler>) -> Result<u8, String> {
    let (level, status) = read_now(sampler).ok_or_else(|| no_battery(want))?;
    let (l, w, tol) = (
        level.round() as i32,
        want.level as i32,
        TOLERANCE_PCT as i32,
    );
    let mode = want.mode.name();
    if (l - w).abs() > tol {
        return Err(format!(
            "battery at {l}%, wanted {w}% ± {tol} (mode {mode}): skipped"
        ));
    }
    if !discharging(status) {
        return Err(format!(
            "battery at {l}% but not discharging (status {}), wanted {w}% ± {tol} on battery \
             (mode {mode}): skipped",
            status_name(status)
        ));
    }
    Ok(l.clamp(0, 100) as u8)
}

/// Establishes `want` for `cell`, registering in `guard` what must be undone afterwards.
#[allow(clippy::too_many_arguments)]
pub fn establish(
    want: Want,
    cell: &Cell,
    sampler: Option<&Sampler>,
    root: &FsRoot,
    cmds: &Commands,
    android: bool,
    engine: &EngineSpec,
    guard: &mut Guard,
) -> Result<Reached, String> {
    let started = Instant::now();
    let timeout_s = timeout_s(cell);
    let deadline = started + Duration::from_secs(timeout_s);
    let reached = |level: u8, simulated: bool, method: Option<String>| Reached {
        waited_s: started.elapsed().as_secs_f64(),
        level,
        simulated,
        method,
    };
    match want.mode {
        Mode::Wait => check_level(want, sampler).map(|l| reached(l, false, None)),
        Mode::Simulate => {
            simulate(want, cmds, android, guard)?;
            Ok(reached(want.level, true, None))
        }
        Mode::Drain => {
            let (level, _) = read_now(sampler).ok_or_else(|| no_battery(want))?;
            let floor = want.level.saturating_sub(TOLERANCE_PCT) as f64;
            if level.round() < floor {
                return Err(format!(
                    "battery at {:.0}%, wanted {}% ± {TOLERANCE_PCT} (mode drain): below the \
                     range, and draining cannot raise it; charge the device first",
                    level, want.level
                ));
            }
            let method = disable_charging(want, sampler, root, cmds, android, guard)?;
            let level = drain(want, cell, sampler, engine, deadline, timeout_s, &method)?;
            Ok(reached(level, false, Some(method)))
        }
    }
}

/// `dumpsys battery unplug` + `set level`: the reset is registered before anything is faked.
fn simulate(want: Want, cmds: &Commands, android: bool, guard: &mut Guard) -> Result<(), String> {
    assert!(want.level >= 1, "never fake battery level 0");
    if !android {
        return Err(format!(
            "cannot establish {}: simulate is Android's framework-only override (dumpsys \
             battery), and this device is not Android",
            want.name()
        ));
    }
    guard.push(
        Undo::Run {
            cmds: cmds.clone(),
            argv: vec!["dumpsys".into(), "battery".into(), "reset".into()],
        },
        "battery overrides reset (dumpsys battery reset)",
    );
    let level = want.level.to_string();
    for argv in [
        &["dumpsys", "battery", "unplug"][..],
        &["dumpsys", "battery", "set", "level", &level],
    ] {
        match cmds.run(argv) {
            Reading::Ok(_) => {}
            Reading::Unreadable(r) => {
                return Err(format!("cannot establish {}: {r}", want.name()));
            }
            Reading::Absent => {
                return Err(format!(
                    "cannot establish {}: `{}` is not available on this device",
                    want.name(),
                    argv.join(" ")
                ));
            }
        }
    }
    Ok(())
}

/// A root sysfs charging switch: `rel` under `/sys/class/power_supply/<battery>/` (or an
/// absolute path), the value that leaves charging on, and the one that turns it off.
const SWITCHES: &[(&str, &str, &str)] = &[
    ("input_suspend", "0", "1"),
    ("charging_enabled", "1", "0"),
    ("battery_charging_enabled", "1", "0"),
    ("batt_slate_mode", "0", "1"),
    ("charge_control_limit", "0", "1"),
    ("op_disable_charge", "0", "1"),
    ("mmi_charging_enable", "1", "0"),
    ("/sys/kernel/debug/google_charger/input_suspend", "0", "1"),
];

/// Battery supply names: the sampler's (`battery:<name>:capacity`), then `battery`.
fn supplies(sampler: Option<&Sampler>) -> Vec<String> {
    let mut v: Vec<String> = sampler
        .map(|s| {
            s.series
                .iter()
                .filter(|x| x.kind == Kind::CapacityPct)
                .filter_map(|x| x.name.strip_prefix("battery:")?.split(':').next())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    if !v.iter().any(|n| n == "battery") {
        v.push("battery".into());
    }
    v
}

/// Disables charging with the first switch that works, verified; its undo is in `guard`.
fn disable_charging(
    want: Want,
    sampler: Option<&Sampler>,
    root: &FsRoot,
    cmds: &Commands,
    android: bool,
    guard: &mut Guard,
) -> Result<String, String> {
    let mut tried: Vec<String> = Vec::new();
    // (what, how to turn charging off, its undo, what the undo is)
    let mut candidates: Vec<(String, Undo, Undo, String)> = Vec::new();
    for name in supplies(sampler) {
        let base = format!("/sys/class/power_supply/{name}");
        for (rel, on, off) in SWITCHES {
            let abs = if rel.starts_with('/') {
                rel.to_string()
            } else {
                format!("{base}/{rel}")
            };
            if root.exists(&abs) && !candidates.iter().any(|c| c.0.starts_with(&abs)) {
                let path = root.path(&abs);
                candidates.push((
                    format!("{abs}={off}"),
                    Undo::Write {
                        path: path.clone(),
                        value: off.to_string(),
                    },
                    Undo::Write {
                        path,
                        value: on.to_string(),
                    },
                    format!("charging re-enabled ({abs}={on})"),
                ));
            }
        }
        let abs = format!("{base}/charge_behaviour");
        if let Some(cur) = root.read_trimmed(&abs) {
            if cur.contains("inhibit-charge") {
                candidates.push((
                    format!("{abs}=inhibit-charge"),
                    Undo::Write {
                        path: root.path(&abs),
                        value: "inhibit-charge".into(),
                    },
                    Undo::Write {
                        path: root.path(&abs),
                        value: "auto".into(),
                    },
                    format!("charging re-enabled ({abs}=auto)"),
                ));
            }
        }
        let abs = format!("{base}/charge_control_end_threshold");
        if let Some(cur) = root.read_trimmed(&abs) {
            candidates.push((
                format!("{abs}={}", want.level),
                Undo::Write {
                    path: root.path(&abs),
                    value: want.level.to_string(),
                },
                Undo::Write {
                    path: root.path(&abs),
                    value: cur.clone(),
                },
                format!("charging threshold restored ({abs}={cur})"),
            ));
        }
    }
    if android {
        let run = |argv: &[&str]| Undo::Run {
            cmds: cmds.clone(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
        };
        candidates.push((
            "setprop power.battery_input.suspended true".into(),
            run(&["setprop", "power.battery_input.suspended", "true"]),
            run(&["setprop", "power.battery_input.suspended", "false"]),
            "charging re-enabled (setprop power.battery_input.suspended false)".into(),
        ));
        candidates.push((
            "cmd battery suspend_input".into(),
            run(&["cmd", "battery", "suspend_input"]),
            run(&["cmd", "battery", "reset"]),
            "charging re-enabled (cmd battery reset)".into(),
        ));
    }
    for (what, off, undo, undo_what) in candidates {
        let id = guard.push(undo, &undo_what);
        if let Err(e) = off.run() {
            tried.push(format!("{what}: {e}"));
            guard.undo_one(id);
            continue;
        }
        // Verified when the battery stops charging (or was not charging: unplugged).
        let until = Instant::now() + Duration::from_secs(VERIFY_S);
        let mut status = None;
        loop {
            if let Some((_, s)) = read(sampler) {
                status = s;
                if discharging(s) {
                    return Ok(what);
                }
            }
            if Instant::now() >= until || interrupt::signalled().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        tried.push(format!(
            "{what}: status still {} after {VERIFY_S} s",
            status_name(status)
        ));
        guard.undo_one(id);
    }
    Err(if tried.is_empty() {
        format!(
            "cannot establish {}: no charging switch on this device (no known root sysfs \
             switch{}); not draining while charging",
            want.name(),
            if android {
                ", no setprop/cmd battery"
            } else {
                ", not Android"
            }
        )
    } else {
        format!(
            "cannot establish {}: no charging switch took effect ({}); not draining while \
             charging",
            want.name(),
            tried.join("; ")
        )
    })
}

/// Loads the device with the engine until the level is at most LEVEL; the level reached.
fn drain(
    want: Want,
    cell: &Cell,
    sampler: Option<&Sampler>,
    engine: &EngineSpec,
    deadline: Instant,
    timeout_s: u64,
    method: &str,
) -> Result<u8, String> {
    let mut load: Option<Preheat> = None;
    let start = read(sampler).map(|r| r.0);
    loop {
        if let Some(sig) = interrupt::signalled() {
            drop(load.take());
            return Err(format!(
                "interrupted by {} while draining to {}%",
                signal_name(sig),
                want.level
            ));
        }
        let (level, status) = read(sampler).ok_or_else(|| no_battery(want))?;
        // A drain can last hours: keep only the recent samples (the gate reads the latest).
        if let Some(s) = sampler {
            s.trim_before(crate::telemetry::sampler::monotonic_ns().saturating_sub(2_000_000_000));
        }
        if status == Some(2) || status == Some(5) {
            drop(load.take());
            return Err(format!(
                "the battery is {} again although charging was disabled ({method}) at {level:.0}%",
                status_name(status)
            ));
        }
        if level.round() <= want.level as f64 {
            // Stop the load before anything else, so the next steps start from this state.
            drop(load.take());
            return Ok(level.round().clamp(0.0, 100.0) as u8);
        }
        if Instant::now() >= deadline {
            drop(load.take());
            return Err(format!(
                "could not drain to {}% within {timeout_s} s: battery at {level:.0}% (started at \
                 {}%, charging disabled by {method})",
                want.level,
                start.map_or("?".into(), |s| format!("{s:.0}"))
            ));
        }
        let running = match load.as_mut() {
            Some(p) => p.check()?,
            None => false,
        };
        if !running {
            load = Some(Preheat::start(cell, engine).map_err(|e| format!("drain load: {e}"))?);
        }
        poll_pause(sampler);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn battery_states_parse() {
        assert_eq!(
            parse("battery50-drain"),
            Ok(Want {
                level: 50,
                mode: Mode::Drain
            })
        );
        assert_eq!(parse("battery100-simulate").unwrap().mode, Mode::Simulate);
        assert_eq!(parse("battery1-wait").unwrap().name(), "battery1-wait");
        assert!(parse("battery0-simulate")
            .unwrap_err()
            .contains("out of range"));
        assert!(parse("battery101-wait")
            .unwrap_err()
            .contains("out of range"));
        for bad in [
            "battery50",
            "battery-drain",
            "battery50-charge",
            "drain",
            "50-wait",
        ] {
            assert!(
                parse(bad).unwrap_err().contains("unknown battery state"),
                "{bad}"
            );
        }
    }
}
