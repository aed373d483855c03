//! A weight matrix and its products in each of the engine's [`Products`].
//!
//! The exact (f32) form is either dense, or kept as its file stores it (GGUF quantized
//! blocks, or bf16/f16 from safetensors) and converted exactly, one block of rows at a time,
//! each time a pass uses it: a model whose f32 copy would not fit in memory still runs (a 4B
//! model is 16 GB in f32, 8 GB in bf16 and about 2.5 GB in Q4_K). Gradients are the same
//! either way: the converted values are the model, and no backward pass here differentiates the
//! weights.
//!
//! Beside it: a GGUF matrix keeps its quantized blocks for forward-only products on the
//! weights as stored ([`Products::Stored`]), and a dense matrix gets a bf16 copy the first
//! time a pass multiplies in bf16 ([`Products::Bf16`]; 16-bit safetensors are used as they
//! are, stored blocks are converted a block of rows at a time).

use crate::kernels::{self, quantized, Products};
use candle_core::quantized::QTensor;
use candle_core::{DType, Device, Result, Tensor};
use std::sync::{Arc, OnceLock};

/// The most input rows a product on stored blocks reads them directly for.
const STORED_ROWS: usize = 8;

/// One weight matrix `[out, in]`.
#[derive(Debug, Clone)]
pub struct Weight {
    exact: Exact,
    /// The GGUF blocks, when the file quantizes this matrix (on the CPU).
    blocks: Option<Arc<QTensor>>,
    /// The bf16 copy of a dense matrix, made on first use; shared by clones (a tied output
    /// layer shares the embedding's).
    bf16: Arc<OnceLock<Tensor>>,
    /// The blocks on a GPU, copied there on first use for candle's CUDA quantized kernels.
    device_blocks: Arc<OnceLock<Arc<QTensor>>>,
}

#[derive(Debug, Clone)]
enum Exact {
    /// Dense, in the compute dtype, on the compute device.
    Dense(Tensor),
    /// GGUF blocks dequantized to `dtype` on `device` on each use.
    Stored { dtype: DType, device: Device },
    /// A 16-bit float matrix (bf16/f16 safetensors) on the compute device, widened to
    /// `dtype` (exact) on each use.
    Half { t: Tensor, dtype: DType },
}

impl Weight {
    /// A dense matrix.
    pub fn dense(t: Tensor) -> Self {
        Weight::new(Exact::Dense(t), None)
    }

    /// A GGUF matrix: `dense` when the model holds it dense (the blocks are kept beside it
    /// for forward-only products), else converted from the blocks on each use.
    pub fn from_blocks(
        q: Arc<QTensor>,
        dense: Option<Tensor>,
        dtype: DType,
        device: &Device,
    ) -> Self {
        let exact = match dense {
            Some(t) => Exact::Dense(t),
            None => Exact::Stored {
                dtype,
                device: device.clone(),
            },
        };
        // A float GGUF matrix (F32/F16/BF16) held dense needs its tensor no more.
        let keep = matches!(exact, Exact::Stored { .. }) || quantized::readable(q.dtype());
        Weight::new(exact, keep.then_some(q))
    }

    /// A 16-bit safetensors matrix kept as stored and widened to `dtype` per use.
    pub fn half(t: Tensor, dtype: DType) -> Self {
        Weight::new(Exact::Half { t, dtype }, None)
    }

    fn new(exact: Exact, blocks: Option<Arc<QTensor>>) -> Self {
        Weight {
            exact,
            blocks,
            bf16: Arc::default(),
            device_blocks: Arc::default(),
        }
    }

    /// The stored blocks a `Stored` product reads, when the file quantizes this matrix.
    fn readable_blocks(&self) -> Option<&QTensor> {
        self.blocks
            .as_deref()
            .filter(|q| quantized::readable(q.dtype()))
    }

