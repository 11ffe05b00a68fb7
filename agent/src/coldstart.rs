//! Cold starts: a fresh engine process per run, the model's pages evicted from the page cache
//! first, timed from the agent's spawn stamp to the engine's own CLOCK_MONOTONIC stamps.
//!
//! Eviction is recorded honestly, because a "cold" start from a warm page cache measures
//! something else: `drop_caches` when root may write it; otherwise `posix_fadvise(DONTNEED)`,
//! which only drops clean pages nobody maps. Either way the file's residency is then checked
//! with `mincore`, and the event says how many pages were still cached.

use crate::fsroot::FsRoot;
use meltbench_protocol::engine::{EngineJob, LoadRecord, PassRecord};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::Path;

/// The engine job for one cold-start run: one pass producing one token, no warm-up, and no
/// context before the prompt (a cold start times loading and the first answer, not a fill).
pub fn cold_job(cell_job: &EngineJob) -> EngineJob {
    EngineJob {
        passes: 1,
        warmup: 0,
        n_gen: 1,
        depth: 0,
        ..cell_job.clone()
    }
}

/// `(load_ns, first_token_ns)` measured from the agent's stamp taken just before spawning.
pub fn timings(spawn_mono_ns: u64, load: &LoadRecord, pass: &PassRecord) -> (u64, u64) {
    let load_ns = load.end_mono_ns.saturating_sub(spawn_mono_ns);
    let first = (pass.start_mono_ns + pass.ttft_ns).saturating_sub(spawn_mono_ns);
    (load_ns, first)
}

pub struct Eviction {
    pub dropped: bool,
    pub note: String,
}

/// Evicts `model` from the page cache as well as this device allows.
pub fn evict(root: &FsRoot, model: &Path, can_drop_caches: bool) -> Eviction {
    let method = if can_drop_caches {
        match drop_caches(root) {
            Ok(()) => Ok("sync + drop_caches=1 (root)".to_string()),
            Err(e) => fadvise(model).map(|m| format!("{m}; drop_caches failed: {e}")),
        }
    } else {
        fadvise(model).map(|m| format!("{m}; not root, so drop_caches was not used"))
    };
    let method = match method {
        Ok(m) => m,
        Err(e) => {
            return Eviction {
                dropped: false,
                note: format!("could not evict the model from the page cache: {e}"),
            }
        }
    };
    match resident_pages(model) {
        Ok((0, total)) => Eviction {
            dropped: true,
            note: format!("{method}; mincore: 0 of {total} pages resident afterwards"),
        },
        Ok((resident, total)) => Eviction {
            dropped: false,
            note: format!(
                "{method}; mincore: {resident} of {total} pages still resident afterwards \
                 (mapped or dirty pages stay), so this start was partly warm"
            ),
        },
        Err(e) => Eviction {
            dropped: can_drop_caches && method.starts_with("sync"),
            note: format!("{method}; residency not verified (mincore: {e})"),
        },
    }
}

fn drop_caches(root: &FsRoot) -> io::Result<()> {
    // Dirty pages cannot be dropped; sync first so the drop is complete.
    unsafe { libc::sync() };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(root.path("/proc/sys/vm/drop_caches"))?;
    f.write_all(b"1")
}

fn fadvise(model: &Path) -> io::Result<String> {
    let f = File::open(model)?;
    // SAFETY: plain syscall on a file descriptor we own.
    let rc = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok("posix_fadvise(DONTNEED) on the model file (best effort)".to_string())
}

/// `(resident, total)` pages of a file in the page cache. Mapping the file does not fault any
/// page in; `mincore` only reports.
pub fn resident_pages(path: &Path) -> io::Result<(usize, usize)> {
    let f = File::open(path)?;
    let len = f.metadata()?.len() as usize;
    if len == 0 {
        return Ok((0, 0));
    }
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
    let pages = len.div_ceil(page);
    // SAFETY: a fresh read-only shared mapping of a file we hold open, unmapped below.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        )
    };
    if addr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let mut vec = vec![0u8; pages];
    let rc = unsafe { libc::mincore(addr, len, vec.as_mut_ptr()) };
    let err = io::Error::last_os_error();
    unsafe { libc::munmap(addr, len) };
    if rc != 0 {
        return Err(err);
    }
    Ok((vec.iter().filter(|&&b| b & 1 != 0).count(), pages))
}

#[cfg(test)]
mod tests {
    use super::*;
    use meltbench_protocol::engine::Prompt;

    #[test]
    fn cold_job_keeps_the_prompt_threads_and_chat() {
        let job = EngineJob {
            prompt: Prompt::Tokens(64),
            n_gen: 32,
            passes: 10,
            warmup: 2,
            threads: Some(4),
            ignore_eos: true,
            temperature: 0.0,
            seed: 3,
            kernels: None,
            chat: true,
            depth: 512,
        };
        let c = cold_job(&job);
        assert_eq!((c.passes, c.warmup, c.n_gen, c.depth), (1, 0, 1, 0));
        assert_eq!(c.prompt, Prompt::Tokens(64));
        assert_eq!(c.threads, Some(4));
        // A cold start of a chat cell measures the templated prompt too.
        assert!(c.chat);
    }

    #[test]
    fn fadvise_evicts_a_clean_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("model.bin");
        std::fs::write(&p, vec![7u8; 1 << 20]).unwrap();
        let f = File::open(&p).unwrap();
        f.sync_all().unwrap();
        let (before, total) = resident_pages(&p).unwrap();
        assert!(total >= 256 && before <= total);
        let ev = evict(&FsRoot::new(dir.path()), &p, false);
        // tmpfs cannot evict (its pages are the file), so only check the note is honest.
        let (after, _) = resident_pages(&p).unwrap();
        assert_eq!(ev.dropped, after == 0, "{}", ev.note);
        assert!(ev.note.contains("best effort"), "{}", ev.note);
    }
}
