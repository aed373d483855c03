//! Ministral 3 (and the text model of Mistral 3): Llama's decoder with YaRN-scaled RoPE
//! (`rope_scaling.rs`) and Llama 4's attention temperature: past the pre-training context,
//! the queries of position `p` are multiplied by `1 + β·ln(1 + ⌊p / original⌋)`
//! (`QueryTemperature`; 1 before it).

use super::config::QueryTemperature;
use super::decoder::Config;
use super::family::{hf_bool, hf_f64, Family, GgufMeta};
use serde_json::Value;

/// The Ministral 3 family.
#[derive(Debug, Clone, Copy)]
pub struct Ministral3;

impl Family for Ministral3 {
    fn name(&self) -> &'static str {
        "Ministral 3"
    }
    fn hf_model_types(&self) -> &'static [&'static str] {
        &["ministral3"]
    }
    fn gguf_architecture(&self) -> &'static str {
        "mistral3"
    }
    fn configure_hf(&self, raw: &Value, cfg: &mut Config) -> Result<(), String> {
        if hf_bool(raw, "attention_bias") == Some(true) {
            return Err("Ministral 3 with attention_bias is not supported".into());
        }
        if let Some(w) = hf_f64(raw, "sliding_window").filter(|w| *w >= 1.0) {
            cfg.arch.layer_windows = vec![Some(w as usize); cfg.num_hidden_layers];
        }
        // transformers reads both from the RoPE parameters (`rope_scaling` once read).
        let rope = raw.get("rope_scaling");
        let beta = rope.and_then(|r| hf_f64(r, "llama_4_scaling_beta"));
        let length = rope.and_then(|r| hf_f64(r, "original_max_position_embeddings"));
        cfg.arch.query_temperature = temperature(beta, length)?;
        Ok(())
    }
    fn configure_gguf(&self, md: GgufMeta, cfg: &mut Config) -> Result<(), String> {
        let beta = md("attention.temperature_scale");
        let length = md("rope.scaling.original_context_length");
        cfg.arch.query_temperature = temperature(beta, length)?;
        Ok(())
    }
    fn gguf_rope_interleaved(&self) -> bool {
        // llama.cpp's converter permutes q and k as Llama's.
        true
    }
}

fn temperature(beta: Option<f64>, length: Option<f64>) -> Result<Option<QueryTemperature>, String> {
    match (beta.filter(|b| *b != 0.0), length) {
        (None, _) => Ok(None),
        (Some(beta), Some(length)) if length >= 1.0 => Ok(Some(QueryTemperature {
            beta,
            length: length as usize,
        })),
        (Some(_), _) => Err(
            "an attention temperature (llama_4_scaling_beta) needs the original context length"
                .into(),
        ),
    }
}
