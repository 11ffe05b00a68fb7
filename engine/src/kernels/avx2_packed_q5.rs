//! AVX2 kernels for packed Q5_0 and Q5_1 rows ([`super::packed`]): one weight row against up
//! to four activation rows, with `vpmaddubsw` or AVX-VNNI multiply-accumulates.
//!
//! A group of 16 blocks is two 256-bit halves (lanes 0-7 are the first 32 bytes of every chunk,
//! lanes 8-15 the next 32). Each half's eight weight steps are built once and met by every
//! activation row of the tile; lane `b` of a half's integer sum is then block `b`'s exact dot
//! product, so its scales apply as one vector: `isum * d_w * d_a + m * s_a`, with `m` the
//! block's minimum (Q5_1) or `-16 d_w` (Q5_0, whose quants are stored as `q + 16`). A step's
//! fifth bits come out of the transposed fifth-bit chunk with one shuffle through a 16-entry
//! table (see the layout's notes in [`super::packed`]).
//!
//! A partial group (the last of a row, 3 to 15 blocks) reads its lanes with masked loads, or
//! with plain 16-byte loads where a half holds exactly four blocks (640-wide rows end so), so
//! nothing past the row or the activations is touched; wide groups (one or two blocks) take one
//! or two multiply-accumulates.

use super::avx2_interleaved::{lane_mask, FloatWeight};
use super::blocks::Q8Blocks;
use super::packed::{row_kernels_from_tile, run_rows, TileOut, GROUP, WIDE_MAX};
use crate::dtype::{DType, QK};
use std::arch::x86_64::*;

