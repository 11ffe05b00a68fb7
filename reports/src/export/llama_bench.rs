//! llama-bench's own output formats (`-o json`, `jsonl`, `csv`, `sql`), with its field names,
//! field order, types and test names, so llama.cpp's `scripts/compare-llama-bench.py` and the
//! SQLite pipelines built around llama-bench read meltbench results as they read llama-bench's.
//!
//! Each cell with measured passes gives llama-bench's two tests:
//! - `pp<n_prompt>`: `n_prompt` = the prompt's tokens, `n_gen` = 0; one sample per measured
//!   pass, its prefill time (prompt evaluation and picking the first token).
//! - `tg<n_gen>`: `n_prompt` = 0, `n_gen` = the decode steps of a pass; one sample per pass,
//!   its decode time. The first generated token comes out of the prefill, so it is in the pp
//!   time and not counted here: `n_gen` is the number of tokens the decode time produced (one
//!   less than the pass generated), which keeps llama-bench's rule `t/s = n_gen / time`. When
//!   a pass stopped early (end of sequence), its own step count gives its `samples_ts`, and
//!   `n_gen` is the largest.
//!
//! `avg_ts` is the mean of the per-pass rates as [`CellFigures`] has it, so it equals
//! summary.json's `prefill_tokens_per_s.mean` / `decode_tokens_per_s.mean`; `stddev_ts` is their
//! sample standard deviation (n - 1), as llama-bench's `stdev`; `avg_ns` and `stddev_ns` are the
//! same over the sample times, truncated to integers as llama-bench's `uint64_t`s are (the
//! standard deviation is computed in floating point: llama-bench's integer arithmetic
//! overflows past a few seconds of samples). Floats are written with every digit they need to
//! read back exactly, where llama-bench prints six decimals.
//!
//! Fields that are ours: `build_commit` (the meltbench version of the run), `cpu_info` (the
//! device's CPU model from the agent's probe), `model_filename` (the suite's model name),
//! `model_type` (model and precision; llama-bench prints architecture, size and file type),
//! `model_size` (the model file's bytes), `n_threads`, `n_gpu_layers` (0: the engine runs on
//! the CPU), `type_k` / `type_v` (`f16`, the engine's default cache type), `n_prompt`, `n_gen`,
//! `n_depth` (0: every pass starts from an empty cache), `test_time` (the run's start) and the
//! figures. Placeholders with llama-bench's defaults: `build_number` 0, `gpu_info` empty,
//! `backends` `CPU`, `model_n_params` 0 (unknown), `n_batch` 2048, `n_ubatch` 512, `cpu_mask`
//! `0x0`, `cpu_strict` false, `poll` 50, `n_cpu_moe` 0, `split_mode` `layer`, `main_gpu` 0,
//! `no_kv_offload` false, `flash_attn` -1 (auto), `devices` `auto`, `tensor_split` `0.00`,
//! `tensor_buft_overrides` `none`, `load_mode` and `lazy_mode` `auto`, `embeddings` false,
//! `no_op_offload` 0, `no_host` false, `repack` true, `fit_target` 0, `fit_min_ctx` 0.

use super::{ExportError, Exporter};
use crate::dataset::{CellData, Dataset, PassData};
use crate::figures::CellFigures;
use crate::report::ReportInput;

/// llama-bench's field types (`test::get_field_type`).
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum FieldType {
    Text,
    Bool,
    Int,
    Float,
}

use FieldType::{Bool, Float, Int, Text};

/// llama-bench's fields in its order (`test::get_fields`), with their types.
pub const FIELDS: &[(&str, FieldType)] = &[
    ("build_commit", Text),
    ("build_number", Int),
    ("cpu_info", Text),
    ("gpu_info", Text),
    ("backends", Text),
    ("model_filename", Text),
    ("model_type", Text),
    ("model_size", Int),
    ("model_n_params", Int),
    ("n_batch", Int),
    ("n_ubatch", Int),
    ("n_threads", Int),
    ("cpu_mask", Text),
    ("cpu_strict", Bool),
    ("poll", Int),
    ("type_k", Text),
    ("type_v", Text),
    ("n_gpu_layers", Int),
    ("n_cpu_moe", Int),
    ("split_mode", Text),
    ("main_gpu", Int),
    ("no_kv_offload", Bool),
    ("flash_attn", Int),
    ("devices", Text),
    ("tensor_split", Text),
    ("tensor_buft_overrides", Text),
    ("load_mode", Text),
    ("lazy_mode", Text),
    ("embeddings", Bool),
    ("no_op_offload", Int),
    ("no_host", Bool),
    ("repack", Bool),
    ("fit_target", Int),
    ("fit_min_ctx", Int),
    ("n_prompt", Int),
    ("n_gen", Int),
    ("n_depth", Int),
    ("test_time", Text),
    ("avg_ns", Int),
    ("stddev_ns", Int),
    ("avg_ts", Float),
    ("stddev_ts", Float),
];

