//! Engines side by side in one run on the local device: the bundled engine and a `command`
//! engine (a shim around the same binary, as a user wraps another runtime), sessions
//! alternating on the device, both in the summary and the report, and `gate --baseline-engine`
//! pairing them inside the run; over ssh and adb, a second build of the engine pushed through
//! the push cache and verified, and refused when built for another machine.

mod common;

use common::farm::{
    adb_entry, bundles_dir, have_bundle, host_bundle, json, ready, ssh_entry, Farm,
};
use common::{bin_dir, meltbench, run_suite, text};
use meltbench_testbed::adb_device::{AdbDevice, AdbDeviceOptions, AdbServer};
use meltbench_testbed::sshd::Sshd;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

#[test]
fn two_engines_alternate_and_gate_against_each_other() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let shim = tmp.path().join("shim.sh");
    std::fs::write(
        &shim,
        format!(
            "#!/bin/sh\nexec {} \"$@\"\n",
            bin_dir().join("meltbench-engine").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
    let suite = "name: engines\nmodels: [{name: synth}]\n\
                 scenarios: [{name: tiny, prompt_tokens: 8, new_tokens: 4}]\n\
                 threads: [1]\npasses: 5\nwarmup: 1\nsessions: 4\ncold_start: 1\n\
                 engines:\n  - name: bundled\n  - name: shim\n    command: shim.sh\n";
    let run = run_suite(&cache, tmp.path(), "engines", suite);

    let (a, b) = ("synth/native/tiny/t1/any", "synth/native/tiny/t1/any/shim");
    let loads: Vec<(String, u64)> = std::fs::read_to_string(run.join("events/local.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["event"] == "load")
        .map(|e| {
            (
                e["cell"].as_str().unwrap().to_string(),
                e["session"].as_u64().unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, u64)> = [
        (a, 0),
        (b, 0),
        (b, 1),
        (a, 1),
        (a, 2),
        (b, 2),
        (b, 3),
        (a, 3),
    ]
    .into_iter()
    .map(|(c, s)| (c.to_string(), s))
    .collect();
    assert_eq!(loads, want, "sessions alternate A B B A");

    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    let ids: Vec<&str> = summary["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["key"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [a, b], "{summary}");
    assert_eq!(summary["cells"][1]["key"]["engine"], "shim");
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(html.contains(b), "the report shows the shim's cell");

    let o = meltbench(&cache)
        .args(["gate", "--baseline-engine", "bundled", "--json", "-"])
        .arg(&run)
        .output()
        .unwrap();
    assert!(
        matches!(o.status.code(), Some(0..=2)),
        "a verdict: {}",
        text(&o)
    );
    let verdicts: Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)));
    let rows = verdicts["rows"].as_array().expect("rows");
    assert!(!rows.is_empty(), "{verdicts}");
    for r in rows {
        assert_eq!(
            (r["cell"].as_str(), r["baseline_cell"].as_str()),
            (Some(b), Some(a)),
            "{r}"
        );
        assert!(
            r["note"]
                .as_str()
                .is_some_and(|n| n.contains("4 sessions paired in the order they ran")),
            "{r}"
        );
    }

    let o = meltbench(&cache)
        .args(["gate", "--baseline-engine", "llama.cpp"])
        .arg(&run)
        .output()
        .unwrap();
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(
        t.contains("no cell ran engine 'llama.cpp' (engines in these runs: bundled, shim)"),
        "{t}"
    );
}

/// Passes measured per cell in a device's event log (cells that ended).
fn ended(run: &Path, device: &str) -> Vec<(String, u64)> {
    std::fs::read_to_string(run.join("events").join(format!("{device}.jsonl")))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["event"] == "cell_end")
        .map(|e| {
            (
                e["cell"].as_str().unwrap().to_string(),
                e["passes"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn transfers(run: &Path) -> Vec<(String, Value)> {
    json(&run.join("run.json"))["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["name"].as_str().unwrap().to_string(),
                d["transfer"].clone(),
            )
        })
        .collect()
}

#[test]
fn a_second_engine_build_is_pushed_and_verified_over_ssh_and_adb() {
    if !ready(Sshd::available().and(AdbServer::available()), host_bundle()) {
        return;
    }
    let f = Farm::new();
    // Another build of the engine: the bundle's, with bytes appended (an ELF runs as before,
    // and its SHA-256 differs, so it is a file of its own in the push cache).
    let mut old =
        std::fs::read(bundles_dir().join(host_bundle()).join("meltbench-engine")).unwrap();
    old.extend_from_slice(b"\nanother build\n");
    let old_engine = f.root.join("old-engine");
    std::fs::write(&old_engine, &old).unwrap();
    std::fs::set_permissions(&old_engine, std::fs::Permissions::from_mode(0o755)).unwrap();
    let suite = "name: ab\nmodels: [{name: synth}]\n\
                 scenarios: [{name: tiny, prompt_tokens: 8, new_tokens: 4}]\n\
                 threads: [1]\npasses: 3\nwarmup: 1\nsessions: 2\ncold_start: 0\n\
                 engines:\n  - name: bundled\n  - name: old\n    command: old-engine\n";

    let sshd = Sshd::start().unwrap();
    let server = AdbServer::start().unwrap();
    let dev = AdbDevice::start(AdbDeviceOptions::default()).unwrap();
    server.connect(&dev).unwrap();
    let devices = format!(
        "devices:\n{}{}",
        ssh_entry("board", &sshd, &f.root.join("board")),
        adb_entry(
            "phone",
            &server,
            &dev,
            &dev.sandbox.join("data/local/tmp/mb")
        )
    );
    let (first, o) = f.run("ab1", suite, &devices);
    assert!(o.status.success(), "{}", text(&o));
    for device in ["board", "phone"] {
        assert_eq!(
            ended(&first, device),
            [
                ("synth/native/tiny/t1/any".to_string(), 6),
                ("synth/native/tiny/t1/any/old".to_string(), 6)
            ],
            "{device}"
        );
    }
    for (device, t) in transfers(&first) {
        assert_eq!(
            t["sent"], 4,
            "{device}: agent, engine, the old engine and the model: {t}"
        );
    }
    let (second, o) = f.run("ab2", suite, &devices);
    assert!(o.status.success(), "{}", text(&o));
    for (device, t) in transfers(&second) {
        assert_eq!(
            (t["bytes"].as_u64(), t["reused"].as_u64()),
            (Some(0), Some(4)),
            "{device}: {t}"
        );
    }

    // A build for another machine is refused before anything runs, with the reason.
    let other = if host_bundle().starts_with("x86_64") {
        "aarch64-unknown-linux-musl"
    } else {
        "x86_64-unknown-linux-musl"
    };
    if have_bundle(other) {
        std::fs::copy(
            bundles_dir().join(other).join("meltbench-engine"),
            &old_engine,
        )
        .unwrap();
        let (_, o) = f.run("ab3", suite, &devices);
        let t = text(&o);
        assert!(!o.status.success(), "{t}");
        let machine = other.split('-').next().unwrap();
        assert!(
            t.contains(&format!("is an ELF binary for {machine}")),
            "{t}"
        );
    }
}
