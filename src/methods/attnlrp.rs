//! AttnLRP and CP-LRP in LXT's efficient mode: Gradient × Input with modified backward rules.
//!
//! Achtibat et al., "AttnLRP: Attention-Aware Layer-Wise Relevance Propagation for
//! Transformers", ICML 2024; reference: the `lxt` package 2.1, `lxt/efficient/patches.py`.
//! The forward pass is untouched; only gradients change:
//!
//! | point               | AttnLRP                                   | CP-LRP                 |
//! |---------------------|-------------------------------------------|------------------------|
//! | RMSNorm             | identity rule: no gradient via the variance | same                 |
//! | MLP activation      | identity rule: grad × act(x)/(x + 1e-10)  | gate input held constant |
//! | gate ⊙ up           | uniform rule: grad / 2                    | ordinary product       |
//! | q, k into attention | grad / 4 (uniform rule over two matmuls)  | held constant          |
//! | v into attention    | grad / 2                                  | ordinary               |
//! | softmax, linears, RoPE, residuals, embeddings, lm_head | ordinary | ordinary           |
//!
//! Relevance of token t is `Σ_d e_t,d · g_t,d` with g the modified gradient of the target
//! logit. Each rule is written once below, with stop-gradient arithmetic whose forward value
//! is bit-identical to its input: `x̂ = sg(x) + (x − sg(x))·c` has value x (x − x is exactly
//! 0) and gradient c.

use crate::models::{rms_norm, Rules};
use candle_core::{Result, Tensor};

/// Same value as `x`; the gradient flowing back through it is multiplied by `factor`.
pub fn scale_gradient(x: &Tensor, factor: f64) -> Result<Tensor> {
    let c = x.detach();
    &c + ((x - &c)? * factor)?
}

/// LRP's identity rule on an elementwise activation: the value `act(x)`, the gradient
/// `grad · act(x) / (x + ε)` (lxt's `identity_rule_implicit`, ε = 1e-10).
fn identity_rule(x: &Tensor, act: impl Fn(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
    let c = x.detach();
    let y = act(&c)?;
    let ratio = y.div(&(&c + 1e-10)?)?;
    y + (x - &c)?.mul(&ratio)?
}

/// AttnLRP (LXT efficient mode, `attnLRP` patch map).
#[derive(Debug, Clone, Copy, Default)]
pub struct AttnLrp;

impl Rules for AttnLrp {
    fn rms_norm(&self, x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
        rms_norm(x, weight, eps, true)
    }
    fn silu(&self, gate: &Tensor) -> Result<Tensor> {
        identity_rule(gate, |x| x.silu())
    }
    fn gate_product(&self, act: &Tensor, up: &Tensor) -> Result<Tensor> {
        scale_gradient(&(act * up)?, 0.5)
    }
    fn attention_inputs(
        &self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        Ok((
            scale_gradient(&q, 0.25)?,
            scale_gradient(&k, 0.25)?,
            scale_gradient(&v, 0.5)?,
        ))
    }
}

/// CP-LRP (LXT's `cp_LRP` patch map): attention weights and the MLP gate are constants.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpLrp;

impl Rules for CpLrp {
    fn rms_norm(&self, x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
        rms_norm(x, weight, eps, true)
    }
    fn silu(&self, gate: &Tensor) -> Result<Tensor> {
        gate.detach().silu()
    }
    fn attention_inputs(
        &self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        Ok((q.detach(), k.detach(), v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn rules_keep_values_and_change_gradients() -> Result<()> {
        let x = Var::new(&[-2f32, -0.5, 0.0, 1.5], &Device::Cpu)?;
        let xt = x.as_tensor();
        let y = scale_gradient(xt, 0.25)?;
        assert_eq!(y.to_vec1::<f32>()?, xt.to_vec1::<f32>()?);
        let g = y.sum_all()?.backward()?;
        assert_eq!(g.get(&x).unwrap().to_vec1::<f32>()?, vec![0.25; 4]);

        let s = identity_rule(xt, |t| t.silu())?;
        assert_eq!(s.to_vec1::<f32>()?, xt.silu()?.to_vec1::<f32>()?);
        let g = s.sum_all()?.backward()?.get(&x).unwrap().to_vec1::<f32>()?;
        // act(x)/(x+ε) = sigmoid(x) for x ≠ 0; at 0 it is 0/1e-10 = 0.
        let want = [-2f32, -0.5, 0.0, 1.5].map(|v| {
            if v == 0.0 {
                0.0
            } else {
                1.0 / (1.0 + (-v).exp())
            }
        });
        for (a, b) in g.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
        Ok(())
    }
}