/// The table llama-bench's SQL output creates and fills.
pub const SQL_TABLE: &str = "llama_bench";

/// One llama-bench test: a value per [`FIELDS`] entry, as llama-bench's `get_values` prints it
/// (booleans `0`/`1`), and the samples.
#[derive(Clone, Debug, PartialEq)]
pub struct Test {
    pub values: Vec<String>,
    pub samples_ns: Vec<u64>,
    pub samples_ts: Vec<f64>,
}

#[derive(Clone, Copy)]
enum Kind {
    Prompt,
    Generation,
}

/// The pp and tg tests of every cell with measured passes, cell after cell.
pub fn tests(d: &Dataset) -> Vec<Test> {
    let mut out = Vec::new();
    for c in &d.cells {
        let f = CellFigures::of(c);
        for kind in [Kind::Prompt, Kind::Generation] {
            if let Some(t) = test(d, c, &f, kind) {
                out.push(t);
            }
        }
    }
    out
}

fn test(d: &Dataset, c: &CellData, f: &CellFigures, kind: Kind) -> Option<Test> {
    // A pass without a rate (no time measured) gives no sample, as it gives the figures none.
    let samples: Vec<(u64, f64)> = c
        .passes()
        .filter_map(|p| match kind {
            Kind::Prompt => Some((p.split.prefill_ns, p.prefill_tokens_per_s?)),
            Kind::Generation => Some((p.split.decode_ns, p.decode_tokens_per_s?)),
        })
        .filter(|(_, ts)| ts.is_finite())
        .collect();
    let mean_ts = match kind {
        Kind::Prompt => f.prefill_tokens_per_s.as_ref()?.mean,
        Kind::Generation => f.decode_tokens_per_s.as_ref()?.mean,
    };
    let samples_ns: Vec<u64> = samples.iter().map(|s| s.0).collect();
    let samples_ts: Vec<f64> = samples.iter().map(|s| s.1).collect();
    let steps = |p: &PassData| p.split.gen_tokens.saturating_sub(1);
    let (n_prompt, n_gen) = match kind {
        Kind::Prompt => (c.passes().map(|p| p.split.prompt_tokens).max()?, 0),
        Kind::Generation => (0, c.passes().map(steps).max()?),
    };
    let avg_ns = samples_ns.iter().sum::<u64>() / samples_ns.len().max(1) as u64;
    let ns_f64: Vec<f64> = samples_ns.iter().map(|&n| n as f64).collect();
    let k = &c.key;
    let run = d.runs.iter().find(|r| {
        c.sessions
            .first()
            .is_some_and(|s| s.run_id == r.manifest.run_id)
    });
    let run = run.or(d.runs.first());
    let version = run.map_or(env!("CARGO_PKG_VERSION"), |r| &r.manifest.meltbench_version);
    let cpu_info = run
        .and_then(|r| r.manifest.devices.iter().find(|dev| dev.name == k.device))
        .and_then(|dev| dev.info.as_ref())
        .and_then(|i| i.cpu_model.clone())
        .unwrap_or_default();
    let test_time = run.map_or(String::new(), |r| r.manifest.started_utc.clone());
    let b = |v: bool| if v { "1" } else { "0" }.to_string();
    let values: Vec<String> = vec![
        version.to_string(),
        "0".into(),
        cpu_info,
        String::new(),
        "CPU".into(),
        k.model.clone(),
        format!("{} {}", k.model, k.precision),
        c.model_file_bytes.unwrap_or(0).to_string(),
        "0".into(),
        "2048".into(),
        "512".into(),
        k.threads.to_string(),
        "0x0".into(),
        b(false),
        "50".into(),
        "f16".into(),
        "f16".into(),
        "0".into(),
        "0".into(),
        "layer".into(),
        "0".into(),
        b(false),
        "-1".into(),
        "auto".into(),
        "0.00".into(),
        "none".into(),
        "auto".into(),
        "auto".into(),
        b(false),
        "0".into(),
        b(false),
        b(true),
        "0".into(),
        "0".into(),
        n_prompt.to_string(),
        n_gen.to_string(),
        "0".into(),
        test_time,
        avg_ns.to_string(),
        (sample_stddev(&ns_f64) as u64).to_string(),
        mean_ts.to_string(),
        sample_stddev(&samples_ts).to_string(),
    ];
    debug_assert_eq!(values.len(), FIELDS.len());
    Some(Test {
        values,
        samples_ns,
        samples_ts,
    })
}

/// Standard deviation with n - 1 in the denominator; 0 for fewer than two values, as
/// llama-bench's `stdev`.
pub fn sample_stddev(v: &[f64]) -> f64 {
    if v.len() < 2 {
        return 0.0;
    }
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let ss: f64 = v.iter().map(|x| (x - mean) * (x - mean)).sum();
    (ss / (v.len() - 1) as f64).sqrt()
}

