//! The tiled online-softmax attention of [`super::attention`] for NEON: 4 lanes of a head per
//! register, f16 keys and values widened with `fcvtl` as they are loaded.

use super::attention::{
    attend_scalar, outer_span, AttnBlock, AttnState, Kv, EXP_POLY, LN2_HI, LN2_LO, TILE,
};
use std::arch::aarch64::*;

/// Head sizes 64, 128 and 256 run here; others take the reference.
///
/// Soundness: NEON and `fcvtl` (half to single widening, Armv8.0 Advanced SIMD) are baseline
/// on aarch64; [`AttnBlock::check`] keeps every load in bounds.
pub(super) fn attend(b: &AttnBlock<'_>, st: &mut AttnState<'_>) {
    b.check(st);
    let (k, v) = (b.keys, b.values);
    unsafe {
        match (b.hd, k, v) {
            (64, Kv::F16(k), Kv::F16(v)) => {
                run::<16, true>(b, k.as_ptr().cast(), v.as_ptr().cast(), st)
            }
            (128, Kv::F16(k), Kv::F16(v)) => {
                run::<32, true>(b, k.as_ptr().cast(), v.as_ptr().cast(), st)
            }
            (256, Kv::F16(k), Kv::F16(v)) => {
                run::<64, true>(b, k.as_ptr().cast(), v.as_ptr().cast(), st)
            }
            (64, Kv::F32(k), Kv::F32(v)) => {
                run::<16, false>(b, k.as_ptr().cast(), v.as_ptr().cast(), st)
            }
            (128, Kv::F32(k), Kv::F32(v)) => {
                run::<32, false>(b, k.as_ptr().cast(), v.as_ptr().cast(), st)
            }
            (256, Kv::F32(k), Kv::F32(v)) => {
                run::<64, false>(b, k.as_ptr().cast(), v.as_ptr().cast(), st)
            }
            _ => attend_scalar(b, st),
        }
    }
}

/// Four f16 bit patterns widened to f32. Rust's `vcvt_f32_f16` needs the unstable `f16`
/// vector types, so the (baseline) instruction is written out.
#[inline(always)]
pub(super) unsafe fn f16x4_to_f32(h: uint16x4_t) -> float32x4_t {
    let out: float32x4_t;
    std::arch::asm!(
        "fcvtl {o:v}.4s, {i:v}.4h",
        o = lateout(vreg) out,
        i = in(vreg) h,
        options(pure, nomem, nostack, preserves_flags)
    );
    out
}

/// Four f32 narrowed to f16 bits, rounding to nearest even (`fcvtn`).
#[inline(always)]
pub(super) unsafe fn f32x4_to_f16(x: float32x4_t) -> uint16x4_t {
    let out: uint16x4_t;
    std::arch::asm!(
        "fcvtn {o:v}.4h, {i:v}.4s",
        o = lateout(vreg) out,
        i = in(vreg) x,
        options(pure, nomem, nostack, preserves_flags)
    );
    out
}

/// 4 elements from `base` (f16 bits when `H`, else f32) at element index `i`, as f32.
#[inline(always)]
unsafe fn load4<const H: bool>(base: *const u8, i: usize) -> float32x4_t {
    if H {
        f16x4_to_f32(vld1_u16(base.add(2 * i).cast()))
    } else {
        vld1q_f32(base.cast::<f32>().add(i))
    }
}

/// `exp(x)` lane by lane for `x <= 0`, as [`super::attention::exp_approx`] describes; lanes
/// below -87 (and -inf) give 0.
#[inline(always)]
unsafe fn exp4(x: float32x4_t) -> float32x4_t {
    let n = vrndnq_f32(vmulq_n_f32(x, std::f32::consts::LOG2_E));
    let r = vfmsq_f32(x, n, vdupq_n_f32(LN2_HI));
    let r = vfmsq_f32(r, n, vdupq_n_f32(LN2_LO));
    let mut p = vdupq_n_f32(EXP_POLY[6]);
    for &c in EXP_POLY[..6].iter().rev() {
        p = vfmaq_f32(vdupq_n_f32(c), p, r);
    }
    // 2^n built in the exponent field; n >= -126 wherever the lane is kept.
    let e = vshlq_n_s32::<23>(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)));
    let y = vmulq_f32(p, vreinterpretq_f32_s32(e));
    let keep = vcgeq_f32(x, vdupq_n_f32(-87.0));
    vreinterpretq_f32_u32(vandq_u32(keep, vreinterpretq_u32_f32(y)))
}

unsafe fn run<const C: usize, const H: bool>(
    b: &AttnBlock<'_>,
    kb: *const u8,
    vb: *const u8,
    st: &mut AttnState<'_>,
) {
    let hd = 4 * C;
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
                    let (mut d0, mut d1) = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
                    for c in 0..C {
                        let qc = vld1q_f32(qp.add(4 * c));
                        d0 = vfmaq_f32(d0, qc, load4::<H>(k0, 4 * c));
                        d1 = vfmaq_f32(d1, qc, load4::<H>(k1, 4 * c));
                    }
                    *sp.add(j) = vaddvq_f32(d0) * b.scale;
                    if two {
                        *sp.add(j + 1) = vaddvq_f32(d1) * b.scale;
                    }
                    j += 2;
                }
                let padded = len.next_multiple_of(4);
                for i in len..padded {
                    *sp.add(i) = f32::NEG_INFINITY;
                }
                let mut vm = vdupq_n_f32(f32::NEG_INFINITY);
                for i in (0..padded).step_by(4) {
                    vm = vmaxq_f32(vm, vld1q_f32(sp.add(i)));
                }
                let old = st.m[r];
                let mx = vmaxvq_f32(vm).max(old);
                let fs = if mx > old { (old - mx).exp() } else { 1.0 };
                st.m[r] = mx;
                let (vmx, mut sum) = (vdupq_n_f32(mx), vdupq_n_f32(0.0));
                for i in (0..padded).step_by(4) {
                    let p = exp4(vsubq_f32(vld1q_f32(sp.add(i)), vmx));
                    sum = vaddq_f32(sum, p);
                    vst1q_f32(sp.add(i), p);
                }
                st.l[r] = st.l[r] * fs + vaddvq_f32(sum);
                // The weighted values, 8 registers of the head at a time so the accumulator
                // stays in registers whatever the head size.
                let acc = st.acc.as_mut_ptr().add(r * hd);
                let f = vdupq_n_f32(fs);
                for c in (0..C).step_by(8) {
                    let mut o = [vdupq_n_f32(0.0); 8];
                    for (i, oi) in o.iter_mut().enumerate() {
                        *oi = vmulq_f32(f, vld1q_f32(acc.add(4 * (c + i))));
                    }
                    for j in 0..len {
                        let (p, vp) = (vdupq_n_f32(*sp.add(j)), vt.add(j * row_bytes));
                        for (i, oi) in o.iter_mut().enumerate() {
                            *oi = vfmaq_f32(*oi, p, load4::<H>(vp, 4 * (c + i)));
                        }
                    }
                    for (i, oi) in o.iter().enumerate() {
                        vst1q_f32(acc.add(4 * (c + i)), *oi);
                    }
                }
            }
        }
    }
}
