//! The dotprod NEON table's K-quant tile: one weight row against up to four activation rows.
//!
//! The single-row kernels ([`super::neon`]) decode a super-block's 6-bit scales, convert its
//! f16 scales and unpack its quants once per token; a prefill meets every row once per token.
//! Here a super-block is made ready once per tile (sixteen weight vectors as signed bytes, the
//! scales widened) and each token costs only its `sdot`s, the pairwise sums and the f32 FMAs.
//! Static count (`engine/scripts/neon-instruction-count.sh`), per super-block and token at four
//! tokens: Q4_K 88, Q5_K 97, Q6_K 116 instructions, against the single-row kernels' 107, 147
//! and 158. The same tile on plain NEON (`smull`/`sadalp`, two to four instructions where
//! `sdot` is one) came out level or worse than its row kernels (Q4_K 175 against 147: with
//! sixteen weight vectors live, the token loop spills), so the plain table keeps calling its
//! row kernel once per token.
//!
//! Results equal the single-row kernel's bit for bit: the integer sub-block (Q6_K: 16-element
//! group) sums are the same exact integers, and the f32 operations per (super-block, token) are
//! the same ones in the same order, `dmin * m` included (computed once here, the same product).

use super::neon::{f16_at, transpose_sum, widen_u8, Dot, Sdot};
use super::tile::check_tile;
use super::SUB;
use super::{
    q4_k_scales_mins, Q4_K_QS, Q4_K_SCALES, Q5_K_QH, Q5_K_QS, Q6_K_D, Q6_K_QH, Q6_K_SCALES,
};
use crate::dtype::{DType, QK};
use crate::kernels::blocks::Q8Blocks;
use std::arch::aarch64::*;

// Soundness: the tile is visible only inside `kernels`, where the dotprod NEON table (handed
// out after detecting dotprod) is its only user. `check_tile` keeps the activation loads
// inside their slices; weight loads stay inside whole super-blocks of `w`.

