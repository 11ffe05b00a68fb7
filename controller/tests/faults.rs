//! Faults injected mid-run on a three-device farm (this machine, a board behind the test bed's
//! real sshd, a phone behind the real adb server and the ADB device simulator), six cells of
//! three sessions each: whatever breaks, every completed pass is kept, and `meltbench run
//! --resume` then runs exactly what is missing: every cell ends with all its sessions, no pass
//! is counted twice, and run.json records each attempt.
//!
//! Faults: agents and engines SIGKILLed; sshd and the adb server killed; the phone dropped off
//! adb; an engine binary and a model damaged on the devices; the board's disk full; the
//! controller SIGINT-ed once and twice, and once during a `battery: simulate` cell.
//!
//! Needs sshd, adb and the host bundle, like `farm.rs`: under CI=true a missing one fails.

mod common;

use common::farm::{adb_entry, host_bundle, json, ready, ssh_entry, yaml_str, Farm};
use common::{meltbench, text};
use meltbench_protocol::agent::AgentEvent;
use meltbench_reports::runstore;
use meltbench_testbed::adb_device::{AdbDevice, AdbDeviceOptions, AdbServer};
use meltbench_testbed::procs::{alive, children_of};
use meltbench_testbed::sshd::Sshd;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Six cells of three sessions; `{passes}` measured passes per session.
const SUITE: &str = "\
name: faults
models:
  - name: synth
scenarios:
  - {name: a, prompt_tokens: 16, new_tokens: 16}
  - {name: b, prompt_tokens: 32, new_tokens: 8}
  - {name: c, prompt_tokens: 8, new_tokens: 24}
threads: [1, 2]
passes: {passes}
warmup: 2
sessions: 3
cold_start: 1
timeout_s: 300
";
const CELLS: usize = 6;
/// Passes per session for faults that strike one device each, when its own log says it runs.
const PASSES: usize = 150;
/// For Ctrl-C, which must find all three running: devices start a few seconds apart (pushes).
const LONG_PASSES: usize = 300;
const WARMUP: usize = 2;
const SESSIONS: usize = 3;

/// The three devices and what a test needs to reach into them.
struct Bed {
    farm: Farm,
    sshd: Sshd,
    adb: AdbServer,
    phone: AdbDevice,
    suite: PathBuf,
    /// Measured passes per session.
    passes: usize,
    devices: PathBuf,
    out: PathBuf,
}

impl Bed {
    /// The three devices, and a suite of `passes` per session: enough that every device is
    /// still running when a test's fault comes.
    fn start(passes: usize) -> Option<Bed> {
        if !ready(Sshd::available(), host_bundle()) || !ready(AdbServer::available(), host_bundle())
        {
            return None;
        }
        let farm = Farm::new();
        let sshd = Sshd::start().unwrap();
        let adb = AdbServer::start().unwrap();
        let phone = AdbDevice::start(AdbDeviceOptions::default()).unwrap();
        adb.connect(&phone).unwrap();
        let suite = farm.root.join("faults.yaml");
        std::fs::write(&suite, SUITE.replace("{passes}", &passes.to_string())).unwrap();
        let bed = Bed {
            devices: farm.root.join("devices.yaml"),
            out: farm.root.join("runs"),
            farm,
            sshd,
            adb,
            phone,
            suite,
            passes,
        };
        bed.write_devices();
        Some(bed)
    }

    /// The inventory, for the peers as they are now (a restarted peer has a new port and keys).
    /// This machine runs the release bundle too, so all three devices run at the same speed.
    fn write_devices(&self) {
        let inventory = format!(
            "devices:\n  - name: here\n    transport: local\n    target: {}\n    workdir: {}\n{}{}",
            host_bundle(),
            yaml_str(&self.workdir("here").display().to_string()),
            ssh_entry("board", &self.sshd, &self.workdir("board")),
            adb_entry("phone", &self.adb, &self.phone, &self.workdir("phone")),
        );
        std::fs::write(&self.devices, inventory).unwrap();
    }

    /// Where a device's agent works (a path on this machine for all three).
    fn workdir(&self, device: &str) -> PathBuf {
        match device {
            "phone" => self.phone.sandbox.join("data/local/tmp/mb"),
            other => self.farm.root.join(format!("{other}-work")),
        }
    }

    fn spawn(&self) -> Child {
        spawn_run(&self.farm, &self.suite, &self.devices, &self.out)
    }

