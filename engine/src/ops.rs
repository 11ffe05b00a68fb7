//! The operations of a forward pass, on rows of f32: matrix products over the thread pool, and
//! the small element-wise steps (RMSNorm, RoPE, softmax, SwiGLU).

use crate::dtype::{DType, QK};
use crate::kernels::blocks::{quantize_q8, Q8Blocks, Q8Row};
use crate::kernels::interleaved::ROWS;
use crate::kernels::kquants::tile::MAX_TILE as K_TILE;
#[cfg(doc)]
use crate::kernels::packed::pack_activations;
use crate::kernels::packed::{pack_activation_row, MAX_TILE};
use crate::kernels::{Kernels, PackedKernels, FLOAT_TILE, INTERLEAVED_TILE};
use crate::model::Matrix;
use crate::pool::{SharedMut, ThreadPool};

/// A batch of `n` activation rows of `cols` values, with the 8-bit forms its readers need
/// computed once, so that every quantized matrix that reads this input (q, k and v; gate and
/// up) shares them.
pub struct Input<'a> {
    pub x: &'a [f32],
    pub n: usize,
    pub cols: usize,
    q8: Option<&'a Q8Row>,
    q8_packed: Option<&'a Q8Row>,
}

/// Scratch space for the quantized forms of an [`Input`].
#[derive(Default)]
pub struct Q8Scratch {
    raw: Q8Row,
    packed: Q8Row,
}

/// How a matrix reads its input with these kernels.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reads {
    F32,
    Q8,
    Q8Packed,
}

fn reads(k: &Kernels, w: &Matrix) -> Reads {
    if k.packed.is_some_and(|pk| pk.types.contains(&w.dtype)) && w.is_packed() {
        Reads::Q8Packed
    } else if wants_q8(w.dtype) {
        Reads::Q8
    } else {
        Reads::F32
    }
}

impl<'a> Input<'a> {
    /// `x` (rows of `cols` values) prepared for every matrix in `readers`.
    /// Rows are quantized in parallel on `pool` (a prompt's 256 rows took 6% of a prefill on
    /// one thread).
    pub fn new(
        pool: &ThreadPool,
        k: &Kernels,
        x: &'a [f32],
        cols: usize,
        readers: &[&Matrix],
        scratch: &'a mut Q8Scratch,
    ) -> Self {
        debug_assert_eq!(x.len() % cols, 0);
        let wanted = |r: Reads| readers.iter().any(|w| reads(k, w) == r);
        let Q8Scratch { raw, packed } = scratch;
        let q8 = wanted(Reads::Q8).then(|| {
            quantize_rows(pool, x, cols, raw, false);
            &*raw
        });
        let q8_packed = wanted(Reads::Q8Packed).then(|| {
            quantize_rows(pool, x, cols, packed, true);
            &*packed
        });
        Input {
            x,
            n: x.len() / cols,
            cols,
            q8,
            q8_packed,
        }
    }

    fn row(&self, t: usize) -> &'a [f32] {
        &self.x[t * self.cols..(t + 1) * self.cols]
    }

    fn blocks(&self, q: Option<&'a Q8Row>, t: usize) -> Q8Blocks<'a> {
        let q = q.expect("the input was not prepared for this matrix");
        let nb = self.cols / QK;
        Q8Blocks {
            qs: &q.qs[t * self.cols..(t + 1) * self.cols],
            d: &q.d[t * nb..(t + 1) * nb],
            s: &q.s[t * nb..(t + 1) * nb],
        }
    }
}

