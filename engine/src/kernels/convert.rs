//! f32 rows narrowed to f16 bits in bulk (the KV cache's writes), with the CPU's conversion
//! instruction where it has one: F16C `vcvtps2ph` on x86-64, `fcvtn` on aarch64.

use half::f16;

/// `dst[i] = f16(src[i])`, rounding to nearest even, as [`half::f16::from_f32`] does.
pub fn f32_to_f16(src: &[f32], dst: &mut [u16]) {
    assert_eq!(src.len(), dst.len(), "f32_to_f16: lengths differ");
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("f16c") && is_x86_feature_detected!("avx") {
        // SAFETY: the features were just detected; the loop stays inside both slices.
        return unsafe { f32_to_f16_f16c(src, dst) };
    }
    #[cfg(target_arch = "aarch64")]
    {
        // SAFETY: `fcvtn` is baseline Advanced SIMD; the loop stays inside both slices.
        return unsafe { f32_to_f16_neon(src, dst) };
    }
    #[allow(unreachable_code)]
    f32_to_f16_scalar(src, dst)
}

fn f32_to_f16_scalar(src: &[f32], dst: &mut [u16]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = f16::from_f32(s).to_bits();
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx,f16c")]
unsafe fn f32_to_f16_f16c(src: &[f32], dst: &mut [u16]) {
    use std::arch::x86_64::*;
    let n = src.len();
    let mut i = 0;
    while i + 8 <= n {
        let h =
            _mm256_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT }>(_mm256_loadu_ps(src.as_ptr().add(i)));
        _mm_storeu_si128(dst.as_mut_ptr().add(i).cast(), h);
        i += 8;
    }
    f32_to_f16_scalar(&src[i..], &mut dst[i..]);
}

#[cfg(target_arch = "aarch64")]
unsafe fn f32_to_f16_neon(src: &[f32], dst: &mut [u16]) {
    use std::arch::aarch64::*;
    let n = src.len();
    let mut i = 0;
    while i + 4 <= n {
        let h = super::attention_neon::f32x4_to_f16(vld1q_f32(src.as_ptr().add(i)));
        vst1_u16(dst.as_mut_ptr().add(i), h);
        i += 4;
    }
    f32_to_f16_scalar(&src[i..], &mut dst[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_support::Rng;

    #[test]
    fn bulk_conversion_equals_half() {
        let mut rng = Rng(3);
        let mut src: Vec<f32> = (0..1003)
            .map(|_| rng.f32() * 70000.0 * rng.f32().powi(9))
            .collect();
        src.extend([
            0.0,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            65520.0,
            1e-8,
            -6e-5,
            3.0e-7,
        ]);
        let mut got = vec![0u16; src.len()];
        f32_to_f16(&src, &mut got);
        for (s, g) in src.iter().zip(&got) {
            assert_eq!(*g, f16::from_f32(*s).to_bits(), "{s}");
        }
        let nan = [f32::NAN; 9];
        let mut got = [0u16; 9];
        f32_to_f16(&nan, &mut got);
        assert!(got.iter().all(|&h| f16::from_bits(h).is_nan()));
    }
}
