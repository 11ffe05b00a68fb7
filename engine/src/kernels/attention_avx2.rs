//! The tiled online-softmax attention of [`super::attention`] for AVX2 with FMA and F16C:
//! 8 lanes of a head per register, f16 keys and values widened with `vcvtph2ps` as loaded.

use super::attention::{
    attend_scalar, outer_span, AttnBlock, AttnState, Kv, EXP_POLY, LN2_HI, LN2_LO, TILE,
};
use std::arch::x86_64::*;

/// Head sizes 64, 128 and 256 run here; others take the reference.
///
/// Soundness: only reachable through the AVX2 table, handed out after the CPU reported AVX2,
/// FMA and F16C; [`AttnBlock::check`] keeps every load in bounds.
pub(super) fn attend(b: &AttnBlock<'_>, st: &mut AttnState<'_>) {
    b.check(st);
    let (k, v) = (b.keys, b.values);
    unsafe {
        match (b.hd, k, v) {
            (64, Kv::F16(k), Kv::F16(v)) => {
                run::<8, true>(b, k.as_ptr().cast(), v.as_ptr().cast(), st)
            }
            (128, Kv::F16(k), Kv::F16(v)) => {
                run::<16, true>(b, k.as_ptr().cast(), v.as_ptr().cast(), st)
            }
            (256, Kv::F16(k), Kv::F16(v)) => {
                run::<32, true>(b, k.as_ptr().cast(), v.as_ptr().cast(), st)
            }
            (64, Kv::F32(k), Kv::F32(v)) => {
                run::<8, false>(b, k.as_ptr().cast(), v.as_ptr().cast(), st)
            }
            (128, Kv::F32(k), Kv::F32(v)) => {
                run::<16, false>(b, k.as_ptr().cast(), v.as_ptr().cast(), st)
            }
            (256, Kv::F32(k), Kv::F32(v)) => {
                run::<32, false>(b, k.as_ptr().cast(), v.as_ptr().cast(), st)
            }
            _ => attend_scalar(b, st),
        }
    }
}

