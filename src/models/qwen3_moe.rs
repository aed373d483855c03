//! Qwen3-MoE (Qwen3-30B-A3B, Qwen3-235B-A22B): Qwen3's attention (set up by `Qwen3`) (per-head q/k norms, an
//! explicit head width) with sparse experts in place of the MLP (`decoder/moe.rs`): a router
//! picks `num_experts_per_tok` of `num_experts` gated MLPs of width `moe_intermediate_size`
//! per token. Layers listed in `mlp_only_layers`, or off the `decoder_sparse_step` grid, keep
//! a dense MLP of `intermediate_size`. GGUF (`qwen3moe`): `expert_count`,
//! `expert_used_count`, `expert_feed_forward_length`; the router `ffn_gate_inp` and each
//! projection's experts stacked in one tensor (`ffn_{gate,up,down}_exps`), read per expert
//! (`source::fused`); llama.cpp renormalises the chosen weights. A GGUF layer has experts
//! where it has a router (llama.cpp's converter writes one in every layer).

use super::config::Experts;
use super::decoder::Config;
use super::family::{count, gguf_expert_counts, hf_bool, hf_f64, Family, GgufMeta};
use super::qwen3::Qwen3;
use serde_json::Value;

/// The Qwen3-MoE family.
#[derive(Debug, Clone, Copy)]
pub struct Qwen3Moe;

impl Family for Qwen3Moe {
    fn name(&self) -> &'static str {
        "Qwen3-MoE"
    }
    fn hf_model_types(&self) -> &'static [&'static str] {
        &["qwen3_moe"]
    }
    fn gguf_architecture(&self) -> &'static str {
        "qwen3moe"
    }
    fn configure_hf(&self, raw: &Value, cfg: &mut Config) -> Result<(), String> {
        Qwen3.configure_hf(raw, cfg)?;
        let step = hf_f64(raw, "decoder_sparse_step").unwrap_or(1.0);
        let step = count(Some(step), "decoder_sparse_step")?;
        let dense: Vec<u64> = match raw.get("mlp_only_layers") {
            None | Some(Value::Null) => Vec::new(),
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|e| format!("mlp_only_layers: {e} (a list of layer numbers)"))?,
        };
        let sparse = (0..cfg.num_hidden_layers)
            .map(|l| !dense.contains(&(l as u64)) && (l + 1).is_multiple_of(step))
            .collect();
        cfg.arch.experts = Some(Experts {
            count: count(hf_f64(raw, "num_experts"), "num_experts")?,
            per_token: count(hf_f64(raw, "num_experts_per_tok"), "num_experts_per_tok")?,
            width: count(
                hf_f64(raw, "moe_intermediate_size"),
                "moe_intermediate_size",
            )?,
            normalize: hf_bool(raw, "norm_topk_prob").unwrap_or(false),
            sparse,
            shared: None,
            beside_dense: false,
        });
        Ok(())
    }
    fn configure_gguf(&self, md: GgufMeta, cfg: &mut Config) -> Result<(), String> {
        Qwen3.configure_gguf(md, cfg)?;
        // Which layers have them: set by the GGUF reader from the layers' routers.
        let counts = gguf_expert_counts(md)?;
        cfg.arch.experts = Some(Experts::in_every_layer(cfg.num_hidden_layers, counts));
        Ok(())
    }
    fn gguf_tensor(&self, hf_suffix: &str) -> Option<&'static str> {
        (hf_suffix == "mlp.gate.weight").then_some("ffn_gate_inp.weight")
    }
}
