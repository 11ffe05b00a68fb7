//! Gemma 3: GeGLU feed-forward, embeddings scaled by sqrt(dim), per-head q/k norms, norms after
//! attention and after the feed-forward block, GPT-NeoX RoPE, and five sliding-window layers to
//! every global one, the local layers with a RoPE base of their own (`rope.freq_base_swa`, 10000 when absent). Read as llama.cpp reads the
//! same keys (its `llama_model_gemma3`), so the two run the same network.

use super::arch::{Activation, Architecture, Family, RopeMode, SlidingWindow};
use super::hparams::{Hparams, ModelError};

pub const ARCH: Architecture = Architecture {
    name: "gemma3",
    family,
};

/// Every sixth layer is global unless the file says otherwise.
const DEFAULT_PATTERN: usize = 6;

/// Local layers' RoPE base when the file does not give `rope.freq_base_swa`.
const DEFAULT_LOCAL_THETA: f32 = 10_000.0;

fn family(h: &Hparams) -> Result<Family, ModelError> {
    let sliding_window = match h.int("attention.sliding_window") {
        Some(w) if w > 0 => {
            // The pattern is either one number (every n-th layer global) or a flag per layer.
            let local = match h.bools("attention.sliding_window_pattern") {
                Some(flags) if flags.len() == h.n_layers => flags,
                Some(flags) => {
                    return Err(ModelError::Inconsistent(format!(
                        "attention.sliding_window_pattern has {} flags for {} layers",
                        flags.len(),
                        h.n_layers
                    )))
                }
                None => {
                    let pattern = h
                        .int("attention.sliding_window_pattern")
                        .unwrap_or(DEFAULT_PATTERN)
                        .max(1);
                    // Layers pattern-1, 2*pattern-1, ... are global.
                    (0..h.n_layers).map(|l| l % pattern < pattern - 1).collect()
                }
            };
            Some(SlidingWindow {
                window: w,
                local,
                rope_theta: h
                    .float("rope.freq_base_swa")
                    .map_or(DEFAULT_LOCAL_THETA, |v| v as f32),
            })
        }
        _ => None,
    };
    // Gemma 3 27B scales queries by 1/sqrt(dim / heads) instead of 1/sqrt(head size); it is the
    // only size with 62 layers.
    let scale_dim = if h.n_layers == 62 {
        h.dim / h.n_heads
    } else {
        h.head_dim
    };
    Ok(Family {
        rope: RopeMode::Neox,
        activation: Activation::GeluTanh,
        embed_scale: (h.dim as f32).sqrt(),
        qk_norm: true,
        post_norms: true,
        attn_scale: 1.0 / (scale_dim as f32).sqrt(),
        logit_softcap: h
            .float("final_logit_softcapping")
            .filter(|&c| c > 0.0)
            .map(|c| c as f32),
        sliding_window,
    })
}
