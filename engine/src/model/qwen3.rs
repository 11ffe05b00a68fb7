//! Qwen3: Qwen2 without the q/k/v biases but with an RMSNorm on every head of q and k before
//! RoPE; its head size comes from `attention.key_length` rather than the embedding width.

use super::arch::{Architecture, Family, RopeMode};

pub const ARCH: Architecture = Architecture {
    name: "qwen3",
    family: |h| {
        Ok(Family {
            rope: RopeMode::Neox,
            qk_norm: true,
            ..Family::llama(h)
        })
    },
};
