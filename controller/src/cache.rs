//! The controller's model cache.
//!
//! Layout, mirroring the on-device store so a model keeps one identity everywhere:
//!
//! ```text
//! $XDG_CACHE_HOME/meltbench/models/        ($HOME/.cache/meltbench/models without XDG_CACHE_HOME)
//!     <sha256>.gguf                         content-addressed model files, never edited in place
//!     names/<name>.json                     friendly name -> sha256 (+ where it came from)
//!     downloads/<file>                      verified archives kept because several models come
//!                                           out of one (llama.cpp's sdist holds every vocab file)
//!     .partial-*                            downloads in flight; renamed into place when verified
//! ```
//!
//! One small file per name, rather than one shared index, so concurrent pulls never race on a
//! read-modify-write.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tempfile::NamedTempFile;

use crate::sha;

const PARTIAL_PREFIX: &str = ".partial-";
/// Partial files older than this belong to a pull that was killed, not one still running.
const STALE_PARTIAL: Duration = Duration::from_secs(24 * 60 * 60);

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error(
        "cannot find a cache directory: neither XDG_CACHE_HOME nor HOME is set\n\
         Set XDG_CACHE_HOME to a writable directory, e.g. `export XDG_CACHE_HOME=$PWD/.cache`."
    )]
    NoHome,

    #[error(
        "could not {action} {}: {source}\n\
         Check permissions and free space there, or point XDG_CACHE_HOME at another directory.",
        path.display()
    )]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },

    #[error(
        "{} is not a valid name record: {reason}\n\
         Delete that file and pull the model again.",
        path.display()
    )]
    BadRecord { path: PathBuf, reason: String },
}

impl CacheError {
    fn io(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CacheError {
        let path = path.to_owned();
        move |source| CacheError::Io {
            action,
            path,
            source,
        }
    }
}

/// A friendly name for a cached model and where the model came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameRecord {
    pub name: String,
    pub sha256: String,
    pub source: String,
}

/// The state of a model file in the cache, after checking its bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Cached {
    Verified {
        path: PathBuf,
        size: u64,
    },
    Missing,
    /// The file did not match its name; it has been deleted.
    Corrupt {
        actual: String,
    },
}

/// One model file in the cache, for listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub names: Vec<String>,
    pub sha256: String,
    pub path: PathBuf,
    pub size: u64,
}

#[derive(Debug, Clone)]
pub struct ModelCache {
    dir: PathBuf,
}

