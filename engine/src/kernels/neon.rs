//! aarch64 kernels for NEON, which every aarch64 Linux target has, with a variant of the
//! quantized kernels for the dot-product extension (`sdot`, Armv8.2+, optional before 8.4).
//!
//! NEON's signed-by-signed byte products mean no sign trick is needed: every quantized block
//! sum is exact for any byte values, and the results differ from the scalar reference only in
//! the order the block terms are added. Both variants report [`Isa::Neon`]; each carries its
//! packed-layout kernels ([`super::neon_packed`], [`super::neon_interleaved`]).

use super::neon_interleaved::{f16_scalar, f16x4};
use super::{Isa, Kernels};
use crate::dtype::{DType, QK};
use crate::kernels::blocks::Q8Blocks;
use half::f16;
use std::arch::aarch64::*;

static KERNELS: Kernels = Kernels {
    isa: Isa::Neon,
    name: "neon",
    dot_f32,
    dot_f16,
    dot_q8_0: dot_q8_0::<Mull>,
    dot_q4_0: dot_q4_0::<Mull>,
    dot_q4_1: dot_q4_1::<Mull>,
    dot_q5_0: dot_q5_0::<Mull>,
    dot_q5_1: dot_q5_1::<Mull>,
    dot_q4_k: super::kquants::neon::dot_q4_k,
    dot_q5_k: super::kquants::neon::dot_q5_k,
    dot_q6_k: super::kquants::neon::dot_q6_k,
    axpy: super::scalar::axpy,
    attend: super::attention_neon::attend,
    packed: Some(&super::neon_packed::PACKED),
    dot_k_tile: super::kquants::neon::dot_k_tile,
};

static KERNELS_DOTPROD: Kernels = Kernels {
    isa: Isa::Neon,
    name: "neon+dotprod",
    dot_f32,
    dot_f16,
    dot_q8_0: dot_q8_0::<Sdot>,
    dot_q4_0: dot_q4_0::<Sdot>,
    dot_q4_1: dot_q4_1::<Sdot>,
    dot_q5_0: dot_q5_0::<Sdot>,
    dot_q5_1: dot_q5_1::<Sdot>,
    dot_q4_k: super::kquants::neon::dot_q4_k_dotprod,
    dot_q5_k: super::kquants::neon::dot_q5_k_dotprod,
    dot_q6_k: super::kquants::neon::dot_q6_k_dotprod,
    axpy: super::scalar::axpy,
    attend: super::attention_neon::attend,
    packed: Some(&super::neon_packed::PACKED_DOTPROD),
    dot_k_tile: super::kquants::neon_tile::dot_k_tile_dotprod,
};

pub(super) fn kernels() -> Option<&'static Kernels> {
    if std::arch::is_aarch64_feature_detected!("dotprod") {
        Some(&KERNELS_DOTPROD)
    } else {
        Some(&KERNELS)
    }
}

/// Both tables, whatever `kernels()` would pick, so tests on a dotprod machine still cover
/// the plain one.
#[cfg(test)]
fn all_tables() -> Vec<(&'static str, &'static Kernels)> {
    let mut out = vec![("neon", &KERNELS)];
    if std::arch::is_aarch64_feature_detected!("dotprod") {
        out.push(("neon+dotprod", &KERNELS_DOTPROD));
    }
    out
}

// Soundness: NEON is part of the aarch64 Linux targets' baseline, so the plain kernels run on
// any CPU this binary runs on. The `sdot` kernels are only reachable through KERNELS_DOTPROD,
// which `kernels()` hands out only after dotprod was detected. The length checks keep the
// raw-pointer loads inside the slices.

fn dot_f32(w: &[f32], x: &[f32]) -> f32 {
    assert_eq!(w.len(), x.len(), "dot_f32: row lengths differ");
    unsafe { dot_f32_neon(w, x) }
}

fn dot_f16(w: &[f16], x: &[f32]) -> f32 {
    assert_eq!(w.len(), x.len(), "dot_f16: row lengths differ");
    unsafe { dot_f16_neon(w, x) }
}

fn dot_q8_0<D: Dot>(w: &[u8], a: Q8Blocks<'_>) -> f32 {
    unsafe { D::dot_q8_0(w, a) }
}

fn dot_q4_0<D: Dot>(w: &[u8], a: Q8Blocks<'_>) -> f32 {
    unsafe { D::dot_q4_0(w, a) }
}

fn dot_q4_1<D: Dot>(w: &[u8], a: Q8Blocks<'_>) -> f32 {
    unsafe { D::dot_q4_1(w, a) }
}

fn dot_q5_0<D: Dot>(w: &[u8], a: Q8Blocks<'_>) -> f32 {
    unsafe { D::dot_q5_0(w, a) }
}

