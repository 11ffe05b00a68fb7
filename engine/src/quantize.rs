//! Converting a GGUF model to another weight type, so one source file yields the whole
//! precision ladder. Matrices change type; norms and other vectors stay F32; metadata is kept,
//! with the conversion recorded under `meltbench.*`.
//!
//! The exceptions are [`Target::Q4KM`] and [`Target::Q5KM`], llama.cpp's Q4_K_M and Q5_K_M
//! mixes: they are written exactly as `llama-quantize IN OUT Q4_K_M` (or `Q5_K_M`) writes them
//! (same tensor types, order, metadata and padding), so a file llama.cpp scored can be
//! re-created here byte for byte and identified by its hash.

use crate::dtype::DType;
use crate::gguf::{self, Gguf, GgufError, RawTensorOut, TensorOut, Value};
use crate::kernels::blocks::{dequantize_row, quantize_row};
use crate::kquants_quantize::{
    quantize_row_q4_k, quantize_row_q5_0, quantize_row_q5_1, quantize_row_q5_k, quantize_row_q6_k,
    GGML_TYPE_Q4_K, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K, QK5_0, QK_K,
};
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::Path;
use std::str::FromStr;

#[derive(Debug, thiserror::Error)]
pub enum QuantizeError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("{0}")]
    Unsupported(String),
    #[error("cannot quantize to {0} on its own: the engine writes {0} only inside llama.cpp's mixes; targets: f32, f16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k_m or q5_k_m (llama.cpp's mixes, which hold q4_k / q5_k and q6_k)")]
    NoQuantizer(DType),
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

pub struct QuantizeReport {
    pub converted: usize,
    pub kept: usize,
    /// Matrices whose rows are not a whole number of blocks of the target type, kept as F16.
    pub fell_back: Vec<String>,
    pub out_bytes: u64,
}

/// What `quantize` produces: one weight type for every matrix, or a llama.cpp mix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Type(DType),
    /// llama.cpp's `Q4_K_M`: Q4_K, with Q6_K for the value projections and the down
    /// projections of some layers and for the output matrix, and llama.cpp's fallbacks where a
    /// row is not a multiple of 256.
    Q4KM,
    /// llama.cpp's `Q5_K_M`: the same rules with Q5_K as the base type (falling back to Q5_1).
    Q5KM,
}

impl Target {
    fn mix(self) -> Option<Mix> {
        match self {
            Target::Type(_) => None,
            Target::Q4KM => Some(Mix::Q4KM),
            Target::Q5KM => Some(Mix::Q5KM),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Type(t) => t.fmt(f),
            Target::Q4KM | Target::Q5KM => f.write_str(self.mix().expect("a mix").name()),
        }
    }
}

impl FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("q4_k_m") {
            return Ok(Target::Q4KM);
        }
        if s.eq_ignore_ascii_case("q5_k_m") {
            return Ok(Target::Q5KM);
        }
        s.parse::<DType>()
            .map(Target::Type)
            .map_err(|e| format!("{e}, or q4_k_m, q5_k_m"))
    }
}

pub fn quantize_to(
    input: &Path,
    output: &Path,
    target: Target,
) -> Result<QuantizeReport, QuantizeError> {
    match target {
        Target::Type(t) => quantize(input, output, t),
        Target::Q4KM | Target::Q5KM => quantize_k_mix(input, output, target.mix().expect("a mix")),
    }
}

