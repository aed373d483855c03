//! f32 → bf16, rounded to nearest (even), in parallel and with AVX512-BF16's conversion
//! instruction where the CPU has it (16 values an instruction; `half`'s scalar conversion
//! took a fifth of a bf16 pass).

use candle_core::{DType, Result, Tensor, WithDType, D};
use half::bf16;
use std::mem::MaybeUninit;

/// A tensor in bf16, rounded to nearest (even); a bf16 one as it is. A CPU f32 tensor that is
/// contiguous, or the transpose of a contiguous one (its last two dimensions swapped: a
/// product's operand), is converted without reordering and keeps its layout; others are made
/// contiguous first.
pub fn to_bf16(t: &Tensor) -> Result<Tensor> {
    match t.dtype() {
        DType::BF16 => Ok(t.clone()),
        // SAFETY: `convert` writes every element of its destination.
        DType::F32 if t.device().is_cpu() => unsafe { map_elements(t, convert) },
        _ => t.to_dtype(DType::BF16),
    }
}

/// A CPU tensor's values as bf16 would hold them, in f32: f32 ones rounded to nearest (even),
/// bf16 ones widened; in parallel, keeping a contiguous or transposed layout as [`to_bf16`]
/// does. The operands of emulated bf16 products (`TOKENLENS_BF16=emulate`): candle's own
/// conversion is one thread, a value at a time, and took a quarter of an emulated pass.
pub(crate) fn bf16_as_f32(t: &Tensor) -> Result<Tensor> {
    if !t.device().is_cpu() {
        return t.to_dtype(DType::BF16)?.to_dtype(DType::F32);
    }
    // SAFETY: each closure writes every element of its destination.
    unsafe {
        match t.dtype() {
            DType::BF16 => map_elements(t, |src: &[bf16], dst| {
                for (d, x) in dst.iter_mut().zip(src) {
                    d.write(f32::from_bits((x.to_bits() as u32) << 16));
                }
            }),
            DType::F32 => map_elements(t, |src: &[f32], dst| {
                for (d, &x) in dst.iter_mut().zip(src) {
                    d.write(round_to_bf16(x));
                }
            }),
            _ => t.to_dtype(DType::BF16)?.to_dtype(DType::F32),
        }
    }
}

/// `f(source chunk, destination chunk)` over a CPU tensor's elements, on the pool, into a
/// tensor of the same shape. A contiguous tensor, or the transpose of a contiguous one (its
/// last two dimensions swapped: a product's operand), is mapped without reordering and keeps
/// its layout; others are made contiguous first.
///
/// # Safety
/// `f` must write every element of the destination chunk it is given (as long as its source).
unsafe fn map_elements<T: WithDType, U: WithDType>(
    t: &Tensor,
    f: impl Fn(&[T], &mut [MaybeUninit<U>]) + Sync,
) -> Result<Tensor> {
    if !t.is_contiguous() && t.rank() >= 2 {
        let back = t.transpose(D::Minus2, D::Minus1)?;
        if back.is_contiguous() {
            // SAFETY: the caller's `f`.
            return unsafe { map_elements(&back, f) }?.transpose(D::Minus2, D::Minus1);
        }
    }
    let t = t.contiguous()?;
    let (s, l) = t.storage_and_layout();
    let candle_core::Storage::Cpu(c) = &*s else {
        candle_core::bail!("map_elements: not a CPU tensor")
    };
    let Some((a, b)) = l.contiguous_offsets() else {
        candle_core::bail!("map_elements: not contiguous")
    };
    let src = &c.as_slice::<T>()?[a..b];
    // SAFETY: the caller's `f` writes every element of each chunk.
    let out = unsafe {
        super::fill_chunks(src.len(), 1 << 14, |start, dst| {
            f(&src[start..start + dst.len()], dst)
        })
    };
    Tensor::from_vec(out, t.shape(), t.device())
}

/// `x` rounded to bf16's 8 bits of mantissa, to nearest (even), as `half` rounds (NaNs stay
/// NaNs, quiet), without branches, so that a loop of it is vectorized.
#[inline]
fn round_to_bf16(x: f32) -> f32 {
    let b = x.to_bits();
    let rounded = b.wrapping_add(0x7fff + ((b >> 16) & 1)) & 0xffff_0000;
    let nan = (b & 0x7fff_ffff) > 0x7f80_0000;
    f32::from_bits(if nan {
        (b | 0x0040_0000) & 0xffff_0000
    } else {
        rounded
    })
}