/// `dot(row, acts[t])` into `out` for `out.rows` packed Q5_0 or Q5_1 rows of `nb` blocks each,
/// back to back at `w`, and 1 to [`super::packed::MAX_TILE`] activation rows quantized by
/// [`super::packed::pack_activations`].
///
/// # Safety
///
/// The caller guarantees that:
/// - the CPU has AVX2, FMA and F16C, and AVX-VNNI when `vnni` is set;
/// - `ty` is Q5_0 or Q5_1 and `w` points to `out.rows * nb * ty.block_bytes()` readable bytes
///   holding rows in the packed layout ([`super::packed::pack_row`]);
/// - `1 <= acts.len() <= super::packed::MAX_TILE`, every `acts[t]` holds at least `nb * QK` quants (in the
///   packed activation order) and `nb` scales and sums, and `out` is valid for every row and
///   token.
///
/// Every load stays within those bytes: partial groups use masked loads.
pub(super) unsafe fn run(
    ty: DType,
    w: *const u8,
    nb: usize,
    acts: &[Q8Blocks<'_>],
    out: TileOut,
    vnni: bool,
) {
    // `packed::check_call` has checked all of the above but the CPU features.
    match (ty, vnni) {
        (DType::Q5_0, false) => plain::<Q5_0>(w, nb, acts, out),
        (DType::Q5_0, true) => with_vnni::<Q5_0>(w, nb, acts, out),
        (DType::Q5_1, false) => plain::<Q5_1>(w, nb, acts, out),
        (DType::Q5_1, true) => with_vnni::<Q5_1>(w, nb, acts, out),
        (other, _) => panic!("{other} has no packed AVX2 5-bit kernel"),
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn plain<B: Q5>(w: *const u8, nb: usize, acts: &[Q8Blocks<'_>], out: TileOut) {
    run_rows::<Kernel<B, Maddubs>>(w, nb, acts, out)
}

#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
unsafe fn with_vnni<B: Q5>(w: *const u8, nb: usize, acts: &[Q8Blocks<'_>], out: TileOut) {
    run_rows::<Kernel<B, Vnni>>(w, nb, acts, out)
}

row_kernels_from_tile!(Q5, Dp);

/// How unsigned-by-signed byte products are accumulated into i32 lanes.
trait Dp {
    /// `acc` lane k += sum of u[4k+j] * s[4k+j] for j in 0..4.
    unsafe fn dp(acc: __m256i, u: __m256i, s: __m256i) -> __m256i;
    /// The same into an accumulator that [`Dp::widen`] turns into i32 lanes; at most four of
    /// these may go into one accumulator.
    unsafe fn dp_short(acc: __m256i, u: __m256i, s: __m256i) -> __m256i;
    unsafe fn widen(acc: __m256i) -> __m256i;
}

struct Maddubs;
struct Vnni;

impl Dp for Maddubs {
    #[inline(always)]
    unsafe fn dp(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
        // 5-bit weights keep each pair sum within i16 (2 * 31 * 127).
        let pairs = _mm256_maddubs_epi16(u, s);
        _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
    }
    #[inline(always)]
    unsafe fn dp_short(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
        // Four pair sums of at most 2 * 31 * 127 each stay within i16 (31,496), so a chain of
        // four steps widens once instead of once per step.
        _mm256_add_epi16(acc, _mm256_maddubs_epi16(u, s))
    }
    #[inline(always)]
    unsafe fn widen(acc: __m256i) -> __m256i {
        _mm256_madd_epi16(acc, _mm256_set1_epi16(1))
    }
}

impl Dp for Vnni {
    #[inline(always)]
    unsafe fn dp(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
        _mm256_dpbusd_avx_epi32(acc, u, s)
    }
    #[inline(always)]
    unsafe fn dp_short(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
        _mm256_dpbusd_avx_epi32(acc, u, s)
    }
    #[inline(always)]
    unsafe fn widen(acc: __m256i) -> __m256i {
        acc
    }
}

/// The two 5-bit types differ only in their constant term.
trait Q5 {
    const TYPE: DType;
    /// Whether blocks carry an f16 minimum (after the group's scales); otherwise `m = -16 d_w`.
    const HAS_MIN: bool;
}

struct Q5_0;
struct Q5_1;

impl Q5 for Q5_0 {
    const TYPE: DType = DType::Q5_0;
    const HAS_MIN: bool = false;
}

impl Q5 for Q5_1 {
    const TYPE: DType = DType::Q5_1;
    const HAS_MIN: bool = true;
}

/// Bytes per block before a group's scales: 16 of nibbles, 4 of fifth bits.
const LEAD: usize = QK / 2 + 4;

/// Eight 32-bit lanes at `p`, those from `n` on zero (and not read).
#[inline(always)]
unsafe fn lanes(p: *const u8, n: usize) -> __m256i {
    match n {
        8 => _mm256_loadu_si256(p as *const __m256i),
        // Half a group, as 640-wide rows end (16 + 4 blocks): one plain load. Masked loads
        // cost two micro-ops each, and this half makes dozens of them.
        4 => _mm256_zextsi128_si256(_mm_loadu_si128(p as *const __m128i)),
        _ => _mm256_maskload_epi32(p as *const i32, lane_mask(n)),
    }
}

/// Eight f32 at `p`, those from `n` on zero (and not read).
#[inline(always)]
unsafe fn floats(p: *const f32, n: usize) -> __m256 {
    match n {
        8 => _mm256_loadu_ps(p),
        4 => _mm256_zextps128_ps256(_mm_loadu_ps(p)),
        _ => _mm256_maskload_ps(p, lane_mask(n)),
    }
}

/// Eight f16 at `p` as f32, those from `n` on zero (and not read).
#[inline(always)]
unsafe fn halves(p: *const u8, n: usize) -> __m256 {
    match n {
        8 => u16::load8(p as *const u16),
        4 => _mm256_zextps128_ps256(_mm_cvtph_ps(_mm_loadl_epi64(p as *const __m128i))),
        _ => u16::load_part(p as *const u16, n),
    }
}

/// `table[i] = 0x10` if bit `k` of `i` is set, else 0, in both 128-bit lanes.
#[inline(always)]
unsafe fn fifth_bit_table(k: usize) -> __m256i {
    let t = &super::packed::FIFTH_BIT[k];
    _mm256_broadcastsi128_si256(_mm_loadu_si128(t.as_ptr() as *const __m128i))
}

/// `out[t] = dot(row, acts[t])` for `T` activation rows.
#[inline(always)]
unsafe fn tile<B: Q5, D: Dp, const T: usize>(
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
        if g <= WIDE_MAX {
            wide::<B, D, T>(p, g, b0, acts, &mut acc);
        } else if g == GROUP {
            // A whole group spelled with the constant, so the activation offsets are
            // immediates (see `avx2_packed.rs`).
            for l0 in [0, 8] {
                half::<B, D, T>(&mut acc, p, GROUP, l0, 8, b0, acts);
            }
        } else {
            for l0 in (0..g).step_by(8) {
                // Whole and half-full halves spelled as constants, so their loads are plain
                // ones rather than a choice per load.
                match (g - l0).min(8) {
                    8 => half::<B, D, T>(&mut acc, p, g, l0, 8, b0, acts),
                    4 => half::<B, D, T>(&mut acc, p, g, l0, 4, b0, acts),
                    n => half::<B, D, T>(&mut acc, p, g, l0, n, b0, acts),
                }
            }
        }
        b0 += g;
    }
    for t in 0..T {
        out[t] = hsum(acc[t]);
    }
}

/// Adds the `n` blocks from lane `l0` on of the group of `g` blocks at `p` (block `b0` of the
/// row) to every token's accumulator.
///
/// Each weight step is built just before every token meets it, rather than all eight up front:
/// eight live steps left too few registers for the tokens' sums, which then went through the
/// stack. Steps 0-3 are the chunks' low nibbles, 4-7 their high nibbles, each with its fifth
/// bit from the transposed chunk through a 16-entry table; each run of four steps is one
/// [`Dp::dp_short`] chain per token, so the tokens' chains are what keeps the multipliers busy.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn half<B: Q5, D: Dp, const T: usize>(
    acc: &mut [__m256; T],
    p: *const u8,
    g: usize,
    l0: usize,
    n: usize,
    b0: usize,
    acts: &[Q8Blocks<'_>],
) {
    let zero = _mm256_setzero_si256();
    let mask = _mm256_set1_epi8(0x0F);
    let wp = p.add(4 * l0);
    let qh = lanes(wp.add(16 * g), n);
    let ap: [*const u8; T] =
        std::array::from_fn(|t| (acts[t].qs.as_ptr() as *const u8).add(b0 * QK + 4 * l0));
    let mut isum = [zero; T];
    for high in [false, true] {
        let bits = if high { _mm256_srli_epi16::<4>(qh) } else { qh };
        let bits = _mm256_and_si256(bits, mask);
        let mut chain = [zero; T];
        for c in 0..4 {
            let v = lanes(wp.add(4 * g * c), n);
            let v = if high { _mm256_srli_epi16::<4>(v) } else { v };
            let w = _mm256_or_si256(
                _mm256_and_si256(v, mask),
                _mm256_shuffle_epi8(fifth_bit_table(c), bits),
            );
            let step = c + if high { 4 } else { 0 };
            for t in 0..T {
                chain[t] = D::dp_short(chain[t], w, lanes(ap[t].add(4 * g * step), n));
            }
        }
        for t in 0..T {
            isum[t] = _mm256_add_epi32(isum[t], D::widen(chain[t]));
        }
    }
    let dw = halves(p.add(LEAD * g + 2 * l0), n);
    let m = if B::HAS_MIN {
        halves(p.add((LEAD + 2) * g + 2 * l0), n)
    } else {
        _mm256_mul_ps(dw, _mm256_set1_ps(-16.0))
    };
    for t in 0..T {
        let a = &acts[t];
        let da = floats(a.d.as_ptr().add(b0 + l0), n);
        let sa = floats(a.s.as_ptr().add(b0 + l0), n);
        let with_min = _mm256_fmadd_ps(m, sa, acc[t]);
        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t]), _mm256_mul_ps(dw, da), with_min);
    }
}

/// `0x10` in byte `i` where bit `i` of `bits` is set, else 0.
#[inline(always)]
unsafe fn fifth_bits(bits: u32) -> __m256i {
    let v = _mm256_set1_epi32(bits as i32);
    // Byte i takes source byte i / 8 (both 128-bit lanes hold all four source bytes).
    let spread = _mm256_shuffle_epi8(
        v,
        _mm256_setr_epi8(
            0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3,
            3, 3, 3,
        ),
    );
    let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    let set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
    _mm256_and_si256(set, _mm256_set1_epi8(0x10))
}

/// f16 at `p` as f32.
#[inline(always)]
unsafe fn half_at(p: *const u8) -> f32 {
    half::f16::from_bits(std::ptr::read_unaligned(p as *const u16)).to_f32()
}

/// Adds a wide group (one or two blocks at block `b0`) to every token's accumulator. Its
/// weights are one vector (one block: `[e0..16, e16..32]`) or two (two blocks: both blocks'
/// elements 0..16, then both blocks' 16..32), so lanes 0-3 belong to block 0 and lanes 4-7 to
/// block `g - 1`.
#[inline(always)]
unsafe fn wide<B: Q5, D: Dp, const T: usize>(
    p: *const u8,
    g: usize,
    b0: usize,
    acts: &[Q8Blocks<'_>],
    acc: &mut [__m256; T],
) {
    let mask = _mm256_set1_epi8(0x0F);
    let bits = p.add(16 * g);
    let word = |i: usize| std::ptr::read_unaligned(bits.add(4 * i) as *const u32);
    let (w0, w1) = if g == 2 {
        let v = _mm256_loadu_si256(p as *const __m256i);
        let lo = _mm256_and_si256(v, mask);
        let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v), mask);
        (
            _mm256_or_si256(lo, fifth_bits(word(0))),
            _mm256_or_si256(hi, fifth_bits(word(1))),
        )
    } else {
        let v = _mm_loadu_si128(p as *const __m128i);
        let m = _mm_set1_epi8(0x0F);
        let lo = _mm_and_si128(v, m);
        let hi = _mm_and_si128(_mm_srli_epi16::<4>(v), m);
        let w = _mm256_set_m128i(hi, lo);
        (_mm256_or_si256(w, fifth_bits(word(0))), w)
    };
    let d = |b: usize| half_at(p.add(LEAD * g + 2 * b));
    let min = |b: usize| {
        if B::HAS_MIN {
            half_at(p.add((LEAD + 2) * g + 2 * b))
        } else {
            -16.0 * d(b)
        }
    };
    let last = g - 1;
    for (t, acc) in acc.iter_mut().enumerate() {
        let a = &acts[t];
        let ap = (a.qs.as_ptr() as *const u8).add(b0 * QK);
        let mut isum = D::dp(
            _mm256_setzero_si256(),
            w0,
            _mm256_loadu_si256(ap as *const __m256i),
        );
        if g == 2 {
            isum = D::dp(isum, w1, _mm256_loadu_si256(ap.add(32) as *const __m256i));
        }
        let (s0, s1) = (d(0) * a.d[b0], d(last) * a.d[b0 + last]);
        let scale = _mm256_setr_ps(s0, s0, s0, s0, s1, s1, s1, s1);
        let m1 = if g == 2 { min(1) * a.s[b0 + 1] } else { 0.0 };
        let mterm = _mm256_setr_ps(min(0) * a.s[b0], 0.0, 0.0, 0.0, m1, 0.0, 0.0, 0.0);
        *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), scale, _mm256_add_ps(*acc, mterm));
    }
}

