//! The gated activation of Llama-style MLPs, `act(gate) ⊙ up` (SiLU for Llama and Qwen,
//! GELU-tanh for Gemma), as one op whose backward pass follows a [`GateRule`].
//!
//! One fused op instead of a chain of elementwise ops (and, for LRP, of stop-gradient
//! arithmetic) keeps the graph small: the forward pass is one loop, the backward pass a few
//! tensor ops. A primitive twin ([`gated_silu_primitive`]) gives the same values and
//! gradients on any device; the tests hold the two together.

use super::{cpu_tensor, f32_slice};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};

/// The MLP's activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Activation {
    /// `x·σ(x)` (Llama, Qwen).
    #[default]
    Silu,
    /// GELU, tanh approximation (Gemma's `gelu_pytorch_tanh`).
    GeluTanh,
}

const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
const GELU_C: f64 = 0.044_715;

impl Activation {
    /// Parses transformers' `hidden_act` / `hidden_activation`.
    pub fn from_hf(name: &str) -> Option<Self> {
        match name {
            "silu" | "swish" => Some(Activation::Silu),
            "gelu_pytorch_tanh" | "gelu_tanh" | "gelu_new" => Some(Activation::GeluTanh),
            _ => None,
        }
    }

    fn scalar(self, x: f32) -> f32 {
        match self {
            Activation::Silu => x / (1.0 + (-x).exp()),
            Activation::GeluTanh => {
                let u = SQRT_2_OVER_PI as f32 * (x + GELU_C as f32 * x * x * x);
                0.5 * x * (1.0 + u.tanh())
            }
        }
    }

    /// A row of the activation (and, when asked, of its derivative).
    fn row(self, x: &[f32], act: &mut [f32], derivative: Option<&mut [f32]>) {
        match self {
            Activation::Silu => {
                // silu(x) = x·σ(x); silu'(x) = σ(x)·(1 + x·(1 − σ(x))).
                crate::kernels::math::sigmoid(x, act);
                if let Some(d) = derivative {
                    for ((d, &s), &x) in d.iter_mut().zip(act.iter()).zip(x) {
                        *d = s * (1.0 + x * (1.0 - s));
                    }
                }
                act.iter_mut().zip(x).for_each(|(a, &x)| *a *= x);
            }
            Activation::GeluTanh => {
                act.iter_mut()
                    .zip(x)
                    .for_each(|(a, &x)| *a = self.scalar(x));
                if let Some(d) = derivative {
                    d.iter_mut()
                        .zip(x)
                        .for_each(|(d, &x)| *d = self.scalar_derivative(x));
                }
            }
        }
    }

    fn scalar_derivative(self, x: f32) -> f32 {
        match self {
            Activation::Silu => {
                let s = 1.0 / (1.0 + (-x).exp());
                s * (1.0 + x * (1.0 - s))
            }
            Activation::GeluTanh => {
                let (k, c) = (SQRT_2_OVER_PI as f32, GELU_C as f32);
                let t = (k * (x + c * x * x * x)).tanh();
                0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * k * (1.0 + 3.0 * c * x * x)
            }
        }
    }

    /// The activation, elementwise.
    pub fn apply(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Activation::Silu => x.silu(),
            Activation::GeluTanh => x.gelu(),
        }
    }

    /// Its derivative, elementwise.
    fn derivative(self, x: &Tensor) -> Result<Tensor> {
        match self {
            // σ(x)·(1 + x·(1 − σ(x)))
            Activation::Silu => {
                let s = sigmoid(x)?;
                &s * ((x * (1.0 - &s)?)? + 1.0)?
            }
            // ½(1 + tanh u) + ½x(1 − tanh²u)·√(2/π)(1 + 3c·x²), u = √(2/π)(x + c·x³)
            Activation::GeluTanh => {
                let x2 = x.sqr()?;
                let u = ((x * &x2)?.affine(GELU_C, 0.0)? + x)?.affine(SQRT_2_OVER_PI, 0.0)?;
                let t = u.tanh()?;
                let left = (&t + 1.0)?.affine(0.5, 0.0)?;
                let du = x2.affine(3.0 * GELU_C * SQRT_2_OVER_PI, SQRT_2_OVER_PI)?;
                let right = ((x * (1.0 - t.sqr()?)?)? * du)?.affine(0.5, 0.0)?;
                left + right
            }
        }
    }
}

/// How the gradient passes `act(gate) ⊙ up`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateRule {
    /// Ordinary gradients.
    Plain,
    /// AttnLRP: the product's gradient halved to each side (uniform rule), and the activation
    /// passed by the identity rule, `grad · act(x) / (x + 1e-10)`.
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

