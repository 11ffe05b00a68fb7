//! A model plus what running it needs (kernels, threads, KV cache, scratch memory), and the
//! forward pass, top to bottom in one function ([`Session::forward_batch`]).
//!
//! Every architecture the engine runs goes through this one pass; what differs between them is
//! a [`Family`](crate::model::arch::Family) of switches read at load (biases, per-head norms,
//! RoPE layout, activation, post-norms, sliding windows), so the pass reads like llama2.c's with
//! those switches where they apply.

use crate::kernels::attention::{attend, merge, AttnBlock, AttnState, TILE};
use crate::kernels::Kernels;
use crate::kv_cache::{CacheType, KvCache};
use crate::model::arch::{Activation, RopeMode};
use crate::model::Model;
use crate::ops::{
    gelu_tanh_glu, matmul, matmul_many, par_rows, rmsnorm, rmsnorm_in_place, rope_angles,
    rope_apply, rope_apply_neox, swiglu, Input, Q8Scratch,
};
use crate::pool::{SharedMut, ThreadPool};

/// Largest number of prompt tokens pushed through the network at once; longer prompts go in
/// several batches. Bounds the scratch memory (it grows with batch x FFN width).
pub const MAX_BATCH: usize = 256;

/// Tokens whose query rows one attention call takes: each tile of keys and values is read
/// once for this many tokens times the GQA group.
const ATTN_TOKENS: usize = 8;

/// Fewest positions an attention call is given when a row's positions are split across
/// threads (decode, and short batches over a long cache).
const MIN_SPLIT: usize = 4 * TILE;

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
    /// Online-softmax states of every attention call: `m`, `l`, and `acc` (rows x head).
    part_m: Vec<f32>,
    part_l: Vec<f32>,
    part_acc: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    logits: Vec<f32>,
    /// `(sin, cos)` per token and rotated pair, for the global layers' RoPE base.
    angles: Vec<(f32, f32)>,
    /// The same for the sliding-window layers' base (Gemma 3), when it differs.
    angles_local: Vec<(f32, f32)>,
    q8: Q8Scratch,
}

/// Per-pair RoPE frequencies for one base.
struct Rope {
    inv_freq: Vec<f32>,
}

impl Rope {
    fn new(model: &Model, theta: f32) -> Rope {
        let c = &model.config;
        let inv_freq = (0..c.rope_dim / 2)
            .map(|i| {
                let f = theta.powf(-2.0 * i as f32 / c.rope_dim as f32) / c.rope_linear_factor;
                match &model.weights.rope_freqs {
                    Some(div) => f / div[i],
                    None => f,
                }
            })
            .collect();
        Rope { inv_freq }
    }

    /// `(sin, cos)` of every pair for tokens at positions `p0..p0 + n`.
    fn angles(&self, p0: usize, n: usize, out: &mut Vec<(f32, f32)>) {
        let half = self.inv_freq.len();
        out.resize(n * half, (0.0, 0.0));
        for (t, a) in out.chunks_exact_mut(half.max(1)).enumerate() {
            rope_angles((p0 + t) as f32, &self.inv_freq, a);
        }
    }
}

/// A model plus everything needed to run it: kernels, threads, KV cache and scratch memory.
pub struct Session<'m> {
    pub model: &'m Model,
    pub kernels: &'static Kernels,
    pub pool: ThreadPool,
    pub cache: KvCache,
    rope: Rope,
    /// The sliding-window layers' RoPE, when the model has such layers.
    rope_local: Option<Rope>,
    s: Scratch,
}

