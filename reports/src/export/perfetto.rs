//! Every pass on the device's own clock, as a trace for Perfetto (ui.perfetto.dev) or
//! `chrome://tracing`: the Trace Event Format's JSON object form
//! (`{"traceEvents": [...], "displayTimeUnit": "ms"}`).
//!
//! Layout: one process per device (named by the device), one thread per cell (named by the
//! cell id; per cell and run when several runs are merged, since two runs' monotonic clocks
//! cannot be compared). On a cell's thread:
//! - each pass is a complete (`X`) slice, `pass N` or `warm-up N` (N counts within its
//!   session), with `tokenize`, `prefill`, `decode` and `detokenize` nested inside, laid end to
//!   end from the pass start with the engine's own durations. The pass slice lasts exactly
//!   their sum (the report's latency), so the children always fit inside it.
//! - the state waits and cold starts the agent ran before the passes. The agent reports how
//!   long they took but not when they began, so they are placed end to end, in the order they
//!   were reported, finishing where the cell's first pass (warm-ups included) starts; their
//!   `args.placement` says so. The real steps lie earlier by the gaps between them (loading a
//!   session's model, for example), which nothing records.
//!
//! Counter (`C`) tracks per device, one sample at each pass's end: temperature, power, the
//! engine's resident set and CPU frequency, where the run has them.
//!
//! Timestamps are microseconds of CLOCK_MONOTONIC on the device, from the engine's
//! `start_mono_ns`, so traces of one run line up with other tools on that device.

use super::{ExportError, Exporter};
use crate::dataset::{CellData, Dataset, PassData, Prelude};
use crate::report::ReportInput;
use serde_json::{json, Value};

pub struct Perfetto;

impl Exporter for Perfetto {
    fn name(&self) -> &'static str {
        "perfetto"
    }

    fn about(&self) -> &'static str {
        "every pass and its phases on the device clock, for ui.perfetto.dev or chrome://tracing"
    }

    fn extension(&self) -> &'static str {
        "json"
    }

    fn render(&self, input: &ReportInput) -> Result<String, ExportError> {
        Ok(trace(input.candidate, None))
    }
}

/// The trace of one device alone (`<run>/trace/<device>.json`).
pub fn device_trace(d: &Dataset, device: &str) -> String {
    trace(d, Some(device))
}

/// The devices of `d`, in the order their cells come.
pub fn devices(d: &Dataset) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for c in &d.cells {
        if !out.contains(&c.key.device.as_str()) {
            out.push(&c.key.device);
        }
    }
    out
}

fn trace(d: &Dataset, only: Option<&str>) -> String {
    let mut meta: Vec<Value> = Vec::new();
    let mut events: Vec<Value> = Vec::new();
    let chosen = devices(d)
        .into_iter()
        .filter(|dev| only.is_none_or(|o| o == *dev));
    for (pi, device) in chosen.enumerate() {
        let pid = pi + 1;
        meta.push(metadata(pid, 0, "process_name", device));
        let mut tid = 0;
        for cell in d.cells.iter().filter(|c| c.key.device == device) {
            let runs = run_ids(cell);
            for run in &runs {
                tid += 1;
                let name = if runs.len() > 1 {
                    format!("{} ({run})", cell.key.id)
                } else {
                    cell.key.id.clone()
                };
                meta.push(metadata(pid, tid, "thread_name", &name));
                meta.push(json!({
                    "name": "thread_sort_index", "ph": "M", "pid": pid, "tid": tid, "ts": 0,
                    "args": {"sort_index": tid},
                }));
                cell_events(&mut events, cell, run, pid, tid);
            }
        }
    }
    // Viewers accept any order, but sorted by start with the longer slice first keeps every
    // parent ahead of its children for readers that build the nesting in one pass.
    events.sort_by(|a, b| {
        let key = |e: &Value| (e["ts"].as_f64().unwrap_or(0.0), e["dur"].as_f64());
        let (ta, da) = key(a);
        let (tb, db) = key(b);
        ta.total_cmp(&tb)
            .then_with(|| db.unwrap_or(0.0).total_cmp(&da.unwrap_or(0.0)))
    });
    meta.extend(events);
    let doc = json!({"traceEvents": meta, "displayTimeUnit": "ms"});
    serde_json::to_string(&doc).expect("a tree of JSON values always serializes")
}

