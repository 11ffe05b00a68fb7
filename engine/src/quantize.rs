//! Converting a GGUF model to another weight type, so one source file yields the whole
//! precision ladder. Matrices change type; norms and other vectors stay F32; metadata is kept,
//! with the conversion recorded under `meltbench.*`.

use crate::dtype::DType;
use crate::gguf::{self, Gguf, GgufError, TensorOut, Value};
use crate::kernels::blocks::{dequantize_row, quantize_row};
use sha2::{Digest, Sha256};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum QuantizeError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("cannot quantize to {0}: the engine runs {0} files (from llama-quantize) but has no {0} quantizer yet; targets: f32, f16, q8_0, q4_0, q4_1")]
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

fn set(meta: &mut Vec<(String, Value)>, key: &str, v: Value) {
    match meta.iter_mut().find(|(k, _)| k == key) {
        Some(e) => e.1 = v,
        None => meta.push((key.to_string(), v)),
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
