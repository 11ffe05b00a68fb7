//! `meltbench-agent probe`: who this device is and what the agent can measure on it.
//!
//! Everything that comes from files is read under [`FsRoot`], so a captured tree describes a
//! different device; only `uname` (kernel, arch, hostname) and `geteuid` describe the live system.

use crate::fsroot::FsRoot;
use crate::telemetry::{self, cmd::Commands};
use meltbench_protocol::agent::{Cluster, DeviceInfo, SourceStatus};
use std::collections::BTreeMap;
use std::process::{Command, Stdio};

const CPU_DIR: &str = "/sys/devices/system/cpu";
const DROP_CACHES: &str = "/proc/sys/vm/drop_caches";

pub fn probe(root: &FsRoot) -> DeviceInfo {
    let uts = Uname::get();
    let android = is_android(root);
    let (os_release, abi) = if android {
        (
            android_prop(root, "ro.build.version.release").map(|v| format!("Android {v}")),
            android_prop(root, "ro.product.cpu.abi").unwrap_or_else(|| uts.machine.clone()),
        )
    } else {
        (os_release(root), uts.machine.clone())
    };
    let cpus = cpu_ids(root);
    let root_user = unsafe { libc::geteuid() } == 0;
    DeviceInfo {
        hostname: uts.nodename,
        os: if android { "android" } else { "linux" }.to_string(),
        os_release,
        kernel: uts.release,
        arch: uts.machine,
        abi,
        cpu_model: cpu_model(root),
        cores: cpus.len(),
        clusters: clusters(root, &cpus),
        ram_bytes: ram_bytes(root),
        root: root_user,
        can_drop_caches: root_user && drop_caches_writable(root),
        telemetry: telemetry_sources(root, &cpus),
    }
}

/// The four basic sources (always listed, `absent` included), then every other source the
/// telemetry discovery found on this device (INA3221, RAPL, battery, thermalservice, PMIC,
/// ...) and the total-power rule. Sources a device does not have are not listed beyond the
/// basic four.
fn telemetry_sources(root: &FsRoot, cpus: &[usize]) -> Vec<SourceStatus> {
    let mut out = vec![
        thermal_zones(root),
        hwmon(root),
        cpufreq(root, cpus),
        power_supply(root),
    ];
    let discovery = telemetry::discover(root, &Commands::from_env(root));
    out.extend(discovery.identity_status());
    for s in discovery.source_statuses() {
        if s.status == "absent" {
            continue;
        }
        match out.iter_mut().find(|o| o.name == s.name) {
            // A basic source the generic check missed (e.g. cpufreq seen only through
            // `cpufreq/policy*`): the discovery's finding replaces the `absent`.
            Some(o) if o.status == "absent" => *o = s,
            // Thermal zones and cpufreq: the discovery's account is the more exact one (it
            // skips switched-off and disabled zones and reads clusters through policies).
            Some(o) if o.name == "thermal_zones" || o.name == "cpufreq" => *o = s,
            Some(_) => {}
            None => out.push(s),
        }
    }
    out
}

/// Whether `drop_caches` can be written. Opening it for writing does not drop anything: only a
/// write does, so this check is free of side effects.
pub fn drop_caches_writable(root: &FsRoot) -> bool {
    std::fs::OpenOptions::new()
        .write(true)
        .open(root.path(DROP_CACHES))
        .is_ok()
}

struct Uname {
    nodename: String,
    release: String,
    machine: String,
}

impl Uname {
    fn get() -> Uname {
        // SAFETY: utsname is plain old data; uname fills it with NUL-terminated strings.
        let mut u: libc::utsname = unsafe { std::mem::zeroed() };
        if unsafe { libc::uname(&mut u) } != 0 {
            let unknown = || "unknown".to_string();
            return Uname {
                nodename: unknown(),
                release: unknown(),
                machine: std::env::consts::ARCH.to_string(),
            };
        }
        Uname {
            nodename: c_field(&u.nodename),
            release: c_field(&u.release),
            machine: c_field(&u.machine),
        }
    }
}

