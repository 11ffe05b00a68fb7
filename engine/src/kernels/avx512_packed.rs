//! AVX-512 kernels for packed rows ([`super::packed`]): one weight row against up to four
//! activation rows at once.
//!
//! Each group of up to 16 blocks is loaded and unpacked once, then met by every activation row
//! of the tile, so prefill (many rows) pays the nibble unpacking once per four tokens and decode
//! (one row) pays eight multiply-accumulates and a handful of scale operations per 16 blocks.
//! Lane `b` of the integer accumulator ends up holding block `b`'s exact dot product, so the
//! scales of the whole group apply as one vector: sum over lanes of
//! `isum * d_w * d_a + m * s_a`, where `s_a = d_a * sum(q_a)` and `m` is the block's minimum
//! (Q4_1, Q5_1), `-8 d_w` (Q4_0, whose quants are stored as `q + 8`), `-16 d_w` (Q5_0, stored
//! as `q + 16`), or `-128 d_w` (Q8_0 under VNNI, whose quants are made unsigned by adding 128).

use super::avx512_interleaved::FloatWeight;
use super::blocks::Q8Blocks;
use super::packed::{dot, row_kernels_from_tile, run_rows, PackedRun, TileOut, GROUP, WIDE_MAX};
use super::PackedKernels;
use crate::dtype::{DType, QK};
use std::arch::x86_64::*;

pub(super) static PACKED: PackedKernels = PackedKernels {
    types: super::packed::PACKED_TYPES,
    dot: dot::<Maddubs>,
    dot_f16: float_tile::<u16>,
    dot_f32: float_tile::<f32>,
    dot_interleaved: super::avx512_interleaved::dot,
};

pub(super) static PACKED_VNNI: PackedKernels = PackedKernels {
    types: super::packed::PACKED_TYPES,
    dot: dot::<Vnni>,
    dot_f16: float_tile::<u16>,
    dot_f32: float_tile::<f32>,
    dot_interleaved: super::avx512_interleaved::dot,
};

// Float calls take up to `FLOAT_TILE` (8) activation rows: eight tokens share each converted f16
// weight vector, so the conversions (which compete with the FMAs for the same ports) are an
// eighth of the work.
use super::FLOAT_TILE;

// Soundness: `packed::dot::<D>` is only reachable through the two statics, which `avx512.rs` hands
// out only after detecting AVX-512 F/BW/VL (and VNNI for `PACKED_VNNI`). `check_call` keeps every
// load inside the slices: masked-off lanes are never read.

/// How unsigned-by-signed byte products are accumulated into i32 lanes.
trait Dp {
    const VNNI: bool;
    /// `acc` lane k += sum of u[4k+j] * s[4k+j] for j in 0..4.
    unsafe fn dp(acc: __m512i, u: __m512i, s: __m512i) -> __m512i;
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
        DType::Q5_0 => run_rows::<Kernel<Q5_0, D>>(w, nb, a, o),
        DType::Q5_1 => run_rows::<Kernel<Q5_1, D>>(w, nb, a, o),
        other => panic!("{other} has no packed kernel"),
    }
}

row_kernels_from_tile!(Packed, Dp);

impl Dp for Maddubs {
    const VNNI: bool = false;
    #[inline(always)]
    unsafe fn dp(acc: __m512i, u: __m512i, s: __m512i) -> __m512i {
        // Every caller keeps adjacent pair sums within i16: 4-bit weights (2 * 15 * 127) or
        // Q8_0 magnitudes with the sign moved to the activation (2 * 128 * 127).
        let pairs = _mm512_maddubs_epi16(u, s);
        _mm512_add_epi32(acc, _mm512_madd_epi16(pairs, _mm512_set1_epi16(1)))
    }
}

