//! Reading sysfs attributes under [`FsRoot`]: once (discovery) or repeatedly through an open
//! file descriptor (`pread` at offset 0, as energymon does), which is what the sampler uses.

use super::Reading;
use crate::fsroot::FsRoot;
use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

/// The file's trimmed text: `Absent` if it does not exist, `Unreadable` on any other error
/// (EACCES is the common one) or when it is empty.
pub fn read_str(root: &FsRoot, abs: &str) -> Reading<String> {
    match root.read(abs) {
        Ok(s) if s.trim().is_empty() => Reading::Unreadable(format!("{abs}: empty")),
        Ok(s) => Reading::Ok(s.trim().to_string()),
        Err(e) if e.kind() == ErrorKind::NotFound => Reading::Absent,
        Err(e) => Reading::Unreadable(format!("{abs}: {e}")),
    }
}

pub fn read_i64(root: &FsRoot, abs: &str) -> Reading<i64> {
    read_str(root, abs).and_then(|s| parse_i64(abs, &s))
}

fn parse_i64(what: &str, s: &str) -> Reading<i64> {
    match s.trim().parse::<i64>() {
        Ok(v) => Reading::Ok(v),
        Err(_) => Reading::Unreadable(format!("{what}: not an integer: {:?}", trunc(s))),
    }
}

fn trunc(s: &str) -> &str {
    match s.char_indices().nth(40) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// An attribute kept open between samples.
pub struct Node {
    abs: String,
    path: PathBuf,
    file: Option<File>,
}

impl Node {
    pub fn new(root: &FsRoot, abs: &str) -> Node {
        Node {
            abs: abs.to_string(),
            path: root.path(abs),
            file: None,
        }
    }

    /// The current text (reopening the file once if the kept descriptor fails).
    pub fn read_str(&mut self) -> Reading<String> {
        let mut buf = [0u8; 512];
        for attempt in 0..2 {
            if self.file.is_none() {
                match File::open(&self.path) {
                    Ok(f) => self.file = Some(f),
                    Err(e) if e.kind() == ErrorKind::NotFound => {
                        return Reading::Unreadable(format!("{}: gone", self.abs))
                    }
                    Err(e) => return Reading::Unreadable(format!("{}: {e}", self.abs)),
                }
            }
            let f = self.file.as_ref().expect("opened above");
            match f.read_at(&mut buf, 0) {
                Ok(n) => {
                    let s = String::from_utf8_lossy(&buf[..n]);
                    let t = s.trim();
                    if t.is_empty() {
                        return Reading::Unreadable(format!("{}: empty", self.abs));
                    }
                    return Reading::Ok(t.to_string());
                }
                Err(e) => {
                    self.file = None;
                    if attempt == 1 {
                        return Reading::Unreadable(format!("{}: {e}", self.abs));
                    }
                }
            }
        }
        Reading::Unreadable(format!("{}: unreadable", self.abs))
    }

    pub fn read_i64(&mut self) -> Reading<i64> {
        let abs = self.abs.clone();
        self.read_str().and_then(|s| parse_i64(&abs, &s))
    }
}

/// Subdirectory names of `dir` starting with `prefix`; `Err` only when the directory exists but
/// cannot be listed.
pub fn entries(root: &FsRoot, dir: &str, prefix: &str) -> Result<Vec<String>, String> {
    match root.list(dir) {
        Ok(names) => Ok(names
            .into_iter()
            .filter(|n| n.starts_with(prefix))
            .collect()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(format!("cannot list {dir}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_rereads_the_same_descriptor_and_reports_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("v"), "42\n").unwrap();
        let root = FsRoot::new(dir.path());
        let mut n = Node::new(&root, "/v");
        assert_eq!(n.read_i64(), Reading::Ok(42));
        std::fs::write(dir.path().join("v"), "7\n").unwrap();
        assert_eq!(n.read_i64(), Reading::Ok(7));
        std::fs::write(dir.path().join("v"), "x\n").unwrap();
        assert!(matches!(n.read_i64(), Reading::Unreadable(_)));
        assert_eq!(read_i64(&root, "/missing"), Reading::Absent);
        let mut gone = Node::new(&root, "/missing");
        assert!(matches!(gone.read_i64(), Reading::Unreadable(r) if r.contains("gone")));
    }
}