impl ModelCache {
    /// The cache under `$XDG_CACHE_HOME` (only if absolute, as the XDG spec requires), else
    /// under `$HOME/.cache`.
    pub fn from_env() -> Result<Self, CacheError> {
        let xdg = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute());
        let base = match xdg {
            Some(p) => p,
            None => match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
                Some(home) => PathBuf::from(home).join(".cache"),
                None => return Err(CacheError::NoHome),
            },
        };
        Ok(Self::at(base.join("meltbench").join("models")))
    }

    pub fn at(dir: PathBuf) -> Self {
        Self { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn blob_path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}.gguf"))
    }

    fn names_dir(&self) -> PathBuf {
        self.dir.join("names")
    }

    /// Where a kept download (an archive several models are extracted from) lives.
    pub fn download_path(&self, file_name: &str) -> PathBuf {
        self.dir.join("downloads").join(file_name)
    }

    /// Re-hashes the cached file for `sha256`; a file that fails is deleted so it is fetched
    /// again rather than benchmarked.
    pub fn check(&self, sha256: &str) -> Result<Cached, CacheError> {
        self.check_path(&self.blob_path(sha256), sha256)
    }

    /// Re-hashes the kept download `file_name` against `sha256`, deleting it if it fails.
    pub fn check_download(&self, file_name: &str, sha256: &str) -> Result<Cached, CacheError> {
        self.check_path(&self.download_path(file_name), sha256)
    }

    fn check_path(&self, path: &Path, sha256: &str) -> Result<Cached, CacheError> {
        let path = path.to_owned();
        if !path.exists() {
            return Ok(Cached::Missing);
        }
        let (actual, size) = sha::hash_file(&path).map_err(CacheError::io("read", &path))?;
        if actual == sha256 {
            return Ok(Cached::Verified { path, size });
        }
        fs::remove_file(&path).map_err(CacheError::io("delete the corrupt file", &path))?;
        Ok(Cached::Corrupt { actual })
    }

    /// A temporary file inside the cache (same filesystem, so [`install`](Self::install) is an
    /// atomic rename). It deletes itself if dropped before being installed.
    pub fn partial_file(&self) -> Result<NamedTempFile, CacheError> {
        fs::create_dir_all(&self.dir).map_err(CacheError::io("create", &self.dir))?;
        self.remove_stale_partials();
        partial_builder()
            .tempfile_in(&self.dir)
            .map_err(CacheError::io("create a file in", &self.dir))
    }

    /// Moves a verified partial file to its content address and returns that path.
    pub fn install(&self, partial: NamedTempFile, sha256: &str) -> Result<PathBuf, CacheError> {
        self.persist(partial, self.blob_path(sha256))
    }

    /// Keeps a verified download as `downloads/<file_name>` and returns that path.
    pub fn install_download(
        &self,
        partial: NamedTempFile,
        file_name: &str,
    ) -> Result<PathBuf, CacheError> {
        let path = self.download_path(file_name);
        let dir = path.parent().expect("a download path has a directory");
        fs::create_dir_all(dir).map_err(CacheError::io("create", dir))?;
        self.persist(partial, path)
    }

    fn persist(&self, partial: NamedTempFile, path: PathBuf) -> Result<PathBuf, CacheError> {
        partial
            .as_file()
            .sync_all()
            .map_err(CacheError::io("flush", partial.path()))?;
        partial
            .persist(&path)
            .map_err(|e| CacheError::io("move a download to", &path)(e.error))?;
        Ok(path)
    }

    pub fn record_name(&self, record: &NameRecord) -> Result<(), CacheError> {
        let dir = self.names_dir();
        fs::create_dir_all(&dir).map_err(CacheError::io("create", &dir))?;
        let path = dir.join(format!("{}.json", record.name));
        let mut tmp = partial_builder()
            .tempfile_in(&dir)
            .map_err(CacheError::io("create a file in", &dir))?;
        let json = serde_json::to_string_pretty(record).expect("a record always serializes");
        writeln!(tmp, "{json}").map_err(CacheError::io("write", tmp.path()))?;
        tmp.persist(&path)
            .map_err(|e| CacheError::io("write", &path)(e.error))?;
        Ok(())
    }

    pub fn lookup_name(&self, name: &str) -> Result<Option<NameRecord>, CacheError> {
        if !is_valid_name(name) {
            return Ok(None);
        }
        let path = self.names_dir().join(format!("{name}.json"));
        match fs::read_to_string(&path) {
            Ok(text) => parse_record(&path, &text).map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CacheError::io("read", &path)(e)),
        }
    }

    /// Every model file in the cache with the names that point at it, sorted by first name.
    pub fn entries(&self) -> Result<Vec<Entry>, CacheError> {
        let mut records = Vec::new();
        match fs::read_dir(self.names_dir()) {
            Ok(dir) => {
                for item in dir {
                    let path = item
                        .map_err(CacheError::io("list", &self.names_dir()))?
                        .path();
                    if path.extension().is_some_and(|e| e == "json") {
                        let text =
                            fs::read_to_string(&path).map_err(CacheError::io("read", &path))?;
                        records.push(parse_record(&path, &text)?);
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(CacheError::io("list", &self.names_dir())(e)),
        }

        let mut entries = Vec::new();
        let dir = match fs::read_dir(&self.dir) {
            Ok(dir) => dir,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(entries),
            Err(e) => return Err(CacheError::io("list", &self.dir)(e)),
        };
        for item in dir {
            let item = item.map_err(CacheError::io("list", &self.dir))?;
            let path = item.path();
            let Some(sha256) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".gguf"))
                .and_then(sha::normalize)
            else {
                continue;
            };
            let size = item
                .metadata()
                .map_err(CacheError::io("inspect", &path))?
                .len();
            let mut names: Vec<String> = records
                .iter()
                .filter(|r| r.sha256 == sha256)
                .map(|r| r.name.clone())
                .collect();
            names.sort();
            entries.push(Entry {
                names,
                sha256,
                path,
                size,
            });
        }
        entries.sort_by(|a, b| (&a.names, &a.sha256).cmp(&(&b.names, &b.sha256)));
        Ok(entries)
    }

    fn remove_stale_partials(&self) {
        let Ok(dir) = fs::read_dir(&self.dir) else {
            return;
        };
        let now = SystemTime::now();
        for item in dir.flatten() {
            let is_partial = item
                .file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(PARTIAL_PREFIX));
            let age = item
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok());
            if is_partial && age.is_some_and(|a| a > STALE_PARTIAL) {
                // Best effort: a leftover we cannot delete only costs disk space.
                let _ = fs::remove_file(item.path());
            }
        }
    }
}

