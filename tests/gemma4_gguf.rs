//! Gemma 4 from a GGUF as llama.cpp's converter writes it (`conversion/gemma.py`,
//! `Gemma4Model`): the full layers' head width as `attention.key_length` and the sliding
//! layers' as `key_length_swa`, the layer types as `attention.sliding_window_pattern`, the
//! shared layers as `attention.shared_kv_layers`, the per-layer inputs' width as
//! `embedding_length_per_layer_input`, the MLP widths as a list where the shared layers' are
//! doubled, the proportional RoPE as `rope_freqs.weight` (1 for the turning frequencies,
//! 1e30 for the rest), the norms as stored (no `1 + w`). The tiny Gemma 4 has all of it.

use crate::tiny_gguf::{gguf_explains_as_directory, tiny_gguf, Convert, Extra, Weights};
use candle_core::quantized::gguf_file::Value;
use candle_core::{Device, Tensor};
use tokenlens::Engine;

fn gemma4_extra(cfg: &serde_json::Value, key: &dyn Fn(&str) -> String, _: &Weights) -> Extra {
    let n = |k: &str| cfg[k].as_u64().unwrap() as usize;
    let u = |x: usize| Value::U32(x as u32);
    let types: Vec<bool> = cfg["layer_types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t == "sliding_attention")
        .collect();
    let slides = types.clone();
    let full_layer = &cfg["per_layer_config"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()
        .clone();
    let full = full_layer["head_dim"].as_u64().unwrap() as usize;
    let full_kv = full_layer["num_key_value_heads"]
        .as_u64()
        .map(|k| k as usize);
    let (layers, shared, ffn) = (
        n("num_hidden_layers"),
        n("num_kv_shared_layers"),
        n("intermediate_size"),
    );
    let widths = (0..layers)
        .map(|l| u(if l < layers - shared { ffn } else { 2 * ffn }))
        .collect();
    let rope = &cfg["rope_parameters"];
    let full_rope = &rope["full_attention"];
    let turned =
        (full as f64 * full_rope["partial_rotary_factor"].as_f64().unwrap() / 2.0) as usize;
    let freqs: Vec<f32> = (0..full / 2)
        .map(|i| if i < turned { 1.0 } else { 1e30 })
        .collect();
    let mut md = vec![
        (key("attention.key_length"), u(full)),
        (key("attention.value_length"), u(full)),
        (key("attention.key_length_swa"), u(n("head_dim"))),
        (key("attention.value_length_swa"), u(n("head_dim"))),
        (key("attention.sliding_window"), u(n("sliding_window"))),
        (
            key("attention.sliding_window_pattern"),
            Value::Array(types.into_iter().map(Value::Bool).collect()),
        ),
        (key("attention.shared_kv_layers"), u(shared)),
        (
            key("embedding_length_per_layer_input"),
            u(n("hidden_size_per_layer_input")),
        ),
        (key("feed_forward_length"), Value::Array(widths)),
        (key("rope.dimension_count"), u(full)),
        (key("rope.dimension_count_swa"), u(n("head_dim"))),
        (
            key("rope.freq_base_swa"),
            Value::F32(rope["sliding_attention"]["rope_theta"].as_f64().unwrap() as f32),
        ),
        (
            key("final_logit_softcapping"),
            Value::F32(cfg["final_logit_softcapping"].as_f64().unwrap() as f32),
        ),
    ];
    // 26B-A4B's experts.
    if cfg["enable_moe_block"].as_bool() == Some(true) {
        md.extend([
            (key("expert_count"), u(n("num_experts"))),
            (key("expert_used_count"), u(n("top_k_experts"))),
            (
                key("expert_feed_forward_length"),
                u(n("moe_intermediate_size")),
            ),
        ]);
    }
    // The full layers' own key/value head count (26B, 31B), per layer as the converter
    // writes it; their missing `attn_v` says that their values are their keys.
    if let Some(global) = full_kv {
        let kv = slides
            .iter()
            .map(|&s| u(if s { n("num_key_value_heads") } else { global }))
            .collect();
        md.push((key("attention.head_count_kv"), Value::Array(kv)));
    }
    let freqs = Tensor::new(freqs, &Device::Cpu).unwrap();
    (md, vec![("rope_freqs.weight".into(), freqs)])
}

const GEMMA4: Convert = Convert {
    arch: "gemma4",
    post_norms: true,
    permute_qk: false,
    extra: gemma4_extra,
};

#[test]
fn gemma4_gguf_explains_as_its_directory() {
    gguf_explains_as_directory("tiny-gemma4", &GEMMA4);
}

/// 26B-A4B's shape: experts beside each dense MLP (the router `ffn_gate_inp` with its
/// input's scale `ffn_gate_inp.scale`, the experts' factors `ffn_down_exps.scale`, the
/// experts stacked as `ffn_gate_up_exps` and `ffn_down_exps`, the branches' norms
/// `pre_ffw_norm_2`, `post_ffw_norm_1`, `post_ffw_norm_2`) and keys as values.
#[test]
fn gemma4_moe_gguf_explains_as_its_directory() {
    gguf_explains_as_directory("tiny-gemma4-moe", &GEMMA4);
}

/// Key/value head counts that vary within a layer type are refused by name, as is a layer
/// pattern of the wrong length.
#[test]
fn gemma4_gguf_refuses_what_it_cannot_read() {
    fn per_layer_kv(cfg: &serde_json::Value, key: &dyn Fn(&str) -> String, w: &Weights) -> Extra {
        let (mut md, t) = gemma4_extra(cfg, key, w);
        // Layers 0, 2 and 4 slide.
        let kv = (0..7)
            .map(|l| Value::U32(1 + (l % 4 == 0) as u32))
            .collect();
        md.push((key("attention.head_count_kv"), Value::Array(kv)));
        (md, t)
    }
    fn short_pattern(cfg: &serde_json::Value, key: &dyn Fn(&str) -> String, w: &Weights) -> Extra {
        let (mut md, t) = gemma4_extra(cfg, key, w);
        md.push((
            key("attention.sliding_window_pattern"),
            Value::Array(vec![Value::Bool(true); 3]),
        ));
        (md, t)
    }
    for (extra, named) in [
        (
            per_layer_kv as crate::tiny_gguf::ExtraFn,
            "head_count_kv varies between layers of one type",
        ),
        (
            short_pattern,
            "sliding_window_pattern has 3 entries for 7 layers",
        ),
    ] {
        let gguf = tiny_gguf("tiny-gemma4", &Convert { extra, ..GEMMA4 });
        let err = Engine::load(gguf.to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains(named), "{err}");
    }
}
