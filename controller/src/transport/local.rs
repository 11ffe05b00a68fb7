//! The local device: the agent runs as a child process of the controller.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};

/// Runs `agent run --job JOB`, handing each stdout line to `on_line` as it arrives. Returns the
/// agent's exit status and the tail of its stderr.
pub fn run_agent(
    agent: &Path,
    job: &Path,
    mut on_line: impl FnMut(&str),
) -> std::io::Result<(ExitStatus, String)> {
    let mut child = Command::new(agent)
        .arg("run")
        .arg("--job")
        .arg(job)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stderr = child.stderr.take().expect("piped");
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let stdout = child.stdout.take().expect("piped");
    for line in BufReader::new(stdout).lines() {
        on_line(&line?);
    }
    let status = child.wait()?;
    let err = err_reader.join().unwrap_or_default();
    let tail: Vec<&str> = err.lines().rev().take(20).collect();
    Ok((
        status,
        tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
    ))
}
