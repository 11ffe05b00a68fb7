//! Every SIMD kernel table this CPU can run must agree with the scalar reference kernels.
//!
//! Tolerances are bounds from the usual rounding-error analysis, stated relative to M, the sum
//! of the magnitudes of the terms being added (so cancellation cannot make a correct kernel
//! look wrong, and a wrong one cannot hide behind a large result):
//!
//! * Quantized types: each block's integer dot product is exact in every kernel, and the
//!   weight and activation scales are multiplied the same way, so only the order in which
//!   the f32 block terms are added (and which products are fused) differs. Both sides add at
//!   most `nb` block terms in a chain (nb = number of blocks), plus a few for the horizontal
//!   sums, so |simd - scalar| <= (2 * nb + 16) * eps * M, where
//!   M = sum over blocks of |d_w * d_a| * sum |q_w * q_a| (+ |m * s| for Q4_1).
//!   That is about 2e-6 * M for one block and 1.7e-5 * M for 64 blocks.
//! * f32 and f16: every kernel keeps at least 8 independent partial sums, so neither side has
//!   a chain longer than n / 8 plus a few dozen for tails and reductions:
//!   |simd - scalar| <= (n / 4 + 64) * eps * M with M = sum |w_i * x_i| (f16 weights convert
//!   to f32 exactly). That is about 7e-5 * M for n = 2048.
//!
//! * Q5_0 and Q5_1 are block-quantized like Q4_0 and Q4_1 (with Q5_1's minimum term as Q4_1's),
//!   so the first bound holds as it stands.
//! * K-quants (Q4_K, Q5_K, Q6_K): the same argument per 32-element sub-block. Each sub-block's
//!   integer sum, its sub-block scales already multiplied in, is exact in every kernel, and
//!   `d * d_a` is one identical f32 product, so again only the order of the f32 additions
//!   differs. Q4_K and Q5_K add two terms per sub-block (scale and minimum), Q6_K one; the
//!   bound is the one above with nb = 2 * 8 per super-block, and M = sum over sub-blocks of
//!   |d * d_a| * sum |sc * q_w * q_a| (+ |dmin * m * s| for Q4_K and Q5_K), q_w already
//!   unbiased.
//!
//! * Packed kernels (Q8_0, Q4_0, Q4_1 in the lane-per-block layout, against
//!   `packed::dot_reference`): the same argument, but they add one more f32 term per block,
//!   `m * s_a`, where `m` is Q4_1's minimum, `-8 d_w` for Q4_0 and `-128 d_w` for Q8_0 under
//!   VNNI (its quants made unsigned by adding 128). The last two cancel a part of the integer
//!   sum they are not in the reference's M, so M gains 128 * sum |d_w * s_a| and the chain
//!   count doubles: (2 * (2 * nb + 12) + 16) * eps * M'.
//!
//! Both bounds get `f32::MIN_POSITIVE` of absolute slack, since with tiny scales some products
//! are subnormal and carry an absolute rather than a relative rounding error.
//!
//! A wrong kernel (a nibble in the wrong half, a block skipped, a scale from the wrong block)
//! is off by a sizeable fraction of M, orders of magnitude beyond these bounds.

use half::f16;
use meltbench_engine::dtype::{DType, QK, QK_K};
use meltbench_engine::kernels::blocks::{Q8Blocks, Q8Row};
use meltbench_engine::kernels::{self, kquants, packed, scalar, Isa, Kernels, PackedKernels};
use proptest::prelude::*;
use std::collections::HashSet;
use std::sync::Mutex;

