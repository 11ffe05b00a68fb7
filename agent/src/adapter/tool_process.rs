//! Starting one of llama.cpp's tools for the `llama.cpp` adapter, whichever it is: the build's
//! libraries first on the library path, no input, dying with the adapter, and the end of its
//! log to close an error with.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::process::{Command, Stdio};

/// A command for one of the build's tools: its libraries first on the library path, no input,
/// and it dies with the adapter.
pub(super) fn tool_command(program: &Path, dir: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.env("LD_LIBRARY_PATH", library_path(dir))
        .stdin(Stdio::null());
    // Whatever ends the adapter ends the tool: the agent's timeout kills the process group,
    // which the tool shares; this covers a kill of the adapter alone.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd
}

/// The end of a tool's log (up to 4 KiB).
pub(super) fn log_text(log: &Path) -> String {
    let Ok(mut f) = std::fs::File::open(log) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(4096)));
    let mut bytes = Vec::new();
    let _ = f.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The last lines of a tool's log, to end an error with.
pub(super) fn log_tail(log: &Path) -> String {
    let text = log_text(log);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return String::new();
    }
    let tail = &lines[lines.len().saturating_sub(8)..];
    format!("; its log ({}) ends:\n{}", log.display(), tail.join("\n"))
}

/// The tools' directory first, so a shared-library build loads its own libraries.
fn library_path(dir: &Path) -> std::ffi::OsString {
    let mut p = dir.as_os_str().to_os_string();
    if let Some(old) = std::env::var_os("LD_LIBRARY_PATH").filter(|o| !o.is_empty()) {
        p.push(":");
        p.push(old);
    }
    p
}
