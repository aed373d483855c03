//! LRP's backward rules as the decoder's [`Derivatives`]: at RMSNorm, at the MLP's gated
//! activation and at attention's inputs, the rule replaces the ordinary derivative, and the
//! backward pass (`models::decoder::backward`) and the autograd twin (`Decoder::forward`)
//! both take it from here. Every rule leaves the forward values unchanged.
//!
//! Each rule has its kernels here: the forward twin for autograd (stop-gradient arithmetic),
//! the fused vector-Jacobian product (the gated activation's through the model's one-pass
//! kernel with the rule's per-element formula) and its primitive twin; the tests hold the
//! three together. `attnlrp.rs` names the rule sets.

use candle_core::{Result, Tensor};

use crate::models::gated::{self, fused_vjp, scale_gradient, Activation, Pointwise};
use crate::models::gated_delta::Scales as DeltaScales;
use crate::models::norm::{self, inverse_rms};
use crate::models::{f32_slice, Derivatives};

/// How the gradient passes `act(gate) ⊙ up`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateRule {
    /// The ordinary derivative.
    Ordinary,
    /// AttnLRP: the product's gradient halved to each side (uniform rule), and the activation
    /// passed by the identity rule, `grad · act(x) / (x + 1e-10)`.
    IdentityHalved,
    /// CP-LRP: the gate is a constant; only `up` gets a gradient.
    ConstantGate,
}

/// lxt's ε in the identity rule's `act(x) / (x + ε)`.
const IDENTITY_EPS: f64 = 1e-10;

/// A set of rules: data the decoder reads through [`Derivatives`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rules {
    /// RMSNorm's identity rule: `1/sqrt(mean(x²) + ε)` is a constant of the backward pass.
    pub identity_norm: bool,
    /// How the gradient passes the MLP's gated activation.
    pub gate: GateRule,
    /// An activation on its own (Gated DeltaNet's convolution): lxt's identity rule,
    /// `grad · act(x) / (x + 1e-10)`.
    pub identity_activation: bool,
    /// Factors on the gradients that flow into q, k and v through attention (0 holds them
    /// constant).
    pub attention: [f64; 3],
    /// Factors on the gradients that flow into a chosen expert's output and its routing
    /// weight through their product (0 holds it constant).
    pub experts: [f64; 2],
    /// Shares of the cotangents through the gated delta rule's products and its decay.
    pub delta: DeltaScales,
    /// Factors on the gradients into an output and the σ gate that scales it (attention's
    /// merged heads, a shared expert) through their product (0 holds it constant).
    pub output_gate: [f64; 2],
}

impl Derivatives for Rules {
    fn rms_norm(&self, x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
        if self.identity_norm {
            identity_norm(x, weight, eps)
        } else {
            norm::rms_norm(x, weight, eps)
        }
    }

    fn rms_norm_vjp(&self, x: &Tensor, weight: &Tensor, eps: f64, g: &Tensor) -> Result<Tensor> {
        if self.identity_norm {
            identity_norm_vjp(x, weight, eps, g)
        } else {
            norm::rms_norm_vjp(x, weight, eps, g)
        }
    }

    fn gated(&self, gate: &Tensor, up: &Tensor, act: Activation) -> Result<Tensor> {
        gate_forward(gate, up, act, self.gate)
    }

    fn gated_vjp(
        &self,
        gate: &Tensor,
        up: &Tensor,
        act: Activation,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Tensor)> {
        gate_vjp(gate, up, act, self.gate, g)
    }

    fn activation_vjp(&self, x: &Tensor, act: Activation, g: &Tensor) -> Result<Tensor> {
        if self.identity_activation {
            g.broadcast_mul(&act.apply(x)?.div(&(x + IDENTITY_EPS)?)?)
        } else {
            g.broadcast_mul(&act.derivative(x)?)
        }
    }

    fn attention_scales(&self) -> [f64; 3] {
        self.attention
    }

    fn expert_scales(&self) -> [f64; 2] {
        self.experts
    }

    fn output_gate_scales(&self) -> [f64; 2] {
        self.output_gate
    }

    fn delta_scales(&self) -> DeltaScales {
        self.delta
    }
}

/// RMSNorm under the identity rule, for autograd: the forward value, with
/// `1/sqrt(mean(x²)+ε)` a constant.
pub fn identity_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    x.broadcast_mul(&inverse_rms(x, eps)?.detach())?
        .broadcast_mul(weight)
}