#[inline(always)]
unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::blocks::Q8Row;
    use crate::kernels::packed::MAX_TILE;
    use crate::kernels::packed::{dot_reference, pack_activations, pack_row};
    use crate::kernels::test_support::{magnitude, random_blocks, Rng};

    fn variants() -> Vec<bool> {
        let mut out = Vec::new();
        if is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
        {
            out.push(false);
            if is_x86_feature_detected!("avxvnni") {
                out.push(true);
            }
        }
        out
    }

    #[test]
    fn packed_q5_tiles_match_the_reference() {
        let variants = variants();
        if variants.is_empty() {
            eprintln!("no AVX2 on this CPU: nothing to test");
            return;
        }
        let mut rng = Rng(0x0A5_2005);
        for vnni in variants {
            for nb in [1, 2, 3, 4, 7, 8, 9, 12, 15, 16, 17, 18, 20, 24, 28, 33, 48] {
                let n = nb * QK;
                let rows: Vec<Vec<f32>> = (0..MAX_TILE)
                    .map(|_| (0..n).map(|_| rng.f32() * 3.0).collect())
                    .collect();
                let mut pa = Q8Row::default();
                pack_activations(&rows.concat(), n, &mut pa);
                let view = |t: usize| Q8Blocks {
                    qs: &pa.qs[t * n..(t + 1) * n],
                    d: &pa.d[t * nb..(t + 1) * nb],
                    s: &pa.s[t * nb..(t + 1) * nb],
                };
                for ty in DType::FIVE_BIT {
                    let raw = random_blocks(&mut rng, ty, n);
                    let mut w = vec![0u8; raw.len()];
                    pack_row(ty, &raw, &mut w);
                    for tn in 1..=MAX_TILE {
                        let acts: Vec<_> = (0..tn).map(view).collect();
                        let mut got = vec![0f32; tn];
                        let out = TileOut {
                            rows: 1,
                            ptr: got.as_mut_ptr(),
                            stride: 1,
                        };
                        // SAFETY: features checked in `variants`; `w` is a whole packed row of
                        // `nb` blocks, every view holds `nb` blocks, `got` one float per view.
                        unsafe { run(ty, w.as_ptr(), nb, &acts, out, vnni) };
                        for t in 0..tn {
                            let want = dot_reference(ty, &w, view(t));
                            let mut one = Q8Row::default();
                            one.quantize_from(&rows[t]);
                            // The -16 d_w * s_a term the reference does not add cancels
                            // against the integer sums, so it widens the bound too.
                            let extra: f32 = raw
                                .chunks_exact(ty.block_bytes())
                                .enumerate()
                                .map(|(i, b)| {
                                    (16.0 * crate::kernels::packed::half_at(b, 0) * one.s[i]).abs()
                                })
                                .sum();
                            let tol = (2 * nb + 40) as f32
                                * f32::EPSILON
                                * (magnitude(ty, &raw, &one) + extra)
                                + f32::MIN_POSITIVE;
                            assert!(
                                (got[t] - want).abs() <= tol,
                                "vnni={vnni} {ty} nb={nb} tile={tn} row {t}: {} vs {want}",
                                got[t]
                            );
                        }
                    }
                }
            }
        }
    }
}
