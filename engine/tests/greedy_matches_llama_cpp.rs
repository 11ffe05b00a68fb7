//! Greedy continuations agree with llama.cpp's (fixture: fixtures/greedy-smollm2.json).

mod common;

use meltbench_engine::load::load;

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
    let mut worst = usize::MAX;
    for case in cases {
        let (_, _, same, _) = common::greedy_case(&l, case);
        worst = worst.min(same);
    }
    assert!(
        worst >= MIN_MATCHING,
        "a prompt matched only {worst} leading tokens (need {MIN_MATCHING})"
    );
}
