//! A real A/B on this machine: the ci-smoke suite with SmolLM2 at 2 threads (A) against
//! 1 thread (B), one session per run, runs interleaved A B B A A B B A A B B A so that drift in the
//! machine lands on both arms. The gate must FAIL B on decode latency (one thread is about
//! 1.6x slower per token here), and must not FAIL A against A.
//!
//! ci-smoke's own synthetic model is too small for this (a 64-wide, 2-layer model decodes in
//! about 25 us per token at 1 and at 2 threads alike), so the suite runs the real model.
//! nextest runs this test alone (.config/nextest.toml): other tests on the same two cores would
//! be part of what it measures.

mod common;

use common::{meltbench, run_suite, smollm2, text};
use serde_json::Value;
use std::path::PathBuf;

const CI_SMOKE: &str = include_str!("../../suites/ci-smoke.yaml");

fn suite(model: &str, threads: usize) -> String {
    let s = CI_SMOKE
        .replace("  - name: synth", &format!("  - name: {model}"))
        .replace("cold_start: 2", "cold_start: 0")
        .replace("passes: 10", "passes: 20");
    assert!(
        s.contains(model) && s.contains("passes: 20"),
        "ci-smoke changed shape: {s}"
    );
    format!("{s}\nthreads: [{threads}]\nsessions: 1\n")
}

/// One line per gated metric, for the test's output.
fn print_rows(json: &Value) {
    for r in json["rows"].as_array().unwrap() {
        println!(
            "  {:<22} {:>7.3} [{:.3}, {:.3}] {}",
            r["metric"].as_str().unwrap(),
            r["ratio"].as_f64().unwrap(),
            r["ci_low"].as_f64().unwrap(),
            r["ci_high"].as_f64().unwrap(),
            r["verdict"].as_str().unwrap()
        );
    }
}

fn rows_with(json: &Value, verdict: &str) -> Vec<String> {
    json["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["verdict"] == verdict)
        .map(|r| r["metric"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn two_threads_against_one_fails_on_decode_latency_and_a_against_a_does_not() {
    let Some(model) = smollm2() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let (mut a, mut b): (Vec<PathBuf>, Vec<PathBuf>) = (Vec::new(), Vec::new());
    for (i, arm) in "ABBAABBAABBA".chars().enumerate() {
        let threads = if arm == 'A' { 2 } else { 1 };
        let dir = run_suite(
            &cache,
            tmp.path(),
            &format!("{i}-{arm}"),
            &suite(&model.display().to_string(), threads),
        );
        if arm == 'A' {
            a.push(dir)
        } else {
            b.push(dir)
        }
    }
    let join = |v: &[PathBuf]| {
        v.iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let gate = |cand: &[PathBuf], base: &[PathBuf], extra: &[&str]| {
        let o = meltbench(&cache)
            .arg("gate")
            .args(cand)
            .arg("--baseline")
            .arg(join(base))
            .args(["--json", "-"])
            .args(extra)
            .output()
            .unwrap();
        eprintln!("{}", String::from_utf8_lossy(&o.stderr));
        let json: Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("gate --json -: {e}\n{}", text(&o)));
        (o.status.code(), json)
    };

    let (code, json) = gate(&b, &a, &["--ignore-key", "threads"]);
    println!("A/B (6 sessions each): exit {code:?}, {}", json["headline"]);
    print_rows(&json);
    assert_eq!(code, Some(1), "{json:#}");
    let failed = rows_with(&json, "fail");
    assert!(
        failed.iter().any(|m| m == "decode_p95"),
        "decode latency must FAIL: {json:#}"
    );

    // A against A: alternate A runs on each side.
    let odd: Vec<PathBuf> = a.iter().skip(1).step_by(2).cloned().collect();
    let even: Vec<PathBuf> = a.iter().step_by(2).cloned().collect();
    let (code, json) = gate(&odd, &even, &[]);
    println!("A/A (3 sessions each): exit {code:?}, {}", json["headline"]);
    print_rows(&json);
    assert_ne!(code, Some(1), "{json:#}");
    assert!(rows_with(&json, "fail").is_empty(), "{json:#}");
}
