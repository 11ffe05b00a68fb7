//! The llama forward pass, top to bottom in one function ([`Session::forward`]).

use super::Model;
use crate::kernels::attention::{attend, AttnHead};
use crate::kernels::Kernels;
use crate::kv_cache::KvCache;
use crate::ops::{
    matmul, matmul_many, par_rows, rmsnorm, rope_angles, rope_apply, swiglu, Input, Q8Scratch,
};
use crate::pool::{SharedMut, ThreadPool};

/// Largest number of prompt tokens pushed through the network at once; longer prompts go in
/// several batches. Bounds the scratch memory (it grows with batch x FFN width).
pub const MAX_BATCH: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("the context is full: {needed} positions needed but the session holds {capacity} (raise --ctx, at most the model's {model_ctx})")]
    ContextFull {
        needed: usize,
        capacity: usize,
        model_ctx: usize,
    },
    #[error("token id {0} is outside the vocabulary of {1} tokens")]
    BadToken(u32, usize),
}

/// Which positions of a batch need logits.
#[derive(Clone, Copy, Debug)]
pub enum Logits {
    /// Only the last token's (generation).
    Last,
    /// Every token from this index of the batch on (perplexity).
    From(usize),
}

/// Working buffers, grown to the largest batch seen.
#[derive(Default)]
struct Scratch {
    x: Vec<f32>,
    xb: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    att: Vec<f32>,
    scores: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    logits: Vec<f32>,
    /// `(sin, cos)` per token and rotated pair.
    angles: Vec<(f32, f32)>,
    q8: Q8Scratch,
}

/// A model plus everything needed to run it: kernels, threads, KV cache and scratch memory.
pub struct Session<'m> {
    pub model: &'m Model,
    pub kernels: &'static Kernels,
    pub pool: ThreadPool,
    pub cache: KvCache,
    inv_freq: Vec<f32>,
    s: Scratch,
}

