//! The process-wide list of changes to undo (charging switches, `dumpsys battery` overrides):
//! each is registered before it is made, a cell's [`Guard`] undoes its own when the cell ends,
//! and the signal watcher ([`crate::interrupt`]) undoes whatever is pending.

use crate::telemetry::cmd::Commands;
use crate::telemetry::Reading;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// One change to undo.
#[derive(Clone, Debug)]
pub enum Undo {
    Write {
        path: std::path::PathBuf,
        value: String,
    },
    Run {
        cmds: Commands,
        argv: Vec<String>,
    },
}

impl Undo {
    pub fn run(&self) -> Result<(), String> {
        match self {
            Undo::Write { path, value } => std::fs::write(path, format!("{value}\n"))
                .map_err(|e| format!("writing {}: {e}", path.display())),
            Undo::Run { cmds, argv } => {
                let a: Vec<&str> = argv.iter().map(String::as_str).collect();
                match cmds.run(&a) {
                    Reading::Ok(_) => Ok(()),
                    Reading::Unreadable(r) => Err(r),
                    Reading::Absent => Err(format!("`{}` is not available", argv.join(" "))),
                }
            }
        }
    }
}

/// Pending undos, process-wide (the signal watcher must find them), in registration order.
static PENDING: Mutex<Vec<(u64, String, Undo)>> = Mutex::new(Vec::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
/// Every undo run so far, in order, by whichever thread: what was done, or what failed and why.
/// The signal watcher reports those since the signal ([`mark`]): a cell ending after its last
/// pass may restore its own state before the watcher gets to it.
static HISTORY: Mutex<Vec<Result<String, String>>> = Mutex::new(Vec::new());

fn pending() -> std::sync::MutexGuard<'static, Vec<(u64, String, Undo)>> {
    PENDING.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs the undos with these ids (all when `ids` is `None`), newest first, under the lock.
/// Returns what was done, and what failed.
fn undo(ids: Option<&[u64]>) -> (Vec<String>, Vec<String>) {
    let mut list = pending();
    let (mut done, mut failed) = (Vec::new(), Vec::new());
    let mut i = list.len();
    while i > 0 {
        i -= 1;
        if ids.is_some_and(|ids| !ids.contains(&list[i].0)) {
            continue;
        }
        let (_, what, u) = list.remove(i);
        match u.run() {
            Ok(()) => done.push(what),
            Err(e) => failed.push(format!("{what}: {e}")),
        }
    }
    history().extend(
        done.iter()
            .cloned()
            .map(Ok)
            .chain(failed.iter().cloned().map(Err)),
    );
    (done, failed)
}

fn history() -> std::sync::MutexGuard<'static, Vec<Result<String, String>>> {
    HISTORY.lock().unwrap_or_else(|e| e.into_inner())
}

/// A point in the undo history, for [`restore_all_since`].
pub fn mark() -> usize {
    history().len()
}

/// Undoes everything pending (the signal watcher); what was undone, and what failed, since
/// `mark`: by this call or by a cell that ended in between.
pub fn restore_all_since(mark: usize) -> (Vec<String>, Vec<String>) {
    undo(None);
    let (mut done, mut failed) = (Vec::new(), Vec::new());
    for r in history().iter().skip(mark) {
        match r {
            Ok(what) => done.push(what.clone()),
            Err(why) => failed.push(why.clone()),
        }
    }
    (done, failed)
}

/// The undos registered for one cell; dropping it runs them.
#[derive(Default)]
pub struct Guard {
    ids: Vec<u64>,
}

impl Guard {
    pub fn push(&mut self, u: Undo, what: &str) -> u64 {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        pending().push((id, what.to_string(), u));
        self.ids.push(id);
        id
    }

    pub fn undo_one(&mut self, id: u64) {
        self.ids.retain(|i| *i != id);
        undo(Some(&[id]));
    }

    /// Runs this cell's undos now; the failures, described.
    pub fn restore(&mut self) -> Vec<String> {
        let ids = std::mem::take(&mut self.ids);
        if ids.is_empty() {
            return Vec::new();
        }
        undo(Some(&ids)).1
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        for f in self.restore() {
            eprintln!("meltbench-agent: restoring the battery state failed: {f}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_undoes_on_drop_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("switch");
        std::fs::write(&p, "0\n").unwrap();
        {
            let mut g = Guard::default();
            g.push(
                Undo::Write {
                    path: p.clone(),
                    value: "1".into(),
                },
                "first",
            );
            g.push(
                Undo::Write {
                    path: p.clone(),
                    value: "2".into(),
                },
                "second",
            );
        }
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "1\n");
        assert!(!pending().iter().any(|(_, w, _)| w == "first"));
    }
}