fn c_field(f: &[libc::c_char]) -> String {
    let bytes: Vec<u8> = f
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn is_android(root: &FsRoot) -> bool {
    root.exists("/system/build.prop")
        || (root.is_live() && getprop("ro.build.version.release").is_some())
}

fn getprop(key: &str) -> Option<String> {
    let out = Command::new("getprop")
        .arg(key)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !v.is_empty()).then_some(v)
}

/// A system property: `getprop` on the live system, else `/system/build.prop` (which is also
/// what a captured tree has).
fn android_prop(root: &FsRoot, key: &str) -> Option<String> {
    if root.is_live() {
        if let Some(v) = getprop(key) {
            return Some(v);
        }
    }
    let props = root.read("/system/build.prop").ok()?;
    props.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == key && !v.trim().is_empty()).then(|| v.trim().to_string())
    })
}

fn os_release(root: &FsRoot) -> Option<String> {
    let text = root.read("/etc/os-release").ok()?;
    text.lines().find_map(|l| {
        let v = l.strip_prefix("PRETTY_NAME=")?.trim();
        let v = v.trim_matches('"').trim_matches('\'');
        (!v.is_empty()).then(|| v.to_string())
    })
}

/// `/proc/cpuinfo` names the CPU differently per architecture: x86 has `model name`, older ARM
/// kernels `Hardware` (the SoC), arm64 often only the `CPU part` number.
fn cpu_model(root: &FsRoot) -> Option<String> {
    let info = root.read("/proc/cpuinfo").ok()?;
    ["model name", "Hardware", "CPU part"]
        .iter()
        .find_map(|key| cpuinfo_value(&info, key))
}

fn cpuinfo_value(info: &str, key: &str) -> Option<String> {
    info.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key && !v.trim().is_empty()).then(|| v.trim().to_string())
    })
}

/// CPU numbers from the `cpuN` directories, which exist for offline cores too (phones park
/// cores); falls back to `/proc/cpuinfo`, then to what the scheduler lets us use.
fn cpu_ids(root: &FsRoot) -> Vec<usize> {
    let from_sysfs: Vec<usize> = root
        .list(CPU_DIR)
        .unwrap_or_default()
        .iter()
        .filter_map(|n| n.strip_prefix("cpu")?.parse().ok())
        .collect();
    if !from_sysfs.is_empty() {
        return from_sysfs;
    }
    let n = root
        .read("/proc/cpuinfo")
        .map(|i| i.lines().filter(|l| l.starts_with("processor")).count())
        .unwrap_or(0);
    let n = if n > 0 {
        n
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    };
    (0..n).collect()
}

/// Cores grouped by maximum frequency, slowest cluster first. Cores whose maximum cannot be
/// read form one cluster with `max_khz: None` rather than being guessed.
fn clusters(root: &FsRoot, cpus: &[usize]) -> Vec<Cluster> {
    let mut by_freq: BTreeMap<Option<u64>, Vec<usize>> = BTreeMap::new();
    for &cpu in cpus {
        let khz = root
            .read_trimmed(&format!("{CPU_DIR}/cpu{cpu}/cpufreq/cpuinfo_max_freq"))
            .and_then(|s| s.parse().ok());
        by_freq.entry(khz).or_default().push(cpu);
    }
    let unknown = by_freq.remove(&None);
    let mut out: Vec<Cluster> = by_freq
        .into_iter()
        .map(|(max_khz, cpus)| Cluster { cpus, max_khz })
        .collect();
    if let Some(cpus) = unknown {
        out.push(Cluster {
            cpus,
            max_khz: None,
        });
    }
    out
}

fn ram_bytes(root: &FsRoot) -> Option<u64> {
    let info = root.read("/proc/meminfo").ok()?;
    info.lines().find_map(|l| {
        let rest = l.strip_prefix("MemTotal:")?;
        let kb: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kb * 1024)
    })
}

fn source(name: &str, status: &str, detail: impl Into<Option<String>>) -> SourceStatus {
    SourceStatus {
        name: name.to_string(),
        status: status.to_string(),
        detail: detail.into(),
    }
}

