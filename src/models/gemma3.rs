//! Gemma 3 (text): four RMSNorms per layer scaling by `1 + w`, q/k norms, embeddings scaled
//! by √hidden, GELU-tanh, attention scaled by `query_pre_attn_scalar^-½`, and five
//! sliding-window layers (local RoPE base) per global one.

use super::config::{NormPlacement, QkNorm};
use super::decoder::Config;
use super::family::{hf_f64, hf_layer_types, Family, GgufMeta};
use super::Activation;
use serde_json::Value;

/// The Gemma 3 family.
#[derive(Debug, Clone, Copy)]
pub struct Gemma3;

/// transformers' defaults (`Gemma3TextConfig`) for fields a config or a GGUF may lack.
const SLIDING_WINDOW_PATTERN: usize = 6;
const ROPE_LOCAL_BASE: f64 = 10_000.0;

fn common(cfg: &mut Config, window: Option<usize>, pattern: usize, local_theta: f64) {
    let a = &mut cfg.arch;
    a.qk_norm = Some(QkNorm::PerHead);
    a.norms = NormPlacement::Sandwich;
    a.embed_scale = Some((cfg.hidden_size as f64).sqrt());
    a.activation = Activation::GeluTanh;
    a.rope_local_theta = Some(local_theta);
    // Every `pattern`-th layer is global (transformers 4.52: `(i + 1) % pattern != 0` slides).
    a.layer_windows = (0..cfg.num_hidden_layers)
        .map(|i| window.filter(|_| pattern == 0 || (i + 1) % pattern != 0))
        .collect();
}

impl Family for Gemma3 {
    fn name(&self) -> &'static str {
        "Gemma 3"
    }
    fn hf_model_types(&self) -> &'static [&'static str] {
        &["gemma3_text"]
    }
    fn gguf_architecture(&self) -> &'static str {
        "gemma3"
    }
    fn configure_hf(&self, raw: &Value, cfg: &mut Config) -> Result<(), String> {
        if let Some(act) = raw.get("hidden_activation").and_then(Value::as_str) {
            if Activation::from_hf(act) != Some(Activation::GeluTanh) {
                return Err(format!("Gemma 3 activation {act:?} is not supported"));
            }
        }
        if hf_f64(raw, "attn_logit_softcapping").is_some() {
            return Err("attention logit soft-capping is not supported".into());
        }
        let window = hf_f64(raw, "sliding_window").map(|w| w as usize);
        let pattern =
            hf_f64(raw, "sliding_window_pattern").map_or(SLIDING_WINDOW_PATTERN, |p| p as usize);
        let local = hf_f64(raw, "rope_local_base_freq").unwrap_or(ROPE_LOCAL_BASE);
        common(cfg, window, pattern, local);
        // Newer configs list each layer's type explicitly.
        if let Some(windows) = hf_layer_types(raw, window, cfg.num_hidden_layers)? {
            cfg.arch.layer_windows = windows;
        }
        // llama.cpp stores 1 + w already; Hugging Face stores w.
        cfg.arch.norm_plus_one = true;
        cfg.arch.query_pre_attn_scalar = hf_f64(raw, "query_pre_attn_scalar");
        cfg.arch.final_logit_softcapping = hf_f64(raw, "final_logit_softcapping");
        Ok(())
    }
    fn configure_gguf(&self, md: GgufMeta, cfg: &mut Config) -> Result<(), String> {
        if let Some(k) = md.num("attention.key_length") {
            cfg.head_dim = Some(k as usize);
        }
        let window = md.num("attention.sliding_window").map(|w| w as usize);
        common(cfg, window, SLIDING_WINDOW_PATTERN, ROPE_LOCAL_BASE);
        // llama.cpp folds query_pre_attn_scalar into nothing: Gemma 3 uses head_dim.
        cfg.arch.query_pre_attn_scalar = Some(cfg.head_dim() as f64);
        cfg.arch.final_logit_softcapping = md.num("final_logit_softcapping");
        Ok(())
    }
    fn gguf_tensor(&self, hf_suffix: &str) -> Option<&'static str> {
        // Hugging Face's post_attention_layernorm norms the attention's output here.
        (hf_suffix == "post_attention_layernorm.weight").then_some("post_attention_norm.weight")
    }
}
