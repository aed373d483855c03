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
//! logit. The rules are data ([`Rules`], `rules.rs`) that the decoder's explicit backward
//! reads at each rule point.

use super::rules::{GateRule, Rules};

/// AttnLRP (LXT efficient mode, `attnLRP` patch map): identity rule on the norms and the
/// activation, uniform rule (½ each) on `act(gate) ⊙ up`, uniform rule over q·kᵀ and A·v
/// (¼ into q and k, ½ into v).
pub const ATTNLRP: Rules = Rules {
    identity_norm: true,
    gate: GateRule::IdentityHalved,
    attention: [0.25, 0.25, 0.5],
};

/// CP-LRP (LXT's `cp_LRP` patch map): identity rule on the norms; the attention weights and
/// the MLP gate are constants (no gradient into q, k or the gate).
pub const CP_LRP: Rules = Rules {
    identity_norm: true,
    gate: GateRule::ConstantGate,
    attention: [0.0, 0.0, 1.0],
};
