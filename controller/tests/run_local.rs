//! `meltbench run` on the local device, end to end with the real agent and engine on the
//! synthetic model: the run directory's contents, and summary.json recomputed independently
//! from the raw events.

mod common;

use common::meltbench;
use serde_json::Value;
use std::path::Path;

const SUITE: &str = "
name: smoke-test
models:
  - name: synth
scenarios:
  - name: tiny
    prompt_tokens: 16
    new_tokens: 8
  - name: text
    prompt: \"The engineers measured the heat\"
    new_tokens: 4
passes: 12
warmup: 3
cold_start: 2
threads: [2]
";

/// Type-7 percentile, written out again so the test does not share code with the library.
fn pct(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let h = (v.len() - 1) as f64 * p / 100.0;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(v.len() - 1);
    v[lo] + (h - lo as f64) * (v[hi] - v[lo])
}

fn check_dist(summary: &Value, samples: Vec<f64>, what: &str) {
    assert_eq!(
        summary["n"].as_u64().unwrap() as usize,
        samples.len(),
        "{what}: n"
    );
    for (k, p) in [("p50", 50.0), ("p95", 95.0), ("p99", 99.0)] {
        assert_eq!(
            summary[k].as_f64().unwrap(),
            pct(samples.clone(), p),
            "{what}: {k}"
        );
    }
    let mean = samples.iter().sum::<f64>() / samples.len() as f64;
    assert_eq!(summary["mean"].as_f64().unwrap(), mean, "{what}: mean");
}

