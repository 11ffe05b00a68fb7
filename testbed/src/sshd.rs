//! A real OpenSSH `sshd` on a free loopback port, with throwaway keys.
//!
//! The SSH transport is tested against the server devices actually run, not a stand-in: the
//! quirks that matter (host key negotiation, the order of EOF and exit status, SFTP, how
//! `authorized_keys` refusals look) only show up with the real thing. Everything an instance
//! needs lives in its own temporary directory, so several run at once (tests run in parallel)
//! and nothing touches `/etc/ssh` or `~/.ssh`.
//!
//! The server offers an ECDSA host key next to its Ed25519 one, as Raspberry Pi OS and most
//! distributions do: a client that ignores which key type its `known_hosts` holds would
//! negotiate the wrong one and report a changed key, and only a two-key server shows that.

use std::fs;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// sshd refuses to start unless invoked by absolute path (it re-executes itself).
pub const SSHD: &str = "/usr/sbin/sshd";
/// Debian's location; the transport copies files over SFTP.
pub const SFTP_SERVER: &str = "/usr/lib/openssh/sftp-server";
/// Privilege separation directory sshd insists on when started as root.
const PRIVSEP_DIR: &str = "/run/sshd";
/// How long sshd may take to listen and greet; a loaded 2-core CI machine needs well under this.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts when another process takes the port between our probe and sshd's bind.
const PORT_ATTEMPTS: usize = 5;

