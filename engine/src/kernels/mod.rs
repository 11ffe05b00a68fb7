//! Dot-product kernels per weight type, one table per instruction set, picked at run time.
//!
//! A table is only handed out after the CPU has been checked for every feature its kernels use,
//! so an older core falls back to an older table instead of meeting an illegal instruction.

pub mod attention;
pub mod blocks;
pub mod convert;
pub mod interleaved;
pub mod kquants;
pub mod packed;
pub mod q5;
mod quantize_q8_simd;
pub mod scalar;
#[cfg(test)]
mod test_support;

#[cfg(target_arch = "x86_64")]
mod attention_avx2;
#[cfg(target_arch = "x86_64")]
mod attention_avx512;
#[cfg(target_arch = "aarch64")]
mod attention_neon;
#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx2_interleaved;
#[cfg(target_arch = "x86_64")]
mod avx2_packed;
#[cfg(target_arch = "x86_64")]
mod avx2_packed_q5;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod avx512_interleaved;
#[cfg(target_arch = "x86_64")]
mod avx512_packed;
#[cfg(target_arch = "aarch64")]
mod neon;
#[cfg(target_arch = "aarch64")]
mod neon_interleaved;
#[cfg(target_arch = "aarch64")]
mod neon_packed;

use crate::dtype::DType;
use blocks::Q8Blocks;
use half::f16;
use std::fmt;

/// The instruction set a kernel table is written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    Scalar,
    Avx2,
    Avx512,
    Neon,
}

