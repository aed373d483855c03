//! Qwen3 (the first seed's model family): Llama's decoder with an RMSNorm on each head's
//! queries and keys before RoPE, and an explicit head width.

use super::config::QkNorm;
use super::decoder::Config;
use super::family::{Family, GgufMeta};
use serde_json::Value;

/// The Qwen3 family.
#[derive(Debug, Clone, Copy)]
pub struct Qwen3;

impl Family for Qwen3 {
    fn name(&self) -> &'static str {
        "Qwen3"
    }
    fn hf_model_types(&self) -> &'static [&'static str] {
        &["qwen3"]
    }
    fn gguf_architecture(&self) -> &'static str {
        "qwen3"
    }
    fn configure_hf(&self, raw: &Value, cfg: &mut Config) -> Result<(), String> {
        if super::family::hf_bool(raw, "use_sliding_window") == Some(true) {
            return Err("use_sliding_window: true is not supported".into());
        }
        cfg.arch.attention_bias = super::family::hf_bool(raw, "attention_bias").unwrap_or(false);
        cfg.arch.qk_norm = Some(QkNorm::PerHead);
        Ok(())
    }
    fn configure_gguf(&self, md: GgufMeta, cfg: &mut Config) -> Result<(), String> {
        cfg.arch.qk_norm = Some(QkNorm::PerHead);
        if let Some(k) = md.num("attention.key_length") {
            cfg.head_dim = Some(k as usize);
        }
        Ok(())
    }
}