    /// The matrix as a dense tensor in the compute dtype: the tensor itself, or a fresh
    /// exact copy that is freed when the caller drops it.
    pub fn to_dense(&self) -> Result<Tensor> {
        match &self.exact {
            Exact::Dense(t) => Ok(t.clone()),
            Exact::Stored { .. } => {
                let (rows, _) = self.dims()?;
                self.rows(0, rows)
            }
            Exact::Half { t, dtype } => t.to_dtype(*dtype),
        }
    }

    /// Rows `start..start + len`, exact (stored blocks dequantize only these rows).
    pub fn rows(&self, start: usize, len: usize) -> Result<Tensor> {
        match (&self.exact, &self.blocks) {
            (Exact::Dense(t), _) => t.narrow(0, start, len),
            (Exact::Stored { dtype, device }, Some(q)) => {
                quantized::dequant::rows(q, start, len, *dtype)?.to_device(device)
            }
            (Exact::Stored { .. }, None) => candle_core::bail!("a stored matrix without blocks"),
            (Exact::Half { t, dtype }, _) => t.narrow(0, start, len)?.to_dtype(*dtype),
        }
    }

    /// Rows `start..start + len` in bf16 (a stored matrix's blocks converted straight to it).
    fn rows_bf16(&self, start: usize, len: usize) -> Result<Tensor> {
        match (&self.exact, &self.blocks) {
            (Exact::Stored { device, .. }, Some(q)) if device.is_cpu() => {
                quantized::dequant::rows(q, start, len, DType::BF16)
            }
            _ => kernels::to_bf16(&self.rows(start, len)?),
        }
    }

    /// The rows of these ids, in order, exact: an embedding lookup.
    pub fn gather(&self, ids: &[u32]) -> Result<Tensor> {
        match &self.exact {
            Exact::Dense(t) => t.embedding(&Tensor::new(ids, t.device())?),
            Exact::Half { t, dtype } => t
                .embedding(&Tensor::new(ids, t.device())?)?
                .to_dtype(*dtype),
            Exact::Stored { .. } => {
                let rows = ids
                    .iter()
                    .map(|&id| self.rows(id as usize, 1))
                    .collect::<Result<Vec<_>>>()?;
                Tensor::cat(&rows, 0)
            }
        }
    }

    /// The products this matrix can run: bf16 where the machine has no bf16 products is
    /// f32, and stored products on a matrix without quantized blocks are bf16 where bf16 is
    /// faster (matrix units or a GPU; emulated bf16 is not).
    fn effective(&self, p: Products, x: &Tensor) -> Products {
        let gpu = !x.device().is_cpu();
        let bf16 = gpu || kernels::bf16_available();
        let fast = gpu || kernels::bf16_units();
        let rows = x.elem_count() / x.dims().last().copied().unwrap_or(1).max(1);
        match p {
            // On a GPU, candle's CUDA kernels read the blocks for any number of rows.
            Products::Stored if self.readable_blocks().is_some() && !x.device().is_cpu() => {
                Products::Stored
            }
            // Inputs of many rows (a prompt's prefill, the curves' batches) convert the blocks
            // to bf16 once for the matrix units instead: each row's dot products over the
            // blocks cost more (SmolLM2's and the 4B shape's prefill took 3-4× as long). A
            // CPU without bf16 products multiplies them in f32 (on an AMD EPYC without bf16,
            // a 217-token prefill took 2.5-2.9× as long through the blocks, BENCHMARKS.md).
            Products::Stored if rows > STORED_ROWS && fast => Products::Bf16,
            Products::Stored if rows > STORED_ROWS => Products::F32,
            Products::Stored if self.readable_blocks().is_some() => Products::Stored,
            Products::Stored if fast => Products::Bf16,
            Products::Bf16 if bf16 => Products::Bf16,
            _ => Products::F32,
        }
    }

