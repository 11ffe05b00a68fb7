//! AVX-512 tiles of the K-quant kernels, with a VNNI variant: one weight row against up to
//! four activation rows, each super-block made ready (quants unpacked, scales decoded) once
//! per tile rather than once per token. See [`super::avx2_tile`] for the idea.
//!
//! A 512-bit register holds two sub-blocks, as in the single-row kernels
//! ([`super::avx512`]), and results equal theirs bit for bit: the same exact integer
//! sub-block sums, and the same f32 operations per (super-block, token). Without VNNI the
//! sub-block scales ride in `madd`'s multiplier, which the single-row kernel spends on ones;
//! `dpbusd` has no such slot, so the VNNI variant multiplies the eight transposed sums by
//! their scales instead, once per token. Q6_K's sixteen scales differ within a sub-block, so
//! it takes the `maddubs`/`madd` route in both variants: with `dpbusd` it would need a 32-bit
//! multiply per register instead.

use super::avx2::{f16_at, hsum};
use super::avx512::{load_twice, transpose_sum, HIGH_HALF};
use super::tile::check_tile;
use super::{
    q4_k_scales_mins, Q4_K_QS, Q4_K_SCALES, Q5_K_QH, Q5_K_QS, Q6_K_D, Q6_K_QH, Q6_K_SCALES, SUB,
};
use crate::dtype::{DType, QK};
use crate::kernels::blocks::Q8Blocks;
use std::arch::x86_64::*;

// Soundness: visible only inside `kernels`, where the AVX-512 tables use these, the plain one
// handed out only after avx512f/bw/vl, avx2, fma and f16c were detected, the VNNI one only
// with avx512vnni as well. `check_tile` keeps activation loads inside their slices; weight
// loads stay inside whole super-blocks of `w`.

