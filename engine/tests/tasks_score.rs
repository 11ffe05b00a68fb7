//! Multiple-choice scoring on the synthetic model, checked against log-likelihoods computed by
//! hand here: one forward pass per token of context + choice, each next token's probability
//! taken from the last position's logits by an explicit log-softmax. Batching, the shared
//! prefix and the choice boundary are all the scorer's, so a slip in any of them shows.

mod common;

use meltbench_engine::dtype::DType;
use meltbench_engine::load::load;
use meltbench_engine::session::{Logits, Session};
use meltbench_engine::tasks::generate::{items, TASKS};
use meltbench_engine::tasks::{score_item, score_task, Item, TaskError};
use meltbench_engine::tokenizer::Tokenizer;

/// log p(choice | context), one token at a time, in f64 from the raw logits.
fn by_hand(session: &mut Session<'_>, tok: &Tokenizer, context: &str, choice: &str) -> f64 {
    let ctx = tok.encode(context, true, false);
    let whole = tok.encode(&format!("{context}{choice}"), true, false);
    let shared = ctx.iter().zip(&whole).take_while(|(a, b)| a == b).count();
    let mut sum = 0.0;
    for i in shared.max(1)..whole.len() {
        session.reset();
        let row = session.forward(&whole[..i], Logits::Last).unwrap();
        let max = row
            .iter()
            .map(|&x| x as f64)
            .fold(f64::NEG_INFINITY, f64::max);
        let z: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
        sum += row[whole[i] as usize] as f64 - max - z.ln();
    }
    sum
}

#[test]
fn log_likelihoods_equal_the_ones_computed_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::synth_model(dir.path(), DType::F32);
    let l = load(&model).unwrap();
    let mut session = Session::new(&l.model, common::kernels(), common::threads(), 256);
    let mut checked = 0;
    for task in TASKS {
        for item in items(task, 3, 11).unwrap() {
            let s = score_item(&mut session, &l.tokenizer, &item).unwrap();
            for (c, choice) in item.choices.iter().enumerate() {
                let want = by_hand(&mut session, &l.tokenizer, &item.context, choice);
                assert!(
                    (s.logliks[c] - want).abs() < 1e-3 * want.abs().max(1.0),
                    "{task} choice {c} {choice:?}: scored {} by hand {want}",
                    s.logliks[c]
                );
                assert!(s.logliks[c] < 0.0);
                checked += 1;
            }
            let best = (0..4)
                .max_by(|&a, &b| s.logliks[a].total_cmp(&s.logliks[b]))
                .unwrap();
            assert_eq!(s.picked, best);
        }
    }
    assert_eq!(checked, 4 * 3 * 4);
}

#[test]
fn a_task_scores_its_accuracy_and_a_choice_adding_nothing_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::synth_model(dir.path(), DType::F32);
    let l = load(&model).unwrap();
    let mut session = Session::new(&l.model, common::kernels(), common::threads(), 256);
    // The right answer where the model's own pick is: accuracy 1; elsewhere: 0.
    let mut probe = items("arithmetic", 5, 3).unwrap();
    let mut seen = 0;
    let picks: Vec<usize> = probe
        .iter()
        .map(|item| score_item(&mut session, &l.tokenizer, item).unwrap().picked)
        .collect();
    for (item, &p) in probe.iter_mut().zip(&picks) {
        item.answer = p;
    }
    let s = score_task(&mut session, &l.tokenizer, "arithmetic", &probe, |_, _| {
        seen += 1
    })
    .unwrap();
    assert_eq!((s.items, s.accuracy, s.chance, seen), (5, 1.0, 0.25, 5));
    for (item, &p) in probe.iter_mut().zip(&picks) {
        item.answer = (p + 1) % 4;
    }
    let s = score_task(&mut session, &l.tokenizer, "arithmetic", &probe, |_, _| {}).unwrap();
    assert_eq!(s.accuracy, 0.0);

    let empty = Item {
        context: "Question: what?\nAnswer:".into(),
        choices: vec![" yes".into(), String::new()],
        answer: 0,
    };
    let e = score_item(&mut session, &l.tokenizer, &empty).unwrap_err();
    assert!(matches!(e, TaskError::EmptyChoice { choice: 1, .. }), "{e}");
}

#[test]
fn the_command_scores_each_task_and_names_an_unknown_one() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::synth_model(dir.path(), DType::F32);
    let out = common::engine()
        .args([
            "tasks",
            "--items",
            "4",
            "--task",
            "copying,units",
            "--json",
            "-t",
            "1",
        ])
        .arg(&model)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tasks = v["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 2, "{v}");
    assert_eq!(
        (tasks[0]["task"].as_str(), tasks[0]["items"].as_u64()),
        (Some("copying"), Some(4))
    );
    assert_eq!(tasks[1]["chance"], 0.25, "{v}");
    let out = common::engine()
        .args(["tasks", "--task", "trivia"])
        .arg(&model)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown task 'trivia' (tasks: arithmetic, weekdays, copying, units)"),
        "{err}"
    );
}
