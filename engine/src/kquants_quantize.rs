//! Quantizers for the types llama.cpp's Q4_K_M and Q5_K_M files mix in besides Q8_0: Q4_K,
//! Q5_K, Q6_K and (the fallbacks for rows that are not a multiple of 256) Q5_0 and Q5_1.
//!
//! They reproduce ggml's reference quantizers (`quantize_row_*_ref` in ggml-quants.c, the ones
//! `llama-quantize` uses when no importance matrix is given) bit for bit, because the perplexity
//! fixture identifies a llama.cpp-made file by its SHA-256 and we must be able to re-create it.
//! That is why the code keeps ggml's f32 evaluation order (`a*b*c` is `(a*b)*c`, sums run left
//! to right, no fused multiply-add: ggml-base is built for baseline x86-64, which has no FMA),
//! its comparisons (`<`/`>` where it uses them, so ties and NaN go the same way) and its integer
//! truncations, even where a cleaner formulation would look equivalent.

use half::f16;

/// Elements per K-quant super-block.
pub const QK_K: usize = 256;
/// GGML type id of Q5_0 (32 elements, 22 bytes per block).
pub const GGML_TYPE_Q5_0: u32 = 6;
/// GGML type id of Q5_1 (32 elements, 24 bytes per block).
pub const GGML_TYPE_Q5_1: u32 = 7;
/// GGML type id of Q4_K.
pub const GGML_TYPE_Q4_K: u32 = 12;
/// GGML type id of Q5_K.
pub const GGML_TYPE_Q5_K: u32 = 13;
/// GGML type id of Q6_K.
pub const GGML_TYPE_Q6_K: u32 = 14;
pub const Q4_K_BLOCK_BYTES: usize = 144;
pub const Q6_K_BLOCK_BYTES: usize = 210;
pub const Q5_K_BLOCK_BYTES: usize = 176;
pub const Q5_0_BLOCK_BYTES: usize = 22;
pub const Q5_1_BLOCK_BYTES: usize = 24;
pub const QK5_0: usize = 32;

/// ggml's `GROUP_MAX_EPS`: groups whose largest magnitude is below it count as all zero.
const GROUP_MAX_EPS: f32 = 1e-15;

/// Round to nearest, ties to even, via the float trick ggml uses: adding 1.5 * 2^23 leaves the
/// rounded integer in the low mantissa bits. Valid for |x| <= 2^22 - 1, as in ggml.
#[inline]
fn nearest_int(x: f32) -> i32 {
    let v = x + 12_582_912.0;
    (v.to_bits() as i32 & 0x007f_ffff) - 0x0040_0000
}

/// ggml's `GGML_FP32_TO_FP16` is round-to-nearest-even, which is what `half` does.
#[inline]
fn to_f16_bytes(x: f32) -> [u8; 2] {
    f16::from_f32(x).to_le_bytes()
}

#[inline]
fn f16_round_trip(x: f32) -> f32 {
    f16::from_f32(x).to_f32()
}

