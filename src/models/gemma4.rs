//! Gemma 4 (text): Gemma 3's sandwich of four RMSNorms (weights multiplying as stored, not
//! `1 + w`), q/k norms per head, a weightless RMSNorm on the values, attention unscaled
//! (`scaling = 1`: the normed q and k carry the scale), each layer's whole output multiplied
//! by a stored `layer_scalar`, embeddings scaled by √hidden, GELU-tanh, and the final logits
//! soft-capped. Sliding-window layers (`layer_types`; by default five in six) have heads of
//! `head_dim` and RoPE base 10⁴; the full layers have wider heads (`global_head_dim`, 512 in
//! the released checkpoints) whose RoPE is "proportional": a quarter of the frequencies,
//! computed over the whole head, turn, the rest do not. E2B and E4B give each layer an input
//! of its own per token (`hidden_size_per_layer_input`, 256 unless the config says 0): a row
//! of a second embedding table plus a projection of the input embedding, added after the MLP
//! through a gated block (`decoder/per_layer.rs`). 26B and 31B: the full layers' values are
//! their keys' projection, with a key/value head count of their own. 26B-A4B: sparse experts
//! beside each layer's dense MLP (`decoder/dense_and_experts.rs`).
//!
//! Follows transformers 5.25's `modeling_gemma4.py` (`Gemma4TextConfig`, model type
//! `gemma4_text`; the multimodal `gemma4` configs reach it through their `text_config`).

use super::config::{Experts, NormPlacement, QkNorm};
use super::decoder::Config;
use super::family::{
    count, gguf_expert_counts, hf_bool, hf_f64, hf_layer_type_names, Family, GgufMeta,
};
use super::rope_scaling;
use super::Activation;
use serde_json::{json, Value};

/// The Gemma 4 family.
#[derive(Debug, Clone, Copy)]
pub struct Gemma4;

/// transformers' defaults (`Gemma4TextConfig`) for fields a config may lack.
const SLIDING_WINDOW_PATTERN: usize = 6;
const GLOBAL_HEAD_DIM: usize = 512;
const PER_LAYER_INPUT_WIDTH: usize = 256;

/// transformers' RoPE parameters when a config gives none: the sliding layers' default RoPE
/// of base 10⁴, the full layers' proportional one of base 10⁶ turning a quarter.
fn default_rope_parameters() -> Value {
    json!({
        "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
        "full_attention": {
            "rope_type": "proportional", "partial_rotary_factor": 0.25, "rope_theta": 1_000_000.0
        },
    })
}

/// A number `per_layer_config` (what transformers 5.25 saves) gives these layers, the same
/// for all of them, where it gives one.
fn layers_field(raw: &Value, layers: &[usize], field: &str) -> Result<Option<usize>, String> {
    let per_layer = raw.get("per_layer_config").and_then(Value::as_object);
    let mut values = layers.iter().filter_map(|l| {
        let c = per_layer?.get(&l.to_string())?;
        c.get(field).and_then(Value::as_u64)
    });
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.any(|v| v != value) {
        return Err(format!(
            "per_layer_config gives layers of one type different {field}s"
        ));
    }
    Ok(Some(value as usize))
}

/// The full layers' head width: `per_layer_config`'s, else `global_head_dim` (the Hub's
/// configs), else transformers' default.
fn global_head_dim(raw: &Value, full: &[usize]) -> Result<usize, String> {
    Ok(match layers_field(raw, full, "head_dim")? {
        Some(w) => w,
        None => hf_f64(raw, "global_head_dim").map_or(GLOBAL_HEAD_DIM, |w| w as usize),
    })
}

/// The full layers' key/value head count where it differs from `num_key_value_heads`:
/// `per_layer_config`'s, else `num_global_key_value_heads` where the full layers' values are
/// their keys (transformers applies it only then).
fn global_kv_heads(raw: &Value, cfg: &Config, full: &[usize]) -> Result<Option<usize>, String> {
    let kv_heads = cfg.num_key_value_heads;
    let sliding: Vec<usize> = (0..cfg.num_hidden_layers)
        .filter(|l| !full.contains(l))
        .collect();
    if layers_field(raw, &sliding, "num_key_value_heads")?.is_some_and(|k| k != kv_heads) {
        return Err(
            "per_layer_config gives sliding layers their own key/value head count; \
                    only the full layers' is read"
                .into(),
        );
    }
    let global = match layers_field(raw, full, "num_key_value_heads")? {
        Some(k) => Some(k),
        None if hf_bool(raw, "attention_k_eq_v").unwrap_or(false) => {
            hf_f64(raw, "num_global_key_value_heads").map(|k| k as usize)
        }
        None => None,
    };
    Ok(global.filter(|&k| k != kv_heads))
}

