//! x86-64 kernels for AVX-512 (F, BW and VL), with a VNNI variant of the quantized kernels.
//!
//! A 512-bit register holds two 32-element blocks, so the quantized kernels walk the row a
//! pair of blocks at a time; an odd last block is run through the same code with the second
//! half of the activations zeroed and its scale forced to 0. Both variants report
//! [`Isa::Avx512`]: VNNI only changes how the integer products are summed, not the results.

use super::{Isa, Kernels};
use crate::dtype::{DType, QK};
use crate::kernels::blocks::Q8Blocks;
use half::f16;
use std::arch::x86_64::*;
use std::ptr;

static KERNELS: Kernels = Kernels {
    isa: Isa::Avx512,
    name: "avx512",
    dot_f32,
    dot_f16,
    dot_q8_0: dot_q8_0::<Maddubs>,
    dot_q4_0: dot_q4_0::<Maddubs>,
    dot_q4_1: dot_q4_1::<Maddubs>,
    dot_q5_0: dot_q5_0::<Maddubs>,
    dot_q5_1: dot_q5_1::<Maddubs>,
    dot_q4_k: super::kquants::avx512::dot_q4_k,
    dot_q5_k: super::kquants::avx512::dot_q5_k,
    dot_q6_k: super::kquants::avx512::dot_q6_k,
    axpy,
    attend: super::attention_avx512::attend,
    packed: Some(&super::avx512_packed::PACKED),
    dot_k_tile: super::kquants::avx512_tile::dot_k_tile,
};

static KERNELS_VNNI: Kernels = Kernels {
    isa: Isa::Avx512,
    name: "avx512+vnni",
    dot_f32,
    dot_f16,
    dot_q8_0: dot_q8_0::<Vnni>,
    dot_q4_0: dot_q4_0::<Vnni>,
    dot_q4_1: dot_q4_1::<Vnni>,
    dot_q5_0: dot_q5_0::<Vnni>,
    dot_q5_1: dot_q5_1::<Vnni>,
    dot_q4_k: super::kquants::avx512::dot_q4_k_vnni,
    dot_q5_k: super::kquants::avx512::dot_q5_k_vnni,
    dot_q6_k: super::kquants::avx512::dot_q6_k_vnni,
    axpy,
    attend: super::attention_avx512::attend,
    packed: Some(&super::avx512_packed::PACKED_VNNI),
    dot_k_tile: super::kquants::avx512_tile::dot_k_tile_vnni,
};

fn has_avx512() -> bool {
    // AVX-512 CPUs all have AVX2, FMA and F16C too, but the functions below enable them (the
    // 128/256-bit helpers use them), so they are checked rather than assumed.
    is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
}

pub(super) fn kernels() -> Option<&'static Kernels> {
    if !has_avx512() {
        None
    } else if is_x86_feature_detected!("avx512vnni") {
        Some(&KERNELS_VNNI)
    } else {
        Some(&KERNELS)
    }
}

/// Both tables, whatever `kernels()` would pick, so tests on a VNNI machine still cover the
/// plain one. Empty without AVX-512 F/BW/VL.
#[cfg(test)]
fn all_tables() -> Vec<(&'static str, &'static Kernels)> {
    let mut out = Vec::new();
    if has_avx512() {
        out.push(("avx512", &KERNELS));
        if is_x86_feature_detected!("avx512vnni") {
            out.push(("avx512+vnni", &KERNELS_VNNI));
        }
    }
    out
}

// Soundness: the wrappers below are private and only reachable through the two tables, which
// are handed out only after `has_avx512()` (and, for the VNNI table, avx512vnni) was detected,
// so the `target_feature` functions they call never run on a CPU without those features. The
// length checks keep the raw-pointer loads inside the slices.

fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    assert_eq!(x.len(), y.len(), "axpy: lengths differ");
    unsafe { axpy_avx512(a, x, y) }
}

/// The scalar loop compiled with this table's features, so LLVM vectorises it at full width
/// (the rest of the crate is built for the baseline ISA).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
unsafe fn axpy_avx512(a: f32, x: &[f32], y: &mut [f32]) {
    for (o, &v) in y.iter_mut().zip(x) {
        *o += a * v;
    }
}

fn dot_f32(w: &[f32], x: &[f32]) -> f32 {
    assert_eq!(w.len(), x.len(), "dot_f32: row lengths differ");
    unsafe { dot_f32_avx512(w, x) }
}

fn dot_f16(w: &[f16], x: &[f32]) -> f32 {
    assert_eq!(w.len(), x.len(), "dot_f16: row lengths differ");
    unsafe { dot_f16_avx512(w, x) }
}

