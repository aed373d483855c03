"""lxt's AttnLRP and CP-LRP rules for Ministral 3 (transformers 5.25.0; lxt 2.1 has none): its
Llama-shaped MLP, RMSNorm and attention take lxt's own rules (scripts/lxt_rules.py). YaRN and
the attention temperature are constant factors on q and k, which the rules pass through as
any linear map. Imported by scripts/reference.py."""
from lxt_rules import rule_maps
from transformers.models.ministral3 import modeling_ministral3 as m

attnLRP, cp_LRP = rule_maps(m, m.Ministral3MLP, m.Ministral3RMSNorm)
