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

// ---------------------------------------------------------------------------------------------
// Wire protocol constants
// ---------------------------------------------------------------------------------------------

const fn id(s: &[u8; 4]) -> u32 {
    u32::from_le_bytes(*s)
}

const CNXN: u32 = id(b"CNXN");
const AUTH: u32 = id(b"AUTH");
const STLS: u32 = id(b"STLS");
const OPEN: u32 = id(b"OPEN");
const OKAY: u32 = id(b"OKAY");
const WRTE: u32 = id(b"WRTE");
const CLSE: u32 = id(b"CLSE");

/// The protocol version that lets both ends skip the data checksum.
const VERSION: u32 = 0x0100_0001;
/// The largest message payload this device accepts (as modern adbd).
const MAX_PAYLOAD: usize = 1024 * 1024;
/// The largest sync `DATA` chunk (`SYNC_DATA_MAX`).
const SYNC_DATA_MAX: usize = 64 * 1024;
/// The longest path a sync request may carry.
const SYNC_PATH_MAX: usize = 1024;

/// Shell protocol v2 packet ids.
const SHELL_STDIN: u8 = 0;
const SHELL_STDOUT: u8 = 1;
const SHELL_STDERR: u8 = 2;
const SHELL_EXIT: u8 = 3;
const SHELL_CLOSE_STDIN: u8 = 4;

const ENOENT: i32 = 2;
const EACCES: i32 = 13;

fn trace(what: impl FnOnce() -> String) {
    if std::env::var_os("MELTBENCH_ADB_SIM_TRACE").is_some() {
        eprintln!("[adb-sim] {}", what());
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn word(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"))
}

/// One ADB message: header fields and payload.
struct Message {
    command: u32,
    arg0: u32,
    arg1: u32,
    data: Vec<u8>,
}

fn command_name(c: u32) -> String {
    String::from_utf8_lossy(&c.to_le_bytes()).into_owned()
}

/// Reads one message. The checksum is not verified: hosts at version 0x01000001 may send 0 and
/// the transport (TCP) already guarantees integrity.
fn read_message(r: &mut impl Read) -> io::Result<Message> {
    let mut h = [0u8; 24];
    r.read_exact(&mut h)?;
    let (command, arg0, arg1, len, magic) = (
        word(&h, 0),
        word(&h, 4),
        word(&h, 8),
        word(&h, 12),
        word(&h, 20),
    );
    if magic != command ^ 0xffff_ffff {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad magic for {:08x}", command),
        ));
    }
    if len as usize > MAX_PAYLOAD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("payload of {len} bytes"),
        ));
    }
    let mut data = vec![0u8; len as usize];
    r.read_exact(&mut data)?;
    Ok(Message {
        command,
        arg0,
        arg1,
        data,
    })
}

fn encode_message(command: u32, arg0: u32, arg1: u32, data: &[u8]) -> Vec<u8> {
    let sum = data
        .iter()
        .fold(0u32, |acc, &b| acc.wrapping_add(u32::from(b)));
    let mut out = Vec::with_capacity(24 + data.len());
    for w in [
        command,
        arg0,
        arg1,
        data.len() as u32,
        sum,
        command ^ 0xffff_ffff,
    ] {
        out.extend_from_slice(&w.to_le_bytes());
    }
    out.extend_from_slice(data);
    out
}

// ---------------------------------------------------------------------------------------------
// The device
// ---------------------------------------------------------------------------------------------

/// How to build an [`AdbDevice`].
#[derive(Clone, Debug)]
pub struct AdbDeviceOptions {
    /// Advertise `shell_v2` (Android 7+): exit statuses and separate stderr. Without it the
    /// device looks like an Android 5/6 phone that only has the raw v1 shell.
    pub shell_v2: bool,
    /// What `getprop` answers. Keys missing here get the defaults of [`default_props`].
    pub props: BTreeMap<String, String>,
}