/// The primitive twin of [`gated`]: same values, same gradients, any device.
pub fn gated_primitive(
    gate: &Tensor,
    up: &Tensor,
    act: Activation,
    rule: GateRule,
) -> Result<Tensor> {
    match rule {
        GateRule::Plain => act.apply(gate)? * up,
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

struct Gated {
    act: Activation,
    rule: GateRule,
}

impl CustomOp2 for Gated {
    fn name(&self) -> &'static str {
        "gated-activation"
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
            return super::into_cpu_storage(&(self.act.apply(&g)? * u)?);
        }
        let g = f32_slice(s1, l1, self.name())?;
        let u = f32_slice(s2, l2, self.name())?;
        let d = l1.shape().dims().last().copied().unwrap_or(1).max(1);
        let out = super::map_rows(g.len(), d, |r, dst| {
            self.act.row(&g[r * d..(r + 1) * d], dst, None);
            dst.iter_mut().zip(&u[r * d..]).for_each(|(o, &u)| *o *= u);
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        gate: &Tensor,
        up: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        gated_vjp(
            &gate.detach(),
            &up.detach(),
            self.act,
            self.rule,
            &grad.detach(),
        )
    }
}

/// The vector-Jacobian product of `act(gate) ⊙ up` under `rule`: cotangents `g` of the
/// product (`gate`'s shape, or batched with leading dimensions) carried to the gate (`None`
/// when the rule holds it constant) and to `up`.
pub fn gated_vjp(
    gate: &Tensor,
    up: &Tensor,
    act: Activation,
    rule: GateRule,
    g: &Tensor,
) -> Result<(Option<Tensor>, Option<Tensor>)> {
    let fits = g.elem_count().is_multiple_of(gate.elem_count().max(1));
    if super::norm::cpu_f32(&[gate, up, g]) && !g.track_op() && fits {
        // One pass: both cotangents side by side, (2, ..g's shape).
        let both = gate.contiguous()?.apply_op3_no_bwd(
            &up.contiguous()?,
            &g.contiguous()?,
            &GatedVjp { act, rule },
        )?;
        let dg = (rule != GateRule::ConstantGate)
            .then(|| both.get(0))
            .transpose()?;
        return Ok((dg, Some(both.get(1)?)));
    }
    gated_vjp_primitive(gate, up, act, rule, g)
}

/// [`gated_vjp`] in one pass over f32 CPU tensors; the cotangents `g` repeat `gate`'s shape
/// for each seed. Output `(2, ..g's shape)`: the gate's cotangents, then up's.
struct GatedVjp {
    act: Activation,
    rule: GateRule,
}

impl candle_core::CustomOp3 for GatedVjp {
    fn name(&self) -> &'static str {
        "gated-vjp"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1, self.name())?;
        let u = f32_slice(s2, l2, self.name())?;
        let g = f32_slice(s3, l3, self.name())?;
        let m = x.len().max(1);
        let eps = IDENTITY_EPS as f32;
        // Rows of the gate's last dimension, both halves filled row by row over the cores.
        let d = l1.shape().dims().last().copied().unwrap_or(1).max(1);
        let rows = g.len() / d;
        let out = super::map_rows(2 * g.len(), d, |r, dst| {
            let (second, r) = (r >= rows, r % rows.max(1));
            let i0 = (r * d) % m;
            let (xs, us, gs) = (&x[i0..i0 + d], &u[i0..i0 + d], &g[r * d..(r + 1) * d]);
            if self.rule == GateRule::ConstantGate && !second {
                return; // zeros
            }
            let mut a = vec![0f32; d];
            let needs_derivative = self.rule == GateRule::Plain && !second;
            let mut deriv = needs_derivative.then(|| vec![0f32; d]);
            self.act.row(xs, &mut a, deriv.as_deref_mut());
            for (k, o) in dst.iter_mut().enumerate() {
                let (xv, uv, gv, a) = (xs[k], us[k], gs[k], a[k]);
                *o = match (self.rule, second) {
                    (GateRule::Plain, false) => gv * uv * deriv.as_ref().map_or(0.0, |d| d[k]),
                    (GateRule::Plain | GateRule::ConstantGate, true) => gv * a,
                    (GateRule::IdentityHalved, false) => 0.5 * gv * uv * a / (xv + eps),
                    (GateRule::IdentityHalved, true) => 0.5 * gv * a,
                    (GateRule::ConstantGate, false) => 0.0,
                };
            }
        });
        let mut shape = vec![2];
        shape.extend_from_slice(l3.shape().dims());
        Ok((CpuStorage::F32(out), Shape::from(shape)))
    }
}