/// The tables under test: every one this CPU can run except the reference itself, including
/// the variants `available()` passes over (plain AVX2 on an AVX-VNNI CPU). Prints them once
/// per test, so `--nocapture` shows what was actually covered.
fn simd_tables(test: &str) -> Vec<&'static Kernels> {
    static ANNOUNCED: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let tables: Vec<_> = kernels::variants()
        .into_iter()
        .filter(|k| k.isa != Isa::Scalar)
        .collect();
    let mut seen = ANNOUNCED.lock().unwrap_or_else(|e| e.into_inner());
    if seen
        .get_or_insert_with(HashSet::new)
        .insert(test.to_string())
    {
        let names: Vec<_> = tables.iter().map(|k| k.isa.name()).collect();
        eprintln!("{test}: testing [{}] against scalar", names.join(", "));
    }
    tables
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        // A failing case is printed in full; a regressions file would be a stray file in the tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

const EPS: f32 = f32::EPSILON;

fn quant_tolerance(blocks: usize, magnitude: f32) -> f32 {
    (2 * blocks + 16) as f32 * EPS * magnitude + f32::MIN_POSITIVE
}

fn float_tolerance(n: usize, magnitude: f32) -> f32 {
    (n / 4 + 64) as f32 * EPS * magnitude + f32::MIN_POSITIVE
}

// ---------------------------------------------------------------------------------------------
// Strategies

/// Block counts: every row length from 32 to 2048, with the odd cases (one block, 3, 33)
/// drawn more often than their share, since pairing and unrolling leave them as tails.
fn block_count() -> impl Strategy<Value = usize> {
    prop_oneof![
        4 => 1usize..=64,
        1 => Just(1usize),
        1 => Just(3usize),
        1 => Just(33usize),
        1 => Just(64usize),
    ]
}

/// f16 bit patterns for block scales: zeros of both signs, subnormals, typical model scales,
/// and any finite normal value (either sign).
fn f16_scale() -> impl Strategy<Value = u16> {
    let sign = |neg: bool| if neg { 0x8000u16 } else { 0 };
    prop_oneof![
        1 => Just(0u16),
        1 => Just(0x8000u16),
        2 => (1u16..0x400, any::<bool>()).prop_map(move |(m, n)| m | sign(n)),
        4 => (-0.05f32..0.05).prop_map(|v| f16::from_f32(v).to_bits()),
        4 => (0x400u16..0x7C00, any::<bool>()).prop_map(move |(b, n)| b | sign(n)),
    ]
}

/// Quantized bytes, with the extremes over-represented: 0x80 is -128 as a Q8_0 weight, and
/// 0x00 / 0xFF / 0x88 are nibbles at 0, 15 and 8 (the Q4_0 zero).
fn quant_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        8 => any::<u8>(),
        1 => Just(0x80u8),
        1 => Just(0x7Fu8),
        1 => Just(0x81u8),
        1 => Just(0x00u8),
        1 => Just(0xFFu8),
        1 => Just(0x88u8),
    ]
}

/// Whether a 32-element block type has an f16 minimum at byte 2.
fn has_min(ty: DType) -> bool {
    matches!(ty, DType::Q4_1 | DType::Q5_1)
}

/// One block of `ty`: its f16 header fields (scale, and minimum for Q4_1 and Q5_1) then random
/// bytes (for Q5_0 and Q5_1 the high-bit word is among them, so every bit pattern is reached).
fn block(ty: DType) -> impl Strategy<Value = Vec<u8>> {
    let header = if has_min(ty) { 2 } else { 1 };
    let body = ty.block_bytes() - 2 * header;
    (
        prop::collection::vec(f16_scale(), header),
        prop::collection::vec(quant_byte(), body),
    )
        .prop_map(|(halves, body)| {
            let mut b: Vec<u8> = halves.iter().flat_map(|h| h.to_le_bytes()).collect();
            b.extend(body);
            b
        })
}

