//! SSH devices (Raspberry Pis, Jetsons, other Linux machines), through libssh2 (the `ssh2`
//! crate) rather than the `ssh` binary: errors come back as codes we can turn into advice, every
//! phase honours our timeouts, and nothing depends on the user's `~/.ssh/config`.
//!
//! Trust works like OpenSSH's: the device's host key must be in a known_hosts file (or match a
//! pinned fingerprint), a changed key is always refused, and `known_hosts: accept-new` records a
//! key seen for the first time. Commands run through the login shell of the remote account, so
//! their command line is built by [`quote::command_line`] and nothing else; files travel over
//! SFTP, where a path is a protocol field and never reaches a shell, or, on servers without the
//! SFTP subsystem (dropbear on Buildroot and Yocto boards, a minimal `sshd_config`), through
//! `cat` on an exec channel (`exec_files.rs`).
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

use super::{quote, tail, FileChannel, Output, Transport, TransportError};
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

mod connect;
mod exec_files;
mod host_keys;
mod pid_filter;
pub use pid_filter::PidFilter;

use connect::*;
use host_keys::*;
use pid_filter::*;

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
///
/// Only while a command runs, in non-blocking mode: with an interval set, libssh2's blocking
/// calls wait on the socket only until the next keepalive is due and then fail with "Timed out
/// waiting on socket", so a server slow to answer (starting SFTP on a loaded board) would fail
/// after at most this long instead of [`STALL`].
const KEEPALIVE_SECS: u32 = 30;
/// Transfer chunk: large enough for libssh2 to pipeline SFTP requests.
const CHUNK: usize = 256 * 1024;
/// How much of stderr `stream` keeps for the tail it returns.
const STDERR_KEEP: usize = 64 * 1024;

/// A connected, authenticated SSH session to one device.
pub struct SshTransport {
    session: Session,
    /// Decided on the first transfer; most runs push and pull more than once.
    files: Files,
    user: String,
    host: String,
    port: u16,
}

/// How files travel to and from the device.
enum Files {
    /// No transfer yet (or the SFTP channel broke and is reopened on the next one).
    Undecided,
    Sftp(Sftp),
    /// The server refused the SFTP subsystem.
    Exec,
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
            files: Files::Undecided,
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
        let mut channel = self.open_exec(&line, limit)?;
        channel
            .send_eof()
            .map_err(|e| self.err(&format!("closing the input of `{line}`"), &e))?;
        Ok(channel)
    }

    /// A channel running the command `line`, its input still open.
    fn open_exec(&mut self, line: &str, limit: Duration) -> Result<Channel, TransportError> {
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
            .exec(line)
            .map_err(|e| self.err(&format!("starting `{line}`"), &e))?;
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
        self.session.set_keepalive(false, KEEPALIVE_SECS);
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
        // 0 turns keepalives off again (see KEEPALIVE_SECS).
        self.session.set_keepalive(false, 0);
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

    /// The SFTP session, opened on first use; `None` when the server has no SFTP subsystem and
    /// files go over exec channels instead.
    fn sftp(&mut self) -> Result<Option<&Sftp>, TransportError> {
        if matches!(self.files, Files::Undecided) {
            set_limit(&self.session, STALL);
            match self.session.sftp() {
                Ok(sftp) => self.files = Files::Sftp(sftp),
                Err(e) => match self.err("starting SFTP", &e) {
                    // Timeouts and lost connections say so; anything else is a server that
                    // refuses the subsystem.
                    TransportError::Other(_) => self.files = Files::Exec,
                    other => return Err(other),
                },
            }
        }
        Ok(match &self.files {
            Files::Sftp(sftp) => Some(sftp),
            _ => None,
        })
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
                    self.files = Files::Undecided;
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
        let Some(sftp) = self.sftp()? else {
            return self.push_exec(&mut src, local, remote, mode);
        };
        let flags = OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE;
        let opened = sftp.open_mode(Path::new(remote), flags, mode as i32, OpenType::File);
        let mut dst = opened.map_err(|e| self.sftp_err("cannot create", remote, &e))?;
        let mut buf = vec![0u8; CHUNK];
        let mut sent = 0u64;
        loop {
            let n = read_local(&mut src, &mut buf, local)?;
            if n == 0 {
                break;
            }
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
        let Some(sftp) = self.sftp()? else {
            return self.pull_exec(remote, local);
        };
        let opened = sftp.open(Path::new(remote));
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

    fn file_channel(&self) -> Option<FileChannel> {
        match self.files {
            Files::Undecided => None,
            Files::Sftp(_) => Some(FileChannel::Sftp),
            Files::Exec => Some(FileChannel::SshExec),
        }
    }
}

impl Drop for SshTransport {
    fn drop(&mut self) {
        // Blocking and bounded, so the SFTP channel and the session are closed politely without
        // hanging on a dead device.
        self.session.set_blocking(true);
        set_limit(&self.session, CLOSE_GRACE);
        self.files = Files::Undecided;
        let _ = self
            .session
            .disconnect(None, "meltbench is done with this device", None);
    }
}

/// The next chunk of a local file being sent (0 at its end), retrying interrupted reads.
fn read_local(src: &mut fs::File, buf: &mut [u8], local: &Path) -> Result<usize, TransportError> {
    loop {
        match src.read(buf) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            read => {
                return read.map_err(|e| {
                    TransportError::Other(format!("reading {}: {e}", local.display()))
                })
            }
        }
    }
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
mod tests;
