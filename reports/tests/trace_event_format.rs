//! The perfetto export checked against the Trace Event Format itself (the JSON object form),
//! by a validator written here from the format's rules rather than from the exporter: every
//! event is well formed, complete events nest on their thread, counters carry numbers,
//! metadata names every process and thread. Then the trace against the data: one slice per
//! pass, its phases the engine's own durations, counters equal to the passes' readings.

use meltbench_protocol::agent::{AgentEvent, PassTelemetry};
use meltbench_protocol::engine::PassRecord;
use meltbench_reports::cell_key::CellKey;
use meltbench_reports::dataset::{device_cells, CellData, Dataset, PassData};
use meltbench_reports::export::perfetto::{device_trace, Perfetto};
use meltbench_reports::export::Exporter;
use meltbench_reports::report::ReportInput;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// One nanosecond, in the trace's microseconds: what float rounding may move an edge by.
const EPS_US: f64 = 1e-3;

fn key(device: &str, id: &str) -> CellKey {
    CellKey {
        id: id.into(),
        device: device.into(),
        model: "synthetic".into(),
        precision: "q4_0".into(),
        scenario: "short".into(),
        threads: 2,
        state: "hot".into(),
        ..CellKey::default()
    }
}

/// A pass starting at `start` ns whose phases differ from pass to pass (`i` shifts them).
fn pass(cell: &str, session: usize, i: usize, warmup: bool, start: u64) -> AgentEvent {
    let i64 = i as u64;
    let (tokenize, prefill, detokenize) = (50_000 + i64 * 7, 2_000_000 + i64 * 1_001, 30_000);
    let decode = vec![900_000 + i64 * 13, 950_000, 1_000_003];
    let total: u64 = tokenize + prefill + decode.iter().sum::<u64>() + detokenize;
    AgentEvent::Pass {
        cell: cell.into(),
        session,
        pass: PassRecord {
            index: i,
            warmup,
            prompt_tokens: 16,
            gen_tokens: 4,
            tokenize_ns: tokenize,
            prefill_ns: prefill,
            decode_ns: decode,
            decode_total_ns: None,
            detokenize_ns: detokenize,
            ttft_ns: tokenize + prefill,
            stop: "length".into(),
            start_mono_ns: start,
            end_mono_ns: start + total + 5_000,
            rss_hwm_bytes: None,
            chat: false,
        },
        rss_hwm_bytes: Some(40_000_000 + i64 * 4096),
        // Every other pass without sensors, so absent readings must give no counter sample.
        telemetry: i.is_multiple_of(2).then(|| PassTelemetry {
            temp_c_max: Some(41.5 + i as f64 * 0.25),
            power_w_avg: Some(3.125 + i as f64),
            cpu_mhz_mean: Some(1800.0 + i as f64),
            ..PassTelemetry::default()
        }),
    }
}

fn cell_events(cell: &str, t0: u64) -> Vec<AgentEvent> {
    let mut ev = vec![
        AgentEvent::StateReached {
            cell: cell.into(),
            state: "hot".into(),
            waited_s: 12.5,
            temp_c: Some(70.0),
            reference_temp_c: None,
            thermal_status: None,
            indicator: None,
            battery_level: None,
            battery_mode: None,
        },
        AgentEvent::ColdStart {
            cell: cell.into(),
            run: 0,
            load_ns: 1_000_000,
            first_token_ns: 80_000_000,
            page_cache_dropped: true,
            page_cache_note: String::new(),
        },
    ];
    let mut at = t0;
    for session in 0..2 {
        ev.push(pass(cell, session, 0, true, at));
        at += 10_000_000;
        for i in 0..3 {
            ev.push(pass(cell, session, i, false, at));
            at += 10_000_000;
        }
        // The next engine process loads between sessions.
        at += 50_000_000;
    }
    ev
}

fn dataset() -> Dataset {
    let mut cells: Vec<CellData> = Vec::new();
    for (device, ids, t0) in [
        (
            "phone",
            &["a/q4_0/short/t2/hot", "b/q4_0/short/t2/hot"][..],
            5_000_000_000_000u64,
        ),
        ("pi", &["a/q4_0/short/t2/hot"][..], 123_456_789_012),
    ] {
        let keys: Vec<CellKey> = ids.iter().map(|id| key(device, id)).collect();
        let mut events = Vec::new();
        for (n, id) in ids.iter().enumerate() {
            events.extend(cell_events(id, t0 + n as u64 * 10_000_000_000));
        }
        cells.extend(device_cells(&keys, &events));
    }
    Dataset {
        runs: Vec::new(),
        cells,
    }
}

fn num(e: &Value, field: &str) -> f64 {
    e[field]
        .as_f64()
        .unwrap_or_else(|| panic!("{field} is not a number in {e}"))
}