/// 8 elements from `base` (f16 bits when `H`, else f32) at element index `i`, as f32.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn load8<const H: bool>(base: *const u8, i: usize) -> __m256 {
    if H {
        _mm256_cvtph_ps(_mm_loadu_si128(base.add(2 * i).cast()))
    } else {
        _mm256_loadu_ps(base.cast::<f32>().add(i))
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn hsum(v: __m256) -> f32 {
    let x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    _mm_cvtss_f32(_mm_add_ss(x, _mm_movehdup_ps(x)))
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn hmax(v: __m256) -> f32 {
    let x = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let x = _mm_max_ps(x, _mm_movehl_ps(x, x));
    _mm_cvtss_f32(_mm_max_ss(x, _mm_movehdup_ps(x)))
}

/// `exp(x)` lane by lane for `x <= 0`, as [`super::attention::exp_approx`] describes; lanes
/// below -87 (and -inf) give 0.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn exp8(x: __m256) -> __m256 {
    let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
        x,
        _mm256_set1_ps(std::f32::consts::LOG2_E),
    ));
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
    let mut p = _mm256_set1_ps(EXP_POLY[6]);
    for &c in EXP_POLY[..6].iter().rev() {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
    }
    // 2^n built in the exponent field; n >= -126 wherever the lane is kept.
    let e = _mm256_slli_epi32::<23>(_mm256_add_epi32(
        _mm256_cvtps_epi32(n),
        _mm256_set1_epi32(127),
    ));
    let keep = _mm256_cmp_ps::<_CMP_GE_OQ>(x, _mm256_set1_ps(-87.0));
    _mm256_and_ps(keep, _mm256_mul_ps(p, _mm256_castsi256_ps(e)))
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn run<const C: usize, const H: bool>(
    b: &AttnBlock<'_>,
    kb: *const u8,
    vb: *const u8,
    st: &mut AttnState<'_>,
) {
    let hd = 8 * C;
    let es = if H { 2 } else { 4 };
    let row_bytes = b.stride * es;
    for r in 0..b.rows() {
        st.m[r] = f32::NEG_INFINITY;
        st.l[r] = 0.0;
        st.acc[r * hd..(r + 1) * hd].fill(0.0);
    }
    let Some((lo, hi)) = outer_span(b.spans) else {
        return;
    };
    let mut s = [0.0f32; TILE];
    let sp = s.as_mut_ptr();
    for t0 in (lo..hi).step_by(TILE) {
        let t1 = (t0 + TILE).min(hi);
        for (t, &span) in b.spans.iter().enumerate() {
            let (a, e) = (span.0.max(t0), span.1.min(t1));
            if a >= e {
                continue;
            }
            let len = e - a;
            let (kt, vt) = (kb.add(a * row_bytes), vb.add(a * row_bytes));
            for g in 0..b.group {
                let r = t * b.group + g;
                let qp = b.q.as_ptr().add(t * b.q_stride + g * hd);
                // Scores of the tile, two positions at a time for two independent chains.
                let mut j = 0;
                while j < len {
                    let two = j + 1 < len;
                    let (k0, k1) = (
                        kt.add(j * row_bytes),
                        kt.add((j + two as usize) * row_bytes),
                    );
                    let (mut d0, mut d1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
                    for c in 0..C {
                        let qc = _mm256_loadu_ps(qp.add(8 * c));
                        d0 = _mm256_fmadd_ps(qc, load8::<H>(k0, 8 * c), d0);
                        d1 = _mm256_fmadd_ps(qc, load8::<H>(k1, 8 * c), d1);
                    }
                    *sp.add(j) = hsum(d0) * b.scale;
                    if two {
                        *sp.add(j + 1) = hsum(d1) * b.scale;
                    }
                    j += 2;
                }
                let padded = len.next_multiple_of(8);
                for i in len..padded {
                    *sp.add(i) = f32::NEG_INFINITY;
                }
                let mut vm = _mm256_set1_ps(f32::NEG_INFINITY);
                for i in (0..padded).step_by(8) {
                    vm = _mm256_max_ps(vm, _mm256_loadu_ps(sp.add(i)));
                }
                let old = st.m[r];
                let mx = hmax(vm).max(old);
                let fs = if mx > old { (old - mx).exp() } else { 1.0 };
                st.m[r] = mx;
                let (vmx, mut sum) = (_mm256_set1_ps(mx), _mm256_setzero_ps());
                for i in (0..padded).step_by(8) {
                    let p = exp8(_mm256_sub_ps(_mm256_loadu_ps(sp.add(i)), vmx));
                    sum = _mm256_add_ps(sum, p);
                    _mm256_storeu_ps(sp.add(i), p);
                }
                st.l[r] = st.l[r] * fs + hsum(sum);
                // The weighted values, a register's worth of the head at a time so the
                // accumulator stays in registers whatever the head size.
                let acc = st.acc.as_mut_ptr().add(r * hd);
                let f = _mm256_set1_ps(fs);
                for c in (0..C).step_by(4) {
                    let mut o = [_mm256_setzero_ps(); 4];
                    for (i, oi) in o.iter_mut().enumerate() {
                        *oi = _mm256_mul_ps(f, _mm256_loadu_ps(acc.add(8 * (c + i))));
                    }
                    for j in 0..len {
                        let (p, vp) = (_mm256_set1_ps(*sp.add(j)), vt.add(j * row_bytes));
                        for (i, oi) in o.iter_mut().enumerate() {
                            *oi = _mm256_fmadd_ps(p, load8::<H>(vp, 8 * (c + i)), *oi);
                        }
                    }
                    for (i, oi) in o.iter().enumerate() {
                        _mm256_storeu_ps(acc.add(8 * (c + i)), *oi);
                    }
                }
            }
        }
    }
}
