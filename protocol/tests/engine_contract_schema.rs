//! `docs/engine-contract.schema.json` is the JSON Schema of the bench contract, generated from the
//! types in `src/engine.rs` (feature `schema`, turned on for tests by this crate's
//! dev-dependency on itself). One file holds both directions:
//!
//! - the root validates one line of engine output (an `EngineRecord`: `load`, `pass` or `done`);
//! - `#/$defs/EngineJob` validates the job file the engine reads.
//!
//! The root is `{"$ref": "#/$defs/EngineRecord"}` beside every definition, so a validator given
//! the file checks output lines as is, and a job is checked against the same file with
//! `#/$defs/EngineJob`. Object keys are sorted, so the file does not depend on serde_json's
//! `preserve_order` feature.
//!
//! `UPDATE_SCHEMA=1 cargo test -p meltbench-protocol --test engine_contract_schema` rewrites
//! the file; without it, a file that differs from the types fails the test.

use meltbench_protocol::engine::{
    ChatPrompt, DoneRecord, EngineJob, EngineRecord, LoadRecord, PassRecord, Prompt,
};
use meltbench_protocol::{protocol_major, PROTOCOL_VERSION};
use schemars::generate::SchemaSettings;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

const REGENERATE: &str =
    "UPDATE_SCHEMA=1 cargo test -p meltbench-protocol --test engine_contract_schema";

fn docs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs")
}

/// The published schema, as generated from the types now.
fn schema() -> Value {
    let mut generator = SchemaSettings::draft2020_12().into_generator();
    let record = generator.subschema_for::<EngineRecord>();
    generator.subschema_for::<EngineJob>();
    let defs = generator.take_definitions(true);
    let major = protocol_major(PROTOCOL_VERSION).expect("PROTOCOL_VERSION starts with a number");
    let mut root = Map::new();
    root.insert(
        "$schema".into(),
        "https://json-schema.org/draft/2020-12/schema".into(),
    );
    root.insert(
        "title".into(),
        format!("meltbench bench contract, protocol {major}.x").into(),
    );
    root.insert(
        "description".into(),
        "Generated from protocol/src/engine.rs; see docs/engine-contract.md. The root validates \
         one line of engine output (an EngineRecord); #/$defs/EngineJob validates the job file. \
         Durations (*_ns) are nanoseconds, *_mono_ns are CLOCK_MONOTONIC stamps in nanoseconds."
            .into(),
    );
    root.insert("$ref".into(), record.as_value()["$ref"].clone());
    assert_eq!(
        root["$ref"], "#/$defs/EngineRecord",
        "EngineRecord is a definition"
    );
    root.insert("$defs".into(), Value::Object(defs));
    sorted(Value::Object(root))
}

/// `v` with every object's keys in order, whatever map serde_json was built with.
fn sorted(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(String, Value)> = m.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(sorted).collect()),
        other => other,
    }
}

fn pretty(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).expect("a schema serializes");
    s.push('\n');
    s
}

#[test]
fn published_schema_matches_the_types() {
    let path = docs().join("engine-contract.schema.json");
    let want = pretty(&schema());
    if std::env::var("UPDATE_SCHEMA").is_ok_and(|v| !v.is_empty() && v != "0") {
        std::fs::write(&path, &want)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        eprintln!("rewrote {}", path.display());
        return;
    }
    let have = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}; generate it with `{REGENERATE}`",
            path.display()
        )
    });
    if have != want {
        let line = have
            .lines()
            .zip(want.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| have.lines().count().min(want.lines().count()));
        panic!(
            "docs/engine-contract.schema.json is not the schema of the types in \
             protocol/src/engine.rs (first difference at line {}: file has {:?}, the types give \
             {:?}).\nRegenerate it with `{REGENERATE}`, review the diff and decide the \
             PROTOCOL_VERSION bump (docs/engine-contract.md, Versioning).",
            line + 1,
            have.lines().nth(line).unwrap_or("<end of file>"),
            want.lines().nth(line).unwrap_or("<end of file>"),
        );
    }
}

/// The published schema with its root pointing at definition `name`.
fn validator(name: &str) -> jsonschema::Validator {
    let mut s = schema();
    s["$ref"] = format!("#/$defs/{name}").into();
    jsonschema::validator_for(&s).expect("the schema compiles")
}

fn assert_valid(v: &jsonschema::Validator, instance: &Value) {
    let errors: Vec<String> = v
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{instance}\n{}", errors.join("\n"));
}

/// A job as the agent writes it: every key but `depth` (left out at 0), nulls included.
fn sample_job() -> EngineJob {
    EngineJob {
        prompt: Prompt::Tokens(64),
        n_gen: 4,
        passes: 1,
        warmup: 1,
        threads: Some(4),
        ignore_eos: true,
        temperature: 0.0,
        seed: 0,
        kernels: None,
        chat: false,
        depth: 0,
    }
}

