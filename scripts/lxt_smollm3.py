"""lxt's AttnLRP and CP-LRP rules for SmolLM3 (transformers 5.25.0; lxt 2.1 has no SmolLM3
module): its Llama-shaped MLP, RMSNorm and attention take lxt's own rules (scripts/lxt_rules.py).
Imported by scripts/reference.py."""
from lxt_rules import rule_maps
from transformers.models.smollm3 import modeling_smollm3 as m

attnLRP, cp_LRP = rule_maps(m, m.SmolLM3MLP, m.SmolLM3RMSNorm)