impl<'m> Session<'m> {
    /// A session holding up to `ctx` positions (clamped to the model's context length).
    pub fn new(
        model: &'m Model,
        kernels: &'static Kernels,
        n_threads: usize,
        ctx: usize,
    ) -> Session<'m> {
        let c = &model.config;
        let ctx = ctx.clamp(1, c.ctx_len.max(1));
        let half = c.rope_dim / 2;
        let inv_freq = (0..half)
            .map(|i| {
                let f =
                    c.rope_theta.powf(-2.0 * i as f32 / c.rope_dim as f32) / c.rope_linear_factor;
                match &model.weights.rope_freqs {
                    Some(div) => f / div[i],
                    None => f,
                }
            })
            .collect();
        let pool = ThreadPool::new(n_threads);
        if kernels.packed.is_some() {
            let mats = model.weights.matrices();
            pool.run(mats.len(), &|i| mats[i].pack());
        }
        Session {
            model,
            kernels,
            pool,
            cache: KvCache::new(c.n_layers, c.n_kv_heads * c.head_dim, ctx),
            inv_freq,
            s: Scratch::default(),
        }
    }

    /// Forgets the conversation so far.
    pub fn reset(&mut self) {
        self.cache.clear();
    }

    /// Feeds `tokens` at the next positions and returns the requested logits, one row of
    /// `vocab` values per position (row-major).
    pub fn forward(&mut self, tokens: &[u32], want: Logits) -> Result<&[f32], ForwardError> {
        let needed = self.cache.len + tokens.len();
        if needed > self.cache.capacity {
            return Err(ForwardError::ContextFull {
                needed,
                capacity: self.cache.capacity,
                model_ctx: self.model.config.ctx_len,
            });
        }
        let vocab = self.model.weights.token_embd.rows;
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(ForwardError::BadToken(bad, vocab));
        }
        let first_logit = match want {
            Logits::Last => tokens.len().saturating_sub(1),
            Logits::From(i) => i.min(tokens.len()),
        };
        if tokens.len() <= MAX_BATCH {
            self.forward_batch(tokens, first_logit);
            return Ok(&self.s.logits);
        }
        let mut logits = Vec::new();
        for (b, batch) in tokens.chunks(MAX_BATCH).enumerate() {
            let from = first_logit.saturating_sub(b * MAX_BATCH).min(batch.len());
            self.forward_batch(batch, from);
            logits.extend_from_slice(&self.s.logits);
        }
        self.s.logits = logits;
        Ok(&self.s.logits)
    }

    /// The whole network for one batch of tokens; logits for batch positions `from..`.
    fn forward_batch(&mut self, tokens: &[u32], from: usize) {
        let c = &self.model.config;
        let w = &self.model.weights;
        let k = self.kernels;
        let pool = &self.pool;
        let s = &mut self.s;
        let n = tokens.len();
        let p0 = self.cache.len;
        let (dim, hd, kv_dim) = (c.dim, c.head_dim, c.n_kv_heads * c.head_dim);
        let q_dim = c.n_heads * hd;
        let group = c.n_heads / c.n_kv_heads;
        let kv_len = p0 + n;
        resize(&mut s.x, n * dim);
        resize(&mut s.xb, n * dim.max(q_dim));
        resize(&mut s.q, n * q_dim);
        resize(&mut s.k, n * kv_dim);
        resize(&mut s.v, n * kv_dim);
        resize(&mut s.att, n * q_dim);
        resize(&mut s.scores, n * c.n_heads * kv_len);
        resize(&mut s.gate, n * c.ffn_dim);
        resize(&mut s.up, n * c.ffn_dim);

        // Token embeddings.
        for (t, &tok) in tokens.iter().enumerate() {
            w.token_embd
                .dequantize_row(tok as usize, &mut s.x[t * dim..(t + 1) * dim]);
        }

        // Each position's rotation angles, shared by all heads of q and k.
        let half = self.inv_freq.len();
        s.angles.resize(n * half, (0.0, 0.0));
        for (t, a) in s.angles.chunks_exact_mut(half.max(1)).enumerate() {
            rope_angles((p0 + t) as f32, &self.inv_freq, a);
        }

        for (l, layer) in w.layers.iter().enumerate() {
            // Attention: normalise, project to q, k, v.
            let x = &s.x;
            par_rows(pool, &mut s.xb[..n * dim], dim, &|t, o| {
                rmsnorm(o, &x[t * dim..(t + 1) * dim], &layer.attn_norm, c.rms_eps)
            });
            let xb = &s.xb[..n * dim];
            let readers = [&layer.wq, &layer.wk, &layer.wv];
            let input = Input::new(pool, k, xb, dim, &readers, &mut s.q8);
            let qkv = [
                (&layer.wq, &mut s.q),
                (&layer.wk, &mut s.k),
                (&layer.wv, &mut s.v),
            ];
            matmul_many(pool, k, &mut qkv.map(|(w, o)| (w, &mut o[..])), &input);

            // Rotate q and k by position, then append k and v to the cache.
            let angles = &s.angles;
            for (m, width) in [(&mut s.q, q_dim), (&mut s.k, kv_dim)] {
                par_rows(pool, &mut m[..n * width], width, &|t, row| {
                    for h in row.chunks_exact_mut(hd) {
                        rope_apply(h, &angles[t * half..(t + 1) * half]);
                    }
                });
            }
            let (kc, vc) = (&mut self.cache.k[l], &mut self.cache.v[l]);
            kc[p0 * kv_dim..kv_len * kv_dim].copy_from_slice(&s.k[..n * kv_dim]);
            vc[p0 * kv_dim..kv_len * kv_dim].copy_from_slice(&s.v[..n * kv_dim]);

            // Causal grouped-query attention, one task per (token, head).
            let (kc, vc) = (&*kc, &*vc);
            let scale = 1.0 / (hd as f32).sqrt();
            let att = SharedMut::new(&mut s.att);
            let scores = SharedMut::new(&mut s.scores);
            let q = &s.q;
            pool.run(n * c.n_heads, &|task| {
                let (t, h) = (task / c.n_heads, task % c.n_heads);
                let kvh = h / group;
                let seen = p0 + t + 1;
                // SAFETY: each (t, h) task owns its own scores row and output head.
                let sc = unsafe { scores.slice(task * kv_len, seen) };
                let out = unsafe { att.slice(t * q_dim + h * hd, hd) };
                let head = AttnHead {
                    q: &q[t * q_dim + h * hd..t * q_dim + (h + 1) * hd],
                    keys: &kc[kvh * hd..],
                    values: &vc[kvh * hd..],
                    stride: kv_dim,
                    n: seen,
                    scale,
                };
                attend(k, &head, sc, out);
            });

            // Output projection and residual.
            let att = &s.att[..n * q_dim];
            let input = Input::new(pool, k, att, q_dim, &[&layer.wo], &mut s.q8);
            matmul(pool, k, &layer.wo, &input, &mut s.xb[..n * dim]);
            let xb = &s.xb;
            par_rows(pool, &mut s.x[..n * dim], dim, &|t, x| {
                add(x, &xb[t * dim..(t + 1) * dim])
            });

            // Feed-forward: SwiGLU.
            let x = &s.x;
            par_rows(pool, &mut s.xb[..n * dim], dim, &|t, o| {
                rmsnorm(o, &x[t * dim..(t + 1) * dim], &layer.ffn_norm, c.rms_eps)
            });
            let xb = &s.xb[..n * dim];
            let readers = [&layer.w_gate, &layer.w_up];
            let input = Input::new(pool, k, xb, dim, &readers, &mut s.q8);
            let gate_up = [(&layer.w_gate, &mut s.gate), (&layer.w_up, &mut s.up)];
            matmul_many(pool, k, &mut gate_up.map(|(w, o)| (w, &mut o[..])), &input);
            let (up, ffn) = (&s.up, c.ffn_dim);
            par_rows(pool, &mut s.gate[..n * ffn], ffn, &|t, g| {
                swiglu(g, &up[t * ffn..(t + 1) * ffn])
            });
            let input = Input::new(pool, k, &s.gate, c.ffn_dim, &[&layer.w_down], &mut s.q8);
            matmul(pool, k, &layer.w_down, &input, &mut s.xb[..n * dim]);
            let xb = &s.xb;
            par_rows(pool, &mut s.x[..n * dim], dim, &|t, x| {
                add(x, &xb[t * dim..(t + 1) * dim])
            });
        }
        self.cache.len = kv_len;

        // Final norm and output head, only where logits are wanted.
        let m = n - from;
        let out_w = w.output();
        resize(&mut s.logits, m * out_w.rows);
        if m == 0 {
            return;
        }
        for (i, t) in (from..n).enumerate() {
            rmsnorm(
                &mut s.xb[i * dim..(i + 1) * dim],
                &s.x[t * dim..(t + 1) * dim],
                &w.output_norm,
                c.rms_eps,
            );
        }
        let xb = &s.xb[..m * dim];
        let input = Input::new(pool, k, xb, dim, &[out_w], &mut s.q8);
        matmul(pool, k, out_w, &input, &mut s.logits);
    }
}

fn resize(v: &mut Vec<f32>, n: usize) {
    v.resize(n, 0.0);
}

fn add(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}
