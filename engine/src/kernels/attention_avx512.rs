//! The tiled online-softmax attention of [`super::attention`] for AVX-512: 16 lanes of a head
//! per register, f16 keys and values widened with `vcvtph2ps` as they are loaded.

use super::attention::{
    attend_scalar, outer_span, AttnBlock, AttnState, Kv, EXP_POLY, LN2_HI, LN2_LO, TILE,
};
use std::arch::x86_64::*;

/// Head sizes that are a multiple of 16 up to 256 run here; others take the reference.
///
/// Soundness: only reachable through the AVX-512 tables, handed out after the CPU reported
/// AVX-512 F/BW/VL, AVX2, FMA and F16C; [`AttnBlock::check`] keeps every load in bounds.
pub(super) fn attend(b: &AttnBlock<'_>, st: &mut AttnState<'_>) {
    b.check(st);
    let (k, v) = (b.keys, b.values);
    unsafe {
        match (b.hd, k, v) {
            (64, Kv::F16(k), Kv::F16(v)) => {
                run::<4, true>(b, k.as_ptr().cast(), v.as_ptr().cast(), st)
            }
            (128, Kv::F16(k), Kv::F16(v)) => {
                run::<8, true>(b, k.as_ptr().cast(), v.as_ptr().cast(), st)
            }
            (256, Kv::F16(k), Kv::F16(v)) => {
                run::<16, true>(b, k.as_ptr().cast(), v.as_ptr().cast(), st)
            }
            (64, Kv::F32(k), Kv::F32(v)) => {
                run::<4, false>(b, k.as_ptr().cast(), v.as_ptr().cast(), st)
            }
            (128, Kv::F32(k), Kv::F32(v)) => {
                run::<8, false>(b, k.as_ptr().cast(), v.as_ptr().cast(), st)
            }
            (256, Kv::F32(k), Kv::F32(v)) => {
                run::<16, false>(b, k.as_ptr().cast(), v.as_ptr().cast(), st)
            }
            _ => attend_scalar(b, st),
        }
    }
}

/// 16 elements from `base` (f16 bits when `H`, else f32) at element index `i`, as f32.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
#[inline]
unsafe fn load16<const H: bool>(base: *const u8, i: usize) -> __m512 {
    if H {
        _mm512_cvtph_ps(_mm256_loadu_si256(base.add(2 * i).cast()))
    } else {
        _mm512_loadu_ps(base.cast::<f32>().add(i))
    }
}

/// `exp(x)` lane by lane for `x <= 0`, as [`super::attention::exp_approx`] describes; lanes
/// below -87 (and -inf) give 0.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
#[inline]
unsafe fn exp16(x: __m512) -> __m512 {
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
        _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)),
    );
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), x);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
    let mut p = _mm512_set1_ps(EXP_POLY[6]);
    for &c in EXP_POLY[..6].iter().rev() {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    }
    let keep = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(x, _mm512_set1_ps(-87.0));
    _mm512_maskz_mov_ps(keep, _mm512_scalef_ps(p, n))
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
unsafe fn run<const C: usize, const H: bool>(
    b: &AttnBlock<'_>,
    kb: *const u8,
    vb: *const u8,
    st: &mut AttnState<'_>,
) {
    let hd = 16 * C;
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
    // With several rows, an f16 tile is widened once into these and every row reads f32:
    // `vcvtph2ps` shares a port with the shuffles of the score sums, so converting per row
    // would make the conversions the bottleneck. Left uninitialised: only written rows are read.
    let widen = H && b.rows() > 1;
    let mut kw = std::mem::MaybeUninit::<[f32; TILE * 256]>::uninit();
    let mut vw = std::mem::MaybeUninit::<[f32; TILE * 256]>::uninit();
    let (kwp, vwp) = (kw.as_mut_ptr().cast::<f32>(), vw.as_mut_ptr().cast::<f32>());
    let mut s = [0.0f32; TILE];
    let sp = s.as_mut_ptr();
    for t0 in (lo..hi).step_by(TILE) {
        let t1 = (t0 + TILE).min(hi);
        let (mut ta, mut te) = (usize::MAX, 0);
        for &(a, e) in b.spans {
            let (a, e) = (a.max(t0), e.min(t1));
            if a < e {
                (ta, te) = (ta.min(a), te.max(e));
            }
        }
        if ta >= te {
            continue;
        }
        if widen {
            for p in ta..te {
                let (kp, vp) = (kb.add(p * row_bytes), vb.add(p * row_bytes));
                let o = (p - ta) * hd;
                for c in 0..C {
                    _mm512_storeu_ps(kwp.add(o + 16 * c), load16::<true>(kp, 16 * c));
                    _mm512_storeu_ps(vwp.add(o + 16 * c), load16::<true>(vp, 16 * c));
                }
            }
        }
        for (t, &span) in b.spans.iter().enumerate() {
            let (a, e) = (span.0.max(t0), span.1.min(t1));
            if a >= e {
                continue;
            }
            for g in 0..b.group {
                let r = t * b.group + g;
                let row = Row {
                    q: b.q.as_ptr().add(t * b.q_stride + g * hd),
                    len: e - a,
                    scale: b.scale,
                    acc: st.acc.as_mut_ptr().add(r * hd),
                    s: sp,
                };
                let (m, l) = (&mut st.m[r], &mut st.l[r]);
                if widen {
                    let o = (a - ta) * hd;
                    tile_row::<C, false>(&row, kwp.add(o).cast(), vwp.add(o).cast(), hd * 4, m, l);
                } else {
                    let (kt, vt) = (kb.add(a * row_bytes), vb.add(a * row_bytes));
                    tile_row::<C, H>(&row, kt, vt, row_bytes, m, l);
                }
            }
        }
    }
}

