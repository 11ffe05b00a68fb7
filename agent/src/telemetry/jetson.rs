//! NVIDIA Jetson: INA3221 power monitors in both layouts, the per-board total, GPU devfreq,
//! nvpmodel mode and identity (device-telemetry §2).
//!
//! - L4T >= 34, mainline hwmon `ina3221`: `/sys/bus/i2c/drivers/ina3221/<bus>-<addr>/hwmon/hwmon*/`
//!   with `in[1-3]_label` (rail name, `NC` = not connected), `in[1-3]_input` (mV) and
//!   `curr[1-3]_input` (mA); P = mV * mA / 1000 mW.
//! - L4T 32, NVIDIA iio `ina3221x`: `/sys/bus/i2c/drivers/ina3221x/<bus>-<addr>/iio:device*/`
//!   with `rail_name_[0-2]` and `in_power[0-2]_input` (mW).
//!
//! Total (energymon `JetsonPowerRails.md`): `VDD_IN` alone where it exists (Orin Nano/NX,
//! Xavier NX: the other rails are inside it); `POM_5V_IN` on the Nano; on AGX Orin
//! `VDD_GPU_SOC + VDD_CPU_CV + VIN_SYS_5V0`, leaving out `VDDQ_VDD2_1V8AO`, which is fed from
//! `VIN_SYS_5V0`; otherwise (AGX Xavier) every rail. These rails cover the module only, not
//! the carrier board.

use super::cmd::Commands;
use super::sysfs::{self, Node};
use super::{priority, Found, Group, Identity, Kind, PowerTotal, Rate, Reading, Series};
use crate::fsroot::FsRoot;

pub fn is_jetson(root: &FsRoot) -> bool {
    root.exists("/etc/nv_tegra_release")
        || compatible(root)
            .iter()
            .any(|c| c.starts_with("nvidia,tegra"))
}