/// A running sshd. Dropping it kills the server and deletes its directory (keys, config, log).
///
/// Connections already accepted are served by sshd's per-connection children, which end when
/// their client disconnects; only the listener is killed.
pub struct Sshd {
    /// The loopback port sshd listens on (on 127.0.0.1 only).
    pub port: u16,
    /// The account to log in as: the user running the tests (sshd can only switch to another
    /// user when it runs as root, and then root is who runs the tests).
    pub user: String,
    /// Ed25519 private key without passphrase, listed in the server's `authorized_keys`.
    pub identity: PathBuf,
    /// Fingerprint of the server's Ed25519 host key, `SHA256:...` as `ssh-keygen -lf` prints it.
    pub host_key_fingerprint: String,
    /// A known_hosts file with the correct `[127.0.0.1]:PORT ssh-ed25519 ...` line.
    pub known_hosts: PathBuf,
    /// A known_hosts file holding only the server's (correct) ECDSA host key.
    pub ecdsa_known_hosts: PathBuf,
    /// The temporary directory holding everything above.
    pub dir: PathBuf,
    child: Child,
    log: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Sshd {
    /// Why an sshd cannot be started here, with what to install; `Ok` when it can.
    pub fn available() -> Result<(), String> {
        if !Path::new(SSHD).is_file() {
            return Err(format!(
                "{SSHD} not found: install openssh-server (Debian/Ubuntu: apt-get install openssh-server)"
            ));
        }
        if !Path::new(SFTP_SERVER).is_file() {
            return Err(format!(
                "{SFTP_SERVER} not found: install openssh-sftp-server (comes with openssh-server)"
            ));
        }
        // Any invocation that neither prompts nor writes: a fingerprint of an empty file fails
        // quickly, which is fine, we only need to know it runs.
        match Command::new("ssh-keygen")
            .args(["-l", "-f", "/dev/null"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
        {
            Ok(_) => {}
            Err(e) => {
                return Err(format!(
                    "cannot run ssh-keygen ({e}): install openssh-client (Debian/Ubuntu: apt-get install openssh-client)"
                ))
            }
        }
        current_user()?;
        if is_root() && !Path::new(PRIVSEP_DIR).is_dir() {
            fs::create_dir_all(PRIVSEP_DIR).map_err(|e| {
                format!("cannot create sshd's privilege separation directory {PRIVSEP_DIR}: {e}")
            })?;
        }
        Ok(())
    }

    /// For tests: a running sshd, or `None` after a loud `SKIP` line when sshd cannot run here.
    /// In CI (`CI=true`) a missing sshd is a failure, so the SSH tests cannot silently vanish.
    /// An installed sshd that fails to start always panics: that is a real problem.
    pub fn for_test(test: &str) -> Option<Sshd> {
        if let Err(why) = Sshd::available() {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{test}: sshd is required in CI: {why}");
            }
            eprintln!("SKIP: {test}: no sshd to test against: {why}");
            return None;
        }
        Some(Sshd::start().unwrap_or_else(|e| panic!("{test}: {e}")))
    }

    /// Generates keys, writes the config and starts sshd; returns once it has greeted a client.
    pub fn start() -> Result<Sshd, String> {
        Sshd::launch_with(Subsystems::Sftp)
    }

    /// An sshd without the SFTP subsystem, as dropbear on Buildroot or Yocto boards and minimal
    /// `sshd_config` files are: only exec channels carry files.
    pub fn start_without_sftp() -> Result<Sshd, String> {
        Sshd::launch_with(Subsystems::None)
    }

    fn launch_with(subsystems: Subsystems) -> Result<Sshd, String> {
        Sshd::available()?;
        let user = current_user()?;
        let tmp = tempfile::Builder::new()
            .prefix("meltbench-sshd-")
            .tempdir()
            .map_err(|e| format!("cannot create a temporary directory for sshd: {e}"))?;
        let dir = tmp.path().to_path_buf();
        let host_ed25519 = dir.join("ssh_host_ed25519_key");
        let host_ecdsa = dir.join("ssh_host_ecdsa_key");
        let identity = dir.join("id_ed25519");
        keygen("ed25519", &host_ed25519)?;
        keygen("ecdsa", &host_ecdsa)?;
        keygen("ed25519", &identity)?;
        let authorized = dir.join("authorized_keys");
        fs::copy(identity.with_extension("pub"), &authorized)
            .map_err(|e| format!("writing {}: {e}", authorized.display()))?;
        let host_key_fingerprint = fingerprint(&host_ed25519.with_extension("pub"))?;

        let config = dir.join("sshd_config");
        let log = dir.join("sshd.log");
        let mut last = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            fs::write(
                &config,
                config_text(
                    port,
                    &dir,
                    &[&host_ed25519, &host_ecdsa],
                    &authorized,
                    subsystems,
                ),
            )
            .map_err(|e| format!("writing {}: {e}", config.display()))?;
            match launch(&config, &log, port)? {
                Launch::Up(child) => {
                    let known_hosts = dir.join("known_hosts");
                    let ecdsa_known_hosts = dir.join("known_hosts.ecdsa");
                    let sshd = Sshd {
                        port,
                        user,
                        identity,
                        host_key_fingerprint,
                        known_hosts: known_hosts.clone(),
                        ecdsa_known_hosts: ecdsa_known_hosts.clone(),
                        dir,
                        child,
                        log,
                        _tmp: tmp,
                    };
                    // Written only now: the line names the port.
                    sshd.write_known_hosts(&known_hosts, &host_ed25519.with_extension("pub"))?;
                    sshd.write_known_hosts(&ecdsa_known_hosts, &host_ecdsa.with_extension("pub"))?;
                    return Ok(sshd);
                }
                Launch::PortTaken(why) => last = why,
            }
        }
        Err(format!(
            "sshd could not bind a free loopback port in {PORT_ATTEMPTS} attempts; last: {last}"
        ))
    }

    /// A known_hosts file listing a freshly generated Ed25519 key, not the server's, for
    /// `[127.0.0.1]:PORT`: what a client sees after the device was reinstalled, or when
    /// someone intercepts the connection.
    pub fn wrong_known_hosts(&self) -> PathBuf {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let key = self.dir.join(format!("other_host_key_{n}"));
        keygen("ed25519", &key).unwrap_or_else(|e| panic!("{e}"));
        let path = self.dir.join(format!("known_hosts.wrong_{n}"));
        self.write_known_hosts(&path, &key.with_extension("pub"))
            .unwrap_or_else(|e| panic!("{e}"));
        path
    }

    /// `[127.0.0.1]:PORT`, the host name OpenSSH records for a non-default port.
    pub fn known_hosts_name(&self) -> String {
        format!("[127.0.0.1]:{}", self.port)
    }

    /// sshd's log so far (`-e` sends it to a file here), for failure messages.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn write_known_hosts(&self, path: &Path, public_key: &Path) -> Result<(), String> {
        let text = fs::read_to_string(public_key)
            .map_err(|e| format!("reading {}: {e}", public_key.display()))?;
        // `TYPE BASE64 COMMENT`: keep the first two fields.
        let mut fields = text.split_whitespace();
        let (Some(kind), Some(blob)) = (fields.next(), fields.next()) else {
            return Err(format!(
                "{} is not a public key: {text:?}",
                public_key.display()
            ));
        };
        let line = format!("{} {kind} {blob}\n", self.known_hosts_name());
        fs::write(path, line).map_err(|e| format!("writing {}: {e}", path.display()))
    }
}

