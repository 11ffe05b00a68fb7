//! Batteries under `/sys/class/power_supply/`: the supply whose `type` is `Battery` (and
//! `present` is not 0), as Perfetto selects it. Phones and laptops both.
//!
//! Each power sample reads `uevent` once, so current, voltage and status come from one
//! consistent snapshot (individual files when `uevent` is missing).
//!
//! - Units (device-telemetry §1.1, acc `batt-info.sh`): a voltage `< 10000` is mV, else µV,
//!   decided at discovery. A current `|x| >= 10000` is µA; a smaller one is ambiguous (a Pixel
//!   3a on USB with charging disabled reads `CURRENT_NOW=976` µA, which the bare heuristic would
//!   take for 976 mA), so it is taken as mA only from a discharging sample, where a phone under
//!   load draws far more than 10 mA. Until then battery power is `Unreadable`, not a number that
//!   may be 1000 times off.
//! - Sign: the kernel ABI says negative = discharging, but drivers use three conventions. The
//!   first sample taken while `Discharging` calibrates it: `sign = -signum(current)`, and the
//!   discharge current is `-sign * current_now`.
//! - Battery-side power is the device's power only while the battery alone supplies it:
//!   samples with status `Charging` or `Full` (and, on a laptop, anything but `Discharging`)
//!   are `Unreadable`, so energy over such a pass is invalid, never a number.

use super::sysfs::{self, Node};
use super::{priority, Found, Group, Kind, PowerTotal, Rate, Reading, Series};
use crate::fsroot::FsRoot;
use std::collections::HashMap;

const DIR: &str = "/sys/class/power_supply";

/// `dumpsys battery` numbering of the status strings.
pub fn status_code(s: &str) -> f64 {
    match s {
        "Charging" => 2.0,
        "Discharging" => 3.0,
        "Not charging" => 4.0,
        "Full" => 5.0,
        _ => 1.0,
    }
}

/// Divisor taking a raw current/voltage to A/V: mA/mV below 10000, else µA/µV.
pub fn unit_divisor(raw: i64) -> f64 {
    if raw != 0 && raw.abs() < 10_000 {
        1e3
    } else {
        1e6
    }
}

/// Turns raw `current_now` readings into discharge current, calibrating the sign (and, for
/// small readings, the unit) on the first discharging sample.
#[derive(Clone, Debug)]
pub struct SignCalibration {
    pub sign: Option<f64>,
    /// Divisor to amperes: 1e3 (mA) or 1e6 (µA); `None` while only ambiguous samples were seen.
    pub unit: Option<f64>,
}

impl SignCalibration {
    pub fn observe(&mut self, status: &str, current: i64) {
        if current == 0 {
            return;
        }
        let discharging = status == "Discharging";
        if self.unit.is_none() && (discharging || current.abs() >= 10_000) {
            self.unit = Some(unit_divisor(current));
        }
        if self.sign.is_none() && discharging {
            self.sign = Some(-(current.signum() as f64));
        }
    }

    pub fn describe_unit(&self) -> &'static str {
        match self.unit {
            Some(1e3) => "mA",
            Some(_) => "µA",
            None => "an undecided unit (no discharging sample yet)",
        }
    }

    /// Discharge current (positive while discharging) in raw units; the kernel ABI sign until
    /// calibrated.
    pub fn discharge(&self, current: i64) -> f64 {
        -self.sign.unwrap_or(1.0) * current as f64
    }

    pub fn describe(&self) -> String {
        match self.sign {
            Some(s) if s > 0.0 => "current_now negative while discharging (kernel ABI)".into(),
            Some(_) => "current_now positive while discharging".into(),
            None => "sign not yet calibrated (no discharging sample)".into(),
        }
    }
}

/// One snapshot of a supply.
pub struct Snapshot {
    pub fields: HashMap<String, String>,
}

impl Snapshot {
    pub fn get_i64(&self, key: &str) -> Option<i64> {
        self.fields.get(key)?.trim().parse().ok()
    }
    pub fn status(&self) -> &str {
        self.fields
            .get("STATUS")
            .map(String::as_str)
            .unwrap_or("Unknown")
    }
}

/// Reads a supply: `uevent` (`POWER_SUPPLY_X=v` lines) or the individual files.
struct Reader {
    uevent: Option<Node>,
    files: Vec<(String, Node)>,
}

