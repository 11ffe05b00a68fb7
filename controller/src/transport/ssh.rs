//! SSH devices (Raspberry Pis, Jetsons, other Linux machines), through libssh2 (the `ssh2`
//! crate) rather than the `ssh` binary: errors come back as codes we can turn into advice, every
//! phase honours our timeouts, and nothing depends on the user's `~/.ssh/config`.
//!
//! Trust works like OpenSSH's: the device's host key must be in a known_hosts file (or match a
//! pinned fingerprint), a changed key is always refused, and `known_hosts: accept-new` records a
//! key seen for the first time. Commands run through the login shell of the remote account, so
//! their command line is built by [`quote::command_line`] and nothing else; files travel over
//! SFTP, where a path is a protocol field and never reaches a shell.
//!
//! `exec` wraps the command in a tiny `sh -c` script that first reports its process ID (see
//! `ANNOUNCE_PID`), because closing an SSH channel does not stop the command behind it: a
//! command that outlives its timeout is killed by process group instead of lingering on the
//! device and disturbing later measurements.
//!
//! The session is in blocking mode, bounded by libssh2's per-call timeout, except while a command
//! runs: then it is non-blocking so stdout and stderr are drained together (see
//! `SshTransport::pump`). Channels and SFTP handles are only ever dropped in blocking mode,
//! because libssh2 cannot finish closing them otherwise.

use super::{quote, tail, Output, Transport, TransportError};
use crate::devices::{KnownHosts, SshTarget};
use sha2::{Digest, Sha256};
use ssh2::{
    Channel, CheckResult, ErrorCode, FileStat, KnownHostFileKind, MethodType, OpenFlags, OpenType,
    Session, Sftp,
};
use std::fs;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

// libssh2 error codes (libssh2.h); `ssh2` exposes them only as numbers.
const ERR_SOCKET_SEND: i32 = -7;
const ERR_TIMEOUT: i32 = -9;
const ERR_SOCKET_DISCONNECT: i32 = -13;
const ERR_FILE: i32 = -16;
const ERR_AUTHENTICATION_FAILED: i32 = -18;
const ERR_PUBLICKEY_UNVERIFIED: i32 = -19;
const ERR_CHANNEL_FAILURE: i32 = -21;
const ERR_SOCKET_RECV: i32 = -43;
// SFTP status codes (draft-ietf-secsh-filexfer).
const FX_NO_SUCH_FILE: i32 = 2;
const FX_PERMISSION_DENIED: i32 = 3;
const FX_NO_SUCH_PATH: i32 = 10;

/// Host key algorithms in OpenSSH's default order. libssh2's own order puts ECDSA first, so on a
/// device with several host keys it would be shown a different key than `ssh` recorded, and
/// known_hosts would look changed. Algorithms for key types known_hosts already holds for the
/// device go first (as OpenSSH does), the rest keep this order.
const HOST_KEY_ALGORITHMS: [(&str, &str); 7] = [
    ("ssh-ed25519", "ssh-ed25519"),
    ("ecdsa-sha2-nistp256", "ecdsa-sha2-nistp256"),
    ("ecdsa-sha2-nistp384", "ecdsa-sha2-nistp384"),
    ("ecdsa-sha2-nistp521", "ecdsa-sha2-nistp521"),
    ("rsa-sha2-512", "ssh-rsa"),
    ("rsa-sha2-256", "ssh-rsa"),
    ("ssh-rsa", "ssh-rsa"),
];

/// A transfer or control request that makes no progress for this long is treated as dead: a
/// pushed model can take minutes in total, but every single SFTP round trip should not.
const STALL: Duration = Duration::from_secs(120);
/// How long closing a channel or killing a timed-out command may take before we give up on it.
const CLOSE_GRACE: Duration = Duration::from_secs(3);
/// Polling back-off while a command is silent: quick to notice new output, idle when there is
/// none (a benchmark cell can print nothing for minutes).
const IDLE_MIN: Duration = Duration::from_millis(1);
const IDLE_MAX: Duration = Duration::from_millis(20);
/// Keepalives while a command runs keep NAT and firewall state alive and let TCP notice a device
/// that vanished, instead of waiting forever on a silent connection.
const KEEPALIVE_SECS: u32 = 30;
/// Transfer chunk: large enough for libssh2 to pipeline SFTP requests.
const CHUNK: usize = 256 * 1024;
/// How much of stderr `stream` keeps for the tail it returns.
const STDERR_KEEP: usize = 64 * 1024;

/// A connected, authenticated SSH session to one device.
pub struct SshTransport {
    session: Session,
    /// Opened on first use; most runs push and pull more than once.
    sftp: Option<Sftp>,
    user: String,
    host: String,
    port: u16,
}

/// The script `exec` runs commands under (`sh -c SCRIPT sh ARGV...`): it reports its process ID
/// on stderr, then becomes the command (same process, same arguments). [`PidFilter`] takes the
/// line out again, so callers see the command's stderr only; the ID lets a command that runs out
/// of time be killed on the device.
const ANNOUNCE_PID: &str = "echo meltbench-pid $$ >&2; exec \"$@\"";
const PID_MARK: &[u8] = b"meltbench-pid ";

/// Separates [`ANNOUNCE_PID`]'s line from the command's own stderr. The line is looked for
/// among the first lines only: a login shell's startup files (bash reads `~/.bashrc` for SSH
/// commands) may print before it, and whatever the command prints comes after it.
#[derive(Default)]
struct PidFilter {
    /// Stderr not yet searched: the start of an unfinished line.
    head: Vec<u8>,
    /// Set once the line was found, or given up on.
    done: bool,
    pid: Option<u32>,
    /// Stderr for the caller.
    rest: Vec<u8>,
}

/// How much stderr may come before the PID line (startup-file chatter) before it is given up on.
const PID_SEARCH: usize = 64 * 1024;

