"""lxt's AttnLRP and CP-LRP rules for OLMo 3 (transformers 5.25.0; lxt 2.1 has none): its
Llama-shaped MLP, RMSNorms (q/k norms over all heads included, as for OLMo 2) and attention
take lxt's own rules (scripts/lxt_rules.py); the sliding window is a mask, YaRN a constant
factor on q and k. Imported by scripts/reference.py."""
from lxt_rules import rule_maps
from transformers.models.olmo3 import modeling_olmo3 as m

attnLRP, cp_LRP = rule_maps(m, m.Olmo3MLP, m.Olmo3RMSNorm)
