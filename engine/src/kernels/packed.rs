//! The lane-per-block weight layout of Q8_0, Q4_0 and Q4_1 rows, and activations to match.
//!
//! GGML stores a row block after block, each block a scale then its 32 quants. A SIMD kernel
//! reading that has to gather every block's scale one at a time and sum each block's products
//! horizontally, which costs more instructions than the products themselves. Here a row is cut
//! into groups of up to [`GROUP`] blocks and each group is transposed so that 32-bit lane `b` of
//! a vector holds four consecutive quants of block `b`: eight multiply-accumulate steps then
//! leave each block's whole integer dot product in its own lane, the group's scales load as one
//! vector, and the only horizontal sum is one per row.
//!
//! A group of `g` blocks starting at block `b0` occupies bytes `b0 * block_bytes ..` of the
//! packed row (so a packed row is exactly as long as the GGML row):
//!
//! * Q4_0 / Q4_1: four chunks of `4 * g` bytes, chunk `s` holding bytes `4s..4s+4` of each
//!   block's nibbles (low nibbles = elements `4s..4s+4`, high = `16+4s..16+4s+4`); then `g`
//!   f16 scales; then (Q4_1) `g` f16 minimums.
//! * Q8_0: eight chunks of `4 * g` bytes, chunk `s` holding quants `4s..4s+4` of each block;
//!   then `g` f16 scales.
//!
//! Activations ([`pack_activations`]) are quantized as usual and their quants rearranged the
//! same way, eight chunks per group, chunk `s` holding elements `4s..4s+4` of each block, so
//! chunk `s` meets a Q4 weight chunk's low nibbles for `s < 4` and its high nibbles for `s >= 4`.
//! Per-block activation scales and sums stay in block order.
//!
//! A last group of one or two blocks (a 576-wide row is 16 + 2 blocks) would cost as much as a
//! full group in that layout, so it is "wide" instead: its 32 or 64 quant bytes fill one vector
//! in the order `[b0 e0..16, b1 e0..16, b0 e16..32, b1 e16..32]` (Q4 nibble bytes stay in block
//! order, which unpacks to exactly that), and a single multiply-accumulate covers it.

use super::blocks::{Q8Blocks, Q8Row};
use crate::dtype::{DType, QK};
use half::f16;

/// Blocks per group: one per 32-bit lane of a 512-bit vector.
pub const GROUP: usize = 16;

/// Whether rows of `ty` have a packed form.
pub fn packs(ty: DType) -> bool {
    matches!(ty, DType::Q8_0 | DType::Q4_0 | DType::Q4_1)
}

/// Bytes of quants per block in a packed group: 16 for the 4-bit types, 32 for Q8_0.
fn quant_bytes(ty: DType) -> usize {
    if ty == DType::Q8_0 {
        QK
    } else {
        QK / 2
    }
}

/// Offset of the quants within a GGML block (after the scale, and the minimum for Q4_1).
fn quant_offset(ty: DType) -> usize {
    if ty == DType::Q4_1 {
        4
    } else {
        2
    }
}

/// The groups of a row of `nb` blocks: `(first block, blocks in the group)`.
pub fn groups(nb: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..nb)
        .step_by(GROUP)
        .map(move |b0| (b0, GROUP.min(nb - b0)))
}

/// Groups of at most this many blocks use the wide layout.
pub const WIDE_MAX: usize = 2;

/// Where 4-byte word `s` of block `b`'s quants goes in a group of `g` blocks, for blocks of
/// `words` quant words (4 for the nibbles of Q4_0/Q4_1, 8 for Q8_0 and activations).
fn word_at(words: usize, g: usize, b: usize, s: usize) -> usize {
    if g > WIDE_MAX {
        s * g + b
    } else if words == 8 {
        (s / 4) * 4 * g + 4 * b + s % 4
    } else {
        4 * b + s
    }
}

/// Rearranges one GGML row of `ty` into `out` (same length).
pub fn pack_row(ty: DType, row: &[u8], out: &mut [u8]) {
    assert!(packs(ty), "{ty} has no packed layout");
    assert_eq!(row.len(), out.len());
    let bb = ty.block_bytes();
    let (qb, qo) = (quant_bytes(ty), quant_offset(ty));
    // Whole-model packing is part of cold start, so the copy works in 4-byte words rather
    // than byte ranges.
    for (b0, g) in groups(row.len() / bb) {
        let src = &row[b0 * bb..(b0 + g) * bb];
        let (quants, scales) = out[b0 * bb..(b0 + g) * bb].split_at_mut(g * qb);
        let words: &mut [[u8; 4]] = bytemuck::cast_slice_mut(quants);
        for (b, blk) in src.chunks_exact(bb).enumerate() {
            let q: &[[u8; 4]] = bytemuck::cast_slice(&blk[qo..]);
            for (s, &w) in q.iter().enumerate() {
                words[word_at(qb / 4, g, b, s)] = w;
            }
            scales[2 * b..2 * b + 2].copy_from_slice(&blk[..2]);
            if ty == DType::Q4_1 {
                scales[2 * g + 2 * b..2 * g + 2 * b + 2].copy_from_slice(&blk[2..4]);
            }
        }
    }
}

