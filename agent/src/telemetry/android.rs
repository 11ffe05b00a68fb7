//! Android: identity from `getprop`, `dumpsys thermalservice` (status 0-6 and the HAL's
//! temperatures) and `dumpsys battery` (a cross-check of the sysfs battery). The sysfs battery
//! itself is [`super::battery`]; thermal zones and cpufreq are the Linux sources.

use super::cmd::Commands;
use super::{priority, Found, Group, Identity, Kind, PowerTotal, Rate, Reading, Series};
use crate::fsroot::FsRoot;

/// All properties: `getprop` (lines `[key]: [value]`) on the live or captured device, else
/// `/system/build.prop` (`key=value`). `None` when neither exists (not Android).
pub fn getprop(root: &FsRoot, cmds: &Commands) -> Option<Vec<(String, String)>> {
    if let Reading::Ok(text) = cmds.run(&["getprop"]) {
        let props = parse_getprop(&text);
        if !props.is_empty() {
            return Some(props);
        }
    }
    let text = root.read("/system/build.prop").ok()?;
    Some(
        text.lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .filter_map(|l| {
                let (k, v) = l.split_once('=')?;
                Some((k.trim().to_string(), v.trim().to_string()))
            })
            .collect(),
    )
}

pub fn parse_getprop(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.trim().split_once("]: [")?;
            let k = k.strip_prefix('[')?;
            let v = v.strip_suffix(']')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect()
}

pub fn identity(_root: &FsRoot, props: Option<&[(String, String)]>) -> Identity {
    let props = props.unwrap_or(&[]);
    let get = |k: &str| {
        props
            .iter()
            .find(|(key, v)| key == k && !v.is_empty())
            .map(|(_, v)| v.clone())
    };
    let soc = match (get("ro.soc.manufacturer"), get("ro.soc.model")) {
        (Some(m), Some(s)) => Some(format!("{m} {s}")),
        (None, Some(s)) => Some(s),
        _ => get("ro.board.platform").or_else(|| get("ro.hardware")),
    };
    let os_version = get("ro.build.version.release").map(|r| match get("ro.build.version.sdk") {
        Some(sdk) => format!("Android {r} (SDK {sdk})"),
        None => format!("Android {r}"),
    });
    let mut details = Vec::new();
    for (key, prop) in [
        ("device", "ro.product.device"),
        ("platform", "ro.board.platform"),
        ("fingerprint", "ro.build.fingerprint"),
        ("abi", "ro.product.cpu.abi"),
        ("build_type", "ro.build.type"),
    ] {
        if let Some(v) = get(prop) {
            details.push((key.to_string(), v));
        }
    }
    Identity {
        model: get("ro.product.model"),
        manufacturer: get("ro.product.manufacturer"),
        soc,
        os_version,
        details,
    }
}

/// What `dumpsys thermalservice` says.
#[derive(Clone, Debug, PartialEq)]
pub struct ThermalService {
    pub status: Option<u8>,
    /// HAL temperatures (`Current temperatures from HAL`, else `Cached temperatures`):
    /// (name, type, °C, status).
    pub temps: Vec<(String, i32, f64, u8)>,
}

pub fn parse_thermalservice(text: &str) -> ThermalService {
    let mut status = None;
    let mut cached = Vec::new();
    let mut hal = Vec::new();
    let mut section = "";
    for line in text.lines() {
        let t = line.trim();
        if let Some(v) = t.strip_prefix("Thermal Status:") {
            status = v.trim().parse().ok();
        } else if t.starts_with("Cached temperatures") {
            section = "cached";
        } else if t.starts_with("Current temperatures from HAL") {
            section = "hal";
        } else if t.starts_with("Current cooling devices") || t.starts_with("HAL Ready") {
            section = "";
        } else if let Some(temp) = parse_temperature(t) {
            match section {
                "cached" => cached.push(temp),
                "hal" => hal.push(temp),
                _ => {}
            }
        }
    }
    let mut temps = if hal.is_empty() { cached } else { hal };
    // The HAL also reports battery-current-limiter readings as `Temperature`s: types 6
    // (BCL_VOLTAGE, mV), 7 (BCL_CURRENT, mA) and 8 (BCL_PERCENTAGE). A captured Tensor Pixel
    // dump lists `ocp_cpu2` 11900.0 (type 7) and `vdroop1` 1050.0 (type 6): not °C.
    temps.retain(|t| !(6..=8).contains(&t.1));
    ThermalService { status, temps }
}

/// `Temperature{mValue=46.1, mType=0, mName=cpu0-silver-usr, mStatus=0}`
fn parse_temperature(t: &str) -> Option<(String, i32, f64, u8)> {
    let body = t.strip_prefix("Temperature{")?.strip_suffix('}')?;
    let mut value = None;
    let mut ty = None;
    let mut name = None;
    let mut status = None;
    for part in body.split(", ") {
        let (k, v) = part.split_once('=')?;
        match k {
            // A sensor without a reading says `NaN`; that is no temperature.
            "mValue" => value = v.parse::<f64>().ok().filter(|x| x.is_finite()),
            "mType" => ty = v.parse().ok(),
            "mName" => name = Some(v.to_string()),
            "mStatus" => status = v.parse().ok(),
            _ => {}
        }
    }
    Some((name?, ty?, value?, status?))
}

