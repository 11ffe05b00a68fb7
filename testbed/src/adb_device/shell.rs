//! The `shell:` and `shell,v2:` services: a command run in the device's sandbox as a process group,
//! its output framed as shell-protocol packets, signals and hang-ups as adbd delivers them.

use super::*;

/// Shell protocol v2 packet ids.
pub(super) const SHELL_STDIN: u8 = 0;

pub(super) const SHELL_STDOUT: u8 = 1;

pub(super) const SHELL_STDERR: u8 = 2;

pub(super) const SHELL_EXIT: u8 = 3;

pub(super) const SHELL_CLOSE_STDIN: u8 = 4;

pub(super) fn shell_packet(id: u8, data: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(5 + data.len());
    p.push(id);
    p.extend_from_slice(&(data.len() as u32).to_le_bytes());
    p.extend_from_slice(data);
    p
}

/// What adbd's `ReportError` does: an error line, and exit status 126 under the shell protocol.
pub(super) fn report_error(out: &StreamOut, v2: bool, message: &str) {
    let line = format!("error: {message}\n");
    if v2 {
        let _ = out.write(&shell_packet(SHELL_STDERR, line.as_bytes()));
        let _ = out.write(&shell_packet(SHELL_EXIT, &[126]));
    } else {
        let _ = out.write(line.as_bytes());
    }
}

pub(super) enum ShellEvent {
    Output(u8, Vec<u8>),
    Eof,
    HungUp,
}

pub(super) struct Spawned {
    pub(super) child: Child,
    pub(super) stdin: Option<ChildStdin>,
    pub(super) outputs: Vec<(u8, Box<dyn Read + Send>)>,
}

/// `sh -c command` in the sandbox, in its own process group. With `split`, stdout and stderr
/// are separate pipes (shell protocol); without, one pipe carries both (raw v1 shell).
pub(super) fn spawn_shell(shared: &Shared, command: &str, split: bool) -> io::Result<Spawned> {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .current_dir(&shared.sandbox)
        .env("PATH", &shared.path_env)
        .env("TMPDIR", shared.sandbox.join("data/local/tmp"))
        .env("HOME", &shared.sandbox)
        .stdin(Stdio::piped())
        .process_group(0);
    let mut outputs: Vec<(u8, Box<dyn Read + Send>)> = Vec::new();
    let mut child = if split {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn()?;
        outputs.push((SHELL_STDOUT, Box::new(child.stdout.take().expect("piped"))));
        outputs.push((SHELL_STDERR, Box::new(child.stderr.take().expect("piped"))));
        child
    } else {
        let (reader, writer) = io::pipe()?;
        cmd.stdout(writer.try_clone()?).stderr(writer);
        let child = cmd.spawn()?;
        // The command holds our copies of the write end; drop them so the reader sees EOF.
        drop(cmd);
        outputs.push((SHELL_STDOUT, Box::new(reader)));
        child
    };
    let stdin = child.stdin.take();
    Ok(Spawned {
        child,
        stdin,
        outputs,
    })
}

pub(super) fn signal_group(signal: &str, pgid: u32) {
    let _ = Command::new("sh")
        .arg("-c")
        .arg(format!("kill -s {signal} -- -{pgid}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// What adbd does when the host closes a shell's stream: SIGHUP. Here to the whole process
/// group, then SIGKILL if it lingers.
pub(super) fn hang_up(child: &mut Child) {
    let pgid = child.id();
    signal_group("HUP", pgid);
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        thread::sleep(Duration::from_millis(10));
    }
    signal_group("KILL", pgid);
    let _ = child.kill();
    let _ = child.wait();
}

pub(super) fn exit_code(status: ExitStatus) -> u8 {
    match status.code() {
        Some(c) => c as u8,
        None => 0x80 | status.signal().unwrap_or(0) as u8,
    }
}

/// Feeds what the host writes to the child's stdin (unwrapping shell protocol packets) until the
/// stream closes, then reports the hang-up.
pub(super) fn pump_input(
    mut input: StreamIn,
    mut stdin: Option<ChildStdin>,
    v2: bool,
    events: Sender<ShellEvent>,
) {
    let mut pending: Vec<u8> = Vec::new();
    while let Some(chunk) = input.next_chunk() {
        if !v2 {
            if let Some(s) = stdin.as_mut() {
                if s.write_all(&chunk).is_err() {
                    stdin = None;
                }
            }
            continue;
        }
        pending.extend_from_slice(&chunk);
        while pending.len() >= 5 {
            let len = word(&pending, 1) as usize;
            if pending.len() < 5 + len {
                break;
            }
            match pending[0] {
                SHELL_STDIN => {
                    if let Some(s) = stdin.as_mut() {
                        if s.write_all(&pending[5..5 + len]).is_err() {
                            stdin = None;
                        }
                    }
                }
                SHELL_CLOSE_STDIN => stdin = None,
                _ => {} // window size changes, and anything newer
            }
            pending.drain(..5 + len);
        }
    }
    let _ = events.send(ShellEvent::HungUp);
}

pub(super) fn shell_service(
    shared: &Shared,
    command: &str,
    v2: bool,
    pty: bool,
    input: StreamIn,
    out: &StreamOut,
) {
    if pty {
        report_error(
            out,
            v2,
            "the meltbench ADB device simulator has no PTY: give the shell a command, without -t",
        );
        return;
    }
    let Spawned {
        mut child,
        stdin,
        outputs,
    } = match spawn_shell(shared, command, v2) {
        Ok(s) => s,
        Err(e) => {
            report_error(out, v2, &format!("cannot start sh: {e}"));
            return;
        }
    };
    trace(|| format!("shell pid {} runs {command:?}", child.id()));
    let (tx, rx) = mpsc::channel();
    let mut open = 0;
    for (id, mut reader) in outputs {
        open += 1;
        let tx = tx.clone();
        thread::spawn(move || {
            let mut buf = vec![0u8; SYNC_DATA_MAX];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        let _ = tx.send(ShellEvent::Eof);
                        return;
                    }
                    Ok(n) => {
                        if tx.send(ShellEvent::Output(id, buf[..n].to_vec())).is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
    {
        let tx = tx.clone();
        thread::spawn(move || pump_input(input, stdin, v2, tx));
    }
    drop(tx);

    while open > 0 {
        match rx.recv() {
            Ok(ShellEvent::Output(id, data)) => {
                let sent = if v2 {
                    out.write(&shell_packet(id, &data))
                } else {
                    out.write(&data)
                };
                if sent.is_err() {
                    hang_up(&mut child);
                    return;
                }
            }
            Ok(ShellEvent::Eof) => open -= 1,
            Ok(ShellEvent::HungUp) | Err(_) => {
                hang_up(&mut child);
                return;
            }
        }
    }
    // Output is closed; the process may still be running.
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) => {}
            Err(_) => {
                hang_up(&mut child);
                return;
            }
        }
        match rx.recv_timeout(Duration::from_millis(10)) {
            Ok(ShellEvent::HungUp) => {
                hang_up(&mut child);
                return;
            }
            Err(RecvTimeoutError::Disconnected) => thread::sleep(Duration::from_millis(10)),
            _ => {}
        }
    };
    trace(|| format!("shell exits with {status}"));
    if v2 {
        let _ = out.write(&shell_packet(SHELL_EXIT, &[exit_code(status)]));
    }
}

// ---------------------------------------------------------------------------------------------
// Sync service
// ---------------------------------------------------------------------------------------------
