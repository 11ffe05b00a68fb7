//! `meltbench-agent probe` on this machine and on a hand-made sysfs tree.

mod common;

use meltbench_protocol::agent::{Cluster, DeviceInfo};
use std::fs;
use std::path::Path;

fn probe(root: Option<&Path>) -> DeviceInfo {
    let mut cmd = common::agent();
    cmd.arg("probe");
    if let Some(r) = root {
        cmd.env("MELTBENCH_SYSFS_ROOT", r);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text.lines().count(),
        1,
        "one JSON object on one line: {text}"
    );
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not DeviceInfo ({e}): {text}"))
}

#[test]
fn probe_describes_this_machine() {
    let info = probe(None);
    assert!(info.cores > 0);
    assert_eq!(
        info.clusters.iter().map(|c| c.cpus.len()).sum::<usize>(),
        info.cores
    );
    if cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
        assert_eq!(info.arch, std::env::consts::ARCH);
    }
    assert!(!info.kernel.is_empty() && !info.hostname.is_empty());
    assert!(info.ram_bytes.unwrap() > 0);
    let names: Vec<&str> = info.telemetry.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["thermal_zones", "hwmon", "cpufreq", "power_supply"]);
    for s in &info.telemetry {
        assert!(
            ["ok", "unreadable", "absent"].contains(&s.status.as_str()),
            "{s:?}"
        );
    }
    let euid_root = unsafe { libc::geteuid() } == 0;
    assert_eq!(info.root, euid_root);
    assert!(!info.can_drop_caches || info.root);
}

fn put(root: &Path, rel: &str, content: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, content).unwrap();
}

#[test]
fn probe_reads_under_the_sysfs_root() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    // A phone-like big.LITTLE layout: four little cores, two big ones.
    for cpu in 0..6 {
        let khz = if cpu < 4 { 1_785_600 } else { 2_841_600 };
        let base = format!("sys/devices/system/cpu/cpu{cpu}/cpufreq");
        put(r, &format!("{base}/cpuinfo_max_freq"), &format!("{khz}\n"));
        put(r, &format!("{base}/scaling_cur_freq"), "300000\n");
    }
    put(r, "sys/class/thermal/thermal_zone0/temp", "38500\n");
    put(r, "sys/class/hwmon/hwmon0/name", "ina3221\n");
    put(r, "sys/class/hwmon/hwmon0/in1_input", "5080\n");
    put(r, "proc/meminfo", "MemTotal:        7815636 kB\n");
    put(r, "etc/os-release", "PRETTY_NAME=\"Ubuntu 22.04.4 LTS\"\n");
    let info = probe(Some(r));
    assert_eq!(info.os, "linux");
    assert_eq!(info.os_release.as_deref(), Some("Ubuntu 22.04.4 LTS"));
    assert_eq!(info.cores, 6);
    assert_eq!(
        info.clusters,
        [
            Cluster {
                cpus: vec![0, 1, 2, 3],
                max_khz: Some(1_785_600)
            },
            Cluster {
                cpus: vec![4, 5],
                max_khz: Some(2_841_600)
            },
        ]
    );
    assert_eq!(info.ram_bytes, Some(7_815_636 * 1024));
    let status = |n: &str| {
        let s = info.telemetry.iter().find(|s| s.name == n).unwrap();
        (s.status.clone(), s.detail.clone().unwrap_or_default())
    };
    assert_eq!(status("thermal_zones").0, "ok");
    assert_eq!(status("hwmon"), ("ok".into(), "hwmon0 (ina3221)".into()));
    assert_eq!(status("cpufreq").0, "ok");
    assert_eq!(status("power_supply").0, "absent");
    // No drop_caches in the tree, so nothing to drop even as root.
    assert!(!info.can_drop_caches);

    // Without cpufreq the cores form one cluster of unknown speed.
    let bare = tempfile::tempdir().unwrap();
    for cpu in 0..3 {
        fs::create_dir_all(bare.path().join(format!("sys/devices/system/cpu/cpu{cpu}"))).unwrap();
    }
    let info = probe(Some(bare.path()));
    assert_eq!(
        info.clusters,
        [Cluster {
            cpus: vec![0, 1, 2],
            max_khz: None
        }]
    );
    assert!(
        info.telemetry.iter().all(|s| s.status == "absent"),
        "{:?}",
        info.telemetry
    );
}
