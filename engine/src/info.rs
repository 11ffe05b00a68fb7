//! `info`: what a model file holds, read from its GGUF header alone, and whether this engine
//! can run it.
//!
//! Nothing here needs the engine to understand the file: an architecture it has never heard
//! of, tensor types it has no kernels for and a vocabulary-only file (no tensors at all) are
//! all described. Whether it *runs* is asked of the code that would run it ([`missing`]), so
//! the answer stays true as architectures, weight types and tokenizers are added.

use crate::dtype::DType;
use crate::gguf::{Gguf, TensorInfo, Value};
use crate::model::Model;
use crate::quantize::hex;
use crate::tokenizer::Tokenizer;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt::Write;

/// The file, its architecture's hyper-parameters, its tensor types and its tokenizer.
pub fn describe(g: &Gguf) -> String {
    let mut s = String::new();
    let n_params: u64 = g.tensors.iter().map(|t| t.n_elements()).sum();
    let _ = writeln!(s, "file          {}", g.path.display());
    let _ = writeln!(s, "sha256        {}", hex(&Sha256::digest(g.bytes())));
    let _ = writeln!(
        s,
        "size          {} bytes ({:.1} MiB)",
        g.bytes().len(),
        g.bytes().len() as f64 / 1048576.0
    );
    let _ = writeln!(s, "gguf version  {}", g.version);
    if let Some(name) = g.get("general.name").and_then(|v| v.as_str()) {
        let _ = writeln!(s, "name          {name}");
    }
    let arch = architecture(g);
    let _ = writeln!(
        s,
        "architecture  {}",
        arch.unwrap_or("(none: no general.architecture)")
    );
    let _ = writeln!(
        s,
        "parameters    {n_params} ({:.1} M)",
        n_params as f64 / 1e6
    );

    if let Some(arch) = arch {
        // Every `<arch>.*` key as the file spells it: the only way to show the dimensions of
        // an architecture this engine has no code for.
        let prefix = format!("{arch}.");
        let dims: Vec<_> = g
            .metadata
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(&prefix).map(|k| (k, v)))
            .collect();
        if dims.is_empty() {
            let _ = writeln!(s, "dimensions    (no {prefix}* keys)");
        } else {
            let _ = writeln!(s, "dimensions    ({prefix}*)");
            for (k, v) in dims {
                let _ = writeln!(s, "  {k:<40} {}", v.summary());
            }
        }
    }

    if g.tensors.is_empty() {
        let _ = writeln!(s, "tensors       none (a vocabulary-only file)");
    } else {
        let head = if g.tensor("output.weight").is_some() {
            "separate output head"
        } else {
            "output head tied to the token embedding"
        };
        let _ = writeln!(s, "tensors       {} ({head})", g.tensors.len());
        let _ = writeln!(s, "tensor types");
        for (ty, (n, bytes)) in tensor_types(g) {
            let runs = if is_run(ty) {
                ""
            } else {
                "  (not run by this engine)"
            };
            let _ = writeln!(
                s,
                "  {:<8} {n:>4} tensors, {:>10.2} MiB{runs}",
                crate::dtype::ggml_type_name(ty),
                bytes as f64 / 1048576.0
            );
        }
    }

    let _ = writeln!(s, "tokenizer     {}", tokenizer_summary(g));
    s
}

fn architecture(g: &Gguf) -> Option<&str> {
    g.get("general.architecture").and_then(Value::as_str)
}

/// Whether the engine has a type for this GGML type id (the same question
/// [`Gguf::tensor_data`] asks before any weight is read).
fn is_run(ggml_type: u32) -> bool {
    DType::from_ggml(ggml_type).is_some()
}

/// Tensor count and stored bytes per GGML type id.
pub fn tensor_types(g: &Gguf) -> BTreeMap<u32, (usize, u64)> {
    let sizes = stored_bytes(g);
    let mut by_type: BTreeMap<u32, (usize, u64)> = BTreeMap::new();
    for (t, bytes) in g.tensors.iter().zip(sizes) {
        let e = by_type.entry(t.ggml_type).or_default();
        e.0 += 1;
        e.1 += bytes;
    }
    by_type
}

