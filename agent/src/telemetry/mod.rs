//! On-device telemetry: what the agent can measure while the engine runs.
//!
//! Discovery ([`discover`]) looks at the device once and returns [`Group`]s of readers, each
//! producing one or more named [`Series`] (a temperature, a rail's power, a cumulative energy
//! counter, ...), plus the rule that turns some of them into the device's total power. Every
//! value is a [`Reading`]: `Ok`, `Unreadable(reason)` or `Absent`, never a silent zero.
//!
//! Sensors are found by name, type or label (`/sys/class/thermal/*/type`, hwmon `name`,
//! INA3221 `in*_label`, RAPL `name`), never by the number in `hwmonN` or `thermal_zoneN`, which
//! changes between boots. Every file is read under [`FsRoot`] and every command goes through
//! [`cmd::Commands`], so tests point both at trees captured from real devices
//! (`testbed/devices/<name>/`).
//!
//! The [`sampler`] thread reads the groups at absolute deadlines; [`energy`] turns its samples
//! into per-pass energy, power and temperature figures.

pub mod android;
pub mod battery;
pub mod cmd;
pub mod cpufreq;
pub mod energy;
pub mod external;
pub mod hwmon;
pub mod jetson;
pub mod pass;
pub mod rapl;
pub mod rpi;
pub mod sampler;
pub mod sysfs;
pub mod thermal;

use crate::fsroot::FsRoot;
use cmd::Commands;

/// One reading of a sensor. `Unreadable` carries why (EACCES, a parse error, "charging");
/// `Absent` means the device does not have it.
#[derive(Clone, Debug, PartialEq)]
pub enum Reading<T> {
    Ok(T),
    Unreadable(String),
    Absent,
}

impl<T> Reading<T> {
    pub fn ok(self) -> Option<T> {
        match self {
            Reading::Ok(v) => Some(v),
            _ => None,
        }
    }

    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Reading<U> {
        match self {
            Reading::Ok(v) => Reading::Ok(f(v)),
            Reading::Unreadable(r) => Reading::Unreadable(r),
            Reading::Absent => Reading::Absent,
        }
    }

    pub fn and_then<U>(self, f: impl FnOnce(T) -> Reading<U>) -> Reading<U> {
        match self {
            Reading::Ok(v) => f(v),
            Reading::Unreadable(r) => Reading::Unreadable(r),
            Reading::Absent => Reading::Absent,
        }
    }

    /// `ok`, `unreadable` or `absent`, as the protocol's `SourceStatus` spells it.
    pub fn status(&self) -> &'static str {
        match self {
            Reading::Ok(_) => "ok",
            Reading::Unreadable(_) => "unreadable",
            Reading::Absent => "absent",
        }
    }
}

/// What a series measures, and in which unit its values are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Degrees Celsius.
    TempC,
    /// Watts, instantaneous.
    PowerW,
    /// Joules, cumulative since discovery (counter wraparound already undone).
    EnergyJ,
    /// MHz.
    FreqMhz,
    /// Android thermal status 0 (none) .. 6 (shutdown).
    ThermalStatus,
    /// Raspberry Pi `get_throttled` bits.
    ThrottleBits,
    /// How many frequency-limiting cooling devices are active (Linux `cooling_device*`).
    ThrottleCount,
    /// Battery level, percent.
    CapacityPct,
    /// Battery status as `dumpsys battery` numbers it: 1 unknown, 2 charging, 3 discharging,
    /// 4 not charging, 5 full.
    BatteryStatus,
}

/// How often a group is read: power at the power rate, temperatures and clocks at the slow
/// rate, readers that spawn a process (vcgencmd, dumpsys, a meter command) at the command rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rate {
    Power,
    Slow,
    Command,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// `source:name`, e.g. `thermal:tj-therm`, `ina3221:VDD_IN`, `rapl:package-0`.
    pub name: String,
    pub kind: Kind,
}

/// Reads one or more series at once (one INA3221 chip, one `vcgencmd pmic_read_adc` call).
pub struct Group {
    pub rate: Rate,
    pub series: Vec<Series>,
    read: Box<dyn FnMut() -> Vec<Reading<f64>> + Send>,
}

impl Group {
    pub fn new(
        rate: Rate,
        series: Vec<Series>,
        read: impl FnMut() -> Vec<Reading<f64>> + Send + 'static,
    ) -> Group {
        Group {
            rate,
            series,
            read: Box::new(read),
        }
    }

    /// One series read by a function returning one value.
    pub fn single(
        rate: Rate,
        name: String,
        kind: Kind,
        mut read: impl FnMut() -> Reading<f64> + Send + 'static,
    ) -> Group {
        Group::new(rate, vec![Series { name, kind }], move || vec![read()])
    }

    /// One value per series, in order.
    pub fn read(&mut self) -> Vec<Reading<f64>> {
        let mut v = (self.read)();
        v.resize(
            self.series.len(),
            Reading::Unreadable("reader returned too few values".into()),
        );
        v
    }
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group")
            .field("rate", &self.rate)
            .field("series", &self.series)
            .finish()
    }
}

