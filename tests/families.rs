//! A family read from a GGUF (as llama.cpp's converter writes it) explains exactly as the
//! same weights read from their Hugging Face directory: the tensor names, the norms'
//! placement and the RoPE layout all come out right.

use crate::tiny_gguf::{
    f32s, gguf_explains_as_directory, no_extra, tiny_gguf, Convert, Extra, Weights,
};
use crate::util::{rel_err, root, Complete};
use candle_core::quantized::gguf_file::Value;
use candle_core::Device;
use tokenlens::{Engine, ExplainRequest, Method};
#[test]
fn olmo2_gguf_explains_as_its_hugging_face_directory() {
    let c = Convert {
        arch: "olmo2",
        post_norms: true,
        permute_qk: false,
        extra: no_extra,
    };
    gguf_explains_as_directory("tiny-olmo2", &c);
}

/// SmolLM3's GGUF has no key for its NoPE layers: llama.cpp fixes every fourth, as the
/// checkpoint's `no_rope_layers` says here.
#[test]
fn smollm3_gguf_explains_as_its_hugging_face_directory() {
    let c = Convert {
        arch: "smollm3",
        post_norms: false,
        permute_qk: true,
        extra: no_extra,
    };
    gguf_explains_as_directory("tiny-smollm3", &c);
}

/// Phi-3's converter keeps q, k, v fused (`attn_qkv`) and the gate and up projections fused
/// (`ffn_up`, twice the MLP's width), writes the rotated width, LongRoPE's two sets of
/// divisors as tensors with the attention factor and the original context, and the window.
#[test]
fn phi3_gguf_explains_as_its_hugging_face_directory() {
    fn extra(cfg: &serde_json::Value, key: &dyn Fn(&str) -> String, _: &Weights) -> Extra {
        let rope = &cfg["rope_parameters"];
        let original = rope["original_max_position_embeddings"].as_f64().unwrap();
        let factor = cfg["max_position_embeddings"].as_f64().unwrap() / original;
        let head =
            cfg["hidden_size"].as_f64().unwrap() / cfg["num_attention_heads"].as_f64().unwrap();
        let rotated = (head * rope["partial_rotary_factor"].as_f64().unwrap()) as u32;
        let md = vec![
            (key("rope.dimension_count"), Value::U32(rotated)),
            (
                key("rope.scaling.original_context_length"),
                Value::U32(original as u32),
            ),
            (
                key("rope.scaling.attn_factor"),
                Value::F32((1.0 + factor.ln() / original.ln()).sqrt() as f32),
            ),
            (
                key("attention.sliding_window"),
                Value::U32(cfg["sliding_window"].as_u64().unwrap() as u32),
            ),
        ];
        let tensors = vec![
            (
                "rope_factors_long.weight".into(),
                f32s(&rope["long_factor"]),
            ),
            (
                "rope_factors_short.weight".into(),
                f32s(&rope["short_factor"]),
            ),
        ];
        (md, tensors)
    }
    let c = Convert {
        arch: "phi3",
        post_norms: false,
        permute_qk: false,
        extra,
    };
    gguf_explains_as_directory("tiny-phi3", &c);
}

