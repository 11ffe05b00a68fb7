//! K-quant kernels for aarch64 NEON, with a variant for the dot-product extension (`sdot`),
//! for the two NEON tables.
//!
//! NEON multiplies signed bytes by signed bytes, so Q6_K's bias is subtracted from the weights
//! up front (q - 32 fits in i8) and Q4_K's nibbles are valid signed bytes as they are. Each
//! sub-block's integer sum is exact either way; four sub-block sums are then gathered into one
//! vector by pairwise adds and meet four activation scales in one FMA.

use super::scalar::check_len;
use super::{
    q4_k_scales_mins, Q4_K_QS, Q4_K_SCALES, Q5_K_QH, Q5_K_QS, Q6_K_D, Q6_K_QH, Q6_K_SCALES, SUB,
};
use crate::dtype::{DType, QK};
use crate::kernels::blocks::Q8Blocks;
use std::arch::aarch64::*;

// Soundness: NEON is baseline on the aarch64 Linux targets, so the plain entry points run on
// any CPU this binary runs on. The `_dotprod` ones are visible only inside `kernels`, where
// the dotprod NEON table is their only user, and that table is handed out only after dotprod
// was detected. `check_len` keeps the activation loads inside their slices; weight loads stay
// inside whole super-blocks of `w`.

pub(in crate::kernels) fn dot_q4_k(w: &[u8], a: Q8Blocks<'_>) -> f32 {
    let nsb = check_len(DType::Q4_K, w, &a);
    unsafe { Mull::q4_k(w, a, nsb) }
}

pub(in crate::kernels) fn dot_q6_k(w: &[u8], a: Q8Blocks<'_>) -> f32 {
    let nsb = check_len(DType::Q6_K, w, &a);
    unsafe { Mull::q6_k(w, a, nsb) }
}

pub(in crate::kernels) fn dot_q5_k(w: &[u8], a: Q8Blocks<'_>) -> f32 {
    let nsb = check_len(DType::Q5_K, w, &a);
    unsafe { Mull::q5_k(w, a, nsb) }
}

pub(in crate::kernels) fn dot_q5_k_dotprod(w: &[u8], a: Q8Blocks<'_>) -> f32 {
    let nsb = check_len(DType::Q5_K, w, &a);
    unsafe { Sdot::q5_k(w, a, nsb) }
}

pub(in crate::kernels) fn dot_q4_k_dotprod(w: &[u8], a: Q8Blocks<'_>) -> f32 {
    let nsb = check_len(DType::Q4_K, w, &a);
    unsafe { Sdot::q4_k(w, a, nsb) }
}

pub(in crate::kernels) fn dot_q6_k_dotprod(w: &[u8], a: Q8Blocks<'_>) -> f32 {
    let nsb = check_len(DType::Q6_K, w, &a);
    unsafe { Sdot::q6_k(w, a, nsb) }
}

