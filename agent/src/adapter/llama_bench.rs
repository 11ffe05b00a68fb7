//! What `llama-bench` prints, read into the bench contract's records: the adapter's fallback for
//! a device whose llama.cpp build has no `llama-server`.
//!
//! The adapter runs one `-pg P,G-1` test (P prompt tokens, then the G-1 tokens after the first,
//! one at a time: a pass of the contract) with `--progress`, so each repetition is bracketed by
//! lines on stderr: `prompt run R/N` right before its timer starts and `generation run R/N` when
//! the prompt is done. A pass's start is the arrival of its `prompt run` line, its prefill the
//! time from there to its `generation run` line, and its whole length llama-bench's own sample
//! (`samples_ns`, from `-o jsonl`); the decode is the rest, known only as a whole. What
//! llama-bench does not do is not measured: it tokenizes nothing (its prompt is random token
//! ids) and picks no tokens.
//!
//! [`run`] is the route; the functions after it read llama-bench's output and are tested on
//! output captured from a real llama-bench.

use super::emit;
use super::openai::server_load;
use super::tool_process::{log_tail, tool_command};
use crate::telemetry::sampler::monotonic_ns;
use meltbench_protocol::engine::{
    DoneRecord, EngineJob, EngineRecord, LoadRecord, PassRecord, Prompt,
};
use serde_json::Value;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Stdio};

/// The tool's name in a build.
pub const BENCH: &str = "llama-bench";

/// Runs the job through llama-bench (one process for the session's warm-ups and passes) and
/// writes its records once it has exited: its samples come at the end, and the progress lines
/// its stderr carried place them in time.
pub(super) fn run(
    dir: &Path,
    model_path: &str,
    job: &EngineJob,
    extra: &[String],
    here: &Path,
    start_mono_ns: u64,
    out: &mut dyn Write,
) -> Result<(), String> {
    refuse_unsupported(job)?;
    let program = dir.join(BENCH);
    if !program.is_file() {
        return Err(format!(
            "{} does not exist: give a llama.cpp build with llama-bench \
             (cmake --build build --target llama-bench)",
            program.display()
        ));
    }
    let log = here.join(format!("llama-bench-{}.log", std::process::id()));
    let mut cmd = tool_command(&program, dir);
    cmd.args(["-m", model_path])
        .args(job_args(job))
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
    let pid = child.id();
    let stderr = child.stderr.take().expect("stderr is piped");
    let log_file =
        std::fs::File::create(&log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let progress = std::thread::spawn(move || stamp_progress(stderr, log_file));
    let mut stdout = String::new();
    let read = child
        .stdout
        .take()
        .expect("stdout is piped")
        .read_to_string(&mut stdout);
    let progress = progress.join().unwrap_or_default();
    let (status, peak_rss) = wait_with_peak(child)?;
    if !status.success() {
        return Err(format!("llama-bench exited ({status}){}", log_tail(&log)));
    }
    read.map_err(|e| format!("cannot read llama-bench's output: {e}"))?;
    let test = the_test(&stdout, job)?;
    let passes = passes(job, &test, &progress, peak_rss)?;
    let load = LoadRecord {
        engine_version: test.engine_version(),
        architecture: test.architecture(),
        dtype: test.dtype(),
        n_params: test.model_n_params,
        threads: test.n_threads,
        kernels: std::iter::once(BENCH.to_string())
            .chain(extra.iter().cloned())
            .collect::<Vec<_>>()
            .join(" "),
        memory_of: Some(format!("{BENCH} (pid {pid})")),
        end_mono_ns: ready_at(&progress).unwrap_or(start_mono_ns),
        unmeasured: ["tokenize_ns", "detokenize_ns", "decode_ns"]
            .map(String::from)
            .to_vec(),
        ..server_load(model_path, start_mono_ns, 0)
    };
    emit(out, &EngineRecord::Load(load))?;
    for pass in passes {
        emit(out, &EngineRecord::Pass(pass))?;
    }
    emit(
        out,
        &EngineRecord::Done(DoneRecord {
            passes: job.passes,
            warmup: job.warmup,
            peak_rss_bytes: peak_rss,
        }),
    )
}

/// Reads llama-bench's stderr to its end, copying it to `log` and stamping each progress line
/// with CLOCK_MONOTONIC on arrival.
fn stamp_progress(stderr: impl Read, mut log: std::fs::File) -> Vec<Progress> {
    let mut lines = std::io::BufReader::new(stderr);
    let mut progress = Vec::new();
    let mut line = Vec::new();
    while matches!(std::io::BufRead::read_until(&mut lines, b'\n', &mut line), Ok(n) if n > 0) {
        let at_ns = monotonic_ns();
        let _ = log.write_all(&line);
        if let Some((step, rep)) = progress_line(&String::from_utf8_lossy(&line)) {
            progress.push(Progress { at_ns, step, rep });
        }
        line.clear();
    }
    progress
}

/// Waits for `child` to exit; its status and its peak resident set (the kernel's `ru_maxrss`,
/// the VmHWM it had), which the passes report since the process is gone when they are written.
fn wait_with_peak(child: Child) -> Result<(std::process::ExitStatus, Option<u64>), String> {
    use std::os::unix::process::ExitStatusExt;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // Safety: `status` and `usage` outlive the call; `pid` is our unreaped child.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(format!("cannot wait for llama-bench: {e}"));
        }
    }
    // Reaped: dropping the handle neither waits nor kills.
    drop(child);
    let peak = (usage.ru_maxrss > 0).then(|| usage.ru_maxrss as u64 * 1024);
    Ok((std::process::ExitStatus::from_raw(status), peak))
}