impl PidFilter {
    fn push(&mut self, bytes: &[u8]) {
        if self.done {
            self.rest.extend_from_slice(bytes);
            return;
        }
        self.head.extend_from_slice(bytes);
        while let Some(i) = self.head.iter().position(|&b| b == b'\n') {
            let pid = self.head[..i]
                .strip_prefix(PID_MARK)
                .and_then(|p| std::str::from_utf8(p).ok())
                .and_then(|p| p.parse().ok());
            let line: Vec<u8> = self.head.drain(..=i).collect();
            if pid.is_some() {
                self.pid = pid;
                self.done = true;
                self.rest.append(&mut self.head);
                return;
            }
            self.rest.extend_from_slice(&line);
        }
        if self.rest.len() + self.head.len() > PID_SEARCH {
            self.done = true;
            self.rest.append(&mut self.head);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        self.rest.append(&mut self.head);
        self.rest
    }
}

/// What a known_hosts file says about one host.
#[derive(Debug, Default)]
struct KnownFile {
    path: PathBuf,
    /// Entries naming the host, in file order.
    keys: Vec<KnownKey>,
    /// Base64 keys of `@revoked` lines: never accepted, for any host.
    revoked: Vec<String>,
    /// Whether the file ends with a newline (or is empty), so an appended line starts on its own.
    ends_with_newline: bool,
}

#[derive(Debug)]
struct KnownKey {
    /// 1-based, for messages.
    line: usize,
    key_type: String,
    /// Base64 of the key blob, as in the file.
    key: String,
}

/// How a command's output loop ended without an error of its own.
enum PumpEnd {
    Eof,
    Deadline,
}

impl SshTransport {
    /// Connects, checks the host key and logs in, all within `timeout`. Every failure is a
    /// [`TransportError::Connect`] that names the device and says what to check next.
    pub fn connect(target: &SshTarget, timeout: Duration) -> Result<SshTransport, TransportError> {
        let deadline = Instant::now() + timeout;
        let host = target
            .host
            .trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let user = target.user.clone().unwrap_or_else(default_user);
        let t = SshTransport {
            session: Session::new().map_err(|e| {
                TransportError::Connect(format!("cannot start an SSH session: {}", e.message()))
            })?,
            sftp: None,
            user,
            host,
            port: target.port,
        };
        let who = t.describe();
        let fail = |msg: String| TransportError::Connect(format!("{who}: {msg}"));

        // Local mistakes first, before any network: they are the cheapest to report.
        let identity = match &target.identity {
            Some(written) => {
                let path = expand_tilde(written).map_err(fail)?;
                if !path.is_file() {
                    return Err(fail(format!(
                        "the identity file {} does not exist{}; set `identity:` to a private key \
                         (e.g. ~/.ssh/id_ed25519), or remove it to log in with ssh-agent",
                        path.display(),
                        if written.as_str() != path.to_string_lossy() {
                            format!(" (written as {written})")
                        } else {
                            String::new()
                        }
                    )));
                }
                Some(path)
            }
            None => None,
        };
        let known_hosts_path = expand_tilde(
            target
                .known_hosts_file
                .as_deref()
                .unwrap_or("~/.ssh/known_hosts"),
        )
        .map_err(fail)?;
        let name = t.known_hosts_name();
        let known = if target.host_key_fingerprint.is_some() {
            // A pin replaces known_hosts entirely.
            KnownFile::default()
        } else {
            read_known_hosts(&t.session, &known_hosts_path, &name).map_err(fail)?
        };

        let tcp = tcp_connect(&t.host, t.port, deadline).map_err(fail)?;
        let _ = tcp.set_nodelay(true);
        // A handle to the same session (libssh2's state is shared), to configure it while `t`
        // is borrowed by the checks below.
        let mut session = t.session.clone();
        session.set_tcp_stream(tcp);
        if let Some(prefs) = host_key_preference(&session, &known) {
            // Unsupported names are filtered out above; a failure only loses the ordering.
            let _ = session.method_pref(MethodType::HostKey, &prefs);
        }
        set_deadline(&session, deadline);
        session.handshake().map_err(|e| {
            if is_timeout(&e) {
                fail(format!(
                    "the SSH handshake did not finish within {} s: is port {} the device's SSH \
                     server, and is the device overloaded?",
                    secs(timeout),
                    t.port
                ))
            } else {
                fail(format!(
                    "the SSH handshake failed ({}): check that port {} is the device's SSH server",
                    e.message(),
                    t.port
                ))
            }
        })?;

        t.verify_host_key(target, &known).map_err(fail)?;
        set_deadline(&session, deadline);
        t.authenticate(identity.as_deref(), timeout).map_err(fail)?;

        session.set_keepalive(false, KEEPALIVE_SECS);
        set_limit(&session, STALL);
        Ok(t)
    }

    /// The name known_hosts files use for this device: `host`, or `[host]:port` off port 22.
    fn known_hosts_name(&self) -> String {
        if self.port == 22 {
            self.host.clone()
        } else {
            format!("[{}]:{}", self.host, self.port)
        }
    }

