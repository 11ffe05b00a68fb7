//! A deterministic tiny llama model for fast tests: random weights from a fixed seed, a real
//! vocabulary: byte-level BPE (all 256 byte symbols, some English merges, chat control tokens)
//! or SentencePiece (pieces with scores, byte fallback).

use crate::dtype::DType;
use crate::gguf::{self, TensorOut, Value};
use crate::kernels::blocks::quantize_row;
use crate::tokenizer::bpe::byte_to_char_table;
use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::Path;

#[derive(Clone, Debug)]
pub struct SynthConfig {
    pub dim: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub ffn_dim: usize,
    pub ctx_len: usize,
    pub dtype: DType,
    pub seed: u64,
    pub vocab: SynthVocab,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            dim: 64,
            n_layers: 2,
            n_heads: 4,
            n_kv_heads: 2,
            ffn_dim: 192,
            ctx_len: 512,
            dtype: DType::F32,
            seed: 1,
            vocab: SynthVocab::Bpe,
        }
    }
}

/// Merges in rank order, one "left right" pair per line: enough for common English words to
/// become single tokens.
const MERGES: &str =
    "Ġ t\nh e\nĠ a\ni n\nĠt he\ne r\no n\nr e\nĠ s\ne n\na t\no r\nĠ w\ne s\nĠ o\n\
i s\na n\nĠ b\nĠ c\nin g\nĠ f\ne d\nĠ m\no u\nĠo f\nn d\nĠa nd\nĠ p\nl l\nĠ d\nĠ h\nĠ in";

/// SentencePiece pieces with their scores (higher merges first).
const PIECES: &str =
    "▁t ▁th ▁the he er in ▁a ▁an ▁and on re ▁s en at or ▁w es ▁o ▁of is ing ed ▁m ou \
▁p ll ▁d ▁h ▁in ▁b ▁c ▁f ▁phone ▁heat ▁battery ▁engine ▁engineers ▁measured";

/// Which tokenizer the synthetic model carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SynthVocab {
    /// Byte-level BPE like SmolLM2 (`gpt2`, pre-tokenizer `smollm`).
    Bpe,
    /// SentencePiece like Llama 2 (`llama`, byte fallback, BOS added).
    Spm,
}

impl std::str::FromStr for SynthVocab {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "bpe" => Ok(SynthVocab::Bpe),
            "spm" => Ok(SynthVocab::Spm),
            other => Err(format!("unknown vocabulary '{other}': expected bpe or spm")),
        }
    }
}

/// The `tokenizer.ggml.*` metadata of a synthetic vocabulary.
fn vocab_metadata(kind: SynthVocab) -> Vec<(String, Value)> {
    let s = |v: &str| Value::String(v.to_string());
    let mut tokens: Vec<String> = Vec::new();
    let mut types: Vec<i32> = Vec::new();
    let mut scores: Vec<f32> = Vec::new();
    let mut push = |t: String, ty: i32, score: f32| {
        if !tokens.contains(&t) {
            tokens.push(t);
            types.push(ty);
            scores.push(score);
        }
    };
    let mut meta = Vec::new();
    match kind {
        SynthVocab::Bpe => {
            // Specials first (ids 0..3, like SmolLM2), then the 256 byte symbols, then merges.
            for sp in ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] {
                push(sp.into(), 3, 0.0);
            }
            for ch in byte_to_char_table() {
                push(ch.to_string(), 1, 0.0);
            }
            let merges: Vec<Value> = MERGES.lines().map(s).collect();
            for m in MERGES.lines() {
                push(m.replace(' ', ""), 1, 0.0);
            }
            meta.push(("tokenizer.ggml.model".into(), s("gpt2")));
            meta.push(("tokenizer.ggml.pre".into(), s("smollm")));
            meta.push(("tokenizer.ggml.merges".into(), Value::Array(8, merges)));
            meta.push(("tokenizer.ggml.bos_token_id".into(), Value::U32(1)));
            meta.push(("tokenizer.ggml.eos_token_id".into(), Value::U32(2)));
            meta.push(("tokenizer.ggml.add_bos_token".into(), Value::Bool(false)));
        }
        SynthVocab::Spm => {
            push("<unk>".into(), 2, 0.0);
            push("<s>".into(), 3, 0.0);
            push("</s>".into(), 3, 0.0);
            for b in 0..=255u8 {
                push(format!("<0x{b:02X}>"), 6, 0.0);
            }
            push("▁".into(), 1, -1.0);
            for c in "abcdefghijklmnopqrstuvwxyzTE".chars() {
                push(c.to_string(), 1, -2.0);
            }
            for (i, p) in PIECES.split_whitespace().enumerate() {
                push(p.into(), 1, -3.0 - i as f32 * 0.1);
            }
            meta.push(("tokenizer.ggml.model".into(), s("llama")));
            meta.push((
                "tokenizer.ggml.scores".into(),
                Value::Array(6, scores.iter().map(|&v| Value::F32(v)).collect()),
            ));
            meta.push(("tokenizer.ggml.bos_token_id".into(), Value::U32(1)));
            meta.push(("tokenizer.ggml.eos_token_id".into(), Value::U32(2)));
            meta.push(("tokenizer.ggml.unknown_token_id".into(), Value::U32(0)));
            meta.push(("tokenizer.ggml.add_bos_token".into(), Value::Bool(true)));
            meta.push(("tokenizer.ggml.add_space_prefix".into(), Value::Bool(true)));
        }
    }
    meta.push((
        "tokenizer.ggml.tokens".into(),
        Value::Array(8, tokens.into_iter().map(Value::String).collect()),
    ));
    meta.push((
        "tokenizer.ggml.token_type".into(),
        Value::Array(5, types.into_iter().map(Value::I32).collect()),
    ));
    meta
}

