//! Vectorized elementwise math for the row kernels: softmax's exponentials and the gated
//! MLP's sigmoids with AVX-512 (16 at a time) or AVX2 and FMA (8 at a time); glibc's `expf`
//! one at a time was a tenth of a 500-token explanation (8% of a 1,752-token AttnLRP pass on
//! an AMD EPYC without AVX-512).

/// `dst[i] = exp(src[i] · mul − sub)`; returns `Σ dst`. Relative error ≤ 2e-7 (a degree-6
/// polynomial on |r| ≤ ln 2 / 2 after range reduction).
pub(crate) fn exp_affine_sum(src: &[f32], mul: f32, sub: f32, dst: &mut [f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has the features the function is compiled for.
        return unsafe { exp_affine_sum_avx512(src, mul, sub, dst) };
    }
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU has the features the function is compiled for.
        return unsafe { avx2::exp_affine_sum(src, mul, sub, dst) };
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
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU has the features the function is compiled for.
        unsafe { avx2::sigmoid(src, dst) };
        return;
    }
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = 1.0 / (1.0 + (-s).exp());
    }
}

/// `v[i] = 1 / (1 + exp(−v[i]))`, through [`sigmoid`] a stack buffer at a time.
pub(crate) fn sigmoid_in_place(v: &mut [f32]) {
    let mut buf = [0f32; 256];
    for chunk in v.chunks_mut(buf.len()) {
        let src = &mut buf[..chunk.len()];
        src.copy_from_slice(chunk);
        sigmoid(src, chunk);
    }
}

/// Whether the CPU has AVX2 and FMA (read once).
#[cfg(target_arch = "x86_64")]
fn avx2() -> bool {
    static AVX2: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVX2.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
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

/// The same with AVX2 and FMA, 8 lanes at a time (the last few one at a time with `expf`).
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn exp_affine_sum(src: &[f32], mul: f32, sub: f32, dst: &mut [f32]) -> f32 {
        let n = src.len().min(dst.len());
        let (vmul, vsub) = (_mm256_set1_ps(mul), _mm256_set1_ps(sub));
        let mut acc = _mm256_setzero_ps();
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: elements i..i + 8 are within both slices; unaligned loads and stores.
            unsafe {
                let x = _mm256_loadu_ps(src.as_ptr().add(i));
                let y = exp8(_mm256_fmsub_ps(x, vmul, vsub));
                _mm256_storeu_ps(dst.as_mut_ptr().add(i), y);
                acc = _mm256_add_ps(acc, y);
            }
            i += 8;
        }
        let mut lanes = [0f32; 8];
        // SAFETY: 8 f32s into an 8-element array.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc) };
        let mut sum: f32 = lanes.iter().sum();
        for j in i..n {
            dst[j] = (src[j] * mul - sub).exp();
            sum += dst[j];
        }
        sum
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn sigmoid(src: &[f32], dst: &mut [f32]) {
        let n = src.len().min(dst.len());
        let one = _mm256_set1_ps(1.0);
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: elements i..i + 8 are within both slices; unaligned loads and stores.
            unsafe {
                let x = _mm256_loadu_ps(src.as_ptr().add(i));
                let e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), x));
                let y = _mm256_div_ps(one, _mm256_add_ps(one, e));
                _mm256_storeu_ps(dst.as_mut_ptr().add(i), y);
            }
            i += 8;
        }
        for j in i..n {
            dst[j] = 1.0 / (1.0 + (-src[j]).exp());
        }
    }

    /// `exp` of 8 lanes as `exp16` computes 16, the scaling by 2ᵏ in two halves (each a
    /// normal power of two for k in −150..=128); below −104 it is 0, above 89 ∞.
    #[target_feature(enable = "avx2,fma")]
    fn exp8(x: __m256) -> __m256 {
        let under = _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_set1_ps(-104.0));
        let over = _mm256_cmp_ps::<_CMP_GT_OQ>(x, _mm256_set1_ps(89.0));
        let x = _mm256_max_ps(x, _mm256_set1_ps(-104.0));
        let x = _mm256_min_ps(x, _mm256_set1_ps(89.0));
        let k = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E)),
        );
        let r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693_145_75), x);
        let r = _mm256_fnmadd_ps(k, _mm256_set1_ps(1.428_606_8e-6), r);
        let mut p = _mm256_set1_ps(1.0 / 720.0);
        for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
            p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
        }
        // 2ᵏ = 2^⌊k/2⌋ · 2^(k − ⌊k/2⌋), each built in the exponent field.
        let k = _mm256_cvtps_epi32(k);
        let k1 = _mm256_srai_epi32::<1>(k);
        let k2 = _mm256_sub_epi32(k, k1);
        let bias = _mm256_set1_epi32(127);
        let pow =
            |e: __m256i| _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(e, bias)));
        let y = _mm256_mul_ps(_mm256_mul_ps(p, pow(k1)), pow(k2));
        let y = _mm256_andnot_ps(under, y);
        _mm256_blendv_ps(y, _mm256_set1_ps(f32::INFINITY), over)
    }
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
        // The same in full vectors (8 and 16 lanes), around the ends of f32's exponents.
        let ends = [
            -1e30, -105.0, -103.0, -95.0, -87.5, -87.0, -50.0, 0.0, 1e-8, 20.0, 88.0, 88.7, 88.8,
            89.5, 1e30, -1.0,
        ];
        let mut d16 = [9f32; 16];
        exp_affine_sum(&ends, 1.0, 0.0, &mut d16);
        for (&x, &d) in ends.iter().zip(&d16) {
            let want = (x as f64).exp();
            match want {
                w if w > f32::MAX as f64 => assert!(d.is_infinite(), "exp({x}): {d}"),
                w if w > 1e-37 => assert!(((d as f64 - w) / w).abs() < 3e-7, "exp({x}): {d}"),
                _ => assert!(d as f64 <= 1e-37 && d >= 0.0, "exp({x}): {d}"),
            }
        }
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
