//! `meltbench gate` and `meltbench report` on real run directories: one ci-smoke run of the
//! synthetic model, and copies of it edited the way real differences look (a slower build, a
//! different model file, a hostile device name), so every verdict is known in advance.

mod common;

use common::{meltbench, run_suite, text};
use serde_json::Value;
use std::path::{Path, PathBuf};

const CI_SMOKE: &str = include_str!("../../suites/ci-smoke.yaml");

/// Copies run directory `src` to `dst`, letting `manifest` edit `run.json` and `event` edit
/// every event line; `rename` maps device names (the event log's file name follows).
fn derive_run(
    src: &Path,
    dst: &Path,
    manifest: impl Fn(&mut Value),
    event: impl Fn(&mut Value),
    rename: impl Fn(&str) -> String,
) {
    std::fs::create_dir_all(dst.join("events")).unwrap();
    let mut m: Value =
        serde_json::from_slice(&std::fs::read(src.join("run.json")).unwrap()).unwrap();
    m["run_id"] = Value::String(dst.file_name().unwrap().to_string_lossy().into());
    for d in m["devices"].as_array_mut().unwrap() {
        d["name"] = Value::String(rename(d["name"].as_str().unwrap()));
    }
    for c in m["cells"].as_array_mut().unwrap() {
        c["device"] = Value::String(rename(c["device"].as_str().unwrap()));
    }
    manifest(&mut m);
    std::fs::write(dst.join("run.json"), serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    for e in std::fs::read_dir(src.join("events")).unwrap() {
        let p = e.unwrap().path();
        let device = p.file_stem().unwrap().to_string_lossy().to_string();
        let mut out = String::new();
        for line in std::fs::read_to_string(&p).unwrap().lines() {
            let mut v: Value = serde_json::from_str(line).unwrap();
            event(&mut v);
            out.push_str(&serde_json::to_string(&v).unwrap());
            out.push('\n');
        }
        std::fs::write(
            dst.join("events")
                .join(format!("{}.jsonl", rename(&device))),
            out,
        )
        .unwrap();
    }
}

/// Multiplies every duration of every pass by `f`: the same work, `f` times slower.
fn slower(f: f64) -> impl Fn(&mut Value) {
    move |v: &mut Value| {
        if v["event"] != "pass" {
            return;
        }
        let p = &mut v["pass"];
        for k in ["tokenize_ns", "prefill_ns", "detokenize_ns", "ttft_ns"] {
            p[k] = Value::from((p[k].as_f64().unwrap() * f).round() as u64);
        }
        for d in p["decode_ns"].as_array_mut().unwrap() {
            *d = Value::from((d.as_f64().unwrap() * f).round() as u64);
        }
    }
}

/// Copies run directory `src` to `dst` with every session's passes replaced by the first
/// session's, each duration held within [`TAIL`] of that session's median for its field. The
/// real run's sessions, and the passes within one, differ by whatever else the machine was
/// doing: under a parallel test run a few preempted passes can be twenty times the median, and
/// then a p95 resampled from 100 passes spans more than the 4x these tests inject. With that
/// spread bounded, every resampled quantile lies within `TAIL` of the median on both sides, so
/// a copy scaled by 4x (or 0.25x) is certain to be told apart and these tests check the gate's
/// logic and outputs. How the gate copes with noisy sessions is tested in `gate_statistics`
/// (known truth) and `gate_ab` (a real A/B run alone on the machine).
fn steady_copy(src: &Path, dst: &Path) {
    derive_run(src, dst, |_| {}, |_| {}, keep);
    for e in std::fs::read_dir(dst.join("events")).unwrap() {
        let p = e.unwrap().path();
        let mut kept = String::new();
        let mut first_session: Vec<Value> = Vec::new();
        let mut sessions = std::collections::BTreeSet::new();
        for line in std::fs::read_to_string(&p).unwrap().lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            if v["event"] == "pass" {
                let s = v["session"].as_u64().unwrap_or(0);
                sessions.insert(s);
                if s == 0 {
                    first_session.push(v);
                }
                continue;
            }
            kept.push_str(line);
            kept.push('\n');
        }
        let mut cells: Vec<Value> = first_session.iter().map(|v| v["cell"].clone()).collect();
        cells.sort_by_key(|c| c.to_string());
        cells.dedup();
        for cell in cells {
            let mut passes: Vec<Value> = first_session
                .iter()
                .filter(|v| v["cell"] == cell)
                .cloned()
                .collect();
            bound_tail(&mut passes);
            let mut bounded = passes.into_iter();
            for v in first_session.iter_mut().filter(|v| v["cell"] == cell) {
                *v = bounded.next().unwrap();
            }
        }
        for v in &first_session {
            kept.push_str(&serde_json::to_string(v).unwrap());
            kept.push('\n');
        }
        for s in sessions.into_iter().filter(|&s| s != 0) {
            for v in &first_session {
                let mut v = v.clone();
                v["session"] = Value::from(s);
                kept.push_str(&serde_json::to_string(&v).unwrap());
                kept.push('\n');
            }
        }
        std::fs::write(&p, kept).unwrap();
    }
}

