//! Host-key checking against OpenSSH's known_hosts: which key types to ask for, matching (hashed)
//! host names, recording a new key, fingerprints as ssh prints them.

use super::*;

/// Host key algorithms in OpenSSH's default order. libssh2's own order puts ECDSA first, so on a
/// device with several host keys it would be shown a different key than `ssh` recorded, and
/// known_hosts would look changed. Algorithms for key types known_hosts already holds for the
/// device go first (as OpenSSH does), the rest keep this order.
pub(super) const HOST_KEY_ALGORITHMS: [(&str, &str); 7] = [
    ("ssh-ed25519", "ssh-ed25519"),
    ("ecdsa-sha2-nistp256", "ecdsa-sha2-nistp256"),
    ("ecdsa-sha2-nistp384", "ecdsa-sha2-nistp384"),
    ("ecdsa-sha2-nistp521", "ecdsa-sha2-nistp521"),
    ("rsa-sha2-512", "ssh-rsa"),
    ("rsa-sha2-256", "ssh-rsa"),
    ("ssh-rsa", "ssh-rsa"),
];

/// What a known_hosts file says about one host.
#[derive(Debug, Default)]
pub(super) struct KnownFile {
    pub(super) path: PathBuf,
    /// Entries naming the host, in file order.
    pub(super) keys: Vec<KnownKey>,
    /// Base64 keys of `@revoked` lines: never accepted, for any host.
    pub(super) revoked: Vec<String>,
    /// Whether the file ends with a newline (or is empty), so an appended line starts on its own.
    pub(super) ends_with_newline: bool,
}

#[derive(Debug)]
pub(super) struct KnownKey {
    /// 1-based, for messages.
    pub(super) line: usize,
    pub(super) key_type: String,
    /// Base64 of the key blob, as in the file.
    pub(super) key: String,
}

/// Reads the known_hosts entries that name `name`. A missing file has none. Lines libssh2
/// cannot parse (certificate authorities, key types it does not know) are skipped rather than
/// failing the whole file, which `libssh2_knownhost_readfile` would do.
pub(super) fn read_known_hosts(
    session: &Session,
    path: &Path,
    name: &str,
) -> Result<KnownFile, String> {
    let mut known = KnownFile {
        path: path.to_path_buf(),
        ends_with_newline: true,
        ..KnownFile::default()
    };
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(known),
        Err(e) => {
            return Err(format!(
                "cannot read the known_hosts file {}: {e}",
                path.display()
            ))
        }
    };
    known.ends_with_newline = text.is_empty() || text.ends_with('\n');
    for (i, line) in text.lines().enumerate() {
        let mut fields = line.split_whitespace();
        let Some(first) = fields.next() else { continue };
        if first.starts_with('#') {
            continue;
        }
        if first.starts_with('@') {
            // `@revoked HOSTS TYPE KEY`; `@cert-authority` lines are about certificates, which
            // meltbench does not use.
            if first == "@revoked" {
                if let Some(key) = fields.nth(2) {
                    known.revoked.push(key.to_string());
                }
            }
            continue;
        }
        let (Some(key_type), Some(key)) = (fields.next(), fields.next()) else {
            continue;
        };
        if names_host(session, first, key_type, key, name) {
            known.keys.push(KnownKey {
                line: i + 1,
                key_type: key_type.to_string(),
                key: key.to_string(),
            });
        }
    }
    Ok(known)
}

/// Whether a known_hosts line's host field names `name`. libssh2 does the matching, since it
/// handles comma lists, bracketed ports and hashed (`|1|salt|hash`) names alike: checked against
/// a key the entry cannot hold, a line about `name` says "mismatch", any other "not found".
pub(super) fn names_host(
    session: &Session,
    hosts: &str,
    key_type: &str,
    key: &str,
    name: &str,
) -> bool {
    let Ok(mut one) = session.known_hosts() else {
        return false;
    };
    if one
        .read_str(
            &format!("{hosts} {key_type} {key}"),
            KnownHostFileKind::OpenSSH,
        )
        .is_err()
    {
        return false;
    }
    matches!(
        one.check(name, b"meltbench: not a key"),
        CheckResult::Mismatch | CheckResult::Match
    )
}

/// Host key algorithms to offer: those for key types known_hosts holds for the device first.
pub(super) fn host_key_preference(session: &Session, known: &KnownFile) -> Option<String> {
    let supported = session.supported_algs(MethodType::HostKey).ok()?;
    let usable = HOST_KEY_ALGORITHMS
        .iter()
        .filter(|(alg, _)| supported.contains(alg));
    let (first, rest): (Vec<_>, Vec<_>) =
        usable.partition(|(_, kt)| known.keys.iter().any(|k| k.key_type == *kt));
    let order: Vec<&str> = first.iter().chain(&rest).map(|(alg, _)| *alg).collect();
    (!order.is_empty()).then(|| order.join(","))
}

/// Appends `name TYPE KEY` to the known_hosts file (creating it and its directory), leaving
/// every other line as it was.
pub(super) fn record_host_key(
    known: &KnownFile,
    name: &str,
    key_type: &str,
    b64: &str,
) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = known.path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&known.path)?;
    let sep = if known.ends_with_newline { "" } else { "\n" };
    // One write, so concurrent connections appending to the same file do not interleave.
    f.write_all(format!("{sep}{name} {key_type} {b64}\n").as_bytes())
}

/// The key type a host key blob starts with (an SSH string: big-endian length, then the name).
pub(super) fn key_type_of(blob: &[u8]) -> Option<String> {
    let len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    let name = blob.get(4..4 + len)?;
    String::from_utf8(name.to_vec()).ok()
}

/// `ed25519`, `ecdsa`, `rsa`: the names `ssh-keyscan -t` and host key file names use.
pub(super) fn short_type(key_type: &str) -> &str {
    match key_type {
        "ssh-ed25519" => "ed25519",
        t if t.starts_with("ecdsa-") => "ecdsa",
        "ssh-rsa" => "rsa",
        "ssh-dss" => "dsa",
        other => other,
    }
}

/// `SHA256:` and the unpadded base64 of the key blob's SHA-256, as `ssh-keygen -lf` prints it.
pub(super) fn fingerprint(blob: &[u8]) -> String {
    let digest = Sha256::digest(blob);
    format!("SHA256:{}", base64(&digest).trim_end_matches('='))
}

/// Standard base64 with padding, as known_hosts files hold keys. No base64 crate is a direct
/// dependency, and this is all we need of one.
pub(super) fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