/// Activations for `nb` blocks, each block at its own magnitude (zero, tiny, small, one,
/// large) and with ±max and zeros over-represented so the quantized values reach ±127.
fn activations(nb: usize) -> impl Strategy<Value = Vec<f32>> {
    let scale = prop_oneof![
        Just(0.0f32),
        Just(1e-30f32),
        Just(1e-3f32),
        Just(1.0f32),
        Just(1e4f32)
    ];
    let elem = prop_oneof![
        6 => -1.0f32..1.0,
        1 => Just(1.0f32),
        1 => Just(-1.0f32),
        1 => Just(0.0f32),
    ];
    prop::collection::vec((scale, prop::collection::vec(elem, QK)), nb).prop_map(|blocks| {
        blocks
            .into_iter()
            .flat_map(|(s, xs)| xs.into_iter().map(move |x| x * s))
            .collect()
    })
}

/// A weight row of `ty` placed at byte offset `offset` in its buffer (so the kernels see
/// every alignment), with activations to match.
#[derive(Debug, Clone)]
struct QuantCase {
    nb: usize,
    buf: Vec<u8>,
    offset: usize,
    x: Vec<f32>,
}

impl QuantCase {
    fn weights(&self) -> &[u8] {
        &self.buf[self.offset..]
    }
}

fn quant_case(ty: DType) -> impl Strategy<Value = QuantCase> {
    block_count().prop_flat_map(move |nb| {
        (
            prop::collection::vec(block(ty), nb),
            0usize..4,
            activations(nb),
        )
            .prop_map(move |(blocks, offset, x)| {
                let mut buf = vec![0xA5u8; offset];
                buf.extend(blocks.into_iter().flatten());
                QuantCase { nb, buf, offset, x }
            })
    })
}

/// Float row lengths: whole blocks as for the quantized types, plus any length up to 300 so
/// the vector tails (and n = 0) are covered.
fn float_len() -> impl Strategy<Value = usize> {
    prop_oneof![block_count().prop_map(|nb| nb * QK), 0usize..=300]
}

fn float_value() -> impl Strategy<Value = f32> {
    prop_oneof![
        4 => -1.0f32..1.0,
        2 => -1000.0f32..1000.0,
        1 => Just(0.0f32),
        1 => -1e-20f32..1e-20,
    ]
}

/// Finite f16 values of any exponent, and zeros.
fn f16_value() -> impl Strategy<Value = f16> {
    prop_oneof![
        4 => (-1.0f32..1.0).prop_map(f16::from_f32),
        2 => any::<u16>()
            .prop_filter("finite", |b| b & 0x7C00 != 0x7C00)
            .prop_map(f16::from_bits),
        1 => Just(f16::ZERO),
    ]
}

/// Super-block counts for the K-quants: up to 9 (SmolLM2's widest rows), odd ones often.
fn super_block_count() -> impl Strategy<Value = usize> {
    prop_oneof![
        3 => 1usize..=9,
        1 => Just(1usize),
        1 => Just(3usize),
        1 => Just(7usize),
    ]
}

/// One K-quant super-block: random bytes (extremes over-represented, which also covers the
/// packed 6-bit scales and Q6_K's i8 scales at their limits) with the f16 fields drawn like
/// the other types' scales.
fn k_block(ty: DType) -> impl Strategy<Value = Vec<u8>> {
    let halves: &'static [usize] = if ty == DType::Q6_K { &[208] } else { &[0, 2] };
    (
        prop::collection::vec(quant_byte(), ty.block_bytes()),
        prop::collection::vec(f16_scale(), halves.len()),
    )
        .prop_map(move |(mut b, hs)| {
            for (&at, h) in halves.iter().zip(hs) {
                b[at..at + 2].copy_from_slice(&h.to_le_bytes());
            }
            b
        })
}

/// Like [`quant_case`], in super-blocks; `nb` is the number of 32-element activation blocks.
fn k_case(ty: DType) -> impl Strategy<Value = QuantCase> {
    super_block_count().prop_flat_map(move |nsb| {
        let nb = nsb * QK_K / QK;
        (
            prop::collection::vec(k_block(ty), nsb),
            0usize..4,
            activations(nb),
        )
            .prop_map(move |(blocks, offset, x)| {
                let mut buf = vec![0xA5u8; offset];
                buf.extend(blocks.into_iter().flatten());
                QuantCase { nb, buf, offset, x }
            })
    })
}

