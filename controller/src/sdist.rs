//! Reading one member out of a source distribution (a gzip-compressed tar) without unpacking
//! the rest.
//!
//! A tar has no index, so the member is found by streaming through the archive; nothing but the
//! member itself is written anywhere.

use std::fs::File;
use std::io::{self, BufReader, Write};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

#[derive(Debug, thiserror::Error)]
pub enum SdistError {
    #[error(
        "{} is not a readable .tar.gz: {reason}\n\
         The download passed its checksum, so the index itself serves a broken file; \
         report it to the package's maintainers.",
        path.display()
    )]
    NotATarGz { path: PathBuf, reason: String },

    #[error(
        "the source distribution {} has no member {member:?}\n\
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

/// Decompresses `member` of the .tar.gz at `path` into `out`; returns the member's size.
pub fn extract_member(path: &Path, member: &str, out: &mut dyn Write) -> Result<u64, SdistError> {
    let not_a_tar = |reason: String| SdistError::NotATarGz {
        path: path.to_owned(),
        reason,
    };
    let file = File::open(path).map_err(|e| not_a_tar(e.to_string()))?;
    let mut archive = tar::Archive::new(GzDecoder::new(BufReader::with_capacity(1 << 20, file)));
    let entries = archive.entries().map_err(|e| not_a_tar(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| not_a_tar(e.to_string()))?;
        let is_member = entry
            .path()
            .map_err(|e| not_a_tar(e.to_string()))?
            .to_str()
            .is_some_and(|p| p == member);
        if is_member && entry.header().entry_type().is_file() {
            return io::copy(&mut entry, out).map_err(|source| SdistError::Extract {
                path: path.to_owned(),
                member: member.to_owned(),
                source,
            });
        }
    }
    Err(SdistError::NoMember {
        path: path.to_owned(),
        member: member.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use flate2::Compression;

    fn sdist_with(dir: &Path, members: &[(&str, &[u8])]) -> PathBuf {
        let path = dir.join("t-0.1.tar.gz");
        let gz = GzEncoder::new(File::create(&path).unwrap(), Compression::fast());
        let mut tar = tar::Builder::new(gz);
        for (name, data) in members {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, name, *data).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap();
        path
    }

    #[test]
    fn extracts_a_member_after_others() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
        let sdist = sdist_with(
            dir.path(),
            &[
                ("t-0.1/PKG-INFO", b"Name: t"),
                ("t-0.1/vendor/models/a.gguf", b"GGUF other"),
                ("t-0.1/vendor/models/b.gguf", &data),
            ],
        );
        let mut out = Vec::new();
        let n = extract_member(&sdist, "t-0.1/vendor/models/b.gguf", &mut out).unwrap();
        assert_eq!(n, data.len() as u64);
        assert_eq!(out, data);
    }

    #[test]
    fn a_missing_member_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let sdist = sdist_with(dir.path(), &[("t-0.1/PKG-INFO", b"Name: t")]);
        let err = extract_member(&sdist, "t-0.1/m.gguf", &mut Vec::new()).unwrap_err();
        assert!(matches!(err, SdistError::NoMember { .. }), "{err}");
        assert!(err.to_string().contains("t-0.1/m.gguf"), "{err}");
    }

    #[test]
    fn garbage_is_not_a_tar_gz() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.tar.gz");
        std::fs::write(&path, b"not gzip at all").unwrap();
        let err = extract_member(&path, "m", &mut Vec::new()).unwrap_err();
        assert!(matches!(err, SdistError::NotATarGz { .. }), "{err}");
    }
}
