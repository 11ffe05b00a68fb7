//! The `llama.cpp` adapter's llama-bench route on output captured from a real llama-bench (see
//! `fixtures/llama-bench/README.md` for the commit and the commands): the passes it makes of a
//! session and a cold start, and an error naming what is wrong — never a panic or a zero — for
//! output cut short or changed.

use meltbench_agent::adapter::llama_bench::{
    job_args, passes, progress_line, ready_at, refuse_unsupported, test_line, the_test, Progress,
    Step,
};
use meltbench_protocol::engine::EngineJob;
use std::path::PathBuf;

fn fixture(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/llama-bench")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn job(text: &str) -> EngineJob {
    serde_json::from_str(text).unwrap()
}

/// The job `session.*` ran.
fn session_job() -> EngineJob {
    job(r#"{"prompt":{"tokens":32},"n_gen":5,"passes":2,"warmup":1,"threads":1,"depth":8}"#)
}

/// The progress lines of `stderr`, the n-th arriving at `1_000 + 100 * n` ms.
fn arrivals(stderr: &str) -> Vec<Progress> {
    stderr
        .lines()
        .enumerate()
        .filter_map(|(n, l)| {
            progress_line(l).map(|(step, rep)| Progress {
                at_ns: (1_000 + 100 * n as u64) * 1_000_000,
                step,
                rep,
            })
        })
        .collect()
}

#[test]
fn the_adapter_asks_for_the_command_the_fixture_ran() {
    let args = job_args(&session_job()).join(" ");
    assert_eq!(
        args,
        "-p 0 -n 0 -pg 32,4 -d 8 -r 3 --no-warmup --progress -o jsonl -t 1"
    );
}

#[test]
fn a_session_gives_one_pass_per_repetition_placed_by_its_progress_lines() {
    let job = session_job();
    let test = the_test(&fixture("session.jsonl"), &job).unwrap();
    assert_eq!(test.engine_version(), "llama.cpp b0-unknown");
    assert_eq!(
        (test.architecture(), test.dtype()),
        ("llama".into(), "Q4_1".into())
    );
    assert_eq!((test.model_n_params, test.n_threads), (134_515_008, 1));
    let progress = arrivals(&fixture("session.stderr"));
    assert_eq!(
        progress.len(),
        9,
        "depth, prompt and generation of 3 repetitions"
    );
    // The depth line of the first repetition (line 1) says the model is ready.
    assert_eq!(ready_at(&progress), Some(1_100_000_000));
    let p = passes(&job, &test, &progress, Some(132_485_120)).unwrap();
    assert_eq!(p.len(), 3);
    assert_eq!(
        p.iter().map(|p| p.warmup).collect::<Vec<_>>(),
        [true, false, false]
    );
    for (i, pass) in p.iter().enumerate() {
        let sample = test.samples_ns[i];
        // Prompt line at 1_000 + 100 * (2 + 3i) ms, generation line 100 ms later.
        let start = (1_000 + 100 * (2 + 3 * i as u64)) * 1_000_000;
        assert_eq!(pass.start_mono_ns, start);
        assert_eq!(pass.end_mono_ns, start + sample);
        assert_eq!(pass.prefill_ns, 100_000_000.min(sample));
        assert_eq!(pass.ttft_ns, pass.prefill_ns);
        assert_eq!(pass.decode_total_ns, Some(sample - pass.prefill_ns));
        assert!(pass.decode_ns.is_empty(), "no per-token times are invented");
        assert_eq!((pass.prompt_tokens, pass.gen_tokens), (32, 5));
        assert_eq!(pass.rss_hwm_bytes, Some(132_485_120));
        assert_eq!((pass.tokenize_ns, pass.detokenize_ns), (0, 0));
    }
}

#[test]
fn a_cold_start_is_its_prefill_alone() {
    let job = job(r#"{"prompt":{"tokens":32},"n_gen":1,"passes":1,"threads":1}"#);
    let test = the_test(&fixture("cold-start.jsonl"), &job).unwrap();
    let progress = arrivals(&fixture("cold-start.stderr"));
    let p = passes(&job, &test, &progress, None).unwrap();
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].prefill_ns, test.samples_ns[0]);
    assert_eq!(p[0].decode_total_ns, None);
    assert_eq!(p[0].gen_tokens, 1);
    assert_eq!(ready_at(&progress), Some(p[0].start_mono_ns));
}