    /// The blocks `q` on `device` (a GPU), copied there once.
    fn blocks_on(&self, q: &QTensor, device: &Device) -> Result<Arc<QTensor>> {
        if let Some(d) = self.device_blocks.get() {
            return Ok(d.clone());
        }
        let storage = candle_core::quantized::QStorage::from_data(q.data()?, device, q.dtype())?;
        let d = Arc::new(QTensor::new(storage, q.shape().clone())?);
        Ok(self.device_blocks.get_or_init(|| d).clone())
    }

    /// The bf16 form of a matrix held whole (dense, or bf16 safetensors), if it is.
    fn whole_bf16(&self) -> Result<Option<Tensor>> {
        match &self.exact {
            Exact::Half { t, .. } if t.dtype() == DType::BF16 => Ok(Some(t.clone())),
            Exact::Dense(t) => {
                if let Some(w) = self.bf16.get() {
                    return Ok(Some(w.clone()));
                }
                let w = kernels::to_bf16(t)?;
                Ok(Some(self.bf16.get_or_init(|| w).clone()))
            }
            _ => Ok(None),
        }
    }

    /// `x · Wᵀ` for `x: (k, in)` → `(k, out)`, with products `p`.
    pub fn forward(&self, x: &Tensor, p: Products) -> Result<Tensor> {
        let p = self.effective(p, x);
        let x16 = match p {
            Products::Bf16 => Some(kernels::to_bf16(x)?),
            _ => None,
        };
        self.product(x, x16.as_ref(), p)?.to_dtype(x.dtype())
    }

    /// `x · Wᵀ` with the products `p` this matrix runs (see [`Weight::effective`]), `x16`
    /// being `x` in bf16 for bf16 products (converted once for every matrix that reads it).
    fn product(&self, x: &Tensor, x16: Option<&Tensor>, p: Products) -> Result<Tensor> {
        match (p, x16) {
            (Products::Stored, _) => match self.readable_blocks() {
                Some(q) if x.device().is_cpu() => quantized::matmul_t(q, x),
                Some(q) => x.apply_op1_no_bwd(&*self.blocks_on(q, x.device())?),
                None => candle_core::bail!("no stored blocks"),
            },
            (Products::Bf16, Some(x16)) => match self.whole_bf16()? {
                Some(w) => kernels::matmul_bf16(x16, &w.t()?),
                None => self.by_blocks_t(x16, true),
            },
            _ => match &self.exact {
                Exact::Dense(t) => kernels::matmul(x, &t.t()?),
                _ => self.by_blocks_t(x, false),
            },
        }
    }

    /// [`Weight::forward`] of several matrices on one input: stored products read them in
    /// one pass over the cores after one quantization of `x`.
    pub fn forward_many(ws: &[&Weight], x: &Tensor, p: Products) -> Result<Vec<Tensor>> {
        let stored: Option<Vec<&QTensor>> = ws
            .iter()
            .map(|w| {
                (w.effective(p, x) == Products::Stored)
                    .then(|| w.readable_blocks())
                    .flatten()
            })
            .collect();
        if let Some(qs) = stored.filter(|qs| qs.len() > 1 && x.device().is_cpu()) {
            return quantized::matmul_t_many(&qs, x)?
                .into_iter()
                .map(|t| t.to_dtype(x.dtype()))
                .collect();
        }
        // The input in bf16 once, for every matrix that multiplies in bf16.
        let bf16 = ws.iter().any(|w| w.effective(p, x) == Products::Bf16);
        let x16 = bf16.then(|| kernels::to_bf16(x)).transpose()?;
        ws.iter()
            .map(|w| {
                w.product(x, x16.as_ref(), w.effective(p, x))?
                    .to_dtype(x.dtype())
            })
            .collect()
    }