impl Sshd {
    /// Kills this sshd with SIGKILL: the listener and its per-connection processes, so every
    /// session breaks at once, as when a board's sshd crashes or the board drops off the
    /// network. The commands the sessions ran are left running, as they would be on the board.
    pub fn kill(&mut self) {
        let listener = self.child.id();
        for pid in crate::procs::children_of(listener) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

enum Launch {
    Up(Child),
    /// The port was taken before sshd could bind it; try another.
    PortTaken(String),
}

/// Starts sshd and waits until it is listening (its own log says so, which tells our sshd apart
/// from another process that grabbed the port) and greets a client with its SSH banner.
fn launch(config: &Path, log: &Path, port: u16) -> Result<Launch, String> {
    let log_file = fs::File::create(log).map_err(|e| format!("creating {}: {e}", log.display()))?;
    let mut child = Command::new(SSHD)
        .arg("-D")
        .arg("-e")
        .arg("-f")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        // A file, not a pipe: nobody has to drain it, and it outlives sshd for messages.
        .stderr(log_file)
        .spawn()
        .map_err(|e| format!("cannot start {SSHD}: {e}"))?;
    let deadline = Instant::now() + START_TIMEOUT;
    let listening = format!("Server listening on 127.0.0.1 port {port}");
    loop {
        let text = fs::read_to_string(log).unwrap_or_default();
        match child.try_wait() {
            Ok(Some(status)) => {
                let text = fs::read_to_string(log).unwrap_or_default();
                if text.contains("Address already in use") || text.contains("Cannot bind") {
                    return Ok(Launch::PortTaken(last_lines(&text, 5)));
                }
                return Err(format!(
                    "sshd exited ({status}) before listening on port {port}; its log:\n{}",
                    last_lines(&text, 20)
                ));
            }
            Ok(None) => {}
            Err(e) => return Err(format!("waiting for sshd: {e}")),
        }
        if text.contains(&listening) {
            break;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "sshd did not listen on port {port} within {} s; its log:\n{}",
                START_TIMEOUT.as_secs(),
                last_lines(&text, 20)
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    match wait_for_banner(port, deadline) {
        Ok(()) => Ok(Launch::Up(child)),
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            let text = fs::read_to_string(log).unwrap_or_default();
            Err(format!("{e}; sshd's log:\n{}", last_lines(&text, 20)))
        }
    }
}

/// Connects until the server sends its `SSH-2.0-...` identification line, or `deadline`.
pub fn wait_for_banner(port: u16, deadline: Instant) -> Result<(), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut last = String::from("no attempt");
    while Instant::now() < deadline {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        match read_banner(addr, left) {
            Ok(line) if line.starts_with("SSH-2.0-") => return Ok(()),
            Ok(line) => last = format!("unexpected greeting {line:?}"),
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!(
        "127.0.0.1:{port} sent no SSH banner in time (last: {last})"
    ))
}

/// The first line a server at `addr` sends.
pub fn read_banner(addr: SocketAddr, timeout: Duration) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < 255 {
        if s.read(&mut byte)? == 0 {
            break;
        }
        if byte[0] == b'\n' {
            break;
        }
        line.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&line).trim_end().to_string())
}

/// Which subsystems the server offers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Subsystems {
    Sftp,
    None,
}

