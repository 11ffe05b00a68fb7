//! Tensor element types as GGUF numbers them, and the byte layout of their blocks.

use std::fmt;
use std::str::FromStr;

/// Elements per block for every block-quantized type the engine reads.
pub const QK: usize = 32;

/// Elements per K-quant super-block (GGML's `QK_K`).
pub const QK_K: usize = 256;

/// The weight types this engine can run. The discriminants are GGML's type ids, which
/// GGUF files store in their tensor table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    /// llama.cpp's K-quant mixes fall back to it for rows that are not a multiple of 256.
    Q5_0 = 6,
    /// Q5_K_M's fallback for rows that are not a multiple of 256.
    Q5_1 = 7,
    Q8_0 = 8,
    // GGML's own spelling, so the variants read like the names in llama.cpp's output.
    #[allow(non_camel_case_types)]
    Q4_K = 12,
    #[allow(non_camel_case_types)]
    Q5_K = 13,
    #[allow(non_camel_case_types)]
    Q6_K = 14,
}

impl DType {
    /// The types the engine can write as well as run: `quantize` and `synth` targets.
    pub const ALL: [DType; 5] = [
        DType::F32,
        DType::F16,
        DType::Q8_0,
        DType::Q4_0,
        DType::Q4_1,
    ];

    /// The 5-bit 32-element types, which `quantize --type` writes (with ggml's reference
    /// quantizers) but `synth` does not offer, so they are kept out of [`DType::ALL`].
    pub const FIVE_BIT: [DType; 2] = [DType::Q5_0, DType::Q5_1];

    /// The K-quant types, which the engine runs and writes only as parts of llama.cpp's mixes
    /// (`quantize --type q4_k_m|q5_k_m`), so they are kept out of [`DType::ALL`].
    pub const K_QUANTS: [DType; 3] = [DType::Q4_K, DType::Q5_K, DType::Q6_K];

    /// Whether the engine's `kernels::blocks::quantize_row` can encode this type.
    pub fn can_quantize(self) -> bool {
        DType::ALL.contains(&self) || DType::FIVE_BIT.contains(&self)
    }

    /// Maps a GGML type id to a type we run; `None` for ids we know but do not run yet
    /// (see [`ggml_type_name`] for a name to put in the error).
    pub fn from_ggml(id: u32) -> Option<DType> {
        Some(match id {
            0 => DType::F32,
            1 => DType::F16,
            2 => DType::Q4_0,
            3 => DType::Q4_1,
            6 => DType::Q5_0,
            7 => DType::Q5_1,
            8 => DType::Q8_0,
            12 => DType::Q4_K,
            13 => DType::Q5_K,
            14 => DType::Q6_K,
            _ => return None,
        })
    }

    pub fn ggml_id(self) -> u32 {
        self as u32
    }

    /// Elements per block (1 for the float types).
    pub fn block_elems(self) -> usize {
        match self {
            DType::F32 | DType::F16 => 1,
            DType::Q4_0 | DType::Q4_1 | DType::Q5_0 | DType::Q5_1 | DType::Q8_0 => QK,
            DType::Q4_K | DType::Q5_K | DType::Q6_K => QK_K,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 => 2,
            // f16 scale + 16 bytes of nibbles
            DType::Q4_0 => 2 + QK / 2,
            // f16 scale + f16 minimum + 16 bytes of nibbles
            DType::Q4_1 => 2 + 2 + QK / 2,
            // f16 scale + 32 high bits + 16 bytes of nibbles
            DType::Q5_0 => 2 + 4 + QK / 2,
            // f16 scale + f16 minimum + 32 high bits + 16 bytes of nibbles
            DType::Q5_1 => 2 + 2 + 4 + QK / 2,
            // f16 scale + 32 signed bytes
            DType::Q8_0 => 2 + QK,
            // f16 d + f16 dmin + 12 bytes of packed 6-bit scales and mins + 128 bytes of nibbles
            DType::Q4_K => 2 + 2 + 12 + QK_K / 2,
            // Q4_K's header and nibbles with 32 bytes of fifth bits between them
            DType::Q5_K => 2 + 2 + 12 + QK_K / 8 + QK_K / 2,
            // 128 bytes of low nibbles + 64 of high 2-bit pairs + 16 i8 scales + f16 d
            DType::Q6_K => QK_K / 2 + QK_K / 4 + QK_K / 16 + 2,
        }
    }

