//! Q5_0 rows, which llama.cpp's K-quant mixes fall back to for matrices whose rows are not a
//! multiple of 256 (every 576-wide SmolLM2 matrix in a Q4_K_M file).
//!
//! Block (22 bytes): f16 scale `d`, 32 high bits `qh` (bit j = element j's fifth bit), then 16
//! bytes of nibbles (low nibble = element j, high nibble = element j + 16). Value =
//! `d * (q - 16)` with `q` in 0..32. Every such value is also exactly a Q8_0 value with the same
//! scale, so the engine runs Q5_0 matrices as Q8_0 ([`to_q8_0`]): no kernels of their own, at
//! the price of 34 instead of 22 bytes per block.

use crate::dtype::QK;
use half::f16;

/// Bytes per Q5_0 block.
pub const BLOCK_BYTES: usize = 2 + 4 + QK / 2;

/// The 32 signed values `q - 16` of one block.
fn values(blk: &[u8]) -> [i8; QK] {
    let qh = u32::from_le_bytes([blk[2], blk[3], blk[4], blk[5]]);
    let mut out = [0i8; QK];
    for j in 0..QK / 2 {
        let b = blk[6 + j];
        let lo = (b & 0x0F) | ((((qh >> j) & 1) as u8) << 4);
        let hi = (b >> 4) | ((((qh >> (j + 16)) & 1) as u8) << 4);
        out[j] = lo as i8 - 16;
        out[j + QK / 2] = hi as i8 - 16;
    }
    out
}

/// Rewrites a Q5_0 row as the Q8_0 row with the same values (34 bytes per block).
pub fn to_q8_0(row: &[u8], out: &mut [u8]) {
    assert_eq!(row.len() % BLOCK_BYTES, 0, "q5_0 row is not whole blocks");
    assert_eq!(out.len(), row.len() / BLOCK_BYTES * (2 + QK));
    for (blk, o) in row
        .chunks_exact(BLOCK_BYTES)
        .zip(out.chunks_exact_mut(2 + QK))
    {
        o[..2].copy_from_slice(&blk[..2]);
        for (d, v) in o[2..].iter_mut().zip(values(blk)) {
            *d = v as u8;
        }
    }
}

/// Decodes a Q5_0 row to f32.
pub fn dequantize(row: &[u8], out: &mut [f32]) {
    assert_eq!(row.len() / BLOCK_BYTES * QK, out.len(), "q5_0 row length");
    for (blk, o) in row.chunks_exact(BLOCK_BYTES).zip(out.chunks_exact_mut(QK)) {
        let d = f16::from_le_bytes([blk[0], blk[1]]).to_f32();
        for (x, v) in o.iter_mut().zip(values(blk)) {
            *x = d * v as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hand_built_block_decodes_and_converts() {
        // d = 0.5; element 0 = nibble 3 with its high bit set (q = 19 -> 3), element 16 =
        // high nibble 15 without its high bit (q = 15 -> -1), element 31 = 0 with the high bit
        // (q = 16 -> 0), everything else q = 0 -> -16.
        let mut blk = [0u8; BLOCK_BYTES];
        blk[..2].copy_from_slice(&f16::from_f32(0.5).to_le_bytes());
        let qh: u32 = 1 | (1 << 31);
        blk[2..6].copy_from_slice(&qh.to_le_bytes());
        blk[6] = 0x03 | (0x0F << 4);
        let mut x = [0f32; QK];
        dequantize(&blk, &mut x);
        assert_eq!(x[0], 1.5);
        assert_eq!(x[16], -0.5);
        assert_eq!(x[31], 0.0);
        assert_eq!(x[1], -8.0);
        let mut q8 = [0u8; 2 + QK];
        to_q8_0(&blk, &mut q8);
        let mut y = [0f32; QK];
        crate::kernels::blocks::dequantize_row(crate::dtype::DType::Q8_0, &q8, &mut y);
        assert_eq!(x, y);
    }
}
