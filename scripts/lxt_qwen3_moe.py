"""lxt's AttnLRP and CP-LRP rules for Qwen3-MoE under transformers 4.52.4 (lxt 2.1 has no
Qwen3-MoE module; lxt's GitHub has one for transformers 5's fused experts). The same rules,
written for 4.52.4's per-expert modules with lxt's own rule functions:

- each expert is a gated MLP (`Qwen3MoeMLP`) and takes lxt's gated-MLP rules (identity rule
  through the activation, uniform rule on the product; CP-LRP: the gate constant);
- the weighting `expert(x) * w`, a product of two paths from the same input, takes the
  uniform rule (`divide_gradient(., 2)` after it, as lxt's GitHub module does); the router's
  softmax, top-k and renormalisation keep their ordinary derivatives (lxt leaves them);
- CP-LRP holds the routing weights constant, as it holds attention probabilities
  (`stop_gradient`), so that all relevance flows through the experts.

RMSNorm and attention take lxt's own rules (scripts/lxt_rules.py). Imported by
scripts/reference.py."""
from functools import partial

import torch
import torch.nn.functional as F
from lxt_rules import rule_maps  # first: registers lxt.efficient bare
from lxt.efficient.patches import patch_method
from lxt.efficient.rules import divide_gradient, stop_gradient
from transformers.models.qwen3_moe import modeling_qwen3_moe as m


def _routed(self, hidden_states, weigh):
    """The block's forward as transformers 4.52.4 writes it, with `weigh(y, w)` for the
    product of an expert's output and its routing weight."""
    batch_size, sequence_length, hidden_dim = hidden_states.shape
    x = hidden_states.view(-1, hidden_dim)
    router_logits = self.gate(x)
    weights = F.softmax(router_logits, dim=1, dtype=torch.float)
    weights, selected = torch.topk(weights, self.top_k, dim=-1)
    if self.norm_topk_prob:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    weights = weights.to(x.dtype)
    out = torch.zeros((batch_size * sequence_length, hidden_dim), dtype=x.dtype, device=x.device)
    mask = F.one_hot(selected, num_classes=self.num_experts).permute(2, 1, 0)
    for e in range(self.num_experts):
        idx, top_x = torch.where(mask[e])
        y = self.experts[e](x[None, top_x].reshape(-1, hidden_dim))
        out.index_add_(0, top_x, weigh(y, weights[top_x, idx, None]).to(x.dtype))
    return out.reshape(batch_size, sequence_length, hidden_dim), router_logits


def moe_forward(self, hidden_states):
    return _routed(self, hidden_states, lambda y, w: divide_gradient(y * w, 2))


def cp_moe_forward(self, hidden_states):
    return _routed(self, hidden_states, lambda y, w: y * stop_gradient(w))


attnLRP, cp_LRP = rule_maps(m, m.Qwen3MoeMLP, m.Qwen3MoeRMSNorm)
attnLRP[m.Qwen3MoeSparseMoeBlock] = partial(patch_method, moe_forward)
cp_LRP[m.Qwen3MoeSparseMoeBlock] = partial(patch_method, cp_moe_forward)