fn config_text(
    port: u16,
    dir: &Path,
    host_keys: &[&Path],
    authorized: &Path,
    subsystems: Subsystems,
) -> String {
    let mut c = String::new();
    c.push_str("ListenAddress 127.0.0.1\n");
    c.push_str(&format!("Port {port}\n"));
    for key in host_keys {
        c.push_str(&format!("HostKey {}\n", key.display()));
    }
    c.push_str(&format!("AuthorizedKeysFile {}\n", authorized.display()));
    c.push_str(&format!("PidFile {}\n", dir.join("sshd.pid").display()));
    c.push_str(
        "PubkeyAuthentication yes\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         # Tests run as root in CI containers.\n\
         PermitRootLogin prohibit-password\n\
         # Temporary directories are not owned the way StrictModes wants.\n\
         StrictModes no\n\
         UsePAM no\n\
         UseDNS no\n\
         PrintMotd no\n\
         PrintLastLog no\n\
         X11Forwarding no\n\
         # Tests open many channels and connections at once.\n\
         MaxSessions 100\n\
         MaxStartups 200\n\
         MaxAuthTries 20\n\
         LoginGraceTime 30\n\
         LogLevel INFO\n",
    );
    if subsystems == Subsystems::Sftp {
        c.push_str(&format!("Subsystem sftp {SFTP_SERVER}\n"));
    }
    c
}

/// A port nothing listens on right now. Another process may take it before sshd binds; the
/// caller retries then.
fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("binding 127.0.0.1:0: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("reading the probed port: {e}"))
}

