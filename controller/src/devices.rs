//! The device inventory (`devices.yaml`): every device a suite can run on, and how to reach it.
//!
//! ```yaml
//! devices:
//!   - name: local                 # unique; letters, digits, '.', '_', '-'
//!     transport: local            # local | ssh | adb
//!     tags: [laptop]              # free-form labels; a suite selects them with `tag:laptop`
//!   - name: rpi5
//!     transport: ssh
//!     host: rpi5.local            # required for ssh
//!     port: 22                    # default 22
//!     user: pi                    # default: ssh's own default
//!     identity: ~/.ssh/id_ed25519 # private key; ssh-agent when omitted
//!     known_hosts: strict         # strict (default) | accept-new
//!     host_key_fingerprint: SHA256:...  # pin the host key instead of trusting known_hosts
//!     known_hosts_file: ~/.ssh/known_hosts # where host keys are checked and recorded
//!   - name: pixel8
//!     transport: adb
//!     serial: 37211FDJH000AB      # required for adb: what `adb devices` prints
//!     adb_server: 127.0.0.1:5037  # host:port of the adb server (default 127.0.0.1:5037)
//!     workdir: /data/local/tmp/meltbench   # where the agent keeps its files (default per OS)
//!   - name: arm-emu
//!     transport: local
//!     emulator: qemu-aarch64 -L /usr/aarch64-linux-gnu   # run the agent under a wrapper
//!     target: aarch64-unknown-linux-musl                # which bundle to run
//! ```
//!
//! Keys that belong to another transport (a `host` on an adb device) are errors, so a typo in
//! `transport` cannot silently drop the connection settings.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::yaml::shape::Shape;
use crate::yaml::{self, present, Argv, Diagnostics, Field, Raw, Report};

/// Default adb server, as `adb` itself uses.
pub const DEFAULT_ADB_SERVER: &str = "127.0.0.1:5037";

/// The name of the device every inventory can fall back to: this machine.
pub const LOCAL: &str = "local";

/// A validated device inventory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inventory {
    /// The file it was read from; `None` for [`Inventory::default_local`].
    pub path: Option<PathBuf>,
    /// Devices in file order; names are unique.
    pub devices: Vec<Device>,
}

/// One device of the inventory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    /// Unique name; used in run directories (`events/<name>.jsonl`) and reports.
    pub name: String,
    /// Free-form labels suites select devices by (`devices: [tag:phone]`).
    pub tags: Vec<String>,
    /// Where the agent keeps its files on the device; `None`: the per-OS default.
    pub workdir: Option<String>,
    /// How to reach the device.
    pub transport: Transport,
}

/// How the controller reaches a device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    /// This machine, optionally through an emulator wrapper (e.g. `qemu-aarch64`).
    Local {
        /// Command the agent is run under, e.g. `["qemu-aarch64", "-L", "/usr/aarch64-linux-gnu"]`.
        emulator: Option<Vec<String>>,
        /// Target triple of the bundle to run; `None`: the controller's own.
        target: Option<String>,
    },
    /// A Linux machine over SSH.
    Ssh(SshTarget),
    /// An Android device through an adb server.
    Adb {
        /// The device's serial, as `adb devices` prints it.
        serial: String,
        /// `host:port` of the adb server.
        server: String,
    },
}

impl Transport {
    /// `local`, `ssh` or `adb`.
    pub fn kind(&self) -> &'static str {
        match self {
            Transport::Local { .. } => "local",
            Transport::Ssh(_) => "ssh",
            Transport::Adb { .. } => "adb",
        }
    }
}

/// Connection settings of an SSH device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshTarget {
    pub host: String,
    pub port: u16,
    /// `None`: the current user name, as ssh does.
    pub user: Option<String>,
    /// Private key file as written (a leading `~` is expanded by the transport); `None`: ssh-agent.
    pub identity: Option<String>,
    pub known_hosts: KnownHosts,
    /// `SHA256:<base64>` as `ssh-keygen -lf` prints it; when set, the host key must match it.
    pub host_key_fingerprint: Option<String>,
    /// The known_hosts file to check and (with `accept-new`) record in; `None`:
    /// `~/.ssh/known_hosts`. A leading `~` is expanded by the transport.
    pub known_hosts_file: Option<String>,
}

/// What to do with a host key that is not in `~/.ssh/known_hosts`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KnownHosts {
    /// Refuse to connect (the default).
    Strict,
    /// Trust and record a key the first time; refuse a changed key.
    AcceptNew,
}

