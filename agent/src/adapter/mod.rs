//! Adapters: the agent as a bench-contract program (`docs/engine-contract.md`) in front of a
//! runtime that is not a program of the contract itself. The agent starts itself as
//! `meltbench-agent adapter KIND [SETTINGS...] bench MODEL --job FILE`, like any engine, so an
//! adapter's passes run under the same states, telemetry, cold starts and sessions.
//!
//! - `openai`: an OpenAI-compatible HTTP endpoint (llama-server, llama-cpp-python, Ollama,
//!   LM Studio, MLC serve, vLLM), streaming; see [`openai`].

pub mod openai;
pub mod sse;

use meltbench_protocol::engine::{EngineJob, EngineRecord};
use std::io::Write;
use std::path::Path;

pub const USAGE: &str = "\
usage: meltbench-agent adapter openai --url URL [--model NAME] [--memory-of PROCESS]
                                       bench MODEL --job FILE

  --url URL            the endpoint's base URL, e.g. http://127.0.0.1:8080/v1 (plain HTTP)
  --model NAME         the model name requests carry (default: the first the server lists)
  --memory-of PROCESS  the server's process name or pid on this device, whose peak resident
                       memory (VmHWM) the passes report; without it memory is not measured";

/// A parsed `adapter` command line.
#[derive(Debug, PartialEq)]
pub struct Invocation {
    pub settings: openai::Settings,
    pub model: String,
    pub job: String,
}

/// Parses the words after `adapter`.
pub fn parse(args: &[&str]) -> Result<Invocation, String> {
    let Some((&kind, rest)) = args.split_first() else {
        return Err("adapter needs a kind (openai)".into());
    };
    if kind != "openai" {
        return Err(format!("unknown adapter {kind:?} (known: openai)"));
    }
    let mut url = None;
    let mut model_name = None;
    let mut memory_of = None;
    let mut i = 0;
    while i < rest.len() && rest[i] != "bench" {
        let value = rest
            .get(i + 1)
            .filter(|v| **v != "bench")
            .ok_or_else(|| format!("{} needs a value", rest[i]))?;
        match rest[i] {
            "--url" => url = Some(value.to_string()),
            "--model" => model_name = Some(value.to_string()),
            "--memory-of" => memory_of = Some(value.to_string()),
            other => return Err(format!("unknown adapter setting {other:?}")),
        }
        i += 2;
    }
    let url = url.ok_or("the openai adapter needs --url")?;
    match &rest[i.min(rest.len())..] {
        ["bench", model, "--job", job] => Ok(Invocation {
            settings: openai::Settings {
                url: url.trim_end_matches('/').to_string(),
                model: model_name,
                memory_of,
            },
            model: model.to_string(),
            job: job.to_string(),
        }),
        _ => Err("the settings must be followed by `bench MODEL --job FILE`".into()),
    }
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
        assert_eq!(inv.settings.url, "http://127.0.0.1:8080/v1");
        assert_eq!(inv.settings.memory_of.as_deref(), Some("llama-server"));
        assert_eq!(inv.settings.model, None);
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
}
