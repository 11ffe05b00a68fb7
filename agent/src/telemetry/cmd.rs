//! Every command telemetry runs (getprop, dumpsys, vcgencmd, nvpmodel, a user's meter command)
//! goes through [`Commands`]: on the live system it runs the real program; for a captured
//! device it answers from a directory of files named after the command line.
//!
//! Captured layout: the file `<dir>/<argv joined by spaces>` (a `/` in an argument becomes
//! `_`) holds the command's standard output; `<...>.err` instead means the command ran and
//! failed, its text being the reason; neither means the command does not exist on the device.
//!
//! Tests that need to see which commands a captured device was given (the battery states'
//! `dumpsys battery set/unplug/reset`, `setprop`) set [`LOG_ENV`] to a file: each captured
//! command line is then appended to it, one per line, as [`Commands::file_name`] spells it.

use super::Reading;
use crate::fsroot::FsRoot;
use std::io::ErrorKind;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Environment variable naming a directory of captured command outputs.
pub const ENV: &str = "MELTBENCH_COMMANDS_DIR";
/// Environment variable naming a file that captured command lines are appended to (tests).
pub const LOG_ENV: &str = "MELTBENCH_COMMANDS_LOG";

#[derive(Clone, Debug)]
pub enum Commands {
    /// Run the real programs.
    Live,
    /// Answer from captured outputs.
    Captured(PathBuf),
    /// Commands describe only the live system; a captured tree without outputs has none.
    None,
}

impl Commands {
    /// `$MELTBENCH_COMMANDS_DIR` if set; else live commands on the live root, none otherwise.
    pub fn from_env(root: &FsRoot) -> Commands {
        match std::env::var_os(ENV) {
            Some(d) if !d.is_empty() => Commands::Captured(d.into()),
            _ if root.is_live() => Commands::Live,
            _ => Commands::None,
        }
    }

    /// The captured file name for a command line.
    pub fn file_name(argv: &[&str]) -> String {
        argv.iter()
            .map(|a| a.replace('/', "_"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The command's standard output: `Absent` when the program does not exist, `Unreadable`
    /// when it ran and failed (exit status, permission).
    pub fn run(&self, argv: &[&str]) -> Reading<String> {
        let Some((prog, args)) = argv.split_first() else {
            return Reading::Absent;
        };
        match self {
            Commands::None => Reading::Absent,
            Commands::Captured(dir) => {
                let name = Commands::file_name(argv);
                if let Some(log) = std::env::var_os(LOG_ENV).filter(|l| !l.is_empty()) {
                    use std::io::Write;
                    if let Ok(mut f) = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(log)
                    {
                        let _ = f.write_all(format!("{name}\n").as_bytes());
                    }
                }
                match std::fs::read_to_string(dir.join(&name)) {
                    Ok(s) => Reading::Ok(s),
                    Err(e) if e.kind() == ErrorKind::NotFound => {
                        match std::fs::read_to_string(dir.join(format!("{name}.err"))) {
                            Ok(reason) => Reading::Unreadable(format!("{name}: {}", reason.trim())),
                            Err(_) => Reading::Absent,
                        }
                    }
                    Err(e) => Reading::Unreadable(format!("captured {name}: {e}")),
                }
            }
            Commands::Live => {
                let out = Command::new(prog)
                    .args(args)
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .output();
                match out {
                    Err(e) if e.kind() == ErrorKind::NotFound => Reading::Absent,
                    Err(e) => Reading::Unreadable(format!("{}: {e}", argv.join(" "))),
                    Ok(o) if o.status.success() => {
                        Reading::Ok(String::from_utf8_lossy(&o.stdout).into_owned())
                    }
                    Ok(o) => {
                        let err = String::from_utf8_lossy(&o.stderr);
                        let out = String::from_utf8_lossy(&o.stdout);
                        let why = if err.trim().is_empty() { out } else { err };
                        let why: String = why.trim().chars().take(200).collect();
                        Reading::Unreadable(format!("{} ({}): {why}", argv.join(" "), o.status))
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captured_outputs_errors_and_missing_commands() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("vcgencmd get_throttled"), "throttled=0x0\n").unwrap();
        std::fs::write(dir.path().join("nvpmodel -q.err"), "permission denied").unwrap();
        let c = Commands::Captured(dir.path().into());
        assert_eq!(
            c.run(&["vcgencmd", "get_throttled"]),
            Reading::Ok("throttled=0x0\n".into())
        );
        assert!(
            matches!(c.run(&["nvpmodel", "-q"]), Reading::Unreadable(r) if r.contains("permission"))
        );
        assert_eq!(c.run(&["dumpsys", "battery"]), Reading::Absent);
        assert_eq!(Commands::file_name(&["sh", "/a/b"]), "sh _a_b");
        assert_eq!(Commands::None.run(&["getprop"]), Reading::Absent);
    }

    #[test]
    fn live_commands_report_missing_and_failing_programs() {
        let c = Commands::Live;
        assert_eq!(c.run(&["meltbench-no-such-program-x"]), Reading::Absent);
        assert!(
            matches!(c.run(&["sh", "-c", "echo no >&2; exit 3"]), Reading::Unreadable(r) if r.contains("no"))
        );
        assert_eq!(c.run(&["echo", "1234"]), Reading::Ok("1234\n".into()));
    }
}