/// `dumpsys battery` as key/value pairs (`  level: 82`).
pub fn parse_dumpsys_battery(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            let k = k.trim();
            (!k.is_empty() && k.chars().all(|c| c.is_ascii_alphabetic() || c == ' '))
                .then(|| (k.to_string(), v.trim().to_string()))
        })
        .collect()
}

pub fn discover(cmds: &Commands, found: &mut Found) {
    let argv = ["dumpsys", "thermalservice"];
    match cmds.run(&argv) {
        Reading::Ok(text) => {
            let ts = parse_thermalservice(&text);
            match ts.status {
                None => found.source(
                    "android_thermalservice",
                    Reading::Unreadable("dumpsys thermalservice: no `Thermal Status:` line".into()),
                ),
                Some(st) => {
                    found.source(
                        "android_thermalservice",
                        Reading::Ok(format!("status {st}, {} HAL temperatures", ts.temps.len())),
                    );
                    let mut series = vec![Series {
                        name: "android:thermal_status".into(),
                        kind: Kind::ThermalStatus,
                    }];
                    let names: Vec<String> = ts.temps.iter().map(|t| t.0.clone()).collect();
                    series.extend(names.iter().map(|n| Series {
                        name: format!("android_hal:{n}"),
                        kind: Kind::TempC,
                    }));
                    let cmds = cmds.clone();
                    found
                        .groups
                        .push(Group::new(Rate::Command, series, move || {
                            let text = match cmds.run(&argv) {
                                Reading::Ok(t) => t,
                                Reading::Unreadable(r) => {
                                    return vec![Reading::Unreadable(r); names.len() + 1]
                                }
                                Reading::Absent => return vec![Reading::Absent; names.len() + 1],
                            };
                            let ts = parse_thermalservice(&text);
                            let mut out = vec![match ts.status {
                                Some(s) => Reading::Ok(s as f64),
                                None => Reading::Unreadable("no Thermal Status line".into()),
                            }];
                            out.extend(names.iter().map(|n| {
                                match ts.temps.iter().find(|t| &t.0 == n) {
                                    Some(t) => Reading::Ok(t.2),
                                    None => Reading::Unreadable(format!("{n} not in the HAL list")),
                                }
                            }));
                            out
                        }));
                }
            }
        }
        other => found.source("android_thermalservice", other),
    }
    match cmds.run(&["dumpsys", "battery"]) {
        Reading::Ok(text) => {
            let kv = parse_dumpsys_battery(&text);
            let get = |k: &str| kv.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
            let detail = format!(
                "level {}, status {}, voltage {} mV, temperature {} (0.1 °C){}",
                get("level").unwrap_or("?"),
                get("status").unwrap_or("?"),
                get("voltage").unwrap_or("?"),
                get("temperature").unwrap_or("?"),
                if text.contains("UPDATES STOPPED") {
                    "; WARNING: battery state is faked (UPDATES STOPPED), run `cmd battery reset`"
                } else {
                    ""
                }
            );
            found.source("android_dumpsys_battery", Reading::Ok(detail));
            let sysfs_ok = found
                .sources
                .iter()
                .any(|s| s.name == "battery" && matches!(s.status, Reading::Ok(_)));
            if !sysfs_ok {
                dumpsys_battery_fallback(cmds, &kv, found);
            }
        }
        other => found.source("android_dumpsys_battery", other),
    }
}