/// The plain table's tile: one single-row call per token (a tile that unpacks each super-block
/// once issues more instructions here, not fewer: see [`super::neon_tile`]).
pub(in crate::kernels) fn dot_k_tile(ty: DType, w: &[u8], acts: &[Q8Blocks<'_>], out: &mut [f32]) {
    super::tile::by_rows([dot_q4_k, dot_q5_k, dot_q6_k], ty, w, acts, out);
}

/// How signed byte products reach i32 lanes, and the entry points compiled for each way.
pub(super) trait Dot {
    /// `acc` plus all sixteen products a[j] * b[j], spread over the four lanes in some order;
    /// exact for any bytes.
    unsafe fn dot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t;
    unsafe fn q4_k(w: &[u8], a: Q8Blocks<'_>, nsb: usize) -> f32;
    unsafe fn q5_k(w: &[u8], a: Q8Blocks<'_>, nsb: usize) -> f32;
    unsafe fn q6_k(w: &[u8], a: Q8Blocks<'_>, nsb: usize) -> f32;
}

pub(super) struct Mull;
pub(super) struct Sdot;

impl Dot for Mull {
    #[inline(always)]
    unsafe fn dot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        // Each i8 * i8 product fits in i16 (even -128 * -128), and pairs are widened to i32
        // before they are added.
        let lo = vmull_s8(vget_low_s8(a), vget_low_s8(b));
        let hi = vmull_high_s8(a, b);
        vpadalq_s16(vpadalq_s16(acc, lo), hi)
    }
    unsafe fn q4_k(w: &[u8], a: Q8Blocks<'_>, nsb: usize) -> f32 {
        dot_q4_k_impl::<Self>(w, a, nsb)
    }
    unsafe fn q5_k(w: &[u8], a: Q8Blocks<'_>, nsb: usize) -> f32 {
        dot_q5_k_impl::<Self>(w, a, nsb)
    }
    unsafe fn q6_k(w: &[u8], a: Q8Blocks<'_>, nsb: usize) -> f32 {
        dot_q6_k_impl::<Self>(w, a, nsb)
    }
}

impl Dot for Sdot {
    #[inline]
    #[target_feature(enable = "dotprod")]
    unsafe fn dot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        // `vdotq_s32` is still unstable in Rust, so the instruction is written out (as the
        // existing NEON kernels do); the assembler only accepts it with dotprod enabled.
        let mut acc = acc;
        std::arch::asm!(
            "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            acc = inout(vreg) acc,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack, preserves_flags)
        );
        acc
    }
    #[target_feature(enable = "dotprod")]
    unsafe fn q4_k(w: &[u8], a: Q8Blocks<'_>, nsb: usize) -> f32 {
        dot_q4_k_impl::<Self>(w, a, nsb)
    }
    #[target_feature(enable = "dotprod")]
    unsafe fn q5_k(w: &[u8], a: Q8Blocks<'_>, nsb: usize) -> f32 {
        dot_q5_k_impl::<Self>(w, a, nsb)
    }
    #[target_feature(enable = "dotprod")]
    unsafe fn q6_k(w: &[u8], a: Q8Blocks<'_>, nsb: usize) -> f32 {
        dot_q6_k_impl::<Self>(w, a, nsb)
    }
}

#[inline(always)]
pub(super) fn f16_at(b: &[u8], at: usize) -> f32 {
    // `fcvt`, inline: `half`'s out-of-line call made the block loop spill its vectors around
    // it (25 instructions per Q6_K super-block under dotprod).
    crate::kernels::neon_interleaved::f16_scalar(u16::from_le_bytes([b[at], b[at + 1]]))
}

/// Lane k of the result is the total of the four lanes of `v[k]`.
#[inline(always)]
pub(super) unsafe fn transpose_sum(v: &[int32x4_t]) -> int32x4_t {
    vpaddq_s32(vpaddq_s32(v[0], v[1]), vpaddq_s32(v[2], v[3]))
}

/// Eight u8 widened to two vectors of four i32.
#[inline(always)]
pub(super) unsafe fn widen_u8(p: &[u8; 8]) -> (int32x4_t, int32x4_t) {
    let h = vmovl_u8(vld1_u8(p.as_ptr()));
    (
        vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(h))),
        vreinterpretq_s32_u32(vmovl_high_u16(h)),
    )
}

#[inline(always)]
unsafe fn dot_q4_k_impl<D: Dot>(w: &[u8], a: Q8Blocks<'_>, nsb: usize) -> f32 {
    let bb = DType::Q4_K.block_bytes();
    let low4 = vdupq_n_u8(0x0F);
    let (mut acc0, mut acc1) = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
    let (mut macc0, mut macc1) = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
    for i in 0..nsb {
        let blk = &w[i * bb..(i + 1) * bb];
        let (sc, m) = q4_k_scales_mins(&blk[Q4_K_SCALES..Q4_K_QS]);
        let qs = blk.as_ptr().add(Q4_K_QS);
        let q = a.qs.as_ptr().add(i * SUB * QK);
        let mut v = [vdupq_n_s32(0); SUB];
        for c in 0..SUB / 2 {
            let b0 = vld1q_u8(qs.add(QK * c));
            let b1 = vld1q_u8(qs.add(QK * c + 16));
            let qa = q.add(2 * QK * c);
            // Nibbles are at most 15, so they are also valid signed bytes.
            let lo = [vandq_u8(b0, low4), vandq_u8(b1, low4)];
            let hi = [vshrq_n_u8::<4>(b0), vshrq_n_u8::<4>(b1)];
            let mut even = vdupq_n_s32(0);
            let mut odd = vdupq_n_s32(0);
            for h in 0..2 {
                even = D::dot(even, vreinterpretq_s8_u8(lo[h]), vld1q_s8(qa.add(16 * h)));
                odd = D::dot(
                    odd,
                    vreinterpretq_s8_u8(hi[h]),
                    vld1q_s8(qa.add(QK + 16 * h)),
                );
            }
            v[2 * c] = even;
            v[2 * c + 1] = odd;
        }
        let (sc0, sc1) = widen_u8(&sc);
        let x0 = vmulq_s32(transpose_sum(&v[..4]), sc0);
        let x1 = vmulq_s32(transpose_sum(&v[4..]), sc1);
        let (d, dmin) = (f16_at(blk, 0), f16_at(blk, 2));
        let da = a.d.as_ptr().add(i * SUB);
        acc0 = vfmaq_f32(acc0, vmulq_n_f32(vld1q_f32(da), d), vcvtq_f32_s32(x0));
        acc1 = vfmaq_f32(
            acc1,
            vmulq_n_f32(vld1q_f32(da.add(4)), d),
            vcvtq_f32_s32(x1),
        );
        let (m0, m1) = widen_u8(&m);
        let s = a.s.as_ptr().add(i * SUB);
        macc0 = vfmaq_f32(macc0, vmulq_n_f32(vcvtq_f32_s32(m0), dmin), vld1q_f32(s));
        macc1 = vfmaq_f32(
            macc1,
            vmulq_n_f32(vcvtq_f32_s32(m1), dmin),
            vld1q_f32(s.add(4)),
        );
    }
    vaddvq_f32(vaddq_f32(acc0, acc1)) - vaddvq_f32(vaddq_f32(macc0, macc1))
}

