//! Model families: how a `config.json` or a GGUF file's metadata becomes a decoder
//! [`Config`]. Each family lives in its own module; `models::FAMILIES` registers them.

use super::decoder::Config;
use serde_json::Value;

/// Reads a GGUF metadata number under the file's architecture prefix
/// (`"attention.sliding_window"` → `gemma3.attention.sliding_window`).
pub type GgufMeta<'a> = &'a dyn Fn(&str) -> Option<f64>;

/// One family of decoder models.
pub trait Family: Sync {
    /// Its name in messages.
    fn name(&self) -> &'static str;
    /// `model_type` values of its `config.json`.
    fn hf_model_types(&self) -> &'static [&'static str];
    /// Its GGUF `general.architecture`.
    fn gguf_architecture(&self) -> &'static str;
    /// Sets the family's traits from `config.json` (common fields are already read).
    fn configure_hf(&self, raw: &Value, cfg: &mut Config) -> Result<(), String>;
    /// Sets the family's traits from GGUF metadata (common fields are already read).
    fn configure_gguf(&self, md: GgufMeta, cfg: &mut Config) -> Result<(), String>;
    /// llama.cpp's tensor name for a Hugging Face layer tensor suffix
    /// (`post_attention_layernorm.weight`), where the family's differs from the common map.
    fn gguf_tensor(&self, _hf_suffix: &str) -> Option<&'static str> {
        None
    }
    /// Whether llama.cpp permuted Q and K so that RoPE pairs adjacent dimensions (Llama).
    fn gguf_rope_interleaved(&self) -> bool {
        false
    }
}

/// A number field of `config.json`.
pub fn hf_f64(raw: &Value, key: &str) -> Option<f64> {
    raw.get(key).and_then(Value::as_f64)
}

/// A boolean field of `config.json`.
pub fn hf_bool(raw: &Value, key: &str) -> Option<bool> {
    raw.get(key).and_then(Value::as_bool)
}