pub(in crate::kernels) fn dot_k_tile(ty: DType, w: &[u8], acts: &[Q8Blocks<'_>], out: &mut [f32]) {
    let nsb = check_tile(ty, w, acts, out);
    unsafe { Maddubs::tile(ty, w, acts, out, nsb) }
}

pub(in crate::kernels) fn dot_k_tile_vnni(
    ty: DType,
    w: &[u8],
    acts: &[Q8Blocks<'_>],
    out: &mut [f32],
) {
    let nsb = check_tile(ty, w, acts, out);
    unsafe { Vnni::tile(ty, w, acts, out, nsb) }
}

/// How a Q4_K or Q5_K register of quants meets a register of activations.
trait Udot {
    /// The scales are in the result (`sc16` used); otherwise the caller multiplies them in.
    const SCALED: bool;
    /// i32 lane k: the sum of products 4k..4k+4 (times the i16 scale of its lanes if SCALED).
    /// Exact: every adjacent pair's sum is at most 2 * 31 * 128.
    unsafe fn udot(u: __m512i, s: __m512i, sc16: __m512i) -> __m512i;
    /// The tile for any K-quant type and 1 to 4 rows, compiled with the matching features.
    unsafe fn tile(ty: DType, w: &[u8], acts: &[Q8Blocks<'_>], out: &mut [f32], nsb: usize);
}

struct Maddubs;
struct Vnni;

impl Udot for Maddubs {
    const SCALED: bool = true;
    #[inline(always)]
    unsafe fn udot(u: __m512i, s: __m512i, sc16: __m512i) -> __m512i {
        _mm512_madd_epi16(_mm512_maddubs_epi16(u, s), sc16)
    }
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    unsafe fn tile(ty: DType, w: &[u8], acts: &[Q8Blocks<'_>], out: &mut [f32], nsb: usize) {
        by_type::<Self>(ty, w, acts, out, nsb)
    }
}

impl Udot for Vnni {
    const SCALED: bool = false;
    #[inline(always)]
    unsafe fn udot(u: __m512i, s: __m512i, _sc16: __m512i) -> __m512i {
        _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, s)
    }
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    unsafe fn tile(ty: DType, w: &[u8], acts: &[Q8Blocks<'_>], out: &mut [f32], nsb: usize) {
        by_type::<Self>(ty, w, acts, out, nsb)
    }
}

#[inline(always)]
unsafe fn by_type<U: Udot>(
    ty: DType,
    w: &[u8],
    acts: &[Q8Blocks<'_>],
    out: &mut [f32],
    nsb: usize,
) {
    match ty {
        DType::Q4_K => by_len::<U, Q4K>(w, acts, out, nsb),
        DType::Q5_K => by_len::<U, Q5K>(w, acts, out, nsb),
        _ => by_len::<U, Q6K>(w, acts, out, nsb),
    }
}

#[inline(always)]
unsafe fn by_len<U: Udot, K: Kind>(w: &[u8], acts: &[Q8Blocks<'_>], out: &mut [f32], nsb: usize) {
    match acts.len() {
        1 => tile::<U, K, 1>(w, acts, out, nsb),
        2 => tile::<U, K, 2>(w, acts, out, nsb),
        3 => tile::<U, K, 3>(w, acts, out, nsb),
        _ => tile::<U, K, 4>(w, acts, out, nsb),
    }
}

/// One super-block made ready: `u[c]` holds sub-block 2c's quants in its lower half and
/// 2c + 1's in its upper (unsigned bytes), `sc16[c]` the i16 scale of each lane of their
/// `maddubs` result, `sc32` the eight sub-block scales as i32 (Q4_K and Q5_K).
struct Ready {
    u: [__m512i; 4],
    sc16: [__m512i; 4],
    sc32: __m256i,
    /// The super-block's f16 scale.
    d: f32,
    /// `dmin * m[j]` per sub-block (Q4_K and Q5_K).
    dm: __m256,
}

trait Kind {
    const TYPE: DType;
    /// Q6_K: quants stored 32 too high, and one scale per 16 elements.
    const Q6: bool;
    unsafe fn ready(blk: &[u8]) -> Ready;
}

struct Q4K;
struct Q5K;
struct Q6K;

/// Low nibbles (sub-block 2c) in the lower half, high nibbles (2c + 1) in the upper, of the
/// 32 bytes at `p`; the mask removes the 16-bit shift's stray bits.
#[inline(always)]
unsafe fn nibble_pair(p: *const u8) -> __m512i {
    let b = load_twice(p);
    _mm512_and_si512(
        _mm512_mask_srli_epi16::<4>(b, HIGH_HALF, b),
        _mm512_set1_epi8(0x0F),
    )
}

/// The Q4_K header (Q5_K's too) around the quants `u`.
#[inline(always)]
unsafe fn q4_k_header(blk: &[u8], u: [__m512i; 4]) -> Ready {
    let (sc, m) = q4_k_scales_mins(&blk[Q4_K_SCALES..Q4_K_QS]);
    let mins = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(
        m.as_ptr() as *const __m128i
    )));
    // Loops rather than `array::from_fn` here and below: its closures do not inherit the
    // caller's target features, so LLVM left them (and every intrinsic in them) out of line,
    // a third of a Gemma 3 prefill in calls.
    let mut sc16 = [_mm512_setzero_si512(); 4];
    for (c, v) in sc16.iter_mut().enumerate() {
        *v = _mm512_mask_blend_epi16(
            HIGH_HALF,
            _mm512_set1_epi16(sc[2 * c] as i16),
            _mm512_set1_epi16(sc[2 * c + 1] as i16),
        );
    }
    Ready {
        u,
        sc16,
        sc32: _mm256_cvtepu8_epi32(_mm_loadl_epi64(sc.as_ptr() as *const __m128i)),
        d: f16_at(blk.as_ptr()),
        dm: _mm256_mul_ps(_mm256_set1_ps(f16_at(blk.as_ptr().add(2))), mins),
    }
}

impl Kind for Q4K {
    const TYPE: DType = DType::Q4_K;
    const Q6: bool = false;
    #[inline(always)]
    unsafe fn ready(blk: &[u8]) -> Ready {
        let qs = blk.as_ptr().add(Q4_K_QS);
        let mut u = [_mm512_setzero_si512(); 4];
        for (c, v) in u.iter_mut().enumerate() {
            *v = nibble_pair(qs.add(QK * c));
        }
        q4_k_header(blk, u)
    }
}

impl Kind for Q5K {
    const TYPE: DType = DType::Q5_K;
    const Q6: bool = false;
    #[inline(always)]
    unsafe fn ready(blk: &[u8]) -> Ready {
        let qs = blk.as_ptr().add(Q5_K_QS);
        // Sub-block j's fifth bits are bit j of qh; the upper copy is shifted one further, so
        // a shift by 2c brings sub-block 2c's bits to bit 0 of the lower half and 2c + 1's to
        // bit 0 of the upper, and a shift left by 4 then puts each at bit 4 of its own byte.
        let qh = load_twice(blk.as_ptr().add(Q5_K_QH));
        let qh = _mm512_mask_srli_epi16::<1>(qh, HIGH_HALF, qh);
        let bit4 = _mm512_set1_epi8(0x10);
        let mut u = [_mm512_setzero_si512(); 4];
        for (c, v) in u.iter_mut().enumerate() {
            let h = _mm512_slli_epi16::<4>(_mm512_srl_epi16(qh, _mm_cvtsi32_si128(2 * c as i32)));
            // nib | (h & 0x10): ternary-logic table 0xF8.
            *v = _mm512_ternarylogic_epi32::<0xF8>(nibble_pair(qs.add(QK * c)), h, bit4);
        }
        q4_k_header(blk, u)
    }
}

impl Kind for Q6K {
    const TYPE: DType = DType::Q6_K;
    const Q6: bool = true;
    #[inline(always)]
    unsafe fn ready(blk: &[u8]) -> Ready {
        let p = blk.as_ptr();
        let low4 = _mm512_set1_epi8(0x0F);
        let bits45 = _mm512_set1_epi8(0x30);
        let mut u = [_mm512_setzero_si512(); 4];
        for h in 0..2 {
            // ql's 64 bytes are quarters 0 and 1 (low nibbles) and 2 and 3 (high nibbles) of
            // this half; shifting the upper copy of qh down by 2 lines quarter 1's and 3's
            // high bits up with quarter 0's and 2's.
            let ql = _mm512_loadu_si512(p.add(64 * h) as *const __m512i);
            let qh = load_twice(p.add(Q6_K_QH + 32 * h));
            let qh = _mm512_mask_srli_epi16::<2>(qh, HIGH_HALF, qh);
            u[2 * h] = _mm512_or_si512(
                _mm512_and_si512(ql, low4),
                _mm512_and_si512(_mm512_slli_epi16::<4>(qh), bits45),
            );
            u[2 * h + 1] = _mm512_or_si512(
                _mm512_and_si512(_mm512_srli_epi16::<4>(ql), low4),
                _mm512_and_si512(qh, bits45),
            );
        }
        // Register c spans scale groups 4c..4c+4, eight i16 lanes each.
        let scales = _mm_loadu_si128(p.add(Q6_K_SCALES) as *const __m128i);
        let pick = _mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
        let mut sc16 = [_mm512_setzero_si512(); 4];
        for (c, v) in sc16.iter_mut().enumerate() {
            let lo = _mm_shuffle_epi8(scales, _mm_add_epi8(pick, _mm_set1_epi8(4 * c as i8)));
            let hi = _mm_shuffle_epi8(scales, _mm_add_epi8(pick, _mm_set1_epi8(4 * c as i8 + 2)));
            *v = _mm512_cvtepi8_epi16(_mm256_inserti128_si256::<1>(_mm256_castsi128_si256(lo), hi));
        }
        Ready {
            u,
            sc16,
            sc32: _mm256_setzero_si256(),
            d: f16_at(p.add(Q6_K_D)),
            dm: _mm256_setzero_ps(),
        }
    }
}

#[inline(always)]
unsafe fn tile<U: Udot, K: Kind, const N: usize>(
    w: &[u8],
    acts: &[Q8Blocks<'_>],
    out: &mut [f32],
    nsb: usize,
) {
    let bb = K::TYPE.block_bytes();
    let bias = _mm512_set1_epi8(32);
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
            let mut x = [_mm512_setzero_si512(); 4];
            for (c, xc) in x.iter_mut().enumerate() {
                let qa = _mm512_loadu_si512(q.add(2 * QK * c) as *const __m512i);
                *xc = if K::Q6 {
                    // sum((q - 32) * a) as sum(q * a) - sum(32 * a): each i16 pair at most
                    // 2 * 63 * 128, and so is the difference, for any activation.
                    let p = _mm512_sub_epi16(
                        _mm512_maddubs_epi16(r.u[c], qa),
                        _mm512_maddubs_epi16(bias, qa),
                    );
                    _mm512_madd_epi16(p, r.sc16[c])
                } else {
                    U::udot(r.u[c], qa, r.sc16[c])
                };
            }
            let mut sums = transpose_sum(&x);
            if !K::Q6 && !U::SCALED {
                sums = _mm256_mullo_epi32(sums, r.sc32);
            }
            let dd = _mm256_mul_ps(d, _mm256_loadu_ps(ds[t].add(i * SUB)));
            acc[t] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(sums), acc[t]);
            if !K::Q6 {
                let s = _mm256_loadu_ps(ss[t].add(i * SUB));
                macc[t] = _mm256_fmadd_ps(r.dm, s, macc[t]);
            }
        }
    }
    for t in 0..N {
        out[t] = if K::Q6 {
            hsum(acc[t])
        } else {
            hsum(acc[t]) - hsum(macc[t])
        };
    }
}
