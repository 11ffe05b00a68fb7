//! A loaded model: hyper-parameters from metadata and weight matrices that point into the map.
//!
//! [`arch`] holds what differs between architectures, [`registry`] picks one by name, and one
//! small file per architecture ([`llama`], [`qwen2`], [`qwen3`], [`gemma3`]) reads its switches.
//! The forward pass that runs them is [`crate::session`].

pub mod arch;
pub mod gemma3;
pub mod hparams;
pub mod llama;
pub mod qwen2;
pub mod qwen3;
pub mod registry;

use arch::Family;
pub use hparams::{Hparams, ModelError};

use crate::dtype::DType;
use crate::gguf::{Gguf, TensorInfo, Value};
use crate::kernels::blocks::dequantize_row;
use crate::kernels::interleaved;
use crate::kernels::packed::{self, AlignedBytes};
use memmap2::Mmap;
use std::sync::{Arc, OnceLock};

/// Hyper-parameters of a llama-family model.
#[derive(Clone, Debug)]
pub struct Config {
    pub arch: String,
    pub dim: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    /// Values per attention head (`attention.key_length`, or dim / heads).
    pub head_dim: usize,
    pub ffn_dim: usize,
    pub vocab: usize,
    pub ctx_len: usize,
    pub rms_eps: f32,
    pub rope_theta: f32,
    /// Number of leading dimensions of each head that are rotated.
    pub rope_dim: usize,
    /// Linear position scaling (1.0 = none).
    pub rope_linear_factor: f32,
    /// What this architecture does differently from plain llama.
    pub family: Family,
}

impl Config {
    /// Width of the concatenated query heads (the attention output), which need not equal
    /// `dim` (Gemma 3 270M: 4 heads of 256 over a 640-wide stream).
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }

    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }
}

/// A weight matrix: `rows` rows of `cols` elements, stored in `dtype` blocks.
pub struct Matrix {
    pub name: String,
    pub dtype: DType,
    pub rows: usize,
    pub cols: usize,
    data: Storage,
    row_bytes: usize,
    /// The rows in the packed layout ([`packed`]), once a session whose kernels read it has
    /// asked for them; the mapped rows are then only read for embedding look-ups.
    packed: OnceLock<AlignedBytes>,
}

impl Matrix {
    pub fn row(&self, r: usize) -> &[u8] {
        &self.data.bytes()[r * self.row_bytes..(r + 1) * self.row_bytes]
    }

    pub fn rows_bytes(&self, r0: usize, r1: usize) -> &[u8] {
        &self.data.bytes()[r0 * self.row_bytes..r1 * self.row_bytes]
    }

    pub fn n_bytes(&self) -> usize {
        self.rows * self.row_bytes
    }