pub fn quantize(
    input: &Path,
    output: &Path,
    target: DType,
) -> Result<QuantizeReport, QuantizeError> {
    if !target.can_quantize() {
        return Err(QuantizeError::NoQuantizer(target));
    }
    let g = Gguf::open(input)?;
    let source_sha = hex(&Sha256::digest(g.bytes()));
    let mut report = QuantizeReport {
        converted: 0,
        kept: 0,
        fell_back: Vec::new(),
        out_bytes: 0,
    };
    let mut tensors = Vec::with_capacity(g.tensors.len());
    for t in &g.tensors {
        let data = g.tensor_data(t)?;
        let src = DType::from_ggml(t.ggml_type).expect("tensor_data checked the type");
        let n = t.n_elements() as usize;
        let is_matrix = t.dims.len() >= 2 && t.dims[1] > 1;
        let mut ty = if is_matrix { target } else { DType::F32 };
        if ty.bytes_for(t.dims[0] as usize).is_none() {
            report.fell_back.push(t.name.clone());
            ty = DType::F16;
        }
        let out = if ty == src {
            report.kept += 1;
            data.to_vec()
        } else {
            report.converted += 1;
            let mut f = vec![0f32; n];
            dequantize_row(src, data, &mut f);
            let mut out = vec![0u8; ty.bytes_for(n).expect("whole blocks checked above")];
            quantize_row(ty, &f, &mut out);
            out
        };
        tensors.push(TensorOut {
            name: t.name.clone(),
            dims: t.dims.clone(),
            dtype: ty,
            data: out,
        });
    }
    let mut meta: Vec<(String, Value)> = g
        .metadata
        .iter()
        .filter(|(k, _)| !k.starts_with("meltbench."))
        .cloned()
        .collect();
    set(
        &mut meta,
        "general.file_type",
        Value::U32(target.llama_file_type()),
    );
    let from = g
        .tensor("blk.0.attn_q.weight")
        .map(|t| t.type_name())
        .unwrap_or_else(|| "unknown".into());
    meta.push((
        "meltbench.quantized_from_sha256".into(),
        Value::String(source_sha),
    ));
    meta.push((
        "meltbench.conversion".into(),
        Value::String(format!(
            "{from} -> {target} by meltbench-engine {} quantize",
            env!("CARGO_PKG_VERSION")
        )),
    ));
    gguf::write(output, &meta, &tensors).map_err(|source| QuantizeError::Write {
        path: output.display().to_string(),
        source,
    })?;
    report.out_bytes = std::fs::metadata(output).map(|m| m.len()).unwrap_or(0);
    Ok(report)
}

/// One of llama-quantize's K-quant mixes that this module reproduces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mix {
    Q4KM,
    Q5KM,
}

impl Mix {
    pub fn name(self) -> &'static str {
        match self {
            Mix::Q4KM => "q4_k_m",
            Mix::Q5KM => "q5_k_m",
        }
    }

    /// The type most matrices get.
    fn base(self) -> u32 {
        match self {
            Mix::Q4KM => GGML_TYPE_Q4_K,
            Mix::Q5KM => GGML_TYPE_Q5_K,
        }
    }

    /// `LLAMA_FTYPE_MOSTLY_Q4_K_M` / `_Q5_K_M`.
    fn ftype(self) -> u32 {
        match self {
            Mix::Q4KM => 15,
            Mix::Q5KM => 17,
        }
    }
}
/// `GGML_QNT_VERSION`, which llama-quantize stamps into every file it writes.
const GGML_QNT_VERSION: u32 = 2;
const GGML_TYPE_F32: u32 = 0;
const GGML_TYPE_F16: u32 = 1;
const GGML_TYPE_Q8_0: u32 = 8;

/// Which llama.cpp rule a tensor falls under (llama-quant.cpp's `tensor_category`, reduced to
/// the categories that matter for Q4_K_M).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Category {
    Output,
    TokenEmbd,
    AttnV,
    FfnDown,
    Other,
}

fn category(name: &str) -> Category {
    if name == "output.weight" {
        Category::Output
    } else if name == "token_embd.weight" || name == "per_layer_token_embd.weight" {
        Category::TokenEmbd
    } else if name.contains("attn_qkv.weight")
        || name.contains("attn_kv_b.weight")
        || name.contains("attn_v.weight")
    {
        Category::AttnV
    } else if name.contains("ffn_down") {
        // llama.cpp tests attn_k, attn_q, attn_output, ffn_up and ffn_gate before ffn_down;
        // none of their names contains "ffn_down", so the order does not matter here.
        Category::FfnDown
    } else {
        Category::Other
    }
}

/// The layer number in `blk.N.…` names, -1 otherwise, read the way `sscanf("blk.%d.")` does.
fn layer_of(name: &str) -> i64 {
    let Some(rest) = name.strip_prefix("blk.") else {
        return -1;
    };
    let sign_len = usize::from(rest.starts_with(['-', '+']));
    let digits = rest[sign_len..]
        .bytes()
        .take_while(u8::is_ascii_digit)
        .count();
    rest[..sign_len + digits].parse().unwrap_or(-1)
}

