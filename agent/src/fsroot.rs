//! The directory that device files (`/sys`, `/proc`, `/etc/os-release`, `/system/build.prop`)
//! are read under. It is `/` on a device; tests point `MELTBENCH_SYSFS_ROOT` at a captured or
//! hand-made tree so probing and telemetry can be checked without the hardware.
//!
//! Files of processes the agent itself started (`/proc/<pid>/status` of the engine) are not read
//! through here: they only exist on the live system, never in a captured tree.

use std::io;
use std::path::{Path, PathBuf};

/// Environment variable naming the root; unset or empty means `/`.
pub const ENV: &str = "MELTBENCH_SYSFS_ROOT";

#[derive(Clone, Debug)]
pub struct FsRoot {
    root: PathBuf,
}

impl FsRoot {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FsRoot { root: root.into() }
    }

    pub fn from_env() -> Self {
        match std::env::var_os(ENV) {
            Some(v) if !v.is_empty() => FsRoot::new(v),
            _ => FsRoot::new("/"),
        }
    }

    /// Whether this is the live system: commands such as `getprop` only describe the live
    /// system, so they are not consulted for a captured tree.
    pub fn is_live(&self) -> bool {
        self.root == Path::new("/")
    }

    /// `abs` (an absolute device path such as `/proc/meminfo`) under the root.
    pub fn path(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }

    pub fn read(&self, abs: &str) -> io::Result<String> {
        std::fs::read_to_string(self.path(abs))
    }

    /// The file's contents without surrounding whitespace; `None` if unreadable or empty.
    pub fn read_trimmed(&self, abs: &str) -> Option<String> {
        let s = self.read(abs).ok()?;
        let t = s.trim();
        (!t.is_empty()).then(|| t.to_string())
    }

    pub fn exists(&self, abs: &str) -> bool {
        self.path(abs).exists()
    }

    /// Names in a directory, sorted naturally (`cpu2` before `cpu10`) so output is stable.
    pub fn list(&self, abs: &str) -> io::Result<Vec<String>> {
        let mut names: Vec<String> = std::fs::read_dir(self.path(abs))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort_by(|a, b| natural_key(a).cmp(&natural_key(b)));
        Ok(names)
    }
}

/// Sort key splitting a trailing number off, so `thermal_zone10` sorts after `thermal_zone9`.
fn natural_key(name: &str) -> (&str, u64) {
    let digits = name.len() - name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (stem, num) = name.split_at(name.len() - digits);
    (stem, num.parse().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_joined_under_the_root() {
        let r = FsRoot::new("/tmp/tree");
        assert_eq!(
            r.path("/proc/meminfo"),
            PathBuf::from("/tmp/tree/proc/meminfo")
        );
        assert!(!r.is_live());
        assert!(FsRoot::new("/").is_live());
        assert_eq!(FsRoot::new("/").path("/proc/x"), PathBuf::from("/proc/x"));
    }

    #[test]
    fn listing_is_in_natural_order() {
        let dir = tempfile::tempdir().unwrap();
        for n in ["cpu10", "cpu2", "cpu0", "cpufreq"] {
            std::fs::create_dir(dir.path().join(n)).unwrap();
        }
        let r = FsRoot::new(dir.path());
        assert_eq!(r.list("/").unwrap(), ["cpu0", "cpu2", "cpu10", "cpufreq"]);
    }
}
