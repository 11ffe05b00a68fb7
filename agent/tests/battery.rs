//! Battery states end to end: the real agent and the real engine on the synth model, against a
//! testbed battery model (a fake `power_supply/battery` whose level drains with this machine's
//! CPU load when its `charging_enabled` switch is off, and charges otherwise).
//!
//! Android's `dumpsys battery ...` cannot run here: for `simulate` the tree is made an Android
//! one (`system/build.prop`), the agent answers commands from a `MELTBENCH_COMMANDS_DIR` of
//! files written below, and `MELTBENCH_COMMANDS_LOG` records the command lines it ran, so the
//! test sees `unplug`, `set level` and `reset`. The charging switch is a real file the agent
//! writes, as it would as root.
//!
//! The model drains with the whole machine's load, so these tests run one at a time (a lock
//! here; nextest runs this binary alone, see .config/nextest.toml).

mod common;

use common::{alone, cell, device_agent, parse_events, stated, synth_model, timed, Timed};
use meltbench_protocol::agent::{AgentEvent, Cell, PassTelemetry};
use meltbench_testbed::battery_model::{BatteryModel, Params};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What only the battery tests read from a run.
trait BatteryEvents {
    fn passes(&self, id: &str) -> Vec<Option<PassTelemetry>>;
    /// (state, battery_level, battery_mode, indicator) of the battery `StateReached`.
    fn battery_reached(&self, id: &str) -> Option<(String, u8, String, Option<String>)>;
}

impl BatteryEvents for Timed {
    fn passes(&self, id: &str) -> Vec<Option<PassTelemetry>> {
        self.of(id)
            .filter_map(|e| match e {
                AgentEvent::Pass {
                    pass, telemetry, ..
                } if !pass.warmup => Some(telemetry.clone()),
                _ => None,
            })
            .collect()
    }

    fn battery_reached(&self, id: &str) -> Option<(String, u8, String, Option<String>)> {
        self.of(id).find_map(|e| match e {
            AgentEvent::StateReached {
                state,
                battery_level: Some(l),
                battery_mode: Some(m),
                indicator,
                ..
            } => Some((state.clone(), *l, m.clone(), indicator.clone())),
            _ => None,
        })
    }
}

/// A work directory with the synth model, and a simulated battery started with `p`.
fn battery_device(p: Params) -> (tempfile::TempDir, PathBuf, BatteryModel) {
    let dir = tempfile::tempdir().unwrap();
    let model_file = synth_model(dir.path());
    (dir, model_file, BatteryModel::start(p))
}

fn agent_cmd(dir: &Path, model: &BatteryModel, cells: Vec<Cell>) -> Command {
    let mut c = device_agent(dir, &model.root, cells);
    c.env_remove("MELTBENCH_COMMANDS_LOG");
    c
}

/// No engine process of this directory's work is left running.
fn no_engine_left(dir: &Path) {
    let needle = dir.join("work").display().to_string();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd);
        assert!(!cmd.contains(&needle), "an engine is still running: {cmd}");
    }
}

#[test]
fn wait_in_range_runs_and_labels_every_pass() {
    let _g = alone();
    let (dir, model_file, m) = battery_device(Params {
        level_pct: 52.0,
        load_pct_per_s: 0.2,
        ..Params::default()
    });
    let c = stated(
        cell("synth/b50w", &model_file, 3, 0, 0),
        "any+battery50-wait",
        20,
    );
    let ran = timed(agent_cmd(dir.path(), &m, vec![c]));
    assert_eq!(ran.error("synth/b50w"), None, "{}", ran.stderr);
    let (state, level, mode, _) = ran.battery_reached("synth/b50w").expect("state_reached");
    assert_eq!((state.as_str(), mode.as_str()), ("battery50-wait", "wait"));
    assert!((45..=55).contains(&level), "{level}");
    let passes = ran.passes("synth/b50w");
    assert_eq!(passes.len(), 3);
    for t in passes {
        let t = t.expect("telemetry on every pass in a battery state");
        assert_eq!(t.battery_simulated, Some(false));
        let l = t.battery_level.expect("battery_level");
        assert!((45..=55).contains(&l), "{l}");
    }
    assert!(ran.ended("synth/b50w"));
    assert_eq!(
        m.charging_enabled(),
        Some(true),
        "wait never touches charging"
    );
    eprintln!("wait in range: level {level}% ({:?})", ran.elapsed);
}

