"""lxt's AttnLRP and CP-LRP rules for Mistral (transformers 4.52.4; lxt 2.1 has no Mistral
module): its Llama-shaped MLP, RMSNorm and attention take lxt's own rules
(scripts/lxt_rules.py). Imported by scripts/reference.py."""
from lxt_rules import rule_maps
from transformers.models.mistral import modeling_mistral as m

attnLRP, cp_LRP = rule_maps(m, m.MistralMLP, m.MistralRMSNorm)