#[inline(always)]
unsafe fn dot_q5_k_impl<D: Dot>(w: &[u8], a: Q8Blocks<'_>, nsb: usize) -> f32 {
    let bb = DType::Q5_K.block_bytes();
    let low4 = vdupq_n_u8(0x0F);
    let sixteen = vdupq_n_u8(16);
    let (mut acc0, mut acc1) = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
    let (mut macc0, mut macc1) = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
    for i in 0..nsb {
        let blk = &w[i * bb..(i + 1) * bb];
        let (sc, m) = q4_k_scales_mins(&blk[Q4_K_SCALES..Q4_K_QS]);
        let qs = blk.as_ptr().add(Q5_K_QS);
        let qh = [
            vld1q_u8(blk.as_ptr().add(Q5_K_QH)),
            vld1q_u8(blk.as_ptr().add(Q5_K_QH + 16)),
        ];
        let q = a.qs.as_ptr().add(i * SUB * QK);
        let mut v = [vdupq_n_s32(0); SUB];
        for c in 0..SUB / 2 {
            let b = [vld1q_u8(qs.add(QK * c)), vld1q_u8(qs.add(QK * c + 16))];
            let qa = q.add(2 * QK * c);
            // Sub-block j's fifth bits are bit j of qh: a byte test gives all ones where set.
            let (bit_even, bit_odd) = (vdupq_n_u8(1 << (2 * c)), vdupq_n_u8(2 << (2 * c)));
            let mut even = vdupq_n_s32(0);
            let mut odd = vdupq_n_s32(0);
            for h in 0..2 {
                let he = vandq_u8(vtstq_u8(qh[h], bit_even), sixteen);
                let ho = vandq_u8(vtstq_u8(qh[h], bit_odd), sixteen);
                // Values are at most 31, so they are also valid signed bytes.
                let lo = vorrq_u8(vandq_u8(b[h], low4), he);
                let hi = vorrq_u8(vshrq_n_u8::<4>(b[h]), ho);
                even = D::dot(even, vreinterpretq_s8_u8(lo), vld1q_s8(qa.add(16 * h)));
                odd = D::dot(odd, vreinterpretq_s8_u8(hi), vld1q_s8(qa.add(QK + 16 * h)));
            }
            v[2 * c] = even;
            v[2 * c + 1] = odd;
        }
        let (sc0, sc1) = widen_u8(&sc);
        let x0 = vmulq_s32(transpose_sum(&v[..4]), sc0);
        let x1 = vmulq_s32(transpose_sum(&v[4..]), sc1);
        let (d, dmin) = (f16_at(blk, 0), f16_at(blk, 2));
        let da = a.d.as_ptr().add(i * SUB);
        acc0 = vfmaq_f32(acc0, vmulq_n_f32(vld1q_f32(da), d), vcvtq_f32_s32(x0));
        acc1 = vfmaq_f32(
            acc1,
            vmulq_n_f32(vld1q_f32(da.add(4)), d),
            vcvtq_f32_s32(x1),
        );
        let (m0, m1) = widen_u8(&m);
        let s = a.s.as_ptr().add(i * SUB);
        macc0 = vfmaq_f32(macc0, vmulq_n_f32(vcvtq_f32_s32(m0), dmin), vld1q_f32(s));
        macc1 = vfmaq_f32(
            macc1,
            vmulq_n_f32(vcvtq_f32_s32(m1), dmin),
            vld1q_f32(s.add(4)),
        );
    }
    vaddvq_f32(vaddq_f32(acc0, acc1)) - vaddvq_f32(vaddq_f32(macc0, macc1))
}

