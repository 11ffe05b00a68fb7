//! Block encodings: turning f32 rows into GGML blocks and back, and quantizing activations.
//!
//! The rounding rules are GGML's reference ones (the `*_ref` quantizers), so a file we quantize
//! holds the same kind of blocks llama.cpp would write and both engines read them alike.

use crate::dtype::{DType, QK};
use half::f16;

/// A row of activations quantized to 8 bits in blocks of [`QK`], kept as separate arrays so
/// SIMD kernels can load each without striding.
#[derive(Clone, Debug, Default)]
pub struct Q8Row {
    /// `QK` signed values per block.
    pub qs: Vec<i8>,
    /// Per-block scale: value = d * q.
    pub d: Vec<f32>,
    /// Per-block `d * sum(q)`, which Q4_1's minimum term needs.
    pub s: Vec<f32>,
}

/// A borrowed view of some blocks of a [`Q8Row`] (or of a batch of them).
#[derive(Clone, Copy, Debug)]
pub struct Q8Blocks<'a> {
    pub qs: &'a [i8],
    pub d: &'a [f32],
    pub s: &'a [f32],
}

impl Q8Row {
    pub fn with_len(n: usize) -> Self {
        let mut row = Q8Row::default();
        row.resize(n);
        row
    }

    pub fn resize(&mut self, n: usize) {
        assert!(
            n.is_multiple_of(QK),
            "activation length {n} is not a multiple of {QK}"
        );
        self.qs.resize(n, 0);
        self.d.resize(n / QK, 0.0);
        self.s.resize(n / QK, 0.0);
    }

    /// Quantizes `x` into this row (which must have the same length).
    pub fn quantize_from(&mut self, x: &[f32]) {
        self.resize(x.len());
        quantize_q8(x, &mut self.qs, &mut self.d, &mut self.s);
    }

    pub fn blocks(&self) -> Q8Blocks<'_> {
        Q8Blocks {
            qs: &self.qs,
            d: &self.d,
            s: &self.s,
        }
    }
}

/// Quantizes activations block by block: d = max|x| / 127, q = round(x / d). Runs the AVX2 or
/// NEON version where the CPU has it ([`super::quantize_q8_simd`]), which gives the same bits.
pub fn quantize_q8(x: &[f32], qs: &mut [i8], d: &mut [f32], s: &mut [f32]) {
    assert!(
        x.len().is_multiple_of(QK) && qs.len() == x.len() && d.len() * QK == x.len(),
        "quantize_q8: {} values into {} quants and {} scales",
        x.len(),
        qs.len(),
        d.len()
    );
    assert_eq!(s.len(), d.len(), "quantize_q8: one sum per scale");
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 was just detected; the slices were checked above.
        return unsafe { super::quantize_q8_simd::avx2(x, qs, d, s) };
    }
    #[cfg(target_arch = "aarch64")]
    {
        // SAFETY: every aarch64 CPU has NEON; the slices were checked above.
        return unsafe { super::quantize_q8_simd::neon(x, qs, d, s) };
    }
    #[allow(unreachable_code)]
    quantize_q8_portable(x, qs, d, s)
}

/// [`quantize_q8`] in plain Rust: the definition the SIMD versions are tested against.
pub(crate) fn quantize_q8_portable(x: &[f32], qs: &mut [i8], d: &mut [f32], s: &mut [f32]) {
    for (b, xb) in x.chunks_exact(QK).enumerate() {
        let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let scale = amax / 127.0;
        let inv = if scale != 0.0 { 1.0 / scale } else { 0.0 };
        let mut sum = 0i32;
        for (q, &v) in qs[b * QK..(b + 1) * QK].iter_mut().zip(xb) {
            let r = round_half_away(v * inv);
            *q = r as i8;
            sum += r;
        }
        d[b] = scale;
        s[b] = scale * sum as f32;
    }
}