    /// Row `r` decoded to f32 (for embedding look-ups).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        dequantize_row(self.dtype, self.row(r), out);
    }

    /// Builds the packed copy of this matrix if its type has one (once; later calls return at
    /// once). The mapped pages are then dropped from this process's resident set, so the
    /// copy replaces them rather than doubling the model's memory; the page cache keeps
    /// them, and an embedding look-up faults a row back in.
    ///
    /// Rows of the `types` given (those the session's packed kernels read, a subset of
    /// Q8_0, Q4_0, Q4_1, Q5_0 and Q5_1) are packed one by one ([`packed`]); F16 and F32
    /// matrices are interleaved 16 rows at a time ([`interleaved`]).
    pub fn pack(&self, types: &[DType]) {
        let interleave = interleaved::interleaves(self.dtype, self.rows);
        let pack = packed::packs(self.dtype) && types.contains(&self.dtype);
        if !pack && !interleave {
            return;
        }
        self.packed.get_or_init(|| {
            let mut out = AlignedBytes::zeroed(self.n_bytes());
            let rb = self.row_bytes;
            // A few MiB of rows at a time, each chunk's mapped pages dropped as soon as it is
            // copied: whole-matrix copies held the mapped and packed forms of Gemma 3's 178 MB
            // embedding at once, and the peak RSS with them (490 MiB against llama.cpp's 303).
            // 64 rows keep every chunk a whole number of interleaved blocks and 64-byte aligned.
            let chunk = (PACK_CHUNK_BYTES / rb).max(1).next_multiple_of(64);
            for r0 in (0..self.rows).step_by(chunk) {
                let r1 = (r0 + chunk).min(self.rows);
                let src = self.rows_bytes(r0, r1);
                let dst = &mut out.as_mut_slice()[r0 * rb..r1 * rb];
                if interleave {
                    interleaved::interleave(src, dst, self.cols, rb / self.cols);
                } else {
                    for (s, d) in src.chunks_exact(rb).zip(dst.chunks_exact_mut(rb)) {
                        packed::pack_row(self.dtype, s, d);
                    }
                }
                self.release_mapped(r0 * rb..r1 * rb);
            }
            out
        });
    }

    /// Packed rows `rows`, back to back, when [`Matrix::pack`] has run on a quantized matrix.
    pub fn packed_rows(&self, rows: std::ops::Range<usize>) -> Option<&[u8]> {
        debug_assert!(packed::packs(self.dtype));
        self.packed
            .get()
            .map(|p| &p.as_slice()[rows.start * self.row_bytes..rows.end * self.row_bytes])
    }

    /// Rows `r0..r1` (both multiples of [`interleaved::ROWS`]) of an interleaved float
    /// matrix, when [`Matrix::pack`] has interleaved it.
    pub fn interleaved_rows(&self, r0: usize, r1: usize) -> Option<&[u8]> {
        if !self.is_interleaved() {
            return None;
        }
        assert!(r0.is_multiple_of(interleaved::ROWS) && r1.is_multiple_of(interleaved::ROWS));
        self.packed
            .get()
            .map(|p| &p.as_slice()[r0 * self.row_bytes..r1 * self.row_bytes])
    }

    /// Whether [`Matrix::pack`] has interleaved this float matrix.
    pub fn is_interleaved(&self) -> bool {
        self.is_packed() && interleaved::interleaves(self.dtype, self.rows)
    }

    pub fn is_packed(&self) -> bool {
        self.packed.get().is_some()
    }

    /// Drops the mapped pages wholly inside bytes `range` of this matrix from the resident set.
    fn release_mapped(&self, range: std::ops::Range<usize>) {
        let Storage::Mapped { map, offset } = &self.data;
        let page = 4096;
        let base = map.as_ptr() as usize + offset;
        let start = (base + range.start).next_multiple_of(page);
        let end = (base + range.end) / page * page;
        if end > start {
            // SAFETY: the range lies inside our read-only private file mapping; MADV_DONTNEED
            // on it only drops page-table entries, and later reads fault the file's pages in
            // again with the same contents. Failure only means the pages stay resident.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
            }
        }
    }
}

/// Bytes of rows [`Matrix::pack`] copies before dropping their mapped pages.
const PACK_CHUNK_BYTES: usize = 4 << 20;

/// Where a matrix's rows live: in the file's mapping, in the file's own format (every weight
/// type has kernels of its own, so nothing is rewritten at load).
enum Storage {
    Mapped { map: Arc<Mmap>, offset: usize },
}

impl Storage {
    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Mapped { map, offset } => &map[*offset..],
        }
    }
}

pub struct Layer {
    pub attn_norm: Vec<f32>,
    pub wq: Matrix,
    pub wk: Matrix,
    pub wv: Matrix,
    /// Biases of q, k and v (Qwen2), each present only where the file has it.
    pub bq: Option<Vec<f32>>,
    pub bk: Option<Vec<f32>>,
    pub bv: Option<Vec<f32>>,
    /// Per-head RMSNorm weights of q and k (one head's width), when the family has them.
    pub q_norm: Option<Vec<f32>>,
    pub k_norm: Option<Vec<f32>>,
    pub wo: Matrix,
    /// Norm of the attention output before the residual add (Gemma).
    pub attn_post_norm: Option<Vec<f32>>,
    pub ffn_norm: Vec<f32>,
    pub w_gate: Matrix,
    pub w_up: Matrix,
    pub w_down: Matrix,
    /// Norm of the feed-forward output before the residual add (Gemma).
    pub ffn_post_norm: Option<Vec<f32>>,
}

pub struct Weights {
    pub token_embd: Matrix,
    pub layers: Vec<Layer>,
    pub output_norm: Vec<f32>,
    /// `None` when the output head is tied to the token embedding.
    pub output: Option<Matrix>,
    /// Per-frequency divisors (llama 3 rope scaling), when the file has them.
    pub rope_freqs: Option<Vec<f32>>,
}

impl Weights {
    pub fn output(&self) -> &Matrix {
        self.output.as_ref().unwrap_or(&self.token_embd)
    }

    /// Every matrix a forward pass multiplies by: the layers' and the output head (which
    /// may be the embedding). An untied embedding is only looked up, never multiplied.
    pub fn matrices(&self) -> Vec<&Matrix> {
        let mut out = vec![self.output()];
        for l in &self.layers {
            out.extend([&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down]);
        }
        out
    }

