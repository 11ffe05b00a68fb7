//! A real `adb` server started for the tests on its own port, pointed at simulated devices, and
//! stopped with them.

use super::*;

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
pub(super) fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
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
pub(super) fn run_bounded(
    mut cmd: Command,
    what: &str,
    timeout: Duration,
) -> Result<Output, String> {
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
pub(super) fn answers_as_adb_server(port: u16) -> bool {
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

pub(super) fn log_tail(path: &Path) -> String {
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
    pub(super) fn base_command(home: &Path) -> Command {
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

    /// Kills the server with SIGKILL, as a crash or an OOM kill would: every connection
    /// through it breaks at once. (Dropping it afterwards is harmless.)
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