/// One query row's part of a tile: its query, how many positions, its accumulator, and the
/// tile's score buffer.
struct Row {
    q: *const f32,
    len: usize,
    scale: f32,
    acc: *mut f32,
    s: *mut f32,
}

/// Scores of `row.len` positions from `kt` (rows `row_bytes` apart), the online-softmax
/// update of `m`, `l` and the accumulator, and the weighted values from `vt`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
#[inline]
unsafe fn tile_row<const C: usize, const H: bool>(
    row: &Row,
    kt: *const u8,
    vt: *const u8,
    row_bytes: usize,
    m: &mut f32,
    l: &mut f32,
) {
    let (len, sp, acc) = (row.len, row.s, row.acc);
    let mut q = [_mm512_setzero_ps(); C];
    for (c, qc) in q.iter_mut().enumerate() {
        *qc = _mm512_loadu_ps(row.q.add(16 * c));
    }
    for j in 0..len {
        let kp = kt.add(j * row_bytes);
        let mut d = _mm512_mul_ps(q[0], load16::<H>(kp, 0));
        for (c, qc) in q.iter().enumerate().skip(1) {
            d = _mm512_fmadd_ps(*qc, load16::<H>(kp, 16 * c), d);
        }
        *sp.add(j) = _mm512_reduce_add_ps(d) * row.scale;
    }
    let chunks = len.div_ceil(16);
    let tail = ((1u32 << (len - 16 * (chunks - 1))) - 1) as u16;
    let ninf = _mm512_set1_ps(f32::NEG_INFINITY);
    let mut vm = ninf;
    for i in 0..chunks {
        let k = if i + 1 == chunks { tail } else { 0xFFFF };
        vm = _mm512_max_ps(vm, _mm512_mask_loadu_ps(ninf, k, sp.add(16 * i)));
    }
    let old = *m;
    let mx = _mm512_reduce_max_ps(vm).max(old);
    let fs = if mx > old { (old - mx).exp() } else { 1.0 };
    *m = mx;
    // Weights of the tile, their sum, and the values they weigh.
    let (vmx, mut sum) = (_mm512_set1_ps(mx), _mm512_setzero_ps());
    for i in 0..chunks {
        let k = if i + 1 == chunks { tail } else { 0xFFFF };
        let x = _mm512_mask_loadu_ps(ninf, k, sp.add(16 * i));
        let p = exp16(_mm512_sub_ps(x, vmx));
        sum = _mm512_add_ps(sum, p);
        _mm512_storeu_ps(sp.add(16 * i), p);
    }
    *l = *l * fs + _mm512_reduce_add_ps(sum);
    let f = _mm512_set1_ps(fs);
    let mut o = [_mm512_setzero_ps(); C];
    for (c, oc) in o.iter_mut().enumerate() {
        *oc = _mm512_mul_ps(f, _mm512_loadu_ps(acc.add(16 * c)));
    }
    for j in 0..len {
        let (p, vp) = (_mm512_set1_ps(*sp.add(j)), vt.add(j * row_bytes));
        for (c, oc) in o.iter_mut().enumerate() {
            *oc = _mm512_fmadd_ps(p, load16::<H>(vp, 16 * c), *oc);
        }
    }
    for (c, oc) in o.iter().enumerate() {
        _mm512_storeu_ps(acc.add(16 * c), *oc);
    }
}
