//! GGUF's Q4_K and Q6_K super-blocks (256 values) and their 8-bit activation block Q8_K,
//! laid out as ggml stores them, with our dot products (AVX2 in `x86.rs`, fetching ahead of
//! each row). candle has SIMD dot products for these, but fast ones only on its repacked
//! copies of the weights, which hold each matrix two or three more times in memory.
//!
//! Q4_K: `x = d·sc_j·q − dmin·m_j` for sub-block j of 32 (q in 0..15; the 6-bit scales
//! `sc_j` and minimums `m_j` packed in 12 bytes). Q6_K: `x = d·sc_j·(q − 32)` for sub-block j
//! of 16 (q in 0..63, low 4 bits in `ql`, high 2 in `qh`; `sc_j` signed bytes). Q8_K: `y =
//! d·q` (q in −128..127 for the block's largest |y|), with the sums `bsums` of each 16 q's,
//! which carry the minimums and offsets.

use candle_core::quantized::k_quants::{self as kq, GgmlType};
use candle_core::quantized::GgmlDType;
use half::f16;

/// Values per super-block.
pub(crate) const QK_K: usize = 256;

/// ggml's `block_q4_K`.
#[derive(Debug, Clone, PartialEq)]
#[repr(C)]
pub struct Q4K {
    pub(crate) d: f16,
    pub(crate) dmin: f16,
    pub(crate) scales: [u8; 12],
    pub(crate) qs: [u8; QK_K / 2],
}

/// ggml's `block_q6_K`.
#[derive(Debug, Clone, PartialEq)]
#[repr(C)]
pub struct Q6K {
    pub(crate) ql: [u8; QK_K / 2],
    pub(crate) qh: [u8; QK_K / 4],
    pub(crate) scales: [i8; QK_K / 16],
    pub(crate) d: f16,
}

/// ggml's `block_q8_K`: an activation block.
#[derive(Debug, Clone, PartialEq)]
#[repr(C)]
pub struct Q8K {
    pub(crate) d: f32,
    pub(crate) qs: [i8; QK_K],
    pub(crate) bsums: [i16; QK_K / 16],
}

const _: () = assert!(std::mem::size_of::<Q4K>() == std::mem::size_of::<kq::BlockQ4K>());
const _: () = assert!(std::mem::size_of::<Q6K>() == std::mem::size_of::<kq::BlockQ6K>());
const _: () = assert!(std::mem::size_of::<Q8K>() == std::mem::size_of::<kq::BlockQ8K>());

/// candle's block of the same layout (for its reference dequantization and dot products).
fn as_candle<A, B>(xs: &[A]) -> &[B] {
    assert_eq!(std::mem::size_of::<A>(), std::mem::size_of::<B>());
    assert_eq!(std::mem::align_of::<A>(), std::mem::align_of::<B>());
    // SAFETY: both are `repr(C)` plain-data blocks of ggml's layout, of the same size and
    // alignment (checked above), valid for any bits.
    unsafe { std::slice::from_raw_parts(xs.as_ptr().cast::<B>(), xs.len()) }
}

fn as_candle_mut<A, B>(xs: &mut [A]) -> &mut [B] {
    assert_eq!(std::mem::size_of::<A>(), std::mem::size_of::<B>());
    assert_eq!(std::mem::align_of::<A>(), std::mem::align_of::<B>());
    // SAFETY: as in `as_candle`.
    unsafe { std::slice::from_raw_parts_mut(xs.as_mut_ptr().cast::<B>(), xs.len()) }
}

