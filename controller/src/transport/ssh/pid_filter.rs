//! The remote command's process id, announced on stderr by a shell wrapper and taken out of the
//! stream before anyone reads it, so a stop can signal the process itself.

/// The script `exec` runs commands under (`sh -c SCRIPT sh ARGV...`): it reports its process ID
/// on stderr, then becomes the command (same process, same arguments). [`PidFilter`] takes the
/// line out again, so callers see the command's stderr only; the ID lets a command that runs out
/// of time be killed on the device.
pub(super) const ANNOUNCE_PID: &str = "echo meltbench-pid $$ >&2; exec \"$@\"";

pub(super) const PID_MARK: &[u8] = b"meltbench-pid ";

/// Separates [`ANNOUNCE_PID`]'s line from the command's own stderr. The line is looked for
/// among the first lines only: a login shell's startup files (bash reads `~/.bashrc` for SSH
/// commands) may print before it, and whatever the command prints comes after it.
#[derive(Default)]
pub struct PidFilter {
    /// Stderr not yet searched: the start of an unfinished line.
    pub(super) head: Vec<u8>,
    /// Set once the line was found, or given up on.
    pub(super) done: bool,
    pub(super) pid: Option<u32>,
    /// Stderr for the caller.
    pub(super) rest: Vec<u8>,
}

/// How much stderr may come before the PID line (startup-file chatter) before it is given up on.
pub(super) const PID_SEARCH: usize = 64 * 1024;

impl PidFilter {
    pub fn push(&mut self, bytes: &[u8]) {
        if self.done {
            self.rest.extend_from_slice(bytes);
            return;
        }
        self.head.extend_from_slice(bytes);
        while let Some(i) = self.head.iter().position(|&b| b == b'\n') {
            let pid = self.head[..i]
                .strip_prefix(PID_MARK)
                .and_then(|p| std::str::from_utf8(p).ok())
                .and_then(|p| p.parse().ok());
            let line: Vec<u8> = self.head.drain(..=i).collect();
            if pid.is_some() {
                self.pid = pid;
                self.done = true;
                self.rest.append(&mut self.head);
                return;
            }
            self.rest.extend_from_slice(&line);
        }
        if self.rest.len() + self.head.len() > PID_SEARCH {
            self.done = true;
            self.rest.append(&mut self.head);
        }
    }

    /// The process id, once its line was seen.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.rest.append(&mut self.head);
        self.rest
    }
}
