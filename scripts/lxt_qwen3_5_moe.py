"""The attribution rules of src/methods/attnlrp.rs for Qwen3.5-MoE, in PyTorch (lxt 2.1 has
no Qwen3.5 module): Qwen3.5's layers as scripts/lxt_qwen3_5.py writes them (the Gated
DeltaNet, the gated attention, the norms), and the sparse block with its shared expert:

- each routed expert is a gated MLP and takes lxt's gated-MLP rules (identity rule through
  the activation, uniform rule on the product; CP-LRP: the gate constant), written out here
  because transformers 5 holds the experts stacked (`Qwen3_5MoeExperts`, no module per
  expert);
- an expert's output times its routing weight: the uniform rule (AttnLRP, the router's
  softmax, top-k and renormalisation keep their ordinary derivatives, as for Qwen3-MoE in
  scripts/lxt_qwen3_moe.py); CP-LRP holds the weight constant;
- the shared expert (`Qwen3_5MoeMLP`) takes the gated-MLP rules, and its gate
  `σ(shared_expert_gate x) · y` the output gate's shares (AttnLRP: half each; CP-LRP: the
  gate constant), as gated attention's.

Imported by scripts/reference.py."""
from functools import partial

import torch

import lxt_qwen3_5 as q35  # first: sets up lxt.efficient's rule modules
from delta_rule_reference import share
from lxt.efficient.patches import cp_gated_mlp_forward, cp_wrap_attention_forward
from lxt.efficient.patches import gated_mlp_forward, patch_method, wrap_attention_forward
from lxt.efficient.rules import divide_gradient, identity_rule_implicit, stop_gradient
from lxt_rules import _eager_only, stacked_experts_forward
from transformers.models.qwen3_5_moe import modeling_qwen3_5_moe as _m


def experts_forward(mode):
    """Qwen3_5MoeExperts.forward with `mode`'s rules."""
    if mode == "attnlrp":
        def gated(self, gate, up):
            return divide_gradient(identity_rule_implicit(self.act_fn, gate) * up, 2)

        def weigh(y, w):
            return divide_gradient(y * w, 2)
    else:
        def gated(self, gate, up):
            return self.act_fn(stop_gradient(gate)) * up

        def weigh(y, w):
            return y * stop_gradient(w)
    return stacked_experts_forward(gated, weigh)


def block_forward(mode):
    """Qwen3_5MoeSparseMoeBlock.forward with the shared expert's gate's shares."""
    to_y, to_gate = q35.OUTPUT_GATE[mode]

    def forward(self, hidden_states):
        b, s, h = hidden_states.shape
        x = hidden_states.view(-1, h)
        shared = self.shared_expert(x)
        _, weights, chosen = self.gate(x)
        routed = self.experts(x, chosen, weights)
        g = torch.sigmoid(self.shared_expert_gate(x))
        return (routed + share(shared, to_y) * share(g, to_gate)).reshape(b, s, h)

    return forward


def _maps(mode, mlp_forward, wrap):
    return {
        _m.Qwen3_5MoeMLP: partial(patch_method, mlp_forward),
        _m.Qwen3_5MoeRMSNorm: partial(patch_method, q35.norm_identity, method_name="_norm"),
        _m.Qwen3_5MoeAttention: partial(patch_method, q35.attention_forward(mode)),
        _m.Qwen3_5MoeGatedDeltaNet: partial(patch_method, q35.deltanet_forward(mode)),
        _m.Qwen3_5MoeExperts: partial(patch_method, experts_forward(mode)),
        _m.Qwen3_5MoeSparseMoeBlock: partial(patch_method, block_forward(mode)),
        # The attention forward above calls Qwen3.5's module's eager attention.
        q35._m: partial(_eager_only, wrap),
    }


attnLRP = _maps("attnlrp", gated_mlp_forward, wrap_attention_forward)
cp_LRP = _maps("cp_lrp", cp_gated_mlp_forward, cp_wrap_attention_forward)