/// One step of a repetition, as `--progress` announces it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Filling the KV cache to the test's depth (not timed).
    Depth,
    /// The prompt, first in the timed part.
    Prompt,
    /// The tokens after the prompt.
    Generation,
}

/// A progress line: its step and repetition (1-based), with the CLOCK_MONOTONIC stamp of its
/// arrival.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    pub at_ns: u64,
    pub step: Step,
    pub rep: usize,
}

/// The fields of a `-o jsonl` test line the adapter reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BenchTest {
    pub build_commit: String,
    pub build_number: i64,
    /// `llama 256M Q4_1`: architecture, size, file type.
    pub model_type: String,
    pub model_n_params: u64,
    pub n_threads: usize,
    pub n_prompt: usize,
    pub n_gen: usize,
    pub n_depth: usize,
    /// Each repetition's timed part, in order.
    pub samples_ns: Vec<u64>,
}

impl BenchTest {
    /// `llama.cpp b7000-0c1e570`, as llama-server's `build_info` spells it.
    pub fn engine_version(&self) -> String {
        format!("llama.cpp b{}-{}", self.build_number, self.build_commit)
    }

    /// The file type, the last word of `model_type` (`Q4_1`).
    pub fn dtype(&self) -> String {
        self.model_type
            .split_whitespace()
            .last()
            .unwrap_or("unknown")
            .to_string()
    }

    /// The architecture, the first word of `model_type` (`llama`).
    pub fn architecture(&self) -> String {
        self.model_type
            .split_whitespace()
            .next()
            .unwrap_or("unknown")
            .to_string()
    }
}

/// A progress line's step and repetition, or `None` for any other line (warm-ups, `starting`,
/// llama.cpp's log).
pub fn progress_line(line: &str) -> Option<(Step, usize)> {
    let rest = line.trim().strip_prefix("llama-bench: benchmark ")?;
    let (_, what) = rest.split_once(": ")?;
    let (step, count) = [
        ("depth run ", Step::Depth),
        ("prompt run ", Step::Prompt),
        ("generation run ", Step::Generation),
    ]
    .into_iter()
    .find_map(|(prefix, step)| what.strip_prefix(prefix).map(|c| (step, c)))?;
    let (rep, _) = count.split_once('/')?;
    rep.parse().ok().filter(|r| *r > 0).map(|r| (step, r))
}

/// One line of `llama-bench -o jsonl`; an error names the field that is missing or wrong.
pub fn test_line(line: &str) -> Result<BenchTest, String> {
    let v: Value = serde_json::from_str(line)
        .map_err(|e| format!("llama-bench printed a line that is not JSON ({e}): {line:.200}"))?;
    let text = |name: &str| -> Result<String, String> {
        v.get(name)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| format!("llama-bench's test has no text `{name}`"))
    };
    let count = |name: &str| -> Result<u64, String> {
        v.get(name)
            .and_then(Value::as_u64)
            .ok_or_else(|| format!("llama-bench's test has no count `{name}`"))
    };
    let samples = v
        .get("samples_ns")
        .and_then(Value::as_array)
        .ok_or("llama-bench's test has no list `samples_ns`")?
        .iter()
        .map(|s| {
            s.as_u64()
                .ok_or_else(|| format!("llama-bench's `samples_ns` holds {s}, not nanoseconds"))
        })
        .collect::<Result<Vec<u64>, String>>()?;
    Ok(BenchTest {
        build_commit: text("build_commit")?,
        build_number: v
            .get("build_number")
            .and_then(Value::as_i64)
            .ok_or("llama-bench's test has no integer `build_number`")?,
        model_type: text("model_type")?,
        model_n_params: count("model_n_params")?,
        n_threads: count("n_threads")? as usize,
        n_prompt: count("n_prompt")? as usize,
        n_gen: count("n_gen")? as usize,
        n_depth: count("n_depth")? as usize,
        samples_ns: samples,
    })
}

