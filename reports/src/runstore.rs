//! Reading a run directory (`runs/<utc-time>-<suite>/`): `run.json` says what ran where, and
//! `events/<device>.jsonl` holds the raw agent events. The controller writes these files; this
//! module owns their types so that reports can be made from any recorded run.

use crate::cell_key::CellKey;
use meltbench_protocol::agent::{AgentEvent, DeviceInfo};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunManifest {
    pub run_id: String,
    pub suite_name: String,
    pub suite_path: String,
    /// The suite file exactly as it was when the run started.
    pub suite_yaml: String,
    pub meltbench_version: String,
    /// The commit meltbench was built from (`-dirty` with uncommitted changes).
    pub meltbench_commit: String,
    /// `git rev-parse HEAD` of the suite's repository, when it is one.
    pub suite_git_commit: Option<String>,
    pub started_utc: String,
    pub finished_utc: Option<String>,
    pub command: String,
    /// The device inventory the run used (`--devices`), for `--resume`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices_path: Option<String>,
    pub devices: Vec<DeviceRecord>,
    pub cells: Vec<CellKey>,
    /// Every attempt at this run, the first included, once it has been resumed (or
    /// interrupted): when, by what command, on which devices, and what it superseded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<Attempt>,
}

/// One go at a run: the first `meltbench run`, then each `--resume`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// 1-based; attempt N's events are in [`events_path`]`(dir, device, N)`.
    pub number: usize,
    pub started_utc: String,
    pub finished_utc: Option<String>,
    pub command: String,
    /// Devices that had something left to run.
    pub devices: Vec<String>,
    /// Stopped by Ctrl-C (SIGINT) or SIGTERM on the controller.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
    /// Devices that failed as a whole in this attempt, as `device: reason`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// Events recovered from a device's own log after its stream broke, as `device: N lines`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recovered: Vec<String>,
    /// Partial sessions of earlier attempts that this attempt ran again: their passes stay in
    /// their own attempt's log and are not counted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub superseded: Vec<SupersededSession>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupersededSession {
    pub device: String,
    pub cell: String,
    pub session: usize,
    /// The attempt whose log holds the partial session.
    pub attempt: usize,
    /// Its pass events (warm-ups included), kept but not counted.
    pub passes: usize,
}

/// What marks attempt `attempt`'s (1-based) files: nothing for the first, `.attempt-N` after.
/// One scheme for event logs, job files and the device-side directories.
pub fn attempt_suffix(attempt: usize) -> String {
    if attempt <= 1 {
        String::new()
    } else {
        format!(".attempt-{attempt}")
    }
}

/// Attempt `attempt`'s (1-based) event log of `device`: `events/<device>.jsonl` for the first,
/// `events/<device>.attempt-<N>.jsonl` after.
pub fn events_path(dir: &Path, device: &str, attempt: usize) -> PathBuf {
    dir.join("events")
        .join(format!("{device}{}.jsonl", attempt_suffix(attempt)))
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeviceRecord {
    pub name: String,
    pub transport: String,
    /// What the agent's probe reported (filled in when the agent says hello).
    pub info: Option<DeviceInfo>,
    pub error: Option<String>,
    /// What reaching the device cost before the first cell: the push cache's transfer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer: Option<Transfer>,
}

/// Files the controller had to send a device (binaries and models, content-addressed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    /// Bytes sent.
    pub bytes: u64,
    /// Files the device did not have.
    pub sent: usize,
    /// Files whose copy on the device failed its SHA-256 check and were sent again.
    pub repaired: usize,
    /// Files already on the device and intact.
    pub reused: usize,
    /// How the files travelled; absent when nothing was sent (and in runs before it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<FileChannel>,
}

/// The way files reach a device: a user whose board lacks SFTP sees that meltbench noticed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileChannel {
    /// A copy on this machine.
    LocalCopy,
    /// adb's sync protocol.
    AdbSync,
    /// SSH's SFTP subsystem.
    Sftp,
    /// `cat` over an SSH exec channel, for servers without SFTP (dropbear, minimal sshd_config).
    SshExec,
}

impl std::fmt::Display for FileChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FileChannel::LocalCopy => "by local copy",
            FileChannel::AdbSync => "over adb sync",
            FileChannel::Sftp => "over SFTP",
            FileChannel::SshExec => "over an SSH exec channel (the server offers no SFTP)",
        })
    }
}

impl std::fmt::Display for Transfer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pushed {} bytes ({} new, {} repaired, {} already there)",
            self.bytes, self.sent, self.repaired, self.reused
        )?;
        match self.via {
            Some(via) => write!(f, " {via}"),
            None => Ok(()),
        }
    }
}

