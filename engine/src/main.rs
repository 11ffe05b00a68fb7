//! `meltbench-engine`: parses arguments and calls the library. Exit codes: 0 success,
//! 2 bad input (unreadable or unsupported model, bad job, bad arguments), 1 anything else.

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use meltbench_engine::chat::ChatTemplate;
use meltbench_engine::dtype::DType;
use meltbench_engine::kernels::{self, Kernels};
use meltbench_engine::kv_cache::CacheType;
use meltbench_engine::load::{self, monotonic_ns};
use meltbench_engine::pool::{allowed_cpus, cpu_list};
use meltbench_engine::sampler::{Sampler, SamplerConfig};
use meltbench_engine::session::Session;
use meltbench_engine::topology::{default_threads, place_on_performance_cores};
use meltbench_engine::{bandwidth, bench, generate, info, perplexity, quantize, synth};
use meltbench_protocol::engine::{EngineJob, LoadRecord, Prompt};
use meltbench_protocol::PROTOCOL_VERSION;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

#[derive(Parser)]
#[command(
    name = "meltbench-engine",
    version,
    about = "The quantized inference engine that meltbench runs on every device",
    long_about = "The quantized inference engine that meltbench pushes to every device.\n\
                  It runs GGUF models of the llama (Llama 2/3, SmolLM), qwen2, qwen3 and gemma3 architectures \
                  (F32, F16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K weights, each in its own format) and picks \
                  the fastest kernels the CPU supports (AVX-512, AVX2, NEON, or plain Rust)."
)]
struct Cli {
    /// Kernel table to use instead of the best one: an ISA (scalar, avx2, avx512, neon: its
    /// best table here) or one table (avx2+vnni, avx512+vnni, neon+dotprod; plain avx2 is AVX2
    /// alone even where AVX-VNNI exists, as on a Zen 3). `meltbench-engine info` lists them.
    #[arg(long, global = true, env = "MELTBENCH_KERNELS")]
    kernels: Option<String>,
    /// Element type of the KV cache: f16 (as llama.cpp's default) or f32.
    #[arg(long, global = true, default_value = "f16")]
    cache_type: CacheType,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show any GGUF file's architecture, dimensions, tensor types and sizes, parameters,
    /// SHA-256 and tokenizer, and what this engine would need to run it (exit 2 if it cannot).
    Info {
        model: PathBuf,
        /// Also list every tensor.
        #[arg(long)]
        tensors: bool,
        /// Also list every metadata key.
        #[arg(long)]
        metadata: bool,
    },
    /// Generate text from a prompt, streaming it to stdout (timings go to stderr).
    Generate {
        model: PathBuf,
        /// The prompt text.
        #[arg(short, long)]
        prompt: String,
        /// Tokens to generate at most.
        #[arg(short = 'n', long, default_value_t = 64)]
        n_predict: usize,
        #[command(flatten)]
        threads: Threads,
        #[command(flatten)]
        sampling: Sampling,
        /// Recognise special tokens such as <|im_start|> written in the prompt.
        #[arg(long)]
        special: bool,
        /// Send the prompt as one user turn of the model's own chat template (its
        /// tokenizer.chat_template), with the assistant's turn opened, as a chat app does.
        #[arg(long)]
        chat: bool,
        /// Print the generated token ids (one JSON array) instead of text.
        #[arg(long)]
        ids: bool,
        /// Positions of KV cache to allocate (llama.cpp's -c) [default: the prompt plus
        /// -n, the least the run needs]. Comparing memory with another runtime needs the same
        /// context on both sides.
        #[arg(short, long)]
        ctx: Option<usize>,
    },
    /// Benchmark passes, one JSON line each (the contract the meltbench agent reads).
    Bench {
        model: PathBuf,
        /// A job file (JSON EngineJob); otherwise the flags below describe the job.
        #[arg(long)]
        job: Option<PathBuf>,
        /// Prompt text.
        #[arg(long, conflicts_with_all = ["job", "prompt_tokens"])]
        prompt: Option<String>,
        /// Prompt length in tokens (cut from a fixed English text).
        #[arg(long, conflicts_with = "job")]
        prompt_tokens: Option<usize>,
        /// Tokens to generate per pass.
        #[arg(short = 'n', long, default_value_t = 32, conflicts_with = "job")]
        n_gen: usize,
        /// Measured passes.
        #[arg(long, default_value_t = 10, conflicts_with = "job")]
        passes: usize,
        /// Warm-up passes (reported with "warmup": true, never counted).
        #[arg(long, default_value_t = 2, conflicts_with = "job")]
        warmup: usize,
        /// Send the prompt as one user turn of the model's chat template (see generate --chat).
        #[arg(long, conflicts_with = "job")]
        chat: bool,
        /// Fill the KV cache with this many tokens (unmeasured) before each pass's prompt, as
        /// llama-bench -d does.
        #[arg(short = 'd', long, default_value_t = 0, conflicts_with = "job")]
        depth: usize,
        #[command(flatten)]
        threads: Threads,
    },
    /// Print the token ids of a text as a JSON array (BOS/EOS only where the vocabulary asks for
    /// them). Reads only the vocabulary, so a vocabulary-only GGUF works too.
    Tokenize {
        model: PathBuf,
        /// The text to tokenize.
        text: String,
        /// Recognise control tokens such as <|im_start|> written in the text.
        #[arg(long)]
        special: bool,
        /// Add no BOS or EOS token, whatever the vocabulary asks for.
        #[arg(long)]
        no_bos: bool,
    },
    /// Convert a GGUF model to another weight type (norms stay F32; metadata is kept).
    Quantize {
        input: PathBuf,
        output: PathBuf,
        /// Target type: f32, f16, q8_0, q4_0, q4_1, q5_0, q5_1, or q4_k_m / q5_k_m (llama.cpp's
        /// mixes of q4_k / q5_k, q6_k and their fallbacks, written byte for byte as
        /// llama-quantize writes them).
        #[arg(long = "type", short = 't')]
        dtype: quantize::Target,
    },
    /// Perplexity over a text file, computed as llama.cpp's llama-perplexity does; also writes
    /// and reads llama.cpp's logits files (KL divergence against a base model).
    Perplexity {
        model: PathBuf,
        /// The text to score (with --kl-divergence the base file's tokens are scored instead).
        #[arg(short, long, required_unless_present = "kl_divergence")]
        file: Option<PathBuf>,
        /// Chunk length in tokens; the second half of each chunk is scored [default: 512, or
        /// the base file's with --kl-divergence].
        #[arg(short, long)]
        ctx: Option<usize>,
        /// Save every scored position's log-probabilities to FILE, as `llama-perplexity
        /// --kl-divergence-base FILE` does; with --kl-divergence, the file to compare against.
        #[arg(long, value_name = "FILE")]
        kl_divergence_base: Option<PathBuf>,
        /// Compare this model with the base file's: KL divergence, same top token, Δp.
        #[arg(long, requires = "kl_divergence_base")]
        kl_divergence: bool,
        #[command(flatten)]
        threads: Threads,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Multiple-choice tasks scored by log-likelihood (as lm-evaluation-harness and
    /// llama-perplexity --multiple-choice do): accuracy per task on items the project makes
    /// (arithmetic, weekdays, copying, units), the same items for the same seed
    #[command(after_help = "Examples:\n  \
        meltbench-engine tasks smollm2.gguf\n  \
        meltbench-engine tasks smollm2-q4_0.gguf --task arithmetic,units --items 500 --json")]
    Tasks {
        model: PathBuf,
        /// Tasks to score, comma-separated (default: all): arithmetic, weekdays, copying, units.
        #[arg(long, value_delimiter = ',')]
        task: Vec<String>,
        /// Items per task.
        #[arg(long, default_value_t = 200)]
        items: usize,
        /// Seed of the items (another seed, other items).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[command(flatten)]
        threads: Threads,
        /// Print the result as JSON: {"tasks": [{"task", "items", "accuracy", "accuracy_norm",
        /// "chance"}]}.
        #[arg(long)]
        json: bool,
    },
    /// Write a deterministic tiny llama model with random weights, for fast tests.
    Synth {
        output: PathBuf,
        /// Weight type of the matrices.
        #[arg(long = "type", short = 't', default_value = "f32")]
        dtype: DType,
        /// Random seed for the weights.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Tokenizer: bpe (byte-level, like SmolLM2) or spm (SentencePiece, like Llama 2).
        #[arg(long, default_value = "bpe")]
        vocab: synth::SynthVocab,
        /// Layout: llama (SmolLM2-like), llama3 (rope_freqs, llama-bpe), qwen2, qwen3 or gemma3.
        #[arg(long, default_value = "llama")]
        arch: synth::SynthArch,
    },
    /// Main-memory read bandwidth in GB/s at 1 and at all threads: the ceiling decode runs against.
    Bandwidth {
        /// Buffer size in MiB (default: 8x the last-level cache, at least 512 MiB).
        #[arg(long)]
        mib: Option<usize>,
        /// Thread counts, comma-separated (default: 1 and every core this process may use).
        #[arg(short, long, value_delimiter = ',')]
        threads: Vec<usize>,
        /// Repetitions per thread count; the fastest counts.
        #[arg(long, default_value_t = 5)]
        reps: usize,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct Threads {
    /// Worker threads (default: one per performance core). On a big.LITTLE device the threads
    /// are kept on the performance cores (by cpu_capacity or max frequency) when they fit.
    #[arg(short, long, value_parser = thread_count)]
    threads: Option<usize>,
}

/// Most threads a run may ask for: far beyond any phone or board, well below what the OS
/// refuses to spawn.
const MAX_THREADS: usize = 1024;

fn thread_count(s: &str) -> Result<usize, String> {
    s.parse::<usize>()
        .ok()
        .and_then(|n| in_thread_range(n).ok())
        .ok_or_else(|| thread_count_error(s))
}

/// `n` when a run may use that many threads (a job's `threads` goes through here too).
fn in_thread_range(n: usize) -> Result<usize, String> {
    if (1..=MAX_THREADS).contains(&n) {
        Ok(n)
    } else {
        Err(thread_count_error(&n.to_string()))
    }
}

fn thread_count_error(given: &str) -> String {
    format!(
        "'{given}' is not a thread count: give a whole number from 1 to {MAX_THREADS}, or leave \
         -t out for one thread per performance core"
    )
}

#[derive(Args)]
struct Sampling {
    /// Sampling temperature; 0 picks the most likely token (greedy).
    #[arg(long, default_value_t = 0.0)]
    temp: f32,
    /// Sample among the k most likely tokens (0 = all).
    #[arg(long, default_value_t = 40)]
    top_k: usize,
    /// Sample among the most likely tokens whose probabilities add up to p.
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    /// Random seed for sampling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// Errors that come from what the user gave us (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct BadInput(String);

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", message(&e));
            let bad_input = e.chain().any(|c| {
                c.is::<BadInput>()
                    || c.is::<load::LoadError>()
                    || c.is::<meltbench_engine::gguf::GgufError>()
                    || c.is::<meltbench_engine::perplexity::PerplexityError>()
                    || c.is::<meltbench_engine::session::ForwardError>()
            });
            ExitCode::from(if bad_input { 2 } else { 1 })
        }
    }
}

/// The error and its causes, each said once: many errors already end with their cause's
/// text, which `{:#}` would print a second time.
fn message(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

fn pick_kernels(name: Option<&str>) -> Result<&'static Kernels> {
    kernels::select(name).map_err(|e| BadInput(e).into())
}

fn run(cli: Cli) -> Result<()> {
    let kernels = pick_kernels(cli.kernels.as_deref())?;
    let cache_type = cli.cache_type;
    match cli.command {
        Command::Info {
            model,
            tensors,
            metadata,
        } => {
            // The header alone: an architecture or weight type the engine cannot run is still
            // described, and then named as what is missing (exit 2, like any model it refuses).
            let g = meltbench_engine::gguf::Gguf::open(&model)?;
            print!("{}", info::describe(&g));
            println!(
                "kernels       {} (available: {})",
                kernels.name,
                available_names()
            );
            let missing = info::missing(&g);
            print!("{}", info::verdict(&g, &missing));
            if metadata {
                print!("{}", info::metadata_table(&g));
            }
            if tensors {
                print!("{}", info::tensor_table(&g));
            }
            if !missing.is_empty() {
                return Err(BadInput(format!(
                    "{}: this engine cannot run it: {}",
                    model.display(),
                    missing.join("; ")
                ))
                .into());
            }
        }
        Command::Generate {
            model,
            prompt,
            n_predict,
            threads,
            sampling,
            special,
            chat,
            ids,
            ctx,
        } => {
            let l = load::load(&model)?;
            let n_threads = threads.threads.unwrap_or_else(default_threads);
            place_on_performance_cores(n_threads);
            let prompt_ids = if chat && !prompt.is_empty() {
                let template = ChatTemplate::from_gguf(&l.gguf, &l.tokenizer)
                    .map_err(|e| BadInput(e.to_string()))?;
                let rendered = template
                    .user_turn(&prompt, &jiff::Zoned::now())
                    .map_err(|e| BadInput(e.to_string()))?;
                template.encode(&l.tokenizer, &rendered)
            } else {
                l.tokenizer.encode(&prompt, true, special)
            };
            if prompt_ids.is_empty() {
                return Err(BadInput("the prompt is empty; give some text with -p".into()).into());
            }
            let needed = prompt_ids.len() + n_predict;
            let ctx = ctx.unwrap_or(needed);
            if ctx < needed {
                return Err(BadInput(format!(
                    "--ctx {ctx} is too small: the prompt ({} tokens) and -n {n_predict} need {needed} positions",
                    prompt_ids.len()
                ))
                .into());
            }
            let mut session = Session::with_cache(&l.model, kernels, n_threads, ctx, cache_type);
            let mut sampler = Sampler::new(SamplerConfig {
                temperature: sampling.temp,
                top_k: sampling.top_k,
                top_p: sampling.top_p,
                seed: sampling.seed,
            });
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            let mut pending = Vec::new();
            let g = generate::generate(
                &mut session,
                &l.tokenizer,
                &mut sampler,
                &prompt_ids,
                n_predict,
                false,
                |t| {
                    if !ids {
                        // Stream whole UTF-8 characters: a token may end in the middle of one.
                        l.tokenizer.token_bytes(t, false, &mut pending);
                        let valid = match std::str::from_utf8(&pending) {
                            Ok(_) => pending.len(),
                            Err(e) => e.valid_up_to(),
                        };
                        let _ = out.write_all(&pending[..valid]);
                        let _ = out.flush();
                        pending.drain(..valid);
                    }
                },
            )?;
            if ids {
                writeln!(out, "{}", serde_json::to_string(&g.tokens)?)?;
            } else {
                out.write_all(&pending)?;
                writeln!(out)?;
            }
            let decode_s: f64 = g.decode.iter().map(|d| d.as_secs_f64()).sum();
            eprintln!(
                "prompt {} tokens in {:.1} ms ({:.1} tok/s); generated {} tokens, decode {:.1} tok/s; {} threads, {} kernels",
                g.prompt_tokens.len(),
                g.prefill.as_secs_f64() * 1e3,
                g.prompt_tokens.len() as f64 / g.prefill.as_secs_f64(),
                g.tokens.len(),
                if decode_s > 0.0 { g.decode.len() as f64 / decode_s } else { 0.0 },
                n_threads,
                kernels.name
            );
        }
        Command::Bench {
            model,
            job,
            prompt,
            prompt_tokens,
            n_gen,
            passes,
            warmup,
            chat,
            depth,
            threads,
        } => {
            let job = match job {
                Some(path) => read_job(&path)?,
                None => EngineJob {
                    prompt: match (prompt, prompt_tokens) {
                        (Some(p), _) => Prompt::Text(p),
                        (None, Some(n)) => Prompt::Tokens(n),
                        (None, None) => Prompt::Tokens(64),
                    },
                    n_gen,
                    passes,
                    warmup,
                    threads: threads.threads,
                    ignore_eos: true,
                    temperature: 0.0,
                    seed: 0,
                    kernels: None,
                    chat,
                    depth,
                },
            };
            let kernels = match &job.kernels {
                Some(k) => pick_kernels(Some(k))?,
                None => kernels,
            };
            let start_mono_ns = monotonic_ns();
            let l = load::load(&model)?;
            let n_threads = match job.threads {
                Some(n) => in_thread_range(n).map_err(|e| BadInput(format!("job threads: {e}")))?,
                None => default_threads(),
            };
            // Before the session starts its workers, which inherit the placement.
            let placement = place_on_performance_cores(n_threads);
            // Compiling a chat template is part of getting the prompt ready: it counts with
            // the tokenizer's phase.
            let t = Instant::now();
            let prompt = bench::BenchPrompt::new(&l, &job).map_err(|e| BadInput(e.to_string()))?;
            let template_ns = if job.chat {
                t.elapsed().as_nanos() as u64
            } else {
                0
            };
            let ctx = job.depth + prompt.n_tokens() + job.n_gen;
            let t = Instant::now();
            let mut session = Session::with_cache(&l.model, kernels, n_threads, ctx, cache_type);
            let session_ns = t.elapsed().as_nanos() as u64;
            let w = &l.model.weights;
            let record = LoadRecord {
                protocol: PROTOCOL_VERSION.to_string(),
                engine_version: env!("CARGO_PKG_VERSION").to_string(),
                model_path: model.display().to_string(),
                architecture: l.model.config.arch.clone(),
                dtype: w.main_dtype().to_string(),
                n_params: l.gguf.tensors.iter().map(|t| t.n_elements()).sum(),
                file_bytes: l.gguf.bytes().len() as u64,
                weight_bytes_per_token: w.bytes_per_token() as u64,
                threads: n_threads,
                cpus: allowed_cpus().map(|c| cpu_list(&c)),
                placement,
                kernels: kernels.name.to_string(),
                open_ns: l.open_ns,
                weights_ns: l.weights_ns,
                tokenizer_ns: l.tokenizer_ns + template_ns,
                session_ns,
                start_mono_ns,
                end_mono_ns: monotonic_ns(),
                chat: prompt.chat().cloned(),
                unmeasured: Vec::new(),
                memory_of: None,
            };
            let stdout = std::io::stdout();
            bench::run(&l, &mut session, record, &job, &prompt, &mut stdout.lock())?;
        }
        Command::Tokenize {
            model,
            text,
            special,
            no_bos,
        } => {
            let tokenizer = load::load_tokenizer(&model)?;
            println!(
                "{}",
                serde_json::to_string(&tokenizer.encode(&text, !no_bos, special))?
            );
        }
        Command::Quantize {
            input,
            output,
            dtype,
        } => {
            let t = Instant::now();
            let r = quantize::quantize_to(&input, &output, dtype).map_err(|e| match e {
                // Asking for a type or model we cannot write is the user's to fix (exit code 2).
                e @ (quantize::QuantizeError::NoQuantizer(_)
                | quantize::QuantizeError::Unsupported(_)) => BadInput(e.to_string()).into(),
                e => anyhow::Error::from(e),
            })?;
            eprintln!(
                "wrote {} ({:.1} MiB) in {:.1} s: {} tensors converted to {dtype}, {} kept{}",
                output.display(),
                r.out_bytes as f64 / 1048576.0,
                t.elapsed().as_secs_f64(),
                r.converted,
                r.kept,
                if r.fell_back.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; kept as f16 (rows not a whole number of blocks): {}",
                        r.fell_back.join(", ")
                    )
                }
            );
        }
        Command::Perplexity {
            model,
            file,
            ctx,
            kl_divergence_base,
            kl_divergence,
            threads,
            json,
        } => {
            let l = load::load(&model)?;
            let n_threads = threads.threads.unwrap_or_else(default_threads);
            place_on_performance_cores(n_threads);
            // llama.cpp drops one trailing newline from a prompt file; do the same so both
            // engines score the same token stream.
            let read_text = |file: &Path| -> Result<String> {
                let text = std::fs::read_to_string(file)
                    .with_context(|| format!("cannot read the text file {}", file.display()))?;
                Ok(text.strip_suffix('\n').unwrap_or(&text).to_string())
            };
            let new_session = |ctx: usize| -> Result<Session<'_>> {
                let session = Session::with_cache(&l.model, kernels, n_threads, ctx, cache_type);
                if session.cache.capacity < ctx {
                    return Err(BadInput(format!(
                        "--ctx {ctx} exceeds the model's context length {}",
                        l.model.config.ctx_len
                    ))
                    .into());
                }
                Ok(session)
            };
            if kl_divergence {
                let base_path = kl_divergence_base.expect("clap requires it");
                // A file that is not a logits file is the user's to fix (exit code 2).
                let mut base = meltbench_engine::logits_file::LogitsReader::open(&base_path)
                    .map_err(perplexity::PerplexityError::from)?;
                let h = base.header.clone();
                if let Some(c) = ctx.filter(|&c| c != h.n_ctx) {
                    return Err(BadInput(format!(
                        "{} was computed with --ctx {} but --ctx {c} was given; leave --ctx out (the file's is used) or make the base file again with --ctx {c}",
                        base_path.display(),
                        h.n_ctx
                    ))
                    .into());
                }
                if let Some(file) = &file {
                    // Only a hint: the stored tokens are what both sides score.
                    let ours = l.tokenizer.encode(&read_text(file)?, true, false);
                    if let Some(i) =
                        (0..base.tokens.len()).find(|&i| ours.get(i) != Some(&base.tokens[i]))
                    {
                        eprintln!(
                            "note: {} does not tokenize to the tokens stored in {} (first difference at token {i}); scoring the stored tokens, as llama-perplexity does",
                            file.display(),
                            base_path.display()
                        );
                    }
                }
                // kl_divergence says so if the file's chunks do not fit the model's context.
                let mut session =
                    Session::with_cache(&l.model, kernels, n_threads, h.n_ctx, cache_type);
                eprintln!(
                    "comparing with {}: {} chunks of {} tokens, vocabulary {}",
                    base_path.display(),
                    h.n_chunk,
                    h.n_ctx,
                    h.n_vocab
                );
                let k =
                    perplexity::kl_divergence(&mut session, &l.tokenizer, &mut base, |i, n, r| {
                        eprintln!(
                            "[{i}/{n}] PPL {:.4}  KLD {:.6}  same top {:.3}%",
                            r.ppl, r.mean_kld, r.same_top1
                        );
                    })?;
                if json {
                    println!("{}", serde_json::to_string(&k)?);
                } else {
                    print!("{}", k.report());
                }
                return Ok(());
            }
            let ctx = ctx.unwrap_or(512);
            let file = file.expect("clap requires --file without --kl-divergence");
            let text = read_text(&file)?;
            let mut session = new_session(ctx)?;
            let p = perplexity::perplexity_saving(
                &mut session,
                &l.tokenizer,
                &text,
                ctx,
                kl_divergence_base.as_deref(),
                |i, n, ppl| {
                    eprint!("[{i}/{n}] {ppl:.4}  ");
                },
            )?;
            eprintln!();
            if let Some(base) = &kl_divergence_base {
                eprintln!(
                    "saved the log-probabilities of {} positions to {}",
                    p.scored,
                    base.display()
                );
            }
            if json {
                println!("{}", serde_json::to_string(&p)?);
            } else {
                println!(
                    "Final estimate: PPL = {:.4} +/- {:.5} ({} chunks of {ctx}, {} tokens scored)",
                    p.ppl, p.stderr, p.chunks, p.scored
                );
            }
        }
        Command::Tasks {
            model,
            task,
            items,
            seed,
            threads,
            json,
        } => {
            use meltbench_engine::tasks::{self, generate};
            let names: Vec<String> = if task.is_empty() {
                generate::TASKS.iter().map(|t| t.to_string()).collect()
            } else {
                task
            };
            let mut sets = Vec::with_capacity(names.len());
            for name in &names {
                let set = generate::items(name, items, seed).ok_or_else(|| {
                    BadInput(format!(
                        "unknown task '{name}' (tasks: {})",
                        generate::TASKS.join(", ")
                    ))
                })?;
                sets.push((name, set));
            }
            let l = load::load(&model)?;
            let n_threads = threads.threads.unwrap_or_else(default_threads);
            place_on_performance_cores(n_threads);
            let mut session = Session::with_cache(&l.model, kernels, n_threads, 256, cache_type);
            let mut scores = Vec::with_capacity(sets.len());
            for (name, set) in &sets {
                let s = tasks::score_task(&mut session, &l.tokenizer, name, set, |i, _| {
                    if (i + 1) % 50 == 0 || i + 1 == set.len() {
                        eprint!("\r{name}: {}/{} items", i + 1, set.len());
                    }
                })
                .map_err(|e| match e {
                    tasks::TaskError::Forward(f) => anyhow::Error::from(f),
                    other => BadInput(other.to_string()).into(),
                })?;
                eprintln!();
                scores.push(s);
            }
            if json {
                println!("{}", serde_json::json!({ "tasks": scores }));
            } else {
                println!(
                    "{:<12} {:>6} {:>9} {:>14} {:>7}",
                    "task", "items", "accuracy", "accuracy_norm", "chance"
                );
                for s in &scores {
                    println!(
                        "{:<12} {:>6} {:>8.1}% {:>13.1}% {:>6.1}%",
                        s.task,
                        s.items,
                        s.accuracy * 100.0,
                        s.accuracy_norm * 100.0,
                        s.chance * 100.0
                    );
                }
            }
        }
        Command::Synth {
            output,
            dtype,
            seed,
            vocab,
            arch,
        } => {
            if !dtype.can_quantize() {
                return Err(BadInput(format!(
                    "synth cannot write {dtype} weights yet (no {dtype} quantizer); use one of f32, f16, q8_0, q4_0, q4_1"
                ))
                .into());
            }
            let cfg = synth::SynthConfig {
                dtype,
                seed,
                vocab,
                arch,
                ..Default::default()
            };
            synth::write_synth(&output, &cfg)
                .with_context(|| format!("cannot write {}", output.display()))?;
            eprintln!("wrote {}", output.display());
        }
        Command::Bandwidth {
            mib,
            threads,
            reps,
            json,
        } => {
            if mib == Some(0) || threads.contains(&0) || reps == 0 {
                return Err(
                    BadInput("--mib, --threads and --reps must be at least 1".into()).into(),
                );
            }
            let threads = if threads.is_empty() {
                bandwidth::default_thread_counts()
            } else {
                threads
            };
            let report = bandwidth::run(mib.map(|m| m << 20), &threads, reps);
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{}", report.table());
            }
        }
    }
    Ok(())
}

fn read_job(path: &Path) -> Result<EngineJob> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| BadInput(format!("cannot read job file {}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| {
        BadInput(format!(
            "{}:{}:{}: invalid job: {e}",
            path.display(),
            e.line(),
            e.column()
        ))
        .into()
    })
}

fn available_names() -> String {
    kernels::variants()
        .iter()
        .map(|k| k.name)
        .collect::<Vec<_>>()
        .join(", ")
}
