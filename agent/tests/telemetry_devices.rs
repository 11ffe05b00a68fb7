//! Telemetry discovery against the device trees in `testbed/devices/<name>/` (`root/` = the
//! files the sources read, `commands/` = captured command outputs, `SOURCE.md` = where they come
//! from): identity, which sources are available, and the computed totals (Orin rail rules,
//! Android sign calibration, RAPL wraparound, Pi 5 rail pairing).
//!
//! The agent is a binary crate, so the telemetry module is compiled into this test directly.
#![allow(dead_code)]

#[path = "../src/fsroot.rs"]
mod fsroot;
#[path = "../src/telemetry/mod.rs"]
mod telemetry;

use fsroot::FsRoot;
use std::fs;
use std::path::{Path, PathBuf};
use telemetry::cmd::Commands;
use telemetry::{discover, Discovery, Family, Kind, Reading};

fn device_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testbed/devices")
        .join(name)
}

fn discover_in(dir: &Path) -> Discovery {
    discover(
        &FsRoot::new(dir.join("root")),
        &Commands::Captured(dir.join("commands")),
    )
}

fn device(name: &str) -> Discovery {
    let dir = device_dir(name);
    assert!(
        dir.join("SOURCE.md").is_file(),
        "{name}: every tree says where it comes from"
    );
    discover_in(&dir)
}

/// A writable copy of a device tree, for tests that change files between readings.
fn copy_device(name: &str) -> tempfile::TempDir {
    fn copy(from: &Path, to: &Path) {
        fs::create_dir_all(to).unwrap();
        for e in fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            let dst = to.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                copy(&e.path(), &dst);
            } else {
                fs::copy(e.path(), dst).unwrap();
            }
        }
    }
    let t = tempfile::tempdir().unwrap();
    copy(&device_dir(name), t.path());
    t
}

fn status(d: &Discovery, source: &str) -> &'static str {
    d.source(source)
        .unwrap_or_else(|| panic!("no source {source} in {:?}", d.sources))
        .status
        .status()
}

fn detail(d: &Discovery, source: &str) -> String {
    match &d.source(source).unwrap().status {
        Reading::Ok(s) | Reading::Unreadable(s) => s.clone(),
        Reading::Absent => String::new(),
    }
}

fn total_w(d: &mut Discovery) -> f64 {
    match d.read_total() {
        Reading::Ok(w) => w,
        other => panic!("total not readable: {other:?}"),
    }
}

fn close(got: f64, want: f64) {
    assert!((got - want).abs() < 1e-6, "got {got}, want {want}");
}

fn value(d: &mut Discovery, series: &str) -> Reading<f64> {
    d.read_all()
        .into_iter()
        .find(|(n, _)| n == series)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no series {series}"))
}

#[test]
fn pixel_identity_battery_and_kernel_abi_sign() {
    let mut d = device("pixel");
    assert_eq!(d.family, Family::Android);
    assert_eq!(d.identity.model.as_deref(), Some("Pixel 7"));
    assert_eq!(d.identity.soc.as_deref(), Some("Google GS201"));
    assert_eq!(
        d.identity.os_version.as_deref(),
        Some("Android 14 (SDK 34)")
    );
    for s in [
        "thermal_zones",
        "cpufreq",
        "battery",
        "android_thermalservice",
        "android_dumpsys_battery",
    ] {
        assert_eq!(status(&d, s), "ok", "{s}");
    }
    assert_eq!(status(&d, "hwmon"), "absent");
    assert_eq!(status(&d, "rapl"), "absent");
    // The sysfs battery holds the values of a real Pixel 3a on USB with charging disabled
    // (SOURCE.md): `Not charging`, current_now 976 (µA), voltage_now 3815175 µV. 976 alone
    // could be mA; with no discharging sample the unit stays open and power is not a number.
    let b = detail(&d, "battery");
    assert!(b.contains("status Not charging"), "{b}");
    assert!(b.contains("undecided unit"), "{b}");
    assert!(b.contains("not yet calibrated"), "{b}");
    let total = d.power.clone().unwrap();
    assert!(total.battery_side);
    match d.read_total() {
        Reading::Unreadable(r) => assert!(r.contains("mA or µA"), "{r}"),
        other => panic!("976 is not known to be mA: {other:?}"),
    }
    // `dumpsys thermalservice` is a real Tensor Pixel capture (SOURCE.md): 42 HAL entries, of
    // which 15 are battery-current-limiter readings (types 6-8: `ocp_cpu2` 11900.0 mA,
    // `vdroop1` 1050.0 mV, `soc` 0.0 %), not temperatures: 27 °C series remain.
    assert_eq!(value(&mut d, "android:thermal_status"), Reading::Ok(0.0));
    assert!(detail(&d, "android_thermalservice").contains("27 HAL temperatures"));
    assert_eq!(
        value(&mut d, "android_hal:VIRTUAL-SKIN"),
        Reading::Ok(24.83324)
    );
    assert_eq!(value(&mut d, "android_hal:BIG"), Reading::Ok(26.000002));
    assert_eq!(
        value(&mut d, "android_hal:USB2-MINUS-USB"),
        Reading::Ok(-0.117000006)
    );
    assert!(!d.has_series("android_hal:ocp_cpu2"));
    assert!(!d.has_series("android_hal:vdroop1"));
    assert_eq!(value(&mut d, "battery:battery:temp"), Reading::Ok(31.3));
    assert_eq!(value(&mut d, "battery:battery:capacity"), Reading::Ok(44.0));
    assert_eq!(d.primary_temp.as_deref(), Some("thermal:skin-therm"));
    assert_eq!(
        d.series().filter(|(_, s)| s.kind == Kind::FreqMhz).count(),
        3,
        "three clusters"
    );
}