/// Entries of `dir` whose name starts with `prefix`; an unlistable directory counts as absent
/// only when it does not exist.
fn entries(root: &FsRoot, dir: &str, prefix: &str) -> Result<Vec<String>, String> {
    match root.list(dir) {
        Ok(names) => Ok(names
            .into_iter()
            .filter(|n| n.starts_with(prefix))
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(format!("cannot list {dir}: {e}")),
    }
}

fn thermal_zones(root: &FsRoot) -> SourceStatus {
    const NAME: &str = "thermal_zones";
    let dir = "/sys/class/thermal";
    let zones = match entries(root, dir, "thermal_zone") {
        Ok(z) if z.is_empty() => return source(NAME, "absent", None),
        Ok(z) => z,
        Err(e) => return source(NAME, "unreadable", e),
    };
    let mut first_err = None;
    let readable = zones
        .iter()
        .filter(|z| {
            let p = format!("{dir}/{z}/temp");
            match root.read(&p).map(|s| s.trim().parse::<i64>().is_ok()) {
                Ok(true) => true,
                Ok(false) => {
                    first_err.get_or_insert(format!("{p}: not a number"));
                    false
                }
                Err(e) => {
                    first_err.get_or_insert(format!("{p}: {e}"));
                    false
                }
            }
        })
        .count();
    let detail = format!("{} zones, {readable} readable", zones.len());
    if readable > 0 {
        source(NAME, "ok", detail)
    } else {
        source(
            NAME,
            "unreadable",
            format!("{detail} ({})", first_err.unwrap_or_default()),
        )
    }
}

/// hwmon chips with at least one readable temperature, voltage, current or power input.
fn hwmon(root: &FsRoot) -> SourceStatus {
    const NAME: &str = "hwmon";
    let dir = "/sys/class/hwmon";
    let chips = match entries(root, dir, "hwmon") {
        Ok(c) if c.is_empty() => return source(NAME, "absent", None),
        Ok(c) => c,
        Err(e) => return source(NAME, "unreadable", e),
    };
    let mut readable = Vec::new();
    for chip in &chips {
        let base = format!("{dir}/{chip}");
        let has_input = root.list(&base).unwrap_or_default().iter().any(|f| {
            let sensor = ["temp", "in", "curr", "power"]
                .iter()
                .any(|p| f.starts_with(p) && f.ends_with("_input"));
            sensor && root.read_trimmed(&format!("{base}/{f}")).is_some()
        });
        if has_input {
            let label = root.read_trimmed(&format!("{base}/name"));
            readable.push(match label {
                Some(n) => format!("{chip} ({n})"),
                None => chip.clone(),
            });
        }
    }
    if readable.is_empty() {
        source(
            NAME,
            "unreadable",
            format!("{} chips, no readable *_input", chips.len()),
        )
    } else {
        source(NAME, "ok", readable.join(", "))
    }
}

fn cpufreq(root: &FsRoot, cpus: &[usize]) -> SourceStatus {
    const NAME: &str = "cpufreq";
    let with_policy: Vec<usize> = cpus
        .iter()
        .copied()
        .filter(|c| root.exists(&format!("{CPU_DIR}/cpu{c}/cpufreq")))
        .collect();
    if with_policy.is_empty() {
        return source(NAME, "absent", None);
    }
    let readable = with_policy
        .iter()
        .filter(|c| {
            root.read_trimmed(&format!("{CPU_DIR}/cpu{c}/cpufreq/scaling_cur_freq"))
                .is_some_and(|s| s.parse::<u64>().is_ok())
        })
        .count();
    let detail = format!(
        "scaling_cur_freq readable on {readable} of {} cpus",
        with_policy.len()
    );
    source(NAME, if readable > 0 { "ok" } else { "unreadable" }, detail)
}

fn power_supply(root: &FsRoot) -> SourceStatus {
    const NAME: &str = "power_supply";
    let dir = "/sys/class/power_supply";
    let supplies = match entries(root, dir, "") {
        Ok(s) if s.is_empty() => return source(NAME, "absent", None),
        Ok(s) => s,
        Err(e) => return source(NAME, "unreadable", e),
    };
    let described: Vec<String> = supplies
        .iter()
        .filter_map(|s| {
            let ty = root.read_trimmed(&format!("{dir}/{s}/type"))?;
            Some(format!("{s} ({ty})"))
        })
        .collect();
    if described.is_empty() {
        source(
            NAME,
            "unreadable",
            format!("{} supplies, no readable type", supplies.len()),
        )
    } else {
        source(NAME, "ok", described.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::path::Path;

    fn put(root: &Path, rel: &str, content: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }

    #[test]
    fn big_little_tree() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        for (cpu, khz) in [
            (0, 1_800_000),
            (1, 1_800_000),
            (2, 2_400_000),
            (3, 2_400_000),
        ] {
            put(
                r,
                &format!("sys/devices/system/cpu/cpu{cpu}/cpufreq/cpuinfo_max_freq"),
                &format!("{khz}\n"),
            );
            put(
                r,
                &format!("sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_cur_freq"),
                "1000000\n",
            );
        }
        put(r, "sys/class/thermal/thermal_zone0/temp", "41000\n");
        put(r, "sys/class/thermal/thermal_zone1/temp", "garbage\n");
        put(r, "sys/class/power_supply/battery/type", "Battery\n");
        put(
            r,
            "proc/meminfo",
            "MemTotal:        3906252 kB\nMemFree: 1 kB\n",
        );
        put(
            r,
            "proc/cpuinfo",
            "processor\t: 0\nCPU part\t: 0xd05\nHardware\t: Qualcomm SM8150\n",
        );
        put(
            r,
            "system/build.prop",
            "ro.build.version.release=13\nro.product.cpu.abi=arm64-v8a\n",
        );
        let info = probe(&FsRoot::new(r));
        assert_eq!(info.os, "android");
        assert_eq!(info.os_release.as_deref(), Some("Android 13"));
        assert_eq!(info.abi, "arm64-v8a");
        assert_eq!(info.cpu_model.as_deref(), Some("Qualcomm SM8150"));
        assert_eq!(info.cores, 4);
        assert_eq!(
            info.clusters,
            [
                Cluster {
                    cpus: vec![0, 1],
                    max_khz: Some(1_800_000)
                },
                Cluster {
                    cpus: vec![2, 3],
                    max_khz: Some(2_400_000)
                },
            ]
        );
        assert_eq!(info.ram_bytes, Some(3_906_252 * 1024));
        let t: BTreeMap<_, _> = info
            .telemetry
            .iter()
            .map(|s| (s.name.as_str(), s))
            .collect();
        assert_eq!(t["thermal_zones"].status, "ok");
        let zones = t["thermal_zones"].detail.as_deref().unwrap();
        assert!(
            zones.starts_with("2 zones, 1 readable") && zones.contains("not an integer"),
            "{zones}"
        );
        assert_eq!(t["hwmon"].status, "absent");
        assert_eq!(t["cpufreq"].status, "ok");
        assert_eq!(
            t["power_supply"].detail.as_deref(),
            Some("battery (Battery)")
        );
        assert!(!info.can_drop_caches || info.root);
    }

    #[test]
    fn unreadable_frequencies_make_one_unknown_cluster() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        for cpu in 0..3 {
            fs::create_dir_all(r.join(format!("sys/devices/system/cpu/cpu{cpu}"))).unwrap();
        }
        put(r, "sys/class/thermal/thermal_zone0/type", "x86_pkg_temp\n");
        put(
            r,
            "etc/os-release",
            "NAME=Debian\nPRETTY_NAME=\"Debian GNU/Linux 13 (trixie)\"\n",
        );
        put(
            r,
            "proc/cpuinfo",
            "processor\t: 0\nmodel name\t: Test CPU @ 3GHz\n",
        );
        let info = probe(&FsRoot::new(r));
        assert_eq!(info.os, "linux");
        assert_eq!(
            info.os_release.as_deref(),
            Some("Debian GNU/Linux 13 (trixie)")
        );
        assert_eq!(info.cpu_model.as_deref(), Some("Test CPU @ 3GHz"));
        assert_eq!(
            info.clusters,
            [Cluster {
                cpus: vec![0, 1, 2],
                max_khz: None
            }]
        );
        assert_eq!(info.ram_bytes, None);
        let t: BTreeMap<_, _> = info
            .telemetry
            .iter()
            .map(|s| (s.name.as_str(), s))
            .collect();
        assert_eq!(t["thermal_zones"].status, "unreadable");
        assert_eq!(t["cpufreq"].status, "absent");
        assert_eq!(t["power_supply"].status, "absent");
    }
}
