//! Opening a model file: the GGUF header, the weights and the tokenizer, timed phase by phase.

use crate::gguf::{Gguf, GgufError};
use crate::model::{Model, ModelError};
use crate::tokenizer::{Tokenizer, TokenizerError};
use std::path::Path;
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("{path}: {source}")]
    Model { path: String, source: ModelError },
    #[error("{path}: {source}")]
    Tokenizer {
        path: String,
        source: TokenizerError,
    },
}

pub struct Loaded {
    pub gguf: Gguf,
    pub model: Model,
    pub tokenizer: Tokenizer,
    pub open_ns: u64,
    pub weights_ns: u64,
    pub tokenizer_ns: u64,
}

pub fn load(path: &Path) -> Result<Loaded, LoadError> {
    let t0 = Instant::now();
    let mut gguf = Gguf::open(path)?;
    let t1 = Instant::now();
    let shown = path.display().to_string();
    let model = Model::load(&gguf).map_err(|source| match source {
        ModelError::Gguf(e) => LoadError::Gguf(e),
        source => LoadError::Model {
            path: shown.clone(),
            source,
        },
    })?;
    let t2 = Instant::now();
    let tokenizer = Tokenizer::from_gguf(&gguf).map_err(|source| LoadError::Tokenizer {
        path: shown,
        source,
    })?;
    // The tokenizer holds its own copy of the vocabulary; the parsed arrays (a value per token,
    // 25 MB for Gemma 3's 262,144 tokens) would otherwise stay for the whole run.
    gguf.forget(VOCABULARY_ARRAYS);
    release_freed_heap();
    let t3 = Instant::now();
    let ns = |a: Instant, b: Instant| (b - a).as_nanos() as u64;
    Ok(Loaded {
        open_ns: ns(t0, t1),
        weights_ns: ns(t1, t2),
        tokenizer_ns: ns(t2, t3),
        gguf,
        model,
        tokenizer,
    })
}

/// The GGUF header and the tokenizer only, for commands that never touch the weights: works
/// on a vocabulary-only file (no tensors), such as llama.cpp's `ggml-vocab-*.gguf`.
pub fn load_tokenizer(path: &Path) -> Result<Tokenizer, LoadError> {
    let gguf = Gguf::open(path)?;
    Tokenizer::from_gguf(&gguf).map_err(|source| LoadError::Tokenizer {
        path: path.display().to_string(),
        source,
    })
}

/// The metadata arrays [`Tokenizer::from_gguf`] copies, dropped from [`Loaded::gguf`] once read.
const VOCABULARY_ARRAYS: &[&str] = &[
    "tokenizer.ggml.tokens",
    "tokenizer.ggml.scores",
    "tokenizer.ggml.token_type",
    "tokenizer.ggml.merges",
];

/// Hands memory freed on the heap back to the OS where the allocator keeps it (glibc keeps
/// small freed blocks in its arenas, so the vocabulary's values would still count in the
/// resident set that the benchmarks report); musl's allocator returns it by itself.
fn release_freed_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory at the top of glibc's heaps.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// CLOCK_MONOTONIC in nanoseconds: the clock the agent stamps telemetry with.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own; CLOCK_MONOTONIC always exists on Linux/Android.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Peak resident set size of this process (VmHWM), where /proc reports it.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
