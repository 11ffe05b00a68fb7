//! Micro-benchmarks of the engine's arithmetic: every dot kernel of every table this CPU can
//! run, activation quantization, the element-wise ops, and a whole matrix product over the pool.
//!
//! Throughput is bytes of weights per second wherever there are weights, so a kernel's number
//! can be set against `meltbench-engine bandwidth`: a decode-time kernel that streams weights
//! faster than memory can deliver them is no longer the bottleneck.
//!
//! `cargo bench -p meltbench-engine` takes about a minute and a half on a 2-core machine; pass
//! a filter (`-- dot/avx2`) or `--measurement-time` to narrow or lengthen it.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use half::f16;
use meltbench_engine::dtype::DType;
use meltbench_engine::kernels::blocks::{quantize_row, Q8Blocks, Q8Row};
use meltbench_engine::kernels::packed::{
    pack_activations, pack_row, packs, MAX_TILE, PACKED_TYPES,
};
use meltbench_engine::kernels::{self, Kernels};
use meltbench_engine::load::load;
use meltbench_engine::ops::{self, matmul, Input, Q8Scratch};
use meltbench_engine::pool::ThreadPool;
use meltbench_engine::synth::{write_synth, SynthConfig};
use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;
use std::time::Duration;

/// SmolLM2-135M's widths: the embedding (q, k, v, o, gate and up read rows this long) and the
/// feed-forward layer (down reads rows this long).
const WIDTHS: [usize; 2] = [576, 1536];

/// What a dot kernel may read: one weight row in its own encoding, the activations as f32 (for
/// float weights) and as 8-bit blocks (for quantized weights).
struct Operands {
    /// u32 storage so that f32 and f16 views of the row are aligned.
    storage: Vec<u32>,
    len: usize,
    x: Vec<f32>,
    q8: Q8Row,
    /// The row in the packed layout and the activations to match (quantized types only).
    packed: Vec<u8>,
    q8_packed: Q8Row,
}

impl Operands {
    /// `None` when `cols` is not a whole number of `ty`'s blocks (a 256-wide K-quant at 576).
    fn new(ty: DType, cols: usize, seed: u64) -> Option<Operands> {
        let len = ty.bytes_for(cols)?;
        let w = random(cols, seed);
        let mut storage = vec![0u32; len.div_ceil(4)];
        quantize_row(
            ty,
            &w,
            &mut bytemuck::cast_slice_mut::<u32, u8>(&mut storage)[..len],
        );
        let x = random(cols, seed + 1);
        let mut q8 = Q8Row::default();
        q8.quantize_from(&x);
        let mut packed = vec![0u8; len];
        let mut q8_packed = Q8Row::default();
        if packs(ty) {
            pack_row(
                ty,
                &bytemuck::cast_slice::<u32, u8>(&storage)[..len],
                &mut packed,
            );
            pack_activations(&x, cols, &mut q8_packed);
        }
        Some(Operands {
            storage,
            len,
            x,
            q8,
            packed,
            q8_packed,
        })
    }

    fn w(&self) -> &[u8] {
        &bytemuck::cast_slice::<u32, u8>(&self.storage)[..self.len]
    }

    fn w_f32(&self) -> &[f32] {
        bytemuck::cast_slice(self.w())
    }

    fn w_f16(&self) -> &[f16] {
        bytemuck::cast_slice(self.w())
    }
}

type Dot = Box<dyn Fn(&Operands) -> f32>;

/// Every dot kernel of a table with the weight type it reads. A new kernel is one line here.
fn dot_kernels(k: &'static Kernels) -> Vec<(&'static str, DType, Dot)> {
    let mut out = row_kernels(k);
    if let Some(pk) = k.packed {
        let packed = |ty: DType| -> Dot {
            Box::new(move |o| {
                let mut r = [0f32];
                pk.dot_row(ty, &o.packed, &[o.q8_packed.blocks()], &mut r);
                r[0]
            })
        };
        out.push(("packed_q8_0", DType::Q8_0, packed(DType::Q8_0)));
        out.push(("packed_q4_0", DType::Q4_0, packed(DType::Q4_0)));
        out.push(("packed_q4_1", DType::Q4_1, packed(DType::Q4_1)));
        out.push(("packed_q5_0", DType::Q5_0, packed(DType::Q5_0)));
        out.push(("packed_q5_1", DType::Q5_1, packed(DType::Q5_1)));
    }
    out
}

