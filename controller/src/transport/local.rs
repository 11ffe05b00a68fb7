//! The local device: commands run as child processes of the controller, files are copied.
//! No shell is involved, so arguments reach the program exactly as given.

use super::{tail, FileChannel, Output, Transport, TransportError};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub struct LocalTransport;

fn spawn_error(argv: &[&str], e: std::io::Error) -> TransportError {
    TransportError::Other(format!("cannot run {}: {e}", argv.first().unwrap_or(&"")))
}

fn command(argv: &[&str]) -> Result<Command, TransportError> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| TransportError::Other("empty command".into()))?;
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null());
    Ok(cmd)
}

/// Reads a pipe to its end on its own thread, so a full stderr pipe never blocks the child.
fn drain(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

impl Transport for LocalTransport {
    fn describe(&self) -> String {
        "local".into()
    }

    fn exec(&mut self, argv: &[&str], timeout: Duration) -> Result<Output, TransportError> {
        let mut child = command(argv)?
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| spawn_error(argv, e))?;
        let out = drain(child.stdout.take().expect("piped"));
        let err = drain(child.stderr.take().expect("piped"));
        let deadline = Instant::now() + timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(TransportError::Timeout(format!(
                        "local: `{}` did not finish within {} s",
                        argv.join(" "),
                        timeout.as_secs()
                    )));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => return Err(TransportError::Other(e.to_string())),
            }
        };
        Ok(Output {
            status: status.code(),
            stdout: out.join().unwrap_or_default(),
            stderr: err.join().unwrap_or_default(),
        })
    }

    fn stream(
        &mut self,
        argv: &[&str],
        on_line: &mut dyn FnMut(&str),
    ) -> Result<(Option<i32>, String), TransportError> {
        let mut child = command(argv)?
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| spawn_error(argv, e))?;
        let err = drain(child.stderr.take().expect("piped"));
        let stdout = child.stdout.take().expect("piped");
        for line in BufReader::new(stdout).lines() {
            match line {
                Ok(l) => on_line(&l),
                Err(e) => {
                    let _ = child.kill();
                    return Err(TransportError::Other(format!("reading the output: {e}")));
                }
            }
        }
        let status = child
            .wait()
            .map_err(|e| TransportError::Other(e.to_string()))?;
        let err = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
        Ok((status.code(), tail(&err, 20)))
    }

    fn push(&mut self, local: &Path, remote: &str, mode: u32) -> Result<u64, TransportError> {
        use std::os::unix::fs::PermissionsExt;
        let bytes = std::fs::copy(local, remote).map_err(|e| {
            TransportError::Other(format!("copying {} to {remote}: {e}", local.display()))
        })?;
        std::fs::set_permissions(remote, std::fs::Permissions::from_mode(mode))
            .map_err(|e| TransportError::Other(format!("chmod {remote}: {e}")))?;
        Ok(bytes)
    }

    fn pull(&mut self, remote: &str, local: &Path) -> Result<u64, TransportError> {
        std::fs::copy(remote, local).map_err(|e| {
            TransportError::Other(format!("copying {remote} to {}: {e}", local.display()))
        })
    }

    fn file_channel(&self) -> Option<FileChannel> {
        Some(FileChannel::LocalCopy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_reports_status_and_output_and_times_out() {
        let mut t = LocalTransport;
        let o = t
            .exec(
                &["sh", "-c", "echo out; echo err >&2; exit 3"],
                Duration::from_secs(10),
            )
            .unwrap();
        assert_eq!(o.status, Some(3));
        assert_eq!(o.stdout_text(), "out\n");
        assert_eq!(o.stderr_text(), "err\n");
        let start = Instant::now();
        let e = t
            .exec(&["sleep", "10"], Duration::from_millis(200))
            .unwrap_err();
        assert!(matches!(e, TransportError::Timeout(_)), "{e}");
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn stream_hands_over_lines_and_push_pull_hash_round_trip() {
        let mut t = LocalTransport;
        let mut lines = Vec::new();
        let (status, err) = t
            .stream(&["sh", "-c", "echo a; echo b; echo oops >&2"], &mut |l| {
                lines.push(l.to_string())
            })
            .unwrap();
        assert_eq!(
            (status, err.as_str(), lines.as_slice()),
            (Some(0), "oops", &["a".to_string(), "b".into()][..])
        );

        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::write(&src, b"hello").unwrap();
        let dst = dir.path().join("dst");
        let dst = dst.to_str().unwrap();
        assert_eq!(t.push(&src, dst, 0o755).unwrap(), 5);
        let missing = dir.path().join("missing");
        let sums = t.sha256(&[dst, missing.to_str().unwrap()]).unwrap();
        assert_eq!(
            sums,
            vec![
                Some(
                    "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824".to_string()
                ),
                None
            ]
        );
        let back = dir.path().join("back");
        assert_eq!(t.pull(dst, &back).unwrap(), 5);
        assert_eq!(std::fs::read(back).unwrap(), b"hello");
    }
}
