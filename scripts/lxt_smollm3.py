"""lxt's efficient AttnLRP and CP-LRP rules for SmolLM3 (transformers 5.25.0; lxt 2.1 has
no SmolLM3 module and predates transformers 5).

lxt's own rule functions, as it applies them to Llama: the gated MLP (identity rule through
the activation, uniform rule on the product), every RMSNorm (identity rule), and the
attention (uniform rule on its products; under CP-LRP the probabilities as constants). The
attention wrapper replaces only the module's `eager_attention_forward` (the references run
eager attention): lxt's `patch_attention` also swaps the module's `ALL_ATTENTION_FUNCTIONS`
for a plain dict, which transformers 5 can no longer call. Imported by scripts/reference.py.
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

from transformers.models.smollm3 import modeling_smollm3  # noqa: E402
from transformers.models.smollm3.modeling_smollm3 import SmolLM3MLP, SmolLM3RMSNorm  # noqa: E402

from lxt.efficient.patches import (  # noqa: E402
    cp_gated_mlp_forward,
    cp_wrap_attention_forward,
    gated_mlp_forward,
    patch_method,
    rms_norm_forward,
    wrap_attention_forward,
)


def _eager_only(wrap, module):
    module.eager_attention_forward = wrap(module.eager_attention_forward)
    return True


attnLRP = {
    SmolLM3MLP: partial(patch_method, gated_mlp_forward),
    SmolLM3RMSNorm: partial(patch_method, rms_norm_forward),
    modeling_smollm3: partial(_eager_only, wrap_attention_forward),
}

cp_LRP = {
    SmolLM3MLP: partial(patch_method, cp_gated_mlp_forward),
    SmolLM3RMSNorm: partial(patch_method, rms_norm_forward),
    modeling_smollm3: partial(_eager_only, cp_wrap_attention_forward),
}