/// How the device's total power is formed from its series.
#[derive(Clone, Debug, PartialEq)]
pub struct PowerTotal {
    /// Names of the series summed (all of one rate and one kind).
    pub members: Vec<String>,
    /// `PowerW` (integrate with the trapezoid rule) or `EnergyJ` (counter deltas).
    pub kind: Kind,
    /// Why these members and not others, e.g. "VDD_IN (module input; the other rails are inside it)".
    pub rule: String,
    /// True when the total leaves known consumers out (Pi 5 PMIC rails).
    pub lower_bound: bool,
    /// True when measured at the battery: invalid while a charger is connected.
    pub battery_side: bool,
}

/// One telemetry source as `probe` reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceInfo {
    pub name: String,
    pub status: Reading<String>,
}

impl SourceInfo {
    pub fn new(name: &str, status: Reading<String>) -> SourceInfo {
        SourceInfo {
            name: name.to_string(),
            status,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Android,
    Jetson,
    RaspberryPi,
    Linux,
}

/// Who the device is, from files and identity commands (getprop, device tree, DMI).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Identity {
    pub model: Option<String>,
    pub manufacturer: Option<String>,
    pub soc: Option<String>,
    pub os_version: Option<String>,
    /// Board-specific details: L4T release, nvpmodel mode, Pi revision, build fingerprint.
    pub details: Vec<(String, String)>,
}

impl Identity {
    #[allow(dead_code)] // used by the device-tree tests
    pub fn detail(&self, key: &str) -> Option<&str> {
        self.details
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Everything discovery found on a device.
#[derive(Debug)]
pub struct Discovery {
    pub family: Family,
    pub identity: Identity,
    pub sources: Vec<SourceInfo>,
    pub groups: Vec<Group>,
    pub power: Option<PowerTotal>,
    /// The temperature series the pass figures (start/max/end) use.
    pub primary_temp: Option<String>,
}

impl Discovery {
    // Used by the device-tree tests (agent/tests/telemetry_*.rs).
    #[allow(dead_code)]
    pub fn series(&self) -> impl Iterator<Item = (&Group, &Series)> {
        self.groups
            .iter()
            .flat_map(|g| g.series.iter().map(move |s| (g, s)))
    }

    // Used by the device-tree tests (agent/tests/telemetry_*.rs).
    #[allow(dead_code)]
    pub fn has_series(&self, name: &str) -> bool {
        self.series().any(|(_, s)| s.name == name)
    }

    // Used by the device-tree tests (agent/tests/telemetry_*.rs).
    #[allow(dead_code)]
    pub fn source(&self, name: &str) -> Option<&SourceInfo> {
        self.sources.iter().find(|s| s.name == name)
    }

    // Used by the device-tree tests (agent/tests/telemetry_*.rs).
    #[allow(dead_code)]
    /// Reads every group once and returns each series' value by name.
    pub fn read_all(&mut self) -> Vec<(String, Reading<f64>)> {
        let mut out = Vec::new();
        for g in &mut self.groups {
            let values = g.read();
            for (s, v) in g.series.iter().zip(values) {
                out.push((s.name.clone(), v));
            }
        }
        out
    }

    // Used by the device-tree tests (agent/tests/telemetry_*.rs).
    #[allow(dead_code)]
    /// Reads every group once and forms the total from the members (watts, or cumulative
    /// joules for a counter total).
    pub fn read_total(&mut self) -> Reading<f64> {
        let Some(total) = self.power.clone() else {
            return Reading::Absent;
        };
        let values = self.read_all();
        sum_members(&total.members, |name| {
            values
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .unwrap_or(Reading::Absent)
        })
    }

    /// Who the device is, for `probe` on boards whose identity the generic probe fields do not
    /// carry (phone model and SoC, Jetson module, L4T and nvpmodel mode, Pi model and
    /// revision). `None` on generic Linux, where `cpu_model` and `os_release` say it.
    pub fn identity_status(&self) -> Option<meltbench_protocol::agent::SourceStatus> {
        let family = match self.family {
            Family::Android => "Android",
            Family::Jetson => "Jetson",
            Family::RaspberryPi => "Raspberry Pi",
            Family::Linux => return None,
        };
        let id = &self.identity;
        let mut parts: Vec<String> = [&id.manufacturer, &id.model, &id.soc, &id.os_version]
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        parts.extend(id.details.iter().map(|(k, v)| format!("{k} {v}")));
        Some(meltbench_protocol::agent::SourceStatus {
            name: "device_identity".into(),
            status: "ok".into(),
            detail: Some(format!("{family}: {}", parts.join(", "))),
        })
    }

    /// Discovery results in the protocol's form, for `probe`.
    pub fn source_statuses(&self) -> Vec<meltbench_protocol::agent::SourceStatus> {
        let mut out: Vec<_> = self
            .sources
            .iter()
            .map(|s| meltbench_protocol::agent::SourceStatus {
                name: s.name.clone(),
                status: s.status.status().to_string(),
                detail: match &s.status {
                    Reading::Ok(d) | Reading::Unreadable(d) => Some(d.clone()),
                    Reading::Absent => None,
                },
            })
            .collect();
        let total = match &self.power {
            Some(t) => meltbench_protocol::agent::SourceStatus {
                name: "power_total".into(),
                status: "ok".into(),
                detail: Some(format!(
                    "{}{}{}",
                    t.rule,
                    if t.lower_bound { "; a lower bound" } else { "" },
                    if t.battery_side {
                        "; battery side: invalid while charging"
                    } else {
                        ""
                    }
                )),
            },
            None => meltbench_protocol::agent::SourceStatus {
                name: "power_total".into(),
                status: "absent".into(),
                detail: Some("no readable power or energy source on this device".into()),
            },
        };
        out.push(total);
        out
    }
}

/// Sum of the members' readings; any member not `Ok` makes the sum not `Ok` (with its reason).
pub fn sum_members(members: &[String], mut get: impl FnMut(&str) -> Reading<f64>) -> Reading<f64> {
    let mut sum = 0.0;
    for m in members {
        match get(m) {
            Reading::Ok(v) => sum += v,
            Reading::Unreadable(r) => return Reading::Unreadable(format!("{m}: {r}")),
            Reading::Absent => return Reading::Unreadable(format!("{m}: absent")),
        }
    }
    Reading::Ok(sum)
}

/// Collects groups and source statuses while the per-family discoverers run.
#[derive(Default)]
pub struct Found {
    pub groups: Vec<Group>,
    pub sources: Vec<SourceInfo>,
    /// Candidate totals with a priority (lower wins).
    pub totals: Vec<(u8, PowerTotal)>,
}

impl Found {
    pub fn new() -> Found {
        Found::default()
    }

    pub fn source(&mut self, name: &str, status: Reading<String>) {
        self.sources.push(SourceInfo::new(name, status));
    }
}

/// Priorities of total-power candidates: a meter outside the device beats on-board rails, which
/// beat counters covering the SoC, which beat the battery (valid only while discharging).
pub mod priority {
    pub const EXTERNAL: u8 = 0;
    pub const BOARD_RAILS: u8 = 1;
    pub const INA2XX: u8 = 2;
    pub const PMIC: u8 = 3;
    pub const RAPL: u8 = 4;
    pub const BATTERY: u8 = 5;
}

/// Looks at the device under `root` (and its commands) and returns what can be measured.
pub fn discover(root: &FsRoot, cmds: &Commands) -> Discovery {
    let props = android::getprop(root, cmds);
    let family = if props.is_some() || root.exists("/system/build.prop") {
        Family::Android
    } else if jetson::is_jetson(root) {
        Family::Jetson
    } else if rpi::is_rpi(root) {
        Family::RaspberryPi
    } else {
        Family::Linux
    };
    let mut found = Found::new();
    let mut identity = match family {
        Family::Android => android::identity(root, props.as_deref()),
        Family::Jetson => jetson::identity(root),
        Family::RaspberryPi => rpi::identity(root),
        Family::Linux => linux_identity(root),
    };
    let zones = thermal::discover(root, &mut found);
    thermal::discover_cooling(root, &mut found);
    hwmon::discover(root, &mut found);
    cpufreq::discover(root, &mut found);
    rapl::discover(root, &mut found);
    battery::discover(root, family == Family::Android, &mut found);
    match family {
        Family::Android => android::discover(cmds, &mut found),
        Family::Jetson => jetson::discover(root, cmds, &mut identity, &mut found),
        Family::RaspberryPi => rpi::discover(cmds, &mut identity, &mut found),
        Family::Linux => {}
    }
    external::discover(cmds, &mut found);
    found.totals.sort_by_key(|(p, _)| *p);
    let power = found.totals.into_iter().next().map(|(_, t)| t);
    Discovery {
        family,
        identity,
        sources: found.sources,
        groups: found.groups,
        power,
        primary_temp: thermal::primary(&zones),
    }
}

fn linux_identity(root: &FsRoot) -> Identity {
    let dmi = |f: &str| root.read_trimmed(&format!("/sys/class/dmi/id/{f}"));
    let soc = root.read("/proc/cpuinfo").ok().and_then(|info| {
        info.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == "model name").then(|| v.trim().to_string())
        })
    });
    Identity {
        model: dmi("product_name"),
        manufacturer: dmi("sys_vendor"),
        soc,
        os_version: os_release(root),
        details: Vec::new(),
    }
}

pub(crate) fn os_release(root: &FsRoot) -> Option<String> {
    let text = root.read("/etc/os-release").ok()?;
    text.lines().find_map(|l| {
        let v = l.strip_prefix("PRETTY_NAME=")?.trim();
        let v = v.trim_matches('"').trim_matches('\'');
        (!v.is_empty()).then(|| v.to_string())
    })
}

/// The device-tree model (NUL-terminated in the file).
pub(crate) fn dt_model(root: &FsRoot) -> Option<String> {
    let raw = std::fs::read(root.path("/proc/device-tree/model")).ok()?;
    let s = String::from_utf8_lossy(&raw);
    let s = s.trim_end_matches('\0').trim();
    (!s.is_empty()).then(|| s.to_string())
}
