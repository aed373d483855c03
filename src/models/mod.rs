//! Differentiable model families. Every op has a backward pass: candle's fast kernels
//! (`candle_nn::ops::rms_norm`, `rope`, `softmax_last_dim`, quantized matmul, sdpa) have none
//! and silently cut the graph, so the models use primitive tensor ops, or fused custom ops
//! (`attention`, `gated`, `norm`, `linear`, `decoder::rotary`) whose backward passes are written beside them
//! and tested against their primitive twins.
//!
//! The backward pass takes its derivatives at the norms, the gated activation, attention's
//! inputs and the experts' weighting from a [`Derivatives`] (`derivatives.rs`): [`Ordinary`] gives the
//! chain of ordinary derivatives, and a caller may give others.

pub mod activation_memory;
pub mod attention;
pub mod config;
pub mod decoder;
pub mod derivatives;
pub mod family;
pub mod gated;
pub mod gated_delta;
pub mod gemma3;
pub mod gemma4;
pub mod linear;
pub mod llama;
pub mod mistral;
pub mod norm;
pub mod olmo2;
pub mod phi3;
pub mod qwen2;
pub mod qwen3;
pub mod qwen35;
pub mod qwen35_moe;
pub mod qwen3_moe;
pub mod rope_scaling;
pub mod smollm3;
pub mod weight;

/// Every family the engine knows. A new family: its module, and one line here.
pub static FAMILIES: &[&dyn family::Family] = &[
    &llama::Llama,
    &qwen2::Qwen2,
    &qwen3::Qwen3,
    &qwen3_moe::Qwen3Moe,
    &qwen35::Qwen35,
    &qwen35_moe::Qwen35Moe,
    &gemma3::Gemma3,
    &gemma4::Gemma4,
    &olmo2::Olmo2,
    &smollm3::SmolLM3,
    &phi3::Phi3,
    &mistral::Mistral,
];

pub use derivatives::{Derivatives, Ordinary};
pub use gated::Activation;
pub use norm::rms_norm;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, DType, Device, Layout, Result, Shape, Storage, Tensor, D};

thread_local! {
    static PRIMITIVE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with every fused op (norm, gated activation, attention, constant-weight product)
/// in its primitive form on this thread: candle's own tensor ops, differentiated by candle's
/// autograd. Nothing of the fused kernels or their vector-Jacobian products runs, so this is
/// the independent twin that tests hold the explicit backward against.
pub fn with_primitive_ops<T>(f: impl FnOnce() -> T) -> T {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            PRIMITIVE.with(|p| p.set(self.0));
        }
    }
    let _reset = Reset(PRIMITIVE.with(|p| p.replace(true)));
    f()
}

/// Whether [`with_primitive_ops`] is in force on this thread.
pub(crate) fn primitive_forced() -> bool {
    PRIMITIVE.with(|p| p.get())
}

/// Softmax over the last dimension from primitives (differentiable).
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
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

/// The f32 data of a contiguous custom-op input.
pub(crate) fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [f32]> {
    let Some((a, b)) = l.contiguous_offsets() else {
        candle_core::bail!("{op}: inputs must be contiguous")
    };
    Ok(&s.as_slice::<f32>()?[a..b])
}

pub(crate) use crate::kernels::map_rows;
