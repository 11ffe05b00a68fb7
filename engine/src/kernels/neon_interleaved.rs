//! NEON kernels for row-interleaved F16 and F32 matrices ([`super::interleaved`]).
//!
//! Column `k` of a row block is 16 weights, four `float32x4` vectors (converted from f16 with
//! `fcvtl`); each token's `x[k]` meets them by element, and each accumulator ends up holding
//! four finished outputs of one token. With 32 vector registers a pass takes at most six tokens
//! (24 accumulators, four weight vectors, one activation), so a tile of 7 to 12 tokens runs as
//! two passes of about half each, the second reading the row block again from cache. Decode
//! (one token) and two-token tiles take two row blocks at a time so that eight or more FMA
//! chains are in flight.

use super::interleaved::ROWS;
use crate::dtype::DType;
use std::arch::aarch64::*;

/// Most tokens one call takes.
use super::INTERLEAVED_TILE as TILE;

// The float element loaders live here and the packed float tiles import them, so the two
// files depend one way only.

/// A float weight element: f32, or f16 read as its bits.
pub(super) trait FloatWeight: Copy + Default {
    /// Four weights at `p` as f32.
    unsafe fn load4(p: *const Self) -> float32x4_t;
    /// Eight weights at `p` as two f32 vectors.
    unsafe fn load8(p: *const Self) -> [float32x4_t; 2];
}

impl FloatWeight for f32 {
    #[inline(always)]
    unsafe fn load4(p: *const f32) -> float32x4_t {
        vld1q_f32(p)
    }
    #[inline(always)]
    unsafe fn load8(p: *const f32) -> [float32x4_t; 2] {
        [vld1q_f32(p), vld1q_f32(p.add(4))]
    }
}

impl FloatWeight for u16 {
    #[inline(always)]
    unsafe fn load4(p: *const u16) -> float32x4_t {
        f16x4(vld1_u16(p))
    }
    #[inline(always)]
    unsafe fn load8(p: *const u16) -> [float32x4_t; 2] {
        let h = vld1q_u16(p);
        [f16x4(vget_low_u16(h)), f16x4_high(h)]
    }
}

/// Four f16 bit patterns as f32 with `fcvtl`. Half-to-single conversion is part of Armv8.0's
/// Advanced SIMD (FEAT_FP16 adds half-precision arithmetic, not this), so it needs no feature
/// check; Rust's `vcvt_f32_f16` is newer than this crate's minimum Rust, hence the assembly.
/// Exact for every input (the test below checks all 65536).
#[inline(always)]
pub(super) unsafe fn f16x4(h: uint16x4_t) -> float32x4_t {
    let out: float32x4_t;
    std::arch::asm!(
        "fcvtl {o:v}.4s, {i:v}.4h",
        o = lateout(vreg) out,
        i = in(vreg) h,
        options(pure, nomem, nostack, preserves_flags)
    );
    out
}

