//! The suite's `devices:`, `threads:` and `states:` checked against the inventory and what states
//! can be reached.

use super::*;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StateFile {
    #[serde(default, deserialize_with = "present")]
    thermal: Field<String>,
    /// Levels in percent; each makes its own state.
    #[serde(default, deserialize_with = "present")]
    battery: Field<Vec<Spanned<Raw>>>,
    #[serde(default, deserialize_with = "present")]
    battery_mode: Field<String>,
}

/// The suite's `devices:` resolved against the inventory; without the key, every device.
pub(super) fn check_devices(
    r: &mut Report,
    list: Option<&Spanned<Vec<Spanned<String>>>>,
    inv: &Inventory,
) -> Vec<Device> {
    let where_ = inv.path.as_ref().map_or_else(
        || "the inventory (no devices file was given)".to_string(),
        |p| p.display().to_string(),
    );
    let known = match &inv.path {
        Some(p) => format!(
            "devices in {}: {}; or tag:<tag>",
            p.display(),
            inv.names().join(", ")
        ),
        None => format!(
            "without a devices file only {} exists; pass one with --devices",
            inv.names()
                .iter()
                .map(|n| format!("'{n}'"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let Some(list) = list else {
        return inv.devices.clone();
    };
    r.non_empty(
        list,
        "devices",
        format!("name at least one ({known}), or omit it to run on every device of the inventory"),
    );
    let mut out: Vec<Device> = Vec::new();
    let mut seen: BTreeMap<&str, Pos> = BTreeMap::new();
    for entry in &list.value {
        let name = entry.value.as_str();
        if let Some(first) = seen.get(name) {
            r.on(
                entry,
                format!(
                    "device '{name}' is listed twice (first at line {})",
                    first.line
                ),
            );
            continue;
        }
        seen.insert(name, Pos::of(entry));
        let picked: Vec<&Device> = if let Some(tag) = name.strip_prefix("tag:") {
            let tagged: Vec<&Device> = inv.tagged(tag).collect();
            if tagged.is_empty() {
                r.on(entry, format!("no device in {where_} has tag '{tag}'"));
            }
            tagged
        } else if let Some(d) = inv.get(name) {
            vec![d]
        } else {
            r.on(entry, format!("unknown device '{name}' ({known})"));
            Vec::new()
        };
        for d in picked {
            if !out.iter().any(|o| o.name == d.name) {
                out.push(d.clone());
            }
        }
    }
    out
}

pub(super) fn check_threads(
    r: &mut Report,
    list: Option<&Spanned<Vec<Spanned<Raw>>>>,
) -> Vec<Option<usize>> {
    let Some(list) = list else {
        return vec![None];
    };
    r.non_empty(
        list,
        "threads",
        "list thread counts (e.g. [1, 2, 4]) or omit it to use the device's default",
    );
    let mut out = Vec::new();
    for t in &list.value {
        if let Some(n) = r.whole("threads", t, 1, MAX_THREADS) {
            let n = Some(n as usize);
            if out.contains(&n) {
                r.on(t, format!("thread count {} is listed twice", t.value));
            } else {
                out.push(n);
            }
        }
    }
    out
}

pub(super) fn check_states(
    r: &mut Report,
    list: Option<&Spanned<Vec<Spanned<StateFile>>>>,
) -> Vec<State> {
    let Some(list) = list else {
        return vec![State::ANY];
    };
    r.non_empty(
        list,
        "states",
        "list states (e.g. [{thermal: any}]) or omit it",
    );
    let mut out: Vec<State> = Vec::new();
    for entry in &list.value {
        let s = &entry.value;
        let thermal = match &s.thermal {
            None => Some(Thermal::Any),
            Some(t) => one_of(r, t, &Thermal::ALL, Thermal::as_str, "thermal state"),
        };
        let mode = match &s.battery_mode {
            None => Some(Battery::Wait),
            Some(m) => {
                let found = one_of(r, m, &Battery::ALL, Battery::as_str, "battery_mode");
                if s.battery.is_none() {
                    r.on(
                        m,
                        "battery_mode needs battery levels beside it (e.g. battery: [100, 50, 20])",
                    );
                }
                found
            }
        };
        // Levels are checked whatever the mode, so one pass over the file reports everything.
        let levels: Option<Vec<u8>> = s.battery.as_ref().map(|levels| {
            if levels.value.is_empty() {
                r.on(
                    levels,
                    "battery is empty: list levels in percent (e.g. [100, 50, 20]) or omit it",
                );
            }
            levels
                .value
                .iter()
                .filter_map(|l| r.whole("battery", l, 1, 100))
                .map(|l| l as u8)
                .collect()
        });
        let batteries: Vec<Option<BatteryState>> = match (levels, mode) {
            (None, _) => vec![None],
            (Some(levels), Some(mode)) => levels
                .into_iter()
                .map(|level| Some(BatteryState { level, mode }))
                .collect(),
            (Some(_), None) => Vec::new(),
        };
        let Some(thermal) = thermal else { continue };
        for battery in batteries {
            let state = State { thermal, battery };
            if out.contains(&state) {
                r.on(entry, format!("state '{state}' is listed twice"));
            } else {
                out.push(state);
            }
        }
    }
    out
}

/// The value of `all` that `field` names, or a report listing the allowed names.
fn one_of<T: Copy>(
    r: &mut Report,
    field: &Spanned<String>,
    all: &[T],
    name: fn(T) -> &'static str,
    what: &str,
) -> Option<T> {
    let found = all.iter().copied().find(|x| name(*x) == field.value.trim());
    if found.is_none() {
        let allowed: Vec<&str> = all.iter().map(|x| name(*x)).collect();
        r.on(
            field,
            format!(
                "unknown {what} '{}' (allowed: {})",
                field.value,
                allowed.join(", ")
            ),
        );
    }
    found
}