/// `x.round() as i32` for |x| < 2^23, written so that it compiles to vector instructions:
/// `f32::round` is a libm call on baseline x86-64 and takes as long as the rest of
/// quantization. Adding the largest float below one half and truncating rounds halves away
/// from zero, because the sum of a half and that constant rounds up to the next integer.
#[inline(always)]
fn round_half_away(x: f32) -> i32 {
    (x + 0.499_999_97f32.copysign(x)) as i32
}

/// Encodes `x` (a whole number of blocks) as `ty` into `out`, which must be `ty.bytes_for(x.len())` long.
pub fn quantize_row(ty: DType, x: &[f32], out: &mut [u8]) {
    assert_eq!(
        Some(out.len()),
        ty.bytes_for(x.len()),
        "output size mismatch for {ty}"
    );
    match ty {
        DType::F32 => {
            for (o, v) in out.chunks_exact_mut(4).zip(x) {
                o.copy_from_slice(&v.to_le_bytes());
            }
        }
        DType::F16 => {
            for (o, v) in out.chunks_exact_mut(2).zip(x) {
                o.copy_from_slice(&f16::from_f32(*v).to_le_bytes());
            }
        }
        DType::Q8_0 => {
            for (o, xb) in out
                .chunks_exact_mut(ty.block_bytes())
                .zip(x.chunks_exact(QK))
            {
                let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                let d = amax / 127.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                o[..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
                for (q, v) in o[2..].iter_mut().zip(xb) {
                    *q = ((v * id).round() as i8) as u8;
                }
            }
        }
        DType::Q4_0 => {
            for (o, xb) in out
                .chunks_exact_mut(ty.block_bytes())
                .zip(x.chunks_exact(QK))
            {
                // The signed value of largest magnitude maps to -8, so the full range [-8, 7] is used.
                let max = xb
                    .iter()
                    .fold(0.0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
                let d = max / -8.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                o[..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
                let nib = |v: f32| ((v * id + 8.5) as i32).clamp(0, 15) as u8;
                for j in 0..QK / 2 {
                    o[2 + j] = nib(xb[j]) | (nib(xb[j + QK / 2]) << 4);
                }
            }
        }
        DType::Q4_1 => {
            for (o, xb) in out
                .chunks_exact_mut(ty.block_bytes())
                .zip(x.chunks_exact(QK))
            {
                let min = xb.iter().copied().fold(f32::INFINITY, f32::min);
                let max = xb.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let d = (max - min) / 15.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                o[..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
                o[2..4].copy_from_slice(&f16::from_f32(min).to_le_bytes());
                let nib = |v: f32| (((v - min) * id + 0.5) as i32).clamp(0, 15) as u8;
                for j in 0..QK / 2 {
                    o[4 + j] = nib(xb[j]) | (nib(xb[j + QK / 2]) << 4);
                }
            }
        }
        DType::Q5_0 => out.copy_from_slice(&crate::kquants_quantize::quantize_row_q5_0(x)),
        DType::Q5_1 => out.copy_from_slice(&crate::kquants_quantize::quantize_row_q5_1(x)),
        // Callers check `DType::can_quantize` first and report this as an error.
        DType::Q4_K | DType::Q5_K | DType::Q6_K => panic!("no quantizer for {ty} on its own"),
    }
}

/// Decodes a row of `ty` (a whole number of blocks) into f32.
pub fn dequantize_row(ty: DType, data: &[u8], out: &mut [f32]) {
    assert_eq!(
        Some(data.len()),
        ty.bytes_for(out.len()),
        "input size mismatch for {ty}"
    );
    let half_at = |b: &[u8], i: usize| f16::from_le_bytes([b[i], b[i + 1]]).to_f32();
    match ty {
        DType::F32 => {
            for (o, b) in out.iter_mut().zip(data.chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        DType::F16 => {
            for (o, b) in out.iter_mut().zip(data.chunks_exact(2)) {
                *o = f16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        DType::Q8_0 => {
            for (ob, b) in out
                .chunks_exact_mut(QK)
                .zip(data.chunks_exact(ty.block_bytes()))
            {
                let d = half_at(b, 0);
                for (o, &q) in ob.iter_mut().zip(&b[2..]) {
                    *o = d * (q as i8) as f32;
                }
            }
        }
        DType::Q4_0 => {
            for (ob, b) in out
                .chunks_exact_mut(QK)
                .zip(data.chunks_exact(ty.block_bytes()))
            {
                let d = half_at(b, 0);
                for j in 0..QK / 2 {
                    ob[j] = d * ((b[2 + j] & 0x0F) as i32 - 8) as f32;
                    ob[j + QK / 2] = d * ((b[2 + j] >> 4) as i32 - 8) as f32;
                }
            }
        }
        DType::Q4_1 => {
            for (ob, b) in out
                .chunks_exact_mut(QK)
                .zip(data.chunks_exact(ty.block_bytes()))
            {
                let d = half_at(b, 0);
                let m = half_at(b, 2);
                for j in 0..QK / 2 {
                    ob[j] = d * (b[4 + j] & 0x0F) as f32 + m;
                    ob[j + QK / 2] = d * (b[4 + j] >> 4) as f32 + m;
                }
            }
        }
        DType::Q5_0 => super::q5::dequantize_q5_0(data, out),
        DType::Q5_1 => super::q5::dequantize_q5_1(data, out),
        DType::Q4_K => {
            for (ob, b) in out
                .chunks_exact_mut(ty.block_elems())
                .zip(data.chunks_exact(ty.block_bytes()))
            {
                super::kquants::dequantize_q4_k(b, ob);
            }
        }
        DType::Q5_K => {
            for (ob, b) in out
                .chunks_exact_mut(ty.block_elems())
                .zip(data.chunks_exact(ty.block_bytes()))
            {
                super::kquants::dequantize_q5_k(b, ob);
            }
        }
        DType::Q6_K => {
            for (ob, b) in out
                .chunks_exact_mut(ty.block_elems())
                .zip(data.chunks_exact(ty.block_bytes()))
            {
                super::kquants::dequantize_q6_k(b, ob);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 13.0)
            .collect()
    }

    #[test]
    fn round_trip_error_is_within_half_a_step() {
        let x = ramp(128);
        for ty in DType::ALL.into_iter().chain(DType::FIVE_BIT) {
            let mut enc = vec![0u8; ty.bytes_for(x.len()).unwrap()];
            quantize_row(ty, &x, &mut enc);
            let mut dec = vec![0f32; x.len()];
            dequantize_row(ty, &enc, &mut dec);
            let range = 100.0 / 13.0;
            let step = match ty {
                DType::F32 => 0.0,
                DType::F16 => 1e-2,
                DType::Q8_0 => range / 127.0,
                DType::Q4_0 | DType::Q4_1 => range / 7.0,
                DType::Q5_0 | DType::Q5_1 => range / 15.0,
                DType::Q4_K | DType::Q5_K | DType::Q6_K => unreachable!("not written on their own"),
            };
            for (a, b) in x.iter().zip(&dec) {
                assert!((a - b).abs() <= step * 0.51 + 1e-6, "{ty}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn round_half_away_matches_f32_round() {
        let mut cases = vec![
            0.0, -0.0, 0.5, -0.5, 1.5, 2.5, -2.5, 0.49999997, 127.0, -127.0,
        ];
        cases.extend([126.5f32, 127.49999, -126.5, 1e-30, 8388607.0]);
        let mut v = 1.0f32;
        for i in 0..100_000 {
            v = (v * 1.618_034 + 0.37) % 255.0 - if i % 2 == 0 { 127.5 } else { 0.0 };
            cases.push(v);
            cases.push(v.trunc() + 0.5);
        }
        for x in cases {
            assert_eq!(round_half_away(x), x.round() as i32, "{x}");
        }
    }

    #[test]
    fn q8_activation_sums_match_values() {
        let x = ramp(64);
        let mut row = Q8Row::default();
        row.quantize_from(&x);
        for b in 0..2 {
            let sum: i32 = row.qs[b * QK..(b + 1) * QK].iter().map(|&q| q as i32).sum();
            assert_eq!(row.s[b], row.d[b] * sum as f32);
        }
    }
}
