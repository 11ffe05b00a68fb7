//! AVX2 kernels for packed rows ([`super::packed`]): one weight row against up to four
//! activation rows at once, with an AVX-VNNI variant.
//!
//! The layout is written for 16 lanes; here a group of 16 blocks is two halves of eight lanes
//! (blocks 0..8 and 8..16), each half's chunk the first or second 32 bytes of the chunk, and a
//! partial group reads its last half with a masked load. Within a half the loop runs step by
//! step, each weight step loaded (and unpacked) once and met by every token of the tile: 16
//! registers cannot hold a half's eight steps and four tokens' accumulators at once, which is
//! how the AVX-512 kernel works. Lane `b` of a token's integer accumulator ends up holding
//! block `b`'s exact dot product, so the half's scales apply as one vector, as in
//! `avx512_packed.rs`: `isum * d_w * d_a + m * s_a`, with `m` the block's minimum (Q4_1),
//! `-8 d_w` (Q4_0) or `-128 d_w` (Q8_0 under VNNI, whose quants are made unsigned by adding
//! 128).
//!
//! Without VNNI, 4-bit products are summed in 16-bit lanes over a whole half before one
//! widening: eight `maddubs` results of at most 2 * 15 * 128 each stay within i16.

use super::avx2_interleaved::{lane_mask, FloatWeight};
use super::blocks::Q8Blocks;
use super::packed::{dot, row_kernels_from_tile, run_rows, PackedRun, TileOut, GROUP, WIDE_MAX};
use super::{PackedKernels, FLOAT_TILE};
use crate::dtype::{DType, QK};
use std::arch::x86_64::*;

pub(super) static PACKED: PackedKernels = PackedKernels {
    types: super::packed::PACKED_TYPES,
    dot: dot::<Maddubs>,
    dot_f16: float_tile::<u16>,
    dot_f32: float_tile::<f32>,
    dot_interleaved: super::avx2_interleaved::dot,
};

pub(super) static PACKED_VNNI: PackedKernels = PackedKernels {
    types: super::packed::PACKED_TYPES,
    dot: dot::<Vnni>,
    dot_f16: float_tile::<u16>,
    dot_f32: float_tile::<f32>,
    dot_interleaved: super::avx2_interleaved::dot,
};

// Soundness: `packed::dot::<D>` is only reachable through the two statics, which `avx2.rs` hands
// out only after detecting AVX2, FMA and F16C (and AVX-VNNI for `PACKED_VNNI`). `check_call` keeps
// every load inside the slices: masked-off lanes are never read.

/// How unsigned-by-signed byte products are accumulated: the part that differs between
/// plain AVX2 and AVX-VNNI.
trait Dp {
    const VNNI: bool;
    /// `acc` lane k += sum of u[4k+j] * s[4k+j] for j in 0..4, exactly as long as every
    /// adjacent pair's sum fits in i16.
    unsafe fn dp(acc: __m256i, u: __m256i, s: __m256i) -> __m256i;
    /// The same for 4-bit `u` (0..16), into an accumulator that [`Dp::widen4`] turns into
    /// i32 lanes; at most eight of these may go into one accumulator.
    unsafe fn dp4(acc: __m256i, u: __m256i, s: __m256i) -> __m256i;
    unsafe fn widen4(acc: __m256i) -> __m256i;
}

struct Maddubs;
struct Vnni;

