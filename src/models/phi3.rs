//! Phi-3 and Phi-4-mini: Llama's decoder with q, k and v stored as one matrix (`qkv_proj`)
//! and the MLP's gate and up projections as one (`gate_up_proj`, gate first), read as their
//! rows (`source::fused`, quantized blocks included). Phi-4-mini rotates three quarters of
//! each head (`partial_rotary_factor`); the long-context checkpoints scale RoPE with
//! LongRoPE (`rope_scaling.rs`). A configured sliding window covers every layer, as
//! transformers applies it (llama.cpp turns Phi's window off; within the window the two
//! agree).

use super::decoder::Config;
use super::family::{hf_bool, hf_f64, window_every_layer, Family, Fused, GgufMeta, Rows};
use serde_json::Value;

/// The Phi-3 family (Phi-3, Phi-3.5, Phi-4-mini).
#[derive(Debug, Clone, Copy)]
pub struct Phi3;

static FUSED: &[Fused] = &[
    Fused {
        stored: "self_attn.qkv_proj.weight",
        parts: &[
            ("self_attn.q_proj.weight", Rows::Heads),
            ("self_attn.k_proj.weight", Rows::KvHeads),
            ("self_attn.v_proj.weight", Rows::KvHeads),
        ],
    },
    Fused {
        stored: "mlp.gate_up_proj.weight",
        parts: &[
            ("mlp.gate_proj.weight", Rows::Mlp),
            ("mlp.up_proj.weight", Rows::Mlp),
        ],
    },
];

impl Family for Phi3 {
    fn name(&self) -> &'static str {
        "Phi-3"
    }
    fn hf_model_types(&self) -> &'static [&'static str] {
        &["phi3"]
    }
    fn gguf_architecture(&self) -> &'static str {
        "phi3"
    }
    fn configure_hf(&self, raw: &Value, cfg: &mut Config) -> Result<(), String> {
        if hf_bool(raw, "attention_bias") == Some(true) {
            return Err("Phi-3 with attention_bias is not supported".into());
        }
        window_every_layer(cfg, hf_f64(raw, "sliding_window"));
        Ok(())
    }
    fn configure_gguf(&self, md: GgufMeta, cfg: &mut Config) -> Result<(), String> {
        // The converter writes 0 for none (Phi-4-mini).
        window_every_layer(cfg, md.num("attention.sliding_window"));
        Ok(())
    }
    fn gguf_tensor(&self, hf_suffix: &str) -> Option<&'static str> {
        // llama.cpp keeps the fused gate and up projections under the up projection's name.
        (hf_suffix == "mlp.gate_up_proj.weight").then_some("ffn_up.weight")
    }
    fn fused(&self) -> &'static [Fused] {
        FUSED
    }
}
