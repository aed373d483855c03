"""lxt's AttnLRP and CP-LRP rules for Gemma 4 (transformers 5.25.0; lxt 2.1 has none): lxt's
own rules as it applies them to Gemma 3. The gated MLP takes the identity rule through its
GELU and the uniform rule on its product; the attention the uniform rule on its products (the
softmax probabilities constant under CP-LRP). Every RMSNorm (the sandwich norms, the per-head
q/k norms and the weightless value norm) takes the identity rule through its normalisation,
patched into `_norm` as lxt does for Gemma 3, so that the weight, where there is one,
multiplies after it. The layer scale is a constant factor. Imported by scripts/reference.py.
"""
from functools import partial

import torch
from lxt_rules import rule_maps
from lxt.efficient.patches import patch_method
from lxt.efficient.rules import stop_gradient
from transformers.models.gemma4 import modeling_gemma4 as m


def gemma4_norm(self, x):
    """Gemma 4's normalisation with its scale as a constant (the identity rule)."""
    mean_squared = x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon
    return x * stop_gradient(torch.pow(mean_squared, -0.5))


attnLRP, cp_LRP = rule_maps(m, m.Gemma4TextMLP, m.Gemma4RMSNorm)
for rules in (attnLRP, cp_LRP):
    rules[m.Gemma4RMSNorm] = partial(patch_method, gemma4_norm, method_name="_norm")