/// How far from its session median a duration of the steady copy may lie (see `steady_copy`):
/// worst case a resampled 0.25x copy measures 0.25 * 1.25 / 0.8 = 0.39 of the baseline, and a
/// 4x copy 4 * 0.8 / 1.25 = 2.56, both far outside the 10% budget.
const TAIL: (f64, f64) = (0.8, 1.25);

/// Holds every duration of `passes` within [`TAIL`] of the median of its field (decode steps
/// against the median step) for the passes of one cell, keeping `ttft_ns = tokenize_ns + prefill_ns`.
fn bound_tail(passes: &mut [Value]) {
    fn median(mut v: Vec<f64>) -> f64 {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }
    let bound = |x: &mut Value, m: f64| {
        let b = x.as_f64().unwrap().clamp(m * TAIL.0, m * TAIL.1);
        *x = Value::from(b.round() as u64);
    };
    for k in ["tokenize_ns", "prefill_ns", "detokenize_ns"] {
        let m = median(
            passes
                .iter()
                .map(|p| p["pass"][k].as_f64().unwrap())
                .collect(),
        );
        for p in passes.iter_mut() {
            bound(&mut p["pass"][k], m);
        }
    }
    let steps: Vec<f64> = passes
        .iter()
        .flat_map(|p| p["pass"]["decode_ns"].as_array().unwrap().clone())
        .map(|d| d.as_f64().unwrap())
        .collect();
    if !steps.is_empty() {
        let m = median(steps);
        for p in passes.iter_mut() {
            for d in p["pass"]["decode_ns"].as_array_mut().unwrap() {
                bound(d, m);
            }
        }
    }
    for p in passes.iter_mut() {
        let ttft =
            p["pass"]["tokenize_ns"].as_u64().unwrap() + p["pass"]["prefill_ns"].as_u64().unwrap();
        p["pass"]["ttft_ns"] = Value::from(ttft);
    }
}

fn same(_: &mut Value) {}

fn keep(s: &str) -> String {
    s.to_string()
}

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    cache: PathBuf,
    /// The real run, as `meltbench run` left it.
    run: PathBuf,
    /// Its steady copy (see `steady_copy`), the baseline of every comparison below.
    base: PathBuf,
}

/// One real ci-smoke run with three sessions of 100 passes per cell, and its steady copy.
fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let cache = root.join("cache");
    let suite = format!(
        "{}\nsessions: 3\n",
        CI_SMOKE.replace("passes: 10", "passes: 100")
    );
    let run = run_suite(&cache, &root, "smoke", &suite);
    let base = root.join("steady");
    steady_copy(&run, &base);
    Fixture {
        _tmp: tmp,
        root,
        cache,
        run,
        base,
    }
}

fn gate(f: &Fixture, args: &[&std::ffi::OsStr]) -> std::process::Output {
    meltbench(&f.cache).arg("gate").args(args).output().unwrap()
}