/// A complete event: ts, dur, name.
type Slice = (f64, f64, String);

/// Thread names by (pid, tid).
type Threads = BTreeMap<(u64, u64), String>;

/// Checks `doc` against the Trace Event Format's rules; returns the thread names by
/// (pid, tid) and the process names by pid.
fn validate(doc: &Value) -> (Threads, BTreeMap<u64, String>) {
    let events = doc["traceEvents"]
        .as_array()
        .expect("the object form has a traceEvents array");
    assert!(
        matches!(doc["displayTimeUnit"].as_str(), Some("ms" | "ns")),
        "displayTimeUnit is ms or ns"
    );
    let mut processes = BTreeMap::new();
    let mut threads = BTreeMap::new();
    let mut slices: BTreeMap<(u64, u64), Vec<Slice>> = BTreeMap::new();
    let mut used: BTreeSet<(u64, u64)> = BTreeSet::new();
    for e in events {
        assert!(e["name"].is_string(), "every event has a name: {e}");
        let ph = e["ph"].as_str().expect("every event has a phase");
        let pid = e["pid"].as_u64().expect("pid is a number");
        let tid = e["tid"].as_u64().expect("tid is a number");
        assert!(num(e, "ts").is_finite(), "{e}");
        let name = e["name"].as_str().unwrap().to_string();
        match ph {
            "M" => {
                let label = e["args"]["name"].as_str();
                match name.as_str() {
                    "process_name" => {
                        processes.insert(pid, label.expect("a name").to_string());
                    }
                    "thread_name" => {
                        threads.insert((pid, tid), label.expect("a name").to_string());
                    }
                    "process_sort_index" | "thread_sort_index" => {
                        assert!(e["args"]["sort_index"].is_number(), "{e}")
                    }
                    other => panic!("unknown metadata event {other}"),
                }
            }
            "X" => {
                let dur = num(e, "dur");
                assert!(dur >= 0.0, "negative duration: {e}");
                let ts = num(e, "ts");
                slices.entry((pid, tid)).or_default().push((ts, dur, name));
                used.insert((pid, tid));
            }
            "C" => {
                let args = e["args"].as_object().expect("a counter has args");
                assert!(!args.is_empty(), "{e}");
                for v in args.values() {
                    assert!(v.is_number(), "counter values are numbers: {e}");
                }
                used.insert((pid, tid));
            }
            other => panic!("phase {other} is not one this exporter should write: {e}"),
        }
    }
    for (pid, tid) in &used {
        assert!(processes.contains_key(pid), "pid {pid} has no process_name");
        assert!(
            threads.contains_key(&(*pid, *tid)),
            "pid {pid} tid {tid} has no thread_name"
        );
    }
    // On a thread, complete events either nest or are disjoint: a stack of open slices.
    for (thread, mut list) in slices {
        list.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.total_cmp(&a.1)));
        let mut open: Vec<(f64, String)> = Vec::new();
        for (ts, dur, name) in list {
            while open.last().is_some_and(|(end, _)| *end <= ts + EPS_US) {
                open.pop();
            }
            if let Some((end, parent)) = open.last() {
                assert!(
                    ts + dur <= end + EPS_US,
                    "{thread:?}: {name} at {ts} overlaps {parent} (ends {end}) partly"
                );
            }
            open.push((ts + dur, name));
        }
    }
    (threads, processes)
}

fn trace_of(d: &Dataset) -> Value {
    let input = ReportInput {
        title: "t".into(),
        candidate: d,
        baseline: None,
        gate: None,
        history: None,
        generated_utc: "2026-12-06T00:00:00Z".into(),
        command: "meltbench export".into(),
    };
    serde_json::from_str(&Perfetto.render(&input).unwrap()).expect("the trace is JSON")
}

fn end_us(p: &PassData) -> f64 {
    let s = &p.split;
    (s.start_mono_ns + s.tokenize_ns + s.prefill_ns + s.decode_ns + s.detokenize_ns) as f64 / 1e3
}

