//! K-quant weights (GGML's Q4_K, Q5_K and Q6_K): 256-element super-blocks with 6- or 8-bit
//! sub-block scales under one f16 scale. Like every weight type they run in the file's own
//! format; the 32-element types the K-quant mixes fall back to (Q5_0, Q5_1, Q8_0) have their
//! own kernels too ([`super::q5`] and each ISA's table), so nothing is widened at load.
//!
//! The activations stay in the engine's 32-element [`Q8Blocks`](super::blocks::Q8Blocks)
//! rather than GGML's 256-element Q8_K, so one quantized activation row serves every weight
//! type. The price is that each 32-element sub-block meets its own activation scale in f32,
//! instead of the whole super-block being summed in integers as GGML does.
//!
//! Byte layouts (offsets within one super-block):
//!
//! * Q4_K, 144 bytes: f16 `d` at 0, f16 `dmin` at 2, 12 bytes of packed 6-bit scales and mins
//!   at 4, 128 bytes of nibbles at 16. Sub-block `j` (elements 32j..32j+32) takes its nibbles
//!   from bytes 32*(j/2).. of the nibbles, low nibbles for even `j`, high for odd, and
//!   value = d * sc[j] * q - dmin * m[j].
//! * Q5_K, 176 bytes: Q4_K's header (d, dmin, the same 12 packed bytes) at 0, 32 bytes of fifth
//!   bits `qh` at 16, 128 bytes of nibbles at 48 laid out as Q4_K's. Element l of sub-block `j`
//!   takes its fifth bit from bit `j` of qh[l]; value = d * sc[j] * q - dmin * m[j], q in 0..32.
//! * Q6_K, 210 bytes: `ql` (low 4 bits) at 0, `qh` (high 2 bits) at 128, 16 i8 scales at 192,
//!   f16 `d` at 208. Each 128-element half `h` uses ql[64h..64h+64] and qh[32h..32h+32]; its
//!   32-element quarter `k` takes low nibbles of ql[64h + 32(k%2)..] for k < 2 and high nibbles
//!   for k >= 2, and bits 2k..2k+2 of qh[32h..]. value = d * scale[i/16] * (q - 32).

pub mod scalar;
pub mod tile;

#[cfg(target_arch = "x86_64")]
pub(super) mod avx2;
#[cfg(target_arch = "x86_64")]
pub(super) mod avx2_tile;
#[cfg(target_arch = "x86_64")]
pub(super) mod avx512;
#[cfg(target_arch = "x86_64")]
pub(super) mod avx512_tile;
#[cfg(target_arch = "aarch64")]
pub(super) mod neon;
#[cfg(target_arch = "aarch64")]
pub(super) mod neon_tile;

use crate::dtype::{DType, QK, QK_K};
use half::f16;

/// Sub-blocks of [`QK`] elements per super-block: one activation block each.
pub const SUB: usize = QK_K / QK;

pub(crate) const Q4_K_SCALES: usize = 4;
pub(crate) const Q4_K_QS: usize = 16;
pub(crate) const Q5_K_QH: usize = 16;
pub(crate) const Q5_K_QS: usize = 48;
pub(crate) const Q6_K_QH: usize = 128;
pub(crate) const Q6_K_SCALES: usize = 192;
pub(crate) const Q6_K_D: usize = 208;

#[inline(always)]
pub(crate) fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// The eight 6-bit scales and eight 6-bit mins of a Q4_K super-block, from its 12 packed
/// bytes. Scales and mins 0..4 are the low 6 bits of bytes 0..4 and 4..8; 4..8 keep their low
/// 4 bits in the nibbles of bytes 8..12 and their top 2 bits in the spare top bits of bytes
/// 0..8. Done four lanes at a time in u32s because every kernel runs this once per
/// super-block, where sixteen separate byte extractions would be a visible cost.
#[inline(always)]
pub(crate) fn q4_k_scales_mins(packed: &[u8]) -> ([u8; 8], [u8; 8]) {
    let word = |i: usize| u32::from_le_bytes(packed[4 * i..4 * i + 4].try_into().unwrap());
    let (w0, w1, w2) = (word(0), word(1), word(2));
    const LOW6: u32 = 0x3F3F_3F3F;
    const LOW4: u32 = 0x0F0F_0F0F;
    const LOW2: u32 = 0x0303_0303;
    let sc_lo = w0 & LOW6;
    let m_lo = w1 & LOW6;
    let sc_hi = (w2 & LOW4) | (((w0 >> 6) & LOW2) << 4);
    let m_hi = ((w2 >> 4) & LOW4) | (((w1 >> 6) & LOW2) << 4);
    let join = |lo: u32, hi: u32| (lo as u64 | (hi as u64) << 32).to_le_bytes();
    (join(sc_lo, sc_hi), join(m_lo, m_hi))
}

