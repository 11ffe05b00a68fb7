//! Multiple-choice tasks scored by log-likelihood, as lm-evaluation-harness and llama.cpp's
//! `llama-perplexity --multiple-choice` score them: each choice is appended to the item's
//! context, the model's log-probabilities of the choice's tokens are summed, and the item counts
//! as right when the right choice has the highest sum (`accuracy`) or the highest sum per byte
//! of the choice (`accuracy_norm`, which does not favour short answers). The items come from
//! [`generate`]: made by the project, so no data set is fetched.

pub mod generate;

use crate::perplexity::log_softmax_at;
use crate::session::{ForwardError, Logits, Session};
use crate::tokenizer::Tokenizer;

/// One question: the context, the choices as they continue it (with their leading space), and
/// which is right.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    pub context: String,
    pub choices: Vec<String>,
    pub answer: usize,
}

/// How the model scored one item.
#[derive(Clone, Debug, PartialEq)]
pub struct ItemScore {
    /// Sum of the log-probabilities (nats) of each choice's tokens, given the context.
    pub logliks: Vec<f64>,
    /// The choice with the highest sum.
    pub picked: usize,
    /// The choice with the highest sum per byte.
    pub picked_norm: usize,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TaskScore {
    pub task: String,
    pub items: usize,
    pub accuracy: f64,
    pub accuracy_norm: f64,
    /// What picking at random scores (1 / choices).
    pub chance: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("choice {choice} of an item adds no token to its context {context:?}: a choice must continue the text")]
    EmptyChoice { choice: usize, context: String },
    #[error(transparent)]
    Forward(#[from] ForwardError),
}

/// The choices' log-likelihoods for one item. A choice's tokens are those of context + choice
/// after the longest prefix they share with the context's own tokens, so a merge across the
/// boundary (" 4" + "2" into " 42") is scored as the model sees the whole text.
pub fn score_item(
    session: &mut Session<'_>,
    tokenizer: &Tokenizer,
    item: &Item,
) -> Result<ItemScore, TaskError> {
    let context = tokenizer.encode(&item.context, true, false);
    let vocab = session.model.weights.output().rows;
    // The context (but its last token, which may merge with a choice's first) goes through the
    // model once; each choice rewinds to where it parts from it.
    let kept = context.len().saturating_sub(1);
    session.reset();
    if kept > 0 {
        session.forward(&context[..kept], Logits::Last)?;
    }
    let mut logliks = Vec::with_capacity(item.choices.len());
    for (choice, text) in item.choices.iter().enumerate() {
        let whole = tokenizer.encode(&format!("{}{text}", item.context), true, false);
        let shared = context
            .iter()
            .zip(&whole)
            .take_while(|(a, b)| a == b)
            .count();
        // The first choice token is predicted at the position before it: at least one token of
        // context (the BOS, if nothing else) must come first.
        let first = shared.max(1);
        if first >= whole.len() {
            return Err(TaskError::EmptyChoice {
                choice,
                context: item.context.clone(),
            });
        }
        // Positions before `first - 1` hold the context's tokens, which the choice shares.
        let from = (first - 1).min(kept);
        session.rewind(from);
        let rows = session.forward(&whole[from..], Logits::From(first - 1 - from))?;
        let loglik: f64 = (first..whole.len())
            .map(|i| {
                let row = &rows[(i - first) * vocab..(i - first + 1) * vocab];
                log_softmax_at(row, whole[i] as usize)
            })
            .sum();
        logliks.push(loglik);
    }
    let best = |key: &dyn Fn(usize) -> f64| {
        (0..logliks.len())
            .max_by(|&a, &b| key(a).total_cmp(&key(b)))
            .unwrap_or(0)
    };
    let picked = best(&|i| logliks[i]);
    let picked_norm = best(&|i| logliks[i] / item.choices[i].len().max(1) as f64);
    Ok(ItemScore {
        logliks,
        picked,
        picked_norm,
    })
}

/// Every item of a task; `on_item` sees each item's score as it comes.
pub fn score_task(
    session: &mut Session<'_>,
    tokenizer: &Tokenizer,
    task: &str,
    items: &[Item],
    mut on_item: impl FnMut(usize, &ItemScore),
) -> Result<TaskScore, TaskError> {
    let (mut right, mut right_norm, mut chance) = (0usize, 0usize, 0.0f64);
    for (i, item) in items.iter().enumerate() {
        let s = score_item(session, tokenizer, item)?;
        right += usize::from(s.picked == item.answer);
        right_norm += usize::from(s.picked_norm == item.answer);
        chance += 1.0 / item.choices.len().max(1) as f64;
        on_item(i, &s);
    }
    let n = items.len().max(1) as f64;
    Ok(TaskScore {
        task: task.to_string(),
        items: items.len(),
        accuracy: right as f64 / n,
        accuracy_norm: right_norm as f64 / n,
        chance: chance / n,
    })
}
