//! The row-interleaved layout of F16 and F32 matrices, which the AVX-512 float kernels read.
//!
//! A row-major float matrix makes every output a dot product: the kernel keeps one accumulator
//! per (row, token), and each must be summed across its lanes at the end. Here rows are taken
//! [`ROWS`] at a time and stored column by column, so the 16 weights of column `k` for 16
//! consecutive rows are adjacent: one vector load gives them, one broadcast of token `t`'s
//! `x[k]` meets them, and the accumulator ends up holding 16 finished outputs of one token,
//! ready to store. No horizontal sums, and a weight vector serves every token of a tile.
//!
//! Row block `b` (rows `16b..16b+16`) occupies elements `16 * cols * b ..` of the interleaved
//! matrix, element `16k + j` being row `16b + j`, column `k`. The matrix keeps its size.

use crate::dtype::DType;

/// Rows per interleaved block: one per f32 lane of a 512-bit vector.
pub const ROWS: usize = 16;

/// Whether a `rows`-row matrix of `ty` has the interleaved form.
pub fn interleaves(ty: DType, rows: usize) -> bool {
    matches!(ty, DType::F16 | DType::F32) && rows.is_multiple_of(ROWS)
}

/// Rewrites a row-major matrix of `cols` columns (elements of `elem` bytes, 2 or 4) into row
/// blocks. `dst` must be aligned for the element type, as [`super::packed::AlignedBytes`] is. Part of cold start, so it copies typed elements (the 16 rows of a block are read
/// side by side, the block written front to back) rather than byte ranges.
pub fn interleave(src: &[u8], dst: &mut [u8], cols: usize, elem: usize) {
    assert_eq!(src.len(), dst.len(), "interleave: sizes differ");
    let block = ROWS * cols * elem;
    assert!(
        src.len().is_multiple_of(block),
        "interleave: rows not a multiple of {ROWS}"
    );
    match elem {
        2 => transpose_blocks::<u16>(src, dst, cols),
        4 => transpose_blocks::<u32>(src, dst, cols),
        _ => panic!("interleave: {elem}-byte elements"),
    }
}

fn transpose_blocks<T: bytemuck::Pod>(src: &[u8], dst: &mut [u8], cols: usize) {
    // GGUF aligns tensor data (32 bytes by default); a file that does not gets a copy.
    let copy: Vec<T>;
    let src: &[T] = match bytemuck::try_cast_slice(src) {
        Ok(s) => s,
        Err(_) => {
            copy = src
                .chunks_exact(std::mem::size_of::<T>())
                .map(bytemuck::pod_read_unaligned)
                .collect();
            &copy
        }
    };
    let dst: &mut [T] = bytemuck::cast_slice_mut(dst);
    for (s, d) in src
        .chunks_exact(ROWS * cols)
        .zip(dst.chunks_exact_mut(ROWS * cols))
    {
        let rows: [&[T]; ROWS] = std::array::from_fn(|j| &s[j * cols..(j + 1) * cols]);
        for (k, out) in d.chunks_exact_mut(ROWS).enumerate() {
            for (o, row) in out.iter_mut().zip(&rows) {
                *o = row[k];
            }
        }
    }
}

/// The inverse of [`interleave`], to check it.
#[cfg(test)]
fn deinterleave(src: &[u8], dst: &mut [u8], cols: usize, elem: usize) {
    assert_eq!(src.len(), dst.len(), "deinterleave: sizes differ");
    let block = ROWS * cols * elem;
    for (s, d) in src.chunks_exact(block).zip(dst.chunks_exact_mut(block)) {
        for (j, row) in d.chunks_exact_mut(cols * elem).enumerate() {
            for (k, e) in row.chunks_exact_mut(elem).enumerate() {
                let at = (k * ROWS + j) * elem;
                e.copy_from_slice(&s[at..at + elem]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::packed::AlignedBytes;

    #[test]
    fn interleave_round_trips_and_puts_column_k_of_16_rows_together() {
        let (rows, cols, elem) = (32, 5, 2);
        let src: Vec<u8> = (0..rows * cols * elem)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let mut mid = AlignedBytes::zeroed(src.len());
        interleave(&src, mid.as_mut_slice(), cols, elem);
        let mid = mid.as_slice();
        // Row 17 (block 1, lane 1), column 3.
        let at = (ROWS * cols + 3 * ROWS + 1) * elem;
        let want = (17 * cols + 3) * elem;
        assert_eq!(mid[at..at + elem], src[want..want + elem]);
        let mut back = vec![0u8; src.len()];
        deinterleave(mid, &mut back, cols, elem);
        assert_eq!(back, src);
    }

    #[test]
    fn only_float_matrices_of_whole_blocks_interleave() {
        assert!(interleaves(DType::F16, 576) && interleaves(DType::F32, 16));
        assert!(!interleaves(DType::F16, 40) && !interleaves(DType::Q8_0, 576));
    }
}