/// Decodes one Q4_K super-block into 256 values.
pub fn dequantize_q4_k(blk: &[u8], out: &mut [f32]) {
    debug_assert_eq!(blk.len(), DType::Q4_K.block_bytes());
    let (d, dmin) = (f16_at(blk, 0), f16_at(blk, 2));
    let (sc, m) = q4_k_scales_mins(&blk[Q4_K_SCALES..Q4_K_QS]);
    for (j, o) in out.chunks_exact_mut(QK).enumerate() {
        let bytes = &blk[Q4_K_QS + QK * (j / 2)..][..QK];
        let shift = 4 * (j % 2);
        // Same two products as GGML's dequantize_row_q4_K, so the embedding rows we read
        // equal llama.cpp's to the bit.
        let (dj, mj) = (d * sc[j] as f32, dmin * m[j] as f32);
        for (o, &b) in o.iter_mut().zip(bytes) {
            *o = dj * ((b >> shift) & 0x0F) as f32 - mj;
        }
    }
}

/// The 5-bit value (0..32) of element `l` of sub-block `j` of a Q5_K super-block.
#[inline(always)]
pub(crate) fn q5_k_quant(blk: &[u8], j: usize, l: usize) -> u8 {
    let lo = (blk[Q5_K_QS + QK * (j / 2) + l] >> (4 * (j % 2))) & 0x0F;
    lo | ((blk[Q5_K_QH + l] >> j) & 1) << 4
}

/// Decodes one Q5_K super-block into 256 values.
pub fn dequantize_q5_k(blk: &[u8], out: &mut [f32]) {
    debug_assert_eq!(blk.len(), DType::Q5_K.block_bytes());
    let (d, dmin) = (f16_at(blk, 0), f16_at(blk, 2));
    let (sc, m) = q4_k_scales_mins(&blk[Q4_K_SCALES..Q4_K_QS]);
    for (j, o) in out.chunks_exact_mut(QK).enumerate() {
        // ggml's dequantize_row_q5_K: (d * sc) * q - dmin * m, so embedding rows match it.
        let (dj, mj) = (d * sc[j] as f32, dmin * m[j] as f32);
        for (l, o) in o.iter_mut().enumerate() {
            *o = dj * q5_k_quant(blk, j, l) as f32 - mj;
        }
    }
}

/// The 6-bit value (0..64, before the -32 bias) of element `i` of a Q6_K super-block.
#[inline(always)]
pub(crate) fn q6_k_quant(blk: &[u8], i: usize) -> u8 {
    let (h, k, l) = (i / 128, (i % 128) / 32, i % 32);
    let lo = blk[64 * h + 32 * (k % 2) + l] >> (4 * (k / 2)) & 0x0F;
    let hi = (blk[Q6_K_QH + 32 * h + l] >> (2 * k)) & 0x03;
    lo | hi << 4
}