/// llama.cpp's `ggml_n_dims`: trailing dimensions of 1 do not count.
fn n_dims(dims: &[u64]) -> usize {
    dims.iter().rposition(|&d| d > 1).map_or(1, |i| i + 1)
}

/// llama.cpp's `use_more_bits`: the first and last eighth of the layers, and every third one
/// in between, get the larger type.
fn use_more_bits(i_layer: i64, n_layers: i64) -> bool {
    i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2
}

fn ggml_block_elems(ty: u32) -> u64 {
    match ty {
        GGML_TYPE_Q4_K | GGML_TYPE_Q5_K | GGML_TYPE_Q6_K => QK_K as u64,
        GGML_TYPE_Q5_0 | GGML_TYPE_Q5_1 | GGML_TYPE_Q8_0 => QK5_0 as u64,
        _ => 1,
    }
}

/// Writes the file `llama-quantize IN OUT Q4_K_M` writes (no importance matrix, default
/// options), for dense llama-style models.
pub fn quantize_q4_k_m(input: &Path, output: &Path) -> Result<QuantizeReport, QuantizeError> {
    quantize_k_mix(input, output, Mix::Q4KM)
}

/// Writes the file `llama-quantize IN OUT Q5_K_M` writes, as [`quantize_q4_k_m`] does for Q4_K_M.
pub fn quantize_q5_k_m(input: &Path, output: &Path) -> Result<QuantizeReport, QuantizeError> {
    quantize_k_mix(input, output, Mix::Q5KM)
}

/// llama-quant.cpp's type choice for Q4_K_M and Q5_K_M, which differ only in the base type
/// (and so in its fallback), and in the `general.file_type` written.
pub fn quantize_k_mix(
    input: &Path,
    output: &Path,
    mix: Mix,
) -> Result<QuantizeReport, QuantizeError> {
    let mname = mix.name();
    let g = Gguf::open(input)?;
    let arch = match g.metadata.iter().find(|(k, _)| k == "general.architecture") {
        Some((_, Value::String(a))) => a.clone(),
        _ => {
            return Err(QuantizeError::Unsupported(format!(
                "{mname}: no general.architecture"
            )))
        }
    };
    let meta_u64 = |key: &str| {
        g.metadata
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.as_u64())
    };
    // The mixture-of-experts, Falcon and 70B rules of llama.cpp are not reproduced.
    if arch == "falcon" || meta_u64(&format!("{arch}.expert_count")).unwrap_or(0) > 1 {
        return Err(QuantizeError::Unsupported(format!(
            "{mname}: llama.cpp's rules for {arch} / mixture-of-experts models are not implemented"
        )));
    }
    let n_layer = meta_u64(&format!("{arch}.block_count"))
        .ok_or_else(|| QuantizeError::Unsupported(format!("{mname}: no {arch}.block_count")))?
        as i64;

    // llama.cpp's loader keeps tensors in a map ordered by layer (non-layer tensors first),
    // then by name, and writes them in that order.
    let mut order: Vec<_> = g.tensors.iter().collect();
    order.sort_by(|a, b| {
        (layer_of(&a.name), a.name.as_bytes()).cmp(&(layer_of(&b.name), b.name.as_bytes()))
    });
    let tied = !g.tensors.iter().any(|t| t.name == "output.weight");
    let n_attention_wv = g
        .tensors
        .iter()
        .filter(|t| category(&t.name) == Category::AttnV)
        .count() as i64;
    let (mut i_attention_wv, mut i_ffn_down) = (0i64, 0i64);

    let mut report = QuantizeReport {
        converted: 0,
        kept: 0,
        fell_back: Vec::new(),
        out_bytes: 0,
    };
    let mut tensors = Vec::with_capacity(order.len());
    for t in order {
        let data = g.tensor_data(t)?;
        let ncols = t.dims[0];
        let allowed =
            n_dims(&t.dims) >= 2 && t.name.ends_with("weight") && !t.name.contains("_norm.weight");
        let mut ty = t.ggml_type;
        if allowed {
            ty = mix.base();
            let cat = category(&t.name);
            if cat == Category::Output || (tied && cat == Category::TokenEmbd) {
                ty = if ncols % QK_K as u64 != 0 {
                    GGML_TYPE_Q8_0
                } else {
                    GGML_TYPE_Q6_K
                };
            } else if cat == Category::AttnV {
                if use_more_bits(i_attention_wv, n_attention_wv) {
                    ty = GGML_TYPE_Q6_K;
                }
                i_attention_wv += 1;
            } else if cat == Category::FfnDown {
                if use_more_bits(i_ffn_down, n_layer) {
                    ty = GGML_TYPE_Q6_K;
                }
                i_ffn_down += 1;
            }
            if ncols % ggml_block_elems(ty) != 0 {
                ty = match ty {
                    GGML_TYPE_Q4_K => GGML_TYPE_Q5_0,
                    GGML_TYPE_Q5_K => GGML_TYPE_Q5_1,
                    GGML_TYPE_Q6_K => GGML_TYPE_Q8_0,
                    other => other,
                };
                if ncols % ggml_block_elems(ty) != 0 {
                    report.fell_back.push(t.name.clone());
                    ty = GGML_TYPE_F16;
                }
            }
        }
        let out = if ty == t.ggml_type {
            report.kept += 1;
            data.to_vec()
        } else {
            report.converted += 1;
            let src = DType::from_ggml(t.ggml_type).expect("tensor_data checked the type");
            let mut f = vec![0f32; t.n_elements() as usize];
            dequantize_row(src, data, &mut f);
            quantize_rows(ty, &f, ncols as usize)
        };
        tensors.push(RawTensorOut {
            name: t.name.clone(),
            dims: t.dims.clone(),
            ggml_type: ty,
            data: out,
        });
    }

    // llama-quantize copies every key (ours included), drops split bookkeeping, and sets the
    // two keys below, which (being set, not copied) move to the end.
    let mut meta: Vec<(String, Value)> = g
        .metadata
        .iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "general.quantization_version"
                    | "general.file_type"
                    | "split.no"
                    | "split.count"
                    | "split.tensors.count"
            )
        })
        .cloned()
        .collect();
    meta.push((
        "general.quantization_version".into(),
        Value::U32(GGML_QNT_VERSION),
    ));
    meta.push(("general.file_type".into(), Value::U32(mix.ftype())));
    gguf::write_raw(output, &meta, &tensors).map_err(|source| QuantizeError::Write {
        path: output.display().to_string(),
        source,
    })?;
    report.out_bytes = std::fs::metadata(output).map(|m| m.len()).unwrap_or(0);
    Ok(report)
}

