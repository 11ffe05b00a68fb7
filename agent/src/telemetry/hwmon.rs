//! hwmon chips (`/sys/class/hwmon/hwmon*/`), found by `name`: temperatures (`temp*_input`,
//! m°C), power (`power*_input` / `power*_average`, µW) and energy (`energy*_input`, µJ).
//!
//! `ina3221` chips are left to [`super::jetson`], which knows the rail rules. An INA2xx chip
//! (`ina219`, `ina226`, `ina260`, ... with the kernel `ina2xx` driver) on a board's supply is a
//! total-power candidate: that is how a Pi 4 gets power at all (device-telemetry §3).

use super::sysfs::{self, Node};
use super::{priority, Found, Group, Kind, PowerTotal, Rate, Reading};
use crate::fsroot::FsRoot;

const DIR: &str = "/sys/class/hwmon";

pub fn discover(root: &FsRoot, found: &mut Found) {
    let chips = match sysfs::entries(root, DIR, "hwmon") {
        Ok(c) if c.is_empty() => return found.source("hwmon", Reading::Absent),
        Ok(c) => c,
        Err(e) => return found.source("hwmon", Reading::Unreadable(e)),
    };
    let mut described = Vec::new();
    let mut ina2xx_power: Vec<String> = Vec::new();
    for chip in &chips {
        let base = format!("{DIR}/{chip}");
        let name = sysfs::read_str(root, &format!("{base}/name"))
            .ok()
            .unwrap_or_else(|| chip.clone());
        if name == "ina3221" {
            continue;
        }
        let files = root.list(&base).unwrap_or_default();
        let mut count = 0;
        for f in &files {
            let Some((stem, attr)) = f.split_once('_') else {
                continue;
            };
            let kind = if stem.starts_with("temp") && attr == "input" {
                Kind::TempC
            } else if stem.starts_with("power") && (attr == "input" || attr == "average") {
                // Use `_average` only when the chip has no `_input` for that channel.
                if attr == "average" && files.contains(&format!("{stem}_input")) {
                    continue;
                }
                Kind::PowerW
            } else if stem.starts_with("energy") && attr == "input" {
                Kind::EnergyJ
            } else {
                continue;
            };
            let path = format!("{base}/{f}");
            if !matches!(sysfs::read_i64(root, &path), Reading::Ok(_)) {
                continue;
            }
            let label = sysfs::read_str(root, &format!("{base}/{stem}_label"))
                .ok()
                .unwrap_or_else(|| stem.to_string());
            let series = format!("hwmon:{name}:{label}");
            let mut node = Node::new(root, &path);
            let group = match kind {
                Kind::TempC => Group::single(Rate::Slow, series.clone(), kind, move || {
                    node.read_i64().map(|v| v as f64 / 1000.0)
                }),
                Kind::PowerW => Group::single(Rate::Power, series.clone(), kind, move || {
                    node.read_i64().map(|v| v as f64 / 1e6)
                }),
                _ => {
                    // A 64-bit µJ counter: no wrap within a run; reported since discovery.
                    let mut first: Option<i64> = None;
                    Group::single(Rate::Power, series.clone(), kind, move || {
                        node.read_i64().map(|v| {
                            let f = *first.get_or_insert(v);
                            (v - f) as f64 / 1e6
                        })
                    })
                }
            };
            found.groups.push(group);
            if kind == Kind::PowerW && name.starts_with("ina2") {
                ina2xx_power.push(series);
            }
            count += 1;
        }
        if count > 0 {
            described.push(format!("{name} ({count} inputs)"));
        }
    }
    if described.is_empty() {
        found.source(
            "hwmon",
            Reading::Unreadable(format!("{} chips, no readable input", chips.len())),
        );
    } else {
        found.source("hwmon", Reading::Ok(described.join(", ")));
    }
    if !ina2xx_power.is_empty() {
        found.totals.push((
            priority::INA2XX,
            PowerTotal {
                rule: format!("INA2xx on the supply: {}", ina2xx_power.join(" + ")),
                members: ina2xx_power,
                kind: Kind::PowerW,
                lower_bound: false,
                battery_side: false,
            },
        ));
    }
}
