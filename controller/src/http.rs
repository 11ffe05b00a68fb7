//! The one HTTP client the controller uses for downloads.
//!
//! It trusts the operating system's CA store rather than a bundled list: labs, CI runners and
//! corporate networks often reach the internet through a TLS-inspecting proxy whose CA exists
//! only there. Proxies come from the usual `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY` /
//! `NO_PROXY` variables.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ureq::tls::{RootCerts, TlsConfig, TlsProvider};
use ureq::Agent;

use crate::progress;
use crate::sha::HashingWriter;

/// What a finished download was: its checksum and length as they arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    pub sha256: String,
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// No route to the server at all; callers (and tests) treat this as "offline".
    #[error(
        "could not reach {url}: {reason}\n\
         Check the network connection. Behind a proxy, set HTTPS_PROXY; \
         for a PyPI mirror, set MELTBENCH_PYPI_INDEX to its simple-index URL."
    )]
    Unreachable { url: String, reason: String },

    #[error(
        "TLS handshake with {url} failed: {reason}\n\
         meltbench trusts the system CA store. If your network inspects TLS, install its CA \
         certificate there (e.g. update-ca-certificates), or point SSL_CERT_FILE at a bundle \
         that contains it."
    )]
    Tls { url: String, reason: String },

    #[error("{url} answered HTTP {status}\n{hint}")]
    Status {
        url: String,
        status: u16,
        hint: &'static str,
    },

    #[error("request to {url} failed: {reason}\nCheck the URL and try again.")]
    Request { url: String, reason: String },

    #[error(
        "the download from {url} stopped after {received} bytes: {reason}\n\
         Run the command again; nothing partial was kept."
    )]
    Interrupted {
        url: String,
        received: u64,
        reason: String,
    },

    #[error(
        "could not write the download to {}: {source}\n\
         Check free space and permissions in that directory (or set XDG_CACHE_HOME elsewhere).",
        path.display()
    )]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl HttpError {
    /// True when the failure means "no network", as opposed to a server or data problem.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, HttpError::Unreachable { .. })
    }

    fn from_ureq(url: &str, err: ureq::Error) -> Self {
        let url = url.to_owned();
        match err {
            ureq::Error::StatusCode(status) => HttpError::Status {
                url,
                status,
                hint: status_hint(status),
            },
            ureq::Error::HostNotFound
            | ureq::Error::ConnectionFailed
            | ureq::Error::Timeout(_)
            | ureq::Error::Io(_) => HttpError::Unreachable {
                url,
                reason: err.to_string(),
            },
            ureq::Error::Tls(_) | ureq::Error::Rustls(_) | ureq::Error::Pem(_) => HttpError::Tls {
                url,
                reason: err.to_string(),
            },
            other => HttpError::Request {
                url,
                reason: other.to_string(),
            },
        }
    }
}

fn status_hint(status: u16) -> &'static str {
    match status {
        404 | 410 => "The file is not there: check the URL (or the package name and version).",
        401 | 403 => {
            "The server refused access: meltbench sends no credentials, so use a public URL."
        }
        429 => "The server is rate limiting: wait a minute and try again.",
        500..=599 => "The server had a problem: try again later, or use a mirror.",
        _ => "Check the URL and try again.",
    }
}

pub struct Http {
    agent: Agent,
}

impl Default for Http {
    fn default() -> Self {
        Self::new()
    }
}

impl Http {
    pub fn new() -> Self {
        Self::with_proxy(true)
    }

    /// A client that ignores the proxy variables: for tests that talk to a server on loopback,
    /// which a CI runner's proxy could not reach.
    #[cfg(test)]
    pub(crate) fn direct() -> Self {
        Self::with_proxy(false)
    }

    fn with_proxy(from_env: bool) -> Self {
        let tls = TlsConfig::builder()
            .provider(TlsProvider::Rustls)
            .root_certs(RootCerts::PlatformVerifier)
            .build();
        let config = Agent::config_builder()
            .tls_config(tls)
            .user_agent(concat!("meltbench/", env!("CARGO_PKG_VERSION")))
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            // Only a stalled connection is an error; a slow one may take as long as it needs.
            .timeout_per_read(Some(Duration::from_secs(60)))
            .proxy(if from_env {
                ureq::Proxy::try_from_env()
            } else {
                None
            })
            .build();
        Self {
            agent: Agent::new_with_config(config),
        }
    }

    /// GET a small text document (an index page), sending `accept` as the Accept header.
    pub fn get_text(&self, url: &str, accept: &str) -> Result<String, HttpError> {
        let mut response = self
            .agent
            .get(url)
            .header("Accept", accept)
            .call()
            .map_err(|e| HttpError::from_ureq(url, e))?;
        response
            .body_mut()
            .read_to_string()
            .map_err(|e| HttpError::Interrupted {
                url: url.to_owned(),
                received: 0,
                reason: e.to_string(),
            })
    }

    /// Streams `url` into `out`, hashing it on the way and showing a progress bar labelled
    /// `label`. `expected_size` sizes the bar when the server sends no Content-Length.
    pub fn download(
        &self,
        url: &str,
        label: &str,
        expected_size: Option<u64>,
        out: &mut dyn Write,
        out_path: &Path,
    ) -> Result<Downloaded, HttpError> {
        let mut response = self
            .agent
            .get(url)
            .call()
            .map_err(|e| HttpError::from_ureq(url, e))?;
        let total = response.body().content_length().or(expected_size);
        let bar = progress::download_bar(total, label);
        let mut reader = response.body_mut().as_reader();
        let mut writer = HashingWriter::new(out);
        let mut buf = vec![0u8; 256 * 1024];
        let mut received = 0u64;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    bar.abandon();
                    return Err(HttpError::Interrupted {
                        url: url.to_owned(),
                        received,
                        reason: e.to_string(),
                    });
                }
            };
            writer
                .write_all(&buf[..n])
                .map_err(|source| HttpError::Write {
                    path: out_path.to_owned(),
                    source,
                })?;
            received += n as u64;
            bar.inc(n as u64);
        }
        bar.finish_and_clear();
        let (out, sha256, size) = writer.finish();
        out.flush().map_err(|source| HttpError::Write {
            path: out_path.to_owned(),
            source,
        })?;
        Ok(Downloaded { sha256, size })
    }
}
