//! SmolLM3: Llama's decoder without RoPE in some layers ("NoPE": every fourth by default,
//! `no_rope_layers` in `config.json`, 0 where a layer has none).

use super::decoder::Config;
use super::family::{hf_bool, hf_f64, Family, GgufMeta};
use serde_json::Value;

/// The SmolLM3 family.
#[derive(Debug, Clone, Copy)]
pub struct SmolLM3;

/// transformers' and llama.cpp's default: every fourth layer has no RoPE.
const NO_ROPE_INTERVAL: usize = 4;

fn every(n: usize, interval: usize) -> Vec<bool> {
    (0..n).map(|i| (i + 1) % interval.max(1) != 0).collect()
}

impl Family for SmolLM3 {
    fn name(&self) -> &'static str {
        "SmolLM3"
    }
    fn hf_model_types(&self) -> &'static [&'static str] {
        &["smollm3"]
    }
    fn gguf_architecture(&self) -> &'static str {
        "smollm3"
    }
    fn configure_hf(&self, raw: &Value, cfg: &mut Config) -> Result<(), String> {
        if hf_bool(raw, "attention_bias") == Some(true) {
            return Err("SmolLM3 with attention_bias is not supported".into());
        }
        if hf_bool(raw, "use_sliding_window") == Some(true) {
            return Err("SmolLM3 with use_sliding_window is not supported".into());
        }
        let n = cfg.num_hidden_layers;
        cfg.arch.layer_rope = match raw.get("no_rope_layers").and_then(Value::as_array) {
            Some(list) => {
                if list.len() != n {
                    return Err(format!(
                        "no_rope_layers has {} entries for {n} layers",
                        list.len()
                    ));
                }
                list.iter().map(|v| v.as_f64() != Some(0.0)).collect()
            }
            None => {
                let interval =
                    hf_f64(raw, "no_rope_layer_interval").map_or(NO_ROPE_INTERVAL, |v| v as usize);
                every(n, interval)
            }
        };
        Ok(())
    }
    fn configure_gguf(&self, _md: GgufMeta, cfg: &mut Config) -> Result<(), String> {
        // llama.cpp fixes the interval (`n_no_rope_layer_step = 4`); no metadata key.
        cfg.arch.layer_rope = every(cfg.num_hidden_layers, NO_ROPE_INTERVAL);
        Ok(())
    }
    fn gguf_rope_interleaved(&self) -> bool {
        // llama.cpp's converter permutes SmolLM3's q and k as Llama's.
        true
    }
}
