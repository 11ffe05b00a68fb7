//! Multi-token tiles for K-quant rows: `out[t] = dot(row, acts[t])` for one raw GGML row and
//! 1 to [`MAX_TILE`] activation rows. The SIMD tiles decode each super-block's scales and
//! unpack its quants once per tile; tables without one loop their single-row kernel here.

use super::scalar::check_len;
use crate::dtype::DType;
use crate::kernels::blocks::Q8Blocks;

/// Most activation rows a tile call takes.
pub const MAX_TILE: usize = 4;

/// A single-row K-quant kernel.
pub(crate) type Dot = fn(&[u8], Q8Blocks<'_>) -> f32;

/// Checks what every tile kernel relies on and returns the row's super-block count: a K-quant
/// type, 1 to [`MAX_TILE`] activation rows as long as the weight row, one output each.
pub(crate) fn check_tile(ty: DType, w: &[u8], acts: &[Q8Blocks<'_>], out: &[f32]) -> usize {
    assert!(
        matches!(ty, DType::Q4_K | DType::Q5_K | DType::Q6_K),
        "{ty} is not a K-quant"
    );
    assert!(
        (1..=MAX_TILE).contains(&acts.len()) && acts.len() == out.len(),
        "{ty} tile: {} activation rows for {} outputs",
        acts.len(),
        out.len()
    );
    // Every row is checked, not just one: each is read as far as the weight row reaches.
    acts.iter().fold(0, |_, a| check_len(ty, w, a))
}

/// The tile as one single-row call per token, with the kernels `dots` (Q4_K, Q5_K, Q6_K).
#[inline(always)]
pub(crate) fn by_rows(dots: [Dot; 3], ty: DType, w: &[u8], acts: &[Q8Blocks<'_>], out: &mut [f32]) {
    check_tile(ty, w, acts, out);
    let dot = match ty {
        DType::Q4_K => dots[0],
        DType::Q5_K => dots[1],
        _ => dots[2],
    };
    for (o, a) in out.iter_mut().zip(acts) {
        *o = dot(w, *a);
    }
}

/// The scalar table's tile: the reference kernels, one token at a time.
pub fn dot_k_tile(ty: DType, w: &[u8], acts: &[Q8Blocks<'_>], out: &mut [f32]) {
    use super::scalar::{dot_q4_k, dot_q5_k, dot_q6_k};
    by_rows([dot_q4_k, dot_q5_k, dot_q6_k], ty, w, acts, out);
}