fn compatible(root: &FsRoot) -> Vec<String> {
    std::fs::read(root.path("/proc/device-tree/compatible"))
        .map(|b| {
            String::from_utf8_lossy(&b)
                .split('\0')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Module from the device-tree part number (jtop's table).
pub fn board(compat: &[String]) -> Option<&'static str> {
    let has = |p: &str| compat.iter().any(|c| c.contains(p));
    Some(if has("p3767") {
        "Orin Nano/NX (p3767)"
    } else if has("p3701") {
        "AGX Orin (p3701)"
    } else if has("p3668") {
        "Xavier NX (p3668)"
    } else if has("p2888") {
        "AGX Xavier (p2888)"
    } else if has("p3448") {
        "Nano (p3448)"
    } else {
        return None;
    })
}

/// `# R36 (release), REVISION: 4.0, ...` -> `R36.4.0`.
pub fn l4t_release(text: &str) -> Option<String> {
    let line = text.lines().next()?;
    let major = line.trim_start_matches('#').trim().split(' ').next()?;
    let rev = line.split("REVISION:").nth(1)?.split(',').next()?.trim();
    Some(format!("{major}.{rev}"))
}

pub fn identity(root: &FsRoot) -> Identity {
    let compat = compatible(root);
    let mut details = Vec::new();
    if let Some(b) = board(&compat) {
        details.push(("module".to_string(), b.to_string()));
    }
    if let Some(r) = root
        .read("/etc/nv_tegra_release")
        .ok()
        .as_deref()
        .and_then(l4t_release)
    {
        details.push(("l4t".to_string(), r));
    }
    let soc = compat
        .iter()
        .find(|c| c.starts_with("nvidia,tegra"))
        .map(|c| c.trim_start_matches("nvidia,").to_string());
    Identity {
        model: super::dt_model(root),
        manufacturer: Some("NVIDIA".into()),
        soc,
        os_version: super::os_release(root),
        details,
    }
}

/// A rail and how to read its power in watts.
struct Rail {
    label: String,
    read: Box<dyn FnMut() -> Reading<f64> + Send>,
}

fn hwmon_rails(root: &FsRoot, dir: &str, out: &mut Vec<Rail>) {
    for k in 1..=3 {
        let label = match sysfs::read_str(root, &format!("{dir}/in{k}_label")) {
            Reading::Ok(l) => l,
            _ => continue,
        };
        if label == "NC" || label.starts_with("sum of") {
            continue;
        }
        let mut volt = Node::new(root, &format!("{dir}/in{k}_input"));
        let mut curr = Node::new(root, &format!("{dir}/curr{k}_input"));
        out.push(Rail {
            label,
            read: Box::new(move || {
                volt.read_i64()
                    .and_then(|mv| curr.read_i64().map(|ma| mv as f64 * ma as f64 / 1e6))
            }),
        });
    }
}

fn iio_rails(root: &FsRoot, dir: &str, out: &mut Vec<Rail>) {
    for k in 0..=2 {
        let label = match sysfs::read_str(root, &format!("{dir}/rail_name_{k}")) {
            Reading::Ok(l) => l,
            _ => continue,
        };
        if label == "NC" {
            continue;
        }
        let mut power = Node::new(root, &format!("{dir}/in_power{k}_input"));
        out.push(Rail {
            label,
            read: Box::new(move || power.read_i64().map(|mw| mw as f64 / 1e3)),
        });
    }
}

/// The total rule for a set of rail labels: (members, rule).
pub fn total_rule(labels: &[String]) -> (Vec<String>, String) {
    let has = |l: &str| labels.iter().any(|x| x == l);
    if has("VDD_IN") {
        return (
            vec!["VDD_IN".into()],
            "VDD_IN (module input; the other rails are inside it)".into(),
        );
    }
    if has("POM_5V_IN") {
        return (
            vec!["POM_5V_IN".into()],
            "POM_5V_IN (module input; GPU and CPU rails are inside it)".into(),
        );
    }
    if has("VIN_SYS_5V0") && has("VDD_GPU_SOC") {
        let members: Vec<String> = ["VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0"]
            .iter()
            .filter(|l| has(l))
            .map(|l| l.to_string())
            .collect();
        return (
            members.clone(),
            format!(
                "{} (AGX Orin: VDDQ_VDD2_1V8AO is fed from VIN_SYS_5V0 and not added again)",
                members.join(" + ")
            ),
        );
    }
    (
        labels.to_vec(),
        format!("{} (no parent rail: every rail)", labels.join(" + ")),
    )
}

pub fn discover(root: &FsRoot, cmds: &Commands, identity: &mut Identity, found: &mut Found) {
    // Rails per chip.
    let mut chips: Vec<Vec<Rail>> = Vec::new();
    let hw = "/sys/bus/i2c/drivers/ina3221";
    for dev in sysfs::entries(root, hw, "").unwrap_or_default() {
        for h in sysfs::entries(root, &format!("{hw}/{dev}/hwmon"), "hwmon").unwrap_or_default() {
            let mut rails = Vec::new();
            hwmon_rails(root, &format!("{hw}/{dev}/hwmon/{h}"), &mut rails);
            chips.push(rails);
        }
    }
    if chips.is_empty() {
        // Kernels without the driver directory: the same chips by hwmon name.
        for h in sysfs::entries(root, "/sys/class/hwmon", "hwmon").unwrap_or_default() {
            let base = format!("/sys/class/hwmon/{h}");
            if sysfs::read_str(root, &format!("{base}/name"))
                .ok()
                .as_deref()
                == Some("ina3221")
            {
                let mut rails = Vec::new();
                hwmon_rails(root, &base, &mut rails);
                chips.push(rails);
            }
        }
    }
    let iio = "/sys/bus/i2c/drivers/ina3221x";
    for dev in sysfs::entries(root, iio, "").unwrap_or_default() {
        for d in sysfs::entries(root, &format!("{iio}/{dev}"), "iio:device").unwrap_or_default() {
            let mut rails = Vec::new();
            iio_rails(root, &format!("{iio}/{dev}/{d}"), &mut rails);
            chips.push(rails);
        }
    }
    let mut labels = Vec::new();
    let mut unreadable = Vec::new();
    for rails in chips {
        let mut kept = Vec::new();
        for mut r in rails {
            match (r.read)() {
                Reading::Ok(_) => kept.push(r),
                Reading::Unreadable(why) => unreadable.push(format!("{}: {why}", r.label)),
                Reading::Absent => {}
            }
        }
        if kept.is_empty() {
            continue;
        }
        let series = kept
            .iter()
            .map(|r| Series {
                name: format!("ina3221:{}", r.label),
                kind: Kind::PowerW,
            })
            .collect();
        labels.extend(kept.iter().map(|r| r.label.clone()));
        found.groups.push(Group::new(Rate::Power, series, move || {
            kept.iter_mut().map(|r| (r.read)()).collect()
        }));
    }
    if labels.is_empty() {
        found.source(
            "jetson_ina3221",
            match unreadable.first() {
                Some(r) => Reading::Unreadable(r.clone()),
                None => Reading::Absent,
            },
        );
    } else {
        found.source("jetson_ina3221", Reading::Ok(labels.join(", ")));
        let (members, rule) = total_rule(&labels);
        found.totals.push((
            priority::BOARD_RAILS,
            PowerTotal {
                members: members.iter().map(|m| format!("ina3221:{m}")).collect(),
                kind: Kind::PowerW,
                rule: format!("{rule}; module only, carrier board excluded"),
                lower_bound: false,
                battery_side: false,
            },
        ));
    }
    gpu_devfreq(root, found);
    match cmds.run(&["nvpmodel", "-q"]) {
        Reading::Ok(text) => match parse_nvpmodel(&text) {
            Some(mode) => {
                identity.details.push(("nvpmodel".into(), mode.clone()));
                found.source("nvpmodel", Reading::Ok(mode));
            }
            None => found.source(
                "nvpmodel",
                Reading::Unreadable("nvpmodel -q: no `NV Power Mode:` line".into()),
            ),
        },
        other => found.source("nvpmodel", other),
    }
}

/// `NV Power Mode: 15W\n0` -> `15W (id 0)`.
pub fn parse_nvpmodel(text: &str) -> Option<String> {
    let mut lines = text.lines().map(str::trim);
    let name = lines
        .find_map(|l| l.strip_prefix("NV Power Mode:"))?
        .trim()
        .to_string();
    Some(match lines.next().filter(|l| l.parse::<u32>().is_ok()) {
        Some(id) => format!("{name} (id {id})"),
        None => name,
    })
}

fn gpu_devfreq(root: &FsRoot, found: &mut Found) {
    let dir = "/sys/class/devfreq";
    let gpu = sysfs::entries(root, dir, "")
        .unwrap_or_default()
        .into_iter()
        .find(|d| {
            let of = sysfs::read_str(root, &format!("{dir}/{d}/device/of_node/name"))
                .ok()
                .unwrap_or_default();
            ["gpu", "ga10b", "gv11b", "gp10b", "gm20b"]
                .iter()
                .any(|k| d.contains(k) || of.contains(k))
        });
    let Some(d) = gpu else {
        return found.source("gpu_devfreq", Reading::Absent);
    };
    let path = format!("{dir}/{d}/cur_freq");
    match sysfs::read_i64(root, &path) {
        Reading::Ok(hz) => {
            found.source(
                "gpu_devfreq",
                Reading::Ok(format!("{d}: {} MHz", hz / 1_000_000)),
            );
            let mut node = Node::new(root, &path);
            found.groups.push(Group::single(
                Rate::Slow,
                "gpu:freq".into(),
                Kind::FreqMhz,
                move || node.read_i64().map(|hz| hz as f64 / 1e6),
            ));
        }
        other => found.source("gpu_devfreq", other.map(|v| v.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn rail_rules() {
        assert_eq!(
            total_rule(&s(&["VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"])).0,
            s(&["VDD_IN"])
        );
        assert_eq!(
            total_rule(&s(&[
                "VDD_GPU_SOC",
                "VDD_CPU_CV",
                "VIN_SYS_5V0",
                "VDDQ_VDD2_1V8AO"
            ]))
            .0,
            s(&["VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0"])
        );
        assert_eq!(
            total_rule(&s(&["POM_5V_IN", "POM_5V_GPU", "POM_5V_CPU"])).0,
            s(&["POM_5V_IN"])
        );
        assert_eq!(
            total_rule(&s(&["GPU", "CPU", "SOC"])).0,
            s(&["GPU", "CPU", "SOC"])
        );
    }

    #[test]
    fn release_and_nvpmodel() {
        assert_eq!(
            l4t_release("# R36 (release), REVISION: 4.0, GCID: 1, BOARD: generic").as_deref(),
            Some("R36.4.0")
        );
        assert_eq!(
            parse_nvpmodel("NV Power Mode: 15W\n0\n").as_deref(),
            Some("15W (id 0)")
        );
        assert_eq!(parse_nvpmodel("garbage"), None);
    }
}