#[test]
fn a_faster_copy_passes_and_a_slower_copy_fails_in_every_output() {
    let f = fixture();
    // The same data on both sides never FAILs.
    let twin = f.root.join("twin");
    derive_run(&f.base, &twin, same, same, keep);
    let o = gate(
        &f,
        &[twin.as_os_str(), "--baseline".as_ref(), f.base.as_os_str()],
    );
    assert_ne!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("FAIL"),
        "{}",
        text(&o)
    );

    // The same data, but a model file over the size budget: FAIL whatever the baseline did.
    let o = gate(
        &f,
        &[
            twin.as_os_str(),
            "--baseline".as_ref(),
            f.base.as_os_str(),
            "--budget".as_ref(),
            "size_budget=1000".as_ref(),
            "--budget".as_ref(),
            "memory_budget=off".as_ref(),
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("OVER size_budget") && out.contains("is over the size budget of 1.0 kB"),
        "{out}"
    );
    assert!(!out.contains("memory_budget"), "memory_budget=off: {out}");

    let fast = f.root.join("fast");
    derive_run(&f.base, &fast, same, slower(0.25), keep);
    let o = gate(
        &f,
        &[fast.as_os_str(), "--baseline".as_ref(), f.base.as_os_str()],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("gate passed") && out.contains("IMPROVED"),
        "{out}"
    );

    let slow = f.root.join("slow");
    derive_run(&f.base, &slow, same, slower(4.0), keep);
    let md = f.root.join("gate.md");
    let junit = f.root.join("gate.xml");
    let json = f.root.join("gate.json");
    let html = f.root.join("gate.html");
    let o = gate(
        &f,
        &[
            slow.as_os_str(),
            "--baseline".as_ref(),
            f.base.as_os_str(),
            "--markdown".as_ref(),
            md.as_os_str(),
            "--junit".as_ref(),
            junit.as_os_str(),
            "--json".as_ref(),
            json.as_os_str(),
            "--html".as_ref(),
            html.as_os_str(),
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("gate FAILED"), "{out}");
    assert!(
        out.contains("+300.0%"),
        "the ratio is the injected slowdown: {out}"
    );
    // Throughput falls to a quarter: a FAIL in the other direction.
    assert!(out.contains("median decode tokens/s"), "{out}");

    let md = std::fs::read_to_string(md).unwrap();
    assert!(md.contains("FAIL"), "{md}");
    let junit = std::fs::read_to_string(junit).unwrap();
    assert!(junit.contains("<failure"), "{junit}");
    assert!(junit.contains("latency_p95"), "{junit}");
    let json: Value = serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap();
    assert_eq!(json["exit_code"], 1, "{json}");
    let rows = json["rows"].as_array().unwrap();
    let p95 = rows
        .iter()
        .find(|r| r["metric"] == "latency_p95")
        .expect("a latency_p95 row");
    assert_eq!(p95["verdict"], "fail", "{p95}");
    assert!((p95["ratio"].as_f64().unwrap() - 4.0).abs() < 1e-3, "{p95}");
    let html = std::fs::read_to_string(html).unwrap();
    assert!(html.contains("id=\"verdict\""), "html has a verdict banner");
}

#[test]
fn cells_whose_model_differs_are_not_comparable_and_exit_2() {
    let f = fixture();
    let other = f.root.join("other-model");
    let sha = "ab".repeat(32);
    derive_run(
        &f.base,
        &other,
        |m| {
            for c in m["cells"].as_array_mut().unwrap() {
                c["model_sha256"] = Value::String(sha.clone());
            }
        },
        slower(4.0),
        keep,
    );
    let junit = f.root.join("nc.xml");
    let o = gate(
        &f,
        &[
            other.as_os_str(),
            "--baseline".as_ref(),
            f.base.as_os_str(),
            "--junit".as_ref(),
            junit.as_os_str(),
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("not comparable"), "{out}");
    assert!(
        out.contains("SHA-256"),
        "the reason names what differs: {out}"
    );
    assert!(!out.contains("FAIL"), "never a regression: {out}");
    let junit = std::fs::read_to_string(junit).unwrap();
    assert!(junit.contains("<skipped"), "{junit}");
}

#[test]
fn a_thread_count_change_is_gated_only_when_asked() {
    let f = fixture();
    let t1 = f.root.join("t1");
    derive_run(
        &f.base,
        &t1,
        |m| {
            for c in m["cells"].as_array_mut().unwrap() {
                c["threads"] = Value::from(1);
            }
        },
        slower(4.0),
        keep,
    );
    let o = gate(
        &f,
        &[t1.as_os_str(), "--baseline".as_ref(), f.base.as_os_str()],
    );
    assert_eq!(o.status.code(), Some(2), "threads differ: {}", text(&o));
    let o = gate(
        &f,
        &[
            t1.as_os_str(),
            "--baseline".as_ref(),
            f.base.as_os_str(),
            "--ignore-key".as_ref(),
            "threads".as_ref(),
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
}

#[test]
fn a_hostile_device_name_is_text_in_every_output() {
    let f = fixture();
    let evil = |_: &str| "<script>alert(1)".to_string();
    let base = f.root.join("evil-base");
    let cand = f.root.join("evil-cand");
    derive_run(&f.base, &base, same, same, evil);
    derive_run(&f.base, &cand, same, slower(4.0), evil);
    let (md, junit, html) = (
        f.root.join("e.md"),
        f.root.join("e.xml"),
        f.root.join("e.html"),
    );
    let o = gate(
        &f,
        &[
            cand.as_os_str(),
            "--baseline".as_ref(),
            base.as_os_str(),
            "--markdown".as_ref(),
            md.as_os_str(),
            "--junit".as_ref(),
            junit.as_os_str(),
            "--html".as_ref(),
            html.as_os_str(),
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    for p in [md, junit, html] {
        let t = std::fs::read_to_string(&p).unwrap();
        assert!(
            !t.contains("<script>alert(1)"),
            "{} has the raw name",
            p.display()
        );
        assert!(t.contains("alert(1)"), "{} shows the name", p.display());
    }
}

#[test]
fn bad_input_exits_2_and_says_what_to_do() {
    let f = fixture();
    let empty = f.root.join("empty");
    std::fs::create_dir(&empty).unwrap();
    // A copy of the run whose raw events are gone: no report of zeros, no "only in one side".
    let gone = f.root.join("gone");
    derive_run(&f.base, &gone, same, same, keep);
    std::fs::remove_dir_all(gone.join("events")).unwrap();
    let cases: Vec<(Vec<&std::ffi::OsStr>, &str)> = vec![
        (
            vec![empty.as_os_str(), "--baseline".as_ref(), f.base.as_os_str()],
            "neither a run directory",
        ),
        (vec![f.base.as_os_str()], "needs --baseline"),
        (
            vec![
                f.base.as_os_str(),
                "--baseline".as_ref(),
                f.base.as_os_str(),
                "--budget".as_ref(),
                "latency_p95=ten".as_ref(),
            ],
            "percentage",
        ),
        (
            vec![
                f.base.as_os_str(),
                "--baseline".as_ref(),
                f.base.as_os_str(),
                "--budget".as_ref(),
                "latency_p96=5%".as_ref(),
            ],
            "unknown metric 'latency_p96'",
        ),
        (
            vec![
                f.base.as_os_str(),
                "--baseline".as_ref(),
                f.base.as_os_str(),
                "--budget".as_ref(),
                "size_budget=small".as_ref(),
            ],
            "size_budget must be a size such as 100MB",
        ),
        (
            vec![gone.as_os_str(), "--baseline".as_ref(), f.base.as_os_str()],
            "run directory is incomplete",
        ),
    ];
    for (args, expect) in cases {
        let o = gate(&f, &args);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(expect), "expected '{expect}': {err}");
    }
}

#[test]
fn run_and_report_write_html_and_markdown() {
    let f = fixture();
    assert!(
        f.run.join("report.html").is_file(),
        "meltbench run writes report.html"
    );
    assert!(
        f.run.join("report.md").is_file(),
        "meltbench run writes report.md"
    );
    let out = f.root.join("merged/report.html");
    let twin = f.root.join("twin");
    derive_run(&f.base, &twin, same, same, keep);
    let o = meltbench(&f.cache)
        .args(["report".as_ref(), twin.as_os_str(), "--baseline".as_ref()])
        .arg(&f.base)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(html.contains("id=\"summary\""));
    let md = std::fs::read_to_string(out.with_extension("md")).unwrap();
    assert!(!md.is_empty());
}