/// `x` (rows of `cols` values) quantized into `out` like [`Q8Row::quantize_from`], rows spread
/// over the pool; `packed` rearranges each row for the packed kernels ([`pack_activations`]).
fn quantize_rows(pool: &ThreadPool, x: &[f32], cols: usize, out: &mut Q8Row, packed: bool) {
    out.resize(x.len());
    let nb = cols / QK;
    let n = x.len() / cols;
    let (qs, d, s) = (
        SharedMut::new(&mut out.qs),
        SharedMut::new(&mut out.d),
        SharedMut::new(&mut out.s),
    );
    for_chunks(pool, n, &|rows| {
        let (t0, m) = (rows.start, rows.len());
        // SAFETY: each chunk of rows is handed to one task, which alone writes those rows.
        let (qs, d, s) = unsafe {
            (
                qs.slice(t0 * cols, m * cols),
                d.slice(t0 * nb, m * nb),
                s.slice(t0 * nb, m * nb),
            )
        };
        quantize_q8(&x[t0 * cols..(t0 + m) * cols], qs, d, s);
        if packed {
            qs.chunks_exact_mut(cols).for_each(pack_activation_row);
        }
    });
}

/// Runs `f` over chunks of `0..n` on the pool, a few chunks per thread (one chunk, inline,
/// when `n` is 1).
fn for_chunks(pool: &ThreadPool, n: usize, f: &(dyn Fn(std::ops::Range<usize>) + Sync)) {
    let per = n.div_ceil(pool.n_threads() * 4).max(1);
    pool.run(n.div_ceil(per), &|i| f(i * per..((i + 1) * per).min(n)));
}

/// Calls `f(t, row)` for every `row_len`-wide row `t` of `out`, rows spread over the pool: the
/// per-token steps of a prefill (norms, rotations, residual adds, SwiGLU) use both cores too.
pub fn par_rows(
    pool: &ThreadPool,
    out: &mut [f32],
    row_len: usize,
    f: &(dyn Fn(usize, &mut [f32]) + Sync),
) {
    assert_eq!(out.len() % row_len, 0, "par_rows: ragged rows");
    let rows = SharedMut::new(out);
    for_chunks(pool, out.len() / row_len, &|ts| {
        for t in ts {
            // SAFETY: each row index belongs to exactly one chunk, so one task alone writes it.
            f(t, unsafe { rows.slice(t * row_len, row_len) });
        }
    });
}