impl PackedRun for Maddubs {
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    unsafe fn run(ty: DType, w: *const u8, nb: usize, a: &[Q8Blocks<'_>], o: TileOut) {
        run_any::<Self>(ty, w, nb, a, o)
    }
}

impl Dp for Vnni {
    const VNNI: bool = true;
    #[inline(always)]
    unsafe fn dp(acc: __m512i, u: __m512i, s: __m512i) -> __m512i {
        _mm512_dpbusd_epi32(acc, u, s)
    }
}

impl PackedRun for Vnni {
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    unsafe fn run(ty: DType, w: *const u8, nb: usize, a: &[Q8Blocks<'_>], o: TileOut) {
        run_any::<Self>(ty, w, nb, a, o)
    }
}

/// One packed block type: how a group's eight weight steps are loaded, how a step meets an
/// activation step, and the per-lane constant term.
trait Packed {
    const TYPE: DType;
    /// Bytes per block before the scales: the quants, and for Q5 the fifth bits.
    const QB: usize;
    /// The eight weight steps of a group of `g` blocks at `p`, in activation chunk order.
    unsafe fn load<D: Dp>(p: *const u8, g: usize, lanes: __mmask16) -> [__m512i; 8];
    /// `acc` + the products of weight step `w` with activation step `a`.
    #[inline(always)]
    unsafe fn step<D: Dp>(acc: __m512i, w: __m512i, a: __m512i) -> __m512i {
        D::dp(acc, w, a)
    }
    /// Per-lane `m` of `isum * d_w * d_a + m * s_a`.
    unsafe fn min<D: Dp>(p: *const u8, g: usize, lanes: __mmask16, dw: __m512) -> __m512;
    /// The weights of a wide group (one or two blocks) as one vector of step bytes.
    unsafe fn load_wide<D: Dp>(p: *const u8, g: usize) -> __m512i;
    /// `m` per block of a wide group (lanes 0 and 1).
    unsafe fn min_wide<D: Dp>(p: *const u8, g: usize, dw: __m128) -> __m128;
}

/// Byte mask of a wide group's `32 * g` quant (or activation) bytes.
#[inline(always)]
fn wide_bytes(g: usize) -> __mmask64 {
    if g == 2 {
        !0
    } else {
        0xFFFF_FFFF
    }
}

/// A wide group's nibble bytes (16 per block, in block order) unpacked to the wide order.
#[inline(always)]
unsafe fn wide_nibbles(p: *const u8, g: usize) -> __m512i {
    let k: __mmask32 = if g == 2 { !0 } else { 0xFFFF };
    let v = _mm256_maskz_loadu_epi8(k, p as *const i8);
    let mask = _mm256_set1_epi8(0x0F);
    let lo = _mm256_and_si256(v, mask);
    let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v), mask);
    if g == 2 {
        _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
    } else {
        _mm512_inserti32x4::<1>(_mm512_zextsi256_si512(lo), _mm256_castsi256_si128(hi))
    }
}

/// Lane `k` of a g-wide group's result belongs to block `(k / 4) % g`.
#[inline(always)]
unsafe fn wide_blocks(g: usize) -> __m512i {
    if g == 2 {
        _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1)
    } else {
        _mm512_setzero_si512()
    }
}

struct Q8_0;
struct Q4_0;
struct Q4_1;
struct Q5_0;
struct Q5_1;

#[inline(always)]
unsafe fn chunk(p: *const u8, s: usize, g: usize, lanes: __mmask16) -> __m512i {
    _mm512_maskz_loadu_epi32(lanes, p.add(s * 4 * g) as *const i32)
}

#[inline(always)]
unsafe fn nibble_steps(p: *const u8, g: usize, lanes: __mmask16) -> [__m512i; 8] {
    let mask = _mm512_set1_epi8(0x0F);
    let mut out = [_mm512_setzero_si512(); 8];
    for s in 0..4 {
        let v = chunk(p, s, g, lanes);
        out[s] = _mm512_and_si512(v, mask);
        out[4 + s] = _mm512_and_si512(_mm512_srli_epi16::<4>(v), mask);
    }
    out
}