    fn verify_host_key(&self, target: &SshTarget, known: &KnownFile) -> Result<(), String> {
        let (blob, _) = self
            .session
            .host_key()
            .ok_or("the server presented no host key")?;
        let key_type = key_type_of(blob).unwrap_or_else(|| "unknown".into());
        let fp = fingerprint(blob);
        let presented = format!("{key_type} key {fp}");
        let keygen_hint = format!(
            "`ssh-keygen -lf /etc/ssh/ssh_host_{}_key.pub` on the device",
            short_type(&key_type)
        );

        if let Some(pin) = &target.host_key_fingerprint {
            if pin.trim().trim_end_matches('=') == fp {
                return Ok(());
            }
            return Err(format!(
                "the host key does not match the pinned host_key_fingerprint: the device presented \
                 its {presented}, the devices file pins {pin}. If the device was reinstalled, check \
                 its key with {keygen_hint} and update the pin; otherwise someone may be \
                 intercepting the connection, so meltbench refuses it"
            ));
        }

        let file = known.path.display();
        let b64 = base64(blob);
        if known.revoked.contains(&b64) {
            return Err(format!(
                "the device presented its {presented}, which {file} marks @revoked; refusing to \
                 connect"
            ));
        }
        if known.keys.iter().any(|k| k.key == b64) {
            return Ok(());
        }
        let name = self.known_hosts_name();
        let remove = format!(
            "ssh-keygen -R {} -f {}",
            quote::arg(&name),
            quote::arg(&known.path.to_string_lossy())
        );
        if let Some(old) = known.keys.iter().find(|k| k.key_type == key_type) {
            return Err(format!(
                "the host key changed: the device presented its {presented}, but {file} line {} \
                 holds a different {key_type} key for {name}. That happens when a device is \
                 reinstalled, or when someone intercepts the connection. Check the key with \
                 {keygen_hint}; if it is right, remove the old entry with `{remove}` and connect \
                 again",
                old.line
            ));
        }
        if !known.keys.is_empty() {
            let mut types: Vec<&str> = known.keys.iter().map(|k| k.key_type.as_str()).collect();
            types.dedup();
            return Err(format!(
                "the host key changed: the device presented its {presented}, but {file} holds only \
                 {} keys for {name}; a device keeps its host keys, so meltbench treats this as a \
                 changed key. Check the key with {keygen_hint}; if it is right, add it with \
                 `ssh-keyscan -t {} -p {} {} >> {}`",
                types.join(", "),
                short_type(&key_type),
                self.port,
                quote::arg(&self.host),
                quote::arg(&known.path.to_string_lossy())
            ));
        }
        match target.known_hosts {
            KnownHosts::AcceptNew => record_host_key(known, &name, &key_type, &b64).map_err(|e| {
                format!(
                    "cannot record the device's {presented} in {file} (known_hosts: accept-new): {e}"
                )
            }),
            KnownHosts::Strict => Err(format!(
                "the host key is not known: the device presented its {presented}, and {file} has no \
                 entry for {name}. Check the fingerprint with {keygen_hint}, then either record \
                 the key with `ssh-keyscan -p {} {} >> {}`, set `known_hosts: accept-new` for this \
                 device to trust it on first use, or pin it with `host_key_fingerprint: {fp}`",
                self.port,
                quote::arg(&self.host),
                quote::arg(&known.path.to_string_lossy())
            )),
        }
    }

    fn authenticate(&self, identity: Option<&Path>, timeout: Duration) -> Result<(), String> {
        let user = &self.user;
        let copy_id = |key: &str| {
            format!(
                "ssh-copy-id{key} -p {} {}",
                self.port,
                quote::arg(&format!("{user}@{}", self.host))
            )
        };
        let timed_out = || {
            format!(
                "logging in did not finish within {} s; the device or its network is overloaded",
                secs(timeout)
            )
        };
        // Asking first turns a password-only server into advice rather than a bare refusal.
        match self.session.auth_methods(user) {
            Ok(methods) if !methods.split(',').any(|m| m == "publickey") => {
                return Err(format!(
                    "the server does not accept key authentication for {user} (it offers: \
                     {methods}); meltbench logs in with keys only: install your public key with \
                     `{}` and make sure PubkeyAuthentication is on in the device's sshd_config",
                    copy_id("")
                ));
            }
            Ok(_) => {}
            // The server let us in without credentials ("none" authentication).
            Err(_) if self.session.authenticated() => return Ok(()),
            Err(e) if is_timeout(&e) => return Err(timed_out()),
            Err(e) => return Err(format!("the server ended the login ({})", e.message())),
        }

        match identity {
            Some(key) => {
                let shown = key.display();
                match self.session.userauth_pubkey_file(user, None, key, None) {
                    Ok(()) => {}
                    Err(e) if is_timeout(&e) => return Err(timed_out()),
                    Err(e) if is_code(&e, ERR_FILE) => {
                        return Err(format!(
                            "cannot use the private key {shown} ({}). If it has a passphrase, \
                             load it into ssh-agent (`ssh-add {}`) and remove `identity:` so \
                             meltbench uses the agent",
                            e.message(),
                            quote::arg(&key.to_string_lossy())
                        ))
                    }
                    Err(e) => {
                        let why = if is_code(&e, ERR_AUTHENTICATION_FAILED)
                            || is_code(&e, ERR_PUBLICKEY_UNVERIFIED)
                        {
                            "publickey authentication failed".to_string()
                        } else {
                            e.message().to_string()
                        };
                        return Err(format!(
                            "the server refused the key {shown} for user {user} ({why}). Install \
                             its public key on the device with `{}`, or check `user:` and \
                             `identity:` for this device",
                            copy_id(&format!(
                                " -i {}",
                                quote::arg(&format!("{}.pub", key.to_string_lossy()))
                            ))
                        ));
                    }
                }
            }
            None => self.authenticate_with_agent(&copy_id(""), &timed_out)?,
        }
        if self.session.authenticated() {
            Ok(())
        } else {
            Err(format!("the server did not accept the login as {user}"))
        }
    }

