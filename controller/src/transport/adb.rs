//! Android devices through an adb server.
//!
//! The controller never talks to a phone directly: it talks to the adb server (`adb_server` in
//! devices.yaml, 127.0.0.1:5037 by default), which reaches the phone over USB or Wi-Fi. So a
//! device is usable here exactly when `adb devices` lists it as `device`.
//!
//! - Commands run through the shell protocol v2 (`shell,v2,raw:`) when the device advertises
//!   `shell_v2` (Android 7+): stdout, stderr and the exit status arrive as separate packets.
//!   Older devices only have the v1 shell (one byte stream, no status); there the command is
//!   wrapped so that the shell prints a random marker and the status after it, and stderr is
//!   parked in a file under `$TMPDIR` (`/data/local/tmp`) and printed after the marker.
//! - Files go through the sync service: `SEND` (with the mode, then a `chmod` because adbd
//!   copies the owner's permission bits to group and other) and `RECV`.
//! - Command lines are built only by [`quote::command_line`].
//!
//! Every exchange is bounded in time: connecting and each request to the server by the timeout
//! given to [`AdbTransport::connect`], a command by its own timeout (after which the stream is
//! closed, and adbd hangs the command up), a transfer by [`TRANSFER_STALL`] without progress.
//!
//! From `adb_client` this uses the device list model (`DeviceShort`, `DeviceState`). Its
//! request functions are not used: they have no timeouts and do not expose their socket (a
//! stalled device would block a device task for ever), its server handle starts `adb
//! start-server` on 5037 by itself, and its push always sends mode 0777. So the few host
//! requests needed are spoken here, over a `TcpStream` with timeouts (see [`HostConn`]).

use super::{quote, tail, FileChannel, Output, Transport, TransportError};
use adb_client::server::{DeviceShort, DeviceState};
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A push or pull that moves no byte for this long is abandoned.
pub const TRANSFER_STALL: Duration = Duration::from_secs(60);

/// The largest sync `DATA` chunk adbd accepts.
const SYNC_DATA_MAX: usize = 64 * 1024;
/// The longest path (with `,mode` for `SEND`) a sync request may carry.
const SYNC_PATH_MAX: usize = 1024;
/// How much stderr a streamed command keeps for its tail.
const STDERR_KEEP: usize = 64 * 1024;

/// Shell protocol v2 packet ids (AOSP `shell_protocol.h`).
const SHELL_STDOUT: u8 = 1;
const SHELL_STDERR: u8 = 2;
const SHELL_EXIT: u8 = 3;
const SHELL_CLOSE_STDIN: u8 = 4;

/// A device reached through an adb server.
#[derive(Debug)]
pub struct AdbTransport {
    serial: String,
    server: String,
    addr: SocketAddr,
    features: Vec<String>,
    /// Bound on connecting to the server and on each request/answer exchange.
    timeout: Duration,
}

/// `1.5 s`, `30 s`: durations in messages.
fn secs(d: Duration) -> String {
    if d < Duration::from_secs(10) && d.subsec_millis() != 0 {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        format!("{} s", d.as_secs())
    }
}

// ---------------------------------------------------------------------------------------------
// The adb server's request protocol
// ---------------------------------------------------------------------------------------------

/// Why a request to the server did not succeed.
#[derive(Debug)]
enum HostError {
    /// The server (or the device behind it) answered `FAIL` with this message.
    Fail(String),
    Io(io::Error),
}

