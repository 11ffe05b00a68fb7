//! Thermal states end to end: the real agent and the real engine on the synth model, against
//! a testbed thermal model (a fake `thermal_zone0` whose temperature follows this machine's CPU
//! load, and a cooling device that turns on above a trip point).
//!
//! The model heats with the whole machine's load, so these tests run one at a time (a lock
//! here; nextest runs this binary alone, see .config/nextest.toml).

mod common;

use common::{alone, cell, device_agent, stated, synth_model, timed, Timed};
use meltbench_protocol::agent::{AgentEvent, Cell};
use meltbench_testbed::thermal_model::{Params, ThermalModel, HYSTERESIS_C};
use std::path::Path;
use std::time::Duration;

fn run(dir: &Path, model: &ThermalModel, cells: Vec<Cell>) -> Timed {
    let mut c = device_agent(dir, &model.root, cells);
    c.env("MELTBENCH_COOL_WINDOW_S", "3");
    timed(c)
}

/// No process is left running a pre-heat job of this directory.
fn no_preheat_left(dir: &Path) {
    let needle = dir.join("work").display().to_string();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd);
        assert!(
            !(cmd.contains(&needle) && cmd.contains("preheat")),
            "a pre-heat engine is still running: {cmd}"
        );
    }
}

#[test]
fn cool_waits_for_the_device_to_settle_then_runs_the_passes() {
    let _g = alone();
    let dir = tempfile::tempdir().unwrap();
    let model_file = synth_model(dir.path());
    // Cools with a 1 s time constant.
    let m = ThermalModel::start(Params {
        cool_per_s: 1.0,
        ..Params::default()
    });
    m.set_temp(70.0);
    let c = stated(cell("synth/cool", &model_file, 2, 0, 0), "cool", 40);
    let ran = run(dir.path(), &m, vec![c]);
    assert_eq!(ran.error("synth/cool"), None, "{}", ran.stderr);
    let reached = ran
        .of("synth/cool")
        .find_map(|e| match e {
            AgentEvent::StateReached {
                state,
                waited_s,
                temp_c,
                reference_temp_c,
                ..
            } => Some((
                state.clone(),
                *waited_s,
                temp_c.unwrap(),
                reference_temp_c.unwrap(),
            )),
            _ => None,
        })
        .expect("state_reached");
    let (state, waited, t, r) = reached;
    assert_eq!(state, "cool");
    assert!(
        t <= r + 2.0,
        "within tolerance of the reference: {t} vs {r}"
    );
    assert!(t < 55.0, "it cooled from 70 °C: {t}");
    assert!(waited >= 2.5, "it waited for the trend window: {waited} s");
    assert_eq!(ran.measured("synth/cool"), 2);
    assert!(ran.ended("synth/cool"));
    // The state event comes before the passes.
    let kinds: Vec<bool> = ran
        .of("synth/cool")
        .filter_map(|e| match e {
            AgentEvent::StateReached { .. } => Some(true),
            AgentEvent::Pass { .. } => Some(false),
            _ => None,
        })
        .collect();
    assert_eq!(kinds.first(), Some(&true));
    eprintln!("cool: reached {t:.2} °C (reference {r:.2}) after {waited:.1} s");
}

#[test]
fn hot_preheats_with_the_engine_until_the_cooling_device_trips() {
    let _g = alone();
    let dir = tempfile::tempdir().unwrap();
    let model_file = synth_model(dir.path());
    let trip = 50.0;
    let m = ThermalModel::start(Params {
        trip_c: trip,
        ..Params::default()
    });
    let mut c = stated(cell("synth/hot", &model_file, 3, 0, 0), "hot", 40);
    c.threads = 2;
    c.engine_job.threads = Some(2);
    let ran = run(dir.path(), &m, vec![c]);
    assert_eq!(ran.error("synth/hot"), None, "{}", ran.stderr);
    let (waited, t, indicator) = ran
        .of("synth/hot")
        .find_map(|e| match e {
            AgentEvent::StateReached {
                waited_s,
                temp_c,
                indicator,
                ..
            } => Some((*waited_s, *temp_c, indicator.clone())),
            _ => None,
        })
        .expect("state_reached");
    let indicator = indicator.expect("hot names what tripped");
    assert!(indicator.contains("cooling device"), "{indicator}");
    assert!(t.unwrap() > trip - HYSTERESIS_C, "{t:?}");
    assert_eq!(ran.measured("synth/hot"), 3);
    let mut first = true;
    for e in ran.of("synth/hot") {
        if let AgentEvent::Pass { telemetry, .. } = e {
            let tel = telemetry.as_ref().expect("telemetry on every pass");
            let start = tel.temp_c_start.expect("temp_c_start");
            if first {
                assert!(start > trip - HYSTERESIS_C, "the passes start hot: {tel:?}");
                first = false;
            }
        }
    }
    assert!(m.peak() > trip, "the model really went past its trip point");
    no_preheat_left(dir.path());
    eprintln!("hot: {indicator} at {t:?} °C after {waited:.1} s");
}

#[test]
fn hot_that_cannot_be_reached_fails_the_cell_and_the_run_goes_on() {
    let _g = alone();
    let dir = tempfile::tempdir().unwrap();
    let model_file = synth_model(dir.path());
    let m = ThermalModel::start(Params {
        trip_c: 1000.0,
        ..Params::default()
    });
    let cells = vec![
        stated(cell("synth/hot", &model_file, 2, 0, 0), "hot", 8),
        cell("synth/any", &model_file, 2, 0, 0),
    ];
    let ran = run(dir.path(), &m, cells);
    let err = ran.error("synth/hot").expect("the hot cell fails");
    assert!(
        err.starts_with("could not reach hot within 8 s: peak ")
            && err.contains("no throttling indicator tripped"),
        "{err}"
    );
    assert_eq!(ran.measured("synth/hot"), 0);
    assert!(!ran
        .of("synth/hot")
        .any(|e| matches!(e, AgentEvent::StateReached { .. })));
    assert!(ran.ended("synth/any"), "the next cell still runs");
    assert_eq!(ran.measured("synth/any"), 2);
    assert!(
        ran.elapsed < Duration::from_secs(8 + 6),
        "{:?}",
        ran.elapsed
    );
    no_preheat_left(dir.path());
    assert_eq!(
        ran.events.last(),
        Some(&AgentEvent::Done {
            cells_ok: 1,
            cells_failed: 1
        })
    );
    eprintln!("timeout: {err} (run took {:?})", ran.elapsed);
}

#[test]
fn battery_states_fail_on_a_device_without_a_battery_and_malformed_ones_are_refused() {
    let _g = alone();
    let dir = tempfile::tempdir().unwrap();
    let model_file = synth_model(dir.path());
    let m = ThermalModel::start(Params::default());
    let cells = vec![
        stated(cell("synth/drain", &model_file, 2, 0, 0), "cool+drain", 5),
        stated(
            cell("synth/b50w", &model_file, 2, 0, 0),
            "cool+battery50-wait",
            5,
        ),
        cell("synth/any", &model_file, 2, 0, 0),
    ];
    let ran = run(dir.path(), &m, cells);
    let err = ran.error("synth/drain").expect("refused");
    assert!(err.starts_with("unknown battery state"), "{err}");
    let err = ran.error("synth/b50w").expect("no battery here");
    assert!(
        err.starts_with("cannot establish battery50-wait: this device has no readable battery"),
        "{err}"
    );
    assert_eq!(ran.measured("synth/drain"), 0);
    assert_eq!(ran.measured("synth/b50w"), 0);
    assert!(ran.ended("synth/any"));
}