    /// Tries every key the agent holds, as `ssh` does (libssh2's helper tries only the first).
    fn authenticate_with_agent(
        &self,
        copy_id: &str,
        timed_out: &dyn Fn() -> String,
    ) -> Result<(), String> {
        let user = &self.user;
        let no_agent = |why: String| {
            format!(
                "no `identity:` is set for this device and ssh-agent cannot be used ({why}); set \
                 `identity:` to a private key file, or start ssh-agent and add your key with \
                 `ssh-add`"
            )
        };
        let mut agent = self
            .session
            .agent()
            .map_err(|e| no_agent(e.message().to_string()))?;
        agent.connect().map_err(|e| {
            no_agent(if std::env::var_os("SSH_AUTH_SOCK").is_none() {
                "SSH_AUTH_SOCK is not set".to_string()
            } else {
                e.message().to_string()
            })
        })?;
        let result = (|| {
            agent
                .list_identities()
                .map_err(|e| no_agent(e.message().to_string()))?;
            let keys = agent
                .identities()
                .map_err(|e| no_agent(e.message().to_string()))?;
            if keys.is_empty() {
                return Err(no_agent("the agent holds no keys".into()));
            }
            for key in &keys {
                match agent.userauth(user, key) {
                    Ok(()) => return Ok(()),
                    Err(e) if is_timeout(&e) => return Err(timed_out()),
                    Err(_) => {}
                }
            }
            let names: Vec<&str> = keys.iter().map(|k| k.comment()).collect();
            Err(format!(
                "the server refused all {} keys from ssh-agent ({}) for user {user}. Install \
                 one on the device with `{copy_id}`, set `identity:` to the right key, or check \
                 `user:`",
                keys.len(),
                names.join(", ")
            ))
        })();
        let _ = agent.disconnect();
        result
    }

    fn err(&self, doing: &str, e: &ssh2::Error) -> TransportError {
        let who = self.describe();
        if is_timeout(e) {
            TransportError::Timeout(format!("{who}: {doing} made no progress ({})", e.message()))
        } else if [ERR_SOCKET_SEND, ERR_SOCKET_RECV, ERR_SOCKET_DISCONNECT]
            .iter()
            .any(|c| is_code(e, *c))
        {
            TransportError::Connect(format!(
                "{who}: the connection to the device was lost while {doing} ({}); check that the \
                 device is still on and reachable",
                e.message()
            ))
        } else {
            TransportError::Other(format!("{who}: {doing}: {}", e.message()))
        }
    }

    fn io_err(&self, doing: &str, e: io::Error) -> TransportError {
        let who = self.describe();
        match e.kind() {
            ErrorKind::TimedOut => {
                TransportError::Timeout(format!("{who}: {doing} made no progress ({e})"))
            }
            _ => TransportError::Other(format!("{who}: {doing}: {e}")),
        }
    }

    /// Opens a channel running `argv` through the remote login shell, with stdin closed (as the
    /// local transport gives commands a null stdin). With `announce_pid`, the command runs under
    /// [`ANNOUNCE_PID`] so it can be killed later.
    fn start(
        &mut self,
        argv: &[&str],
        announce_pid: bool,
        limit: Duration,
    ) -> Result<Channel, TransportError> {
        if argv.is_empty() {
            return Err(TransportError::Other("empty command".into()));
        }
        let line = if announce_pid {
            let mut wrapped = vec!["sh", "-c", ANNOUNCE_PID, "sh"];
            wrapped.extend_from_slice(argv);
            quote::command_line(&wrapped)
        } else {
            quote::command_line(argv)
        };
        set_limit(&self.session, limit);
        let mut channel = self.session.channel_session().map_err(|e| {
            if is_code(&e, ERR_CHANNEL_FAILURE) {
                TransportError::Other(format!(
                    "{}: the server refused a new session channel ({}); its MaxSessions may be \
                     too low",
                    self.describe(),
                    e.message()
                ))
            } else {
                self.err("opening a channel", &e)
            }
        })?;
        channel
            .exec(&line)
            .map_err(|e| self.err(&format!("starting `{line}`"), &e))?;
        channel
            .send_eof()
            .map_err(|e| self.err(&format!("closing the input of `{line}`"), &e))?;
        Ok(channel)
    }

