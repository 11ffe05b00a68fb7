//! `meltbench devices` and `meltbench devices probe`: what the inventory holds, what is attached
//! but not listed, and what each device says about itself.

use crate::device_error::DeviceError;
use crate::device_run;
use crate::devices::{Device, Inventory, Transport as Via, DEFAULT_ADB_SERVER};
use meltbench_protocol::agent::DeviceInfo;
use std::collections::BTreeSet;
use std::time::Duration;

/// Where a device is, in one cell of a table.
pub fn address(d: &Device) -> String {
    match &d.transport {
        Via::Local { emulator: None, .. } => "this machine".into(),
        Via::Local {
            emulator: Some(e), ..
        } => format!("this machine, under {}", e.join(" ")),
        Via::Ssh(s) => format!(
            "{}{}:{}",
            s.user
                .as_deref()
                .map(|u| format!("{u}@"))
                .unwrap_or_default(),
            s.host,
            s.port
        ),
        Via::Adb { serial, server } => format!("{serial} via {server}"),
    }
}

/// The inventory as a table: name, transport, address, tags.
pub fn inventory_table(inv: &Inventory) -> String {
    let mut b = tabled::builder::Builder::default();
    b.push_record(["name", "transport", "address", "tags"]);
    for d in &inv.devices {
        b.push_record([
            d.name.clone(),
            d.transport.kind().to_string(),
            address(d),
            d.tags.join(", "),
        ]);
    }
    b.build()
        .with(tabled::settings::Style::rounded())
        .to_string()
}

/// adb servers the inventory uses (plus the default one), each with the serials attached to it
/// that no inventory entry names, or why the server could not be asked.
pub fn unlisted_adb(
    inv: &Inventory,
    timeout: Duration,
) -> Vec<(String, Result<Vec<String>, String>)> {
    let mut servers: BTreeSet<String> = inv
        .devices
        .iter()
        .filter_map(|d| match &d.transport {
            Via::Adb { server, .. } => Some(server.clone()),
            _ => None,
        })
        .collect();
    let has_adb_devices = !servers.is_empty();
    servers.insert(DEFAULT_ADB_SERVER.to_string());
    servers
        .into_iter()
        .filter_map(|server| {
            let listed: BTreeSet<&str> = inv
                .devices
                .iter()
                .filter_map(|d| match &d.transport {
                    Via::Adb { serial, server: s } if *s == server => Some(serial.as_str()),
                    _ => None,
                })
                .collect();
            match list_adb(&server, timeout) {
                Ok(attached) => Some((
                    server,
                    Ok(attached
                        .into_iter()
                        .filter(|(serial, _)| !listed.contains(serial.as_str()))
                        .map(|(serial, state)| format!("{serial} ({state})"))
                        .collect()),
                )),
                // No adb server on the default port and no adb device listed: nothing to say.
                Err(_) if !has_adb_devices && server == DEFAULT_ADB_SERVER => None,
                Err(e) => Some((server, Err(e.to_string()))),
            }
        })
        .collect()
}

/// Probes every device at once; results in inventory order.
pub fn probe_all(devices: &[Device], timeout: Duration) -> Vec<Result<DeviceInfo, DeviceError>> {
    std::thread::scope(|s| {
        let handles: Vec<_> = devices
            .iter()
            .map(|d| s.spawn(move || device_run::probe(d, timeout)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(DeviceError::Probe("the probe crashed".to_string())))
            })
            .collect()
    })
}

/// One row per device: identity and capabilities, or the error.
pub fn probe_table(devices: &[Device], results: &[Result<DeviceInfo, DeviceError>]) -> String {
    let mut b = tabled::builder::Builder::default();
    b.push_record([
        "name",
        "os",
        "arch/abi",
        "cpu",
        "cores",
        "ram",
        "root",
        "telemetry",
        "status",
    ]);
    for (d, r) in devices.iter().zip(results) {
        match r {
            Ok(i) => {
                let readable: Vec<String> = i
                    .telemetry
                    .iter()
                    .filter(|t| t.status == "ok")
                    .map(|t| t.name.clone())
                    .collect();
                b.push_record([
                    d.name.clone(),
                    format!("{} {}", i.os, i.os_release.as_deref().unwrap_or(&i.kernel)),
                    if i.abi == i.arch {
                        i.arch.clone()
                    } else {
                        format!("{}/{}", i.arch, i.abi)
                    },
                    i.cpu_model.clone().unwrap_or_else(|| "?".into()),
                    i.cores.to_string(),
                    i.ram_bytes
                        .map(|r| format!("{:.1} GiB", r as f64 / (1u64 << 30) as f64))
                        .unwrap_or_else(|| "?".into()),
                    if i.root { "yes" } else { "no" }.into(),
                    if readable.is_empty() {
                        "none".into()
                    } else {
                        readable.join(", ")
                    },
                    "ok".into(),
                ]);
            }
            Err(e) => {
                let mut row = vec![d.name.clone()];
                row.extend(std::iter::repeat_n(String::new(), 7));
                row.push(format!("FAILED: {e}"));
                b.push_record(row);
            }
        }
    }
    b.build()
        .with(tabled::settings::Style::rounded())
        .to_string()
}

/// Serials and states attached to an adb server.
fn list_adb(server: &str, timeout: Duration) -> Result<Vec<(String, String)>, String> {
    crate::transport::adb::list_devices(server, timeout).map_err(|e| e.to_string())
}
