//! What differs between the architectures the engine runs, and the registry that picks one by
//! the file's `general.architecture`.
//!
//! The llama family's descendants share one shape: embeddings, then per layer a normalised
//! attention block and a normalised gated feed-forward block, each added back to the residual
//! stream, then a final norm and the output head. They differ in a handful of switches (biases,
//! per-head norms, rotation layout, activation, extra norms, sliding windows), so one forward
//! pass ([`crate::session`]) reads a [`Family`] rather than each architecture copying the pass.
//! Adding an architecture is one file beside this one that reads its switches from the file's
//! metadata, plus one line in [`super::registry::ARCHITECTURES`].

use super::hparams::{Hparams, ModelError};

/// How RoPE pairs up the values of a head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeMode {
    /// Adjacent pairs `(2i, 2i + 1)`: GGML's "normal" layout, which llama conversions use.
    Normal,
    /// Halves `(i, i + n_rot / 2)`: GPT-NeoX's layout, used by Qwen and Gemma.
    Neox,
}

/// The gated feed-forward block's activation: `act(gate) * up`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// SiLU (SwiGLU): llama, Qwen.
    Silu,
    /// GELU with the tanh approximation (GeGLU): Gemma.
    GeluTanh,
}

/// Layers that attend only to the last `window` positions (Gemma 3's local layers).
#[derive(Clone, Debug)]
pub struct SlidingWindow {
    /// Positions a local layer's query sees, itself included.
    pub window: usize,
    /// `local[l]`: whether layer `l` is a sliding-window layer.
    pub local: Vec<bool>,
    /// RoPE base of the local layers (global layers use the model's).
    pub rope_theta: f32,
}

/// The switches of one architecture, read from the file once at load.
#[derive(Clone, Debug)]
pub struct Family {
    pub rope: RopeMode,
    pub activation: Activation,
    /// Token embeddings are multiplied by this before the first layer (Gemma: sqrt(dim)).
    pub embed_scale: f32,
    /// Each head of q and k goes through its own RMSNorm before RoPE (Qwen3, Gemma 3).
    pub qk_norm: bool,
    /// The attention and feed-forward outputs are normalised before they are added back to
    /// the residual stream (Gemma's post-attention and post-FFN norms).
    pub post_norms: bool,
    /// q and k are multiplied by this before the softmax (usually 1/sqrt(head size)).
    pub attn_scale: f32,
    /// Logits pass through `cap * tanh(logit / cap)` (Gemma 2 style soft-capping).
    pub logit_softcap: Option<f32>,
    pub sliding_window: Option<SlidingWindow>,
}

impl Family {
    /// llama's switches: adjacent-pair RoPE, SwiGLU, nothing extra.
    pub fn llama(h: &Hparams) -> Family {
        Family {
            rope: RopeMode::Normal,
            activation: Activation::Silu,
            embed_scale: 1.0,
            qk_norm: false,
            post_norms: false,
            attn_scale: 1.0 / (h.head_dim as f32).sqrt(),
            logit_softcap: None,
            sliding_window: None,
        }
    }
}

/// One entry of the registry: the `general.architecture` value and how to read its switches.
pub struct Architecture {
    pub name: &'static str,
    pub family: fn(&Hparams) -> Result<Family, ModelError>,
}