impl std::fmt::Display for HostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostError::Fail(m) => f.write_str(m),
            HostError::Io(e) if is_timeout(e) => f.write_str("no answer in time"),
            HostError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl From<io::Error> for HostError {
    fn from(e: io::Error) -> Self {
        HostError::Io(e)
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// One connection to the adb server, speaking its smart-socket protocol (AOSP
/// `OVERVIEW.TXT`): a request is its length in 4 hex digits followed by its text; the answer is
/// `OKAY`, or `FAIL` followed by a hex length and a message. After `host:transport:SERIAL` the
/// next request is a service of that device (`shell,v2,raw:...`, `sync:`), and once the device
/// accepts it the socket carries the service's own bytes.
struct HostConn {
    stream: TcpStream,
}

impl HostConn {
    fn open(addr: SocketAddr, timeout: Duration) -> io::Result<HostConn> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(HostConn { stream })
    }

    fn request(&mut self, service: &str) -> Result<(), HostError> {
        if service.len() > 0xffff {
            return Err(HostError::Fail(format!(
                "request of {} bytes is longer than the adb protocol allows (65535)",
                service.len()
            )));
        }
        self.stream
            .write_all(format!("{:04x}{service}", service.len()).as_bytes())?;
        let mut status = [0u8; 4];
        self.stream.read_exact(&mut status)?;
        match &status {
            b"OKAY" => Ok(()),
            b"FAIL" => {
                let msg = self.read_block()?;
                Err(HostError::Fail(String::from_utf8_lossy(&msg).into_owned()))
            }
            other => Err(HostError::Io(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "unexpected answer {:?} (is this an adb server?)",
                    String::from_utf8_lossy(other)
                ),
            ))),
        }
    }

    /// A hex-length-prefixed block, as host services answer.
    fn read_block(&mut self) -> io::Result<Vec<u8>> {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len)?;
        let len = std::str::from_utf8(&len)
            .ok()
            .and_then(|s| usize::from_str_radix(s, 16).ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad length"))?;
        let mut data = vec![0u8; len];
        self.stream.read_exact(&mut data)?;
        Ok(data)
    }

    /// Sends a request and returns the block it answers with.
    fn query(&mut self, service: &str) -> Result<Vec<u8>, HostError> {
        self.request(service)?;
        Ok(self.read_block()?)
    }
}

/// `host:devices`: serials and states, parsed by adb_client where it can (`serial\tstate`),
/// as is otherwise (states like `no permissions (...)` have spaces).
pub fn parse_devices(listing: &str) -> Vec<(String, String)> {
    listing
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(
            |line| match DeviceShort::try_from(line.as_bytes().to_vec()) {
                Ok(d) => (d.identifier, d.state.to_string()),
                Err(_) => {
                    let (serial, state) = line.split_once('\t').unwrap_or((line, "unknown"));
                    (serial.trim().to_string(), state.trim().to_string())
                }
            },
        )
        .collect()
}

/// What to tell the user about a device the server lists in a state other than `device`.
fn state_advice(state: &str) -> &'static str {
    match state.parse::<DeviceState>() {
        Ok(DeviceState::Unauthorized) | Ok(DeviceState::Authorizing) => {
            "unlock the phone and accept its 'Allow USB debugging?' prompt"
        }
        Ok(DeviceState::Offline) => "reconnect it (replug the cable, or `adb reconnect offline`)",
        Ok(DeviceState::Connecting) => "wait a moment for it to finish connecting",
        _ if state.starts_with("no permissions") => {
            "fix the USB permissions (udev rules for the phone, or your user in the plugdev group)"
        }
        _ => "boot it normally with USB debugging on",
    }
}

// ---------------------------------------------------------------------------------------------
// Shell output
// ---------------------------------------------------------------------------------------------

/// Why reading a command's output stopped early.
enum ReadStop {
    Deadline,
    Io(io::Error),
}

/// One read, bounded by the deadline if there is one.
fn read_some(
    stream: &mut TcpStream,
    buf: &mut [u8],
    deadline: Option<Instant>,
) -> Result<usize, ReadStop> {
    loop {
        if let Some(d) = deadline {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ReadStop::Deadline);
            }
            stream.set_read_timeout(Some(left)).map_err(ReadStop::Io)?;
        }
        match stream.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if is_timeout(&e) && deadline.is_some() => return Err(ReadStop::Deadline),
            Err(e) => return Err(ReadStop::Io(e)),
        }
    }
}

/// Reads shell protocol v2 packets until the exit packet; `None` if the stream ended without one.
fn read_shell_v2(
    stream: &mut TcpStream,
    deadline: Option<Instant>,
    on_stdout: &mut dyn FnMut(&[u8]),
    on_stderr: &mut dyn FnMut(&[u8]),
) -> Result<Option<i32>, ReadStop> {
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        while pending.len() >= 5 {
            let len = u32::from_le_bytes(pending[1..5].try_into().expect("4 bytes")) as usize;
            if pending.len() < 5 + len {
                break;
            }
            let data = &pending[5..5 + len];
            match pending[0] {
                SHELL_STDOUT => on_stdout(data),
                SHELL_STDERR => on_stderr(data),
                SHELL_EXIT => return Ok(Some(i32::from(data.first().copied().unwrap_or(255)))),
                _ => {} // nothing else flows from the device to us
            }
            pending.drain(..5 + len);
        }
        let n = read_some(stream, &mut buf, deadline)?;
        if n == 0 {
            return Ok(None);
        }
        pending.extend_from_slice(&buf[..n]);
    }
}