/// Asymmetric (scale + min) fit of `x` to levels 0..=nmax with weighted error, searching
/// `nstep + 1` candidate scales around the min/max one. Returns (scale, -min). ggml's
/// `make_qkx2_quants`.
#[allow(clippy::too_many_arguments)]
fn make_qkx2_quants(
    nmax: i32,
    x: &[f32],
    weights: &[f32],
    l_out: &mut [u8],
    laux: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
) -> (f32, f32) {
    let n = x.len();
    let mut min = x[0];
    let mut max = x[0];
    let sum_w_0 = weights[0];
    let mut sum_w = sum_w_0;
    let mut sum_x = sum_w_0 * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        let w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l_out[..n].fill(0);
        return (0.0, -min);
    }
    let nmax_f = nmax as f32;
    let mut iscale = nmax_f / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0.0f32;
    for i in 0..n {
        let l = nearest_int(iscale * (x[i] - min));
        l_out[i] = l.clamp(0, nmax) as u8;
        let diff = scale * l_out[i] as f32 + min - x[i];
        let diff = diff * diff;
        best_error += weights[i] * diff;
    }
    if nstep < 1 {
        return (scale, -min);
    }
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmax_f) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for i in 0..n {
            let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            laux[i] = l as u8;
            let w = weights[i];
            let lf = l as f32;
            sum_l += w * lf;
            sum_l2 += w * lf * lf;
            sum_xl += w * lf * x[i];
        }
        let d = sum_w * sum_l2 - sum_l * sum_l;
        if d > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / d;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / d;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0.0f32;
            for i in 0..n {
                let diff = this_scale * laux[i] as f32 + this_min - x[i];
                let diff = diff * diff;
                cur_error += weights[i] * diff;
            }
            if cur_error < best_error {
                l_out[..n].copy_from_slice(&laux[..n]);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// Symmetric fit of `x` to levels -nmax..nmax-1 (stored offset by nmax), weighted by x², trying
/// 18 scales around the max-magnitude one. ggml's `make_qx_quants` with `rmse_type = 1` and no
/// importance weights, the only way Q6_K calls it.
fn make_qx_quants_rmse1(nmax: i32, x: &[f32], l_out: &mut [i8]) -> f32 {
    let n = x.len();
    let mut max = 0.0f32;
    let mut amax = 0.0f32;
    for &v in x {
        let ax = v.abs();
        if ax > amax {
            amax = ax;
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        l_out[..n].fill(0);
        return 0.0;
    }
    let nmax_f = nmax as f32;
    let mut iscale = -nmax_f / max;
    let mut sumlx = 0.0f32;
    let mut suml2 = 0.0f32;
    for i in 0..n {
        let l = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
        l_out[i] = (l + nmax) as i8;
        let w = x[i] * x[i];
        let lf = l as f32;
        sumlx += w * x[i] * lf;
        suml2 += w * lf * lf;
    }
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in -9i32..=9 {
        if is == 0 {
            continue;
        }
        iscale = -(nmax_f + 0.1 * is as f32) / max;
        sumlx = 0.0;
        suml2 = 0.0;
        for &v in x {
            let l = nearest_int(iscale * v).clamp(-nmax, nmax - 1);
            let w = v * v;
            let lf = l as f32;
            sumlx += w * v * lf;
            suml2 += w * lf * lf;
        }
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for i in 0..n {
                let l = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
                l_out[i] = (nmax + l) as i8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// Quantizes a row (a multiple of 256 values) to Q4_K: per 256, an f16 super-scale and
/// super-min, eight 6-bit sub-block scales and mins packed into 12 bytes, then 4-bit levels.
pub fn quantize_row_q4_k(x: &[f32]) -> Vec<u8> {
    assert!(
        x.len().is_multiple_of(QK_K),
        "Q4_K rows are whole 256-blocks"
    );
    let mut out = vec![0u8; x.len() / QK_K * Q4_K_BLOCK_BYTES];
    let mut l = [0u8; QK_K];
    let mut laux = [0u8; 32];
    let mut weights = [0f32; 32];
    for (xb, y) in x
        .chunks_exact(QK_K)
        .zip(out.chunks_exact_mut(Q4_K_BLOCK_BYTES))
    {
        let mut scales = [0f32; 8];
        let mut mins = [0f32; 8];
        let mut max_scale = 0.0f32;
        let mut max_min = 0.0f32;
        for j in 0..8 {
            let xs = &xb[32 * j..32 * j + 32];
            let mut sum_x2 = 0.0f32;
            for &v in xs {
                sum_x2 += v * v;
            }
            let av_x = (sum_x2 / 32.0).sqrt();
            for (w, &v) in weights.iter_mut().zip(xs) {
                *w = av_x + v.abs();
            }
            let (s, m) = make_qkx2_quants(
                15,
                xs,
                &weights,
                &mut l[32 * j..32 * j + 32],
                &mut laux,
                -1.0,
                0.1,
                20,
            );
            scales[j] = s;
            mins[j] = m;
            if s > max_scale {
                max_scale = s;
            }
            if m > max_min {
                max_min = m;
            }
        }
        let inv_scale = if max_scale > 0.0 {
            63.0 / max_scale
        } else {
            0.0
        };
        let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
        let (dh, rest) = y.split_at_mut(4);
        let (sc, qs) = rest.split_at_mut(12);
        for j in 0..8 {
            // ggml stores the int into a uint8_t before clamping, so truncate the same way.
            let ls = (nearest_int(inv_scale * scales[j]) as u8).min(63);
            let lm = (nearest_int(inv_min * mins[j]) as u8).min(63);
            if j < 4 {
                sc[j] = ls;
                sc[j + 4] = lm;
            } else {
                sc[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4);
                sc[j - 4] |= (ls >> 4) << 6;
                sc[j] |= (lm >> 4) << 6;
            }
        }
        dh[..2].copy_from_slice(&to_f16_bytes(max_scale / 63.0));
        dh[2..].copy_from_slice(&to_f16_bytes(max_min / 63.0));
        // Levels are recomputed from the rounded scales actually stored, as ggml does.
        let d_all = f16_round_trip(max_scale / 63.0);
        let dmin_all = f16_round_trip(max_min / 63.0);
        for j in 0..8 {
            let (s, m) = scale_min_k4(j, sc);
            let d = d_all * s as f32;
            if d == 0.0 {
                continue;
            }
            let dm = dmin_all * m as f32;
            for ii in 0..32 {
                let q = nearest_int((xb[32 * j + ii] + dm) / d).clamp(0, 15);
                l[32 * j + ii] = q as u8;
            }
        }
        for (c, q) in qs.chunks_exact_mut(32).enumerate() {
            let j = 64 * c;
            for i in 0..32 {
                q[i] = l[j + i] | (l[j + i + 32] << 4);
            }
        }
    }
    out
}

/// Unpacks sub-block `j`'s 6-bit scale and min from Q4_K's 12-byte table.
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Quantizes a row (a multiple of 256 values) to Q6_K: per 256, 6-bit levels split into low
/// nibbles and high 2-bit pairs, sixteen signed 8-bit sub-block scales and an f16 super-scale.
pub fn quantize_row_q6_k(x: &[f32]) -> Vec<u8> {
    assert!(
        x.len().is_multiple_of(QK_K),
        "Q6_K rows are whole 256-blocks"
    );
    let mut out = vec![0u8; x.len() / QK_K * Q6_K_BLOCK_BYTES];
    let mut l = [0i8; QK_K];
    for (xb, y) in x
        .chunks_exact(QK_K)
        .zip(out.chunks_exact_mut(Q6_K_BLOCK_BYTES))
    {
        let mut scales = [0f32; 16];
        let mut max_scale = 0.0f32;
        let mut max_abs_scale = 0.0f32;
        for ib in 0..16 {
            let s = make_qx_quants_rmse1(32, &xb[16 * ib..16 * ib + 16], &mut l[16 * ib..]);
            scales[ib] = s;
            let a = s.abs();
            if a > max_abs_scale {
                max_abs_scale = a;
                max_scale = s;
            }
        }
        // Layout: ql[128], qh[64], scales[16], d (f16).
        let (ql, rest) = y.split_at_mut(128);
        let (qh, rest) = rest.split_at_mut(64);
        let (sc, d_bytes) = rest.split_at_mut(16);
        if max_abs_scale < GROUP_MAX_EPS {
            // The block is already zeroed, and f16 0.0 is all-zero bytes.
            continue;
        }
        let iscale = -128.0f32 / max_scale;
        d_bytes.copy_from_slice(&to_f16_bytes(1.0 / iscale));
        for ib in 0..16 {
            sc[ib] = nearest_int(iscale * scales[ib]).min(127) as i8 as u8;
        }
        let d_all = f16_round_trip(1.0 / iscale);
        for j in 0..16 {
            let d = d_all * (sc[j] as i8) as f32;
            if d == 0.0 {
                continue;
            }
            for ii in 0..16 {
                let q = nearest_int(xb[16 * j + ii] / d).clamp(-32, 31);
                l[16 * j + ii] = (q + 32) as i8;
            }
        }
        for half in 0..2 {
            let j = 128 * half;
            let ql = &mut ql[64 * half..64 * half + 64];
            let qh = &mut qh[32 * half..32 * half + 32];
            for i in 0..32 {
                let lv = |k: usize| l[j + i + k] as u8;
                ql[i] = (lv(0) & 0xF) | ((lv(64) & 0xF) << 4);
                ql[i + 32] = (lv(32) & 0xF) | ((lv(96) & 0xF) << 4);
                qh[i] = (lv(0) >> 4)
                    | ((lv(32) >> 4) << 2)
                    | ((lv(64) >> 4) << 4)
                    | ((lv(96) >> 4) << 6);
            }
        }
    }
    out
}

/// Quantizes a row (a multiple of 32 values) to Q5_0: per 32, an f16 scale, 32 high bits and
/// 16 bytes of low nibbles. The value of largest magnitude maps to -16.
pub fn quantize_row_q5_0(x: &[f32]) -> Vec<u8> {
    assert!(
        x.len().is_multiple_of(QK5_0),
        "Q5_0 rows are whole 32-blocks"
    );
    let mut out = vec![0u8; x.len() / QK5_0 * Q5_0_BLOCK_BYTES];
    for (xb, y) in x
        .chunks_exact(QK5_0)
        .zip(out.chunks_exact_mut(Q5_0_BLOCK_BYTES))
    {
        let mut amax = 0.0f32;
        let mut max = 0.0f32;
        for &v in xb {
            if amax < v.abs() {
                amax = v.abs();
                max = v;
            }
        }
        let d = max / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        y[..2].copy_from_slice(&to_f16_bytes(d));
        let mut qh = 0u32;
        // ggml converts with a C cast to int8_t (truncation toward zero) before MIN(31, ..).
        let level = |v: f32| ((v * id + 16.5) as i32 as i8 as u8).min(31);
        for j in 0..QK5_0 / 2 {
            let x0 = level(xb[j]);
            let x1 = level(xb[j + QK5_0 / 2]);
            y[6 + j] = (x0 & 0x0F) | ((x1 & 0x0F) << 4);
            qh |= (((x0 & 0x10) >> 4) as u32) << j;
            qh |= (((x1 & 0x10) >> 4) as u32) << (j + QK5_0 / 2);
        }
        y[2..6].copy_from_slice(&qh.to_le_bytes());
    }
    out
}

/// Quantizes a row (a multiple of 32 values) to Q5_1: per 32, an f16 scale and minimum, 32
/// high bits and 16 bytes of low nibbles; levels 0..=31 span [min, max].
pub fn quantize_row_q5_1(x: &[f32]) -> Vec<u8> {
    assert!(
        x.len().is_multiple_of(QK5_0),
        "Q5_1 rows are whole 32-blocks"
    );
    let mut out = vec![0u8; x.len() / QK5_0 * Q5_1_BLOCK_BYTES];
    for (xb, y) in x
        .chunks_exact(QK5_0)
        .zip(out.chunks_exact_mut(Q5_1_BLOCK_BYTES))
    {
        let mut min = f32::MAX;
        let mut max = -f32::MAX;
        for &v in xb {
            if v < min {
                min = v;
            }
            if v > max {
                max = v;
            }
        }
        let d = (max - min) / 31.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        y[..2].copy_from_slice(&to_f16_bytes(d));
        y[2..4].copy_from_slice(&to_f16_bytes(min));
        let mut qh = 0u32;
        // ggml converts with a C cast to uint8_t, which truncates (levels are at most 31.5).
        let level = |v: f32| ((v - min) * id + 0.5) as u8;
        for j in 0..QK5_0 / 2 {
            let x0 = level(xb[j]);
            let x1 = level(xb[j + QK5_0 / 2]);
            y[8 + j] = (x0 & 0x0F) | ((x1 & 0x0F) << 4);
            qh |= (((x0 & 0x10) >> 4) as u32) << j;
            qh |= (((x1 & 0x10) >> 4) as u32) << (j + QK5_0 / 2);
        }
        y[4..8].copy_from_slice(&qh.to_le_bytes());
    }
    out
}

/// Quantizes a row (a multiple of 256 values) to Q5_K: Q4_K's scheme with 5-bit levels, whose
/// fifth bits go in 32 bytes between the packed scales and the nibbles.
pub fn quantize_row_q5_k(x: &[f32]) -> Vec<u8> {
    assert!(
        x.len().is_multiple_of(QK_K),
        "Q5_K rows are whole 256-blocks"
    );
    let mut out = vec![0u8; x.len() / QK_K * Q5_K_BLOCK_BYTES];
    let mut l = [0u8; QK_K];
    let mut laux = [0u8; 32];
    let mut weights = [0f32; 32];
    for (xb, y) in x
        .chunks_exact(QK_K)
        .zip(out.chunks_exact_mut(Q5_K_BLOCK_BYTES))
    {
        let mut scales = [0f32; 8];
        let mut mins = [0f32; 8];
        let mut max_scale = 0.0f32;
        let mut max_min = 0.0f32;
        for j in 0..8 {
            let xs = &xb[32 * j..32 * j + 32];
            let mut sum_x2 = 0.0f32;
            for &v in xs {
                sum_x2 += v * v;
            }
            let av_x = (sum_x2 / 32.0).sqrt();
            for (w, &v) in weights.iter_mut().zip(xs) {
                *w = av_x + v.abs();
            }
            let (s, m) = make_qkx2_quants(
                31,
                xs,
                &weights,
                &mut l[32 * j..32 * j + 32],
                &mut laux,
                -0.5,
                0.1,
                15,
            );
            scales[j] = s;
            mins[j] = m;
            if s > max_scale {
                max_scale = s;
            }
            if m > max_min {
                max_min = m;
            }
        }
        let inv_scale = if max_scale > 0.0 {
            63.0 / max_scale
        } else {
            0.0
        };
        let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
        let (dh, rest) = y.split_at_mut(4);
        let (sc, rest) = rest.split_at_mut(12);
        let (qh, ql) = rest.split_at_mut(QK_K / 8);
        for j in 0..8 {
            // ggml stores the int into a uint8_t before clamping, so truncate the same way.
            let ls = (nearest_int(inv_scale * scales[j]) as u8).min(63);
            let lm = (nearest_int(inv_min * mins[j]) as u8).min(63);
            if j < 4 {
                sc[j] = ls;
                sc[j + 4] = lm;
            } else {
                sc[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4);
                sc[j - 4] |= (ls >> 4) << 6;
                sc[j] |= (lm >> 4) << 6;
            }
        }
        dh[..2].copy_from_slice(&to_f16_bytes(max_scale / 63.0));
        dh[2..].copy_from_slice(&to_f16_bytes(max_min / 63.0));
        // Levels are recomputed from the rounded scales actually stored, as ggml does; a
        // sub-block whose scale rounds to 0 keeps the levels of its fit.
        let d_all = f16_round_trip(max_scale / 63.0);
        let dmin_all = f16_round_trip(max_min / 63.0);
        for j in 0..8 {
            let (s, m) = scale_min_k4(j, sc);
            let d = d_all * s as f32;
            if d == 0.0 {
                continue;
            }
            let dm = dmin_all * m as f32;
            for ii in 0..32 {
                let q = nearest_int((xb[32 * j + ii] + dm) / d).clamp(0, 31);
                l[32 * j + ii] = q as u8;
            }
        }
        // Sub-blocks 2c and 2c + 1 share nibble bytes 32c..32c + 32 (low and high) and take
        // their fifth bits from bits 2c and 2c + 1 of qh.
        for (c, q) in ql.chunks_exact_mut(32).enumerate() {
            let n = 64 * c;
            for j in 0..32 {
                let (l1, l2) = (l[n + j], l[n + j + 32]);
                qh[j] |= ((l1 >> 4) << (2 * c)) | ((l2 >> 4) << (2 * c + 1));
                q[j] = (l1 & 0x0F) | ((l2 & 0x0F) << 4);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_int_rounds_half_to_even() {
        assert_eq!(nearest_int(0.5), 0);
        assert_eq!(nearest_int(1.5), 2);
        assert_eq!(nearest_int(2.5), 2);
        assert_eq!(nearest_int(-0.5), 0);
        assert_eq!(nearest_int(-1.5), -2);
        assert_eq!(nearest_int(3.49), 3);
        assert_eq!(nearest_int(-7.6), -8);
    }

    fn ramp(n: usize) -> Vec<f32> {
        (0..n).map(|i| (i as f32 * 0.37).sin() * 0.05).collect()
    }

    fn dequant_q4_k(b: &[u8]) -> Vec<f32> {
        let d = f16::from_le_bytes([b[0], b[1]]).to_f32();
        let dmin = f16::from_le_bytes([b[2], b[3]]).to_f32();
        let sc = &b[4..16];
        let qs = &b[16..];
        let mut out = vec![0f32; QK_K];
        for j in 0..8 {
            let (s, m) = scale_min_k4(j, sc);
            for i in 0..32 {
                let byte = qs[32 * (j / 2) + i];
                let q = if j % 2 == 0 { byte & 0xF } else { byte >> 4 };
                out[32 * j + i] = d * s as f32 * q as f32 - dmin * m as f32;
            }
        }
        out
    }

    fn dequant_q6_k(b: &[u8]) -> Vec<f32> {
        let (ql, rest) = b.split_at(128);
        let (qh, rest) = rest.split_at(64);
        let (sc, d) = rest.split_at(16);
        let d = f16::from_le_bytes([d[0], d[1]]).to_f32();
        let mut out = vec![0f32; QK_K];
        for half in 0..2 {
            for i in 0..32 {
                let lo = |k: usize| ql[64 * half + i + k];
                let h = qh[32 * half + i];
                let q = [
                    (lo(0) & 0xF) | ((h & 3) << 4),
                    (lo(32) & 0xF) | (((h >> 2) & 3) << 4),
                    (lo(0) >> 4) | (((h >> 4) & 3) << 4),
                    (lo(32) >> 4) | (((h >> 6) & 3) << 4),
                ];
                for (k, &qk) in q.iter().enumerate() {
                    let idx = 128 * half + i + 32 * k;
                    out[idx] = d * (sc[idx / 16] as i8) as f32 * (qk as i32 - 32) as f32;
                }
            }
        }
        out
    }

    #[test]
    fn q4_k_round_trip_is_close() {
        let x = ramp(2 * QK_K);
        let q = quantize_row_q4_k(&x);
        assert_eq!(q.len(), 2 * Q4_K_BLOCK_BYTES);
        for (xb, b) in x.chunks(QK_K).zip(q.chunks(Q4_K_BLOCK_BYTES)) {
            let y = dequant_q4_k(b);
            // 4 bits over a 0.1 range: a step is ~0.007, so half a step plus scale rounding.
            for (a, b) in xb.iter().zip(&y) {
                assert!((a - b).abs() < 0.006, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn q6_k_round_trip_is_close() {
        let x = ramp(QK_K);
        let q = quantize_row_q6_k(&x);
        assert_eq!(q.len(), Q6_K_BLOCK_BYTES);
        let y = dequant_q6_k(&q);
        for (a, b) in x.iter().zip(&y) {
            assert!((a - b).abs() < 0.0015, "{a} vs {b}");
        }
    }

    #[test]
    fn zero_rows_give_zero_blocks() {
        let z = vec![0f32; QK_K];
        assert!(quantize_row_q6_k(&z).iter().all(|&b| b == 0));
        // Q4_K: scales and levels all zero; ggml also leaves d = dmin = 0.
        assert!(quantize_row_q4_k(&z).iter().all(|&b| b == 0));
        let q5 = quantize_row_q5_0(&z[..32]);
        // d = 0 / -16 is -0.0, which ggml stores as f16 0x8000; level 16 is zero: low nibbles
        // 0, every high bit set.
        assert_eq!(&q5[..2], &[0x00, 0x80]);
        assert_eq!(&q5[2..6], &[0xff; 4]);
        assert!(q5[6..].iter().all(|&b| b == 0));
    }

    #[test]
    fn q5_0_largest_magnitude_maps_to_minus_16() {
        let mut x = vec![0.25f32; 32];
        x[3] = -1.0;
        let q = quantize_row_q5_0(&x);
        let d = f16::from_le_bytes([q[0], q[1]]).to_f32();
        assert_eq!(d, 1.0 / 16.0);
        let qh = u32::from_le_bytes([q[2], q[3], q[4], q[5]]);
        let level = |j: usize| {
            let lo = if j < 16 {
                q[6 + j] & 0xF
            } else {
                q[6 + j - 16] >> 4
            };
            lo as u32 | (((qh >> j) & 1) << 4)
        };
        // x = d * (level - 16): -1.0 -> 0, 0.25 -> 20 (16.5 + 4 truncated).
        assert_eq!(level(3), 0);
        assert_eq!(level(0), 20);
        assert_eq!(level(31), 20);
    }

    #[test]
    fn q5_1_round_trip_is_within_half_a_step() {
        use crate::dtype::DType;
        let x = ramp(4 * QK5_0);
        let q = quantize_row_q5_1(&x);
        assert_eq!(q.len(), 4 * Q5_1_BLOCK_BYTES);
        let mut y = vec![0f32; x.len()];
        crate::kernels::blocks::dequantize_row(DType::Q5_1, &q, &mut y);
        for (xb, yb) in x.chunks(QK5_0).zip(y.chunks(QK5_0)) {
            let (lo, hi) = xb
                .iter()
                .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
            // Half a step of 31, plus the f16 rounding of d and min.
            let tol = (hi - lo) / 31.0 * 0.5 + 1e-3 * (hi - lo) + 1e-4;
            for (a, b) in xb.iter().zip(yb) {
                assert!((a - b).abs() <= tol, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn q5_k_round_trip_is_close() {
        use crate::dtype::DType;
        let x = ramp(2 * QK_K);
        let q = quantize_row_q5_k(&x);
        assert_eq!(q.len(), 2 * Q5_K_BLOCK_BYTES);
        let mut y = vec![0f32; x.len()];
        crate::kernels::blocks::dequantize_row(DType::Q5_K, &q, &mut y);
        // 5 bits over a 0.1 range: a step is ~0.0033, so half a step plus scale rounding.
        for (a, b) in x.iter().zip(&y) {
            assert!((a - b).abs() < 0.003, "{a} vs {b}");
        }
        // Q4_K's error on the same row is larger: the fifth bit is really used.
        let q4 = quantize_row_q4_k(&x);
        let mut y4 = vec![0f32; x.len()];
        crate::kernels::blocks::dequantize_row(DType::Q4_K, &q4, &mut y4);
        let err = |y: &[f32]| x.iter().zip(y).map(|(a, b)| (a - b).powi(2)).sum::<f32>();
        assert!(err(&y) < err(&y4) / 2.0, "{} vs q4_k {}", err(&y), err(&y4));
    }

    #[test]
    fn q5_1_and_q5_k_zero_rows() {
        // Q5_1: d = 0 and min = 0 (f16 +0), levels 0.
        assert!(quantize_row_q5_1(&[0f32; 32]).iter().all(|&b| b == 0));
        assert!(quantize_row_q5_k(&[0f32; QK_K]).iter().all(|&b| b == 0));
    }
}
