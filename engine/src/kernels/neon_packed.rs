//! NEON kernels for packed rows ([`super::packed`]): one weight row against up to four
//! activation rows at once, plus the float tiles of the same [`PackedKernels`] table.
//!
//! A packed group of up to 16 blocks is, on NEON, four 128-bit quarters side by side: bytes
//! `16q..16q + 16` of every chunk hold four bytes of blocks `4q..4q + 4`, so a quarter is a
//! group of four blocks with 32-bit lane `k` = block `4q + k`. The kernel walks a group
//! quarter by quarter (eight weight steps of a quarter fit in registers; a whole group's 32
//! would not), unpacks the quarter's weights once and meets them with every activation row of
//! the tile. Each lane then holds its block's exact integer dot product, the four scales of a
//! quarter convert with one `fcvtl`, and `isum * d_w * d_a` (plus Q4_1's `m * s_a`) is one or
//! two vector FMAs per quarter and token, where the row-by-row kernels of `neon.rs` convert
//! each block's f16 scale and add each block on its own.
//!
//! Products are signed by signed on NEON, so no sign trick is needed: Q4_0 nibbles become
//! `q - 8` before they meet the activations, exactly the scalar reference's integers, and Q8_0
//! weights are used as they are. The two variants differ only in how a quarter's byte products
//! reach the i32 lanes ([`Lanes`]): `sdot` (dot-product extension) adds four products into a
//! lane directly; plain NEON multiplies into i16 (`smull`/`smlal`, several steps summed while
//! they cannot overflow) and folds pairs of i16 lanes into i32 (`sadalp`, `addp`).
//!
//! The i8mm extension (`smmla`) is not used. `smmla` multiplies a 2x8 by an 8x2 byte matrix:
//! each 8-byte row meets each 8-byte column, so every row must be eight quants of one block
//! and both operands must hold two independent rows. Here a 32-bit lane holds four quants of
//! a block and there is one weight row per call; fed this layout, half of `smmla`'s products
//! would pair different blocks and be thrown away, which is no better than `sdot`. It would pay
//! with two weight rows and two tokens per call, the rows interleaved in 8-byte runs of one
//! block (and the activations of two tokens likewise), a layout and a `dot` signature of its
//! own.

use super::blocks::Q8Blocks;
use super::neon_interleaved::{f16x4, FloatWeight};
use super::packed::{
    dot, row_kernels_from_tile, run_rows, PackedRun, TileOut, FIFTH_BIT, GROUP, WIDE_MAX,
};
use super::{PackedKernels, FLOAT_TILE};
use crate::dtype::{DType, QK};
use std::arch::aarch64::*;

/// The quantized types packed on NEON: all of [`super::packed::PACKED_TYPES`]. The static
/// count in the README (`engine/scripts/neon-instruction-count.sh`: a whole 16-block group at
/// one token) has these kernels issuing about half the instructions per block of the row
/// kernels in `neon.rs` (Q4_1 a third), plain and dotprod; an earlier count on a synth model
/// whose rows were 2 to 6 blocks (never a whole group) had said the opposite.
const NEON_PACKED_TYPES: &[DType] = &[
    DType::Q8_0,
    DType::Q4_0,
    DType::Q4_1,
    DType::Q5_0,
    DType::Q5_1,
];

pub(super) static PACKED: PackedKernels = PackedKernels {
    types: NEON_PACKED_TYPES,
    dot: dot::<Mull>,
    dot_f16: float_tile::<u16>,
    dot_f32: float_tile::<f32>,
    dot_interleaved: super::neon_interleaved::dot,
};

pub(super) static PACKED_DOTPROD: PackedKernels = PackedKernels {
    types: NEON_PACKED_TYPES,
    dot: dot::<Sdot>,
    dot_f16: float_tile::<u16>,
    dot_f32: float_tile::<f32>,
    dot_interleaved: super::neon_interleaved::dot,
};

// Soundness: NEON is baseline on every aarch64 target, so `packed::dot::<Mull>` and the float tiles
// run on any CPU; `packed::dot::<Sdot>` is only reachable through PACKED_DOTPROD, which `neon.rs`
// hands out only after detecting dotprod. `check_call` and the asserts in `float_tile` keep every
// load inside the slices: the last quarter of a group is read lane by lane when it is not full.