/// A key pair without passphrase at `path` (private) and `path.pub`.
fn keygen(kind: &str, path: &Path) -> Result<(), String> {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", kind, "-N", "", "-C", "meltbench-testbed", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run ssh-keygen: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ssh-keygen -t {kind} -f {} failed: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// `SHA256:...` of a public key file, from `ssh-keygen -lf` (`256 SHA256:... comment (ED25519)`).
pub fn fingerprint(public_key: &Path) -> Result<String, String> {
    let out = Command::new("ssh-keygen")
        .args(["-E", "sha256", "-l", "-f"])
        .arg(public_key)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run ssh-keygen: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .find(|w| w.starts_with("SHA256:"))
        .map(str::to_string)
        .ok_or_else(|| {
            format!(
                "ssh-keygen -lf {} printed no fingerprint: {} {}",
                public_key.display(),
                text.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            )
        })
}

/// The name of the account running the tests. `id -un` rather than `$USER`: containers often
/// leave `USER` unset, and sshd needs the real account name.
fn current_user() -> Result<String, String> {
    if let Ok(out) = Command::new("id").arg("-un").stdin(Stdio::null()).output() {
        let name = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && !name.is_empty() {
            return Ok(name);
        }
    }
    for var in ["USER", "LOGNAME"] {
        if let Ok(name) = std::env::var(var) {
            if !name.is_empty() {
                return Ok(name);
            }
        }
    }
    Err("cannot tell which user runs the tests (`id -un` failed and USER is unset)".into())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .stdin(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// OpenSSH's own client, so the keys and files are checked by an independent implementation.
    fn ssh(sshd: &Sshd, known_hosts: &Path, command: &str) -> std::process::Output {
        Command::new("ssh")
            .arg("-p")
            .arg(sshd.port.to_string())
            .arg("-i")
            .arg(&sshd.identity)
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
            .args([
                "-o",
                "GlobalKnownHostsFile=/dev/null",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "ConnectTimeout=10",
                "-F",
                "/dev/null",
            ])
            .arg(format!("{}@127.0.0.1", sshd.user))
            .arg(command)
            .stdin(Stdio::null())
            .output()
            .expect("running ssh (openssh-client)")
    }

    #[test]
    fn starts_greets_and_lets_the_openssh_client_in() {
        let Some(sshd) = Sshd::for_test("starts_greets_and_lets_the_openssh_client_in") else {
            return;
        };
        let banner = read_banner(
            SocketAddr::from(([127, 0, 0, 1], sshd.port)),
            Duration::from_secs(5),
        )
        .unwrap();
        assert!(banner.starts_with("SSH-2.0-OpenSSH"), "{banner}");

        let fp = &sshd.host_key_fingerprint;
        assert!(fp.starts_with("SHA256:") && fp.len() == 7 + 43, "{fp}");
        let known = fs::read_to_string(&sshd.known_hosts).unwrap();
        assert!(
            known.starts_with(&format!("[127.0.0.1]:{} ssh-ed25519 AAAA", sshd.port)),
            "{known}"
        );

        let out = ssh(&sshd, &sshd.known_hosts, "echo hello from $(id -un)");
        assert!(
            out.status.success(),
            "ssh failed: {}\nsshd log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            sshd.log()
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("hello from {}\n", sshd.user)
        );
        // The ECDSA-only file is right too: OpenSSH then negotiates the ECDSA key.
        let out = ssh(&sshd, &sshd.ecdsa_known_hosts, "true");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn the_wrong_known_hosts_file_is_refused_by_openssh() {
        let Some(sshd) = Sshd::for_test("the_wrong_known_hosts_file_is_refused_by_openssh") else {
            return;
        };
        let wrong = sshd.wrong_known_hosts();
        let other = sshd.wrong_known_hosts();
        assert_ne!(fs::read(&wrong).unwrap(), fs::read(&other).unwrap());
        let out = ssh(&sshd, &wrong, "true");
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("REMOTE HOST IDENTIFICATION HAS CHANGED"),
            "{err}"
        );
    }

    #[test]
    fn drop_stops_the_server_and_removes_its_directory() {
        let Some(sshd) = Sshd::for_test("drop_stops_the_server_and_removes_its_directory") else {
            return;
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], sshd.port));
        let dir = sshd.dir.clone();
        assert!(dir.join("sshd_config").is_file());
        drop(sshd);
        assert!(!dir.exists(), "{} was left behind", dir.display());
        // The kernel may take a moment to tear the socket down after the kill.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
                other => {
                    assert!(
                        Instant::now() < deadline,
                        "port {} still answers after drop: {other:?}",
                        addr.port()
                    );
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }

    #[test]
    fn several_servers_run_at_once() {
        let Some(first) = Sshd::for_test("several_servers_run_at_once") else {
            return;
        };
        let starting: Vec<_> = (0..3).map(|_| std::thread::spawn(Sshd::start)).collect();
        let mut servers = vec![first];
        servers.extend(starting.into_iter().map(|h| h.join().unwrap().unwrap()));
        let mut ports: Vec<u16> = servers.iter().map(|s| s.port).collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), servers.len());
        let fps: std::collections::BTreeSet<&str> = servers
            .iter()
            .map(|s| s.host_key_fingerprint.as_str())
            .collect();
        assert_eq!(
            fps.len(),
            servers.len(),
            "every server has its own host key"
        );
        for s in &servers {
            let banner = read_banner(
                SocketAddr::from(([127, 0, 0, 1], s.port)),
                Duration::from_secs(5),
            )
            .unwrap();
            assert!(banner.starts_with("SSH-2.0-"), "{banner}");
        }
    }
}
