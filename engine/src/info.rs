//! `info`: what a model file holds.

use crate::gguf::Gguf;
use crate::load::Loaded;
use crate::quantize::hex;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt::Write;

pub fn describe(l: &Loaded) -> String {
    let g: &Gguf = &l.gguf;
    let c = &l.model.config;
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
    let _ = writeln!(s, "architecture  {}", c.arch);
    let _ = writeln!(
        s,
        "parameters    {n_params} ({:.1} M)",
        n_params as f64 / 1e6
    );
    let _ = writeln!(
        s,
        "dimensions    embedding {}, layers {}, heads {} (kv {}), head {}, ffn {}, vocab {}, context {}",
        c.dim, c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim, c.ffn_dim, l.tokenizer.vocab_size(), c.ctx_len
    );
    let _ = writeln!(
        s,
        "rope          theta {}, dims {}, linear scale {}",
        c.rope_theta, c.rope_dim, c.rope_linear_factor
    );
    let _ = writeln!(
        s,
        "output head   {}",
        if l.model.weights.output.is_some() {
            "separate"
        } else {
            "tied to token embedding"
        }
    );
    let _ = writeln!(
        s,
        "weights/token {} bytes read per decode step",
        l.model.weights.bytes_per_token()
    );
    let mut by_type: BTreeMap<String, (usize, u64)> = BTreeMap::new();
    for t in &g.tensors {
        let e = by_type.entry(t.type_name()).or_default();
        e.0 += 1;
        e.1 += t.n_bytes;
    }
    let _ = writeln!(s, "tensor types");
    for (ty, (n, bytes)) in by_type {
        let _ = writeln!(
            s,
            "  {ty:<6} {n:>4} tensors, {:>10.2} MiB",
            bytes as f64 / 1048576.0
        );
    }
    s
}

/// Every tensor with its type and shape (for `info --tensors`).
pub fn tensor_table(g: &Gguf) -> String {
    let mut s = String::new();
    for t in &g.tensors {
        let _ = writeln!(
            s,
            "{:<32} {:<6} {:?} {} bytes",
            t.name,
            t.type_name(),
            t.dims,
            t.n_bytes
        );
    }
    s
}

/// All metadata keys (for `info --metadata`).
pub fn metadata_table(g: &Gguf) -> String {
    let mut s = String::new();
    for (k, v) in &g.metadata {
        let _ = writeln!(s, "{k:<44} {}", v.summary());
    }
    s
}