#[test]
fn galaxy_milliamps_positive_while_discharging() {
    let mut d = device("galaxy");
    assert_eq!(d.family, Family::Android);
    assert_eq!(d.identity.model.as_deref(), Some("SM-S911B"));
    assert_eq!(d.identity.soc.as_deref(), Some("QTI SM8550"));
    let b = detail(&d, "battery");
    assert!(b.contains("current_now in mA"), "{b}");
    assert!(b.contains("positive while discharging"), "{b}");
    // 389 mA x 3912000 µV; the sign calibration keeps it positive.
    close(total_w(&mut d), 0.389 * 3.912);
    assert!(detail(&d, "thermal_zones").contains("sdr0-pa0 (disabled)"));
    assert!(!d.has_series("thermal:sdr0-pa0"));
    // `dumpsys thermalservice` is a real Samsung capture (SOURCE.md): `Thermal Status: 0`, six
    // HAL sensors; the `Temperature static thresholds` lines after it are not temperatures.
    assert_eq!(value(&mut d, "android:thermal_status"), Reading::Ok(0.0));
    assert!(detail(&d, "android_thermalservice").contains("6 HAL temperatures"));
    assert_eq!(value(&mut d, "android_hal:SKIN"), Reading::Ok(28.2));
    assert_eq!(value(&mut d, "android_hal:SUBBAT"), Reading::Ok(0.0));
    // `dumpsys battery` is a real SM-S911B capture: level 33, discharging, 3674 mV.
    let dump = detail(&d, "android_dumpsys_battery");
    assert!(
        dump.contains("level 33, status 3, voltage 3674 mV"),
        "{dump}"
    );
}

#[test]
fn galaxy_without_readable_sysfs_battery_falls_back_to_dumpsys() {
    let t = copy_device("galaxy");
    fs::remove_dir_all(t.path().join("root/sys/class/power_supply/battery")).unwrap();
    let mut d = discover_in(t.path());
    let b = detail(&d, "battery");
    assert!(b.starts_with("from dumpsys battery"), "{b}");
    assert!(b.contains("current now"), "{b}");
    // The captured S23 dump: `temperature: 407`, `level: 33`, `status: 3` (discharging) and
    // `current now: -975` (mA, negative while discharging) x `voltage: 3674` (mV). The
    // Samsung-only lines (` Time when the latest updated value of the voltage was sent ...: 0`,
    // ` The last voltage value sent ...: 3734`, `LLB MAN: ` with no value) must not be taken
    // for the voltage.
    assert_eq!(value(&mut d, "android_battery:temp"), Reading::Ok(40.7));
    assert_eq!(value(&mut d, "android_battery:level"), Reading::Ok(33.0));
    assert_eq!(value(&mut d, "android_battery:status"), Reading::Ok(3.0));
    close(total_w(&mut d), 0.975 * 3.674);

    // The same dump while charging (status 2): battery-side power is not the device's power.
    let dump = t.path().join("commands/dumpsys battery");
    let text = fs::read_to_string(&dump).unwrap();
    fs::write(&dump, text.replace("  status: 3", "  status: 2")).unwrap();
    match d.read_total() {
        Reading::Unreadable(r) => assert!(r.contains("status 2"), "{r}"),
        other => panic!("battery power while charging must not be a number: {other:?}"),
    }
}