/// The width of each layer's own input (`hidden_size_per_layer_input`; 0 or null: none).
fn per_layer_input_width(raw: &Value) -> Result<Option<usize>, String> {
    let field = "hidden_size_per_layer_input";
    match raw.get(field) {
        None => Ok(Some(PER_LAYER_INPUT_WIDTH)),
        Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(0) => Ok(None),
            Some(w) => Ok(Some(w as usize)),
            None => Err(format!("{field} is {v}; it must be a whole number")),
        },
    }
}

/// Per layer, the layer whose keys and values it reads: the last `shared` layers read those
/// of the last earlier layer of their own type (transformers' `kv_sharing_modes`).
pub(crate) fn shared_kv_layers(
    types: &[String],
    shared: usize,
) -> Result<Vec<Option<usize>>, String> {
    let layers = types.len();
    if shared == 0 {
        return Ok(Vec::new());
    }
    if shared >= layers {
        return Err(format!(
            "num_kv_shared_layers {shared}: at least one of the {layers} layers must make its own \
             keys and values"
        ));
    }
    let first = layers - shared;
    (0..layers)
        .map(|l| {
            if l < first {
                return Ok(None);
            }
            (0..first)
                .rev()
                .find(|&p| types[p] == types[l])
                .map(Some)
                .ok_or_else(|| {
                    format!(
                        "layer {l} ({}) would share keys and values, but no earlier layer of \
                         its type makes them",
                        types[l]
                    )
                })
        })
        .collect()
}

/// What Gemma 4's layers have, from either file: sliding layers by `types` (window
/// `window`), the last `shared` layers reading earlier ones' keys and values.
fn common(
    cfg: &mut Config,
    types: &[String],
    window: Option<usize>,
    shared: usize,
) -> Result<(), String> {
    let a = &mut cfg.arch;
    a.qk_norm = Some(QkNorm::PerHead);
    a.norms = NormPlacement::Sandwich;
    a.embed_scale = Some((cfg.hidden_size as f64).sqrt());
    a.activation = Activation::GeluTanh;
    // Scores unscaled: 1 / √1.
    a.query_pre_attn_scalar = Some(1.0);
    a.value_norm = true;
    a.layer_scalar = true;
    a.layer_windows = types
        .iter()
        .map(|t| window.filter(|_| t == "sliding_attention"))
        .collect();
    a.kv_from = shared_kv_layers(types, shared)?;
    Ok(())
}

/// Every layer's experts beside its dense MLP (26B-A4B), from the three counts; their
/// weights are always renormalised.
fn experts_beside_dense(cfg: &mut Config, counts: [usize; 3]) {
    cfg.arch.experts = Some(Experts {
        beside_dense: true,
        ..Experts::in_every_layer(cfg.num_hidden_layers, counts)
    });
}

/// What this reading of Gemma 4 does not run yet, named by field.
fn refuse_unread(raw: &Value) -> Result<(), String> {
    let on = |k: &str| hf_bool(raw, k).unwrap_or(false);
    if on("attention_bias") {
        return Err("attention_bias: attention biases are not read yet".into());
    }
    if raw
        .get("use_bidirectional_attention")
        .and_then(Value::as_str)
        == Some("all")
    {
        return Err("use_bidirectional_attention \"all\" is not a causal decoder".into());
    }
    Ok(())
}