#[inline(always)]
unsafe fn halves(p: *const u8, lanes: __mmask16) -> __m512 {
    _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(lanes, p as *const i16))
}

impl Packed for Q8_0 {
    const TYPE: DType = DType::Q8_0;
    const QB: usize = QK;
    #[inline(always)]
    unsafe fn load<D: Dp>(p: *const u8, g: usize, lanes: __mmask16) -> [__m512i; 8] {
        let mut out = [_mm512_setzero_si512(); 8];
        for (s, o) in out.iter_mut().enumerate() {
            let v = chunk(p, s, g, lanes);
            // VNNI: q + 128 is an unsigned byte; the 128 * sum(a) it adds is taken back by m.
            *o = if D::VNNI {
                _mm512_xor_si512(v, _mm512_set1_epi8(-128))
            } else {
                v
            };
        }
        out
    }
    #[inline(always)]
    unsafe fn step<D: Dp>(acc: __m512i, w: __m512i, a: __m512i) -> __m512i {
        if D::VNNI {
            D::dp(acc, w, a)
        } else {
            // Without VNNI the pair sums of (q + 128) * a could saturate i16, so the weight's
            // sign moves onto the activation instead (Q8Row never produces -128, so negating
            // an activation cannot wrap).
            let neg = _mm512_movepi8_mask(w);
            let sa = _mm512_mask_sub_epi8(a, neg, _mm512_setzero_si512(), a);
            D::dp(acc, _mm512_abs_epi8(w), sa)
        }
    }
    #[inline(always)]
    unsafe fn min<D: Dp>(_: *const u8, _: usize, _: __mmask16, dw: __m512) -> __m512 {
        if D::VNNI {
            _mm512_mul_ps(dw, _mm512_set1_ps(-128.0))
        } else {
            _mm512_setzero_ps()
        }
    }
    #[inline(always)]
    unsafe fn load_wide<D: Dp>(p: *const u8, g: usize) -> __m512i {
        let v = _mm512_maskz_loadu_epi8(wide_bytes(g), p as *const i8);
        if D::VNNI {
            // Only the loaded bytes get the offset: the rest must stay 0 to add nothing.
            let k: __mmask16 = if g == 2 { !0 } else { 0x00FF };
            _mm512_mask_xor_epi32(v, k, v, _mm512_set1_epi8(-128))
        } else {
            v
        }
    }
    #[inline(always)]
    unsafe fn min_wide<D: Dp>(_: *const u8, _: usize, dw: __m128) -> __m128 {
        if D::VNNI {
            _mm_mul_ps(dw, _mm_set1_ps(-128.0))
        } else {
            _mm_setzero_ps()
        }
    }
}