    /// Bytes of weights a decode step reads: every matrix once plus one embedding row.
    pub fn bytes_per_token(&self) -> usize {
        let per_layer: usize = self
            .layers
            .iter()
            .map(|l| {
                [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down]
                    .iter()
                    .map(|m| m.n_bytes())
                    .sum::<usize>()
            })
            .sum();
        per_layer + self.output().n_bytes() + self.token_embd.row_bytes
    }

    /// The type most matrices have, for reporting ("q4_1 model").
    pub fn main_dtype(&self) -> DType {
        self.layers
            .first()
            .map_or(self.token_embd.dtype, |l| l.wq.dtype)
    }
}

pub struct Model {
    pub config: Config,
    pub weights: Weights,
}

impl Model {
    pub fn load(g: &Gguf) -> Result<Model, ModelError> {
        let config = read_config(g)?;
        let weights = load_weights(g, &config)?;
        Ok(Model { config, weights })
    }
}

fn read_config(g: &Gguf) -> Result<Config, ModelError> {
    let arch = g
        .get("general.architecture")
        .and_then(Value::as_str)
        .ok_or_else(|| ModelError::MissingKey("general.architecture".into(), "GGUF"))?
        .to_string();
    let entry = registry::find(&arch).ok_or_else(|| ModelError::UnsupportedArchitecture {
        name: arch.clone(),
        supported: registry::names(),
    })?;
    let mut h = Hparams::new(g, arch);
    h.dim = h.required("embedding_length")?;
    h.n_layers = h.required("block_count")?;
    // Every layer has tensors of its own, so a count beyond the tensor table is a damaged
    // header, not a model (and would size buffers by it).
    if h.n_layers == 0 || h.n_layers > g.tensors.len() {
        return Err(ModelError::Inconsistent(format!(
            "block_count is {} but the file holds {} tensors",
            h.n_layers,
            g.tensors.len()
        )));
    }
    h.n_heads = h.required("attention.head_count")?;
    let n_kv_heads = h.int("attention.head_count_kv").unwrap_or(h.n_heads);
    if h.n_heads == 0 || n_kv_heads == 0 || !h.n_heads.is_multiple_of(n_kv_heads) {
        return Err(ModelError::Inconsistent(format!(
            "{} heads, {n_kv_heads} key/value heads",
            h.n_heads
        )));
    }
    h.head_dim = match h.int("attention.key_length") {
        Some(k) => k,
        None if h.dim.is_multiple_of(h.n_heads) => h.dim / h.n_heads,
        None => {
            return Err(ModelError::Inconsistent(format!(
            "embedding {} is not a whole number of {} heads, and attention.key_length is missing",
            h.dim, h.n_heads
        )))
        }
    };
    let value_len = h.int("attention.value_length").unwrap_or(h.head_dim);
    if h.head_dim == 0 || value_len != h.head_dim {
        return Err(ModelError::Inconsistent(format!(
            "key heads of {} and value heads of {value_len} (the engine needs them equal and non-zero)",
            h.head_dim
        )));
    }
    let rope_dim = h.int("rope.dimension_count").unwrap_or(h.head_dim);
    if rope_dim > h.head_dim || !rope_dim.is_multiple_of(2) {
        return Err(ModelError::Inconsistent(format!(
            "rope dimension {rope_dim} for heads of {}",
            h.head_dim
        )));
    }
    let scaling = g
        .get(&h.key("rope.scaling.type"))
        .and_then(Value::as_str)
        .unwrap_or("none");
    let rope_linear_factor = match scaling {
        "none" => 1.0,
        "linear" => h.float("rope.scaling.factor").unwrap_or(1.0) as f32,
        other => return Err(ModelError::UnsupportedRope(other.to_string())),
    };
    let n_vocab_tokens = g
        .get("tokenizer.ggml.tokens")
        .and_then(Value::as_array)
        .map(|a| a.len());
    let vocab = h.int("vocab_size").or(n_vocab_tokens).unwrap_or(0);
    let family = (entry.family)(&h)?;
    Ok(Config {
        dim: h.dim,
        n_layers: h.n_layers,
        n_heads: h.n_heads,
        n_kv_heads,
        head_dim: h.head_dim,
        ffn_dim: h.required("feed_forward_length")?,
        vocab,
        ctx_len: h.int("context_length").unwrap_or(2048),
        rms_eps: h.float("attention.layer_norm_rms_epsilon").unwrap_or(1e-5) as f32,
        rope_theta: h.float("rope.freq_base").unwrap_or(10000.0) as f32,
        rope_dim,
        rope_linear_factor,
        family,
        arch: h.arch,
    })
}