fn dot_q8_0<U: Udot>(w: &[u8], a: Q8Blocks<'_>) -> f32 {
    unsafe { U::dot_q8_0(w, a) }
}

fn dot_q4_0<U: Udot>(w: &[u8], a: Q8Blocks<'_>) -> f32 {
    unsafe { U::dot_q4_0(w, a) }
}

fn dot_q4_1<U: Udot>(w: &[u8], a: Q8Blocks<'_>) -> f32 {
    unsafe { U::dot_q4_1(w, a) }
}

fn dot_q5_0<U: Udot>(w: &[u8], a: Q8Blocks<'_>) -> f32 {
    unsafe { U::dot_q5_0(w, a) }
}

fn dot_q5_1<U: Udot>(w: &[u8], a: Q8Blocks<'_>) -> f32 {
    unsafe { U::dot_q5_1(w, a) }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
#[inline]
unsafe fn dot_f32_avx512(w: &[f32], x: &[f32]) -> f32 {
    let n = w.len();
    let (wp, xp) = (w.as_ptr(), x.as_ptr());
    let mut acc = [_mm512_setzero_ps(); 4];
    let mut i = 0;
    while i + 64 <= n {
        for (k, a) in acc.iter_mut().enumerate() {
            let j = i + 16 * k;
            *a = _mm512_fmadd_ps(_mm512_loadu_ps(wp.add(j)), _mm512_loadu_ps(xp.add(j)), *a);
        }
        i += 64;
    }
    while i + 16 <= n {
        acc[0] = _mm512_fmadd_ps(
            _mm512_loadu_ps(wp.add(i)),
            _mm512_loadu_ps(xp.add(i)),
            acc[0],
        );
        i += 16;
    }
    if i < n {
        // Masked-off lanes are not read, so the tail load cannot run past the slice.
        let k: __mmask16 = (1u16 << (n - i)) - 1;
        let wv = _mm512_maskz_loadu_ps(k, wp.add(i));
        acc[1] = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(k, xp.add(i)), acc[1]);
    }
    _mm512_reduce_add_ps(_mm512_add_ps(
        _mm512_add_ps(acc[0], acc[1]),
        _mm512_add_ps(acc[2], acc[3]),
    ))
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
unsafe fn dot_f16_avx512(w: &[f16], x: &[f32]) -> f32 {
    let n = w.len();
    // `f16` is a transparent wrapper around its bits, so the row can be read as 16-bit ints.
    let (wp, xp) = (w.as_ptr() as *const i16, x.as_ptr());
    let load_w = |j: usize| _mm512_cvtph_ps(_mm256_loadu_si256(wp.add(j) as *const __m256i));
    let mut acc = [_mm512_setzero_ps(); 4];
    let mut i = 0;
    while i + 64 <= n {
        for (k, a) in acc.iter_mut().enumerate() {
            let j = i + 16 * k;
            *a = _mm512_fmadd_ps(load_w(j), _mm512_loadu_ps(xp.add(j)), *a);
        }
        i += 64;
    }
    while i + 16 <= n {
        acc[0] = _mm512_fmadd_ps(load_w(i), _mm512_loadu_ps(xp.add(i)), acc[0]);
        i += 16;
    }
    if i < n {
        let k: __mmask16 = (1u16 << (n - i)) - 1;
        let wv = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, wp.add(i)));
        acc[1] = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(k, xp.add(i)), acc[1]);
    }
    _mm512_reduce_add_ps(_mm512_add_ps(
        _mm512_add_ps(acc[0], acc[1]),
        _mm512_add_ps(acc[2], acc[3]),
    ))
}

