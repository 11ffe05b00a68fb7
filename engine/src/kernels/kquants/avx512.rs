//! K-quant kernels for AVX-512 (F, BW, VL), with a VNNI variant, for the two AVX-512 tables.
//!
//! A 512-bit register holds two 32-element sub-blocks, so a super-block is four vectors of
//! integer sums; they are transposed and summed into one 256-bit vector of the eight
//! sub-block sums, which meets the activation scales in a single FMA. VNNI only changes how
//! byte products reach i32 lanes, so both variants give bit-identical results.

use super::avx2::{f16_at, hsum, q4_k_accumulate};
use super::scalar::check_len;
use super::{
    q4_k_scales_mins, Q4_K_QS, Q4_K_SCALES, Q5_K_QH, Q5_K_QS, Q6_K_D, Q6_K_QH, Q6_K_SCALES, SUB,
};
use crate::dtype::{DType, QK};
use crate::kernels::blocks::Q8Blocks;
use std::arch::x86_64::*;

// Soundness: these entry points are visible only inside `kernels`, where the AVX-512 tables
// are their only users; the plain table is handed out only after avx512f/bw/vl (and avx2,
// fma, f16c) were detected, the VNNI one only with avx512vnni as well. `check_len` keeps the
// activation loads inside their slices; weight loads stay inside whole super-blocks of `w`.

pub(in crate::kernels) fn dot_q4_k(w: &[u8], a: Q8Blocks<'_>) -> f32 {
    let nsb = check_len(DType::Q4_K, w, &a);
    unsafe { Maddubs::q4_k(w, a, nsb) }
}

pub(in crate::kernels) fn dot_q6_k(w: &[u8], a: Q8Blocks<'_>) -> f32 {
    let nsb = check_len(DType::Q6_K, w, &a);
    unsafe { Maddubs::q6_k(w, a, nsb) }
}

pub(in crate::kernels) fn dot_q5_k(w: &[u8], a: Q8Blocks<'_>) -> f32 {
    let nsb = check_len(DType::Q5_K, w, &a);
    unsafe { Maddubs::q5_k(w, a, nsb) }
}

pub(in crate::kernels) fn dot_q5_k_vnni(w: &[u8], a: Q8Blocks<'_>) -> f32 {
    let nsb = check_len(DType::Q5_K, w, &a);
    unsafe { Vnni::q5_k(w, a, nsb) }
}

pub(in crate::kernels) fn dot_q4_k_vnni(w: &[u8], a: Q8Blocks<'_>) -> f32 {
    let nsb = check_len(DType::Q4_K, w, &a);
    unsafe { Vnni::q4_k(w, a, nsb) }
}

pub(in crate::kernels) fn dot_q6_k_vnni(w: &[u8], a: Q8Blocks<'_>) -> f32 {
    let nsb = check_len(DType::Q6_K, w, &a);
    unsafe { Vnni::q6_k(w, a, nsb) }
}

/// The same feature test as the AVX-512 table's, for the unit tests, which call the entry
/// points above directly.
#[cfg(test)]
pub(super) fn has_avx512() -> bool {
    is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
}

