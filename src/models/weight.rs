//! A weight matrix either dense in the compute dtype, or kept as its file stores it (GGUF
//! quantized blocks, or bf16/f16 from safetensors) and converted exactly, one matrix at a
//! time, each time a pass uses it. The second lets a model whose f32 copy would not fit in
//! memory run at all: a 4B model is 16 GB in f32, 8 GB in bf16 and about 2.5 GB in Q4_K.
//! Gradients are the same either way: the converted values are the model, and attribution
//! never differentiates the weights.

use candle_core::quantized::{QStorage, QTensor};
use candle_core::{DType, Device, Result, Tensor};
use std::sync::Arc;

/// One weight matrix `[out, in]`.
#[derive(Debug, Clone)]
pub enum Weight {
    /// Dense, in the compute dtype, on the compute device.
    Dense(Tensor),
    /// GGUF quantized blocks as stored in the file; dequantized to `dtype` on `device` on
    /// each use.
    Stored {
        /// The quantized tensor, on the CPU.
        q: Arc<QTensor>,
        /// The compute dtype.
        dtype: DType,
        /// The compute device.
        device: Device,
    },
    /// A 16-bit float matrix (bf16/f16 safetensors) on the compute device; widened to
    /// `dtype` (exact) on each use.
    Half {
        /// The bf16 or f16 tensor.
        t: Tensor,
        /// The compute dtype.
        dtype: DType,
    },
}

impl Weight {
    /// The matrix as a dense tensor: the tensor itself, or a fresh dequantized copy that is
    /// freed when the caller drops it.
    pub fn dense(&self) -> Result<Tensor> {
        match self {
            Weight::Dense(t) => Ok(t.clone()),
            Weight::Stored { q, dtype, device } => q
                .dequantize(&Device::Cpu)?
                .to_dtype(*dtype)?
                .to_device(device),
            Weight::Half { t, dtype } => t.to_dtype(*dtype),
        }
    }

    /// Rows `start..start + len` (a stored matrix dequantizes only their blocks).
    pub fn rows(&self, start: usize, len: usize) -> Result<Tensor> {
        match self {
            Weight::Dense(t) => t.narrow(0, start, len),
            Weight::Stored { q, dtype, device } => stored_rows(q, start, len)?
                .dequantize(&Device::Cpu)?
                .to_dtype(*dtype)?
                .to_device(device),
            Weight::Half { t, dtype } => t.narrow(0, start, len)?.to_dtype(*dtype),
        }
    }

    /// The rows of these ids, in order: an embedding lookup.
    pub fn gather(&self, ids: &[u32]) -> Result<Tensor> {
        match self {
            Weight::Dense(t) => t.embedding(&Tensor::new(ids, t.device())?),
            Weight::Half { t, dtype } => t
                .embedding(&Tensor::new(ids, t.device())?)?
                .to_dtype(*dtype),
            Weight::Stored { .. } => {
                let rows = ids
                    .iter()
                    .map(|&id| self.rows(id as usize, 1))
                    .collect::<Result<Vec<_>>>()?;
                Tensor::cat(&rows, 0)
            }
        }
    }

    /// `W · x` for `x: [in, k]` → `[out, k]` (a stored matrix is converted a block of rows at
    /// a time, so a vocabulary-sized output layer never needs its whole dense copy).
    pub fn matmul(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Weight::Dense(t) => super::blas::matmul(t, x),
            Weight::Stored { .. } | Weight::Half { .. } => {
                let parts = self
                    .row_blocks()?
                    .map(|(start, len)| super::blas::matmul(&self.rows(start, len)?, x))
                    .collect::<Result<Vec<_>>>()?;
                Tensor::cat(&parts, 0)
            }
        }
    }

    /// `(start, len)` of the blocks of rows a stored matrix is converted in: 64 MB of f32 for
    /// a 4096-wide matrix.
    fn row_blocks(&self) -> Result<impl Iterator<Item = (usize, usize)>> {
        const BLOCK: usize = 4096;
        let rows = self.rows_count()?;
        Ok((0..rows)
            .step_by(BLOCK)
            .map(move |start| (start, BLOCK.min(rows - start))))
    }

    /// `x · Wᵀ` for `x: [k, in]` → `[k, out]`, row-major: one product straight into rows for a
    /// dense matrix (OpenBLAS reads the transposed view), [`Weight::matmul`] transposed back
    /// otherwise.
    pub fn matmul_t(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Weight::Dense(t) => super::blas::matmul(x, &t.t()?),
            _ => self.matmul(&x.t()?.contiguous()?)?.t()?.contiguous(),
        }
    }

    /// `dy · W` for `dy: [k, out]` → `[k, in]`: cotangents of the outputs carried to the input
    /// (a stored matrix a block of rows at a time).
    pub fn vjp(&self, dy: &Tensor) -> Result<Tensor> {
        match self {
            Weight::Dense(t) => super::blas::matmul(dy, t),
            Weight::Stored { .. } | Weight::Half { .. } => {
                let mut sum: Option<Tensor> = None;
                for (start, len) in self.row_blocks()? {
                    let part = super::blas::matmul(
                        &dy.narrow(1, start, len)?.contiguous()?,
                        &self.rows(start, len)?,
                    )?;
                    sum = Some(match sum {
                        Some(s) => (s + part)?,
                        None => part,
                    });
                }
                sum.ok_or_else(|| candle_core::Error::Msg("an empty matrix".into()))
            }
        }
    }

    /// True when the matrix is kept as stored and converted per use.
    pub fn is_stored(&self) -> bool {
        !matches!(self, Weight::Dense(_))
    }

    /// The dtype a pass computes in.
    pub fn compute_dtype(&self) -> DType {
        match self {
            Weight::Dense(t) => t.dtype(),
            Weight::Stored { dtype, .. } | Weight::Half { dtype, .. } => *dtype,
        }
    }

    fn rows_count(&self) -> Result<usize> {
        match self {
            Weight::Dense(t) | Weight::Half { t, .. } => Ok(t.dims2()?.0),
            Weight::Stored { q, .. } => Ok(q.shape().dims2()?.0),
        }
    }
}