#[test]
fn pixel_discharging_sample_calibrates_unit_and_kernel_abi_sign() {
    // The captured Pixel 3a files, edited into a discharging sample.
    let t = copy_device("pixel");
    let bat = t.path().join("root/sys/class/power_supply/battery");
    fs::write(bat.join("status"), "Discharging\n").unwrap();
    fs::write(bat.join("current_now"), "-412000\n").unwrap();
    let mut d = discover_in(t.path());
    let b = detail(&d, "battery");
    assert!(b.contains("current_now in µA"), "{b}");
    assert!(b.contains("negative while discharging"), "{b}");
    // -412000 µA (discharging, kernel ABI sign) x the captured voltage_now 3815175 µV.
    close(total_w(&mut d), 0.412 * 3.815175);
    // Back to the captured sample: the unit and sign learnt above now apply to it, and the
    // battery takes in 976 µA while USB feeds the phone (a negative discharge power).
    fs::write(bat.join("status"), "Not charging\n").unwrap();
    fs::write(bat.join("current_now"), "976\n").unwrap();
    close(total_w(&mut d), -0.000976 * 3.815175);
}

#[test]
fn android_battery_power_is_invalid_while_charging() {
    let t = copy_device("pixel");
    let bat = t.path().join("root/sys/class/power_supply/battery");
    fs::write(bat.join("status"), "Charging\n").unwrap();
    fs::write(bat.join("current_now"), "950000\n").unwrap();
    let mut d = discover_in(t.path());
    assert!(
        detail(&d, "battery").contains("not yet calibrated"),
        "a charging sample does not calibrate the sign"
    );
    match d.read_total() {
        Reading::Unreadable(r) => assert!(r.contains("Charging"), "{r}"),
        other => panic!("battery power while charging must not be a number: {other:?}"),
    }
}

#[test]
fn orin_nano_total_is_vdd_in_alone() {
    let mut d = device("orin-nano");
    assert_eq!(d.family, Family::Jetson);
    assert_eq!(d.identity.detail("module"), Some("Orin Nano/NX (p3767)"));
    assert_eq!(d.identity.detail("l4t"), Some("R35.4.1"));
    assert_eq!(d.identity.detail("nvpmodel"), Some("15W (id 0)"));
    assert_eq!(d.identity.soc.as_deref(), Some("tegra234"));
    assert_eq!(
        detail(&d, "jetson_ina3221"),
        "VDD_IN, VDD_CPU_GPU_CV, VDD_SOC"
    );
    let total = d.power.clone().unwrap();
    assert_eq!(total.members, ["ina3221:VDD_IN"]);
    assert!(!total.lower_bound && !total.battery_side);
    close(total_w(&mut d), 5.104 * 1.143);
    // CV0..2 read -256000 (power-gated): skipped, not reported as -256 °C.
    assert!(!d.has_series("thermal:CV0-therm"));
    assert!(detail(&d, "thermal_zones").contains("CV0-therm (switched off"));
    assert_eq!(d.primary_temp.as_deref(), Some("thermal:tj-therm"));
    assert_eq!(value(&mut d, "thermal:tj-therm"), Reading::Ok(50.968));
    assert_eq!(value(&mut d, "gpu:freq"), Reading::Ok(306.0));
}

#[test]
fn agx_orin_does_not_double_count_the_1v8_rail() {
    let mut d = device("agx-orin");
    assert_eq!(d.identity.detail("module"), Some("AGX Orin (p3701)"));
    assert_eq!(d.identity.detail("nvpmodel"), Some("MAXN (id 0)"));
    let total = d.power.clone().unwrap();
    assert_eq!(
        total.members,
        [
            "ina3221:VDD_GPU_SOC",
            "ina3221:VDD_CPU_CV",
            "ina3221:VIN_SYS_5V0"
        ]
    );
    let want = 5.080 * 1.580 + 5.080 * 0.410 + 5.056 * 0.720;
    close(total_w(&mut d), want);
    // The rail fed from VIN_SYS_5V0 is sampled, just not added; NC channels are skipped.
    assert!(d.has_series("ina3221:VDDQ_VDD2_1V8AO"));
    assert!(!d.has_series("ina3221:NC"));
    let all: f64 = d
        .read_all()
        .into_iter()
        .filter(|(n, _)| n.starts_with("ina3221:"))
        .filter_map(|(_, v)| v.ok())
        .sum();
    assert!(all > want + 0.9, "summing every rail would over-count");
}

