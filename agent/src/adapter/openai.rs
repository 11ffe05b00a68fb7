//! The `openai` adapter: a bench-contract program in front of an OpenAI-compatible endpoint.
//!
//! Every pass is one streaming request (`/completions`, or `/chat/completions` for a chat job)
//! for `n_gen` tokens. Times come from token arrival on this device: time to first token is
//! from just before the request to the first chunk with text, each later chunk with text is one
//! decode step. The server's own tokenizing and prefill are inside the time to first token
//! and cannot be split, so `tokenize_ns` and `detokenize_ns` are written as 0 and listed as
//! unmeasured; token counts come from the response's `usage` when the server sends it.
//!
//! A prompt of N tokens is the contract's English text cut to N tokens by the server's own
//! count: requests for one token, searching the number of words whose `usage.prompt_tokens`
//! is N (or the largest below it). Two such prompts, starting at different words, alternate
//! between passes, so a server that reuses the previous request's prefix (llama-cpp-python
//! does, whatever the request says) finds none to reuse and prefills every pass in full.
//! `cache_prompt: false` and `ignore_eos` go with every request for the servers that read them
//! (llama-server, vLLM); the others ignore unknown fields.

use super::sse::{self, Chunk, Usage};
use super::{emit, read_job};
use crate::rss::vm_hwm_bytes;
use crate::telemetry::sampler::monotonic_ns;
use meltbench_protocol::engine::{
    DoneRecord, EngineJob, EngineRecord, FailedPass, LoadRecord, PassRecord, Prompt, FILLER_TEXT,
    UNMEASURED_PEAK_RSS,
};
use meltbench_protocol::PROTOCOL_VERSION;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(Debug, PartialEq)]
pub struct Settings {
    /// Base URL, without a trailing slash (`http://127.0.0.1:8080/v1`).
    pub url: String,
    pub model: Option<String>,
    /// A process name or pid whose VmHWM stands for the model's memory.
    pub memory_of: Option<String>,
}

/// How long the server may take to answer at all before the adapter gives up on it.
const READY_WITHIN: Duration = Duration::from_secs(60);
/// Without the response's headers for this long, a request has stalled. The body (the stream
/// of tokens) has no limit of its own: a long generation on a slow board can take minutes, and
/// the cell's timeout (the agent kills the adapter) bounds a stream that stalls.
const STALL: Duration = Duration::from_secs(120);

/// Runs the job against the endpoint, writing the contract's records to `out`.
pub fn run(
    settings: &Settings,
    model_path: &str,
    job_path: &Path,
    out: &mut dyn Write,
) -> Result<(), String> {
    let job = read_job(job_path)?;
    refuse_unsupported(&job, "openai")?;
    let start_mono_ns = monotonic_ns();
    let http = client();
    let listed = wait_ready(&http, &settings.url)?;
    let model = match (&settings.model, listed) {
        (Some(m), _) => m.clone(),
        (None, Some(first)) => first,
        (None, None) => {
            return Err(format!(
                "{}/models lists no model; give the model's name with `model:`",
                settings.url
            ))
        }
    };
    let memory = settings
        .memory_of
        .as_deref()
        .map(find_process)
        .transpose()?;
    let endpoint = Endpoint {
        http,
        url: settings.url.clone(),
        model,
        chat: job.chat,
        tokenize: None,
    };
    let (prompts, tokenizer_ns) = endpoint.prompts(&job)?;
    let mut load = server_load(model_path, start_mono_ns, tokenizer_ns);
    if memory.is_none() {
        load.unmeasured.push(UNMEASURED_PEAK_RSS.to_string());
    }
    let load = LoadRecord {
        engine_version: format!("openai-compatible endpoint {}", settings.url),
        kernels: format!("server ({})", endpoint.model),
        memory_of: memory
            .as_ref()
            .map(|(name, pid)| format!("{name} (pid {pid})")),
        ..load
    };
    emit(out, &EngineRecord::Load(load))?;
    let hint = format!("is the server at {} still running?", settings.url);
    endpoint.passes(&job, &prompts, memory.map(|(_, pid)| pid), &hint, out)
}

