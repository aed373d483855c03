//! Mistral: Llama's decoder with a sliding window over every layer where configured (Mistral
//! 7B v0.1; Mistral Small 3's text model has none) and an explicit head width; Ministral 3
//! adds YaRN-scaled RoPE (`rope_scaling.rs`) and Llama 4's attention temperature: past the
//! pre-training context, the queries of position `p` are multiplied by
//! `1 + β·ln(1 + ⌊p / original⌋)` (`QueryTemperature`; 1 before it). (Mistral 7B's GGUFs
//! are llama.cpp's `llama` architecture, read by the Llama family.)

use super::config::QueryTemperature;
use super::decoder::Config;
use super::family::{hf_bool, hf_f64, window_every_layer, Family, GgufMeta};
use serde_json::Value;

/// The Mistral family (Mistral 7B, Mistral Small 3, Ministral 3).
#[derive(Debug, Clone, Copy)]
pub struct Mistral;

impl Family for Mistral {
    fn name(&self) -> &'static str {
        "Mistral"
    }
    fn hf_model_types(&self) -> &'static [&'static str] {
        &["mistral", "ministral3"]
    }
    fn gguf_architecture(&self) -> &'static str {
        "mistral3"
    }
    fn configure_hf(&self, raw: &Value, cfg: &mut Config) -> Result<(), String> {
        if hf_bool(raw, "attention_bias") == Some(true) {
            return Err("Mistral with attention_bias is not supported".into());
        }
        window_every_layer(cfg, hf_f64(raw, "sliding_window"));
        // transformers reads both from the RoPE parameters (`rope_scaling` once read).
        let rope = raw.get("rope_scaling");
        let beta = rope.and_then(|r| hf_f64(r, "llama_4_scaling_beta"));
        let length = rope.and_then(|r| hf_f64(r, "original_max_position_embeddings"));
        cfg.arch.query_temperature = temperature(beta, length)?;
        Ok(())
    }
    fn configure_gguf(&self, md: GgufMeta, cfg: &mut Config) -> Result<(), String> {
        let beta = md.num("attention.temperature_scale");
        let length = md.num("rope.scaling.original_context_length");
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
