//! OLMo 2 and OLMo 3: Llama's decoder with its norms after each block instead of before
//! (`h + norm(attention(h))`, then `h + norm(mlp(h))`), and RMSNorms on q and k over all
//! heads together (not per head), before RoPE. OLMo 3 adds a sliding window in three layers
//! of four (`layer_types`; by default every fourth attends to everything), whose RoPE is
//! unscaled: the `rope_scaling` (YaRN in the long-context checkpoints) turns only the full
//! layers' positions. llama.cpp reads both as `olmo2`, OLMo 3 with
//! `attention.sliding_window` and the layers' pattern (`attention.sliding_window_pattern`).

use super::config::{NormPlacement, QkNorm};
use super::decoder::Config;
use super::family::{hf_f64, hf_layer_types, Family, GgufMeta};
use serde_json::Value;

/// The OLMo 2 / OLMo 3 family.
#[derive(Debug, Clone, Copy)]
pub struct Olmo2;

/// OLMo 3's default: layers `i` with `(i + 1) % 4 != 0` slide (transformers'
/// `Olmo3Config`; llama.cpp's pattern of 4).
const PATTERN: usize = 4;

/// transformers' `Olmo3Config` window, for a config without one.
const OLMO3_WINDOW: usize = 4096;

fn common(cfg: &mut Config) {
    cfg.arch.norms = NormPlacement::Post;
    cfg.arch.qk_norm = Some(QkNorm::AllHeads);
}

/// Sliding windows in every layer but each `pattern`-th; the sliding layers' RoPE unscaled
/// with base `local_theta`.
fn windows(cfg: &mut Config, window: usize, pattern: usize, local_theta: f64) {
    cfg.arch.layer_windows = (0..cfg.num_hidden_layers)
        .map(|i| Some(window).filter(|_| pattern == 0 || i % pattern < pattern - 1))
        .collect();
    cfg.arch.rope_local_theta = Some(local_theta);
}

/// A window field: a positive whole number, or absent/0 for none.
fn window(v: Option<f64>, field: &str) -> Result<Option<usize>, String> {
    match v {
        None => Ok(None),
        Some(0.0) => Ok(None),
        Some(w) if w >= 1.0 && w.fract() == 0.0 => Ok(Some(w as usize)),
        Some(w) => Err(format!(
            "{field} is {w}; it must be a positive whole number"
        )),
    }
}

impl Family for Olmo2 {
    fn name(&self) -> &'static str {
        "OLMo 2 / OLMo 3"
    }
    fn hf_model_types(&self) -> &'static [&'static str] {
        &["olmo2", "olmo3"]
    }
    fn gguf_architecture(&self) -> &'static str {
        "olmo2"
    }
    fn configure_hf(&self, raw: &Value, cfg: &mut Config) -> Result<(), String> {
        if super::family::hf_bool(raw, "attention_bias") == Some(true) {
            return Err("OLMo with attention_bias is not supported".into());
        }
        common(cfg);
        let olmo3 = raw.get("model_type").and_then(Value::as_str) == Some("olmo3");
        let w = window(hf_f64(raw, "sliding_window"), "sliding_window")?;
        let Some(w) = w.or(olmo3.then_some(OLMO3_WINDOW)) else {
            return Ok(());
        };
        let local = hf_f64(raw, "rope_local_base_freq").unwrap_or(cfg.rope_theta);
        windows(cfg, w, PATTERN, local);
        if let Some(listed) = hf_layer_types(raw, Some(w), cfg.num_hidden_layers)? {
            cfg.arch.layer_windows = listed;
        }
        Ok(())
    }
    fn configure_gguf(&self, md: GgufMeta, cfg: &mut Config) -> Result<(), String> {
        common(cfg);
        if let Some(w) = window(
            md.num("attention.sliding_window"),
            "attention.sliding_window",
        )? {
            // The pattern as a number (a bool per layer, when written, is read by the GGUF
            // reader over this).
            let pattern = md
                .num("attention.sliding_window_pattern")
                .map_or(PATTERN, |p| p as usize);
            let local = md.num("rope.freq_base_swa").unwrap_or(cfg.rope_theta);
            windows(cfg, w, pattern, local);
        }
        Ok(())
    }
    fn gguf_tensor(&self, hf_suffix: &str) -> Option<&'static str> {
        // Hugging Face's post_attention_layernorm norms the attention's output here (as in
        // Gemma 3), not the MLP's input as in Llama.
        (hf_suffix == "post_attention_layernorm.weight").then_some("post_attention_norm.weight")
    }
}