impl Inventory {
    /// The inventory used when no devices file is given: just this machine.
    pub fn default_local() -> Inventory {
        Inventory {
            path: None,
            devices: vec![Device {
                name: LOCAL.into(),
                tags: Vec::new(),
                workdir: None,
                transport: Transport::Local {
                    emulator: None,
                    target: None,
                },
            }],
        }
    }

    pub fn get(&self, name: &str) -> Option<&Device> {
        self.devices.iter().find(|d| d.name == name)
    }

    /// Devices carrying `tag`, in inventory order.
    pub fn tagged<'a>(&'a self, tag: &'a str) -> impl Iterator<Item = &'a Device> + 'a {
        self.devices
            .iter()
            .filter(move |d| d.tags.iter().any(|t| t == tag))
    }

    /// Names of all devices, for messages.
    pub fn names(&self) -> Vec<&str> {
        self.devices.iter().map(|d| d.name.as_str()).collect()
    }
}

/// Read and validate a devices file.
pub fn load_inventory(path: &Path) -> Result<Inventory, Diagnostics> {
    let text = yaml::read(path)?;
    parse_inventory(path, &text)
}

/// Validate the text of a devices file; `path` is used in messages.
pub fn parse_inventory(path: &Path, text: &str) -> Result<Inventory, Diagnostics> {
    let file: InventoryFile = yaml::parse_shaped(path, text, &inventory_shape())?;
    let mut report = Report::new(path, text);
    let devices = check(&mut report, file);
    if report.has_errors() {
        return Err(report.finish());
    }
    Ok(Inventory {
        path: Some(path.to_path_buf()),
        devices,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InventoryFile {
    /// The devices, in the order runs list them.
    #[serde(default, deserialize_with = "present")]
    devices: Field<Vec<Spanned<DeviceFile>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceFile {
    #[serde(default, deserialize_with = "present")]
    name: Field<String>,
    #[serde(default, deserialize_with = "present")]
    transport: Field<String>,
    #[serde(default, deserialize_with = "present")]
    tags: Field<Vec<Spanned<String>>>,
    #[serde(default, deserialize_with = "present")]
    workdir: Field<String>,
    // ssh
    #[serde(default, deserialize_with = "present")]
    host: Field<String>,
    #[serde(default, deserialize_with = "present")]
    port: Field<Raw>,
    #[serde(default, deserialize_with = "present")]
    user: Field<String>,
    #[serde(default, deserialize_with = "present")]
    identity: Field<String>,
    #[serde(default, deserialize_with = "present")]
    known_hosts: Field<String>,
    #[serde(default, deserialize_with = "present")]
    host_key_fingerprint: Field<String>,
    #[serde(default, deserialize_with = "present")]
    known_hosts_file: Field<String>,
    // adb
    #[serde(default, deserialize_with = "present")]
    serial: Field<String>,
    #[serde(default, deserialize_with = "present")]
    adb_server: Field<String>,
    // local
    #[serde(default, deserialize_with = "present")]
    emulator: Field<Argv>,
    #[serde(default, deserialize_with = "present")]
    target: Field<String>,
}

const TRANSPORTS: &str = "local, ssh, adb";

/// The inventory's shape, for reporting every unknown key and misshapen value at once.
fn inventory_shape() -> Shape {
    Shape::map_of::<InventoryFile>(vec![(
        "devices",
        Shape::list_of(Shape::map_of::<DeviceFile>(vec![
            ("tags", Shape::list_of(Shape::Value)),
            ("name", Shape::Value),
            ("transport", Shape::Value),
            ("workdir", Shape::Value),
            ("host", Shape::Value),
            ("user", Shape::Value),
            ("serial", Shape::Value),
        ])),
    )])
}

fn check(r: &mut Report, file: InventoryFile) -> Vec<Device> {
    let example = "a list of devices: `devices: [{name: local, transport: local}]`";
    let Some(list) = r.required(file.devices.as_ref(), "devices", example) else {
        return Vec::new();
    };
    r.non_empty(list, "devices", "list at least one device");
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut out = Vec::new();
    for entry in &list.value {
        let d = &entry.value;
        let name = match &d.name {
            None => {
                r.on(
                    entry,
                    "device has no 'name' (each device needs a unique name)",
                );
                None
            }
            Some(n) if !yaml::is_simple_name(&n.value) => {
                r.on(
                    n,
                    format!(
                        "invalid device name '{}' (allowed: {})",
                        n.value,
                        yaml::SIMPLE_NAME_RULE
                    ),
                );
                None
            }
            Some(n) => {
                if let Some(first) = seen.get(&n.value) {
                    r.on(
                        n,
                        format!(
                            "duplicate device name '{}' (first defined at {first}); names must be unique",
                            n.value
                        ),
                    );
                } else {
                    seen.insert(n.value.clone(), r.place(n));
                }
                Some(n.value.clone())
            }
        };
        let tags = check_tags(r, d);
        let workdir = d.workdir.as_ref().and_then(|w| {
            if w.value.trim().is_empty() {
                r.on(w, "workdir is empty (omit it to use the default)");
                None
            } else {
                Some(w.value.clone())
            }
        });
        let transport = check_transport(r, entry, d);
        if let (Some(name), Some(transport)) = (name, transport) {
            out.push(Device {
                name,
                tags,
                workdir,
                transport,
            });
        }
    }
    out
}

fn check_tags(r: &mut Report, d: &DeviceFile) -> Vec<String> {
    let mut tags = Vec::new();
    for t in d.tags.iter().flat_map(|t| &t.value) {
        if !yaml::is_simple_name(&t.value) {
            r.on(
                t,
                format!(
                    "invalid tag '{}' (allowed: {})",
                    t.value,
                    yaml::SIMPLE_NAME_RULE
                ),
            );
        } else if !tags.contains(&t.value) {
            tags.push(t.value.clone());
        }
    }
    tags
}

fn check_transport(
    r: &mut Report,
    entry: &Spanned<DeviceFile>,
    d: &DeviceFile,
) -> Option<Transport> {
    let Some(kind) = &d.transport else {
        r.on(
            entry,
            format!("device has no 'transport' (allowed: {TRANSPORTS})"),
        );
        return None;
    };
    let kind_name = kind.value.as_str();
    if !matches!(kind_name, "local" | "ssh" | "adb") {
        r.on(
            kind,
            format!("unknown transport '{kind_name}' (allowed: {TRANSPORTS})"),
        );
        return None;
    }
    // Keys that only make sense for one transport.
    let owned: [(&str, &str, Option<yaml::Pos>); 11] = [
        ("host", "ssh", d.host.as_ref().map(yaml::Pos::of)),
        ("port", "ssh", d.port.as_ref().map(yaml::Pos::of)),
        ("user", "ssh", d.user.as_ref().map(yaml::Pos::of)),
        ("identity", "ssh", d.identity.as_ref().map(yaml::Pos::of)),
        (
            "known_hosts",
            "ssh",
            d.known_hosts.as_ref().map(yaml::Pos::of),
        ),
        (
            "host_key_fingerprint",
            "ssh",
            d.host_key_fingerprint.as_ref().map(yaml::Pos::of),
        ),
        (
            "known_hosts_file",
            "ssh",
            d.known_hosts_file.as_ref().map(yaml::Pos::of),
        ),
        ("serial", "adb", d.serial.as_ref().map(yaml::Pos::of)),
        (
            "adb_server",
            "adb",
            d.adb_server.as_ref().map(yaml::Pos::of),
        ),
        ("emulator", "local", d.emulator.as_ref().map(yaml::Pos::of)),
        ("target", "local", d.target.as_ref().map(yaml::Pos::of)),
    ];
    let mut misplaced = false;
    for (key, owner, pos) in owned {
        if let Some(pos) = pos {
            if owner != kind_name {
                r.at(
                    pos,
                    format!(
                        "'{key}' only applies to {owner} devices, and this one has transport '{kind_name}'"
                    ),
                );
                misplaced = true;
            }
        }
    }
    if misplaced {
        return None;
    }
    match kind_name {
        "local" => check_local(r, d),
        "ssh" => check_ssh(r, entry, d).map(Transport::Ssh),
        _ => check_adb(r, entry, d),
    }
}

fn check_local(r: &mut Report, d: &DeviceFile) -> Option<Transport> {
    let mut ok = true;
    let emulator = match &d.emulator {
        Some(e) if e.value.0.is_empty() || e.value.0.iter().any(|w| w.is_empty()) => {
            r.on(
                e,
                "emulator is empty (a command such as `qemu-aarch64 -L /usr/aarch64-linux-gnu`)",
            );
            ok = false;
            None
        }
        Some(e) => Some(e.value.0.clone()),
        None => None,
    };
    let target = match &d.target {
        Some(t) if !is_target_triple(&t.value) => {
            r.on(
                t,
                format!(
                    "invalid target triple '{}' (e.g. aarch64-unknown-linux-musl, x86_64-unknown-linux-gnu)",
                    t.value
                ),
            );
            ok = false;
            None
        }
        Some(t) => Some(t.value.clone()),
        None => None,
    };
    ok.then_some(Transport::Local { emulator, target })
}

fn check_ssh(r: &mut Report, entry: &Spanned<DeviceFile>, d: &DeviceFile) -> Option<SshTarget> {
    let mut ok = true;
    let host = match &d.host {
        None => {
            r.on(entry, "ssh device has no 'host' (a hostname or IP address)");
            ok = false;
            String::new()
        }
        Some(h) if h.value.trim().is_empty() || h.value.chars().any(|c| c.is_whitespace()) => {
            r.on(
                h,
                format!("invalid host '{}' (a hostname or IP address)", h.value),
            );
            ok = false;
            String::new()
        }
        Some(h) => h.value.clone(),
    };
    let port = match &d.port {
        None => 22,
        Some(p) => match r.whole("port", p, 1, 65535) {
            Some(p) => p as u16,
            None => {
                ok = false;
                0
            }
        },
    };
    let user = d.user.as_ref().and_then(|u| {
        if u.value.trim().is_empty() || u.value.chars().any(|c| c.is_whitespace()) {
            r.on(u, format!("invalid user '{}'", u.value));
            ok = false;
            None
        } else {
            Some(u.value.clone())
        }
    });
    let identity = d.identity.as_ref().and_then(|i| {
        if i.value.trim().is_empty() {
            r.on(
                i,
                "identity is empty (a private key file; omit it to use ssh-agent)",
            );
            ok = false;
            None
        } else {
            Some(i.value.clone())
        }
    });
    let known_hosts = match d.known_hosts.as_ref().map(|k| (k, k.value.as_str())) {
        None | Some((_, "strict")) => KnownHosts::Strict,
        Some((_, "accept-new")) => KnownHosts::AcceptNew,
        Some((k, other)) => {
            r.on(
                k,
                format!("unknown known_hosts policy '{other}' (allowed: strict, accept-new)"),
            );
            ok = false;
            KnownHosts::Strict
        }
    };
    let host_key_fingerprint = d.host_key_fingerprint.as_ref().and_then(|f| {
        if is_sha256_fingerprint(&f.value) {
            Some(f.value.clone())
        } else {
            r.on(
                f,
                format!(
                    "invalid host_key_fingerprint '{}' (expected SHA256:<43 base64 characters>, as `ssh-keygen -lf` prints it)",
                    f.value
                ),
            );
            ok = false;
            None
        }
    });
    let known_hosts_file = d.known_hosts_file.as_ref().and_then(|f| {
        if f.value.trim().is_empty() {
            r.on(
                f,
                "known_hosts_file is empty (omit it to use ~/.ssh/known_hosts)",
            );
            ok = false;
            None
        } else {
            Some(f.value.clone())
        }
    });
    ok.then_some(SshTarget {
        host,
        port,
        user,
        identity,
        known_hosts,
        host_key_fingerprint,
        known_hosts_file,
    })
}

fn check_adb(r: &mut Report, entry: &Spanned<DeviceFile>, d: &DeviceFile) -> Option<Transport> {
    let mut ok = true;
    let serial = match &d.serial {
        None => {
            r.on(
                entry,
                "adb device has no 'serial' (what `adb devices` prints for it)",
            );
            ok = false;
            String::new()
        }
        Some(s) if s.value.trim().is_empty() || s.value.chars().any(char::is_whitespace) => {
            r.on(s, format!("invalid serial '{}'", s.value));
            ok = false;
            String::new()
        }
        Some(s) => s.value.clone(),
    };
    let server = match &d.adb_server {
        None => DEFAULT_ADB_SERVER.to_string(),
        Some(s) if is_host_port(&s.value) => s.value.clone(),
        Some(s) => {
            r.on(
                s,
                format!(
                    "invalid adb_server '{}' (expected host:port, e.g. {DEFAULT_ADB_SERVER})",
                    s.value
                ),
            );
            ok = false;
            String::new()
        }
    };
    ok.then_some(Transport::Adb { serial, server })
}

/// `host:port` with a port in 1..=65535 (`[::1]:5037` for IPv6).
fn is_host_port(s: &str) -> bool {
    let Some((host, port)) = s.rsplit_once(':') else {
        return false;
    };
    let host_ok = !host.is_empty() && !host.chars().any(char::is_whitespace);
    host_ok && matches!(port.parse::<u16>(), Ok(p) if p > 0)
}

fn is_target_triple(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    (2..=5).contains(&parts.len())
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        })
}

fn is_sha256_fingerprint(s: &str) -> bool {
    let Some(b64) = s.strip_prefix("SHA256:") else {
        return false;
    };
    let b64 = b64.trim_end_matches('=');
    b64.len() == 43
        && b64
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Inventory, String> {
        parse_inventory(Path::new("devices.yaml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn the_repository_inventory_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../devices.yaml");
        let inv = load_inventory(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(inv.names(), ["local"]);
    }

    #[test]
    fn every_transport_parses_with_defaults() {
        let inv = parse(
            "devices:\n\
             - {name: local, transport: local, tags: [laptop]}\n\
             - {name: rpi5, transport: ssh, host: rpi5.local, user: pi}\n\
             - {name: pixel8, transport: adb, serial: 37211FDJH000AB}\n\
             - {name: emu, transport: local, emulator: qemu-aarch64 -L /x, target: aarch64-unknown-linux-musl}\n",
        )
        .unwrap();
        assert_eq!(inv.devices.len(), 4);
        match &inv.devices[1].transport {
            Transport::Ssh(s) => {
                assert_eq!((s.host.as_str(), s.port), ("rpi5.local", 22));
                assert_eq!(s.known_hosts, KnownHosts::Strict);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            inv.devices[2].transport,
            Transport::Adb {
                serial: "37211FDJH000AB".into(),
                server: DEFAULT_ADB_SERVER.into()
            }
        );
        assert_eq!(
            inv.devices[3].transport,
            Transport::Local {
                emulator: Some(vec!["qemu-aarch64".into(), "-L".into(), "/x".into()]),
                target: Some("aarch64-unknown-linux-musl".into())
            }
        );
        assert_eq!(inv.tagged("laptop").count(), 1);
    }

    #[test]
    fn duplicate_names_cite_both_positions() {
        let e = parse(
            "devices:\n  - name: a\n    transport: local\n  - name: a\n    transport: local\n",
        )
        .unwrap_err();
        assert_eq!(
            e,
            "devices.yaml:4:11: duplicate device name 'a' (first defined at devices.yaml:2:11); names must be unique"
        );
    }

    #[test]
    fn transport_problems_have_positions() {
        let e = parse("devices:\n  - name: a\n    transport: telnet\n").unwrap_err();
        assert_eq!(
            e,
            "devices.yaml:3:16: unknown transport 'telnet' (allowed: local, ssh, adb)"
        );
        let e = parse("devices:\n  - name: a\n    transport: adb\n    host: x\n").unwrap_err();
        assert_eq!(
            e,
            "devices.yaml:4:11: 'host' only applies to ssh devices, and this one has transport 'adb'"
        );
        let e = parse("devices:\n  - name: a\n    transport: ssh\n").unwrap_err();
        assert_eq!(
            e,
            "devices.yaml:2:5: ssh device has no 'host' (a hostname or IP address)"
        );
        let e =
            parse("devices:\n  - {name: a, transport: ssh, host: h, port: 70000}\n").unwrap_err();
        assert_eq!(
            e,
            "devices.yaml:2:46: port must be a whole number from 1 to 65535, got '70000'"
        );
        let e = parse("devices:\n  - {name: a, transport: adb, serial: s, adb_server: nope}\n")
            .unwrap_err();
        assert!(
            e.starts_with("devices.yaml:2:54: invalid adb_server 'nope'"),
            "{e}"
        );
        let e = parse("devices:\n  - {name: a, transport: ssh, host: h, known_hosts: yolo}\n")
            .unwrap_err();
        assert!(e.contains("(allowed: strict, accept-new)"), "{e}");
        let e = parse("devices:\n  - {name: a, transport: local, colour: red}\n").unwrap_err();
        assert!(
            e.starts_with(
                "devices.yaml:2:33: unknown key 'colour' (allowed: name, transport, tags"
            ),
            "{e}"
        );
    }

    #[test]
    fn fingerprints_and_server_addresses() {
        assert!(is_sha256_fingerprint(
            "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s"
        ));
        assert!(!is_sha256_fingerprint("MD5:aa:bb"));
        assert!(is_host_port("127.0.0.1:5037"));
        assert!(is_host_port("[::1]:5037"));
        assert!(!is_host_port("127.0.0.1"));
        assert!(!is_host_port("h:0"));
    }
}