impl<'m> Session<'m> {
    /// A session holding up to `ctx` positions (clamped to the model's context length) in an
    /// f16 KV cache.
    pub fn new(
        model: &'m Model,
        kernels: &'static Kernels,
        n_threads: usize,
        ctx: usize,
    ) -> Session<'m> {
        Session::with_cache(model, kernels, n_threads, ctx, CacheType::default())
    }

    /// [`Session::new`] with the KV cache's element type chosen.
    pub fn with_cache(
        model: &'m Model,
        kernels: &'static Kernels,
        n_threads: usize,
        ctx: usize,
        cache_type: CacheType,
    ) -> Session<'m> {
        let c = &model.config;
        let ctx = ctx.clamp(1, c.ctx_len.max(1));
        let pool = ThreadPool::new(n_threads);
        if let Some(pk) = kernels.packed {
            let mats = model.weights.matrices();
            pool.run(mats.len(), &|i| mats[i].pack(pk.types));
        }
        let rope_local = c
            .family
            .sliding_window
            .as_ref()
            .map(|w| Rope::new(model, w.rope_theta));
        Session {
            model,
            kernels,
            pool,
            cache: KvCache::new(c.n_layers, c.kv_dim(), ctx, cache_type),
            rope: Rope::new(model, c.rope_theta),
            rope_local,
            s: Scratch::default(),
        }
    }

    /// Forgets the conversation so far.
    pub fn reset(&mut self) {
        self.cache.clear();
    }

    /// Forgets every position from `len` on, keeping the first `len` (a shared prefix).
    pub fn rewind(&mut self, len: usize) {
        assert!(len <= self.cache.len, "rewind past the positions held");
        self.cache.len = len;
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
        let f = &c.family;
        let w = &self.model.weights;
        let k = self.kernels;
        let pool = &self.pool;
        let s = &mut self.s;
        let n = tokens.len();
        let p0 = self.cache.len;
        let (dim, hd, kv_dim, q_dim) = (c.dim, c.head_dim, c.kv_dim(), c.q_dim());
        let group = c.n_heads / c.n_kv_heads;
        let kv_len = p0 + n;
        resize(&mut s.x, n * dim);
        resize(&mut s.xb, n * dim.max(q_dim));
        resize(&mut s.q, n * q_dim);
        resize(&mut s.k, n * kv_dim);
        resize(&mut s.v, n * kv_dim);
        resize(&mut s.att, n * q_dim);
        resize(&mut s.gate, n * c.ffn_dim);
        resize(&mut s.up, n * c.ffn_dim);

        // Token embeddings (scaled, for Gemma).
        for (t, &tok) in tokens.iter().enumerate() {
            let x = &mut s.x[t * dim..(t + 1) * dim];
            w.token_embd.dequantize_row(tok as usize, x);
            if f.embed_scale != 1.0 {
                x.iter_mut().for_each(|v| *v *= f.embed_scale);
            }
        }

        // Each position's rotation angles, shared by all heads of q and k.
        let half = c.rope_dim / 2;
        self.rope.angles(p0, n, &mut s.angles);
        if let Some(r) = &self.rope_local {
            r.angles(p0, n, &mut s.angles_local);
        }

        for (l, layer) in w.layers.iter().enumerate() {
            let window = f
                .sliding_window
                .as_ref()
                .filter(|sw| sw.local[l])
                .map(|sw| sw.window);

            // Attention: normalise, project to q, k, v (plus biases).
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
            for (m, width, bias) in [
                (&mut s.q, q_dim, &layer.bq),
                (&mut s.k, kv_dim, &layer.bk),
                (&mut s.v, kv_dim, &layer.bv),
            ] {
                if let Some(b) = bias {
                    par_rows(pool, &mut m[..n * width], width, &|_, row| add(row, b));
                }
            }

            // Per-head norms (Qwen3, Gemma), then rotate q and k by position, then append k
            // and v to the cache.
            let angles = match (window, &self.rope_local) {
                (Some(_), Some(_)) => &s.angles_local,
                _ => &s.angles,
            };
            for (m, width, norm) in [
                (&mut s.q, q_dim, &layer.q_norm),
                (&mut s.k, kv_dim, &layer.k_norm),
            ] {
                par_rows(pool, &mut m[..n * width], width, &|t, row| {
                    for h in row.chunks_exact_mut(hd) {
                        if let Some(nw) = norm {
                            rmsnorm_in_place(h, nw, c.rms_eps);
                        }
                        let a = &angles[t * half..(t + 1) * half];
                        match f.rope {
                            RopeMode::Normal => rope_apply(h, a),
                            RopeMode::Neox => rope_apply_neox(h, a),
                        }
                    }
                });
            }
            self.cache
                .write(l, p0, &s.k[..n * kv_dim], &s.v[..n * kv_dim]);
            attention(
                pool,
                k,
                &self.cache,
                l,
                AttnShape {
                    n,
                    p0,
                    hd,
                    n_heads: c.n_heads,
                    group,
                    window,
                    scale: f.attn_scale,
                },
                s,
            );

            // Output projection, its post-norm (Gemma), and the residual.
            let att = &s.att[..n * q_dim];
            let input = Input::new(pool, k, att, q_dim, &[&layer.wo], &mut s.q8);
            matmul(pool, k, &layer.wo, &input, &mut s.xb[..n * dim]);
            add_residual(
                pool,
                &mut s.x,
                &mut s.xb,
                n,
                dim,
                &layer.attn_post_norm,
                c.rms_eps,
            );

            // Feed-forward: act(gate) * up, then down.
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
                let u = &up[t * ffn..(t + 1) * ffn];
                match f.activation {
                    Activation::Silu => swiglu(g, u),
                    Activation::GeluTanh => gelu_tanh_glu(g, u),
                }
            });
            let input = Input::new(pool, k, &s.gate, c.ffn_dim, &[&layer.w_down], &mut s.q8);
            matmul(pool, k, &layer.w_down, &input, &mut s.xb[..n * dim]);
            add_residual(
                pool,
                &mut s.x,
                &mut s.xb,
                n,
                dim,
                &layer.ffn_post_norm,
                c.rms_eps,
            );
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
        if let Some(cap) = f.logit_softcap {
            s.logits
                .iter_mut()
                .for_each(|l| *l = cap * (*l / cap).tanh());
        }
    }
}