    /// Drains stdout and stderr until both end or `deadline` passes. Both streams are read in
    /// turn in non-blocking mode: reading one in blocking mode while the other fills its window
    /// could stall the command on a full stderr, and the deadline must hold even when the
    /// command prints nothing. Returns with the session back in blocking mode.
    fn pump(
        &mut self,
        channel: &mut Channel,
        deadline: Option<Instant>,
        on_stdout: &mut dyn FnMut(&[u8]),
        on_stderr: &mut dyn FnMut(&[u8]),
    ) -> Result<PumpEnd, TransportError> {
        self.session.set_blocking(false);
        let result = (|| {
            let mut buf = vec![0u8; 32 * 1024];
            let mut stderr = channel.stderr();
            let (mut out_done, mut err_done) = (false, false);
            let mut idle = IDLE_MIN;
            while !(out_done && err_done) {
                let mut progressed = false;
                for (done, is_err) in [(&mut out_done, false), (&mut err_done, true)] {
                    if *done {
                        continue;
                    }
                    let read = if is_err {
                        stderr.read(&mut buf)
                    } else {
                        channel.read(&mut buf)
                    };
                    match read {
                        // libssh2 reports 0 only once the device sent EOF and nothing of this
                        // stream is left.
                        Ok(0) => *done = true,
                        Ok(n) => {
                            progressed = true;
                            if is_err {
                                on_stderr(&buf[..n]);
                            } else {
                                on_stdout(&buf[..n]);
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                        Err(e) => return Err(self.io_err("reading the command's output", e)),
                    }
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Ok(PumpEnd::Deadline);
                }
                if progressed {
                    idle = IDLE_MIN;
                } else if !(out_done && err_done) {
                    let _ = self.session.keepalive_send();
                    std::thread::sleep(idle);
                    idle = (idle * 2).min(IDLE_MAX);
                }
            }
            Ok(PumpEnd::Eof)
        })();
        self.session.set_blocking(true);
        result
    }

    /// After EOF: waits for the channel to close and returns the exit status (`None` when the
    /// command died of a signal). The channel is dropped here, within `limit`.
    fn finish(&mut self, mut channel: Channel, limit: Duration) -> Option<i32> {
        set_limit(&self.session, limit);
        // The exit status may arrive just after EOF; closing waits for it. Without the close
        // libssh2 would report 0 for a status it never received.
        let closed = channel.wait_close().is_ok();
        let signalled = channel
            .exit_signal()
            .map(|s| s.exit_signal.is_some())
            .unwrap_or(false);
        let status = if closed && !signalled {
            channel.exit_status().ok()
        } else {
            None
        };
        drop(channel);
        set_limit(&self.session, STALL);
        status
    }

    /// Gives up on a command: kills it when its process ID is known, then closes and drops the
    /// channel, within a few seconds even if the device no longer answers.
    ///
    /// Closing the channel alone does not stop the command: OpenSSH leaves e.g. `sleep` running
    /// until it ends or writes to its closed output. libssh2 can send a "signal" request, but the
    /// `ssh2` crate does not expose it, so the kill is a `kill` command on a second channel.
    fn abandon(&mut self, mut channel: Channel, pid: Option<u32>) {
        set_limit(&self.session, CLOSE_GRACE);
        if let Some(pid) = pid {
            let pid = pid.to_string();
            // The command's process group (sshd makes the session a group of its own, and `sh -c`
            // with one command usually execs it); failing that, the command itself.
            let kill = [
                "sh",
                "-c",
                "kill -KILL -- -\"$1\" 2>/dev/null || kill -KILL \"$1\"",
                "sh",
                &pid,
            ];
            if let Ok(mut killer) = self.session.channel_session() {
                if killer.exec(&quote::command_line(&kill)).is_ok() {
                    let _ = killer.send_eof();
                    let _ = killer.wait_eof();
                    let _ = killer.wait_close();
                }
            }
        }
        let _ = channel.close();
        drop(channel);
        set_limit(&self.session, STALL);
    }

    fn sftp(&mut self) -> Result<&Sftp, TransportError> {
        if self.sftp.is_none() {
            set_limit(&self.session, STALL);
            match self.session.sftp() {
                Ok(sftp) => self.sftp = Some(sftp),
                Err(e) => {
                    return Err(match self.err("starting SFTP", &e) {
                        // Timeouts and lost connections say so; anything else is most likely a
                        // server without the SFTP subsystem.
                        TransportError::Other(_) => TransportError::Other(format!(
                            "{}: cannot start SFTP ({}); meltbench copies files over SFTP: \
                             enable it in the device's sshd_config (`Subsystem sftp \
                             internal-sftp`) or install its SFTP server (Debian: \
                             openssh-sftp-server)",
                            self.describe(),
                            e.message()
                        )),
                        other => other,
                    });
                }
            }
        }
        Ok(self.sftp.as_ref().expect("just set"))
    }

    fn sftp_err(&mut self, doing: &str, path: &str, e: &ssh2::Error) -> TransportError {
        let who = self.describe();
        let hint = match e.code() {
            ErrorCode::SFTP(FX_NO_SUCH_FILE) | ErrorCode::SFTP(FX_NO_SUCH_PATH) => {
                Some("no such file or directory (does its directory exist?)")
            }
            ErrorCode::SFTP(FX_PERMISSION_DENIED) => {
                Some("permission denied (check the owner and mode of it and its directory)")
            }
            _ => None,
        };
        match hint {
            Some(hint) => TransportError::Other(format!("{who}: {doing} {path}: {hint}")),
            None => {
                // A session-level failure may have broken the SFTP channel: reopen it next time.
                if matches!(e.code(), ErrorCode::Session(_)) {
                    self.sftp = None;
                }
                self.err(&format!("{doing} {path}"), e)
            }
        }
    }
}

impl Transport for SshTransport {
    fn describe(&self) -> String {
        if self.host.contains(':') {
            format!("ssh {}@[{}]:{}", self.user, self.host, self.port)
        } else {
            format!("ssh {}@{}:{}", self.user, self.host, self.port)
        }
    }

    fn exec(&mut self, argv: &[&str], timeout: Duration) -> Result<Output, TransportError> {
        let deadline = Instant::now() + timeout;
        let mut channel = self.start(argv, true, timeout).map_err(|e| match e {
            TransportError::Timeout(m) => TransportError::Timeout(format!(
                "{m}; `{}` did not start within {} s",
                quote::command_line(argv),
                secs(timeout)
            )),
            other => other,
        })?;
        let mut out = Output::default();
        let mut stderr = PidFilter::default();
        let stdout = &mut out.stdout;
        let end = self.pump(
            &mut channel,
            Some(deadline),
            &mut |b| stdout.extend_from_slice(b),
            &mut |b| stderr.push(b),
        );
        let pid = stderr.pid;
        out.stderr = stderr.finish();
        match end {
            Ok(PumpEnd::Eof) => {
                let left = deadline.saturating_duration_since(Instant::now());
                out.status = self.finish(channel, left.max(CLOSE_GRACE));
                Ok(out)
            }
            Ok(PumpEnd::Deadline) => {
                self.abandon(channel, pid);
                Err(TransportError::Timeout(format!(
                    "{}: `{}` did not finish within {} s {}",
                    self.describe(),
                    quote::command_line(argv),
                    secs(timeout),
                    if pid.is_some() {
                        "and was killed"
                    } else {
                        "and was abandoned; it may still run on the device"
                    }
                )))
            }
            Err(e) => {
                self.abandon(channel, pid);
                Err(e)
            }
        }
    }

    fn stream(
        &mut self,
        argv: &[&str],
        on_line: &mut dyn FnMut(&str),
    ) -> Result<(Option<i32>, String), TransportError> {
        // No wrapper: without a timeout, nothing here ever needs to kill the command.
        let mut channel = self.start(argv, false, STALL)?;
        let mut pending: Vec<u8> = Vec::new();
        let mut stderr: Vec<u8> = Vec::new();
        let end = self.pump(
            &mut channel,
            None,
            &mut |b| {
                pending.extend_from_slice(b);
                let mut start = 0;
                while let Some(i) = pending[start..].iter().position(|&c| c == b'\n') {
                    on_line(&line_text(&pending[start..start + i]));
                    start += i + 1;
                }
                pending.drain(..start);
            },
            &mut |b| {
                stderr.extend_from_slice(b);
                if stderr.len() > 2 * STDERR_KEEP {
                    stderr.drain(..stderr.len() - STDERR_KEEP);
                }
            },
        );
        match end {
            Ok(_) => {
                // A last line without a newline still counts, as with `BufRead::lines`.
                if !pending.is_empty() {
                    on_line(&line_text(&pending));
                }
                let status = self.finish(channel, STALL);
                Ok((status, tail(&String::from_utf8_lossy(&stderr), 20)))
            }
            Err(e) => {
                self.abandon(channel, None);
                Err(e)
            }
        }
    }

    // SFTP rather than SCP: the remote path is a field of the protocol, never a shell word, so a
    // path with spaces or `;` needs no quoting and cannot run anything; errors come back as
    // status codes (no such file, permission denied) instead of text from a remote `scp -t`; and
    // the mode is set on the handle. OpenSSH enables the subsystem by default.
    fn push(&mut self, local: &Path, remote: &str, mode: u32) -> Result<u64, TransportError> {
        let mut src = fs::File::open(local)
            .map_err(|e| TransportError::Other(format!("cannot read {}: {e}", local.display())))?;
        let flags = OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE;
        let opened = self
            .sftp()?
            .open_mode(Path::new(remote), flags, mode as i32, OpenType::File);
        let mut dst = opened.map_err(|e| self.sftp_err("cannot create", remote, &e))?;
        let mut buf = vec![0u8; CHUNK];
        let mut sent = 0u64;
        loop {
            let n = match src.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(TransportError::Other(format!(
                        "reading {}: {e}",
                        local.display()
                    )))
                }
            };
            dst.write_all(&buf[..n])
                .map_err(|e| self.io_err(&format!("writing {remote}"), e))?;
            sent += n as u64;
        }
        // The mode given at creation is subject to the server's umask and ignored for an
        // existing file; set it explicitly.
        let stat = FileStat {
            size: None,
            uid: None,
            gid: None,
            perm: Some(mode),
            atime: None,
            mtime: None,
        };
        dst.setstat(stat)
            .map_err(|e| self.sftp_err("cannot set the mode of", remote, &e))?;
        // Closing reports write errors some file systems only detect then.
        dst.close()
            .map_err(|e| self.sftp_err("cannot finish writing", remote, &e))?;
        Ok(sent)
    }

