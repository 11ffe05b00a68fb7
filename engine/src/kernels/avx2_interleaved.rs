//! AVX2 kernels for row-interleaved F16 and F32 matrices ([`super::interleaved`]).
//!
//! Column `k` of a row block is 16 weights, two 8-float vectors here. Each token's `x[k]` is
//! broadcast once and meets both; the accumulators end up holding finished outputs, 8 rows of
//! one token each. AVX2 has 16 vector registers, so a call's tokens are cut into tiles of at
//! most [`TOKENS`] (two accumulators per token, plus two weight vectors and a broadcast); more
//! than that spilled accumulators to the stack on every column. Decode (one token) takes four
//! row blocks at a time for eight independent chains; it is bound by memory bandwidth.

use super::interleaved::ROWS;
use crate::dtype::DType;
use std::arch::x86_64::*;

/// Most tokens one call takes.
use super::INTERLEAVED_TILE as TILE;

/// Most tokens one pass over a row block meets: 2 * 6 accumulators + 2 weights + 1 broadcast
/// leave one of the 16 registers spare.
const TOKENS: usize = 6;

/// A float weight element: f32, or f16 read as its bits.
pub(super) trait FloatWeight: Copy {
    /// Eight weights at `p` as f32.
    unsafe fn load8(p: *const Self) -> __m256;
    /// The first `n` (below 8) weights at `p` (for f16, any alignment) as f32, the other
    /// lanes zero; nothing past `p + n` is read.
    unsafe fn load_part(p: *const Self, n: usize) -> __m256;
}

impl FloatWeight for f32 {
    #[inline(always)]
    unsafe fn load8(p: *const f32) -> __m256 {
        _mm256_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn load_part(p: *const f32, n: usize) -> __m256 {
        _mm256_maskload_ps(p, lane_mask(n))
    }
}

impl FloatWeight for u16 {
    #[inline(always)]
    unsafe fn load8(p: *const u16) -> __m256 {
        _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
    }
    #[inline(always)]
    unsafe fn load_part(p: *const u16, n: usize) -> __m256 {
        // AVX2 has no masked 16-bit load: whole 32-bit words by a masked load, then an odd last
        // element on its own. A copy into a buffer compiled to a `memcpy` call, and every
        // register around it was spilled: a tenth of Gemma's prefill, whose 640-wide rows end
        // in a partial packed group whose scales come through here.
        let words = _mm_cmpgt_epi32(_mm_set1_epi32((n / 2) as i32), _mm_setr_epi32(0, 1, 2, 3));
        let mut v = _mm_maskload_epi32(p as *const i32, words);
        if n % 2 == 1 {
            let last = std::ptr::read_unaligned(p.add(n - 1)) as i16;
            let at = _mm_cmpeq_epi16(
                _mm_setr_epi16(0, 1, 2, 3, 4, 5, 6, 7),
                _mm_set1_epi16((n - 1) as i16),
            );
            v = _mm_or_si128(v, _mm_and_si128(at, _mm_set1_epi16(last)));
        }
        _mm256_cvtph_ps(v)
    }
}

/// The mask for `_mm256_maskload_*` that enables the first `n` (0 to 8) 32-bit lanes.
#[inline(always)]
pub(super) unsafe fn lane_mask(n: usize) -> __m256i {
    let idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), idx)
}

/// `out[t * stride + j] = dot(row j, xs[t])` for every row `j` of the interleaved blocks in `w`
/// (f16 bits or f32 per `ty`), for 1 to [`TILE`] tokens of `cols` values.
///
/// # Safety
/// `out` must be valid for writes at `t * stride + j` for every token `t` and row `j`, and
/// nothing else may access those elements during the call. The caller must have detected
/// AVX2, FMA and F16C (the tables in `avx2.rs` do).
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
    let rows = w.len() / block * ROWS;
    assert!(
        stride >= rows || xs.len() == 1,
        "interleaved: output rows overlap"
    );
    let blocks = rows / ROWS;
    // Two even tiles rather than a full one and a remnant: 7 tokens run as 4 + 3, not 6 + 1.
    let n = xs.len();
    let first = if n <= TOKENS { n } else { n.div_ceil(2) };
    for (t0, tn) in [(0, first), (first, n - first)] {
        if tn == 0 {
            continue;
        }
        let xp: [*const f32; TOKENS] = std::array::from_fn(|i| xs[t0 + i.min(tn - 1)].as_ptr());
        let o = out.add(t0 * stride);
        if ty == DType::F16 {
            by_tokens::<u16>(w.as_ptr(), blocks, cols, &xp, tn, o, stride)
        } else {
            by_tokens::<f32>(w.as_ptr(), blocks, cols, &xp, tn, o, stride)
        }
    }
}

