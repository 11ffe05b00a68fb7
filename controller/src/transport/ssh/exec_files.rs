//! Files over exec channels, for SSH servers that refuse the SFTP subsystem (dropbear on
//! Buildroot and Yocto boards, an `sshd_config` without `Subsystem sftp`). The file's bytes are
//! the standard input or output of `cat`; the remote path is an argument of a fixed script,
//! quoted by [`quote::command_line`] like every other command, so it never becomes shell
//! syntax. The push cache checks each file's SHA-256 on the device afterwards, as over SFTP.

use super::*;

/// Writes standard input to `$1` and gives it mode `$2` (octal), as SFTP's open and setstat do.
const WRITE_STDIN: &str = "cat > \"$1\" && chmod \"$2\" \"$1\"";

impl SshTransport {
    pub(super) fn push_exec(
        &mut self,
        src: &mut fs::File,
        local: &Path,
        remote: &str,
        mode: u32,
    ) -> Result<u64, TransportError> {
        let mode = format!("{:o}", mode & 0o7777);
        let line = quote::command_line(&["sh", "-c", WRITE_STDIN, "sh", remote, &mode]);
        let mut channel = self.open_exec(&line, STALL)?;
        let mut buf = vec![0u8; CHUNK];
        let mut sent = 0u64;
        // A command that fails at once (no such directory) closes its input; what it says on
        // stderr explains that better than the write error, so the write error waits.
        let mut write_error = None;
        loop {
            let n = match read_local(src, &mut buf, local) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    self.abandon(channel, None);
                    return Err(e);
                }
            };
            if let Err(e) = channel.write_all(&buf[..n]) {
                write_error = Some(e);
                break;
            }
            sent += n as u64;
        }
        let _ = channel.send_eof();
        let (status, stderr) =
            self.wait_exec(channel, Some(Instant::now() + STALL), &mut |_| {})?;
        if status != Some(0) {
            return Err(TransportError::Other(format!(
                "{}: cannot write {remote}: {}",
                self.describe(),
                failure_text(status, &stderr)
            )));
        }
        match write_error {
            Some(e) => Err(self.io_err(&format!("writing {remote}"), e)),
            None => Ok(sent),
        }
    }

    pub(super) fn pull_exec(&mut self, remote: &str, local: &Path) -> Result<u64, TransportError> {
        let channel = self.start(&["cat", "--", remote], false, STALL)?;
        // Created on the first byte (or at a successful end), so a refused pull leaves nothing.
        let mut out: Option<fs::File> = None;
        let mut local_error: Option<io::Error> = None;
        let mut received = 0u64;
        let (status, stderr) = self.wait_exec(channel, None, &mut |bytes| {
            if local_error.is_some() {
                return;
            }
            let written = match &mut out {
                Some(f) => f.write_all(bytes),
                None => fs::File::create(local).and_then(|mut f| {
                    let w = f.write_all(bytes);
                    out = Some(f);
                    w
                }),
            };
            match written {
                Ok(()) => received += bytes.len() as u64,
                Err(e) => local_error = Some(e),
            }
        })?;
        if status != Some(0) {
            if out.is_some() {
                let _ = fs::remove_file(local);
            }
            return Err(TransportError::Other(format!(
                "{}: cannot read {remote}: {}",
                self.describe(),
                failure_text(status, &stderr)
            )));
        }
        let finished = match (local_error, out) {
            (Some(e), _) => Err(e),
            (None, Some(mut f)) => f.flush(),
            (None, None) => fs::File::create(local).map(drop),
        };
        finished.map_err(|e| TransportError::Other(format!("writing {}: {e}", local.display())))?;
        Ok(received)
    }

    /// Drains a started command (stdout to `on_stdout`) and returns its exit status and stderr.
    fn wait_exec(
        &mut self,
        mut channel: Channel,
        deadline: Option<Instant>,
        on_stdout: &mut dyn FnMut(&[u8]),
    ) -> Result<(Option<i32>, String), TransportError> {
        let mut stderr = Vec::new();
        let end = self.pump(&mut channel, deadline, on_stdout, &mut |b| {
            if stderr.len() < STDERR_KEEP {
                stderr.extend_from_slice(b);
            }
        });
        match end {
            Ok(PumpEnd::Eof) => {
                let status = self.finish(channel, STALL);
                Ok((status, String::from_utf8_lossy(&stderr).into_owned()))
            }
            Ok(PumpEnd::Deadline) => {
                self.abandon(channel, None);
                Err(TransportError::Timeout(format!(
                    "{}: a file transfer made no progress for {} s",
                    self.describe(),
                    secs(STALL)
                )))
            }
            Err(e) => {
                self.abandon(channel, None);
                Err(e)
            }
        }
    }
}

fn failure_text(status: Option<i32>, stderr: &str) -> String {
    let said = tail(stderr, 5);
    let said = said.trim();
    match (said.is_empty(), status) {
        (false, _) => said.to_string(),
        (true, Some(code)) => format!("the copy exited with status {code}"),
        (true, None) => "the copy was killed by a signal".into(),
    }
}