impl Default for AdbDeviceOptions {
    fn default() -> Self {
        AdbDeviceOptions {
            shell_v2: true,
            props: default_props(),
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

fn io_err(what: &str, e: impl std::fmt::Display) -> String {
    format!("ADB device simulator: {what}: {e}")
}

impl AdbDevice {
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

fn shell_packet(id: u8, data: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(5 + data.len());
    p.push(id);
    p.extend_from_slice(&(data.len() as u32).to_le_bytes());
    p.extend_from_slice(data);
    p
}

/// What adbd's `ReportError` does: an error line, and exit status 126 under the shell protocol.
fn report_error(out: &StreamOut, v2: bool, message: &str) {
    let line = format!("error: {message}\n");
    if v2 {
        let _ = out.write(&shell_packet(SHELL_STDERR, line.as_bytes()));
        let _ = out.write(&shell_packet(SHELL_EXIT, &[126]));
    } else {
        let _ = out.write(line.as_bytes());
    }
}

enum ShellEvent {
    Output(u8, Vec<u8>),
    Eof,
    HungUp,
}

struct Spawned {
    child: Child,
    stdin: Option<ChildStdin>,
    outputs: Vec<(u8, Box<dyn Read + Send>)>,
}

/// `sh -c command` in the sandbox, in its own process group. With `split`, stdout and stderr
/// are separate pipes (shell protocol); without, one pipe carries both (raw v1 shell).
fn spawn_shell(shared: &Shared, command: &str, split: bool) -> io::Result<Spawned> {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .current_dir(&shared.sandbox)
        .env("PATH", &shared.path_env)
        .env("TMPDIR", shared.sandbox.join("data/local/tmp"))
        .env("HOME", &shared.sandbox)
        .stdin(Stdio::piped())
        .process_group(0);
    let mut outputs: Vec<(u8, Box<dyn Read + Send>)> = Vec::new();
    let mut child = if split {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn()?;
        outputs.push((SHELL_STDOUT, Box::new(child.stdout.take().expect("piped"))));
        outputs.push((SHELL_STDERR, Box::new(child.stderr.take().expect("piped"))));
        child
    } else {
        let (reader, writer) = io::pipe()?;
        cmd.stdout(writer.try_clone()?).stderr(writer);
        let child = cmd.spawn()?;
        // The command holds our copies of the write end; drop them so the reader sees EOF.
        drop(cmd);
        outputs.push((SHELL_STDOUT, Box::new(reader)));
        child
    };
    let stdin = child.stdin.take();
    Ok(Spawned {
        child,
        stdin,
        outputs,
    })
}

fn signal_group(signal: &str, pgid: u32) {
    let _ = Command::new("sh")
        .arg("-c")
        .arg(format!("kill -s {signal} -- -{pgid}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// What adbd does when the host closes a shell's stream: SIGHUP. Here to the whole process
/// group, then SIGKILL if it lingers.
fn hang_up(child: &mut Child) {
    let pgid = child.id();
    signal_group("HUP", pgid);
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        thread::sleep(Duration::from_millis(10));
    }
    signal_group("KILL", pgid);
    let _ = child.kill();
    let _ = child.wait();
}

fn exit_code(status: ExitStatus) -> u8 {
    match status.code() {
        Some(c) => c as u8,
        None => 0x80 | status.signal().unwrap_or(0) as u8,
    }
}

/// Feeds what the host writes to the child's stdin (unwrapping shell protocol packets) until the
/// stream closes, then reports the hang-up.
fn pump_input(
    mut input: StreamIn,
    mut stdin: Option<ChildStdin>,
    v2: bool,
    events: Sender<ShellEvent>,
) {
    let mut pending: Vec<u8> = Vec::new();
    while let Some(chunk) = input.next_chunk() {
        if !v2 {
            if let Some(s) = stdin.as_mut() {
                if s.write_all(&chunk).is_err() {
                    stdin = None;
                }
            }
            continue;
        }
        pending.extend_from_slice(&chunk);
        while pending.len() >= 5 {
            let len = word(&pending, 1) as usize;
            if pending.len() < 5 + len {
                break;
            }
            match pending[0] {
                SHELL_STDIN => {
                    if let Some(s) = stdin.as_mut() {
                        if s.write_all(&pending[5..5 + len]).is_err() {
                            stdin = None;
                        }
                    }
                }
                SHELL_CLOSE_STDIN => stdin = None,
                _ => {} // window size changes, and anything newer
            }
            pending.drain(..5 + len);
        }
    }
    let _ = events.send(ShellEvent::HungUp);
}

fn shell_service(
    shared: &Shared,
    command: &str,
    v2: bool,
    pty: bool,
    input: StreamIn,
    out: &StreamOut,
) {
    if pty {
        report_error(
            out,
            v2,
            "the meltbench ADB device simulator has no PTY: give the shell a command, without -t",
        );
        return;
    }
    let Spawned {
        mut child,
        stdin,
        outputs,
    } = match spawn_shell(shared, command, v2) {
        Ok(s) => s,
        Err(e) => {
            report_error(out, v2, &format!("cannot start sh: {e}"));
            return;
        }
    };
    trace(|| format!("shell pid {} runs {command:?}", child.id()));
    let (tx, rx) = mpsc::channel();
    let mut open = 0;
    for (id, mut reader) in outputs {
        open += 1;
        let tx = tx.clone();
        thread::spawn(move || {
            let mut buf = vec![0u8; SYNC_DATA_MAX];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        let _ = tx.send(ShellEvent::Eof);
                        return;
                    }
                    Ok(n) => {
                        if tx.send(ShellEvent::Output(id, buf[..n].to_vec())).is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
    {
        let tx = tx.clone();
        thread::spawn(move || pump_input(input, stdin, v2, tx));
    }
    drop(tx);

    while open > 0 {
        match rx.recv() {
            Ok(ShellEvent::Output(id, data)) => {
                let sent = if v2 {
                    out.write(&shell_packet(id, &data))
                } else {
                    out.write(&data)
                };
                if sent.is_err() {
                    hang_up(&mut child);
                    return;
                }
            }
            Ok(ShellEvent::Eof) => open -= 1,
            Ok(ShellEvent::HungUp) | Err(_) => {
                hang_up(&mut child);
                return;
            }
        }
    }
    // Output is closed; the process may still be running.
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) => {}
            Err(_) => {
                hang_up(&mut child);
                return;
            }
        }
        match rx.recv_timeout(Duration::from_millis(10)) {
            Ok(ShellEvent::HungUp) => {
                hang_up(&mut child);
                return;
            }
            Err(RecvTimeoutError::Disconnected) => thread::sleep(Duration::from_millis(10)),
            _ => {}
        }
    };
    trace(|| format!("shell exits with {status}"));
    if v2 {
        let _ = out.write(&shell_packet(SHELL_EXIT, &[exit_code(status)]));
    }
}

// ---------------------------------------------------------------------------------------------
// Sync service
// ---------------------------------------------------------------------------------------------

/// `strerror` text of an I/O error, without Rust's " (os error N)".
fn strerror(e: &io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

fn permission_denied() -> io::Error {
    io::Error::from_raw_os_error(EACCES)
}

/// Lexically normalises an absolute device path (`.`/`..`, repeated slashes).
fn normalise(remote: &str) -> Option<PathBuf> {
    let p = Path::new(remote);
    if !p.is_absolute() {
        return None;
    }
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(x) => out.push(x),
            Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// The local path for a device path, if it lies inside the sandbox: its existing ancestors
/// (and the path itself with `follow`, once it exists) must resolve to the sandbox.
fn confine(sandbox: &Path, remote: &str, follow: bool) -> io::Result<PathBuf> {
    let path = normalise(remote).ok_or_else(permission_denied)?;
    let mut ancestor = path.parent().unwrap_or(&path).to_path_buf();
    while !ancestor.exists() {
        if !ancestor.pop() {
            break;
        }
    }
    let resolved = ancestor.canonicalize()?;
    if !resolved.starts_with(sandbox) {
        return Err(permission_denied());
    }
    if follow && path.exists() && !path.canonicalize()?.starts_with(sandbox) {
        return Err(permission_denied());
    }
    Ok(path)
}

/// `strtoul(s, nullptr, 0)`: hex with 0x, octal with a leading 0, decimal otherwise.
fn parse_mode(s: &str) -> Option<u32> {
    let s = s.trim();
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u32::from_str_radix(hex, 16).ok()
    } else if s.len() > 1 && s.starts_with('0') {
        u32::from_str_radix(&s[1..], 8).ok()
    } else {
        s.parse().ok()
    }
}

struct SyncSession<'a> {
    shared: &'a Shared,
    input: StreamIn,
    output: &'a StreamOut,
    /// Replies are gathered here and written out at message boundaries.
    pending: Vec<u8>,
}

fn end_session() -> io::Error {
    io::Error::other("session ends")
}

impl SyncSession<'_> {
    fn put(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
    }

    fn put_u32(&mut self, v: u32) {
        self.pending.extend_from_slice(&v.to_le_bytes());
    }

    fn put_u64(&mut self, v: u64) {
        self.pending.extend_from_slice(&v.to_le_bytes());
    }

    fn flush(&mut self) -> io::Result<()> {
        let bytes = std::mem::take(&mut self.pending);
        self.output.write(&bytes)
    }

    fn fail(&mut self, message: &str) -> io::Result<()> {
        trace(|| format!("sync FAIL {message}"));
        self.put(b"FAIL");
        self.put_u32(message.len() as u32);
        self.put(message.as_bytes());
        self.flush()
    }

    fn read_u32(&mut self) -> io::Result<u32> {
        let mut b = [0u8; 4];
        self.input.read_exact(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn read_bytes(&mut self, n: usize) -> io::Result<Vec<u8>> {
        let mut b = vec![0u8; n];
        self.input.read_exact(&mut b)?;
        Ok(b)
    }

    fn run(&mut self) -> io::Result<()> {
        loop {
            let mut request = [0u8; 4];
            if self.input.read_exact(&mut request).is_err() {
                return Ok(()); // the host closed the stream
            }
            let len = self.read_u32()? as usize;
            if len > SYNC_PATH_MAX {
                self.fail("path too long")?;
                return Err(end_session());
            }
            let name = String::from_utf8_lossy(&self.read_bytes(len)?).into_owned();
            trace(|| format!("sync {} {name:?}", String::from_utf8_lossy(&request)));
            match &request {
                b"STAT" => self.stat_v1(&name)?,
                b"STA2" | b"LST2" => self.stat_v2(&name, &request)?,
                b"LIST" => self.list(&name, false)?,
                b"LIS2" => self.list(&name, true)?,
                b"SEND" => self.send(&name)?,
                b"RECV" => self.recv(&name)?,
                b"QUIT" => return Ok(()),
                other => {
                    self.fail(&format!(
                        "unknown command {:08x}",
                        u32::from_le_bytes(*other)
                    ))?;
                    return Err(end_session());
                }
            }
        }
    }

    fn stat_v1(&mut self, name: &str) -> io::Result<()> {
        let meta = confine(&self.shared.sandbox, name, false).and_then(fs::symlink_metadata);
        self.put(b"STAT");
        match meta {
            Ok(m) => {
                self.put_u32(m.mode());
                self.put_u32(m.size() as u32);
                self.put_u32(m.mtime() as u32);
            }
            Err(_) => self.put(&[0u8; 12]),
        }
        self.flush()
    }

    fn put_stat_v2(&mut self, meta: &io::Result<fs::Metadata>) {
        match meta {
            Ok(m) => {
                self.put_u32(0);
                self.put_u64(m.dev());
                self.put_u64(m.ino());
                self.put_u32(m.mode());
                self.put_u32(m.nlink() as u32);
                self.put_u32(m.uid());
                self.put_u32(m.gid());
                self.put_u64(m.size());
                self.put_u64(m.atime() as u64);
                self.put_u64(m.mtime() as u64);
                self.put_u64(m.ctime() as u64);
            }
            Err(e) => {
                self.put_u32(e.raw_os_error().unwrap_or(EACCES) as u32);
                self.put(&[0u8; 64]);
            }
        }
    }

    fn stat_v2(&mut self, name: &str, request: &[u8; 4]) -> io::Result<()> {
        let follow = request == b"STA2";
        // Outside the sandbox nothing is visible: ENOENT, so that a push there fails where a
        // phone's would, at SEND, with "Permission denied".
        let meta = confine(&self.shared.sandbox, name, follow)
            .map_err(|_| io::Error::from_raw_os_error(ENOENT))
            .and_then(|p| {
                if follow {
                    fs::metadata(p)
                } else {
                    fs::symlink_metadata(p)
                }
            });
        self.put(request);
        self.put_stat_v2(&meta);
        self.flush()
    }

    fn list(&mut self, name: &str, v2: bool) -> io::Result<()> {
        let entries = confine(&self.shared.sandbox, name, true).and_then(fs::read_dir);
        if let Ok(entries) = entries {
            for entry in entries.flatten() {
                let file_name = entry.file_name();
                let bytes = file_name.as_encoded_bytes();
                let meta = fs::symlink_metadata(entry.path());
                if v2 {
                    self.put(b"DNT2");
                    self.put_stat_v2(&meta);
                } else {
                    let Ok(m) = meta else { continue };
                    self.put(b"DENT");
                    self.put_u32(m.mode());
                    self.put_u32(m.size() as u32);
                    self.put_u32(m.mtime() as u32);
                }
                self.put_u32(bytes.len() as u32);
                self.put(bytes);
                if self.pending.len() >= SYNC_DATA_MAX {
                    self.flush()?;
                }
            }
        }
        self.put(b"DONE");
        // The rest of a dent message, zeroed: 72 bytes for DNT2, 16 for DENT.
        self.put(&vec![0u8; if v2 { 72 } else { 16 }]);
        self.flush()
    }

    /// After a failed `SEND`: report it, then swallow the rest of the upload, as adbd does.
    fn send_failed(&mut self, message: &str) -> io::Result<()> {
        self.fail(message)?;
        loop {
            let mut id = [0u8; 4];
            self.input.read_exact(&mut id)?;
            let len = self.read_u32()? as usize;
            match &id {
                b"DATA" if len <= SYNC_DATA_MAX => {
                    self.read_bytes(len)?;
                }
                _ => break,
            }
        }
        Err(end_session())
    }

    fn send(&mut self, spec: &str) -> io::Result<()> {
        let Some((name, mode)) = spec.rsplit_once(',') else {
            self.fail("missing , in ID_SEND_V1")?;
            return Err(end_session());
        };
        let Some(mode) = parse_mode(mode) else {
            self.fail("bad mode")?;
            return Err(end_session());
        };
        let path = match confine(&self.shared.sandbox, name, false) {
            Ok(p) => p,
            Err(e) => return self.send_failed(&format!("couldn't create file: {}", strerror(&e))),
        };
        if let Ok(m) = fs::symlink_metadata(&path) {
            if m.is_file() || m.file_type().is_symlink() {
                let _ = fs::remove_file(&path);
            }
        }
        if mode & 0o170000 == 0o120000 {
            return self.send_symlink(&path);
        }
        // As adbd: keep the permission bits and copy the user's to group and other.
        let mut mode = mode & 0o777;
        mode |= (mode >> 3) & 0o070;
        mode |= (mode >> 3) & 0o007;
        let create = |p: &Path| {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(p)
        };
        let mut file = create(&path);
        if matches!(&file, Err(e) if e.kind() == io::ErrorKind::NotFound) {
            // fixed_push_mkdir: create the missing parents (confine() checked where they go).
            if let Some(parent) = path.parent() {
                if let Err(e) = fs::create_dir_all(parent) {
                    return self.send_failed(&format!("secure_mkdirs() failed: {}", strerror(&e)));
                }
            }
            file = create(&path);
        }
        if matches!(&file, Err(e) if e.kind() == io::ErrorKind::AlreadyExists) {
            file = OpenOptions::new().write(true).truncate(true).open(&path);
        }
        let mut file = match file {
            Ok(f) => f,
            Err(e) => return self.send_failed(&format!("couldn't create file: {}", strerror(&e))),
        };
        let _ = file.set_permissions(fs::Permissions::from_mode(mode));
        let mtime = loop {
            let mut id = [0u8; 4];
            self.input.read_exact(&mut id)?;
            let len = self.read_u32()?;
            match &id {
                b"DATA" if len as usize <= SYNC_DATA_MAX => {
                    let data = self.read_bytes(len as usize)?;
                    if let Err(e) = file.write_all(&data) {
                        drop(file);
                        let _ = fs::remove_file(&path);
                        return self.send_failed(&format!("write failed: {}", strerror(&e)));
                    }
                }
                b"DONE" => break len,
                _ => {
                    self.fail("invalid data message")?;
                    return Err(end_session());
                }
            }
        };
        let _ = file.set_modified(UNIX_EPOCH + Duration::from_secs(u64::from(mtime)));
        drop(file);
        self.put(b"OKAY");
        self.put_u32(0);
        self.flush()
    }

    fn send_symlink(&mut self, path: &Path) -> io::Result<()> {
        let mut id = [0u8; 4];
        self.input.read_exact(&mut id)?;
        let len = self.read_u32()? as usize;
        if &id != b"DATA" || len > SYNC_DATA_MAX {
            self.fail("invalid data message: expected ID_DATA")?;
            return Err(end_session());
        }
        let target = self.read_bytes(len)?;
        let end = target.iter().position(|&b| b == 0).unwrap_or(target.len());
        let target = String::from_utf8_lossy(&target[..end]).into_owned();
        if let Err(e) = std::os::unix::fs::symlink(&target, path) {
            self.fail(&format!("symlink failed: {}", strerror(&e)))?;
            return Err(end_session());
        }
        self.input.read_exact(&mut id)?;
        self.read_u32()?;
        if &id != b"DONE" {
            self.fail("invalid data message: expected ID_DONE")?;
            return Err(end_session());
        }
        self.put(b"OKAY");
        self.put_u32(0);
        self.flush()
    }

    fn recv(&mut self, name: &str) -> io::Result<()> {
        let file = confine(&self.shared.sandbox, name, true).and_then(File::open);
        let mut file = match file {
            Ok(f) => f,
            Err(e) => {
                self.fail(&format!("open failed: {}", strerror(&e)))?;
                return Err(end_session());
            }
        };
        let mut buf = vec![0u8; SYNC_DATA_MAX];
        loop {
            let n = match file.read(&mut buf) {
                Ok(n) => n,
                Err(e) => {
                    self.fail(&format!("read failed: {}", strerror(&e)))?;
                    return Err(end_session());
                }
            };
            if n == 0 {
                break;
            }
            self.put(b"DATA");
            self.put_u32(n as u32);
            self.pending.extend_from_slice(&buf[..n]);
            self.flush()?;
        }
        self.put(b"DONE");
        self.put_u32(0);
        self.flush()
    }
}

// ---------------------------------------------------------------------------------------------
// A private real adb server
// ---------------------------------------------------------------------------------------------

/// A real adb server (the `adb` binary in `server nodaemon` mode) on a free loopback port, with
/// its own HOME (so its own `adbkey`), as a child process that dropping it stops.
pub struct AdbServer {
    pub port: u16,
    child: Child,
    home: tempfile::TempDir,
}

impl std::fmt::Debug for AdbServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdbServer")
            .field("port", &self.port)
            .finish()
    }
}

/// Waits for a child at most `timeout`; `None` if it is still running.
fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Some(s),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
            _ => return None,
        }
    }
}

/// Runs a command with stdin closed, collecting its output, killing it after `timeout`.
fn run_bounded(mut cmd: Command, what: &str, timeout: Duration) -> Result<Output, String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    let drain = |mut r: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("piped")));
    let err = drain(Box::new(child.stderr.take().expect("piped")));
    let Some(status) = wait_timeout(&mut child, timeout) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!(
            "{what} did not finish within {} s",
            timeout.as_secs()
        ));
    };
    Ok(Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

/// Whether something answers `host:version` on the port like an adb server.
fn answers_as_adb_server(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut status = [0u8; 4];
    s.write_all(b"000chost:version").is_ok()
        && s.read_exact(&mut status).is_ok()
        && &status == b"OKAY"
}

fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

impl AdbServer {
    /// Whether the `adb` binary can run here.
    pub fn available() -> Result<(), String> {
        match Command::new("adb")
            .arg("version")
            .stdin(Stdio::null())
            .output()
        {
            Ok(o) if o.status.success() => Ok(()),
            Ok(o) => Err(format!(
                "`adb version` failed ({}): {}; reinstall the Debian package adb",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => Err(format!(
                "cannot run adb ({e}): install the Debian package adb (apt-get install adb)"
            )),
        }
    }

    /// `adb` with this machine's adb settings neutralised: HOME is `home`, and no variable from
    /// the user's environment points it at another server, device or key.
    fn base_command(home: &Path) -> Command {
        let mut cmd = Command::new("adb");
        cmd.env("HOME", home)
            .env("ADB_MDNS", "0")
            .env("ADB_MDNS_OPENSCREEN", "0")
            .env_remove("ANDROID_SERIAL")
            .env_remove("ANDROID_ADB_SERVER_PORT")
            .env_remove("ANDROID_ADB_SERVER_ADDRESS")
            .env_remove("ADB_SERVER_SOCKET")
            .env_remove("ADB_VENDOR_KEYS")
            .env_remove("ANDROID_SDK_HOME")
            .env_remove("ANDROID_USER_HOME");
        cmd
    }

    /// Starts a server on a free port and waits (at most 10 s) until it answers.
    pub fn start() -> Result<AdbServer, String> {
        Self::available()?;
        let home = tempfile::Builder::new()
            .prefix("meltbench-adb-server-")
            .tempdir()
            .map_err(|e| format!("adb server: creating its HOME: {e}"))?;
        let mut last_error = String::new();
        // A free port can be taken between our probe and the server's bind: try again then.
        for _ in 0..3 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(|e| format!("adb server: finding a free port: {e}"))?
                .port();
            let log_path = home.path().join(format!("adb-server-{port}.log"));
            let log = File::create(&log_path)
                .map_err(|e| format!("adb server: creating its log: {e}"))?;
            let log2 = log.try_clone().map_err(|e| format!("adb server: {e}"))?;
            let mut cmd = Self::base_command(home.path());
            cmd.args(["-P", &port.to_string(), "nodaemon", "server"])
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log2);
            let mut child = cmd.spawn().map_err(|e| format!("cannot run adb: {e}"))?;
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    last_error = format!(
                        "adb server on port {port} exited ({status}): {}",
                        log_tail(&log_path)
                    );
                    break;
                }
                if answers_as_adb_server(port) {
                    // Make sure it is ours answering, not a server that took the port first.
                    thread::sleep(Duration::from_millis(100));
                    if let Ok(None) = child.try_wait() {
                        return Ok(AdbServer { port, child, home });
                    }
                    continue;
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_error = format!(
                        "adb server on port {port} did not answer within 10 s: {}",
                        log_tail(&log_path)
                    );
                    break;
                }
                thread::sleep(Duration::from_millis(50));
            }
        }
        Err(last_error)
    }

    /// `host:port` of the server, as devices.yaml's `adb_server` takes it.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The adb CLI pointed at this server (`adb -P PORT`), with the server's HOME.
    pub fn command(&self) -> Command {
        let mut cmd = Self::base_command(self.home.path());
        cmd.args(["-P", &self.port.to_string()]);
        cmd
    }

    /// Runs `adb -P PORT ARGS...` with stdin closed, killed after `timeout`.
    pub fn run(&self, args: &[&str], timeout: Duration) -> Result<Output, String> {
        let mut cmd = self.command();
        cmd.args(args);
        run_bounded(
            cmd,
            &format!("`adb -P {} {}`", self.port, args.join(" ")),
            timeout,
        )
    }

    /// `adb connect` the device and wait (at most 15 s) until `adb devices` lists it as `device`.
    pub fn connect(&self, dev: &AdbDevice) -> Result<(), String> {
        let out = self.run(&["connect", &dev.serial], Duration::from_secs(15))?;
        let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !out.status.success() || !said.contains("connected to") {
            return Err(format!(
                "`adb -P {} connect {}` failed: {said} {}",
                self.port,
                dev.serial,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let out = self.run(&["devices"], Duration::from_secs(10))?;
            let listing = String::from_utf8_lossy(&out.stdout).into_owned();
            let attached = listing
                .lines()
                .any(|l| l.split('\t').collect::<Vec<_>>() == [dev.serial.as_str(), "device"]);
            if attached {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "adb server on port {} does not list {} as `device` 15 s after connecting:\n{listing}",
                    self.port, dev.serial
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for AdbServer {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"], Duration::from_secs(5));
        if wait_timeout(&mut self.child, Duration::from_secs(3)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The real adb is needed; on CI its absence is a failure, elsewhere a loud skip.
    fn adb_or_skip() -> bool {
        match AdbServer::available() {
            Ok(()) => true,
            Err(reason) if std::env::var("CI").as_deref() == Ok("true") => panic!("{reason}"),
            Err(reason) => {
                // Straight to stderr, past the test harness's capture, so that the skip is seen.
                let _ = writeln!(
                    io::stderr(),
                    "*** SKIP: the adb device simulator tests need the real adb: {reason} ***"
                );
                false
            }
        }
    }

    fn attached(opts: AdbDeviceOptions) -> (AdbServer, AdbDevice) {
        let server = AdbServer::start().unwrap();
        let dev = AdbDevice::start(opts).unwrap();
        server.connect(&dev).unwrap();
        (server, dev)
    }

    fn adb(server: &AdbServer, dev: &AdbDevice, args: &[&str]) -> Output {
        let mut all = vec!["-s", dev.serial.as_str()];
        all.extend_from_slice(args);
        server.run(&all, Duration::from_secs(30)).unwrap()
    }

    fn text(b: &[u8]) -> String {
        String::from_utf8_lossy(b).into_owned()
    }

    #[test]
    fn service_names_parse_like_adbd() {
        let shell = |name: &str| match parse_service(name) {
            Some(Service::Shell { command, v2, pty }) => Some((command, v2, pty)),
            _ => None,
        };
        assert_eq!(
            shell("shell:echo hi"),
            Some(("echo hi".into(), false, false))
        );
        assert_eq!(
            shell("shell,v2,TERM=xterm,raw:a:b,c"),
            Some(("a:b,c".into(), true, false))
        );
        assert_eq!(shell("shell,v2,pty:ls"), Some(("ls".into(), true, true)));
        assert_eq!(shell("shell:"), Some((String::new(), false, true)));
        assert_eq!(shell("shell,raw:"), Some((String::new(), false, false)));
        assert_eq!(shell("exec:cat x"), Some(("cat x".into(), false, false)));
        assert!(matches!(parse_service("sync:"), Some(Service::Sync)));
        assert!(parse_service("framebuffer:").is_none());
        assert!(parse_service("shellfoo").is_none());
        assert_eq!(parse_mode("33261"), Some(0o100755));
        assert_eq!(parse_mode("0777"), Some(0o777));
        assert_eq!(parse_mode("0x1ed"), Some(0o755));
    }

    #[test]
    fn paths_outside_the_sandbox_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = dir.path().canonicalize().unwrap();
        fs::create_dir(sandbox.join("d")).unwrap();
        std::os::unix::fs::symlink("/etc", sandbox.join("d/out")).unwrap();
        let inside = format!("{}/d/new/file", sandbox.display());
        assert_eq!(
            confine(&sandbox, &inside, false).unwrap(),
            sandbox.join("d/new/file")
        );
        let dotdot = format!("{}/d/../../x", sandbox.display());
        assert!(confine(&sandbox, &dotdot, false).is_err());
        assert!(confine(&sandbox, "/etc/passwd", true).is_err());
        assert!(confine(&sandbox, "relative", true).is_err());
        let via_link = format!("{}/d/out/passwd", sandbox.display());
        assert!(confine(&sandbox, &via_link, true).is_err());
        let link_itself = format!("{}/d/out", sandbox.display());
        assert!(confine(&sandbox, &link_itself, true).is_err());
        assert!(
            confine(&sandbox, &link_itself, false).is_ok(),
            "lstat of the link itself is fine"
        );
    }

    #[test]
    fn the_adb_cli_runs_shell_v2_commands_with_status_and_stderr() {
        if !adb_or_skip() {
            return;
        }
        let (server, dev) = attached(AdbDeviceOptions::default());
        let o = adb(&server, &dev, &["shell", "echo", "hi"]);
        assert_eq!(
            (o.status.code(), text(&o.stdout)),
            (Some(0), "hi\n".into()),
            "{}",
            text(&o.stderr)
        );

        let o = adb(&server, &dev, &["shell", "echo out; echo err >&2; exit 3"]);
        assert_eq!(o.status.code(), Some(3), "shell_v2 carries the exit status");
        assert_eq!(text(&o.stdout), "out\n");
        assert_eq!(text(&o.stderr), "err\n");

        let o = adb(&server, &dev, &["shell", "getprop", "ro.product.cpu.abi"]);
        assert_eq!(text(&o.stdout), format!("{}\n", host_abi()));
        let o = adb(&server, &dev, &["shell", "getprop"]);
        assert!(
            text(&o.stdout).contains("[ro.product.model]: [meltbench-sim]\n"),
            "{}",
            text(&o.stdout)
        );
        let o = adb(&server, &dev, &["shell", "getprop", "no.such.prop"]);
        assert_eq!(text(&o.stdout), "\n");

        let o = adb(&server, &dev, &["shell", "pwd"]);
        assert_eq!(text(&o.stdout), format!("{}\n", dev.sandbox.display()));

        let o = adb(&server, &dev, &["exec-out", "printf", "raw"]);
        assert_eq!(text(&o.stdout), "raw");

        // stdin reaches the command, and closing it ends `cat`.
        let mut cmd = server.command();
        cmd.args(["-s", &dev.serial, "shell", "cat"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"through stdin\n")
            .unwrap();
        let mut got = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut got)
            .unwrap();
        assert!(wait_timeout(&mut child, Duration::from_secs(10)).is_some_and(|s| s.success()));
        assert_eq!(got, "through stdin\n");

        let o = adb(&server, &dev, &["devices", "-l"]);
        assert!(
            text(&o.stdout).contains("model:meltbench_sim"),
            "{}",
            text(&o.stdout)
        );
    }

    #[test]
    fn the_adb_cli_pushes_and_pulls_files_inside_the_sandbox_only() {
        if !adb_or_skip() {
            return;
        }
        let (server, dev) = attached(AdbDeviceOptions::default());
        let local = tempfile::tempdir().unwrap();
        // Several sync DATA chunks and several WRTE messages, not a round size.
        let content: Vec<u8> = (0..1_500_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let src = local.path().join("blob");
        fs::write(&src, &content).unwrap();
        fs::set_permissions(&src, fs::Permissions::from_mode(0o750)).unwrap();

        let remote = format!("{}/data/local/tmp/new/dir/blob", dev.sandbox.display());
        let o = adb(&server, &dev, &["push", src.to_str().unwrap(), &remote]);
        assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
        let on_device = dev.sandbox.join("data/local/tmp/new/dir/blob");
        assert_eq!(fs::read(&on_device).unwrap(), content);
        let mode = fs::metadata(&on_device).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o777, "adbd copies the user bits to group and other");

        let back = local.path().join("back");
        let o = adb(&server, &dev, &["pull", &remote, back.to_str().unwrap()]);
        assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
        assert_eq!(fs::read(&back).unwrap(), content);

        let o = adb(
            &server,
            &dev,
            &[
                "shell",
                "ls",
                &format!("{}/data/local/tmp/new/dir", dev.sandbox.display()),
            ],
        );
        assert_eq!(text(&o.stdout), "blob\n");

        let o = adb(
            &server,
            &dev,
            &[
                "push",
                src.to_str().unwrap(),
                "/etc/meltbench-should-not-exist",
            ],
        );
        assert!(!o.status.success());
        let said = format!("{}{}", text(&o.stdout), text(&o.stderr));
        assert!(
            said.contains("couldn't create file: Permission denied"),
            "{said}"
        );
        assert!(!Path::new("/etc/meltbench-should-not-exist").exists());
        let o = adb(
            &server,
            &dev,
            &["pull", "/etc/hostname", back.to_str().unwrap()],
        );
        let said = format!("{}{}", text(&o.stdout), text(&o.stderr));
        assert!(!o.status.success(), "{said}");
        assert!(said.contains("No such file or directory"), "{said}");
        let missing = format!("{}/missing", dev.sandbox.display());
        let o = adb(&server, &dev, &["pull", &missing, back.to_str().unwrap()]);
        let said = format!("{}{}", text(&o.stdout), text(&o.stderr));
        assert!(!o.status.success(), "{said}");
        assert!(said.contains("No such file or directory"), "{said}");
    }

    #[test]
    fn a_device_without_shell_v2_serves_the_v1_shell_and_sync() {
        if !adb_or_skip() {
            return;
        }
        let (server, dev) = attached(AdbDeviceOptions {
            shell_v2: false,
            ..Default::default()
        });
        let o = adb(&server, &dev, &["shell", "echo out; echo err >&2; exit 3"]);
        // v1 has one stream and no exit status.
        assert_eq!(o.status.code(), Some(0));
        assert_eq!(text(&o.stdout), "out\nerr\n");

        let local = tempfile::tempdir().unwrap();
        let src = local.path().join("small");
        fs::write(&src, b"hello").unwrap();
        let remote = format!("{}/data/local/tmp/small", dev.sandbox.display());
        let o = adb(&server, &dev, &["push", src.to_str().unwrap(), &remote]);
        assert!(o.status.success(), "{}", text(&o.stderr));
        let back = local.path().join("back");
        let o = adb(&server, &dev, &["pull", &remote, back.to_str().unwrap()]);
        assert!(o.status.success(), "{}", text(&o.stderr));
        assert_eq!(fs::read(back).unwrap(), b"hello");
    }

    #[test]
    fn several_devices_and_servers_run_at_once_and_drop_cleanly() {
        if !adb_or_skip() {
            return;
        }
        let (server_a, dev_a) = attached(AdbDeviceOptions::default());
        let dev_b = AdbDevice::start(AdbDeviceOptions {
            props: [("ro.product.model".to_string(), "second".to_string())].into(),
            ..Default::default()
        })
        .unwrap();
        server_a.connect(&dev_b).unwrap();
        let server_b = AdbServer::start().unwrap();
        assert_ne!(server_a.port, server_b.port);
        server_b.connect(&dev_b).unwrap();

        let o = server_a.run(&["devices"], Duration::from_secs(10)).unwrap();
        let listing = text(&o.stdout);
        assert!(
            listing.contains(&format!("{}\tdevice", dev_a.serial)),
            "{listing}"
        );
        assert!(
            listing.contains(&format!("{}\tdevice", dev_b.serial)),
            "{listing}"
        );
        let o = adb(&server_b, &dev_b, &["shell", "getprop", "ro.product.model"]);
        assert_eq!(text(&o.stdout), "second\n");

        // A shell still running when the device goes away is hung up, and the port closes.
        let mut cmd = server_a.command();
        let outside = tempfile::tempdir().unwrap();
        let marker = outside.path().join("survived");
        cmd.args([
            "-s",
            &dev_a.serial,
            "shell",
            &format!("sleep 2; touch {}", marker.display()),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        let mut child = cmd.spawn().unwrap();
        thread::sleep(Duration::from_millis(500));
        let port = dev_a.port;
        let sandbox = dev_a.sandbox.clone();
        let started = Instant::now();
        drop(dev_a);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_err(),
            "the listener is closed"
        );
        assert!(
            wait_timeout(&mut child, Duration::from_secs(10)).is_some(),
            "adb shell ends with the device"
        );
        assert!(!sandbox.exists(), "the sandbox is removed");
        thread::sleep(Duration::from_secs(2));
        assert!(!marker.exists(), "the shell was hung up, not left running");

        let port_b = server_b.port;
        drop(server_b);
        assert!(!answers_as_adb_server(port_b), "the server is stopped");
    }
}
