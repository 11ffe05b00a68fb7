//! AVX-512 kernels for row-interleaved F16 and F32 matrices ([`super::interleaved`]).
//!
//! For each column `k` the kernel loads the 16 weights of a row block once (converting f16),
//! broadcasts each token's `x[k]`, and multiplies-accumulates: per column of two row blocks and
//! 12 tokens, 2 loads and 12 broadcasts feed 24 FMAs, and the 24 accumulators are 16 finished
//! outputs each. Decode (one token) takes four row blocks at a time for four independent
//! chains; it is bound by memory bandwidth either way.

use super::interleaved::ROWS;
use crate::dtype::DType;
use std::arch::x86_64::*;

/// Most tokens one call takes.
use super::INTERLEAVED_TILE as TILE;

// The float element loader lives here and the packed float tiles import it, so the two files
// depend one way only.

/// A float weight element: f32, or f16 read as its bits.
pub(super) trait FloatWeight: Copy {
    /// Sixteen weights at `p` as f32, lanes beyond `k` zero.
    unsafe fn load16(p: *const Self, k: __mmask16) -> __m512;
}

impl FloatWeight for f32 {
    #[inline(always)]
    unsafe fn load16(p: *const f32, k: __mmask16) -> __m512 {
        _mm512_maskz_loadu_ps(k, p)
    }
}

impl FloatWeight for u16 {
    #[inline(always)]
    unsafe fn load16(p: *const u16, k: __mmask16) -> __m512 {
        _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, p as *const i16))
    }
}

/// `out[t * stride + j] = dot(row j, xs[t])` for every row `j` of the interleaved blocks in `w`
/// (f16 bits or f32 per `ty`), for 1 to [`TILE`] tokens of `cols` values.
///
/// # Safety
/// `out` must be valid for writes at `t * stride + j` for every token `t` and row `j`, and
/// nothing else may access those elements during the call. The caller must have detected
/// AVX-512 F/BW/VL and F16C (the tables in `avx512.rs` do).
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
    let xp: [*const f32; TILE] = std::array::from_fn(|i| xs[i.min(xs.len() - 1)].as_ptr());
    let tiles: ByTokens = if ty == DType::F16 {
        by_tokens::<u16>
    } else {
        by_tokens::<f32>
    };
    tiles(w.as_ptr(), rows / ROWS, cols, &xp, xs.len(), out, stride)
}

/// `(weights, row blocks, cols, activation rows, tokens, out, stride)`.
type ByTokens = unsafe fn(*const u8, usize, usize, &[*const f32; TILE], usize, *mut f32, usize);

unsafe fn by_tokens<W: FloatWeight>(
    w: *const u8,
    blocks: usize,
    cols: usize,
    xp: &[*const f32; TILE],
    n: usize,
    out: *mut f32,
    stride: usize,
) {
    let w = w as *const W;
    macro_rules! tokens {
        ($($t:literal)*) => {
            match n {
                1 => run::<W, 4, 1>(w, blocks, cols, xp, out, stride),
                $($t => run::<W, 2, $t>(w, blocks, cols, xp, out, stride),)*
                _ => unreachable!("checked above"),
            }
        };
    }
    tokens!(2 3 4 5 6 7 8 9 10 11 12)
}

/// Row blocks `RB` at a time, then one at a time for the rest.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
unsafe fn run<W: FloatWeight, const RB: usize, const T: usize>(
    w: *const W,
    blocks: usize,
    cols: usize,
    xp: &[*const f32; TILE],
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
    xp: &[*const f32; TILE],
    out: *mut f32,
    stride: usize,
) {
    let mut acc = [[_mm512_setzero_ps(); T]; RB];
    for k in 0..cols {
        let wv: [__m512; RB] = std::array::from_fn(|r| W::load16(w.add((r * cols + k) * ROWS), !0));
        for t in 0..T {
            let x = _mm512_set1_ps(*xp[t].add(k));
            for r in 0..RB {
                acc[r][t] = _mm512_fmadd_ps(wv[r], x, acc[r][t]);
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        for (t, a) in acc.iter().enumerate() {
            _mm512_storeu_ps(out.add(t * stride + r * ROWS), *a);
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

    fn has_avx512() -> bool {
        is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("f16c")
    }

    #[test]
    fn interleaved_tiles_match_the_scalar_dot() {
        if !has_avx512() {
            eprintln!("SKIP: no AVX-512 on this CPU");
            return;
        }
        let mut rng = Rng(11);
        for (rows, cols) in [(16, 40), (48, 576), (80, 33), (128, 64)] {
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
