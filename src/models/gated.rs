//! The gated activation of Llama-style MLPs, `silu(gate) ⊙ up`, as one op whose backward
//! pass follows a [`GateRule`].
//!
//! One fused op instead of a chain of elementwise ops (and, for LRP, of stop-gradient
//! arithmetic) keeps the graph small: the forward pass is one loop, the backward pass a few
//! tensor ops. A primitive twin ([`gated_silu_primitive`]) gives the same values and
//! gradients on any device; the tests hold the two together.

use super::{cpu_tensor, f32_slice};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};

/// How the gradient passes `silu(gate) ⊙ up`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateRule {
    /// Ordinary gradients.
    Plain,
    /// AttnLRP: the product's gradient halved to each side (uniform rule), and the activation
    /// passed by the identity rule, `grad · silu(x) / (x + 1e-10)`.
    IdentityHalved,
    /// CP-LRP: the gate is a constant; only `up` gets a gradient.
    ConstantGate,
}

/// lxt's ε in the identity rule's `act(x) / (x + ε)`.
const IDENTITY_EPS: f64 = 1e-10;

/// Same value as `x`; the gradient flowing back through it is multiplied by `factor`
/// (`sg(x) + (x − sg(x))·factor`, whose value is exactly x since x − x = 0).
pub fn scale_gradient(x: &Tensor, factor: f64) -> Result<Tensor> {
    if factor == 1.0 {
        return Ok(x.clone());
    }
    if factor == 0.0 {
        return Ok(x.detach());
    }
    let c = x.detach();
    &c + ((x - &c)? * factor)?
}

fn sigmoid(x: &Tensor) -> Result<Tensor> {
    (x.neg()?.exp()? + 1.0)?.recip()
}

/// The primitive twin of [`gated_silu`]: same values, same gradients, any device.
pub fn gated_silu_primitive(gate: &Tensor, up: &Tensor, rule: GateRule) -> Result<Tensor> {
    match rule {
        GateRule::Plain => gate.silu()? * up,
        GateRule::IdentityHalved => {
            let c = gate.detach();
            let act = c.silu()?;
            let ratio = act.div(&(&c + IDENTITY_EPS)?)?;
            let act = (&act + (gate - &c)?.mul(&ratio)?)?;
            scale_gradient(&(act * up)?, 0.5)
        }
        GateRule::ConstantGate => gate.detach().silu()? * up,
    }
}

struct GatedSilu {
    rule: GateRule,
}

impl CustomOp2 for GatedSilu {
    fn name(&self) -> &'static str {
        "gated-silu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        if s1.dtype() != DType::F32 {
            // Other dtypes: through candle's own ops on a copy.
            let (g, u) = (cpu_tensor(s1, l1)?, cpu_tensor(s2, l2)?);
            return super::into_cpu_storage(&(g.silu()? * u)?);
        }
        let g = f32_slice(s1, l1, self.name())?;
        let u = f32_slice(s2, l2, self.name())?;
        let out: Vec<f32> = g
            .iter()
            .zip(u)
            .map(|(&g, &u)| g / (1.0 + (-g).exp()) * u)
            .collect();
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        gate: &Tensor,
        up: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (x, up, g) = (gate.detach(), up.detach(), grad.detach());
        let act = x.silu()?;
        Ok(match self.rule {
            GateRule::Plain => {
                // d silu(x)/dx = σ(x)·(1 + x·(1 − σ(x)))
                let s = sigmoid(&x)?;
                let dact = (&s * ((&x * (1.0 - &s)?)? + 1.0)?)?;
                (Some((&g * &up)?.mul(&dact)?), Some((&g * &act)?))
            }
            GateRule::IdentityHalved => {
                let g = (g * 0.5)?;
                let ratio = act.div(&(&x + IDENTITY_EPS)?)?;
                (Some((&g * &up)?.mul(&ratio)?), Some((&g * &act)?))
            }
            GateRule::ConstantGate => (None, Some((&g * &act)?)),
        })
    }
}

/// `silu(gate) ⊙ up` with `rule`'s gradients.
pub fn gated_silu(gate: &Tensor, up: &Tensor, rule: GateRule) -> Result<Tensor> {
    // A constant gate leaves the graph here: candle expects a gradient for every tracked
    // input of an op.
    let gate = &match rule {
        GateRule::ConstantGate => gate.detach(),
        _ => gate.clone(),
    };
    let tracked = gate.track_op() || up.track_op();
    if tracked && gate.device().is_cpu() {
        gate.contiguous()?
            .apply_op2(&up.contiguous()?, GatedSilu { rule })
    } else {
        gated_silu_primitive(gate, up, rule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn fused_op_matches_its_primitive_twin() -> Result<()> {
        let dev = Device::Cpu;
        let g0 = Tensor::new(&[[-3f32, -0.5, 0.0, 0.7], [2.5, -1.2, 0.3, 4.0]], &dev)?;
        let u0 = Tensor::new(&[[0.4f32, -1.0, 2.0, 0.1], [1.5, 0.2, -0.6, -2.0]], &dev)?;
        let coef = Tensor::new(&[[1f32, -2., 0.5, 3.], [0.3, 0.7, -1.1, 2.]], &dev)?;
        for rule in [
            GateRule::Plain,
            GateRule::IdentityHalved,
            GateRule::ConstantGate,
        ] {
            let (g, u) = (Var::from_tensor(&g0)?, Var::from_tensor(&u0)?);
            let fused = gated_silu(g.as_tensor(), u.as_tensor(), rule)?;
            let plain = gated_silu_primitive(g.as_tensor(), u.as_tensor(), rule)?;
            assert_eq!(
                fused.to_vec2::<f32>()?,
                (g0.silu()? * &u0)?.to_vec2::<f32>()?
            );
            let d = (&fused - &plain)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(d < 1e-6, "{rule:?}: forward differs by {d}");
            let a = (fused * &coef)?.sum_all()?.backward()?;
            let b = (plain * &coef)?.sum_all()?.backward()?;
            for v in [&g, &u] {
                let zero = v.as_tensor().zeros_like()?;
                let ga = a.get(v).unwrap_or(&zero);
                let gb = b.get(v).unwrap_or(&zero);
                let d = (ga - gb)?.abs()?.max_all()?.to_scalar::<f32>()?;
                assert!(d < 1e-5, "{rule:?}: gradient differs by {d}");
            }
        }
        Ok(())
    }

    #[test]
    fn gradient_scaling_keeps_values() -> Result<()> {
        let x = Var::new(&[-2f32, -0.5, 0.0, 1.5], &Device::Cpu)?;
        let y = scale_gradient(x.as_tensor(), 0.25)?;
        assert_eq!(y.to_vec1::<f32>()?, x.as_tensor().to_vec1::<f32>()?);
        let g = y.sum_all()?.backward()?;
        assert_eq!(g.get(&x).unwrap().to_vec1::<f32>()?, vec![0.25; 4]);
        Ok(())
    }
}