#[inline(always)]
unsafe fn dot_q6_k_impl<D: Dot>(w: &[u8], a: Q8Blocks<'_>, nsb: usize) -> f32 {
    let bb = DType::Q6_K.block_bytes();
    let low4 = vdupq_n_u8(0x0F);
    let bits45 = vdupq_n_u8(0x30);
    let bias = vdupq_n_s8(32);
    let (mut acc0, mut acc1) = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
    for i in 0..nsb {
        let blk = &w[i * bb..(i + 1) * bb];
        let p = blk.as_ptr();
        let q = a.qs.as_ptr().add(i * SUB * QK);
        // One i32x4 per 16-element scale group (two per sub-block).
        let mut g = [vdupq_n_s32(0); 2 * SUB];
        for h in 0..2 {
            for half in 0..2 {
                let ql0 = vld1q_u8(p.add(64 * h + 16 * half));
                let ql1 = vld1q_u8(p.add(64 * h + 32 + 16 * half));
                let qh = vld1q_u8(p.add(Q6_K_QH + 32 * h + 16 * half));
                // Quarter k's two high bits are bits 2k..2k+2 of qh, moved to bits 4..6.
                let quarters = [
                    vorrq_u8(vandq_u8(ql0, low4), vandq_u8(vshlq_n_u8::<4>(qh), bits45)),
                    vorrq_u8(vandq_u8(ql1, low4), vandq_u8(vshlq_n_u8::<2>(qh), bits45)),
                    vorrq_u8(vshrq_n_u8::<4>(ql0), vandq_u8(qh, bits45)),
                    vorrq_u8(vshrq_n_u8::<4>(ql1), vandq_u8(vshrq_n_u8::<2>(qh), bits45)),
                ];
                for (k, &qw) in quarters.iter().enumerate() {
                    let j = 4 * h + k;
                    let qw = vsubq_s8(vreinterpretq_s8_u8(qw), bias);
                    let qa = vld1q_s8(q.add(QK * j + 16 * half));
                    g[2 * j + half] = D::dot(vdupq_n_s32(0), qw, qa);
                }
            }
        }
        let scales = vld1q_s8(p.add(Q6_K_SCALES) as *const i8);
        let (s_lo, s_hi) = (vmovl_s8(vget_low_s8(scales)), vmovl_high_s8(scales));
        let sc = [
            vmovl_s16(vget_low_s16(s_lo)),
            vmovl_high_s16(s_lo),
            vmovl_s16(vget_low_s16(s_hi)),
            vmovl_high_s16(s_hi),
        ];
        // Scaled group sums, four groups per vector; adjacent groups then pair up into
        // sub-blocks. Group sums are at most 16 * 32 * 128 and scales 128 in magnitude.
        let mut gs = [vdupq_n_s32(0); 4];
        for (t, gt) in gs.iter_mut().enumerate() {
            *gt = vmulq_s32(transpose_sum(&g[4 * t..4 * t + 4]), sc[t]);
        }
        let x0 = vpaddq_s32(gs[0], gs[1]);
        let x1 = vpaddq_s32(gs[2], gs[3]);
        let d = f16_at(blk, Q6_K_D);
        let da = a.d.as_ptr().add(i * SUB);
        acc0 = vfmaq_f32(acc0, vmulq_n_f32(vld1q_f32(da), d), vcvtq_f32_s32(x0));
        acc1 = vfmaq_f32(
            acc1,
            vmulq_n_f32(vld1q_f32(da.add(4)), d),
            vcvtq_f32_s32(x1),
        );
    }
    vaddvq_f32(vaddq_f32(acc0, acc1))
}
