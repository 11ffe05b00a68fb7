//! Helpers shared by the per-ISA kernel unit tests, which see every variant of their table
//! (the integration tests only see the one `kernels()` picks).

use super::blocks::Q8Row;
use super::{scalar, Kernels};
use crate::dtype::{DType, QK};
use half::f16;

/// xorshift64*: enough randomness to cover the kernels without another dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [-1, 1).
    pub fn f32(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

/// Random bytes with finite scales (and minimum) at most 0.1 in magnitude.
pub fn random_blocks(rng: &mut Rng, ty: DType, n: usize) -> Vec<u8> {
    let mut w = vec![0u8; ty.bytes_for(n).unwrap()];
    for blk in w.chunks_exact_mut(ty.block_bytes()) {
        blk.iter_mut().for_each(|b| *b = rng.next() as u8);
        let halves = if matches!(ty, DType::Q4_1 | DType::Q5_1) {
            2
        } else {
            1
        };
        for at in (0..halves).map(|h| 2 * h) {
            let v = f16::from_f32(rng.f32() * 0.1);
            blk[at..at + 2].copy_from_slice(&v.to_le_bytes());
        }
    }
    w
}

/// Sum of the magnitudes of the terms the scalar reference adds: the error bound for a
/// different summation order is a multiple of this.
pub fn magnitude(ty: DType, w: &[u8], a: &Q8Row) -> f32 {
    let half_at = |b: &[u8], i: usize| f16::from_le_bytes([b[i], b[i + 1]]).to_f32();
    let mut m = 0.0f32;
    for (i, blk) in w.chunks_exact(ty.block_bytes()).enumerate() {
        let qa = &a.qs[i * QK..(i + 1) * QK];
        let qw: Vec<i32> = match ty {
            DType::Q8_0 => blk[2..].iter().map(|&b| b as i8 as i32).collect(),
            DType::Q5_0 => super::q5::quants(blk, super::q5::Q5_0_QH)
                .iter()
                .map(|&q| q as i32 - 16)
                .collect(),
            DType::Q5_1 => super::q5::quants(blk, super::q5::Q5_1_QH)
                .iter()
                .map(|&q| q as i32)
                .collect(),
            _ => {
                let (off, bias) = if ty == DType::Q4_0 { (2, 8) } else { (4, 0) };
                let nib = &blk[off..off + QK / 2];
                let lo = nib.iter().map(|&b| (b & 15) as i32 - bias);
                lo.chain(nib.iter().map(|&b| (b >> 4) as i32 - bias))
                    .collect()
            }
        };
        let iabs: i32 = qw.iter().zip(qa).map(|(w, &q)| (w * q as i32).abs()).sum();
        m += (half_at(blk, 0) * a.d[i]).abs() * iabs as f32;
        if matches!(ty, DType::Q4_1 | DType::Q5_1) {
            m += (half_at(blk, 2) * a.s[i]).abs();
        }
    }
    m
}

/// Every quantized dot product of every table equals the scalar reference within the
/// summation-order bound, on 1..=20, 33 and 64 blocks.
pub fn assert_quant_tables_match_scalar(tables: &[(&str, &Kernels)]) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for (name, k) in tables {
        eprintln!("testing {name}");
        for nb in (1..=20).chain([33, 64]) {
            let n = nb * QK;
            let x: Vec<f32> = (0..n).map(|_| rng.f32() * 3.0).collect();
            let mut q8 = Q8Row::default();
            q8.quantize_from(&x);
            let ab = q8.blocks();
            for ty in [
                DType::Q8_0,
                DType::Q4_0,
                DType::Q4_1,
                DType::Q5_0,
                DType::Q5_1,
            ] {
                let w = random_blocks(&mut rng, ty, n);
                let (got, want) = match ty {
                    DType::Q8_0 => ((k.dot_q8_0)(&w, ab), scalar::dot_q8_0(&w, ab)),
                    DType::Q4_0 => ((k.dot_q4_0)(&w, ab), scalar::dot_q4_0(&w, ab)),
                    DType::Q5_0 => ((k.dot_q5_0)(&w, ab), scalar::dot_q5_0(&w, ab)),
                    DType::Q5_1 => ((k.dot_q5_1)(&w, ab), scalar::dot_q5_1(&w, ab)),
                    _ => ((k.dot_q4_1)(&w, ab), scalar::dot_q4_1(&w, ab)),
                };
                let tol = (2 * nb + 16) as f32 * f32::EPSILON * magnitude(ty, &w, &q8);
                assert!(
                    (got - want).abs() <= tol,
                    "{name} {ty} n={n}: {got} vs scalar {want}"
                );
            }
        }
    }
}