/// One f16 bit pattern as f32 with the scalar `fcvt`, Armv8.0 like `fcvtl` (exact for every
/// input). `half`'s conversion checks for the fp16 extension at run time on every call, which
/// in a block loop costs more than the block's arithmetic.
#[inline(always)]
pub(in crate::kernels) fn f16_scalar(h: u16) -> f32 {
    let out: f32;
    // SAFETY: `fcvt` is part of every aarch64 CPU's floating point; it reads and writes only
    // the two registers.
    unsafe {
        std::arch::asm!(
            "fcvt {o:s}, {i:h}",
            o = lateout(vreg) out,
            i = in(vreg) h as i16,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    out
}

/// The upper four of eight f16 bit patterns as f32 (`fcvtl2`).
#[inline(always)]
pub(super) unsafe fn f16x4_high(h: uint16x8_t) -> float32x4_t {
    let out: float32x4_t;
    std::arch::asm!(
        "fcvtl2 {o:v}.4s, {i:v}.8h",
        o = lateout(vreg) out,
        i = in(vreg) h,
        options(pure, nomem, nostack, preserves_flags)
    );
    out
}

/// Most tokens one pass over the weights takes.
const PASS: usize = 6;

/// `out[t * stride + j] = dot(row j, xs[t])` for every row `j` of the interleaved blocks in `w`
/// (f16 bits or f32 per `ty`), for 1 to [`TILE`] tokens of `cols` values.
///
/// # Safety
/// `out` must be valid for writes at `t * stride + j` for every token `t` and row `j`, and
/// nothing else may access those elements during the call. NEON is baseline on aarch64, so
/// there is no CPU feature to check.
pub(super) unsafe fn dot(
    ty: DType,
    w: &[u8],
    cols: usize,
    xs: &[&[f32]],
    out: *mut f32,
    stride: usize,
) {
    let elem = match ty {
        DType::F16 => 2,
        DType::F32 => 4,
        other => panic!("{other} has no interleaved layout"),
    };
    let block = ROWS * cols * elem;
    assert!(
        cols > 0 && w.len().is_multiple_of(block),
        "interleaved: not whole row blocks"
    );
    assert!(
        (1..=TILE).contains(&xs.len()) && xs.iter().all(|x| x.len() == cols),
        "interleaved: 1 to {TILE} activation rows of {cols} values"
    );
    assert!(
        w.as_ptr().align_offset(elem) == 0,
        "interleaved: weights not aligned to their element"
    );
    let rows = w.len() / block * ROWS;
    assert!(
        stride >= rows || xs.len() == 1,
        "interleaved: output rows overlap"
    );
    let xp: [*const f32; TILE] = std::array::from_fn(|i| xs[i.min(xs.len() - 1)].as_ptr());
    let n = xs.len();
    let pass: Pass = if ty == DType::F16 {
        by_tokens::<u16>
    } else {
        by_tokens::<f32>
    };
    let blocks = rows / ROWS;
    if n <= PASS {
        pass(w.as_ptr(), blocks, cols, &xp[..n], out, stride);
    } else {
        let h = n.div_ceil(2);
        pass(w.as_ptr(), blocks, cols, &xp[..h], out, stride);
        pass(
            w.as_ptr(),
            blocks,
            cols,
            &xp[h..n],
            out.add(h * stride),
            stride,
        );
    }
}

/// `(weights, row blocks, cols, activation rows (1 to PASS), out, stride)`.
type Pass = unsafe fn(*const u8, usize, usize, &[*const f32], *mut f32, usize);

unsafe fn by_tokens<W: FloatWeight>(
    w: *const u8,
    blocks: usize,
    cols: usize,
    xp: &[*const f32],
    out: *mut f32,
    stride: usize,
) {
    let w = w as *const W;
    match xp.len() {
        1 => run::<W, 2, 1>(w, blocks, cols, xp, out, stride),
        2 => run::<W, 2, 2>(w, blocks, cols, xp, out, stride),
        3 => run::<W, 1, 3>(w, blocks, cols, xp, out, stride),
        4 => run::<W, 1, 4>(w, blocks, cols, xp, out, stride),
        5 => run::<W, 1, 5>(w, blocks, cols, xp, out, stride),
        6 => run::<W, 1, 6>(w, blocks, cols, xp, out, stride),
        _ => unreachable!("checked above"),
    }
}

/// Row blocks `RB` at a time, then one at a time for the rest.
unsafe fn run<W: FloatWeight, const RB: usize, const T: usize>(
    w: *const W,
    blocks: usize,
    cols: usize,
    xp: &[*const f32],
    out: *mut f32,
    stride: usize,
) {
    let mut b = 0;
    while b + RB <= blocks {
        tile::<W, RB, T>(w.add(b * ROWS * cols), cols, xp, out.add(b * ROWS), stride);
        b += RB;
    }
    while b < blocks {
        tile::<W, 1, T>(w.add(b * ROWS * cols), cols, xp, out.add(b * ROWS), stride);
        b += 1;
    }
}

#[inline(always)]
unsafe fn tile<W: FloatWeight, const RB: usize, const T: usize>(
    w: *const W,
    cols: usize,
    xp: &[*const f32],
    out: *mut f32,
    stride: usize,
) {
    let mut acc = [[[vdupq_n_f32(0.0); 4]; T]; RB];
    for k in 0..cols {
        let wv: [[float32x4_t; 4]; RB] = std::array::from_fn(|r| {
            let p = w.add((r * cols + k) * ROWS);
            let [a, b] = W::load8(p);
            let [c, d] = W::load8(p.add(8));
            [a, b, c, d]
        });
        for t in 0..T {
            let x = *xp[t].add(k);
            for r in 0..RB {
                for q in 0..4 {
                    acc[r][t][q] = vfmaq_n_f32(acc[r][t][q], wv[r][q], x);
                }
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        for (t, a) in acc.iter().enumerate() {
            for (q, v) in a.iter().enumerate() {
                vst1q_f32(out.add(t * stride + r * ROWS + 4 * q), *v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::interleaved::interleave;
    use crate::kernels::packed::AlignedBytes;
    use crate::kernels::scalar;
    use crate::kernels::test_support::Rng;
    use half::f16;

    #[test]
    fn interleaved_tiles_match_the_scalar_dot() {
        let mut rng = Rng(11);
        // One, two (a decode pair), three and five row blocks; odd and small column counts.
        for (rows, cols) in [(16, 40), (32, 1), (48, 576), (80, 33), (128, 64)] {
            let f: Vec<f32> = (0..rows * cols).map(|_| rng.f32()).collect();
            let h: Vec<f16> = f.iter().map(|&v| f16::from_f32(v)).collect();
            let xs: Vec<Vec<f32>> = (0..TILE)
                .map(|_| (0..cols).map(|_| rng.f32()).collect())
                .collect();
            for ty in [DType::F16, DType::F32] {
                let raw: Vec<u8> = match ty {
                    DType::F16 => bytemuck::cast_slice(&h).to_vec(),
                    _ => bytemuck::cast_slice(&f).to_vec(),
                };
                let mut packed = AlignedBytes::zeroed(raw.len());
                interleave(&raw, packed.as_mut_slice(), cols, raw.len() / (rows * cols));
                let w = packed.as_slice();
                for n in 1..=TILE {
                    let x: Vec<&[f32]> = xs[..n].iter().map(|v| &v[..]).collect();
                    let stride = rows + 3;
                    let mut out = vec![f32::NAN; n * stride];
                    unsafe { dot(ty, w, cols, &x, out.as_mut_ptr(), stride) };
                    for t in 0..n {
                        for j in 0..rows {
                            let want = match ty {
                                DType::F16 => scalar::dot_f16(&h[j * cols..(j + 1) * cols], x[t]),
                                _ => scalar::dot_f32(&f[j * cols..(j + 1) * cols], x[t]),
                            };
                            let got = out[t * stride + j];
                            assert!(
                                (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                                "{ty} {rows}x{cols} n {n} t {t} row {j}: {got} vs {want}"
                            );
                        }
                        assert!(out[t * stride + rows..(t + 1) * stride]
                            .iter()
                            .all(|v| v.is_nan()));
                    }
                }
            }
        }
    }
}
