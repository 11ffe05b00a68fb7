//! K-quant kernels for AVX2 with FMA and F16C, the feature set of the AVX2 table.
//!
//! Each super-block yields eight 8-lane integer vectors, one per 32-element sub-block, which
//! are transposed and summed into one vector holding the eight sub-block sums. That vector
//! then meets the eight activation scales with a single FMA, so the f32 work per super-block
//! is a handful of instructions rather than eight scalar multiply-adds.

use super::scalar::check_len;
use super::{
    q4_k_scales_mins, Q4_K_QS, Q4_K_SCALES, Q5_K_QH, Q5_K_QS, Q6_K_D, Q6_K_QH, Q6_K_SCALES, SUB,
};
use crate::dtype::{DType, QK};
use crate::kernels::blocks::Q8Blocks;
use std::arch::x86_64::*;

// Soundness: these entry points are visible only inside `kernels`, where the AVX2 table
// is their only user, and that table is handed out only after the CPU has reported avx2, fma
// and f16c. `check_len` is what keeps the raw-pointer loads inside the activation slices;
// the weight loads stay inside `w` because only whole super-blocks are visited.

pub(in crate::kernels) fn dot_q4_k(w: &[u8], a: Q8Blocks<'_>) -> f32 {
    let nsb = check_len(DType::Q4_K, w, &a);
    unsafe { dot_q4_k_avx2(w, a, nsb) }
}

pub(in crate::kernels) fn dot_q5_k(w: &[u8], a: Q8Blocks<'_>) -> f32 {
    let nsb = check_len(DType::Q5_K, w, &a);
    unsafe { dot_q5_k_avx2(w, a, nsb) }
}

pub(in crate::kernels) fn dot_q6_k(w: &[u8], a: Q8Blocks<'_>) -> f32 {
    let nsb = check_len(DType::Q6_K, w, &a);
    unsafe { dot_q6_k_avx2(w, a, nsb) }
}

/// The f16 at `p` as f32, converted by F16C rather than by `half`, whose run-time feature
/// check would be paid once per super-block.
#[inline(always)]
pub(super) unsafe fn f16_at(p: *const u8) -> f32 {
    let bits = u16::from_le_bytes(std::ptr::read_unaligned(p as *const [u8; 2]));
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
}

#[inline(always)]
pub(super) unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// Lane j of the result is the sum of the eight lanes of `v[j]`. Integer adds, so exact.
#[inline(always)]
pub(super) unsafe fn transpose_sum(v: &[__m256i; SUB]) -> __m256i {
    // hadd works within 128-bit halves, so after two rounds the low half holds each vector's
    // low-half total and the high half its high-half total; the last step adds the halves.
    let h01 = _mm256_hadd_epi32(v[0], v[1]);
    let h23 = _mm256_hadd_epi32(v[2], v[3]);
    let h45 = _mm256_hadd_epi32(v[4], v[5]);
    let h67 = _mm256_hadd_epi32(v[6], v[7]);
    let h0123 = _mm256_hadd_epi32(h01, h23);
    let h4567 = _mm256_hadd_epi32(h45, h67);
    _mm256_add_epi32(
        _mm256_permute2x128_si256::<0x20>(h0123, h4567),
        _mm256_permute2x128_si256::<0x31>(h0123, h4567),
    )
}

