//! Events the stream missed, taken back from the device.
//!
//! The agent writes every event to its own `events.jsonl` on the device before it writes it to
//! the stream, and keeps going when the stream breaks. When the controller's stream ends
//! without the agent's `done` (connection dropped, adb server killed), or before resuming a
//! run, it connects again (with backoff) and appends to the run directory's log the lines the
//! device has beyond those the stream delivered. The stream's lines must be the start of the
//! device's: otherwise nothing is appended (the two logs would disagree), and a warning says so.

use crate::devices::Device;
use crate::transport;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

/// How long to wait before each reconnection try.
pub const BACKOFF: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
];

/// What recovery did.
#[derive(Debug, PartialEq, Eq)]
pub enum Recovered {
    /// Lines appended to the local log.
    Lines(usize),
    /// The device's log holds nothing the local one lacks.
    Nothing,
}

/// Pulls `remote_log` from `device` (trying again after each [`BACKOFF`] step) and appends
/// what `local_log` lacks.
pub fn fill(
    device: &Device,
    remote_log: &str,
    local_log: &Path,
    timeout: Duration,
    backoff: &[Duration],
) -> Result<Recovered, String> {
    let mut last = String::new();
    for (i, wait) in std::iter::once(&Duration::ZERO)
        .chain(backoff.iter())
        .enumerate()
    {
        std::thread::sleep(*wait);
        match pull(device, remote_log, timeout) {
            Ok(device_text) => return append_missing(local_log, &device_text),
            Err(e) => last = format!("try {}: {e}", i + 1),
        }
    }
    Err(last)
}

fn pull(device: &Device, remote_log: &str, timeout: Duration) -> Result<String, String> {
    let mut t = transport::connect(device, timeout).map_err(|e| e.to_string())?;
    let tmp = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
    t.pull(remote_log, tmp.path()).map_err(|e| e.to_string())?;
    std::fs::read_to_string(tmp.path()).map_err(|e| e.to_string())
}

/// Appends to `local_log` the whole lines of `device_text` past those it already has.
pub fn append_missing(local_log: &Path, device_text: &str) -> Result<Recovered, String> {
    let local = std::fs::read_to_string(local_log).unwrap_or_default();
    // Only whole lines count on either side: a torn last line is the one being written.
    let whole = |s: &str| -> usize { s.rfind('\n').map_or(0, |i| i + 1) };
    let have = &local[..whole(&local)];
    let device_whole = &device_text[..whole(device_text)];
    if !device_whole.starts_with(have) {
        return Err(format!(
            "the device's event log does not begin with the {} lines received; kept as received",
            have.lines().count()
        ));
    }
    let missing = &device_whole[have.len()..];
    if missing.is_empty() {
        return Ok(Recovered::Nothing);
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(local_log)
        .map_err(|e| format!("{}: {e}", local_log.display()))?;
    // A torn local line is replaced by its whole version from the device.
    f.set_len(have.len() as u64)
        .and_then(|()| {
            use std::io::Seek;
            f.seek(std::io::SeekFrom::End(0))?;
            f.write_all(missing.as_bytes())?;
            f.sync_all()
        })
        .map_err(|e| format!("{}: {e}", local_log.display()))?;
    Ok(Recovered::Lines(missing.lines().count()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_lines_the_stream_missed_are_appended() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("d.jsonl");
        std::fs::write(&log, "a\nb\nc-tor").unwrap();
        assert_eq!(
            append_missing(&log, "a\nb\nc-torn\nd\ne-half").unwrap(),
            Recovered::Lines(2)
        );
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "a\nb\nc-torn\nd\n");
        assert_eq!(
            append_missing(&log, "a\nb\nc-torn\nd\n").unwrap(),
            Recovered::Nothing
        );
    }

    #[test]
    fn a_device_log_that_disagrees_is_not_mixed_in() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("d.jsonl");
        std::fs::write(&log, "a\nb\n").unwrap();
        assert!(append_missing(&log, "a\nx\nc\n").is_err());
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "a\nb\n");
    }

    #[test]
    fn a_missing_local_log_takes_the_device_log_whole() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("d.jsonl");
        assert_eq!(append_missing(&log, "a\nb\n").unwrap(), Recovered::Lines(2));
    }
}