/// A value as llama-bench's `format_json_value` writes it.
fn json_value(ty: FieldType, v: &str) -> String {
    match ty {
        Text => serde_json::to_string(v).expect("a string always serializes"),
        Bool => (v != "0").to_string(),
        Int | Float => v.to_string(),
    }
}

fn join<T: ToString>(v: &[T]) -> String {
    v.iter().map(T::to_string).collect::<Vec<_>>().join(", ")
}

fn json_fields(t: &Test) -> impl Iterator<Item = (&'static str, String)> + '_ {
    FIELDS
        .iter()
        .zip(&t.values)
        .map(|((name, ty), v)| (*name, json_value(*ty, v)))
}

pub fn render_json(tests: &[Test]) -> String {
    let objects: Vec<String> = tests
        .iter()
        .map(|t| {
            let mut s = String::from("  {\n");
            for (name, v) in json_fields(t) {
                s += &format!("    \"{name}\": {v},\n");
            }
            s += &format!("    \"samples_ns\": [ {} ],\n", join(&t.samples_ns));
            s += &format!("    \"samples_ts\": [ {} ]\n", join(&t.samples_ts));
            s + "  }"
        })
        .collect();
    format!("[\n{}\n]\n", objects.join(",\n"))
}

pub fn render_jsonl(tests: &[Test]) -> String {
    let mut out = String::new();
    for t in tests {
        out.push('{');
        for (name, v) in json_fields(t) {
            out += &format!("\"{name}\": {v}, ");
        }
        out += &format!("\"samples_ns\": [ {} ],", join(&t.samples_ns));
        out += &format!("\"samples_ts\": [ {} ]", join(&t.samples_ts));
        out += "}\n";
    }
    out
}

pub fn render_csv(tests: &[Test]) -> String {
    let names: Vec<&str> = FIELDS.iter().map(|f| f.0).collect();
    let mut out = names.join(",") + "\n";
    for t in tests {
        let quoted: Vec<String> = t
            .values
            .iter()
            .map(|v| format!("\"{}\"", v.replace('"', "\"\"")))
            .collect();
        out += &(quoted.join(",") + "\n");
    }
    out
}

pub fn render_sql(tests: &[Test]) -> String {
    let columns: Vec<String> = FIELDS
        .iter()
        .map(|(name, ty)| {
            let sql = match ty {
                Text => "TEXT",
                Bool | Int => "INTEGER",
                Float => "REAL",
            };
            format!("  {name} {sql}")
        })
        .collect();
    let mut out = format!(
        "CREATE TABLE IF NOT EXISTS {SQL_TABLE} (\n{}\n);\n\n",
        columns.join(",\n")
    );
    let names: Vec<&str> = FIELDS.iter().map(|f| f.0).collect();
    for t in tests {
        // llama-bench quotes every value and leaves quotes inside unescaped; a model or CPU
        // name with an apostrophe would break its statement, so they are doubled here.
        let values: Vec<String> = t
            .values
            .iter()
            .map(|v| format!("'{}'", v.replace('\'', "''")))
            .collect();
        out += &format!(
            "INSERT INTO {SQL_TABLE} ({}) VALUES ({});\n",
            names.join(", "),
            values.join(", ")
        );
    }
    out
}

/// The four formats, one exporter each.
pub struct LlamaBench {
    name: &'static str,
    about: &'static str,
    extension: &'static str,
    render: fn(&[Test]) -> String,
}

impl Exporter for LlamaBench {
    fn name(&self) -> &'static str {
        self.name
    }

    fn about(&self) -> &'static str {
        self.about
    }

    fn extension(&self) -> &'static str {
        self.extension
    }

    fn render(&self, input: &ReportInput) -> Result<String, ExportError> {
        Ok((self.render)(&tests(input.candidate)))
    }
}

pub static JSON: LlamaBench = LlamaBench {
    name: "llama-bench-json",
    about: "llama-bench's `-o json`: pp and tg tests per cell",
    extension: "json",
    render: render_json,
};

pub static JSONL: LlamaBench = LlamaBench {
    name: "llama-bench-jsonl",
    about: "llama-bench's `-o jsonl`: one test per line",
    extension: "jsonl",
    render: render_jsonl,
};

pub static CSV: LlamaBench = LlamaBench {
    name: "llama-bench-csv",
    about: "llama-bench's `-o csv`",
    extension: "csv",
    render: render_csv,
};

pub static SQL: LlamaBench = LlamaBench {
    name: "llama-bench-sql",
    about: "llama-bench's `-o sql`, for SQLite and compare-llama-bench.py",
    extension: "sql",
    render: render_sql,
};
