//! x86-64 kernels for AVX2 with FMA and F16C (Haswell / Zen 1 and later).
//!
//! Quantized blocks are dotted in integers, exactly, and each block's sum meets its scales in
//! f32, so these differ from the scalar reference only in the order the block terms are added.

use super::{Isa, Kernels};
use crate::dtype::{DType, QK};
use crate::kernels::blocks::Q8Blocks;
use half::f16;
use std::arch::x86_64::*;
use std::ptr;

static KERNELS: Kernels = Kernels {
    isa: Isa::Avx2,
    name: "avx2",
    dot_f32,
    dot_f16,
    dot_q8_0,
    dot_q4_0,
    dot_q4_1,
    dot_q5_0,
    dot_q5_1,
    dot_q4_k: super::kquants::avx2::dot_q4_k,
    dot_q5_k: super::kquants::avx2::dot_q5_k,
    dot_q6_k: super::kquants::avx2::dot_q6_k,
    axpy,
    attend: super::attention_avx2::attend,
    packed: Some(&super::avx2_packed::PACKED),
    dot_k_tile: super::kquants::avx2_tile::dot_k_tile,
};

/// The same table with the packed kernels' AVX-VNNI variant; everything else is shared, and
/// VNNI only changes how integer products are summed, not the results.
static KERNELS_VNNI: Kernels = Kernels {
    name: "avx2+vnni",
    packed: Some(&super::avx2_packed::PACKED_VNNI),
    ..KERNELS
};

fn has_avx2() -> bool {
    is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
}

pub(super) fn kernels() -> Option<&'static Kernels> {
    if !has_avx2() {
        None
    } else if is_x86_feature_detected!("avxvnni") {
        Some(&KERNELS_VNNI)
    } else {
        Some(&KERNELS)
    }
}

/// The table `kernels()` does not pick on a CPU that can run both (plain AVX2 under
/// AVX-VNNI), for [`super::variants`].
pub(super) fn passed_over() -> Option<&'static Kernels> {
    (has_avx2() && is_x86_feature_detected!("avxvnni")).then_some(&KERNELS)
}

// Soundness: the wrappers below are private and only reachable through the two tables, which
// `kernels()` hands out only after the CPU has reported avx2, fma and f16c (and avxvnni for
// `KERNELS_VNNI`), so the
// `target_feature` functions they call never run on a CPU without those features. The length
// checks are what keep the raw-pointer loads inside the slices.

fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    assert_eq!(x.len(), y.len(), "axpy: lengths differ");
    unsafe { axpy_avx2(a, x, y) }
}

/// The scalar loop compiled with this table's features, so LLVM vectorises it at full width
/// (the rest of the crate is built for the baseline ISA).
#[target_feature(enable = "avx2,fma")]
unsafe fn axpy_avx2(a: f32, x: &[f32], y: &mut [f32]) {
    for (o, &v) in y.iter_mut().zip(x) {
        *o += a * v;
    }
}

fn dot_f32(w: &[f32], x: &[f32]) -> f32 {
    assert_eq!(w.len(), x.len(), "dot_f32: row lengths differ");
    unsafe { dot_f32_avx2(w, x) }
}

fn dot_f16(w: &[f16], x: &[f32]) -> f32 {
    assert_eq!(w.len(), x.len(), "dot_f16: row lengths differ");
    unsafe { dot_f16_avx2(w, x) }
}

fn dot_q8_0(w: &[u8], a: Q8Blocks<'_>) -> f32 {
    unsafe { dot_q8_0_avx2(w, a) }
}

fn dot_q4_0(w: &[u8], a: Q8Blocks<'_>) -> f32 {
    unsafe { dot_q4_0_avx2(w, a) }
}

fn dot_q4_1(w: &[u8], a: Q8Blocks<'_>) -> f32 {
    unsafe { dot_q4_1_avx2(w, a) }
}

fn dot_q5_0(w: &[u8], a: Q8Blocks<'_>) -> f32 {
    unsafe { dot_q5_0_avx2(w, a) }
}