#[test]
fn the_trace_follows_the_format_and_holds_every_pass() {
    let d = dataset();
    let doc = trace_of(&d);
    let (threads, processes) = validate(&doc);
    let events = doc["traceEvents"].as_array().unwrap();
    assert_eq!(
        processes.values().collect::<Vec<_>>(),
        ["phone", "pi"],
        "one process per device"
    );
    for cell in &d.cells {
        let pid = *processes
            .iter()
            .find(|(_, n)| **n == cell.key.device)
            .unwrap()
            .0;
        let tid = threads
            .iter()
            .find(|((p, _), n)| *p == pid && **n == cell.key.id)
            .unwrap_or_else(|| panic!("no thread for {}", cell.key.id))
            .0
             .1;
        let on_thread = |ph: &str| -> Vec<&Value> {
            events
                .iter()
                .filter(|e| e["ph"] == ph && e["pid"] == pid && e["tid"] == tid)
                .collect()
        };
        let slices = on_thread("X");
        let named = |prefix: &str| {
            slices
                .iter()
                .filter(|e| e["name"].as_str().unwrap().starts_with(prefix))
                .count()
        };
        assert_eq!(named("pass "), cell.measured_passes(), "{}", cell.key.id);
        assert_eq!(named("pass "), 6);
        assert_eq!(named("warm-up "), 2);
        let all: Vec<&PassData> = cell
            .sessions
            .iter()
            .flat_map(|s| s.warmups.iter().chain(&s.passes))
            .collect();
        for p in &all {
            let ts = p.split.start_mono_ns as f64 / 1e3;
            let parent = slices
                .iter()
                .find(|e| e["ts"].as_f64() == Some(ts) && e["args"]["session"].is_number())
                .expect("a slice per pass at its start");
            assert!(
                (num(parent, "dur") - p.latency_ms * 1e3).abs() < EPS_US,
                "latency"
            );
            assert_eq!(parent["args"]["latency_ms"].as_f64(), Some(p.latency_ms));
            for (phase, ns) in [
                ("tokenize", p.split.tokenize_ns),
                ("prefill", p.split.prefill_ns),
                ("decode", p.split.decode_ns),
                ("detokenize", p.split.detokenize_ns),
            ] {
                let child = slices
                    .iter()
                    .find(|e| {
                        e["name"] == phase
                            && num(e, "ts") >= ts - EPS_US
                            && num(e, "ts") + num(e, "dur") <= end_us(p) + EPS_US
                    })
                    .unwrap_or_else(|| panic!("no {phase} inside the pass at {ts}"));
                assert!((num(child, "dur") - ns as f64 / 1e3).abs() < EPS_US);
            }
            let counters = on_thread("C");
            for (track, field, want) in [
                ("temperature (°C)", "temp_c", p.temp_c),
                ("power (W)", "power_w", p.power_w),
                (
                    "RSS (bytes)",
                    "rss_hwm_bytes",
                    p.rss_hwm_bytes.map(|b| b as f64),
                ),
                ("CPU frequency (MHz)", "cpu_mhz", p.cpu_mhz),
            ] {
                let got = counters
                    .iter()
                    .find(|e| e["name"] == track && (num(e, "ts") - end_us(p)).abs() < EPS_US)
                    .map(|e| num(&e["args"], field));
                assert_eq!(got, want, "{track} at the end of the pass at {ts}");
            }
        }
        // The state wait and the cold start end where the first pass (a warm-up) begins.
        let first = all.iter().map(|p| p.split.start_mono_ns).min().unwrap() as f64 / 1e3;
        let cold = slices.iter().find(|e| e["name"] == "cold start 0").unwrap();
        assert!((num(cold, "ts") + num(cold, "dur") - first).abs() < EPS_US);
        let wait = slices.iter().find(|e| e["name"] == "wait for hot").unwrap();
        assert!((num(wait, "ts") + num(wait, "dur") - num(cold, "ts")).abs() < EPS_US);
        assert!((num(wait, "dur") - 12.5e6).abs() < EPS_US);
    }
}

#[test]
fn a_device_trace_holds_that_device_alone() {
    let d = dataset();
    let doc: Value = serde_json::from_str(&device_trace(&d, "pi")).unwrap();
    let (threads, processes) = validate(&doc);
    assert_eq!(processes.values().collect::<Vec<_>>(), ["pi"]);
    assert_eq!(threads.len(), 1);
    let passes = doc["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["ph"] == "X" && e["name"].as_str().unwrap().starts_with("pass "))
        .count();
    assert_eq!(passes, 6);
}

#[test]
fn the_validator_rejects_partial_overlap() {
    let doc = serde_json::json!({"displayTimeUnit": "ms", "traceEvents": [
        {"name": "process_name", "ph": "M", "pid": 1, "tid": 0, "ts": 0, "args": {"name": "d"}},
        {"name": "thread_name", "ph": "M", "pid": 1, "tid": 1, "ts": 0, "args": {"name": "c"}},
        {"name": "a", "ph": "X", "pid": 1, "tid": 1, "ts": 0.0, "dur": 10.0},
        {"name": "b", "ph": "X", "pid": 1, "tid": 1, "ts": 5.0, "dur": 10.0},
    ]});
    let r = std::panic::catch_unwind(|| validate(&doc));
    assert!(r.is_err(), "b starts inside a and ends after it");
}