/// How unsigned-by-signed byte products are summed into i32 lanes, and the entry points
/// compiled with the matching features.
trait Udot {
    /// Lane k = sum of u[4k+j] * s[4k+j] for j in 0..4; exact while every adjacent pair's
    /// sum fits in i16, which the callers guarantee.
    unsafe fn udot(u: __m512i, s: __m512i) -> __m512i;
    /// `udot(u1, s) - udot(u2, s)`.
    unsafe fn udot_diff(u1: __m512i, u2: __m512i, s: __m512i) -> __m512i;
    unsafe fn q4_k(w: &[u8], a: Q8Blocks<'_>, nsb: usize) -> f32;
    unsafe fn q5_k(w: &[u8], a: Q8Blocks<'_>, nsb: usize) -> f32;
    unsafe fn q6_k(w: &[u8], a: Q8Blocks<'_>, nsb: usize) -> f32;
}

struct Maddubs;
struct Vnni;

impl Udot for Maddubs {
    #[inline(always)]
    unsafe fn udot(u: __m512i, s: __m512i) -> __m512i {
        _mm512_madd_epi16(_mm512_maddubs_epi16(u, s), _mm512_set1_epi16(1))
    }
    #[inline(always)]
    unsafe fn udot_diff(u1: __m512i, u2: __m512i, s: __m512i) -> __m512i {
        // Subtracting the i16 pair sums first saves one widening step.
        let p = _mm512_sub_epi16(_mm512_maddubs_epi16(u1, s), _mm512_maddubs_epi16(u2, s));
        _mm512_madd_epi16(p, _mm512_set1_epi16(1))
    }
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    unsafe fn q4_k(w: &[u8], a: Q8Blocks<'_>, nsb: usize) -> f32 {
        dot_q4_k_impl::<Self>(w, a, nsb)
    }
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    unsafe fn q5_k(w: &[u8], a: Q8Blocks<'_>, nsb: usize) -> f32 {
        dot_q5_k_impl::<Self>(w, a, nsb)
    }
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    unsafe fn q6_k(w: &[u8], a: Q8Blocks<'_>, nsb: usize) -> f32 {
        dot_q6_k_impl::<Self>(w, a, nsb)
    }
}

impl Udot for Vnni {
    #[inline(always)]
    unsafe fn udot(u: __m512i, s: __m512i) -> __m512i {
        _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, s)
    }
    #[inline(always)]
    unsafe fn udot_diff(u1: __m512i, u2: __m512i, s: __m512i) -> __m512i {
        _mm512_sub_epi32(Self::udot(u1, s), Self::udot(u2, s))
    }
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    unsafe fn q4_k(w: &[u8], a: Q8Blocks<'_>, nsb: usize) -> f32 {
        dot_q4_k_impl::<Self>(w, a, nsb)
    }
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    unsafe fn q5_k(w: &[u8], a: Q8Blocks<'_>, nsb: usize) -> f32 {
        dot_q5_k_impl::<Self>(w, a, nsb)
    }
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    unsafe fn q6_k(w: &[u8], a: Q8Blocks<'_>, nsb: usize) -> f32 {
        dot_q6_k_impl::<Self>(w, a, nsb)
    }
}

/// Quarters [x0 + x1, x2 + x3, y0 + y1, y2 + y3] of two vectors of 128-bit quarters x and y.
/// A function rather than a closure, which would not share its caller's target features.
#[inline(always)]
unsafe fn fold(x: __m512i, y: __m512i) -> __m512i {
    _mm512_add_epi32(
        _mm512_shuffle_i32x4::<0x88>(x, y),
        _mm512_shuffle_i32x4::<0xDD>(x, y),
    )
}

/// `u[c]` holds sub-block 2c in lanes 0..8 and 2c + 1 in lanes 8..16; lane j of the result is
/// the total of sub-block j. Integer adds, so exact.
#[inline(always)]
pub(super) unsafe fn transpose_sum(u: &[__m512i; 4]) -> __m256i {
    // Quarter q of `r01` holds four partial sums of sub-block q (0..4), of `r23` of 4 + q.
    let (r01, r23) = (fold(u[0], u[1]), fold(u[2], u[3]));
    // Interleave and add twice: quarter q becomes [total q, total 4+q, same again].
    let s = _mm512_add_epi32(
        _mm512_unpacklo_epi32(r01, r23),
        _mm512_unpackhi_epi32(r01, r23),
    );
    let t = _mm512_add_epi32(s, _mm512_shuffle_epi32::<0x4E>(s));
    let order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 0, 0, 0, 0, 0, 0, 0, 0);
    _mm512_castsi512_si256(_mm512_permutexvar_epi32(order, t))
}

/// Two copies of the 32 bytes at `p`, one per 256-bit half.
#[inline(always)]
pub(super) unsafe fn load_twice(p: *const u8) -> __m512i {
    let b = _mm256_loadu_si256(p as *const __m256i);
    _mm512_inserti64x4::<1>(_mm512_castsi256_si512(b), b)
}

/// The upper 256 bits, as a 16-bit-lane mask.
pub(super) const HIGH_HALF: __mmask32 = 0xFFFF_0000;

#[inline(always)]
unsafe fn dot_q4_k_impl<U: Udot>(w: &[u8], a: Q8Blocks<'_>, nsb: usize) -> f32 {
    let bb = DType::Q4_K.block_bytes();
    let low4 = _mm512_set1_epi8(0x0F);
    let mut acc = _mm256_setzero_ps();
    let mut macc = _mm256_setzero_ps();
    for i in 0..nsb {
        let blk = &w[i * bb..(i + 1) * bb];
        let (sc, m) = q4_k_scales_mins(&blk[Q4_K_SCALES..Q4_K_QS]);
        let qs = blk.as_ptr().add(Q4_K_QS);
        let q = a.qs.as_ptr().add(i * SUB * QK);
        let mut u = [_mm512_setzero_si512(); 4];
        for (c, uc) in u.iter_mut().enumerate() {
            // Low nibbles (sub-block 2c) in the lower half, high nibbles (2c + 1) in the
            // upper: element order, matching 64 contiguous activations. The 16-bit shift's
            // stray bits are removed by the mask.
            let b = load_twice(qs.add(QK * c));
            let nib = _mm512_and_si512(_mm512_mask_srli_epi16::<4>(b, HIGH_HALF, b), low4);
            let qa = _mm512_loadu_si512(q.add(2 * QK * c) as *const __m512i);
            // Each i16 pair is at most 2 * 15 * 128: no saturation for any activation.
            *uc = U::udot(nib, qa);
        }
        q4_k_accumulate(transpose_sum(&u), &sc, &m, blk, &a, i, &mut acc, &mut macc);
    }
    hsum(acc) - hsum(macc)
}

#[inline(always)]
unsafe fn dot_q5_k_impl<U: Udot>(w: &[u8], a: Q8Blocks<'_>, nsb: usize) -> f32 {
    let bb = DType::Q5_K.block_bytes();
    let low4 = _mm512_set1_epi8(0x0F);
    let bit4 = _mm512_set1_epi8(0x10);
    let mut acc = _mm256_setzero_ps();
    let mut macc = _mm256_setzero_ps();
    for i in 0..nsb {
        let blk = &w[i * bb..(i + 1) * bb];
        let (sc, m) = q4_k_scales_mins(&blk[Q4_K_SCALES..Q4_K_QS]);
        let qs = blk.as_ptr().add(Q5_K_QS);
        // Sub-block j takes its fifth bits from bit j of qh. The upper copy is shifted one
        // further, so after a shift by 2c the lower half holds sub-block 2c's bits at bit 0
        // and the upper half sub-block 2c + 1's; a 16-bit shift left by 4 then puts each at
        // bit 4 of its own byte (the shift right comes first, so no bit leaves the lane).
        let qh = load_twice(blk.as_ptr().add(Q5_K_QH));
        let qh = _mm512_mask_srli_epi16::<1>(qh, HIGH_HALF, qh);
        let q = a.qs.as_ptr().add(i * SUB * QK);
        let mut u = [_mm512_setzero_si512(); 4];
        for (c, uc) in u.iter_mut().enumerate() {
            let b = load_twice(qs.add(QK * c));
            let nib = _mm512_and_si512(_mm512_mask_srli_epi16::<4>(b, HIGH_HALF, b), low4);
            let h = _mm512_slli_epi16::<4>(_mm512_srl_epi16(qh, _mm_cvtsi32_si128(2 * c as i32)));
            // nib | (h & 0x10) in one ternary-logic op (A | (B & C) is table 0xF8).
            let q5 = _mm512_ternarylogic_epi32::<0xF8>(nib, h, bit4);
            let qa = _mm512_loadu_si512(q.add(2 * QK * c) as *const __m512i);
            // Each i16 pair is at most 2 * 31 * 128: no saturation for any activation.
            *uc = U::udot(q5, qa);
        }
        q4_k_accumulate(transpose_sum(&u), &sc, &m, blk, &a, i, &mut acc, &mut macc);
    }
    hsum(acc) - hsum(macc)
}

#[inline(always)]
unsafe fn dot_q6_k_impl<U: Udot>(w: &[u8], a: Q8Blocks<'_>, nsb: usize) -> f32 {
    let bb = DType::Q6_K.block_bytes();
    let low4 = _mm512_set1_epi8(0x0F);
    let bits45 = _mm512_set1_epi8(0x30);
    let bias = _mm512_set1_epi8(32);
    // i32 lanes k*4..k*4+4 cover one 16-element scale group: spread scale g + k over them.
    let spread = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    let mut acc = _mm256_setzero_ps();
    for i in 0..nsb {
        let blk = w.as_ptr().add(i * bb);
        let scales = _mm512_cvtepi8_epi32(_mm_loadu_si128(blk.add(Q6_K_SCALES) as *const __m128i));
        let q = a.qs.as_ptr().add(i * SUB * QK);
        let mut u = [_mm512_setzero_si512(); 4];
        for h in 0..2 {
            // ql's 64 bytes are quarters 0 and 1 (low nibbles) and 2 and 3 (high nibbles) of
            // this half, already in pair order. The high bits of quarter k are bits 2k..2k+2
            // of qh; shifting the upper copy of qh down by 2 lines quarter 1's and 3's bits up
            // with quarter 0's and 2's, so one shift-and-mask serves each pair.
            let ql = _mm512_loadu_si512(blk.add(64 * h) as *const __m512i);
            let qh = load_twice(blk.add(Q6_K_QH + 32 * h));
            let qh = _mm512_mask_srli_epi16::<2>(qh, HIGH_HALF, qh);
            let pairs = [
                _mm512_or_si512(
                    _mm512_and_si512(ql, low4),
                    _mm512_and_si512(_mm512_slli_epi16::<4>(qh), bits45),
                ),
                _mm512_or_si512(
                    _mm512_and_si512(_mm512_srli_epi16::<4>(ql), low4),
                    _mm512_and_si512(qh, bits45),
                ),
            ];
            for (p, &qw) in pairs.iter().enumerate() {
                let first = 4 * h + 2 * p;
                let qa = _mm512_loadu_si512(q.add(QK * first) as *const __m512i);
                // sum((q - 32) * a) as sum(q * a) - sum(32 * a); each i16 pair is at most
                // 2 * 63 * 128, so exact for any activation.
                let x = U::udot_diff(qw, bias, qa);
                let sc = _mm512_permutexvar_epi32(
                    _mm512_add_epi32(spread, _mm512_set1_epi32(2 * first as i32)),
                    scales,
                );
                u[2 * h + p] = _mm512_mullo_epi32(x, sc);
            }
        }
        let da = _mm256_loadu_ps(a.d.as_ptr().add(i * SUB));
        let dd = _mm256_mul_ps(_mm256_set1_ps(f16_at(blk.add(Q6_K_D))), da);
        acc = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(transpose_sum(&u)), acc);
    }
    hsum(acc)
}
