//! Differentiable model families, built from primitive tensor ops so that every gradient is
//! exact (several of candle's fast kernels have no backward; see `docs/notes.md`).
//!
//! Models never mention attribution: at each point where an LRP rule may change the backward
//! pass (norm, activation, gate product, attention inputs) they call [`Rules`]. [`Plain`]
//! gives ordinary gradients; `methods::attnlrp` holds the LRP variants.

pub mod attention;
pub mod linear;
pub mod llama;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, DType, Device, Layout, Result, Shape, Storage, Tensor, D};

/// The backward-pass rules a model defers to. Every method must leave the forward values
/// unchanged; only gradients differ.
pub trait Rules: Sync {
    /// RMSNorm: `x / sqrt(mean(x²) + eps) * weight`.
    fn rms_norm(&self, x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
        rms_norm(x, weight, eps, false)
    }
    /// The MLP's activation applied to the gate projection (SiLU for Llama).
    fn silu(&self, gate: &Tensor) -> Result<Tensor> {
        gate.silu()
    }
    /// The MLP's elementwise product `act(gate) ⊙ up`.
    fn gate_product(&self, act: &Tensor, up: &Tensor) -> Result<Tensor> {
        act * up
    }
    /// Queries, keys and values as they enter attention.
    fn attention_inputs(
        &self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        Ok((q, k, v))
    }
}

/// Ordinary gradients.
#[derive(Debug, Clone, Copy, Default)]
pub struct Plain;

impl Rules for Plain {}

/// RMSNorm from primitives; `stop_variance` holds `1/sqrt(mean(x²)+eps)` constant in the
/// backward pass (LRP's identity rule) while the forward value is unchanged.
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64, stop_variance: bool) -> Result<Tensor> {
    let inv = (x.sqr()?.mean_keepdim(D::Minus1)? + eps)?.sqrt()?.recip()?;
    let inv = if stop_variance { inv.detach() } else { inv };
    x.broadcast_mul(&inv)?.broadcast_mul(weight)
}

/// Softmax over the last dimension from primitives (differentiable).
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

impl Plain {
    /// `&Plain` as a trait object.
    pub fn as_dyn(&self) -> &dyn Rules {
        self
    }
}

/// A graph-free CPU tensor holding a copy of a custom op's (contiguous) input.
pub(crate) fn cpu_tensor(storage: &CpuStorage, layout: &Layout) -> Result<Tensor> {
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("custom op input must be contiguous".into()))?;
    let shape = layout.shape();
    match storage.dtype() {
        DType::F32 => {
            Tensor::from_slice(&storage.as_slice::<f32>()?[start..end], shape, &Device::Cpu)
        }
        DType::BF16 => Tensor::from_slice(
            &storage.as_slice::<half::bf16>()?[start..end],
            shape,
            &Device::Cpu,
        ),
        DType::F16 => Tensor::from_slice(
            &storage.as_slice::<half::f16>()?[start..end],
            shape,
            &Device::Cpu,
        ),
        dt => candle_core::bail!("custom op: unsupported dtype {dt:?}"),
    }
}

/// A custom op's result: the storage of a CPU tensor, made contiguous.
pub(crate) fn into_cpu_storage(t: &Tensor) -> Result<(CpuStorage, Shape)> {
    let t = t.contiguous()?;
    let (s, l) = t.storage_and_layout();
    match &*s {
        Storage::Cpu(c) if l.start_offset() == 0 => Ok((c.clone(), l.shape().clone())),
        _ => candle_core::bail!("custom op: unexpected output storage"),
    }
}
