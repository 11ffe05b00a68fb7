//! The bench contract (see `meltbench_protocol::engine`): load once, run warm-up and measured
//! passes, write one JSON line per pass.

use crate::chat::{ChatError, ChatTemplate};
use crate::generate::generate;
use crate::load::{monotonic_ns, peak_rss_bytes, Loaded};
use crate::sampler::{Sampler, SamplerConfig};
use crate::session::{ForwardError, Logits, Session};
use crate::tokenizer::Tokenizer;
use meltbench_protocol::engine::{
    ChatPrompt, DoneRecord, EngineJob, EngineRecord, LoadRecord, PassRecord, Prompt,
};
use std::io::{self, Write};
use std::time::Instant;

/// Text that token-count prompts are cut from: ordinary English, so prefill sees realistic ids.
use meltbench_protocol::engine::FILLER_TEXT as FILLER;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Forward(#[from] ForwardError),
    #[error("writing bench records: {0}")]
    Io(#[from] io::Error),
    #[error("the job asks for {0}, which is empty; give a prompt text or a token count above 0")]
    EmptyPrompt(&'static str),
    #[error(transparent)]
    Chat(#[from] ChatError),
}

/// `n` tokens of the English filler, without BOS.
fn filler_tokens(tok: &Tokenizer, n: usize) -> Vec<u32> {
    let filler = tok.encode(FILLER, false, false);
    let mut ids = Vec::with_capacity(n + filler.len());
    while ids.len() < n && !filler.is_empty() {
        ids.extend_from_slice(&filler);
    }
    ids.truncate(n);
    ids
}

/// `n` tokens of the English filler that sit in the cache before a depth job's prompts,
/// starting with BOS where the model wants one, as a conversation does.
fn depth_tokens(tok: &Tokenizer, n: usize) -> Vec<u32> {
    let mut ids: Vec<u32> = match tok.bos {
        Some(b) if tok.add_bos && n > 0 => vec![b],
        _ => Vec::new(),
    };
    ids.extend(filler_tokens(tok, n - ids.len()));
    ids
}

/// A job's prompt, made ready once before the passes: what each pass turns into tokens.
pub struct BenchPrompt {
    kind: Kind,
    n_tokens: usize,
    chat: Option<ChatPrompt>,
}

enum Kind {
    Plain(Prompt),
    /// One user turn of the model's chat template, rendered at a fixed time so every pass
    /// sends the same text.
    Chat {
        // Boxed: the compiled template is large beside a plain prompt.
        template: Box<ChatTemplate>,
        user: String,
        now: jiff::Zoned,
    },
}

impl BenchPrompt {
    /// Checks the job's prompt and, for a chat job, compiles the model's template and renders
    /// it once to count the tokens.
    pub fn new(loaded: &Loaded, job: &EngineJob) -> Result<BenchPrompt, BenchError> {
        match &job.prompt {
            Prompt::Text(t) if t.is_empty() => {
                return Err(BenchError::EmptyPrompt("an empty prompt text"))
            }
            Prompt::Tokens(0) => return Err(BenchError::EmptyPrompt("a prompt of 0 tokens")),
            _ => {}
        }
        let tok = &loaded.tokenizer;
        if !job.chat {
            let mut p = BenchPrompt {
                kind: Kind::Plain(job.prompt.clone()),
                n_tokens: 0,
                chat: None,
            };
            p.n_tokens = p.tokens(tok)?.len();
            return Ok(p);
        }
        let template = ChatTemplate::from_gguf(&loaded.gguf, tok)?;
        // A token-count prompt sends the filler cut to that many tokens as the user's text:
        // the template's own tokens come on top, and the count reported is the templated one.
        let user = match &job.prompt {
            Prompt::Text(t) => t.clone(),
            Prompt::Tokens(n) => tok.decode(&filler_tokens(tok, *n)),
        };
        let user_tokens = tok.encode(&user, false, false).len();
        let template_sha256 = template.sha256().to_string();
        let mut p = BenchPrompt {
            kind: Kind::Chat {
                template: Box::new(template),
                user,
                now: jiff::Zoned::now(),
            },
            n_tokens: 0,
            chat: None,
        };
        p.n_tokens = p.tokens(tok)?.len();
        p.chat = Some(ChatPrompt {
            prompt_tokens: p.n_tokens,
            user_tokens,
            template_sha256,
        });
        Ok(p)
    }

    /// Tokens each pass prefills (for a chat job, of the templated prompt).
    pub fn n_tokens(&self) -> usize {
        self.n_tokens
    }

    /// What the load record says about the template, for a chat job.
    pub fn chat(&self) -> Option<&ChatPrompt> {
        self.chat.as_ref()
    }

    /// The prompt's tokens: the work each pass times as `tokenize_ns`.
    pub fn tokens(&self, tok: &Tokenizer) -> Result<Vec<u32>, BenchError> {
        Ok(match &self.kind {
            Kind::Plain(Prompt::Text(t)) => tok.encode(t, true, false),
            Kind::Plain(Prompt::Tokens(n)) => {
                let mut ids: Vec<u32> = if tok.add_bos {
                    tok.bos.into_iter().collect()
                } else {
                    Vec::new()
                };
                ids.extend(filler_tokens(tok, n - ids.len().min(*n)));
                ids
            }
            Kind::Chat {
                template,
                user,
                now,
            } => template.encode(tok, &template.user_turn(user, now)?),
        })
    }
}

/// Runs `job` on a loaded model, writing records to `out`.
pub fn run(
    loaded: &Loaded,
    session: &mut Session<'_>,
    load_record: LoadRecord,
    job: &EngineJob,
    prompt: &BenchPrompt,
    out: &mut impl Write,
) -> Result<(), BenchError> {
    emit(out, &EngineRecord::Load(load_record))?;
    let tok = &loaded.tokenizer;
    let depth = depth_tokens(tok, job.depth);
    for index in 0..job.warmup + job.passes {
        // The context before the prompt is the same every pass: filled once, unmeasured, and
        // each later pass drops what the previous one added after it.
        if index == 0 || depth.is_empty() {
            session.reset();
            if !depth.is_empty() {
                session.forward(&depth, Logits::Last)?;
            }
        } else {
            session.rewind(depth.len());
        }
        let mut sampler = Sampler::new(SamplerConfig {
            temperature: job.temperature,
            seed: job.seed.wrapping_add(index as u64),
            ..SamplerConfig::default()
        });
        let start_mono_ns = monotonic_ns();
        let t = Instant::now();
        let prompt_ids = prompt.tokens(tok)?;
        let tokenize_ns = t.elapsed().as_nanos() as u64;
        let g = generate(
            session,
            tok,
            &mut sampler,
            &prompt_ids,
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
            prompt_tokens: prompt_ids.len(),
            gen_tokens: g.tokens.len(),
            tokenize_ns,
            prefill_ns,
            decode_ns: g.decode.iter().map(|d| d.as_nanos() as u64).collect(),
            decode_total_ns: None,
            detokenize_ns,
            ttft_ns: tokenize_ns + prefill_ns,
            stop: if g.stopped_at_eos { "eos" } else { "length" }.to_string(),
            start_mono_ns,
            end_mono_ns: monotonic_ns(),
            // Fields evaluate in order: the /proc read falls after the pass's end stamp.
            rss_hwm_bytes: peak_rss_bytes(),
            chat: job.chat,
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