#[test]
fn jetson_nano_l4t32_iio_layout() {
    let mut d = device("jetson-nano-l4t32");
    assert_eq!(d.family, Family::Jetson);
    assert_eq!(d.identity.detail("module"), Some("Nano (p3448)"));
    assert_eq!(d.identity.detail("l4t"), Some("R32.7.4"));
    // `nvpmodel -q` is a real capture (NVIDIA-AI-IOT/jetbot#49, run with sudo).
    assert_eq!(d.identity.detail("nvpmodel"), Some("5W (id 1)"));
    assert_eq!(d.identity.soc.as_deref(), Some("tegra210"));
    assert_eq!(d.power.clone().unwrap().members, ["ina3221:POM_5V_IN"]);
    close(total_w(&mut d), 2.672);
    assert!(d.has_series("ina3221:POM_5V_GPU"));
    assert!(
        !d.has_series("thermal:PMIC-Die"),
        "fixed 100 °C sensor skipped"
    );
    assert_eq!(d.primary_temp.as_deref(), Some("thermal:CPU-therm"));
    assert_eq!(value(&mut d, "gpu:freq"), Reading::Ok(76.8));
}

#[test]
fn discovery_does_not_depend_on_hwmon_or_zone_numbers() {
    let t = copy_device("orin-nano");
    let hw = t
        .path()
        .join("root/sys/bus/i2c/drivers/ina3221/1-0040/hwmon");
    fs::rename(hw.join("hwmon3"), hw.join("hwmon9")).unwrap();
    let zones = t.path().join("root/sys/class/thermal");
    fs::rename(zones.join("thermal_zone8"), zones.join("thermal_zone11")).unwrap();
    let mut d = discover_in(t.path());
    close(total_w(&mut d), 5.104 * 1.143);
    assert_eq!(d.primary_temp.as_deref(), Some("thermal:tj-therm"));
}

#[test]
fn rpi5_pmic_rails_paired_by_name_as_a_lower_bound() {
    let mut d = device("rpi5");
    assert_eq!(d.family, Family::RaspberryPi);
    assert_eq!(
        d.identity.model.as_deref(),
        Some("Raspberry Pi 5 Model B Rev 1.0")
    );
    assert_eq!(d.identity.soc.as_deref(), Some("BCM2712"));
    assert_eq!(d.identity.detail("revision"), Some("c04170"));
    assert_eq!(status(&d, "rpi_pmic"), "ok");
    assert!(detail(&d, "rpi_pmic").starts_with("12 rails"));
    assert_eq!(status(&d, "rpi_throttled"), "ok");
    assert!(detail(&d, "rpi_throttled").ends_with("none"));
    let total = d.power.clone().unwrap();
    assert!(total.lower_bound);
    // Σ A x V over the 12 paired rails of the captured output (jfikar/RPi5-power README, see
    // SOURCE.md; EXT5V_V and BATT_V have no current and are not paired):
    //   0.0 x 3.799996 + 0.06245952 x 3.306322 + 0.1610285 x 1.798289 + 0.00780744 x 1.102929
    //   + 0.0 x 0.6047613 + 0.1756674 x 1.104394 + 0.3279125 x 0.8025633 + 10.87674 x 0.8974594
    //   + 0.0003663 x 3.304942 + 0.00042735 x 3.302194 + 0.00579975 x 0.7973619
    //   + 0.0136752 x 5.07056 = 10.7998944 W (VDD_CORE alone 9.7614326 W: a loaded board).
    let want = 0.0 * 3.799996
        + 0.06245952 * 3.306322
        + 0.1610285 * 1.798289
        + 0.00780744 * 1.102929
        + 0.0 * 0.6047613
        + 0.1756674 * 1.104394
        + 0.3279125 * 0.8025633
        + 10.87674 * 0.8974594
        + 0.0003663 * 3.304942
        + 0.00042735 * 3.302194
        + 0.00579975 * 0.7973619
        + 0.0136752 * 5.07056;
    close(total_w(&mut d), want);
    // VDD_CORE_A is channel 7 and VDD_CORE_V channel 15; 3V3_ADC_A is 18 and 3V3_ADC_V 21:
    // paired by name.
    close(
        value(&mut d, "rpi_pmic:VDD_CORE").ok().unwrap(),
        10.87674 * 0.8974594,
    );
    close(
        value(&mut d, "rpi_pmic:3V3_ADC").ok().unwrap(),
        0.00042735 * 3.302194,
    );
    assert_eq!(value(&mut d, "rpi:throttled"), Reading::Ok(0.0));
    assert_eq!(d.primary_temp.as_deref(), Some("thermal:cpu-thermal"));
}