#[test]
fn local_run_writes_the_run_directory_and_summary_matches_raw_events() {
    let tmp = tempfile::tempdir().unwrap();
    let suite = tmp.path().join("smoke.yaml");
    std::fs::write(&suite, SUITE).unwrap();
    let out = tmp.path().join("runs");
    let o = meltbench(&tmp.path().join("cache"))
        .arg("run")
        .arg(&suite)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        stdout.contains("TTFT ms p50/p95/p99") && stdout.contains("synth/native/tiny/t2/any"),
        "{stdout}"
    );

    let runs: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert!(run
        .file_name()
        .unwrap()
        .to_string_lossy()
        .ends_with("-smoke-test"));
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("run.json")).unwrap()).unwrap();
    assert_eq!(manifest["suite_yaml"].as_str().unwrap(), SUITE);
    assert!(
        manifest["meltbench_commit"].as_str().unwrap().len() >= 7,
        "build provenance recorded"
    );
    assert_eq!(manifest["meltbench_version"], env!("CARGO_PKG_VERSION"));
    assert!(
        manifest["devices"][0]["info"]["cores"].as_u64().unwrap() > 0,
        "device info recorded"
    );
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    let events: Vec<Value> = std::fs::read_to_string(run.join("events/local.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();

    let cells = summary["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 2);
    for cell in cells {
        let id = cell["key"]["id"].as_str().unwrap();
        let mine: Vec<&Value> = events.iter().filter(|e| e["cell"] == id).collect();
        let passes: Vec<&Value> = mine
            .iter()
            .filter(|e| e["event"] == "pass")
            .map(|e| &e["pass"])
            .collect();
        let warm = passes.iter().filter(|p| p["warmup"] == true).count();
        let measured: Vec<&&Value> = passes.iter().filter(|p| p["warmup"] == false).collect();
        assert_eq!(
            (warm, measured.len()),
            (3, 12),
            "{id}: warm-up passes are kept raw and flagged"
        );
        assert_eq!(cell["passes"], 12);
        assert_eq!(cell["warmup_passes"], 3);
        let ns = |v: &Value| v.as_u64().unwrap() as f64;
        check_dist(
            &cell["ttft_ms"],
            measured.iter().map(|p| ns(&p["ttft_ns"]) / 1e6).collect(),
            "ttft",
        );
        check_dist(
            &cell["decode_ms_per_token"],
            measured
                .iter()
                .flat_map(|p| {
                    p["decode_ns"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|d| ns(d) / 1e6)
                })
                .collect(),
            "decode step",
        );
        check_dist(
            &cell["prefill_tokens_per_s"],
            measured
                .iter()
                .map(|p| ns(&p["prompt_tokens"]) / (ns(&p["prefill_ns"]) / 1e9))
                .collect(),
            "prefill rate",
        );
        check_dist(
            &cell["decode_tokens_per_s"],
            measured
                .iter()
                .map(|p| {
                    let d = p["decode_ns"].as_array().unwrap();
                    let total_ns: u64 = d.iter().map(|x| x.as_u64().unwrap()).sum();
                    d.len() as f64 / (total_ns as f64 / 1e9)
                })
                .collect(),
            "decode rate",
        );
        let cold: Vec<f64> = mine
            .iter()
            .filter(|e| e["event"] == "cold_start")
            .map(|e| ns(&e["first_token_ns"]) / 1e6)
            .collect();
        assert_eq!(cold.len(), 2, "{id}: cold starts");
        check_dist(&cell["cold_start_ms"], cold, "cold start");
        let peak = mine
            .iter()
            .filter_map(|e| e["rss_hwm_bytes"].as_u64().or(e["peak_rss_bytes"].as_u64()))
            .max()
            .unwrap();
        assert_eq!(
            cell["peak_rss_bytes"].as_u64().unwrap(),
            peak,
            "{id}: peak RSS"
        );
        assert!(
            peak > 1 << 20,
            "{id}: a peak RSS of {peak} bytes is not believable"
        );
    }
}

/// The engine process of the first cell is killed (SIGKILL) mid-cell: that cell reports a clear
/// error, the next cell still runs, and the passes completed before the kill stay in the run
/// directory and in the summary.
#[test]
fn killing_the_engine_fails_only_its_cell_and_keeps_completed_passes() {
    let tmp = tempfile::tempdir().unwrap();
    let suite = tmp.path().join("kill.yaml");
    std::fs::write(
        &suite,
        "name: kill-test\nmodels:\n  - name: synth\nscenarios:\n  - name: long\n    prompt_tokens: 64\n    new_tokens: 64\n  - name: short\n    prompt_tokens: 8\n    new_tokens: 4\npasses: 400\nwarmup: 1\ncold_start: 0\nthreads: [1]\n",
    )
    .unwrap();
    let cache = tmp.path().join("cache");
    let out = tmp.path().join("runs");
    let child = meltbench(&cache)
        .arg("run")
        .arg(&suite)
        .arg("--out")
        .arg(&out)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let mut killed = None;
    while killed.is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
        let log = std::fs::read_dir(&out)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| std::fs::read_to_string(e.ok()?.path().join("events/local.jsonl")).ok())
            .unwrap_or_default();
        let passes = log
            .lines()
            .filter(|l| l.contains("\"event\":\"pass\"") && l.contains("/long/"))
            .count();
        if passes >= 6 {
            killed = engine_pid(&cache).inspect(|&pid| {
                // SAFETY: plain kill(2) on a pid we just found running our engine.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            });
        }
    }
    assert!(
        killed.is_some(),
        "never saw the first cell's engine running"
    );
    let o = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(1),
        "a failed cell fails the run: {stderr}"
    );
    assert!(
        stderr.contains("synth/native/long/t1/any") && stderr.contains("SIGKILL"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("failed: device"),
        "a failed cell is not a failed device: {stderr}"
    );
    let run = std::fs::read_dir(&out)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    let cells = summary["cells"].as_array().unwrap();
    let (long, short) = (&cells[0], &cells[1]);
    assert!(
        long["error"].as_str().unwrap().contains("SIGKILL"),
        "{long}"
    );
    let kept = long["passes"].as_u64().unwrap();
    assert!(
        (5..400).contains(&kept),
        "passes completed before the kill stay: {kept}"
    );
    assert!(short["error"].is_null(), "the next cell runs: {short}");
    assert_eq!(short["passes"], 400);
    let log = std::fs::read_to_string(run.join("events/local.jsonl")).unwrap();
    let raw = log
        .lines()
        .filter(|l| {
            l.contains("\"event\":\"pass\"")
                && l.contains("/long/")
                && l.contains("\"warmup\":false")
        })
        .count();
    assert_eq!(
        raw as u64, kept,
        "the raw log holds exactly the passes the summary counts"
    );
}

/// The pid of a running `meltbench-engine bench` whose model lives in `cache`.
fn engine_pid(cache: &Path) -> Option<i32> {
    let needle = cache.to_string_lossy().into_owned();
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains("meltbench-engine") && cmd.contains(" bench ") && cmd.contains(&needle) {
            return Some(pid);
        }
    }
    None
}

/// `--resume` refuses what it cannot resume honestly (exit 2, saying why), and finds nothing
/// missing in a complete run.
#[test]
fn resume_refuses_a_changed_suite_and_finds_nothing_missing_in_a_complete_run() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let run = common::run_suite(&cache, tmp.path(), "r", SUITE);
    let resume = |dir: &Path| {
        meltbench(&cache)
            .arg("run")
            .arg("--resume")
            .arg(dir)
            .output()
            .unwrap()
    };

    let o = resume(&tmp.path().join("no-such-run"));
    assert_eq!(o.status.code(), Some(2), "{}", common::text(&o));
    assert!(
        common::text(&o).contains("cannot resume"),
        "{}",
        common::text(&o)
    );

    let suite = tmp.path().join("r.yaml");
    std::fs::write(&suite, SUITE.replace("passes: 12", "passes: 13")).unwrap();
    let o = resume(&run);
    assert_eq!(o.status.code(), Some(2), "{}", common::text(&o));
    assert!(
        common::text(&o).contains("changed since the run started"),
        "{}",
        common::text(&o)
    );

    std::fs::write(&suite, SUITE).unwrap();
    let before = std::fs::read(run.join("events").join("local.jsonl")).unwrap();
    let o = resume(&run);
    assert!(o.status.success(), "{}", common::text(&o));
    assert!(
        common::text(&o).contains("local: nothing missing"),
        "{}",
        common::text(&o)
    );
    assert_eq!(
        std::fs::read(run.join("events").join("local.jsonl")).unwrap(),
        before,
        "a complete run's log is left as it was"
    );
}