/// The kernels that read rows in the file's own layout.
fn row_kernels(k: &'static Kernels) -> Vec<(&'static str, DType, Dot)> {
    vec![
        (
            "dot_f32",
            DType::F32,
            Box::new(|o| (k.dot_f32)(o.w_f32(), &o.x)),
        ),
        (
            "dot_f16",
            DType::F16,
            Box::new(|o| (k.dot_f16)(o.w_f16(), &o.x)),
        ),
        (
            "dot_q8_0",
            DType::Q8_0,
            Box::new(|o| (k.dot_q8_0)(o.w(), o.q8.blocks())),
        ),
        (
            "dot_q4_0",
            DType::Q4_0,
            Box::new(|o| (k.dot_q4_0)(o.w(), o.q8.blocks())),
        ),
        (
            "dot_q4_1",
            DType::Q4_1,
            Box::new(|o| (k.dot_q4_1)(o.w(), o.q8.blocks())),
        ),
        (
            "dot_q5_0",
            DType::Q5_0,
            Box::new(|o| (k.dot_q5_0)(o.w(), o.q8.blocks())),
        ),
        (
            "dot_q5_1",
            DType::Q5_1,
            Box::new(|o| (k.dot_q5_1)(o.w(), o.q8.blocks())),
        ),
    ]
}

/// Values like a layer's weights or activations: uniform in [-1, 1), fixed by the seed so runs
/// compare.
fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| (rng.next_u32() >> 8) as f32 / (1u32 << 23) as f32 - 1.0)
        .collect()
}

fn dots(c: &mut Criterion) {
    for k in kernels::available() {
        let mut g = c.benchmark_group(format!("dot/{}", k.isa));
        for (name, ty, dot) in dot_kernels(k) {
            for cols in WIDTHS {
                let Some(ops) = Operands::new(ty, cols, cols as u64) else {
                    continue;
                };
                g.throughput(Throughput::Bytes(ops.len as u64));
                g.bench_with_input(BenchmarkId::new(name, cols), &ops, |b, o| {
                    b.iter(|| dot(black_box(o)))
                });
            }
        }
        g.finish();
    }
}

/// Gemma 3 270M's widths, where prefill spends most of its time in packed Q5_0 rows: 640 (20
/// blocks: a whole group and a partial one) and 2048 (four whole groups).
const TILE_WIDTHS: [usize; 2] = [640, 2048];

/// Rows per packed call in [`tiles`]: a prefill task's share of a Gemma 3 matrix is 64 to 128.
const TILE_ROWS: usize = 16;

/// [`TILE_ROWS`] packed rows against [`MAX_TILE`] tokens in one call, as prefill makes them:
/// throughput in multiply-accumulates (columns times tokens times rows), so every type and ISA
/// compares directly.
fn tiles(c: &mut Criterion) {
    for k in kernels::available() {
        let Some(pk) = k.packed else { continue };
        let mut g = c.benchmark_group(format!("tile{MAX_TILE}/{}", k.isa));
        for &ty in PACKED_TYPES {
            for cols in TILE_WIDTHS {
                // Every packed type has 32-element blocks.
                let nb = cols / 32;
                let row_bytes = ty.bytes_for(cols).expect("whole blocks");
                let mut w = vec![0u8; row_bytes * TILE_ROWS];
                for (r, packed) in w.chunks_exact_mut(row_bytes).enumerate() {
                    let mut raw = vec![0u8; row_bytes];
                    quantize_row(ty, &random(cols, 3 + r as u64), &mut raw);
                    pack_row(ty, &raw, packed);
                }
                let mut acts = Q8Row::default();
                pack_activations(&random(cols * MAX_TILE, 4), cols, &mut acts);
                let views: Vec<Q8Blocks<'_>> = (0..MAX_TILE)
                    .map(|t| Q8Blocks {
                        qs: &acts.qs[t * cols..(t + 1) * cols],
                        d: &acts.d[t * nb..(t + 1) * nb],
                        s: &acts.s[t * nb..(t + 1) * nb],
                    })
                    .collect();
                let mut out = [0f32; TILE_ROWS * MAX_TILE];
                g.throughput(Throughput::Elements((cols * MAX_TILE * TILE_ROWS) as u64));
                g.bench_function(BenchmarkId::new(ty.to_string(), cols), |b| {
                    b.iter(|| {
                        // SAFETY: `out` holds TILE_ROWS results for each of MAX_TILE tokens at
                        // stride TILE_ROWS, and nothing else touches it during the call.
                        unsafe {
                            (pk.dot)(
                                ty,
                                black_box(&w),
                                TILE_ROWS,
                                black_box(&views),
                                out.as_mut_ptr(),
                                TILE_ROWS,
                            )
                        }
                    })
                });
            }
        }
        g.finish();
    }
}