/// The primitive twin of [`gated_vjp`] (any device and dtype).
pub fn gated_vjp_primitive(
    gate: &Tensor,
    up: &Tensor,
    act: Activation,
    rule: GateRule,
    g: &Tensor,
) -> Result<(Option<Tensor>, Option<Tensor>)> {
    let a = act.apply(gate)?;
    // Per-element factors first (unbatched), then one product with the cotangents.
    let (to_gate, to_up) = match rule {
        GateRule::Plain => (Some((up * act.derivative(gate)?)?), a),
        GateRule::IdentityHalved => {
            let ratio = a.div(&(gate + IDENTITY_EPS)?)?;
            (Some(((up * ratio)? * 0.5)?), (a * 0.5)?)
        }
        GateRule::ConstantGate => (None, a),
    };
    let dg = match to_gate {
        Some(f) => Some(g.broadcast_mul(&f)?),
        None => None,
    };
    Ok((dg, Some(g.broadcast_mul(&to_up)?)))
}

/// `act(gate) ⊙ up` with `rule`'s gradients.
pub fn gated(gate: &Tensor, up: &Tensor, act: Activation, rule: GateRule) -> Result<Tensor> {
    // A constant gate leaves the graph here: candle expects a gradient for every tracked
    // input of an op.
    let gate = &match rule {
        GateRule::ConstantGate => gate.detach(),
        _ => gate.clone(),
    };
    let tracked = gate.track_op() || up.track_op();
    let op = Gated { act, rule };
    if super::primitive_forced() {
        gated_primitive(gate, up, act, rule)
    } else if tracked && gate.device().is_cpu() {
        gate.contiguous()?.apply_op2(&up.contiguous()?, op)
    } else if super::norm::cpu_f32(&[gate, up]) {
        // No graph: the one-loop forward.
        gate.contiguous()?.apply_op2_no_bwd(&up.contiguous()?, &op)
    } else {
        gated_primitive(gate, up, act, rule)
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
        let rules = [
            GateRule::Plain,
            GateRule::IdentityHalved,
            GateRule::ConstantGate,
        ];
        for (act, rule) in [Activation::Silu, Activation::GeluTanh]
            .into_iter()
            .flat_map(|a| rules.map(|r| (a, r)))
        {
            let (g, u) = (Var::from_tensor(&g0)?, Var::from_tensor(&u0)?);
            let fused = gated(g.as_tensor(), u.as_tensor(), act, rule)?;
            let plain = gated_primitive(g.as_tensor(), u.as_tensor(), act, rule)?;
            let want = (act.apply(&g0)? * &u0)?;
            let d = (&fused - &want)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(d < 1e-6, "{act:?}: forward differs from candle's by {d}");
            let d = (&fused - &plain)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(d < 1e-6, "{rule:?}: forward differs by {d}");
            let a = (fused * &coef)?.sum_all()?.backward()?;
            let b = (plain * &coef)?.sum_all()?.backward()?;
            // Batched cotangents (two seeds): the fused kernel against the primitive ops.
            let gb = Tensor::stack(&[&coef, &coef.sin()?], 0)?;
            let fused = gated_vjp(&g0, &u0, act, rule, &gb)?;
            let prim = gated_vjp_primitive(&g0, &u0, act, rule, &gb)?;
            for (x, y) in [(fused.0, prim.0), (fused.1, prim.1)] {
                match (x, y) {
                    (Some(x), Some(y)) => {
                        let d = (x - y)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
                        assert!(d < 1e-5, "{act:?} {rule:?}: batched vjp differs by {d}");
                    }
                    (None, None) => {}
                    _ => panic!("{act:?} {rule:?}: one side held the gate constant"),
                }
            }
            for v in [&g, &u] {
                let zero = v.as_tensor().zeros_like()?;
                let ga = a.get(v).unwrap_or(&zero);
                let gb = b.get(v).unwrap_or(&zero);
                let d = (ga - gb)?.abs()?.max_all()?.to_scalar::<f32>()?;
                assert!(d < 1e-5, "{act:?} {rule:?}: gradient differs by {d}");
            }
        }
        Ok(())
    }

    /// The analytic derivatives against central differences.
    #[test]
    fn derivatives_by_finite_differences() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::new(&[-3f64, -0.7, 0.0, 0.4, 2.2], &dev)?;
        let h = 1e-5;
        for act in [Activation::Silu, Activation::GeluTanh] {
            let num = ((act.apply(&(&x + h)?)? - act.apply(&(&x - h)?)?)? / (2.0 * h))?;
            let d = (act.derivative(&x)? - num)?
                .abs()?
                .max_all()?
                .to_scalar::<f64>()?;
            assert!(d < 1e-6, "{act:?}: derivative off by {d}");
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