    fn pull(&mut self, remote: &str, local: &Path) -> Result<u64, TransportError> {
        let opened = self.sftp()?.open(Path::new(remote));
        let mut src = opened.map_err(|e| self.sftp_err("cannot open", remote, &e))?;
        // Created only once the remote file opened, so a missing file leaves nothing behind.
        let mut dst = fs::File::create(local).map_err(|e| {
            TransportError::Other(format!("cannot create {}: {e}", local.display()))
        })?;
        let mut buf = vec![0u8; CHUNK];
        let mut received = 0u64;
        loop {
            let n = match src.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.io_err(&format!("reading {remote}"), e)),
            };
            dst.write_all(&buf[..n])
                .map_err(|e| TransportError::Other(format!("writing {}: {e}", local.display())))?;
            received += n as u64;
        }
        dst.flush()
            .map_err(|e| TransportError::Other(format!("writing {}: {e}", local.display())))?;
        Ok(received)
    }
}

impl Drop for SshTransport {
    fn drop(&mut self) {
        // Blocking and bounded, so the SFTP channel and the session are closed politely without
        // hanging on a dead device.
        self.session.set_blocking(true);
        set_limit(&self.session, CLOSE_GRACE);
        self.sftp = None;
        let _ = self
            .session
            .disconnect(None, "meltbench is done with this device", None);
    }
}

/// The user `ssh` would log in as: the local user name.
fn default_user() -> String {
    for var in ["USER", "LOGNAME"] {
        if let Ok(name) = std::env::var(var) {
            if !name.is_empty() {
                return name;
            }
        }
    }
    // Containers and services often run without USER; ask the system.
    std::process::Command::new("id")
        .arg("-un")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "root".into())
}

/// `~` and `~/...` relative to `$HOME`; other paths unchanged.
fn expand_tilde(path: &str) -> Result<PathBuf, String> {
    let rest = match path.strip_prefix('~') {
        None => return Ok(PathBuf::from(path)),
        Some(rest) if rest.is_empty() || rest.starts_with('/') => rest.trim_start_matches('/'),
        // `~user/...` is a shell feature we do not imitate.
        Some(_) => return Ok(PathBuf::from(path)),
    };
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("cannot expand {path}: HOME is not set"))?;
    Ok(PathBuf::from(home).join(rest))
}

