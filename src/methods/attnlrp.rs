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
//! logit. Each rule is declared once below; the norm's rule is stop-gradient arithmetic
//! (`models::rms_norm`), the gate's and attention's live in the backward passes of the fused
//! ops `models::gated` and `models::attention`, whose primitive twins (stop-gradient
//! arithmetic, tested equal) spell the same rules out op by op.

use crate::models::{rms_norm, GateRule, Rules};
use candle_core::{Result, Tensor};

/// AttnLRP (LXT efficient mode, `attnLRP` patch map).
#[derive(Debug, Clone, Copy, Default)]
pub struct AttnLrp;

impl Rules for AttnLrp {
    /// Identity rule: no gradient through the variance.
    fn rms_norm(&self, x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
        rms_norm(x, weight, eps, true)
    }
    /// Identity rule on SiLU, uniform rule (½ each) on the product.
    fn gate(&self) -> GateRule {
        GateRule::IdentityHalved
    }
    /// Uniform rule over q·kᵀ and A·v: ¼ into q and k, ½ into v.
    fn attention_factors(&self) -> [f64; 3] {
        [0.25, 0.25, 0.5]
    }
}

/// CP-LRP (LXT's `cp_LRP` patch map): attention weights and the MLP gate are constants.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpLrp;

impl Rules for CpLrp {
    /// Identity rule, as AttnLRP.
    fn rms_norm(&self, x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
        rms_norm(x, weight, eps, true)
    }
    /// The gate is a constant.
    fn gate(&self) -> GateRule {
        GateRule::ConstantGate
    }
    /// Attention weights are constants: no gradient into q and k.
    fn attention_factors(&self) -> [f64; 3] {
        [0.0, 0.0, 1.0]
    }
}