/// Dispatches on the type and tile height, inside the caller's `target_feature` function so
/// the generic code below is compiled with the features enabled.
#[inline(always)]
unsafe fn run_any<D: Dp>(ty: DType, w: *const u8, nb: usize, a: &[Q8Blocks<'_>], o: TileOut) {
    match ty {
        DType::Q8_0 => run_rows::<Kernel<Q8_0, D>>(w, nb, a, o),
        DType::Q4_0 => run_rows::<Kernel<Q4_0, D>>(w, nb, a, o),
        DType::Q4_1 => run_rows::<Kernel<Q4_1, D>>(w, nb, a, o),
        DType::Q5_0 | DType::Q5_1 => super::avx2_packed_q5::run(ty, w, nb, a, o, D::VNNI),
        other => panic!("{other} has no packed kernel"),
    }
}

row_kernels_from_tile!(Packed, Dp);

impl Dp for Maddubs {
    const VNNI: bool = false;
    #[inline(always)]
    unsafe fn dp(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
        let pairs = _mm256_maddubs_epi16(u, s);
        _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
    }
    #[inline(always)]
    unsafe fn dp4(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
        _mm256_add_epi16(acc, _mm256_maddubs_epi16(u, s))
    }
    #[inline(always)]
    unsafe fn widen4(acc: __m256i) -> __m256i {
        _mm256_madd_epi16(acc, _mm256_set1_epi16(1))
    }
}

impl PackedRun for Maddubs {
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn run(ty: DType, w: *const u8, nb: usize, a: &[Q8Blocks<'_>], o: TileOut) {
        run_any::<Self>(ty, w, nb, a, o)
    }
}

impl Dp for Vnni {
    const VNNI: bool = true;
    #[inline(always)]
    unsafe fn dp(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
        _mm256_dpbusd_avx_epi32(acc, u, s)
    }
    #[inline(always)]
    unsafe fn dp4(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
        _mm256_dpbusd_avx_epi32(acc, u, s)
    }
    #[inline(always)]
    unsafe fn widen4(acc: __m256i) -> __m256i {
        acc
    }
}

impl PackedRun for Vnni {
    #[target_feature(enable = "avx2,fma,f16c,avxvnni")]
    unsafe fn run(ty: DType, w: *const u8, nb: usize, a: &[Q8Blocks<'_>], o: TileOut) {
        run_any::<Self>(ty, w, nb, a, o)
    }
}

/// One half of chunk `s` of a group of `g` blocks at `p`: lanes `8h..8h + 8`, or only the
/// lanes of `mask` when not `FULL`.
#[inline(always)]
unsafe fn chunk<const FULL: bool>(
    p: *const u8,
    s: usize,
    g: usize,
    h: usize,
    mask: __m256i,
) -> __m256i {
    let q = p.add(s * 4 * g + 32 * h);
    if FULL {
        _mm256_loadu_si256(q as *const __m256i)
    } else {
        _mm256_maskload_epi32(q as *const i32, mask)
    }
}

/// Eight f32 at `p`, or only the lanes of `mask`.
#[inline(always)]
unsafe fn floats<const FULL: bool>(p: *const f32, mask: __m256i) -> __m256 {
    if FULL {
        _mm256_loadu_ps(p)
    } else {
        _mm256_maskload_ps(p, mask)
    }
}

/// `n` (1 to 8) f16 at `p` (any alignment) as f32, the other lanes zero.
#[inline(always)]
unsafe fn halves(p: *const u8, n: usize) -> __m256 {
    if n == 8 {
        u16::load8(p as *const u16)
    } else {
        u16::load_part(p as *const u16, n)
    }
}

/// Which of a token's two integer accumulators step `step` adds to. A tile of one or two
/// tokens alternates them, so a VNNI chain does not wait on its own latency at every step;
/// taller tiles have enough independent chains across tokens.
#[inline(always)]
const fn chain(t_tile: usize, step: usize) -> usize {
    if t_tile <= 2 {
        step & 1
    } else {
        0
    }
}

/// One packed block type: how a half group's steps meet every token, and the per-lane
/// constant term.
trait Packed {
    const TYPE: DType;
    /// Bytes of quants per block.
    const QB: usize;
    /// Whether `m * s_a` is non-zero for this type under `D`.
    fn has_min<D: Dp>() -> bool;
    /// Per token, eight i32 lanes: block `8h + k`'s exact integer dot product in lane `k`,
    /// for the half `h` of the group of `g` blocks at `p` (lanes of `mask` only when not
    /// `FULL`), the tokens' quants at `ap`.
    unsafe fn isums<D: Dp, const T: usize, const FULL: bool>(
        p: *const u8,
        g: usize,
        h: usize,
        mask: __m256i,
        ap: &[*const u8; T],
    ) -> [__m256i; T];
    /// Per-lane `m` of the half, given its weight scales.
    unsafe fn min<D: Dp>(p: *const u8, g: usize, h: usize, n: usize, dw: __m256) -> __m256;
    /// Per token, the integer sums of a wide group (one or two blocks): block `(k / 4) % g`
    /// in lane `k`.
    unsafe fn wide_isums<D: Dp, const T: usize>(
        p: *const u8,
        g: usize,
        ap: &[*const u8; T],
    ) -> [__m256i; T];
    /// `m` per block of a wide group (lanes 0 and 1).
    unsafe fn min_wide<D: Dp>(p: *const u8, g: usize, dw: __m128) -> __m128;
}

struct Q8_0;
struct Q4_0;
struct Q4_1;

/// The 4-bit types share their quant layout and differ only in `m`.
#[inline(always)]
unsafe fn nibble_isums<D: Dp, const T: usize, const FULL: bool>(
    p: *const u8,
    g: usize,
    h: usize,
    mask: __m256i,
    ap: &[*const u8; T],
) -> [__m256i; T] {
    let low = _mm256_set1_epi8(0x0F);
    let mut ia = [[_mm256_setzero_si256(); 2]; T];
    for s in 0..4 {
        let c = chunk::<FULL>(p, s, g, h, mask);
        let lo = _mm256_and_si256(c, low);
        // A 16-bit shift is fine: the mask drops the bits that cross from the next byte.
        let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(c), low);
        for (t, ia) in ia.iter_mut().enumerate() {
            let (c0, c1) = (chain(T, 0), chain(T, 1));
            ia[c0] = D::dp4(ia[c0], lo, chunk::<FULL>(ap[t], s, g, h, mask));
            ia[c1] = D::dp4(ia[c1], hi, chunk::<FULL>(ap[t], 4 + s, g, h, mask));
        }
    }
    // Both chains together are the half's eight steps, so the i16 sums still fit. Loops
    // rather than closures here and below: a closure would not be compiled with the features
    // of the `target_feature` function this is inlined into.
    let mut out = [_mm256_setzero_si256(); T];
    for (o, [a, b]) in out.iter_mut().zip(ia) {
        *o = D::widen4(add_dp4::<D>(a, b));
    }
    out
}

/// Adds two accumulators of [`Dp::dp4`]: 16-bit lanes without VNNI, 32-bit with it.
#[inline(always)]
unsafe fn add_dp4<D: Dp>(a: __m256i, b: __m256i) -> __m256i {
    if D::VNNI {
        _mm256_add_epi32(a, b)
    } else {
        _mm256_add_epi16(a, b)
    }
}

/// The nibble bytes of a wide group as one or two vectors of step bytes, in the activation
/// order: with two blocks, the low nibbles are `[b0 e0..16, b1 e0..16]` and the high ones
/// `[b0 e16..32, b1 e16..32]`; one block's 16 bytes give `[e0..16, e16..32]` in one vector.
#[inline(always)]
unsafe fn wide_nibbles(p: *const u8, g: usize) -> [__m256i; 2] {
    let low = _mm256_set1_epi8(0x0F);
    if g == 2 {
        let v = _mm256_loadu_si256(p as *const __m256i);
        [
            _mm256_and_si256(v, low),
            _mm256_and_si256(_mm256_srli_epi16::<4>(v), low),
        ]
    } else {
        let v = _mm_loadu_si128(p as *const __m128i);
        let both = _mm256_set_m128i(_mm_srli_epi16::<4>(v), v);
        [_mm256_and_si256(both, low), _mm256_setzero_si256()]
    }
}

#[inline(always)]
unsafe fn nibble_wide<D: Dp, const T: usize>(
    p: *const u8,
    g: usize,
    ap: &[*const u8; T],
) -> [__m256i; T] {
    let [w0, w1] = wide_nibbles(p, g);
    let mut out = [_mm256_setzero_si256(); T];
    for (o, &a) in out.iter_mut().zip(ap) {
        let mut acc = D::dp4(
            _mm256_setzero_si256(),
            w0,
            _mm256_loadu_si256(a as *const _),
        );
        if g == 2 {
            acc = D::dp4(acc, w1, _mm256_loadu_si256(a.add(32) as *const _));
        }
        *o = D::widen4(acc);
    }
    out
}

/// A Q8_0 weight vector met by an activation vector: under VNNI the weight was offset by 128
/// ([`q8_unsigned`]); without it, the weight's sign moves onto the activation, since the
/// pair sums of (q + 128) * a could saturate `maddubs`'s i16 (Q8Row never produces -128, so
/// negating an activation cannot wrap).
#[inline(always)]
unsafe fn q8_step<D: Dp>(acc: __m256i, u: __m256i, raw: __m256i, a: __m256i) -> __m256i {
    if D::VNNI {
        D::dp(acc, u, a)
    } else {
        D::dp(acc, u, _mm256_sign_epi8(a, raw))
    }
}

/// The unsigned operand of a Q8_0 weight vector: `q + 128` under VNNI (the `128 * sum(a)` it
/// adds is taken back by `m`), `|q|` without (-128 reads as 128 unsigned).
#[inline(always)]
unsafe fn q8_unsigned<D: Dp>(raw: __m256i) -> __m256i {
    if D::VNNI {
        _mm256_xor_si256(raw, _mm256_set1_epi8(-128))
    } else {
        _mm256_abs_epi8(raw)
    }
}

impl Packed for Q8_0 {
    const TYPE: DType = DType::Q8_0;
    const QB: usize = QK;
    #[inline(always)]
    fn has_min<D: Dp>() -> bool {
        D::VNNI
    }
    #[inline(always)]
    unsafe fn isums<D: Dp, const T: usize, const FULL: bool>(
        p: *const u8,
        g: usize,
        h: usize,
        mask: __m256i,
        ap: &[*const u8; T],
    ) -> [__m256i; T] {
        let mut ia = [[_mm256_setzero_si256(); 2]; T];
        for s in 0..8 {
            let raw = chunk::<FULL>(p, s, g, h, mask);
            // Masked-off lanes load as 0; under VNNI they become 128 and meet activations
            // that also loaded as 0.
            let u = q8_unsigned::<D>(raw);
            let c = chain(T, s);
            for (t, ia) in ia.iter_mut().enumerate() {
                ia[c] = q8_step::<D>(ia[c], u, raw, chunk::<FULL>(ap[t], s, g, h, mask));
            }
        }
        let mut out = [_mm256_setzero_si256(); T];
        for (o, [a, b]) in out.iter_mut().zip(ia) {
            *o = _mm256_add_epi32(a, b);
        }
        out
    }
    #[inline(always)]
    unsafe fn min<D: Dp>(_: *const u8, _: usize, _: usize, _: usize, dw: __m256) -> __m256 {
        _mm256_mul_ps(dw, _mm256_set1_ps(-128.0))
    }
    #[inline(always)]
    unsafe fn wide_isums<D: Dp, const T: usize>(
        p: *const u8,
        g: usize,
        ap: &[*const u8; T],
    ) -> [__m256i; T] {
        let r0 = _mm256_loadu_si256(p as *const __m256i);
        let u0 = q8_unsigned::<D>(r0);
        let (r1, u1) = if g == 2 {
            let r1 = _mm256_loadu_si256(p.add(32) as *const __m256i);
            (r1, q8_unsigned::<D>(r1))
        } else {
            (_mm256_setzero_si256(), _mm256_setzero_si256())
        };
        let mut out = [_mm256_setzero_si256(); T];
        for (o, &a) in out.iter_mut().zip(ap) {
            let a0 = _mm256_loadu_si256(a as *const __m256i);
            *o = q8_step::<D>(_mm256_setzero_si256(), u0, r0, a0);
            if g == 2 {
                let a1 = _mm256_loadu_si256(a.add(32) as *const __m256i);
                *o = q8_step::<D>(*o, u1, r1, a1);
            }
        }
        out
    }
    #[inline(always)]
    unsafe fn min_wide<D: Dp>(_: *const u8, _: usize, dw: __m128) -> __m128 {
        _mm_mul_ps(dw, _mm_set1_ps(-128.0))
    }
}

impl Packed for Q4_0 {
    const TYPE: DType = DType::Q4_0;
    const QB: usize = QK / 2;
    #[inline(always)]
    fn has_min<D: Dp>() -> bool {
        true
    }
    #[inline(always)]
    unsafe fn isums<D: Dp, const T: usize, const FULL: bool>(
        p: *const u8,
        g: usize,
        h: usize,
        mask: __m256i,
        ap: &[*const u8; T],
    ) -> [__m256i; T] {
        nibble_isums::<D, T, FULL>(p, g, h, mask, ap)
    }
    #[inline(always)]
    unsafe fn min<D: Dp>(_: *const u8, _: usize, _: usize, _: usize, dw: __m256) -> __m256 {
        _mm256_mul_ps(dw, _mm256_set1_ps(-8.0))
    }
    #[inline(always)]
    unsafe fn wide_isums<D: Dp, const T: usize>(
        p: *const u8,
        g: usize,
        ap: &[*const u8; T],
    ) -> [__m256i; T] {
        nibble_wide::<D, T>(p, g, ap)
    }
    #[inline(always)]
    unsafe fn min_wide<D: Dp>(_: *const u8, _: usize, dw: __m128) -> __m128 {
        _mm_mul_ps(dw, _mm_set1_ps(-8.0))
    }
}

impl Packed for Q4_1 {
    const TYPE: DType = DType::Q4_1;
    const QB: usize = QK / 2;
    #[inline(always)]
    fn has_min<D: Dp>() -> bool {
        true
    }
    #[inline(always)]
    unsafe fn isums<D: Dp, const T: usize, const FULL: bool>(
        p: *const u8,
        g: usize,
        h: usize,
        mask: __m256i,
        ap: &[*const u8; T],
    ) -> [__m256i; T] {
        nibble_isums::<D, T, FULL>(p, g, h, mask, ap)
    }
    #[inline(always)]
    unsafe fn min<D: Dp>(p: *const u8, g: usize, h: usize, n: usize, _: __m256) -> __m256 {
        halves(p.add(g * Self::QB + 2 * g + 16 * h), n)
    }
    #[inline(always)]
    unsafe fn wide_isums<D: Dp, const T: usize>(
        p: *const u8,
        g: usize,
        ap: &[*const u8; T],
    ) -> [__m256i; T] {
        nibble_wide::<D, T>(p, g, ap)
    }
    #[inline(always)]
    unsafe fn min_wide<D: Dp>(p: *const u8, g: usize, _: __m128) -> __m128 {
        wide_halves(p.add(g * Self::QB + 2 * g), g)
    }
}

/// The `g` (1 or 2) f16 at `p` as f32 in lanes 0 and 1, the others zero.
#[inline(always)]
unsafe fn wide_halves(p: *const u8, g: usize) -> __m128 {
    let h0 = i16::from_le_bytes(std::ptr::read_unaligned(p as *const [u8; 2]));
    let h1 = if g == 2 {
        i16::from_le_bytes(std::ptr::read_unaligned(p.add(2) as *const [u8; 2]))
    } else {
        0
    };
    _mm_cvtph_ps(_mm_setr_epi16(h0, h1, 0, 0, 0, 0, 0, 0))
}

/// `out[t] = dot(row, acts[t])` for `T` activation rows.
#[inline(always)]
unsafe fn tile<B: Packed, D: Dp, const T: usize>(
    w: *const u8,
    nb: usize,
    acts: &[Q8Blocks<'_>],
    out: &mut [f32],
) {
    let bb = B::TYPE.block_bytes();
    let mut acc = [_mm256_setzero_ps(); T];
    let mut b0 = 0;
    while b0 < nb {
        let g = (nb - b0).min(GROUP);
        let p = w.add(b0 * bb);
        let mut ap = [std::ptr::null::<u8>(); T];
        for (p, a) in ap.iter_mut().zip(acts) {
            *p = a.qs.as_ptr().add(b0 * QK) as *const u8;
        }
        if g <= WIDE_MAX {
            wide::<B, D, T>(p, g, b0, acts, &ap, &mut acc);
        } else if g == GROUP {
            // A whole group spelled with the constant, so every chunk's offset is an immediate
            // from the token's pointer: with `g` a variable, the 32 addresses of a half were
            // computed ahead and spilled, one reload per multiply-accumulate.
            for h in 0..2 {
                half::<B, D, T, true>(p, GROUP, h, 8, b0, acts, &ap, &mut acc);
            }
        } else {
            for h in 0..g.div_ceil(8) {
                let n = (g - 8 * h).min(8);
                if n == 8 {
                    half::<B, D, T, true>(p, g, h, n, b0, acts, &ap, &mut acc);
                } else {
                    half::<B, D, T, false>(p, g, h, n, b0, acts, &ap, &mut acc);
                }
            }
        }
        b0 += g;
    }
    for t in 0..T {
        out[t] = hsum(acc[t]);
    }
}

/// Adds half `h` (its `n` blocks) of the group of `g` blocks at `p`, which starts at block
/// `b0`, to every token's accumulator.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn half<B: Packed, D: Dp, const T: usize, const FULL: bool>(
    p: *const u8,
    g: usize,
    h: usize,
    n: usize,
    b0: usize,
    acts: &[Q8Blocks<'_>],
    ap: &[*const u8; T],
    acc: &mut [__m256; T],
) {
    let mask = if FULL {
        _mm256_set1_epi32(-1)
    } else {
        lane_mask(n)
    };
    let isum = B::isums::<D, T, FULL>(p, g, h, mask, ap);
    let dw = halves(p.add(g * B::QB + 16 * h), n);
    let m = B::min::<D>(p, g, h, n, dw);
    let blk = b0 + 8 * h;
    for t in 0..T {
        let a = &acts[t];
        let da = floats::<FULL>(a.d.as_ptr().add(blk), mask);
        let term = _mm256_mul_ps(_mm256_cvtepi32_ps(isum[t]), _mm256_mul_ps(dw, da));
        let term = if B::has_min::<D>() {
            let sa = floats::<FULL>(a.s.as_ptr().add(blk), mask);
            _mm256_fmadd_ps(m, sa, term)
        } else {
            term
        };
        acc[t] = _mm256_add_ps(acc[t], term);
    }
}

/// Adds a wide group (one or two blocks at block `b0`) to every token's accumulator.
#[inline(always)]
unsafe fn wide<B: Packed, D: Dp, const T: usize>(
    p: *const u8,
    g: usize,
    b0: usize,
    acts: &[Q8Blocks<'_>],
    ap: &[*const u8; T],
    acc: &mut [__m256; T],
) {
    let isum = B::wide_isums::<D, T>(p, g, ap);
    let dw = wide_halves(p.add(g * B::QB), g);
    let m = B::min_wide::<D>(p, g, dw);
    // Lane k of the sums belongs to block (k / 4) % g.
    let blocks = if g == 2 {
        _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1)
    } else {
        _mm256_setzero_si256()
    };
    for t in 0..T {
        let a = &acts[t];
        let scale = _mm256_permutevar8x32_ps(
            _mm256_castps128_ps256(_mm_mul_ps(dw, wide_pair(a.d, b0, g))),
            blocks,
        );
        let term = _mm256_mul_ps(_mm256_cvtepi32_ps(isum[t]), scale);
        // Each block's m * s_a is added once, in lane 0 or 1.
        let term = if B::has_min::<D>() {
            let ms = _mm_mul_ps(m, wide_pair(a.s, b0, g));
            _mm256_add_ps(term, _mm256_set_m128(_mm_setzero_ps(), ms))
        } else {
            term
        };
        acc[t] = _mm256_add_ps(acc[t], term);
    }
}

/// `v[b0]` and (with two blocks) `v[b0 + 1]` in lanes 0 and 1, the others zero.
#[inline(always)]
unsafe fn wide_pair(v: &[f32], b0: usize, g: usize) -> __m128 {
    let second = if g == 2 { v[b0 + 1] } else { 0.0 };
    _mm_setr_ps(v[b0], second, 0.0, 0.0)
}

#[inline(always)]
unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// `out[r * T + t] = dot(ws[r], xs[t])` for float weight rows (f32, or f16 bits; one or two
/// rows) and 1 to [`FLOAT_TILE`] f32 activation rows: each weight vector is loaded (and
/// converted) once for every token of a pass, and each activation vector once for both rows.
/// Two rows meet at most four tokens per pass (eight accumulators); one row meets all eight.
fn float_tile<W: FloatWeight>(ws: &[&[W]], xs: &[&[f32]], out: &mut [f32]) {
    assert!(
        (1..=FLOAT_TILE).contains(&xs.len()) && (1..=2).contains(&ws.len()),
        "a float tile takes 1 or 2 weight rows and 1 to {FLOAT_TILE} activation rows"
    );
    assert_eq!(out.len(), ws.len() * xs.len(), "float tile: output size");
    let n = ws[0].len();
    assert!(
        xs.iter().all(|x| x.len() == n) && ws.iter().all(|w| w.len() == n),
        "float tile: row lengths differ"
    );
    let (rows, tokens) = (ws.len(), xs.len());
    let pass = if rows == 1 {
        FLOAT_TILE
    } else {
        FLOAT_TILE / 2
    };
    // Two even passes rather than a full one and a remnant.
    let first = if tokens <= pass {
        tokens
    } else {
        tokens.div_ceil(2)
    };
    let mut res = [0f32; FLOAT_TILE];
    for (t0, tn) in [(0, first), (first, tokens - first)] {
        if tn == 0 {
            continue;
        }
        let x = &xs[t0..t0 + tn];
        // SAFETY: only reachable through the tables above (AVX2, FMA and F16C detected); the
        // loads stay inside the slices checked above.
        unsafe {
            macro_rules! by_tokens {
                ($r:literal; $($t:literal)*) => {
                    match tn {
                        $($t => float_tile_avx2::<W, $r, $t>(ws, x, &mut res),)*
                        _ => unreachable!("checked above"),
                    }
                };
            }
            if rows == 1 {
                by_tokens!(1; 1 2 3 4 5 6 7 8)
            } else {
                by_tokens!(2; 1 2 3 4)
            }
        }
        for r in 0..rows {
            out[r * tokens + t0..r * tokens + t0 + tn].copy_from_slice(&res[r * tn..(r + 1) * tn]);
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn float_tile_avx2<W: FloatWeight, const R: usize, const T: usize>(
    ws: &[&[W]],
    xs: &[&[f32]],
    out: &mut [f32],
) {
    let n = ws[0].len();
    let mut acc = [[_mm256_setzero_ps(); T]; R];
    let mut i = 0;
    while i + 8 <= n {
        let w: [__m256; R] = std::array::from_fn(|r| W::load8(ws[r].as_ptr().add(i)));
        for t in 0..T {
            let x = _mm256_loadu_ps(xs[t].as_ptr().add(i));
            for r in 0..R {
                acc[r][t] = _mm256_fmadd_ps(w[r], x, acc[r][t]);
            }
        }
        i += 8;
    }
    if i < n {
        let k = n - i;
        let mask = lane_mask(k);
        let w: [__m256; R] = std::array::from_fn(|r| W::load_part(ws[r].as_ptr().add(i), k));
        for t in 0..T {
            let x = _mm256_maskload_ps(xs[t].as_ptr().add(i), mask);
            for r in 0..R {
                acc[r][t] = _mm256_fmadd_ps(w[r], x, acc[r][t]);
            }
        }
    }
    for r in 0..R {
        for t in 0..T {
            out[r * T + t] = hsum(acc[r][t]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::blocks::Q8Row;
    use crate::kernels::packed::MAX_TILE;
    use crate::kernels::packed::{dot_reference, pack_activations, pack_row};
    use crate::kernels::test_support::{magnitude, random_blocks, Rng};

    fn tables() -> Vec<(&'static str, &'static PackedKernels)> {
        let mut out = Vec::new();
        if is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
        {
            out.push(("avx2 packed", &PACKED));
            if is_x86_feature_detected!("avxvnni") {
                out.push(("avx2+vnni packed", &PACKED_VNNI));
            }
        }
        out
    }

    #[test]
    fn packed_tiles_match_the_reference() {
        let tables = tables();
        if tables.is_empty() {
            eprintln!("no AVX2 on this CPU: nothing to test");
            return;
        }
        let mut rng = Rng(0x005E_EDA2);
        for (name, k) in tables {
            eprintln!("testing {name}");
            // Wide groups (1, 2, 18), partial halves (3, 15, 33), a half exactly (8, 24), whole
            // groups (16, 48) and a partial second half (17 is 16 + 1 wide, 31 is 16 + 15).
            for nb in [1, 2, 3, 8, 15, 16, 17, 18, 24, 31, 33, 48] {
                let n = nb * QK;
                let rows: Vec<Vec<f32>> = (0..MAX_TILE)
                    .map(|_| (0..n).map(|_| rng.f32() * 3.0).collect())
                    .collect();
                let flat: Vec<f32> = rows.concat();
                let mut pa = Q8Row::default();
                pack_activations(&flat, n, &mut pa);
                let view = |t: usize| Q8Blocks {
                    qs: &pa.qs[t * n..(t + 1) * n],
                    d: &pa.d[t * nb..(t + 1) * nb],
                    s: &pa.s[t * nb..(t + 1) * nb],
                };
                for ty in [DType::Q8_0, DType::Q4_0, DType::Q4_1] {
                    let raw = random_blocks(&mut rng, ty, n);
                    let mut w = vec![0u8; raw.len()];
                    pack_row(ty, &raw, &mut w);
                    for tn in 1..=MAX_TILE {
                        let acts: Vec<_> = (0..tn).map(view).collect();
                        let mut got = vec![0f32; tn];
                        k.dot_row(ty, &w, &acts, &mut got);
                        for t in 0..tn {
                            let want = dot_reference(ty, &w, view(t));
                            let mut one = Q8Row::default();
                            one.quantize_from(&rows[t]);
                            let tol = (2 * nb + 40) as f32
                                * f32::EPSILON
                                * (magnitude(ty, &raw, &one) + 128.0 * sum_ms(ty, &raw, &one))
                                + f32::MIN_POSITIVE;
                            assert!(
                                (got[t] - want).abs() <= tol,
                                "{name} {ty} nb={nb} tile={tn} row {t}: {} vs {want}",
                                got[t]
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn extreme_quants_do_not_saturate() {
        // Every weight nibble 15 (or Q8_0 quant -128) against activations at +-127 of one sign
        // per block: the largest i16 partial sums the plain kernel forms.
        let mut rng = Rng(0xE87);
        for (name, k) in tables() {
            for nb in [1, 2, 16, 19] {
                let n = nb * QK;
                let x: Vec<f32> = (0..n)
                    .map(|i| {
                        if (i / QK).is_multiple_of(2) {
                            1.0
                        } else {
                            -1.0
                        }
                    })
                    .collect();
                let mut pa = Q8Row::default();
                pack_activations(&x, n, &mut pa);
                for ty in [DType::Q8_0, DType::Q4_0, DType::Q4_1] {
                    let mut raw = random_blocks(&mut rng, ty, n);
                    let off = if ty == DType::Q4_1 { 4 } else { 2 };
                    let fill = if ty == DType::Q8_0 { 0x80 } else { 0xFF };
                    for blk in raw.chunks_exact_mut(ty.block_bytes()) {
                        blk[off..].iter_mut().for_each(|b| *b = fill);
                    }
                    let mut w = vec![0u8; raw.len()];
                    pack_row(ty, &raw, &mut w);
                    let mut got = [0f32];
                    k.dot_row(ty, &w, &[pa.blocks()], &mut got);
                    let want = dot_reference(ty, &w, pa.blocks());
                    let tol = 1e-4 * (1.0 + want.abs());
                    assert!(
                        (got[0] - want).abs() <= tol,
                        "{name} {ty} nb={nb}: {} vs {want}",
                        got[0]
                    );
                }
            }
        }
    }

    #[test]
    fn vnni_changes_nothing_but_the_min_term() {
        // Q4_0 and Q4_1 put the same exact integer sums in the same lanes either way, so the
        // results are identical to the bit; Q8_0 under VNNI adds and takes back 128 * sum(a).
        let tables = tables();
        if tables.len() < 2 {
            eprintln!("no AVX-VNNI on this CPU: nothing to compare");
            return;
        }
        let (plain, vnni) = (tables[0].1, tables[1].1);
        let mut rng = Rng(0xB17);
        for nb in [1, 2, 3, 17, 33] {
            let n = nb * QK;
            let x: Vec<f32> = (0..2 * n).map(|_| rng.f32()).collect();
            let mut pa = Q8Row::default();
            pack_activations(&x, n, &mut pa);
            let acts = [
                Q8Blocks {
                    qs: &pa.qs[..n],
                    d: &pa.d[..nb],
                    s: &pa.s[..nb],
                },
                Q8Blocks {
                    qs: &pa.qs[n..],
                    d: &pa.d[nb..],
                    s: &pa.s[nb..],
                },
            ];
            for ty in [DType::Q4_0, DType::Q4_1] {
                let raw = random_blocks(&mut rng, ty, n);
                let mut w = vec![0u8; raw.len()];
                pack_row(ty, &raw, &mut w);
                let (mut a, mut b) = ([0f32; 2], [0f32; 2]);
                plain.dot_row(ty, &w, &acts, &mut a);
                vnni.dot_row(ty, &w, &acts, &mut b);
                assert_eq!(a.map(f32::to_bits), b.map(f32::to_bits), "{ty} nb={nb}");
            }
        }
    }

    #[test]
    #[should_panic(expected = "has no packed kernel")]
    fn other_types_are_refused() {
        let Some((_, k)) = tables().into_iter().next() else {
            panic!("no AVX2: has no packed kernel (nothing to test)");
        };
        let raw = vec![0u8; DType::Q4_K.block_bytes()];
        let mut a = Q8Row::default();
        pack_activations(&[0.5; 256], 256, &mut a);
        k.dot_row(DType::Q4_K, &raw, &[a.blocks()], &mut [0.0]);
    }

    #[test]
    fn float_tiles_match_the_scalar_dot() {
        let tables = tables();
        let mut rng = Rng(0xF1_0A2);
        for (name, k) in tables {
            for n in [1, 7, 8, 9, 15, 16, 17, 33, 64, 576, 1000] {
                let w: Vec<f32> = (0..n).map(|_| rng.f32()).collect();
                let wh: Vec<u16> = w
                    .iter()
                    .map(|&v| half::f16::from_f32(v).to_bits())
                    .collect();
                let xs: Vec<Vec<f32>> = (0..FLOAT_TILE)
                    .map(|_| (0..n).map(|_| rng.f32()).collect())
                    .collect();
                let wf: Vec<f32> = wh
                    .iter()
                    .map(|&b| half::f16::from_bits(b).to_f32())
                    .collect();
                for tn in 1..=FLOAT_TILE {
                    let rows: Vec<&[f32]> = xs[..tn].iter().map(|x| x.as_slice()).collect();
                    let (mut g32, mut g16) = (vec![0f32; tn], vec![0f32; tn]);
                    (k.dot_f32)(&[&w], &rows, &mut g32);
                    (k.dot_f16)(&[&wh], &rows, &mut g16);
                    // Two rows: the first row again, so both halves must equal the one-row
                    // results whichever passes the tokens were cut into.
                    let (mut p32, mut p16) = (vec![0f32; 2 * tn], vec![0f32; 2 * tn]);
                    (k.dot_f32)(&[&w, &w], &rows, &mut p32);
                    (k.dot_f16)(&[&wh, &wh], &rows, &mut p16);
                    assert_eq!(&p32[..tn], &g32[..]);
                    assert_eq!(&p32[tn..], &g32[..]);
                    assert_eq!(&p16[..tn], &g16[..]);
                    assert_eq!(&p16[tn..], &g16[..]);
                    for t in 0..tn {
                        let m32: f32 = w.iter().zip(&xs[t]).map(|(a, b)| (a * b).abs()).sum();
                        let m16: f32 = wf.iter().zip(&xs[t]).map(|(a, b)| (a * b).abs()).sum();
                        let tol =
                            |m: f32| (n as f32 / 4.0 + 64.0) * f32::EPSILON * m + f32::MIN_POSITIVE;
                        let want32 = crate::kernels::scalar::dot_f32(&w, &xs[t]);
                        let want16 = crate::kernels::scalar::dot_f32(&wf, &xs[t]);
                        assert!(
                            (g32[t] - want32).abs() <= tol(m32),
                            "{name} f32 n={n} t={t}"
                        );
                        assert!(
                            (g16[t] - want16).abs() <= tol(m16),
                            "{name} f16 n={n} t={t}"
                        );
                    }
                }
            }
        }
    }

    /// Magnitude of the `m * s_a` terms the packed kernels add that the reference does not
    /// (Q4_0's -8 d_w and VNNI Q8_0's -128 d_w), so the tolerance covers their cancellation.
    fn sum_ms(ty: DType, raw: &[u8], a: &Q8Row) -> f32 {
        raw.chunks_exact(ty.block_bytes())
            .enumerate()
            .map(|(i, b)| (crate::kernels::packed::half_at(b, 0) * a.s[i]).abs())
            .sum()
    }
}
