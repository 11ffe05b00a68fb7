//! The run directory: `runs/<utc-time>-<suite>/` with `run.json` (what ran, where, with what),
//! `events/<device>.jsonl` (raw agent events, appended as received) and `summary.json`.

pub use meltbench_reports::runstore::{DeviceRecord, RunManifest, Transfer};
use meltbench_reports::summary::Summary;
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub struct RunStore {
    pub dir: PathBuf,
}

impl RunStore {
    /// Creates `<root>/<utc-time>-<suite>/events/`.
    pub fn create(root: &Path, started: &jiff::Timestamp, suite: &str) -> io::Result<RunStore> {
        let stamp = started.strftime("%Y%m%dT%H%M%SZ").to_string();
        let safe: String = suite
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let dir = root.join(format!("{stamp}-{safe}"));
        std::fs::create_dir_all(dir.join("events"))?;
        Ok(RunStore { dir })
    }

    pub fn write_manifest(&self, m: &RunManifest) -> io::Result<()> {
        write_json(&self.dir.join("run.json"), m)
    }

    pub fn write_summary(&self, s: &Summary) -> io::Result<()> {
        write_json(&self.dir.join("summary.json"), s)
    }

    /// An existing run directory, to resume.
    pub fn open(dir: &Path) -> RunStore {
        RunStore {
            dir: dir.to_path_buf(),
        }
    }

    /// Where attempt `attempt` (1-based) of `device` logs its events.
    pub fn event_log_path(&self, device: &str, attempt: usize) -> PathBuf {
        meltbench_reports::runstore::events_path(&self.dir, device, attempt)
    }

    /// The append-only raw event log of one device in one attempt.
    pub fn event_log(&self, device: &str, attempt: usize) -> io::Result<File> {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.event_log_path(device, attempt))
    }
}

/// Written to a temporary file and renamed, so a reader never sees half a file.
fn write_json<T: Serialize>(path: &Path, v: &T) -> io::Result<()> {
    let tmp = path.with_extension("json.partial");
    let mut f = File::create(&tmp)?;
    serde_json::to_writer_pretty(&mut f, v)?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    std::fs::rename(tmp, path)
}