/// One run directory, read whole.
#[derive(Clone, Debug)]
pub struct LoadedRun {
    pub dir: PathBuf,
    pub manifest: RunManifest,
    /// Per device in the manifest's order: its events in file order (a device whose log is
    /// missing has none).
    pub events: Vec<(String, Vec<AgentEvent>)>,
    /// Lines that could not be read, as `file:line: reason` (a torn last line after a crash).
    pub skipped_lines: Vec<String>,
}

#[derive(Debug)]
pub enum LoadError {
    NotARun { dir: PathBuf, reason: String },
    Manifest { path: PathBuf, reason: String },
    Events { path: PathBuf, reason: String },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::NotARun { dir, reason } => write!(
                f,
                "{}: not a run directory ({reason}); pass a directory that `meltbench run` \
                 created, such as runs/20260101T000000Z-quickstart",
                dir.display()
            ),
            LoadError::Manifest { path, reason } => write!(
                f,
                "{}: {reason}; the run directory is damaged or from an incompatible meltbench",
                path.display()
            ),
            LoadError::Events { path, reason } => write!(f, "{}: {reason}", path.display()),
        }
    }
}

impl std::error::Error for LoadError {}

/// Whether `dir` looks like a run directory (it has a `run.json`).
pub fn is_run_dir(dir: &Path) -> bool {
    dir.join("run.json").is_file()
}

