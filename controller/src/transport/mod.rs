//! Reaching devices: one trait, three transports (this machine, ssh, adb).
//!
//! Every transport is blocking: the scheduler gives each device its own blocking task, so a slow
//! phone never stalls the async runtime or another device. Remote command lines are only ever
//! built by [`quote::command_line`]; nothing from a suite or inventory is pasted into a shell raw.

pub mod adb;
pub mod local;
pub mod quote;
pub mod ssh;

pub use meltbench_reports::runstore::FileChannel;
use std::path::Path;
use std::time::Duration;

/// Opens the transport an inventory device names, within `timeout`.
pub fn connect(
    device: &crate::devices::Device,
    timeout: Duration,
) -> Result<Box<dyn Transport>, TransportError> {
    use crate::devices::Transport as Via;
    match &device.transport {
        Via::Local { .. } => Ok(Box::new(local::LocalTransport)),
        Via::Adb { serial, server } => Ok(Box::new(adb::AdbTransport::connect(
            serial, server, timeout,
        )?)),
        Via::Ssh(target) => Ok(Box::new(ssh::SshTransport::connect(target, timeout)?)),
    }
}

/// What a finished command left behind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Output {
    /// Exit status; `None` when the process was killed by a signal or the transport cannot tell.
    pub status: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Why a transport could not do what was asked. Every message names the device's address and
/// says what to check, because it ends up in the run's failure summary as is.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The device could not be reached or refused us: nothing further can run on it.
    #[error("{0}")]
    Connect(String),
    /// A command or transfer did not finish in time.
    #[error("{0}")]
    Timeout(String),
    /// Anything else (a transfer failed, a remote file is missing).
    #[error("{0}")]
    Other(String),
}

/// A connection to one device. Methods take `&mut self`: one device task owns its transport.
pub trait Transport: Send {
    /// How the device is reached, for messages: `ssh pi@rpi5:22`, `adb 37211FDJH000AB@127.0.0.1:5037`.
    fn describe(&self) -> String;

    /// Runs `argv` on the device and collects its output, killing it after `timeout`.
    fn exec(&mut self, argv: &[&str], timeout: Duration) -> Result<Output, TransportError>;

    /// Runs `argv`, handing each stdout line to `on_line` as it arrives. Returns the exit status
    /// and the tail of stderr. No overall timeout: the agent enforces each cell's own.
    fn stream(
        &mut self,
        argv: &[&str],
        on_line: &mut dyn FnMut(&str),
    ) -> Result<(Option<i32>, String), TransportError>;

    /// Copies the local file to `remote` (parent directories must exist) with Unix `mode`;
    /// returns the bytes sent.
    fn push(&mut self, local: &Path, remote: &str, mode: u32) -> Result<u64, TransportError>;

    /// Copies `remote` to the local file; returns the bytes received.
    fn pull(&mut self, remote: &str, local: &Path) -> Result<u64, TransportError>;

    /// How `push` and `pull` move files; `None` while a transport has not decided yet (SSH
    /// learns whether the server has SFTP on the first transfer).
    fn file_channel(&self) -> Option<FileChannel>;

    /// The bundle target (`aarch64-unknown-linux-musl`, ...) this device runs, from its
    /// machine type (`uname -m`); a transport that knows better (adb: the Android ABI) says so.
    fn bundle_target(&mut self, timeout: Duration) -> Result<&'static str, String> {
        let o = self
            .exec(&["uname", "-m"], timeout)
            .map_err(|e| e.to_string())?;
        let machine = o.stdout_text().trim().to_string();
        crate::bundle::target_for_uname(&machine).map_err(|e| format!("{}: {e}", self.describe()))
    }

    /// Where meltbench keeps its files on the device when the inventory names no `workdir`:
    /// `~/.cache/meltbench` of the login (a remote command starts in the home directory).
    fn default_workdir(&mut self, timeout: Duration) -> Result<String, String> {
        let o = self.exec(&["pwd"], timeout).map_err(|e| e.to_string())?;
        let home = o.stdout_text().trim().to_string();
        if !o.success() || !home.starts_with('/') {
            return Err(format!(
                "{}: cannot find the home directory (`pwd` said {:?}); set `workdir:` for this \
                 device in devices.yaml",
                self.describe(),
                home
            ));
        }
        Ok(format!("{}/.cache/meltbench", home.trim_end_matches('/')))
    }

    /// SHA-256 (lowercase hex) of each remote file, `None` for one that does not exist. Computed
    /// on the device (`sha256sum`, in coreutils, busybox and Android's toybox), so a file is
    /// verified where it will be used.
    fn sha256(&mut self, remote: &[&str]) -> Result<Vec<Option<String>>, TransportError> {
        if remote.is_empty() {
            return Ok(Vec::new());
        }
        let mut argv = vec!["sha256sum", "--"];
        argv.extend_from_slice(remote);
        // Missing files make sha256sum exit 1 while still printing the others.
        let out = self.exec(&argv, Duration::from_secs(300))?;
        let text = out.stdout_text();
        Ok(remote
            .iter()
            .map(|path| parse_sha256sum(&text, path))
            .collect())
    }
}

/// The digest `sha256sum` printed for `path` (`<hex>  <path>` per line).
pub fn parse_sha256sum(text: &str, path: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (hex, name) = line.split_once("  ")?;
        (name == path && hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| hex.to_ascii_lowercase())
    })
}

/// A stderr tail for messages: its last `n` lines.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256sum_lines_are_matched_by_exact_path() {
        let a = "a".repeat(64);
        let b = "B".repeat(64);
        let text = format!("{a}  /w/blobs/x\n{b}  /w/blobs/x y\n");
        assert_eq!(parse_sha256sum(&text, "/w/blobs/x"), Some(a));
        assert_eq!(
            parse_sha256sum(&text, "/w/blobs/x y"),
            Some(b.to_lowercase())
        );
        assert_eq!(parse_sha256sum(&text, "/w/blobs/z"), None);
        assert_eq!(parse_sha256sum("short  /p\n", "/p"), None);
    }
}