/// The dotprod table's tile.
pub(in crate::kernels) fn dot_k_tile_dotprod(
    ty: DType,
    w: &[u8],
    acts: &[Q8Blocks<'_>],
    out: &mut [f32],
) {
    let nsb = check_tile(ty, w, acts, out);
    unsafe { with_dotprod(ty, w, acts, out, nsb) }
}

#[target_feature(enable = "dotprod")]
unsafe fn with_dotprod(ty: DType, w: &[u8], acts: &[Q8Blocks<'_>], out: &mut [f32], nsb: usize) {
    match ty {
        DType::Q4_K => by_len::<Q4K>(w, acts, out, nsb),
        DType::Q5_K => by_len::<Q5K>(w, acts, out, nsb),
        _ => by_len::<Q6K>(w, acts, out, nsb),
    }
}

#[inline(always)]
unsafe fn by_len<K: Kind>(w: &[u8], acts: &[Q8Blocks<'_>], out: &mut [f32], nsb: usize) {
    match acts.len() {
        1 => tile::<K, 1>(w, acts, out, nsb),
        2 => tile::<K, 2>(w, acts, out, nsb),
        3 => tile::<K, 3>(w, acts, out, nsb),
        _ => tile::<K, 4>(w, acts, out, nsb),
    }
}

/// One super-block made ready: vector `2j + h` holds elements `16h..16h + 16` of sub-block `j`
/// as signed bytes (Q6_K's already less 32), which meet the activation bytes at the same offset.
struct Ready {
    w: [int8x16_t; 16],
    /// Q4_K/Q5_K: the sub-block scales (lanes 0-3, 4-7) in `sc[0..2]`; Q6_K: the sixteen group
    /// scales, four per vector.
    sc: [int32x4_t; 4],
    /// `dmin * m` for sub-blocks 0-3 and 4-7 (Q4_K and Q5_K).
    dm: [float32x4_t; 2],
    /// The super-block's f16 scale.
    d: f32,
}

trait Kind {
    /// Values carry a `-dmin * m` term, and sub-blocks have one scale each (Q4_K, Q5_K);
    /// otherwise two per sub-block and no minimum (Q6_K).
    const MIN: bool;
    const TYPE: DType;
    unsafe fn ready(blk: &[u8]) -> Ready;
}

struct Q4K;
struct Q5K;
struct Q6K;

/// The Q4_K header (Q5_K's too), with the quants already unpacked.
#[inline(always)]
unsafe fn q4_k_header(blk: &[u8], w: [int8x16_t; 16]) -> Ready {
    let (sc, m) = q4_k_scales_mins(&blk[Q4_K_SCALES..Q4_K_QS]);
    let (sc0, sc1) = widen_u8(&sc);
    let (m0, m1) = widen_u8(&m);
    let dmin = f16_at(blk, 2);
    Ready {
        w,
        sc: [sc0, sc1, vdupq_n_s32(0), vdupq_n_s32(0)],
        dm: [
            vmulq_n_f32(vcvtq_f32_s32(m0), dmin),
            vmulq_n_f32(vcvtq_f32_s32(m1), dmin),
        ],
        d: f16_at(blk, 0),
    }
}

impl Kind for Q4K {
    const MIN: bool = true;
    const TYPE: DType = DType::Q4_K;
    #[inline(always)]
    unsafe fn ready(blk: &[u8]) -> Ready {
        let low4 = vdupq_n_u8(0x0F);
        let qs = blk.as_ptr().add(Q4_K_QS);
        let mut w = [vdupq_n_s8(0); 16];
        for c in 0..SUB / 2 {
            for h in 0..2 {
                let b = vld1q_u8(qs.add(QK * c + 16 * h));
                // Nibbles are at most 15, so they are also valid signed bytes.
                w[4 * c + h] = vreinterpretq_s8_u8(vandq_u8(b, low4));
                w[4 * c + 2 + h] = vreinterpretq_s8_u8(vshrq_n_u8::<4>(b));
            }
        }
        q4_k_header(blk, w)
    }
}

impl Kind for Q5K {
    const MIN: bool = true;
    const TYPE: DType = DType::Q5_K;
    #[inline(always)]
    unsafe fn ready(blk: &[u8]) -> Ready {
        let low4 = vdupq_n_u8(0x0F);
        let sixteen = vdupq_n_u8(16);
        let qs = blk.as_ptr().add(Q5_K_QS);
        let mut w = [vdupq_n_s8(0); 16];
        for h in 0..2 {
            let qh = vld1q_u8(blk.as_ptr().add(Q5_K_QH + 16 * h));
            for c in 0..SUB / 2 {
                let b = vld1q_u8(qs.add(QK * c + 16 * h));
                // Sub-block j's fifth bits are bit j of qh; values are at most 31.
                let even = vandq_u8(vtstq_u8(qh, vdupq_n_u8(1 << (2 * c))), sixteen);
                let odd = vandq_u8(vtstq_u8(qh, vdupq_n_u8(2 << (2 * c))), sixteen);
                w[4 * c + h] = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(b, low4), even));
                w[4 * c + 2 + h] = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8::<4>(b), odd));
            }
        }
        q4_k_header(blk, w)
    }
}

impl Kind for Q6K {
    const MIN: bool = false;
    const TYPE: DType = DType::Q6_K;
    #[inline(always)]
    unsafe fn ready(blk: &[u8]) -> Ready {
        let low4 = vdupq_n_u8(0x0F);
        let bits45 = vdupq_n_u8(0x30);
        let p = blk.as_ptr();
        let mut w = [vdupq_n_s8(0); 16];
        for h in 0..2 {
            for half in 0..2 {
                let ql0 = vld1q_u8(p.add(64 * h + 16 * half));
                let ql1 = vld1q_u8(p.add(64 * h + 32 + 16 * half));
                let qh = vld1q_u8(p.add(Q6_K_QH + 32 * h + 16 * half));
                // Quarter k's two high bits are bits 2k..2k+2 of qh, moved to bits 4..6.
                let quarters = [
                    vorrq_u8(vandq_u8(ql0, low4), vandq_u8(vshlq_n_u8::<4>(qh), bits45)),
                    vorrq_u8(vandq_u8(ql1, low4), vandq_u8(vshlq_n_u8::<2>(qh), bits45)),
                    vorrq_u8(vshrq_n_u8::<4>(ql0), vandq_u8(qh, bits45)),
                    vorrq_u8(vshrq_n_u8::<4>(ql1), vandq_u8(vshrq_n_u8::<2>(qh), bits45)),
                ];
                for (k, &q) in quarters.iter().enumerate() {
                    let j = 4 * h + k;
                    w[2 * j + half] = vsubq_s8(vreinterpretq_s8_u8(q), vdupq_n_s8(32));
                }
            }
        }
        let scales = vld1q_s8(p.add(Q6_K_SCALES) as *const i8);
        let (s_lo, s_hi) = (vmovl_s8(vget_low_s8(scales)), vmovl_high_s8(scales));
        Ready {
            w,
            sc: [
                vmovl_s16(vget_low_s16(s_lo)),
                vmovl_high_s16(s_lo),
                vmovl_s16(vget_low_s16(s_hi)),
                vmovl_high_s16(s_hi),
            ],
            dm: [vdupq_n_f32(0.0); 2],
            d: f16_at(blk, Q6_K_D),
        }
    }
}