/// Splits bytes into lines (without `\n` or `\r\n`).
#[derive(Default)]
struct Lines {
    pending: Vec<u8>,
}

impl Lines {
    fn feed(&mut self, data: &[u8], on_line: &mut dyn FnMut(&[u8])) {
        self.pending.extend_from_slice(data);
        let mut start = 0;
        while let Some(i) = self.pending[start..].iter().position(|&b| b == b'\n') {
            let line = &self.pending[start..start + i];
            on_line(line.strip_suffix(b"\r").unwrap_or(line));
            start += i + 1;
        }
        self.pending.drain(..start);
    }

    /// The last line, if the output did not end with a newline.
    fn finish(&mut self, on_line: &mut dyn FnMut(&[u8])) {
        if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            on_line(line.strip_suffix(b"\r").unwrap_or(&line));
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The end of `s` up to `keep` bytes, so that a chatty stderr cannot fill memory.
fn keep_tail(s: &mut Vec<u8>, keep: usize) {
    if s.len() > 2 * keep {
        s.drain(..s.len() - keep);
    }
}

/// A random token, so that no command output can fake the v1 exit marker.
fn nonce() -> String {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.write_u32(std::process::id());
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    format!("{:016x}", h.finish())
}

/// A command wrapped for the v1 shell, which carries neither the exit status nor a separate
/// stderr. The shell runs it with stderr redirected to a temporary file (if `$TMPDIR`, else
/// /data/local/tmp, is writable; otherwise stderr stays mixed into stdout), then prints
/// `<marker><status>` with `echo` (Android 5's shell has no `printf`) and the file's contents.
/// The marker is random, so the command's own output cannot contain it: everything before it is
/// stdout, everything after its line is stderr.
struct V1Command {
    marker: String,
    line: String,
}

impl V1Command {
    fn new(command_line: &str) -> V1Command {
        let nonce = nonce();
        let marker = format!("MELTBENCH-EXIT-{nonce}:");
        let line = format!(
            "f=${{TMPDIR:-/data/local/tmp}}/.meltbench-stderr-{nonce}; \
             if (: >\"$f\") 2>/dev/null; then {{ {command_line} ; }} 2>\"$f\"; \
             else {{ {command_line} ; }}; fi; \
             echo {marker}$?; cat \"$f\" 2>/dev/null; rm -f \"$f\""
        );
        V1Command { marker, line }
    }

    /// The status on a marker line's remainder (`<status>\n`).
    fn status(after_marker: &[u8]) -> Option<i32> {
        let text = std::str::from_utf8(after_marker).ok()?;
        text.trim_end_matches(['\r', '\n']).parse().ok()
    }

    /// Splits the whole output into stdout, status and stderr.
    fn split(&self, all: &[u8]) -> Option<Output> {
        let i = find(all, self.marker.as_bytes())?;
        let rest = &all[i + self.marker.len()..];
        let nl = rest.iter().position(|&b| b == b'\n')?;
        Some(Output {
            status: Some(Self::status(&rest[..nl])?),
            stdout: all[..i].to_vec(),
            stderr: rest[nl + 1..].to_vec(),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The transport
// ---------------------------------------------------------------------------------------------

/// The devices attached to the adb server at `server` (`host:port`), as (serial, state), within
/// `timeout`; `meltbench devices` lists those the inventory does not name.
pub fn list_devices(
    server: &str,
    timeout: Duration,
) -> Result<Vec<(String, String)>, TransportError> {
    server_devices(server, timeout).map(|(_, d)| d)
}

/// The server's address that answered, and its device list.
fn server_devices(
    server: &str,
    timeout: Duration,
) -> Result<(SocketAddr, Vec<(String, String)>), TransportError> {
    let addrs: Vec<SocketAddr> = server
        .to_socket_addrs()
        .map(|a| a.collect())
        .unwrap_or_default();
    if addrs.is_empty() {
        return Err(TransportError::Connect(format!(
            "adb server address '{server}' is not a reachable host:port \
                 (fix adb_server in devices.yaml, e.g. 127.0.0.1:5037)"
        )));
    }
    let unreachable = |e: &dyn std::fmt::Display| {
        TransportError::Connect(format!(
            "cannot reach the adb server at {server}: {e}. Start it with `adb start-server` \
                 (for a port other than 5037: `adb -P PORT start-server`), or point adb_server \
                 in devices.yaml at the server you use"
        ))
    };
    // `localhost` may resolve to ::1 and 127.0.0.1 while the server listens on one only.
    let mut opened = Err(io::Error::from(io::ErrorKind::AddrNotAvailable));
    for addr in &addrs {
        opened = HostConn::open(*addr, timeout).map(|c| (*addr, c));
        if opened.is_ok() {
            break;
        }
    }
    let (addr, mut conn) = opened.map_err(|e| {
        if is_timeout(&e) {
            unreachable(&format!("no answer within {}", secs(timeout)))
        } else {
            unreachable(&e)
        }
    })?;
    let listing = conn.query("host:devices").map_err(|e| unreachable(&e))?;
    Ok((addr, parse_devices(&String::from_utf8_lossy(&listing))))
}

impl AdbTransport {
    /// Reaches `serial` through the adb server at `server` (`host:port`), each step bounded by
    /// `timeout`: the server must answer, list the device as `device`, and tell its features.
    pub fn connect(
        serial: &str,
        server: &str,
        timeout: Duration,
    ) -> Result<AdbTransport, TransportError> {
        let (addr, devices) = server_devices(server, timeout)?;
        let unreachable = |e: &dyn std::fmt::Display| {
            TransportError::Connect(format!("cannot reach the adb server at {server}: {e}"))
        };
        match devices.iter().find(|(s, _)| s == serial) {
            None => {
                let attached = if devices.is_empty() {
                    "none".to_string()
                } else {
                    devices
                        .iter()
                        .map(|(s, state)| format!("{s} ({state})"))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                return Err(TransportError::Connect(format!(
                    "the adb server at {server} has no device '{serial}' (attached: {attached}). \
                     Check the serial in devices.yaml against `adb devices`; plug the phone in \
                     over USB with USB debugging on, or attach a network device with \
                     `adb connect HOST:PORT`"
                )));
            }
            Some((_, state)) if state != "device" => {
                return Err(TransportError::Connect(format!(
                    "device {serial} on the adb server at {server} is '{state}', not ready: {}, \
                     then check `adb devices`",
                    state_advice(state)
                )));
            }
            Some(_) => {}
        }
        let mut conn = HostConn::open(addr, timeout).map_err(|e| unreachable(&e))?;
        let features = conn
            .query(&format!("host-serial:{serial}:features"))
            .map_err(|e| {
                TransportError::Connect(format!(
                    "adb {serial}@{server}: cannot read the device's features: {e}; check `adb devices`"
                ))
            })?;
        let features = String::from_utf8_lossy(&features)
            .split(',')
            .map(|f| f.trim().to_string())
            .filter(|f| !f.is_empty())
            .collect();
        Ok(AdbTransport {
            serial: serial.to_string(),
            server: server.to_string(),
            addr,
            features,
            timeout,
        })
    }

    /// What the device advertised (`shell_v2`, `stat_v2`, ...).
    pub fn features(&self) -> &[String] {
        &self.features
    }

    /// Whether commands use the shell protocol v2 (else the v1 fallback).
    pub fn has_shell_v2(&self) -> bool {
        self.features.iter().any(|f| f == "shell_v2")
    }

    /// A connection to `service` on the device.
    fn open_service(&self, service: &str) -> Result<HostConn, TransportError> {
        let mut conn = HostConn::open(self.addr, self.timeout).map_err(|e| {
            TransportError::Connect(format!(
                "{}: cannot reach the adb server: {e}; is it still running? (`adb start-server`)",
                self.describe()
            ))
        })?;
        conn.request(&format!("host:transport:{}", self.serial))
            .map_err(|e| {
                TransportError::Connect(format!(
                    "{}: the adb server cannot reach the device: {e}; check `adb devices`",
                    self.describe()
                ))
            })?;
        let name = service.split(':').next().unwrap_or(service);
        conn.request(service).map_err(|e| {
            TransportError::Other(format!(
                // "closed" here is most often a device that dropped off between the
                // transport switch and the service request.
                "{}: the device refused its {name} service: {e} (is the device still in \
                 `adb devices`?)",
                self.describe()
            ))
        })?;
        Ok(conn)
    }

    /// Opens a shell for `argv`: v2 when the device has it, else v1 with the wrapper.
    fn open_shell(&self, argv: &[&str]) -> Result<(HostConn, Option<V1Command>), TransportError> {
        if argv.is_empty() {
            return Err(TransportError::Other(format!(
                "{}: empty command",
                self.describe()
            )));
        }
        let line = quote::command_line(argv);
        if self.has_shell_v2() {
            let mut conn = self.open_service(&format!("shell,v2,raw:{line}"))?;
            // Nothing will be typed: let commands that read stdin see its end.
            let _ = conn.stream.write_all(&[SHELL_CLOSE_STDIN, 0, 0, 0, 0]);
            Ok((conn, None))
        } else {
            let v1 = V1Command::new(&line);
            let conn = self.open_service(&format!("shell:{}", v1.line))?;
            Ok((conn, Some(v1)))
        }
    }

    fn lost(&self, argv: &[&str], e: &dyn std::fmt::Display) -> TransportError {
        TransportError::Other(format!(
            "{}: lost the connection while running `{}`: {e} (is the device still in `adb devices`?)",
            self.describe(),
            quote::command_line(argv)
        ))
    }

    fn no_status(&self, argv: &[&str]) -> TransportError {
        TransportError::Other(format!(
            "{}: `{}` ended without reporting an exit status (the device closed the shell; \
             was it disconnected or rebooted?)",
            self.describe(),
            quote::command_line(argv)
        ))
    }

    fn transfer_error(&self, what: &str, e: io::Error) -> TransportError {
        if is_timeout(&e) {
            TransportError::Timeout(format!(
                "{}: {what} made no progress for {}",
                self.describe(),
                secs(TRANSFER_STALL)
            ))
        } else {
            TransportError::Other(format!("{}: {what} failed: {e}", self.describe()))
        }
    }

    /// A sync session, its socket bounded by [`TRANSFER_STALL`].
    fn open_sync(&self) -> Result<HostConn, TransportError> {
        let conn = self.open_service("sync:")?;
        let stall = Some(TRANSFER_STALL.max(self.timeout));
        let _ = conn.stream.set_read_timeout(stall);
        let _ = conn.stream.set_write_timeout(stall);
        Ok(conn)
    }

    /// Reads a sync status (`OKAY` or `FAIL` + message) after a `SEND`.
    fn sync_status(stream: &mut TcpStream) -> io::Result<Result<(), String>> {
        let mut head = [0u8; 8];
        stream.read_exact(&mut head)?;
        let len = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes")) as usize;
        match &head[..4] {
            b"OKAY" => Ok(Ok(())),
            b"FAIL" => {
                let mut msg = vec![0u8; len.min(64 * 1024)];
                stream.read_exact(&mut msg)?;
                Ok(Err(String::from_utf8_lossy(&msg).into_owned()))
            }
            other => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "unexpected sync answer {:?}",
                    String::from_utf8_lossy(other)
                ),
            )),
        }
    }
}

fn sync_request(id: &[u8; 4], arg: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(8 + arg.len());
    m.extend_from_slice(id);
    m.extend_from_slice(&(arg.len() as u32).to_le_bytes());
    m.extend_from_slice(arg);
    m
}

impl Transport for AdbTransport {
    /// The phone's primary ABI (`getprop ro.product.cpu.abi`), falling back to `uname -m`.
    fn bundle_target(&mut self, timeout: Duration) -> Result<&'static str, String> {
        let o = self
            .exec(&["getprop", "ro.product.cpu.abi"], timeout)
            .map_err(|e| e.to_string())?;
        let abi = o.stdout_text().trim().to_string();
        if abi.is_empty() {
            let o = self
                .exec(&["uname", "-m"], timeout)
                .map_err(|e| e.to_string())?;
            return crate::bundle::target_for_uname(o.stdout_text().trim())
                .map_err(|e| format!("{}: {e}", self.describe()));
        }
        crate::bundle::target_for_android_abi(&abi).map_err(|e| format!("{}: {e}", self.describe()))
    }

    /// /data/local/tmp is the one place an adb shell may write and execute on every phone.
    fn default_workdir(&mut self, _timeout: Duration) -> Result<String, String> {
        Ok("/data/local/tmp/meltbench".into())
    }

    fn describe(&self) -> String {
        format!("adb {}@{}", self.serial, self.server)
    }

    fn exec(&mut self, argv: &[&str], timeout: Duration) -> Result<Output, TransportError> {
        let deadline = Instant::now() + timeout;
        let (mut conn, v1) = self.open_shell(argv)?;
        let timed_out = || {
            TransportError::Timeout(format!(
                "{}: `{}` did not finish within {} (its shell was closed, which hangs it up)",
                self.describe(),
                quote::command_line(argv),
                secs(timeout)
            ))
        };
        let stop = |e: ReadStop| match e {
            ReadStop::Deadline => timed_out(),
            ReadStop::Io(e) => self.lost(argv, &e),
        };
        // On every early return the socket closes, the server closes the stream, and adbd
        // hangs up the command.
        match v1 {
            None => {
                let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
                let status = read_shell_v2(
                    &mut conn.stream,
                    Some(deadline),
                    &mut |b| stdout.extend_from_slice(b),
                    &mut |b| stderr.extend_from_slice(b),
                )
                .map_err(stop)?;
                let status = status.ok_or_else(|| self.no_status(argv))?;
                Ok(Output {
                    status: Some(status),
                    stdout,
                    stderr,
                })
            }
            Some(v1) => {
                let mut all = Vec::new();
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = read_some(&mut conn.stream, &mut buf, Some(deadline)).map_err(stop)?;
                    if n == 0 {
                        break;
                    }
                    all.extend_from_slice(&buf[..n]);
                }
                v1.split(&all).ok_or_else(|| self.no_status(argv))
            }
        }
    }

    fn stream(
        &mut self,
        argv: &[&str],
        on_line: &mut dyn FnMut(&str),
    ) -> Result<(Option<i32>, String), TransportError> {
        let (mut conn, v1) = self.open_shell(argv)?;
        // No overall bound here: the agent enforces each cell's own.
        let _ = conn.stream.set_read_timeout(None);
        let mut lines = Lines::default();
        let mut stderr = Vec::new();
        let mut emit = |line: &[u8]| on_line(&String::from_utf8_lossy(line));
        let stop = |e: ReadStop| match e {
            ReadStop::Deadline => unreachable!("no deadline"),
            ReadStop::Io(e) => self.lost(argv, &e),
        };
        let status = match v1 {
            None => {
                let status = read_shell_v2(
                    &mut conn.stream,
                    None,
                    &mut |b| lines.feed(b, &mut emit),
                    &mut |b| {
                        stderr.extend_from_slice(b);
                        keep_tail(&mut stderr, STDERR_KEEP);
                    },
                )
                .map_err(stop)?;
                lines.finish(&mut emit);
                status.ok_or_else(|| self.no_status(argv))?
            }
            Some(v1) => {
                let marker = v1.marker.as_bytes();
                let mut status = None;
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = read_some(&mut conn.stream, &mut buf, None).map_err(stop)?;
                    if n == 0 {
                        break;
                    }
                    if status.is_some() {
                        stderr.extend_from_slice(&buf[..n]);
                        keep_tail(&mut stderr, STDERR_KEEP);
                        continue;
                    }
                    // Stdout lines until the marker line; after it, stderr.
                    let mut after: Vec<u8> = Vec::new();
                    lines.feed(&buf[..n], &mut |line| {
                        if status.is_some() {
                            after.extend_from_slice(line);
                            after.push(b'\n');
                        } else if let Some(i) = find(line, marker) {
                            if i > 0 {
                                emit(&line[..i]); // stdout's last line had no newline
                            }
                            status = Some(V1Command::status(&line[i + marker.len()..]));
                        } else {
                            emit(line);
                        }
                    });
                    if status.is_some() {
                        stderr.extend_from_slice(&after);
                        stderr.append(&mut lines.pending);
                    }
                }
                match status {
                    Some(Some(s)) => s,
                    _ => {
                        lines.finish(&mut emit);
                        return Err(self.no_status(argv));
                    }
                }
            }
        };
        let stderr = String::from_utf8_lossy(&stderr).into_owned();
        Ok((Some(status), tail(&stderr, 20)))
    }

    fn push(&mut self, local: &Path, remote: &str, mode: u32) -> Result<u64, TransportError> {
        let what = format!("pushing {} to {remote}", local.display());
        let mut file = File::open(local).map_err(|e| {
            TransportError::Other(format!(
                "{}: cannot read {}: {e}",
                self.describe(),
                local.display()
            ))
        })?;
        let mode = mode & 0o7777;
        // The mode travels in decimal with the file type, as the adb CLI sends it.
        let spec = format!("{remote},{}", 0o100000 | mode);
        if spec.len() > SYNC_PATH_MAX {
            return Err(TransportError::Other(format!(
                "{}: {what}: the remote path is longer than adb allows ({SYNC_PATH_MAX} bytes)",
                self.describe()
            )));
        }
        let mtime = file
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs() as u32);
        let mut conn = self.open_sync()?;
        let stream = &mut conn.stream;
        let mut sent = 0u64;
        let upload = (|| -> io::Result<()> {
            stream.write_all(&sync_request(b"SEND", spec.as_bytes()))?;
            let mut buf = vec![0u8; SYNC_DATA_MAX];
            loop {
                let n = file.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                stream.write_all(&sync_request(b"DATA", &buf[..n]))?;
                sent += n as u64;
            }
            stream.write_all(b"DONE")?;
            stream.write_all(&mtime.to_le_bytes())
        })();
        // A device that failed early says why before the stream ends.
        let status = Self::sync_status(stream);
        match (upload, status) {
            (_, Ok(Err(msg))) => {
                return Err(TransportError::Other(format!(
                    "{}: {what} failed: {msg}",
                    self.describe()
                )))
            }
            (Err(e), _) | (Ok(()), Err(e)) => return Err(self.transfer_error(&what, e)),
            (Ok(()), Ok(Ok(()))) => {}
        }
        let _ = stream.write_all(&sync_request(b"QUIT", b""));
        drop(conn);
        // adbd copies the owner's permission bits to group and other: set exactly `mode`.
        let octal = format!("{mode:o}");
        let chmod = self.exec(
            &["chmod", &octal, remote],
            self.timeout.max(Duration::from_secs(30)),
        )?;
        if !chmod.success() {
            return Err(TransportError::Other(format!(
                "{}: chmod {octal} {remote} after pushing it failed: {}",
                self.describe(),
                tail(&chmod.stderr_text(), 5)
            )));
        }
        Ok(sent)
    }