/// A K-quant row and 1 to 4 activation rows for it, for the tile kernels.
#[derive(Debug, Clone)]
struct KTileCase {
    row: QuantCase,
    /// The activation rows after the first (`row.x`).
    more: Vec<Vec<f32>>,
}

fn k_tile_case(ty: DType) -> impl Strategy<Value = KTileCase> {
    k_case(ty).prop_flat_map(|row| {
        let nb = row.nb;
        prop::collection::vec(activations(nb), 0..4).prop_map(move |more| KTileCase {
            row: row.clone(),
            more,
        })
    })
}

// ---------------------------------------------------------------------------------------------
// Reference magnitudes

fn half_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// The integer weights of one block, in element order.
fn block_ints(ty: DType, blk: &[u8]) -> Vec<i32> {
    match ty {
        DType::Q8_0 => blk[2..].iter().map(|&b| b as i8 as i32).collect(),
        DType::Q4_0 | DType::Q4_1 => {
            let (off, bias) = if ty == DType::Q4_0 { (2, 8) } else { (4, 0) };
            let nib = &blk[off..off + QK / 2];
            let lo = nib.iter().map(|&b| (b & 0x0F) as i32 - bias);
            let hi = nib.iter().map(|&b| (b >> 4) as i32 - bias);
            lo.chain(hi).collect()
        }
        DType::Q5_0 | DType::Q5_1 => {
            // Decoded bit by bit here, independently of the engine's helpers.
            let (at, bias) = if ty == DType::Q5_0 { (2, 16) } else { (4, 0) };
            let qh = u32::from_le_bytes(blk[at..at + 4].try_into().unwrap());
            (0..QK)
                .map(|e| {
                    let byte = blk[at + 4 + e % 16];
                    let nib = if e < 16 { byte & 0x0F } else { byte >> 4 };
                    (nib as i32 | (((qh >> e) & 1) as i32) << 4) - bias
                })
                .collect()
        }
        _ => unreachable!("{ty} is not block-quantized"),
    }
}

/// M for a quantized row: the magnitudes of the terms the scalar reference adds (see the top).
fn quant_magnitude(ty: DType, w: &[u8], a: Q8Blocks<'_>) -> f32 {
    let mut m = 0.0f64;
    for (i, blk) in w.chunks_exact(ty.block_bytes()).enumerate() {
        let qa = &a.qs[i * QK..(i + 1) * QK];
        let iabs: i64 = block_ints(ty, blk)
            .iter()
            .zip(qa)
            .map(|(&q, &x)| (q as i64 * x as i64).abs())
            .sum();
        m += (half_at(blk, 0) * a.d[i]).abs() as f64 * iabs as f64;
        if has_min(ty) {
            m += (half_at(blk, 2) * a.s[i]).abs() as f64;
        }
    }
    m as f32
}

/// The eight (scale, min) pairs of a Q4_K super-block, byte by byte as GGML's
/// get_scale_min_k4 reads them (the engine unpacks them four at a time).
fn q4_k_scale_min(s: &[u8], j: usize) -> (i64, i64) {
    if j < 4 {
        ((s[j] & 63) as i64, (s[j + 4] & 63) as i64)
    } else {
        (
            ((s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4)) as i64,
            ((s[j + 4] >> 4) | ((s[j] >> 6) << 4)) as i64,
        )
    }
}

