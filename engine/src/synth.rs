//! A deterministic tiny llama model for fast tests: random weights from a fixed seed, a real
//! byte-level BPE vocabulary (all 256 byte symbols, some English merges, chat control tokens).

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
        }
    }
}

/// Merges in rank order: enough for common English words to become single tokens.
const MERGES: &[(&str, &str)] = &[
    ("Ġ", "t"),
    ("h", "e"),
    ("Ġ", "a"),
    ("i", "n"),
    ("Ġt", "he"),
    ("e", "r"),
    ("o", "n"),
    ("r", "e"),
    ("Ġ", "s"),
    ("e", "n"),
    ("a", "t"),
    ("o", "r"),
    ("Ġ", "w"),
    ("e", "s"),
    ("Ġ", "o"),
    ("i", "s"),
    ("a", "n"),
    ("Ġ", "b"),
    ("Ġ", "c"),
    ("in", "g"),
    ("Ġ", "f"),
    ("e", "d"),
    ("Ġ", "m"),
    ("o", "u"),
    ("Ġo", "f"),
    ("Ġa", "nd"),
    ("n", "d"),
    ("Ġ", "p"),
    ("l", "l"),
    ("Ġ", "d"),
    ("Ġ", "h"),
    ("Ġ", "in"),
];

const SPECIALS: &[&str] = &["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// Writes the synthetic model to `path`.
pub fn write_synth(path: &Path, c: &SynthConfig) -> std::io::Result<()> {
    // Vocabulary: specials first (ids 0..3, like SmolLM2), then the 256 byte symbols, then merges.
    let table = byte_to_char_table();
    let mut tokens: Vec<String> = SPECIALS.iter().map(|s| s.to_string()).collect();
    let mut types: Vec<Value> = vec![Value::I32(3); SPECIALS.len()];
    for ch in table {
        tokens.push(ch.to_string());
        types.push(Value::I32(1));
    }
    let mut merges = Vec::new();
    for (a, b) in MERGES {
        merges.push(Value::String(format!("{a} {b}")));
        let joined = format!("{a}{b}");
        if !tokens.contains(&joined) {
            tokens.push(joined);
            types.push(Value::I32(1));
        }
    }
    let vocab = tokens.len();
    let head_dim = c.dim / c.n_heads;
    let kv_dim = c.n_kv_heads * head_dim;
    let s = |v: &str| Value::String(v.to_string());
    let u = |v: usize| Value::U32(v as u32);
    let meta: Vec<(String, Value)> = vec![
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
        ("tokenizer.ggml.model".into(), s("gpt2")),
        ("tokenizer.ggml.pre".into(), s("smollm")),
        (
            "tokenizer.ggml.tokens".into(),
            Value::Array(8, tokens.into_iter().map(Value::String).collect()),
        ),
        ("tokenizer.ggml.token_type".into(), Value::Array(5, types)),
        ("tokenizer.ggml.merges".into(), Value::Array(8, merges)),
        ("tokenizer.ggml.bos_token_id".into(), u(1)),
        ("tokenizer.ggml.eos_token_id".into(), u(2)),
        ("tokenizer.ggml.add_bos_token".into(), Value::Bool(false)),
    ];
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