impl Reader {
    fn new(root: &FsRoot, base: &str) -> Reader {
        let uevent = format!("{base}/uevent");
        if matches!(sysfs::read_str(root, &uevent), Reading::Ok(s) if s.contains("POWER_SUPPLY_")) {
            return Reader {
                uevent: Some(Node::new(root, &uevent)),
                files: Vec::new(),
            };
        }
        let files = [
            "status",
            "capacity",
            "temp",
            "current_now",
            "voltage_now",
            "power_now",
        ]
        .iter()
        .filter(|f| root.exists(&format!("{base}/{f}")))
        .map(|f| {
            (
                f.to_ascii_uppercase(),
                Node::new(root, &format!("{base}/{f}")),
            )
        })
        .collect();
        Reader {
            uevent: None,
            files,
        }
    }

    fn snapshot(&mut self) -> Reading<Snapshot> {
        let mut fields = HashMap::new();
        if let Some(u) = &mut self.uevent {
            let text = match u.read_str() {
                Reading::Ok(t) => t,
                Reading::Unreadable(r) => return Reading::Unreadable(r),
                Reading::Absent => return Reading::Absent,
            };
            for l in text.lines() {
                if let Some((k, v)) = l.trim().split_once('=') {
                    if let Some(k) = k.strip_prefix("POWER_SUPPLY_") {
                        fields.insert(k.to_string(), v.to_string());
                    }
                }
            }
        } else {
            for (k, node) in &mut self.files {
                match node.read_str() {
                    Reading::Ok(v) => {
                        fields.insert(k.clone(), v);
                    }
                    Reading::Unreadable(r) => return Reading::Unreadable(r),
                    Reading::Absent => {}
                }
            }
        }
        Reading::Ok(Snapshot { fields })
    }
}

pub fn discover(root: &FsRoot, android: bool, found: &mut Found) {
    let supplies = match sysfs::entries(root, DIR, "") {
        Ok(s) => s,
        Err(e) => return found.source("battery", Reading::Unreadable(e)),
    };
    let battery = supplies.iter().find(|s| {
        let base = format!("{DIR}/{s}");
        sysfs::read_str(root, &format!("{base}/type"))
            .ok()
            .as_deref()
            == Some("Battery")
            && sysfs::read_str(root, &format!("{base}/present"))
                .ok()
                .as_deref()
                != Some("0")
    });
    let Some(name) = battery else {
        return found.source("battery", Reading::Absent);
    };
    let base = format!("{DIR}/{name}");
    let mut reader = Reader::new(root, &base);
    let snap = match reader.snapshot() {
        Reading::Ok(s) => s,
        Reading::Unreadable(r) => return found.source("battery", Reading::Unreadable(r)),
        Reading::Absent => return found.source("battery", Reading::Absent),
    };
    let status = snap.status().to_string();
    let current = snap.get_i64("CURRENT_NOW");
    let voltage = snap.get_i64("VOLTAGE_NOW");
    let power_now = snap.get_i64("POWER_NOW");
    let mut cal = SignCalibration {
        sign: None,
        unit: None,
    };
    if let Some(c) = current {
        cal.observe(&status, c);
    }
    let v_div = voltage.map(unit_divisor).unwrap_or(1e6);
    let mut detail = vec![format!("{name}: status {status}")];
    if let Some(c) = snap.get_i64("CAPACITY") {
        detail.push(format!("{c}%"));
    }
    let pre = format!("battery:{name}");
    let mut series = vec![
        Series {
            name: format!("{pre}:status"),
            kind: Kind::BatteryStatus,
        },
        Series {
            name: format!("{pre}:capacity"),
            kind: Kind::CapacityPct,
        },
        Series {
            name: format!("{pre}:temp"),
            kind: Kind::TempC,
        },
    ];
    let has_power = power_now.is_some() || (current.is_some() && voltage.is_some());
    if has_power {
        series.push(Series {
            name: format!("{pre}:power"),
            kind: Kind::PowerW,
        });
        detail.push(if power_now.is_some() && !android {
            "power_now (µW)".to_string()
        } else {
            format!(
                "current_now in {} x voltage_now in {}; {}",
                cal.describe_unit(),
                if v_div == 1e3 { "mV" } else { "µV" },
                if android {
                    cal.describe()
                } else {
                    "absolute value".to_string()
                }
            )
        });
    } else {
        detail.push("no current/voltage/power: power absent".into());
    }
    let power_name = format!("{pre}:power");
    // Power is sampled at the power rate; status, level and temperature come along (they are
    // in the same uevent snapshot), which also keeps the charging check in step with power.
    found.groups.push(Group::new(Rate::Power, series, move || {
        let snap = match reader.snapshot() {
            Reading::Ok(s) => s,
            other => {
                let r = match other {
                    Reading::Unreadable(r) => Reading::Unreadable(r),
                    _ => Reading::Absent,
                };
                return vec![r.clone(), r.clone(), r.clone(), r];
            }
        };
        let status = snap.status().to_string();
        let num = |k: &str, div: f64| match snap.get_i64(k) {
            Some(v) => Reading::Ok(v as f64 / div),
            None => Reading::Absent,
        };
        let mut out = vec![
            Reading::Ok(status_code(&status)),
            num("CAPACITY", 1.0),
            num("TEMP", 10.0),
        ];
        if has_power {
            out.push(battery_power(&snap, &status, android, &mut cal, v_div));
        }
        out
    }));
    found.source("battery", Reading::Ok(detail.join(", ")));
    if has_power {
        found.totals.push((
            priority::BATTERY,
            PowerTotal {
                members: vec![power_name],
                kind: Kind::PowerW,
                rule: "battery discharge power".into(),
                lower_bound: false,
                battery_side: true,
            },
        ));
    }
}