#[inline(always)]
unsafe fn by_tokens<W: FloatWeight>(
    w: *const u8,
    blocks: usize,
    cols: usize,
    xp: &[*const f32; TOKENS],
    n: usize,
    out: *mut f32,
    stride: usize,
) {
    let w = w as *const W;
    match n {
        1 => run::<W, 4, 1>(w, blocks, cols, xp, out, stride),
        2 => run::<W, 2, 2>(w, blocks, cols, xp, out, stride),
        3 => run::<W, 1, 3>(w, blocks, cols, xp, out, stride),
        4 => run::<W, 1, 4>(w, blocks, cols, xp, out, stride),
        5 => run::<W, 1, 5>(w, blocks, cols, xp, out, stride),
        _ => run::<W, 1, 6>(w, blocks, cols, xp, out, stride),
    }
}

/// Row blocks `RB` at a time, then one at a time for the rest.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn run<W: FloatWeight, const RB: usize, const T: usize>(
    w: *const W,
    blocks: usize,
    cols: usize,
    xp: &[*const f32; TOKENS],
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
    xp: &[*const f32; TOKENS],
    out: *mut f32,
    stride: usize,
) {
    let mut acc = [[[_mm256_setzero_ps(); 2]; T]; RB];
    for k in 0..cols {
        for (r, acc) in acc.iter_mut().enumerate() {
            let p = w.add((r * cols + k) * ROWS);
            let (w0, w1) = (W::load8(p), W::load8(p.add(8)));
            for (t, a) in acc.iter_mut().enumerate() {
                let x = _mm256_broadcast_ss(&*xp[t].add(k));
                a[0] = _mm256_fmadd_ps(w0, x, a[0]);
                a[1] = _mm256_fmadd_ps(w1, x, a[1]);
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        for (t, a) in acc.iter().enumerate() {
            let o = out.add(t * stride + r * ROWS);
            _mm256_storeu_ps(o, a[0]);
            _mm256_storeu_ps(o.add(8), a[1]);
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

    fn has_avx2() -> bool {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
    }

    #[test]
    fn interleaved_tiles_match_the_scalar_dot() {
        if !has_avx2() {
            eprintln!("SKIP: no AVX2/FMA/F16C on this CPU");
            return;
        }
        let mut rng = Rng(12);
        // 5 and 9 row blocks leave remnants after decode's four at a time and prefill's two.
        for (rows, cols) in [(16, 40), (48, 576), (80, 33), (144, 7), (128, 64)] {
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
                            let row = j * cols..(j + 1) * cols;
                            let (want, m) = match ty {
                                DType::F16 => {
                                    let wf: Vec<f32> = h[row].iter().map(|v| v.to_f32()).collect();
                                    (scalar::dot_f32(&wf, x[t]), magnitude(&wf, x[t]))
                                }
                                _ => (
                                    scalar::dot_f32(&f[row.clone()], x[t]),
                                    magnitude(&f[row], x[t]),
                                ),
                            };
                            // Each output is one chain of `cols` products here, against the
                            // reference's chains of cols / 8: the bound of kernels_match_scalar
                            // with the longer chain.
                            let tol = (cols + cols / 8 + 64) as f32 * f32::EPSILON * m
                                + f32::MIN_POSITIVE;
                            let got = out[t * stride + j];
                            assert!(
                                (got - want).abs() <= tol,
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

    fn magnitude(w: &[f32], x: &[f32]) -> f32 {
        w.iter().zip(x).map(|(a, b)| (a * b).abs()).sum()
    }
}