    /// `x · Wᵀ` a block of rows at a time, each converted (to bf16 with `bf16`, `x` being
    /// in bf16 then, else exactly) just before its product: the output's columns, joined.
    fn by_blocks_t(&self, x: &Tensor, bf16: bool) -> Result<Tensor> {
        let parts = self
            .row_blocks()?
            .map(|(start, len)| {
                if bf16 {
                    kernels::matmul_bf16(x, &self.rows_bf16(start, len)?.t()?)
                } else {
                    kernels::matmul(x, &self.rows(start, len)?.t()?)
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Tensor::cat(&parts, 1)
    }

    /// `dy · W` for `dy: (k, out)` → `(k, in)`: cotangents of the outputs carried to the
    /// input, with products `p` (stored products have no transposed form: bf16).
    pub fn vjp(&self, dy: &Tensor, p: Products) -> Result<Tensor> {
        let p = self.effective(p.for_backward(), dy);
        let whole = match p {
            Products::Bf16 => self.whole_bf16()?,
            _ => match &self.exact {
                Exact::Dense(t) => Some(t.clone()),
                _ => None,
            },
        };
        let product = |a: &Tensor, b: &Tensor| match p {
            Products::F32 => kernels::matmul(a, b),
            _ => kernels::matmul_bf16(a, b),
        };
        if let Some(w) = whole {
            return product(dy, &w)?.to_dtype(dy.dtype());
        }
        let mut sum: Option<Tensor> = None;
        for (start, len) in self.row_blocks()? {
            let rows = match p {
                Products::F32 => self.rows(start, len)?,
                _ => self.rows_bf16(start, len)?,
            };
            let part = product(&dy.narrow(1, start, len)?.contiguous()?, &rows)?;
            sum = Some(match sum {
                Some(s) => (s + part)?,
                None => part,
            });
        }
        sum.ok_or_else(|| candle_core::Error::Msg("an empty matrix".into()))?
            .to_dtype(dy.dtype())
    }

    /// `(start, len)` of the blocks of rows a stored matrix is converted in: about 2 MB of
    /// bf16 (4 MB of f32), so that each block's conversion and product stay in cache and its
    /// buffer is reused rather than mapped fresh (a 50 MB block spent more time faulting its
    /// pages in than converting).
    fn row_blocks(&self) -> Result<impl Iterator<Item = (usize, usize)>> {
        const BLOCK_VALUES: usize = 1 << 20;
        let (rows, cols) = self.dims()?;
        let block = (BLOCK_VALUES / cols.max(1)).clamp(64, rows.max(64));
        Ok((0..rows)
            .step_by(block)
            .map(move |start| (start, block.min(rows - start))))
    }

    /// Bytes a decoding step on products `p` reads of this matrix: its quantized blocks for
    /// stored products, else its dense form (f32 or the bf16 copy).
    pub fn bytes_read(&self, p: Products) -> u64 {
        let elems = self.dims().map_or(0, |(r, c)| (r * c) as u64);
        match (p, self.readable_blocks()) {
            (Products::Stored, Some(q)) => q.storage_size_in_bytes() as u64,
            (Products::Bf16 | Products::Stored, _) => 2 * elems,
            (Products::F32, _) => elems * self.compute_dtype().size_in_bytes() as u64,
        }
    }

    /// Whether forward-only products can read this matrix's quantized blocks.
    pub fn has_blocks(&self) -> bool {
        self.readable_blocks().is_some()
    }

    /// True when the exact form is converted per use (not held dense).
    pub fn is_stored(&self) -> bool {
        !matches!(self.exact, Exact::Dense(_))
    }

    /// The dtype a pass computes in.
    pub fn compute_dtype(&self) -> DType {
        match &self.exact {
            Exact::Dense(t) => t.dtype(),
            Exact::Stored { dtype, .. } | Exact::Half { dtype, .. } => *dtype,
        }
    }

    /// `(out, in)`.
    pub fn dims(&self) -> Result<(usize, usize)> {
        match (&self.exact, &self.blocks) {
            (Exact::Dense(t), _) | (Exact::Half { t, .. }, _) => t.dims2(),
            (Exact::Stored { .. }, Some(q)) => q.shape().dims2(),
            (Exact::Stored { .. }, None) => candle_core::bail!("a stored matrix without blocks"),
        }
    }

    /// The matrix of rows `start..start + len`, held as this one is (a part of a fused matrix:
    /// Phi-3's `qkv_proj`). Stored blocks are cut along rows, which they never cross.
    /// A stack of matrices `(n, rows, columns)` (sparse experts) is cut as `(n · rows, columns)`.
    pub fn row_range(&self, start: usize, len: usize) -> Result<Weight> {
        let cut = |t: &Tensor| {
            let cols = t.dims().last().copied().unwrap_or(1);
            t.reshape(((), cols))?.narrow(0, start, len)?.contiguous()
        };
        let exact = match &self.exact {
            Exact::Dense(t) => Exact::Dense(cut(t)?),
            Exact::Half { t, dtype } => Exact::Half {
                t: cut(t)?,
                dtype: *dtype,
            },
            stored @ Exact::Stored { .. } => stored.clone(),
        };
        let blocks = match &self.blocks {
            Some(q) => Some(Arc::new(block_rows(q, start, len)?)),
            None => None,
        };
        Ok(Weight::new(exact, blocks))
    }
}

/// Rows `start..start + len` of stored blocks, as blocks (on the CPU).
fn block_rows(q: &QTensor, start: usize, len: usize) -> Result<QTensor> {
    let dims = q.shape().dims();
    let cols = dims.last().copied().unwrap_or(1);
    let rows = dims.iter().product::<usize>() / cols.max(1);
    let kind = q.dtype();
    if start + len > rows || !cols.is_multiple_of(kind.block_size()) {
        candle_core::bail!(
            "rows {start}..{} of a {rows}×{cols} {kind:?} matrix",
            start + len
        )
    }
    let row_bytes = cols / kind.block_size() * kind.type_size();
    let data = q.data()?;
    let part = data[start * row_bytes..(start + len) * row_bytes].to_vec();
    let storage = candle_core::quantized::QStorage::from_data(
        std::borrow::Cow::Owned(part),
        &Device::Cpu,
        kind,
    )?;
    QTensor::new(storage, (len, cols))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::GgmlDType;

    fn max_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
        (a - b)?.abs()?.max_all()?.to_scalar::<f32>()
    }

    #[test]
    fn stored_weights_dequantize_to_the_dense_values() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::arange(0f32, 512., &dev)?
            .reshape((2, 256))?
            .affine(0.01, -1.0)?;
        let q = Arc::new(QTensor::quantize(&x, GgmlDType::Q8_0)?);
        let dense = Weight::dense(q.dequantize(&dev)?);
        let stored = Weight::from_blocks(q, None, DType::F32, &dev);
        assert_eq!(max_diff(&dense.to_dense()?, &stored.to_dense()?)?, 0.0);
        assert_eq!(max_diff(&dense.rows(1, 1)?, &stored.rows(1, 1)?)?, 0.0);
        assert_eq!(
            max_diff(&dense.gather(&[1, 0, 1])?, &stored.gather(&[1, 0, 1])?)?,
            0.0
        );
        let v = Tensor::arange(0f32, 256., &dev)?.reshape((1, 256))?;
        let f = |w: &Weight| w.forward(&v, Products::F32);
        assert_eq!(max_diff(&f(&dense)?, &f(&stored)?)?, 0.0);
        let dy = Tensor::new(&[[0.5f32, -2.0]], &dev)?;
        let b = |w: &Weight| w.vjp(&dy, Products::F32);
        assert_eq!(max_diff(&b(&dense)?, &b(&stored)?)?, 0.0);
        assert!(stored.rows(2, 1).is_err());
        assert!(stored.is_stored() && !dense.is_stored());
        Ok(())
    }

    #[test]
    fn row_ranges_of_fused_matrices_keep_their_form() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::arange(0f32, 12. * 256., &dev)?
            .reshape((12, 256))?
            .affine(0.003, -2.0)?
            .sin()?;
        for kind in [GgmlDType::Q4K, GgmlDType::Q8_0, GgmlDType::F32] {
            let q = Arc::new(QTensor::quantize(&x, kind)?);
            let exact = q.dequantize(&dev)?;
            let forms = [
                Weight::from_blocks(q.clone(), Some(exact.clone()), DType::F32, &dev),
                Weight::from_blocks(q, None, DType::F32, &dev),
            ];
            for w in forms {
                let part = w.row_range(5, 4)?;
                assert_eq!(part.dims()?, (4, 256));
                assert_eq!(max_diff(&part.to_dense()?, &exact.narrow(0, 5, 4)?)?, 0.0);
                assert_eq!(part.has_blocks(), w.has_blocks(), "{kind:?}");
            }
        }
        // A stack of matrices (sparse experts, `(experts, rows, columns)`) is cut as its rows
        // one under another: expert 1's rows 0..4 are rows 4..8.
        let stack = x.reshape((3, 4, 256))?;
        let q = Arc::new(QTensor::quantize(&stack, GgmlDType::Q8_0)?);
        let exact = q.dequantize(&dev)?.reshape((12, 256))?;
        let part = Weight::from_blocks(q, None, DType::F32, &dev).row_range(4, 4)?;
        assert_eq!(max_diff(&part.to_dense()?, &exact.narrow(0, 4, 4)?)?, 0.0);
        let dense = Weight::dense(stack).row_range(4, 4)?;
        assert_eq!(max_diff(&dense.to_dense()?, &x.narrow(0, 4, 4)?)?, 0.0);
        let half = Weight::half(x.to_dtype(DType::BF16)?, DType::F32);
        let want = x
            .to_dtype(DType::BF16)?
            .to_dtype(DType::F32)?
            .narrow(0, 2, 3)?;
        assert_eq!(max_diff(&half.row_range(2, 3)?.to_dense()?, &want)?, 0.0);
        assert!(Weight::dense(x).row_range(10, 3).is_err());
        Ok(())
    }