/// Reads a run directory's `run.json` alone.
pub fn read_manifest(dir: &Path) -> Result<RunManifest, LoadError> {
    let path = dir.join("run.json");
    if !path.is_file() {
        let reason = if dir.is_dir() {
            "it has no run.json".to_string()
        } else {
            "no such directory".to_string()
        };
        return Err(LoadError::NotARun {
            dir: dir.to_path_buf(),
            reason,
        });
    }
    let text = std::fs::read(&path).map_err(|e| LoadError::Manifest {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    serde_json::from_slice(&text).map_err(|e| LoadError::Manifest {
        path,
        reason: e.to_string(),
    })
}

/// Reads `run.json` and every device's event log.
pub fn load_run(dir: &Path) -> Result<LoadedRun, LoadError> {
    let manifest = read_manifest(dir)?;
    let mut events = Vec::new();
    let mut skipped_lines = Vec::new();
    for d in &manifest.devices {
        let (list, _) = device_events(dir, &manifest, d, &mut skipped_lines)?;
        events.push((d.name.clone(), list));
    }
    Ok(LoadedRun {
        dir: dir.to_path_buf(),
        manifest,
        events,
        skipped_lines,
    })
}

/// One device's events over every attempt of the run, merged as [`crate::attempts::merge`]
/// says, with the partial sessions it left out.
pub fn device_events(
    dir: &Path,
    manifest: &RunManifest,
    d: &DeviceRecord,
    skipped_lines: &mut Vec<String>,
) -> Result<(Vec<AgentEvent>, Vec<crate::attempts::Superseded>), LoadError> {
    let p = events_path(dir, &d.name, 1);
    let first = match std::fs::File::open(&p) {
        Ok(f) => read_events(&p, f, skipped_lines)?,
        // A device that failed before its agent started has no log; one that did not
        // fail must have one, or its passes are gone and a report would show zeros.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && d.error.is_some() => Vec::new(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && manifest.attempts.len() > 1 => {
            Vec::new()
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(LoadError::Events {
                path: p,
                reason: format!(
                    "{e}, though run.json records device '{}' as run without error: the \
                     run directory is incomplete (restore its events/ or run the suite again)",
                    d.name
                ),
            })
        }
        Err(e) => {
            return Err(LoadError::Events {
                path: p,
                reason: e.to_string(),
            })
        }
    };
    let mut attempts = vec![first];
    for n in 2..=manifest.attempts.len() {
        let p = events_path(dir, &d.name, n);
        match std::fs::File::open(&p) {
            Ok(f) => attempts.push(read_events(&p, f, skipped_lines)?),
            // An attempt that had nothing left to run on this device (an empty entry keeps
            // the attempt numbers of what `merge` reports).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => attempts.push(Vec::new()),
            Err(e) => {
                return Err(LoadError::Events {
                    path: p,
                    reason: e.to_string(),
                })
            }
        }
    }
    Ok(crate::attempts::merge(attempts))
}

/// Reads one device's log. Logs of long runs are hundreds of megabytes, so the file is read
/// whole, cut at line ends into one piece per core, and the pieces are parsed in parallel.
fn read_events(
    path: &Path,
    mut f: std::fs::File,
    skipped: &mut Vec<String>,
) -> Result<Vec<AgentEvent>, LoadError> {
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).map_err(|e| LoadError::Events {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pieces = split_at_lines(&bytes, if bytes.len() < (1 << 20) { 1 } else { threads });
    let parsed: Vec<Parsed> = std::thread::scope(|scope| {
        let handles: Vec<_> = pieces
            .iter()
            .map(|&(first_line, piece)| scope.spawn(move || parse_lines(first_line, piece)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("event parser panicked"))
            .collect()
    });
    let mut out = Vec::new();
    for (events, bad) in parsed {
        out.extend(events);
        skipped.extend(
            bad.into_iter()
                .map(|(n, e)| format!("{}:{n}: {e}", path.display())),
        );
    }
    Ok(out)
}

/// Up to `n` pieces of whole lines, each with the 1-based number of its first line.
fn split_at_lines(bytes: &[u8], n: usize) -> Vec<(usize, &[u8])> {
    let mut pieces = Vec::new();
    let (mut start, mut line) = (0usize, 1usize);
    let target = bytes.len() / n.max(1) + 1;
    while start < bytes.len() {
        let mut end = (start + target).min(bytes.len());
        while end < bytes.len() && bytes[end - 1] != b'\n' {
            end += 1;
        }
        let piece = &bytes[start..end];
        pieces.push((line, piece));
        line += piece.iter().filter(|&&b| b == b'\n').count();
        start = end;
    }
    pieces
}

/// A pass event read straight into its fields: most lines of a log are passes, and reading the
/// tagged enum first buffers every line (about twice the time).
#[derive(Deserialize)]
struct PassLine {
    cell: String,
    #[serde(default)]
    session: usize,
    pass: meltbench_protocol::engine::PassRecord,
    rss_hwm_bytes: Option<u64>,
    #[serde(default)]
    telemetry: Option<meltbench_protocol::agent::PassTelemetry>,
}

const PASS_PREFIX: &[u8] = br#"{"event":"pass","#;

/// A piece's events, and its unreadable lines as (line number, reason).
type Parsed = (Vec<AgentEvent>, Vec<(usize, String)>);

fn parse_lines(first_line: usize, piece: &[u8]) -> Parsed {
    let mut events = Vec::new();
    let mut bad = Vec::new();
    for (i, line) in piece.split(|&b| b == b'\n').enumerate() {
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        let parsed = if text.starts_with(PASS_PREFIX) {
            serde_json::from_slice::<PassLine>(text).map(|p| AgentEvent::Pass {
                cell: p.cell,
                session: p.session,
                pass: p.pass,
                rss_hwm_bytes: p.rss_hwm_bytes,
                telemetry: p.telemetry,
            })
        } else {
            serde_json::from_slice::<AgentEvent>(text)
        };
        match parsed {
            Ok(e) => events.push(e),
            Err(e) => bad.push((first_line + i, e.to_string())),
        }
    }
    (events, bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cover_every_line_once_with_their_numbers() {
        let text = b"a\nbb\n\nccc\ndddd\ne";
        for n in 1..8 {
            let pieces = split_at_lines(text, n);
            let joined: Vec<u8> = pieces.iter().flat_map(|p| p.1.iter().copied()).collect();
            assert_eq!(joined, text, "{n} pieces");
            for (first, piece) in &pieces {
                let before = text[..piece.as_ptr() as usize - text.as_ptr() as usize]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count();
                assert_eq!(*first, before + 1);
            }
        }
    }

    #[test]
    fn the_fast_pass_path_reads_what_the_enum_writes() {
        let line = r#"{"event":"pass","cell":"c","session":2,"pass":{"index":0,"warmup":false,"prompt_tokens":4,"gen_tokens":2,"tokenize_ns":1,"prefill_ns":2,"decode_ns":[3],"detokenize_ns":4,"ttft_ns":3,"stop":"length","start_mono_ns":5,"end_mono_ns":9},"rss_hwm_bytes":7}"#;
        let fast = parse_lines(1, line.as_bytes()).0;
        let slow: AgentEvent = serde_json::from_str(line).unwrap();
        assert_eq!(fast, vec![slow.clone()]);
        assert_eq!(serde_json::to_string(&slow).unwrap(), line);
        let (ok, bad) = parse_lines(10, b"{\"event\":\"pass\",\"cell\":1}\n{\"event\":\"done\",\"cells_ok\":1,\"cells_failed\":0}");
        assert_eq!(ok.len(), 1);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].0, 10, "torn lines are reported with their number");
    }
}
