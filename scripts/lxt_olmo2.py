"""lxt's efficient AttnLRP and CP-LRP rules for OLMo 2, which lxt 2.1 does not ship.

The same patches lxt applies to Llama, Qwen and Gemma (its own functions, nothing new): the
gated MLP (identity rule through the activation, uniform rule on the product), every RMSNorm
(identity rule through the normalisation; OLMo 2's q/k norms over all heads included, as
lxt treats Qwen3's per-head ones), dropout, and the attention (uniform rule on the products,
softmax probabilities as constants under CP-LRP). Imported by scripts/reference.py in place
of `lxt.efficient.models.olmo2`.
"""
from functools import partial

from torch.nn import Dropout
from transformers.models.olmo2 import modeling_olmo2
from transformers.models.olmo2.modeling_olmo2 import Olmo2MLP, Olmo2RMSNorm

from lxt.efficient.patches import (
    cp_gated_mlp_forward,
    dropout_forward,
    gated_mlp_forward,
    patch_attention,
    patch_cp_attention,
    patch_method,
    rms_norm_forward,
)

attnLRP = {
    Olmo2MLP: partial(patch_method, gated_mlp_forward),
    Olmo2RMSNorm: partial(patch_method, rms_norm_forward),
    Dropout: partial(patch_method, dropout_forward),
    modeling_olmo2: patch_attention,
}

cp_LRP = {
    Olmo2MLP: partial(patch_method, cp_gated_mlp_forward),
    Olmo2RMSNorm: partial(patch_method, rms_norm_forward),
    Dropout: partial(patch_method, dropout_forward),
    modeling_olmo2: patch_cp_attention,
}
