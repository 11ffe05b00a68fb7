//! A device's sysfs and /proc as the agent finds them: the input is cut into files (records
//! `path\0content\0`) under a scratch root standing for `/`, and the agent discovers what it can
//! measure and probes the device there, as it does on a phone or a board. Odd files (numbers out
//! of range, binary junk, missing attributes) must be reported or skipped, never crash it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meltbench_agent::fsroot::FsRoot;
use meltbench_agent::telemetry::{self, cmd::Commands};

/// Where the agent looks: every file the input names goes below one of these.
const PLACES: &[&str] = &[
    "sys/class/thermal/thermal_zone0/",
    "sys/class/thermal/thermal_zone1/",
    "sys/class/thermal/cooling_device0/",
    "sys/class/power_supply/battery/",
    "sys/class/power_supply/BAT0/",
    "sys/class/hwmon/hwmon0/",
    "sys/class/powercap/intel-rapl:0/",
    "sys/devices/system/cpu/cpu0/cpufreq/",
    "sys/devices/system/cpu/cpufreq/policy0/",
    "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon1/",
    "proc/device-tree/",
    "proc/",
    "etc/",
];

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("a scratch root");
    let mut parts = data.split(|&b| b == 0);
    let mut files = 0;
    while let (Some(name), Some(content)) = (parts.next(), parts.next()) {
        if files == 24 || name.is_empty() {
            break;
        }
        files += 1;
        let place = PLACES[name[0] as usize % PLACES.len()];
        let leaf: String = name[1..]
            .iter()
            .map(|&b| b as char)
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(32)
            .collect();
        if leaf.is_empty() {
            continue;
        }
        let path = dir.path().join(place).join(leaf);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
    }
    let root = FsRoot::new(dir.path());
    let _ = telemetry::discover(&root, &Commands::None);
    let _ = meltbench_agent::probe::probe(&root);
});