    #[test]
    fn half_weights_widen_to_the_dense_values() -> Result<()> {
        let dev = Device::Cpu;
        // 4100 rows of 512: three of the 2048-row blocks products convert at a time.
        let x = Tensor::arange(0f32, 4100. * 512., &dev)?
            .reshape((4100, 512))?
            .affine(0.37, -3.0)?
            .sin()?
            .to_dtype(DType::BF16)?;
        let dense = Weight::dense(x.to_dtype(DType::F32)?);
        let half = Weight::half(x.clone(), DType::F32);
        let same = |a: Tensor, b: Tensor| -> Result<()> {
            assert_eq!(max_diff(&a, &b)?, 0.0);
            Ok(())
        };
        same(dense.to_dense()?, half.to_dense()?)?;
        same(dense.rows(4097, 3)?, half.rows(4097, 3)?)?;
        same(dense.gather(&[4099, 0, 7])?, half.gather(&[4099, 0, 7])?)?;
        let v = Tensor::arange(0f32, 512., &dev)?
            .reshape((1, 512))?
            .affine(0.01, -1.0)?;
        // Equal up to the order of summation: within f32's rounding of Σ |v|·|w|.
        let bound = v.abs()?.matmul(&x.to_dtype(DType::F32)?.abs()?.t()?)?;
        let (a, b) = (
            dense.forward(&v, Products::F32)?,
            half.forward(&v, Products::F32)?,
        );
        let r = ((a - b)?.abs()? / bound)?.max_all()?.to_scalar::<f32>()?;
        assert!(r <= 1e-6, "forward: {r} of Σ|v||w|");
        let dy = Tensor::arange(0f32, 4100., &dev)?
            .reshape((1, 4100))?
            .affine(1e-3, 0.0)?;
        let bound = dy.abs()?.matmul(&x.to_dtype(DType::F32)?.abs()?)?;
        let (a, b) = (
            dense.vjp(&dy, Products::F32)?,
            half.vjp(&dy, Products::F32)?,
        );
        let r = ((a - b)?.abs()? / bound)?.max_all()?.to_scalar::<f32>()?;
        assert!(r <= 1e-6, "vjp: {r} of Σ|dy||w|");
        assert!(half.is_stored());
        assert_eq!(half.compute_dtype(), DType::F32);
        Ok(())
    }

