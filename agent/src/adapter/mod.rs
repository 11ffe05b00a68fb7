//! Adapters: the agent as a bench-contract program (`docs/engine-contract.md`) in front of a
//! runtime that is not a program of the contract itself. The agent starts itself as
//! `meltbench-agent adapter KIND [SETTINGS...] bench MODEL --job FILE`, like any engine, so an
//! adapter's passes run under the same states, telemetry, cold starts and sessions.
//!
//! - `openai`: an OpenAI-compatible HTTP endpoint (llama-server, llama-cpp-python, Ollama,
//!   LM Studio, MLC serve, vLLM), streaming; see [`openai`].
//! - `llama.cpp`: llama.cpp's `llama-server`, started by the adapter for the session and driven
//!   like an `openai` endpoint; see [`llama_cpp`]. A build without it runs `llama-bench`
//!   instead ([`llama_bench`]).

pub mod llama_bench;
pub mod llama_cpp;
pub mod llama_server;
pub mod openai;
pub mod sse;
mod tool_process;

use meltbench_protocol::engine::{EngineJob, EngineRecord};
use std::io::Write;
use std::path::Path;

pub const USAGE: &str = "\
usage: meltbench-agent adapter openai --url URL [--model NAME] [--memory-of PROCESS]
                                       bench MODEL --job FILE
       meltbench-agent adapter llama.cpp (--dir DIR | --file NAME=PATH...) [--tool TOOL]
                                       [--arg WORD...] bench MODEL --job FILE

openai:
  --url URL            the endpoint's base URL, e.g. http://127.0.0.1:8080/v1 (plain HTTP)
  --model NAME         the model name requests carry (default: the first the server lists)
  --memory-of PROCESS  the server's process name or pid on this device, whose peak resident
                       memory (VmHWM) the passes report; without it memory is not measured

llama.cpp (starts DIR/llama-server on a loopback port for the session, or runs
DIR/llama-bench where the build has no llama-server):
  --dir DIR            the directory of llama.cpp's tools on this device
  --file NAME=PATH     instead of --dir: a file of the build (llama-server or llama-bench,
                       its libraries) by its name there and its path here; repeat for each
  --tool TOOL          llama-server or llama-bench (default: llama-server if the build has
                       it); llama-bench times the decode only as a whole, not per token
  --arg WORD           one word added to the tool's command line (e.g. --arg -ngl
                       --arg 99); repeat for each";

/// A parsed `adapter` command line.
#[derive(Debug, PartialEq)]
pub struct Invocation {
    pub adapter: Adapter,
    pub model: String,
    pub job: String,
}

#[derive(Debug, PartialEq)]
pub enum Adapter {
    OpenAi(openai::Settings),
    LlamaCpp(llama_cpp::Settings),
}

impl Invocation {
    /// Runs the job, writing the contract's records to `out`.
    pub fn run(&self, out: &mut dyn Write) -> Result<(), String> {
        let job = Path::new(&self.job);
        match &self.adapter {
            Adapter::OpenAi(s) => openai::run(s, &self.model, job, out),
            Adapter::LlamaCpp(s) => llama_cpp::run(s, &self.model, job, out),
        }
    }
}

/// Parses the words after `adapter`.
pub fn parse(args: &[&str]) -> Result<Invocation, String> {
    let Some((&kind, rest)) = args.split_first() else {
        return Err("adapter needs a kind (openai or llama.cpp)".into());
    };
    if kind != "openai" && kind != "llama.cpp" {
        return Err(format!(
            "unknown adapter {kind:?} (known: openai, llama.cpp)"
        ));
    }
    let mut settings: Vec<(&str, &str)> = Vec::new();
    let mut i = 0;
    while i < rest.len() && rest[i] != "bench" {
        let value = rest
            .get(i + 1)
            .filter(|v| **v != "bench")
            .ok_or_else(|| format!("{} needs a value", rest[i]))?;
        settings.push((rest[i], value));
        i += 2;
    }
    let adapter = if kind == "openai" {
        openai_settings(&settings)?
    } else {
        llama_cpp_settings(&settings)?
    };
    match &rest[i.min(rest.len())..] {
        ["bench", model, "--job", job] => Ok(Invocation {
            adapter,
            model: model.to_string(),
            job: job.to_string(),
        }),
        _ => Err("the settings must be followed by `bench MODEL --job FILE`".into()),
    }
}

fn openai_settings(settings: &[(&str, &str)]) -> Result<Adapter, String> {
    let (mut url, mut model, mut memory_of) = (None, None, None);
    for &(key, value) in settings {
        let slot = match key {
            "--url" => &mut url,
            "--model" => &mut model,
            "--memory-of" => &mut memory_of,
            other => return Err(format!("unknown openai adapter setting {other:?}")),
        };
        *slot = Some(value.to_string());
    }
    let url: String = url.ok_or("the openai adapter needs --url")?;
    Ok(Adapter::OpenAi(openai::Settings {
        url: url.trim_end_matches('/').to_string(),
        model,
        memory_of,
    }))
}

