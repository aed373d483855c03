//! AttnLRP and CP-LRP in LXT's efficient mode: Gradient × Input with modified backward rules.
//!
//! Achtibat et al., "AttnLRP: Attention-Aware Layer-Wise Relevance Propagation for
//! Transformers", ICML 2024; reference: the `lxt` package 2.1, `lxt/efficient/patches.py`.
//! The forward pass is untouched; only gradients change:
//!
//! | point               | AttnLRP                                   | CP-LRP                 |
//! |---------------------|-------------------------------------------|------------------------|
//! | RMSNorm             | identity rule: no gradient via the variance | same                 |
//! | weightless RMSNorm on v (Gemma 4) | identity rule, as any RMSNorm | same             |
//! | layer output × stored scale (Gemma 4) | ordinary: a constant factor | ordinary          |
//! | keys as values (Gemma 4 26B/31B)      | ordinary: k_proj's output branches; its relevance is the sum of both uses' | same |
//! | a layer's own input `gelu(W h) ⊙ pli` (Gemma 4) | the MLP's: identity rule, grad / 2 | gate held constant |
//! | MLP activation      | identity rule: grad × act(x)/(x + 1e-10)  | gate input held constant |
//! | an activation alone (Gated DeltaNet's convolution) | identity rule | identity rule |
//! | gate ⊙ up           | uniform rule: grad / 2                    | ordinary product       |
//! | q, k into attention | grad / 4 (uniform rule over two matmuls)  | held constant          |
//! | v into attention    | grad / 2                                  | ordinary               |
//! | expert output × routing weight | uniform rule: grad / 2 into each | weight held constant |
//! | router softmax, top-k, renormalisation | ordinary                 | (no gradient reaches it) |
//! | Gemma 4's router input norm, per-expert factor | identity rule; a constant | (no gradient reaches it) |
//! | delta rule: `Sᵀq`, `S̃ᵀk`, `β(v − m)`, `kδᵀ` | uniform rule: grad / 2 into each factor | into S, S̃, v − m, δ only |
//! | delta rule: decay `exp(g) · S`     | g constant                              | g constant             |
//! | output gate `m ⊙ σ(g)` (Qwen3.5's attention, a shared expert) | uniform rule: grad / 2 into each; σ by its gradient | gate held constant |
//! | softmax, linears, RoPE, residuals, embeddings, lm_head | ordinary | ordinary           |
//!
//! Sparse experts (Qwen3-MoE): each chosen expert is a gated MLP and takes the MLP's rules.
//! Its output enters the block's sum as the product `w_e · expert_e(x)`, where `w_e`, the
//! router's probability, depends on the same input: a product of two relevance paths, so
//! AttnLRP's uniform rule halves the gradient into each, as lxt's own Qwen3-MoE module
//! (GitHub, after 2.1: `divide_gradient(·, 2)` after the weighting) does, and the router's
//! softmax, choice and renormalisation pass the weight's half on by their ordinary
//! derivatives (lxt leaves them unpatched; the softmax is then attributed as attention's is
//! by its gradient). The experts' units thus hold exactly half of the block's relevance and
//! the router's half is not conserved (a softmax's gradient × input is not its output; the
//! tests measure it). CP-LRP treats the routing weights as it treats attention
//! probabilities, as constants: the whole relevance flows through the experts, conserved.
//! Qwen3.5-MoE, which lxt does not cover, takes the same rules (one method, one rule per
//! point: CP-LRP is the variant with the weights constant), and its shared expert's gate,
//! `σ(g) · shared(x)` with `g` a number per token from the same input, is a product of two
//! paths like attention's output gate: the uniform rule, σ by its gradient; CP-LRP holds it
//! constant. Measured on the tiny Qwen3.5-MoE: CP-LRP's sparse blocks hand back 1.0000 of
//! their output, AttnLRP's 0.36–0.63 (`neurons::qwen35_moe_blocks_conserve_relevance`).
//! PyTorch side: `scripts/lxt_qwen3_5_moe.py`.
//!
//! The gated delta rule (Qwen3.5's linear attention, `models::gated_delta`) follows the
//! paper's principles where lxt has no module: its state update and read-out are products
//! of two factors that both depend on the input (the state and the query; the state and the
//! key; the write strength β and the correction v − m; the key and the correction), so
//! AttnLRP's uniform rule gives each factor half, as it does for attention's q·kᵀ and A·v and
//! the MLP's gate ⊙ up. The decay `exp(g)` scales the state as a per-token constant factor
//! (the paper treats such scalings as constants): no gradient into g. CP-LRP holds what
//! decides the mixing constant, as it holds attention's probabilities: q, k, β and g get no
//! gradient, and the state carries the values linearly (every product passes its whole
//! cotangent to the state or value side), which conserves relevance. Around the delta rule
//! (`models::decoder::gated_deltanet`): the convolution's SiLU takes lxt's identity rule
//! (an activation on the signal's path), q's and k's l2 norms and the output's RMSNorm the
//! norms' identity rule, β = σ(b) passes its share by its ordinary derivative (as the router's
//! softmax), and the output gate `norm(o) ⊙ silu(z)` is ruled as the MLP's gate. The PyTorch
//! side of these rules: `scripts/lxt_qwen3_5.py`.
//!
//! Relevance of token t is `Σ_d e_t,d · g_t,d` with g the modified gradient of the target
//! logit. The rules are data ([`Rules`], `rules.rs`) that the decoder's explicit backward
//! reads at each rule point.

use super::rules::{GateRule, Rules};
use crate::models::gated_delta::Scales;

/// AttnLRP (LXT efficient mode, `attnLRP` patch map): identity rule on the norms and the
/// activation, uniform rule (½ each) on `act(gate) ⊙ up`, uniform rule over q·kᵀ and A·v
/// (¼ into q and k, ½ into v), uniform rule on an expert's weighted output (½ each).
pub const ATTNLRP: Rules = Rules {
    identity_norm: true,
    gate: GateRule::IdentityHalved,
    identity_activation: true,
    attention: [0.25, 0.25, 0.5],
    experts: [0.5, 0.5],
    output_gate: [0.5, 0.5],
    delta: Scales {
        read: [0.5, 0.5],
        recall: [0.5, 0.5],
        gate: [0.5, 0.5],
        write: [0.5, 0.5],
        decay: 0.0,
    },
};

/// CP-LRP (LXT's `cp_LRP` patch map): identity rule on the norms; the attention weights and
/// the MLP gate are constants (no gradient into q, k or the gate), and so are the experts'
/// routing weights.
pub const CP_LRP: Rules = Rules {
    identity_norm: true,
    gate: GateRule::ConstantGate,
    identity_activation: true,
    attention: [0.0, 0.0, 1.0],
    experts: [1.0, 0.0],
    output_gate: [1.0, 0.0],
    delta: Scales {
        read: [1.0, 0.0],
        recall: [1.0, 0.0],
        gate: [0.0, 1.0],
        write: [0.0, 1.0],
        decay: 0.0,
    },
};