/// Decodes one Q6_K super-block into 256 values.
pub fn dequantize_q6_k(blk: &[u8], out: &mut [f32]) {
    debug_assert_eq!(blk.len(), DType::Q6_K.block_bytes());
    let d = f16_at(blk, Q6_K_D);
    for (i, o) in out.iter_mut().enumerate() {
        let sc = blk[Q6_K_SCALES + i / 16] as i8;
        // (d * sc) * q, associated as GGML does it.
        *o = d * sc as f32 * (q6_k_quant(blk, i) as i32 - 32) as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::blocks::{dequantize_row, Q8Blocks, Q8Row};
    use crate::kernels::test_support::Rng;

    type Dot = fn(&[u8], Q8Blocks<'_>) -> f32;

    /// One SIMD variant's kernels for [`DType::K_QUANTS`], in that order (Q4_K, Q5_K, Q6_K).
    type Variant = (&'static str, [Dot; 3]);

    /// Every SIMD variant of the K-quant kernels this CPU can run, including the ones the
    /// tables would not pick (plain AVX-512 on a VNNI machine, plain NEON with dotprod).
    fn simd_variants() -> Vec<Variant> {
        #[allow(unused_mut)]
        let mut out: Vec<Variant> = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("f16c")
            {
                out.push(("avx2", [avx2::dot_q4_k, avx2::dot_q5_k, avx2::dot_q6_k]));
            }
            if avx512::has_avx512() {
                out.push((
                    "avx512",
                    [avx512::dot_q4_k, avx512::dot_q5_k, avx512::dot_q6_k],
                ));
                if is_x86_feature_detected!("avx512vnni") {
                    out.push((
                        "avx512+vnni",
                        [
                            avx512::dot_q4_k_vnni,
                            avx512::dot_q5_k_vnni,
                            avx512::dot_q6_k_vnni,
                        ],
                    ));
                }
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            out.push(("neon", [neon::dot_q4_k, neon::dot_q5_k, neon::dot_q6_k]));
            if std::arch::is_aarch64_feature_detected!("dotprod") {
                out.push((
                    "neon+dotprod",
                    [
                        neon::dot_q4_k_dotprod,
                        neon::dot_q5_k_dotprod,
                        neon::dot_q6_k_dotprod,
                    ],
                ));
            }
        }
        out
    }

    /// The scalar references, in [`DType::K_QUANTS`] order.
    const SCALAR: [Dot; 3] = [scalar::dot_q4_k, scalar::dot_q5_k, scalar::dot_q6_k];

    /// Random super-blocks: every byte random except the f16 scales, which are finite and at
    /// most 0.1 in magnitude.
    fn random_blocks(rng: &mut Rng, ty: DType, nsb: usize) -> Vec<u8> {
        let mut w = vec![0u8; nsb * ty.block_bytes()];
        for blk in w.chunks_exact_mut(ty.block_bytes()) {
            blk.iter_mut().for_each(|b| *b = rng.next() as u8);
            let halves: &[usize] = if ty == DType::Q6_K {
                &[Q6_K_D]
            } else {
                &[0, 2]
            };
            for &at in halves {
                let v = f16::from_f32(rng.f32() * 0.1);
                blk[at..at + 2].copy_from_slice(&v.to_le_bytes());
            }
        }
        w
    }

    /// Sum of the magnitudes of the terms the scalar reference adds (see the integration
    /// test's header for why the tolerance is a multiple of this).
    fn magnitude(ty: DType, w: &[u8], a: &Q8Row) -> f32 {
        let mut m = 0.0f64;
        for (i, blk) in w.chunks_exact(ty.block_bytes()).enumerate() {
            for j in 0..SUB {
                let b = i * SUB + j;
                let qa = &a.qs[b * QK..(b + 1) * QK];
                if ty == DType::Q6_K {
                    let mut iabs = 0i64;
                    for (l, &x) in qa.iter().enumerate() {
                        let sc = blk[Q6_K_SCALES + 2 * j + l / 16] as i8 as i64;
                        let q = q6_k_quant(blk, QK * j + l) as i64 - 32;
                        iabs += (sc * q * x as i64).abs();
                    }
                    m += (f16_at(blk, Q6_K_D) * a.d[b]).abs() as f64 * iabs as f64;
                } else {
                    let (sc, mins) = q4_k_scales_mins(&blk[Q4_K_SCALES..Q4_K_QS]);
                    let iabs: i64 = qa
                        .iter()
                        .enumerate()
                        .map(|(l, &x)| {
                            let q = if ty == DType::Q4_K {
                                (blk[Q4_K_QS + QK * (j / 2) + l] >> (4 * (j % 2))) & 15
                            } else {
                                q5_k_quant(blk, j, l)
                            };
                            (q as i64 * x as i64).abs()
                        })
                        .sum();
                    m += (f16_at(blk, 0) * a.d[b]).abs() as f64 * (sc[j] as i64 * iabs) as f64;
                    m += (f16_at(blk, 2) * mins[j] as f32 * a.s[b]).abs() as f64;
                }
            }
        }
        m as f32
    }

    fn activations(rng: &mut Rng, n: usize) -> Q8Row {
        let x: Vec<f32> = (0..n).map(|_| rng.f32() * 3.0).collect();
        let mut q8 = Q8Row::default();
        q8.quantize_from(&x);
        q8
    }

    #[test]
    fn every_simd_variant_matches_scalar() {
        let variants = simd_variants();
        if variants.is_empty() {
            eprintln!("no SIMD K-quant kernels for this CPU: nothing to test");
        }
        let mut rng = Rng(0x5EED_0F4B_175E_ED00);
        for (name, kernels) in variants {
            eprintln!("testing {name}");
            // Odd counts leave tails for any unrolling; 9 super-blocks is SmolLM2's ffn_down row.
            for nsb in [1, 2, 3, 5, 6, 7, 9, 13] {
                let q8 = activations(&mut rng, nsb * QK_K);
                for (t, ty) in DType::K_QUANTS.into_iter().enumerate() {
                    let (simd, reference) = (kernels[t], SCALAR[t]);
                    let w = random_blocks(&mut rng, ty, nsb);
                    let (got, want) = (simd(&w, q8.blocks()), reference(&w, q8.blocks()));
                    let terms = 2 * SUB * nsb;
                    let tol = (2 * terms + 16) as f32 * f32::EPSILON * magnitude(ty, &w, &q8)
                        + f32::MIN_POSITIVE;
                    assert!(
                        (got - want).abs() <= tol,
                        "{name} {ty} {nsb} super-blocks: {got} vs scalar {want} (tolerance {tol})"
                    );
                }
            }
        }
    }

    #[test]
    fn vnni_and_dotprod_change_nothing_but_speed() {
        // The extension only changes how the same exact integers are summed, so the plain
        // and extended variants must agree to the bit.
        let variants = simd_variants();
        let mut rng = Rng(0x00D0_790D);
        let mut compared = 0;
        for pair in variants.windows(2) {
            let ((a, ak), (b, bk)) = (pair[0], pair[1]);
            if !b.starts_with(a) || a == b {
                continue;
            }
            compared += 1;
            for nsb in [1, 3, 8] {
                let q8 = activations(&mut rng, nsb * QK_K);
                for (t, ty) in DType::K_QUANTS.into_iter().enumerate() {
                    let w = random_blocks(&mut rng, ty, nsb);
                    assert_eq!(
                        ak[t](&w, q8.blocks()).to_bits(),
                        bk[t](&w, q8.blocks()).to_bits(),
                        "{a} vs {b} {ty}"
                    );
                }
            }
        }
        eprintln!("compared {compared} plain/extended variant pairs");
    }

    type Tile = fn(DType, &[u8], &[Q8Blocks<'_>], &mut [f32]);

    /// Every tile kernel this CPU can run beside the single-row kernels of the same variant,
    /// including the variants the tables would not pick.
    fn tile_variants() -> Vec<(&'static str, Tile, [Dot; 3])> {
        let mut out: Vec<(&'static str, Tile, [Dot; 3])> =
            vec![("scalar", tile::dot_k_tile, SCALAR)];
        let singles: std::collections::HashMap<_, _> = simd_variants().into_iter().collect();
        #[cfg(target_arch = "x86_64")]
        let tiles: [(&str, Tile); 3] = [
            ("avx2", avx2_tile::dot_k_tile),
            ("avx512", avx512_tile::dot_k_tile),
            ("avx512+vnni", avx512_tile::dot_k_tile_vnni),
        ];
        #[cfg(target_arch = "aarch64")]
        let tiles: [(&str, Tile); 2] = [
            ("neon", neon::dot_k_tile),
            ("neon+dotprod", neon_tile::dot_k_tile_dotprod),
        ];
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        let tiles: [(&str, Tile); 0] = [];
        for (name, t) in tiles {
            // A variant absent from simd_variants() is one this CPU cannot run.
            if let Some((name, dots)) = singles.get_key_value(name) {
                out.push((*name, t, *dots));
            }
        }
        out
    }

    #[test]
    fn every_tile_equals_its_single_row_kernel_to_the_bit() {
        // A tile only changes how often a super-block is unpacked, not the arithmetic of any
        // (super-block, token) pair, so each output is the single-row kernel's exactly; and
        // hence within the single-row bound of the scalar reference.
        let mut rng = Rng(0x711E_5EED_0000_0001);
        let variants = tile_variants();
        eprintln!(
            "tiles: {:?}",
            variants.iter().map(|v| v.0).collect::<Vec<_>>()
        );
        for (name, tile, dots) in variants {
            for nsb in [1, 2, 3, 6, 9] {
                for tn in 1..=tile::MAX_TILE {
                    let rows: Vec<Q8Row> =
                        (0..tn).map(|_| activations(&mut rng, nsb * QK_K)).collect();
                    let acts: Vec<Q8Blocks<'_>> = rows.iter().map(|r| r.blocks()).collect();
                    for (k, ty) in DType::K_QUANTS.into_iter().enumerate() {
                        let w = random_blocks(&mut rng, ty, nsb);
                        let mut got = vec![f32::NAN; tn];
                        tile(ty, &w, &acts, &mut got);
                        for (t, a) in acts.iter().enumerate() {
                            let single = dots[k](&w, *a);
                            assert_eq!(
                                got[t].to_bits(),
                                single.to_bits(),
                                "{name} {ty} {nsb} super-blocks, token {t} of {tn}: tile {} vs single row {single}",
                                got[t]
                            );
                            let want = SCALAR[k](&w, *a);
                            let terms = 2 * SUB * nsb;
                            let tol = (2 * terms + 16) as f32
                                * f32::EPSILON
                                * magnitude(ty, &w, &rows[t])
                                + f32::MIN_POSITIVE;
                            assert!(
                                (got[t] - want).abs() <= tol,
                                "{name} {ty}: {} vs scalar {want}",
                                got[t]
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "activation rows")]
    fn a_tile_refuses_more_tokens_than_it_takes() {
        let mut rng = Rng(5);
        let row = activations(&mut rng, QK_K);
        let acts = vec![row.blocks(); tile::MAX_TILE + 1];
        let w = random_blocks(&mut rng, DType::Q4_K, 1);
        let mut out = vec![0.0; acts.len()];
        for (_, t, _) in tile_variants().into_iter().rev() {
            t(DType::Q4_K, &w, &acts, &mut out);
        }
    }

    #[test]
    fn scalar_dot_equals_the_dot_of_the_dequantized_rows() {
        // Ties the dot products' reading of the layout to `dequantize_row`'s, which the
        // hand-built blocks below pin to GGML's.
        let mut rng = Rng(0xABCD_EF01_2345_6789);
        for (t, ty) in DType::K_QUANTS.into_iter().enumerate() {
            for nsb in [1, 3] {
                let n = nsb * QK_K;
                let q8 = activations(&mut rng, n);
                let w = random_blocks(&mut rng, ty, nsb);
                let mut wf = vec![0f32; n];
                dequantize_row(ty, &w, &mut wf);
                let want: f64 = (0..n)
                    .map(|i| wf[i] as f64 * (q8.d[i / QK] * q8.qs[i] as f32) as f64)
                    .sum();
                let got = SCALAR[t](&w, q8.blocks());
                let scale: f64 = (0..n)
                    .map(|i| (wf[i] as f64 * (q8.d[i / QK] * q8.qs[i] as f32) as f64).abs())
                    .sum();
                assert!(
                    (got as f64 - want).abs() <= 1e-5 * scale,
                    "{ty} {nsb}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn q5_k_hand_built_block() {
        // d = 0.5, dmin = 0.25; sub-block j has scale j + 1 and min 2j (the 6-bit packing is
        // Q4_K's, tested below). Nibble bytes 0 and 1 are 0x3A and 0xF0; qh[0] = 0b1000_0101
        // (fifth bits for sub-blocks 0, 2 and 7 at element 0), qh[1] = 0b0000_0010.
        let mut blk = vec![0u8; 176];
        blk[0..2].copy_from_slice(&f16::from_f32(0.5).to_le_bytes());
        blk[2..4].copy_from_slice(&f16::from_f32(0.25).to_le_bytes());
        let sc = [1u8, 2, 3, 4, 5, 6, 7, 8];
        let m = [0u8, 2, 4, 6, 8, 10, 12, 14];
        for j in 0..4 {
            blk[4 + j] = sc[j];
            blk[8 + j] = m[j];
            blk[12 + j] = (sc[j + 4] & 0x0F) | ((m[j + 4] & 0x0F) << 4);
        }
        blk[16] = 0b1000_0101;
        blk[17] = 0b0000_0010;
        blk[48] = 0x3A;
        blk[49] = 0xF0;
        let mut out = vec![0f32; 256];
        dequantize_row(DType::Q5_K, &blk, &mut out);
        // element 0: sub-block 0, q = 0xA | 16 = 26: 0.5*1*26 - 0 = 13
        assert_eq!(out[0], 13.0);
        // element 32: sub-block 1, q = 3 (no fifth bit): 0.5*2*3 - 0.25*2 = 2.5
        assert_eq!(out[32], 2.5);
        // element 33: sub-block 1, q = 15 | 16 (bit 1 of qh[1]) = 31: 0.5*2*31 - 0.5 = 30.5
        assert_eq!(out[33], 30.5);
        // element 1: sub-block 0, q = 0: -0
        assert_eq!(out[1], 0.0);
        // element 64: sub-block 2, q = 0 | 16 = 16: 0.5*3*16 - 0.25*4 = 23
        assert_eq!(out[64], 23.0);
        // element 224: sub-block 7, q = 16: 0.5*8*16 - 0.25*14 = 60.5
        assert_eq!(out[224], 60.5);
        // element 225: sub-block 7, q = 0: -3.5
        assert_eq!(out[225], -3.5);
    }

    #[test]
    fn q4_k_scales_and_mins_unpack_like_get_scale_min_k4() {
        // The byte-at-a-time rule from GGML's get_scale_min_k4, on every byte pattern family.
        let mut s = [0u8; 12];
        for seed in 0..64u32 {
            for (i, b) in s.iter_mut().enumerate() {
                *b = (seed.wrapping_mul(2_654_435_761).rotate_left(i as u32 * 5) >> 7) as u8;
            }
            let (sc, m) = q4_k_scales_mins(&s);
            for j in 0..8 {
                let (want_sc, want_m) = if j < 4 {
                    (s[j] & 63, s[j + 4] & 63)
                } else {
                    (
                        (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4),
                        (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
                    )
                };
                assert_eq!((sc[j], m[j]), (want_sc, want_m), "seed {seed} j {j}");
            }
        }
    }

    #[test]
    fn q4_k_hand_built_block() {
        // d = 0.5, dmin = 0.25. Scales: sub-block j has scale j + 1 and min 2j, except that
        // sub-block 7 has scale 60 and min 45 so the top-two-bit path is exercised.
        let mut blk = vec![0u8; 144];
        blk[0..2].copy_from_slice(&f16::from_f32(0.5).to_le_bytes());
        blk[2..4].copy_from_slice(&f16::from_f32(0.25).to_le_bytes());
        let sc = [1u8, 2, 3, 4, 5, 6, 7, 60];
        let m = [0u8, 2, 4, 6, 8, 10, 12, 45];
        for j in 0..4 {
            blk[4 + j] = sc[j] | ((sc[j + 4] >> 4) << 6);
            blk[8 + j] = m[j] | ((m[j + 4] >> 4) << 6);
            blk[12 + j] = (sc[j + 4] & 0x0F) | ((m[j + 4] & 0x0F) << 4);
        }
        // Nibbles: element l of even sub-block 2c is l % 16, of odd sub-block 2c+1 is 15 - l % 16.
        for c in 0..4 {
            for l in 0..32 {
                blk[16 + 32 * c + l] = (l % 16) as u8 | ((15 - l % 16) as u8) << 4;
            }
        }
        let mut out = vec![0f32; 256];
        dequantize_row(DType::Q4_K, &blk, &mut out);
        // A few values worked out by hand:
        // element 0: sub-block 0, q 0: 0.5*1*0 - 0.25*0 = 0
        assert_eq!(out[0], 0.0);
        // element 5: sub-block 0, q 5: 0.5*1*5 - 0 = 2.5
        assert_eq!(out[5], 2.5);
        // element 32: sub-block 1, q 15: 0.5*2*15 - 0.25*2 = 14.5
        assert_eq!(out[32], 14.5);
        // element 100: sub-block 3 (odd, high nibble), l = 4, q = 11: 0.5*4*11 - 0.25*6 = 20.5
        assert_eq!(out[100], 20.5);
        // element 130: sub-block 4, l = 2, q = 2: 0.5*5*2 - 0.25*8 = 3
        assert_eq!(out[130], 3.0);
        // element 255: sub-block 7, l = 31, q = 15 - 15 = 0: 0 - 0.25*45 = -11.25
        assert_eq!(out[255], -11.25);
        // element 240: sub-block 7, l = 16, q = 15: 0.5*60*15 - 11.25 = 438.75
        assert_eq!(out[240], 438.75);
    }

    #[test]
    fn q6_k_hand_built_block() {
        // d = 0.5; scale of 16-element group g is g - 8 (so negative scales are covered).
        let mut blk = vec![0u8; 210];
        blk[208..210].copy_from_slice(&f16::from_f32(0.5).to_le_bytes());
        for g in 0..16 {
            blk[192 + g] = (g as i8 - 8) as u8;
        }
        // ql[3] = 0xA5: element 3 low nibble 5, element 67 high nibble 10.
        // ql[40] = 0x3C: element 40 (quarter 1, l = 8) low nibble 12, element 104 high nibble 3.
        // qh[3] = 0b11_10_01_00 gives high bits 0, 1, 2, 3 to elements 3, 35, 67, 99.
        // qh[8] = 0b01_00_10_00: element 40 (k=1) gets 2, element 104 (k=3) gets 1.
        blk[3] = 0xA5;
        blk[40] = 0x3C;
        blk[128 + 3] = 0b11_10_01_00;
        blk[128 + 8] = 0b01_00_10_00;
        // Second half: ql[64 + 0] = 0x0F, qh[32 + 0] = 0b11 -> element 128 is 63.
        blk[64] = 0x0F;
        blk[128 + 32] = 0b11;
        let mut out = vec![0f32; 256];
        dequantize_row(DType::Q6_K, &blk, &mut out);
        // element 3: q = 5 | 0<<4 = 5, group 0 scale -8: 0.5 * -8 * (5 - 32) = 108
        assert_eq!(out[3], 108.0);
        // element 35: q = 0 | 1<<4 = 16, group 2 scale -6: 0.5 * -6 * -16 = 48
        assert_eq!(out[35], 48.0);
        // element 67: q = 10 | 2<<4 = 42, group 4 scale -4: 0.5 * -4 * 10 = -20
        assert_eq!(out[67], -20.0);
        // element 99: q = 0 | 3<<4 = 48, group 6 scale -2: 0.5 * -2 * 16 = -16
        assert_eq!(out[99], -16.0);
        // element 40: q = 12 | 2<<4 = 44, group 2 scale -6: 0.5 * -6 * 12 = -36
        assert_eq!(out[40], -36.0);
        // element 104: q = 3 | 1<<4 = 19, group 6 scale -2: 0.5 * -2 * -13 = 13
        assert_eq!(out[104], 13.0);
        // element 128: q = 63, group 8 scale 0: 0
        assert_eq!(out[128], 0.0);
        // element 0: q = 0, group 0: 0.5 * -8 * -32 = 128
        assert_eq!(out[0], 128.0);
        // element 255: q = 0, group 15 scale 7: 0.5 * 7 * -32 = -112
        assert_eq!(out[255], -112.0);
    }
}
