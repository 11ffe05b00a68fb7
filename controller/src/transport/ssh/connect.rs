//! Reaching the host: the user and key paths as OpenSSH would choose them, and a TCP connection
//! that tries every address before the deadline.

use super::*;

/// The user `ssh` would log in as: the local user name.
pub(super) fn default_user() -> String {
    for var in ["USER", "LOGNAME"] {
        if let Ok(name) = std::env::var(var) {
            if !name.is_empty() {
                return name;
            }
        }
    }
    // Containers and services often run without USER; ask the system.
    std::process::Command::new("id")
        .arg("-un")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "root".into())
}

/// `~` and `~/...` relative to `$HOME`; other paths unchanged.
pub(super) fn expand_tilde(path: &str) -> Result<PathBuf, String> {
    let rest = match path.strip_prefix('~') {
        None => return Ok(PathBuf::from(path)),
        Some(rest) if rest.is_empty() || rest.starts_with('/') => rest.trim_start_matches('/'),
        // `~user/...` is a shell feature we do not imitate.
        Some(_) => return Ok(PathBuf::from(path)),
    };
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("cannot expand {path}: HOME is not set"))?;
    Ok(PathBuf::from(home).join(rest))
}

/// Resolves `host` and opens a TCP connection to the first address that answers, all before
/// `deadline` (name lookup included: a stuck resolver must not hang a run).
pub(super) fn tcp_connect(host: &str, port: u16, deadline: Instant) -> Result<TcpStream, String> {
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => {
            let (tx, rx) = std::sync::mpsc::channel();
            let name = host.to_string();
            // The lookup cannot be cancelled; a stuck one is left to finish on its own.
            std::thread::spawn(move || {
                let _ = tx.send((name.as_str(), port).to_socket_addrs().map(Vec::from_iter));
            });
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(Ok(addrs)) if !addrs.is_empty() => addrs,
                Ok(Ok(_)) => return Err(format!("{host} resolves to no address; check `host:`")),
                Ok(Err(e)) => {
                    return Err(format!(
                        "cannot resolve {host} ({e}); check `host:` and this machine's DNS"
                    ))
                }
                Err(_) => {
                    return Err(format!(
                        "looking up {host} did not finish in time; check this machine's DNS, or \
                         use the device's IP address"
                    ))
                }
            }
        }
    };
    let mut problems = Vec::new();
    for addr in &addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            problems.push(format!("{addr}: out of time"));
            break;
        }
        match TcpStream::connect_timeout(addr, left) {
            Ok(s) => return Ok(s),
            Err(e) => problems.push(match e.kind() {
                ErrorKind::ConnectionRefused => format!(
                    "{addr} refused the connection: nothing listens on port {port}; check that \
                     sshd runs on the device and that `port:` is right"
                ),
                ErrorKind::TimedOut | ErrorKind::WouldBlock => format!(
                    "no answer from {addr}: check that the device is on and reachable from this \
                     machine (same network or VPN), and that no firewall drops port {port}"
                ),
                _ => format!("{addr}: {e}; check `host:` and this machine's network"),
            }),
        }
    }
    Err(format!("cannot connect: {}", problems.join("; ")))
}
