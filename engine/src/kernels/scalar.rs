//! Plain-Rust reference kernels. Every SIMD kernel is tested against these, and they are what
//! runs on a CPU with none of the extensions we have kernels for.

use super::{Isa, Kernels};
use crate::dtype::{DType, QK};
use crate::kernels::blocks::Q8Blocks;
use crate::kernels::q5;
use half::f16;

pub(super) static KERNELS: Kernels = Kernels {
    isa: Isa::Scalar,
    name: "scalar",
    dot_f32,
    dot_f16,
    dot_q8_0,
    dot_q4_0,
    dot_q4_1,
    dot_q5_0,
    dot_q5_1,
    dot_q4_k: super::kquants::scalar::dot_q4_k,
    dot_q5_k: super::kquants::scalar::dot_q5_k,
    dot_q6_k: super::kquants::scalar::dot_q6_k,
    axpy,
    attend: super::attention::attend_scalar,
    packed: None,
    dot_k_tile: super::kquants::tile::dot_k_tile,
};

/// `y += a * x`; a plain loop, which LLVM vectorises for the baseline ISA.
pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    assert_eq!(x.len(), y.len(), "axpy: lengths differ");
    for (o, &v) in y.iter_mut().zip(x) {
        *o += a * v;
    }
}

pub fn dot_f32(w: &[f32], x: &[f32]) -> f32 {
    debug_assert_eq!(w.len(), x.len());
    // Eight partial sums: the same association SIMD kernels use, and it lets LLVM vectorise.
    let mut acc = [0.0f32; 8];
    let (wc, wr) = w.split_at(w.len() / 8 * 8);
    let (xc, xr) = x.split_at(wc.len());
    for (wb, xb) in wc.chunks_exact(8).zip(xc.chunks_exact(8)) {
        for i in 0..8 {
            acc[i] += wb[i] * xb[i];
        }
    }
    let tail: f32 = wr.iter().zip(xr).map(|(a, b)| a * b).sum();
    acc.iter().sum::<f32>() + tail
}

pub fn dot_f16(w: &[f16], x: &[f32]) -> f32 {
    debug_assert_eq!(w.len(), x.len());
    let mut acc = [0.0f32; 8];
    let (wc, wr) = w.split_at(w.len() / 8 * 8);
    let (xc, xr) = x.split_at(wc.len());
    for (wb, xb) in wc.chunks_exact(8).zip(xc.chunks_exact(8)) {
        for i in 0..8 {
            acc[i] += wb[i].to_f32() * xb[i];
        }
    }
    let tail: f32 = wr.iter().zip(xr).map(|(a, b)| a.to_f32() * b).sum();
    acc.iter().sum::<f32>() + tail
}

#[inline]
fn scale(block: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([block[at], block[at + 1]]).to_f32()
}

pub fn dot_q8_0(w: &[u8], a: Q8Blocks<'_>) -> f32 {
    let bb = DType::Q8_0.block_bytes();
    let mut sum = 0.0f32;
    for (i, blk) in w.chunks_exact(bb).enumerate() {
        let qa = &a.qs[i * QK..(i + 1) * QK];
        let isum: i32 = blk[2..]
            .iter()
            .zip(qa)
            .map(|(&q, &x)| (q as i8) as i32 * x as i32)
            .sum();
        sum += scale(blk, 0) * a.d[i] * isum as f32;
    }
    sum
}

pub fn dot_q4_0(w: &[u8], a: Q8Blocks<'_>) -> f32 {
    let bb = DType::Q4_0.block_bytes();
    let mut sum = 0.0f32;
    for (i, blk) in w.chunks_exact(bb).enumerate() {
        let qa = &a.qs[i * QK..(i + 1) * QK];
        let mut isum = 0i32;
        for j in 0..QK / 2 {
            let lo = (blk[2 + j] & 0x0F) as i32 - 8;
            let hi = (blk[2 + j] >> 4) as i32 - 8;
            isum += lo * qa[j] as i32 + hi * qa[j + QK / 2] as i32;
        }
        sum += scale(blk, 0) * a.d[i] * isum as f32;
    }
    sum
}

pub fn dot_q4_1(w: &[u8], a: Q8Blocks<'_>) -> f32 {
    let bb = DType::Q4_1.block_bytes();
    let mut sum = 0.0f32;
    for (i, blk) in w.chunks_exact(bb).enumerate() {
        let qa = &a.qs[i * QK..(i + 1) * QK];
        let mut isum = 0i32;
        for j in 0..QK / 2 {
            let lo = (blk[4 + j] & 0x0F) as i32;
            let hi = (blk[4 + j] >> 4) as i32;
            isum += lo * qa[j] as i32 + hi * qa[j + QK / 2] as i32;
        }
        // value = d*q + m, so sum(value * a) = d*da*sum(q*qa) + m*(da*sum(qa)).
        sum += scale(blk, 0) * a.d[i] * isum as f32 + scale(blk, 2) * a.s[i];
    }
    sum
}

pub fn dot_q5_0(w: &[u8], a: Q8Blocks<'_>) -> f32 {
    let bb = DType::Q5_0.block_bytes();
    let mut sum = 0.0f32;
    for (i, blk) in w.chunks_exact(bb).enumerate() {
        let qa = &a.qs[i * QK..(i + 1) * QK];
        let isum: i32 = q5::quants(blk, q5::Q5_0_QH)
            .iter()
            .zip(qa)
            .map(|(&q, &x)| (q as i32 - 16) * x as i32)
            .sum();
        sum += scale(blk, 0) * a.d[i] * isum as f32;
    }
    sum
}

pub fn dot_q5_1(w: &[u8], a: Q8Blocks<'_>) -> f32 {
    let bb = DType::Q5_1.block_bytes();
    let mut sum = 0.0f32;
    for (i, blk) in w.chunks_exact(bb).enumerate() {
        let qa = &a.qs[i * QK..(i + 1) * QK];
        let isum: i32 = q5::quants(blk, q5::Q5_1_QH)
            .iter()
            .zip(qa)
            .map(|(&q, &x)| q as i32 * x as i32)
            .sum();
        // value = d*q + m, as for Q4_1.
        sum += scale(blk, 0) * a.d[i] * isum as f32 + scale(blk, 2) * a.s[i];
    }
    sum
}