#[test]
fn other_lines_on_stderr_are_not_progress() {
    for line in [
        "llama-bench: benchmark 1/1: starting",
        "llama-bench: benchmark 1/1: warmup prompt run",
        "llama_bench: error: failed to load model '/no/model.gguf'",
        "llama-bench: benchmark 1/1: prompt run x/3",
        "llama-bench: benchmark 1/1: prompt run 0/3",
        "",
    ] {
        assert_eq!(progress_line(line), None, "{line:?}");
    }
    assert_eq!(
        progress_line("llama-bench: benchmark 2/4: depth run 3/5 (cached)\n"),
        Some((Step::Depth, 3))
    );
}

#[test]
fn output_cut_short_or_changed_is_an_error_naming_the_field() {
    let job = session_job();
    let line = fixture("session.jsonl");
    let e = the_test(&line[..line.len() / 2], &job).unwrap_err();
    assert!(e.contains("not JSON"), "{e}");
    for (from, to, want) in [
        (
            "\"n_prompt\": 32",
            "\"n_prompt\": \"32\"",
            "no count `n_prompt`",
        ),
        (
            "\"build_commit\": \"unknown\"",
            "\"build_commit\": 7",
            "no text `build_commit`",
        ),
        (
            "\"samples_ns\": [",
            "\"samples_ns\": [ \"x\",",
            "`samples_ns` holds \"x\"",
        ),
        ("\"samples_ns\"", "\"samples\"", "no list `samples_ns`"),
        ("\"n_depth\": 8", "\"n_depth\": -8", "no count `n_depth`"),
    ] {
        assert!(line.contains(from), "{from}");
        let e = test_line(&line.replace(from, to)).unwrap_err();
        assert!(e.contains(want), "{want:?} not in {e}");
    }
    // Args that add a test or change the repetitions.
    let e = the_test(&format!("{line}{line}"), &job).unwrap_err();
    assert!(e.contains("printed 2 tests"), "{e}");
    let e = the_test("", &job).unwrap_err();
    assert!(e.contains("printed 0 tests"), "{e}");
    let more = job_with_passes(3);
    let e = the_test(&line, &more).unwrap_err();
    assert!(e.contains("must not set -p, -n, -pg, -d or -r"), "{e}");
    // A progress line missing (stderr cut short): which one.
    let test = the_test(&line, &job).unwrap();
    let stderr = fixture("session.stderr");
    let cut: String = stderr.lines().take(7).map(|l| format!("{l}\n")).collect();
    let e = passes(&job, &test, &arrivals(&cut), None).unwrap_err();
    assert!(e.contains("no Prompt step of repetition 3"), "{e}");
}

fn job_with_passes(n: usize) -> EngineJob {
    let mut j = session_job();
    j.passes = n;
    j
}

#[test]
fn what_llama_bench_cannot_do_is_refused() {
    for (text, want) in [
        (
            r#"{"prompt":{"text":"Hi"},"n_gen":4,"passes":1}"#,
            "prompt must be a count",
        ),
        (
            r#"{"prompt":{"tokens":8},"n_gen":4,"passes":1,"chat":true}"#,
            "no chat template",
        ),
        (
            r#"{"prompt":{"tokens":8},"n_gen":4,"passes":1,"ignore_eos":false}"#,
            "never stops at an end-of-generation",
        ),
        (
            r#"{"prompt":{"tokens":8},"n_gen":0,"passes":1}"#,
            "at least one generated",
        ),
    ] {
        let e = refuse_unsupported(&job(text)).unwrap_err();
        assert!(e.contains(want), "{want:?} not in {e}");
    }
    assert!(refuse_unsupported(&session_job()).is_ok());
}