    fn resume(&self, run: &Path) -> Output {
        meltbench(&self.farm.cache)
            .env("MELTBENCH_BUNDLE_DIR", common::farm::bundles_dir())
            .arg("run")
            .arg("--resume")
            .arg(run)
            .output()
            .unwrap()
    }

    /// The run directory, once the controller has created it.
    fn run_dir(&self) -> PathBuf {
        run_dir(&self.out)
    }

    /// The pid of the agent of the run's first attempt on `device`, once it has started.
    fn agent_pid(&self, run: &Path, device: &str) -> u32 {
        let run_id = run.file_name().unwrap().to_str().unwrap();
        let file = self
            .workdir(device)
            .join("runs")
            .join(run_id)
            .join("agent.pid");
        let text = wait_for(&format!("{}", file.display()), || {
            std::fs::read_to_string(&file)
                .ok()
                .filter(|t| !t.is_empty())
        });
        text.trim().parse().unwrap()
    }
}

/// `meltbench run SUITE --devices DEVICES --out OUT` in the background.
fn spawn_run(farm: &Farm, suite: &Path, devices: &Path, out: &Path) -> Child {
    meltbench(&farm.cache)
        .env("MELTBENCH_BUNDLE_DIR", common::farm::bundles_dir())
        .arg("run")
        .arg(suite)
        .arg("--devices")
        .arg(devices)
        .arg("--out")
        .arg(out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The run directory under `out`, once the controller has written its run.json.
fn run_dir(out: &Path) -> PathBuf {
    wait_for("the run directory", || {
        std::fs::read_dir(out)
            .ok()?
            .next()
            .map(|e| e.unwrap().path())
            .filter(|d| d.join("run.json").is_file())
    })
}

/// Polls `f` (every 5 ms, up to 120 s) until it gives something.
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "waited 120 s for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Pass lines the controller has stored for `device` so far (first attempt).
fn stored_passes(run: &Path, device: &str) -> usize {
    std::fs::read_to_string(runstore::events_path(run, device, 1))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with(r#"{"event":"pass""#))
        .count()
}

fn wait_for_passes(run: &Path, device: &str, n: usize) {
    wait_for(&format!("{n} passes from {device}"), || {
        (stored_passes(run, device) >= n).then_some(())
    });
}

fn signal(pid: u32, signal: &str) -> bool {
    Command::new("kill")
        .args([signal, &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

fn kill(pid: u32, sig: &str) {
    assert!(signal(pid, sig), "kill {sig} {pid}");
}

/// SIGKILLs an engine of the agent `agent` (waiting until one runs: between sessions none does).
fn kill_engine(agent: u32) {
    wait_for("an engine under the agent to kill", || {
        children_of(agent)
            .into_iter()
            .any(|e| signal(e, "-KILL"))
            .then_some(())
    });
}

fn finish(child: Child, within: Duration) -> Output {
    let deadline = Instant::now() + within;
    let mut child = child;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let o = child.wait_with_output().unwrap();
            panic!(
                "the controller did not end within {within:?}:\n{}",
                text(&o)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Per cell: cold starts, warm-ups and measured passes counted from the run's merged events;
/// panics on a pass counted twice.
fn counts(run: &Path, device: &str) -> BTreeMap<String, (usize, usize, usize)> {
    let loaded = runstore::load_run(run).unwrap();
    let events = &loaded
        .events
        .iter()
        .find(|(d, _)| d == device)
        .unwrap_or_else(|| panic!("no events of {device}"))
        .1;
    let mut seen = BTreeSet::new();
    let mut out: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
    for e in events {
        match e {
            AgentEvent::Pass {
                cell,
                session,
                pass,
                ..
            } => {
                assert!(
                    seen.insert((cell.clone(), *session, pass.index, pass.warmup)),
                    "{device}: {cell} session {session} pass {} counted twice",
                    pass.index
                );
                let c = out.entry(cell.clone()).or_default();
                if pass.warmup {
                    c.1 += 1;
                } else {
                    c.2 += 1;
                }
            }
            AgentEvent::ColdStart { cell, .. } => out.entry(cell.clone()).or_default().0 += 1,
            _ => {}
        }
    }
    out
}

/// Every device has every cell whole: what an uninterrupted run stores.
fn assert_complete(run: &Path, passes: usize) {
    for device in ["here", "board", "phone"] {
        let c = counts(run, device);
        assert_eq!(c.len(), CELLS, "{device}: {c:?}");
        for (cell, n) in &c {
            assert_eq!(
                *n,
                (1, WARMUP * SESSIONS, passes * SESSIONS),
                "{device} {cell}: (cold starts, warm-ups, passes)"
            );
        }
    }
    let summary = json(&run.join("summary.json"));
    let cells = summary["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 3 * CELLS);
    for c in cells {
        assert_eq!(c["passes"], passes * SESSIONS, "{}", c["key"]);
        assert_eq!(c["sessions"], SESSIONS, "{}", c["key"]);
        assert!(c["error"].is_null(), "{c}");
    }
}

fn attempts(run: &Path) -> Vec<serde_json::Value> {
    json(&run.join("run.json"))["attempts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn killed_agents_and_engines_lose_nothing_and_resume_fills_the_gap() {
    let Some(bed) = Bed::start(PASSES) else {
        return;
    };
    let child = bed.spawn();
    let run = bed.run_dir();
    // Each device's fault comes while it runs, as its own log shows: the board's agent and
    // this machine's engine die in the first cells, the phone's agent a little later.
    std::thread::scope(|s| {
        s.spawn(|| {
            wait_for_passes(&run, "board", 60);
            kill(bed.agent_pid(&run, "board"), "-KILL");
        });
        s.spawn(|| {
            wait_for_passes(&run, "here", 60);
            kill_engine(bed.agent_pid(&run, "here"));
        });
        s.spawn(|| {
            wait_for_passes(&run, "phone", 100);
            kill(bed.agent_pid(&run, "phone"), "-KILL");
        });
    });
    let o = finish(child, Duration::from_secs(300));
    let said = text(&o);
    assert_eq!(o.status.code(), Some(1), "{said}");
    assert!(said.contains("--resume"), "{said}");
    let kept: BTreeMap<&str, usize> = ["here", "board", "phone"]
        .into_iter()
        .map(|d| (d, stored_passes(&run, d)))
        .collect();
    assert!(kept["board"] >= 60 && kept["phone"] >= 100, "{kept:?}");

    let o = bed.resume(&run);
    assert!(o.status.success(), "{}", text(&o));
    assert_complete(&run, bed.passes);
    // Nothing stored in the first attempt was lost or rewritten.
    for (d, n) in &kept {
        assert_eq!(stored_passes(&run, d), *n, "{d}'s first log changed");
    }
    let a = attempts(&run);
    assert_eq!(a.len(), 2, "{a:?}");
    let errors = a[0]["errors"].to_string();
    assert!(
        errors.contains("board") && errors.contains("phone"),
        "{errors}"
    );
    let superseded = a[1]["superseded"].as_array().cloned().unwrap_or_default();
    for d in ["here", "board", "phone"] {
        assert!(
            superseded.iter().any(|s| s["device"] == d),
            "the partial session of {d} is listed as superseded: {superseded:?}"
        );
    }
    // A third go finds nothing missing and changes nothing.
    let o = bed.resume(&run);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("nothing missing"), "{}", text(&o));
    assert_complete(&run, bed.passes);
}

#[test]
fn dropped_connections_are_recovered_from_the_devices_own_logs() {
    let Some(mut bed) = Bed::start(PASSES) else {
        return;
    };
    let child = bed.spawn();
    let run = bed.run_dir();
    wait_for_passes(&run, "board", 60);
    bed.sshd.kill();
    wait_for_passes(&run, "phone", 60);
    bed.adb.kill();
    let o = finish(child, Duration::from_secs(300));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));

    // The peers come back on other ports (a board's new address, a restarted adb server).
    bed.sshd = Sshd::start().unwrap();
    bed.adb = AdbServer::start().unwrap();
    bed.adb.connect(&bed.phone).unwrap();
    bed.write_devices();
    let o = bed.resume(&run);
    let said = text(&o);
    assert!(o.status.success(), "{said}");
    // What the agents logged on their devices after the connections broke came back.
    assert!(said.contains("recovered"), "{said}");
    assert_complete(&run, bed.passes);
    assert!(
        !attempts(&run)[1]["recovered"].is_null(),
        "{:?}",
        attempts(&run)
    );
}

/// The phone drops off the adb server mid-run (a cable pulled, wireless debugging lost): its
/// shell gets SIGHUP, its agent stops after the pass under way and restores the device; once
/// it is back, the resume takes back what the agent logged and runs the rest.
#[test]
fn a_phone_that_drops_off_adb_is_resumed_when_it_is_back() {
    let Some(bed) = Bed::start(PASSES) else {
        return;
    };
    let child = bed.spawn();
    let run = bed.run_dir();
    wait_for_passes(&run, "phone", 60);
    let o = bed
        .adb
        .run(&["disconnect", &bed.phone.serial], Duration::from_secs(10))
        .unwrap();
    assert!(o.status.success(), "adb disconnect: {o:?}");
    let o = finish(child, Duration::from_secs(300));
    let said = text(&o);
    assert_eq!(o.status.code(), Some(1), "{said}");
    assert!(said.contains("failed: device phone"), "{said}");

    bed.adb.connect(&bed.phone).unwrap();
    let o = bed.resume(&run);
    assert!(o.status.success(), "{}", text(&o));
    assert_complete(&run, bed.passes);
    assert_eq!(attempts(&run)[1]["devices"], serde_json::json!(["phone"]));
}

#[test]
fn ctrl_c_stops_every_device_and_the_run_resumes() {
    let Some(bed) = Bed::start(LONG_PASSES) else {
        return;
    };
    let child = bed.spawn();
    let run = bed.run_dir();
    for d in ["here", "board", "phone"] {
        wait_for_passes(&run, d, 30);
    }
    let agents: Vec<u32> = ["here", "board", "phone"]
        .iter()
        .map(|d| bed.agent_pid(&run, d))
        .collect();
    kill(child.id(), "-INT");
    let o = finish(child, Duration::from_secs(120));
    let said = text(&o);
    assert_eq!(o.status.code(), Some(130), "{said}");
    assert!(said.contains("--resume"), "{said}");
    // Each agent was stopped through a second connection and is gone, with its engine.
    for (d, pid) in ["here", "board", "phone"].iter().zip(&agents) {
        assert!(!alive(*pid), "{d}'s agent {pid} still runs");
        let log = std::fs::read_to_string(runstore::events_path(&run, d, 1)).unwrap();
        assert!(
            log.contains("interrupted by SIGINT"),
            "{d}'s agent did not say it was interrupted:\n{}\n{said}",
            &log[log.len().saturating_sub(300)..]
        );
    }
    assert_eq!(attempts(&run)[0]["interrupted"], true);
    assert!(run.join("summary.json").is_file());

    let o = bed.resume(&run);
    assert!(o.status.success(), "{}", text(&o));
    assert_complete(&run, bed.passes);
}

#[test]
fn a_second_ctrl_c_quits_at_once_and_the_run_still_resumes() {
    let Some(bed) = Bed::start(LONG_PASSES) else {
        return;
    };
    let child = bed.spawn();
    let run = bed.run_dir();
    for d in ["here", "board", "phone"] {
        wait_for_passes(&run, d, 30);
    }
    kill(child.id(), "-INT");
    std::thread::sleep(Duration::from_millis(100));
    kill(child.id(), "-INT");
    let sent = Instant::now();
    let o = finish(child, Duration::from_secs(30));
    assert_eq!(o.status.code(), Some(130), "{}", text(&o));
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "{:?}",
        sent.elapsed()
    );

    let o = bed.resume(&run);
    assert!(o.status.success(), "{}", text(&o));
    assert_complete(&run, bed.passes);
}

/// Done-when of the Ctrl-C path on a phone: stopping the controller in the middle of a
/// `battery: simulate` cell leaves no battery override behind (the simulator keeps them, as
/// Android's BatteryService does until `dumpsys battery reset`).
#[test]
fn ctrl_c_in_a_simulated_battery_cell_resets_the_override() {
    if !ready(AdbServer::available(), host_bundle()) {
        return;
    }
    let farm = Farm::new();
    let adb = AdbServer::start().unwrap();
    let phone = AdbDevice::start(AdbDeviceOptions {
        battery_service: true,
        ..Default::default()
    })
    .unwrap();
    adb.connect(&phone).unwrap();
    let suite = farm.root.join("battery.yaml");
    std::fs::write(
        &suite,
        "name: battery\nmodels:\n  - name: synth\nscenarios:\n  - {name: a, prompt_tokens: 16, new_tokens: 16}\n\
         states:\n  - {thermal: any, battery: [20], battery_mode: simulate}\n\
         passes: 5000\nwarmup: 2\ncold_start: 0\ntimeout_s: 300\n",
    )
    .unwrap();
    let devices = farm.root.join("devices.yaml");
    std::fs::write(
        &devices,
        format!(
            "devices:\n{}",
            adb_entry(
                "phone",
                &adb,
                &phone,
                &phone.sandbox.join("data/local/tmp/mb")
            )
        ),
    )
    .unwrap();
    let out = farm.root.join("runs");
    let child = spawn_run(&farm, &suite, &devices, &out);
    let run = run_dir(&out);
    wait_for_passes(&run, "phone", 30);
    let during = phone.battery_overrides();
    assert!(
        during.iter().any(|o| o == "level=20"),
        "the cell runs at a simulated 20 %: {during:?}"
    );
    kill(child.id(), "-INT");
    let o = finish(child, Duration::from_secs(120));
    assert_eq!(o.status.code(), Some(130), "{}", text(&o));
    assert_eq!(
        phone.battery_overrides(),
        Vec::<String>::new(),
        "overrides left after Ctrl-C; dumpsys calls: {:?}",
        phone.dumpsys_calls()
    );
    assert_eq!(
        phone.dumpsys_calls().last().map(String::as_str),
        Some("battery reset")
    );
    let log = std::fs::read_to_string(runstore::events_path(&run, "phone", 1)).unwrap();
    assert!(
        log.contains("interrupted by SIGINT") && log.contains("dumpsys battery reset"),
        "{}",
        &log[log.len().saturating_sub(1500)..]
    );
}

/// The device-side job of the run's first attempt on `device`: where its engine and models are.
fn device_job(bed: &Bed, run: &Path, device: &str) -> serde_json::Value {
    let run_id = run.file_name().unwrap().to_str().unwrap();
    json(
        &bed.workdir(device)
            .join("jobs")
            .join(format!("{run_id}.json")),
    )
}

/// Overwrites the start of `path` with junk, retrying while it is being executed (ETXTBSY).
fn damage(path: &str) {
    wait_for(&format!("{path} to be writable"), || {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().write(true).open(path).ok()?;
        f.write_all(&[0x5a; 4096]).ok()
    });
}

#[test]
fn files_damaged_on_devices_are_caught_and_the_resume_sends_them_again() {
    let Some(bed) = Bed::start(PASSES) else {
        return;
    };
    let child = bed.spawn();
    let run = bed.run_dir();
    std::thread::scope(|s| {
        s.spawn(|| {
            wait_for_passes(&run, "board", 60);
            damage(device_job(&bed, &run, "board")["engine"].as_str().unwrap());
        });
        s.spawn(|| {
            wait_for_passes(&run, "phone", 60);
            damage(
                device_job(&bed, &run, "phone")["cells"][0]["model_path"]
                    .as_str()
                    .unwrap(),
            );
        });
    });
    let o = finish(child, Duration::from_secs(300));
    let said = text(&o);
    assert_eq!(o.status.code(), Some(1), "{said}");
    // The phone's agent refused the damaged model rather than measure it.
    assert!(said.contains("changed or damaged on the device"), "{said}");

    let o = bed.resume(&run);
    assert!(o.status.success(), "{}", text(&o));
    assert_complete(&run, bed.passes);
    // The push cache found both damaged files by their SHA-256 and sent them again.
    let m = json(&run.join("run.json"));
    for d in ["board", "phone"] {
        let rec = m["devices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == d)
            .unwrap();
        assert_eq!(rec["transfer"]["repaired"], 1, "{d}: {rec}");
    }
}

/// The board's work directory on a small tmpfs that fills up mid-run: the agent's own log and
/// the engine's scratch files fail to write, the stream keeps every event, and once space is
/// freed the resume completes the run.
#[test]
fn a_full_device_disk_loses_no_pass() {
    let Some(bed) = Bed::start(PASSES) else {
        return;
    };
    let mount = bed.workdir("board");
    std::fs::create_dir_all(&mount).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=24m", "tmpfs"])
        .arg(&mount)
        .output()
        .unwrap();
    if !mounted.status.success() {
        common::farm::skip(&format!(
            "cannot mount a tmpfs (needs root or CAP_SYS_ADMIN): {}",
            String::from_utf8_lossy(&mounted.stderr).trim()
        ));
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mount.clone());
    let filler = mount.join("filler");
    let child = bed.spawn();
    let run = bed.run_dir();
    wait_for_passes(&run, "board", 60);
    // Fill what is left: every later write on the board fails with ENOSPC.
    let _ = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", filler.display()))
        .args(["bs=64k", "status=none"])
        .stderr(Stdio::null())
        .status();
    let o = finish(child, Duration::from_secs(300));
    let said = text(&o);
    assert!(matches!(o.status.code(), Some(0 | 1)), "{said}");
    let kept = stored_passes(&run, "board");
    assert!(kept >= 60, "{kept}");
    std::fs::remove_file(&filler).unwrap();
    let o = bed.resume(&run);
    assert!(o.status.success(), "{}", text(&o));
    assert_complete(&run, bed.passes);
    assert_eq!(
        stored_passes(&run, "board"),
        kept,
        "the first attempt's log changed"
    );
}