#[test]
fn rpi4_has_no_power_unless_an_ina2xx_is_on_the_supply() {
    let d = device("rpi4");
    assert_eq!(d.family, Family::RaspberryPi);
    assert_eq!(d.identity.soc.as_deref(), Some("BCM2711"));
    // `/proc/cpuinfo` lines of a real Pi 4 Model B Rev 1.5 (SOURCE.md).
    assert_eq!(d.identity.detail("revision"), Some("a03115"));
    assert_eq!(status(&d, "rpi_pmic"), "absent");
    assert!(d.power.is_none());
    let statuses = d.source_statuses();
    let total = statuses.iter().find(|s| s.name == "power_total").unwrap();
    assert_eq!(total.status, "absent");
    // The captured 0x80008 (a Pi 4 at about 82 °C): the soft temperature limit is active now
    // (bit 3) and has been since boot (bit 19); no under-voltage.
    let t = detail(&d, "rpi_throttled");
    assert_eq!(
        t,
        "0x80008: soft temperature limit now, soft temperature limit since boot"
    );

    let t = copy_device("rpi4");
    let ina = t.path().join("root/sys/class/hwmon/hwmon4");
    fs::create_dir_all(&ina).unwrap();
    fs::write(ina.join("name"), "ina219\n").unwrap();
    fs::write(ina.join("power1_input"), "3215000\n").unwrap();
    fs::write(ina.join("in1_input"), "5104\n").unwrap();
    let mut d = discover_in(t.path());
    let total = d.power.clone().unwrap();
    assert!(total.rule.starts_with("INA2xx"), "{}", total.rule);
    close(total_w(&mut d), 3.215);
}

#[test]
fn laptop_rapl_prefers_psys_and_undoes_wraparound() {
    let t = copy_device("x86-laptop-rapl");
    let mut d = discover_in(t.path());
    assert_eq!(d.family, Family::Linux);
    assert_eq!(d.identity.manufacturer.as_deref(), Some("LENOVO"));
    assert_eq!(
        d.identity.soc.as_deref(),
        Some("11th Gen Intel(R) Core(TM) i7-1165G7 @ 2.80GHz")
    );
    assert_eq!(detail(&d, "rapl"), "package-0, psys, core, uncore");
    assert!(
        !d.has_series("rapl:intel-rapl-mmio:0"),
        "the MMIO interface duplicates package-0"
    );
    let total = d.power.clone().unwrap();
    assert_eq!(total.members, ["rapl:psys"]);
    assert_eq!(total.kind, Kind::EnergyJ);
    assert_eq!(d.primary_temp.as_deref(), Some("thermal:x86_pkg_temp"));
    assert_eq!(
        value(&mut d, "hwmon:coretemp:Package id 0"),
        Reading::Ok(52.0)
    );
    assert!(detail(&d, "cooling_devices").starts_with("Processor, Processor"));
    assert_eq!(
        value(&mut d, "thermal:throttling_devices"),
        Reading::Ok(0.0)
    );
    // Battery power is there too (power_now, discharging), just not the total.
    assert_eq!(value(&mut d, "battery:BAT0:power"), Reading::Ok(7.843));

    // The counter series read joules since discovery; the total is the psys counter.
    let first = total_w(&mut d);
    let psys = t
        .path()
        .join("root/sys/class/powercap/intel-rapl:1/energy_uj");
    let max = 262_143_328_850u64;
    let before = 262_143_000_000u64;
    assert_eq!(
        fs::read_to_string(&psys).unwrap().trim(),
        before.to_string()
    );
    // 12.5 J later the counter has wrapped past max_energy_range_uj.
    let after = (before + 12_500_000) % max;
    fs::write(&psys, format!("{after}\n")).unwrap();
    let second = total_w(&mut d);
    close(second - first, 12.5);
}

#[test]
fn every_tree_reports_a_status_for_the_common_sources() {
    for name in [
        "pixel",
        "galaxy",
        "orin-nano",
        "agx-orin",
        "jetson-nano-l4t32",
        "rpi5",
        "rpi4",
        "x86-laptop-rapl",
    ] {
        let d = device(name);
        let names: Vec<String> = d.source_statuses().into_iter().map(|s| s.name).collect();
        for s in [
            "thermal_zones",
            "hwmon",
            "cpufreq",
            "rapl",
            "battery",
            "power_total",
        ] {
            assert!(names.iter().any(|n| n == s), "{name}: no {s} in {names:?}");
        }
        assert_eq!(status(&d, "thermal_zones"), "ok", "{name}");
        assert_eq!(status(&d, "cpufreq"), "ok", "{name}");
    }
}

#[test]
fn this_machine_is_described_without_panicking() {
    let root = FsRoot::new("/");
    let d = discover(&root, &Commands::Live);
    for s in d.source_statuses() {
        assert!(["ok", "unreadable", "absent"].contains(&s.status.as_str()));
    }
}
