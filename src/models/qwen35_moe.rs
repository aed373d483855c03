//! Qwen3.5-MoE (Qwen3.5-35B-A3B and up): Qwen3.5's hybrid of Gated DeltaNet and gated
//! attention layers (set up by `Qwen35`) with sparse experts in every layer's MLP
//! (`decoder/moe.rs`): a router picks `num_experts_per_tok` of `num_experts` gated MLPs of
//! width `moe_intermediate_size`, their weights always renormalised, and a shared expert of
//! width `shared_expert_intermediate_size` runs on every token, scaled by σ of
//! `shared_expert_gate`. No dense MLP (the config has no `intermediate_size`).
//! GGUF (`qwen35moe`): `expert_count`, `expert_used_count`, `expert_feed_forward_length`,
//! `expert_shared_feed_forward_length`; the shared expert as `ffn_{gate,up,down}_shexp` and
//! its gate as `ffn_gate_inp_shexp`.

use super::config::Experts;
use super::decoder::Config;
use super::family::{count, gguf_expert_counts, hf_f64, Family, GgufMeta};
use super::qwen35::Qwen35;
use serde_json::Value;

/// The Qwen3.5-MoE family.
#[derive(Debug, Clone, Copy)]
pub struct Qwen35Moe;

/// Every layer's experts, from the four counts.
fn experts(cfg: &mut Config, [count, per_token, width, shared]: [usize; 4]) {
    cfg.arch.experts = Some(Experts {
        shared: Some(shared),
        ..Experts::in_every_layer(cfg.num_hidden_layers, [count, per_token, width])
    });
}

impl Family for Qwen35Moe {
    fn name(&self) -> &'static str {
        "Qwen3.5-MoE"
    }
    fn hf_model_types(&self) -> &'static [&'static str] {
        &["qwen3_5_moe_text"]
    }
    fn gguf_architecture(&self) -> &'static str {
        "qwen35moe"
    }
    fn configure_hf(&self, raw: &Value, cfg: &mut Config) -> Result<(), String> {
        Qwen35.configure_hf(raw, cfg)?;
        let field = |k: &str| count(hf_f64(raw, k), k);
        let counts = [
            field("num_experts")?,
            field("num_experts_per_tok")?,
            field("moe_intermediate_size")?,
            field("shared_expert_intermediate_size")?,
        ];
        experts(cfg, counts);
        Ok(())
    }
    fn configure_gguf(&self, md: GgufMeta, cfg: &mut Config) -> Result<(), String> {
        Qwen35.configure_gguf(md, cfg)?;
        let [n, per_token, width] = gguf_expert_counts(md)?;
        let shared = "expert_shared_feed_forward_length";
        experts(cfg, [n, per_token, width, count(md.num(shared), shared)?]);
        Ok(())
    }
    fn gguf_tensor(&self, hf_suffix: &str) -> Option<&'static str> {
        Qwen35.gguf_tensor(hf_suffix).or(match hf_suffix {
            "mlp.gate.weight" => Some("ffn_gate_inp.weight"),
            "mlp.shared_expert.gate_proj.weight" => Some("ffn_gate_shexp.weight"),
            "mlp.shared_expert.up_proj.weight" => Some("ffn_up_shexp.weight"),
            "mlp.shared_expert.down_proj.weight" => Some("ffn_down_shexp.weight"),
            "mlp.shared_expert_gate.weight" => Some("ffn_gate_inp_shexp.weight"),
            _ => None,
        })
    }
}