/// The runs a cell's sessions came from, in order.
fn run_ids(cell: &CellData) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in &cell.sessions {
        if !out.contains(&s.run_id) {
            out.push(s.run_id.clone());
        }
    }
    out
}

fn metadata(pid: usize, tid: usize, what: &str, name: &str) -> Value {
    json!({"name": what, "ph": "M", "pid": pid, "tid": tid, "ts": 0, "args": {"name": name}})
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1e3
}

fn slice(name: &str, pid: usize, tid: usize, start_ns: u64, dur_ns: u64, args: Value) -> Value {
    json!({
        "name": name, "cat": "meltbench", "ph": "X", "pid": pid, "tid": tid,
        "ts": us(start_ns), "dur": us(dur_ns), "args": args,
    })
}

fn cell_events(out: &mut Vec<Value>, cell: &CellData, run: &str, pid: usize, tid: usize) {
    let mut first_start: Option<u64> = None;
    for s in cell.sessions.iter().filter(|s| s.run_id == run) {
        for (label, passes) in [("warm-up", &s.warmups), ("pass", &s.passes)] {
            for (i, p) in passes.iter().enumerate() {
                let start = p.split.start_mono_ns;
                first_start = Some(first_start.map_or(start, |f| f.min(start)));
                pass_events(out, &format!("{label} {i}"), s.index, p, pid, tid);
            }
        }
    }
    if let Some(first) = first_start {
        let preludes: Vec<&Prelude> = cell.preludes.iter().filter(|w| w.run_id == run).collect();
        let total: u64 = preludes.iter().map(|w| w.dur_ns).sum();
        let mut at = first.saturating_sub(total);
        for w in preludes {
            out.push(slice(
                &w.name,
                pid,
                tid,
                at,
                w.dur_ns,
                json!({
                    "duration_ms": w.dur_ns as f64 / 1e6,
                    "placement": "estimated: the agent reports durations only; placed end to \
                                  end before the cell's first pass",
                }),
            ));
            at += w.dur_ns;
        }
    }
}

fn pass_events(
    out: &mut Vec<Value>,
    name: &str,
    session: usize,
    p: &PassData,
    pid: usize,
    tid: usize,
) {
    let sp = &p.split;
    let phases = [
        ("tokenize", sp.tokenize_ns),
        ("prefill", sp.prefill_ns),
        ("decode", sp.decode_ns),
        ("detokenize", sp.detokenize_ns),
    ];
    let total: u64 = phases.iter().map(|(_, d)| d).sum();
    let start = sp.start_mono_ns;
    out.push(slice(
        name,
        pid,
        tid,
        start,
        total,
        json!({
            "session": session,
            "latency_ms": p.latency_ms,
            "prompt_tokens": sp.prompt_tokens,
            "gen_tokens": sp.gen_tokens,
        }),
    ));
    let mut at = start;
    for (phase, dur) in phases {
        out.push(slice(phase, pid, tid, at, dur, json!({})));
        at += dur;
    }
    let end = us(start + total);
    let counters = [
        ("temperature (°C)", "temp_c", p.temp_c),
        ("power (W)", "power_w", p.power_w),
        (
            "RSS (bytes)",
            "rss_hwm_bytes",
            p.rss_hwm_bytes.map(|b| b as f64),
        ),
        ("CPU frequency (MHz)", "cpu_mhz", p.cpu_mhz),
    ];
    for (track, field, value) in counters {
        if let Some(v) = value.filter(|v| v.is_finite()) {
            let mut args = serde_json::Map::new();
            args.insert(field.to_string(), json!(v));
            out.push(json!({
                "name": track, "ph": "C", "pid": pid, "tid": tid, "ts": end, "args": args,
            }));
        }
    }
}
