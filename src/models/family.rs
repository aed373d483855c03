//! Model families: how a `config.json` or a GGUF file's metadata becomes a decoder
//! [`Config`]. Each family lives in its own module; `models::FAMILIES` registers them.

use super::decoder::Config;
use serde_json::Value;

/// A GGUF file's metadata under its architecture prefix (`"attention.sliding_window"` →
/// `gemma3.attention.sliding_window`).
pub trait GgufMetadata {
    /// A number (integer or float), when present.
    fn num(&self, key: &str) -> Option<f64>;
    /// A list of booleans, when present (`Err` names a value of another kind).
    fn bools(&self, key: &str) -> Result<Option<Vec<bool>>, String>;
    /// A list of numbers, or a single number as a list of one, when present (`Err` names a
    /// value of another kind).
    fn nums(&self, key: &str) -> Result<Option<Vec<f64>>, String>;
    /// Whether the file has a tensor of this (GGUF) name.
    fn has_tensor(&self, name: &str) -> bool;
}

/// What a family's `configure_gguf` reads.
pub type GgufMeta<'a> = &'a dyn GgufMetadata;

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
    /// Matrices the family's files store stacked (Phi-3's `qkv_proj`, `gate_up_proj`): the
    /// decoder's own are read as their rows.
    fn fused(&self) -> &'static [Fused] {
        &[]
    }
}

/// A layer matrix stored as several of the decoder's stacked by rows.
#[derive(Debug)]
pub struct Fused {
    /// Its layer tensor suffix, by Hugging Face name (`self_attn.qkv_proj.weight`; a
    /// family's `gguf_tensor` maps it where llama.cpp's name differs from the common map).
    pub stored: &'static str,
    /// The decoder's matrices it holds, in row order, with their row counts.
    pub parts: &'static [(&'static str, Rows)],
}

/// A fused part's row count, from the configuration.
#[derive(Debug, Clone, Copy)]
pub enum Rows {
    /// `num_attention_heads × head_dim` (the queries).
    Heads,
    /// `num_key_value_heads × head_dim` (keys or values).
    KvHeads,
    /// `intermediate_size` (the MLP's gate or up projection).
    Mlp,
}

impl Rows {
    /// The rows this part takes in a model of `cfg`.
    pub fn of(self, cfg: &Config) -> usize {
        match self {
            Rows::Heads => cfg.num_attention_heads * cfg.head_dim(),
            Rows::KvHeads => cfg.num_key_value_heads * cfg.head_dim(),
            Rows::Mlp => cfg.intermediate_size,
        }
    }
}

/// Every layer attends within `window` positions, when there is one (a positive number:
/// GGUF converters write 0 for none).
pub fn window_every_layer(cfg: &mut Config, window: Option<f64>) {
    if let Some(w) = window.filter(|w| *w >= 1.0) {
        cfg.arch.layer_windows = vec![Some(w as usize); cfg.num_hidden_layers];
    }
}

/// Each layer's window from `config.json`'s `layer_types` (`"sliding_attention"` layers take
/// `window`; the rest attend to everything), when the config lists them.
pub fn hf_layer_types(
    raw: &Value,
    window: Option<usize>,
    layers: usize,
) -> Result<Option<Vec<Option<usize>>>, String> {
    Ok(hf_layer_type_names(raw, layers)?.map(|types| {
        types
            .iter()
            .map(|t| window.filter(|_| t == "sliding_attention"))
            .collect()
    }))
}

/// `config.json`'s `layer_types`, one per layer, when the config lists them.
pub fn hf_layer_type_names(raw: &Value, layers: usize) -> Result<Option<Vec<String>>, String> {
    let Some(v) = raw.get("layer_types").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let types: Vec<String> = serde_json::from_value(v.clone())
        .map_err(|e| format!("layer_types: {e} (a list of layer types)"))?;
    if types.len() != layers {
        return Err(format!(
            "layer_types lists {} layers; num_hidden_layers is {layers}",
            types.len()
        ));
    }
    Ok(Some(types))
}

/// A positive count of `config.json` or GGUF metadata, named `field` in the error.
pub fn count(v: Option<f64>, field: &str) -> Result<usize, String> {
    match v {
        Some(x) if x >= 1.0 && x.fract() == 0.0 => Ok(x as usize),
        Some(x) => Err(format!(
            "{field} is {x}; it must be a positive whole number"
        )),
        None => Err(format!("{field} is missing")),
    }
}

/// A GGUF file's experts: their count, how many each token takes and their width
/// (`expert_count`, `expert_used_count`, `expert_feed_forward_length`).
pub fn gguf_expert_counts(md: GgufMeta) -> Result<[usize; 3], String> {
    let n = |k: &str| count(md.num(k), k);
    Ok([
        n("expert_count")?,
        n("expert_used_count")?,
        n("expert_feed_forward_length")?,
    ])
}

/// A number field of `config.json`.
pub fn hf_f64(raw: &Value, key: &str) -> Option<f64> {
    raw.get(key).and_then(Value::as_f64)
}

/// A boolean field of `config.json`.
pub fn hf_bool(raw: &Value, key: &str) -> Option<bool> {
    raw.get(key).and_then(Value::as_bool)
}
