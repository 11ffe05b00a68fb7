//! The `llama.cpp` adapter: llama.cpp's own `llama-server` on this device, started for the
//! session on a loopback port and driven like any OpenAI-compatible server (see
//! [`super::openai`]): one streaming request per pass, times from token arrival.
//!
//! What it adds to the `openai` adapter: the server is this adapter's child, so a cold start
//! times what a user waits for (process start, model load, first token); the server's peak
//! memory is its own VmHWM; prompts are cut by llama-server's `/tokenize`, which counts without
//! prefilling, so calibrating adds no model work to the load time. Its tools come either as a
//! directory on the device (`--dir`) or as pushed files (`--file NAME=PATH`), which are linked
//! under their own names into a directory beside the job, so a shared-library build finds its
//! libraries (`LD_LIBRARY_PATH`) and `llama-server` finds its backends beside itself.
//!
//! A build without `llama-server` (or `--tool llama-bench`) is run through `llama-bench`
//! instead, one process per session; see [`super::llama_bench`] for what its output gives and
//! what it cannot.

use super::llama_bench::{self, BENCH};
use super::llama_server::{self, ServerInfo};
use super::openai::{client, refuse_unsupported, server_load, Endpoint};
use super::tool_process::{log_tail, log_text, tool_command};
use super::{emit, read_job};
use crate::telemetry::sampler::monotonic_ns;
use meltbench_protocol::engine::{EngineJob, EngineRecord, LoadRecord, Prompt};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

/// Where llama.cpp's tools are.
#[derive(Debug, PartialEq)]
pub enum Tools {
    /// A directory on this device holding `llama-server` (and its libraries, if shared).
    Dir(String),
    /// Pushed files: each file's name in the build, and its path here.
    Files(Vec<(String, String)>),
}

#[derive(Debug, PartialEq)]
pub struct Settings {
    pub tools: Tools,
    /// The tool to run; `None`: llama-server where the build has it, else llama-bench.
    pub tool: Option<Tool>,
    /// Words added to the tool's command line (`-ngl 99`, `-fa on`, ...).
    pub args: Vec<String>,
}

/// Which of llama.cpp's tools measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    /// `llama-server`, driven by streaming requests: every figure of a pass.
    Server,
    /// `llama-bench`: prefill and the decode as a whole per repetition.
    Bench,
}

impl Tool {
    pub fn name(self) -> &'static str {
        match self {
            Tool::Server => SERVER,
            Tool::Bench => BENCH,
        }
    }

    pub fn from_name(name: &str) -> Option<Tool> {
        [Tool::Server, Tool::Bench]
            .into_iter()
            .find(|t| t.name() == name)
    }
}

const SERVER: &str = "llama-server";
/// How long loading a model may take before the adapter gives up (a large file on an SD card).
const LOAD_WITHIN: Duration = Duration::from_secs(600);
/// Tries at a free port: another process may take the one picked between picking and binding.
const PORT_TRIES: usize = 3;

pub fn run(
    settings: &Settings,
    model_path: &str,
    job_path: &Path,
    out: &mut dyn Write,
) -> Result<(), String> {
    let start_mono_ns = monotonic_ns();
    let job = read_job(job_path)?;
    let here = job_path.parent().unwrap_or(Path::new("."));
    let linked = match &settings.tools {
        Tools::Dir(d) => Linked::existing(PathBuf::from(d)),
        Tools::Files(files) => Linked::make(here, files)?,
    };
    let tool = match settings.tool {
        Some(t) => t,
        None if linked.dir.join(SERVER).is_file() || !linked.dir.join(BENCH).is_file() => {
            Tool::Server
        }
        None => Tool::Bench,
    };
    if tool == Tool::Bench {
        let args = &settings.args;
        return llama_bench::run(
            &linked.dir,
            model_path,
            &job,
            args,
            here,
            start_mono_ns,
            out,
        );
    }
    refuse_unsupported(&job, "llama.cpp")?;
    let server = Server::start(&linked.dir, model_path, &job, &settings.args, here)?;
    let http = client();
    let info = server.info(&http)?;
    let endpoint = Endpoint {
        http,
        url: format!("{}/v1", server.base),
        model: info.model.clone(),
        chat: job.chat,
        tokenize: Some(format!("{}/tokenize", server.base)),
    };
    let (prompts, tokenizer_ns) = endpoint.prompts(&job)?;
    let pid = server.child.id();
    let load = LoadRecord {
        engine_version: format!(
            "llama.cpp {}",
            info.build.as_deref().unwrap_or("(build not reported)")
        ),
        dtype: info.ftype.clone().unwrap_or_else(|| "unknown".into()),
        n_params: info.n_params.unwrap_or(0),
        // Passed as -t; without it llama-server picks, and 0 says unknown.
        threads: job.threads.unwrap_or(0),
        kernels: std::iter::once(SERVER.to_string())
            .chain(settings.args.iter().cloned())
            .collect::<Vec<_>>()
            .join(" "),
        memory_of: Some(format!("{SERVER} (pid {pid})")),
        ..server_load(model_path, start_mono_ns, tokenizer_ns)
    };
    emit(out, &EngineRecord::Load(load))?;
    let hint = format!("llama-server's log is {}", server.log.display());
    endpoint.passes(&job, &prompts, Some(pid), &hint, out)
}

