//! Qwen2 and Qwen2.5: llama with biases on q, k and v (loaded wherever the file has them) and
//! GPT-NeoX RoPE.

use super::arch::{Architecture, Family, RopeMode};

pub const ARCH: Architecture = Architecture {
    name: "qwen2",
    family: |h| {
        Ok(Family {
            rope: RopeMode::Neox,
            ..Family::llama(h)
        })
    },
};