/// What `meltbench-engine bench` writes for [`sample_job`]: a load, a warm-up, a measured pass
/// and done.
fn sample_records() -> Vec<EngineRecord> {
    let pass = |index: usize, start: u64| {
        let decode_ns = vec![6_100_000, 6_050_000, 6_200_000];
        let (tokenize_ns, prefill_ns, detokenize_ns) = (41_000, 48_000_000, 9_000);
        let total = tokenize_ns + prefill_ns + decode_ns.iter().sum::<u64>() + detokenize_ns;
        EngineRecord::Pass(PassRecord {
            index,
            warmup: index == 0,
            prompt_tokens: 64,
            gen_tokens: 4,
            tokenize_ns,
            prefill_ns,
            decode_ns,
            decode_total_ns: None,
            detokenize_ns,
            ttft_ns: tokenize_ns + prefill_ns,
            stop: "length".into(),
            start_mono_ns: start,
            end_mono_ns: start + total + 20_000,
            rss_hwm_bytes: Some(112_394_240),
            chat: false,
        })
    };
    vec![
        EngineRecord::Load(LoadRecord {
            protocol: PROTOCOL_VERSION.into(),
            engine_version: "0.1.0".into(),
            model_path: "/data/local/tmp/meltbench/blobs/smollm2-135m-q4_1.gguf".into(),
            architecture: "llama".into(),
            dtype: "q4_1".into(),
            n_params: 134_515_008,
            file_bytes: 91_893_504,
            weight_bytes_per_token: 80_216_064,
            threads: 4,
            cpus: Some("0-7".into()),
            placement: Some("performance cores 4-7 of 8 (by cpu_capacity)".into()),
            kernels: "neon".into(),
            open_ns: 180_000,
            weights_ns: 2_400_000,
            tokenizer_ns: 31_000_000,
            session_ns: 1_900_000,
            start_mono_ns: 5_000_000_000,
            end_mono_ns: 5_036_000_000,
            chat: None,
            unmeasured: Vec::new(),
            memory_of: None,
        }),
        pass(0, 5_040_000_000),
        pass(1, 5_110_000_000),
        EngineRecord::Done(DoneRecord {
            passes: 1,
            warmup: 1,
            peak_rss_bytes: Some(112_394_240),
        }),
    ]
}

#[test]
fn a_sample_job_and_its_records_validate() {
    let job = serde_json::to_value(sample_job()).unwrap();
    assert!(job.get("depth").is_none(), "depth is left out at 0: {job}");
    assert_valid(&validator("EngineJob"), &job);
    let mut chat = sample_job();
    chat.prompt = Prompt::Text("Why is the sky blue?".into());
    chat.chat = true;
    chat.depth = 512;
    chat.kernels = Some("neon".into());
    assert_valid(
        &validator("EngineJob"),
        &serde_json::to_value(chat).unwrap(),
    );

    let line = validator("EngineRecord");
    for rec in sample_records() {
        // One line, exactly as the engine prints it.
        let text = serde_json::to_string(&rec).unwrap();
        assert!(!text.contains('\n'));
        assert_valid(&line, &serde_json::from_str(&text).unwrap());
    }
    // A chat job's load record carries how the prompt was templated.
    let mut load = serde_json::to_value(&sample_records()[0]).unwrap();
    load["chat"] = serde_json::to_value(ChatPrompt {
        prompt_tokens: 31,
        user_tokens: 6,
        template_sha256: "ab".repeat(32),
    })
    .unwrap();
    assert_valid(&line, &load);
}

/// The smallest lines the agent accepts: every optional field left out (as a shim writes them).
const MINIMAL: [&str; 3] = [
    r#"{"type":"load","protocol":"1.0","engine_version":"myrt 0.4","model_path":"/m.pte","architecture":"llama","dtype":"q4","n_params":0,"file_bytes":1,"weight_bytes_per_token":0,"threads":4,"kernels":"xnnpack","open_ns":0,"weights_ns":2,"tokenizer_ns":0,"session_ns":0,"start_mono_ns":10,"end_mono_ns":12}"#,
    r#"{"type":"pass","index":0,"warmup":false,"prompt_tokens":8,"gen_tokens":2,"tokenize_ns":0,"prefill_ns":5,"decode_ns":[3],"detokenize_ns":0,"ttft_ns":5,"stop":"length","start_mono_ns":13,"end_mono_ns":21}"#,
    r#"{"type":"done","passes":1,"warmup":0}"#,
];

