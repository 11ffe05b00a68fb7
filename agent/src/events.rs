//! Every event goes to two places: streamed on stdout for the controller, and appended to
//! `<workdir>/events.jsonl`, which is the record of truth. When the connection drops the
//! controller resumes and pulls the file, so the file must hold everything that was streamed.
//!
//! Each event is written with one `write` (O_APPEND keeps a line whole) and synced with
//! `fdatasync`: an event stands for at least one engine pass, so a sync per event is cheap
//! next to the work it records, and a power cut or a crash loses at most the line being written.

use meltbench_protocol::agent::AgentEvent;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

pub struct EventLog<W: Write> {
    file: Option<File>,
    stream: Option<W>,
}

impl<W: Write> EventLog<W> {
    pub fn open(path: &Path, stream: W) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(EventLog {
            file: Some(file),
            stream: Some(stream),
        })
    }

    /// Writes `ev` to both sinks. Neither failing stops the run: a closed stdout (controller
    /// gone) leaves the durable log, and a full disk still leaves the stream.
    pub fn emit(&mut self, ev: &AgentEvent) {
        let mut line = serde_json::to_string(ev).expect("agent events always serialize");
        line.push('\n');
        if let Some(f) = &mut self.file {
            if let Err(e) = f.write_all(line.as_bytes()).and_then(|()| f.sync_data()) {
                self.file = None;
                let warning = AgentEvent::Warning {
                    message: format!(
                        "writing events.jsonl failed ({e}); events are only streamed from now on, \
                         so a dropped connection will lose them. Free space in the work directory."
                    ),
                };
                let mut w = serde_json::to_string(&warning).expect("serializes");
                w.push('\n');
                eprint!("meltbench-agent: {w}");
                self.stream_line(&w);
            }
        }
        self.stream_line(&line);
    }

    fn stream_line(&mut self, line: &str) {
        if let Some(s) = &mut self.stream {
            if s.write_all(line.as_bytes())
                .and_then(|()| s.flush())
                .is_err()
            {
                // The reader is gone (EPIPE: Rust ignores SIGPIPE). Keep running and logging.
                self.stream = None;
            }
        }
    }

    #[cfg(test)]
    fn into_stream(self) -> Option<W> {
        self.stream
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_and_file_get_the_same_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        std::fs::write(
            &path,
            "{\"event\":\"warning\",\"message\":\"earlier run\"}\n",
        )
        .unwrap();
        let mut log = EventLog::open(&path, Vec::new()).unwrap();
        log.emit(&AgentEvent::Done {
            cells_ok: 1,
            cells_failed: 0,
        });
        let streamed = String::from_utf8(log.into_stream().unwrap()).unwrap();
        assert_eq!(
            streamed,
            "{\"event\":\"done\",\"cells_ok\":1,\"cells_failed\":0}\n"
        );
        let file = std::fs::read_to_string(&path).unwrap();
        assert!(file.ends_with(&streamed), "appended, not truncated: {file}");
        assert!(file.starts_with("{\"event\":\"warning\""));
    }

    struct Broken;
    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_stream_keeps_the_log_going() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let mut log = EventLog::open(&path, Broken).unwrap();
        for n in 0..3 {
            log.emit(&AgentEvent::Warning {
                message: n.to_string(),
            });
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 3);
    }
}
