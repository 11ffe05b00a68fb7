//! The lane-per-block weight layout of Q8_0, Q4_0, Q4_1, Q5_0 and Q5_1 rows, and activations
//! to match.
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
//! * Q5_0 / Q5_1: the four nibble chunks exactly as Q4_0 / Q4_1; then a fifth chunk of `g`
//!   32-bit words, word `b` holding block `b`'s fifth bits transposed ([`qh_to_lane`]): byte
//!   `j`, bit `k` = the fifth bit of element `4k + j`; then `g` f16 scales; then (Q5_1) `g`
//!   f16 minimums.
//!
//! Why that bit order: a kernel builds each weight step `k` (elements `4k..4k+4` of every
//! block: low nibbles of chunk `k` for `k < 4`, high nibbles of chunk `k - 4` otherwise) as
//! `nibble | fifth bit << 4` in every byte. With bit `k` of byte `j` of the lane word holding
//! exactly the bit byte `j` of step `k` needs, every step reads the same fifth-bit vector at a
//! different bit position and no byte ever crosses a lane or another byte. Split once per group
//! into its low and high nibbles (`qh & 0x0F`, `(qh >> 4) & 0x0F`, the same two operations as
//! the weight nibbles), each step's bit is then one `vpshufb` away from a clean `0x10`/`0x00`
//! byte (a 16-entry table per bit position), which one `vpternlogd` bit-select (AVX-512) or one
//! `vpor` (AVX2) merges with the nibble: 1 to 2 more operations per step than Q4_0 and no
//! mask registers, the same on both ISAs. The plain GGML order (bit `e` = element `e`) would
//! put step `k`'s four bits in one nibble of the word, which has to be expanded to four bytes
//! (broadcast, shuffle, compare) for every step.
//!
//! Activations ([`pack_activations`]) are quantized as usual and their quants rearranged the
//! same way, eight chunks per group, chunk `s` holding elements `4s..4s+4` of each block, so
//! chunk `s` meets a Q4 weight chunk's low nibbles for `s < 4` and its high nibbles for `s >= 4`.
//! Per-block activation scales and sums stay in block order.
//!
//! A last group of one or two blocks (a 576-wide row is 16 + 2 blocks) would cost as much as a
//! full group in that layout, so it is "wide" instead: its 32 or 64 quant bytes fill one vector
//! in the order `[b0 e0..16, b1 e0..16, b0 e16..32, b1 e16..32]` (Q4 nibble bytes stay in block
//! order, which unpacks to exactly that), and a single multiply-accumulate covers it. The 5-bit
//! types follow their nibbles with `g` words of fifth bits ([`wide_qh`]) in which bit `i`
//! belongs to byte `i` of that order (for one block: its `qh` as stored), so one 32- or 64-bit
//! mask (or one bytes-from-bits expansion per 32 bytes) covers the whole group.

use super::blocks::{Q8Blocks, Q8Row};
use crate::dtype::{DType, QK};
use half::f16;

/// Blocks per group: one per 32-bit lane of a 512-bit vector.
pub const GROUP: usize = 16;

/// Most activation rows one packed call takes, on every ISA.
pub const MAX_TILE: usize = 4;

