//! A deterministic tiny model for fast tests: random weights from a fixed seed, a real
//! vocabulary: byte-level BPE (all 256 byte symbols, some English merges, chat control tokens)
//! or SentencePiece (pieces with scores, byte fallback), in the layout of any architecture the
//! engine runs ([`SynthArch`]), so each can be checked against llama.cpp on a file both load.

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
    pub arch: SynthArch,
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
            arch: SynthArch::Llama,
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

/// The tensor layout and metadata the synthetic model follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SynthArch {
    /// Plain llama, as SmolLM2 (the default; its files are what the older fixtures describe).
    Llama,
    /// Llama 3 style: `llama` with a `rope_freqs` tensor and the `llama-bpe` pre-tokenizer.
    Llama3,
    /// Qwen2: q/k/v biases, NeoX RoPE, the `qwen2` pre-tokenizer.
    Qwen2,
    /// Qwen3: per-head q/k norms, a head size of its own (`attention.key_length`).
    Qwen3,
    /// Gemma 3: GeGLU, scaled embeddings, q/k norms, post-norms, sliding-window layers.
    Gemma3,
}

impl SynthArch {
    pub const ALL: [SynthArch; 5] = [
        SynthArch::Llama,
        SynthArch::Llama3,
        SynthArch::Qwen2,
        SynthArch::Qwen3,
        SynthArch::Gemma3,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SynthArch::Llama => "llama",
            SynthArch::Llama3 => "llama3",
            SynthArch::Qwen2 => "qwen2",
            SynthArch::Qwen3 => "qwen3",
            SynthArch::Gemma3 => "gemma3",
        }
    }

    /// `general.architecture` of the file.
    fn gguf_arch(self) -> &'static str {
        match self {
            SynthArch::Llama | SynthArch::Llama3 => "llama",
            other => other.name(),
        }
    }

    /// The BPE pre-tokenizer its family's files name.
    fn bpe_pre(self) -> &'static str {
        match self {
            SynthArch::Llama | SynthArch::Gemma3 => "smollm",
            SynthArch::Llama3 => "llama-bpe",
            SynthArch::Qwen2 | SynthArch::Qwen3 => "qwen2",
        }
    }

    /// Scale of the output head. At 1 the next-token distribution over the small vocabulary is
    /// nearly uniform (perplexity ~450 of 291), which makes a KL-divergence check against
    /// llama.cpp weak; the newer layouts use a head four times larger so each step has clear
    /// favourites. Plain llama keeps 1: its files are what older fixtures were recorded on.
    fn output_gain(self) -> f32 {
        if self == SynthArch::Llama {
            1.0
        } else {
            4.0
        }
    }

    /// The global RoPE base: Gemma 3's global layers use 1e6 (its local ones keep 10000).
    fn rope_theta(self) -> f32 {
        if self == SynthArch::Gemma3 {
            1_000_000.0
        } else {
            10_000.0
        }
    }

    /// Values per head, when it is not dim / heads: Qwen3 and Gemma 3 files say it.
    fn head_dim(self, dim: usize, n_heads: usize) -> usize {
        match self {
            SynthArch::Qwen3 | SynthArch::Gemma3 => 2 * dim / n_heads,
            _ => dim / n_heads,
        }
    }
}

impl std::str::FromStr for SynthArch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SynthArch::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown architecture '{s}': expected llama, llama3, qwen2, qwen3 or gemma3"
                )
            })
    }
}

/// Sliding window of the synthetic Gemma 3's local layers: small, so short tests cross it.
const SYNTH_WINDOW: usize = 8;

