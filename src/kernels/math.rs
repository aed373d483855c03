//! Vectorized elementwise math for the row kernels: softmax's exponentials and the gated
//! MLP's sigmoids with AVX-512 (16 at a time; glibc's `expf` one at a time was a tenth of a
//! 500-token explanation).

/// `dst[i] = exp(src[i] · mul − sub)`; returns `Σ dst`. Relative error ≤ 2e-7 (a degree-6
/// polynomial on |r| ≤ ln 2 / 2 after range reduction).
pub(crate) fn exp_affine_sum(src: &[f32], mul: f32, sub: f32, dst: &mut [f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has the features the function is compiled for.
        return unsafe { exp_affine_sum_avx512(src, mul, sub, dst) };
    }
    let mut sum = 0f32;
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = (s * mul - sub).exp();
        sum += *d;
    }
    sum
}

/// `dst[i] = 1 / (1 + exp(−src[i]))`.
pub(crate) fn sigmoid(src: &[f32], dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has the features the function is compiled for.
        unsafe { sigmoid_avx512(src, dst) };
        return;
    }
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = 1.0 / (1.0 + (-s).exp());
    }
}

/// Runs `f(i, mask)` over `0..n` in steps of 16 lanes, the mask covering the last step's
/// remainder.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn lanes16(n: usize, mut f: impl FnMut(usize, std::arch::x86_64::__mmask16)) {
    let mut i = 0;
    while i < n {
        let take = (n - i).min(16);
        f(
            i,
            if take == 16 {
                0xFFFF
            } else {
                (1u16 << take) - 1
            },
        );
        i += take;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn sigmoid_avx512(src: &[f32], dst: &mut [f32]) {
    use std::arch::x86_64::*;
    let one = _mm512_set1_ps(1.0);
    lanes16(src.len().min(dst.len()), |i, mask| {
        // SAFETY: the masked loads and stores touch only elements i.. within both slices.
        unsafe {
            let x = _mm512_maskz_loadu_ps(mask, src.as_ptr().add(i));
            let e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), x));
            let y = _mm512_div_ps(one, _mm512_add_ps(one, e));
            _mm512_mask_storeu_ps(dst.as_mut_ptr().add(i), mask, y);
        }
    });
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn exp_affine_sum_avx512(src: &[f32], mul: f32, sub: f32, dst: &mut [f32]) -> f32 {
    use std::arch::x86_64::*;
    let (vmul, vsub) = (_mm512_set1_ps(mul), _mm512_set1_ps(sub));
    let mut acc = _mm512_setzero_ps();
    lanes16(src.len().min(dst.len()), |i, mask| {
        // SAFETY: the masked loads and stores touch only elements i.. within both slices.
        unsafe {
            let x = _mm512_maskz_loadu_ps(mask, src.as_ptr().add(i));
            let y = exp16(_mm512_fmsub_ps(x, vmul, vsub));
            _mm512_mask_storeu_ps(dst.as_mut_ptr().add(i), mask, y);
            acc = _mm512_mask_add_ps(acc, mask, acc, y);
        }
    });
    _mm512_reduce_add_ps(acc)
}

/// `exp` of 16 lanes: x = k·ln 2 + r, |r| ≤ ln 2 / 2, exp(r) by its Taylor polynomial to r⁶
/// (error ≤ r⁷/7! ≈ 1.2e-7), scaled by 2ᵏ (`vscalefps` saturates to 0 and ∞ itself).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn exp16(x: std::arch::x86_64::__m512) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    let x = _mm512_max_ps(x, _mm512_set1_ps(-104.0));
    let x = _mm512_min_ps(x, _mm512_set1_ps(89.0));
    let k = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
        _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)),
    );
    // ln 2 in two parts, so that k·ln 2 subtracts without rounding.
    let r = _mm512_fnmadd_ps(k, _mm512_set1_ps(0.693_145_75), x);
    let r = _mm512_fnmadd_ps(k, _mm512_set1_ps(1.428_606_8e-6), r);
    let mut p = _mm512_set1_ps(1.0 / 720.0);
    for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    }
    _mm512_scalef_ps(p, k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponentials_are_within_two_ulps_and_sum() {
        let src: Vec<f32> = (0..1000).map(|i| (i as f32 - 500.0) * 0.173).collect();
        let mut dst = vec![0f32; src.len()];
        let sum = exp_affine_sum(&src, 0.5, 3.0, &mut dst);
        let mut want_sum = 0f64;
        for (&s, &d) in src.iter().zip(&dst) {
            let want = ((s * 0.5 - 3.0) as f64).exp();
            want_sum += want;
            if want > 1e-37 {
                assert!(
                    ((d as f64 - want) / want).abs() < 3e-7,
                    "exp({s}): {d} vs {want}"
                );
            } else {
                assert!(d as f64 <= 1e-37, "underflow at {s}: {d}");
            }
        }
        assert!(((sum as f64 - want_sum) / want_sum).abs() < 1e-5);
        // Masked tail lanes and extreme inputs.
        let mut d3 = [9f32; 3];
        assert!(exp_affine_sum(&[-1e30, 0.0, 1e30], 1.0, 0.0, &mut d3).is_infinite());
        assert_eq!(d3[..2], [0.0, 1.0]);
    }

    #[test]
    fn sigmoids_are_within_two_ulps() {
        let src: Vec<f32> = (0..700).map(|i| (i as f32 - 350.0) * 0.21).collect();
        let mut dst = vec![0f32; src.len()];
        sigmoid(&src, &mut dst);
        for (&s, &d) in src.iter().zip(&dst) {
            let want = 1.0 / (1.0 + (-(s as f64)).exp());
            assert!(
                (d as f64 - want).abs() <= 3e-7 * want.max(1e-30),
                "sigmoid({s}): {d} vs {want}"
            );
        }
    }
}