/// How unsigned-by-signed byte products are summed into i32 lanes: the part that differs
/// between plain AVX-512BW and VNNI. Each implementor also provides the `target_feature`
/// entry points, so the shared code below is compiled once per feature set.
trait Udot {
    /// Lane k = sum of u[4k+j] * s[4k+j] for j in 0..4 (u unsigned, s signed). Exact as long
    /// as every adjacent pair's sum fits in i16, which all callers below guarantee.
    unsafe fn udot(u: __m512i, s: __m512i) -> __m512i;
    /// `udot(u1, s) - udot(u2, s)`.
    unsafe fn udot_diff(u1: __m512i, u2: __m512i, s: __m512i) -> __m512i;
    unsafe fn dot_q8_0(w: &[u8], a: Q8Blocks<'_>) -> f32;
    unsafe fn dot_q4_0(w: &[u8], a: Q8Blocks<'_>) -> f32;
    unsafe fn dot_q4_1(w: &[u8], a: Q8Blocks<'_>) -> f32;
    unsafe fn dot_q5_0(w: &[u8], a: Q8Blocks<'_>) -> f32;
    unsafe fn dot_q5_1(w: &[u8], a: Q8Blocks<'_>) -> f32;
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
    unsafe fn dot_q8_0(w: &[u8], a: Q8Blocks<'_>) -> f32 {
        dot_blocks::<Q8_0, Self>(w, a)
    }
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    unsafe fn dot_q4_0(w: &[u8], a: Q8Blocks<'_>) -> f32 {
        dot_blocks::<Q4_0, Self>(w, a)
    }
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    unsafe fn dot_q4_1(w: &[u8], a: Q8Blocks<'_>) -> f32 {
        dot_blocks::<Q4_1, Self>(w, a)
    }
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    unsafe fn dot_q5_0(w: &[u8], a: Q8Blocks<'_>) -> f32 {
        dot_blocks::<Q5_0, Self>(w, a)
    }
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    unsafe fn dot_q5_1(w: &[u8], a: Q8Blocks<'_>) -> f32 {
        dot_blocks::<Q5_1, Self>(w, a)
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
    unsafe fn dot_q8_0(w: &[u8], a: Q8Blocks<'_>) -> f32 {
        dot_blocks::<Q8_0, Self>(w, a)
    }
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    unsafe fn dot_q4_0(w: &[u8], a: Q8Blocks<'_>) -> f32 {
        dot_blocks::<Q4_0, Self>(w, a)
    }
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    unsafe fn dot_q4_1(w: &[u8], a: Q8Blocks<'_>) -> f32 {
        dot_blocks::<Q4_1, Self>(w, a)
    }
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    unsafe fn dot_q5_0(w: &[u8], a: Q8Blocks<'_>) -> f32 {
        dot_blocks::<Q5_0, Self>(w, a)
    }
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    unsafe fn dot_q5_1(w: &[u8], a: Q8Blocks<'_>) -> f32 {
        dot_blocks::<Q5_1, Self>(w, a)
    }
}

/// The 16-bit little-endian word at `p` (not necessarily aligned).
#[inline(always)]
unsafe fn u16_at(p: *const u8) -> i16 {
    u16::from_le_bytes(ptr::read_unaligned(p as *const [u8; 2])) as i16
}

/// One weight block format, two blocks at a time.
trait Block {
    const TYPE: DType;
    /// Whether the block has a minimum `m` (at byte 2) that meets the activation block sums.
    const HAS_MIN: bool = false;
    /// Sixteen i32 lanes: the first eight total block `b0`'s exact integer dot product with
    /// the first 32 bytes of `a`, the last eight `b1`'s with the other 32.
    unsafe fn isum<U: Udot>(b0: *const u8, b1: *const u8, a: __m512i) -> __m512i;
}

struct Q8_0;
struct Q4_0;
struct Q4_1;
struct Q5_0;
struct Q5_1;

impl Block for Q8_0 {
    const TYPE: DType = DType::Q8_0;
    #[inline(always)]
    unsafe fn isum<U: Udot>(b0: *const u8, b1: *const u8, a: __m512i) -> __m512i {
        let lo = _mm256_loadu_si256(b0.add(2) as *const __m256i);
        let hi = _mm256_loadu_si256(b1.add(2) as *const __m256i);
        let w = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi);
        // The weight's sign moves onto the activation so the weight can be the unsigned
        // operand: |-128| reads as 128 unsigned, but negating an activation of -128 would wrap.
        // Q8Row never produces -128 (it rounds to [-127, 127]), and then every i16 pair is at
        // most 2 * 128 * 127, so the maddubs path cannot saturate either.
        let neg = _mm512_movepi8_mask(w);
        let sa = _mm512_mask_sub_epi8(a, neg, _mm512_setzero_si512(), a);
        U::udot(_mm512_abs_epi8(w), sa)
    }
}

/// The nibbles of two Q4 blocks as bytes in element order: for each block, low nibbles are
/// elements 0..16 and high nibbles 16..32.
#[inline(always)]
unsafe fn nibbles(p0: *const u8, p1: *const u8) -> __m512i {
    // 128-bit lanes [p0, p0, p1, p1] from broadcasting loads, then lanes 1 and 3 shifted down
    // to their high nibbles under a mask. A 16-bit shift is fine: the final mask drops the
    // bits that cross from the neighbouring byte.
    let lo = _mm512_broadcast_i32x4(_mm_loadu_si128(p0 as *const __m128i));
    let both = _mm512_mask_broadcast_i32x4(lo, 0xFF00, _mm_loadu_si128(p1 as *const __m128i));
    let shifted = _mm512_mask_srli_epi16::<4>(both, 0xFF00_FF00, both);
    _mm512_and_si512(shifted, _mm512_set1_epi8(0x0F))
}

impl Block for Q4_0 {
    const TYPE: DType = DType::Q4_0;
    #[inline(always)]
    unsafe fn isum<U: Udot>(b0: *const u8, b1: *const u8, a: __m512i) -> __m512i {
        // sum((n - 8) * a) as sum(n * a) - sum(8 * a): both products are unsigned-by-signed as
        // they stand, so this is exact for any activation, and every i16 pair is at most
        // 2 * 15 * 128 in magnitude.
        U::udot_diff(nibbles(b0.add(2), b1.add(2)), _mm512_set1_epi8(8), a)
    }
}

impl Block for Q4_1 {
    const TYPE: DType = DType::Q4_1;
    const HAS_MIN: bool = true;
    #[inline(always)]
    unsafe fn isum<U: Udot>(b0: *const u8, b1: *const u8, a: __m512i) -> __m512i {
        U::udot(nibbles(b0.add(4), b1.add(4)), a)
    }
}

/// The 5-bit values (0..32) of two Q5 blocks in element order, from their `qh` words at
/// `b0 + at` and `b1 + at` and the nibbles that follow them. Each block's 32 high bits are
/// already one bit per element in element order, so the two words together are a byte mask
/// that adds 16 where a fifth bit is set: one mask move and one masked add per pair of blocks.
#[inline(always)]
unsafe fn quants5(b0: *const u8, b1: *const u8, at: usize) -> __m512i {
    let nib = nibbles(b0.add(at + 4), b1.add(at + 4));
    let qh0 = ptr::read_unaligned(b0.add(at) as *const u32) as u64;
    let qh1 = ptr::read_unaligned(b1.add(at) as *const u32) as u64;
    let high: __mmask64 = qh0 | (qh1 << 32);
    _mm512_mask_add_epi8(nib, high, nib, _mm512_set1_epi8(16))
}

impl Block for Q5_0 {
    const TYPE: DType = DType::Q5_0;
    #[inline(always)]
    unsafe fn isum<U: Udot>(b0: *const u8, b1: *const u8, a: __m512i) -> __m512i {
        // sum((q - 16) * a) as sum(q * a) - sum(16 * a), as Q4_0 does with 8: exact for any
        // activation, every i16 pair at most 2 * 31 * 128 in magnitude.
        U::udot_diff(quants5(b0, b1, 2), _mm512_set1_epi8(16), a)
    }
}

impl Block for Q5_1 {
    const TYPE: DType = DType::Q5_1;
    const HAS_MIN: bool = true;
    #[inline(always)]
    unsafe fn isum<U: Udot>(b0: *const u8, b1: *const u8, a: __m512i) -> __m512i {
        U::udot(quants5(b0, b1, 4), a)
    }
}

/// Row pointers shared by the pair steps.
struct Row {
    w: *const u8,
    q: *const i8,
    d: *const f32,
    s: *const f32,
}

/// Adds blocks `i` and `i + 1` to `acc` (and their m * s to `macc`); with `last`, only block
/// `i`, whose partner gets zero activations and a zero scale.
#[inline(always)]
unsafe fn pair<B: Block, U: Udot>(
    r: &Row,
    i: usize,
    last: bool,
    acc: __m512,
    macc: &mut __m128,
) -> __m512 {
    let bb = B::TYPE.block_bytes();
    let b0 = r.w.add(i * bb);
    // The lone last block is paired with itself: the loads stay inside the row, and the
    // zeroed activations and scale make the duplicate add exactly 0.
    let b1 = if last { b0 } else { b0.add(bb) };
    let q = r.q.add(i * QK);
    let a = if last {
        _mm512_zextsi256_si512(_mm256_loadu_si256(q as *const __m256i))
    } else {
        _mm512_loadu_si512(q as *const __m512i)
    };
    let isum = B::isum::<U>(b0, b1, a);
    let (h1, d1) = if last {
        (0, 0.0)
    } else {
        (u16_at(b1), *r.d.add(i + 1))
    };
    let dw = _mm_cvtph_ps(_mm_setr_epi16(u16_at(b0), h1, 0, 0, 0, 0, 0, 0));
    let scales = _mm_mul_ps(dw, _mm_setr_ps(*r.d.add(i), d1, 0.0, 0.0));
    let spread = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    let scale = _mm512_permutexvar_ps(spread, _mm512_castps128_ps512(scales));
    if B::HAS_MIN {
        let (m1, s1) = if last {
            (0, 0.0)
        } else {
            (u16_at(b1.add(2)), *r.s.add(i + 1))
        };
        let m = _mm_cvtph_ps(_mm_setr_epi16(u16_at(b0.add(2)), m1, 0, 0, 0, 0, 0, 0));
        *macc = _mm_fmadd_ps(m, _mm_setr_ps(*r.s.add(i), s1, 0.0, 0.0), *macc);
    }
    _mm512_fmadd_ps(scale, _mm512_cvtepi32_ps(isum), acc)
}

/// Sums d_w * d_a * isum (+ m * s) over the whole blocks of `w`, like the scalar reference.
/// Always inlined into a `target_feature` function, which is where its intrinsics compile.
#[inline(always)]
unsafe fn dot_blocks<B: Block, U: Udot>(w: &[u8], a: Q8Blocks<'_>) -> f32 {
    let nb = w.len() / B::TYPE.block_bytes();
    assert!(
        a.qs.len() >= nb * QK && a.d.len() >= nb && (!B::HAS_MIN || a.s.len() >= nb),
        "{}: activations shorter than the weight row",
        B::TYPE
    );
    let r = Row {
        w: w.as_ptr(),
        q: a.qs.as_ptr(),
        d: a.d.as_ptr(),
        s: a.s.as_ptr(),
    };
    // Two accumulators so consecutive pairs do not wait on each other's FMA.
    let (mut acc0, mut acc1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    let mut macc = _mm_setzero_ps();
    let mut i = 0;
    while i + 4 <= nb {
        acc0 = pair::<B, U>(&r, i, false, acc0, &mut macc);
        acc1 = pair::<B, U>(&r, i + 2, false, acc1, &mut macc);
        i += 4;
    }
    if i + 2 <= nb {
        acc0 = pair::<B, U>(&r, i, false, acc0, &mut macc);
        i += 2;
    }
    if i < nb {
        acc1 = pair::<B, U>(&r, i, true, acc1, &mut macc);
    }
    let mut sum = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
    if B::HAS_MIN {
        // Only lanes 0 and 1 of macc are ever non-zero.
        sum += _mm_cvtss_f32(_mm_add_ss(macc, _mm_movehdup_ps(macc)));
    }
    sum
}

#[cfg(test)]
mod tests {
    //! The integration tests only see the table `kernels()` picks; these make sure the other
    //! AVX-512 variant is exercised too on a machine that has VNNI.
    use super::*;
    use crate::kernels::blocks::Q8Row;
    use crate::kernels::test_support::{assert_quant_tables_match_scalar, random_blocks, Rng};

    #[test]
    fn both_avx512_tables_match_scalar() {
        let tables = all_tables();
        if tables.is_empty() {
            eprintln!("no AVX-512 F/BW/VL on this CPU: nothing to test");
            return;
        }
        assert_quant_tables_match_scalar(&tables);
    }

    #[test]
    fn vnni_changes_nothing_but_speed() {
        // Both variants put the same exact integer sums in the same lanes, so their results
        // must be identical to the bit, not merely close.
        let tables = all_tables();
        if tables.len() < 2 {
            eprintln!("no AVX-512 VNNI on this CPU: nothing to compare");
            return;
        }
        let (plain, vnni) = (tables[0].1, tables[1].1);
        let mut rng = Rng(0x0123_4567_89AB_CDEF);
        for nb in [1, 2, 3, 5, 8, 33] {
            let n = nb * QK;
            let x: Vec<f32> = (0..n).map(|_| rng.f32()).collect();
            let mut q8 = Q8Row::default();
            q8.quantize_from(&x);
            let ab = q8.blocks();
            for ty in [
                DType::Q8_0,
                DType::Q4_0,
                DType::Q4_1,
                DType::Q5_0,
                DType::Q5_1,
            ] {
                let w = random_blocks(&mut rng, ty, n);
                let pick = |k: &Kernels| match ty {
                    DType::Q8_0 => (k.dot_q8_0)(&w, ab),
                    DType::Q4_0 => (k.dot_q4_0)(&w, ab),
                    DType::Q5_0 => (k.dot_q5_0)(&w, ab),
                    DType::Q5_1 => (k.dot_q5_1)(&w, ab),
                    _ => (k.dot_q4_1)(&w, ab),
                };
                assert_eq!(pick(plain).to_bits(), pick(vnni).to_bits(), "{ty} n={n}");
            }
        }
    }
}