/// M for a K-quant row (see the top), from the weights decoded element by element.
fn k_magnitude(ty: DType, w: &[u8], a: Q8Blocks<'_>) -> f32 {
    let mut m = 0.0f64;
    for (i, blk) in w.chunks_exact(ty.block_bytes()).enumerate() {
        for j in 0..QK_K / QK {
            let b = i * QK_K / QK + j;
            let qa = &a.qs[b * QK..(b + 1) * QK];
            let mut iabs = 0i64;
            for (l, &x) in qa.iter().enumerate() {
                let e = j * QK + l;
                let scaled = if ty == DType::Q4_K {
                    let q = (blk[16 + 32 * (j / 2) + l] >> (4 * (j % 2))) & 15;
                    q4_k_scale_min(&blk[4..16], j).0 * q as i64
                } else if ty == DType::Q5_K {
                    // Nibbles at 48 as Q4_K's at 16; the fifth bit is bit j of qh[l] (at 16).
                    let lo = (blk[48 + 32 * (j / 2) + l] >> (4 * (j % 2))) & 15;
                    let q = lo | ((blk[16 + l] >> j) & 1) << 4;
                    q4_k_scale_min(&blk[4..16], j).0 * q as i64
                } else {
                    let (h, k, r) = (e / 128, (e % 128) / 32, e % 32);
                    let lo = (blk[64 * h + 32 * (k % 2) + r] >> (4 * (k / 2))) & 15;
                    let hi = (blk[128 + 32 * h + r] >> (2 * k)) & 3;
                    let sc = blk[192 + e / 16] as i8 as i64;
                    sc * ((lo | hi << 4) as i64 - 32)
                };
                iabs += (scaled * x as i64).abs();
            }
            let d = half_at(blk, if ty == DType::Q6_K { 208 } else { 0 });
            m += (d * a.d[b]).abs() as f64 * iabs as f64;
            if ty != DType::Q6_K {
                let min = q4_k_scale_min(&blk[4..16], j).1 as f32;
                m += (half_at(blk, 2) * min * a.s[b]).abs() as f64;
            }
        }
    }
    m as f32
}

fn float_magnitude(w: impl Iterator<Item = f32>, x: &[f32]) -> f32 {
    w.zip(x)
        .map(|(a, b)| (a as f64 * *b as f64).abs())
        .sum::<f64>() as f32
}

// ---------------------------------------------------------------------------------------------
// Properties

