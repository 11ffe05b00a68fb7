//! The llama-bench exports read as llama-bench's readers read them: the SQL run by SQLite, the
//! JSON and JSONL parsed with llama-bench's field names in its order, the CSV header equal to
//! llama-bench's. The t/s figures equal the per-cell figures' means (summary.json's).

use meltbench_protocol::agent::AgentEvent;
use meltbench_protocol::engine::PassRecord;
use meltbench_reports::cell_key::CellKey;
use meltbench_reports::dataset::{device_cells, Dataset};
use meltbench_reports::export::by_name;
use meltbench_reports::export::llama_bench::{self, sample_stddev};
use meltbench_reports::figures::CellFigures;
use meltbench_reports::report::ReportInput;
use serde_json::Value;

/// `test::get_fields()` of llama-bench.cpp, copied by hand from its source.
const LLAMA_BENCH_HEADER: &str = "build_commit,build_number,cpu_info,gpu_info,backends,\
model_filename,model_type,model_size,model_n_params,n_batch,n_ubatch,n_threads,cpu_mask,\
cpu_strict,poll,type_k,type_v,n_gpu_layers,n_cpu_moe,split_mode,main_gpu,no_kv_offload,\
flash_attn,devices,tensor_split,tensor_buft_overrides,load_mode,lazy_mode,embeddings,\
no_op_offload,no_host,repack,fit_target,fit_min_ctx,n_prompt,n_gen,n_depth,test_time,avg_ns,\
stddev_ns,avg_ts,stddev_ts";

/// model_filename, n_prompt, n_gen, n_threads, avg_ts, stddev_ts, model_size, type_k.
type SqlRow = (String, i64, i64, i64, f64, f64, i64, String);

fn dataset() -> Dataset {
    let mut cells = Vec::new();
    for (model, threads) in [("smol'lm", 2), ("tiny", 4)] {
        let id = format!("{model}/q4_0/short/t{threads}/any");
        let key = CellKey {
            id: id.clone(),
            device: "phone".into(),
            model: model.into(),
            precision: "q4_0".into(),
            scenario: "short".into(),
            threads,
            state: "any".into(),
            ..CellKey::default()
        };
        let mut events = Vec::new();
        for i in 0..5u64 {
            let prefill = 20_000_000 + i * 1_234_567 + threads as u64;
            let decode = vec![3_000_000 + i * 77_777, 3_100_000, 2_900_000 + i];
            events.push(AgentEvent::Pass {
                cell: id.clone(),
                session: 0,
                pass: PassRecord {
                    index: i as usize,
                    warmup: i == 0,
                    prompt_tokens: 64,
                    gen_tokens: 4,
                    tokenize_ns: 10_000,
                    prefill_ns: prefill,
                    decode_ns: decode,
                    decode_total_ns: None,
                    detokenize_ns: 5_000,
                    ttft_ns: 10_000 + prefill,
                    stop: "length".into(),
                    start_mono_ns: 1_000_000_000 * (i + 1),
                    end_mono_ns: 1_000_000_000 * (i + 1) + 40_000_000,
                    rss_hwm_bytes: None,
                    chat: false,
                },
                rss_hwm_bytes: None,
                telemetry: None,
            });
        }
        cells.extend(device_cells(&[key], &events));
    }
    for c in &mut cells {
        c.model_file_bytes = Some(91_234_567);
    }
    Dataset {
        runs: Vec::new(),
        cells,
    }
}

fn render(name: &str, d: &Dataset) -> String {
    let input = ReportInput {
        title: "t".into(),
        candidate: d,
        baseline: None,
        gate: None,
        history: None,
        generated_utc: "2026-12-06T00:00:00Z".into(),
        command: "meltbench export".into(),
    };
    by_name(name).unwrap().render(&input).unwrap()
}

/// (pp mean, tg mean) of every cell, as summary.json has them.
fn means(d: &Dataset) -> Vec<(f64, f64)> {
    d.cells
        .iter()
        .map(|c| {
            let f = CellFigures::of(c);
            (
                f.prefill_tokens_per_s.unwrap().mean,
                f.decode_tokens_per_s.unwrap().mean,
            )
        })
        .collect()
}

