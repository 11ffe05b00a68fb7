//! The 32-element 5-bit types, Q5_0 and Q5_1: what llama.cpp's K-quant mixes fall back to for
//! matrices whose rows are not a multiple of 256 (Q4_K_M picks Q5_0, Q5_K_M picks Q5_1; every
//! 576-wide SmolLM2 matrix and 640-wide Gemma 3 270M matrix).
//!
//! Byte layouts (offsets within one block):
//!
//! * Q5_0, 22 bytes: f16 `d` at 0, 32 high bits `qh` at 2 (bit j = element j's fifth bit), 16
//!   bytes of nibbles at 6 (low nibble = element j, high nibble = element j + 16).
//!   value = d * (q - 16), q in 0..32.
//! * Q5_1, 24 bytes: f16 `d` at 0, f16 `m` at 2, `qh` at 4, nibbles at 8, laid out as Q5_0's.
//!   value = d * q + m.
//!
//! The blocks are run as they are in the file (kernels in [`super::scalar`] and each ISA's
//! table), or, in a session whose table has packed kernels, rearranged into the lane-per-block
//! layout of [`super::packed`] (same size); the activations are the engine's 32-element [`super::blocks::Q8Row`], one block
//! per weight block, so each block's dot product is one exact integer sum.

use crate::dtype::{DType, QK};
use half::f16;

/// Offset of `qh` in a Q5_0 block (its nibbles follow at +4).
pub const Q5_0_QH: usize = 2;
/// Offset of `qh` in a Q5_1 block (its nibbles follow at +4).
pub const Q5_1_QH: usize = 4;

/// The 32 unsigned 5-bit values (0..32) of a block whose `qh` starts at `at`.
#[inline(always)]
pub fn quants(blk: &[u8], at: usize) -> [u8; QK] {
    let qh = u32::from_le_bytes([blk[at], blk[at + 1], blk[at + 2], blk[at + 3]]);
    let qs = &blk[at + 4..at + 4 + QK / 2];
    let mut out = [0u8; QK];
    for j in 0..QK / 2 {
        out[j] = (qs[j] & 0x0F) | ((((qh >> j) & 1) as u8) << 4);
        out[j + QK / 2] = (qs[j] >> 4) | ((((qh >> (j + 16)) & 1) as u8) << 4);
    }
    out
}

/// Decodes a Q5_0 row to f32, as ggml's `dequantize_row_q5_0` (`(q - 16) * d`).
pub fn dequantize_q5_0(row: &[u8], out: &mut [f32]) {
    let bb = DType::Q5_0.block_bytes();
    assert_eq!(row.len() / bb * QK, out.len(), "q5_0 row length");
    for (blk, o) in row.chunks_exact(bb).zip(out.chunks_exact_mut(QK)) {
        let d = f16::from_le_bytes([blk[0], blk[1]]).to_f32();
        for (x, q) in o.iter_mut().zip(quants(blk, Q5_0_QH)) {
            *x = (q as i32 - 16) as f32 * d;
        }
    }
}

/// Decodes a Q5_1 row to f32, as ggml's `dequantize_row_q5_1` (`q * d + m`, not fused).
pub fn dequantize_q5_1(row: &[u8], out: &mut [f32]) {
    let bb = DType::Q5_1.block_bytes();
    assert_eq!(row.len() / bb * QK, out.len(), "q5_1 row length");
    for (blk, o) in row.chunks_exact(bb).zip(out.chunks_exact_mut(QK)) {
        let d = f16::from_le_bytes([blk[0], blk[1]]).to_f32();
        let m = f16::from_le_bytes([blk[2], blk[3]]).to_f32();
        for (x, q) in o.iter_mut().zip(quants(blk, Q5_1_QH)) {
            *x = q as f32 * d + m;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hand_built_q5_0_block_decodes() {
        // d = 0.5; element 0 = nibble 3 with its high bit set (q = 19 -> 3), element 16 =
        // high nibble 15 without its high bit (q = 15 -> -1), element 31 = 0 with the high bit
        // (q = 16 -> 0), everything else q = 0 -> -16.
        let mut blk = [0u8; 22];
        blk[..2].copy_from_slice(&f16::from_f32(0.5).to_le_bytes());
        let qh: u32 = 1 | (1 << 31);
        blk[2..6].copy_from_slice(&qh.to_le_bytes());
        blk[6] = 0x03 | (0x0F << 4);
        let mut x = [0f32; QK];
        dequantize_q5_0(&blk, &mut x);
        assert_eq!(x[0], 1.5);
        assert_eq!(x[16], -0.5);
        assert_eq!(x[31], 0.0);
        assert_eq!(x[1], -8.0);
    }

    #[test]
    fn a_hand_built_q5_1_block_decodes() {
        // d = 0.25, m = -1. Element 5: nibble 9 with the high bit (q = 25): 25 * 0.25 - 1 = 5.25.
        // Element 21: high nibble 2 without it (q = 2): -0.5. Element 30: high nibble 0 with
        // the high bit (q = 16): 3. Others q = 0: -1.
        let mut blk = [0u8; 24];
        blk[..2].copy_from_slice(&f16::from_f32(0.25).to_le_bytes());
        blk[2..4].copy_from_slice(&f16::from_f32(-1.0).to_le_bytes());
        let qh: u32 = (1 << 5) | (1 << 30);
        blk[4..8].copy_from_slice(&qh.to_le_bytes());
        blk[8 + 5] = 0x09 | (0x02 << 4);
        let mut x = [0f32; QK];
        dequantize_q5_1(&blk, &mut x);
        assert_eq!(x[5], 5.25);
        assert_eq!(x[21], -0.5);
        assert_eq!(x[30], 3.0);
        assert_eq!(x[0], -1.0);
    }

    #[test]
    fn scalar_dots_equal_the_dot_of_the_dequantized_rows() {
        // Ties the reference kernels' reading of the layout to the decoders above, which the
        // hand-built blocks pin to ggml's.
        use crate::kernels::blocks::{dequantize_row, Q8Row};
        use crate::kernels::scalar;
        use crate::kernels::test_support::{random_blocks, Rng};
        let mut rng = Rng(0x0005_0005_0005_0005);
        for ty in DType::FIVE_BIT {
            for nb in [1, 3, 20] {
                let n = nb * QK;
                let x: Vec<f32> = (0..n).map(|_| rng.f32() * 3.0).collect();
                let mut q8 = Q8Row::default();
                q8.quantize_from(&x);
                let w = random_blocks(&mut rng, ty, n);
                let mut wf = vec![0f32; n];
                dequantize_row(ty, &w, &mut wf);
                let terms = (0..n).map(|i| wf[i] as f64 * (q8.d[i / QK] * q8.qs[i] as f32) as f64);
                let want: f64 = terms.clone().sum();
                let scale: f64 = terms.map(f64::abs).sum();
                let got = match ty {
                    DType::Q5_0 => scalar::dot_q5_0(&w, q8.blocks()),
                    _ => scalar::dot_q5_1(&w, q8.blocks()),
                };
                assert!(
                    (got as f64 - want).abs() <= 1e-5 * scale,
                    "{ty} {nb}: {got} vs {want}"
                );
            }
        }
    }
}