/// Rows `start..start + len` of a `[rows, cols]` quantized matrix, still quantized: each row
/// is a whole number of blocks, so the rows are a slice of the bytes.
fn stored_rows(q: &QTensor, start: usize, len: usize) -> Result<QTensor> {
    let (rows, cols) = q.shape().dims2()?;
    let dt = q.dtype();
    if start + len > rows || cols % dt.block_size() != 0 {
        candle_core::bail!(
            "rows {start}..{} of a {rows}×{cols} {dt:?} matrix",
            start + len
        );
    }
    let row_bytes = cols / dt.block_size() * dt.type_size();
    let data = q.data()?;
    let bytes = &data[start * row_bytes..(start + len) * row_bytes];
    let storage = QStorage::from_data(std::borrow::Cow::Borrowed(bytes), &Device::Cpu, dt)?;
    QTensor::new(storage, (len, cols))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::GgmlDType;

    #[test]
    fn stored_weights_dequantize_to_the_dense_values() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::arange(0f32, 512., &dev)?
            .reshape((2, 256))?
            .affine(0.01, -1.0)?;
        let q = QTensor::quantize(&x, GgmlDType::Q8_0)?;
        let dense = Weight::Dense(q.dequantize(&dev)?);
        let stored = Weight::Stored {
            q: Arc::new(q),
            dtype: DType::F32,
            device: dev.clone(),
        };
        let d = (dense.dense()? - stored.dense()?)?.abs()?.max_all()?;
        assert_eq!(d.to_scalar::<f32>()?, 0.0);
        let r = (dense.rows(1, 1)? - stored.rows(1, 1)?)?.abs()?.max_all()?;
        assert_eq!(r.to_scalar::<f32>()?, 0.0);
        let g = (dense.gather(&[1, 0, 1])? - stored.gather(&[1, 0, 1])?)?;
        assert_eq!(g.abs()?.max_all()?.to_scalar::<f32>()?, 0.0);
        let v = Tensor::arange(0f32, 256., &dev)?.reshape((256, 1))?;
        let m = (dense.matmul(&v)? - stored.matmul(&v)?)?.abs()?.max_all()?;
        assert_eq!(m.to_scalar::<f32>()?, 0.0);
        assert!(stored.rows(2, 1).is_err());
        assert!(stored.is_stored() && !dense.is_stored());
        Ok(())
    }

    #[test]
    fn half_weights_widen_to_the_dense_values() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::arange(0f32, 8200., &dev)?
            .reshape((4100, 2))?
            .affine(0.37, -3.0)?
            .to_dtype(DType::BF16)?;
        let dense = Weight::Dense(x.to_dtype(DType::F32)?);
        let half = Weight::Half {
            t: x,
            dtype: DType::F32,
        };
        let same = |a: Tensor, b: Tensor| -> Result<()> {
            let d = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert_eq!(d, 0.0);
            Ok(())
        };
        same(dense.dense()?, half.dense()?)?;
        same(dense.rows(4097, 3)?, half.rows(4097, 3)?)?;
        same(dense.gather(&[4099, 0, 7])?, half.gather(&[4099, 0, 7])?)?;
        // Over one 4096-row block, so the chunked product is exercised.
        let v = Tensor::new(&[[1f32], [-2.0]], &dev)?;
        same(dense.matmul(&v)?, half.matmul(&v)?)?;
        assert!(half.is_stored());
        assert_eq!(half.compute_dtype(), DType::F32);
        Ok(())
    }
}