#[test]
fn schema_and_parser_agree_on_what_is_optional() {
    let line = validator("EngineRecord");
    for text in MINIMAL {
        let v: Value = serde_json::from_str(text).unwrap();
        assert_valid(&line, &v);
        serde_json::from_str::<EngineRecord>(text)
            .unwrap_or_else(|e| panic!("the agent would refuse {text}: {e}"));
        // Unknown fields: accepted by both (the agent drops them).
        let mut extra = v.clone();
        extra["vendor_note"] = "x".into();
        assert_valid(&line, &extra);
        assert!(serde_json::from_value::<EngineRecord>(extra).is_ok());
        // Every field the minimal line has is required by both.
        for key in v.as_object().unwrap().keys().filter(|k| *k != "type") {
            let mut less = v.clone();
            less.as_object_mut().unwrap().remove(key);
            assert!(
                !line.is_valid(&less),
                "the schema accepts {text} without {key}"
            );
            assert!(
                serde_json::from_value::<EngineRecord>(less).is_err(),
                "the agent accepts {text} without {key}"
            );
        }
    }
    let bad_type = json!({"type": "progress", "percent": 50});
    assert!(!line.is_valid(&bad_type));
    assert!(serde_json::from_value::<EngineRecord>(bad_type).is_err());

    // The job: the three keys without a default are required, unknown keys are refused.
    let job = validator("EngineJob");
    let min = json!({"prompt": {"tokens": 8}, "n_gen": 2, "passes": 1});
    assert_valid(&job, &min);
    assert!(serde_json::from_value::<EngineJob>(min.clone()).is_ok());
    let mut unknown = min.clone();
    unknown["temperture"] = 0.7.into();
    assert!(!job.is_valid(&unknown));
    assert!(serde_json::from_value::<EngineJob>(unknown).is_err());
}

/// A known gap, stated in docs/engine-contract.md: JSON Schema's `integer` admits `1.0`, the
/// agent's parser (serde_json into u64) does not, so a duration written as a float loses the
/// line.
#[test]
fn integers_written_as_floats_pass_the_schema_but_not_the_agent() {
    let text = MINIMAL[1].replace(r#""prefill_ns":5"#, r#""prefill_ns":5.0"#);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert!(validator("EngineRecord").is_valid(&v));
    assert!(serde_json::from_str::<EngineRecord>(&text).is_err());
}

/// The shim in docs/engine-contract.md, run against a stand-in runtime: its output must be what
/// the agent reads. Needs `python3` (ci/test.sh installs it); without it the test fails when
/// `CI=true` and skips loudly elsewhere.
#[test]
fn the_documented_shim_writes_the_contract() {
    let doc = std::fs::read_to_string(docs().join("engine-contract.md")).unwrap();
    let shim = doc
        .split("```python\n")
        .nth(1)
        .and_then(|s| s.split("\n```").next())
        .expect("docs/engine-contract.md has a ```python block");
    let dir = std::env::temp_dir().join(format!("meltbench-shim-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("shim.py"), shim).unwrap();
    // The documented runtime API: load(path, threads) -> model; model.run(n_prompt, n_gen) ->
    // (prefill_ns, [decode_ns per token after the first]).
    std::fs::write(
        dir.join("myrt.py"),
        "__version__ = '0.4'\n\
         class Model:\n    \
             def run(self, n_prompt, n_gen):\n        \
                 return 1000 * n_prompt, [500] * (n_gen - 1)\n\
         def load(path, threads=None):\n    return Model()\n",
    )
    .unwrap();
    std::fs::write(dir.join("model.pte"), b"weights").unwrap();
    let mut job = sample_job();
    job.threads = None;
    std::fs::write(
        dir.join("job.json"),
        serde_json::to_vec_pretty(&job).unwrap(),
    )
    .unwrap();
    let out = match Command::new("python3")
        .arg(dir.join("shim.py"))
        .arg("bench")
        .arg(dir.join("model.pte"))
        .arg("--job")
        .arg(dir.join("job.json"))
        .env("PYTHONPATH", &dir)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(std::process::Stdio::null())
        .output()
    {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "python3 is missing; ci/test.sh installs it"
            );
            eprintln!("SKIPPED: python3 is not installed, so the documented shim was not run");
            let _ = std::fs::remove_dir_all(&dir);
            return;
        }
        Err(e) => panic!("cannot run python3: {e}"),
    };
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let line = validator("EngineRecord");
    let records: Vec<EngineRecord> = stdout
        .lines()
        .map(|l| {
            assert_valid(&line, &serde_json::from_str(l).unwrap());
            serde_json::from_str(l).unwrap_or_else(|e| panic!("the agent would refuse {l}: {e}"))
        })
        .collect();
    let [EngineRecord::Load(load), passes @ .., EngineRecord::Done(done)] = &records[..] else {
        panic!("not load, passes, done: {stdout}");
    };
    assert_eq!(
        protocol_major(&load.protocol),
        protocol_major(PROTOCOL_VERSION),
        "the shim's protocol"
    );
    assert!(load.start_mono_ns <= load.end_mono_ns);
    assert_eq!(passes.len(), job.warmup + job.passes);
    let mut last = load.end_mono_ns;
    for (i, p) in passes.iter().enumerate() {
        let EngineRecord::Pass(p) = p else {
            panic!("not a pass: {p:?}")
        };
        assert_eq!((p.index, p.warmup), (i, i < job.warmup));
        assert_eq!(p.decode_ns.len() + 1, p.gen_tokens);
        assert_eq!(p.ttft_ns, p.tokenize_ns + p.prefill_ns);
        assert!(last <= p.start_mono_ns && p.start_mono_ns <= p.end_mono_ns);
        last = p.end_mono_ns;
    }
    assert_eq!((done.passes, done.warmup), (job.passes, job.warmup));
}