impl Family for Gemma4 {
    fn name(&self) -> &'static str {
        "Gemma 4"
    }
    fn hf_model_types(&self) -> &'static [&'static str] {
        &["gemma4_text"]
    }
    fn gguf_architecture(&self) -> &'static str {
        "gemma4"
    }
    fn configure_hf(&self, raw: &Value, cfg: &mut Config) -> Result<(), String> {
        if let Some(act) = raw.get("hidden_activation").and_then(Value::as_str) {
            if Activation::from_hf(act) != Some(Activation::GeluTanh) {
                return Err(format!("Gemma 4 activation {act:?} is not supported"));
            }
        }
        refuse_unread(raw)?;
        let layers = cfg.num_hidden_layers;
        let mut types = hf_layer_type_names(raw, layers)?.unwrap_or_else(|| {
            (0..layers)
                .map(|i| match (i + 1) % SLIDING_WINDOW_PATTERN {
                    0 => "full_attention".to_string(),
                    _ => "sliding_attention".to_string(),
                })
                .collect()
        });
        // transformers forces the last layer to attend to everything.
        if let Some(last) = types.last_mut() {
            *last = "full_attention".into();
        }
        let window = hf_f64(raw, "sliding_window").map(|w| w as usize);
        let full: Vec<usize> = (0..layers)
            .filter(|&i| types[i] != "sliding_attention")
            .collect();
        let shared = hf_f64(raw, "num_kv_shared_layers").unwrap_or(0.0);
        if shared < 0.0 || shared.fract() != 0.0 {
            return Err(format!(
                "num_kv_shared_layers is {shared}; it must be a whole number"
            ));
        }
        common(cfg, &types, window, shared as usize)?;
        let a = &mut cfg.arch;
        a.final_logit_softcapping = hf_f64(raw, "final_logit_softcapping");
        a.per_layer_input = per_layer_input_width(raw)?;
        // E2B's sharing layers have MLPs twice as wide.
        if hf_bool(raw, "use_double_wide_mlp").unwrap_or(false) {
            let width = cfg.intermediate_size;
            a.mlp_widths = (0..layers)
                .map(|l| match a.kv_from.get(l).copied().flatten() {
                    Some(_) => 2 * width,
                    None => width,
                })
                .collect();
        }
        cfg.arch.global_head_dim = Some(global_head_dim(raw, &full)?);
        // 26B and 31B: the full layers' values are their keys, with heads of their own count.
        cfg.arch.global_values_from_keys = hf_bool(raw, "attention_k_eq_v").unwrap_or(false);
        cfg.arch.global_kv_heads = global_kv_heads(raw, cfg, &full)?;
        if hf_bool(raw, "enable_moe_block").unwrap_or(false) {
            let n = |k: &str| count(hf_f64(raw, k), k);
            let counts = [
                n("num_experts")?,
                n("top_k_experts")?,
                n("moe_intermediate_size")?,
            ];
            experts_beside_dense(cfg, counts);
        }
        // The RoPE tables: the common reading took the full layers' parameters at the
        // sliding layers' head width; read them again at their own.
        let mut raw = raw.clone();
        if raw.get("rope_parameters").is_none_or(Value::is_null) {
            raw["rope_parameters"] = default_rope_parameters();
            rope_scaling::from_rope_parameters(&mut raw);
        }
        let theta = |t: &str| {
            raw["rope_parameters"][t]["rope_theta"]
                .as_f64()
                .ok_or_else(|| format!("rope_parameters.{t}.rope_theta is missing"))
        };
        cfg.rope_theta = theta("full_attention")?;
        cfg.arch.rope_local_theta = Some(theta("sliding_attention")?);
        let sliding = &raw["rope_parameters"]["sliding_attention"];
        let turned = sliding["partial_rotary_factor"].as_f64().unwrap_or(1.0);
        if sliding["rope_type"].as_str().unwrap_or("default") != "default" || turned != 1.0 {
            return Err("the sliding layers' RoPE must be the default, turning every pair".into());
        }
        cfg.rotary_dim = None;
        cfg.rope = rope_scaling::from_hf(
            &raw,
            cfg.rotary_dim(),
            cfg.rope_theta,
            cfg.max_position_embeddings,
        )?;
        Ok(())
    }
    fn configure_gguf(&self, md: GgufMeta, cfg: &mut Config) -> Result<(), String> {
        let layers = cfg.num_hidden_layers;
        let key = |k: &str| count(md.num(k), k);
        // The common reading took `key_length` (the full layers') as the head width.
        let (swa, full) = (
            key("attention.key_length_swa")?,
            key("attention.key_length")?,
        );
        for (rotated, width) in [
            ("rope.dimension_count_swa", swa),
            ("rope.dimension_count", full),
        ] {
            if let Some(r) = md.num(rotated).filter(|&r| r != width as f64) {
                return Err(format!("{rotated} {r}: partial rotation is not read yet"));
            }
        }
        cfg.head_dim = Some(swa);
        cfg.rotary_dim = None;
        let slides = md
            .bools("attention.sliding_window_pattern")?
            .ok_or("attention.sliding_window_pattern is missing")?;
        if slides.len() != layers {
            return Err(format!(
                "attention.sliding_window_pattern has {} entries for {layers} layers",
                slides.len()
            ));
        }
        let types: Vec<String> = slides
            .iter()
            .map(|&s| match s {
                true => "sliding_attention".to_string(),
                false => "full_attention".to_string(),
            })
            .collect();
        let window = md.num("attention.sliding_window").map(|w| w as usize);
        let shared = md.num("attention.shared_kv_layers").unwrap_or(0.0);
        common(cfg, &types, window, shared as usize)?;
        cfg.arch.global_head_dim = Some(full);
        cfg.arch.rope_local_theta = Some(md.num("rope.freq_base_swa").unwrap_or(10_000.0));
        cfg.arch.final_logit_softcapping = md.num("final_logit_softcapping");
        cfg.arch.per_layer_input = md
            .num("embedding_length_per_layer_input")
            .filter(|&w| w > 0.0)
            .map(|w| w as usize);
        // One MLP width for all, or one per layer (E2B's double-wide sharing layers).
        let widths = md.nums("feed_forward_length")?.unwrap_or_default();
        match widths[..] {
            [] | [_] => {}
            _ if widths.len() == layers => {
                let widths: Vec<usize> = widths.iter().map(|&w| w as usize).collect();
                cfg.intermediate_size = widths.iter().copied().min().unwrap_or(0);
                cfg.arch.mlp_widths = widths;
            }
            _ => {
                return Err(format!(
                    "feed_forward_length lists {} widths for {layers} layers",
                    widths.len()
                ))
            }
        }
        // One key/value head count, or one per layer type (26B, 31B).
        let kv = md.nums("attention.head_count_kv")?.unwrap_or_default();
        let of_type = |sliding: bool| -> Result<Option<usize>, String> {
            let mut counts = (0..kv.len()).filter(|&l| slides.get(l) == Some(&sliding));
            let Some(first) = counts.next() else {
                return Ok(None);
            };
            match counts.all(|l| kv[l] == kv[first]) {
                true => Ok(Some(kv[first] as usize)),
                false => Err("attention.head_count_kv varies between layers of one type".into()),
            }
        };
        match kv[..] {
            [] => {}
            [one] => cfg.num_key_value_heads = one as usize,
            _ if kv.len() == layers => {
                if let Some(k) = of_type(true)? {
                    cfg.num_key_value_heads = k;
                }
                cfg.arch.global_kv_heads =
                    of_type(false)?.filter(|&k| k != cfg.num_key_value_heads);
            }
            _ => {
                return Err(format!(
                    "attention.head_count_kv lists {} counts for {layers} layers",
                    kv.len()
                ))
            }
        }
        // Experts beside the dense MLPs where the file counts them (the GGUF reader marks
        // the layers that have a router).
        if md.num("expert_count").is_some() {
            experts_beside_dense(cfg, gguf_expert_counts(md)?);
        }
        // The full layers' values are their keys where they have no value projection
        // (llama.cpp reads it so: `attn_v` is optional).
        let own: Vec<usize> = (0..layers)
            .filter(|&l| !slides[l] && cfg.kv_from(l).is_none())
            .collect();
        let valued = own
            .iter()
            .filter(|&&l| md.has_tensor(&format!("blk.{l}.attn_v.weight")))
            .count();
        cfg.arch.global_values_from_keys = match valued {
            0 => !own.is_empty(),
            v if v == own.len() => false,
            _ => return Err("some full layers have attn_v and others do not".into()),
        };
        Ok(())
    }
    fn gguf_tensor(&self, hf_suffix: &str) -> Option<&'static str> {
        match hf_suffix {
            // Hugging Face's post_attention_layernorm norms the attention's output here.
            "post_attention_layernorm.weight" => Some("post_attention_norm.weight"),
            "layer_scalar" => Some("layer_output_scale.weight"),
            "per_layer_input_gate.weight" => Some("inp_gate.weight"),
            "per_layer_projection.weight" => Some("proj.weight"),
            "post_per_layer_input_norm.weight" => Some("post_norm.weight"),
            // 26B-A4B's experts (llama.cpp folds the per-expert scale into the experts'
            // output scale) and their branch's norms.
            "router.proj.weight" => Some("ffn_gate_inp.weight"),
            "router.scale" => Some("ffn_gate_inp.scale"),
            "router.per_expert_scale" => Some("ffn_down_exps.scale"),
            "experts.gate_up_proj" => Some("ffn_gate_up_exps.weight"),
            "experts.gate_proj.weight" => Some("ffn_gate_exps.weight"),
            "experts.up_proj.weight" => Some("ffn_up_exps.weight"),
            "experts.down_proj" | "experts.down_proj.weight" => Some("ffn_down_exps.weight"),
            "pre_feedforward_layernorm_2.weight" => Some("pre_ffw_norm_2.weight"),
            "post_feedforward_layernorm_1.weight" => Some("post_ffw_norm_1.weight"),
            "post_feedforward_layernorm_2.weight" => Some("post_ffw_norm_2.weight"),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// E2B's shape without its per-layer inputs and shared layers, `config.json` as the Hub
    /// writes it (`global_head_dim`, no `layer_types`, no `rope_parameters`) or as
    /// transformers 5.25 saves it (`per_layer_config`).
    fn configured(extra: Value) -> Result<Config, String> {
        let mut raw = json!({
            "model_type": "gemma4_text", "hidden_size": 1536, "intermediate_size": 6144,
            "num_hidden_layers": 12, "num_attention_heads": 8, "num_key_value_heads": 1,
            "head_dim": 256, "vocab_size": 262144, "max_position_embeddings": 131072,
            "rms_norm_eps": 1e-6, "sliding_window": 512, "hidden_size_per_layer_input": 0,
        });
        for (k, v) in extra.as_object().into_iter().flatten() {
            raw[k] = v.clone();
        }
        let mut cfg: Config = serde_json::from_value(raw.clone()).map_err(|e| e.to_string())?;
        Gemma4.configure_hf(&raw, &mut cfg)?;
        cfg.check()?;
        Ok(cfg)
    }

    #[test]
    fn full_layers_have_their_own_head_width_and_rope() {
        let cfg = configured(json!({"global_head_dim": 512})).unwrap();
        // transformers' default pattern: every sixth layer is full, and the last.
        let full: Vec<usize> = (0..12).filter(|&l| cfg.is_global(l)).collect();
        assert_eq!(full, [5, 11]);
        assert_eq!((cfg.head_dim_at(4), cfg.head_dim_at(5)), (256, 512));
        assert_eq!((cfg.rotary_dim(), cfg.local_rotary_dim()), (512, 256));
        assert_eq!(
            (cfg.rope_theta, cfg.arch.rope_local_theta),
            (1e6, Some(1e4))
        );
        // A quarter of the full layers' 256 frequencies turn.
        let factors = cfg.rope.factors.as_deref().unwrap();
        assert_eq!(factors.len(), 256);
        assert_eq!(factors.iter().filter(|&&f| f == 1.0).count(), 64);
        assert!(cfg.arch.value_norm && cfg.arch.layer_scalar);
        // Scores unscaled.
        assert_eq!(cfg.arch.query_pre_attn_scalar, Some(1.0));
    }

    /// Twelve layer types, every third full (layers 2, 5, 8, 11).
    fn every_third_full() -> Vec<&'static str> {
        (0..12)
            .map(|l| match l % 3 {
                2 => "full_attention",
                _ => "sliding_attention",
            })
            .collect()
    }

    #[test]
    fn the_full_width_comes_from_per_layer_config_else_512() {
        let types = every_third_full();
        let per_layer = json!({"2": {"head_dim": 64}, "5": {"head_dim": 64}});
        let cfg = configured(json!({"layer_types": types, "per_layer_config": per_layer}));
        assert_eq!(cfg.unwrap().head_dim_at(8), 64);
        let cfg = configured(json!({"layer_types": types})).unwrap();
        assert_eq!(cfg.head_dim_at(8), 512);
        assert_eq!(cfg.head_dim_at(7), 256);
        let uneven = json!({"2": {"head_dim": 64}, "5": {"head_dim": 128}});
        let err = configured(json!({"layer_types": types, "per_layer_config": uneven}));
        assert!(err.unwrap_err().contains("per_layer_config"));
    }

    #[test]
    fn layers_have_inputs_of_their_own_unless_the_config_says_0() {
        let mut raw = json!({"hidden_size_per_layer_input": 0});
        assert_eq!(per_layer_input_width(&raw), Ok(None));
        raw["hidden_size_per_layer_input"] = json!(64);
        assert_eq!(per_layer_input_width(&raw), Ok(Some(64)));
        assert_eq!(per_layer_input_width(&json!({})), Ok(Some(256)));
        raw["hidden_size_per_layer_input"] = json!(2.5);
        assert!(per_layer_input_width(&raw).is_err());
    }

    /// E2B: 35 layers, every fifth full, the last 20 sharing: the sliding ones read layer
    /// 13's keys and values, the full ones layer 14's.
    #[test]
    fn shared_layers_read_the_last_earlier_layer_of_their_type() {
        let types: Vec<String> = (0..35)
            .map(|l| match (l + 1) % 5 {
                0 => "full_attention".to_string(),
                _ => "sliding_attention".to_string(),
            })
            .collect();
        let from = shared_kv_layers(&types, 20).unwrap();
        assert!(from[..15].iter().all(Option::is_none));
        assert_eq!(
            (from[15], from[19], from[34]),
            (Some(13), Some(14), Some(14))
        );
        assert!(shared_kv_layers(&types, 0).unwrap().is_empty());
        assert!(shared_kv_layers(&types, 35).is_err());
        // Full layers to share, but none before the first sharing one.
        assert!(shared_kv_layers(&types, 32)
            .unwrap_err()
            .contains("full_attention"));
    }

    /// 31B: the full layers' values are their keys, with their own key/value head count
    /// (the Hub's `num_global_key_value_heads`, or what transformers 5.25 saves).
    #[test]
    fn full_layers_read_keys_as_values_with_their_own_head_count() {
        let types = every_third_full();
        let hub = json!({"layer_types": types, "attention_k_eq_v": true,
                         "num_global_key_value_heads": 2});
        let saved = json!({"layer_types": types, "attention_k_eq_v": true, "per_layer_config":
                           {"2": {"head_dim": 64, "num_key_value_heads": 2},
                            "5": {"head_dim": 64, "num_key_value_heads": 2}}});
        for raw in [hub, saved] {
            let cfg = configured(raw).unwrap();
            assert_eq!((cfg.kv_heads_at(2), cfg.kv_heads_at(3)), (2, 1));
            assert!(cfg.values_from_keys(5) && !cfg.values_from_keys(4));
        }
        // transformers applies the global count only with keys as values.
        let cfg = configured(json!({"layer_types": types, "num_global_key_value_heads": 2}));
        assert_eq!(cfg.unwrap().kv_heads_at(2), 1);
        let sliding = json!({"0": {"num_key_value_heads": 2}});
        let err = configured(json!({"layer_types": types, "per_layer_config": sliding}));
        assert!(err.unwrap_err().contains("sliding"));
        // A count that does not divide the query heads.
        let odd = json!({"layer_types": types, "attention_k_eq_v": true,
                         "num_global_key_value_heads": 3});
        assert!(configured(odd)
            .unwrap_err()
            .contains("num_global_key_value_heads"));
    }

    /// 26B-A4B: experts beside every layer's dense MLP; a layer's neurons are the experts'
    /// units, then the dense MLP's.
    #[test]
    fn experts_sit_beside_the_dense_mlp() {
        let moe = json!({"enable_moe_block": true, "num_experts": 128, "top_k_experts": 8,
                         "moe_intermediate_size": 704});
        let cfg = configured(moe.clone()).unwrap();
        let e = cfg.experts_at(11).unwrap();
        assert!(e.beside_dense && e.normalize && e.shared.is_none());
        assert_eq!(cfg.neurons(0), 128 * 704 + 6144);
        assert_eq!(cfg.active_width(0), 8 * 704 + 6144);
        let mut missing = moe;
        missing["top_k_experts"] = Value::Null;
        assert!(configured(missing).unwrap_err().contains("top_k_experts"));
    }

    #[test]
    fn what_is_not_read_yet_is_named() {
        for (extra, field) in [
            (json!({"attention_bias": true}), "attention_bias"),
            (json!({"hidden_activation": "silu"}), "activation"),
        ] {
            let err = configured(extra).unwrap_err();
            assert!(err.contains(field), "{err}");
        }
    }
}