/// The `tokenizer.ggml.*` metadata of a synthetic vocabulary.
fn vocab_metadata(kind: SynthVocab, arch: SynthArch) -> Vec<(String, Value)> {
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
            meta.push(("tokenizer.ggml.pre".into(), s(arch.bpe_pre())));
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
    let vocab_meta = vocab_metadata(c.vocab, c.arch);
    let vocab = vocab_meta
        .iter()
        .find(|(k, _)| k == "tokenizer.ggml.tokens")
        .and_then(|(_, v)| v.as_array())
        .map_or(0, |a| a.len());
    let head_dim = c.arch.head_dim(c.dim, c.n_heads);
    let (q_dim, kv_dim) = (c.n_heads * head_dim, c.n_kv_heads * head_dim);
    let s = |v: &str| Value::String(v.to_string());
    let u = |v: usize| Value::U32(v as u32);
    let arch = c.arch.gguf_arch();
    let k = |key: &str| format!("{arch}.{key}");
    let mut meta: Vec<(String, Value)> = vec![
        ("general.architecture".into(), s(arch)),
        ("general.name".into(), s("meltbench synth")),
        (
            "general.file_type".into(),
            Value::U32(c.dtype.llama_file_type()),
        ),
        ("general.alignment".into(), Value::U32(32)),
        ("meltbench.synth_seed".into(), Value::U64(c.seed)),
        (k("context_length"), u(c.ctx_len)),
        (k("embedding_length"), u(c.dim)),
        (k("block_count"), u(c.n_layers)),
        (k("feed_forward_length"), u(c.ffn_dim)),
        (k("attention.head_count"), u(c.n_heads)),
        (k("attention.head_count_kv"), u(c.n_kv_heads)),
        (k("rope.freq_base"), Value::F32(c.arch.rope_theta())),
        (k("rope.dimension_count"), u(head_dim)),
        (k("attention.layer_norm_rms_epsilon"), Value::F32(1e-5)),
        (k("vocab_size"), u(vocab)),
    ];
    if matches!(c.arch, SynthArch::Qwen3 | SynthArch::Gemma3) {
        meta.push((k("attention.key_length"), u(head_dim)));
        meta.push((k("attention.value_length"), u(head_dim)));
    }
    if c.arch == SynthArch::Gemma3 {
        meta.push((k("attention.sliding_window"), u(SYNTH_WINDOW)));
        // Two layers: make the second global, as every sixth is in the real model.
        meta.push((k("attention.sliding_window_pattern"), u(2)));
    }
    meta.extend(vocab_meta);
    let mut rng = ChaCha8Rng::seed_from_u64(c.seed);
    let mut out = Vec::new();
    let mut matrix = |name: String, cols: usize, rows: usize, out: &mut Vec<TensorOut>| {
        // Uniform weights scaled by 1/sqrt(fan-in) keep activations in a sane range through the
        // layers; embeddings get unit scale so the input token is not drowned by the layers'
        // contributions (a random model otherwise predicts the same token whatever it reads).
        let gain = if name == "token_embd.weight" {
            (cols as f32).sqrt()
        } else if name == "output.weight" {
            c.arch.output_gain()
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
    // The other architectures' vectors (biases, norms around 1) come from a stream of their
    // own, so the plain llama file stays byte for byte what it always was.
    let mut extra = ChaCha8Rng::seed_from_u64(c.seed ^ 0x5EED);
    let mut vector = |name: String, len: usize, around: f32, out: &mut Vec<TensorOut>| {
        let vals: Vec<f32> = (0..len)
            .map(|_| around + (uniform(&mut extra) - 0.5) * 0.5)
            .collect();
        out.push(encode(name, vec![len as u64], DType::F32, &vals));
    };
    let a = c.arch;
    for l in 0..c.n_layers {
        let n = |s: &str| format!("blk.{l}.{s}.weight");
        let b = |s: &str| format!("blk.{l}.{s}.bias");
        out.push(encode(
            n("attn_norm"),
            vec![c.dim as u64],
            DType::F32,
            &vec![1.0; c.dim],
        ));
        matrix(n("attn_q"), c.dim, q_dim, &mut out);
        matrix(n("attn_k"), c.dim, kv_dim, &mut out);
        matrix(n("attn_v"), c.dim, kv_dim, &mut out);
        if a == SynthArch::Qwen2 {
            vector(b("attn_q"), q_dim, 0.0, &mut out);
            vector(b("attn_k"), kv_dim, 0.0, &mut out);
            vector(b("attn_v"), kv_dim, 0.0, &mut out);
        }
        if matches!(a, SynthArch::Qwen3 | SynthArch::Gemma3) {
            vector(n("attn_q_norm"), head_dim, 1.0, &mut out);
            vector(n("attn_k_norm"), head_dim, 1.0, &mut out);
        }
        matrix(n("attn_output"), q_dim, c.dim, &mut out);
        if a == SynthArch::Gemma3 {
            vector(n("post_attention_norm"), c.dim, 1.0, &mut out);
        }
        out.push(encode(
            n("ffn_norm"),
            vec![c.dim as u64],
            DType::F32,
            &vec![1.0; c.dim],
        ));
        matrix(n("ffn_gate"), c.dim, c.ffn_dim, &mut out);
        matrix(n("ffn_up"), c.dim, c.ffn_dim, &mut out);
        matrix(n("ffn_down"), c.ffn_dim, c.dim, &mut out);
        if a == SynthArch::Gemma3 {
            vector(n("post_ffw_norm"), c.dim, 1.0, &mut out);
        }
    }
    if a == SynthArch::Llama3 {
        // Llama 3's per-frequency divisors: low frequencies stretched, as its scaling does.
        let half = head_dim / 2;
        let div: Vec<f32> = (0..half)
            .map(|i| 1.0 + 7.0 * i as f32 / half as f32)
            .collect();
        out.push(encode(
            "rope_freqs.weight".into(),
            vec![half as u64],
            DType::F32,
            &div,
        ));
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