fn partial_builder() -> tempfile::Builder<'static, 'static> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(PARTIAL_PREFIX);
    // Temp files are private by default; cached models are ordinary readable files, like
    // anything else in ~/.cache, so other tools (llama.cpp for comparisons) can open them.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(fs::Permissions::from_mode(0o644));
    }
    builder
}

fn parse_record(path: &Path, text: &str) -> Result<NameRecord, CacheError> {
    serde_json::from_str(text).map_err(|e| CacheError::BadRecord {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// Names become file names, so they are kept to a portable, unsurprising alphabet.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> (tempfile::TempDir, ModelCache) {
        let dir = tempfile::tempdir().unwrap();
        let cache = ModelCache::at(dir.path().join("models"));
        (dir, cache)
    }

    fn put(cache: &ModelCache, data: &[u8]) -> String {
        let mut partial = cache.partial_file().unwrap();
        partial.write_all(data).unwrap();
        let (sha, _) = sha::hash_file(partial.path()).unwrap();
        cache.install(partial, &sha).unwrap();
        sha
    }

    #[test]
    fn installs_and_verifies_by_content() {
        let (_d, cache) = cache();
        let sha = put(&cache, b"GGUF model bytes");
        assert_eq!(
            cache.check(&sha).unwrap(),
            Cached::Verified {
                path: cache.blob_path(&sha),
                size: 16
            }
        );
        let leftovers: Vec<_> = fs::read_dir(cache.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().starts_with(PARTIAL_PREFIX))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn a_corrupt_file_is_deleted() {
        let (_d, cache) = cache();
        let sha = put(&cache, b"GGUF original");
        fs::write(cache.blob_path(&sha), b"GGUF tampered").unwrap();
        assert!(matches!(cache.check(&sha).unwrap(), Cached::Corrupt { .. }));
        assert!(!cache.blob_path(&sha).exists());
        assert_eq!(cache.check(&sha).unwrap(), Cached::Missing);
    }

    #[test]
    fn names_point_at_entries() {
        let (_d, cache) = cache();
        let a = put(&cache, b"GGUF a");
        let b = put(&cache, b"GGUF bb");
        for (name, sha) in [("zeta", &a), ("alpha", &a), ("beta", &b)] {
            cache
                .record_name(&NameRecord {
                    name: name.into(),
                    sha256: sha.clone(),
                    source: "test".into(),
                })
                .unwrap();
        }
        assert_eq!(
            cache.lookup_name("beta").unwrap().unwrap().sha256,
            b.clone()
        );
        assert_eq!(cache.lookup_name("gamma").unwrap(), None);
        assert_eq!(cache.lookup_name("../etc/passwd").unwrap(), None);
        let entries = cache.entries().unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].names, ["alpha", "zeta"]);
        assert_eq!(entries[0].size, 6);
        assert_eq!(entries[1].names, ["beta"]);
    }

    #[test]
    fn an_empty_cache_lists_nothing() {
        let (_d, cache) = cache();
        assert!(cache.entries().unwrap().is_empty());
    }

    #[test]
    fn names_are_file_safe() {
        assert!(is_valid_name("SmolLM2-135M-Instruct.Q4_1"));
        for bad in ["", ".hidden", "a/b", "a b", "ä"] {
            assert!(!is_valid_name(bad), "{bad:?}");
        }
    }
}
