//! 64 devices stream into one controller: 32 boards behind their own real sshd and 32 phones
//! behind one real adb server (ADB device simulators), each running ci-smoke with 1000 passes.
//! No event is lost (the device's own log and the controller's copy hold the same lines), the
//! controller's CPU time and peak RSS are reported, and the machine stays CPU-bound: the wall
//! time is within 1.2x of the ideal of all cores busy throughout.
//!
//! Needs sshd, adb and the host bundle, like `farm.rs`: under CI=true a missing one fails.

mod common;

use common::farm::{adb_entry, host_bundle, json, ready, ssh_entry, Farm};
use common::text;
use meltbench_reports::runstore;
use meltbench_testbed::adb_device::{AdbDevice, AdbDeviceOptions, AdbServer};
use meltbench_testbed::sshd::Sshd;
use meltbench_testbed::stepper::{cpu_jiffies, load_between};
use std::time::Instant;

const BOARDS: usize = 32;
const PHONES: usize = 32;

fn lines(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .count()
}

#[test]
fn sixty_four_devices_stream_into_one_controller() {
    if !ready(Sshd::available(), host_bundle()) || !ready(AdbServer::available(), host_bundle()) {
        return;
    }
    let f = Farm::new();
    let boards: Vec<Sshd> = (0..BOARDS).map(|_| Sshd::start().unwrap()).collect();
    let adb = AdbServer::start().unwrap();
    let phones: Vec<AdbDevice> = (0..PHONES)
        .map(|_| {
            let d = AdbDevice::start(AdbDeviceOptions::default()).unwrap();
            adb.connect(&d).unwrap();
            d
        })
        .collect();
    let mut inventory = String::from("devices:\n");
    let mut device_logs = Vec::new();
    for (i, s) in boards.iter().enumerate() {
        let name = format!("board{i:02}");
        let work = f.root.join(&name);
        inventory.push_str(&ssh_entry(&name, s, &work));
        device_logs.push((name, work));
    }
    for (i, d) in phones.iter().enumerate() {
        let name = format!("phone{i:02}");
        let work = d.sandbox.join("data/local/tmp/mb");
        inventory.push_str(&adb_entry(&name, &adb, d, &work));
        device_logs.push((name, work));
    }
    let suite = include_str!("../../suites/ci-smoke.yaml")
        .replace("passes: 10\n", "passes: 1000\n")
        .replace("cold_start: 2\n", "cold_start: 0\n");
    // Every device's first push, so the measured run is the streaming itself.
    let (_, o) = f.run(
        "push",
        include_str!("../../suites/ci-smoke.yaml"),
        &inventory,
    );
    assert!(o.status.success(), "{}", text(&o));

    let before = cpu_jiffies();
    let t = Instant::now();
    let (run, o) = f.run("load", &suite, &inventory);
    let wall = t.elapsed();
    let utilisation = before
        .zip(cpu_jiffies())
        .map(|(a, b)| load_between(a, b))
        .unwrap_or(0.0);
    let said = text(&o);
    assert!(o.status.success(), "{said}");

    // Counted on both ends: what each agent wrote on its device is what the controller stored.
    let run_id = run.file_name().unwrap().to_str().unwrap();
    let mut events = 0;
    for (name, work) in &device_logs {
        let on_device = lines(&work.join("runs").join(run_id).join("events.jsonl"));
        let stored = lines(&runstore::events_path(&run, name, 1));
        assert_eq!(
            stored, on_device,
            "{name}: events lost between device and controller"
        );
        events += stored;
    }
    let summary = json(&run.join("summary.json"));
    let cells = summary["cells"].as_array().unwrap();
    assert_eq!(cells.len(), BOARDS + PHONES);
    for c in cells {
        assert_eq!(c["passes"], 1000, "{}", c["key"]);
    }

    let usage = String::from_utf8_lossy(&o.stderr)
        .lines()
        .find(|l| l.starts_with("controller:"))
        .map(str::to_string)
        .expect("the controller reports its own CPU time and peak RSS");
    println!(
        "64 devices ({BOARDS} sshd + {PHONES} adb simulators), ci-smoke with 1000 passes: \
         {events} events, none lost; wall {:.1} s with the CPUs {:.0}% busy (wall / CPU-bound \
         ideal = {:.2}); {usage}",
        wall.as_secs_f64(),
        utilisation * 100.0,
        1.0 / utilisation
    );
    // Other tests running at once can only add busy time, never hide idle time of this run.
    assert!(
        utilisation >= 1.0 / 1.2,
        "the machine was idle {:.0}% of the run: devices waited on something other than CPU\n{usage}",
        (1.0 - utilisation) * 100.0
    );
}