impl Packed for Q4_0 {
    const TYPE: DType = DType::Q4_0;
    const QB: usize = QK / 2;
    #[inline(always)]
    unsafe fn load<D: Dp>(p: *const u8, g: usize, lanes: __mmask16) -> [__m512i; 8] {
        nibble_steps(p, g, lanes)
    }
    #[inline(always)]
    unsafe fn min<D: Dp>(_: *const u8, _: usize, _: __mmask16, dw: __m512) -> __m512 {
        _mm512_mul_ps(dw, _mm512_set1_ps(-8.0))
    }
    #[inline(always)]
    unsafe fn load_wide<D: Dp>(p: *const u8, g: usize) -> __m512i {
        wide_nibbles(p, g)
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
    unsafe fn load<D: Dp>(p: *const u8, g: usize, lanes: __mmask16) -> [__m512i; 8] {
        nibble_steps(p, g, lanes)
    }
    #[inline(always)]
    unsafe fn min<D: Dp>(p: *const u8, g: usize, lanes: __mmask16, _: __m512) -> __m512 {
        halves(p.add(g * Self::QB + 2 * g), lanes)
    }
    #[inline(always)]
    unsafe fn load_wide<D: Dp>(p: *const u8, g: usize) -> __m512i {
        wide_nibbles(p, g)
    }
    #[inline(always)]
    unsafe fn min_wide<D: Dp>(p: *const u8, g: usize, _: __m128) -> __m128 {
        let k: __mmask8 = (1u8 << g) - 1;
        _mm_cvtph_ps(_mm_maskz_loadu_epi16(
            k,
            p.add(g * Self::QB + 2 * g) as *const i16,
        ))
    }
}

/// The eight weight steps of a 5-bit group: [`nibble_steps`] with each byte's fifth bit at bit
/// 4. The fifth-bit chunk (byte `j`, bit `k` = step `k`'s bit for byte `j`) is split into its
/// low and high nibbles once; a 16-entry table per bit position then turns a nibble into a
/// clean `0x10` or `0x00` byte with one shuffle, and one bit-select merges it with the weight
/// nibble (whose high half the select discards, so the low steps need no mask of their own).
#[inline(always)]
unsafe fn q5_steps(p: *const u8, g: usize, lanes: __mmask16) -> [__m512i; 8] {
    let mask = _mm512_set1_epi8(0x0F);
    let qh = chunk(p, 4, g, lanes);
    let qh_lo = _mm512_and_si512(qh, mask);
    let qh_hi = _mm512_and_si512(_mm512_srli_epi16::<4>(qh), mask);
    let mut out = [_mm512_setzero_si512(); 8];
    for s in 0..4 {
        let table = fifth_bit_table(s);
        let v = chunk(p, s, g, lanes);
        let hi = _mm512_srli_epi16::<4>(v);
        // mask ? nibble : fifth bit (0xE4 = C ? A : B)
        out[s] = _mm512_ternarylogic_epi32::<0xE4>(v, _mm512_shuffle_epi8(table, qh_lo), mask);
        out[4 + s] = _mm512_ternarylogic_epi32::<0xE4>(hi, _mm512_shuffle_epi8(table, qh_hi), mask);
    }
    out
}

/// `table[i] = 0x10` if bit `k` of `i` is set, else 0, in every 128-bit lane.
#[inline(always)]
unsafe fn fifth_bit_table(k: usize) -> __m512i {
    let t = &super::packed::FIFTH_BIT[k];
    _mm512_broadcast_i32x4(_mm_loadu_si128(t.as_ptr() as *const __m128i))
}

/// A 5-bit wide group's weights: the nibbles as [`wide_nibbles`], plus 16 wherever the
/// group's fifth-bit mask (bit `i` = byte `i`, 32 bits per block) is set.
#[inline(always)]
unsafe fn wide_q5(p: *const u8, g: usize) -> __m512i {
    let w = wide_nibbles(p, g);
    let bits = p.add(16 * g);
    let m: __mmask64 = if g == 2 {
        std::ptr::read_unaligned(bits as *const u64)
    } else {
        std::ptr::read_unaligned(bits as *const u32) as u64
    };
    _mm512_mask_add_epi8(w, m, w, _mm512_set1_epi8(16))
}

impl Packed for Q5_0 {
    const TYPE: DType = DType::Q5_0;
    const QB: usize = QK / 2 + 4;
    #[inline(always)]
    unsafe fn load<D: Dp>(p: *const u8, g: usize, lanes: __mmask16) -> [__m512i; 8] {
        q5_steps(p, g, lanes)
    }
    #[inline(always)]
    unsafe fn min<D: Dp>(_: *const u8, _: usize, _: __mmask16, dw: __m512) -> __m512 {
        _mm512_mul_ps(dw, _mm512_set1_ps(-16.0))
    }
    #[inline(always)]
    unsafe fn load_wide<D: Dp>(p: *const u8, g: usize) -> __m512i {
        wide_q5(p, g)
    }
    #[inline(always)]
    unsafe fn min_wide<D: Dp>(_: *const u8, _: usize, dw: __m128) -> __m128 {
        _mm_mul_ps(dw, _mm_set1_ps(-16.0))
    }
}

impl Packed for Q5_1 {
    const TYPE: DType = DType::Q5_1;
    const QB: usize = QK / 2 + 4;
    #[inline(always)]
    unsafe fn load<D: Dp>(p: *const u8, g: usize, lanes: __mmask16) -> [__m512i; 8] {
        q5_steps(p, g, lanes)
    }
    #[inline(always)]
    unsafe fn min<D: Dp>(p: *const u8, g: usize, lanes: __mmask16, _: __m512) -> __m512 {
        halves(p.add(g * Self::QB + 2 * g), lanes)
    }
    #[inline(always)]
    unsafe fn load_wide<D: Dp>(p: *const u8, g: usize) -> __m512i {
        wide_q5(p, g)
    }
    #[inline(always)]
    unsafe fn min_wide<D: Dp>(p: *const u8, g: usize, _: __m128) -> __m128 {
        let k: __mmask8 = (1u8 << g) - 1;
        _mm_cvtph_ps(_mm_maskz_loadu_epi16(
            k,
            p.add(g * Self::QB + 2 * g) as *const i16,
        ))
    }
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
    let mut acc = [_mm512_setzero_ps(); T];
    let mut b0 = 0;
    while b0 < nb {
        let g = (nb - b0).min(GROUP);
        let p = w.add(b0 * bb);
        if g <= WIDE_MAX {
            wide::<B, D, T>(p, g, b0, acts, &mut acc);
            b0 += g;
            continue;
        }
        if g == GROUP {
            // Spelled with the constant, so every chunk's offset is an immediate from the
            // token's pointer rather than an address computed ahead and spilled.
            group::<B, D, T>(&mut acc, p, GROUP, !0, b0, acts);
        } else {
            group::<B, D, T>(&mut acc, p, g, (1u16 << g) - 1, b0, acts);
        }
        b0 += g;
    }
    for t in 0..T {
        out[t] = _mm512_reduce_add_ps(acc[t]);
    }
}

/// Adds the group of `g` blocks at `p` (block `b0` of the row; the blocks of `lanes`) to every
/// token's accumulator.
#[inline(always)]
unsafe fn group<B: Packed, D: Dp, const T: usize>(
    acc: &mut [__m512; T],
    p: *const u8,
    g: usize,
    lanes: __mmask16,
    b0: usize,
    acts: &[Q8Blocks<'_>],
) {
    let zero = _mm512_setzero_si512();
    let ws = B::load::<D>(p, g, lanes);
    let dw = halves(p.add(g * B::QB), lanes);
    let m = B::min::<D>(p, g, lanes, dw);
    for t in 0..T {
        let a = &acts[t];
        let ap = a.qs.as_ptr().add(b0 * QK) as *const u8;
        // Two chains so consecutive multiply-accumulates do not wait on each other.
        let (mut i0, mut i1) = (zero, zero);
        for s in (0..8).step_by(2) {
            i0 = B::step::<D>(i0, ws[s], chunk(ap, s, g, lanes));
            i1 = B::step::<D>(i1, ws[s + 1], chunk(ap, s + 1, g, lanes));
        }
        let isum = _mm512_cvtepi32_ps(_mm512_add_epi32(i0, i1));
        let da = _mm512_maskz_loadu_ps(lanes, a.d.as_ptr().add(b0));
        let sa = _mm512_maskz_loadu_ps(lanes, a.s.as_ptr().add(b0));
        let with_min = _mm512_fmadd_ps(m, sa, acc[t]);
        acc[t] = _mm512_fmadd_ps(isum, _mm512_mul_ps(dw, da), with_min);
    }
}

/// `out[r * T + t] = dot(ws[r], xs[t])` for float weight rows (f32, or f16 bits; one or two
/// rows) and 1 to 4 f32 activation rows: each weight vector is loaded (and converted) once for
/// every token of the tile, and each activation vector once for both rows.
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
    // SAFETY: only reachable through the tables above (AVX-512 F/BW/VL, F16C detected); the
    // masked loads stay inside the slices checked above.
    unsafe {
        macro_rules! by_tokens {
            ($r:literal) => {
                match xs.len() {
                    1 => float_tile_avx512::<W, $r, 1>(ws, xs, out),
                    2 => float_tile_avx512::<W, $r, 2>(ws, xs, out),
                    3 => float_tile_avx512::<W, $r, 3>(ws, xs, out),
                    4 => float_tile_avx512::<W, $r, 4>(ws, xs, out),
                    5 => float_tile_avx512::<W, $r, 5>(ws, xs, out),
                    6 => float_tile_avx512::<W, $r, 6>(ws, xs, out),
                    7 => float_tile_avx512::<W, $r, 7>(ws, xs, out),
                    _ => float_tile_avx512::<W, $r, 8>(ws, xs, out),
                }
            };
        }
        if ws.len() == 1 {
            by_tokens!(1)
        } else {
            by_tokens!(2)
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
unsafe fn float_tile_avx512<W: FloatWeight, const R: usize, const T: usize>(
    ws: &[&[W]],
    xs: &[&[f32]],
    out: &mut [f32],
) {
    let n = ws[0].len();
    // One accumulator per (row, token): up to 2 x 8 chains keep both FMA ports busy; a small
    // tile (decode's 1 x 1) is latency-bound, which is why decode does not come through here.
    let mut acc = [[_mm512_setzero_ps(); T]; R];
    let mut i = 0;
    while i < n {
        let k: __mmask16 = if n - i >= 16 {
            !0
        } else {
            (1u16 << (n - i)) - 1
        };
        let w: [__m512; R] = std::array::from_fn(|r| W::load16(ws[r].as_ptr().add(i), k));
        for t in 0..T {
            let x = _mm512_maskz_loadu_ps(k, xs[t].as_ptr().add(i));
            for r in 0..R {
                acc[r][t] = _mm512_fmadd_ps(w[r], x, acc[r][t]);
            }
        }
        i += 16;
    }
    for r in 0..R {
        for t in 0..T {
            out[r * T + t] = _mm512_reduce_add_ps(acc[r][t]);
        }
    }
}

/// Adds a wide group (one or two blocks at block `b0`) to every token's accumulator: one
/// multiply-accumulate covers all its quants, and the lanes map to blocks as in
/// [`wide_blocks`].
#[inline(always)]
unsafe fn wide<B: Packed, D: Dp, const T: usize>(
    p: *const u8,
    g: usize,
    b0: usize,
    acts: &[Q8Blocks<'_>],
    acc: &mut [__m512; T],
) {
    let w = B::load_wide::<D>(p, g);
    let k: __mmask8 = (1u8 << g) - 1;
    let dw = _mm_cvtph_ps(_mm_maskz_loadu_epi16(k, p.add(g * B::QB) as *const i16));
    let m = B::min_wide::<D>(p, g, dw);
    let blocks = wide_blocks(g);
    // Each block's m * s_a is added once, in the first lane of the block's first quarter.
    let first: __mmask16 = if g == 2 { 0x0011 } else { 0x0001 };
    for (t, acc) in acc.iter_mut().enumerate() {
        let a = &acts[t];
        let av = _mm512_maskz_loadu_epi8(wide_bytes(g), a.qs.as_ptr().add(b0 * QK));
        let isum = _mm512_cvtepi32_ps(B::step::<D>(_mm512_setzero_si512(), w, av));
        let da = _mm_maskz_loadu_ps(k, a.d.as_ptr().add(b0));
        let sa = _mm_maskz_loadu_ps(k, a.s.as_ptr().add(b0));
        let scale = _mm512_permutexvar_ps(blocks, _mm512_castps128_ps512(_mm_mul_ps(dw, da)));
        let ms = _mm512_castps128_ps512(_mm_mul_ps(m, sa));
        let mterm = _mm512_maskz_permutexvar_ps(first, blocks, ms);
        *acc = _mm512_fmadd_ps(isum, scale, _mm512_add_ps(*acc, mterm));
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
        if is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
        {
            out.push(("avx512 packed", &PACKED));
            if is_x86_feature_detected!("avx512vnni") {
                out.push(("avx512+vnni packed", &PACKED_VNNI));
            }
        }
        out
    }

    #[test]
    fn packed_tiles_match_the_reference() {
        let tables = tables();
        if tables.is_empty() {
            eprintln!("no AVX-512 on this CPU: nothing to test");
            return;
        }
        let mut rng = Rng(0x5EED);
        for (name, k) in tables {
            for nb in [1, 2, 3, 15, 16, 17, 18, 20, 31, 33, 48] {
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
                for ty in [
                    DType::Q8_0,
                    DType::Q4_0,
                    DType::Q4_1,
                    DType::Q5_0,
                    DType::Q5_1,
                ] {
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
    fn float_tiles_match_the_scalar_dot() {
        let tables = tables();
        let mut rng = Rng(0xF1_0A7);
        for (name, k) in tables {
            for n in [1, 15, 16, 17, 33, 64, 576, 1000] {
                let w: Vec<f32> = (0..n).map(|_| rng.f32()).collect();
                let wh: Vec<u16> = w
                    .iter()
                    .map(|&v| half::f16::from_f32(v).to_bits())
                    .collect();
                let xs: Vec<Vec<f32>> = (0..FLOAT_TILE)
                    .map(|_| (0..n).map(|_| rng.f32()).collect())
                    .collect();
                for tn in 1..=FLOAT_TILE {
                    let rows: Vec<&[f32]> = xs[..tn].iter().map(|x| x.as_slice()).collect();
                    let (mut g32, mut g16) = (vec![0f32; tn], vec![0f32; tn]);
                    (k.dot_f32)(&[&w], &rows, &mut g32);
                    (k.dot_f16)(&[&wh], &rows, &mut g16);
                    // Two rows: the first row again, so both halves must equal the one-row results.
                    let (mut p32, mut p16) = (vec![0f32; 2 * tn], vec![0f32; 2 * tn]);
                    (k.dot_f32)(&[&w, &w], &rows, &mut p32);
                    (k.dot_f16)(&[&wh, &wh], &rows, &mut p16);
                    assert_eq!(&p32[..tn], &g32[..]);
                    assert_eq!(&p32[tn..], &g32[..]);
                    assert_eq!(&p16[tn..], &g16[..]);
                    for t in 0..tn {
                        let wf: Vec<f32> = wh
                            .iter()
                            .map(|&b| half::f16::from_bits(b).to_f32())
                            .collect();
                        let m32: f32 = w.iter().zip(&xs[t]).map(|(a, b)| (a * b).abs()).sum();
                        let tol = (n as f32 / 4.0 + 64.0) * f32::EPSILON * m32 + f32::MIN_POSITIVE;
                        let want32 = crate::kernels::scalar::dot_f32(&w, &xs[t]);
                        let want16 = crate::kernels::scalar::dot_f32(&wf, &xs[t]);
                        assert!((g32[t] - want32).abs() <= tol, "{name} f32 n={n} t={t}");
                        assert!(
                            (g16[t] - want16).abs() <= tol * 1.01,
                            "{name} f16 n={n} t={t}"
                        );
                    }
                }
            }
        }
    }

    /// Magnitude of the `m * s_a` terms the packed kernels add that the reference does not
    /// (Q4_0's -8 d_w, Q5_0's -16 d_w and VNNI Q8_0's -128 d_w), so the tolerance covers
    /// their cancellation.
    fn sum_ms(ty: DType, raw: &[u8], a: &Q8Row) -> f32 {
        raw.chunks_exact(ty.block_bytes())
            .enumerate()
            .map(|(i, b)| (crate::kernels::packed::half_at(b, 0) * a.s[i]).abs())
            .sum()
    }
}