fn battery_power(
    snap: &Snapshot,
    status: &str,
    android: bool,
    cal: &mut SignCalibration,
    v_div: f64,
) -> Reading<f64> {
    let valid = status == "Discharging" || (android && status == "Not charging");
    if !valid {
        return Reading::Unreadable(format!(
            "battery status {status}: battery-side power is not the device's power while a charger is connected"
        ));
    }
    if !android {
        if let Some(p) = snap.get_i64("POWER_NOW") {
            return Reading::Ok(p.unsigned_abs() as f64 / 1e6);
        }
    }
    let (Some(i), Some(v)) = (snap.get_i64("CURRENT_NOW"), snap.get_i64("VOLTAGE_NOW")) else {
        return Reading::Unreadable("current_now/voltage_now missing from the snapshot".into());
    };
    cal.observe(status, i);
    // Zero is zero in either unit.
    let Some(i_div) = cal.unit.or((i == 0).then_some(1e6)) else {
        return Reading::Unreadable(format!(
            "current_now {i} with status {status}: below 10000, so mA or µA; the unit is decided by the first discharging sample"
        ));
    };
    if !android {
        return Reading::Ok(i.unsigned_abs() as f64 / i_div * (v.unsigned_abs() as f64 / v_div));
    }
    Reading::Ok(cal.discharge(i) / i_div * (v as f64 / v_div))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_sign() {
        assert_eq!(unit_divisor(-450), 1e3);
        assert_eq!(unit_divisor(-450_000), 1e6);
        assert_eq!(unit_divisor(3_900), 1e3);
        assert_eq!(unit_divisor(3_900_000), 1e6);
        let new = || SignCalibration {
            sign: None,
            unit: None,
        };
        assert_eq!(new().discharge(-100), 100.0, "kernel ABI until calibrated");
        let mut abi = new();
        abi.observe("Discharging", -500_000);
        assert_eq!(abi.discharge(-500_000), 500_000.0);
        assert_eq!(abi.unit, Some(1e6));
        let mut pos = new();
        pos.observe("Charging", 500);
        assert_eq!(pos.sign, None, "charging samples do not calibrate");
        assert_eq!(pos.unit, None, "a small charging current is mA or µA");
        pos.observe("Discharging", 500);
        assert_eq!(pos.discharge(500), 500.0);
        assert_eq!(pos.unit, Some(1e3));
    }

    #[test]
    fn a_small_current_outside_discharge_leaves_the_unit_open() {
        // Pixel 3a, charging disabled on USB (MatteCarra/AccA#35): 976 µA, not 976 mA.
        let mut cal = SignCalibration {
            sign: None,
            unit: None,
        };
        cal.observe("Not charging", 976);
        assert_eq!(cal.unit, None);
        cal.observe("Charging", 950_000);
        assert_eq!(
            cal.unit,
            Some(1e6),
            "a large reading is µA whatever the status"
        );
        assert_eq!(cal.sign, None);
    }
}
