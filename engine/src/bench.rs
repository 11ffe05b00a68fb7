//! The bench contract (see `meltbench_protocol::engine`): load once, run warm-up and measured
//! passes, write one JSON line per pass.

use crate::generate::generate;
use crate::load::{monotonic_ns, peak_rss_bytes, Loaded};
use crate::sampler::{Sampler, SamplerConfig};
use crate::session::{ForwardError, Session};
use crate::tokenizer::Tokenizer;
use meltbench_protocol::engine::{
    DoneRecord, EngineJob, EngineRecord, LoadRecord, PassRecord, Prompt,
};
use std::io::{self, Write};
use std::time::Instant;

/// Text that token-count prompts are cut from: ordinary English, so prefill sees realistic ids.
const FILLER: &str =
    "The history of computing is a story of machines that became smaller, faster and \
cheaper, until they fit in a pocket. Engineers measured every step: how long a program took to \
start, how much memory it held, how hot the chip became and how quickly the battery drained. ";

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Forward(#[from] ForwardError),
    #[error("writing bench records: {0}")]
    Io(#[from] io::Error),
    #[error("the job asks for {0}, which is empty; give a prompt text or a token count above 0")]
    EmptyPrompt(&'static str),
}

/// The prompt's tokens, timing the tokenization.
fn prompt_tokens(tok: &Tokenizer, prompt: &Prompt) -> Vec<u32> {
    match prompt {
        Prompt::Text(t) => tok.encode(t, true, false),
        Prompt::Tokens(n) => {
            let mut ids = if tok.add_bos {
                tok.bos.into_iter().collect()
            } else {
                Vec::new()
            };
            let filler = tok.encode(FILLER, false, false);
            while ids.len() < *n && !filler.is_empty() {
                ids.extend_from_slice(&filler);
            }
            ids.truncate(*n);
            ids
        }
    }
}

/// Runs `job` on a loaded model, writing records to `out`.
pub fn run(
    loaded: &Loaded,
    session: &mut Session<'_>,
    load_record: LoadRecord,
    job: &EngineJob,
    out: &mut impl Write,
) -> Result<(), BenchError> {
    match &job.prompt {
        Prompt::Text(t) if t.is_empty() => {
            return Err(BenchError::EmptyPrompt("an empty prompt text"))
        }
        Prompt::Tokens(0) => return Err(BenchError::EmptyPrompt("a prompt of 0 tokens")),
        _ => {}
    }
    emit(out, &EngineRecord::Load(load_record))?;
    let tok = &loaded.tokenizer;
    for index in 0..job.warmup + job.passes {
        session.reset();
        let mut sampler = Sampler::new(SamplerConfig {
            temperature: job.temperature,
            seed: job.seed.wrapping_add(index as u64),
            ..SamplerConfig::default()
        });
        let start_mono_ns = monotonic_ns();
        let t = Instant::now();
        let prompt = prompt_tokens(tok, &job.prompt);
        let tokenize_ns = t.elapsed().as_nanos() as u64;
        let g = generate(
            session,
            tok,
            &mut sampler,
            &prompt,
            job.n_gen,
            job.ignore_eos,
            |_| {},
        )?;
        let t = Instant::now();
        let text = tok.decode(&g.tokens);
        let detokenize_ns = t.elapsed().as_nanos() as u64;
        std::hint::black_box(text);
        let prefill_ns = g.prefill.as_nanos() as u64;
        let rec = PassRecord {
            index,
            warmup: index < job.warmup,
            prompt_tokens: prompt.len(),
            gen_tokens: g.tokens.len(),
            tokenize_ns,
            prefill_ns,
            decode_ns: g.decode.iter().map(|d| d.as_nanos() as u64).collect(),
            detokenize_ns,
            ttft_ns: tokenize_ns + prefill_ns,
            stop: if g.stopped_at_eos { "eos" } else { "length" }.to_string(),
            start_mono_ns,
            end_mono_ns: monotonic_ns(),
            // Fields evaluate in order: the /proc read falls after the pass's end stamp.
            rss_hwm_bytes: peak_rss_bytes(),
        };
        emit(out, &EngineRecord::Pass(rec))?;
    }
    emit(
        out,
        &EngineRecord::Done(DoneRecord {
            passes: job.passes,
            warmup: job.warmup,
            peak_rss_bytes: peak_rss_bytes(),
        }),
    )?;
    Ok(())
}

/// One record per line, flushed so a reader (the agent) sees each pass as it ends.
fn emit(out: &mut impl Write, rec: &EngineRecord) -> io::Result<()> {
    serde_json::to_writer(&mut *out, rec)?;
    out.write_all(b"\n")?;
    out.flush()
}