/// Bytes each tensor occupies. The GGUF reader sizes only types the engine knows; for the
/// others the distance to the next tensor's data (or the end of the file) is used, which
/// includes at most one alignment's padding.
fn stored_bytes(g: &Gguf) -> Vec<u64> {
    let mut starts: Vec<u64> = g.tensors.iter().map(|t| t.offset).collect();
    starts.sort_unstable();
    let end = g.bytes().len() as u64;
    g.tensors
        .iter()
        .map(|t| {
            if t.n_bytes > 0 || is_run(t.ggml_type) {
                return t.n_bytes;
            }
            let next = starts.partition_point(|&o| o <= t.offset);
            starts.get(next).copied().unwrap_or(end) - t.offset
        })
        .collect()
}

fn tokenizer_summary(g: &Gguf) -> String {
    let Some(model) = g.get("tokenizer.ggml.model").and_then(Value::as_str) else {
        return "none (no tokenizer.ggml.model)".to_owned();
    };
    let pre = g
        .get("tokenizer.ggml.pre")
        .and_then(Value::as_str)
        .unwrap_or("(none)");
    let vocab = g
        .get("tokenizer.ggml.tokens")
        .and_then(Value::as_array)
        .map_or(0, <[Value]>::len);
    let template = match g.get("tokenizer.chat_template").and_then(Value::as_str) {
        Some(t) => format!("chat template present ({} bytes)", t.len()),
        None => "no chat template".to_owned(),
    };
    format!("model {model}, pre {pre}, vocab {vocab}, {template}")
}

/// What stops this engine from running the file; empty when it runs everything the file holds
/// (for a vocabulary-only file, its tokenizer).
///
/// The architecture and tokenizer are judged by loading them ([`Model::load`],
/// [`Tokenizer::from_gguf`]) and quoting their errors, never by a list kept here.
pub fn missing(g: &Gguf) -> Vec<String> {
    let mut out = Vec::new();
    for (ty, (n, _)) in tensor_types(g) {
        if !is_run(ty) {
            out.push(format!(
                "tensor type {}: {n} tensor{} of a type this engine has no kernels for",
                crate::dtype::ggml_type_name(ty),
                if n == 1 { "" } else { "s" }
            ));
        }
    }
    if !g.tensors.is_empty() {
        if let Err(e) = Model::load(g) {
            out.push(format!("model: {e}"));
        }
    }
    if let Err(e) = Tokenizer::from_gguf(g) {
        out.push(format!("tokenizer: {e}"));
    }
    out
}

/// The verdict lines that end `info`'s report.
pub fn verdict(g: &Gguf, missing: &[String]) -> String {
    let mut s = String::new();
    match (missing.is_empty(), g.tensors.is_empty()) {
        (true, false) => {
            let _ = writeln!(s, "runs          yes");
        }
        (true, true) => {
            let _ = writeln!(
                s,
                "runs          tokenizer only (no tensors: `tokenize` works, generation needs weights)"
            );
        }
        (false, _) => {
            let _ = writeln!(s, "runs          no; missing:");
            for m in missing {
                let _ = writeln!(s, "  - {m}");
            }
        }
    }
    s
}

/// Every tensor with its type and shape (for `info --tensors`).
pub fn tensor_table(g: &Gguf) -> String {
    let mut s = String::new();
    for (t, bytes) in g.tensors.iter().zip(stored_bytes(g)) {
        let _ = writeln!(s, "{}", tensor_line(t, bytes));
    }
    s
}

fn tensor_line(t: &TensorInfo, bytes: u64) -> String {
    format!(
        "{:<32} {:<6} {:?} {} bytes",
        t.name,
        t.type_name(),
        t.dims,
        bytes
    )
}

/// All metadata keys (for `info --metadata`).
pub fn metadata_table(g: &Gguf) -> String {
    let mut s = String::new();
    for (k, v) in &g.metadata {
        let _ = writeln!(s, "{k:<44} {}", v.summary());
    }
    s
}