/// Resolves `host` and opens a TCP connection to the first address that answers, all before
/// `deadline` (name lookup included: a stuck resolver must not hang a run).
fn tcp_connect(host: &str, port: u16, deadline: Instant) -> Result<TcpStream, String> {
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => {
            let (tx, rx) = std::sync::mpsc::channel();
            let name = host.to_string();
            // The lookup cannot be cancelled; a stuck one is left to finish on its own.
            std::thread::spawn(move || {
                let _ = tx.send((name.as_str(), port).to_socket_addrs().map(Vec::from_iter));
            });
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(Ok(addrs)) if !addrs.is_empty() => addrs,
                Ok(Ok(_)) => return Err(format!("{host} resolves to no address; check `host:`")),
                Ok(Err(e)) => {
                    return Err(format!(
                        "cannot resolve {host} ({e}); check `host:` and this machine's DNS"
                    ))
                }
                Err(_) => {
                    return Err(format!(
                        "looking up {host} did not finish in time; check this machine's DNS, or \
                         use the device's IP address"
                    ))
                }
            }
        }
    };
    let mut problems = Vec::new();
    for addr in &addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            problems.push(format!("{addr}: out of time"));
            break;
        }
        match TcpStream::connect_timeout(addr, left) {
            Ok(s) => return Ok(s),
            Err(e) => problems.push(match e.kind() {
                ErrorKind::ConnectionRefused => format!(
                    "{addr} refused the connection: nothing listens on port {port}; check that \
                     sshd runs on the device and that `port:` is right"
                ),
                ErrorKind::TimedOut | ErrorKind::WouldBlock => format!(
                    "no answer from {addr}: check that the device is on and reachable from this \
                     machine (same network or VPN), and that no firewall drops port {port}"
                ),
                _ => format!("{addr}: {e}; check `host:` and this machine's network"),
            }),
        }
    }
    Err(format!("cannot connect: {}", problems.join("; ")))
}

/// Reads the known_hosts entries that name `name`. A missing file has none. Lines libssh2
/// cannot parse (certificate authorities, key types it does not know) are skipped rather than
/// failing the whole file, which `libssh2_knownhost_readfile` would do.
fn read_known_hosts(session: &Session, path: &Path, name: &str) -> Result<KnownFile, String> {
    let mut known = KnownFile {
        path: path.to_path_buf(),
        ends_with_newline: true,
        ..KnownFile::default()
    };
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(known),
        Err(e) => {
            return Err(format!(
                "cannot read the known_hosts file {}: {e}",
                path.display()
            ))
        }
    };
    known.ends_with_newline = text.is_empty() || text.ends_with('\n');
    for (i, line) in text.lines().enumerate() {
        let mut fields = line.split_whitespace();
        let Some(first) = fields.next() else { continue };
        if first.starts_with('#') {
            continue;
        }
        if first.starts_with('@') {
            // `@revoked HOSTS TYPE KEY`; `@cert-authority` lines are about certificates, which
            // meltbench does not use.
            if first == "@revoked" {
                if let Some(key) = fields.nth(2) {
                    known.revoked.push(key.to_string());
                }
            }
            continue;
        }
        let (Some(key_type), Some(key)) = (fields.next(), fields.next()) else {
            continue;
        };
        if names_host(session, first, key_type, key, name) {
            known.keys.push(KnownKey {
                line: i + 1,
                key_type: key_type.to_string(),
                key: key.to_string(),
            });
        }
    }
    Ok(known)
}

/// Whether a known_hosts line's host field names `name`. libssh2 does the matching, since it
/// handles comma lists, bracketed ports and hashed (`|1|salt|hash`) names alike: checked against
/// a key the entry cannot hold, a line about `name` says "mismatch", any other "not found".
fn names_host(session: &Session, hosts: &str, key_type: &str, key: &str, name: &str) -> bool {
    let Ok(mut one) = session.known_hosts() else {
        return false;
    };
    if one
        .read_str(
            &format!("{hosts} {key_type} {key}"),
            KnownHostFileKind::OpenSSH,
        )
        .is_err()
    {
        return false;
    }
    matches!(
        one.check(name, b"meltbench: not a key"),
        CheckResult::Mismatch | CheckResult::Match
    )
}

/// Host key algorithms to offer: those for key types known_hosts holds for the device first.
fn host_key_preference(session: &Session, known: &KnownFile) -> Option<String> {
    let supported = session.supported_algs(MethodType::HostKey).ok()?;
    let usable = HOST_KEY_ALGORITHMS
        .iter()
        .filter(|(alg, _)| supported.contains(alg));
    let (first, rest): (Vec<_>, Vec<_>) =
        usable.partition(|(_, kt)| known.keys.iter().any(|k| k.key_type == *kt));
    let order: Vec<&str> = first.iter().chain(&rest).map(|(alg, _)| *alg).collect();
    (!order.is_empty()).then(|| order.join(","))
}

/// Appends `name TYPE KEY` to the known_hosts file (creating it and its directory), leaving
/// every other line as it was.
fn record_host_key(known: &KnownFile, name: &str, key_type: &str, b64: &str) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = known.path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&known.path)?;
    let sep = if known.ends_with_newline { "" } else { "\n" };
    // One write, so concurrent connections appending to the same file do not interleave.
    f.write_all(format!("{sep}{name} {key_type} {b64}\n").as_bytes())
}

/// The key type a host key blob starts with (an SSH string: big-endian length, then the name).
fn key_type_of(blob: &[u8]) -> Option<String> {
    let len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    let name = blob.get(4..4 + len)?;
    String::from_utf8(name.to_vec()).ok()
}

/// `ed25519`, `ecdsa`, `rsa`: the names `ssh-keyscan -t` and host key file names use.
fn short_type(key_type: &str) -> &str {
    match key_type {
        "ssh-ed25519" => "ed25519",
        t if t.starts_with("ecdsa-") => "ecdsa",
        "ssh-rsa" => "rsa",
        "ssh-dss" => "dsa",
        other => other,
    }
}

/// `SHA256:` and the unpadded base64 of the key blob's SHA-256, as `ssh-keygen -lf` prints it.
fn fingerprint(blob: &[u8]) -> String {
    let digest = Sha256::digest(blob);
    format!("SHA256:{}", base64(&digest).trim_end_matches('='))
}

/// Standard base64 with padding, as known_hosts files hold keys. No base64 crate is a direct
/// dependency, and this is all we need of one.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn line_text(bytes: &[u8]) -> String {
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    String::from_utf8_lossy(bytes).into_owned()
}

