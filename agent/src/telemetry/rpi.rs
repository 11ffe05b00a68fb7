//! Raspberry Pi (device-telemetry §3): identity from the device tree, `vcgencmd get_throttled`
//! bits and, on the Pi 5, `vcgencmd pmic_read_adc` rails.
//!
//! Rails are paired by name (`VDD_CORE_A` with `VDD_CORE_V`), never by the channel number in
//! parentheses, which differs between the current and voltage lines. Their sum is a **lower
//! bound** on board power: the 5 V input current is not measured, and USB, fan, HAT loads and
//! conversion losses are left out. On a Pi 4 the command answers `Command not registered`:
//! power is then absent (unless an INA2xx hwmon is on the supply, see [`super::hwmon`]).
//! Temperature is the `cpu-thermal` zone.

use super::cmd::Commands;
use super::{priority, Found, Group, Identity, Kind, PowerTotal, Rate, Reading, Series};
use crate::fsroot::FsRoot;

pub fn is_rpi(root: &FsRoot) -> bool {
    super::dt_model(root).is_some_and(|m| m.starts_with("Raspberry Pi"))
}

pub fn identity(root: &FsRoot) -> Identity {
    let model = super::dt_model(root);
    let mut details = Vec::new();
    if let Ok(info) = root.read("/proc/cpuinfo") {
        if let Some(rev) = info.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == "Revision").then(|| v.trim().to_string())
        }) {
            details.push(("revision".to_string(), rev));
        }
    }
    let soc = model.as_deref().and_then(|m| {
        if m.starts_with("Raspberry Pi 5") {
            Some("BCM2712".to_string())
        } else if m.starts_with("Raspberry Pi 4") {
            Some("BCM2711".to_string())
        } else {
            None
        }
    });
    Identity {
        model,
        manufacturer: Some("Raspberry Pi".into()),
        soc,
        os_version: super::os_release(root),
        details,
    }
}

/// `throttled=0x50005` -> 0x50005.
pub fn parse_throttled(text: &str) -> Option<u32> {
    let v = text.trim().strip_prefix("throttled=")?;
    u32::from_str_radix(v.trim_start_matches("0x"), 16).ok()
}

/// Names of the set bits (now: bits 0-3; since boot: bits 16-19).
pub fn describe_throttled(bits: u32) -> String {
    const NAMES: [&str; 4] = [
        "under-voltage",
        "arm frequency capped",
        "throttled",
        "soft temperature limit",
    ];
    let mut parts = Vec::new();
    for (i, n) in NAMES.iter().enumerate() {
        if bits & (1 << i) != 0 {
            parts.push(format!("{n} now"));
        }
        if bits & (1 << (16 + i)) != 0 {
            parts.push(format!("{n} since boot"));
        }
    }
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

/// `pmic_read_adc` output paired by rail: (rail, amperes, volts), in output order. `Err` when
/// the firmware does not know the command (Pi 4).
pub fn parse_pmic(text: &str) -> Result<Vec<(String, f64, f64)>, String> {
    if text.contains("error=") {
        return Err(text.trim().to_string());
    }
    let mut amps: Vec<(String, f64)> = Vec::new();
    let mut volts: Vec<(String, f64)> = Vec::new();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let (Some(name), Some(val)) = (it.next(), it.next()) else {
            continue;
        };
        let Some((_, num)) = val.split_once(")=") else {
            continue;
        };
        let num = num.trim_end_matches(['A', 'V']);
        // `nan` (BATT_V on some boards) parses, and so does an exponent that overflows to
        // infinity: neither is a reading.
        let Some(x) = num.parse::<f64>().ok().filter(|x| x.is_finite()) else {
            continue;
        };
        if let Some(rail) = name.strip_suffix("_A") {
            amps.push((rail.to_string(), x));
        } else if let Some(rail) = name.strip_suffix("_V") {
            volts.push((rail.to_string(), x));
        }
    }
    Ok(amps
        .into_iter()
        .filter_map(|(rail, a)| {
            let v = volts.iter().find(|(r, _)| *r == rail)?.1;
            Some((rail, a, v))
        })
        .collect())
}