/// What one layer's attention covers: `n` new tokens after `p0` cached positions.
struct AttnShape {
    n: usize,
    p0: usize,
    hd: usize,
    n_heads: usize,
    /// Query heads per key/value head.
    group: usize,
    /// A sliding-window layer's window (itself included).
    window: Option<usize>,
    scale: f32,
}

/// Causal grouped-query attention of `s.q` over layer `l` of the cache into `s.att`.
///
/// One call per (key/value head, block of [`ATTN_TOKENS`] tokens, part of the positions): the
/// call reads each key/value tile once for all its query rows. Positions are split into parts
/// only when there are too few (head, block) calls to keep every thread busy, as in decode;
/// the parts' softmax states are then merged per row.
fn attention(
    pool: &ThreadPool,
    k: &Kernels,
    cache: &KvCache,
    l: usize,
    a: AttnShape,
    s: &mut Scratch,
) {
    let AttnShape {
        n,
        p0,
        hd,
        n_heads,
        group,
        window,
        scale,
    } = a;
    let (kv_heads, kv_len) = (n_heads / group, p0 + n);
    let (kv_dim, q_dim) = (kv_heads * hd, n_heads * hd);
    let blocks = n.div_ceil(ATTN_TOKENS);
    let want = 4 * pool.n_threads();
    let parts = want
        .div_ceil(kv_heads * blocks)
        .clamp(1, kv_len.div_ceil(MIN_SPLIT).max(1));
    let part_len = kv_len.div_ceil(parts).next_multiple_of(TILE);
    let rows = ATTN_TOKENS * group;
    let calls = kv_heads * blocks * parts;
    resize(&mut s.part_m, calls * rows);
    resize(&mut s.part_l, calls * rows);
    resize(&mut s.part_acc, calls * rows * hd);
    let (keys, values) = cache.layer(l);
    let (pm, pl, pa) = (
        SharedMut::new(&mut s.part_m),
        SharedMut::new(&mut s.part_l),
        SharedMut::new(&mut s.part_acc),
    );
    let q = &s.q;
    pool.run(calls, &|call| {
        let (head_block, part) = (call / parts, call % parts);
        let (kvh, blk) = (head_block / blocks, head_block % blocks);
        let t0 = blk * ATTN_TOKENS;
        let tokens = ATTN_TOKENS.min(n - t0);
        let (c0, c1) = (part * part_len, ((part + 1) * part_len).min(kv_len));
        let mut spans = [(0, 0); ATTN_TOKENS];
        for (i, sp) in spans[..tokens].iter_mut().enumerate() {
            let seen = p0 + t0 + i + 1;
            let first = window.map_or(0, |w| seen.saturating_sub(w));
            *sp = (first.max(c0), seen.min(c1));
        }
        let off = kvh * hd;
        let block = AttnBlock {
            q: &q[t0 * q_dim + kvh * group * hd..],
            q_stride: q_dim,
            group,
            hd,
            spans: &spans[..tokens],
            keys: keys.skip(off),
            values: values.skip(off),
            stride: kv_dim,
            scale,
        };
        // SAFETY: each call owns its own rows of the state buffers.
        let mut st = unsafe {
            AttnState {
                m: pm.slice(call * rows, rows),
                l: pl.slice(call * rows, rows),
                acc: pa.slice(call * rows * hd, rows * hd),
            }
        };
        attend(k, &block, &mut st);
    });
    let (pm, pl, pa) = (&s.part_m, &s.part_l, &s.part_acc);
    par_rows(pool, &mut s.att[..n * q_dim], q_dim, &|t, out| {
        let (blk, i) = (t / ATTN_TOKENS, t % ATTN_TOKENS);
        for (h, o) in out.chunks_exact_mut(hd).enumerate() {
            let (kvh, g) = (h / group, h % group);
            let r = i * group + g;
            let first = (kvh * blocks + blk) * parts;
            let states = (first..first + parts).map(|call| {
                let at = call * rows + r;
                (pm[at], pl[at], &pa[at * hd..(at + 1) * hd])
            });
            merge(states, o);
        }
    });
}

/// `x += norm(y)` row by row (`x += y` without a post-norm), rows spread over the pool.
fn add_residual(
    pool: &ThreadPool,
    x: &mut [f32],
    y: &mut [f32],
    n: usize,
    dim: usize,
    post_norm: &Option<Vec<f32>>,
    eps: f32,
) {
    let y = &mut y[..n * dim];
    if let Some(nw) = post_norm {
        par_rows(pool, y, dim, &|_, row| rmsnorm_in_place(row, nw, eps));
    }
    let y = &*y;
    par_rows(pool, &mut x[..n * dim], dim, &|t, row| {
        add(row, &y[t * dim..(t + 1) * dim])
    });
}

fn resize(v: &mut Vec<f32>, n: usize) {
    v.resize(n, 0.0);
}

fn add(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}