/// Whether a matrix of this type reads the 8-bit form of its input.
pub fn wants_q8(dtype: DType) -> bool {
    matches!(
        dtype,
        DType::Q8_0
            | DType::Q4_0
            | DType::Q4_1
            | DType::Q5_0
            | DType::Q5_1
            | DType::Q4_K
            | DType::Q5_K
            | DType::Q6_K
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
    matmul_many(pool, k, &mut [(w, out)], input);
}

/// [`matmul`] for several matrices that read the same input (q, k and v; gate and up), in one
/// parallel region: a decode step then waits for the threads to meet once instead of once per
/// matrix.
pub fn matmul_many(
    pool: &ThreadPool,
    k: &Kernels,
    jobs: &mut [(&Matrix, &mut [f32])],
    input: &Input<'_>,
) {
    let mut tasks = Vec::new();
    let mut outs = Vec::with_capacity(jobs.len());
    for (j, (w, out)) in jobs.iter_mut().enumerate() {
        assert_eq!(
            w.cols, input.cols,
            "{}: input width {} for {} columns",
            w.name, input.cols, w.cols
        );
        assert_eq!(out.len(), input.n * w.rows);
        let mut chunk = rows_per_task(w.rows, pool.n_threads(), input.n);
        if w.is_interleaved() {
            // Whole row blocks per task: four for decode's four chains, two for prefill's.
            let blocks = if input.n == 1 { 4 } else { 2 };
            chunk = chunk.next_multiple_of(blocks * ROWS).min(w.rows);
        }
        tasks.extend(
            (0..w.rows)
                .step_by(chunk)
                .map(|r0| (j, r0..(r0 + chunk).min(w.rows))),
        );
        outs.push(SharedMut::new(out));
    }
    let ws: Vec<&Matrix> = jobs.iter().map(|(w, _)| &**w).collect();
    pool.run(tasks.len(), &|task| {
        let (j, ref rs) = tasks[task];
        let (w, out) = (ws[j], &outs[j]);
        if reads(k, w) == Reads::Q8Packed {
            packed_rows(k, w, rs.clone(), input, out);
            return;
        }
        if let (Some(pk), Some(rows)) = (k.packed, w.interleaved_rows(rs.start, rs.end)) {
            interleaved_rows(pk, w, rows, rs.start, input, out);
            return;
        }
        if let (Some(pk), true) = (k.packed, input.n > 1) {
            if matches!(w.dtype, DType::F16 | DType::F32) {
                float_rows(pk, w, rs.clone(), input, out);
                return;
            }
        }
        if input.n > 1 && matches!(w.dtype, DType::Q4_K | DType::Q5_K | DType::Q6_K) {
            k_quant_rows(k, w, rs.clone(), input, out);
            return;
        }
        for t in 0..input.n {
            // SAFETY: this task alone writes rows `rs` of each token's output.
            let o = unsafe { out.slice(t * w.rows + rs.start, rs.len()) };
            dot_rows(k, w, rs.start, input, t, o);
        }
    });
}

/// Rows `rs` of a K-quant matrix for every token, [`K_TILE`] tokens per call so each
/// super-block's scales and quants are unpacked once per tile rather than once per token.
fn k_quant_rows(
    k: &Kernels,
    w: &Matrix,
    rs: std::ops::Range<usize>,
    input: &Input<'_>,
    out: &SharedMut<f32>,
) {
    let mut t0 = 0;
    while t0 < input.n {
        let tn = (input.n - t0).min(K_TILE);
        let acts: [Q8Blocks<'_>; K_TILE] =
            std::array::from_fn(|i| input.blocks(input.q8, t0 + i.min(tn - 1)));
        let mut res = [0f32; K_TILE];
        for r in rs.clone() {
            (k.dot_k_tile)(w.dtype, w.row(r), &acts[..tn], &mut res[..tn]);
            for (i, &v) in res[..tn].iter().enumerate() {
                // SAFETY: the task owning rows `rs` alone writes these elements.
                unsafe { out.slice((t0 + i) * w.rows + r, 1)[0] = v };
            }
        }
        t0 += tn;
    }
}

/// Rows `rs` of a packed matrix for every token, four tokens at a time so each weight row is
/// unpacked once per four tokens.
fn packed_rows(
    k: &Kernels,
    w: &Matrix,
    rs: std::ops::Range<usize>,
    input: &Input<'_>,
    out: &SharedMut<f32>,
) {
    let pk = k.packed.expect("packed kernels");
    let rows = w.packed_rows(rs.clone()).expect("packed");
    let mut t0 = 0;
    while t0 < input.n {
        let tn = (input.n - t0).min(MAX_TILE);
        let acts: [Q8Blocks<'_>; MAX_TILE] =
            std::array::from_fn(|i| input.blocks(input.q8_packed, t0 + i.min(tn - 1)));
        // SAFETY: the task owning rows `rs` alone writes rows rs of each token's output, which
        // lie inside `out` (n * w.rows elements).
        unsafe {
            let o = out.ptr().add(t0 * w.rows + rs.start);
            (pk.dot)(w.dtype, rows, rs.len(), &acts[..tn], o, w.rows);
        }
        t0 += tn;
    }
}

/// The interleaved row blocks `blocks` (rows from `r0` on) of an f16 or f32 matrix for every
/// token, [`INTERLEAVED_TILE`] tokens per call so each weight vector is loaded once per tile.
fn interleaved_rows(
    pk: &PackedKernels,
    w: &Matrix,
    blocks: &[u8],
    r0: usize,
    input: &Input<'_>,
    out: &SharedMut<f32>,
) {
    let mut t0 = 0;
    while t0 < input.n {
        let tn = (input.n - t0).min(INTERLEAVED_TILE);
        let xs: [&[f32]; INTERLEAVED_TILE] = std::array::from_fn(|i| input.row(t0 + i.min(tn - 1)));
        // SAFETY: the task owning these rows alone writes rows r0.. of each token's output,
        // which lie inside `out` (n * w.rows elements).
        unsafe {
            let o = out.ptr().add(t0 * w.rows + r0);
            (pk.dot_interleaved)(w.dtype, blocks, w.cols, &xs[..tn], o, w.rows);
        }
        t0 += tn;
    }
}

/// Rows `rs` of an f16 or f32 matrix for every token, eight tokens at a time so each weight is
/// loaded (and converted) once per eight tokens.
fn float_rows(
    pk: &PackedKernels,
    w: &Matrix,
    rs: std::ops::Range<usize>,
    input: &Input<'_>,
    out: &SharedMut<f32>,
) {
    let mut t0 = 0;
    while t0 < input.n {
        let tn = (input.n - t0).min(FLOAT_TILE);
        let xs: [&[f32]; FLOAT_TILE] = std::array::from_fn(|i| input.row(t0 + i.min(tn - 1)));
        let mut res = [0f32; 2 * FLOAT_TILE];
        let mut r = rs.start;
        while r < rs.end {
            let nr = (rs.end - r).min(2);
            let rows: [&[u8]; 2] = [w.row(r), w.row(r + nr - 1)];
            let out_n = nr * tn;
            match w.dtype {
                DType::F16 => {
                    let rows: [&[u16]; 2] = rows.map(bytemuck::cast_slice);
                    (pk.dot_f16)(&rows[..nr], &xs[..tn], &mut res[..out_n])
                }
                _ => {
                    let rows: [&[f32]; 2] = rows.map(bytemuck::cast_slice);
                    (pk.dot_f32)(&rows[..nr], &xs[..tn], &mut res[..out_n])
                }
            }
            for j in 0..nr {
                for (i, &v) in res[j * tn..(j + 1) * tn].iter().enumerate() {
                    // SAFETY: the task owning rows `rs` alone writes these elements.
                    unsafe { out.slice((t0 + i) * w.rows + r + j, 1)[0] = v };
                }
            }
            r += nr;
        }
        t0 += tn;
    }
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
        DType::Q8_0
        | DType::Q4_0
        | DType::Q4_1
        | DType::Q5_0
        | DType::Q5_1
        | DType::Q4_K
        | DType::Q5_K
        | DType::Q6_K => {
            let dot = match w.dtype {
                DType::Q8_0 => k.dot_q8_0,
                DType::Q4_0 => k.dot_q4_0,
                DType::Q5_0 => k.dot_q5_0,
                DType::Q5_1 => k.dot_q5_1,
                DType::Q4_K => k.dot_q4_k,
                DType::Q5_K => k.dot_q5_k,
                DType::Q6_K => k.dot_q6_k,
                _ => k.dot_q4_1,
            };
            let a = input.blocks(input.q8, t);
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

/// `x = x / rms(x) * weight`, in place (per-head q/k norms and post-norms).
pub fn rmsnorm_in_place(x: &mut [f32], weight: &[f32], eps: f32) {
    let ss: f32 = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    let scale = 1.0 / (ss + eps).sqrt();
    for (v, &w) in x.iter_mut().zip(weight) {
        *v = *v * scale * w;
    }
}

/// Rotary position embedding in GGML's "normal" layout (adjacent pairs), which is how GGUF
/// llama conversions store the q and k projections. `inv_freq[i]` is the angle per position of
/// pair `i`.
///
/// `(sin, cos)` of each pair's angle at `pos`: computed once per token and shared by all its
/// heads, q and k alike; [`rope_apply`] then rotates each head.
pub fn rope_angles(pos: f32, inv_freq: &[f32], out: &mut [(f32, f32)]) {
    for (o, &f) in out.iter_mut().zip(inv_freq) {
        *o = (pos * f).sin_cos();
    }
}

/// Rotates the leading `2 * angles.len()` values of `head` by precomputed angles.
pub fn rope_apply(head: &mut [f32], angles: &[(f32, f32)]) {
    for (i, &(sin, cos)) in angles.iter().enumerate() {
        let (a, b) = (head[2 * i], head[2 * i + 1]);
        head[2 * i] = a * cos - b * sin;
        head[2 * i + 1] = a * sin + b * cos;
    }
}

/// Rotates the leading `2 * angles.len()` values of `head` in GPT-NeoX's layout: pair `i` is
/// `(head[i], head[i + angles.len()])`, the halves of the rotated part (Qwen, Gemma).
pub fn rope_apply_neox(head: &mut [f32], angles: &[(f32, f32)]) {
    let half = angles.len();
    let (lo, hi) = head[..2 * half].split_at_mut(half);
    for ((a, b), &(sin, cos)) in lo.iter_mut().zip(hi.iter_mut()).zip(angles) {
        let (x, y) = (*a, *b);
        *a = x * cos - y * sin;
        *b = x * sin + y * cos;
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

/// `gate = gelu(gate) * up` with GELU's tanh approximation: GeGLU, Gemma's feed-forward.
///
/// Computed as ggml's CPU backend computes it, through a table of every f16 input: the gate is
/// rounded to f16, looked up, and the f16 result multiplied by `up` (inputs beyond +-10 pass
/// straight through or give 0). Exact f32 GELU moved Gemma 3's logits by up to a few hundredths,
/// enough to flip near-ties against llama.cpp, the reference these outputs are checked against;
/// the lookup is also cheaper than a `tanh` per element.
pub fn gelu_tanh_glu(gate: &mut [f32], up: &[f32]) {
    let table = gelu_f16_table();
    for (g, &u) in gate.iter_mut().zip(up) {
        let x = *g;
        *g = if x <= -10.0 {
            0.0
        } else if x >= 10.0 {
            x * u
        } else {
            table[half::f16::from_f32(x).to_bits() as usize].to_f32() * u
        };
    }
}

/// GELU (tanh approximation) in f32.
fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    const COEF_A: f32 = 0.044_715;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (1.0 + COEF_A * x * x)).tanh())
}

/// `gelu(x)` rounded to f16 for every f16 bit pattern `x`, built once (128 KiB).
fn gelu_f16_table() -> &'static [half::f16] {
    static TABLE: std::sync::OnceLock<Vec<half::f16>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        (0..=u16::MAX)
            .map(|bits| half::f16::from_f32(gelu_tanh(half::f16::from_bits(bits).to_f32())))
            .collect()
    })
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
        let rope = |h: &mut [f32], pos: f32, inv_freq: &[f32]| {
            let mut angles = vec![(0.0, 0.0); inv_freq.len()];
            rope_angles(pos, inv_freq, &mut angles);
            rope_apply(h, &angles);
        };
        let mut h = vec![1.0, 2.0, 3.0, 4.0];
        rope(&mut h, 0.0, &[1.0, 0.1]);
        assert_eq!(h, vec![1.0, 2.0, 3.0, 4.0]);
        rope(&mut h, 7.0, &[1.0, 0.1]);
        let n: f32 = h.iter().map(|v| v * v).sum();
        assert!((n - 30.0).abs() < 1e-4);
    }

    #[test]
    fn neox_rope_rotates_halves_and_keeps_the_unrotated_tail() {
        // Two pairs rotated over a head of 6: (h0, h2) and (h1, h3); h4, h5 untouched.
        let mut h = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let mut a = vec![(0.0, 0.0); 2];
        rope_angles(1.0, &[std::f32::consts::FRAC_PI_2, 0.0], &mut a);
        rope_apply_neox(&mut h, &a);
        // Pair 0 turned by 90 degrees: (1, 3) -> (-3, 1); pair 1 by 0: unchanged.
        let want = [-3.0, 2.0, 1.0, 4.0, 5.0, 6.0];
        for (g, w) in h.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{h:?}");
        }
    }

    #[test]
    fn gelu_glu_matches_known_values() {
        // gelu_tanh(1) = 0.841192, gelu_tanh(-1) = -0.158808, gelu_tanh(0) = 0; the table
        // rounds results to f16 (a relative step of 2^-11), and passes large inputs through.
        let mut g = vec![1.0, -1.0, 0.0, 12.0, -12.0];
        gelu_tanh_glu(&mut g, &[2.0, 1.0, 5.0, 0.5, 3.0]);
        assert!((g[0] - 2.0 * 0.841_192).abs() < 2e-3, "{g:?}");
        assert!((g[1] + 0.158_808).abs() < 2e-4, "{g:?}");
        assert_eq!(&g[2..], &[0.0, 6.0, 0.0]);
    }
}
