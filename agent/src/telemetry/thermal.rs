//! Linux thermal zones (`/sys/class/thermal/thermal_zone*/{type,temp,mode}`), found by `type`.
//!
//! Skipped: zones whose `mode` is `disabled`, zones reading -256 °C or below (Jetson's
//! power-gated CV/GPU sensors read -256000), and `PMIC-Die` (reads a fixed 100 °C on
//! Xavier/TX2; jtop skips it too).

use super::sysfs::{self, Node};
use super::{Found, Group, Kind, Rate, Reading};
use crate::fsroot::FsRoot;

const DIR: &str = "/sys/class/thermal";

/// Converts a raw zone value to °C. The Linux convention is m°C; some Android vendors report
/// °C or 0.1 °C, so: |v| > 1000 is m°C, |v| > 200 is 0.1 °C, else °C (device-telemetry §1.6).
pub fn to_celsius(raw: i64) -> f64 {
    let a = raw.unsigned_abs();
    if a > 1000 {
        raw as f64 / 1000.0
    } else if a > 200 {
        raw as f64 / 10.0
    } else {
        raw as f64
    }
}

/// Adds one series per live zone; returns the series names (for [`primary`]).
pub fn discover(root: &FsRoot, found: &mut Found) -> Vec<String> {
    let zones = match sysfs::entries(root, DIR, "thermal_zone") {
        Ok(z) if z.is_empty() => {
            found.source("thermal_zones", Reading::Absent);
            return Vec::new();
        }
        Ok(z) => z,
        Err(e) => {
            found.source("thermal_zones", Reading::Unreadable(e));
            return Vec::new();
        }
    };
    let mut names: Vec<String> = Vec::new();
    let mut skipped = Vec::new();
    let mut unreadable = Vec::new();
    for z in &zones {
        let base = format!("{DIR}/{z}");
        let ty = sysfs::read_str(root, &format!("{base}/type"))
            .ok()
            .unwrap_or_else(|| z.clone());
        if sysfs::read_str(root, &format!("{base}/mode"))
            .ok()
            .as_deref()
            == Some("disabled")
        {
            skipped.push(format!("{ty} (disabled)"));
            continue;
        }
        if ty.eq_ignore_ascii_case("PMIC-Die") {
            skipped.push(format!("{ty} (fixed value)"));
            continue;
        }
        let temp = format!("{base}/temp");
        match sysfs::read_i64(root, &temp) {
            Reading::Ok(v) if v <= -256_000 || v == -256 => {
                skipped.push(format!("{ty} (switched off, {v})"));
                continue;
            }
            Reading::Ok(_) => {}
            Reading::Unreadable(r) => {
                unreadable.push(r);
                continue;
            }
            Reading::Absent => {
                unreadable.push(format!("{temp}: missing"));
                continue;
            }
        }
        let mut name = format!("thermal:{ty}");
        let mut n = 2;
        while names.contains(&name) {
            name = format!("thermal:{ty}#{n}");
            n += 1;
        }
        let mut node = Node::new(root, &temp);
        found.groups.push(Group::single(
            Rate::Slow,
            name.clone(),
            Kind::TempC,
            move || {
                node.read_i64().and_then(|v| {
                    if v <= -256_000 || v == -256 {
                        Reading::Unreadable(format!("switched off ({v})"))
                    } else {
                        Reading::Ok(to_celsius(v))
                    }
                })
            },
        ));
        names.push(name);
    }
    let mut detail = format!("{} zones, {} readable", zones.len(), names.len());
    if !skipped.is_empty() {
        detail += &format!("; skipped {}", skipped.join(", "));
    }
    if let Some(first) = unreadable.first() {
        detail += &format!("; {} unreadable ({first})", unreadable.len());
    }
    found.source(
        "thermal_zones",
        if names.is_empty() {
            Reading::Unreadable(detail)
        } else {
            Reading::Ok(detail)
        },
    );
    names
}

