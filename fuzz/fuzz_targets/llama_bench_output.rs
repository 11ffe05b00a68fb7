//! What llama-bench prints the agent's `llama.cpp` adapter: text as its `-o jsonl` test lines
//! and as its `--progress` lines on stderr, read into passes or refused with an error, never a
//! panic; every pass it makes ends after it starts, and its prefill and decode fit in it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meltbench_agent::adapter::llama_bench::{passes, progress_line, the_test, Progress};
use meltbench_protocol::engine::EngineJob;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Lines opening with `{` are stdout, the rest stderr; progress lines get arrival times
    // 1 ms apart, as they come.
    let stdout: String = text
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| format!("{l}\n"))
        .collect();
    let progress: Vec<Progress> = text
        .lines()
        .enumerate()
        .filter_map(|(n, l)| {
            progress_line(l).map(|(step, rep)| Progress {
                at_ns: n as u64 * 1_000_000,
                step,
                rep,
            })
        })
        .collect();
    let job: EngineJob =
        serde_json::from_str(r#"{"prompt":{"tokens":32},"n_gen":5,"passes":2,"warmup":1,"depth":8}"#)
            .expect("a valid job");
    let Ok(test) = the_test(&stdout, &job) else {
        return;
    };
    if let Ok(ps) = passes(&job, &test, &progress, None) {
        for p in ps {
            assert!(p.end_mono_ns >= p.start_mono_ns);
            let whole = p.end_mono_ns - p.start_mono_ns;
            assert!(p.prefill_ns + p.decode_total_ns.unwrap_or(0) <= whole);
        }
    }
});
