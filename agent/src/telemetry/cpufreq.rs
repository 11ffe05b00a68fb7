//! CPU frequency per cluster: one series per cpufreq policy
//! (`/sys/devices/system/cpu/cpufreq/policy*/scaling_cur_freq`, kHz), named after the CPUs it
//! covers. Without policy directories, CPUs are grouped by `cpuinfo_max_freq` and the first CPU
//! of each group is read.

use super::sysfs::{self, Node};
use super::{Found, Group, Kind, Rate, Reading};
use crate::fsroot::FsRoot;
use std::collections::BTreeMap;

const CPU: &str = "/sys/devices/system/cpu";

pub fn discover(root: &FsRoot, found: &mut Found) {
    // (cpus label, scaling_cur_freq path, max kHz)
    let mut clusters: Vec<(String, String, Option<i64>)> = Vec::new();
    let policies = sysfs::entries(root, &format!("{CPU}/cpufreq"), "policy").unwrap_or_default();
    for p in &policies {
        let base = format!("{CPU}/cpufreq/{p}");
        let cpus = sysfs::read_str(root, &format!("{base}/related_cpus"))
            .ok()
            .or_else(|| sysfs::read_str(root, &format!("{base}/affected_cpus")).ok())
            .unwrap_or_else(|| p.clone());
        let max = sysfs::read_i64(root, &format!("{base}/cpuinfo_max_freq")).ok();
        clusters.push((cpus, format!("{base}/scaling_cur_freq"), max));
    }
    if clusters.is_empty() {
        let mut by_max: BTreeMap<Option<i64>, Vec<u32>> = BTreeMap::new();
        for c in sysfs::entries(root, CPU, "cpu").unwrap_or_default() {
            let Ok(n) = c["cpu".len()..].parse::<u32>() else {
                continue;
            };
            if !root.exists(&format!("{CPU}/{c}/cpufreq")) {
                continue;
            }
            let max = sysfs::read_i64(root, &format!("{CPU}/{c}/cpufreq/cpuinfo_max_freq")).ok();
            by_max.entry(max).or_default().push(n);
        }
        for (max, cpus) in by_max {
            let label = cpus
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(" ");
            clusters.push((
                label,
                format!("{CPU}/cpu{}/cpufreq/scaling_cur_freq", cpus[0]),
                max,
            ));
        }
    }
    if clusters.is_empty() {
        return found.source("cpufreq", Reading::Absent);
    }
    let mut readable = 0;
    let mut first_err = None;
    for (cpus, path, _) in &clusters {
        match sysfs::read_i64(root, path) {
            Reading::Ok(_) => {}
            Reading::Unreadable(r) => {
                first_err.get_or_insert(r);
                continue;
            }
            Reading::Absent => {
                first_err.get_or_insert(format!("{path}: missing"));
                continue;
            }
        }
        readable += 1;
        let name = format!("cpufreq:cpus {cpus}");
        let mut node = Node::new(root, path);
        found
            .groups
            .push(Group::single(Rate::Slow, name, Kind::FreqMhz, move || {
                node.read_i64().map(|khz| khz as f64 / 1000.0)
            }));
    }
    let maxima: Vec<String> = clusters
        .iter()
        .map(|(_, _, m)| m.map_or("?".to_string(), |k| (k / 1000).to_string()))
        .collect();
    let detail = format!(
        "{readable} of {} clusters readable (max {} MHz)",
        clusters.len(),
        maxima.join("/")
    );
    found.source(
        "cpufreq",
        if readable > 0 {
            Reading::Ok(detail)
        } else {
            Reading::Unreadable(format!("{detail} ({})", first_err.unwrap_or_default()))
        },
    );
}