/// Frequency-limiting cooling devices (`/sys/class/thermal/cooling_device*/{type,cur_state}`,
/// types such as `Processor`, `thermal-cpufreq-0`, `cpufreq-cpu0`, `gpufreq`, `*devfreq*`): one
/// series counting how many have `cur_state > 0`, a throttling indicator (device-telemetry
/// §1.6, §4). Fans and other non-throttling devices are left out.
pub fn discover_cooling(root: &FsRoot, found: &mut Found) {
    let mut nodes = Vec::new();
    let mut types = Vec::new();
    for c in sysfs::entries(root, DIR, "cooling_device").unwrap_or_default() {
        let base = format!("{DIR}/{c}");
        let Some(ty) = sysfs::read_str(root, &format!("{base}/type")).ok() else {
            continue;
        };
        let t = ty.to_ascii_lowercase();
        let limits_freq = t == "processor"
            || t.contains("cpufreq")
            || t.contains("devfreq")
            || t.contains("gpufreq")
            || t.contains("gpu");
        if !limits_freq || t.contains("fan") || t.contains("pwm") {
            continue;
        }
        let state = format!("{base}/cur_state");
        if matches!(sysfs::read_i64(root, &state), Reading::Ok(_)) {
            nodes.push(Node::new(root, &state));
            types.push(ty);
        }
    }
    if nodes.is_empty() {
        return found.source("cooling_devices", Reading::Absent);
    }
    found.source("cooling_devices", Reading::Ok(types.join(", ")));
    found.groups.push(Group::single(
        Rate::Slow,
        "thermal:throttling_devices".into(),
        Kind::ThrottleCount,
        move || {
            let mut active = 0.0;
            for n in &mut nodes {
                match n.read_i64() {
                    Reading::Ok(v) if v > 0 => active += 1.0,
                    Reading::Ok(_) => {}
                    Reading::Unreadable(r) => return Reading::Unreadable(r),
                    Reading::Absent => return Reading::Absent,
                }
            }
            Reading::Ok(active)
        },
    ));
}

/// The zone pass temperatures are reported from: the junction/CPU sensor each family's
/// throttling decisions use (Jetson `tj-therm`, Pi `cpu-thermal`, Intel `x86_pkg_temp`), else
/// the first CPU zone, else the first zone. JetPack 6 renamed the Orin zones `tj-thermal`,
/// `cpu-thermal`, ...; without its own entry the junction lost to `cpu-thermal`, the Pi's name.
pub fn primary(names: &[String]) -> Option<String> {
    const PREFERRED: [&str; 9] = [
        "tj-therm",
        "tj-thermal",
        "cpu-thermal",
        "cpu_thermal",
        "x86_pkg_temp",
        "cpu-therm",
        "soc_thermal",
        "acpitz",
        "skin-therm",
    ];
    let ty = |n: &String| n.trim_start_matches("thermal:").to_ascii_lowercase();
    PREFERRED
        .iter()
        .find_map(|p| names.iter().find(|n| ty(n) == *p))
        .or_else(|| names.iter().find(|n| ty(n).contains("cpu")))
        .or_else(|| names.first())
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frequency_limiting_cooling_devices_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let put = |rel: &str, v: &str| {
            let p = dir.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, v).unwrap();
        };
        put("sys/class/thermal/cooling_device0/type", "Processor\n");
        put("sys/class/thermal/cooling_device0/cur_state", "0\n");
        put("sys/class/thermal/cooling_device1/type", "pwm-fan\n");
        put("sys/class/thermal/cooling_device1/cur_state", "3\n");
        put(
            "sys/class/thermal/cooling_device2/type",
            "thermal-cpufreq-0\n",
        );
        put("sys/class/thermal/cooling_device2/cur_state", "2\n");
        let mut found = Found::new();
        discover_cooling(&FsRoot::new(dir.path()), &mut found);
        assert_eq!(
            found.sources[0].status,
            Reading::Ok("Processor, thermal-cpufreq-0".into())
        );
        assert_eq!(found.groups[0].read(), vec![Reading::Ok(1.0)]);
    }

    #[test]
    fn units_heuristic() {
        assert_eq!(to_celsius(45_500), 45.5);
        assert_eq!(to_celsius(455), 45.5);
        assert_eq!(to_celsius(45), 45.0);
        assert_eq!(to_celsius(-5_000), -5.0);
    }

    #[test]
    fn primary_prefers_the_junction_sensor() {
        let n = |v: &[&str]| v.iter().map(|s| format!("thermal:{s}")).collect::<Vec<_>>();
        assert_eq!(
            primary(&n(&["CPU-therm", "tj-therm"])).as_deref(),
            Some("thermal:tj-therm")
        );
        assert_eq!(
            primary(&n(&["xo-therm", "cpu-1-0-usr"])).as_deref(),
            Some("thermal:cpu-1-0-usr")
        );
        assert_eq!(primary(&[]), None);
        // An Orin on JetPack 6 (zone types as listed in JoeyGihoon/seame_brain `Brain/test.py`).
        assert_eq!(
            primary(&n(&[
                "cpu-thermal",
                "gpu-thermal",
                "soc0-thermal",
                "soc1-thermal",
                "soc2-thermal",
                "tj-thermal"
            ]))
            .as_deref(),
            Some("thermal:tj-thermal")
        );
    }
}
