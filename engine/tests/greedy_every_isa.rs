//! Real models give the x86_64 build's greedy tokens on every kernel table of the CPU the test
//! runs on: here the x86_64 tables, and under `cargo test --target aarch64-unknown-linux-musl`
//! (qemu, as ci/test.sh runs it) the NEON tables. Reference: fixtures/greedy-every-isa.json.
//!
//! Each table sums in its own order, so at a near-tie of the two best logits two tables may
//! pick different tokens and part from there on; the four x86_64 tables already do on some
//! prompts. The fixture therefore holds, per prompt, the leading tokens on which every x86_64
//! table agrees, and every table here must produce exactly those: a NEON table is held to
//! the x86_64 build as tightly as the x86_64 tables are held to each other.

mod common;

use meltbench_engine::kernels::{self, Isa, Kernels};
use meltbench_engine::load::load;
use std::path::Path;

/// The tables to hold to the reference. Under emulation the scalar table is left out: it is
/// the same Rust on both architectures and checked natively, and emulating it costs minutes.
fn tables() -> Vec<&'static Kernels> {
    let mut all = kernels::variants();
    if cfg!(not(target_arch = "x86_64")) {
        all.retain(|k| k.isa != Isa::Scalar);
    }
    all
}

fn check(name: &str, model: &Path) {
    let fx = common::fixture("greedy-every-isa.json");
    let n = fx["n_predict"].as_u64().unwrap() as usize;
    let cases = fx["models"][name].as_array().unwrap();
    assert!(!cases.is_empty(), "no {name} cases in the fixture");
    let l = load(model).unwrap();
    let mut failures = Vec::new();
    for k in tables() {
        for case in cases {
            let prompt = case["prompt"].as_str().unwrap();
            let want = common::ids(&case["agreed"]);
            assert!(
                want.len() >= 4,
                "{prompt:?}: the reference is too short to test"
            );
            let got = common::greedy_tokens(&l, k, common::threads(), prompt, n);
            let same = got.iter().zip(&want).take_while(|(a, b)| a == b).count();
            println!(
                "{name} {} {prompt:?}: {same} of {} agreed tokens; ours {got:?}",
                k.name,
                want.len()
            );
            if same < want.len() {
                failures.push(format!(
                    "{} {prompt:?}: token {same} is {} where every x86_64 table gives {}",
                    k.name, got[same], want[same]
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{name}: tokens differ from the x86_64 build:\n{}",
        failures.join("\n")
    );
}

#[test]
fn smollm2_greedy_tokens_equal_the_x86_64_build_on_every_table() {
    if let Some(model) = common::smollm2() {
        check("smollm2", &model);
    }
}

#[test]
fn gemma3_greedy_tokens_equal_the_x86_64_build_on_every_table() {
    if let Some(model) = common::gemma3() {
        check("gemma3", &model);
    }
}
