//! Qwen3.5 (text; dense sizes 0.8B to 27B): a hybrid of Gated DeltaNet layers
//! (`decoder/gated_deltanet.rs`, linear attention with a recurrent state) and, every
//! `full_attention_interval`-th layer (`layer_types`), Qwen3's attention (per-head q/k norms,
//! an explicit head width, a quarter of each head rotated) whose merged heads are gated by
//! σ of a second half of `q_proj`. Its RMSNorms scale by `1 + w` (the DeltaNet's output norm
//! by `w`).

use super::config::{DeltaNet, QkNorm};
use super::decoder::Config;
use super::family::{count, hf_f64, Family, GgufMeta};
use serde_json::Value;

/// The Qwen3.5 family.
#[derive(Debug, Clone, Copy)]
pub struct Qwen35;

/// transformers' default: every fourth layer attends.
const FULL_ATTENTION_INTERVAL: f64 = 4.0;

impl Family for Qwen35 {
    fn name(&self) -> &'static str {
        "Qwen3.5"
    }
    fn hf_model_types(&self) -> &'static [&'static str] {
        &["qwen3_5_text"]
    }
    fn gguf_architecture(&self) -> &'static str {
        "qwen35"
    }
    fn configure_hf(&self, raw: &Value, cfg: &mut Config) -> Result<(), String> {
        let field = |k: &str| count(hf_f64(raw, k), k);
        let d = DeltaNet {
            key_heads: field("linear_num_key_heads")?,
            value_heads: field("linear_num_value_heads")?,
            key_dim: field("linear_key_head_dim")?,
            value_dim: field("linear_value_head_dim")?,
            kernel: field("linear_conv_kernel_dim")?,
        };
        if !d.value_heads.is_multiple_of(d.key_heads) {
            return Err(format!(
                "linear_num_value_heads {} is not a multiple of linear_num_key_heads {}",
                d.value_heads, d.key_heads
            ));
        }
        let n = cfg.num_hidden_layers;
        cfg.arch.linear_layers = match raw.get("layer_types").filter(|v| !v.is_null()) {
            Some(v) => {
                let types: Vec<String> = serde_json::from_value(v.clone())
                    .map_err(|e| format!("layer_types: {e} (a list of layer types)"))?;
                if types.len() != n {
                    return Err(format!(
                        "layer_types lists {} layers; num_hidden_layers is {n}",
                        types.len()
                    ));
                }
                types
                    .iter()
                    .map(|t| match t.as_str() {
                        "linear_attention" => Ok(true),
                        "full_attention" => Ok(false),
                        other => Err(format!("layer type {other:?} is not supported")),
                    })
                    .collect::<Result<_, _>>()?
            }
            None => {
                let every =
                    hf_f64(raw, "full_attention_interval").unwrap_or(FULL_ATTENTION_INTERVAL);
                let every = count(Some(every), "full_attention_interval")?;
                (0..n).map(|i| !(i + 1).is_multiple_of(every)).collect()
            }
        };
        cfg.arch.delta_net = Some(d);
        cfg.arch.attention_output_gate = true;
        cfg.arch.qk_norm = Some(QkNorm::PerHead);
        cfg.arch.norm_plus_one = true;
        Ok(())
    }
    fn configure_gguf(&self, _md: GgufMeta, _cfg: &mut Config) -> Result<(), String> {
        Err("Qwen3.5 GGUFs are not read yet (its Hugging Face directory is)".into())
    }
}