/// `dst[i] = bf16(src[i])` for every element of `dst` (at most `src`'s), rounded to nearest
/// (even); subnormals may become 0.
pub(crate) fn convert(src: &[f32], dst: &mut [MaybeUninit<bf16>]) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512bf16") {
        // SAFETY: the CPU has the features the function is compiled for.
        unsafe { convert_avx512(src, dst) };
        return;
    }
    for (d, &x) in dst.iter_mut().zip(src) {
        d.write(bf16::from_f32(x));
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn convert_avx512(src: &[f32], dst: &mut [MaybeUninit<bf16>]) {
    use std::arch::x86_64::*;
    let n = src.len().min(dst.len());
    let mut i = 0;
    while i + 16 <= n {
        // SAFETY: i + 16 ≤ n elements on both sides; unaligned loads and stores.
        unsafe {
            let v = _mm512_loadu_ps(src.as_ptr().add(i));
            let b: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(v));
            _mm256_storeu_si256(dst.as_mut_ptr().add(i).cast(), b);
        }
        i += 16;
    }
    for j in i..n {
        dst[j].write(half::bf16::from_f32(src[j]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Round to nearest even, as candle's (`half`'s) conversion; subnormals may flush to
    /// zero (AVX512-BF16's instruction does, as oneMKL's and oneDNN's do).
    #[test]
    fn rounding_is_candles_to_nearest_even() -> Result<()> {
        let tiny = Tensor::new(&[1e-40f32], &Device::Cpu)?;
        let t = to_bf16(&tiny)?.to_dtype(DType::F32)?.to_vec1::<f32>()?[0];
        assert!(t == 0.0 || (t - 1e-40).abs() < 1e-41, "subnormal: {t}");
        let mut v = vec![1.0f32, 1.003_906_3, 1.011_718_8, -3.3, 0.0, f32::MAX, -0.0];
        v.extend((0..100).map(|i| (i as f32 * 0.731).sin() * 1e3));
        let x = Tensor::new(v.as_slice(), &Device::Cpu)?;
        let ours = to_bf16(&x)?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        let candles = x
            .to_dtype(DType::BF16)?
            .to_dtype(DType::F32)?
            .to_vec1::<f32>()?;
        assert_eq!(ours, candles);
        Ok(())
    }

    /// The emulated operands hold what a trip through bf16 gives, in f32, in any layout.
    #[test]
    fn emulated_operands_are_a_round_trip_through_bf16() -> Result<()> {
        let v: Vec<f32> = (0..40_000)
            .map(|i| (i as f32 * 0.377).sin() * 1e3)
            .collect();
        let mut v = v;
        v[..8].copy_from_slice(&[
            f32::NAN,
            -f32::NAN,
            f32::INFINITY,
            f32::MAX,
            -f32::MAX,
            1e-40,
            -0.0,
            3.0e38,
        ]);
        let x = Tensor::new(v.as_slice(), &Device::Cpu)?.reshape((200, 200))?;
        for t in [x.clone(), x.t()?, x.to_dtype(DType::BF16)?] {
            let want = t.to_dtype(DType::BF16)?.to_dtype(DType::F32)?;
            let got = bf16_as_f32(&t)?;
            assert_eq!(got.dtype(), DType::F32);
            assert_eq!(got.dims(), want.dims());
            let bits = |t: &Tensor| -> Result<Vec<u32>> {
                Ok(t.flatten_all()?
                    .to_vec1::<f32>()?
                    .iter()
                    .map(|x| x.to_bits())
                    .collect())
            };
            assert_eq!(bits(&got.contiguous()?)?, bits(&want.contiguous()?)?);
        }
        Ok(())
    }

    #[test]
    fn a_transposed_operand_keeps_its_layout() -> Result<()> {
        let x = Tensor::arange(0f32, 24., &Device::Cpu)?.reshape((2, 3, 4))?;
        let t = x.transpose(1, 2)?;
        let b = to_bf16(&t)?;
        assert_eq!(b.dims(), t.dims());
        assert_eq!(b.stride(), t.stride());
        let back = b
            .to_dtype(DType::F32)?
            .contiguous()?
            .flatten_all()?
            .to_vec1::<f32>()?;
        assert_eq!(back, t.contiguous()?.flatten_all()?.to_vec1::<f32>()?);
        Ok(())
    }
}
