//! The device farm end to end: `meltbench run suites/ci-smoke.yaml` over ssh to a real OpenSSH
//! sshd on loopback, over adb through the real adb server to the ADB device simulator, on a local
//! device wrapped in qemu with the aarch64 bundle, and on 16 devices at once; the push cache's
//! second run and its repair of a damaged file; hostile paths.
//!
//! These need the bundles (`meltbench bundle`, which ci/test.sh runs), sshd, adb and qemu. When
//! one is missing they fail under CI=true and skip loudly otherwise.

mod common;

use common::farm::{
    adb_entry, bundles_dir, have_bundle, host_bundle, json, ready, skip, ssh_entry, yaml_str, Farm,
};
use common::{meltbench, text};
use meltbench_testbed::adb_device::{AdbDevice, AdbDeviceOptions, AdbServer};
use meltbench_testbed::sshd::Sshd;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

const CI_SMOKE: &str = include_str!("../../suites/ci-smoke.yaml");

/// What a run directory holds, with device names and paths taken out: its files, and per cell
/// the event kinds and measured pass counts.
fn shape(dir: &Path, device: &str) -> (Vec<String>, BTreeMap<String, BTreeMap<String, usize>>) {
    let mut files: Vec<String> = walk(dir)
        .into_iter()
        .map(|p| {
            p.strip_prefix(dir)
                .unwrap()
                .display()
                .to_string()
                .replace(device, "DEVICE")
        })
        .collect();
    files.sort();
    let mut cells: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    let log = std::fs::read_to_string(dir.join("events").join(format!("{device}.jsonl"))).unwrap();
    for line in log.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let kind = v["event"].as_str().unwrap().to_string();
        let cell = v["cell"].as_str().unwrap_or("-").to_string();
        let kind = if kind == "pass" && v["pass"]["warmup"] == true {
            "warmup".to_string()
        } else {
            kind
        };
        *cells.entry(cell).or_default().entry(kind).or_default() += 1;
    }
    (files, cells)
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn transfer(run: &Path, device: &str) -> Value {
    let m = json(&run.join("run.json"));
    m["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == device)
        .unwrap()["transfer"]
        .clone()
}

/// ci-smoke on the local device: the reference every transport must match.
fn local_reference(f: &Farm) -> (Vec<String>, BTreeMap<String, BTreeMap<String, usize>>) {
    let (dir, o) = f.run(
        "local",
        CI_SMOKE,
        "devices:\n  - name: here\n    transport: local\n",
    );
    assert!(o.status.success(), "{}", text(&o));
    shape(&dir, "here")
}

#[test]
fn ci_smoke_over_ssh_matches_local_and_the_push_cache_holds() {
    if !ready(Sshd::available(), host_bundle()) {
        return;
    }
    let f = Farm::new();
    let reference = local_reference(&f);
    let sshd = Sshd::start().unwrap();
    // A hostile workdir: every remote command line must keep it one argument.
    let pwned = f.root.join("pwned");
    let workdir = f.root.join(format!("dev ice; touch {}", pwned.display()));
    let devices = format!("devices:\n{}", ssh_entry("board", &sshd, &workdir));

    let (first, o) = f.run("ssh1", CI_SMOKE, &devices);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        shape(&first, "board"),
        reference,
        "ssh run differs from local"
    );
    let t = transfer(&first, "board");
    assert_eq!(t["sent"], 3, "agent, engine and model pushed: {t}");
    assert!(t["bytes"].as_u64().unwrap() > 1_000_000, "{t}");
    assert!(!pwned.exists(), "a workdir with `;` ran a command");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("pushed "),
        "the transfer is printed: {stderr}"
    );

    let (second, o) = f.run("ssh2", CI_SMOKE, &devices);
    assert!(o.status.success(), "{}", text(&o));
    let t = transfer(&second, "board");
    assert_eq!(
        (t["bytes"].as_u64(), t["reused"].as_u64()),
        (Some(0), Some(3)),
        "{t}"
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("pushed 0 bytes"),
        "{}",
        text(&o)
    );

    // Damage the engine on the device: the checksum catches it and it is sent again.
    let blobs = workdir.join("blobs");
    let engine_sha = json(&bundles_dir().join(host_bundle()).join("manifest.json"))["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "meltbench-engine")
        .unwrap()["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    let blob = blobs.join(&engine_sha);
    let mut bytes = std::fs::read(&blob).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&blob, bytes).unwrap();
    let (third, o) = f.run("ssh3", CI_SMOKE, &devices);
    assert!(o.status.success(), "{}", text(&o));
    let t = transfer(&third, "board");
    assert_eq!(
        (t["repaired"].as_u64(), t["reused"].as_u64()),
        (Some(1), Some(2)),
        "{t}"
    );
    assert_eq!(shape(&third, "board"), reference);
    assert!(!pwned.exists());
}

