//! ADB device simulator — the one stand-in among meltbench's test peers — and a private real
//! adb server to attach it to.
//!
//! A phone's `adbd` cannot run on a CI machine, so [`AdbDevice`] plays its part: a TCP server on
//! 127.0.0.1 that speaks the real ADB wire protocol (the 24-byte `CNXN`/`OPEN`/`OKAY`/`WRTE`/
//! `CLSE` messages of AOSP's `protocol.txt`, the shell protocol v2 of `shell_protocol.h`, the
//! file sync protocol of `SYNC.TXT`) well enough for the real adb server (Debian package `adb`)
//! to attach it with `adb connect 127.0.0.1:PORT`, exactly as it attaches a phone in wireless
//! debugging mode. Everything else in a test is real: the controller talks to a real adb server
//! ([`AdbServer`], on its own port with its own keys), which talks to this device.
//!
//! What the device does is real as well, on this machine: `shell:` and `exec:` commands run with
//! `sh -c` in the sandbox directory with `<sandbox>/system/bin` first on `PATH`, where a
//! `getprop` script answers from `<sandbox>/system/build.prop`; the sync service (`adb push`,
//! `adb pull`) reads and writes real files, but only under the sandbox — any other path fails
//! with "Permission denied", as it would for the unprivileged `shell` user on a phone.
//!
//! Where it differs from adbd, on purpose:
//! - no authentication: the host's `CNXN` is answered directly (as an adbd with
//!   `ro.adb.secure=0` does); an `STLS` from the host is ignored, TLS is never started;
//! - no PTY: interactive shells and `pty` shells are refused with an error message, and shells
//!   without the shell protocol (`shell:CMD`, `exec:CMD`) use one pipe for stdout and stderr
//!   where adbd uses a PTY in raw mode (either way both arrive mixed, without an exit status);
//! - only `shell`, `exec` and `sync` services; any other `OPEN` is refused with `CLSE`;
//! - only the features it implements are advertised: `shell_v2` (when enabled), `stat_v2`,
//!   `ls_v2`, `fixed_push_mkdir`, `fixed_push_symlink_timestamp` — never `sendrecv_v2`,
//!   `delayed_ack`, `abb` or `cmd`, which would make a host use services it lacks.
//!
//! As adbd does, a shell whose stream the host closes gets SIGHUP (here: its whole process
//! group), and a pushed file's user permission bits are copied to group and other.
//!
//! Set `MELTBENCH_ADB_SIM_TRACE=1` to see the messages the device exchanges on stderr.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Component, Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, UNIX_EPOCH};

mod server;
mod shell;
mod sync;
mod wire;

pub use server::AdbServer;
use shell::*;
use sync::*;
use wire::*;

// ---------------------------------------------------------------------------------------------
// Wire protocol constants
// ---------------------------------------------------------------------------------------------

fn trace(what: impl FnOnce() -> String) {
    if std::env::var_os("MELTBENCH_ADB_SIM_TRACE").is_some() {
        eprintln!("[adb-sim] {}", what());
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How to build an [`AdbDevice`].
#[derive(Clone, Debug)]
pub struct AdbDeviceOptions {
    /// Advertise `shell_v2` (Android 7+): exit statuses and separate stderr. Without it the
    /// device looks like an Android 5/6 phone that only has the raw v1 shell.
    pub shell_v2: bool,
    /// What `getprop` answers. Keys missing here get the defaults of [`default_props`].
    pub props: BTreeMap<String, String>,
    /// Install a `dumpsys` that serves `dumpsys battery` with the framework's overrides (`set`,
    /// `unplug`, `reset`), keeping them in the sandbox so a test can see which are left
    /// ([`AdbDevice::battery_overrides`]). Off by default: the device then has no dumpsys at all.
    pub battery_service: bool,
}

impl Default for AdbDeviceOptions {
    fn default() -> Self {
        AdbDeviceOptions {
            shell_v2: true,
            props: default_props(),
            battery_service: false,
        }
    }
}

/// The Android ABI of this machine's architecture, as `ro.product.cpu.abi` names it.
pub fn host_abi() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "arm64-v8a",
        "arm" => "armeabi-v7a",
        "x86" => "x86",
        "x86_64" => "x86_64",
        "riscv64" => "riscv64",
        other => other,
    }
}