#[test]
fn sqlite_runs_the_sql_and_reads_the_figures_back() {
    let d = dataset();
    let sql = render("llama-bench-sql", &d);
    let db = rusqlite::Connection::open_in_memory().unwrap();
    db.execute_batch(&sql).unwrap();
    // Running it twice appends, as a second llama-bench run into the same database does.
    db.execute_batch(&sql).unwrap();
    let rows: Vec<SqlRow> = db
        .prepare(
            "SELECT model_filename, n_prompt, n_gen, n_threads, avg_ts, stddev_ts, model_size, \
             type_k FROM llama_bench WHERE rowid <= 4 ORDER BY rowid",
        )
        .unwrap()
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let m = means(&d);
    let want = [
        ("smol'lm", 64, 0, 2, m[0].0),
        ("smol'lm", 0, 3, 2, m[0].1),
        ("tiny", 64, 0, 4, m[1].0),
        ("tiny", 0, 3, 4, m[1].1),
    ];
    assert_eq!(rows.len(), 4);
    for (row, (model, n_prompt, n_gen, threads, avg_ts)) in rows.iter().zip(want) {
        assert_eq!(
            (row.0.as_str(), row.1, row.2, row.3),
            (model, n_prompt, n_gen, threads)
        );
        assert_eq!(row.4, avg_ts, "{model}: avg_ts is the figures' mean");
        assert!(row.5 > 0.0, "the passes differ, so their rates do");
        assert_eq!((row.6, row.7.as_str()), (91_234_567, "f16"));
    }
    let count: i64 = db
        .query_row("SELECT COUNT(*) FROM llama_bench", [], |r| r.get(0))
        .unwrap();
    assert_eq!(count, 8);
}

#[test]
fn json_and_jsonl_have_llama_bench_fields_in_order() {
    let d = dataset();
    let names: Vec<&str> = LLAMA_BENCH_HEADER
        .split(',')
        .chain(["samples_ns", "samples_ts"])
        .collect();
    let json: Value = serde_json::from_str(&render("llama-bench-json", &d)).unwrap();
    let jsonl: Vec<Value> = render("llama-bench-jsonl", &d)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let tests = json.as_array().unwrap();
    assert_eq!(tests.len(), 4);
    assert_eq!(tests, &jsonl, "the same tests in both");
    let m = means(&d);
    for (i, t) in tests.iter().enumerate() {
        // A parsed object's keys are sorted; their order is checked on the text below.
        let obj = t.as_object().unwrap();
        assert_eq!(obj.len(), names.len());
        for name in &names {
            assert!(obj.contains_key(*name), "{name}");
        }
        let pp = i % 2 == 0;
        assert_eq!(t["n_gen"], if pp { 0 } else { 3 });
        assert_eq!(t["cpu_strict"], false);
        assert_eq!(t["repack"], true);
        let ts: Vec<f64> = t["samples_ts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let ns: Vec<u64> = t["samples_ns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(
            ts.len(),
            4,
            "one sample per measured pass, warm-ups left out"
        );
        let want = if pp { m[i / 2].0 } else { m[i / 2].1 };
        assert_eq!(t["avg_ts"].as_f64(), Some(want));
        assert_eq!(t["stddev_ts"].as_f64(), Some(sample_stddev(&ts)));
        assert_eq!(t["avg_ns"].as_u64(), Some(ns.iter().sum::<u64>() / 4));
        // llama-bench's rule: t/s = (n_prompt + n_gen) / time, sample by sample.
        let tokens = t["n_prompt"].as_f64().unwrap() + t["n_gen"].as_f64().unwrap();
        for (s, n) in ts.iter().zip(&ns) {
            assert!((s - tokens * 1e9 / *n as f64).abs() < 1e-9 * s);
        }
    }
    // The field order, read off the text.
    let line = render("llama-bench-jsonl", &d);
    let first = line.lines().next().unwrap();
    let mut at = 0;
    for name in &names {
        let pos = first[at..]
            .find(&format!("\"{name}\":"))
            .unwrap_or_else(|| panic!("{name} out of order"));
        at += pos;
    }
}

#[test]
fn csv_header_is_llama_bench_header() {
    let d = dataset();
    let csv = render("llama-bench-csv", &d);
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some(LLAMA_BENCH_HEADER));
    let mut r = csv::Reader::from_reader(csv.as_bytes());
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 4);
    assert_eq!(&rows[0][5], "smol'lm");
    assert_eq!(&rows[1][35], "3", "n_gen of the tg test");
    assert_eq!(
        llama_bench::FIELDS.len(),
        LLAMA_BENCH_HEADER.split(',').count()
    );
}

#[test]
fn an_empty_run_gives_empty_but_valid_documents() {
    let d = Dataset::default();
    let json: Value = serde_json::from_str(&render("llama-bench-json", &d)).unwrap();
    assert_eq!(json, Value::Array(vec![]));
    let db = rusqlite::Connection::open_in_memory().unwrap();
    db.execute_batch(&render("llama-bench-sql", &d)).unwrap();
    assert_eq!(render("llama-bench-jsonl", &d), "");
}
