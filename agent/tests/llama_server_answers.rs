//! The `llama.cpp` adapter's parsers on answers captured from a real llama-server (see
//! `fixtures/llama-server/README.md` for the commit and the commands): what they read from
//! each, and an error naming the field — never a panic or a zero — for each answer cut short
//! or changed.

use meltbench_agent::adapter::llama_server::{first_model, healthy, props, token_count};
use meltbench_agent::adapter::openai::read_stream;
use std::path::PathBuf;

fn fixture(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/llama-server")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn health_while_loading_and_once_loaded() {
    assert!(!healthy(503, &fixture("health-loading.json")).unwrap());
    assert!(healthy(200, &fixture("health-ok.json")).unwrap());
}

#[test]
fn props_give_the_build_and_the_weight_type() {
    assert_eq!(
        props(&fixture("props.json")).unwrap(),
        (Some("b0-unknown".to_string()), Some("Q4_1".to_string()))
    );
    let cut = fixture("props.json");
    let e = props(&cut[..cut.len() / 2]).unwrap_err();
    assert!(e.contains("/props is not JSON"), "{e}");
    let changed = cut.replace("\"build_info\":\"b0-unknown\"", "\"build_info\":0");
    let e = props(&changed).unwrap_err();
    assert!(e.contains("`build_info` is a number"), "{e}");
}

#[test]
fn models_give_the_model_and_its_parameter_count() {
    let (id, n_params) = first_model(&fixture("models.json")).unwrap();
    assert!(id.ends_with(".gguf"), "{id}");
    assert_eq!(n_params, Some(134_515_008));
    let text = fixture("models.json");
    let e = first_model(&text.replace("\"n_params\":", "\"n_parameters\":")).unwrap_err();
    assert!(e.contains("`data[0].meta` has no `n_params`"), "{e}");
    let e = first_model(&text.replace("\"id\":\"", "\"id\":1,\"was\":\"")).unwrap_err();
    assert!(e.contains("`data[0].id` is a number"), "{e}");
    let e = first_model(&text[..text.len() - 3]).unwrap_err();
    assert!(e.contains("/v1/models is not JSON"), "{e}");
}

#[test]
fn tokenize_counts_the_tokens() {
    assert_eq!(token_count(&fixture("tokenize.json")).unwrap(), 4);
    let e = token_count(r#"{"tokens":[504,2365"#).unwrap_err();
    assert!(e.contains("/tokenize is not JSON"), "{e}");
    let e = token_count(r#"{"error":{"code":500}}"#).unwrap_err();
    assert!(e.contains("/tokenize has no `tokens`"), "{e}");
}

#[test]
fn a_completion_stream_has_one_arrival_per_token_and_the_usage() {
    let s = read_stream(fixture("completions-stream.txt").as_bytes(), false).unwrap();
    assert_eq!(s.arrivals.len(), 8);
    assert_eq!(s.finish_reason.as_deref(), Some("length"));
    let u = s.usage.unwrap();
    assert_eq!((u.prompt_tokens, u.completion_tokens), (11, 8));
}

#[test]
fn a_chat_stream_has_one_arrival_per_token_and_the_usage() {
    let s = read_stream(fixture("chat-stream.txt").as_bytes(), true).unwrap();
    assert_eq!(s.arrivals.len(), 8);
    assert_eq!(s.finish_reason.as_deref(), Some("length"));
    assert_eq!(s.usage.unwrap().prompt_tokens, 40);
}

#[test]
fn a_stream_cut_anywhere_is_an_error_saying_how_far_it_got() {
    let text = fixture("completions-stream.txt");
    let done = text.find("data: [DONE]").unwrap();
    // Every cut before the end: at each line start and in the middle of each chunk.
    let mut cuts: Vec<usize> = text.match_indices("data: ").map(|(i, _)| i).collect();
    cuts.extend(cuts.clone().iter().map(|i| i + 40));
    for cut in cuts.into_iter().filter(|&c| c < done) {
        let e = read_stream(&text.as_bytes()[..cut], false).unwrap_err();
        assert!(
            e.contains("tokens")
                && (e.contains("without `data: [DONE]`") || e.contains("not JSON")),
            "cut at {cut}: {e}"
        );
    }
    let changed = text.replacen("\"text\":\" quick\"", "\"text\":7", 1);
    let e = read_stream(changed.as_bytes(), false).unwrap_err();
    assert!(e.contains("`choices[0].text` is a number"), "{e}");
    let changed = text.replace("\"prompt_tokens\":11", "\"prompt_tokens\":-1");
    let e = read_stream(changed.as_bytes(), false).unwrap_err();
    assert!(
        e.contains("`usage.prompt_tokens` is -1, not a count"),
        "{e}"
    );
}
