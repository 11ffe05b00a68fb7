//! AVX2 tiles of the K-quant kernels: one weight row against up to four activation rows.
//!
//! A prefill meets every weight row once per token; the single-row kernels ([`super::avx2`])
//! then decode the 6-bit scales and unpack the quants of each super-block once per token too.
//! Here a super-block is made ready once (quants as unsigned bytes, scales as i16 vectors)
//! and each token costs only its byte products, the transpose and the f32 FMAs.
//!
//! Results equal the single-row kernel's bit for bit: the integer sub-block sums are the same
//! exact integers (the scale goes into `madd` instead of a 32-bit multiply after the
//! transpose, which cannot overflow: a maddubs pair is at most 2 * 63 * 128 in magnitude, a
//! scale at most 128), and the f32 operations per (super-block, token) are the same ones in
//! the same order.

use super::avx2::{f16_at, hsum, transpose_sum};
use super::tile::check_tile;
use super::{
    q4_k_scales_mins, Q4_K_QS, Q4_K_SCALES, Q5_K_QH, Q5_K_QS, Q6_K_D, Q6_K_QH, Q6_K_SCALES, SUB,
};
use crate::dtype::{DType, QK};
use crate::kernels::blocks::Q8Blocks;
use std::arch::x86_64::*;

// Soundness: visible only inside `kernels`, where the AVX2 table (handed out only after avx2,
// fma and f16c were detected) and the AVX-512 tables (which check those too) use it.
// `check_tile` keeps the activation loads inside their slices; weight loads stay inside
// whole super-blocks of `w`.

pub(in crate::kernels) fn dot_k_tile(ty: DType, w: &[u8], acts: &[Q8Blocks<'_>], out: &mut [f32]) {
    let nsb = check_tile(ty, w, acts, out);
    unsafe {
        match ty {
            DType::Q4_K => by_len::<Q4K>(w, acts, out, nsb),
            DType::Q5_K => by_len::<Q5K>(w, acts, out, nsb),
            _ => by_len::<Q6K>(w, acts, out, nsb),
        }
    }
}

#[inline(always)]
unsafe fn by_len<K: Kind>(w: &[u8], acts: &[Q8Blocks<'_>], out: &mut [f32], nsb: usize) {
    match acts.len() {
        1 => tile::<K, 1>(w, acts, out, nsb),
        2 => tile::<K, 2>(w, acts, out, nsb),
        3 => tile::<K, 3>(w, acts, out, nsb),
        _ => tile::<K, 4>(w, acts, out, nsb),
    }
}

/// One super-block made ready for `maddubs`: sub-block j's 32 unsigned quants in `q[j]`, and
/// in `sc[j]` the i16 scales its pair sums are multiplied by in `madd`.
struct Ready {
    q: [__m256i; SUB],
    sc: [__m256i; SUB],
    /// The super-block's f16 scale.
    d: f32,
    /// `dmin * m[j]` per sub-block (Q4_K and Q5_K).
    dm: __m256,
}

trait Kind {
    const TYPE: DType;
    /// Quants are stored 32 too high (Q6_K): each token subtracts `32 * a` per pair.
    const BIAS: bool;
    /// Values carry a `-dmin * m` term, met by the activation sums.
    const MIN: bool;
    unsafe fn ready(blk: &[u8]) -> Ready;
}

struct Q4K;
struct Q5K;
struct Q6K;

/// The Q4_K header (Q5_K's too): scales as i16 broadcasts, `dmin * m` as the single-row
/// kernel forms it.
#[inline(always)]
unsafe fn q4_k_header(blk: &[u8], q: [__m256i; SUB]) -> Ready {
    let (sc, m) = q4_k_scales_mins(&blk[Q4_K_SCALES..Q4_K_QS]);
    let mins = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(
        m.as_ptr() as *const __m128i
    )));
    // Loops rather than `array::from_fn` (here and in Q6_K's): its closures do not inherit the
    // caller's target features, so LLVM may leave them and their intrinsics out of line.
    let mut sc16 = [_mm256_setzero_si256(); SUB];
    for (j, v) in sc16.iter_mut().enumerate() {
        *v = _mm256_set1_epi16(sc[j] as i16);
    }
    Ready {
        q,
        sc: sc16,
        d: f16_at(blk.as_ptr()),
        dm: _mm256_mul_ps(_mm256_set1_ps(f16_at(blk.as_ptr().add(2))), mins),
    }
}

impl Kind for Q4K {
    const TYPE: DType = DType::Q4_K;
    const BIAS: bool = false;
    const MIN: bool = true;
    #[inline(always)]
    unsafe fn ready(blk: &[u8]) -> Ready {
        let low4 = _mm256_set1_epi8(0x0F);
        let qs = blk.as_ptr().add(Q4_K_QS);
        let mut q = [_mm256_setzero_si256(); SUB];
        for c in 0..SUB / 2 {
            let b = _mm256_loadu_si256(qs.add(QK * c) as *const __m256i);
            // The 16-bit shift's stray bits are removed by the mask.
            q[2 * c] = _mm256_and_si256(b, low4);
            q[2 * c + 1] = _mm256_and_si256(_mm256_srli_epi16::<4>(b), low4);
        }
        q4_k_header(blk, q)
    }
}