/// A server's load record, ending now: what an adapter cannot know is "unknown" or 0, and
/// `threads` 0 says the server's own settings decide rather than echoing the job.
pub(super) fn server_load(model_path: &str, start_mono_ns: u64, tokenizer_ns: u64) -> LoadRecord {
    LoadRecord {
        protocol: PROTOCOL_VERSION.to_string(),
        engine_version: String::new(),
        model_path: model_path.to_string(),
        architecture: "unknown".into(),
        dtype: "unknown".into(),
        n_params: 0,
        file_bytes: std::fs::metadata(model_path).map(|m| m.len()).unwrap_or(0),
        weight_bytes_per_token: 0,
        threads: 0,
        cpus: None,
        placement: None,
        kernels: String::new(),
        open_ns: 0,
        weights_ns: 0,
        tokenizer_ns,
        session_ns: 0,
        start_mono_ns,
        end_mono_ns: monotonic_ns(),
        chat: None,
        unmeasured: vec!["tokenize_ns".to_string(), "detokenize_ns".to_string()],
        memory_of: None,
    }
}

/// What a server cannot be asked to do through this API: failing says so, instead of
/// measuring something else under the cell's name.
pub(super) fn refuse_unsupported(job: &EngineJob, adapter: &str) -> Result<(), String> {
    if job.depth > 0 {
        return Err(format!(
            "the {adapter} adapter cannot fill the server's KV cache before a pass \
             (`depth`); leave depth out for this engine"
        ));
    }
    if let Some(k) = &job.kernels {
        return Err(format!(
            "the {adapter} adapter cannot choose the server's kernels ({k}); the server's own \
             settings decide"
        ));
    }
    Ok(())
}

pub(super) fn client() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(5)))
        .timeout_recv_response(Some(STALL))
        .build()
        .into()
}

