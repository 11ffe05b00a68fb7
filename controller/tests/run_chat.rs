//! `chat: true` end to end: the suite's flag reaches the engine through the agent job, the
//! engine prefills the templated prompt, and the run's events and summary say which cells were
//! templated; a model without a template fails only its chat cell, naming what is missing.

mod common;

use common::meltbench;
use meltbench_engine::chat::TEMPLATE_KEY;
use meltbench_engine::gguf::{self, Gguf, RawTensorOut, Value as GgufValue};
use meltbench_engine::synth::{write_synth, SynthConfig};
use serde_json::Value;
use std::path::Path;

/// ChatML for the synthetic vocabulary, whose specials are <|im_start|> and <|im_end|>.
const TEMPLATE: &str = "{% for message in messages %}\
{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}\
{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

const PROMPT: &str = "The engineers measured the heat";

/// The synthetic model with `TEMPLATE` in its metadata, at `path`.
fn synth_with_template(dir: &Path, path: &Path) {
    let plain = dir.join("plain.gguf");
    write_synth(&plain, &SynthConfig::default()).unwrap();
    let g = Gguf::open(&plain).unwrap();
    let mut meta = g.metadata.clone();
    meta.push((TEMPLATE_KEY.into(), GgufValue::String(TEMPLATE.into())));
    let tensors: Vec<RawTensorOut> = g
        .tensors
        .iter()
        .map(|t| RawTensorOut {
            name: t.name.clone(),
            dims: t.dims.clone(),
            ggml_type: t.ggml_type,
            data: g.tensor_data(t).unwrap().to_vec(),
        })
        .collect();
    gguf::write_raw(path, &meta, &tensors).unwrap();
}

#[test]
fn chat_scenarios_run_templated_and_are_labelled() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("chatty.gguf");
    synth_with_template(tmp.path(), &model);
    // The templated prompt's tokens, piece by piece: the markers are single special tokens.
    let tok = meltbench_engine::load::load(&model).unwrap().tokenizer;
    let plain = |s: &str| tok.encode(s, false, false).len();
    let templated =
        1 + plain(&format!("user\n{PROMPT}")) + 1 + plain("\n") + 1 + plain("assistant\n");
    let untemplated = tok.encode(PROMPT, true, false).len();

    let suite = tmp.path().join("chat.yaml");
    std::fs::write(
        &suite,
        format!(
            "name: chat-test\nmodels:\n  - name: synth\n  - name: chatty.gguf\n\
             scenarios:\n  - name: raw\n    prompt: \"{PROMPT}\"\n    new_tokens: 2\n\
             \x20 - name: app\n    prompt: \"{PROMPT}\"\n    new_tokens: 2\n    chat: true\n\
             passes: 2\nwarmup: 1\ncold_start: 1\nthreads: [1]\n"
        ),
    )
    .unwrap();
    let out = tmp.path().join("runs");
    let o = meltbench(&tmp.path().join("cache"))
        .arg("run")
        .arg(&suite)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    // The synthetic model has no template, so its chat cell fails, and so does the run.
    assert_eq!(o.status.code(), Some(1), "{}", common::text(&o));
    assert!(
        stderr.contains("synth/native/app+chat/t1/any"),
        "{}",
        common::text(&o)
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
    let by_id = |id: &str| {
        cells
            .iter()
            .find(|c| c["key"]["id"] == id)
            .unwrap_or_else(|| panic!("no cell {id} in {summary}"))
    };
    let failed = by_id("synth/native/app+chat/t1/any");
    let error = failed["error"].as_str().unwrap();
    assert!(error.contains("has no tokenizer.chat_template"), "{error}");
    assert!(by_id("synth/native/raw/t1/any")["error"].is_null());

    let app = by_id("chatty/native/app+chat/t1/any");
    assert!(app["error"].is_null(), "{app}");
    assert_eq!(app["key"]["scenario"], "app+chat");
    assert_eq!(app["prompt_tokens"].as_u64(), Some(templated as u64));
    let raw = by_id("chatty/native/raw/t1/any");
    assert_eq!(raw["key"]["scenario"], "raw");
    assert_eq!(raw["prompt_tokens"].as_u64(), Some(untemplated as u64));

    // The raw events carry the flag on every pass of the chat cell and on none of the other.
    let events: Vec<Value> = std::fs::read_to_string(run.join("events/local.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let passes = |id: &str| -> Vec<&Value> {
        events
            .iter()
            .filter(|e| e["event"] == "pass" && e["cell"] == id)
            .map(|e| &e["pass"])
            .collect()
    };
    let chat_passes = passes("chatty/native/app+chat/t1/any");
    assert_eq!(chat_passes.len(), 3);
    for p in chat_passes {
        assert_eq!(p["chat"], true, "{p}");
        assert_eq!(p["prompt_tokens"].as_u64(), Some(templated as u64));
    }
    for p in passes("chatty/native/raw/t1/any") {
        assert!(p.get("chat").is_none(), "{p}");
    }
}
