//! llama and its conversions (SmolLM2, TinyLlama, Llama 2 and 3.x): the family's plain form.
//! Llama 3's frequency-dependent RoPE scaling comes as a `rope_freqs.weight` tensor, which the
//! loader picks up for any architecture.

use super::arch::{Architecture, Family};

pub const ARCH: Architecture = Architecture {
    name: "llama",
    family: |h| Ok(Family::llama(h)),
};