    /// Every form's bf16 and stored products are the exact ones up to the rounding of their
    /// operands, in every layout a matrix can be held in: each output within the rounding
    /// unit times Σ |a|·|b| over its terms (bf16: 2⁻⁸ for the two operands' 2⁻⁹ each; stored
    /// blocks: 2⁻⁶, the activations' 8 bits per block of 32).
    #[test]
    fn bf16_and_stored_products_are_exact_up_to_rounding() -> Result<()> {
        let dev = Device::Cpu;
        let w = Tensor::arange(0f32, 96. * 4200., &dev)?
            .reshape((4200, 96))?
            .affine(0.013, 0.0)?
            .sin()?;
        let q = Arc::new(QTensor::quantize(&w, GgmlDType::Q8_0)?);
        let exact = q.dequantize(&dev)?;
        let forms = [
            Weight::from_blocks(q.clone(), Some(exact.clone()), DType::F32, &dev),
            Weight::from_blocks(q, None, DType::F32, &dev),
            Weight::half(exact.to_dtype(DType::BF16)?, DType::F32),
        ];
        let x = Tensor::arange(0f32, 3. * 96., &dev)?
            .reshape((3, 96))?
            .affine(0.7, 0.3)?
            .cos()?;
        let dy = Tensor::arange(0f32, 3. * 4200., &dev)?
            .reshape((3, 4200))?
            .affine(0.11, 0.0)?
            .sin()?;
        // Σ |a|·|b| per output: the scale of any operand's rounding error.
        let fwd_bound = x.abs()?.matmul(&exact.abs()?.t()?)?;
        let vjp_bound = dy.abs()?.matmul(&exact.abs()?)?;
        let within = |got: &Tensor, want: &Tensor, bound: &Tensor, unit: f32| -> Result<f32> {
            let worst = ((got - want)?.abs()? / bound)?
                .max_all()?
                .to_scalar::<f32>()?;
            Ok(worst / unit)
        };
        for (i, w) in forms.iter().enumerate() {
            let want = w.forward(&x, Products::F32)?;
            for (p, unit) in [
                (Products::Bf16, 2f32.powi(-8)),
                (Products::Stored, 2f32.powi(-6)),
            ] {
                let got = w.forward(&x, p)?;
                assert_eq!(got.dims(), want.dims());
                let r = within(&got, &want, &fwd_bound, unit)?;
                assert!(r <= 1.0, "form {i} {p:?}: {r} rounding units");
                // Rounded, unless the machine has no bf16 products (then bf16 is f32) and
                // the product reads no quantized blocks (form 2 has none; stored products
                // there are bf16 only on the matrix units).
                let rounded = match p {
                    Products::Bf16 => kernels::bf16_available(),
                    _ => kernels::bf16_units() || i < 2,
                };
                if rounded {
                    assert!(
                        max_diff(&got, &want)? > 0.0,
                        "form {i} {p:?}: not rounded at all?"
                    );
                }
            }
            let want = w.vjp(&dy, Products::F32)?;
            for p in [Products::Bf16, Products::Stored] {
                let r = within(&w.vjp(&dy, p)?, &want, &vjp_bound, 2f32.powi(-8))?;
                assert!(r <= 1.0, "form {i} vjp {p:?}: {r} rounding units");
            }
        }
        Ok(())
    }
}