#[test]
fn wait_out_of_range_or_charging_skips_with_the_reason() {
    let _g = alone();
    let (dir, model_file, m) = battery_device(Params {
        level_pct: 83.0,
        ..Params::default()
    });
    let cells = vec![
        stated(
            cell("synth/b50w", &model_file, 2, 0, 0),
            "any+battery50-wait",
            20,
        ),
        // The same level is in range for this one.
        stated(
            cell("synth/b80w", &model_file, 2, 0, 0),
            "any+battery80-wait",
            20,
        ),
    ];
    let ran = timed(agent_cmd(dir.path(), &m, cells));
    let err = ran.error("synth/b50w").expect("skipped");
    assert_eq!(err, "battery at 83%, wanted 50% ± 5 (mode wait): skipped");
    assert!(ran.passes("synth/b50w").is_empty());
    assert!(ran.ended("synth/b80w"), "{}", ran.stderr);
    assert_eq!(ran.code, Some(1), "one cell failed");
    drop(m);

    // In range but charging: skipped too.
    let (dir, model_file, m) = battery_device(Params {
        level_pct: 50.0,
        plugged: true,
        charge_pct_per_s: 0.01,
        ..Params::default()
    });
    let c = stated(
        cell("synth/b50w", &model_file, 2, 0, 0),
        "any+battery50-wait",
        20,
    );
    let ran = timed(agent_cmd(dir.path(), &m, vec![c]));
    let err = ran.error("synth/b50w").expect("skipped");
    assert!(
        err.starts_with("battery at 50% but not discharging (status Charging)")
            && err.ends_with("(mode wait): skipped"),
        "{err}"
    );
    assert!(ran.passes("synth/b50w").is_empty());
}

#[test]
fn drain_disables_charging_loads_down_to_the_level_and_reenables_charging() {
    let _g = alone();
    let (dir, model_file, m) = battery_device(Params {
        level_pct: 58.0,
        plugged: true,
        // Slow enough at rest that only the load gets it down within the timeout.
        idle_pct_per_s: 0.05,
        load_pct_per_s: 6.0,
        ..Params::default()
    });
    let mut c = stated(
        cell("synth/b50d", &model_file, 2, 0, 0),
        "any+battery50-drain",
        30,
    );
    c.threads = 2;
    c.engine_job.threads = Some(2);
    let ran = timed(agent_cmd(dir.path(), &m, vec![c]));
    assert_eq!(ran.error("synth/b50d"), None, "{}", ran.stderr);
    let (_, level, mode, indicator) = ran.battery_reached("synth/b50d").expect("state_reached");
    assert_eq!(mode, "drain");
    assert!((45..=50).contains(&level), "{level}");
    let how = indicator.expect("how charging was disabled");
    assert!(how.contains("charging_enabled=0"), "{how}");
    assert!(m.seen_disabled(), "the switch was turned off");
    assert!(
        m.min_level() <= 50.5,
        "it really drained: {}",
        m.min_level()
    );
    let passes = ran.passes("synth/b50d");
    assert_eq!(passes.len(), 2);
    for t in passes {
        let t = t.expect("telemetry");
        assert_eq!(t.battery_simulated, Some(false));
        assert!(t.battery_level.is_some_and(|l| l <= 50), "{t:?}");
        // On battery during the passes: battery-side energy is valid.
        assert!(t.energy_invalid.is_none(), "{t:?}");
    }
    assert!(ran.ended("synth/b50d"));
    assert_eq!(
        m.charging_enabled(),
        Some(true),
        "charging re-enabled after the cell"
    );
    no_engine_left(dir.path());
    eprintln!("drain: 58% -> {level}% via {how} (run {:?})", ran.elapsed);
}

#[test]
fn drain_without_a_charging_switch_fails_rather_than_drain_while_charging() {
    let _g = alone();
    let (dir, model_file, m) = battery_device(Params {
        level_pct: 58.0,
        plugged: true,
        charge_pct_per_s: 0.01,
        ..Params::default()
    });
    std::fs::remove_file(m.switch_path()).unwrap();
    let c = stated(
        cell("synth/b50d", &model_file, 2, 0, 0),
        "any+battery50-drain",
        20,
    );
    let ran = timed(agent_cmd(dir.path(), &m, vec![c]));
    let err = ran.error("synth/b50d").expect("fails");
    assert!(
        err.contains("no charging switch") && err.contains("not draining while charging"),
        "{err}"
    );
    assert!(ran.passes("synth/b50d").is_empty());
}

/// An Android tree whose `dumpsys battery` commands succeed; the log of command lines.
fn android_commands(dir: &Path, level: u8) -> (PathBuf, PathBuf) {
    let cmds = dir.join("commands");
    std::fs::create_dir_all(&cmds).unwrap();
    for f in [
        "dumpsys battery unplug".to_string(),
        format!("dumpsys battery set level {level}"),
        "dumpsys battery reset".to_string(),
    ] {
        std::fs::write(cmds.join(f), "").unwrap();
    }
    (cmds, dir.join("commands.log"))
}