/// Writes the synthetic model to `path`.
pub fn write_synth(path: &Path, c: &SynthConfig) -> std::io::Result<()> {
    let vocab_meta = vocab_metadata(c.vocab);
    let vocab = vocab_meta
        .iter()
        .find(|(k, _)| k == "tokenizer.ggml.tokens")
        .and_then(|(_, v)| v.as_array())
        .map_or(0, |a| a.len());
    let head_dim = c.dim / c.n_heads;
    let kv_dim = c.n_kv_heads * head_dim;
    let s = |v: &str| Value::String(v.to_string());
    let u = |v: usize| Value::U32(v as u32);
    let mut meta: Vec<(String, Value)> = vec![
        ("general.architecture".into(), s("llama")),
        ("general.name".into(), s("meltbench synth")),
        (
            "general.file_type".into(),
            Value::U32(c.dtype.llama_file_type()),
        ),
        ("general.alignment".into(), Value::U32(32)),
        ("meltbench.synth_seed".into(), Value::U64(c.seed)),
        ("llama.context_length".into(), u(c.ctx_len)),
        ("llama.embedding_length".into(), u(c.dim)),
        ("llama.block_count".into(), u(c.n_layers)),
        ("llama.feed_forward_length".into(), u(c.ffn_dim)),
        ("llama.attention.head_count".into(), u(c.n_heads)),
        ("llama.attention.head_count_kv".into(), u(c.n_kv_heads)),
        ("llama.rope.freq_base".into(), Value::F32(10000.0)),
        ("llama.rope.dimension_count".into(), u(head_dim)),
        (
            "llama.attention.layer_norm_rms_epsilon".into(),
            Value::F32(1e-5),
        ),
        ("llama.vocab_size".into(), u(vocab)),
    ];
    meta.extend(vocab_meta);
    let mut rng = ChaCha8Rng::seed_from_u64(c.seed);
    let mut out = Vec::new();
    let mut matrix = |name: String, cols: usize, rows: usize, out: &mut Vec<TensorOut>| {
        // Uniform weights scaled by 1/sqrt(fan-in) keep activations in a sane range through the
        // layers; embeddings get unit scale so the input token is not drowned by the layers'
        // contributions (a random model otherwise predicts the same token whatever it reads).
        let gain = if name == "token_embd.weight" {
            (cols as f32).sqrt()
        } else {
            1.0
        };
        let scale = (3.0 / cols as f32).sqrt() * gain;
        let vals: Vec<f32> = (0..cols * rows)
            .map(|_| (uniform(&mut rng) * 2.0 - 1.0) * scale)
            .collect();
        out.push(encode(name, vec![cols as u64, rows as u64], c.dtype, &vals));
    };
    matrix("token_embd.weight".into(), c.dim, vocab, &mut out);
    for l in 0..c.n_layers {
        let n = |s: &str| format!("blk.{l}.{s}.weight");
        out.push(encode(
            n("attn_norm"),
            vec![c.dim as u64],
            DType::F32,
            &vec![1.0; c.dim],
        ));
        matrix(n("attn_q"), c.dim, c.dim, &mut out);
        matrix(n("attn_k"), c.dim, kv_dim, &mut out);
        matrix(n("attn_v"), c.dim, kv_dim, &mut out);
        matrix(n("attn_output"), c.dim, c.dim, &mut out);
        out.push(encode(
            n("ffn_norm"),
            vec![c.dim as u64],
            DType::F32,
            &vec![1.0; c.dim],
        ));
        matrix(n("ffn_gate"), c.dim, c.ffn_dim, &mut out);
        matrix(n("ffn_up"), c.dim, c.ffn_dim, &mut out);
        matrix(n("ffn_down"), c.ffn_dim, c.dim, &mut out);
    }
    out.push(encode(
        "output_norm.weight".into(),
        vec![c.dim as u64],
        DType::F32,
        &vec![1.0; c.dim],
    ));
    // An untied head: with logits tied to the embedding, a random model mostly repeats its last
    // token, which would make greedy-token tests too easy to pass.
    matrix("output.weight".into(), c.dim, vocab, &mut out);
    gguf::write(path, &meta, &out)
}

fn uniform(rng: &mut ChaCha8Rng) -> f32 {
    (rng.next_u32() >> 8) as f32 / (1u32 << 24) as f32
}

fn encode(name: String, dims: Vec<u64>, dtype: DType, vals: &[f32]) -> TensorOut {
    let mut data = vec![
        0u8;
        dtype
            .bytes_for(vals.len())
            .expect("synth sizes are whole blocks")
    ];
    quantize_row(dtype, vals, &mut data);
    TensorOut {
        name,
        dims,
        dtype,
        data,
    }
}