/// RMSNorm's vector-Jacobian product under the identity rule: `g · w / sqrt(mean(x²)+ε)`,
/// the cotangents `g` in `x`'s shape or batched with leading dimensions; one pass over f32
/// CPU tensors, else the primitive twin.
pub fn identity_norm_vjp(x: &Tensor, weight: &Tensor, eps: f64, g: &Tensor) -> Result<Tensor> {
    let fits = g.elem_count().is_multiple_of(x.elem_count().max(1));
    if norm::cpu_f32(&[x, weight, g]) && !g.track_op() && fits {
        let op = IdentityNormVjp { eps: eps as f32 };
        return x
            .contiguous()?
            .apply_op3_no_bwd(&weight.contiguous()?, &g.contiguous()?, &op);
    }
    identity_norm_vjp_primitive(x, weight, eps, g)
}

/// The primitive twin of [`identity_norm_vjp`] (any device and dtype).
pub fn identity_norm_vjp_primitive(
    x: &Tensor,
    weight: &Tensor,
    eps: f64,
    g: &Tensor,
) -> Result<Tensor> {
    let factor = inverse_rms(x, eps)?.broadcast_mul(weight)?;
    g.broadcast_mul(&factor)
}

/// [`identity_norm_vjp`]'s kernel: per row of `x` its `1/sqrt(mean(x²)+ε)`, times each
/// seed's cotangent row and the weight.
struct IdentityNormVjp {
    eps: f32,
}

impl candle_core::CustomOp3 for IdentityNormVjp {
    fn name(&self) -> &'static str {
        "identity-norm-vjp"
    }

    fn cpu_fwd(
        &self,
        s1: &candle_core::CpuStorage,
        l1: &candle_core::Layout,
        s2: &candle_core::CpuStorage,
        l2: &candle_core::Layout,
        s3: &candle_core::CpuStorage,
        l3: &candle_core::Layout,
    ) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let x = f32_slice(s1, l1, self.name())?;
        let w = f32_slice(s2, l2, self.name())?;
        let g = f32_slice(s3, l3, self.name())?;
        let d = w.len().max(1);
        let rows = (x.len() / d).max(1);
        let out = crate::kernels::map_rows(g.len(), d, |r, dst| {
            let xr = &x[(r % rows) * d..][..d];
            let inv = 1.0 / (xr.iter().map(|v| v * v).sum::<f32>() / d as f32 + self.eps).sqrt();
            for ((o, gv), wv) in dst.iter_mut().zip(&g[r * d..][..d]).zip(w) {
                *o = gv * wv * inv;
            }
        });
        Ok((candle_core::CpuStorage::F32(out), l3.shape().clone()))
    }
}

/// `act(gate) ⊙ up` for autograd under `rule` (stop-gradient arithmetic; the ordinary rule
/// is the model's own op).
pub fn gate_forward(gate: &Tensor, up: &Tensor, act: Activation, rule: GateRule) -> Result<Tensor> {
    match rule {
        GateRule::Ordinary => gated::gated(gate, up, act),
        GateRule::IdentityHalved => {
            let c = gate.detach();
            let a = act.apply(&c)?;
            let ratio = a.div(&(&c + IDENTITY_EPS)?)?;
            let a = (&a + (gate - &c)?.mul(&ratio)?)?;
            scale_gradient(&(a * up)?, 0.5)
        }
        GateRule::ConstantGate => act.apply(&gate.detach())? * up,
    }
}

/// The cotangents `g` of `act(gate) ⊙ up` under `rule`, to the gate (`None` when the rule
/// holds it constant) and to `up`: one fused pass on f32 CPU tensors, else the primitive twin.
pub fn gate_vjp(
    gate: &Tensor,
    up: &Tensor,
    act: Activation,
    rule: GateRule,
    g: &Tensor,
) -> Result<(Option<Tensor>, Tensor)> {
    // The rule's per-element formula through the model's one-pass kernel.
    let fused = match rule {
        GateRule::Ordinary => return gated::gated_vjp(gate, up, act, g),
        GateRule::IdentityHalved => {
            let eps = IDENTITY_EPS as f32;
            let f = move |x: f32, u, g, a, _| (0.5 * g * u * a / (x + eps), 0.5 * g * a);
            fused_vjp(gate, up, act, g, Pointwise::new(f, false, true))?
        }
        GateRule::ConstantGate => {
            let f = |_, _, g: f32, a: f32, _| (0.0, g * a);
            fused_vjp(gate, up, act, g, Pointwise::new(f, false, false))?
        }
    };
    match fused {
        Some(both) => Ok(both),
        None => gate_vjp_primitive(gate, up, act, rule, g),
    }
}