fn dot_q5_1<D: Dot>(w: &[u8], a: Q8Blocks<'_>) -> f32 {
    unsafe { D::dot_q5_1(w, a) }
}

unsafe fn dot_f32_neon(w: &[f32], x: &[f32]) -> f32 {
    let n = w.len();
    let (wp, xp) = (w.as_ptr(), x.as_ptr());
    // Four accumulators hide the FMA latency; one would make the loop latency-bound.
    let mut acc = [vdupq_n_f32(0.0); 4];
    let mut i = 0;
    while i + 16 <= n {
        for (k, a) in acc.iter_mut().enumerate() {
            let j = i + 4 * k;
            *a = vfmaq_f32(*a, vld1q_f32(wp.add(j)), vld1q_f32(xp.add(j)));
        }
        i += 16;
    }
    while i + 4 <= n {
        acc[0] = vfmaq_f32(acc[0], vld1q_f32(wp.add(i)), vld1q_f32(xp.add(i)));
        i += 4;
    }
    let v = vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3]));
    let mut sum = vaddvq_f32(v);
    for j in i..n {
        sum += w[j] * x[j];
    }
    sum
}

unsafe fn dot_f16_neon(w: &[f16], x: &[f32]) -> f32 {
    let n = w.len();
    // `f16` is a transparent wrapper around its bits, so the row can be read as u16.
    let (wp, xp) = (w.as_ptr() as *const u16, x.as_ptr());
    let mut acc = [vdupq_n_f32(0.0); 4];
    let mut i = 0;
    while i + 16 <= n {
        for (k, pair) in acc.chunks_exact_mut(2).enumerate() {
            let j = i + 8 * k;
            let h = vld1q_u16(wp.add(j));
            let (w0, w1) = (f16x4(vget_low_u16(h)), f16x4(vget_high_u16(h)));
            pair[0] = vfmaq_f32(pair[0], w0, vld1q_f32(xp.add(j)));
            pair[1] = vfmaq_f32(pair[1], w1, vld1q_f32(xp.add(j + 4)));
        }
        i += 16;
    }
    while i + 4 <= n {
        let wv = f16x4(vld1_u16(wp.add(i)));
        acc[0] = vfmaq_f32(acc[0], wv, vld1q_f32(xp.add(i)));
        i += 4;
    }
    let v = vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3]));
    let mut sum = vaddvq_f32(v);
    for (wj, xj) in w[i..].iter().zip(&x[i..]) {
        sum += f16_scalar(wj.to_bits()) * xj;
    }
    sum
}

