//! Perplexity the way llama.cpp's `llama-perplexity` computes it, so the numbers compare: the
//! text is cut into chunks of `ctx` tokens, each evaluated from an empty cache, and only the
//! second half of each chunk is scored (so every scored token has at least ctx/2 of context).

use crate::session::{ForwardError, Logits, Session};
use crate::tokenizer::Tokenizer;

#[derive(Debug, thiserror::Error)]
pub enum PerplexityError {
    #[error(
        "the text tokenizes to {tokens} tokens; perplexity with --ctx {ctx} needs at least {need}"
    )]
    TooShort {
        tokens: usize,
        ctx: usize,
        need: usize,
    },
    #[error("--ctx must be at least 4 (got {0})")]
    CtxTooSmall(usize),
    #[error(transparent)]
    Forward(#[from] ForwardError),
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Perplexity {
    pub ppl: f64,
    /// Standard error of the estimate, as llama.cpp prints after "+/-".
    pub stderr: f64,
    pub chunks: usize,
    pub tokens: usize,
    pub scored: usize,
    /// Running estimate after each chunk (llama.cpp's `[1]x,[2]y,...`).
    pub running: Vec<f64>,
}

pub fn perplexity(
    session: &mut Session<'_>,
    tokenizer: &Tokenizer,
    text: &str,
    ctx: usize,
    mut on_chunk: impl FnMut(usize, usize, f64),
) -> Result<Perplexity, PerplexityError> {
    if ctx < 4 {
        return Err(PerplexityError::CtxTooSmall(ctx));
    }
    let tokens = tokenizer.encode(text, true, false);
    if tokens.len() < 2 * ctx {
        return Err(PerplexityError::TooShort {
            tokens: tokens.len(),
            ctx,
            need: 2 * ctx,
        });
    }
    let n_chunks = tokens.len() / ctx;
    let first = ctx / 2;
    let vocab = session.model.weights.output().rows;
    let (mut nll, mut nll2, mut count) = (0.0f64, 0.0f64, 0usize);
    let mut running = Vec::with_capacity(n_chunks);
    for chunk in 0..n_chunks {
        let mut batch = tokens[chunk * ctx..(chunk + 1) * ctx].to_vec();
        if tokenizer.add_bos {
            if let Some(bos) = tokenizer.bos {
                batch[0] = bos;
            }
        }
        session.reset();
        let logits = session.forward(&batch, Logits::From(first))?;
        for j in first..ctx - 1 {
            let row = &logits[(j - first) * vocab..(j - first + 1) * vocab];
            let target = tokens[chunk * ctx + j + 1] as usize;
            let lp = log_softmax_at(row, target);
            nll -= lp;
            nll2 += lp * lp;
            count += 1;
        }
        let ppl = (nll / count as f64).exp();
        running.push(ppl);
        on_chunk(chunk + 1, n_chunks, ppl);
    }
    let mean = nll / count as f64;
    let ppl = mean.exp();
    let var = nll2 / count as f64 - mean * mean;
    let stderr = if var > 0.0 && count > 1 {
        (var / (count - 1) as f64).sqrt() * ppl
    } else {
        0.0
    };
    Ok(Perplexity {
        ppl,
        stderr,
        chunks: n_chunks,
        tokens: tokens.len(),
        scored: count,
        running,
    })
}

fn log_softmax_at(row: &[f32], i: usize) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = row.iter().map(|&l| (l as f64 - max).exp()).sum();
    row[i] as f64 - max - sum.ln()
}
