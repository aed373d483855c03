//! A linear layer whose weight is a constant of the backward pass.
//!
//! candle's matmul backward always computes the gradient of both operands, so a plain
//! `x.matmul(w)` spends as much backward time on weight gradients, which no pass here ever
//! needs, as on the input gradient. [`Linear`] routes tracked inputs (the autograd twin)
//! through a custom op whose backward returns only `grad · W`, in f32. Graph-free passes
//! multiply with the products they are given ([`Products`]).

use super::weight::Weight;
use super::{cpu_tensor, into_cpu_storage};
use crate::kernels::Products;
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};

/// `y = x Wᵀ` with `W: [out, in]` held constant.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Weight,
}

impl Linear {
    /// A layer from a `[out, in]` weight.
    pub fn new(weight: Weight) -> Self {
        Linear { weight }
    }

    /// `x: [n, in] -> [n, out]`: a tracked input records the constant-weight product (f32),
    /// a graph-free one is multiplied with products `p`.
    pub fn forward(&self, x: &Tensor, p: Products) -> Result<Tensor> {
        if x.track_op() && super::primitive_forced() {
            // candle's own product and its autograd.
            return x.matmul(&self.weight.to_dense()?.t()?);
        }
        if x.track_op() && x.device().is_cpu() {
            x.contiguous()?.apply_op1(ConstMatmul(self.clone()))
        } else {
            self.weight.forward(x, p)
        }
    }

    /// [`Linear::forward`] of several layers on one input (see [`Weight::forward_many`]).
    pub fn forward_many(layers: &[&Linear], x: &Tensor, p: Products) -> Result<Vec<Tensor>> {
        if x.track_op() {
            return layers.iter().map(|l| l.forward(x, p)).collect();
        }
        let ws: Vec<&Weight> = layers.iter().map(|l| &l.weight).collect();
        Weight::forward_many(&ws, x, p)
    }

    /// Bytes a decoding step reads of its weight (see [`Weight::bytes_read`]).
    pub fn bytes_read(&self, p: Products) -> u64 {
        self.weight.bytes_read(p)
    }

    /// `(out, in)`.
    pub fn dims(&self) -> Result<(usize, usize)> {
        self.weight.dims()
    }

    /// Whether its weight keeps quantized blocks (see [`Weight::has_blocks`]).
    pub fn has_blocks(&self) -> bool {
        self.weight.has_blocks()
    }

    /// The vector-Jacobian product: cotangents `dy: [.., out]` carried to the input,
    /// `[.., in]` (the weight is a constant).
    pub fn vjp(&self, dy: &Tensor, p: Products) -> Result<Tensor> {
        let dims = dy.dims();
        let out = dims.last().copied().unwrap_or(1);
        let rows = dy.elem_count() / out.max(1);
        let (_, inputs) = self.weight.dims()?;
        let mut shape = dims.to_vec();
        if let Some(last) = shape.last_mut() {
            *last = inputs;
        }
        self.weight
            .vjp(&dy.reshape((rows, out))?, p)?
            .reshape(shape)
    }
}

struct ConstMatmul(Linear);

impl CustomOp1 for ConstMatmul {
    fn name(&self) -> &'static str {
        "const-matmul"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = cpu_tensor(storage, layout)?;
        into_cpu_storage(&x.matmul(&self.0.weight.to_dense()?.t()?)?)
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        // dL/dx = dL/dy · W; W gets no gradient.
        Ok(Some(self.0.vjp(grad_res, Products::F32)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn input_gradient_matches_plain_matmul() -> Result<()> {
        let dev = Device::Cpu;
        let w = Tensor::arange(0f32, 12., &dev)?
            .reshape((3, 4))?
            .affine(0.1, -0.3)?;
        let x = Var::from_tensor(
            &Tensor::arange(0f32, 8., &dev)?
                .reshape((2, 4))?
                .affine(0.2, 0.1)?,
        )?;
        let lin = Linear::new(Weight::dense(w.clone()));
        let y1 = lin.forward(x.as_tensor(), Products::F32)?;
        let y2 = x.as_tensor().matmul(&w.t()?)?;
        let d = (&y1 - &y2)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(d < 1e-6, "forward differs by {d}");
        let coef = Tensor::new(&[[1f32, -2., 0.5], [0.3, 0.7, -1.1]], &dev)?;
        let g1 = y1.mul(&coef)?.sum_all()?.backward()?;
        let g2 = y2.mul(&coef)?.sum_all()?.backward()?;
        let (Some(g1), Some(g2)) = (g1.get(&x), g2.get(&x)) else {
            panic!("no gradient for x");
        };
        let d = (g1 - g2)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(d < 1e-6, "gradient differs by {d}");
        assert!(g1.abs()?.sum_all()?.to_scalar::<f32>()? > 0.0);
        Ok(())
    }
}