    fn pull(&mut self, remote: &str, local: &Path) -> Result<u64, TransportError> {
        let what = format!("pulling {remote} to {}", local.display());
        if remote.len() > SYNC_PATH_MAX {
            return Err(TransportError::Other(format!(
                "{}: {what}: the remote path is longer than adb allows ({SYNC_PATH_MAX} bytes)",
                self.describe()
            )));
        }
        let mut conn = self.open_sync()?;
        let stream = &mut conn.stream;
        // The local file is created on the first byte, so a refused pull leaves nothing behind.
        let mut out: Option<File> = None;
        let mut received = 0u64;
        let download = (|| -> io::Result<Result<(), String>> {
            stream.write_all(&sync_request(b"RECV", remote.as_bytes()))?;
            let mut buf = vec![0u8; SYNC_DATA_MAX];
            loop {
                let mut head = [0u8; 8];
                stream.read_exact(&mut head)?;
                let len = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes")) as usize;
                match &head[..4] {
                    b"DATA" => {
                        if buf.len() < len {
                            buf.resize(len, 0);
                        }
                        stream.read_exact(&mut buf[..len])?;
                        let file = match &mut out {
                            Some(f) => f,
                            None => out.insert(File::create(local)?),
                        };
                        file.write_all(&buf[..len])?;
                        received += len as u64;
                    }
                    b"DONE" => {
                        if out.is_none() {
                            out = Some(File::create(local)?);
                        }
                        return Ok(Ok(()));
                    }
                    b"FAIL" => {
                        let mut msg = vec![0u8; len.min(64 * 1024)];
                        stream.read_exact(&mut msg)?;
                        return Ok(Err(String::from_utf8_lossy(&msg).into_owned()));
                    }
                    other => {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!(
                                "unexpected sync answer {:?}",
                                String::from_utf8_lossy(other)
                            ),
                        ))
                    }
                }
            }
        })();
        let result = match download {
            Ok(Ok(())) => {
                let _ = stream.write_all(&sync_request(b"QUIT", b""));
                match out.take().map(|f| f.sync_all()) {
                    Some(Err(e)) => Err(TransportError::Other(format!(
                        "{}: {what}: writing {}: {e}",
                        self.describe(),
                        local.display()
                    ))),
                    _ => Ok(received),
                }
            }
            Ok(Err(msg)) => Err(TransportError::Other(format!(
                "{}: {what} failed: {msg}",
                self.describe()
            ))),
            Err(e) => Err(self.transfer_error(&what, e)),
        };
        if result.is_err() && out.is_some() {
            drop(out);
            let _ = std::fs::remove_file(local);
        }
        result
    }

    fn file_channel(&self) -> Option<FileChannel> {
        Some(FileChannel::AdbSync)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_listings_parse_with_and_without_adb_client() {
        let listing = "127.0.0.1:5555\tdevice\nR58M\tunauthorized\n\
                       0123\tno permissions (missing udev rules? user is in the plugdev group); see [http://developer.android.com/tools/device.html]\n";
        let devices = parse_devices(listing);
        assert_eq!(devices[0], ("127.0.0.1:5555".into(), "device".into()));
        assert_eq!(devices[1], ("R58M".into(), "unauthorized".into()));
        assert_eq!(devices[2].0, "0123");
        assert!(devices[2].1.starts_with("no permissions"));
        assert!(state_advice(&devices[1].1).contains("Allow USB debugging"));
        assert!(state_advice(&devices[2].1).contains("udev"));
        assert!(parse_devices("").is_empty());
    }

    #[test]
    fn v1_output_splits_at_the_marker() {
        let v1 = V1Command::new("true");
        let m = &v1.marker;
        let all = format!("out\nlast{m}3\nerr line\n");
        let o = v1.split(all.as_bytes()).unwrap();
        assert_eq!(
            (o.status, o.stdout_text(), o.stderr_text()),
            (Some(3), "out\nlast".into(), "err line\n".into())
        );
        // Old devices translate newlines on a PTY.
        let o = v1.split(format!("x\r\n{m}0\r\n").as_bytes()).unwrap();
        assert_eq!((o.status, o.stdout_text()), (Some(0), "x\r\n".into()));
        assert!(v1.split(b"no marker\n").is_none());
        assert!(v1.split(m.as_bytes()).is_none(), "cut before the status");
        assert_ne!(
            V1Command::new("true").marker,
            v1.marker,
            "every command gets a fresh marker"
        );
    }

    #[test]
    fn the_v1_wrapper_reports_status_and_separates_stderr_in_a_real_shell() {
        let dir = tempfile::tempdir().unwrap();
        let inner =
            quote::command_line(&["sh", "-c", "echo out; echo err >&2; printf tail; exit 7"]);
        let v1 = V1Command::new(&inner);
        let run = |tmpdir: &str| {
            let out = std::process::Command::new("sh")
                .arg("-c")
                // One stream for both, as a v1 shell has.
                .arg(format!("exec 2>&1; {}", v1.line))
                .env("TMPDIR", tmpdir)
                .output()
                .unwrap();
            v1.split(&out.stdout).unwrap()
        };
        let o = run(dir.path().to_str().unwrap());
        assert_eq!(o.status, Some(7));
        assert_eq!(o.stdout_text(), "out\ntail");
        assert_eq!(o.stderr_text(), "err\n");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "the stderr file is removed"
        );
        // No writable TMPDIR: the command still runs, stderr joins stdout.
        let o = run("/nonexistent/dir");
        assert_eq!(o.status, Some(7));
        assert_eq!(o.stdout_text(), "out\nerr\ntail");
    }

    #[test]
    fn lines_are_split_across_reads() {
        let mut lines = Lines::default();
        let mut got = Vec::new();
        let mut push = |l: &[u8]| got.push(String::from_utf8_lossy(l).into_owned());
        lines.feed(b"a\nb", &mut push);
        lines.feed(b"c\r\nd", &mut push);
        lines.finish(&mut push);
        assert_eq!(got, ["a", "bc", "d"]);
    }
}