/// The inverse of [`pack_row`].
pub fn unpack_row(ty: DType, packed: &[u8], out: &mut [u8]) {
    assert!(packs(ty), "{ty} has no packed layout");
    assert_eq!(packed.len(), out.len());
    let bb = ty.block_bytes();
    let (qb, qo) = (quant_bytes(ty), quant_offset(ty));
    for (b0, g) in groups(packed.len() / bb) {
        let grp = &packed[b0 * bb..(b0 + g) * bb];
        for b in 0..g {
            let blk = &mut out[(b0 + b) * bb..(b0 + b + 1) * bb];
            for s in 0..qb / 4 {
                let at = 4 * word_at(qb / 4, g, b, s);
                blk[qo + 4 * s..qo + 4 * s + 4].copy_from_slice(&grp[at..at + 4]);
            }
            let scales = g * qb;
            blk[..2].copy_from_slice(&grp[scales + 2 * b..scales + 2 * b + 2]);
            if ty == DType::Q4_1 {
                let mins = scales + 2 * g;
                blk[2..4].copy_from_slice(&grp[mins + 2 * b..mins + 2 * b + 2]);
            }
        }
    }
}

/// Quantizes `x` (rows of `cols` values) like [`Q8Row::quantize_from`], then rearranges each
/// row's quants into the packed activation order.
pub fn pack_activations(x: &[f32], cols: usize, out: &mut Q8Row) {
    out.quantize_from(x);
    out.qs.chunks_exact_mut(cols).for_each(pack_activation_row);
}

/// Rearranges one row of quantized activations (in block order) into the packed order.
pub fn pack_activation_row(row: &mut [i8]) {
    let mut tmp = [[0i8; 4]; GROUP * QK / 4];
    for (b0, g) in groups(row.len() / QK) {
        let grp: &mut [[i8; 4]] = bytemuck::cast_slice_mut(&mut row[b0 * QK..(b0 + g) * QK]);
        tmp[..grp.len()].copy_from_slice(grp);
        for b in 0..g {
            for s in 0..QK / 4 {
                grp[word_at(8, g, b, s)] = tmp[b * QK / 4 + s];
            }
        }
    }
}

/// Reference dot product of a packed row with packed activations: unpacks both and runs the
/// scalar kernel, so the SIMD kernels are checked against the same arithmetic as raw rows.
pub fn dot_reference(ty: DType, packed: &[u8], a: Q8Blocks<'_>) -> f32 {
    let mut row = vec![0u8; packed.len()];
    unpack_row(ty, packed, &mut row);
    let nb = packed.len() / ty.block_bytes();
    let mut qs = vec![0i8; nb * QK];
    for (b0, g) in groups(nb) {
        for b in 0..g {
            for s in 0..QK / 4 {
                let at = b0 * QK + 4 * word_at(8, g, b, s);
                let to = (b0 + b) * QK + 4 * s;
                qs[to..to + 4].copy_from_slice(&a.qs[at..at + 4]);
            }
        }
    }
    let a = Q8Blocks {
        qs: &qs,
        d: a.d,
        s: a.s,
    };
    match ty {
        DType::Q8_0 => super::scalar::dot_q8_0(&row, a),
        DType::Q4_0 => super::scalar::dot_q4_0(&row, a),
        _ => super::scalar::dot_q4_1(&row, a),
    }
}

/// Decodes packed row data to f32 (embedding look-ups of a packed, tied output head).
pub fn dequantize_packed_row(ty: DType, packed: &[u8], out: &mut [f32]) {
    let mut row = vec![0u8; packed.len()];
    unpack_row(ty, packed, &mut row);
    super::blocks::dequantize_row(ty, &row, out);
}

/// Bytes with 64-byte alignment, so a packed group's vector loads never split a cache line
/// more than the row layout forces.
///
/// Allocated zeroed by the allocator (fresh pages from the OS for a large matrix) rather than
/// by writing zeros: packing a model is part of cold start, and writing 260 MB of zeros before
/// writing the packed copy over them cost as much as the copy.
pub struct AlignedBytes {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
}