#[test]
fn simulate_labels_every_pass_and_resets_afterwards() {
    let _g = alone();
    let (dir, model_file, m) = battery_device(Params {
        level_pct: 80.0,
        plugged: true,
        charge_pct_per_s: 0.01,
        android: true,
        ..Params::default()
    });
    let (cmds, log) = android_commands(dir.path(), 20);
    let cells = vec![
        stated(
            cell("synth/b20s", &model_file, 3, 1, 0),
            "any+battery20-simulate",
            20,
        ),
        cell("synth/any", &model_file, 1, 0, 0),
    ];
    let mut cmd = agent_cmd(dir.path(), &m, cells);
    cmd.env("MELTBENCH_COMMANDS_DIR", &cmds)
        .env("MELTBENCH_COMMANDS_LOG", &log);
    let ran = timed(cmd);
    assert_eq!(ran.error("synth/b20s"), None, "{}", ran.stderr);
    let (state, level, mode, _) = ran.battery_reached("synth/b20s").expect("state_reached");
    assert_eq!(
        (state.as_str(), level, mode.as_str()),
        ("battery20-simulate", 20, "simulate")
    );
    let passes = ran.passes("synth/b20s");
    assert_eq!(passes.len(), 3);
    for t in passes {
        let t = t.expect("telemetry");
        assert_eq!(t.battery_simulated, Some(true), "labelled simulated: {t:?}");
        assert_eq!(t.battery_level, Some(20));
    }
    // The next cell (no battery state) carries no battery label.
    for t in ran.passes("synth/any") {
        assert!(t.is_none_or(|t| t.battery_simulated.is_none() && t.battery_level.is_none()));
    }
    let lines: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("dumpsys battery ") || l.starts_with("setprop"))
        .map(String::from)
        .collect();
    assert_eq!(
        lines,
        [
            "dumpsys battery unplug",
            "dumpsys battery set level 20",
            "dumpsys battery reset"
        ],
        "never a charging switch, and reset after the cell"
    );
    assert_eq!(m.charging_enabled(), Some(true));
    drop(m);

    // Not an Android device: refused.
    let dir = tempfile::tempdir().unwrap();
    let model_file = synth_model(dir.path());
    let m = BatteryModel::start(Params::default());
    let c = stated(
        cell("synth/b20s", &model_file, 1, 0, 0),
        "any+battery20-simulate",
        20,
    );
    let ran = timed(agent_cmd(dir.path(), &m, vec![c]));
    let err = ran.error("synth/b20s").expect("refused");
    assert!(err.contains("not Android"), "{err}");
}

#[test]
fn sigint_during_a_drain_reenables_charging_and_exits_130() {
    let _g = alone();
    let (dir, model_file, m) = battery_device(Params {
        level_pct: 90.0,
        plugged: true,
        idle_pct_per_s: 0.01,
        load_pct_per_s: 0.1,
        ..Params::default()
    });
    let c = stated(
        cell("synth/b10d", &model_file, 2, 0, 0),
        "any+battery10-drain",
        60,
    );
    let mut cmd = agent_cmd(dir.path(), &m, vec![c]);
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until it has turned charging off and the drain load runs.
    let t0 = Instant::now();
    while m.charging_enabled() != Some(false) {
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "charging never disabled"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the agent exited early"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let sent = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(10),
            "the agent did not exit"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let exit_after = sent.elapsed();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(130), "{err}");
    assert_eq!(
        m.charging_enabled(),
        Some(true),
        "charging re-enabled on SIGINT"
    );
    let events = parse_events(&out);
    let cell_err = events
        .iter()
        .find_map(|e| match e {
            AgentEvent::CellError { message, .. } => Some(message.clone()),
            _ => None,
        })
        .expect("a cell_error");
    assert!(cell_err.contains("SIGINT"), "{cell_err}");
    let warning = events
        .iter()
        .find_map(|e| match e {
            AgentEvent::Warning { message } if message.contains("interrupted") => {
                Some(message.clone())
            }
            _ => None,
        })
        .expect("a warning");
    assert!(
        warning.contains("SIGINT") && warning.contains("charging_enabled"),
        "{warning}"
    );
    assert!(!events.iter().any(|e| matches!(e, AgentEvent::Done { .. })));
    assert!(exit_after < Duration::from_secs(3), "{exit_after:?}");
    no_engine_left(dir.path());
    eprintln!("sigint: exited 130 after {exit_after:?}; {warning}");
}
