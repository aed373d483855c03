//! OLMo 2: Llama's decoder with its norms after each block instead of before
//! (`h + norm(attention(h))`, then `h + norm(mlp(h))`), and RMSNorms on q and k over all
//! heads together (not per head), before RoPE.

use super::config::{NormPlacement, QkNorm};
use super::decoder::Config;
use super::family::{hf_f64, Family, GgufMeta};
use serde_json::Value;

/// The OLMo 2 family.
#[derive(Debug, Clone, Copy)]
pub struct Olmo2;

fn common(cfg: &mut Config) {
    cfg.arch.norms = NormPlacement::Post;
    cfg.arch.qk_norm = Some(QkNorm::AllHeads);
}

impl Family for Olmo2 {
    fn name(&self) -> &'static str {
        "OLMo 2"
    }
    fn hf_model_types(&self) -> &'static [&'static str] {
        &["olmo2"]
    }
    fn gguf_architecture(&self) -> &'static str {
        "olmo2"
    }
    fn configure_hf(&self, raw: &Value, cfg: &mut Config) -> Result<(), String> {
        if super::family::hf_bool(raw, "attention_bias") == Some(true) {
            return Err("OLMo 2 with attention_bias is not supported".into());
        }
        if hf_f64(raw, "sliding_window").is_some_and(|w| w > 0.0) {
            return Err("OLMo 2 with a sliding window (OLMo 3) is not supported yet".into());
        }
        common(cfg);
        Ok(())
    }
    fn configure_gguf(&self, md: GgufMeta, cfg: &mut Config) -> Result<(), String> {
        if md("attention.sliding_window").is_some_and(|w| w > 0.0) {
            return Err("OLMo 2 with a sliding window (OLMo 3) is not supported yet".into());
        }
        common(cfg);
        Ok(())
    }
    fn gguf_tensor(&self, hf_suffix: &str) -> Option<&'static str> {
        // Hugging Face's post_attention_layernorm norms the attention's output here (as in
        // Gemma 3), not the MLP's input as in Llama.
        (hf_suffix == "post_attention_layernorm.weight").then_some("post_attention_norm.weight")
    }
}
