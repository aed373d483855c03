"""lxt 2.1's efficient AttnLRP and CP-LRP rules applied to a family that lxt does not ship,
under transformers 4.52.4 or 5 (lxt 2.1 predates transformers 5). Imported by the
scripts/lxt_<family>.py modules that scripts/reference.py loads.

lxt's own rule functions, as it applies them to Llama: the gated MLP (identity rule through
the activation, uniform rule on the product), every RMSNorm (identity rule), and the
attention (uniform rule on its products; under CP-LRP the probabilities as constants). The
attention wrapper replaces only the module's `eager_attention_forward` (the references run
eager attention): lxt's `patch_attention` also swaps the module's `ALL_ATTENTION_FUNCTIONS`
for a plain dict, which transformers 5 can no longer call.
"""
import os
import sys
import types
from functools import partial

import lxt

# lxt.efficient's package __init__ imports every lxt model module, and its BERT one no longer
# imports under transformers 5; the rule functions themselves (patches.py, rules.py) do. So
# the package is registered bare and only those two modules are loaded.
if "lxt.efficient" not in sys.modules:
    _pkg = types.ModuleType("lxt.efficient")
    _pkg.__path__ = [os.path.join(os.path.dirname(lxt.__file__), "efficient")]
    sys.modules["lxt.efficient"] = _pkg

from lxt.efficient.patches import (  # noqa: E402
    cp_gated_mlp_forward,
    cp_wrap_attention_forward,
    gated_mlp_forward,
    patch_method,
    rms_norm_forward,
    wrap_attention_forward,
)


def _eager_only(wrap, module):
    """Wraps the module's original eager attention with `wrap`'s rules: two families' maps
    may name one module (Qwen3.5-MoE's attention is Qwen3.5's), and rules wrapped over rules
    would apply twice."""
    original = getattr(module.eager_attention_forward, "_lxt_original",
                       module.eager_attention_forward)
    module.eager_attention_forward = wrap(original)
    module.eager_attention_forward._lxt_original = original
    return True


def rule_maps(modeling, mlp, norm, mlp_forwards=(gated_mlp_forward, cp_gated_mlp_forward)):
    """(attnLRP, cp_LRP) patch maps for a modeling module, its MLP and RMSNorm classes;
    `mlp_forwards`: the MLP's AttnLRP and CP-LRP forwards, where its layout is not lxt's."""
    attn, cp = mlp_forwards
    return (
        {
            mlp: partial(patch_method, attn),
            norm: partial(patch_method, rms_norm_forward),
            modeling: partial(_eager_only, wrap_attention_forward),
        },
        {
            mlp: partial(patch_method, cp),
            norm: partial(patch_method, rms_norm_forward),
            modeling: partial(_eager_only, cp_wrap_attention_forward),
        },
    )


def stacked_experts_forward(gated, weigh):
    """transformers 5's stacked experts' forward (`Qwen3_5MoeExperts`, `Gemma4TextExperts`:
    `gate_up_proj` and `down_proj` of shape (experts, …), an eager loop over the chosen ones)
    with `gated(self, gate, up)` for each expert's product and `weigh(y, w)` for its output
    times its routing weight. Where the module has a function `edit_hidden(expert, units)`,
    each expert's hidden units (its down projection's input) are replaced by what it returns
    (scripts/steer_reference.py's edits); where it has a list `keep_hidden`, they go there as
    (expert, rows, units), gradient retained (scripts/neuron_reference.py reads them)."""
    import torch
    import torch.nn.functional as F

    def forward(self, hidden_states, top_k_index, top_k_weights):
        out = torch.zeros_like(hidden_states)
        keep = getattr(self, "keep_hidden", None)
        for e in range(self.num_experts):
            rows, slots = torch.where(top_k_index == e)
            if rows.numel() == 0:
                continue
            gate, up = F.linear(hidden_states[rows], self.gate_up_proj[e]).chunk(2, dim=-1)
            h = gated(self, gate, up)
            if getattr(self, "edit_hidden", None) is not None:
                h = self.edit_hidden(e, h)
            if keep is not None:
                h.retain_grad()
                keep.append((e, rows, h))
            y = F.linear(h, self.down_proj[e])
            out.index_add_(0, rows, weigh(y, top_k_weights[rows, slots, None]).to(out.dtype))
        return out
    return forward


# transformers' own computation, written as the loop above (for reading and editing the
# experts' hidden units under plain gradients).
plain_experts_forward = stacked_experts_forward(lambda self, gate, up: self.act_fn(gate) * up,
                                                lambda y, w: y * w)