fn is_code(e: &ssh2::Error, code: i32) -> bool {
    e.code() == ErrorCode::Session(code)
}

fn is_timeout(e: &ssh2::Error) -> bool {
    is_code(e, ERR_TIMEOUT)
}

/// libssh2's timeout for each blocking call; 0 would mean "forever", so at least 1 ms.
fn set_limit(session: &Session, limit: Duration) {
    session.set_timeout(limit.as_millis().clamp(1, u128::from(u32::MAX)) as u32);
}

fn set_deadline(session: &Session, deadline: Instant) {
    set_limit(session, deadline.saturating_duration_since(Instant::now()));
}

/// Seconds for messages, with a decimal for sub-second timeouts.
fn secs(d: Duration) -> String {
    if d.as_millis().is_multiple_of(1000) {
        d.as_secs().to_string()
    } else {
        format!("{:.1}", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in cases {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain:?}");
        }
        assert_eq!(base64(&[0xfb, 0xff]), "+/8=");
    }

    #[test]
    fn fingerprints_are_what_ssh_keygen_prints() {
        // A public key and what `ssh-keygen -lf` printed for it.
        let key = "AAAAC3NzaC1lZDI1NTE5AAAAIHK+Npi03pVR37SUTsQwmychwf07srEA1hy34DUYQ5dp";
        let blob = decode(key);
        assert_eq!(base64(&blob), key);
        assert_eq!(key_type_of(&blob).as_deref(), Some("ssh-ed25519"));
        assert_eq!(
            fingerprint(&blob),
            "SHA256:HMWDVuCI1a5gI2Dm9gHRbww2UGJp0xyu09oTUHu1dr8"
        );
        assert_eq!(key_type_of(&[0, 0, 0, 9, b'x']), None);
    }

    fn decode(s: &str) -> Vec<u8> {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut bits = 0u32;
        let mut n = 0;
        let mut out = Vec::new();
        for c in s.bytes().filter(|&c| c != b'=') {
            bits = bits << 6 | ALPHABET.iter().position(|&a| a == c).unwrap() as u32;
            n += 6;
            if n >= 8 {
                n -= 8;
                out.push((bits >> n) as u8);
            }
        }
        out
    }

    #[test]
    fn the_pid_line_is_taken_out_of_stderr_in_any_chunking() {
        let text = b"meltbench-pid 4242\nreal error\n";
        for split in 0..text.len() {
            let mut f = PidFilter::default();
            f.push(&text[..split]);
            f.push(&text[split..]);
            assert_eq!(f.pid, Some(4242));
            assert_eq!(f.finish(), b"real error\n");
        }
        // Startup-file chatter before the line is kept; so is stderr without the line.
        let mut f = PidFilter::default();
        f.push(b"bashrc says hi\nmeltbench-pid 17\nerr\nmeltbench-pid 18\n");
        assert_eq!(f.pid, Some(17));
        assert_eq!(f.finish(), b"bashrc says hi\nerr\nmeltbench-pid 18\n");
        let mut f = PidFilter::default();
        f.push(b"no marker\npartial");
        assert_eq!(f.pid, None);
        assert_eq!(f.finish(), b"no marker\npartial");
        let mut f = PidFilter::default();
        f.push(&vec![b'x'; PID_SEARCH + 1]);
        f.push(b"\nmeltbench-pid 5\n");
        assert_eq!(f.pid, None, "searched too far");
    }

    #[test]
    fn tilde_is_expanded_from_home_only_at_the_start() {
        let home = PathBuf::from(std::env::var_os("HOME").unwrap());
        assert_eq!(expand_tilde("~/.ssh/id").unwrap(), home.join(".ssh/id"));
        assert_eq!(expand_tilde("~").unwrap(), home);
        assert_eq!(expand_tilde("/etc/x~").unwrap(), PathBuf::from("/etc/x~"));
        assert_eq!(expand_tilde("~bob/x").unwrap(), PathBuf::from("~bob/x"));
    }

    #[test]
    fn known_hosts_lines_are_matched_by_libssh2_and_odd_lines_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        let key = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
        fs::write(
            &path,
            format!(
                "# comment\n\
                 \n\
                 @cert-authority *.example.com ssh-ed25519 {key}\n\
                 @revoked * ssh-ed25519 {key}\n\
                 other.example,[rpi5.local]:2222 ssh-ed25519 {key}\n\
                 rpi5.local ecdsa-sha2-nistp256 {key}\n\
                 garbage\n\
                 [rpi5.local]:2222 sk-ssh-ed25519@openssh.com {key}"
            ),
        )
        .unwrap();
        let session = Session::new().unwrap();
        let known = read_known_hosts(&session, &path, "[rpi5.local]:2222").unwrap();
        let lines: Vec<(usize, &str)> = known
            .keys
            .iter()
            .map(|k| (k.line, k.key_type.as_str()))
            .collect();
        assert_eq!(
            lines,
            [(5, "ssh-ed25519"), (8, "sk-ssh-ed25519@openssh.com")]
        );
        assert_eq!(known.revoked, [key]);
        assert!(!known.ends_with_newline);
        let port22 = read_known_hosts(&session, &path, "rpi5.local").unwrap();
        assert_eq!(port22.keys.len(), 1);
        assert_eq!(port22.keys[0].key_type, "ecdsa-sha2-nistp256");
        let prefs = host_key_preference(&session, &port22).unwrap();
        assert!(
            prefs.starts_with("ecdsa-sha2-nistp256,ssh-ed25519"),
            "{prefs}"
        );
        let missing = read_known_hosts(&session, &dir.path().join("none"), "x").unwrap();
        assert!(missing.keys.is_empty() && missing.ends_with_newline);
    }
}
