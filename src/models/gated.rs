//! The gated activation of Llama-style MLPs, `act(gate) ⊙ up` (SiLU for Llama and Qwen,
//! GELU-tanh for Gemma), as one op.
//!
//! One fused op instead of a chain of elementwise ops keeps the graph small: the forward pass
//! is one loop, the backward pass one more ([`fused_vjp`], which takes its per-element
//! formula as an argument, so a caller can carry cotangents back by another formula at the
//! same speed). A primitive twin ([`gated_primitive`]) gives the same values and gradients on
//! any device; the tests hold the two together.

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

    /// A row of the activation (and, when asked, of its derivative).
    pub(crate) fn row(self, x: &[f32], act: &mut [f32], derivative: Option<&mut [f32]>) {
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
                // With u = √(2/π)·(x + c·x³) and tanh(u) = 2σ(2u) − 1: gelu(x) = x·σ(2u),
                // gelu'(x) = σ(2u) + 2x·σ(2u)·(1 − σ(2u))·√(2/π)·(1 + 3c·x²); σ vectorized.
                let (k, c) = (SQRT_2_OVER_PI as f32, GELU_C as f32);
                act.iter_mut()
                    .zip(x)
                    .for_each(|(a, &x)| *a = 2.0 * k * (x + c * x * x * x));
                crate::kernels::math::sigmoid_in_place(act);
                if let Some(d) = derivative {
                    for ((d, &s), &x) in d.iter_mut().zip(act.iter()).zip(x) {
                        *d = s + 2.0 * x * s * (1.0 - s) * k * (1.0 + 3.0 * c * x * x);
                    }
                }
                act.iter_mut().zip(x).for_each(|(a, &x)| *a *= x);
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
    pub fn derivative(self, x: &Tensor) -> Result<Tensor> {
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

/// σ(x), elementwise.
pub fn sigmoid(x: &Tensor) -> Result<Tensor> {
    (x.neg()?.exp()? + 1.0)?.recip()
}

/// The primitive twin of [`gated`]: same values, same gradients, any device.
pub fn gated_primitive(gate: &Tensor, up: &Tensor, act: Activation) -> Result<Tensor> {
    act.apply(gate)? * up
}

struct Gated {
    act: Activation,
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
        let (dg, du) = gated_vjp(&gate.detach(), &up.detach(), self.act, &grad.detach())?;
        Ok((dg, Some(du)))
    }
}

/// A per-element formula for the cotangents of `act(gate) ⊙ up`: from the gate `x`, `up`'s
/// `u`, the cotangent `g`, `a = act(x)` and `d = act'(x)` (0 unless `derivative`), the
/// cotangents to the gate and to `up`. Generic, so that each formula's loop is compiled
/// with it inlined.
#[derive(Debug, Clone, Copy)]
pub struct Pointwise<F> {
    /// The formula.
    pub f: F,
    /// Whether it reads `act'(x)`.
    pub derivative: bool,
    /// Whether the gate gets a cotangent (`false`: only `up`'s is computed).
    pub to_gate: bool,
}

impl<F: Formula> Pointwise<F> {
    /// A formula, whether it reads `act'(x)`, whether the gate gets a cotangent.
    pub fn new(f: F, derivative: bool, to_gate: bool) -> Self {
        Pointwise {
            f,
            derivative,
            to_gate,
        }
    }
}

/// A formula's signature.
pub trait Formula: Fn(f32, f32, f32, f32, f32) -> (f32, f32) + Copy + Send + Sync {}
impl<F: Fn(f32, f32, f32, f32, f32) -> (f32, f32) + Copy + Send + Sync> Formula for F {}

/// The vector-Jacobian product of `act(gate) ⊙ up`: cotangents `g` of the product (`gate`'s
/// shape, or batched with leading dimensions) carried to the gate and to `up`.
pub fn gated_vjp(
    gate: &Tensor,
    up: &Tensor,
    act: Activation,
    g: &Tensor,
) -> Result<(Option<Tensor>, Tensor)> {
    // The chain of ordinary derivatives: (g·u·act'(x), g·act(x)).
    let ordinary = Pointwise::new(|_, u, g, a, d| (g * u * d, g * a), true, true);
    match fused_vjp(gate, up, act, g, ordinary)? {
        Some(both) => Ok(both),
        None => gated_vjp_primitive(gate, up, act, g),
    }
}

/// The cotangents of `act(gate) ⊙ up` by `formula`, in one pass over f32 CPU tensors (the
/// gate's `None` when the formula gives it none); `None` for other devices and dtypes.
pub fn fused_vjp<F: Formula>(
    gate: &Tensor,
    up: &Tensor,
    act: Activation,
    g: &Tensor,
    formula: Pointwise<F>,
) -> Result<Option<(Option<Tensor>, Tensor)>> {
    let fits = g.elem_count().is_multiple_of(gate.elem_count().max(1));
    if !(super::norm::cpu_f32(&[gate, up, g]) && !g.track_op() && fits) {
        return Ok(None);
    }
    // One pass: both cotangents side by side, (2, ..g's shape).
    let both = gate.contiguous()?.apply_op3_no_bwd(
        &up.contiguous()?,
        &g.contiguous()?,
        &GatedVjp { act, formula },
    )?;
    let dg = formula.to_gate.then(|| both.get(0)).transpose()?;
    Ok(Some((dg, both.get(1)?)))
}

/// [`fused_vjp`]'s kernel; the cotangents `g` repeat `gate`'s shape for each seed. Output
/// `(2, ..g's shape)`: the gate's cotangents, then up's.
struct GatedVjp<F> {
    act: Activation,
    formula: Pointwise<F>,
}

impl<F: Formula> candle_core::CustomOp3 for GatedVjp<F> {
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
        let Pointwise {
            f,
            derivative,
            to_gate,
        } = self.formula;
        // Rows of the gate's last dimension, both halves filled row by row over the cores.
        let d = l1.shape().dims().last().copied().unwrap_or(1).max(1);
        let rows = g.len() / d;
        let out = super::map_rows(2 * g.len(), d, |r, dst| {
            let (second, r) = (r >= rows, r % rows.max(1));
            if !second && !to_gate {
                return; // zeros
            }
            let i0 = (r * d) % m;
            let (xs, us, gs) = (&x[i0..i0 + d], &u[i0..i0 + d], &g[r * d..(r + 1) * d]);
            let mut a = vec![0f32; d];
            let mut deriv = (derivative && !second).then(|| vec![0f32; d]);
            self.act.row(xs, &mut a, deriv.as_deref_mut());
            for (k, o) in dst.iter_mut().enumerate() {
                let dk = deriv.as_ref().map_or(0.0, |dv| dv[k]);
                let (to_g, to_u) = f(xs[k], us[k], gs[k], a[k], dk);
                *o = if second { to_u } else { to_g };
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
    g: &Tensor,
) -> Result<(Option<Tensor>, Tensor)> {
    // Per-element factors first (unbatched), then one product with the cotangents.
    let to_gate = (up * act.derivative(gate)?)?;
    let to_up = act.apply(gate)?;
    Ok((Some(g.broadcast_mul(&to_gate)?), g.broadcast_mul(&to_up)?))
}

/// `act(gate) ⊙ up`, differentiable.
pub fn gated(gate: &Tensor, up: &Tensor, act: Activation) -> Result<Tensor> {
    let tracked = gate.track_op() || up.track_op();
    let op = Gated { act };
    if super::primitive_forced() {
        gated_primitive(gate, up, act)
    } else if tracked && gate.device().is_cpu() {
        gate.contiguous()?.apply_op2(&up.contiguous()?, op)
    } else if super::norm::cpu_f32(&[gate, up]) {
        // No graph: the one-loop forward.
        gate.contiguous()?.apply_op2_no_bwd(&up.contiguous()?, &op)
    } else {
        gated_primitive(gate, up, act)
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
        for act in [Activation::Silu, Activation::GeluTanh] {
            let (g, u) = (Var::from_tensor(&g0)?, Var::from_tensor(&u0)?);
            let fused = gated(g.as_tensor(), u.as_tensor(), act)?;
            let plain = gated_primitive(g.as_tensor(), u.as_tensor(), act)?;
            let d = (&fused - &plain)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(d < 1e-6, "{act:?}: forward differs by {d}");
            let a = (fused * &coef)?.sum_all()?.backward()?;
            let b = (plain * &coef)?.sum_all()?.backward()?;
            for v in [&g, &u] {
                let d = (a.get(v).unwrap() - b.get(v).unwrap())?
                    .abs()?
                    .max_all()?
                    .to_scalar::<f32>()?;
                assert!(d < 1e-5, "{act:?}: gradient differs by {d}");
            }
            // Batched cotangents (two seeds): the fused kernel against the primitive ops.
            let gb = Tensor::stack(&[&coef, &coef.sin()?], 0)?;
            let (fg, fu) = gated_vjp(&g0, &u0, act, &gb)?;
            let (pg, pu) = gated_vjp_primitive(&g0, &u0, act, &gb)?;
            for (x, y) in [(fg.unwrap(), pg.unwrap()), (fu, pu)] {
                let d = (x - y)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
                assert!(d < 1e-5, "{act:?}: batched vjp differs by {d}");
            }
        }
        Ok(())
    }

    /// The vectorized rows (full vectors and their tails) against the functions in f64. The
    /// derivative's bound is 2e-6: f32's 1 − tanh² near ±1 (the scalar tanh form it replaced
    /// was off by up to 1.2e-6 on these points).
    #[test]
    fn rows_match_the_functions_in_f64() {
        let x: Vec<f32> = (0..1001).map(|i| (i as f32 - 500.0) * 0.024).collect();
        let (k, c) = (SQRT_2_OVER_PI, GELU_C);
        for act in [Activation::Silu, Activation::GeluTanh] {
            let (mut y, mut dy) = (vec![0f32; x.len()], vec![0f32; x.len()]);
            act.row(&x, &mut y, Some(&mut dy));
            for ((&x, &y), &dy) in x.iter().zip(&y).zip(&dy) {
                let v = x as f64;
                let (want, dwant) = match act {
                    Activation::Silu => {
                        let s = 1.0 / (1.0 + (-v).exp());
                        (v * s, s * (1.0 + v * (1.0 - s)))
                    }
                    Activation::GeluTanh => {
                        let t = (k * (v + c * v * v * v)).tanh();
                        let d =
                            0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * k * (1.0 + 3.0 * c * v * v);
                        (0.5 * v * (1.0 + t), d)
                    }
                };
                assert!(
                    (y as f64 - want).abs() <= 1e-6 * want.abs().max(1.0),
                    "{act:?}({x}): {y} vs {want}"
                );
                assert!(
                    (dy as f64 - dwant).abs() <= 2e-6,
                    "{act:?}'({x}): {dy} vs {dwant}"
                );
            }
        }
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
