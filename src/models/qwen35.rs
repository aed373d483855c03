//! Qwen3.5 (text; dense sizes 0.8B to 27B): a hybrid of Gated DeltaNet layers
//! (`decoder/gated_deltanet.rs`, linear attention with a recurrent state) and, every
//! `full_attention_interval`-th layer (`layer_types`), Qwen3's attention (per-head q/k norms,
//! an explicit head width, a quarter of each head rotated) whose merged heads are gated by
//! σ of a second half of `q_proj`. Its RMSNorms scale by `1 + w` (the DeltaNet's output norm
//! by `w`).
//!
//! GGUF (`qwen35`): the DeltaNet's shape as `ssm.*` keys, its layers as
//! `attention.recurrent_layers` (or every `full_attention_interval`-th attending), its tensors
//! as `attn_qkv`, `attn_gate`, `ssm_{beta,alpha,conv1d,a,norm,out}`, `ssm_dt.bias`, in
//! llama.cpp's layout ([`DeltaNetLayout::LlamaCpp`]: value heads tiled, `ssm_a = −exp(A_log)`);
//! the norms stored as `1 + w` already (the DeltaNet's output norm `ssm_norm` as `w`). A file with multi-token-prediction layers counts them
//! in `block_count` (`nextn_predict_layers`): they come last and are not read.

use super::config::{DeltaNet, DeltaNetLayout, QkNorm};
use super::decoder::Config;
use super::family::{count, hf_f64, hf_layer_type_names, Family, GgufMeta};
use serde_json::Value;

/// The Qwen3.5 family.
#[derive(Debug, Clone, Copy)]
pub struct Qwen35;

/// transformers' and llama.cpp's default: every fourth layer attends.
const FULL_ATTENTION_INTERVAL: f64 = 4.0;

/// Layers `i` with `(i + 1) % every != 0` are linear.
fn every_but(layers: usize, every: Option<f64>) -> Result<Vec<bool>, String> {
    let every = count(
        Some(every.unwrap_or(FULL_ATTENTION_INTERVAL)),
        "full_attention_interval",
    )?;
    Ok((0..layers)
        .map(|i| !(i + 1).is_multiple_of(every))
        .collect())
}

/// What both file kinds share once the DeltaNet's shape and its layers are read.
fn common(cfg: &mut Config, d: DeltaNet, linear: Vec<bool>) -> Result<(), String> {
    // The widths and a layer's states, before anything multiplies them unchecked.
    let widths = [
        (2 * d.key_heads as u128) * d.key_dim as u128,
        d.value_heads as u128 * d.value_dim as u128,
        d.value_heads as u128 * d.key_dim as u128 * d.value_dim as u128,
        d.kernel as u128,
    ];
    if widths.iter().any(|&w| w > 1 << 32) {
        return Err(format!(
            "a Gated DeltaNet of {} key heads of {}, {} value heads of {} and {} taps is              implausibly large",
            d.key_heads, d.key_dim, d.value_heads, d.value_dim, d.kernel
        ));
    }
    if !d.value_heads.is_multiple_of(d.key_heads) {
        return Err(format!(
            "{} value heads are not a multiple of {} key heads (linear_num_value_heads, \
             linear_num_key_heads)",
            d.value_heads, d.key_heads
        ));
    }
    cfg.arch.linear_layers = linear;
    cfg.arch.delta_net = Some(d);
    cfg.arch.attention_output_gate = true;
    cfg.arch.qk_norm = Some(QkNorm::PerHead);
    Ok(())
}

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
            layout: DeltaNetLayout::HuggingFace,
        };
        let n = cfg.num_hidden_layers;
        let linear = match hf_layer_type_names(raw, n)? {
            Some(types) => types
                .iter()
                .map(|t| match t.as_str() {
                    "linear_attention" => Ok(true),
                    "full_attention" => Ok(false),
                    other => Err(format!("layer type {other:?} is not supported")),
                })
                .collect::<Result<_, _>>()?,
            None => every_but(n, hf_f64(raw, "full_attention_interval"))?,
        };
        common(cfg, d, linear)?;
        cfg.arch.norm_plus_one = true;
        Ok(())
    }
    fn configure_gguf(&self, md: GgufMeta, cfg: &mut Config) -> Result<(), String> {
        let field = |k: &str| count(md.num(k), k);
        let value_heads = field("ssm.time_step_rank")?;
        let inner = field("ssm.inner_size")?;
        if !inner.is_multiple_of(value_heads) {
            return Err(format!(
                "ssm.inner_size {inner} is not a multiple of ssm.time_step_rank {value_heads}"
            ));
        }
        let d = DeltaNet {
            key_heads: field("ssm.group_count")?,
            value_heads,
            key_dim: field("ssm.state_size")?,
            value_dim: inner / value_heads,
            kernel: field("ssm.conv_kernel")?,
            layout: DeltaNetLayout::LlamaCpp,
        };
        // Multi-token-prediction layers follow the model's own.
        let blocks = cfg.num_hidden_layers;
        let mtp = match md.num("nextn_predict_layers") {
            None | Some(0.0) => 0,
            v => count(v, "nextn_predict_layers")?,
        };
        if mtp >= blocks {
            return Err(format!(
                "nextn_predict_layers {mtp} leaves no layers of block_count {blocks}"
            ));
        }
        cfg.num_hidden_layers = blocks - mtp;
        let linear = match md.bools("attention.recurrent_layers")? {
            // Listed for every block, or for the model's own layers only.
            Some(flags) if flags.len() == blocks || flags.len() == blocks - mtp => {
                flags[..blocks - mtp].to_vec()
            }
            Some(flags) => {
                return Err(format!(
                    "attention.recurrent_layers has {} entries for {blocks} blocks",
                    flags.len()
                ))
            }
            None => every_but(cfg.num_hidden_layers, md.num("full_attention_interval"))?,
        };
        common(cfg, d, linear)
    }
    fn gguf_tensor(&self, hf_suffix: &str) -> Option<&'static str> {
        Some(match hf_suffix {
            "linear_attn.in_proj_qkv.weight" => "attn_qkv.weight",
            "linear_attn.in_proj_z.weight" => "attn_gate.weight",
            "linear_attn.in_proj_b.weight" => "ssm_beta.weight",
            "linear_attn.in_proj_a.weight" => "ssm_alpha.weight",
            "linear_attn.conv1d.weight" => "ssm_conv1d.weight",
            "linear_attn.dt_bias" => "ssm_dt.bias",
            "linear_attn.A_log" => "ssm_a",
            "linear_attn.norm.weight" => "ssm_norm.weight",
            "linear_attn.out_proj.weight" => "ssm_out.weight",
            // The MLP's input norm, named as the attention's output norm.
            "post_attention_layernorm.weight" => "post_attention_norm.weight",
            _ => return None,
        })
    }
}