impl Isa {
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
            Isa::Neon => "neon",
        }
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One row of weights dotted with one activation row. Quantized weights meet activations that
/// were quantized once per matrix-vector product ([`blocks::Q8Row`]); float weights meet f32.
pub struct Kernels {
    pub isa: Isa,
    /// The table's own name: the ISA, plus the extension a variant adds (`avx2+vnni`,
    /// `avx512+vnni`, `neon+dotprod`). `--kernels` takes either: a name picks that table, an
    /// ISA the best of its tables.
    pub name: &'static str,
    pub dot_f32: fn(&[f32], &[f32]) -> f32,
    pub dot_f16: fn(&[f16], &[f32]) -> f32,
    pub dot_q8_0: fn(&[u8], Q8Blocks<'_>) -> f32,
    pub dot_q4_0: fn(&[u8], Q8Blocks<'_>) -> f32,
    pub dot_q4_1: fn(&[u8], Q8Blocks<'_>) -> f32,
    pub dot_q5_0: fn(&[u8], Q8Blocks<'_>) -> f32,
    pub dot_q5_1: fn(&[u8], Q8Blocks<'_>) -> f32,
    pub dot_q4_k: fn(&[u8], Q8Blocks<'_>) -> f32,
    pub dot_q5_k: fn(&[u8], Q8Blocks<'_>) -> f32,
    pub dot_q6_k: fn(&[u8], Q8Blocks<'_>) -> f32,
    /// `y += a * x`, attention's weighted sum of value rows.
    pub axpy: fn(f32, &[f32], &mut [f32]),
    /// Query rows over one key/value head of the cache, tiled with an online softmax
    /// ([`attention`]).
    pub attend: attention::Attend,
    /// Kernels for the packed layout of Q8_0, Q4_0, Q4_1, Q5_0 and Q5_1 rows ([`packed`]),
    /// when this ISA has them; a session packs those matrices only then.
    pub packed: Option<&'static PackedKernels>,
    /// K-quant rows (Q4_K, Q5_K, Q6_K) against 1 to [`kquants::tile::MAX_TILE`] activation
    /// rows: `out[t] = dot(row, acts[t])`, each super-block unpacked once per call.
    pub dot_k_tile: fn(DType, &[u8], &[Q8Blocks<'_>], &mut [f32]),
}

/// Most activation rows a float tile call takes.
pub const FLOAT_TILE: usize = 8;

/// `out[r * T + t] = dot(rows[r], xs[t])` for float weight rows of element type `W`.
pub type FloatTile<W> = fn(&[&[W]], &[&[f32]], &mut [f32]);

/// Dot products of packed weight rows with 1 to [`packed::MAX_TILE`] activation rows quantized
/// by [`packed::pack_activations`], and of float rows in their tiles.
pub struct PackedKernels {
    /// The quantized types `dot` reads. A session packs matrices of these types only; the others
    /// run as stored.
    pub types: &'static [DType],
    /// `out[t * stride + r] = dot(row r, acts[t])` for every one of `rows` whole rows lying back
    /// to back in the bytes given. The row loop runs inside the kernel, compiled with its
    /// features: one call per row cost an eighth of an AVX2 prefill in call and dispatch.
    /// Unsafe: `out` must be valid (and not otherwise accessed) at every such element;
    /// [`PackedKernels::dot_row`] is the safe form for one row.
    pub dot: PackedDot,
    /// `out[r * T + t] = dot(rows[r], xs[t])` for one or two f16 rows (as bits) and `T` (1 to
    /// [`FLOAT_TILE`]) f32 activation rows.
    pub dot_f16: FloatTile<u16>,
    /// The same for f32 rows.
    pub dot_f32: FloatTile<f32>,
    /// F16 and F32 matrices in the row-interleaved layout ([`interleaved`]):
    /// `out[t * stride + j] = dot(row j, xs[t])` for every row of the blocks given, 1 to
    /// [`INTERLEAVED_TILE`] tokens. Unsafe: `out` must be valid (and not otherwise accessed)
    /// at every such element.
    pub dot_interleaved: InterleavedTile,
}

/// See [`PackedKernels::dot`]: `(type, rows' bytes, rows, activation rows, out, stride)`.
pub type PackedDot = unsafe fn(DType, &[u8], usize, &[Q8Blocks<'_>], *mut f32, usize);

impl PackedKernels {
    /// `out[t] = dot(row, acts[t])` for one packed row.
    pub fn dot_row(&self, ty: DType, row: &[u8], acts: &[Q8Blocks<'_>], out: &mut [f32]) {
        assert_eq!(acts.len(), out.len(), "one output per activation row");
        // SAFETY: with one row and stride 1 the kernel writes out[0..acts.len()].
        unsafe { (self.dot)(ty, row, 1, acts, out.as_mut_ptr(), 1) }
    }
}

/// Most activation rows an interleaved call takes.
pub const INTERLEAVED_TILE: usize = 12;

/// See [`PackedKernels::dot_interleaved`]: `(type, row blocks, cols, xs, out, stride)`.
pub type InterleavedTile = unsafe fn(DType, &[u8], usize, &[&[f32]], *mut f32, usize);

impl fmt::Debug for Kernels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Kernels({})", self.name)
    }
}

/// Every kernel table this CPU can run, best first; the scalar table is always last.
pub fn available() -> Vec<&'static Kernels> {
    let mut out: Vec<&'static Kernels> = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        out.extend(avx512::kernels());
        out.extend(avx2::kernels());
    }
    #[cfg(target_arch = "aarch64")]
    {
        out.extend(neon::kernels());
    }
    out.push(&scalar::KERNELS);
    out
}

/// [`available`] plus the variants it passes over for a better one of the same ISA (plain
/// AVX2 on an AVX-VNNI CPU), so that tests iterating it cover every table this CPU can run.
pub fn variants() -> Vec<&'static Kernels> {
    // Only x86-64 has a passed-over table so far; elsewhere `out` is never changed.
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
    let mut out = available();
    #[cfg(target_arch = "x86_64")]
    {
        let scalar = out.pop();
        out.extend(avx2::passed_over());
        out.extend(scalar);
    }
    out
}

/// The fastest table this CPU can run.
pub fn best() -> &'static Kernels {
    available()[0]
}

/// The table named `name` exactly (`avx2` is plain AVX2 even on a CPU with AVX-VNNI, as a
/// Zen 3 runs it; `avx2+vnni` the variant), else the best table of the ISA `name`; the best
/// table for `None`. The environment variable `MELTBENCH_KERNELS` is consulted by the CLI, not
/// here.
pub fn select(name: Option<&str>) -> Result<&'static Kernels, String> {
    let Some(n) = name else {
        return Ok(best());
    };
    let all = variants();
    all.iter()
        .find(|k| k.name == n)
        .or_else(|| all.iter().find(|k| k.isa.name() == n))
        .copied()
        .ok_or_else(|| {
            let names: Vec<_> = all.iter().map(|k| k.name).collect();
            format!(
                "kernels '{n}' are not available on this CPU; available: {}",
                names.join(", ")
            )
        })
}