/// The primitive twin of [`gate_vjp`] (any device and dtype).
pub fn gate_vjp_primitive(
    gate: &Tensor,
    up: &Tensor,
    act: Activation,
    rule: GateRule,
    g: &Tensor,
) -> Result<(Option<Tensor>, Tensor)> {
    let a = act.apply(gate)?;
    // Per-element factors first (unbatched), then one product with the cotangents.
    let (to_gate, to_up) = match rule {
        GateRule::Ordinary => return gated::gated_vjp_primitive(gate, up, act, g),
        GateRule::IdentityHalved => {
            let ratio = a.div(&(gate + IDENTITY_EPS)?)?;
            (Some(((up * ratio)? * 0.5)?), (a * 0.5)?)
        }
        GateRule::ConstantGate => (None, a),
    };
    let dg = to_gate.map(|f| g.broadcast_mul(&f)).transpose()?;
    Ok((dg, g.broadcast_mul(&to_up)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .and_then(|d| d.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>())
            .unwrap_or(f32::INFINITY)
    }

    /// Each gate rule: its forward twin keeps the values, and autograd through it, the fused
    /// kernel and the primitive twin give the same cotangents (batched too).
    #[test]
    fn gate_rules_agree_three_ways() -> Result<()> {
        let dev = Device::Cpu;
        let g0 = Tensor::new(&[[-3f32, -0.5, 0.0, 0.7], [2.5, -1.2, 0.3, 4.0]], &dev)?;
        let u0 = Tensor::new(&[[0.4f32, -1.0, 2.0, 0.1], [1.5, 0.2, -0.6, -2.0]], &dev)?;
        let coef = Tensor::new(&[[1f32, -2., 0.5, 3.], [0.3, 0.7, -1.1, 2.]], &dev)?;
        let rules = [
            GateRule::Ordinary,
            GateRule::IdentityHalved,
            GateRule::ConstantGate,
        ];
        for act in [Activation::Silu, Activation::GeluTanh] {
            for rule in rules {
                let (g, u) = (Var::from_tensor(&g0)?, Var::from_tensor(&u0)?);
                let y = crate::models::with_primitive_ops(|| {
                    gate_forward(g.as_tensor(), u.as_tensor(), act, rule)
                })?;
                let want = (act.apply(&g0)? * &u0)?;
                assert!(max_diff(&y, &want) < 1e-6, "{act:?} {rule:?}: forward");
                let grads = (y * &coef)?.sum_all()?.backward()?;
                let (fg, fu) = gate_vjp(&g0, &u0, act, rule, &coef)?;
                let (pg, pu) = gate_vjp_primitive(&g0, &u0, act, rule, &coef)?;
                assert!(max_diff(&fu, grads.get(&u).unwrap()) < 1e-5, "{rule:?}: up");
                assert!(max_diff(&fu, &pu) < 1e-5, "{rule:?}: up, primitive");
                match (fg, pg, grads.get(&g)) {
                    (Some(f), Some(p), Some(a)) => {
                        assert!(max_diff(&f, a) < 1e-5, "{act:?} {rule:?}: gate");
                        assert!(max_diff(&f, &p) < 1e-5, "{act:?} {rule:?}: gate, primitive");
                    }
                    (None, None, None) => assert_eq!(rule, GateRule::ConstantGate),
                    _ => panic!("{rule:?}: the three disagree on whether the gate gets one"),
                }
                // Two seeds at once equal each alone.
                let gb = Tensor::stack(&[&coef, &coef.sin()?], 0)?;
                let (_, bu) = gate_vjp(&g0, &u0, act, rule, &gb)?;
                assert!(max_diff(&bu.get(0)?, &fu) < 1e-6, "{rule:?}: batched");
            }
        }
        Ok(())
    }

    /// The identity rule's norm keeps the values; its vjp equals autograd through its twin
    /// and differs from the ordinary one (the variance's path is cut).
    #[test]
    fn identity_norm_agrees_with_its_twin() -> Result<()> {
        let (x0, w, coef) = norm::test_case()?;
        let x = Var::from_tensor(&x0)?;
        let y = identity_norm(x.as_tensor(), &w, 1e-5)?;
        assert!(max_diff(&y, &norm::rms_norm(&x0, &w, 1e-5)?) < 1e-6);
        let grads = (y * &coef)?.sum_all()?.backward()?;
        let got = identity_norm_vjp(&x0, &w, 1e-5, &coef)?;
        assert!(max_diff(&got, grads.get(&x).unwrap()) < 1e-6);
        // Two seeds through the kernel equal the primitive twin.
        let gb = Tensor::stack(&[&coef, &coef.sin()?], 0)?;
        let fused = identity_norm_vjp(&x0, &w, 1e-5, &gb)?;
        let prim = identity_norm_vjp_primitive(&x0, &w, 1e-5, &gb)?;
        assert!(max_diff(&fused, &prim) < 1e-6);
        assert!(max_diff(&got, &norm::rms_norm_vjp(&x0, &w, 1e-5, &coef)?) > 1e-3);
        Ok(())
    }
}
