//! Qwen2 / Qwen2.5: Llama's decoder with biases on the q, k and v projections.

use super::decoder::Config;
use super::family::{Family, GgufMeta};
use serde_json::Value;

/// The Qwen2 family.
#[derive(Debug, Clone, Copy)]
pub struct Qwen2;

impl Family for Qwen2 {
    fn name(&self) -> &'static str {
        "Qwen2"
    }
    fn hf_model_types(&self) -> &'static [&'static str] {
        &["qwen2"]
    }
    fn gguf_architecture(&self) -> &'static str {
        "qwen2"
    }
    fn configure_hf(&self, raw: &Value, cfg: &mut Config) -> Result<(), String> {
        if super::family::hf_bool(raw, "use_sliding_window") == Some(true) {
            return Err("Qwen2 with use_sliding_window is not supported".into());
        }
        cfg.arch.attention_bias = true;
        Ok(())
    }
    fn configure_gguf(&self, _md: GgufMeta, cfg: &mut Config) -> Result<(), String> {
        cfg.arch.attention_bias = true;
        Ok(())
    }
}