/// Properties of a plausible phone with this machine's CPU.
pub fn default_props() -> BTreeMap<String, String> {
    [
        ("ro.product.cpu.abi", host_abi()),
        ("ro.product.cpu.abilist", host_abi()),
        ("ro.product.model", "meltbench-sim"),
        ("ro.product.manufacturer", "meltbench"),
        ("ro.product.name", "meltbench_sim"),
        ("ro.product.device", "sim"),
        ("ro.build.version.release", "14"),
        ("ro.build.version.sdk", "34"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// State shared by the listener, the connections and the services of one device.
struct Shared {
    sandbox: PathBuf,
    banner: String,
    path_env: std::ffi::OsString,
    stop: AtomicBool,
    /// Open connections, so that dropping the device can cut them.
    conns: Mutex<HashMap<u64, TcpStream>>,
    next_conn: AtomicU64,
    /// Services still running; dropping the device waits for them to wind down.
    live_services: AtomicUsize,
}

/// A simulated Android device listening on 127.0.0.1. See the module documentation.
pub struct AdbDevice {
    pub port: u16,
    /// `127.0.0.1:PORT`: what `adb connect` takes and `adb devices` lists after it.
    pub serial: String,
    /// The device's file system root for the sync service and the working directory of its
    /// shells. Tests keep their remote work directories inside it.
    pub sandbox: PathBuf,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for AdbDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdbDevice")
            .field("serial", &self.serial)
            .field("sandbox", &self.sandbox)
            .finish()
    }
}

const GETPROP: &str = r#"#!/bin/sh
# getprop of the meltbench ADB device simulator: answers from ../build.prop (key=value lines).
props="${0%/*}/../build.prop"
if [ $# -eq 0 ]; then
    while IFS= read -r line || [ -n "$line" ]; do
        printf '[%s]: [%s]\n' "${line%%=*}" "${line#*=}"
    done < "$props"
    exit 0
fi
while IFS= read -r line || [ -n "$line" ]; do
    case $line in
        "$1="*) printf '%s\n' "${line#*=}"; exit 0 ;;
    esac
done < "$props"
printf '%s\n' "${2-}"
"#;

/// `dumpsys battery` of a phone at 78 % on USB power, with the overrides BatteryService keeps
/// until `reset` (`set KEY VALUE`, `unplug`) in ../../data/system/battery-overrides; every call
/// is logged to ../../data/system/dumpsys.log.
const DUMPSYS: &str = r#"#!/bin/sh
# dumpsys of the meltbench ADB device simulator: only the battery service.
data="${0%/*}/../../data/system"
state="$data/battery-overrides"
mkdir -p "$data"
printf '%s\n' "$*" >> "$data/dumpsys.log"
[ "$1" = battery ] || { echo "Can't find service: $1" >&2; exit 1; }
shift
get() { [ -f "$state" ] && sed -n "s/^$1=//p" "$state" | tail -n 1; }
case "${1-}" in
    "")
        level=$(get level); usb=true; status=2
        [ -n "$(get unplugged)" ] && { usb=false; status=3; }
        echo "Current Battery Service state:"
        [ -f "$state" ] && echo "  (UPDATES STOPPED -- use 'reset' to restart)"
        printf '  AC powered: false\n  USB powered: %s\n  Wireless powered: false\n' "$usb"
        printf '  status: %s\n  health: 2\n  present: true\n  level: %s\n' "$status" "${level:-78}"
        printf '  scale: 100\n  voltage: 3987\n  temperature: 291\n  technology: Li-ion\n' ;;
    set) [ $# -eq 3 ] || { echo "usage: dumpsys battery set KEY VALUE" >&2; exit 1; }
        echo "$2=$3" >> "$state" ;;
    unplug) echo "unplugged=1" >> "$state" ;;
    reset) rm -f "$state" ;;
    *) echo "Unknown option: $1" >&2; exit 1 ;;
esac
"#;

fn io_err(what: &str, e: impl std::fmt::Display) -> String {
    format!("ADB device simulator: {what}: {e}")
}

