//! The run directory: `runs/<utc-time>-<suite>/` with `run.json` (what ran, where, with what),
//! `events/<device>.jsonl` (raw agent events, appended as received) and `summary.json`.

use meltbench_protocol::agent::DeviceInfo;
use meltbench_reports::summary::{CellKey, Summary};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
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
    pub devices: Vec<DeviceRecord>,
    pub cells: Vec<CellKey>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeviceRecord {
    pub name: String,
    pub transport: String,
    /// What the agent's probe reported (filled in when the agent says hello).
    pub info: Option<DeviceInfo>,
    pub error: Option<String>,
}

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

    /// The append-only raw event log of one device.
    pub fn event_log(&self, device: &str) -> io::Result<File> {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("events").join(format!("{device}.jsonl")))
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