impl Kind for Q5K {
    const TYPE: DType = DType::Q5_K;
    const BIAS: bool = false;
    const MIN: bool = true;
    #[inline(always)]
    unsafe fn ready(blk: &[u8]) -> Ready {
        let low4 = _mm256_set1_epi8(0x0F);
        let one = _mm256_set1_epi8(1);
        let qs = blk.as_ptr().add(Q5_K_QS);
        let qh = _mm256_loadu_si256(blk.as_ptr().add(Q5_K_QH) as *const __m256i);
        let mut q = [_mm256_setzero_si256(); SUB];
        for (j, qj) in q.iter_mut().enumerate() {
            let b = _mm256_loadu_si256(qs.add(QK * (j / 2)) as *const __m256i);
            let nib = if j % 2 == 0 {
                b
            } else {
                _mm256_srli_epi16::<4>(b)
            };
            // Bit j of each qh byte down to bit 0 and masked (the mask keeps each byte's own
            // bit whatever the 16-bit shift moved), then up to bit 4 of the same byte.
            let h = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(j as i32)), one);
            *qj = _mm256_or_si256(_mm256_and_si256(nib, low4), _mm256_slli_epi16::<4>(h));
        }
        q4_k_header(blk, q)
    }
}

impl Kind for Q6K {
    const TYPE: DType = DType::Q6_K;
    const BIAS: bool = true;
    const MIN: bool = false;
    #[inline(always)]
    unsafe fn ready(blk: &[u8]) -> Ready {
        let low4 = _mm256_set1_epi8(0x0F);
        let bits45 = _mm256_set1_epi8(0x30);
        let p = blk.as_ptr();
        let mut q = [_mm256_setzero_si256(); SUB];
        for h in 0..2 {
            let ql0 = _mm256_loadu_si256(p.add(64 * h) as *const __m256i);
            let ql1 = _mm256_loadu_si256(p.add(64 * h + 32) as *const __m256i);
            let qh = _mm256_loadu_si256(p.add(Q6_K_QH + 32 * h) as *const __m256i);
            // Quarter k's high bits (bits 2k..2k+2 of qh) moved to bits 4..6; the 0x30 mask
            // keeps only bits that stayed inside their byte under the 16-bit shifts.
            let lo = [
                _mm256_and_si256(ql0, low4),
                _mm256_and_si256(ql1, low4),
                _mm256_and_si256(_mm256_srli_epi16::<4>(ql0), low4),
                _mm256_and_si256(_mm256_srli_epi16::<4>(ql1), low4),
            ];
            let hi = [
                _mm256_slli_epi16::<4>(qh),
                _mm256_slli_epi16::<2>(qh),
                qh,
                _mm256_srli_epi16::<2>(qh),
            ];
            for k in 0..4 {
                q[4 * h + k] = _mm256_or_si256(lo[k], _mm256_and_si256(hi[k], bits45));
            }
        }
        // Scale 2j for the low 16 elements of sub-block j (the low 128-bit half of a maddubs
        // result), 2j + 1 for the high 16.
        let scales = _mm_loadu_si128(p.add(Q6_K_SCALES) as *const __m128i);
        let pick = _mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
        let mut sc = [_mm256_setzero_si256(); SUB];
        for (j, v) in sc.iter_mut().enumerate() {
            let idx = _mm_add_epi8(pick, _mm_set1_epi8(2 * j as i8));
            *v = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, idx));
        }
        Ready {
            q,
            sc,
            d: f16_at(p.add(Q6_K_D)),
            dm: _mm256_setzero_ps(),
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile<K: Kind, const N: usize>(
    w: &[u8],
    acts: &[Q8Blocks<'_>],
    out: &mut [f32],
    nsb: usize,
) {
    let bb = K::TYPE.block_bytes();
    let bias = _mm256_set1_epi8(32);
    let qs: [*const i8; N] = std::array::from_fn(|t| acts[t].qs.as_ptr());
    let ds: [*const f32; N] = std::array::from_fn(|t| acts[t].d.as_ptr());
    let ss: [*const f32; N] = std::array::from_fn(|t| acts[t].s.as_ptr());
    let mut acc = [_mm256_setzero_ps(); N];
    let mut macc = [_mm256_setzero_ps(); N];
    for i in 0..nsb {
        let r = K::ready(&w[i * bb..(i + 1) * bb]);
        let d = _mm256_set1_ps(r.d);
        for t in 0..N {
            let q = qs[t].add(i * SUB * QK);
            let mut v = [_mm256_setzero_si256(); SUB];
            for (j, vj) in v.iter_mut().enumerate() {
                let qa = _mm256_loadu_si256(q.add(QK * j) as *const __m256i);
                // Unsigned quants by signed activations; a pair is at most 2 * 63 * 128, and
                // Q6_K's difference of two such sums fits i16 as well, for any activation.
                let mut p = _mm256_maddubs_epi16(r.q[j], qa);
                if K::BIAS {
                    p = _mm256_sub_epi16(p, _mm256_maddubs_epi16(bias, qa));
                }
                *vj = _mm256_madd_epi16(p, r.sc[j]);
            }
            let dd = _mm256_mul_ps(d, _mm256_loadu_ps(ds[t].add(i * SUB)));
            acc[t] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(transpose_sum(&v)), acc[t]);
            if K::MIN {
                let s = _mm256_loadu_ps(ss[t].add(i * SUB));
                macc[t] = _mm256_fmadd_ps(r.dm, s, macc[t]);
            }
        }
    }
    for t in 0..N {
        out[t] = if K::MIN {
            hsum(acc[t]) - hsum(macc[t])
        } else {
            hsum(acc[t])
        };
    }
}
