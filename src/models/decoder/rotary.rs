//! Rotary position embeddings: the tables every layer shares, their application (a
//! custom op with its own backward) and its inverse for the explicit backward pass.

use super::Config;
use candle_core::{DType, Device, Result, Tensor, D};

/// Rotary embedding tables, shared by every layer.
#[derive(Debug, Clone)]
pub(super) struct Rotary {
    cos: Tensor, // (max_pos, head_dim / 2)
    sin: Tensor,
    interleaved: bool,
    /// No rotation at all (a NoPE layer): `apply` and its inverse are the identity.
    identity: bool,
}

impl Rotary {
    /// Tables for base `theta`, each inverse frequency divided by its factor when given
    /// (scaled RoPE: Llama 3.1, Gemma 3's global layers).
    pub(super) fn new(
        cfg: &Config,
        theta: f64,
        factors: Option<&[f64]>,
        dtype: DType,
        dev: &Device,
    ) -> Result<Self> {
        let hd = cfg.head_dim();
        let scale = |i: usize| factors.and_then(|f| f.get(i)).copied().unwrap_or(1.0);
        let inv_freq: Vec<f32> = (0..hd / 2)
            .map(|i| (1.0 / theta.powf(2.0 * i as f64 / hd as f64) / scale(i)) as f32)
            .collect();
        let inv_freq = Tensor::from_vec(inv_freq, (1, hd / 2), dev)?;
        let pos = Tensor::arange(0u32, cfg.max_position_embeddings as u32, dev)?
            .to_dtype(DType::F32)?
            .reshape((cfg.max_position_embeddings, 1))?;
        let freqs = pos.broadcast_mul(&inv_freq)?;
        Ok(Rotary {
            cos: freqs.cos()?.to_dtype(dtype)?,
            sin: freqs.sin()?.to_dtype(dtype)?,
            interleaved: cfg.rope_interleaved,
            identity: false,
        })
    }

    /// The table of layers without position embeddings (SmolLM3's NoPE layers).
    pub(super) fn none(dev: &Device) -> Result<Self> {
        let empty = Tensor::zeros((0, 0), DType::F32, dev)?;
        Ok(Rotary {
            cos: empty.clone(),
            sin: empty,
            interleaved: false,
            identity: true,
        })
    }

    /// `x: (heads, seq, head_dim)` rotated for positions `offset..offset + seq`.
    pub(super) fn apply(&self, x: &Tensor, offset: usize) -> Result<Tensor> {
        if self.identity {
            return Ok(x.clone());
        }
        let n = x.dim(1)?;
        let cos = self.cos.narrow(0, offset, n)?;
        let sin = self.sin.narrow(0, offset, n)?;
        if x.track_op() && x.device().is_cpu() && x.dtype() == DType::F32 {
            // One graph node instead of a dozen per call; see `RopeOp`.
            x.contiguous()?.apply_op1(RopeOp {
                cos: cos.contiguous()?,
                sin: sin.contiguous()?,
                interleaved: self.interleaved,
            })
        } else {
            rotate(x, &cos, &sin, self.interleaved)
        }
    }

    /// The transpose of [`Rotary::apply`] at positions `0..seq` (a rotation by −θ), for
    /// cotangents `(.., seq, head_dim)` with any leading dimensions.
    pub(super) fn apply_inverse(&self, x: &Tensor) -> Result<Tensor> {
        if self.identity {
            return Ok(x.clone());
        }
        let dims = x.dims().to_vec();
        let (n, hd) = (x.dim(D::Minus2)?, x.dim(D::Minus1)?);
        let lead = x.elem_count() / (n * hd).max(1);
        let cos = self.cos.narrow(0, 0, n)?;
        let sin = self.sin.narrow(0, 0, n)?.neg()?;
        rotate(&x.reshape((lead, n, hd))?, &cos, &sin, self.interleaved)?.reshape(dims)
    }
}

/// Rotates `x: (heads, seq, head_dim)` by the angles whose cos and sin are `(seq, head_dim/2)`.
fn rotate(x: &Tensor, cos: &Tensor, sin: &Tensor, interleaved: bool) -> Result<Tensor> {
    let (h, n, hd) = x.dims3()?;
    if interleaved {
        // Pairs (0,1), (2,3), …: the layout of llama.cpp's permuted Q/K weights.
        let x = x.reshape((h, n, hd / 2, 2))?;
        let x0 = x.narrow(D::Minus1, 0, 1)?.squeeze(D::Minus1)?;
        let x1 = x.narrow(D::Minus1, 1, 1)?.squeeze(D::Minus1)?;
        let r0 = (x0.broadcast_mul(cos)? - x1.broadcast_mul(sin)?)?;
        let r1 = (x0.broadcast_mul(sin)? + x1.broadcast_mul(cos)?)?;
        Tensor::stack(&[r0, r1], D::Minus1)?.reshape((h, n, hd))
    } else {
        let x0 = x.narrow(D::Minus1, 0, hd / 2)?;
        let x1 = x.narrow(D::Minus1, hd / 2, hd / 2)?;
        let r0 = (x0.broadcast_mul(cos)? - x1.broadcast_mul(sin)?)?;
        let r1 = (x1.broadcast_mul(cos)? + x0.broadcast_mul(sin)?)?;
        Tensor::cat(&[r0, r1], D::Minus1)
    }
}

/// RoPE as one op. A rotation's gradient is the inverse rotation: rotate by −θ.
struct RopeOp {
    cos: Tensor, // (seq, head_dim / 2), f32, contiguous
    sin: Tensor,
    interleaved: bool,
}

impl candle_core::CustomOp1 for RopeOp {
    fn name(&self) -> &'static str {
        "rope"
    }

    fn cpu_fwd(
        &self,
        storage: &candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let (h, n, hd) = layout.shape().dims3()?;
        let x = crate::models::f32_slice(storage, layout, self.name())?;
        let cos = self.cos.flatten_all()?.to_vec1::<f32>()?;
        let sin = self.sin.flatten_all()?.to_vec1::<f32>()?;
        let half = hd / 2;
        let mut out = vec![0f32; x.len()];
        for head in 0..h {
            for t in 0..n {
                let base = (head * n + t) * hd;
                let (c, s) = (
                    &cos[t * half..(t + 1) * half],
                    &sin[t * half..(t + 1) * half],
                );
                for i in 0..half {
                    let (i0, i1) = if self.interleaved {
                        (base + 2 * i, base + 2 * i + 1)
                    } else {
                        (base + i, base + half + i)
                    };
                    let (x0, x1) = (x[i0], x[i1]);
                    out[i0] = x0 * c[i] - x1 * s[i];
                    out[i1] = x0 * s[i] + x1 * c[i];
                }
            }
        }
        Ok((candle_core::CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(rotate(
            &grad.detach(),
            &self.cos,
            &self.sin.neg()?,
            self.interleaved,
        )?))
    }
}
