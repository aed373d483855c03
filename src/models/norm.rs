//! RMSNorm `x / sqrt(mean(x²) + ε) · w` as one differentiable op.
//!
//! From primitives the norm is seven graph nodes per call, each allocating its result and,
//! in the backward pass, a zeroed gradient buffer; 61 norms per pass on SmolLM2. The fused op
//! is one loop forward and a few tensor ops backward.

use super::f32_slice;
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor, D};

/// The primitive twin: same values and gradients, any device and dtype.
pub fn rms_norm_primitive(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    x.broadcast_mul(&inverse_rms(x, eps)?)?
        .broadcast_mul(weight)
}

/// `1/sqrt(mean(x²) + ε)` over the last dimension, kept (primitive ops).
pub fn inverse_rms(x: &Tensor, eps: f64) -> Result<Tensor> {
    (x.sqr()?.mean_keepdim(D::Minus1)? + eps)?.sqrt()?.recip()
}

struct RmsNorm {
    eps: f64,
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "rms-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        // `rms_norm` sends only f32 here; `as_slice` refuses anything else.
        let x = f32_slice(s1, l1, self.name())?;
        let w = f32_slice(s2, l2, self.name())?;
        let d = w.len();
        let mut out = Vec::with_capacity(x.len());
        for row in x.chunks_exact(d) {
            let ms = row.iter().map(|v| v * v).sum::<f32>() / d as f32;
            let inv = 1.0 / (ms + self.eps as f32).sqrt();
            out.extend(row.iter().zip(w).map(|(v, w)| v * inv * w));
        }
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dx = rms_norm_vjp(&x.detach(), w, self.eps, &grad.detach())?;
        Ok((Some(dx), None))
    }
}

/// RMSNorm's vector-Jacobian product: the cotangents `g` of its output (`x`'s shape, or
/// batched with leading dimensions) carried back to its input.
pub fn rms_norm_vjp(x: &Tensor, weight: &Tensor, eps: f64, g: &Tensor) -> Result<Tensor> {
    if cpu_f32(&[x, weight, g])
        && !g.track_op()
        && g.elem_count().is_multiple_of(x.elem_count().max(1))
    {
        let op = RmsNormVjp { eps: eps as f32 };
        return x
            .contiguous()?
            .apply_op3_no_bwd(&weight.contiguous()?, &g.contiguous()?, &op);
    }
    rms_norm_vjp_primitive(x, weight, eps, g)
}

/// The primitive twin of [`rms_norm_vjp`] (any device and dtype).
pub fn rms_norm_vjp_primitive(x: &Tensor, weight: &Tensor, eps: f64, g: &Tensor) -> Result<Tensor> {
    let inv = inverse_rms(x, eps)?;
    let gw = g.broadcast_mul(weight)?;
    let dx = gw.broadcast_mul(&inv)?;
    // d(x·inv)/dx = inv·I − x·inv³·xᵀ/d
    let m = gw.broadcast_mul(x)?.mean_keepdim(D::Minus1)?;
    dx - x.broadcast_mul(&inv.powf(3.0)?)?.broadcast_mul(&m)?
}

/// RMSNorm over the last dimension; `weight` is a constant.
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    let op = RmsNorm { eps };
    let fused = cpu_f32(&[x, weight]) && !weight.track_op() && !super::primitive_forced();
    match (fused, x.track_op()) {
        (true, true) => x.contiguous()?.apply_op2(&weight.contiguous()?, op),
        (true, false) => x.contiguous()?.apply_op2_no_bwd(&weight.contiguous()?, &op),
        (false, _) => rms_norm_primitive(x, weight, eps),
    }
}

/// Whether every tensor is an f32 CPU tensor (the fused kernels' domain).
pub(crate) fn cpu_f32(ts: &[&Tensor]) -> bool {
    ts.iter()
        .all(|t| t.device().is_cpu() && t.dtype() == DType::F32)
}

/// [`rms_norm_vjp`] in one pass over the rows of f32 CPU tensors: `x` and `weight` are read,
/// the cotangents `g` (`x`'s shape, repeated for each seed) carried back.
struct RmsNormVjp {
    eps: f32,
}

impl candle_core::CustomOp3 for RmsNormVjp {
    fn name(&self) -> &'static str {
        "rms-norm-vjp"
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
        let w = f32_slice(s2, l2, self.name())?;
        let g = f32_slice(s3, l3, self.name())?;
        let d = w.len().max(1);
        let rows = x.len() / d;
        let out = super::map_rows(g.len(), d, |r, dst| {
            let xr = &x[(r % rows.max(1)) * d..][..d];
            let gr = &g[r * d..][..d];
            let ms = xr.iter().map(|v| v * v).sum::<f32>() / d as f32;
            let inv = 1.0 / (ms + self.eps).sqrt();
            for ((o, gv), wv) in dst.iter_mut().zip(gr).zip(w) {
                *o = gv * wv * inv;
            }
            // d(x·inv)/dx = inv·I − x·inv³·xᵀ/d
            let m = gr
                .iter()
                .zip(w)
                .zip(xr)
                .map(|((g, w), x)| g * w * x)
                .sum::<f32>()
                / d as f32;
            let c = inv * inv * inv * m;
            for (o, xv) in dst.iter_mut().zip(xr) {
                *o -= xv * c;
            }
        });
        Ok((CpuStorage::F32(out), l3.shape().clone()))
    }
}

/// A norm's test case: an input `(3, 4)`, a weight, cotangents of the output.
#[cfg(test)]
pub(crate) fn test_case() -> Result<(Tensor, Tensor, Tensor)> {
    let dev = candle_core::Device::Cpu;
    let x0 = Tensor::arange(0f32, 12., &dev)?
        .reshape((3, 4))?
        .affine(0.7, -3.0)?
        .sin()?;
    let w = Tensor::new(&[0.5f32, 1.5, -0.3, 2.0], &dev)?;
    let coef = Tensor::arange(0f32, 12., &dev)?.reshape((3, 4))?.cos()?;
    Ok((x0, w, coef))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;

    #[test]
    fn fused_op_matches_its_primitive_twin() -> Result<()> {
        let (x0, w, coef) = test_case()?;
        let x = Var::from_tensor(&x0)?;
        let a = rms_norm(x.as_tensor(), &w, 1e-5)?;
        let b = rms_norm_primitive(x.as_tensor(), &w, 1e-5)?;
        let d = (&a - &b)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(d < 1e-6, "forward differs by {d}");
        let ga = (a * &coef)?.sum_all()?.backward()?;
        let gb = (b * &coef)?.sum_all()?.backward()?;
        let d = (ga.get(&x).unwrap() - gb.get(&x).unwrap())?
            .abs()?
            .max_all()?
            .to_scalar::<f32>()?;
        assert!(d < 1e-5, "gradient differs by {d}");
        // Batched cotangents (two seeds) through the fused kernel and the primitive ops.
        let g = Tensor::stack(&[&coef, &coef.sin()?], 0)?;
        let a = rms_norm_vjp(&x0, &w, 1e-5, &g)?;
        let b = rms_norm_vjp_primitive(&x0, &w, 1e-5, &g)?;
        let d = (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
        assert!(d < 1e-6, "batched vjp differs by {d}");
        Ok(())
    }
}