/// Adds super-block `i` of a Q4_K row to the accumulators, given its eight sub-block integer
/// sums (`isum`, one per lane, unscaled): the 6-bit scales go in after the reduction (one
/// multiply instead of eight), and the minimums meet the activation sums in `macc`. Shared
/// with Q5_K, whose header is Q4_K's, and with the AVX-512 kernels, which differ only in how
/// they form `isum`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn q4_k_accumulate(
    isum: __m256i,
    sc: &[u8; 8],
    m: &[u8; 8],
    blk: &[u8],
    a: &Q8Blocks<'_>,
    i: usize,
    acc: &mut __m256,
    macc: &mut __m256,
) {
    let scales = _mm256_cvtepu8_epi32(_mm_loadl_epi64(sc.as_ptr() as *const __m128i));
    let x = _mm256_mullo_epi32(isum, scales);
    let da = _mm256_loadu_ps(a.d.as_ptr().add(i * SUB));
    let dd = _mm256_mul_ps(_mm256_set1_ps(f16_at(blk.as_ptr())), da);
    *acc = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(x), *acc);
    let mins = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(
        m.as_ptr() as *const __m128i
    )));
    let dm = _mm256_mul_ps(_mm256_set1_ps(f16_at(blk.as_ptr().add(2))), mins);
    let s = _mm256_loadu_ps(a.s.as_ptr().add(i * SUB));
    *macc = _mm256_fmadd_ps(dm, s, *macc);
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q4_k_avx2(w: &[u8], a: Q8Blocks<'_>, nsb: usize) -> f32 {
    let bb = DType::Q4_K.block_bytes();
    let low4 = _mm256_set1_epi8(0x0F);
    let ones = _mm256_set1_epi16(1);
    let mut acc = _mm256_setzero_ps();
    let mut macc = _mm256_setzero_ps();
    for i in 0..nsb {
        let blk = &w[i * bb..(i + 1) * bb];
        let (sc, m) = q4_k_scales_mins(&blk[Q4_K_SCALES..Q4_K_QS]);
        let qs = blk.as_ptr().add(Q4_K_QS);
        let q = a.qs.as_ptr().add(i * SUB * QK);
        let mut v = [_mm256_setzero_si256(); SUB];
        for c in 0..SUB / 2 {
            let b = _mm256_loadu_si256(qs.add(QK * c) as *const __m256i);
            // A 16-bit shift is fine: the mask drops the bits that cross between bytes.
            let lo = _mm256_and_si256(b, low4);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(b), low4);
            let qa0 = _mm256_loadu_si256(q.add(2 * QK * c) as *const __m256i);
            let qa1 = _mm256_loadu_si256(q.add(2 * QK * c + QK) as *const __m256i);
            // Nibbles are the unsigned operand as they stand; each i16 pair is at most
            // 2 * 15 * 128, so maddubs cannot saturate whatever the activations.
            v[2 * c] = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, qa0), ones);
            v[2 * c + 1] = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, qa1), ones);
        }
        q4_k_accumulate(transpose_sum(&v), &sc, &m, blk, &a, i, &mut acc, &mut macc);
    }
    hsum(acc) - hsum(macc)
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q5_k_avx2(w: &[u8], a: Q8Blocks<'_>, nsb: usize) -> f32 {
    let bb = DType::Q5_K.block_bytes();
    let low4 = _mm256_set1_epi8(0x0F);
    let one = _mm256_set1_epi8(1);
    let ones = _mm256_set1_epi16(1);
    let mut acc = _mm256_setzero_ps();
    let mut macc = _mm256_setzero_ps();
    for i in 0..nsb {
        let blk = &w[i * bb..(i + 1) * bb];
        let (sc, m) = q4_k_scales_mins(&blk[Q4_K_SCALES..Q4_K_QS]);
        let qs = blk.as_ptr().add(Q5_K_QS);
        let qh = _mm256_loadu_si256(blk.as_ptr().add(Q5_K_QH) as *const __m256i);
        let q = a.qs.as_ptr().add(i * SUB * QK);
        let mut v = [_mm256_setzero_si256(); SUB];
        for c in 0..SUB / 2 {
            let b = _mm256_loadu_si256(qs.add(QK * c) as *const __m256i);
            // Sub-block j's fifth bits are bit j of each qh byte: shifted down to bit 0 and
            // masked (a 16-bit shift is fine, the mask keeps each byte's own bit), then up to
            // bit 4, where the value 0 or 1 per byte cannot cross into the next byte.
            let fifth = |j: i32| {
                let h = _mm256_srl_epi16(qh, _mm_cvtsi32_si128(j));
                _mm256_slli_epi16::<4>(_mm256_and_si256(h, one))
            };
            let lo = _mm256_or_si256(_mm256_and_si256(b, low4), fifth(2 * c as i32));
            let hi = _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16::<4>(b), low4),
                fifth(2 * c as i32 + 1),
            );
            let qa0 = _mm256_loadu_si256(q.add(2 * QK * c) as *const __m256i);
            let qa1 = _mm256_loadu_si256(q.add(2 * QK * c + QK) as *const __m256i);
            // Values are at most 31, so each i16 pair is at most 2 * 31 * 128: no saturation.
            v[2 * c] = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, qa0), ones);
            v[2 * c + 1] = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, qa1), ones);
        }
        q4_k_accumulate(transpose_sum(&v), &sc, &m, blk, &a, i, &mut acc, &mut macc);
    }
    hsum(acc) - hsum(macc)
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q6_k_avx2(w: &[u8], a: Q8Blocks<'_>, nsb: usize) -> f32 {
    let bb = DType::Q6_K.block_bytes();
    let low4 = _mm256_set1_epi8(0x0F);
    let bits45 = _mm256_set1_epi8(0x30);
    let bias = _mm256_set1_epi8(32);
    // Byte indices picking scale 2j for the low 16 elements of sub-block j and 2j + 1 for the
    // high 16, which are the two 128-bit halves of a maddubs result.
    let pick = _mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    let mut acc = _mm256_setzero_ps();
    for i in 0..nsb {
        let blk = w.as_ptr().add(i * bb);
        let scales = _mm_loadu_si128(blk.add(Q6_K_SCALES) as *const __m128i);
        let q = a.qs.as_ptr().add(i * SUB * QK);
        let mut v = [_mm256_setzero_si256(); SUB];
        for h in 0..2 {
            let ql0 = _mm256_loadu_si256(blk.add(64 * h) as *const __m256i);
            let ql1 = _mm256_loadu_si256(blk.add(64 * h + 32) as *const __m256i);
            let qh = _mm256_loadu_si256(blk.add(Q6_K_QH + 32 * h) as *const __m256i);
            // Quarter k's two high bits are bits 2k..2k+2 of qh; each is shifted to bits 4..6
            // of its byte. 16-bit shifts are fine: the 0x30 mask keeps only bits that stayed
            // inside their byte.
            let quarters = [
                _mm256_or_si256(
                    _mm256_and_si256(ql0, low4),
                    _mm256_and_si256(_mm256_slli_epi16::<4>(qh), bits45),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(ql1, low4),
                    _mm256_and_si256(_mm256_slli_epi16::<2>(qh), bits45),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16::<4>(ql0), low4),
                    _mm256_and_si256(qh, bits45),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16::<4>(ql1), low4),
                    _mm256_and_si256(_mm256_srli_epi16::<2>(qh), bits45),
                ),
            ];
            for (k, &qw) in quarters.iter().enumerate() {
                let j = 4 * h + k;
                let qa = _mm256_loadu_si256(q.add(QK * j) as *const __m256i);
                // sum((q - 32) * a) as sum(q * a) - sum(32 * a): both unsigned-by-signed as
                // maddubs wants, exact for any activation (each i16 pair is at most
                // 2 * 63 * 128), and the difference fits i16 as well.
                let p =
                    _mm256_sub_epi16(_mm256_maddubs_epi16(qw, qa), _mm256_maddubs_epi16(bias, qa));
                let idx = _mm_add_epi8(pick, _mm_set1_epi8(2 * j as i8));
                let sc = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, idx));
                // Each i32 lane is two such pairs times a scale of at most 128: no overflow.
                v[j] = _mm256_madd_epi16(p, sc);
            }
        }
        let da = _mm256_loadu_ps(a.d.as_ptr().add(i * SUB));
        let dd = _mm256_mul_ps(_mm256_set1_ps(f16_at(blk.add(Q6_K_D))), da);
        acc = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(transpose_sum(&v)), acc);
    }
    hsum(acc)
}