/// Quantizes whole rows of `ncols` values to a GGML type, splitting the rows between threads
/// (rows are independent, so the bytes do not depend on the split).
fn quantize_rows(ty: u32, f: &[f32], ncols: usize) -> Vec<u8> {
    let one = |rows: &[f32]| -> Vec<u8> {
        match ty {
            GGML_TYPE_Q4_K => quantize_row_q4_k(rows),
            GGML_TYPE_Q6_K => quantize_row_q6_k(rows),
            GGML_TYPE_Q5_K => quantize_row_q5_k(rows),
            GGML_TYPE_Q5_0 => quantize_row_q5_0(rows),
            GGML_TYPE_Q5_1 => quantize_row_q5_1(rows),
            GGML_TYPE_Q8_0 | GGML_TYPE_F16 | GGML_TYPE_F32 => {
                let dt = DType::from_ggml(ty).expect("plain type");
                let mut out = vec![0u8; dt.bytes_for(rows.len()).expect("whole blocks")];
                quantize_row(dt, rows, &mut out);
                out
            }
            _ => unreachable!("the k-quant mixes only pick the types above"),
        }
    };
    let nrows = f.len() / ncols;
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(nrows.max(1));
    let per = nrows.div_ceil(threads) * ncols;
    std::thread::scope(|s| {
        let parts: Vec<_> = f
            .chunks(per.max(1))
            .map(|c| s.spawn(move || one(c)))
            .collect();
        parts
            .into_iter()
            .flat_map(|h| h.join().expect("quantizer thread"))
            .collect()
    })
}

fn set(meta: &mut Vec<(String, Value)>, key: &str, v: Value) {
    match meta.iter_mut().find(|(k, _)| k == key) {
        Some(e) => e.1 = v,
        None => meta.push((key.to_string(), v)),
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
