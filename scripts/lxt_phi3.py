"""lxt's AttnLRP and CP-LRP rules for Phi-3 / Phi-4-mini (transformers 5.25.0; lxt 2.1 has
none). The MLP stores its gate and up projections as one matrix (`gate_up_proj`, gate first),
so lxt's gated-MLP forwards are written here for that layout with lxt's own rule functions:
the identity rule through the activation and the uniform rule on the product (AttnLRP), the
gate as a constant (CP-LRP) - the same rules as lxt's Llama MLP. RMSNorm and attention take
lxt's own (scripts/lxt_rules.py). Imported by scripts/reference.py."""
from lxt_rules import rule_maps  # first: registers lxt.efficient bare
from lxt.efficient.rules import divide_gradient, identity_rule_implicit, stop_gradient
from transformers.models.phi3 import modeling_phi3 as m


def _halves(self, x):
    return self.gate_up_proj(x).chunk(2, dim=-1)


def phi3_mlp_forward(self, x):
    gate, up = _halves(self, x)
    weighted = identity_rule_implicit(self.activation_fn, gate) * up
    return self.down_proj(divide_gradient(weighted, 2))


def cp_phi3_mlp_forward(self, x):
    gate, up = _halves(self, x)
    return self.down_proj(self.activation_fn(stop_gradient(gate)) * up)


attnLRP, cp_LRP = rule_maps(
    m, m.Phi3MLP, m.Phi3RMSNorm, mlp_forwards=(phi3_mlp_forward, cp_phi3_mlp_forward)
)
