//! A real llama.cpp server for tests: the OpenAI-compatible server of the PyPI package
//! `llama-cpp-python[server]` (which compiles llama.cpp when installed; `ci/test.sh` installs
//! it), on a loopback port, with the model a test gives it. Dropping it kills the server. The
//! Python that has it is `MELTBENCH_LLAMA_PYTHON` (ci/test.sh sets it to its venv), else
//! `python3`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct LlamaServer {
    child: Child,
    pub port: u16,
    /// The server's output, for failure messages.
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

fn python() -> String {
    std::env::var("MELTBENCH_LLAMA_PYTHON").unwrap_or_else(|_| "python3".into())
}

impl LlamaServer {
    /// Whether `python3 -m llama_cpp.server` can run here.
    pub fn available() -> Result<(), String> {
        let o = Command::new(python())
            .args(["-c", "import llama_cpp.server.app"])
            .output()
            .map_err(|e| format!("cannot run {}: {e}", python()))?;
        if o.status.success() {
            Ok(())
        } else {
            Err(format!(
                "the llama.cpp server of llama-cpp-python is not installed (pip install \
                 'llama-cpp-python[server]'): {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ))
        }
    }

    /// The server for a test, or `None` (with a loud SKIP) when it is missing outside CI; under
    /// `CI=true` a missing server fails the test.
    pub fn for_test(test: &str, model: &Path, alias: &str) -> Option<LlamaServer> {
        if let Err(why) = LlamaServer::available() {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{test}: the llama.cpp server is required in CI: {why}");
            }
            eprintln!("SKIP: {test}: {why}");
            return None;
        }
        Some(LlamaServer::start(model, alias).unwrap_or_else(|e| panic!("{test}: {e}")))
    }

    /// Starts the server on `model` (one thread, so it does not fight the test for the CPU),
    /// serving it as `alias`; returns once `/v1/models` answers.
    pub fn start(model: &Path, alias: &str) -> Result<LlamaServer, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let log = dir.path().join("server.log");
        let out = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let child = Command::new(python())
            .args(["-m", "llama_cpp.server", "--model"])
            .arg(model)
            .args(["--model_alias", alias, "--host", "127.0.0.1", "--port"])
            .arg(port.to_string())
            // Both counts: llama-cpp-python prefills with every core unless told otherwise.
            .args(["--n_threads", "1", "--n_threads_batch", "1"])
            .args(["--n_ctx", "1024", "--verbose", "false"])
            .stdin(Stdio::null())
            .stdout(out.try_clone().map_err(|e| e.to_string())?)
            .stderr(out)
            .spawn()
            .map_err(|e| format!("cannot start {} -m llama_cpp.server: {e}", python()))?;
        let mut server = LlamaServer {
            child,
            port,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!(
                    "the llama.cpp server exited ({status}) before answering; its log:\n{}",
                    server.log_text()
                ));
            }
            if server
                .get("/v1/models")
                .is_some_and(|r| r.starts_with("HTTP/1.1 200"))
            {
                return Ok(server);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(format!(
            "the llama.cpp server did not answer on port {port} within 120 s; its log:\n{}",
            server.log_text()
        ))
    }

    /// The server's base URL for OpenAI clients.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    /// The server process's pid (its memory is the model's).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A plain GET, its whole response as text; `None` when nothing answers.
    fn get(&self, path: &str) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        Some(text)
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