fn load_weights(g: &Gguf, c: &Config) -> Result<Weights, ModelError> {
    let kv_dim = c.kv_dim();
    let matrix = |name: &str, cols: usize, rows: usize| -> Result<Matrix, ModelError> {
        let t = g
            .tensor(name)
            .ok_or_else(|| ModelError::MissingTensor(name.to_string()))?;
        check_shape(t, &[cols as u64, rows as u64])?;
        // Checks the type and that the bytes lie inside the file; the rows are read in place.
        g.tensor_data(t)?;
        let dtype = DType::from_ggml(t.ggml_type).expect("tensor_data checked the type");
        Ok(Matrix {
            name: name.to_string(),
            dtype,
            rows,
            cols,
            data: Storage::Mapped {
                map: g.map(),
                offset: t.offset as usize,
            },
            row_bytes: dtype.bytes_for(cols).expect("parse checked whole blocks"),
            packed: OnceLock::new(),
        })
    };
    let vector = |name: &str, len: usize| -> Result<Vec<f32>, ModelError> {
        let t = g
            .tensor(name)
            .ok_or_else(|| ModelError::MissingTensor(name.to_string()))?;
        check_shape(t, &[len as u64])?;
        let data = g.tensor_data(t)?;
        let dtype = DType::from_ggml(t.ggml_type).expect("tensor_data checked the type");
        let mut v = vec![0.0; len];
        dequantize_row(dtype, data, &mut v);
        Ok(v)
    };
    // A vector the file may or may not have; `required` makes its absence an error.
    let optional = |name: String, len: usize, required: bool| -> Result<_, ModelError> {
        match g.tensor(&name) {
            Some(_) => vector(&name, len).map(Some),
            None if required => Err(ModelError::MissingTensor(name)),
            None => Ok(None),
        }
    };
    let f = &c.family;
    let mut layers = Vec::with_capacity(c.n_layers);
    for i in 0..c.n_layers {
        let n = |s: &str| format!("blk.{i}.{s}.weight");
        let bias = |s: &str| format!("blk.{i}.{s}.bias");
        layers.push(Layer {
            attn_norm: vector(&n("attn_norm"), c.dim)?,
            wq: matrix(&n("attn_q"), c.dim, c.q_dim())?,
            wk: matrix(&n("attn_k"), c.dim, kv_dim)?,
            wv: matrix(&n("attn_v"), c.dim, kv_dim)?,
            bq: optional(bias("attn_q"), c.q_dim(), false)?,
            bk: optional(bias("attn_k"), kv_dim, false)?,
            bv: optional(bias("attn_v"), kv_dim, false)?,
            q_norm: optional(n("attn_q_norm"), c.head_dim, f.qk_norm)?,
            k_norm: optional(n("attn_k_norm"), c.head_dim, f.qk_norm)?,
            wo: matrix(&n("attn_output"), c.q_dim(), c.dim)?,
            attn_post_norm: optional(n("post_attention_norm"), c.dim, f.post_norms)?,
            ffn_norm: vector(&n("ffn_norm"), c.dim)?,
            w_gate: matrix(&n("ffn_gate"), c.dim, c.ffn_dim)?,
            w_up: matrix(&n("ffn_up"), c.dim, c.ffn_dim)?,
            w_down: matrix(&n("ffn_down"), c.ffn_dim, c.dim)?,
            ffn_post_norm: optional(n("post_ffw_norm"), c.dim, f.post_norms)?,
        });
    }
    let embd_rows =
        g.tensor("token_embd.weight")
            .and_then(|t| t.dims.get(1).copied())
            .ok_or_else(|| ModelError::MissingTensor("token_embd.weight".into()))? as usize;
    if c.vocab != 0 && embd_rows != c.vocab {
        return Err(ModelError::Inconsistent(format!(
            "token_embd.weight has {embd_rows} rows but the vocabulary has {} tokens",
            c.vocab
        )));
    }
    let token_embd = matrix("token_embd.weight", c.dim, embd_rows)?;
    let output = match g.tensor("output.weight") {
        Some(_) => Some(matrix("output.weight", c.dim, embd_rows)?),
        None => None,
    };
    let rope_freqs = match g.tensor("rope_freqs.weight") {
        Some(_) => Some(vector("rope_freqs.weight", c.rope_dim / 2)?),
        None => None,
    };
    Ok(Weights {
        token_embd,
        layers,
        output_norm: vector("output_norm.weight", c.dim)?,
        output,
        rope_freqs,
    })
}

fn check_shape(t: &TensorInfo, expected: &[u64]) -> Result<(), ModelError> {
    if t.dims != expected {
        return Err(ModelError::Shape {
            name: t.name.clone(),
            found: t.dims.clone(),
            expected: expected.to_vec(),
        });
    }
    Ok(())
}