/// Where the sysfs battery cannot be read (vendors relabel it), `dumpsys battery` gives level,
/// temperature and status, and on Samsung a `current now` (mA) that with `voltage` (mV) makes
/// battery power: valid only while status is 3 (discharging) or 4 (not charging), like the
/// sysfs battery. Sampled at the command rate (each read spawns dumpsys).
fn dumpsys_battery_fallback(cmds: &Commands, first: &[(String, String)], found: &mut Found) {
    let has_current = first.iter().any(|(k, _)| k == "current now");
    let mut series = vec![
        Series {
            name: "android_battery:status".into(),
            kind: Kind::BatteryStatus,
        },
        Series {
            name: "android_battery:level".into(),
            kind: Kind::CapacityPct,
        },
        Series {
            name: "android_battery:temp".into(),
            kind: Kind::TempC,
        },
    ];
    if has_current {
        series.push(Series {
            name: "android_battery:power".into(),
            kind: Kind::PowerW,
        });
    }
    let n = series.len();
    let cmds = cmds.clone();
    found.groups.push(Group::new(Rate::Command, series, move || {
        let text = match cmds.run(&["dumpsys", "battery"]) {
            Reading::Ok(t) => t,
            Reading::Unreadable(r) => return vec![Reading::Unreadable(r); n],
            Reading::Absent => return vec![Reading::Absent; n],
        };
        let kv = parse_dumpsys_battery(&text);
        let num = |k: &str| -> Reading<f64> {
            match kv.iter().find(|(key, _)| key == k).map(|(_, v)| v.parse::<f64>()) {
                Some(Ok(v)) => Reading::Ok(v),
                Some(Err(_)) => Reading::Unreadable(format!("dumpsys battery: bad {k}")),
                None => Reading::Absent,
            }
        };
        let status = num("status");
        let mut out = vec![status.clone(), num("level"), num("temperature").map(|t| t / 10.0)];
        if has_current {
            out.push(match status {
                Reading::Ok(s) if s == 3.0 || s == 4.0 => num("current now")
                    .and_then(|ma| num("voltage").map(|mv| ma.abs() * mv / 1e6)),
                Reading::Ok(s) => Reading::Unreadable(format!(
                    "battery status {s}: battery-side power is not the device's power while a charger is connected"
                )),
                other => other,
            });
        }
        out
    }));
    let sysfs = match found.sources.iter().position(|s| s.name == "battery") {
        Some(i) => match found.sources.remove(i).status {
            Reading::Unreadable(r) => format!("sysfs battery unreadable: {r}"),
            _ => "no sysfs battery".to_string(),
        },
        None => "no sysfs battery".to_string(),
    };
    found.source(
        "battery",
        Reading::Ok(format!(
            "from dumpsys battery ({sysfs}){}",
            if has_current {
                "; power = |current now| mA x voltage mV"
            } else {
                "; no current: power absent"
            }
        )),
    );
    if has_current {
        found.totals.push((
            priority::BATTERY,
            PowerTotal {
                members: vec!["android_battery:power".into()],
                kind: Kind::PowerW,
                rule: "battery discharge power (dumpsys battery)".into(),
                lower_bound: false,
                battery_side: true,
            },
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thermalservice_prefers_hal_temperatures() {
        let text = "IsStatusOverride: false\nThermal Status: 2\nCached temperatures:\n\tTemperature{mValue=46.100002, mType=0, mName=cpu0-silver-usr, mStatus=0}\nHAL Ready: true\nCurrent temperatures from HAL:\n\tTemperature{mValue=31.4, mType=3, mName=skin, mStatus=0}\nCurrent cooling devices from HAL:\n\tCoolingDevice{mValue=0, mType=1, mName=fan}\n";
        let ts = parse_thermalservice(text);
        assert_eq!(ts.status, Some(2));
        assert_eq!(ts.temps, vec![("skin".to_string(), 3, 31.4, 0)]);
    }

    /// Seen while adding the `telemetry_text` fuzz target: `NaN` and an overflowing exponent
    /// parse as floats, and would have become temperatures.
    #[test]
    fn thermalservice_values_that_are_not_finite_are_no_temperatures() {
        let text = "Current temperatures from HAL:\n\tTemperature{mValue=NaN, mType=0, mName=cpu0, mStatus=0}\n\tTemperature{mValue=4e999, mType=3, mName=skin, mStatus=0}\n\tTemperature{mValue=30.5, mType=2, mName=battery, mStatus=0}\n";
        assert_eq!(
            parse_thermalservice(text).temps,
            vec![("battery".to_string(), 2, 30.5, 0)]
        );
    }

    #[test]
    fn thermalservice_skips_bcl_readings() {
        // Lines of a captured Tensor Pixel dump (testbed/devices/pixel/SOURCE.md).
        let text = "Thermal Status: 0\nCurrent temperatures from HAL:\n\tTemperature{mValue=25.000002, mType=9, mName=TPU, mStatus=0}\n\tTemperature{mValue=1300.0, mType=6, mName=smpl_gm, mStatus=0}\n\tTemperature{mValue=0.0, mType=8, mName=soc, mStatus=0}\n\tTemperature{mValue=-0.117000006, mType=-1, mName=USB2-MINUS-USB, mStatus=0}\n\tTemperature{mValue=11900.0, mType=7, mName=ocp_cpu2, mStatus=0}\nCurrent cooling devices from HAL:";
        let ts = parse_thermalservice(text);
        assert_eq!(ts.status, Some(0));
        assert_eq!(
            ts.temps,
            vec![
                ("TPU".to_string(), 9, 25.000002, 0),
                ("USB2-MINUS-USB".to_string(), -1, -0.117000006, 0)
            ]
        );
    }

    #[test]
    fn getprop_lines() {
        let p = parse_getprop("[ro.product.model]: [Pixel 7]\n[ro.x]: []\ngarbage\n");
        assert_eq!(
            p,
            vec![
                ("ro.product.model".to_string(), "Pixel 7".to_string()),
                ("ro.x".to_string(), String::new())
            ]
        );
    }
}