    /// Bytes taken by `n` elements; `None` when `n` is not a whole number of blocks or the size
    /// does not fit in `usize`.
    pub fn bytes_for(self, n: usize) -> Option<usize> {
        if !n.is_multiple_of(self.block_elems()) {
            return None;
        }
        (n / self.block_elems()).checked_mul(self.block_bytes())
    }

    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::Q4_0 => "q4_0",
            DType::Q4_1 => "q4_1",
            DType::Q5_0 => "q5_0",
            DType::Q5_1 => "q5_1",
            DType::Q8_0 => "q8_0",
            DType::Q4_K => "q4_k",
            DType::Q5_K => "q5_k",
            DType::Q6_K => "q6_k",
        }
    }

    /// The `general.file_type` value llama.cpp writes for a file whose matrices are mostly this type.
    pub fn llama_file_type(self) -> u32 {
        match self {
            DType::F32 => 0,
            DType::F16 => 1,
            DType::Q4_0 => 2,
            DType::Q4_1 => 3,
            DType::Q5_0 => 8,
            DType::Q5_1 => 9,
            DType::Q8_0 => 7,
            // A file of K-quant matrices is one of llama.cpp's mixes; Q4_K_M and Q5_K_M are the
            // usual ones built mostly from Q4_K / Q5_K (with some Q6_K), and Q6_K files are
            // pure Q6_K.
            DType::Q4_K => 15,
            DType::Q5_K => 17,
            DType::Q6_K => 18,
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // K-quants parse too, so `quantize --type q4_k` reaches the quantizer's clear "cannot
        // write this type yet" error rather than claiming the type does not exist.
        DType::ALL
            .into_iter()
            .chain(DType::FIVE_BIT)
            .chain(DType::K_QUANTS)
            .find(|t| t.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!(
                    "unknown type '{s}': expected one of f32, f16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q5_k, q6_k"
                )
            })
    }
}

/// Every type the engine runs, by name, for error messages.
pub fn runnable_names() -> String {
    let all = DType::ALL
        .iter()
        .chain(&DType::FIVE_BIT)
        .chain(&DType::K_QUANTS);
    all.map(|t| t.name()).collect::<Vec<_>>().join(", ")
}

/// A readable name for any GGML type id, including the ones this engine does not run, so an
/// error can say "tensor X has type q6_k" rather than "type 14".
pub fn ggml_type_name(id: u32) -> String {
    let known = [
        "f32", "f16", "q4_0", "q4_1", "q4_2", "q4_3", "q5_0", "q5_1", "q8_0", "q8_1", "q2_k",
        "q3_k", "q4_k", "q5_k", "q6_k", "q8_k", "iq2_xxs", "iq2_xs", "iq3_xxs", "iq1_s", "iq4_nl",
        "iq3_s", "iq2_s", "iq4_xs", "i8", "i16", "i32", "i64", "f64", "iq1_m", "bf16",
    ];
    known
        .get(id as usize)
        .map(|s| s.to_string())
        .unwrap_or_else(|| format!("unknown type id {id}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_sizes_match_ggml() {
        assert_eq!(DType::Q4_0.block_bytes(), 18);
        assert_eq!(DType::Q4_1.block_bytes(), 20);
        assert_eq!(DType::Q8_0.block_bytes(), 34);
        assert_eq!(DType::Q4_0.bytes_for(64), Some(36));
        assert_eq!(DType::Q4_0.bytes_for(33), None);
        // Found by fuzzing: a claimed size past usize is refused, not wrapped.
        assert_eq!(DType::F32.bytes_for(usize::MAX / 2), None);
        assert_eq!(DType::Q4_K.block_bytes(), 144);
        assert_eq!(DType::Q6_K.block_bytes(), 210);
        assert_eq!(DType::Q4_K.bytes_for(512), Some(288));
        assert_eq!(DType::Q6_K.bytes_for(576), None);
        // ggml's sizeof(block_q5_0), block_q5_1, block_q5_K.
        assert_eq!(DType::Q5_0.block_bytes(), 22);
        assert_eq!(DType::Q5_1.block_bytes(), 24);
        assert_eq!(DType::Q5_K.block_bytes(), 176);
        assert_eq!(DType::Q5_1.bytes_for(640), Some(480));
        assert_eq!(DType::Q5_K.bytes_for(576), None);
    }

    #[test]
    fn names_round_trip() {
        for t in DType::ALL
            .into_iter()
            .chain(DType::FIVE_BIT)
            .chain(DType::K_QUANTS)
        {
            assert_eq!(t.name().parse::<DType>().unwrap(), t);
            assert_eq!(DType::from_ggml(t.ggml_id()), Some(t));
        }
        assert_eq!(ggml_type_name(14), "q6_k");
        assert_eq!(ggml_type_name(7), DType::Q5_1.name());
        assert_eq!(ggml_type_name(13), DType::Q5_K.name());
    }
}
