//! Plain-Rust reference dot products for the K-quants, which every SIMD kernel is tested
//! against.
//!
//! The f32 arithmetic is fixed here and the SIMD kernels keep it: each 32-element sub-block
//! gives one exact integer sum `X` (its weight scales already multiplied in, in integers), and
//! the row total is the sum over sub-blocks of `(d * d_a) * X`, minus `(dmin * m) * s` for
//! Q4_K. Only the order of that outer sum differs between kernels.

use super::{
    f16_at, q4_k_scales_mins, q5_k_quant, q6_k_quant, Q4_K_QS, Q4_K_SCALES, Q6_K_D, Q6_K_SCALES,
    SUB,
};
use crate::dtype::{DType, QK};
use crate::kernels::blocks::Q8Blocks;

/// Checks what every K-quant kernel relies on: as many activation blocks as the weight row
/// has sub-blocks.
#[inline]
pub(crate) fn check_len(ty: DType, w: &[u8], a: &Q8Blocks<'_>) -> usize {
    let nsb = w.len() / ty.block_bytes();
    assert!(
        a.qs.len() >= nsb * SUB * QK && a.d.len() >= nsb * SUB && a.s.len() >= nsb * SUB,
        "{ty}: activations shorter than the weight row"
    );
    nsb
}

pub fn dot_q4_k(w: &[u8], a: Q8Blocks<'_>) -> f32 {
    let bb = DType::Q4_K.block_bytes();
    check_len(DType::Q4_K, w, &a);
    let mut sum = 0.0f32;
    for (i, blk) in w.chunks_exact(bb).enumerate() {
        let (d, dmin) = (f16_at(blk, 0), f16_at(blk, 2));
        let (sc, m) = q4_k_scales_mins(&blk[Q4_K_SCALES..Q4_K_QS]);
        for j in 0..SUB {
            let b = i * SUB + j;
            let qa = &a.qs[b * QK..(b + 1) * QK];
            let bytes = &blk[Q4_K_QS + QK * (j / 2)..][..QK];
            let shift = 4 * (j % 2);
            let isum: i32 = bytes
                .iter()
                .zip(qa)
                .map(|(&q, &x)| ((q >> shift) & 0x0F) as i32 * x as i32)
                .sum();
            // value = d*sc*q - dmin*m, and the activation is d_a*qa with s = d_a*sum(qa), so
            // the sub-block contributes d*d_a*(sc*isum) - dmin*m*s. sc*isum is at most
            // 63 * 32 * 15 * 128, well inside f32's exact integers.
            sum += d * a.d[b] * (sc[j] as i32 * isum) as f32 - dmin * m[j] as f32 * a.s[b];
        }
    }
    sum
}

pub fn dot_q5_k(w: &[u8], a: Q8Blocks<'_>) -> f32 {
    let bb = DType::Q5_K.block_bytes();
    check_len(DType::Q5_K, w, &a);
    let mut sum = 0.0f32;
    for (i, blk) in w.chunks_exact(bb).enumerate() {
        let (d, dmin) = (f16_at(blk, 0), f16_at(blk, 2));
        let (sc, m) = q4_k_scales_mins(&blk[Q4_K_SCALES..Q4_K_QS]);
        for j in 0..SUB {
            let b = i * SUB + j;
            let qa = &a.qs[b * QK..(b + 1) * QK];
            let isum: i32 = qa
                .iter()
                .enumerate()
                .map(|(l, &x)| q5_k_quant(blk, j, l) as i32 * x as i32)
                .sum();
            // As Q4_K; sc*isum is at most 63 * 32 * 31 * 128 < 2^24, so exact in f32.
            sum += d * a.d[b] * (sc[j] as i32 * isum) as f32 - dmin * m[j] as f32 * a.s[b];
        }
    }
    sum
}

pub fn dot_q6_k(w: &[u8], a: Q8Blocks<'_>) -> f32 {
    let bb = DType::Q6_K.block_bytes();
    check_len(DType::Q6_K, w, &a);
    let mut sum = 0.0f32;
    for (i, blk) in w.chunks_exact(bb).enumerate() {
        let d = f16_at(blk, Q6_K_D);
        for j in 0..SUB {
            let b = i * SUB + j;
            let qa = &a.qs[b * QK..(b + 1) * QK];
            // A sub-block spans two 16-element scale groups, each summed in integers first.
            let mut isum = 0i32;
            for g in 0..2 {
                let sc = blk[Q6_K_SCALES + 2 * j + g] as i8 as i32;
                let mut gsum = 0i32;
                for (l, &x) in qa.iter().enumerate().skip(16 * g).take(16) {
                    gsum += (q6_k_quant(blk, QK * j + l) as i32 - 32) * x as i32;
                }
                isum += sc * gsum;
            }
            // |isum| <= 2 * 128 * 16 * 32 * 128 = 2^24, so the conversion is exact.
            sum += d * a.d[b] * isum as f32;
        }
    }
    sum
}
