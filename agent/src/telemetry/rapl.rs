//! Intel/AMD RAPL energy counters through powercap (`/sys/class/powercap/intel-rapl:*`), found
//! by `name` (`package-N`, `core`, `uncore`, `dram`, `psys`).
//!
//! `energy_uj` is a µJ counter that wraps at `max_energy_range_uj`; each series reports joules
//! since discovery with the wraps undone ([`super::energy::counter_delta`]). Since kernel commit
//! 949dd0104c49 (PLATYPUS, CVE-2020-8694) `energy_uj` is root-only: that shows as unreadable.
//! Total: `psys` (whole platform) where present, else the sum of the packages (SoC only).

use super::energy::counter_delta;
use super::sysfs::{self, Node};
use super::{priority, Found, Group, Kind, PowerTotal, Rate, Reading};
use crate::fsroot::FsRoot;

const DIR: &str = "/sys/class/powercap";

/// Undoes a wrapping µJ counter: joules accumulated since the first reading.
#[derive(Clone, Debug)]
pub struct Unwrap {
    prev: Option<u64>,
    acc_uj: u64,
    max_range_uj: u64,
}

impl Unwrap {
    pub fn new(max_range_uj: u64) -> Unwrap {
        Unwrap {
            prev: None,
            acc_uj: 0,
            max_range_uj,
        }
    }

    pub fn push(&mut self, raw_uj: u64) -> f64 {
        if let Some(p) = self.prev {
            self.acc_uj += counter_delta(p, raw_uj, self.max_range_uj);
        }
        self.prev = Some(raw_uj);
        self.acc_uj as f64 / 1e6
    }
}

pub fn discover(root: &FsRoot, found: &mut Found) {
    let zones = match sysfs::entries(root, DIR, "intel-rapl:") {
        Ok(z) if z.is_empty() => return found.source("rapl", Reading::Absent),
        Ok(z) => z,
        Err(e) => return found.source("rapl", Reading::Unreadable(e)),
    };
    let mut readable = Vec::new();
    let mut first_err = None;
    let mut packages = Vec::new();
    let mut psys = None;
    for z in &zones {
        let base = format!("{DIR}/{z}");
        let name = sysfs::read_str(root, &format!("{base}/name"))
            .ok()
            .unwrap_or_else(|| z.clone());
        let energy = format!("{base}/energy_uj");
        match sysfs::read_i64(root, &energy) {
            Reading::Ok(_) => {}
            Reading::Unreadable(r) => {
                first_err.get_or_insert(r);
                continue;
            }
            Reading::Absent => continue,
        }
        let max = sysfs::read_i64(root, &format!("{base}/max_energy_range_uj"))
            .ok()
            .unwrap_or(0)
            .max(0) as u64;
        let top_level = z.matches(':').count() == 1;
        let series = if top_level {
            format!("rapl:{name}")
        } else {
            format!("rapl:{z}:{name}")
        };
        if top_level && name.starts_with("package") {
            packages.push(series.clone());
        }
        if top_level && name == "psys" {
            psys = Some(series.clone());
        }
        let mut node = Node::new(root, &energy);
        let mut unwrap = Unwrap::new(max);
        found.groups.push(Group::single(
            Rate::Power,
            series.clone(),
            Kind::EnergyJ,
            move || node.read_i64().map(|v| unwrap.push(v.max(0) as u64)),
        ));
        readable.push(name);
    }
    if readable.is_empty() {
        let why = first_err.unwrap_or_else(|| "no energy_uj".into());
        return found.source(
            "rapl",
            Reading::Unreadable(format!(
                "{why} (energy_uj is root-only since kernel 949dd0104c49; run as root or chmod it)"
            )),
        );
    }
    found.source("rapl", Reading::Ok(readable.join(", ")));
    let (members, rule) = match psys {
        Some(p) => (
            vec![p],
            "RAPL psys (whole platform), counter deltas".to_string(),
        ),
        None if !packages.is_empty() => (
            packages.clone(),
            format!("RAPL {} (SoC only), counter deltas", packages.join(" + ")),
        ),
        None => return,
    };
    found.totals.push((
        priority::RAPL,
        PowerTotal {
            members,
            kind: Kind::EnergyJ,
            rule,
            lower_bound: false,
            battery_side: false,
        },
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwrap_accumulates_across_a_wrap() {
        let mut u = Unwrap::new(1_000_000);
        assert_eq!(u.push(900_000), 0.0);
        assert_eq!(u.push(950_000), 0.05);
        // wraps: 50_000 to the top, then 30_000
        assert!((u.push(30_000) - 0.13).abs() < 1e-12);
    }
}