/// The tools' directory; for pushed files, one made of links, removed when done.
struct Linked {
    dir: PathBuf,
    made: bool,
}

impl Linked {
    fn existing(dir: PathBuf) -> Linked {
        Linked { dir, made: false }
    }

    fn make(here: &Path, files: &[(String, String)]) -> Result<Linked, String> {
        let dir = here.join(format!("llama.cpp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let linked = Linked { dir, made: true };
        for (name, path) in files {
            if name.is_empty() || name.contains('/') || name == "." || name == ".." {
                return Err(format!("--file {name}={path}: a file name has no '/'"));
            }
            let to = linked.dir.join(name);
            // A hard link keeps the file's name for /proc/self/exe (llama.cpp looks for its
            // backends beside itself); a symbolic link where the file system refuses one.
            std::fs::hard_link(path, &to)
                .or_else(|_| std::os::unix::fs::symlink(path, &to))
                .map_err(|e| format!("cannot link {path} as {}: {e}", to.display()))?;
        }
        Ok(linked)
    }
}

impl Drop for Linked {
    fn drop(&mut self) {
        if self.made {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// llama-server, started for this session; stopped when dropped.
struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    base: String,
    log: PathBuf,
}

impl Server {
    fn start(
        dir: &Path,
        model: &str,
        job: &EngineJob,
        extra: &[String],
        here: &Path,
    ) -> Result<Server, String> {
        let program = dir.join(SERVER);
        if !program.is_file() {
            return Err(format!(
                "{} does not exist: the llama.cpp engine needs a build with llama-server \
                 (cmake --build build --target llama-server) or llama-bench",
                program.display()
            ));
        }
        let log = here.join(format!("llama-server-{}.log", std::process::id()));
        let mut last = String::new();
        for _ in 0..PORT_TRIES {
            let port = free_port()?;
            let mut server = Self::spawn(&program, dir, model, job, extra, port, &log)?;
            match server.wait_healthy() {
                Ok(()) => return Ok(server),
                Err(e) if server.log_text().contains("bind") => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    fn spawn(
        program: &Path,
        dir: &Path,
        model: &str,
        job: &EngineJob,
        extra: &[String],
        port: u16,
        log: &Path,
    ) -> Result<Server, String> {
        let out = std::fs::File::create(log)
            .map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let err = out
            .try_clone()
            .map_err(|e| format!("cannot write {}: {e}", log.display()))?;
        let mut cmd = tool_command(program, dir);
        cmd.args(["-m", model, "--host", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .args(["-c", &context_size(job).to_string(), "-np", "1"]);
        if let Some(t) = job.threads {
            cmd.args(["-t", &t.to_string(), "-tb", &t.to_string()]);
        }
        cmd.args(extra).stdout(out).stderr(err);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
        Ok(Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log: log.to_path_buf(),
        })
    }

    /// Waits for `/health` to say the model is loaded, or for the server to exit.
    fn wait_healthy(&mut self) -> Result<(), String> {
        let http = client();
        let deadline = Instant::now() + LOAD_WITHIN;
        let url = format!("{}/health", self.base);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "llama-server exited ({status}) before it was ready{}",
                    self.log_tail()
                ));
            }
            if let Ok(r) = http.get(&url).call() {
                let status = r.status().as_u16();
                let body = r.into_body().read_to_string().unwrap_or_default();
                if llama_server::healthy(status, &body)? {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "llama-server did not load the model within {} s{}",
                    LOAD_WITHIN.as_secs(),
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its build and model, from `/props` and `/v1/models`.
    fn info(&self, http: &ureq::Agent) -> Result<ServerInfo, String> {
        let get = |path: &str| -> Result<String, String> {
            let url = format!("{}{path}", self.base);
            let r = http.get(&url).call().map_err(|e| format!("{url}: {e}"))?;
            let status = r.status();
            let body = r
                .into_body()
                .read_to_string()
                .map_err(|e| format!("{url}: {e}"))?;
            if status.is_success() {
                Ok(body)
            } else {
                Err(format!("{url} answered {status}: {}", body.trim()))
            }
        };
        let (build, ftype) = llama_server::props(&get("/props")?)?;
        let (model, n_params) = llama_server::first_model(&get("/v1/models")?)?;
        Ok(ServerInfo {
            build,
            ftype,
            model,
            n_params,
        })
    }

    fn log_text(&self) -> String {
        log_text(&self.log)
    }

    fn log_tail(&self) -> String {
        log_tail(&self.log)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let pid = self.child.id() as i32;
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nothing listens on now.
fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free loopback port: {e}"))
}

/// The KV cache the job needs, rounded up so its size says what it is for: the prompt (for a
/// text prompt, its bytes, which are at least its tokens) and the generated tokens.
fn context_size(job: &EngineJob) -> usize {
    let prompt = match &job.prompt {
        Prompt::Tokens(n) => *n,
        Prompt::Text(t) => t.len(),
    };
    (prompt + job.n_gen + 16).div_ceil(256).max(2) * 256
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(text: &str) -> EngineJob {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn the_context_holds_the_prompt_and_the_generated_tokens() {
        assert_eq!(
            context_size(&job(r#"{"prompt":{"tokens":16},"n_gen":8,"passes":1}"#)),
            512
        );
        assert_eq!(
            context_size(&job(r#"{"prompt":{"tokens":500},"n_gen":128,"passes":1}"#)),
            768
        );
    }

    #[test]
    fn pushed_files_are_linked_under_their_names_and_removed_after() {
        let d = tempfile::tempdir().unwrap();
        let blob = d.path().join("0a1b2c");
        std::fs::write(&blob, "#!/bin/sh\n").unwrap();
        let dir;
        {
            let linked =
                Linked::make(d.path(), &[(SERVER.into(), blob.display().to_string())]).unwrap();
            dir = linked.dir.clone();
            assert_eq!(
                std::fs::read_to_string(dir.join(SERVER)).unwrap(),
                "#!/bin/sh\n"
            );
        }
        assert!(!dir.exists());
        let bad = Linked::make(d.path(), &[("../x".into(), blob.display().to_string())]);
        assert!(bad.err().unwrap().contains("no '/'"));
    }

    #[test]
    fn a_server_that_exits_at_once_is_an_error_with_its_log() {
        let d = tempfile::tempdir().unwrap();
        let server = d.path().join(SERVER);
        std::fs::write(
            &server,
            "#!/bin/sh\necho \"error: failed to load model '$2'\" >&2\nexit 1\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&server, std::fs::Permissions::from_mode(0o755)).unwrap();
        let j = job(r#"{"prompt":{"tokens":16},"n_gen":8,"passes":1}"#);
        let e = Server::start(d.path(), "/no/model.gguf", &j, &[], d.path())
            .err()
            .expect("the server exits");
        assert!(
            e.contains("exited") && e.contains("failed to load model '/no/model.gguf'"),
            "{e}"
        );
        let e = Server::start(&d.path().join("nothing"), "/m", &j, &[], d.path())
            .err()
            .unwrap();
        assert!(e.contains("needs a build with llama-server"), "{e}");
    }

    #[test]
    fn a_build_with_only_llama_bench_runs_it_and_its_failure_is_an_error_with_its_log() {
        let d = tempfile::tempdir().unwrap();
        let bench = d.path().join(BENCH);
        std::fs::write(
            &bench,
            "#!/bin/sh\necho 'llama-bench: benchmark 1/1: starting' >&2\n\
             echo \"llama_bench: error: failed to load model '$2'\" >&2\nexit 1\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&bench, std::fs::Permissions::from_mode(0o755)).unwrap();
        let job = d.path().join("job.json");
        std::fs::write(&job, r#"{"prompt":{"tokens":16},"n_gen":4,"passes":1}"#).unwrap();
        let settings = Settings {
            tools: Tools::Dir(d.path().display().to_string()),
            tool: None,
            args: vec![],
        };
        let mut out = Vec::new();
        let e = run(&settings, "/no/model.gguf", &job, &mut out).unwrap_err();
        assert!(
            e.contains("llama-bench exited") && e.contains("failed to load model '/no/model.gguf'"),
            "{e}"
        );
        assert!(out.is_empty(), "no record of a failed run");
        let server = Settings {
            tool: Some(Tool::Server),
            ..settings
        };
        let e = run(&server, "/m", &job, &mut out).unwrap_err();
        assert!(e.contains("needs a build with llama-server"), "{e}");
    }
}
