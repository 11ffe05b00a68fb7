//! The `sync:` service (adb push, pull, stat, list) confined to the device's sandbox directory,
//! with the error texts adbd sends.

use super::*;

/// The largest sync `DATA` chunk (`SYNC_DATA_MAX`).
pub(super) const SYNC_DATA_MAX: usize = 64 * 1024;

/// The longest path a sync request may carry.
pub(super) const SYNC_PATH_MAX: usize = 1024;

pub(super) const ENOENT: i32 = 2;

pub(super) const EACCES: i32 = 13;

/// `strerror` text of an I/O error, without Rust's " (os error N)".
pub(super) fn strerror(e: &io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

pub(super) fn permission_denied() -> io::Error {
    io::Error::from_raw_os_error(EACCES)
}

/// Lexically normalises an absolute device path (`.`/`..`, repeated slashes).
pub(super) fn normalise(remote: &str) -> Option<PathBuf> {
    let p = Path::new(remote);
    if !p.is_absolute() {
        return None;
    }
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(x) => out.push(x),
            Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// The local path for a device path, if it lies inside the sandbox: its existing ancestors
/// (and the path itself with `follow`, once it exists) must resolve to the sandbox.
pub(super) fn confine(sandbox: &Path, remote: &str, follow: bool) -> io::Result<PathBuf> {
    let path = normalise(remote).ok_or_else(permission_denied)?;
    let mut ancestor = path.parent().unwrap_or(&path).to_path_buf();
    while !ancestor.exists() {
        if !ancestor.pop() {
            break;
        }
    }
    let resolved = ancestor.canonicalize()?;
    if !resolved.starts_with(sandbox) {
        return Err(permission_denied());
    }
    if follow && path.exists() && !path.canonicalize()?.starts_with(sandbox) {
        return Err(permission_denied());
    }
    Ok(path)
}

/// `strtoul(s, nullptr, 0)`: hex with 0x, octal with a leading 0, decimal otherwise.
pub(super) fn parse_mode(s: &str) -> Option<u32> {
    let s = s.trim();
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u32::from_str_radix(hex, 16).ok()
    } else if s.len() > 1 && s.starts_with('0') {
        u32::from_str_radix(&s[1..], 8).ok()
    } else {
        s.parse().ok()
    }
}

pub(super) struct SyncSession<'a> {
    pub(super) shared: &'a Shared,
    pub(super) input: StreamIn,
    pub(super) output: &'a StreamOut,
    /// Replies are gathered here and written out at message boundaries.
    pub(super) pending: Vec<u8>,
}

pub(super) fn end_session() -> io::Error {
    io::Error::other("session ends")
}