fn check_quant(
    test: &str,
    ty: DType,
    case: &QuantCase,
    simd: impl Fn(&Kernels) -> fn(&[u8], Q8Blocks<'_>) -> f32,
    reference: fn(&[u8], Q8Blocks<'_>) -> f32,
) -> Result<(), TestCaseError> {
    let mut q8 = Q8Row::default();
    q8.quantize_from(&case.x);
    let (w, a) = (case.weights(), q8.blocks());
    let want = reference(w, a);
    let tol = match ty {
        // Two terms per sub-block for Q4_K and Q5_K (scale and min), one for Q6_K; counted
        // generously.
        DType::Q4_K | DType::Q5_K | DType::Q6_K => {
            quant_tolerance(2 * case.nb, k_magnitude(ty, w, a))
        }
        _ => quant_tolerance(case.nb, quant_magnitude(ty, w, a)),
    };
    for k in simd_tables(test) {
        let got = simd(k)(w, a);
        prop_assert!(
            (got - want).abs() <= tol,
            "{} {ty}, {} blocks at offset {}: {got} vs scalar {want} (tolerance {tol})",
            k.isa,
            case.nb,
            case.offset
        );
    }
    Ok(())
}

/// A single-row kernel of a quantized type.
type QuantDot = fn(&[u8], Q8Blocks<'_>) -> f32;

/// Every table's K-quant tile against the scalar reference and against the same table's
/// single-row kernel, token by token, within the single-row bound (the scalar table included:
/// a tile is a different code path even where it loops the single-row kernel).
fn check_k_tile(
    ty: DType,
    case: &KTileCase,
    single: fn(&Kernels) -> QuantDot,
    reference: QuantDot,
) -> Result<(), TestCaseError> {
    let rows: Vec<Q8Row> = std::iter::once(&case.row.x)
        .chain(&case.more)
        .map(|x| {
            let mut q8 = Q8Row::default();
            q8.quantize_from(x);
            q8
        })
        .collect();
    let acts: Vec<Q8Blocks<'_>> = rows.iter().map(|r| r.blocks()).collect();
    let w = case.row.weights();
    for k in kernels::available() {
        let mut got = vec![f32::NAN; acts.len()];
        (k.dot_k_tile)(ty, w, &acts, &mut got);
        for (t, &a) in acts.iter().enumerate() {
            let tol = quant_tolerance(2 * case.row.nb, k_magnitude(ty, w, a));
            let (want, one) = (reference(w, a), single(k)(w, a));
            prop_assert!(
                (got[t] - want).abs() <= tol && (got[t] - one).abs() <= tol,
                "{} {ty} tile, {} blocks, token {t} of {}: {} vs scalar {want}, single row {one} \
                 (tolerance {tol})",
                k.isa,
                case.row.nb,
                acts.len(),
                got[t]
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn dot_q8_0_matches_scalar(case in quant_case(DType::Q8_0)) {
        check_quant("dot_q8_0", DType::Q8_0, &case, |k| k.dot_q8_0, scalar::dot_q8_0)?;
    }

    #[test]
    fn dot_q4_0_matches_scalar(case in quant_case(DType::Q4_0)) {
        check_quant("dot_q4_0", DType::Q4_0, &case, |k| k.dot_q4_0, scalar::dot_q4_0)?;
    }

    #[test]
    fn dot_q4_1_matches_scalar(case in quant_case(DType::Q4_1)) {
        check_quant("dot_q4_1", DType::Q4_1, &case, |k| k.dot_q4_1, scalar::dot_q4_1)?;
    }

    #[test]
    fn dot_q5_0_matches_scalar(case in quant_case(DType::Q5_0)) {
        check_quant("dot_q5_0", DType::Q5_0, &case, |k| k.dot_q5_0, scalar::dot_q5_0)?;
    }

    #[test]
    fn dot_q5_1_matches_scalar(case in quant_case(DType::Q5_1)) {
        check_quant("dot_q5_1", DType::Q5_1, &case, |k| k.dot_q5_1, scalar::dot_q5_1)?;
    }

    #[test]
    fn dot_q5_k_matches_scalar(case in k_case(DType::Q5_K)) {
        check_quant("dot_q5_k", DType::Q5_K, &case, |k| k.dot_q5_k, kquants::scalar::dot_q5_k)?;
    }

    #[test]
    fn dot_q4_k_matches_scalar(case in k_case(DType::Q4_K)) {
        check_quant("dot_q4_k", DType::Q4_K, &case, |k| k.dot_q4_k, kquants::scalar::dot_q4_k)?;
    }

    #[test]
    fn dot_q6_k_matches_scalar(case in k_case(DType::Q6_K)) {
        check_quant("dot_q6_k", DType::Q6_K, &case, |k| k.dot_q6_k, kquants::scalar::dot_q6_k)?;
    }

    #[test]
    fn k_tile_q4_k_matches_scalar(case in k_tile_case(DType::Q4_K)) {
        check_k_tile(DType::Q4_K, &case, |k| k.dot_q4_k, kquants::scalar::dot_q4_k)?;
    }

    #[test]
    fn k_tile_q5_k_matches_scalar(case in k_tile_case(DType::Q5_K)) {
        check_k_tile(DType::Q5_K, &case, |k| k.dot_q5_k, kquants::scalar::dot_q5_k)?;
    }

    #[test]
    fn k_tile_q6_k_matches_scalar(case in k_tile_case(DType::Q6_K)) {
        check_k_tile(DType::Q6_K, &case, |k| k.dot_q6_k, kquants::scalar::dot_q6_k)?;
    }

    #[test]
    fn dot_f32_matches_scalar(
        (w, x, skip) in float_len().prop_flat_map(|n| (
            prop::collection::vec(float_value(), n + 1),
            prop::collection::vec(float_value(), n),
            0usize..2,
        ))
    ) {
        // Starting one element in shifts the row off the allocation's alignment.
        let w = &w[skip..skip + x.len()];
        let want = scalar::dot_f32(w, &x);
        let tol = float_tolerance(x.len(), float_magnitude(w.iter().copied(), &x));
        for k in simd_tables("dot_f32") {
            let got = (k.dot_f32)(w, &x);
            prop_assert!(
                (got - want).abs() <= tol,
                "{} f32, n = {}: {got} vs scalar {want} (tolerance {tol})", k.isa, x.len()
            );
        }
    }

    #[test]
    fn dot_f16_matches_scalar(
        (w, x, skip) in float_len().prop_flat_map(|n| (
            prop::collection::vec(f16_value(), n + 1),
            prop::collection::vec(float_value(), n),
            0usize..2,
        ))
    ) {
        let w = &w[skip..skip + x.len()];
        let want = scalar::dot_f16(w, &x);
        let tol = float_tolerance(x.len(), float_magnitude(w.iter().map(|h| h.to_f32()), &x));
        for k in simd_tables("dot_f16") {
            let got = (k.dot_f16)(w, &x);
            prop_assert!(
                (got - want).abs() <= tol,
                "{} f16, n = {}: {got} vs scalar {want} (tolerance {tol})", k.isa, x.len()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Packed kernels

/// A row of `ty` and 1 to 4 activation rows for it (a packed call's tile heights).
fn packed_case(ty: DType) -> impl Strategy<Value = (QuantCase, Vec<Vec<f32>>)> {
    quant_case(ty).prop_flat_map(|case| {
        let nb = case.nb;
        (Just(case), prop::collection::vec(activations(nb), 1..=4))
    })
}

fn check_packed(ty: DType, case: &QuantCase, xs: &[Vec<f32>]) -> Result<(), TestCaseError> {
    let (nb, n) = (case.nb, case.nb * QK);
    let raw = case.weights();
    // The packed row at the case's offset too, so the kernels see every alignment of it.
    let mut buf = vec![0xA5u8; case.offset + raw.len()];
    packed::pack_row(ty, raw, &mut buf[case.offset..]);
    let w = &buf[case.offset..];
    let mut pa = Q8Row::default();
    packed::pack_activations(&xs.concat(), n, &mut pa);
    let view = |t: usize| Q8Blocks {
        qs: &pa.qs[t * n..(t + 1) * n],
        d: &pa.d[t * nb..(t + 1) * nb],
        s: &pa.s[t * nb..(t + 1) * nb],
    };
    let acts: Vec<_> = (0..xs.len()).map(view).collect();
    for (i, k) in simd_tables("packed_dot").into_iter().enumerate() {
        let Some(pk) = k.packed.filter(|pk| pk.types.contains(&ty)) else {
            continue;
        };
        let mut got = vec![0f32; xs.len()];
        pk.dot_row(ty, w, &acts, &mut got);
        for (t, x) in xs.iter().enumerate() {
            let want = packed::dot_reference(ty, w, view(t));
            let mut one = Q8Row::default();
            one.quantize_from(x);
            let a = one.blocks();
            let ms: f32 = raw
                .chunks_exact(ty.block_bytes())
                .zip(a.s)
                .map(|(b, s)| (half_at(b, 0) * s).abs())
                .sum();
            let tol = quant_tolerance(2 * nb + 12, quant_magnitude(ty, raw, a) + 128.0 * ms);
            prop_assert!(
                (got[t] - want).abs() <= tol,
                "{} (table {i}) packed {ty}, {nb} blocks, tile {} row {t}: {} vs reference {want} \
                 (tolerance {tol})",
                k.isa,
                xs.len(),
                got[t]
            );
        }
        check_packed_rows(pk, ty, raw, &acts)?;
    }
    Ok(())
}

/// A call over several rows writes each row's results where the stride says, exactly as one
/// call per row would, and nothing else: rows are the case's blocks rotated, so a kernel that
/// read the wrong row would differ.
fn check_packed_rows(
    pk: &PackedKernels,
    ty: DType,
    raw: &[u8],
    acts: &[Q8Blocks<'_>],
) -> Result<(), TestCaseError> {
    const ROWS: usize = 3;
    const STRIDE: usize = ROWS + 2;
    let bb = ty.block_bytes();
    let mut rows = vec![0u8; ROWS * raw.len()];
    for (r, out) in rows.chunks_exact_mut(raw.len()).enumerate() {
        let mut rotated = raw.to_vec();
        rotated.rotate_left((r * bb) % raw.len());
        packed::pack_row(ty, &rotated, out);
    }
    let mut got = vec![f32::NAN; acts.len() * STRIDE];
    // SAFETY: every token's ROWS results lie inside `got` (stride STRIDE).
    unsafe { (pk.dot)(ty, &rows, ROWS, acts, got.as_mut_ptr(), STRIDE) };
    for (r, row) in rows.chunks_exact(raw.len()).enumerate() {
        let mut one = vec![0f32; acts.len()];
        pk.dot_row(ty, row, acts, &mut one);
        for (t, &v) in one.iter().enumerate() {
            prop_assert_eq!(
                got[t * STRIDE + r].to_bits(),
                v.to_bits(),
                "row {} token {}",
                r,
                t
            );
        }
    }
    for t in 0..acts.len() {
        prop_assert!(got[t * STRIDE + ROWS..(t + 1) * STRIDE]
            .iter()
            .all(|v| v.is_nan()));
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn packed_q8_0_matches_reference((case, xs) in packed_case(DType::Q8_0)) {
        check_packed(DType::Q8_0, &case, &xs)?;
    }

    #[test]
    fn packed_q4_0_matches_reference((case, xs) in packed_case(DType::Q4_0)) {
        check_packed(DType::Q4_0, &case, &xs)?;
    }

    #[test]
    fn packed_q4_1_matches_reference((case, xs) in packed_case(DType::Q4_1)) {
        check_packed(DType::Q4_1, &case, &xs)?;
    }

    #[test]
    fn packed_q5_0_matches_reference((case, xs) in packed_case(DType::Q5_0)) {
        check_packed(DType::Q5_0, &case, &xs)?;
    }

    #[test]
    fn packed_q5_1_matches_reference((case, xs) in packed_case(DType::Q5_1)) {
        check_packed(DType::Q5_1, &case, &xs)?;
    }
}

/// Without this, a detection bug that hid every SIMD table would leave the properties above
/// comparing nothing and passing.
#[test]
fn detected_tables_match_cpu_features() {
    let isas: Vec<Isa> = kernels::available().iter().map(|k| k.isa).collect();
    eprintln!("available kernel tables: {isas:?}");
    assert_eq!(isas.last(), Some(&Isa::Scalar), "scalar must come last");

    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c");
        let avx512 = is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl");
        if !avx2 {
            eprintln!("WARNING: this CPU lacks avx2/fma/f16c; only scalar kernels can run here");
        }
        assert_eq!(
            isas.contains(&Isa::Avx2),
            avx2,
            "avx2 table availability disagrees with the CPU's avx2/fma/f16c"
        );
        assert_eq!(
            isas.contains(&Isa::Avx512),
            avx512 && avx2,
            "avx512 table availability disagrees with the CPU's avx512f/bw/vl"
        );
    }

    #[cfg(target_arch = "aarch64")]
    assert!(
        isas.contains(&Isa::Neon),
        "NEON is baseline on aarch64 and must always be available"
    );
}