/// Q4_K's six-bit scale and minimum of sub-block `j` (ggml's `get_scale_min_k4`).
#[inline(always)]
pub(crate) fn scale_min(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

impl GgmlType for Q8K {
    const DTYPE: GgmlDType = GgmlDType::Q8K;
    const BLCK_SIZE: usize = QK_K;
    type VecDotType = Q8K;

    fn to_float(xs: &[Self], ys: &mut [f32]) {
        kq::BlockQ8K::to_float(as_candle(xs), ys)
    }
    fn from_float(xs: &[f32], ys: &mut [Self]) {
        // ggml's quantize_row_q8_K, as candle writes it.
        kq::BlockQ8K::from_float(xs, as_candle_mut(ys))
    }
    fn vec_dot(n: usize, xs: &[Self], ys: &[Self]) -> f32 {
        kq::BlockQ8K::vec_dot(n, as_candle(xs), as_candle(ys))
    }
    fn vec_dot_unopt(n: usize, xs: &[Self], ys: &[Self]) -> f32 {
        kq::BlockQ8K::vec_dot_unopt(n, as_candle(xs), as_candle(ys))
    }
}

macro_rules! k_block {
    ($t:ty, $candle:ty, $dtype:expr, $simd:ident, $simd4:ident) => {
        impl GgmlType for $t {
            const DTYPE: GgmlDType = $dtype;
            const BLCK_SIZE: usize = QK_K;
            type VecDotType = Q8K;

            fn to_float(xs: &[Self], ys: &mut [f32]) {
                <$candle>::to_float(as_candle(xs), ys)
            }
            fn from_float(_xs: &[f32], _ys: &mut [Self]) {
                // Weights are read from files, never quantized here.
                unimplemented!("quantizing to {:?}", $dtype)
            }
            super::blocks::simd_dots!(Q8K, $simd, $simd4);
            fn vec_dot_unopt(n: usize, xs: &[Self], ys: &[Q8K]) -> f32 {
                <$candle>::vec_dot_unopt(n, as_candle(xs), as_candle(ys))
            }
        }
    };
}

k_block!(Q4K, kq::BlockQ4K, GgmlDType::Q4K, dot_q4k, dot4_q4k);
k_block!(Q6K, kq::BlockQ6K, GgmlDType::Q6K, dot_q6k, dot4_q6k);

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::QTensor;
    use candle_core::{Device, Tensor};

    /// Our dot products equal candle's reference ones (ggml's scalar code) on real
    /// quantized rows, one row and four at once.
    #[test]
    fn dots_equal_candles_reference() -> candle_core::Result<()> {
        fn check<T: GgmlType<VecDotType = Q8K>>(dtype: GgmlDType) -> candle_core::Result<()> {
            let (rows, k) = (4, 4 * QK_K);
            let w = Tensor::arange(0f32, (rows * k) as f32, &Device::Cpu)?
                .reshape((rows, k))?
                .affine(0.0137, 0.3)?
                .sin()?;
            let q = QTensor::quantize(&w, dtype)?;
            let data = q.data()?;
            let blocks = super::super::blocks::cast::<T>(&data, rows * k / QK_K)?;
            let row = |r: usize| &blocks[r * k / QK_K..(r + 1) * k / QK_K];
            let x: Vec<f32> = (0..k)
                .map(|i| ((i as f32) * 0.731).cos() * 2.0 - 0.4)
                .collect();
            let mut y = vec![Q8K::zeros(); k / QK_K];
            Q8K::from_float(&x, &mut y);
            for r in 0..rows {
                let (fast, slow) = (T::vec_dot(k, row(r), &y), T::vec_dot_unopt(k, row(r), &y));
                assert!(
                    (fast - slow).abs() <= 1e-4 * slow.abs().max(1.0),
                    "{dtype:?}: {fast} vs {slow}"
                );
                assert!(slow.abs() > 0.1, "a dot product that is not zero");
            }
            let (a, b, c, d) = T::vec_dot_4(k, row(0), row(1), row(2), row(3), &y);
            for (r, got) in [a, b, c, d].into_iter().enumerate() {
                let want = T::vec_dot_unopt(k, row(r), &y);
                assert!(
                    (got - want).abs() <= 1e-4 * want.abs().max(1.0),
                    "{dtype:?} x4 row {r}"
                );
            }
            Ok(())
        }
        check::<Q4K>(GgmlDType::Q4K)?;
        check::<Q6K>(GgmlDType::Q6K)
    }
}
