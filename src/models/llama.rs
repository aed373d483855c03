//! Llama (SmolLM2, Llama 2/3 and their kin): the plain decoder.

use super::decoder::Config;
use super::family::{Family, GgufMeta};
use serde_json::Value;

/// The Llama family.
#[derive(Debug, Clone, Copy)]
pub struct Llama;

impl Family for Llama {
    fn name(&self) -> &'static str {
        "Llama"
    }
    fn hf_model_types(&self) -> &'static [&'static str] {
        &["llama"]
    }
    fn gguf_architecture(&self) -> &'static str {
        "llama"
    }
    fn configure_hf(&self, raw: &Value, _cfg: &mut Config) -> Result<(), String> {
        if super::family::hf_bool(raw, "attention_bias") == Some(true) {
            return Err("attention_bias is not supported for Llama".into());
        }
        Ok(())
    }
    fn configure_gguf(&self, _md: GgufMeta, _cfg: &mut Config) -> Result<(), String> {
        Ok(())
    }
    fn gguf_rope_interleaved(&self) -> bool {
        true
    }
}