/// What a job asks that llama-bench cannot do; failing says so, instead of measuring something
/// else under the cell's name.
pub fn refuse_unsupported(job: &EngineJob) -> Result<(), String> {
    let why = if !matches!(job.prompt, Prompt::Tokens(_)) {
        "prefills random token ids, so the prompt must be a count (`prompt: {tokens: N}`)"
    } else if job.chat {
        "has no chat template: leave `chat` out for this engine"
    } else if !job.ignore_eos {
        "never stops at an end-of-generation token: leave `ignore_eos` at true"
    } else if job.kernels.is_some() {
        "cannot choose kernels: the build and its args decide"
    } else if job.n_gen == 0 {
        "needs at least one generated token (`n_gen`)"
    } else if job.passes == 0 {
        "needs at least one pass"
    } else {
        return Ok(());
    };
    Err(format!(
        "the llama.cpp engine runs llama-bench here, which {why}"
    ))
}

/// The words that make llama-bench run `job` as one test: `-pg P,G-1` at the job's depth,
/// warm-ups and passes as repetitions (its own warm-up off: the job's warm-ups are those).
pub fn job_args(job: &EngineJob) -> Vec<String> {
    let prompt = prompt_tokens(job);
    let mut args: Vec<String> = [
        "-p",
        "0",
        "-n",
        "0",
        "-pg",
        &format!("{prompt},{}", job.n_gen.saturating_sub(1)),
        "-d",
        &job.depth.to_string(),
        "-r",
        &(job.warmup + job.passes).to_string(),
        "--no-warmup",
        "--progress",
        "-o",
        "jsonl",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(t) = job.threads {
        args.extend(["-t".to_string(), t.to_string()]);
    }
    args
}

/// The prompt's length; a text prompt is refused before llama-bench runs.
fn prompt_tokens(job: &EngineJob) -> usize {
    match job.prompt {
        Prompt::Tokens(n) => n,
        Prompt::Text(_) => 0,
    }
}

/// The one test llama-bench printed for `job`, checked against what the job asked (words in
/// the suite's `args` can add tests or change the repetitions).
pub fn the_test(stdout: &str, job: &EngineJob) -> Result<BenchTest, String> {
    let tests = stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(test_line)
        .collect::<Result<Vec<_>, _>>()?;
    let [test] = <[BenchTest; 1]>::try_from(tests).map_err(|t| {
        format!(
            "llama-bench printed {} tests, the adapter asked for one: the engine's args must \
             not add tests (-p, -n, -pg, -d)",
            t.len()
        )
    })?;
    let prompt = prompt_tokens(job);
    let asked = (
        prompt,
        job.n_gen.saturating_sub(1),
        job.depth,
        job.warmup + job.passes,
    );
    let ran = (
        test.n_prompt,
        test.n_gen,
        test.n_depth,
        test.samples_ns.len(),
    );
    if asked != ran {
        return Err(format!(
            "llama-bench ran (prompt, generated, depth, repetitions) = {ran:?}, the job asked \
             for {asked:?}: the engine's args must not set -p, -n, -pg, -d or -r"
        ));
    }
    Ok(test)
}

/// The passes of `test`, placed in time by the progress lines; each carries `peak_rss`, the
/// memory figure the adapter has for llama-bench.
pub fn passes(
    job: &EngineJob,
    test: &BenchTest,
    progress: &[Progress],
    peak_rss: Option<u64>,
) -> Result<Vec<PassRecord>, String> {
    let at = |step: Step, rep: usize| {
        progress
            .iter()
            .find(|p| p.step == step && p.rep == rep)
            .map(|p| p.at_ns)
            .ok_or_else(|| {
                format!(
                    "llama-bench announced no {step:?} step of repetition {rep} on stderr (is \
                     this build's llama-bench too old for --progress?)"
                )
            })
    };
    let decodes = test.n_gen > 0;
    let mut out = Vec::with_capacity(test.samples_ns.len());
    for (i, &sample) in test.samples_ns.iter().enumerate() {
        let start = at(Step::Prompt, i + 1)?;
        let prefill_ns = if decodes {
            at(Step::Generation, i + 1)?
                .saturating_sub(start)
                .min(sample)
        } else {
            sample
        };
        out.push(PassRecord {
            index: i,
            warmup: i < job.warmup,
            prompt_tokens: test.n_prompt,
            gen_tokens: test.n_gen + 1,
            tokenize_ns: 0,
            prefill_ns,
            decode_ns: Vec::new(),
            decode_total_ns: decodes.then(|| sample - prefill_ns),
            detokenize_ns: 0,
            ttft_ns: prefill_ns,
            stop: "length".into(),
            start_mono_ns: start,
            end_mono_ns: start.saturating_add(sample),
            rss_hwm_bytes: peak_rss,
            chat: false,
        });
    }
    Ok(out)
}

/// When the model was ready: the arrival of the first repetition's first line.
pub fn ready_at(progress: &[Progress]) -> Option<u64> {
    progress
        .iter()
        .find(|p| p.rep == 1 && matches!(p.step, Step::Depth | Step::Prompt))
        .map(|p| p.at_ns)
}
