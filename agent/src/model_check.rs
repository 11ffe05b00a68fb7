//! The model a cell names must be the file the controller sent: a file damaged or replaced on
//! the device (a bad flash block, another tool's download, someone's edit) would be measured as
//! if it were the model in the report. The controller has just checked each file against its
//! SHA-256 (the push cache on the device, the model cache here), so the first cell that uses a
//! file only notes its size and modification time: hashing a multi-gigabyte model again would
//! add seconds to every run's start on a phone. Later cells compare the two, and when either
//! changed the file is hashed against the SHA-256 in the job.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Read;
use std::time::SystemTime;

#[derive(Default)]
pub struct ModelCheck {
    /// Size and modification time of each file as last found good; `None` after a mismatch,
    /// so the file is hashed again however it looks next time.
    known: HashMap<String, Option<(u64, Option<SystemTime>)>>,
}

impl ModelCheck {
    pub fn verify(&mut self, path: &str, sha256: &str) -> Result<(), String> {
        let md = std::fs::metadata(path).map_err(|e| format!("the model file {path}: {e}"))?;
        let stamp = Some((md.len(), md.modified().ok()));
        match self.known.get(path) {
            // First use: as the controller checked it.
            None => {
                self.known.insert(path.to_string(), stamp);
                return Ok(());
            }
            Some(known) if *known == stamp => return Ok(()),
            Some(_) => {}
        }
        let got = sha256_file(path).map_err(|e| format!("reading the model file {path}: {e}"))?;
        if !got.eq_ignore_ascii_case(sha256) {
            self.known.insert(path.to_string(), None);
            return Err(format!(
                "the model file {path} is not the one the controller sent (SHA-256 {got}, \
                 expected {sha256}): it was changed or damaged on the device; `meltbench run \
                 --resume RUN_DIR` sends it again"
            ));
        }
        self.known.insert(path.to_string(), stamp);
        Ok(())
    }
}

fn sha256_file(path: &str) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => h.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(h.finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_changed_after_its_first_check_is_hashed_again_and_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.gguf");
        std::fs::write(&p, b"abc").unwrap();
        let path = p.to_str().unwrap();
        // SHA-256 of "abc" (FIPS 180-2 example).
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let mut c = ModelCheck::default();
        c.verify(path, abc).unwrap();
        c.verify(path, abc).unwrap();
        std::fs::write(&p, b"abd!").unwrap();
        let e = c.verify(path, abc).unwrap_err();
        assert!(e.contains("changed or damaged"), "{e}");
        assert!(c.verify(path, &"0".repeat(64)).is_err());
    }
}