fn dot_q5_1(w: &[u8], a: Q8Blocks<'_>) -> f32 {
    unsafe { dot_q5_1_avx2(w, a) }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_f32_avx2(w: &[f32], x: &[f32]) -> f32 {
    let n = w.len();
    let (wp, xp) = (w.as_ptr(), x.as_ptr());
    // Four accumulators hide the FMA latency; one would make the loop latency-bound.
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (k, a) in acc.iter_mut().enumerate() {
            let j = i + 8 * k;
            *a = _mm256_fmadd_ps(_mm256_loadu_ps(wp.add(j)), _mm256_loadu_ps(xp.add(j)), *a);
        }
        i += 32;
    }
    while i + 8 <= n {
        acc[0] = _mm256_fmadd_ps(
            _mm256_loadu_ps(wp.add(i)),
            _mm256_loadu_ps(xp.add(i)),
            acc[0],
        );
        i += 8;
    }
    let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut sum = hsum(v);
    for j in i..n {
        sum += w[j] * x[j];
    }
    sum
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_f16_avx2(w: &[f16], x: &[f32]) -> f32 {
    let n = w.len();
    // `f16` is a transparent wrapper around its bits, so the row can be read as u16.
    let (wp, xp) = (w.as_ptr() as *const u16, x.as_ptr());
    let load_w = |j: usize| _mm256_cvtph_ps(_mm_loadu_si128(wp.add(j) as *const __m128i));
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (k, a) in acc.iter_mut().enumerate() {
            let j = i + 8 * k;
            *a = _mm256_fmadd_ps(load_w(j), _mm256_loadu_ps(xp.add(j)), *a);
        }
        i += 32;
    }
    while i + 8 <= n {
        acc[0] = _mm256_fmadd_ps(load_w(i), _mm256_loadu_ps(xp.add(i)), acc[0]);
        i += 8;
    }
    let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut sum = hsum(v);
    for (wj, xj) in w[i..].iter().zip(&x[i..]) {
        sum += _mm256_cvtss_f32(f16_splat(wj.to_bits())) * xj;
    }
    sum
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q8_0_avx2(w: &[u8], a: Q8Blocks<'_>) -> f32 {
    dot_blocks::<Q8_0>(w, a)
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q4_0_avx2(w: &[u8], a: Q8Blocks<'_>) -> f32 {
    dot_blocks::<Q4_0>(w, a)
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q4_1_avx2(w: &[u8], a: Q8Blocks<'_>) -> f32 {
    dot_blocks::<Q4_1>(w, a)
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q5_0_avx2(w: &[u8], a: Q8Blocks<'_>) -> f32 {
    dot_blocks::<Q5_0>(w, a)
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q5_1_avx2(w: &[u8], a: Q8Blocks<'_>) -> f32 {
    dot_blocks::<Q5_1>(w, a)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// One weight block format: how to turn a block and its 32 activations into integer sums.
trait Block {
    const TYPE: DType;
    /// Whether the block has a minimum `m` (at byte 2) that meets the activation block sums.
    const HAS_MIN: bool = false;
    /// Eight i32 lanes whose total is the block's exact integer dot product with `q`.
    unsafe fn isum(blk: *const u8, q: *const i8) -> __m256i;
}

struct Q8_0;
struct Q4_0;
struct Q4_1;
struct Q5_0;
struct Q5_1;

impl Block for Q8_0 {
    const TYPE: DType = DType::Q8_0;
    #[inline(always)]
    unsafe fn isum(blk: *const u8, q: *const i8) -> __m256i {
        let w = _mm256_loadu_si256(blk.add(2) as *const __m256i);
        let a = _mm256_loadu_si256(q as *const __m256i);
        // maddubs wants one unsigned operand, so move the weight's sign onto the activation:
        // |w| is exact even for -128 (it reads as 128 unsigned), but negating an activation of
        // -128 would wrap. Q8Row never produces -128 (it rounds to [-127, 127]), and with that
        // each i16 pair sum is at most 2 * 128 * 127, so maddubs never saturates.
        let p = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w));
        _mm256_madd_epi16(p, _mm256_set1_epi16(1))
    }
}

/// The 32 nibbles of a Q4 block as bytes in element order: low nibbles are elements 0..16,
/// high nibbles 16..32.
#[inline(always)]
unsafe fn nibbles(p: *const u8) -> __m256i {
    let b = _mm_loadu_si128(p as *const __m128i);
    // A 16-bit shift is fine: the mask drops the bits that cross from the neighbouring byte.
    let both = _mm256_set_m128i(_mm_srli_epi16::<4>(b), b);
    _mm256_and_si256(both, _mm256_set1_epi8(0x0F))
}

impl Block for Q4_0 {
    const TYPE: DType = DType::Q4_0;
    #[inline(always)]
    unsafe fn isum(blk: *const u8, q: *const i8) -> __m256i {
        let n = nibbles(blk.add(2));
        let a = _mm256_loadu_si256(q as *const __m256i);
        // sum((n - 8) * a) as sum(n * a) - sum(8 * a): both stay unsigned-times-signed for
        // maddubs without the sign trick, so this is exact for any activation, and every i16
        // pair is at most 2 * 15 * 128 in magnitude.
        let p = _mm256_sub_epi16(
            _mm256_maddubs_epi16(n, a),
            _mm256_maddubs_epi16(_mm256_set1_epi8(8), a),
        );
        _mm256_madd_epi16(p, _mm256_set1_epi16(1))
    }
}

impl Block for Q4_1 {
    const TYPE: DType = DType::Q4_1;
    const HAS_MIN: bool = true;
    #[inline(always)]
    unsafe fn isum(blk: *const u8, q: *const i8) -> __m256i {
        let n = nibbles(blk.add(4));
        let a = _mm256_loadu_si256(q as *const __m256i);
        _mm256_madd_epi16(_mm256_maddubs_epi16(n, a), _mm256_set1_epi16(1))
    }
}

/// The 32 5-bit values (0..32) of a Q5 block in element order, from its `qh` word at `p` and
/// the nibbles that follow it.
#[inline(always)]
unsafe fn quants5(p: *const u8) -> __m256i {
    let qh = ptr::read_unaligned(p as *const u32) as i32;
    // Byte k of the spread holds byte k / 8 of qh (each 128-bit half has its own copy of qh,
    // so the in-lane shuffle reaches bytes 2 and 3 from the upper half); ANDing with bit k % 8
    // and comparing turns each element's fifth bit into a full byte mask.
    let pick = _mm256_setr_epi8(
        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3,
        3, 3,
    );
    let spread = _mm256_shuffle_epi8(_mm256_set1_epi32(qh), pick);
    let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    let set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
    _mm256_or_si256(
        nibbles(p.add(4)),
        _mm256_and_si256(set, _mm256_set1_epi8(16)),
    )
}

impl Block for Q5_0 {
    const TYPE: DType = DType::Q5_0;
    #[inline(always)]
    unsafe fn isum(blk: *const u8, q: *const i8) -> __m256i {
        let a = _mm256_loadu_si256(q as *const __m256i);
        // sum((q - 16) * a) as sum(q * a) - sum(16 * a), as Q4_0 does with 8; every i16
        // pair is at most 2 * 31 * 128 in magnitude, so maddubs cannot saturate.
        let p = _mm256_sub_epi16(
            _mm256_maddubs_epi16(quants5(blk.add(2)), a),
            _mm256_maddubs_epi16(_mm256_set1_epi8(16), a),
        );
        _mm256_madd_epi16(p, _mm256_set1_epi16(1))
    }
}

impl Block for Q5_1 {
    const TYPE: DType = DType::Q5_1;
    const HAS_MIN: bool = true;
    #[inline(always)]
    unsafe fn isum(blk: *const u8, q: *const i8) -> __m256i {
        let a = _mm256_loadu_si256(q as *const __m256i);
        _mm256_madd_epi16(
            _mm256_maddubs_epi16(quants5(blk.add(4)), a),
            _mm256_set1_epi16(1),
        )
    }
}

/// `h` (f16 bits) converted and broadcast to all eight lanes.
#[inline(always)]
unsafe fn f16_splat(h: u16) -> __m256 {
    // Converting all eight lanes, rather than one and then broadcasting, matters: for a
    // one-lane vector LLVM inserted the bits into whatever register was at hand, which in the
    // block loop was an accumulator, a false dependency that serialized the blocks (2x slower).
    _mm256_cvtph_ps(_mm_set1_epi16(h as i16))
}

/// The little-endian f16 bits at `p` (not necessarily aligned).
#[inline(always)]
unsafe fn f16_bits(p: *const u8) -> u16 {
    u16::from_le_bytes(ptr::read_unaligned(p as *const [u8; 2]))
}

/// Row pointers shared by the block steps.
struct Row {
    w: *const u8,
    q: *const i8,
    d: *const f32,
    s: *const f32,
}

/// Adds block `i`'s d_w * d_a * isum to `acc`, and for Q4_1 its m * s to every lane of
/// `macc`. A function rather than a closure because a closure would not share the
/// `target_feature`s of the function this is inlined into.
#[inline(always)]
unsafe fn block<B: Block>(r: &Row, i: usize, acc: __m256, macc: &mut __m256) -> __m256 {
    let blk = r.w.add(i * B::TYPE.block_bytes());
    let isum = B::isum(blk, r.q.add(i * QK));
    // The same single f32 product as the scalar kernel's d_w * d_a, in every lane.
    let d = _mm256_mul_ps(f16_splat(f16_bits(blk)), _mm256_set1_ps(*r.d.add(i)));
    if B::HAS_MIN {
        let m = f16_splat(f16_bits(blk.add(2)));
        *macc = _mm256_fmadd_ps(m, _mm256_set1_ps(*r.s.add(i)), *macc);
    }
    _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(isum), acc)
}

/// Sums d_w * d_a * isum (+ m * s) over the whole blocks of `w`, like the scalar reference.
/// Always inlined into a `target_feature` function, which is where its intrinsics compile.
#[inline(always)]
unsafe fn dot_blocks<B: Block>(w: &[u8], a: Q8Blocks<'_>) -> f32 {
    let bb = B::TYPE.block_bytes();
    let nb = w.len() / bb;
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
    // Two sets of accumulators so consecutive blocks do not wait on each other's FMA.
    let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let (mut macc0, mut macc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let mut i = 0;
    while i + 2 <= nb {
        acc0 = block::<B>(&r, i, acc0, &mut macc0);
        acc1 = block::<B>(&r, i + 1, acc1, &mut macc1);
        i += 2;
    }
    if i < nb {
        acc0 = block::<B>(&r, i, acc0, &mut macc0);
    }
    let mut sum = hsum(_mm256_add_ps(acc0, acc1));
    if B::HAS_MIN {
        // Every lane of macc holds the same m * s total.
        sum += _mm256_cvtss_f32(_mm256_add_ps(macc0, macc1));
    }
    sum
}