/// Waits until `GET {url}/models` answers; the first model it lists, if any.
fn wait_ready(http: &ureq::Agent, url: &str) -> Result<Option<String>, String> {
    let deadline = Instant::now() + READY_WITHIN;
    loop {
        let last = match http.get(format!("{url}/models")).call() {
            Ok(r) if r.status().is_success() => {
                let body = r
                    .into_body()
                    .read_to_string()
                    .map_err(|e| format!("{url}/models: {e}"))?;
                let v: Value = serde_json::from_str(&body)
                    .map_err(|e| format!("{url}/models did not answer JSON ({e})"))?;
                return Ok(v["data"]
                    .get(0)
                    .and_then(|m| m["id"].as_str())
                    .map(str::to_string));
            }
            Ok(r) => format!("it answered {}", r.status()),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(format!(
                "no OpenAI-compatible server answered at {url}/models within {} s ({last}); \
                 start the server, or fix `url:` (it ends in /v1 for most servers)",
                READY_WITHIN.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The process whose memory the passes report: a pid, or the one process of that name.
fn find_process(which: &str) -> Result<(String, u32), String> {
    if let Ok(pid) = which.parse::<u32>() {
        return vm_hwm_bytes(pid)
            .map(|_| (which.to_string(), pid))
            .ok_or_else(|| format!("no process with pid {pid} to read the memory of"));
    }
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").map_err(|e| format!("cannot list /proc: {e}"))? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
        let base = String::from_utf8_lossy(argv0.rsplit(|b| *b == b'/').next().unwrap_or_default())
            .into_owned();
        if comm.trim() == which || base == which {
            found.push(pid);
        }
    }
    match found.as_slice() {
        [pid] => Ok((which.to_string(), *pid)),
        [] => Err(format!(
            "no process named {which} runs on this device to read the memory of; start the \
             server first, or fix `memory_of:`"
        )),
        many => Err(format!(
            "{} processes are named {which} (pids {}); give the server's pid as `memory_of:`",
            many.len(),
            many.iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// A prompt and the token count the server gave it (`None` for a literal text prompt).
pub(super) struct Calibrated {
    text: String,
    tokens: Option<usize>,
}

impl Calibrated {
    fn uncounted(text: String) -> Calibrated {
        Calibrated { text, tokens: None }
    }
}

pub(super) struct Endpoint {
    pub(super) http: ureq::Agent,
    /// Base URL, ending in `/v1` for most servers.
    pub(super) url: String,
    pub(super) model: String,
    pub(super) chat: bool,
    /// llama-server's `/tokenize`, which counts a prompt without prefilling it; `None`: count
    /// by a request for one token and its `usage`.
    pub(super) tokenize: Option<String>,
}

impl Endpoint {
    /// The prompts passes alternate between, and how long making them took.
    pub(super) fn prompts(&self, job: &EngineJob) -> Result<(Vec<Calibrated>, u64), String> {
        let t = Instant::now();
        let prompts = match &job.prompt {
            Prompt::Text(text) => vec![Calibrated::uncounted(text.clone())],
            Prompt::Tokens(n) => vec![self.calibrate(*n, 0)?, self.calibrate(*n, 1)?],
        };
        Ok((prompts, t.elapsed().as_nanos() as u64))
    }

    /// Every warm-up and pass of `job`, then the `done` record. `memory` is the server's pid,
    /// whose VmHWM each pass reports; `hint` ends the error when too many passes fail.
    pub(super) fn passes(
        &self,
        job: &EngineJob,
        prompts: &[Calibrated],
        memory: Option<u32>,
        hint: &str,
        out: &mut dyn Write,
    ) -> Result<(), String> {
        let total = job.warmup + job.passes;
        // A few failures are reported and made up for; many mean the server is gone.
        let allowed_failures = (total / 10).max(3);
        let (mut done, mut failures, mut peak) = (0usize, 0usize, None::<u64>);
        let mut index = 0usize;
        while done < total {
            let warmup = done < job.warmup;
            let prompt = &prompts[index % prompts.len()];
            match self.pass(job, prompt) {
                Ok(mut p) => {
                    p.index = index;
                    p.warmup = warmup;
                    p.chat = job.chat;
                    if let Some(pid) = memory {
                        p.rss_hwm_bytes = vm_hwm_bytes(pid);
                        peak = peak.max(p.rss_hwm_bytes);
                    }
                    emit(out, &EngineRecord::Pass(p))?;
                    done += 1;
                }
                Err(reason) => {
                    failures += 1;
                    emit(
                        out,
                        &EngineRecord::Failed(FailedPass {
                            index,
                            warmup,
                            reason: reason.clone(),
                        }),
                    )?;
                    if failures > allowed_failures {
                        return Err(format!(
                            "{failures} passes failed, the last: {reason}; {hint}"
                        ));
                    }
                }
            }
            index += 1;
        }
        emit(
            out,
            &EngineRecord::Done(DoneRecord {
                passes: job.passes,
                warmup: job.warmup,
                peak_rss_bytes: peak,
            }),
        )
    }

    /// The request body for `prompt`, `max_tokens` tokens, streaming or not.
    fn body(
        &self,
        prompt: &str,
        max_tokens: usize,
        job: Option<&EngineJob>,
        stream: bool,
    ) -> Value {
        let mut body = json!({
            "model": self.model,
            "max_tokens": max_tokens,
            "temperature": job.map_or(0.0, |j| j.temperature),
            "seed": job.map_or(0, |j| j.seed),
            "stream": stream,
            "cache_prompt": false,
            "ignore_eos": job.is_none_or(|j| j.ignore_eos),
        });
        if stream {
            body["stream_options"] = json!({ "include_usage": true });
        }
        if self.chat {
            body["messages"] = json!([{ "role": "user", "content": prompt }]);
        } else {
            body["prompt"] = json!(prompt);
        }
        body
    }

    fn path(&self) -> String {
        if self.chat {
            format!("{}/chat/completions", self.url)
        } else {
            format!("{}/completions", self.url)
        }
    }

    /// Sends `body` to the endpoint; a response other than 2xx is an error with its text.
    fn post(&self, body: &Value) -> Result<ureq::http::Response<ureq::Body>, String> {
        let r = self
            .http
            .post(self.path())
            .header("Content-Type", "application/json")
            .send(&body.to_string())
            .map_err(|e| format!("{}: {e}", self.path()))?;
        let status = r.status();
        if status.is_success() {
            return Ok(r);
        }
        let text = r.into_body().read_to_string().unwrap_or_default();
        Err(format!(
            "{} answered {status}: {}",
            self.path(),
            text.trim()
        ))
    }

    /// The server's `usage.prompt_tokens` for `text`, from a request for one token (or from
    /// `/tokenize`, with the special tokens a completion adds).
    fn count(&self, text: &str) -> Result<usize, String> {
        if let Some(url) = &self.tokenize {
            let body = json!({ "content": text, "add_special": true }).to_string();
            let r = self
                .http
                .post(url)
                .header("Content-Type", "application/json")
                .send(&body)
                .map_err(|e| format!("{url}: {e}"))?;
            let status = r.status();
            let text = r
                .into_body()
                .read_to_string()
                .map_err(|e| format!("{url}: {e}"))?;
            if !status.is_success() {
                return Err(format!("{url} answered {status}: {}", text.trim()));
            }
            return super::llama_server::token_count(&text);
        }
        let body = self
            .post(&self.body(text, 1, None, false))?
            .into_body()
            .read_to_string()
            .map_err(|e| format!("{}: {e}", self.path()))?;
        Ok(sse::usage_of_response(&body)?.prompt_tokens)
    }

    /// The contract's English text, from its `start`-th word on, cut to the number of words
    /// the server counts as `n` tokens (or the most below it).
    fn calibrate(&self, n: usize, start: usize) -> Result<Calibrated, String> {
        let words: Vec<&str> = FILLER_TEXT.split_whitespace().collect();
        let text_of = |k: usize| -> String {
            (0..k)
                .map(|i| words[(start + i) % words.len()])
                .collect::<Vec<_>>()
                .join(" ")
        };
        // Each word is at least one token, so n words are enough; the search keeps `lo` at a
        // count that fits and `hi` above one that does not.
        let (mut lo, mut lo_tokens) = (0usize, 0usize);
        let mut hi = n.max(1) + 1;
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            let t = self.count(&text_of(mid))?;
            if t <= n {
                (lo, lo_tokens) = (mid, t);
            } else {
                hi = mid;
            }
            if t == n {
                break;
            }
        }
        if lo == 0 {
            return Err(format!(
                "the server counts even a one-word prompt as more than {n} tokens; ask for a \
                 longer prompt"
            ));
        }
        Ok(Calibrated {
            text: text_of(lo),
            tokens: Some(lo_tokens),
        })
    }

    /// One streamed request, timed from just before it is sent.
    fn pass(&self, job: &EngineJob, prompt: &Calibrated) -> Result<PassRecord, String> {
        let body = self.body(&prompt.text, job.n_gen, Some(job), true);
        let start_mono_ns = monotonic_ns();
        let r = self.post(&body)?;
        let reader = BufReader::new(r.into_body().into_reader());
        let stream = read_stream(reader, self.chat)?;
        let first = stream.arrivals.first().copied().ok_or_else(|| {
            format!(
                "the stream ended without generating text (finish reason {:?})",
                stream.finish_reason
            )
        })?;
        let ttft_ns = first.saturating_sub(start_mono_ns);
        let decode_ns: Vec<u64> = stream
            .arrivals
            .windows(2)
            .map(|w| w[1].saturating_sub(w[0]))
            .collect();
        let (prompt_tokens, gen_tokens) = match stream.usage {
            Some(u) => (u.prompt_tokens, u.completion_tokens),
            None => (prompt.tokens.unwrap_or(0), stream.arrivals.len()),
        };
        Ok(PassRecord {
            index: 0,
            warmup: false,
            prompt_tokens,
            gen_tokens,
            tokenize_ns: 0,
            prefill_ns: ttft_ns,
            decode_ns,
            decode_total_ns: None,
            detokenize_ns: 0,
            ttft_ns,
            stop: match stream.finish_reason.as_deref() {
                Some("length") => "length".into(),
                _ => "eos".into(),
            },
            start_mono_ns,
            end_mono_ns: stream.end_mono_ns,
            rss_hwm_bytes: None,
            chat: false,
        })
    }
}

/// A completed stream: when each chunk with text arrived, and what the server said at the end.
#[derive(Debug)]
pub struct Stream {
    pub arrivals: Vec<u64>,
    pub finish_reason: Option<String>,
    pub usage: Option<Usage>,
    pub end_mono_ns: u64,
}

/// Reads a stream to `data: [DONE]`, stamping each chunk with text as its line arrives. A
/// stream that breaks off before its end is an error saying how far it got.
pub fn read_stream(mut reader: impl BufRead, chat: bool) -> Result<Stream, String> {
    let mut s = Stream {
        arrivals: Vec::new(),
        finish_reason: None,
        usage: None,
        end_mono_ns: 0,
    };
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line).map_err(|e| {
            format!(
                "the stream broke off after {} tokens: {e}",
                s.arrivals.len()
            )
        })?;
        let now = monotonic_ns();
        if n == 0 {
            return Err(format!(
                "the stream ended after {} tokens without `data: [DONE]`{}",
                s.arrivals.len(),
                match &s.finish_reason {
                    Some(r) => format!(" (finish reason {r})"),
                    None => " or a finish reason".into(),
                }
            ));
        }
        let Some(payload) = sse::data(&line) else {
            continue;
        };
        let Chunk {
            text,
            finish_reason,
            usage,
            done,
        } = sse::parse(payload, chat)
            .map_err(|e| format!("after {} tokens: {e}", s.arrivals.len()))?;
        if done {
            s.end_mono_ns = now;
            return Ok(s);
        }
        if !text.is_empty() {
            s.arrivals.push(now);
        }
        if finish_reason.is_some() {
            s.finish_reason = finish_reason;
        }
        if usage.is_some() {
            s.usage = usage;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(text: &str) -> Result<Stream, String> {
        read_stream(text.as_bytes(), false)
    }

    #[test]
    fn a_stream_to_done_has_one_arrival_per_text_chunk() {
        let s = stream(
            "data: {\"choices\":[{\"text\":\" The\",\"finish_reason\":null}]}\n\n\
             : keep-alive\n\n\
             data: {\"choices\":[{\"text\":\" end\",\"finish_reason\":\"length\"}]}\n\n\
             data: {\"choices\":[],\"usage\":{\"prompt_tokens\":8,\"completion_tokens\":2}}\n\n\
             data: [DONE]\n\n",
        )
        .unwrap();
        assert_eq!(s.arrivals.len(), 2);
        assert_eq!(s.finish_reason.as_deref(), Some("length"));
        assert_eq!(s.usage.unwrap().prompt_tokens, 8);
        assert!(s.end_mono_ns >= s.arrivals[1]);
    }

    #[test]
    fn a_truncated_stream_is_an_error_saying_how_far_it_got() {
        let e = stream("data: {\"choices\":[{\"text\":\"a\"}]}\n\ndata: {\"choices\":[{\"te")
            .unwrap_err();
        assert!(
            e.contains("after 1 tokens") && e.contains("not JSON"),
            "{e}"
        );
        let e = stream("data: {\"choices\":[{\"text\":\"a\"}]}\n\n").unwrap_err();
        assert!(
            e.contains("ended after 1 tokens without `data: [DONE]`"),
            "{e}"
        );
    }

    #[test]
    fn unsupported_jobs_are_refused() {
        let job: EngineJob =
            serde_json::from_str(r#"{"prompt":{"tokens":8},"n_gen":2,"passes":1,"depth":64}"#)
                .unwrap();
        assert!(refuse_unsupported(&job, "openai")
            .unwrap_err()
            .contains("depth"));
    }
}