impl SyncSession<'_> {
    pub(super) fn put(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
    }

    pub(super) fn put_u32(&mut self, v: u32) {
        self.pending.extend_from_slice(&v.to_le_bytes());
    }

    pub(super) fn put_u64(&mut self, v: u64) {
        self.pending.extend_from_slice(&v.to_le_bytes());
    }

    pub(super) fn flush(&mut self) -> io::Result<()> {
        let bytes = std::mem::take(&mut self.pending);
        self.output.write(&bytes)
    }

    pub(super) fn fail(&mut self, message: &str) -> io::Result<()> {
        trace(|| format!("sync FAIL {message}"));
        self.put(b"FAIL");
        self.put_u32(message.len() as u32);
        self.put(message.as_bytes());
        self.flush()
    }

    pub(super) fn read_u32(&mut self) -> io::Result<u32> {
        let mut b = [0u8; 4];
        self.input.read_exact(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    pub(super) fn read_bytes(&mut self, n: usize) -> io::Result<Vec<u8>> {
        let mut b = vec![0u8; n];
        self.input.read_exact(&mut b)?;
        Ok(b)
    }

    pub(super) fn run(&mut self) -> io::Result<()> {
        loop {
            let mut request = [0u8; 4];
            if self.input.read_exact(&mut request).is_err() {
                return Ok(()); // the host closed the stream
            }
            let len = self.read_u32()? as usize;
            if len > SYNC_PATH_MAX {
                self.fail("path too long")?;
                return Err(end_session());
            }
            let name = String::from_utf8_lossy(&self.read_bytes(len)?).into_owned();
            trace(|| format!("sync {} {name:?}", String::from_utf8_lossy(&request)));
            match &request {
                b"STAT" => self.stat_v1(&name)?,
                b"STA2" | b"LST2" => self.stat_v2(&name, &request)?,
                b"LIST" => self.list(&name, false)?,
                b"LIS2" => self.list(&name, true)?,
                b"SEND" => self.send(&name)?,
                b"RECV" => self.recv(&name)?,
                b"QUIT" => return Ok(()),
                other => {
                    self.fail(&format!(
                        "unknown command {:08x}",
                        u32::from_le_bytes(*other)
                    ))?;
                    return Err(end_session());
                }
            }
        }
    }

    pub(super) fn stat_v1(&mut self, name: &str) -> io::Result<()> {
        let meta = confine(&self.shared.sandbox, name, false).and_then(fs::symlink_metadata);
        self.put(b"STAT");
        match meta {
            Ok(m) => {
                self.put_u32(m.mode());
                self.put_u32(m.size() as u32);
                self.put_u32(m.mtime() as u32);
            }
            Err(_) => self.put(&[0u8; 12]),
        }
        self.flush()
    }

    pub(super) fn put_stat_v2(&mut self, meta: &io::Result<fs::Metadata>) {
        match meta {
            Ok(m) => {
                self.put_u32(0);
                self.put_u64(m.dev());
                self.put_u64(m.ino());
                self.put_u32(m.mode());
                self.put_u32(m.nlink() as u32);
                self.put_u32(m.uid());
                self.put_u32(m.gid());
                self.put_u64(m.size());
                self.put_u64(m.atime() as u64);
                self.put_u64(m.mtime() as u64);
                self.put_u64(m.ctime() as u64);
            }
            Err(e) => {
                self.put_u32(e.raw_os_error().unwrap_or(EACCES) as u32);
                self.put(&[0u8; 64]);
            }
        }
    }

    pub(super) fn stat_v2(&mut self, name: &str, request: &[u8; 4]) -> io::Result<()> {
        let follow = request == b"STA2";
        // Outside the sandbox nothing is visible: ENOENT, so that a push there fails where a
        // phone's would, at SEND, with "Permission denied".
        let meta = confine(&self.shared.sandbox, name, follow)
            .map_err(|_| io::Error::from_raw_os_error(ENOENT))
            .and_then(|p| {
                if follow {
                    fs::metadata(p)
                } else {
                    fs::symlink_metadata(p)
                }
            });
        self.put(request);
        self.put_stat_v2(&meta);
        self.flush()
    }

    pub(super) fn list(&mut self, name: &str, v2: bool) -> io::Result<()> {
        let entries = confine(&self.shared.sandbox, name, true).and_then(fs::read_dir);
        if let Ok(entries) = entries {
            for entry in entries.flatten() {
                let file_name = entry.file_name();
                let bytes = file_name.as_encoded_bytes();
                let meta = fs::symlink_metadata(entry.path());
                if v2 {
                    self.put(b"DNT2");
                    self.put_stat_v2(&meta);
                } else {
                    let Ok(m) = meta else { continue };
                    self.put(b"DENT");
                    self.put_u32(m.mode());
                    self.put_u32(m.size() as u32);
                    self.put_u32(m.mtime() as u32);
                }
                self.put_u32(bytes.len() as u32);
                self.put(bytes);
                if self.pending.len() >= SYNC_DATA_MAX {
                    self.flush()?;
                }
            }
        }
        self.put(b"DONE");
        // The rest of a dent message, zeroed: 72 bytes for DNT2, 16 for DENT.
        self.put(&vec![0u8; if v2 { 72 } else { 16 }]);
        self.flush()
    }

    /// After a failed `SEND`: report it, then swallow the rest of the upload, as adbd does.
    pub(super) fn send_failed(&mut self, message: &str) -> io::Result<()> {
        self.fail(message)?;
        loop {
            let mut id = [0u8; 4];
            self.input.read_exact(&mut id)?;
            let len = self.read_u32()? as usize;
            match &id {
                b"DATA" if len <= SYNC_DATA_MAX => {
                    self.read_bytes(len)?;
                }
                _ => break,
            }
        }
        Err(end_session())
    }

    pub(super) fn send(&mut self, spec: &str) -> io::Result<()> {
        let Some((name, mode)) = spec.rsplit_once(',') else {
            self.fail("missing , in ID_SEND_V1")?;
            return Err(end_session());
        };
        let Some(mode) = parse_mode(mode) else {
            self.fail("bad mode")?;
            return Err(end_session());
        };
        let path = match confine(&self.shared.sandbox, name, false) {
            Ok(p) => p,
            Err(e) => return self.send_failed(&format!("couldn't create file: {}", strerror(&e))),
        };
        if let Ok(m) = fs::symlink_metadata(&path) {
            if m.is_file() || m.file_type().is_symlink() {
                let _ = fs::remove_file(&path);
            }
        }
        if mode & 0o170000 == 0o120000 {
            return self.send_symlink(&path);
        }
        // As adbd: keep the permission bits and copy the user's to group and other.
        let mut mode = mode & 0o777;
        mode |= (mode >> 3) & 0o070;
        mode |= (mode >> 3) & 0o007;
        let create = |p: &Path| {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(p)
        };
        let mut file = create(&path);
        if matches!(&file, Err(e) if e.kind() == io::ErrorKind::NotFound) {
            // fixed_push_mkdir: create the missing parents (confine() checked where they go).
            if let Some(parent) = path.parent() {
                if let Err(e) = fs::create_dir_all(parent) {
                    return self.send_failed(&format!("secure_mkdirs() failed: {}", strerror(&e)));
                }
            }
            file = create(&path);
        }
        if matches!(&file, Err(e) if e.kind() == io::ErrorKind::AlreadyExists) {
            file = OpenOptions::new().write(true).truncate(true).open(&path);
        }
        let mut file = match file {
            Ok(f) => f,
            Err(e) => return self.send_failed(&format!("couldn't create file: {}", strerror(&e))),
        };
        let _ = file.set_permissions(fs::Permissions::from_mode(mode));
        let mtime = loop {
            let mut id = [0u8; 4];
            self.input.read_exact(&mut id)?;
            let len = self.read_u32()?;
            match &id {
                b"DATA" if len as usize <= SYNC_DATA_MAX => {
                    let data = self.read_bytes(len as usize)?;
                    if let Err(e) = file.write_all(&data) {
                        drop(file);
                        let _ = fs::remove_file(&path);
                        return self.send_failed(&format!("write failed: {}", strerror(&e)));
                    }
                }
                b"DONE" => break len,
                _ => {
                    self.fail("invalid data message")?;
                    return Err(end_session());
                }
            }
        };
        let _ = file.set_modified(UNIX_EPOCH + Duration::from_secs(u64::from(mtime)));
        drop(file);
        self.put(b"OKAY");
        self.put_u32(0);
        self.flush()
    }

    pub(super) fn send_symlink(&mut self, path: &Path) -> io::Result<()> {
        let mut id = [0u8; 4];
        self.input.read_exact(&mut id)?;
        let len = self.read_u32()? as usize;
        if &id != b"DATA" || len > SYNC_DATA_MAX {
            self.fail("invalid data message: expected ID_DATA")?;
            return Err(end_session());
        }
        let target = self.read_bytes(len)?;
        let end = target.iter().position(|&b| b == 0).unwrap_or(target.len());
        let target = String::from_utf8_lossy(&target[..end]).into_owned();
        if let Err(e) = std::os::unix::fs::symlink(&target, path) {
            self.fail(&format!("symlink failed: {}", strerror(&e)))?;
            return Err(end_session());
        }
        self.input.read_exact(&mut id)?;
        self.read_u32()?;
        if &id != b"DONE" {
            self.fail("invalid data message: expected ID_DONE")?;
            return Err(end_session());
        }
        self.put(b"OKAY");
        self.put_u32(0);
        self.flush()
    }

    pub(super) fn recv(&mut self, name: &str) -> io::Result<()> {
        let file = confine(&self.shared.sandbox, name, true).and_then(File::open);
        let mut file = match file {
            Ok(f) => f,
            Err(e) => {
                self.fail(&format!("open failed: {}", strerror(&e)))?;
                return Err(end_session());
            }
        };
        let mut buf = vec![0u8; SYNC_DATA_MAX];
        loop {
            let n = match file.read(&mut buf) {
                Ok(n) => n,
                Err(e) => {
                    self.fail(&format!("read failed: {}", strerror(&e)))?;
                    return Err(end_session());
                }
            };
            if n == 0 {
                break;
            }
            self.put(b"DATA");
            self.put_u32(n as u32);
            self.pending.extend_from_slice(&buf[..n]);
            self.flush()?;
        }
        self.put(b"DONE");
        self.put_u32(0);
        self.flush()
    }
}

// ---------------------------------------------------------------------------------------------
// A private real adb server
// ---------------------------------------------------------------------------------------------