// SAFETY: AlignedBytes owns its allocation like a Vec<u8>; shared access only reads.
unsafe impl Send for AlignedBytes {}
unsafe impl Sync for AlignedBytes {}

impl AlignedBytes {
    const ALIGN: usize = 64;

    fn layout(len: usize) -> std::alloc::Layout {
        std::alloc::Layout::from_size_align(len.max(1), Self::ALIGN).expect("allocation size")
    }

    pub fn zeroed(len: usize) -> Self {
        let layout = Self::layout(len);
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr =
            std::ptr::NonNull::new(raw).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        AlignedBytes { ptr, len }
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the allocation holds `len` initialised (zeroed, then written) bytes.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and we hold the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBytes {
    fn drop(&mut self) {
        // SAFETY: allocated in `zeroed` with this same layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), Self::layout(self.len)) }
    }
}

/// f16 bits at `b[i..i + 2]` as f32.
pub fn half_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_support::{random_blocks, Rng};

    #[test]
    fn pack_then_unpack_is_the_identity_and_dequantizes_alike() {
        let mut rng = Rng(7);
        for ty in [DType::Q8_0, DType::Q4_0, DType::Q4_1] {
            for nb in [1, 2, 15, 16, 17, 18, 33, 48] {
                let raw = random_blocks(&mut rng, ty, nb * QK);
                let mut packed = vec![0u8; raw.len()];
                pack_row(ty, &raw, &mut packed);
                let mut back = vec![0u8; raw.len()];
                unpack_row(ty, &packed, &mut back);
                assert_eq!(raw, back, "{ty} nb={nb}");
                let (mut x, mut y) = (vec![0f32; nb * QK], vec![0f32; nb * QK]);
                super::super::blocks::dequantize_row(ty, &raw, &mut x);
                dequantize_packed_row(ty, &packed, &mut y);
                assert_eq!(x, y);
            }
        }
    }

    #[test]
    fn packed_lane_holds_four_quants_of_its_block() {
        // Two Q8_0 blocks whose quants are their element numbers: chunk s, lane b must read
        // block b's elements 4s..4s+4.
        let mut raw = vec![0u8; 2 * 34];
        for b in 0..2 {
            for e in 0..32 {
                raw[b * 34 + 2 + e] = (b * 100 + e) as u8;
            }
        }
        let mut p = vec![0u8; raw.len()];
        pack_row(DType::Q8_0, &raw, &mut p);
        // Two blocks make a wide group: [b0 e0..16, b1 e0..16, b0 e16..32, b1 e16..32].
        assert_eq!(&p[..4], &[0, 1, 2, 3]);
        assert_eq!(&p[16..20], &[100, 101, 102, 103]);
        assert_eq!(&p[32..36], &[16, 17, 18, 19]);
        // Three blocks use lanes: chunk s, lane b = block b's elements 4s..4s+4.
        let mut raw = vec![0u8; 3 * 34];
        for b in 0..3 {
            for e in 0..32 {
                raw[b * 34 + 2 + e] = (b * 100 + e) as u8;
            }
        }
        let mut p = vec![0u8; raw.len()];
        pack_row(DType::Q8_0, &raw, &mut p);
        assert_eq!(
            &p[..12],
            &[0, 1, 2, 3, 100, 101, 102, 103, 200, 201, 202, 203]
        );
        assert_eq!(&p[12..16], &[4, 5, 6, 7]);
    }

    #[test]
    fn reference_matches_the_raw_scalar_kernel() {
        let mut rng = Rng(11);
        for nb in [1, 3, 18, 48] {
            let x: Vec<f32> = (0..nb * QK).map(|_| rng.f32()).collect();
            let mut raw_a = Q8Row::default();
            raw_a.quantize_from(&x);
            let mut pa = Q8Row::default();
            pack_activations(&x, nb * QK, &mut pa);
            for ty in [DType::Q8_0, DType::Q4_0, DType::Q4_1] {
                let raw = random_blocks(&mut rng, ty, nb * QK);
                let mut packed = vec![0u8; raw.len()];
                pack_row(ty, &raw, &mut packed);
                let want = match ty {
                    DType::Q8_0 => super::super::scalar::dot_q8_0(&raw, raw_a.blocks()),
                    DType::Q4_0 => super::super::scalar::dot_q4_0(&raw, raw_a.blocks()),
                    _ => super::super::scalar::dot_q4_1(&raw, raw_a.blocks()),
                };
                assert_eq!(dot_reference(ty, &packed, pa.blocks()), want);
            }
        }
    }
}