/// How signed byte products are summed into i32 lanes: the part that differs between plain
/// NEON and the dot-product extension. Each implementor also provides the entry points, so
/// the shared code below is compiled once per feature set.
trait Dot {
    /// `acc` plus all sixteen products a[j] * b[j], spread over the four lanes in some order;
    /// exact for any bytes.
    unsafe fn dot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t;
    unsafe fn dot_q8_0(w: &[u8], a: Q8Blocks<'_>) -> f32;
    unsafe fn dot_q4_0(w: &[u8], a: Q8Blocks<'_>) -> f32;
    unsafe fn dot_q4_1(w: &[u8], a: Q8Blocks<'_>) -> f32;
    unsafe fn dot_q5_0(w: &[u8], a: Q8Blocks<'_>) -> f32;
    unsafe fn dot_q5_1(w: &[u8], a: Q8Blocks<'_>) -> f32;
}

struct Mull;
struct Sdot;

impl Dot for Mull {
    #[inline(always)]
    unsafe fn dot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        // Each i8 * i8 product fits in i16 (even -128 * -128), and pairs are widened to i32
        // before they are added.
        let lo = vmull_s8(vget_low_s8(a), vget_low_s8(b));
        let hi = vmull_high_s8(a, b);
        vpadalq_s16(vpadalq_s16(acc, lo), hi)
    }
    unsafe fn dot_q8_0(w: &[u8], a: Q8Blocks<'_>) -> f32 {
        dot_blocks::<Q8_0, Self>(w, a)
    }
    unsafe fn dot_q4_0(w: &[u8], a: Q8Blocks<'_>) -> f32 {
        dot_blocks::<Q4_0, Self>(w, a)
    }
    unsafe fn dot_q4_1(w: &[u8], a: Q8Blocks<'_>) -> f32 {
        dot_blocks::<Q4_1, Self>(w, a)
    }
    unsafe fn dot_q5_0(w: &[u8], a: Q8Blocks<'_>) -> f32 {
        dot_blocks::<Q5_0, Self>(w, a)
    }
    unsafe fn dot_q5_1(w: &[u8], a: Q8Blocks<'_>) -> f32 {
        dot_blocks::<Q5_1, Self>(w, a)
    }
}

impl Dot for Sdot {
    #[inline]
    #[target_feature(enable = "dotprod")]
    unsafe fn dot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        // `vdotq_s32` is still unstable in Rust, so the instruction is written out; the
        // assembler only accepts it in a function with dotprod enabled.
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
    unsafe fn dot_q8_0(w: &[u8], a: Q8Blocks<'_>) -> f32 {
        dot_blocks::<Q8_0, Self>(w, a)
    }
    #[target_feature(enable = "dotprod")]
    unsafe fn dot_q4_0(w: &[u8], a: Q8Blocks<'_>) -> f32 {
        dot_blocks::<Q4_0, Self>(w, a)
    }
    #[target_feature(enable = "dotprod")]
    unsafe fn dot_q4_1(w: &[u8], a: Q8Blocks<'_>) -> f32 {
        dot_blocks::<Q4_1, Self>(w, a)
    }
    #[target_feature(enable = "dotprod")]
    unsafe fn dot_q5_0(w: &[u8], a: Q8Blocks<'_>) -> f32 {
        dot_blocks::<Q5_0, Self>(w, a)
    }
    #[target_feature(enable = "dotprod")]
    unsafe fn dot_q5_1(w: &[u8], a: Q8Blocks<'_>) -> f32 {
        dot_blocks::<Q5_1, Self>(w, a)
    }
}

/// One weight block format: how to turn a block and its 32 activations into integer sums.
trait Block {
    const TYPE: DType;
    /// Whether the block has a minimum `m` (at byte 2) that meets the activation block sums.
    const HAS_MIN: bool = false;
    /// Four i32 lanes whose total is the block's exact integer dot product with `q`.
    unsafe fn isum<D: Dot>(blk: *const u8, q: *const i8) -> int32x4_t;
}

struct Q8_0;
struct Q4_0;
struct Q4_1;
struct Q5_0;
struct Q5_1;

impl Block for Q8_0 {
    const TYPE: DType = DType::Q8_0;
    #[inline(always)]
    unsafe fn isum<D: Dot>(blk: *const u8, q: *const i8) -> int32x4_t {
        let w = blk.add(2) as *const i8;
        let acc = D::dot(vdupq_n_s32(0), vld1q_s8(w), vld1q_s8(q));
        D::dot(acc, vld1q_s8(w.add(16)), vld1q_s8(q.add(16)))
    }
}

/// A Q4 block's nibbles as (elements 0..16, elements 16..32).
#[inline(always)]
unsafe fn nibbles(p: *const u8) -> (uint8x16_t, uint8x16_t) {
    let b = vld1q_u8(p);
    (vandq_u8(b, vdupq_n_u8(0x0F)), vshrq_n_u8::<4>(b))
}

impl Block for Q4_0 {
    const TYPE: DType = DType::Q4_0;
    #[inline(always)]
    unsafe fn isum<D: Dot>(blk: *const u8, q: *const i8) -> int32x4_t {
        let (lo, hi) = nibbles(blk.add(2));
        let eight = vdupq_n_s8(8);
        let lo = vsubq_s8(vreinterpretq_s8_u8(lo), eight);
        let hi = vsubq_s8(vreinterpretq_s8_u8(hi), eight);
        let acc = D::dot(vdupq_n_s32(0), lo, vld1q_s8(q));
        D::dot(acc, hi, vld1q_s8(q.add(16)))
    }
}

impl Block for Q4_1 {
    const TYPE: DType = DType::Q4_1;
    const HAS_MIN: bool = true;
    #[inline(always)]
    unsafe fn isum<D: Dot>(blk: *const u8, q: *const i8) -> int32x4_t {
        // Nibbles are at most 15, so they are also valid signed bytes.
        let (lo, hi) = nibbles(blk.add(4));
        let acc = D::dot(vdupq_n_s32(0), vreinterpretq_s8_u8(lo), vld1q_s8(q));
        D::dot(acc, vreinterpretq_s8_u8(hi), vld1q_s8(q.add(16)))
    }
}

/// A Q5 block's 5-bit values (0..32) as (elements 0..16, elements 16..32), from its `qh` word
/// at `p` and the nibbles that follow it.
#[inline(always)]
unsafe fn quants5(p: *const u8) -> (uint8x16_t, uint8x16_t) {
    let (lo, hi) = nibbles(p.add(4));
    let qh = std::ptr::read_unaligned(p as *const [u8; 4]);
    // Byte k of each half holds qh byte 2h + k / 8; testing it against bit k % 8 gives an
    // all-ones byte where that element's fifth bit is set.
    let bits = vld1q_u8([1u8, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128].as_ptr());
    let spread = |b0: u8, b1: u8| vcombine_u8(vdup_n_u8(b0), vdup_n_u8(b1));
    let sixteen = vdupq_n_u8(16);
    let h0 = vandq_u8(vtstq_u8(spread(qh[0], qh[1]), bits), sixteen);
    let h1 = vandq_u8(vtstq_u8(spread(qh[2], qh[3]), bits), sixteen);
    (vorrq_u8(lo, h0), vorrq_u8(hi, h1))
}

impl Block for Q5_0 {
    const TYPE: DType = DType::Q5_0;
    #[inline(always)]
    unsafe fn isum<D: Dot>(blk: *const u8, q: *const i8) -> int32x4_t {
        let (lo, hi) = quants5(blk.add(2));
        let bias = vdupq_n_s8(16);
        // q - 16 is in -16..16, a valid signed byte.
        let lo = vsubq_s8(vreinterpretq_s8_u8(lo), bias);
        let hi = vsubq_s8(vreinterpretq_s8_u8(hi), bias);
        let acc = D::dot(vdupq_n_s32(0), lo, vld1q_s8(q));
        D::dot(acc, hi, vld1q_s8(q.add(16)))
    }
}

impl Block for Q5_1 {
    const TYPE: DType = DType::Q5_1;
    const HAS_MIN: bool = true;
    #[inline(always)]
    unsafe fn isum<D: Dot>(blk: *const u8, q: *const i8) -> int32x4_t {
        // Values are at most 31, so they are also valid signed bytes.
        let (lo, hi) = quants5(blk.add(4));
        let acc = D::dot(vdupq_n_s32(0), vreinterpretq_s8_u8(lo), vld1q_s8(q));
        D::dot(acc, vreinterpretq_s8_u8(hi), vld1q_s8(q.add(16)))
    }
}

/// The little-endian f16 at `p` (not necessarily aligned) as f32.
#[inline(always)]
unsafe fn f16_at(p: *const u8) -> f32 {
    f16_scalar(u16::from_le_bytes(std::ptr::read_unaligned(
        p as *const [u8; 2],
    )))
}

/// Row pointers shared by the block steps.
struct Row {
    w: *const u8,
    q: *const i8,
    d: *const f32,
    s: *const f32,
}

/// Adds block `i`'s d_w * d_a * isum to `acc`, and for Q4_1 its m * s to `msum`.
#[inline(always)]
unsafe fn block<B: Block, D: Dot>(
    r: &Row,
    i: usize,
    acc: float32x4_t,
    msum: &mut f32,
) -> float32x4_t {
    let blk = r.w.add(i * B::TYPE.block_bytes());
    let isum = B::isum::<D>(blk, r.q.add(i * QK));
    if B::HAS_MIN {
        *msum += f16_at(blk.add(2)) * *r.s.add(i);
    }
    vfmaq_n_f32(acc, vcvtq_f32_s32(isum), f16_at(blk) * *r.d.add(i))
}

/// Sums d_w * d_a * isum (+ m * s) over the whole blocks of `w`, like the scalar reference.
/// Always inlined into the entry points, so it compiles with their target features.
#[inline(always)]
unsafe fn dot_blocks<B: Block, D: Dot>(w: &[u8], a: Q8Blocks<'_>) -> f32 {
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
    // Two sets of accumulators so consecutive blocks do not wait on each other's FMA.
    let (mut acc0, mut acc1) = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
    let (mut msum0, mut msum1) = (0.0f32, 0.0f32);
    let mut i = 0;
    while i + 2 <= nb {
        acc0 = block::<B, D>(&r, i, acc0, &mut msum0);
        acc1 = block::<B, D>(&r, i + 1, acc1, &mut msum1);
        i += 2;
    }
    if i < nb {
        acc0 = block::<B, D>(&r, i, acc0, &mut msum0);
    }
    vaddvq_f32(vaddq_f32(acc0, acc1)) + (msum0 + msum1)
}

#[cfg(test)]
mod tests {
    //! The integration tests only see the table `kernels()` picks; these make sure the plain
    //! variant is exercised too on a machine with dotprod, and the f16 conversion everywhere.
    use super::*;
    use crate::kernels::test_support::assert_quant_tables_match_scalar;

    #[test]
    fn f16_conversion_is_exact_for_every_bit_pattern() {
        // The scalar `fcvt` of the block loops; `fcvtl` has its own test in neon_packed.rs.
        for b in 0..=u16::MAX {
            let (got, want) = (f16_scalar(b), f16::from_bits(b).to_f32());
            assert!(
                got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                "f16 {b:#06x}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn both_neon_tables_match_scalar() {
        assert_quant_tables_match_scalar(&all_tables());
    }
}
