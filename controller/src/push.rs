//! The push cache: binaries and models live on the device under their SHA-256
//! (`<workdir>/blobs/<sha256>`), checked there before every run. What is already present and
//! intact is not sent again, so an unchanged second run transfers 0 bytes; a file damaged on the
//! device (a bit flip, an interrupted copy, someone's edit) fails the check and is sent again.

pub use crate::store::Transfer as PushReport;
use crate::transport::{Transport, TransportError};
use std::path::PathBuf;
use std::time::Duration;

/// A local file to have on the device.
#[derive(Clone, Debug)]
pub struct Artifact {
    pub local: PathBuf,
    pub sha256: String,
    pub bytes: u64,
    /// Unix permissions on the device (0o755 for programs, 0o644 for models).
    pub mode: u32,
}

/// The device path of an artifact in `blobs`.
pub fn blob_path(blobs: &str, sha256: &str) -> String {
    format!("{}/{sha256}", blobs.trim_end_matches('/'))
}

/// Makes every artifact present and verified under `blobs` on the device; returns their device
/// paths (in order) and what it took.
pub fn ensure(
    t: &mut dyn Transport,
    blobs: &str,
    artifacts: &[Artifact],
) -> Result<(Vec<String>, PushReport), TransportError> {
    let mkdir = t.exec(&["mkdir", "-p", blobs], Duration::from_secs(30))?;
    if !mkdir.success() {
        return Err(TransportError::Other(format!(
            "{}: cannot create {blobs}: {}; set `workdir:` for this device in devices.yaml to a writable directory",
            t.describe(),
            mkdir.stderr_text().trim()
        )));
    }
    let paths: Vec<String> = artifacts
        .iter()
        .map(|a| blob_path(blobs, &a.sha256))
        .collect();
    let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
    let present = t.sha256(&refs)?;
    let mut report = PushReport::default();
    for ((a, path), have) in artifacts.iter().zip(&paths).zip(present) {
        match have {
            Some(sum) if sum == a.sha256 => {
                report.reused += 1;
                continue;
            }
            Some(_) => report.repaired += 1,
            None => report.sent += 1,
        }
        // Into a temporary name first: an interrupted push never leaves a file under the name
        // that claims its content.
        let part = format!("{path}.part");
        report.bytes += t.push(&a.local, &part, a.mode)?;
        let mv = t.exec(&["mv", "-f", &part, path], Duration::from_secs(60))?;
        if !mv.success() {
            return Err(TransportError::Other(format!(
                "{}: cannot rename {part}: {}",
                t.describe(),
                mv.stderr_text().trim()
            )));
        }
        let got = t.sha256(&[path.as_str()])?.pop().flatten();
        if got.as_deref() != Some(a.sha256.as_str()) {
            return Err(TransportError::Other(format!(
                "{}: {} arrived damaged (SHA-256 {} on the device, {} sent); check the device's storage and connection",
                t.describe(),
                a.local.display(),
                got.as_deref().unwrap_or("missing"),
                a.sha256
            )));
        }
    }
    if report.bytes > 0 {
        report.via = t.file_channel();
    }
    Ok((paths, report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::local::LocalTransport;
    use crate::transport::FileChannel;

    fn artifact(dir: &std::path::Path, name: &str, body: &[u8]) -> Artifact {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        let (sha256, bytes) = crate::sha::hash_file(&p).unwrap();
        Artifact {
            local: p,
            sha256,
            bytes,
            mode: 0o755,
        }
    }

    #[test]
    fn second_push_sends_nothing_and_damage_is_repaired() {
        let dir = tempfile::tempdir().unwrap();
        let a = artifact(dir.path(), "agent", b"agent bytes");
        let m = artifact(dir.path(), "model", &[7u8; 10_000]);
        let blobs = dir.path().join("device/blobs");
        let blobs = blobs.to_str().unwrap();
        let mut t = LocalTransport;
        let (paths, first) = ensure(&mut t, blobs, &[a.clone(), m.clone()]).unwrap();
        assert_eq!((first.bytes, first.sent), (10_011, 2));
        let (_, second) = ensure(&mut t, blobs, &[a.clone(), m.clone()]).unwrap();
        assert_eq!(
            second,
            PushReport {
                bytes: 0,
                sent: 0,
                repaired: 0,
                reused: 2,
                via: None
            }
        );

        let mut damaged = std::fs::read(&paths[1]).unwrap();
        damaged[5000] ^= 1;
        std::fs::write(&paths[1], damaged).unwrap();
        let (_, third) = ensure(&mut t, blobs, &[a, m.clone()]).unwrap();
        assert_eq!(
            third,
            PushReport {
                bytes: 10_000,
                sent: 0,
                repaired: 1,
                reused: 1,
                via: Some(FileChannel::LocalCopy)
            }
        );
        assert_eq!(
            std::fs::read(&paths[1]).unwrap(),
            std::fs::read(&m.local).unwrap()
        );
    }
}