/// How a quarter's signed byte products are summed into i32 lanes: the part that differs
/// between plain NEON and the dot-product extension.
trait Lanes {
    /// Lane `k` of the result: the sum over the eight steps `s` of the products of bytes
    /// `4k..4k + 4` of `w[s]` and `a[s]`. `span` (a divisor of 8) steps of products may share
    /// an i16 sum without overflow (activations never hold -128).
    unsafe fn lanes(w: &[int8x16_t; 8], a: &[int8x16_t; 8], span: usize) -> int32x4_t;
    /// `acc` plus all sixteen products `a[j] * b[j]`, spread over the lanes in any order.
    unsafe fn any(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t;
}

struct Mull;
struct Sdot;

impl Lanes for Mull {
    #[inline(always)]
    unsafe fn lanes(w: &[int8x16_t; 8], a: &[int8x16_t; 8], span: usize) -> int32x4_t {
        // i16 lane j of `lo` only ever holds products of byte j (block j / 4), of `hi` byte
        // 8 + j, so summing steps lane-wise keeps blocks apart; `sadalp` then folds the two
        // i16 lanes of a block's half into i32 (lanes: blocks 0, 0, 1, 1 and 2, 2, 3, 3) and
        // the final `addp` leaves one block per lane.
        let (mut acc_lo, mut acc_hi) = (vdupq_n_s32(0), vdupq_n_s32(0));
        for s0 in (0..8).step_by(span) {
            let mut lo = vmull_s8(vget_low_s8(w[s0]), vget_low_s8(a[s0]));
            let mut hi = vmull_high_s8(w[s0], a[s0]);
            for s in s0 + 1..s0 + span {
                lo = vmlal_s8(lo, vget_low_s8(w[s]), vget_low_s8(a[s]));
                hi = vmlal_high_s8(hi, w[s], a[s]);
            }
            acc_lo = vpadalq_s16(acc_lo, lo);
            acc_hi = vpadalq_s16(acc_hi, hi);
        }
        vpaddq_s32(acc_lo, acc_hi)
    }
    #[inline(always)]
    unsafe fn any(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        let lo = vmull_s8(vget_low_s8(a), vget_low_s8(b));
        let hi = vmull_high_s8(a, b);
        vpadalq_s16(vpadalq_s16(acc, lo), hi)
    }
}

impl PackedRun for Mull {
    unsafe fn run(ty: DType, w: *const u8, nb: usize, a: &[Q8Blocks<'_>], o: TileOut) {
        run_any::<Self>(ty, w, nb, a, o)
    }
}

// The `Sdot` helpers carry no `target_feature` of their own: with one, LLVM kept them as
// out-of-line calls (arrays passed through memory) instead of inlining them into `Sdot::run`.
// Always inlined, they only ever exist inside `Sdot::run`, reachable only through
// PACKED_DOTPROD.
impl Lanes for Sdot {
    #[inline(always)]
    unsafe fn lanes(w: &[int8x16_t; 8], a: &[int8x16_t; 8], _: usize) -> int32x4_t {
        // Two chains, so consecutive `sdot`s do not wait on each other.
        let (mut i0, mut i1) = (vdupq_n_s32(0), vdupq_n_s32(0));
        for s in (0..8).step_by(2) {
            i0 = sdot(i0, w[s], a[s]);
            i1 = sdot(i1, w[s + 1], a[s + 1]);
        }
        vaddq_s32(i0, i1)
    }
    #[inline(always)]
    unsafe fn any(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        sdot(acc, a, b)
    }
}

impl PackedRun for Sdot {
    #[target_feature(enable = "dotprod")]
    unsafe fn run(ty: DType, w: *const u8, nb: usize, a: &[Q8Blocks<'_>], o: TileOut) {
        run_any::<Self>(ty, w, nb, a, o)
    }
}

/// `acc` lane k + the four products of bytes `4k..4k + 4` of `a` and `b`.
#[inline(always)]
unsafe fn sdot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    // `vdotq_s32` is still unstable in Rust, so the instruction is written out, and the
    // directive lets the assembler take it in a function that does not enable dotprod itself
    // (it is only ever inlined into `Sdot::run`, which does).
    let mut acc = acc;
    std::arch::asm!(
        ".arch_extension dotprod",
        "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
        acc = inout(vreg) acc,
        a = in(vreg) a,
        b = in(vreg) b,
        options(pure, nomem, nostack, preserves_flags)
    );
    acc
}

/// Dispatches on the type and tile height, inside the caller's `target_feature` function so
/// the generic code below is compiled with its features.
#[inline(always)]
unsafe fn run_any<D: Lanes>(ty: DType, w: *const u8, nb: usize, a: &[Q8Blocks<'_>], o: TileOut) {
    match ty {
        DType::Q8_0 => run_rows::<Kernel<Q8_0, D>>(w, nb, a, o),
        DType::Q4_0 => run_rows::<Kernel<Q4_0, D>>(w, nb, a, o),
        DType::Q4_1 => run_rows::<Kernel<Q4_1, D>>(w, nb, a, o),
        DType::Q5_0 => run_rows::<Kernel<Q5_0, D>>(w, nb, a, o),
        DType::Q5_1 => run_rows::<Kernel<Q5_1, D>>(w, nb, a, o),
        other => panic!("{other} has no packed NEON kernel"),
    }
}

row_kernels_from_tile!(Packed, Lanes);

/// One packed block type: how a quarter's eight weight steps are loaded, and its minimum.
trait Packed {
    const TYPE: DType;
    /// Bytes of quants per block.
    const QB: usize;
    /// Bytes per block before a group's scales: the quants, and the 5-bit types' fifth bits.
    const LEAD: usize = Self::QB;
    /// Steps whose byte products fit one i16 sum: 2 for Q8_0 (128 * 127 each), all 8 for the
    /// 4-bit types (at most 15 * 127 each).
    const SPAN: usize;
    /// Whether blocks have a minimum `m`, met by the activation sums `s_a`.
    const HAS_MIN: bool = false;
    /// The eight weight steps of the `r` blocks at `p` (chunks `chunk` bytes apart), in
    /// activation chunk order; lanes beyond `r` zero.
    unsafe fn load(p: *const u8, chunk: usize, r: usize) -> [int8x16_t; 8];
    /// A wide group's `2 * g` weight vectors, in the order of its activation vectors.
    unsafe fn load_wide(p: *const u8, g: usize) -> [int8x16_t; 4];
}

struct Q8_0;
struct Q4_0;
struct Q4_1;
struct Q5_0;
struct Q5_1;

/// The low and high nibbles of `r` blocks' 4-byte words at `p` (the steps `s` and `4 + s`).
#[inline(always)]
unsafe fn nibble_steps(p: *const u8, chunk: usize, r: usize) -> [uint8x16_t; 8] {
    let mut out = [vdupq_n_u8(0); 8];
    for s in 0..4 {
        let v = words(p.add(s * chunk), r);
        out[s] = vandq_u8(v, vdupq_n_u8(0x0F));
        out[4 + s] = vshrq_n_u8::<4>(v);
    }
    out
}

/// A wide group's nibble bytes (16 per block, in block order) in the wide activation order:
/// `[lo b0, lo b1, hi b0, hi b1]`, or `[lo b0, hi b0]` for one block.
#[inline(always)]
unsafe fn wide_nibbles(p: *const u8, g: usize) -> [uint8x16_t; 4] {
    let mut out = [vdupq_n_u8(0); 4];
    for b in 0..g {
        let v = vld1q_u8(p.add(16 * b));
        out[b] = vandq_u8(v, vdupq_n_u8(0x0F));
        out[g + b] = vshrq_n_u8::<4>(v);
    }
    out
}

impl Packed for Q8_0 {
    const TYPE: DType = DType::Q8_0;
    const QB: usize = QK;
    const SPAN: usize = 2;
    #[inline(always)]
    unsafe fn load(p: *const u8, chunk: usize, r: usize) -> [int8x16_t; 8] {
        let mut out = [vdupq_n_s8(0); 8];
        for (s, o) in out.iter_mut().enumerate() {
            *o = vreinterpretq_s8_u8(words(p.add(s * chunk), r));
        }
        out
    }
    #[inline(always)]
    unsafe fn load_wide(p: *const u8, g: usize) -> [int8x16_t; 4] {
        let mut out = [vdupq_n_s8(0); 4];
        for (i, o) in out.iter_mut().enumerate().take(2 * g) {
            *o = vld1q_s8(p.add(16 * i) as *const i8);
        }
        out
    }
}

impl Packed for Q4_0 {
    const TYPE: DType = DType::Q4_0;
    const QB: usize = QK / 2;
    const SPAN: usize = 8;
    #[inline(always)]
    unsafe fn load(p: *const u8, chunk: usize, r: usize) -> [int8x16_t; 8] {
        // q - 8, as the scalar reference computes; lanes beyond `r` become -8 but meet zero
        // activations there.
        nibble_steps(p, chunk, r).map(|v| vsubq_s8(vreinterpretq_s8_u8(v), vdupq_n_s8(8)))
    }
    #[inline(always)]
    unsafe fn load_wide(p: *const u8, g: usize) -> [int8x16_t; 4] {
        wide_nibbles(p, g).map(|v| vsubq_s8(vreinterpretq_s8_u8(v), vdupq_n_s8(8)))
    }
}

impl Packed for Q4_1 {
    const TYPE: DType = DType::Q4_1;
    const QB: usize = QK / 2;
    const SPAN: usize = 8;
    const HAS_MIN: bool = true;
    #[inline(always)]
    unsafe fn load(p: *const u8, chunk: usize, r: usize) -> [int8x16_t; 8] {
        // Nibbles are at most 15, so they are also valid signed bytes.
        nibble_steps(p, chunk, r).map(|v| vreinterpretq_s8_u8(v))
    }
    #[inline(always)]
    unsafe fn load_wide(p: *const u8, g: usize) -> [int8x16_t; 4] {
        wide_nibbles(p, g).map(|v| vreinterpretq_s8_u8(v))
    }
}

/// Q5_0's fifth-bit tables: [`FIFTH_BIT`] less 16, so that `nibble + table[bits]` is the
/// signed weight `q - 16` in one add.
const FIFTH_BIT_LESS_16: [[u8; 16]; 4] = {
    let mut t = FIFTH_BIT;
    let mut k = 0;
    while k < 4 {
        let mut i = 0;
        while i < 16 {
            t[k][i] = t[k][i].wrapping_sub(16);
            i += 1;
        }
        k += 1;
    }
    t
};

/// The eight weight steps of a 5-bit quarter, `merge(nibble, table[k][bits])` in every byte:
/// step `k < 4` reads the low nibbles of chunk `k` and bit `k` of the low nibble of the fifth-bit
/// word's byte, step `4 + k` the high nibbles and the high nibble's bit `k` (the layout's notes
/// in [`super::packed`]). One `tbl` per step, the tables indexed by 4 bits.
#[inline(always)]
unsafe fn five_bit_steps(
    p: *const u8,
    chunk: usize,
    r: usize,
    tables: &[[u8; 16]; 4],
    merge: impl Fn(uint8x16_t, uint8x16_t) -> uint8x16_t,
) -> [int8x16_t; 8] {
    let nib = nibble_steps(p, chunk, r);
    let qh = words(p.add(4 * chunk), r);
    let bits = [vandq_u8(qh, vdupq_n_u8(0x0F)), vshrq_n_u8::<4>(qh)];
    let mut out = [vdupq_n_s8(0); 8];
    for (k, table) in tables.iter().enumerate() {
        let table = vld1q_u8(table.as_ptr());
        for (h, b) in bits.iter().enumerate() {
            let s = 4 * h + k;
            out[s] = vreinterpretq_s8_u8(merge(nib[s], vqtbl1q_u8(table, *b)));
        }
    }
    out
}

/// A 5-bit wide group's `2 * g` weight vectors, each byte `nibble | fifth bit << 4`: vector
/// `i` takes bits `16i..16i + 16` of the group's fifth-bit words (bit `j` for byte `j`).
#[inline(always)]
unsafe fn five_bit_wide(p: *const u8, g: usize) -> [uint8x16_t; 4] {
    let mut out = wide_nibbles(p, g);
    let bits = p.add(16 * g);
    let select = vcombine_u8(
        vcreate_u8(0x8040_2010_0804_0201),
        vcreate_u8(0x8040_2010_0804_0201),
    );
    for (i, v) in out.iter_mut().enumerate().take(2 * g) {
        let h = std::ptr::read_unaligned(bits.add(2 * i) as *const u16);
        let spread = vcombine_u8(vdup_n_u8(h as u8), vdup_n_u8((h >> 8) as u8));
        let fifth = vandq_u8(vtstq_u8(spread, select), vdupq_n_u8(0x10));
        *v = vorrq_u8(*v, fifth);
    }
    out
}

impl Packed for Q5_0 {
    const TYPE: DType = DType::Q5_0;
    const QB: usize = QK / 2;
    const LEAD: usize = QK / 2 + 4;
    // Products of at most 16 * 127: eight fit an i16 sum.
    const SPAN: usize = 8;
    #[inline(always)]
    unsafe fn load(p: *const u8, chunk: usize, r: usize) -> [int8x16_t; 8] {
        // q - 16, as the scalar reference computes; lanes beyond `r` become -16 but meet zero
        // activations there.
        five_bit_steps(p, chunk, r, &FIFTH_BIT_LESS_16, |n, t| vaddq_u8(n, t))
    }
    #[inline(always)]
    unsafe fn load_wide(p: *const u8, g: usize) -> [int8x16_t; 4] {
        five_bit_wide(p, g).map(|v| vsubq_s8(vreinterpretq_s8_u8(v), vdupq_n_s8(16)))
    }
}

impl Packed for Q5_1 {
    const TYPE: DType = DType::Q5_1;
    const QB: usize = QK / 2;
    const LEAD: usize = QK / 2 + 4;
    // Products of at most 31 * 127: eight (31,496) fit an i16 sum.
    const SPAN: usize = 8;
    const HAS_MIN: bool = true;
    #[inline(always)]
    unsafe fn load(p: *const u8, chunk: usize, r: usize) -> [int8x16_t; 8] {
        // At most 31, so they are also valid signed bytes.
        five_bit_steps(p, chunk, r, &FIFTH_BIT, |n, t| vorrq_u8(n, t))
    }
    #[inline(always)]
    unsafe fn load_wide(p: *const u8, g: usize) -> [int8x16_t; 4] {
        five_bit_wide(p, g).map(|v| vreinterpretq_s8_u8(v))
    }
}

/// The first `r` (1 to 4) 4-byte words at `p`, the other lanes zero: the last quarter of a
/// group that is not a multiple of four blocks must not read past its chunk (or the row).
#[inline(always)]
unsafe fn words(p: *const u8, r: usize) -> uint8x16_t {
    let word = |i: usize| std::ptr::read_unaligned(p.add(4 * i) as *const u32);
    let two = || vsetq_lane_u64::<0>(std::ptr::read_unaligned(p as *const u64), vdupq_n_u64(0));
    match r {
        4 => vld1q_u8(p),
        3 => vreinterpretq_u8_u32(vsetq_lane_u32::<2>(word(2), vreinterpretq_u32_u64(two()))),
        2 => vreinterpretq_u8_u64(two()),
        _ => vreinterpretq_u8_u32(vsetq_lane_u32::<0>(word(0), vdupq_n_u32(0))),
    }
}

/// The first `r` (1 to 4) f32 values at `p`, the other lanes zero.
#[inline(always)]
unsafe fn floats(p: *const f32, r: usize) -> float32x4_t {
    let zero = vdup_n_f32(0.0);
    match r {
        4 => vld1q_f32(p),
        3 => vsetq_lane_f32::<2>(*p.add(2), vcombine_f32(vld1_f32(p), zero)),
        2 => vcombine_f32(vld1_f32(p), zero),
        _ => vsetq_lane_f32::<0>(*p, vdupq_n_f32(0.0)),
    }
}

/// The first `r` (1 to 4) little-endian f16 values at `p` (any alignment) as f32, the other
/// lanes zero.
#[inline(always)]
unsafe fn halves(p: *const u8, r: usize) -> float32x4_t {
    let half = |i: usize| std::ptr::read_unaligned(p.add(2 * i) as *const u16) as u64;
    let pair = || std::ptr::read_unaligned(p as *const u32) as u64;
    let bits = match r {
        4 => std::ptr::read_unaligned(p as *const u64),
        3 => pair() | half(2) << 32,
        2 => pair(),
        _ => half(0),
    };
    f16x4(vcreate_u16(bits))
}

/// `out[t] = dot(row, acts[t])` for `T` activation rows.
#[inline(always)]
unsafe fn tile<B: Packed, D: Lanes, const T: usize>(
    w: *const u8,
    nb: usize,
    acts: &[Q8Blocks<'_>],
    out: &mut [f32],
) {
    let bb = B::TYPE.block_bytes();
    let mut acc = [vdupq_n_f32(0.0); T];
    let mut b0 = 0;
    while b0 < nb {
        let g = (nb - b0).min(GROUP);
        let p = w.add(b0 * bb);
        if g <= WIDE_MAX {
            let ws = B::load_wide(p, g);
            let mut isum = [vdupq_n_s32(0); T];
            for (t, sum) in isum.iter_mut().enumerate() {
                *sum = wide_isum::<D>(&ws, g, acts[t].qs.as_ptr().add(b0 * QK));
            }
            scale::<B, T>(&mut acc, &isum, p, g, 0, g, b0, acts);
        } else {
            // Whole quarters with `r` a constant, then the partial one.
            for q in 0..g / 4 {
                quarter::<B, D, T>(&mut acc, p, g, q, 4, b0, acts);
            }
            if !g.is_multiple_of(4) {
                quarter::<B, D, T>(&mut acc, p, g, g / 4, g % 4, b0, acts);
            }
        }
        b0 += g;
    }
    for t in 0..T {
        out[t] = vaddvq_f32(acc[t]);
    }
}

/// Adds quarter `q` (its first `r` blocks) of the group of `g` blocks at `p` to every token's
/// accumulator.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn quarter<B: Packed, D: Lanes, const T: usize>(
    acc: &mut [float32x4_t; T],
    p: *const u8,
    g: usize,
    q: usize,
    r: usize,
    b0: usize,
    acts: &[Q8Blocks<'_>],
) {
    // Loops rather than `array::from_fn`: its closures were left out of line, away from the
    // dotprod function they belong to.
    let ws = B::load(p.add(16 * q), 4 * g, r);
    let mut isum = [vdupq_n_s32(0); T];
    for (t, sum) in isum.iter_mut().enumerate() {
        let ap = (acts[t].qs.as_ptr() as *const u8).add(b0 * QK + 16 * q);
        let mut a = [vdupq_n_s8(0); 8];
        for (s, v) in a.iter_mut().enumerate() {
            *v = vreinterpretq_s8_u8(words(ap.add(s * 4 * g), r));
        }
        *sum = D::lanes(&ws, &a, B::SPAN);
    }
    scale::<B, T>(acc, &isum, p, g, 4 * q, r, b0, acts);
}

/// A wide group's integer sums: lane `b` = block `b`'s (the weight vector `i` belongs to block
/// `i % g`, and so does activation vector `i`).
#[inline(always)]
unsafe fn wide_isum<D: Lanes>(ws: &[int8x16_t; 4], g: usize, ap: *const i8) -> int32x4_t {
    let mut per = [vdupq_n_s32(0); 2];
    for (i, w) in ws.iter().enumerate().take(2 * g) {
        per[i % g] = D::any(per[i % g], *w, vld1q_s8(ap.add(16 * i)));
    }
    let lanes = [
        vaddvq_s32(per[0]),
        if g == 2 { vaddvq_s32(per[1]) } else { 0 },
        0,
        0,
    ];
    vld1q_s32(lanes.as_ptr())
}

/// Adds `isum * d_w * d_a` (and `m * s_a`) of the `r` blocks starting at block `lane0` of the
/// group of `g` at `p` (block `b0` of the row) to every token's accumulator.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn scale<B: Packed, const T: usize>(
    acc: &mut [float32x4_t; T],
    isum: &[int32x4_t; T],
    p: *const u8,
    g: usize,
    lane0: usize,
    r: usize,
    b0: usize,
    acts: &[Q8Blocks<'_>],
) {
    let scales = p.add(g * B::LEAD);
    let dw = halves(scales.add(2 * lane0), r);
    let m = if B::HAS_MIN {
        halves(scales.add(2 * g + 2 * lane0), r)
    } else {
        vdupq_n_f32(0.0)
    };
    for t in 0..T {
        let a = &acts[t];
        let da = floats(a.d.as_ptr().add(b0 + lane0), r);
        if B::HAS_MIN {
            let sa = floats(a.s.as_ptr().add(b0 + lane0), r);
            acc[t] = vfmaq_f32(acc[t], m, sa);
        }
        acc[t] = vfmaq_f32(acc[t], vcvtq_f32_s32(isum[t]), vmulq_f32(dw, da));
    }
}

/// `out[r * T + t] = dot(ws[r], xs[t])` for float weight rows (f32, or f16 bits; one or two
/// rows) and 1 to [`FLOAT_TILE`] f32 activation rows: each weight vector is loaded (and
/// converted) once for every token of the tile, and each activation vector once for both rows.
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
    // SAFETY: NEON is baseline; every load below stays inside the rows checked above.
    unsafe {
        macro_rules! by_tokens {
            ($r:literal) => {
                match xs.len() {
                    1 => float_tile_neon::<W, $r, 1, 2>(ws, xs, out),
                    2 => float_tile_neon::<W, $r, 2, 2>(ws, xs, out),
                    3 => float_tile_neon::<W, $r, 3, 2>(ws, xs, out),
                    4 => float_tile_neon::<W, $r, 4, 2>(ws, xs, out),
                    5 => float_tile_neon::<W, $r, 5, 1>(ws, xs, out),
                    6 => float_tile_neon::<W, $r, 6, 1>(ws, xs, out),
                    7 => float_tile_neon::<W, $r, 7, 1>(ws, xs, out),
                    _ => float_tile_neon::<W, $r, 8, 1>(ws, xs, out),
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

/// `U` vectors of four per row and token per step: small tiles (up to four tokens) take eight
/// elements a step so that there are enough independent FMA chains. `U` depends on the token
/// count only, so a row's results are the same whether it comes alone or with a second row.
unsafe fn float_tile_neon<W: FloatWeight, const R: usize, const T: usize, const U: usize>(
    ws: &[&[W]],
    xs: &[&[f32]],
    out: &mut [f32],
) {
    let n = ws[0].len();
    let mut acc = [[[vdupq_n_f32(0.0); U]; T]; R];
    let mut i = 0;
    while i + 4 * U <= n {
        let w: [[float32x4_t; U]; R] = std::array::from_fn(|r| {
            let p = ws[r].as_ptr().add(i);
            std::array::from_fn(|u| W::load4(p.add(4 * u)))
        });
        for t in 0..T {
            for u in 0..U {
                let x = vld1q_f32(xs[t].as_ptr().add(i + 4 * u));
                for r in 0..R {
                    acc[r][t][u] = vfmaq_f32(acc[r][t][u], w[r][u], x);
                }
            }
        }
        i += 4 * U;
    }
    // The rest (fewer than 4U elements): whole vectors, then one zero-padded vector.
    while i < n {
        let k = (n - i).min(4);
        let w: [float32x4_t; R] = std::array::from_fn(|r| {
            let mut v = [W::default(); 4];
            v[..k].copy_from_slice(&ws[r][i..i + k]);
            W::load4(v.as_ptr())
        });
        for t in 0..T {
            let x = floats(xs[t].as_ptr().add(i), k);
            for r in 0..R {
                acc[r][t][0] = vfmaq_f32(acc[r][t][0], w[r], x);
            }
        }
        i += k;
    }
    for r in 0..R {
        for t in 0..T {
            let v = if U == 2 {
                vaddq_f32(acc[r][t][0], acc[r][t][U - 1])
            } else {
                acc[r][t][0]
            };
            out[r * T + t] = vaddvq_f32(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::neon_interleaved::f16x4_high;
    use super::*;
    use crate::kernels::blocks::Q8Row;
    use crate::kernels::packed::MAX_TILE;
    use crate::kernels::packed::{dot_reference, pack_activations, pack_row};
    use crate::kernels::test_support::{magnitude, random_blocks, Rng};

    /// Both tables, whatever `neon.rs` would pick, so a dotprod CPU still tests the plain one.
    pub(in crate::kernels) fn tables() -> Vec<(&'static str, &'static PackedKernels)> {
        let mut out = vec![("neon packed", &PACKED)];
        if std::arch::is_aarch64_feature_detected!("dotprod") {
            out.push(("neon+dotprod packed", &PACKED_DOTPROD));
        } else {
            eprintln!("no dotprod on this CPU: only the plain NEON packed kernels are tested");
        }
        out
    }

    #[test]
    fn fcvtl_converts_every_f16_exactly() {
        for hi in 0..=u16::MAX / 8 {
            let bits: [u16; 8] = std::array::from_fn(|i| hi * 8 + i as u16);
            let h = unsafe { vld1q_u16(bits.as_ptr()) };
            let lo: [f32; 4] = unsafe { std::mem::transmute(f16x4(vget_low_u16(h))) };
            let up: [f32; 4] = unsafe { std::mem::transmute(f16x4_high(h)) };
            for (b, g) in bits.iter().zip(lo.iter().chain(&up)) {
                let want = half::f16::from_bits(*b).to_f32();
                assert!(
                    g.to_bits() == want.to_bits() || (g.is_nan() && want.is_nan()),
                    "f16 {b:#06x}: {g} vs {want}"
                );
            }
        }
    }

    #[test]
    fn packed_tiles_match_the_reference() {
        let mut rng = Rng(0x5EED);
        for (name, k) in tables() {
            for nb in [1, 2, 3, 5, 14, 15, 16, 17, 18, 31, 33, 35, 48] {
                let n = nb * QK;
                let rows: Vec<Vec<f32>> = (0..MAX_TILE)
                    .map(|_| (0..n).map(|_| rng.f32() * 3.0).collect())
                    .collect();
                let flat: Vec<f32> = rows.concat();
                let mut pa = Q8Row::default();
                pack_activations(&flat, n, &mut pa);
                // Each token's activations in their own allocation of exactly their size, so a
                // read past the row's end is an out-of-bounds read, not the next token's data.
                let own: Vec<(Vec<i8>, Vec<f32>, Vec<f32>)> = (0..MAX_TILE)
                    .map(|t| {
                        (
                            pa.qs[t * n..(t + 1) * n].to_vec(),
                            pa.d[t * nb..(t + 1) * nb].to_vec(),
                            pa.s[t * nb..(t + 1) * nb].to_vec(),
                        )
                    })
                    .collect();
                let view = |t: usize| Q8Blocks {
                    qs: &own[t].0,
                    d: &own[t].1,
                    s: &own[t].2,
                };
                for &ty in NEON_PACKED_TYPES {
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
                            let tol =
                                (2 * nb + 40) as f32 * f32::EPSILON * magnitude(ty, &raw, &one)
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
    fn extreme_quants_do_not_overflow() {
        // Q8_0 weights of -128 and activations of +-127 are the largest products the i16 sums
        // of plain NEON meet; every byte the same sign makes every partial sum as large as it
        // can be.
        for (name, k) in tables() {
            for nb in [1, 2, 3, 16, 18] {
                let n = nb * QK;
                for (wq, av) in [(0x80u8, 1.0f32), (0x80, -1.0), (0x7F, 1.0), (0x7F, -1.0)] {
                    let mut raw = vec![wq; nb * 34];
                    for blk in raw.chunks_exact_mut(34) {
                        blk[..2].copy_from_slice(&half::f16::from_f32(1.0).to_le_bytes());
                    }
                    let mut w = vec![0u8; raw.len()];
                    pack_row(DType::Q8_0, &raw, &mut w);
                    let mut pa = Q8Row::default();
                    pack_activations(&vec![av; n], n, &mut pa);
                    let mut got = [0f32];
                    k.dot_row(DType::Q8_0, &w, &[pa.blocks()], &mut got);
                    let want = dot_reference(DType::Q8_0, &w, pa.blocks());
                    // Exactly w * 127 * n integer products, each scaled by 1/127.
                    let exact = (wq as i8) as f32 * av * n as f32;
                    for v in [got[0], want] {
                        assert!(
                            (v - exact).abs() <= 1e-5 * exact.abs(),
                            "{name} nb={nb} w={wq:#x} a={av}: {v} vs {exact}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "has no packed NEON kernel")]
    fn other_types_panic() {
        // A whole Q4_K super-block and activations as long, so only the type is wrong.
        let a = Q8Row::with_len(crate::dtype::QK_K);
        let w = vec![0u8; DType::Q4_K.block_bytes()];
        PACKED.dot_row(DType::Q4_K, &w, &[a.blocks()], &mut [0.0]);
    }

    #[test]
    fn float_tiles_match_the_scalar_dot() {
        let mut rng = Rng(0xF1_0A7);
        for (name, k) in tables() {
            for n in [1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 33, 64, 576, 1000] {
                let w: Vec<f32> = (0..n).map(|_| rng.f32()).collect();
                let wh: Vec<u16> = w
                    .iter()
                    .map(|&v| half::f16::from_f32(v).to_bits())
                    .collect();
                let wf: Vec<f32> = wh
                    .iter()
                    .map(|&b| half::f16::from_bits(b).to_f32())
                    .collect();
                let xs: Vec<Vec<f32>> = (0..FLOAT_TILE)
                    .map(|_| (0..n).map(|_| rng.f32()).collect())
                    .collect();
                for tn in 1..=FLOAT_TILE {
                    let rows: Vec<&[f32]> = xs[..tn].iter().map(|x| x.as_slice()).collect();
                    let (mut g32, mut g16) = (vec![0f32; tn], vec![0f32; tn]);
                    (k.dot_f32)(&[&w], &rows, &mut g32);
                    (k.dot_f16)(&[&wh], &rows, &mut g16);
                    // Two rows: the first row again, so both halves must equal the one-row
                    // results.
                    let (mut p32, mut p16) = (vec![0f32; 2 * tn], vec![0f32; 2 * tn]);
                    (k.dot_f32)(&[&w, &w], &rows, &mut p32);
                    (k.dot_f16)(&[&wh, &wh], &rows, &mut p16);
                    assert_eq!(&p32[..tn], &g32[..]);
                    assert_eq!(&p32[tn..], &g32[..]);
                    assert_eq!(&p16[..tn], &g16[..]);
                    assert_eq!(&p16[tn..], &g16[..]);
                    for t in 0..tn {
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
}