/// Checks the arguments of a [`super::PackedKernels::dot`] call: `w` is `rows` whole rows of
/// `ty`, and 1 to [`MAX_TILE`] activation rows are each as long as a row. Returns the blocks
/// per row. A kernel may then load anything inside those slices.
pub(super) fn check_call(ty: DType, w: &[u8], rows: usize, acts: &[Q8Blocks<'_>]) -> usize {
    assert!(
        (1..=MAX_TILE).contains(&acts.len()),
        "a packed tile takes 1 to {MAX_TILE} activation rows"
    );
    let bb = ty.block_bytes();
    assert!(
        rows > 0 && w.len().is_multiple_of(rows) && (w.len() / rows).is_multiple_of(bb),
        "{ty}: {} bytes are not {rows} rows of whole blocks",
        w.len()
    );
    let nb = w.len() / rows / bb;
    for a in acts {
        assert!(
            a.qs.len() >= nb * QK && a.d.len() >= nb && a.s.len() >= nb,
            "{ty}: activations shorter than the weight row"
        );
    }
    nb
}

/// Where a packed call writes: token `t`'s result for row `r` at `ptr + t * stride + r`.
#[derive(Clone, Copy)]
pub(super) struct TileOut {
    pub rows: usize,
    pub ptr: *mut f32,
    pub stride: usize,
}

impl TileOut {
    /// Stores row `r`'s results for every token of the tile.
    ///
    /// # Safety
    /// The caller of the kernel guaranteed `ptr + t * stride + r` valid for these.
    #[inline(always)]
    pub unsafe fn put(&self, r: usize, res: &[f32]) {
        for (t, &v) in res.iter().enumerate() {
            self.ptr.add(t * self.stride + r).write(v);
        }
    }
}

/// A packed table's dot-product flavour (plain, VNNI, dotprod, ...): its `run` is the
/// `target_feature` function every row kernel of the table is inlined into.
pub(super) trait PackedRun {
    /// # Safety
    /// As [`RowKernel::row`], for `out.rows` rows, on a CPU with the flavour's features.
    unsafe fn run(ty: DType, w: *const u8, nb: usize, acts: &[Q8Blocks<'_>], out: TileOut);
}

/// [`super::PackedKernels::dot`] of a table whose rows run through `R`.
///
/// # Safety
/// As [`super::PackedKernels::dot`]; and the table holding this entry is handed out only on a
/// CPU with `R`'s features. [`check_call`] keeps every load inside the slices.
pub(super) unsafe fn dot<R: PackedRun>(
    ty: DType,
    w: &[u8],
    rows: usize,
    acts: &[Q8Blocks<'_>],
    out: *mut f32,
    stride: usize,
) {
    let nb = check_call(ty, w, rows, acts);
    let out = TileOut {
        rows,
        ptr: out,
        stride,
    };
    R::run(ty, w.as_ptr(), nb, acts, out)
}

/// One ISA's kernel for one packed type: a weight row against `T` tokens. [`run_rows`] drives
/// it over a call's rows and tile height, so each ISA file writes only the row kernel.
pub(super) trait RowKernel {
    const TYPE: DType;
    /// `out[t] = dot(row at w, acts[t])` for the `T` tokens, the row `nb` blocks long.
    ///
    /// # Safety
    /// As [`super::PackedKernels::dot`], after [`check_call`], on a CPU with the kernel's
    /// features.
    unsafe fn row<const T: usize>(
        w: *const u8,
        nb: usize,
        acts: &[Q8Blocks<'_>],
        out: &mut [f32; T],
    );
}

/// Declares `Kernel<B, D>`, the [`RowKernel`] through which [`run_rows`] drives an ISA file's
/// `tile::<B, D, T>` for every block type `B: $block` and flavour `D: $flavour`: the one
/// adapter every packed file needs, written once.
macro_rules! row_kernels_from_tile {
    ($block:ident, $flavour:ident) => {
        /// Type `B` under `D`, as `run_rows` drives it.
        struct Kernel<B, D>(std::marker::PhantomData<(B, D)>);

        impl<B: $block, D: $flavour> super::packed::RowKernel for Kernel<B, D> {
            const TYPE: crate::dtype::DType = B::TYPE;
            #[inline(always)]
            unsafe fn row<const T: usize>(
                w: *const u8,
                nb: usize,
                acts: &[super::blocks::Q8Blocks<'_>],
                out: &mut [f32; T],
            ) {
                tile::<B, D, T>(w, nb, acts, out)
            }
        }
    };
}
pub(super) use row_kernels_from_tile;

/// Every row of a call (`o.rows` rows of `nb` blocks at `w`) against its 1 to [`MAX_TILE`]
/// tokens. Always inlined: it must be compiled inside the caller's `target_feature` function.
///
/// # Safety
/// As [`RowKernel::row`], and `o` valid for every row and token.
#[inline(always)]
pub(super) unsafe fn run_rows<K: RowKernel>(
    w: *const u8,
    nb: usize,
    a: &[Q8Blocks<'_>],
    o: TileOut,
) {
    match a.len() {
        1 => rows::<K, 1>(w, nb, a, o),
        2 => rows::<K, 2>(w, nb, a, o),
        3 => rows::<K, 3>(w, nb, a, o),
        _ => rows::<K, 4>(w, nb, a, o),
    }
}

#[inline(always)]
unsafe fn rows<K: RowKernel, const T: usize>(
    w: *const u8,
    nb: usize,
    a: &[Q8Blocks<'_>],
    o: TileOut,
) {
    let row_bytes = nb * K::TYPE.block_bytes();
    let mut res = [0f32; T];
    for r in 0..o.rows {
        K::row::<T>(w.add(r * row_bytes), nb, a, &mut res);
        o.put(r, &res);
    }
}

/// Every type with a packed form.
pub const PACKED_TYPES: &[DType] = &[
    DType::Q8_0,
    DType::Q4_0,
    DType::Q4_1,
    DType::Q5_0,
    DType::Q5_1,
];

/// `FIFTH_BIT[k][i] = 0x10` if bit `k` of `i` is set, else 0: the byte-shuffle table that
/// turns a packed Q5 group's transposed fifth bits into step `k`'s bit 4. Built at compile time:
/// an `array::from_fn` in the kernels was left out of line (its closure does not inherit the
/// kernel's target features).
pub(super) const FIFTH_BIT: [[u8; 16]; 4] = {
    let mut t = [[0u8; 16]; 4];
    let mut k = 0;
    while k < 4 {
        let mut i = 0;
        while i < 16 {
            t[k][i] = (((i >> k) & 1) << 4) as u8;
            i += 1;
        }
        k += 1;
    }
    t
};

/// Whether rows of `ty` have a packed form.
pub fn packs(ty: DType) -> bool {
    PACKED_TYPES.contains(&ty)
}

/// Bytes of quants per block in a packed group: 16 for the 4- and 5-bit types' nibbles, 32
/// for Q8_0.
fn quant_bytes(ty: DType) -> usize {
    if ty == DType::Q8_0 {
        QK
    } else {
        QK / 2
    }
}

/// Offset of the quants (nibbles) within a GGML block.
fn quant_offset(ty: DType) -> usize {
    match ty {
        DType::Q4_1 => 4,
        DType::Q5_0 => 6,
        DType::Q5_1 => 8,
        _ => 2,
    }
}

/// Offset of the fifth bits `qh` within a GGML block, for the 5-bit types.
fn qh_offset(ty: DType) -> Option<usize> {
    match ty {
        DType::Q5_0 => Some(super::q5::Q5_0_QH),
        DType::Q5_1 => Some(super::q5::Q5_1_QH),
        _ => None,
    }
}

/// Whether the block has an f16 minimum after its scale (at byte 2).
fn has_min(ty: DType) -> bool {
    matches!(ty, DType::Q4_1 | DType::Q5_1)
}

/// Bytes per block of a packed group before its scales: the quants, then the fifth bits.
pub fn lead_bytes(ty: DType) -> usize {
    quant_bytes(ty) + if qh_offset(ty).is_some() { 4 } else { 0 }
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
/// `words` quant words (4 for the nibbles of the 4- and 5-bit types, 8 for Q8_0 and
/// activations).
fn word_at(words: usize, g: usize, b: usize, s: usize) -> usize {
    if g > WIDE_MAX {
        s * g + b
    } else if words == 8 {
        (s / 4) * 4 * g + 4 * b + s % 4
    } else {
        4 * b + s
    }
}

/// A block's fifth bits (bit `e` = element `e`) in the lane order: byte `j`, bit `k` =
/// element `4k + j`, so bit `k` of every byte is what step `k` needs.
pub fn qh_to_lane(qh: u32) -> u32 {
    // Each nibble k of qh (elements 4k..4k+4) is spread one bit per byte, at bit k: the
    // multiply puts copies of the nibble at bits 0, 7, 14 and 21, and the mask keeps bit j
    // of copy j (they never overlap, so nothing carries).
    (0..8).fold(0, |out, k| {
        let nibble = (qh >> (4 * k)) & 0xF;
        out | ((nibble.wrapping_mul(0x0020_4081) & 0x0101_0101) << k)
    })
}

/// The inverse of [`qh_to_lane`].
pub fn lane_to_qh(lane: u32) -> u32 {
    (0..32).fold(0, |qh, e| {
        let bit = (lane >> (8 * (e % 4) + e / 4)) & 1;
        qh | (bit << e)
    })
}

/// The fifth bits of a wide group (blocks `qh[..g]`) as two words whose bit `i` belongs to
/// byte `i` of the wide order `[b0 e0..16, b1 e0..16, b0 e16..32, b1 e16..32]`.
fn wide_qh(qh: &[u32]) -> [u32; 2] {
    match qh {
        [a] => [*a, 0],
        [a, b] => [(a & 0xFFFF) | (b << 16), (a >> 16) | (b & 0xFFFF_0000)],
        _ => unreachable!("a wide group has one or two blocks"),
    }
}

/// The inverse of [`wide_qh`] for `g` blocks.
fn unwide_qh(w: [u32; 2], g: usize) -> [u32; 2] {
    if g == 1 {
        [w[0], 0]
    } else {
        [
            (w[0] & 0xFFFF) | (w[1] << 16),
            (w[0] >> 16) | (w[1] & 0xFFFF_0000),
        ]
    }
}

fn qh_at(blk: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([blk[at], blk[at + 1], blk[at + 2], blk[at + 3]])
}

/// Rearranges one GGML row of `ty` into `out` (same length).
pub fn pack_row(ty: DType, row: &[u8], out: &mut [u8]) {
    assert!(packs(ty), "{ty} has no packed layout");
    assert_eq!(row.len(), out.len());
    let bb = ty.block_bytes();
    let (qb, qo, lead) = (quant_bytes(ty), quant_offset(ty), lead_bytes(ty));
    // Whole-model packing is part of cold start, so the copy works in 4-byte words rather
    // than byte ranges.
    for (b0, g) in groups(row.len() / bb) {
        let src = &row[b0 * bb..(b0 + g) * bb];
        let (quants, rest) = out[b0 * bb..(b0 + g) * bb].split_at_mut(g * qb);
        let (qh_out, scales) = rest.split_at_mut(g * (lead - qb));
        let words: &mut [[u8; 4]] = bytemuck::cast_slice_mut(quants);
        let mut qhs = [0u32; GROUP];
        for (b, blk) in src.chunks_exact(bb).enumerate() {
            let q: &[[u8; 4]] = bytemuck::cast_slice(&blk[qo..]);
            for (s, &w) in q.iter().enumerate() {
                words[word_at(qb / 4, g, b, s)] = w;
            }
            scales[2 * b..2 * b + 2].copy_from_slice(&blk[..2]);
            if has_min(ty) {
                scales[2 * g + 2 * b..2 * g + 2 * b + 2].copy_from_slice(&blk[2..4]);
            }
            if let Some(at) = qh_offset(ty) {
                qhs[b] = qh_at(blk, at);
            }
        }
        if qh_offset(ty).is_some() {
            let qh_out: &mut [[u8; 4]] = bytemuck::cast_slice_mut(qh_out);
            if g > WIDE_MAX {
                for (o, &qh) in qh_out.iter_mut().zip(&qhs[..g]) {
                    *o = qh_to_lane(qh).to_le_bytes();
                }
            } else {
                for (o, w) in qh_out.iter_mut().zip(wide_qh(&qhs[..g])) {
                    *o = w.to_le_bytes();
                }
            }
        }
    }
}

/// The inverse of [`pack_row`].
pub fn unpack_row(ty: DType, packed: &[u8], out: &mut [u8]) {
    assert!(packs(ty), "{ty} has no packed layout");
    assert_eq!(packed.len(), out.len());
    let bb = ty.block_bytes();
    let (qb, qo, lead) = (quant_bytes(ty), quant_offset(ty), lead_bytes(ty));
    for (b0, g) in groups(packed.len() / bb) {
        let grp = &packed[b0 * bb..(b0 + g) * bb];
        let qh_word = |i: usize| qh_at(grp, g * qb + 4 * i);
        let wide = if g <= WIDE_MAX && qh_offset(ty).is_some() {
            unwide_qh([qh_word(0), if g == 2 { qh_word(1) } else { 0 }], g)
        } else {
            [0; 2]
        };
        for b in 0..g {
            let blk = &mut out[(b0 + b) * bb..(b0 + b + 1) * bb];
            for s in 0..qb / 4 {
                let at = 4 * word_at(qb / 4, g, b, s);
                blk[qo + 4 * s..qo + 4 * s + 4].copy_from_slice(&grp[at..at + 4]);
            }
            let scales = g * lead;
            blk[..2].copy_from_slice(&grp[scales + 2 * b..scales + 2 * b + 2]);
            if has_min(ty) {
                let mins = scales + 2 * g;
                blk[2..4].copy_from_slice(&grp[mins + 2 * b..mins + 2 * b + 2]);
            }
            if let Some(at) = qh_offset(ty) {
                let qh = if g > WIDE_MAX {
                    lane_to_qh(qh_word(b))
                } else {
                    wide[b]
                };
                blk[at..at + 4].copy_from_slice(&qh.to_le_bytes());
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
        DType::Q4_1 => super::scalar::dot_q4_1(&row, a),
        DType::Q5_0 => super::scalar::dot_q5_0(&row, a),
        _ => super::scalar::dot_q5_1(&row, a),
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
        for ty in [
            DType::Q8_0,
            DType::Q4_0,
            DType::Q4_1,
            DType::Q5_0,
            DType::Q5_1,
        ] {
            for nb in [1, 2, 3, 15, 16, 17, 18, 20, 33, 48] {
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
        for nb in [1, 2, 3, 18, 48] {
            let x: Vec<f32> = (0..nb * QK).map(|_| rng.f32()).collect();
            let mut raw_a = Q8Row::default();
            raw_a.quantize_from(&x);
            let mut pa = Q8Row::default();
            pack_activations(&x, nb * QK, &mut pa);
            for ty in [
                DType::Q8_0,
                DType::Q4_0,
                DType::Q4_1,
                DType::Q5_0,
                DType::Q5_1,
            ] {
                let raw = random_blocks(&mut rng, ty, nb * QK);
                let mut packed = vec![0u8; raw.len()];
                pack_row(ty, &raw, &mut packed);
                let want = match ty {
                    DType::Q8_0 => super::super::scalar::dot_q8_0(&raw, raw_a.blocks()),
                    DType::Q4_0 => super::super::scalar::dot_q4_0(&raw, raw_a.blocks()),
                    DType::Q4_1 => super::super::scalar::dot_q4_1(&raw, raw_a.blocks()),
                    DType::Q5_0 => super::super::scalar::dot_q5_0(&raw, raw_a.blocks()),
                    _ => super::super::scalar::dot_q5_1(&raw, raw_a.blocks()),
                };
                assert_eq!(dot_reference(ty, &packed, pa.blocks()), want);
            }
        }
    }

    #[test]
    fn a_lane_word_holds_each_step_bit_at_its_byte() {
        let mut rng = Rng(0x51);
        for _ in 0..1000 {
            let qh = rng.next() as u32;
            let lane = qh_to_lane(qh);
            for e in 0..32 {
                let (k, j) = (e / 4, e % 4);
                assert_eq!((lane >> (8 * j + k)) & 1, (qh >> e) & 1, "qh {qh:#x} e {e}");
            }
            assert_eq!(lane_to_qh(lane), qh);
        }
    }

    #[test]
    fn q5_fifth_bits_sit_after_the_nibbles() {
        // Three Q5_1 blocks (a lane group): block b's qh has only element 4k + j = 5 + b set
        // (step 1, byte 1 for b = 0; step 1, byte 2 for b = 1; step 1, byte 3 for b = 2), and
        // its nibbles are all b. The fifth chunk follows the 3 * 16 nibble bytes.
        let bb = DType::Q5_1.block_bytes();
        let mut raw = vec![0u8; 3 * bb];
        for b in 0..3 {
            let blk = &mut raw[b * bb..(b + 1) * bb];
            blk[..2].copy_from_slice(&half::f16::from_f32(b as f32).to_le_bytes());
            blk[2..4].copy_from_slice(&half::f16::from_f32(-(b as f32)).to_le_bytes());
            blk[4..8].copy_from_slice(&(1u32 << (5 + b)).to_le_bytes());
            blk[8..].fill(0x11 * b as u8);
        }
        let mut p = vec![0u8; raw.len()];
        pack_row(DType::Q5_1, &raw, &mut p);
        assert_eq!(&p[..4], &[0, 0, 0, 0]);
        assert_eq!(&p[4..8], &[0x11; 4]);
        for b in 0..3 {
            let word = u32::from_le_bytes(p[48 + 4 * b..52 + 4 * b].try_into().unwrap());
            assert_eq!(word, 1 << (8 * (1 + b) + 1), "block {b}");
            assert_eq!(half_at(&p, 60 + 2 * b), b as f32);
            assert_eq!(half_at(&p, 66 + 2 * b), -(b as f32));
        }
        // Two Q5_0 blocks (wide): the fifth bits in the wide byte order.
        let bb = DType::Q5_0.block_bytes();
        let mut raw = vec![0u8; 2 * bb];
        raw[2..6].copy_from_slice(&0xAAAA_5555u32.to_le_bytes());
        raw[bb + 2..bb + 6].copy_from_slice(&0x0F0F_3333u32.to_le_bytes());
        let mut p = vec![0u8; raw.len()];
        pack_row(DType::Q5_0, &raw, &mut p);
        assert_eq!(&p[32..36], &0x3333_5555u32.to_le_bytes());
        assert_eq!(&p[36..40], &0x0F0F_AAAAu32.to_le_bytes());
    }
}
