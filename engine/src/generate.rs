//! Text generation: prefill the prompt, then sample one token at a time until a stop.

use crate::sampler::Sampler;
use crate::session::{ForwardError, Logits, Session};
use crate::tokenizer::Tokenizer;
use std::time::{Duration, Instant};

pub struct Generation {
    pub prompt_tokens: Vec<u32>,
    pub tokens: Vec<u32>,
    /// Prompt evaluation plus the first sample.
    pub prefill: Duration,
    /// One per token after the first.
    pub decode: Vec<Duration>,
    pub stopped_at_eos: bool,
}

/// Generates up to `n` tokens after `prompt` (already tokenized). `on_token` sees each new
/// token as it is picked (for streaming). With `ignore_eos`, end-of-generation tokens do not stop it.
pub fn generate(
    session: &mut Session<'_>,
    tokenizer: &Tokenizer,
    sampler: &mut Sampler,
    prompt: &[u32],
    n: usize,
    ignore_eos: bool,
    mut on_token: impl FnMut(u32),
) -> Result<Generation, ForwardError> {
    let mut g = Generation {
        prompt_tokens: prompt.to_vec(),
        tokens: Vec::with_capacity(n),
        prefill: Duration::ZERO,
        decode: Vec::with_capacity(n),
        stopped_at_eos: false,
    };
    if n == 0 || prompt.is_empty() {
        return Ok(g);
    }
    let t = Instant::now();
    let logits = session.forward(prompt, Logits::Last)?;
    let mut next = sampler.sample(logits);
    g.prefill = t.elapsed();
    loop {
        g.tokens.push(next);
        on_token(next);
        if !ignore_eos && tokenizer.is_end_of_generation(next) {
            g.stopped_at_eos = true;
            break;
        }
        if g.tokens.len() == n {
            break;
        }
        let t = Instant::now();
        let logits = session.forward(&[next], Logits::Last)?;
        next = sampler.sample(logits);
        g.decode.push(t.elapsed());
    }
    Ok(g)
}
