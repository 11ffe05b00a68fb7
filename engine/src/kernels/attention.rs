//! One query head attending over the cached positions: scores, softmax, weighted sum of values.
//!
//! The generic form runs the table's `dot_f32` and `axpy` once per position. That is two
//! indirect calls and a load and store of the whole output head per position, which made
//! attention a sixth of a 256-token prefill; tables that can keep a head in registers supply
//! [`Kernels::attend`] instead.

use super::Kernels;
use crate::ops::softmax;

/// The inputs of one head's attention. Position `p`'s key is
/// `keys[p * stride..p * stride + q.len()]`, and its value likewise in `values`.
pub struct AttnHead<'a> {
    pub q: &'a [f32],
    pub keys: &'a [f32],
    pub values: &'a [f32],
    pub stride: usize,
    /// Positions attended to.
    pub n: usize,
    /// Multiplies every score before the softmax (1 / sqrt(head_dim)).
    pub scale: f32,
}

/// A kernel for [`attend`]; called only after [`AttnHead::check`] has passed.
pub type Attend = fn(&AttnHead<'_>, &mut [f32], &mut [f32]);

impl AttnHead<'_> {
    /// Panics unless every key and value read lies inside the slices and the buffers fit;
    /// SIMD implementations rely on this before reading through raw pointers.
    pub fn check(&self, scores: &[f32], out: &[f32]) {
        let hd = self.q.len();
        assert!(self.n > 0, "attention over no positions");
        let last = (self.n - 1) * self.stride + hd;
        assert!(
            self.keys.len() >= last && self.values.len() >= last,
            "attention: key/value cache shorter than {} positions",
            self.n
        );
        assert!(
            scores.len() >= self.n && out.len() == hd,
            "attention: buffer sizes"
        );
    }
}

/// `out = softmax(scale * K q) V` for one head, with `scores` (at least `h.n` long) as scratch.
pub fn attend(k: &Kernels, h: &AttnHead<'_>, scores: &mut [f32], out: &mut [f32]) {
    h.check(scores, out);
    match k.attend {
        Some(f) => f(h, scores, out),
        None => attend_rows(k, h, scores, out),
    }
}

/// The generic form: one `dot_f32` and one `axpy` per position.
pub fn attend_rows(k: &Kernels, h: &AttnHead<'_>, scores: &mut [f32], out: &mut [f32]) {
    let hd = h.q.len();
    let sc = &mut scores[..h.n];
    for (p, s) in sc.iter_mut().enumerate() {
        *s = (k.dot_f32)(h.q, &h.keys[p * h.stride..p * h.stride + hd]) * h.scale;
    }
    softmax(sc);
    out.fill(0.0);
    for (p, &a) in sc.iter().enumerate() {
        (k.axpy)(a, &h.values[p * h.stride..p * h.stride + hd], out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_support::Rng;

    #[test]
    fn every_table_matches_the_scalar_rows() {
        let mut rng = Rng(7);
        for hd in [16, 48, 64, 128, 40] {
            for n in [1, 2, 5, 17, 130] {
                let stride = 3 * hd;
                let q: Vec<f32> = (0..hd).map(|_| rng.f32()).collect();
                let keys: Vec<f32> = (0..n * stride).map(|_| rng.f32()).collect();
                let values: Vec<f32> = (0..n * stride).map(|_| rng.f32()).collect();
                // Heads start at an offset, as the second key/value head of a cache does.
                let h = AttnHead {
                    q: &q,
                    keys: &keys[hd..],
                    values: &values[hd..],
                    stride,
                    n: n - 1,
                    scale: 1.0 / (hd as f32).sqrt(),
                };
                if h.n == 0 {
                    continue;
                }
                let mut want = vec![0.0; hd];
                let mut scratch = vec![0.0; n];
                attend_rows(
                    &crate::kernels::scalar::KERNELS,
                    &h,
                    &mut scratch,
                    &mut want,
                );
                for k in crate::kernels::available() {
                    let mut got = vec![f32::NAN; hd];
                    attend(k, &h, &mut scratch, &mut got);
                    // Same table, same order of operations: the same bits.
                    let mut rows = vec![f32::NAN; hd];
                    attend_rows(k, &h, &mut scratch, &mut rows);
                    assert_eq!(got, rows, "{} hd {hd} n {n}", k.isa);
                    for (g, w) in got.iter().zip(&want) {
                        assert!((g - w).abs() <= 1e-5, "{} hd {hd} n {n}: {g} vs {w}", k.isa);
                    }
                }
            }
        }
    }
}