/// The element-wise steps, measured in bytes of f32 input since they have no weights.
fn elementwise(c: &mut Criterion) {
    let mut g = c.benchmark_group("ops");
    for cols in WIDTHS {
        let x = random(cols, 7);
        let bytes = Throughput::Bytes(4 * cols as u64);
        g.throughput(bytes.clone());
        let mut q8 = Q8Row::with_len(cols);
        g.bench_function(BenchmarkId::new("quantize_q8", cols), |b| {
            b.iter(|| q8.quantize_from(black_box(&x)))
        });
        let weight = random(cols, 8);
        let mut out = vec![0.0; cols];
        g.bench_function(BenchmarkId::new("rmsnorm", cols), |b| {
            b.iter(|| ops::rmsnorm(&mut out, black_box(&x), &weight, 1e-5))
        });
        // Restoring the input inside the loop keeps exp() on realistic values; the copy is a
        // small share of softmax and swiglu, which call exp() per element.
        let mut y = x.clone();
        g.bench_function(BenchmarkId::new("softmax", cols), |b| {
            b.iter(|| {
                y.copy_from_slice(&x);
                ops::softmax(black_box(&mut y))
            })
        });
        let up = random(cols, 9);
        g.bench_function(BenchmarkId::new("swiglu", cols), |b| {
            b.iter(|| {
                y.copy_from_slice(&x);
                ops::swiglu(black_box(&mut y), &up)
            })
        });
        // All heads of one token at SmolLM2's head size of 64 (32 rotated pairs each).
        let inv_freq: Vec<f32> = (0..32)
            .map(|i| 10000f32.powf(-2.0 * i as f32 / 64.0))
            .collect();
        // The angles once per token, as a forward pass computes them, then every head.
        let mut angles = vec![(0.0, 0.0); inv_freq.len()];
        g.bench_function(BenchmarkId::new("rope", cols), |b| {
            b.iter(|| {
                ops::rope_angles(black_box(17.0), &inv_freq, &mut angles);
                for head in y.chunks_exact_mut(64) {
                    ops::rope_apply(head, &angles);
                }
            })
        });
    }
    g.finish();
}

/// A whole `matmul` of SmolLM2's gate projection (1536 rows of 576 values) in Q4_1 and in F16
/// on the best table and a 2-thread pool, for one token (decode) and 64 (a prefill batch), with
/// the matrix packed (Q4_1) or interleaved (F16) when the table reads that layout, as a session
/// would. A `Matrix` only comes from a mapped GGUF, so the weights come from a synthetic model
/// with these widths. Throughput counts the matrix once per product, so at 64 tokens it shows
/// how much the batch reuses each byte it loads.
fn matmuls(c: &mut Criterion) {
    let k = kernels::best();
    let pool = ThreadPool::new(2);
    for dtype in [DType::Q4_1, DType::F16] {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("bench.gguf");
        write_synth(
            &path,
            &SynthConfig {
                dim: 576,
                ffn_dim: 1536,
                n_layers: 1,
                n_heads: 9,
                n_kv_heads: 3,
                ctx_len: 64,
                dtype,
                ..SynthConfig::default()
            },
        )
        .expect("writing the synthetic model");
        let l = load(&path).expect("loading the synthetic model");
        let w = &l.model.weights.layers[0].w_gate;
        assert_eq!((w.rows, w.cols, w.dtype), (1536, 576, dtype));
        if let Some(pk) = k.packed {
            w.pack(pk.types);
        }
        let mut g = c.benchmark_group(format!("matmul_{dtype}_1536x576/{}", k.isa));
        g.throughput(Throughput::Bytes(w.n_bytes() as u64));
        for n in [1, 64] {
            let x = random(n * w.cols, 11);
            let mut scratch = Q8Scratch::default();
            let input = Input::new(&pool, k, &x, w.cols, &[w], &mut scratch);
            let mut out = vec![0.0; n * w.rows];
            g.bench_function(BenchmarkId::new("2_threads_tokens", n), |b| {
                b.iter(|| matmul(&pool, k, w, black_box(&input), &mut out))
            });
        }
        g.finish();
    }
}

/// Short runs by default: the kernels take micro- to milliseconds, so a second of samples per
/// benchmark is already tight, and the whole suite stays near a minute and a half.
fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = dots, tiles, elementwise, matmuls
}
criterion_main!(benches);