pub fn discover(cmds: &Commands, identity: &mut Identity, found: &mut Found) {
    let throttled = ["vcgencmd", "get_throttled"];
    match cmds.run(&throttled) {
        Reading::Ok(text) => match parse_throttled(&text) {
            Some(bits) => {
                identity
                    .details
                    .push(("throttled".into(), format!("0x{bits:x}")));
                found.source(
                    "rpi_throttled",
                    Reading::Ok(format!("0x{bits:x}: {}", describe_throttled(bits))),
                );
                let cmds = cmds.clone();
                found.groups.push(Group::single(
                    Rate::Command,
                    "rpi:throttled".into(),
                    Kind::ThrottleBits,
                    move || {
                        cmds.run(&throttled)
                            .and_then(|t| match parse_throttled(&t) {
                                Some(b) => Reading::Ok(b as f64),
                                None => {
                                    Reading::Unreadable(format!("get_throttled: {:?}", t.trim()))
                                }
                            })
                    },
                ));
            }
            None => found.source(
                "rpi_throttled",
                Reading::Unreadable(format!("get_throttled printed {:?}", text.trim())),
            ),
        },
        other => found.source("rpi_throttled", other),
    }
    let pmic = ["vcgencmd", "pmic_read_adc"];
    let rails = match cmds.run(&pmic) {
        Reading::Ok(text) => match parse_pmic(&text) {
            Ok(r) if !r.is_empty() => r,
            Ok(_) => {
                return found.source(
                    "rpi_pmic",
                    Reading::Unreadable("pmic_read_adc: no paired rails".into()),
                )
            }
            // No PMIC ADC on this board (Pi 4: "Command not registered").
            Err(_) => return found.source("rpi_pmic", Reading::Absent),
        },
        other => return found.source("rpi_pmic", other),
    };
    let names: Vec<String> = rails.iter().map(|r| r.0.clone()).collect();
    found.source(
        "rpi_pmic",
        Reading::Ok(format!(
            "{} rails paired by name; sum is a lower bound (5 V input, USB, fan, HATs and conversion losses not included)",
            names.len()
        )),
    );
    let mut series = vec![Series {
        name: "rpi_pmic:total".into(),
        kind: Kind::PowerW,
    }];
    series.extend(names.iter().map(|n| Series {
        name: format!("rpi_pmic:{n}"),
        kind: Kind::PowerW,
    }));
    let cmds = cmds.clone();
    found
        .groups
        .push(Group::new(Rate::Command, series, move || {
            let fail = |r: Reading<f64>| vec![r; names.len() + 1];
            let text = match cmds.run(&pmic) {
                Reading::Ok(t) => t,
                Reading::Unreadable(r) => return fail(Reading::Unreadable(r)),
                Reading::Absent => return fail(Reading::Absent),
            };
            let rails = match parse_pmic(&text) {
                Ok(r) => r,
                Err(e) => return fail(Reading::Unreadable(e)),
            };
            let per: Vec<Reading<f64>> = names
                .iter()
                .map(|n| match rails.iter().find(|r| &r.0 == n) {
                    Some((_, a, v)) => Reading::Ok(a * v),
                    None => Reading::Unreadable(format!("{n} missing from pmic_read_adc")),
                })
                .collect();
            let total = super::sum_members(&names, |n| {
                let i = names.iter().position(|x| x == n).expect("own name");
                per[i].clone()
            });
            let mut out = vec![total];
            out.extend(per);
            out
        }));
    found.totals.push((
        priority::PMIC,
        PowerTotal {
            members: vec!["rpi_pmic:total".into()],
            kind: Kind::PowerW,
            rule: "Pi 5 PMIC rails, current x voltage paired by name".into(),
            lower_bound: true,
            battery_side: false,
        },
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttled_bits() {
        assert_eq!(parse_throttled("throttled=0x50005\n"), Some(0x50005));
        assert_eq!(
            describe_throttled(0x50005),
            "under-voltage now, under-voltage since boot, throttled now, throttled since boot"
        );
        assert_eq!(describe_throttled(0), "none");
    }

    #[test]
    fn pmic_pairs_by_name_not_channel_number() {
        let text = " VDD_CORE_A current(7)=2.00000000A\n 3V3_SYS_A current(1)=0.10000000A\n VDD_CORE_V volt(15)=0.80000000V\n EXT5V_V volt(24)=5.10000000V\n BATT_V volt(25)=nanV\n 3V3_SYS_V volt(9)=3.30000000V\n";
        let r = parse_pmic(text).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].0, "VDD_CORE");
        assert!((r[0].1 * r[0].2 - 1.6).abs() < 1e-9);
        assert!((r[1].1 * r[1].2 - 0.33).abs() < 1e-9);
        assert!(parse_pmic("error=1 error_msg=\"Command not registered\"").is_err());
    }

    /// Found by the `telemetry_text` fuzz target: `3.79e99600` overflowed to an infinite
    /// voltage, and `nan` passed as a reading.
    #[test]
    fn pmic_values_that_are_not_finite_are_no_readings() {
        let text = " 3V3_SYS_A current(1)=0.1A\n 3V3_SYS_V volt(9)=3.79e99600V\n 1V8_SYS_A current(2)=nanA\n 1V8_SYS_V volt(10)=1.8V\n";
        assert_eq!(parse_pmic(text).unwrap(), Vec::new());
    }
}
