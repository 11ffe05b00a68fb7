//! Greedy continuations agree with llama.cpp's (fixture: fixtures/greedy-smollm2.json).

mod common;

use meltbench_engine::generate::generate;
use meltbench_engine::kernels;
use meltbench_engine::load::load;
use meltbench_engine::sampler::{Sampler, SamplerConfig};
use meltbench_engine::session::Session;

/// The acceptance bar: at least this many leading tokens equal on every prompt. More usually
/// match; the count is printed. (Later tokens may legitimately differ: llama.cpp keeps its KV
/// cache in f16 and sums in another order, so near-ties can break the other way.)
const MIN_MATCHING: usize = 4;

#[test]
fn smollm2_greedy_tokens_agree_with_llama_cpp() {
    let Some(model) = common::smollm2() else {
        return;
    };
    let l = load(&model).unwrap();
    let fx = common::fixture("greedy-smollm2.json");
    let cases = fx["cases"].as_array().unwrap();
    assert!(cases.len() >= 5);
    let ids = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    let mut worst = usize::MAX;
    for case in cases {
        let prompt = case["prompt"].as_str().unwrap();
        let prompt_ids = ids(&case["prompt_ids"]);
        assert_eq!(
            l.tokenizer.encode(prompt, true, false),
            prompt_ids,
            "prompt tokens for {prompt:?}"
        );
        let want = ids(&case["generated_ids"]);
        let mut session = Session::new(
            &l.model,
            kernels::best(),
            common::threads(),
            prompt_ids.len() + want.len(),
        );
        let mut sampler = Sampler::new(SamplerConfig {
            temperature: 0.0,
            ..Default::default()
        });
        let g = generate(
            &mut session,
            &l.tokenizer,
            &mut sampler,
            &prompt_ids,
            want.len(),
            true,
            |_| {},
        )
        .unwrap();
        let same = g
            .tokens
            .iter()
            .zip(&want)
            .take_while(|(a, b)| a == b)
            .count();
        println!(
            "{prompt:?}: {same} of {} greedy tokens equal llama.cpp's; ours: {:?}",
            want.len(),
            l.tokenizer.decode(&g.tokens)
        );
        worst = worst.min(same);
    }
    assert!(
        worst >= MIN_MATCHING,
        "a prompt matched only {worst} leading tokens (need {MIN_MATCHING})"
    );
}