/// OLMo 3's converter writes it as `olmo2` with the window, the sliding layers as a bool per
/// layer (from `layer_types`) and YaRN as `rope.scaling.*` keys, the attention factor given.
fn olmo3_extra(cfg: &serde_json::Value, key: &dyn Fn(&str) -> String, _: &Weights) -> Extra {
    let rope = &cfg["rope_scaling"];
    let f = |k: &str| Value::F32(rope[k].as_f64().unwrap() as f32);
    let slides = cfg["layer_types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| Value::Bool(t == "sliding_attention"))
        .collect();
    let md = vec![
        (
            key("attention.sliding_window"),
            Value::U32(cfg["sliding_window"].as_u64().unwrap() as u32),
        ),
        (
            key("attention.sliding_window_pattern"),
            Value::Array(slides),
        ),
        (key("rope.scaling.type"), Value::String("yarn".into())),
        (key("rope.scaling.factor"), f("factor")),
        (
            key("rope.scaling.original_context_length"),
            Value::U32(rope["original_max_position_embeddings"].as_u64().unwrap() as u32),
        ),
        (key("rope.scaling.yarn_attn_factor"), f("attention_factor")),
        (key("rope.scaling.yarn_beta_fast"), f("beta_fast")),
        (key("rope.scaling.yarn_beta_slow"), f("beta_slow")),
    ];
    (md, Vec::new())
}

#[test]
fn olmo3_gguf_explains_as_its_hugging_face_directory() {
    let c = Convert {
        arch: "olmo2",
        post_norms: true,
        permute_qk: false,
        extra: olmo3_extra,
    };
    gguf_explains_as_directory("tiny-olmo3", &c);
}

/// A pattern of sliding layers that does not match the layers is refused with the key named.
#[test]
fn olmo3_gguf_with_a_short_window_pattern_is_refused() {
    fn extra(cfg: &serde_json::Value, key: &dyn Fn(&str) -> String, w: &Weights) -> Extra {
        let (mut md, tensors) = olmo3_extra(cfg, key, w);
        for (k, v) in md.iter_mut() {
            if k.ends_with("sliding_window_pattern") {
                *v = Value::Array(vec![Value::Bool(true); 3]);
            }
        }
        (md, tensors)
    }
    let c = Convert {
        arch: "olmo2",
        post_norms: true,
        permute_qk: false,
        extra,
    };
    let gguf = tiny_gguf("tiny-olmo3", &c);
    let err = match Engine::load(gguf.to_str().unwrap()) {
        Ok(_) => panic!("loaded with a pattern of 3 for 4 layers"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("sliding_window_pattern has 3 entries for 4 layers"),
        "{err}"
    );
    let _ = std::fs::remove_file(gguf);
}

/// Qwen3-MoE's converter writes the expert counts and width, the router as `ffn_gate_inp`
/// and each projection's experts stacked in one tensor (`ffn_{gate,up,down}_exps`); the
/// tiny model's dense layer keeps its MLP (no router: the reader takes it as dense).
#[test]
fn qwen3_moe_gguf_explains_as_its_hugging_face_directory() {
    fn extra(cfg: &serde_json::Value, key: &dyn Fn(&str) -> String, _: &Weights) -> Extra {
        let n = |k: &str| Value::U32(cfg[k].as_u64().unwrap() as u32);
        let md = vec![
            (key("expert_count"), n("num_experts")),
            (key("expert_used_count"), n("num_experts_per_tok")),
            (
                key("expert_feed_forward_length"),
                n("moe_intermediate_size"),
            ),
            (key("attention.key_length"), n("head_dim")),
            (key("attention.value_length"), n("head_dim")),
        ];
        (md, Vec::new())
    }
    let c = Convert {
        arch: "qwen3moe",
        post_norms: false,
        permute_qk: false,
        extra,
    };
    gguf_explains_as_directory("tiny-qwen3-moe", &c);
}

/// A Qwen3-MoE GGUF without its expert counts is refused with the key named.
#[test]
fn qwen3_moe_gguf_without_its_expert_counts_is_refused() {
    let c = Convert {
        arch: "qwen3moe",
        post_norms: false,
        permute_qk: false,
        extra: no_extra,
    };
    let gguf = tiny_gguf("tiny-qwen3-moe", &c);
    let err = match Engine::load(gguf.to_str().unwrap()) {
        Ok(_) => panic!("loaded without expert counts"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("expert_count is missing"), "{err}");
    let _ = std::fs::remove_file(gguf);
}

/// Ministral 3's converter writes YaRN as `rope.scaling.*` keys (`mscale_all_dim` as the log
/// multiplier), the attention temperature's β, and the head width apart from the hidden
/// size; q and k are permuted as Llama's.
#[test]
fn ministral3_gguf_explains_as_its_hugging_face_directory() {
    fn extra(cfg: &serde_json::Value, key: &dyn Fn(&str) -> String, _: &Weights) -> Extra {
        let rope = &cfg["rope_parameters"];
        let f = |k: &str| Value::F32(rope[k].as_f64().unwrap() as f32);
        let head = cfg["head_dim"].as_u64().unwrap() as u32;
        let md = vec![
            (key("attention.key_length"), Value::U32(head)),
            (key("attention.value_length"), Value::U32(head)),
            (key("rope.dimension_count"), Value::U32(head)),
            (key("rope.scaling.type"), Value::String("yarn".into())),
            (key("rope.scaling.factor"), f("factor")),
            (
                key("rope.scaling.original_context_length"),
                Value::U32(rope["original_max_position_embeddings"].as_u64().unwrap() as u32),
            ),
            (key("rope.scaling.yarn_beta_fast"), f("beta_fast")),
            (key("rope.scaling.yarn_beta_slow"), f("beta_slow")),
            (key("rope.scaling.yarn_log_multiplier"), f("mscale_all_dim")),
            (
                key("attention.temperature_scale"),
                f("llama_4_scaling_beta"),
            ),
        ];
        (md, Vec::new())
    }
    let c = Convert {
        arch: "mistral3",
        post_norms: false,
        permute_qk: true,
        extra,
    };
    gguf_explains_as_directory("tiny-ministral3", &c);
}

/// A multimodal checkpoint (Mistral 3 as transformers 4 saved it: `text_config`, the language
/// model under `language_model.model.*`, a vision tower beside it) is read as its language
/// model: the same explanation as the text-only directory.
#[test]
fn multimodal_checkpoints_read_their_language_model() {
    let text = root().join("tests/fixtures/tiny-ministral3");
    let dir = tokenizer_copy(&text, "tiny-mistral3-vlm");
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(text.join("config.json")).unwrap()).unwrap();
    let vlm = serde_json::json!({
        "model_type": "mistral3",
        "architectures": ["Mistral3ForConditionalGeneration"],
        "text_config": cfg,
        "vision_config": {"model_type": "pixtral", "hidden_size": 8},
    });
    std::fs::write(dir.join("config.json"), vlm.to_string()).unwrap();
    let weights =
        candle_core::safetensors::load(text.join("model.safetensors"), &Device::Cpu).unwrap();
    let mut renamed: std::collections::HashMap<String, candle_core::Tensor> = weights
        .into_iter()
        .map(|(n, t)| (n.replacen("model.", "language_model.model.", 1), t))
        .collect();
    renamed.insert(
        "vision_tower.patch_conv.weight".into(),
        candle_core::Tensor::zeros((8, 3), candle_core::DType::F32, &Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&renamed, dir.join("model.safetensors")).unwrap();
    explains_exactly_as(&dir, &text);
}

/// A copy of a tiny checkpoint's tokenizer and template files in a fresh directory.
fn tokenizer_copy(from: &std::path::Path, name: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in [
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.jinja",
    ] {
        std::fs::copy(from.join(f), dir.join(f)).unwrap();
    }
    dir
}

/// The checkpoint in `dir` explains exactly as the one in `like` (then `dir` is removed).
fn explains_exactly_as(dir: &std::path::Path, like: &std::path::Path) {
    let (a, b) = (
        Engine::load(dir.to_str().unwrap()).unwrap(),
        Engine::load(like.to_str().unwrap()).unwrap(),
    );
    let mut req = ExplainRequest::new("Rivers flow to the sea because");
    req.methods = vec![Method::Saliency, Method::Attnlrp];
    let (x, y) = (a.explain(&req).unwrap(), b.explain(&req).unwrap());
    assert_eq!(x.prediction().top[0].id, y.prediction().top[0].id);
    for (m, rx) in &x.methods {
        let err = rel_err(&rx.scores, &y.methods[m].scores);
        assert!(err == 0.0, "{m} differs by {err}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Experts stored stacked as transformers 5 holds them in memory (`experts.gate_up_proj`
/// `(experts, 2 · width, hidden)`, gate rows first; `experts.down_proj` `(experts, hidden,
/// width)`) are read per expert: the same explanation as the per-expert checkpoint.
#[test]
fn stacked_experts_read_as_per_expert_matrices() {
    let per_expert = root().join("tests/fixtures/tiny-qwen3-moe");
    let dir = tokenizer_copy(&per_expert, "tiny-qwen3-moe-stacked");
    std::fs::copy(per_expert.join("config.json"), dir.join("config.json")).unwrap();
    let weights =
        candle_core::safetensors::load(per_expert.join("model.safetensors"), &Device::Cpu).unwrap();
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(per_expert.join("config.json")).unwrap())
            .unwrap();
    let count = cfg["num_experts"].as_u64().unwrap();
    let mut stacked = std::collections::HashMap::new();
    for (name, t) in &weights {
        if !name.contains(".mlp.experts.") {
            stacked.insert(name.clone(), t.clone());
        }
    }
    for l in 0..cfg["num_hidden_layers"].as_u64().unwrap() {
        let p = format!("model.layers.{l}.mlp.experts");
        let get = |e: u64, m: &str| weights.get(&format!("{p}.{e}.{m}_proj.weight")).cloned();
        if get(0, "gate").is_none() {
            continue;
        }
        let gate_up: Vec<_> = (0..count)
            .map(|e| {
                candle_core::Tensor::cat(&[get(e, "gate").unwrap(), get(e, "up").unwrap()], 0)
                    .unwrap()
            })
            .collect();
        let down: Vec<_> = (0..count).map(|e| get(e, "down").unwrap()).collect();
        let stack = |ts: &[candle_core::Tensor]| candle_core::Tensor::stack(ts, 0).unwrap();
        stacked.insert(format!("{p}.gate_up_proj"), stack(&gate_up));
        stacked.insert(format!("{p}.down_proj"), stack(&down));
    }
    candle_core::safetensors::save(&stacked, dir.join("model.safetensors")).unwrap();
    explains_exactly_as(&dir, &per_expert);
}