#[test]
fn ci_smoke_over_adb_matches_local() {
    if !ready(AdbServer::available(), host_bundle()) {
        return;
    }
    let f = Farm::new();
    let reference = local_reference(&f);
    let server = AdbServer::start().unwrap();
    let dev = AdbDevice::start(AdbDeviceOptions::default()).unwrap();
    server.connect(&dev).unwrap();
    let pwned = dev.sandbox.join("pwned");
    let workdir = dev.sandbox.join("data/local/tmp/mb; touch pwned");
    let devices = format!("devices:\n{}", adb_entry("phone", &server, &dev, &workdir));
    let (first, o) = f.run("adb1", CI_SMOKE, &devices);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        shape(&first, "phone"),
        reference,
        "adb run differs from local"
    );
    assert_eq!(transfer(&first, "phone")["sent"], 3);
    let (second, o) = f.run("adb2", CI_SMOKE, &devices);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(transfer(&second, "phone")["bytes"], 0);
    assert!(!pwned.exists(), "a workdir with `;` ran a command");
}

/// The README's farm commands on an inventory without `local`: the repository's
/// `suites/ci-smoke.yaml`, unedited, runs on every device; `--only` and `--tags` pick from the
/// inventory. The board's sshd has no SFTP subsystem (as dropbear on Buildroot boards), so its
/// files travel over exec channels, and run.json says which way they went.
#[test]
fn the_shipped_smoke_suite_runs_on_a_farm_without_local() {
    if !ready(Sshd::available(), host_bundle()) || !ready(AdbServer::available(), host_bundle()) {
        return;
    }
    let f = Farm::new();
    let sshd = Sshd::start_without_sftp().unwrap();
    let server = AdbServer::start().unwrap();
    let dev = AdbDevice::start(AdbDeviceOptions::default()).unwrap();
    server.connect(&dev).unwrap();
    let devices = format!(
        "devices:\n{}    tags: [board, arm64]\n{}    tags: [phone, arm64]\n",
        ssh_entry("board", &sshd, &f.root.join("board")),
        adb_entry(
            "phone",
            &server,
            &dev,
            &dev.sandbox.join("data/local/tmp/mb")
        ),
    );
    let smoke = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../suites/ci-smoke.yaml");
    let logs = |dir: &Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir.join("events"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };

    // `meltbench devices probe` pushes the agent: over exec channels to the board.
    let inventory = f.root.join("probe-devices.yaml");
    std::fs::write(&inventory, &devices).unwrap();
    let o = meltbench(&f.cache)
        .env("MELTBENCH_BUNDLE_DIR", bundles_dir())
        .args(["devices", "probe", "--devices"])
        .arg(&inventory)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        out.lines().filter(|l| l.contains(" ok ")).count(),
        2,
        "{out}"
    );

    let (all, o) = f.run_file("all", &smoke, &devices, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(logs(&all), ["board.jsonl", "phone.jsonl"]);
    let board = transfer(&all, "board");
    // The probe left the agent; the engine and the model are new.
    assert_eq!(
        (board["sent"].as_u64(), board["via"].as_str()),
        (Some(2), Some("ssh-exec")),
        "{board}"
    );
    assert_eq!(transfer(&all, "phone")["via"], "adb-sync");
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("over an SSH exec channel (the server offers no SFTP)"),
        "{}",
        text(&o)
    );
    let summary = json(&all.join("summary.json"));
    for cell in summary["cells"].as_array().unwrap() {
        assert_eq!(cell["passes"], 10, "{cell}");
    }

    let (phone, o) = f.run_file("only", &smoke, &devices, &["--only", "phone"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(logs(&phone), ["phone.jsonl"]);
    let (board, o) = f.run_file("tags", &smoke, &devices, &["--tags", "board"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(logs(&board), ["board.jsonl"]);
    assert_eq!(
        transfer(&board, "board")["bytes"],
        0,
        "the push cache holds over exec too"
    );

    let (_, o) = f.run_file("typo", &smoke, &devices, &["--only", "local"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains(
            "--only names 'local', which is not in the inventory (its devices: board, phone)"
        ),
        "{}",
        text(&o)
    );
}

/// A bundle from before a protocol change fails its device before anything is pushed, with the
/// command that rebuilds it (it used to fail mid-run with "unknown field").
#[test]
fn a_stale_bundle_is_refused_before_any_push() {
    if !ready(Sshd::available(), host_bundle()) {
        return;
    }
    let f = Farm::new();
    let sshd = Sshd::start().unwrap();
    let stale = f.root.join("bundles");
    let from = bundles_dir().join(host_bundle());
    let to = stale.join(host_bundle());
    std::fs::create_dir_all(&to).unwrap();
    for e in std::fs::read_dir(&from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
    let mut manifest = json(&to.join("manifest.json"));
    manifest["protocol_version"] = "0.9".into();
    std::fs::write(to.join("manifest.json"), manifest.to_string()).unwrap();
    let workdir = f.root.join("board");
    let inventory = f.root.join("devices.yaml");
    std::fs::write(
        &inventory,
        format!("devices:\n{}", ssh_entry("board", &sshd, &workdir)),
    )
    .unwrap();
    let o = meltbench(&f.cache)
        .env("MELTBENCH_BUNDLE_DIR", &stale)
        .arg("run")
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../suites/ci-smoke.yaml"))
        .arg("--devices")
        .arg(&inventory)
        .arg("--out")
        .arg(f.root.join("runs"))
        .output()
        .unwrap();
    assert!(!o.status.success(), "{}", text(&o));
    let said = text(&o);
    assert!(
        said.contains("(agent protocol 0.9)")
            && said.contains(&format!(
                "rebuild it with `meltbench bundle --target {}`",
                host_bundle()
            )),
        "{said}"
    );
    assert!(!workdir.join("blobs").exists(), "nothing was pushed");
}

#[test]
fn the_aarch64_bundle_runs_ci_smoke_under_qemu() {
    if std::process::Command::new("qemu-aarch64-static")
        .arg("--version")
        .output()
        .is_err()
    {
        skip("qemu-aarch64-static is missing; install the Debian package qemu-user-static");
        return;
    }
    if !have_bundle("aarch64-unknown-linux-musl") {
        return;
    }
    let f = Farm::new();
    let reference = local_reference(&f);
    let devices = "devices:\n  - name: arm\n    transport: local\n    emulator: qemu-aarch64-static\n    target: aarch64-unknown-linux-musl\n";
    let (dir, o) = f.run("qemu", CI_SMOKE, devices);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(shape(&dir, "arm"), reference);
    let m = json(&dir.join("run.json"));
    assert_eq!(
        m["devices"][0]["info"]["arch"], "aarch64",
        "the agent ran as aarch64"
    );
}

#[test]
fn sixteen_devices_at_once() {
    if !ready(Sshd::available(), host_bundle()) {
        return;
    }
    let f = Farm::new();
    let servers: Vec<Sshd> = (0..15).map(|_| Sshd::start().unwrap()).collect();
    let mut all = String::from("devices:\n  - name: here\n    transport: local\n");
    for (i, s) in servers.iter().enumerate() {
        all.push_str(&ssh_entry(
            &format!("b{i:02}"),
            s,
            &f.root.join(format!("w{i:02}")),
        ));
    }
    let one = format!(
        "devices:\n{}",
        ssh_entry("b00", &servers[0], &f.root.join("w-one"))
    );
    // Long enough (about a second of passes per device) that devices measuring at the same
    // time show in their pass stamps.
    let long = CI_SMOKE
        .replace("passes: 10\n", "passes: 1000\n")
        .replace("cold_start: 2\n", "cold_start: 0\n");
    assert_ne!(long, CI_SMOKE);
    // Warm the model cache and the single device's push so both timings below are runs.
    let (_, o) = f.run("warm", CI_SMOKE, &one);
    assert!(o.status.success(), "{}", text(&o));
    let t = Instant::now();
    let (_, o) = f.run("one", &long, &one);
    let single = t.elapsed();
    assert!(o.status.success(), "{}", text(&o));
    // First with every device's push, then again with the cache full: the second is the
    // scheduling itself.
    let t = Instant::now();
    let (_, o) = f.run("sixteen-push", CI_SMOKE, &all);
    let with_push = t.elapsed();
    assert!(o.status.success(), "{}", text(&o));
    let t = Instant::now();
    let jiffies = meltbench_testbed::stepper::cpu_jiffies();
    let (dir, o) = f.run("sixteen", &long, &all);
    let sixteen = t.elapsed();
    // The machine's CPU use over the run: 1/utilisation is the wall time over the CPU-bound
    // ideal (all cores busy throughout). Other tests running at once inflate it.
    let utilisation = jiffies
        .zip(meltbench_testbed::stepper::cpu_jiffies())
        .map(|(a, b)| meltbench_testbed::stepper::load_between(a, b));
    assert!(o.status.success(), "{}", text(&o));
    let m = json(&dir.join("run.json"));
    let devices = m["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 16);
    for d in devices {
        assert!(d["error"].is_null(), "{d}");
        let name = d["name"].as_str().unwrap();
        let (_, cells) = shape(&dir, name);
        let done = cells.get("-").and_then(|c| c.get("done")).copied();
        assert_eq!(done, Some(1), "{name} finished");
    }
    // Run at once, not one after another: how many devices were between their first and last
    // measured pass at the same moment (the agents share this machine's monotonic clock).
    // Timing itself is printed, not asserted: a loaded CI machine would make it flaky.
    let windows: Vec<(u64, u64)> = devices
        .iter()
        .map(|d| pass_window(&dir, d["name"].as_str().unwrap()))
        .collect();
    let overlap = windows
        .iter()
        .map(|&(start, _)| {
            windows
                .iter()
                .filter(|&&(s, e)| s <= start && start <= e)
                .count()
        })
        .max()
        .unwrap();
    // Devices one after another give 1. Measured on 2 cores: 4 to 7, because devices reach
    // their first pass over some 20 s (a 1000-pass window is 1-4 s); why they start so
    // staggered is open (issue 15's 64-device load test).
    let first = windows.iter().map(|w| w.0).min().unwrap();
    let ms: Vec<(u64, u64)> = windows
        .iter()
        .map(|w| ((w.0 - first) / 1_000_000, (w.1 - first) / 1_000_000))
        .collect();
    assert!(
        overlap >= 3,
        "at most {overlap} of 16 devices measured at once; windows in ms: {ms:?}"
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    let usage = stderr
        .lines()
        .find(|l| l.starts_with("controller:"))
        .unwrap_or("controller: (not reported)");
    println!(
        "16 devices (15 sshd + local), ci-smoke with 1000 passes: wall {:.1} s ({:.1} s with the first push), {overlap} measuring at once, CPUs {} busy; one ssh device: {:.1} s; {usage}; first passes at ms {:?}",
        sixteen.as_secs_f64(),
        with_push.as_secs_f64(),
        utilisation.map_or("?".into(), |u| format!("{:.0}%", u * 100.0)),
        single.as_secs_f64(),
        ms.iter().map(|w| w.0).collect::<Vec<_>>()
    );
}

/// The monotonic span from a device's first measured pass start to its last pass end.
fn pass_window(run: &Path, device: &str) -> (u64, u64) {
    let log = std::fs::read_to_string(run.join("events").join(format!("{device}.jsonl"))).unwrap();
    let mut window = (u64::MAX, 0);
    for line in log.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        if v["event"] == "pass" && v["pass"]["warmup"] == false {
            let stamp = |k: &str| v["pass"][k].as_u64().unwrap_or_else(|| panic!("{k}: {v}"));
            window.0 = window.0.min(stamp("start_mono_ns"));
            window.1 = window.1.max(stamp("end_mono_ns"));
        }
    }
    assert!(window.0 < window.1, "{device} measured no pass");
    window
}

#[test]
fn a_dead_device_fails_alone_and_the_summary_says_why() {
    let f = Farm::new();
    // A loopback port nothing listens on: the connection is refused at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let devices = format!(
        "devices:\n  - name: here\n    transport: local\n  - name: gone\n    transport: ssh\n    host: 127.0.0.1\n    port: {port}\n    identity: {}\n",
        yaml_str(&f.root.join("no-such-key").display().to_string())
    );
    let t = Instant::now();
    let (dir, o) = f.run("dead", CI_SMOKE, &devices);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(t.elapsed().as_secs() < 60, "bounded: {:?}", t.elapsed());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("failed: device gone") && stderr.contains("no-such-key"),
        "the failure names the device and the reason: {stderr}"
    );
    let (_, cells) = shape(&dir, "here");
    assert_eq!(
        cells["-"].get("done"),
        Some(&1),
        "the local device finished"
    );
    let m = json(&dir.join("run.json"));
    assert!(m["devices"][1]["error"]
        .as_str()
        .unwrap()
        .contains("no-such-key"));
}

#[test]
fn devices_lists_unlisted_adb_devices_and_probe_reaches_every_transport() {
    if !ready(AdbServer::available().and(Sshd::available()), host_bundle()) {
        return;
    }
    let f = Farm::new();
    let server = AdbServer::start().unwrap();
    let listed = AdbDevice::start(AdbDeviceOptions::default()).unwrap();
    let stray = AdbDevice::start(AdbDeviceOptions::default()).unwrap();
    server.connect(&listed).unwrap();
    server.connect(&stray).unwrap();
    let sshd = Sshd::start().unwrap();
    let inventory = f.root.join("devices.yaml");
    std::fs::write(
        &inventory,
        format!(
            "devices:\n  - name: here\n    transport: local\n{}{}",
            adb_entry(
                "phone",
                &server,
                &listed,
                &listed.sandbox.join("data/local/tmp/mb")
            ),
            ssh_entry("board", &sshd, &f.root.join("board")),
        ),
    )
    .unwrap();
    let devices = |args: &[&str]| {
        meltbench(&f.cache)
            .env("MELTBENCH_BUNDLE_DIR", bundles_dir())
            .arg("devices")
            .args(args)
            .arg("--devices")
            .arg(&inventory)
            .output()
            .unwrap()
    };
    let o = devices(&[]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    for name in ["here", "phone", "board"] {
        assert!(out.contains(name), "{out}");
    }
    assert!(
        out.contains("not in the inventory") && out.contains(&stray.serial),
        "the stray device is listed: {out}"
    );

    let o = devices(&["probe"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let rows: Vec<&str> = out.lines().filter(|l| l.contains(" ok ")).collect();
    assert_eq!(rows.len(), 3, "every device answered: {out}");
    assert!(out.contains(std::env::consts::ARCH), "{out}");
}
