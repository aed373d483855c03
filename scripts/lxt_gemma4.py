"""lxt's AttnLRP and CP-LRP rules for Gemma 4 (transformers 5.25.0; lxt 2.1 has none): lxt's
own rules as it applies them to Gemma 3. The gated MLP takes the identity rule through its
GELU and the uniform rule on its product; the attention the uniform rule on its products (the
softmax probabilities constant under CP-LRP). Every RMSNorm (the sandwich norms, the per-head
q/k norms, the weightless value norm and the per-layer inputs' norms) takes the identity rule
through its normalisation, patched into `_norm` as lxt does for Gemma 3, so that the weight,
where there is one, multiplies after it. The layer scale is a constant factor.

The block that adds a layer's own input, `post(W_out (gelu(W_gate h) ⊙ pli))`, is a gated
product like the MLP's and takes the MLP's rules: AttnLRP the identity rule through the GELU
and the uniform rule on the product, CP-LRP the gate held constant. transformers writes it
inside the decoder layer's forward, so the layer's forward is wrapped: the original runs with
the block and the scale switched off, then the block and the scale follow here.

26B-A4B's experts (`Gemma4TextExperts`) take lxt's rules for Qwen3-MoE's
(scripts/lxt_qwen3_moe.py): each expert's gated product the MLP's rules, the weighting
`expert(x) · w` the uniform rule under AttnLRP and the weight held constant under CP-LRP. The
router's softmax, top-k and renormalisation keep their ordinary derivatives; its norm is a
Gemma4RMSNorm like the others. Written for transformers 5.25's stacked experts: their
forward (an eager loop over the chosen experts) with the rules in place
(scripts/lxt_rules.py's `stacked_experts_forward`).
Imported by scripts/reference.py.
"""
from functools import partial

import torch
from lxt_rules import rule_maps, stacked_experts_forward
from lxt.efficient.patches import patch_method
from lxt.efficient.rules import divide_gradient, identity_rule_implicit, stop_gradient
from transformers.models.gemma4 import modeling_gemma4 as m

_original_layer_forward = m.Gemma4TextDecoderLayer.forward


def gemma4_norm(self, x):
    """Gemma 4's normalisation with its scale as a constant (the identity rule)."""
    mean_squared = x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon
    return x * stop_gradient(torch.pow(mean_squared, -0.5))


def _layer_forward(gated):
    """The decoder layer's forward with its own input's block under `gated`."""
    def forward(self, hidden_states, per_layer_input=None, *args, **kwargs):
        return _ruled_layer(gated, self, hidden_states, per_layer_input, *args, **kwargs)
    return forward


def _ruled_layer(gated, self, hidden_states, per_layer_input, *args, **kwargs):
    """The decoder layer with its own input's block under `gated` (act(gate) ⊙ input)."""
    if not self.hidden_size_per_layer_input:
        return _original_layer_forward(self, hidden_states, per_layer_input, *args, **kwargs)
    width, scale = self.hidden_size_per_layer_input, self.layer_scalar
    self.hidden_size_per_layer_input = 0
    self._buffers["layer_scalar"] = torch.ones_like(scale)
    try:
        h = _original_layer_forward(self, hidden_states, None, *args, **kwargs)
    finally:
        self.hidden_size_per_layer_input = width
        self._buffers["layer_scalar"] = scale
    z = gated(self, self.per_layer_input_gate(h), per_layer_input)
    h = h + self.post_per_layer_input_norm(self.per_layer_projection(z))
    return h * scale


def _attn_gated(layer, gate, up):
    """lxt's gated_mlp_forward's rules: identity rule through the activation, uniform rule."""
    return divide_gradient(identity_rule_implicit(layer.act_fn, gate) * up, 2)


def _cp_gated(layer, gate, up):
    """lxt's cp_gated_mlp_forward's rule: the gate held constant."""
    return layer.act_fn(stop_gradient(gate)) * up


def _attn_weigh(y, w):
    return divide_gradient(y * w, 2)


def _cp_weigh(y, w):
    return y * stop_gradient(w)


attnLRP, cp_LRP = rule_maps(m, m.Gemma4TextMLP, m.Gemma4RMSNorm)
for rules, gated, weigh in ((attnLRP, _attn_gated, _attn_weigh), (cp_LRP, _cp_gated, _cp_weigh)):
    rules[m.Gemma4RMSNorm] = partial(patch_method, gemma4_norm, method_name="_norm")
    rules[m.Gemma4TextDecoderLayer] = partial(patch_method, _layer_forward(gated))
    rules[m.Gemma4TextExperts] = partial(patch_method, stacked_experts_forward(gated, weigh))
