//! The points of a pass where a caller may take the derivative otherwise than by the chain
//! of ordinary derivatives: RMSNorm, the MLP's gated activation, attention's inputs, the
//! weighting of a chosen expert's output and the gated delta update's products. The decoder's forward pass in autograd form and its
//! explicit backward pass call them through [`Derivatives`], so both take the caller's;
//! [`Ordinary`] takes every derivative as written.
//! Each point's forward value is the model's whatever the caller does.

use candle_core::{Result, Tensor};

use super::gated::{self, Activation};
use super::gated_delta::Scales as DeltaScales;
use super::norm;

/// How the derivatives are taken at the points listed in the module's documentation. Each
/// method defaults to the ordinary derivative.
pub trait Derivatives: std::fmt::Debug + Sync {
    /// RMSNorm `x / sqrt(mean(x²) + eps) · weight` for autograd.
    fn rms_norm(&self, x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
        norm::rms_norm(x, weight, eps)
    }

    /// RMSNorm's vector-Jacobian product: cotangents `g` of its output (`x`'s shape, or
    /// batched with leading dimensions) carried back to `x`.
    fn rms_norm_vjp(&self, x: &Tensor, weight: &Tensor, eps: f64, g: &Tensor) -> Result<Tensor> {
        norm::rms_norm_vjp(x, weight, eps, g)
    }

    /// `act(gate) ⊙ up` for autograd.
    fn gated(&self, gate: &Tensor, up: &Tensor, act: Activation) -> Result<Tensor> {
        gated::gated(gate, up, act)
    }

    /// The cotangents `g` of `act(gate) ⊙ up` carried to the gate (`None`: it gets none)
    /// and to `up`.
    fn gated_vjp(
        &self,
        gate: &Tensor,
        up: &Tensor,
        act: Activation,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Tensor)> {
        gated::gated_vjp(gate, up, act, g)
    }

    /// An activation's vector-Jacobian product on its own (not a gate): cotangents `g` of
    /// `act(x)` (`x`'s shape, or batched with leading dimensions) carried to `x`.
    fn activation_vjp(&self, x: &Tensor, act: Activation, g: &Tensor) -> Result<Tensor> {
        g.broadcast_mul(&act.derivative(x)?)
    }

    /// Scales on the cotangents that flow from attention into q, k and v (0: none).
    fn attention_scales(&self) -> [f64; 3] {
        [1.0; 3]
    }

    /// Scales on the cotangents of attention's merged heads `m` and its output gate `g`
    /// through `m ⊙ σ(g)` (Qwen3.5's attention; a shared expert's output and gate; 0: none).
    fn output_gate_scales(&self) -> [f64; 2] {
        [1.0; 2]
    }

    /// Scales on the cotangents of a chosen expert's output `y` and its routing weight `w`
    /// through their product `w · y` (sparse experts; 0: none).
    fn expert_scales(&self) -> [f64; 2] {
        [1.0; 2]
    }

    /// Shares of the cotangents through the gated delta update's products and its decay
    /// (Gated DeltaNet).
    fn delta_scales(&self) -> DeltaScales {
        DeltaScales::GRADIENT
    }
}

/// Every derivative as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ordinary;

impl Derivatives for Ordinary {}