fn llama_cpp_settings(settings: &[(&str, &str)]) -> Result<Adapter, String> {
    let (mut dir, mut files, mut args, mut tool) = (None, Vec::new(), Vec::new(), None);
    for &(key, value) in settings {
        match key {
            "--dir" => dir = Some(value.to_string()),
            "--file" => {
                let (name, path) = value
                    .split_once('=')
                    .ok_or_else(|| format!("--file {value}: write NAME=PATH"))?;
                files.push((name.to_string(), path.to_string()));
            }
            "--arg" => args.push(value.to_string()),
            "--tool" => {
                tool = Some(llama_cpp::Tool::from_name(value).ok_or_else(|| {
                    format!("--tool {value}: the tools are llama-server and llama-bench")
                })?)
            }
            other => return Err(format!("unknown llama.cpp adapter setting {other:?}")),
        }
    }
    let tools = match (dir, files.is_empty()) {
        (Some(d), true) => llama_cpp::Tools::Dir(d),
        (None, false) => llama_cpp::Tools::Files(files),
        (Some(_), false) => return Err("give --dir or --file, not both".into()),
        (None, true) => return Err("the llama.cpp adapter needs --dir or --file".into()),
    };
    Ok(Adapter::LlamaCpp(llama_cpp::Settings { tools, tool, args }))
}

/// Reads the engine job an adapter was started with; unknown keys are refused, as the bundled
/// engine refuses them.
pub fn read_job(path: &Path) -> Result<EngineJob, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the job {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("the job {} is invalid: {e}", path.display()))
}

/// Writes one record as a line and flushes it: the agent acts on each pass as it arrives.
pub fn emit(out: &mut dyn Write, record: &EngineRecord) -> Result<(), String> {
    let line = serde_json::to_string(record).expect("records serialize");
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|e| format!("cannot write a record: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_come_before_bench() {
        let inv = parse(&[
            "openai",
            "--url",
            "http://127.0.0.1:8080/v1/",
            "--memory-of",
            "llama-server",
            "bench",
            "/m.gguf",
            "--job",
            "/j.json",
        ])
        .unwrap();
        assert_eq!(
            inv.adapter,
            Adapter::OpenAi(openai::Settings {
                url: "http://127.0.0.1:8080/v1".into(),
                model: None,
                memory_of: Some("llama-server".into()),
            })
        );
        assert_eq!(
            (inv.model.as_str(), inv.job.as_str()),
            ("/m.gguf", "/j.json")
        );
        let missing = parse(&["openai", "bench", "/m", "--job", "/j"]).unwrap_err();
        assert!(missing.contains("--url"), "{missing}");
        let dangling = parse(&["openai", "--url", "bench", "/m", "--job", "/j"]).unwrap_err();
        assert!(dangling.contains("--url needs a value"), "{dangling}");
        assert!(parse(&["vllm"]).unwrap_err().contains("unknown adapter"));
    }

    #[test]
    fn llama_cpp_takes_a_directory_or_files_and_words_for_the_server() {
        let inv = parse(&[
            "llama.cpp",
            "--file",
            "llama-server=/b/9f",
            "--file",
            "libggml.so=/b/07",
            "--arg",
            "-ngl",
            "--arg",
            "99",
            "bench",
            "/m.gguf",
            "--job",
            "/j.json",
        ])
        .unwrap();
        assert_eq!(
            inv.adapter,
            Adapter::LlamaCpp(llama_cpp::Settings {
                tools: llama_cpp::Tools::Files(vec![
                    ("llama-server".into(), "/b/9f".into()),
                    ("libggml.so".into(), "/b/07".into()),
                ]),
                tool: None,
                args: vec!["-ngl".into(), "99".into()],
            })
        );
        let bench = parse(&[
            "llama.cpp",
            "--dir",
            "/d",
            "--tool",
            "llama-bench",
            "bench",
            "/m",
            "--job",
            "/j",
        ]);
        assert!(matches!(
            bench.unwrap().adapter,
            Adapter::LlamaCpp(llama_cpp::Settings {
                tool: Some(llama_cpp::Tool::Bench),
                ..
            })
        ));
        let wrong = parse(&["llama.cpp", "--dir", "/d", "--tool", "llama-cli", "bench"]);
        assert!(wrong.unwrap_err().contains("llama-server and llama-bench"));
        let both = parse(&[
            "llama.cpp",
            "--dir",
            "/d",
            "--file",
            "a=/b",
            "bench",
            "/m",
            "--job",
            "/j",
        ]);
        assert!(both.unwrap_err().contains("not both"));
        let none = parse(&["llama.cpp", "bench", "/m", "--job", "/j"]);
        assert!(none.unwrap_err().contains("needs --dir or --file"));
        let bad = parse(&["llama.cpp", "--file", "x", "bench", "/m", "--job", "/j"]);
        assert!(bad.unwrap_err().contains("NAME=PATH"));
    }
}