impl AdbDevice {
    /// The battery overrides in force (`dumpsys battery set/unplug` not yet `reset`), as
    /// `key=value` lines; empty when none are.
    pub fn battery_overrides(&self) -> Vec<String> {
        fs::read_to_string(self.sandbox.join("data/system/battery-overrides"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Every `dumpsys` call the device answered, its arguments one call per line.
    pub fn dumpsys_calls(&self) -> Vec<String> {
        fs::read_to_string(self.sandbox.join("data/system/dumpsys.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Creates the sandbox (with `system/bin/getprop`, `system/build.prop` and `data/local/tmp`)
    /// and starts listening on a free loopback port.
    pub fn start(opts: AdbDeviceOptions) -> Result<AdbDevice, String> {
        let mut props = default_props();
        props.extend(opts.props);
        for (k, v) in &props {
            if k.is_empty() || k.contains(['=', '\n', ' ', '\t']) || v.contains('\n') {
                return Err(format!(
                    "ADB device simulator: property {k:?}={v:?} cannot be served (keys need no '=' or \
                     whitespace, values no newline)"
                ));
            }
        }

        let dir = tempfile::Builder::new()
            .prefix("meltbench-adb-device-")
            .tempdir()
            .map_err(|e| io_err("creating the sandbox", e))?;
        let sandbox = dir
            .path()
            .canonicalize()
            .map_err(|e| io_err("resolving the sandbox", e))?;
        let bin = sandbox.join("system/bin");
        fs::create_dir_all(&bin).map_err(|e| io_err("creating system/bin", e))?;
        fs::create_dir_all(sandbox.join("data/local/tmp"))
            .map_err(|e| io_err("creating data/local/tmp", e))?;
        let listing: String = props.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        fs::write(sandbox.join("system/build.prop"), listing)
            .map_err(|e| io_err("writing build.prop", e))?;
        let getprop = bin.join("getprop");
        fs::write(&getprop, GETPROP).map_err(|e| io_err("writing getprop", e))?;
        fs::set_permissions(&getprop, fs::Permissions::from_mode(0o755))
            .map_err(|e| io_err("making getprop executable", e))?;
        if opts.battery_service {
            let dumpsys = bin.join("dumpsys");
            fs::write(&dumpsys, DUMPSYS).map_err(|e| io_err("writing dumpsys", e))?;
            fs::set_permissions(&dumpsys, fs::Permissions::from_mode(0o755))
                .map_err(|e| io_err("making dumpsys executable", e))?;
        }

        let mut features = Vec::new();
        if opts.shell_v2 {
            // An Android 8+ device; without shell_v2 it is an Android 5/6 one, which had none.
            features.extend([
                "shell_v2",
                "stat_v2",
                "ls_v2",
                "fixed_push_mkdir",
                "fixed_push_symlink_timestamp",
            ]);
        }
        let prop = |k: &str| props.get(k).cloned().unwrap_or_default();
        let mut banner = format!(
            "device::ro.product.name={};ro.product.model={};ro.product.device={};",
            prop("ro.product.name"),
            prop("ro.product.model"),
            prop("ro.product.device")
        );
        if !features.is_empty() {
            banner.push_str("features=");
            banner.push_str(&features.join(","));
        }

        let mut path_env = bin.clone().into_os_string();
        if let Some(p) = std::env::var_os("PATH") {
            path_env.push(":");
            path_env.push(p);
        }

        let listener =
            TcpListener::bind("127.0.0.1:0").map_err(|e| io_err("listening on 127.0.0.1", e))?;
        let port = listener
            .local_addr()
            .map_err(|e| io_err("reading the port", e))?
            .port();
        let shared = Arc::new(Shared {
            sandbox: sandbox.clone(),
            banner,
            path_env,
            stop: AtomicBool::new(false),
            conns: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            live_services: AtomicUsize::new(0),
        });
        let acceptor = {
            let shared = shared.clone();
            thread::Builder::new()
                .name(format!("adb-sim-{port}"))
                .spawn(move || accept_loop(listener, shared))
                .map_err(|e| io_err("starting the listener thread", e))?
        };
        Ok(AdbDevice {
            port,
            serial: format!("127.0.0.1:{port}"),
            sandbox,
            shared,
            acceptor: Some(acceptor),
            _dir: dir,
        })
    }
}

impl Drop for AdbDevice {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept so that it sees the flag.
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
        for (_, s) in lock(&self.shared.conns).drain() {
            let _ = s.shutdown(Shutdown::Both);
        }
        // Cut connections end their streams, which hangs up their shells; give them a moment so
        // that no process outlives the sandbox.
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.shared.live_services.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        let Ok(clone) = stream.try_clone() else {
            continue;
        };
        let id = shared.next_conn.fetch_add(1, Ordering::SeqCst);
        lock(&shared.conns).insert(id, clone);
        let shared = shared.clone();
        let spawned = thread::Builder::new()
            .name("adb-sim-conn".into())
            .spawn(move || {
                serve_connection(&shared, stream);
                lock(&shared.conns).remove(&id);
            });
        if spawned.is_err() {
            trace(|| "cannot start a connection thread".into());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Connections and streams
// ---------------------------------------------------------------------------------------------

/// Where a host message for one of our streams goes.
struct Route {
    remote: u32,
    data: Sender<Vec<u8>>,
    acks: Sender<()>,
}

/// One transport connection from an adb server.
struct Conn {
    out: Mutex<TcpStream>,
    max_payload: AtomicUsize,
    routes: Mutex<HashMap<u32, Route>>,
    next_id: AtomicU32,
    shared: Arc<Shared>,
}

impl Conn {
    fn send(&self, command: u32, arg0: u32, arg1: u32, data: &[u8]) -> io::Result<()> {
        trace(|| {
            format!(
                "-> {} {arg0} {arg1} ({} bytes)",
                command_name(command),
                data.len()
            )
        });
        lock(&self.out).write_all(&encode_message(command, arg0, arg1, data))
    }
}

fn serve_connection(shared: &Arc<Shared>, stream: TcpStream) {
    let Ok(out) = stream.try_clone() else { return };
    let _ = stream.set_nodelay(true);
    let conn = Arc::new(Conn {
        out: Mutex::new(out),
        // Until the host's CNXN says otherwise: the protocol's original limit.
        max_payload: AtomicUsize::new(4096),
        routes: Mutex::new(HashMap::new()),
        next_id: AtomicU32::new(1),
        shared: shared.clone(),
    });
    let mut reader = BufReader::new(stream);
    loop {
        let msg = match read_message(&mut reader) {
            Ok(m) => m,
            Err(e) => {
                trace(|| format!("connection ends: {e}"));
                break;
            }
        };
        trace(|| {
            format!(
                "<- {} {} {} ({} bytes)",
                command_name(msg.command),
                msg.arg0,
                msg.arg1,
                msg.data.len()
            )
        });
        match msg.command {
            CNXN => {
                let version = msg.arg0.min(VERSION);
                let max = (msg.arg1 as usize).clamp(1, MAX_PAYLOAD);
                conn.max_payload.store(max, Ordering::SeqCst);
                if conn
                    .send(CNXN, version, MAX_PAYLOAD as u32, shared.banner.as_bytes())
                    .is_err()
                {
                    break;
                }
            }
            OPEN => open_stream(&conn, msg.arg0, &msg.data),
            WRTE => {
                let routes = lock(&conn.routes);
                match routes.get(&msg.arg1) {
                    Some(r) if r.remote == msg.arg0 => {
                        let _ = r.data.send(msg.data);
                    }
                    _ => trace(|| format!("WRTE for unknown stream {}", msg.arg1)),
                }
            }
            OKAY => {
                if let Some(r) = lock(&conn.routes).get(&msg.arg1) {
                    let _ = r.acks.send(());
                }
            }
            CLSE => {
                let mut routes = lock(&conn.routes);
                if routes
                    .get(&msg.arg1)
                    .is_some_and(|r| msg.arg0 == 0 || r.remote == msg.arg0)
                {
                    routes.remove(&msg.arg1);
                }
            }
            // We never ask for authentication and never start TLS.
            AUTH | STLS => trace(|| format!("ignoring {}", command_name(msg.command))),
            other => trace(|| format!("ignoring unknown command {other:08x}")),
        }
    }
    // Dropping the routes ends every stream of this connection.
    lock(&conn.routes).clear();
}

/// The host's end of a stream as the service sees it: what the host writes.
struct StreamIn {
    conn: Arc<Conn>,
    local: u32,
    remote: u32,
    data: Receiver<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
}

impl StreamIn {
    /// The next payload the host wrote; acknowledging it lets the host send the next one.
    /// `None` once the stream is closed.
    fn next_chunk(&mut self) -> Option<Vec<u8>> {
        let d = self.data.recv().ok()?;
        let _ = self.conn.send(OKAY, self.local, self.remote, &[]);
        Some(d)
    }
}

impl Read for StreamIn {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.buf.len() {
            match self.next_chunk() {
                Some(d) => {
                    self.buf = d;
                    self.pos = 0;
                }
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// What the service writes to the host, one `WRTE` at a time, each acknowledged before the next.
struct StreamOut {
    conn: Arc<Conn>,
    local: u32,
    remote: u32,
    acks: Receiver<()>,
}

impl StreamOut {
    fn write(&self, data: &[u8]) -> io::Result<()> {
        let max = self.conn.max_payload.load(Ordering::SeqCst);
        for chunk in data.chunks(max) {
            self.conn.send(WRTE, self.local, self.remote, chunk)?;
            self.acks.recv().map_err(|_| {
                io::Error::new(io::ErrorKind::BrokenPipe, "the host closed the stream")
            })?;
        }
        Ok(())
    }

    /// Closes the stream unless the host already has.
    fn close(&self) {
        if lock(&self.conn.routes).remove(&self.local).is_some() {
            let _ = self.conn.send(CLSE, self.local, self.remote, &[]);
        }
    }
}

enum Service {
    Shell {
        command: String,
        v2: bool,
        pty: bool,
    },
    Sync,
}

/// `shell[,arg...]:[command]`, `exec:command`, `sync:`; anything else is not served.
fn parse_service(name: &str) -> Option<Service> {
    if let Some(command) = name.strip_prefix("exec:") {
        return Some(Service::Shell {
            command: command.to_string(),
            v2: false,
            pty: false,
        });
    }
    if name.starts_with("sync:") {
        return Some(Service::Sync);
    }
    let rest = name.strip_prefix("shell")?;
    let (args, command) = rest.split_once(':')?;
    let mut pty = command.is_empty();
    let mut v2 = false;
    for arg in args.split(',') {
        match arg {
            "raw" => pty = false,
            "pty" => pty = true,
            "v2" => v2 = true,
            _ => {} // TERM=..., and future arguments, as adbd does
        }
    }
    Some(Service::Shell {
        command: command.to_string(),
        v2,
        pty,
    })
}

/// Keeps [`Shared::live_services`] honest however a service ends.
struct ServiceGuard(Arc<Shared>);

impl Drop for ServiceGuard {
    fn drop(&mut self) {
        self.0.live_services.fetch_sub(1, Ordering::SeqCst);
    }
}

fn open_stream(conn: &Arc<Conn>, remote: u32, data: &[u8]) {
    let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let name = String::from_utf8_lossy(&data[..end]).into_owned();
    trace(|| format!("OPEN {name:?}"));
    let Some(service) = parse_service(&name) else {
        trace(|| format!("refusing service {name:?}"));
        let _ = conn.send(CLSE, 0, remote, &[]);
        return;
    };
    let local = conn.next_id.fetch_add(1, Ordering::SeqCst);
    let (data_tx, data_rx) = mpsc::channel();
    let (ack_tx, ack_rx) = mpsc::channel();
    lock(&conn.routes).insert(
        local,
        Route {
            remote,
            data: data_tx,
            acks: ack_tx,
        },
    );
    if conn.send(OKAY, local, remote, &[]).is_err() {
        return;
    }
    let input = StreamIn {
        conn: conn.clone(),
        local,
        remote,
        data: data_rx,
        buf: Vec::new(),
        pos: 0,
    };
    let output = StreamOut {
        conn: conn.clone(),
        local,
        remote,
        acks: ack_rx,
    };
    conn.shared.live_services.fetch_add(1, Ordering::SeqCst);
    let guard = ServiceGuard(conn.shared.clone());
    let shared = conn.shared.clone();
    let spawned = thread::Builder::new()
        .name("adb-sim-service".into())
        .spawn(move || {
            let _guard = guard;
            match service {
                Service::Shell { command, v2, pty } => {
                    shell_service(&shared, &command, v2, pty, input, &output)
                }
                Service::Sync => {
                    let mut sync = SyncSession {
                        shared: &shared,
                        input,
                        output: &output,
                        pending: Vec::new(),
                    };
                    if let Err(e) = sync.run() {
                        trace(|| format!("sync session ends: {e}"));
                    }
                }
            }
            output.close();
        });
    if spawned.is_err() {
        trace(|| "cannot start a service thread".into());
        if let Some(r) = lock(&conn.routes).remove(&local) {
            let _ = conn.send(CLSE, local, r.remote, &[]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Shell service
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests;
