//! The operations of a forward pass, on rows of f32: matrix products over the thread pool, and
//! the small element-wise steps (RMSNorm, RoPE, softmax, SwiGLU).

use crate::dtype::{DType, QK};
use crate::kernels::blocks::{Q8Blocks, Q8Row};
use crate::kernels::Kernels;
use crate::model::Matrix;
use crate::pool::{SharedMut, ThreadPool};

/// A batch of `n` activation rows of `cols` values, with their 8-bit form computed once so that
/// every quantized matrix that reads this input (q, k and v; gate and up) shares it.
pub struct Input<'a> {
    pub x: &'a [f32],
    pub n: usize,
    pub cols: usize,
    q8: Option<&'a Q8Row>,
}

impl<'a> Input<'a> {
    /// `q8` must be `x` quantized with [`Q8Row::quantize_from`] when any reader is quantized.
    pub fn new(x: &'a [f32], cols: usize, q8: Option<&'a Q8Row>) -> Self {
        debug_assert_eq!(x.len() % cols, 0);
        Input {
            x,
            n: x.len() / cols,
            cols,
            q8,
        }
    }

    fn row(&self, t: usize) -> &'a [f32] {
        &self.x[t * self.cols..(t + 1) * self.cols]
    }

    fn q8_row(&self, t: usize) -> Q8Blocks<'a> {
        let q = self.q8.expect("quantized weights need a quantized input");
        let nb = self.cols / QK;
        Q8Blocks {
            qs: &q.qs[t * self.cols..(t + 1) * self.cols],
            d: &q.d[t * nb..(t + 1) * nb],
            s: &q.s[t * nb..(t + 1) * nb],
        }
    }
}

/// Whether a matrix of this type reads the 8-bit form of its input.
pub fn wants_q8(dtype: DType) -> bool {
    matches!(
        dtype,
        DType::Q8_0 | DType::Q4_0 | DType::Q4_1 | DType::Q4_K | DType::Q6_K
    )
}

/// Rows per task. Small enough that two threads finish within a task of each other, large
/// enough that handing out a task costs little next to the work in it.
fn rows_per_task(rows: usize, n_threads: usize, n_tokens: usize) -> usize {
    let target_tasks = n_threads * 8;
    let by_split = rows.div_ceil(target_tasks);
    // Batched (prefill) tasks are heavier per row, so they can be narrower.
    let min_rows = if n_tokens > 1 { 4 } else { 16 };
    by_split.max(min_rows).min(rows.max(1))
}

/// `out[t][r] = dot(w.row(r), input[t])` for every token `t` and output row `r`; `out` is laid
/// out token-major (`n * w.rows`).
pub fn matmul(pool: &ThreadPool, k: &Kernels, w: &Matrix, input: &Input<'_>, out: &mut [f32]) {
    assert_eq!(
        w.cols, input.cols,
        "{}: input width {} for {} columns",
        w.name, input.cols, w.cols
    );
    assert_eq!(out.len(), input.n * w.rows);
    let chunk = rows_per_task(w.rows, pool.n_threads(), input.n);
    let n_tasks = w.rows.div_ceil(chunk);
    let out_ptr = SharedMut::new(out);
    let rows = w.rows;
    pool.run(n_tasks, &|task| {
        let r0 = task * chunk;
        let r1 = (r0 + chunk).min(rows);
        for t in 0..input.n {
            // SAFETY: task `task` alone writes rows r0..r1 of each token's output.
            let o = unsafe { out_ptr.slice(t * rows + r0, r1 - r0) };
            dot_rows(k, w, r0, input, t, o);
        }
    });
}

fn dot_rows(k: &Kernels, w: &Matrix, r0: usize, input: &Input<'_>, t: usize, out: &mut [f32]) {
    match w.dtype {
        DType::F32 => {
            let x = input.row(t);
            for (i, o) in out.iter_mut().enumerate() {
                *o = (k.dot_f32)(bytemuck::cast_slice(w.row(r0 + i)), x);
            }
        }
        DType::F16 => {
            let x = input.row(t);
            for (i, o) in out.iter_mut().enumerate() {
                *o = (k.dot_f16)(bytemuck::cast_slice(w.row(r0 + i)), x);
            }
        }
        DType::Q8_0 | DType::Q4_0 | DType::Q4_1 | DType::Q4_K | DType::Q6_K => {
            let dot = match w.dtype {
                DType::Q8_0 => k.dot_q8_0,
                DType::Q4_0 => k.dot_q4_0,
                DType::Q4_K => k.dot_q4_k,
                DType::Q6_K => k.dot_q6_k,
                _ => k.dot_q4_1,
            };
            let a = input.q8_row(t);
            for (i, o) in out.iter_mut().enumerate() {
                *o = dot(w.row(r0 + i), a);
            }
        }
    }
}

/// `out = x / rms(x) * weight`.
pub fn rmsnorm(out: &mut [f32], x: &[f32], weight: &[f32], eps: f32) {
    let ss: f32 = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    let scale = 1.0 / (ss + eps).sqrt();
    for ((o, &v), &w) in out.iter_mut().zip(x).zip(weight) {
        *o = v * scale * w;
    }
}

/// Rotary position embedding in GGML's "normal" layout (adjacent pairs), which is how GGUF
/// llama conversions store the q and k projections. `inv_freq[i]` is the angle per position of
/// pair `i`.
pub fn rope(head: &mut [f32], pos: f32, inv_freq: &[f32]) {
    for (i, &f) in inv_freq.iter().enumerate() {
        let (sin, cos) = (pos * f).sin_cos();
        let (a, b) = (head[2 * i], head[2 * i + 1]);
        head[2 * i] = a * cos - b * sin;
        head[2 * i + 1] = a * sin + b * cos;
    }
}

/// In-place softmax.
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
    x.iter_mut().for_each(|v| *v *= inv);
}

/// `gate = silu(gate) * up`, SwiGLU's element-wise half.
pub fn swiglu(gate: &mut [f32], up: &[f32]) {
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + (-*g).exp()) * u;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sums_to_one() {
        let mut x = vec![1.0, 2.0, 3.0, -1000.0];
        softmax(&mut x);
        assert!((x.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(x[3] == 0.0 && x[2] > x[1]);
    }

    #[test]
    fn rope_preserves_norm_and_is_identity_at_zero() {
        let mut h = vec![1.0, 2.0, 3.0, 4.0];
        rope(&mut h, 0.0, &[1.0, 0.1]);
        assert_eq!(h, vec![1.0, 2.0, 3.0, 4.0]);
        rope(&mut h, 7.0, &[1.0, 0.1]);
        let n: f32 = h.iter().map(|v| v * v).sum();
        assert!((n - 30.0).abs() < 1e-4);
    }
}
