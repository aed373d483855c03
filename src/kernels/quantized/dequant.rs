//! Rows of a quantized matrix dequantized in parallel, straight into f32 or bf16: a stored
//! model's passes convert every matrix they use (candle's `QTensor::dequantize` converts on
//! one thread, into f32 only).

use super::blocks::cast;
use crate::kernels::{convert, fill_chunks};
use candle_core::quantized::k_quants::*;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Result, Tensor};
use half::bf16;
use std::mem::MaybeUninit;

/// Rows `start..start + len` of the `(rows, cols)` quantized matrix `q`, exactly, as a
/// `(len, cols)` CPU tensor of `dtype` (f32, or bf16 rounded to nearest even).
pub fn rows(q: &QTensor, start: usize, len: usize, dtype: DType) -> Result<Tensor> {
    use super::blocks::{Q4_1, Q5_0, Q5_1, Q8_0};
    use super::kblocks::{Q4K, Q6K};
    let (n, cols) = q.shape().dims2()?;
    if start + len > n {
        candle_core::bail!("rows {start}..{} of a {n}×{cols} matrix", start + len);
    }
    let span = (start, len, cols);
    match q.dtype() {
        GgmlDType::Q4_0 => typed::<BlockQ4_0>(q, span, dtype, None),
        GgmlDType::Q4_1 => typed::<Q4_1>(q, span, dtype, simd::<Q4_1>()),
        GgmlDType::Q5_0 => typed::<Q5_0>(q, span, dtype, simd::<Q5_0>()),
        GgmlDType::Q5_1 => typed::<Q5_1>(q, span, dtype, simd::<Q5_1>()),
        GgmlDType::Q8_0 => typed::<Q8_0>(q, span, dtype, simd::<Q8_0>()),
        GgmlDType::Q2K => typed::<BlockQ2K>(q, span, dtype, None),
        GgmlDType::Q3K => typed::<BlockQ3K>(q, span, dtype, None),
        GgmlDType::Q4K => typed::<Q4K>(q, span, dtype, simd::<Q4K>()),
        GgmlDType::Q5K => typed::<BlockQ5K>(q, span, dtype, None),
        GgmlDType::Q6K => typed::<Q6K>(q, span, dtype, simd::<Q6K>()),
        _ => q
            .dequantize(&Device::Cpu)?
            .narrow(0, start, len)?
            .to_dtype(dtype),
    }
}

/// A block type's AVX-512 unpacking into f32 and into bf16, where the CPU has it.
type Simd<T> = (unsafe fn(&[T], *mut f32), unsafe fn(&[T], *mut bf16));

#[cfg(target_arch = "x86_64")]
fn simd<T: super::unpack::Unpack>() -> Option<Simd<T>> {
    use super::unpack::unpack;
    super::unpack::available().then_some((unpack::<T, f32>, unpack::<T, bf16>))
}

#[cfg(not(target_arch = "x86_64"))]
fn simd<T>() -> Option<Simd<T>> {
    None
}

/// Values a worker converts at a time.
const CHUNK_ELEMS: usize = 1 << 15;

fn typed<T: GgmlType>(
    q: &QTensor,
    (start, len, cols): (usize, usize, usize),
    dtype: DType,
    simd: Option<Simd<T>>,
) -> Result<Tensor> {
    if cols % T::BLCK_SIZE != 0 {
        candle_core::bail!("a row of {cols} is not whole {:?} blocks", T::DTYPE);
    }
    let per_row = cols / T::BLCK_SIZE;
    let (n, _) = q.shape().dims2()?;
    let data = q.data()?;
    let all = cast::<T>(&data, n * per_row)?;
    let blocks = &all[start * per_row..(start + len) * per_row];
    let chunk = (CHUNK_ELEMS / cols).max(1) * cols;
    // The blocks of the output elements `first..first + count` (whole rows).
    let src = |first: usize, count: usize| {
        let b = first / T::BLCK_SIZE;
        &blocks[b..b + count / T::BLCK_SIZE]
    };
    // SAFETY (both arms): the kernels write every value of the blocks they are given, and
    // `src` gives each chunk the blocks of its whole rows.
    match dtype {
        DType::BF16 => {
            let out = unsafe {
                fill_chunks(
                    len * cols,
                    chunk,
                    |first, dst: &mut [MaybeUninit<bf16>]| match simd {
                        Some((_, to_bf16)) => {
                            to_bf16(src(first, dst.len()), dst.as_mut_ptr().cast())
                        }
                        None => {
                            let mut f = vec![0f32; dst.len()];
                            T::to_float(src(first, dst.len()), &mut f);
                            convert::convert(&f, dst);
                        }
                    },
                )
            };
            Tensor::from_vec(out, (len, cols), &Device::Cpu)
        }
        _ => {
            let out = unsafe {
                fill_chunks(
                    len * cols,
                    chunk,
                    |first, dst: &mut [MaybeUninit<f32>]| match simd {
                        Some((to_f32, _)) => to_f32(src(first, dst.len()), dst.as_mut_ptr().cast()),
                        None => {
                            // candle's conversion takes an initialized slice.
                            dst.iter_mut().for_each(|d| {
                                d.write(0.0);
                            });
                            // SAFETY: every element was just written.
                            let dst = &mut *(dst as *mut [MaybeUninit<f32>] as *mut [f32]);
                            T::to_float(src(first, dst.len()), dst)
                        }
                    },
                )
            };
            Tensor::from_vec(out, (len, cols), &Device::Cpu)?.to_dtype(dtype)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every block type: the same values as candle's dequantization, in f32 and in bf16.
    #[test]
    fn rows_equal_candles_dequantization() -> Result<()> {
        let dev = Device::Cpu;
        let w = Tensor::arange(0f32, 40. * 512., &dev)?
            .reshape((40, 512))?
            .affine(0.37, 0.1)?
            .sin()?;
        for dtype in [
            GgmlDType::Q4_0,
            GgmlDType::Q4_1,
            GgmlDType::Q5_0,
            GgmlDType::Q5_1,
            GgmlDType::Q8_0,
            GgmlDType::Q2K,
            GgmlDType::Q3K,
            GgmlDType::Q4K,
            GgmlDType::Q5K,
            GgmlDType::Q6K,
            GgmlDType::F16,
        ] {
            let q = QTensor::quantize(&w, dtype)?;
            let want = q.dequantize(&dev)?.narrow(0, 3, 33)?;
            let got = rows(&q, 3, 33, DType::F32)?;
            let d = (&got - &want)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert_eq!(d, 0.0, "{dtype:?} f32");
            let got16 = rows(&q, 3, 33, DType::BF16)?;
            assert_eq!(got16.dtype(), DType::BF16);
            let want16 = want.to_dtype(DType::BF16)?.to_dtype(DType::F32)?;
            let d = (got16.to_dtype(DType::F32)? - want16)?
                .abs()?
                .max_all()?
                .to_scalar::<f32>()?;
            assert_eq!(d, 0.0, "{dtype:?} bf16");
        }
        assert!(rows(&QTensor::quantize(&w, GgmlDType::Q8_0)?, 39, 2, DType::F32).is_err());
        Ok(())
    }
}