#[inline(always)]
unsafe fn tile<K: Kind, const N: usize>(
    w: &[u8],
    acts: &[Q8Blocks<'_>],
    out: &mut [f32],
    nsb: usize,
) {
    let bb = K::TYPE.block_bytes();
    let zero = vdupq_n_f32(0.0);
    let (mut acc0, mut acc1) = ([zero; N], [zero; N]);
    let (mut macc0, mut macc1) = ([zero; N], [zero; N]);
    for i in 0..nsb {
        let r = K::ready(&w[i * bb..(i + 1) * bb]);
        for t in 0..N {
            let a = &acts[t];
            let q = a.qs.as_ptr().add(i * SUB * QK);
            let act = |v: usize| vld1q_s8(q.add(16 * v));
            let (x0, x1) = if K::MIN {
                // One sum per sub-block, as the single-row kernel forms it.
                let mut v = [vdupq_n_s32(0); SUB];
                for (j, vj) in v.iter_mut().enumerate() {
                    let even = Sdot::dot(vdupq_n_s32(0), r.w[2 * j], act(2 * j));
                    *vj = Sdot::dot(even, r.w[2 * j + 1], act(2 * j + 1));
                }
                (
                    vmulq_s32(transpose_sum(&v[..4]), r.sc[0]),
                    vmulq_s32(transpose_sum(&v[4..]), r.sc[1]),
                )
            } else {
                // One sum per 16-element group; adjacent groups then pair up into sub-blocks.
                let mut g = [vdupq_n_s32(0); 2 * SUB];
                for (v, gv) in g.iter_mut().enumerate() {
                    *gv = Sdot::dot(vdupq_n_s32(0), r.w[v], act(v));
                }
                let mut gs = [vdupq_n_s32(0); 4];
                for (k, gk) in gs.iter_mut().enumerate() {
                    *gk = vmulq_s32(transpose_sum(&g[4 * k..4 * k + 4]), r.sc[k]);
                }
                (vpaddq_s32(gs[0], gs[1]), vpaddq_s32(gs[2], gs[3]))
            };
            let da = a.d.as_ptr().add(i * SUB);
            acc0[t] = vfmaq_f32(acc0[t], vmulq_n_f32(vld1q_f32(da), r.d), vcvtq_f32_s32(x0));
            acc1[t] = vfmaq_f32(
                acc1[t],
                vmulq_n_f32(vld1q_f32(da.add(4)), r.d),
                vcvtq_f32_s32(x1),
            );
            if K::MIN {
                let s = a.s.as_ptr().add(i * SUB);
                macc0[t] = vfmaq_f32(macc0[t], r.dm[0], vld1q_f32(s));
                macc1[t] = vfmaq_f32(macc1[t], r.dm[1], vld1q_f32(s.add(4)));
            }
        }
    }
    for t in 0..N {
        let sum = vaddvq_f32(vaddq_f32(acc0[t], acc1[t]));
        out[t] = if K::MIN {
            sum - vaddvq_f32(vaddq_f32(macc0[t], macc1[t]))
        } else {
            sum
        };
    }
}
