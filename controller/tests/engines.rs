//! Engines side by side in one run on the local device: the bundled engine and a `command`
//! engine (a shim around the same binary, as a user wraps another runtime), sessions
//! alternating on the device, both in the summary and the report, and `gate --baseline-engine`
//! pairing them inside the run; over ssh and adb, a second build of the engine pushed through
//! the push cache and verified, and refused when built for another machine; a real llama.cpp
//! server (llama-cpp-python's) through the agent's `openai` adapter beside the bundled engine;
//! a developer's llama.cpp build (`MELTBENCH_LLAMA_CPP_DIR`) through the `llama.cpp` adapter
//! beside all three, and pushed over ssh and adb.

mod common;

use common::farm::{
    adb_entry, bundles_dir, have_bundle, host_bundle, json, ready, ssh_entry, Farm,
};
use common::{bin_dir, llama_cpp_dir, meltbench, run_suite, smollm2, text};
use meltbench_testbed::adb_device::{AdbDevice, AdbDeviceOptions, AdbServer};
use meltbench_testbed::cutting_proxy::CuttingProxy;
use meltbench_testbed::llama_server::LlamaServer;
use meltbench_testbed::sshd::Sshd;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

#[test]
fn two_engines_alternate_and_gate_against_each_other() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    shim(tmp.path());
    let suite = "name: engines\nmodels: [{name: synth}]\n\
                 scenarios: [{name: tiny, prompt_tokens: 8, new_tokens: 4}]\n\
                 threads: [1]\npasses: 5\nwarmup: 1\nsessions: 4\ncold_start: 1\n\
                 engines:\n  - name: bundled\n  - name: shim\n    command: shim.sh\n";
    let run = run_suite(&cache, tmp.path(), "engines", suite);

    let (a, b) = ("synth/native/tiny/t1/any", "synth/native/tiny/t1/any/shim");
    let loads: Vec<(String, u64)> = std::fs::read_to_string(run.join("events/local.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["event"] == "load")
        .map(|e| {
            (
                e["cell"].as_str().unwrap().to_string(),
                e["session"].as_u64().unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, u64)> = [
        (a, 0),
        (b, 0),
        (b, 1),
        (a, 1),
        (a, 2),
        (b, 2),
        (b, 3),
        (a, 3),
    ]
    .into_iter()
    .map(|(c, s)| (c.to_string(), s))
    .collect();
    assert_eq!(loads, want, "sessions alternate A B B A");

    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    let ids: Vec<&str> = summary["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["key"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [a, b], "{summary}");
    assert_eq!(summary["cells"][1]["key"]["engine"], "shim");
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(html.contains(b), "the report shows the shim's cell");

    let o = meltbench(&cache)
        .args(["gate", "--baseline-engine", "bundled", "--json", "-"])
        .arg(&run)
        .output()
        .unwrap();
    assert!(
        matches!(o.status.code(), Some(0..=2)),
        "a verdict: {}",
        text(&o)
    );
    let verdicts: Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)));
    let rows = verdicts["rows"].as_array().expect("rows");
    assert!(!rows.is_empty(), "{verdicts}");
    for r in rows {
        assert_eq!(
            (r["cell"].as_str(), r["baseline_cell"].as_str()),
            (Some(b), Some(a)),
            "{r}"
        );
        assert!(
            r["note"]
                .as_str()
                .is_some_and(|n| n.contains("4 sessions paired in the order they ran")),
            "{r}"
        );
    }

    let o = meltbench(&cache)
        .args(["gate", "--baseline-engine", "llama.cpp"])
        .arg(&run)
        .output()
        .unwrap();
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(
        t.contains("no cell ran engine 'llama.cpp' (engines in these runs: bundled, shim)"),
        "{t}"
    );
}

/// The local device's events of a run.
fn local_events(run: &Path) -> Vec<Value> {
    std::fs::read_to_string(run.join("events/local.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Events of one kind from the cells of `engine` (not the bundled one); passes without the
/// warm-ups.
fn of_engine<'a>(events: &'a [Value], kind: &str, engine: &str) -> Vec<&'a Value> {
    let suffix = format!("/{engine}");
    events
        .iter()
        .filter(|e| e["event"] == kind)
        .filter(|e| e["cell"].as_str().is_some_and(|c| c.ends_with(&suffix)))
        .filter(|e| kind != "pass" || e["pass"]["warmup"] == false)
        .collect()
}

/// An sshd board and a simulated phone on the real adb server, and their inventory; the peers
/// live as long as the first value (dropped phone first, as locals would be).
fn board_and_phone(f: &Farm) -> ((AdbDevice, AdbServer, Sshd), String) {
    let sshd = Sshd::start().unwrap();
    let server = AdbServer::start().unwrap();
    let dev = AdbDevice::start(AdbDeviceOptions::default()).unwrap();
    server.connect(&dev).unwrap();
    let devices = format!(
        "devices:\n{}{}",
        ssh_entry("board", &sshd, &f.root.join("board")),
        adb_entry(
            "phone",
            &server,
            &dev,
            &dev.sandbox.join("data/local/tmp/mb")
        )
    );
    ((dev, server, sshd), devices)
}

/// Passes measured per cell in a device's event log (cells that ended).
fn ended(run: &Path, device: &str) -> Vec<(String, u64)> {
    std::fs::read_to_string(run.join("events").join(format!("{device}.jsonl")))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["event"] == "cell_end")
        .map(|e| {
            (
                e["cell"].as_str().unwrap().to_string(),
                e["passes"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn transfers(run: &Path) -> Vec<(String, Value)> {
    json(&run.join("run.json"))["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["name"].as_str().unwrap().to_string(),
                d["transfer"].clone(),
            )
        })
        .collect()
}

#[test]
fn a_second_engine_build_is_pushed_and_verified_over_ssh_and_adb() {
    if !ready(Sshd::available().and(AdbServer::available()), host_bundle()) {
        return;
    }
    let f = Farm::new();
    // Another build of the engine: the bundle's, with bytes appended (an ELF runs as before,
    // and its SHA-256 differs, so it is a file of its own in the push cache).
    let mut old =
        std::fs::read(bundles_dir().join(host_bundle()).join("meltbench-engine")).unwrap();
    old.extend_from_slice(b"\nanother build\n");
    let old_engine = f.root.join("old-engine");
    std::fs::write(&old_engine, &old).unwrap();
    std::fs::set_permissions(&old_engine, std::fs::Permissions::from_mode(0o755)).unwrap();
    let suite = "name: ab\nmodels: [{name: synth}]\n\
                 scenarios: [{name: tiny, prompt_tokens: 8, new_tokens: 4}]\n\
                 threads: [1]\npasses: 3\nwarmup: 1\nsessions: 2\ncold_start: 0\n\
                 engines:\n  - name: bundled\n  - name: old\n    command: old-engine\n";

    let (_peers, devices) = board_and_phone(&f);
    let (first, o) = f.run("ab1", suite, &devices);
    assert!(o.status.success(), "{}", text(&o));
    for device in ["board", "phone"] {
        assert_eq!(
            ended(&first, device),
            [
                ("synth/native/tiny/t1/any".to_string(), 6),
                ("synth/native/tiny/t1/any/old".to_string(), 6)
            ],
            "{device}"
        );
    }
    for (device, t) in transfers(&first) {
        assert_eq!(
            t["sent"], 4,
            "{device}: agent, engine, the old engine and the model: {t}"
        );
    }
    let (second, o) = f.run("ab2", suite, &devices);
    assert!(o.status.success(), "{}", text(&o));
    for (device, t) in transfers(&second) {
        assert_eq!(
            (t["bytes"].as_u64(), t["reused"].as_u64()),
            (Some(0), Some(4)),
            "{device}: {t}"
        );
    }

    // A build for another machine is refused before anything runs, with the reason.
    let other = if host_bundle().starts_with("x86_64") {
        "aarch64-unknown-linux-musl"
    } else {
        "x86_64-unknown-linux-musl"
    };
    if have_bundle(other) {
        std::fs::copy(
            bundles_dir().join(other).join("meltbench-engine"),
            &old_engine,
        )
        .unwrap();
        let (_, o) = f.run("ab3", suite, &devices);
        let t = text(&o);
        assert!(!o.status.success(), "{t}");
        let machine = other.split('-').next().unwrap();
        assert!(
            t.contains(&format!("is an ELF binary for {machine}")),
            "{t}"
        );
    }
}

/// SmolLM2 Q4_1 on the bundled engine and on a real llama.cpp server (llama-cpp-python's,
/// OpenAI-compatible) through the agent's `openai` adapter, sessions alternating: each cell
/// has 100 measured passes with time to first token and per-token decode times from token
/// arrival, the server's peak memory, the fields the adapter cannot measure named in its load
/// records, and both engines in the report.
#[test]
fn an_openai_server_runs_beside_the_bundled_engine() {
    let Some(model) = smollm2() else { return };
    let Some(server) = LlamaServer::for_test(
        "an_openai_server_runs_beside_the_bundled_engine",
        &model,
        "smollm2",
    ) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let suite = format!(
        "name: openai\nmodels: [{{name: {}}}]\n\
         scenarios: [{{name: short, prompt_tokens: 32, new_tokens: 8}}]\n\
         threads: [1]\npasses: 50\nwarmup: 2\nsessions: 2\ncold_start: 0\n\
         engines:\n  - name: bundled\n  - name: server\n    openai: {{url: \"{}\", model: smollm2, memory_of: \"{}\"}}\n",
        model.display(),
        server.url(),
        server.pid()
    );
    let run = run_suite(&cache, tmp.path(), "openai", &suite);
    let summary = json(&run.join("summary.json"));
    let cells = summary["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 2, "{summary:#}");
    for c in cells {
        assert_eq!(c["passes"], 100, "{}", c["key"]);
    }
    let events = local_events(&run);
    let loads = of_engine(&events, "load", "server");
    assert_eq!(loads.len(), 2, "one load per session");
    for l in &loads {
        let unmeasured = l["load"]["unmeasured"].to_string();
        assert!(
            unmeasured.contains("tokenize_ns") && unmeasured.contains("detokenize_ns"),
            "{l}"
        );
        assert!(!unmeasured.contains("peak_rss"), "memory_of was given: {l}");
        let of = l["load"]["memory_of"].as_str().unwrap();
        assert!(of.contains(&format!("pid {}", server.pid())), "{of}");
    }
    let passes = of_engine(&events, "pass", "server");
    assert_eq!(passes.len(), 100);
    for e in &passes {
        let p = &e["pass"];
        assert!(p["ttft_ns"].as_u64().unwrap() > 0, "{p}");
        assert_eq!(p["ttft_ns"], p["prefill_ns"], "{p}");
        // 8 tokens asked, EOS ignored where the server honours it; one decode time after the first.
        let gen = p["gen_tokens"].as_u64().unwrap();
        assert!((1..=8).contains(&gen), "{p}");
        let steps = p["decode_ns"].as_array().unwrap();
        assert!(
            !steps.is_empty() && steps.iter().all(|d| d.as_u64().unwrap() > 0),
            "{p}"
        );
        let prompt = p["prompt_tokens"].as_u64().unwrap();
        assert!(
            (28..=32).contains(&prompt),
            "the prompt is cut to 32 tokens by the server's count: {p}"
        );
        // The server's memory (a Python process holding the model), not the adapter's few MiB.
        assert!(e["rss_hwm_bytes"].as_u64().unwrap() > 64 << 20, "{e}");
    }
    let warnings: Vec<&Value> = events.iter().filter(|e| e["event"] == "warning").collect();
    assert!(warnings.is_empty(), "{warnings:?}");
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(
        html.contains("short/t1/any/server"),
        "the report shows the server's cell"
    );
    drop(server);
}

/// A stream dropped mid-response (a proxy in front of the real server cuts one connection)
/// fails only its pass, with the reason in a warning; the adapter runs another in its place, so
/// the cell still has every measured pass.
#[test]
fn a_dropped_stream_fails_only_its_pass() {
    let Some(model) = smollm2() else { return };
    let Some(server) =
        LlamaServer::for_test("a_dropped_stream_fails_only_its_pass", &model, "smollm2")
    else {
        return;
    };
    // Past the prompt calibration's small responses, inside the streamed passes.
    let proxy = CuttingProxy::start(server.port, 40_000).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let suite = format!(
        "name: dropped\nmodels: [{{name: {}}}]\n\
         scenarios: [{{name: short, prompt_tokens: 32, new_tokens: 8}}]\n\
         threads: [1]\npasses: 30\nwarmup: 1\nsessions: 1\n\
         engines:\n  - name: server\n    openai: {{url: \"http://127.0.0.1:{}/v1\", model: smollm2}}\n",
        model.display(),
        proxy.port
    );
    let run = run_suite(&cache, tmp.path(), "dropped", &suite);
    assert!(proxy.has_cut(), "the proxy never reached its threshold");
    let summary = json(&run.join("summary.json"));
    assert_eq!(summary["cells"][0]["passes"], 30, "{summary:#}");
    let events = std::fs::read_to_string(run.join("events/local.jsonl")).unwrap();
    let warnings: Vec<Value> = events
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["event"] == "warning")
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let message = warnings[0]["message"].as_str().unwrap();
    assert!(
        message.contains("session 0: pass") && message.contains("failed:"),
        "{message}"
    );
    // Without memory_of the server's memory is not measured, and nothing stands in for it.
    let load = events
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["event"] == "load")
        .unwrap();
    assert!(
        load["load"]["unmeasured"].to_string().contains("peak_rss"),
        "{load}"
    );
    assert!(events
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["event"] == "pass")
        .all(|e| e["rss_hwm_bytes"].is_null()));
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(html.contains("What each engine measures"), "method section");
    assert!(html.contains("peak memory not measured"));
}

/// The contract's shim around the bundled engine, as a user wraps another runtime.
fn shim(dir: &Path) -> std::path::PathBuf {
    let shim = dir.join("shim.sh");
    std::fs::write(
        &shim,
        format!(
            "#!/bin/sh\nexec {} \"$@\"\n",
            bin_dir().join("meltbench-engine").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
    shim
}

/// All four kinds of engine on SmolLM2 Q4_1 on the local device, sessions alternating: the
/// bundled engine, a `command` shim, llama.cpp's own llama-server (a developer's build, by
/// path) through the `llama.cpp` adapter, and llama-cpp-python's server through `openai`.
/// Every cell has 100 measured passes with time to first token and per-token decode times;
/// llama-server's cold start is its process start to first token; the report shows the
/// engines side by side.
#[test]
fn four_engines_run_side_by_side_on_the_local_device() {
    let test = "four_engines_run_side_by_side_on_the_local_device";
    let Some(model) = smollm2() else { return };
    let Some(llama) = llama_cpp_dir(test) else {
        return;
    };
    let Some(server) = LlamaServer::for_test(test, &model, "smollm2") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let suite = format!(
        "name: four\nmodels: [{{name: {}}}]\n\
         scenarios: [{{name: short, prompt_tokens: 32, new_tokens: 8}}]\n\
         threads: [1]\npasses: 50\nwarmup: 2\nsessions: 2\ncold_start: 1\n\
         engines:\n  - name: bundled\n  - name: shim\n    command: {}\n  - name: llama\n    \
         llama.cpp: {{dir: {}}}\n  - name: server\n    \
         openai: {{url: \"{}\", model: smollm2, memory_of: \"{}\"}}\n",
        model.display(),
        shim(tmp.path()).display(),
        llama.display(),
        server.url(),
        server.pid()
    );
    let run = run_suite(&cache, tmp.path(), "four", &suite);
    let summary = json(&run.join("summary.json"));
    let cells = summary["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 4, "{summary:#}");
    for c in cells {
        assert_eq!(c["passes"], 100, "{}", c["key"]);
    }
    let events = local_events(&run);
    let loads = of_engine(&events, "load", "llama");
    assert_eq!(loads.len(), 2, "one load per session");
    for l in &loads {
        let load = &l["load"];
        assert!(
            load["engine_version"]
                .as_str()
                .unwrap()
                .starts_with("llama.cpp b"),
            "{l}"
        );
        assert!(
            load["memory_of"]
                .as_str()
                .unwrap()
                .starts_with("llama-server (pid "),
            "{l}"
        );
        assert_eq!(load["threads"], 1, "{l}");
    }
    let passes = of_engine(&events, "pass", "llama");
    assert_eq!(passes.len(), 100);
    for e in &passes {
        let p = &e["pass"];
        assert!(p["ttft_ns"].as_u64().unwrap() > 0, "{p}");
        // EOS ignored and 8 tokens asked: llama-server streams every one.
        assert_eq!(p["gen_tokens"], 8, "{p}");
        let steps = p["decode_ns"].as_array().unwrap();
        assert_eq!(steps.len(), 7, "{p}");
        assert!(steps.iter().all(|d| d.as_u64().unwrap() > 0), "{p}");
        // Cut by llama-server's own /tokenize to exactly 32 (or the most words below it).
        let prompt = p["prompt_tokens"].as_u64().unwrap();
        assert!((29..=32).contains(&prompt), "{p}");
        // llama-server's own memory: the model is mapped and read.
        assert!(e["rss_hwm_bytes"].as_u64().unwrap() > 32 << 20, "{e}");
    }
    let colds = of_engine(&events, "cold_start", "llama");
    assert_eq!(colds.len(), 1, "{colds:?}");
    let warnings: Vec<&Value> = events.iter().filter(|e| e["event"] == "warning").collect();
    assert!(warnings.is_empty(), "{warnings:?}");
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    let engines = &html[html.find("<section id=\"engines\">").unwrap()..];
    let engines = &engines[..engines.find("</section>").unwrap()];
    for name in ["bundled", "shim", "llama", "server"] {
        assert!(
            engines.contains(&format!(">{name}</a></th>")),
            "{name}: {engines}"
        );
    }
    drop(server);
}

/// A llama.cpp build with llama-bench and no llama-server (a copy of the developer's
/// llama-bench alone), run by the `llama.cpp` adapter through llama-bench: 100 measured passes
/// with prefill and the decode as a whole, no invented per-token times, the cold start of its
/// process, and the report saying what it does not measure.
#[test]
fn a_build_without_llama_server_is_measured_through_llama_bench() {
    let test = "a_build_without_llama_server_is_measured_through_llama_bench";
    let Some(model) = smollm2() else { return };
    let Some(llama) = llama_cpp_dir(test) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let bench_only = tmp.path().join("bin");
    std::fs::create_dir(&bench_only).unwrap();
    std::fs::copy(llama.join("llama-bench"), bench_only.join("llama-bench"))
        .expect("the llama.cpp build has llama-bench");
    for lib in std::fs::read_dir(&llama).unwrap().flatten() {
        let name = lib.file_name();
        if name.to_string_lossy().contains(".so") {
            std::fs::copy(lib.path(), bench_only.join(name)).unwrap();
        }
    }
    let suite = format!(
        "name: bench\nmodels: [{{name: {}}}]\n\
         scenarios: [{{name: short, prompt_tokens: 32, new_tokens: 8}}]\n\
         threads: [1]\npasses: 50\nwarmup: 2\nsessions: 2\ncold_start: 1\n\
         engines:\n  - name: bench\n    llama.cpp: {{dir: {}}}\n",
        model.display(),
        bench_only.display()
    );
    let run = run_suite(&tmp.path().join("cache"), tmp.path(), "bench", &suite);
    let summary = json(&run.join("summary.json"));
    let cells = summary["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 1, "{summary:#}");
    assert_eq!(cells[0]["passes"], 100, "{summary:#}");
    let events = local_events(&run);
    for l in of_engine(&events, "load", "bench") {
        let load = &l["load"];
        assert!(
            load["memory_of"]
                .as_str()
                .unwrap()
                .starts_with("llama-bench (pid "),
            "{l}"
        );
        assert_eq!(load["dtype"], "Q4_1", "{l}");
        assert_eq!(load["threads"], 1, "{l}");
        assert_eq!(
            load["unmeasured"],
            serde_json::json!(["tokenize_ns", "detokenize_ns", "decode_ns"]),
            "{l}"
        );
    }
    let passes = of_engine(&events, "pass", "bench");
    assert_eq!(passes.len(), 100, "2 sessions of 50 measured passes");
    for e in &passes {
        let p = &e["pass"];
        assert_eq!(
            (p["prompt_tokens"].as_u64(), p["gen_tokens"].as_u64()),
            (Some(32), Some(8)),
            "{p}"
        );
        assert_eq!(p["decode_ns"], serde_json::json!([]), "{p}");
        let (ttft, decode) = (
            p["ttft_ns"].as_u64().unwrap(),
            p["decode_total_ns"].as_u64().unwrap(),
        );
        assert!(ttft > 0 && decode > 0, "{p}");
        let (start, end) = (
            p["start_mono_ns"].as_u64().unwrap(),
            p["end_mono_ns"].as_u64().unwrap(),
        );
        assert_eq!(end - start, ttft + decode, "{p}");
        assert!(e["rss_hwm_bytes"].as_u64().unwrap() > 32 << 20, "{e}");
    }
    let colds = of_engine(&events, "cold_start", "bench");
    assert_eq!(colds.len(), 1, "{colds:?}");
    let warnings: Vec<&Value> = events.iter().filter(|e| e["event"] == "warning").collect();
    assert!(warnings.is_empty(), "{warnings:?}");
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(
        html.contains("only as a whole"),
        "the method section says so"
    );
}

/// A llama.cpp build pushed like the bundle over ssh and adb (llama-server and its libraries,
/// each verified by SHA-256, and llama-bench for an engine that asks for it), run by the
/// adapter there; a second run pushes nothing.
#[test]
fn a_llama_cpp_build_is_pushed_and_run_over_ssh_and_adb() {
    let test = "a_llama_cpp_build_is_pushed_and_run_over_ssh_and_adb";
    if !ready(Sshd::available().and(AdbServer::available()), host_bundle()) {
        return;
    }
    let Some(model) = smollm2() else { return };
    let Some(llama) = llama_cpp_dir(test) else {
        return;
    };
    let f = Farm::new();
    let suite = format!(
        "name: llama\nmodels: [{{name: {}}}]\n\
         scenarios: [{{name: tiny, prompt_tokens: 16, new_tokens: 4}}]\n\
         threads: [1]\npasses: 3\nwarmup: 1\nsessions: 1\ncold_start: 1\n\
         engines:\n  - name: llama\n    llama.cpp: {{dir: {}}}\n  - name: bench\n    \
         llama.cpp: {{dir: {}, tool: llama-bench}}\n",
        model.display(),
        llama.display(),
        llama.display()
    );
    let files = std::fs::read_dir(&llama)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            e.path().is_file() && (n == "llama-server" || n == "llama-bench" || n.contains(".so"))
        })
        .count() as u64;
    let (_peers, devices) = board_and_phone(&f);
    let (first, o) = f.run("l1", &suite, &devices);
    assert!(o.status.success(), "{}", text(&o));
    for device in ["board", "phone"] {
        let cells = ended(&first, device);
        assert!(
            matches!(&cells[..], [(_, 3), (_, 3)]),
            "{device}: a cell of each engine, 3 passes: {cells:?}"
        );
    }
    for (device, t) in transfers(&first) {
        assert_eq!(
            t["sent"].as_u64(),
            Some(3 + files),
            "{device}: agent, engine, the model and the build's {files} files: {t}"
        );
    }
    let (second, o) = f.run("l2", &suite, &devices);
    assert!(o.status.success(), "{}", text(&o));
    for (device, t) in transfers(&second) {
        assert_eq!(
            (t["bytes"].as_u64(), t["reused"].as_u64()),
            (Some(0), Some(3 + files)),
            "{device}: {t}"
        );
    }
}
