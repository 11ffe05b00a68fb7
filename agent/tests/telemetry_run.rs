//! `meltbench-agent run` on the real engine with telemetry read from a device tree (Jetson Orin
//! Nano, `testbed/devices/orin-nano`): every pass carries the tree's power, energy over its own
//! CLOCK_MONOTONIC window, temperatures and clocks; `hello` lists the discovered sources.

mod common;

use common::{cell, engine, job, synth_model};
use meltbench_protocol::agent::AgentEvent;
use std::path::Path;

#[test]
fn passes_carry_power_energy_and_temperature_from_the_device() {
    let dir = tempfile::tempdir().unwrap();
    let model = synth_model(dir.path());
    let j = job(dir.path(), engine(), vec![cell("synth/t", &model, 3, 1, 0)]);
    let path = dir.path().join("job.json");
    std::fs::write(&path, serde_json::to_vec(&j).unwrap()).unwrap();
    let dev = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testbed/devices/orin-nano");
    let out = common::agent()
        .arg("run")
        .arg("--job")
        .arg(&path)
        .env("MELTBENCH_SYSFS_ROOT", dev.join("root"))
        .env("MELTBENCH_COMMANDS_DIR", dev.join("commands"))
        .env("MELTBENCH_IDLE_S", "0.5")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: Vec<AgentEvent> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let AgentEvent::Hello { device, .. } = &events[0] else {
        panic!("first event is not hello");
    };
    let ok: Vec<&str> = device
        .telemetry
        .iter()
        .filter(|s| s.status == "ok")
        .map(|s| s.name.as_str())
        .collect();
    for want in [
        "jetson_ina3221",
        "gpu_devfreq",
        "nvpmodel",
        "device_identity",
        "power_total",
    ] {
        assert!(
            ok.contains(&want),
            "{want} not ok in {:?}",
            device.telemetry
        );
    }
    let vdd_in = 5.104 * 1.143;
    let mut passes = 0;
    for e in &events {
        let AgentEvent::Pass {
            pass, telemetry, ..
        } = e
        else {
            continue;
        };
        passes += 1;
        let t = telemetry.as_ref().expect("telemetry on every pass");
        let secs = (pass.end_mono_ns - pass.start_mono_ns) as f64 / 1e9;
        assert!((t.power_w_avg.unwrap() - vdd_in).abs() < 1e-6, "{t:?}");
        assert!((t.power_w_peak.unwrap() - vdd_in).abs() < 1e-6, "{t:?}");
        assert!(
            (t.energy_j.unwrap() - vdd_in * secs).abs() < 1e-6 * vdd_in * secs.max(1.0),
            "{t:?} over {secs} s"
        );
        let per_token = t.energy_j.unwrap() / pass.gen_tokens as f64;
        assert!((t.energy_j_per_token.unwrap() - per_token).abs() < 1e-12);
        assert_eq!(t.temp_c_max, Some(50.968));
        assert_eq!(t.cpu_mhz_mean, Some(729.6));
        assert!(t.power_source.as_deref().unwrap().starts_with("VDD_IN"));
        assert!(t.power_max_gap_ms.is_some() && t.low_confidence.is_some());
        assert_eq!(t.energy_invalid, None);
        // The tree's power does not change, so idle equals the pass power and nothing is
        // above idle.
        assert!((t.idle_power_w.unwrap() - vdd_in).abs() < 1e-6, "{t:?}");
        assert!(t.energy_j_above_idle.unwrap().abs() < 1e-6, "{t:?}");
    }
    assert_eq!(passes, 4, "one warm-up and three measured passes");
}
