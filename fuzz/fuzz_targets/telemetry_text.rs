//! What the agent reads from a device's commands: `getprop`, `dumpsys thermalservice`,
//! `dumpsys battery`, `vcgencmd get_throttled` and `pmic_read_adc`, `/etc/nv_tegra_release`,
//! `nvpmodel -q`. Any text parses to something or nothing, never a panic; temperatures, volts
//! and amperes read as numbers are finite.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meltbench_agent::telemetry::{android, jetson, rpi};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = android::parse_getprop(&text);
    for (name, _, celsius, _) in android::parse_thermalservice(&text).temps {
        assert!(celsius.is_finite(), "{name}: {celsius} °C");
    }
    let _ = android::parse_dumpsys_battery(&text);
    if let Some(bits) = rpi::parse_throttled(&text) {
        let _ = rpi::describe_throttled(bits);
    }
    if let Ok(rails) = rpi::parse_pmic(&text) {
        for (_, amps, volts) in rails {
            assert!(volts.is_finite() && amps.is_finite(), "{volts} V, {amps} A");
        }
    }
    let _ = jetson::l4t_release(&text);
    let _ = jetson::parse_nvpmodel(&text);
});
