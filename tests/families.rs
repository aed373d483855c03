//! A family read from a GGUF (as llama.cpp's converter writes it) explains exactly as the
//! same weights read from their Hugging Face directory: the tensor names, the norms'
//! placement and the RoPE layout all come out right.

use crate::gguf_vocab::gguf_vocab;
use crate::util::{rel_err, root, Complete};
use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Device;
use tokenlens::{Engine, ExplainRequest, Method};

/// How llama.cpp's converter writes a family: its architecture name, whether Hugging Face's
/// `post_attention_layernorm` norms the attention's output (OLMo 2) or the MLP's input
/// (Llama), and whether q and k rows are permuted for llama.cpp's interleaved RoPE (Llama,
/// SmolLM3; not OLMo 2's half-split NEOX RoPE).
pub(crate) struct Convert {
    pub arch: &'static str,
    pub post_norms: bool,
    pub permute_qk: bool,
    /// The family's own metadata and tensors, from `config.json` and the weights (each
    /// replaces the common conversion's of the same name).
    pub extra: ExtraFn,
}

/// A family's additions, from `config.json`, the key-naming function and the weights.
pub(crate) type ExtraFn = fn(&serde_json::Value, &dyn Fn(&str) -> String, &Weights) -> Extra;

/// A checkpoint's tensors by Hugging Face name.
pub(crate) type Weights = std::collections::HashMap<String, candle_core::Tensor>;

/// Metadata keys and tensors a family's converter adds.
pub(crate) type Extra = (Vec<(String, Value)>, Vec<(String, candle_core::Tensor)>);

fn no_extra(_: &serde_json::Value, _: &dyn Fn(&str) -> String, _: &Weights) -> Extra {
    (Vec::new(), Vec::new())
}

fn f32s(v: &serde_json::Value) -> candle_core::Tensor {
    let xs: Vec<f32> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    candle_core::Tensor::new(xs, &Device::Cpu).unwrap()
}

/// llama.cpp's name for a tensor (`convert_hf_to_gguf.py`); `None` for an expert's matrix,
/// which goes into its layer's stack (`stacked_experts`).
fn gguf_name(hf: &str, c: &Convert) -> Option<String> {
    match hf {
        "model.embed_tokens.weight" => return Some("token_embd.weight".into()),
        "model.norm.weight" => return Some("output_norm.weight".into()),
        "lm_head.weight" => return Some("output.weight".into()),
        // Gemma 4's per-layer inputs.
        "model.embed_tokens_per_layer.weight" => return Some("per_layer_token_embd.weight".into()),
        "model.per_layer_model_projection.weight" => {
            return Some("per_layer_model_proj.weight".into())
        }
        "model.per_layer_projection_norm.weight" => {
            return Some("per_layer_proj_norm.weight".into())
        }
        _ => {}
    }
    let rest = hf.strip_prefix("model.layers.").unwrap();
    let (i, tail) = rest.split_once('.').unwrap();
    // Experts go into their layer's stack; Qwen3.5's DeltaNet is its `extra`'s.
    if tail.starts_with("mlp.experts.") || tail.starts_with("linear_attn.") {
        return None;
    }
    let part = match tail {
        "self_attn.q_proj.weight" => "attn_q.weight",
        "self_attn.k_proj.weight" => "attn_k.weight",
        "self_attn.v_proj.weight" => "attn_v.weight",
        "self_attn.o_proj.weight" => "attn_output.weight",
        "self_attn.q_norm.weight" => "attn_q_norm.weight",
        "self_attn.k_norm.weight" => "attn_k_norm.weight",
        "input_layernorm.weight" => "attn_norm.weight",
        "post_attention_layernorm.weight" if c.post_norms => "post_attention_norm.weight",
        "post_attention_layernorm.weight" => "ffn_norm.weight",
        "post_feedforward_layernorm.weight" => "post_ffw_norm.weight",
        "pre_feedforward_layernorm.weight" => "ffn_norm.weight",
        // Gemma 4's layer scale and its own input's block.
        "layer_scalar" => "layer_output_scale.weight",
        "per_layer_input_gate.weight" => "inp_gate.weight",
        "per_layer_projection.weight" => "proj.weight",
        "post_per_layer_input_norm.weight" => "post_norm.weight",
        "mlp.gate_proj.weight" => "ffn_gate.weight",
        "mlp.up_proj.weight" => "ffn_up.weight",
        "mlp.down_proj.weight" => "ffn_down.weight",
        // Phi-3's fused projections, kept fused.
        "self_attn.qkv_proj.weight" => "attn_qkv.weight",
        "mlp.gate_up_proj.weight" => "ffn_up.weight",
        // Gemma 4's experts beside the dense MLP: the router, its input's scale and the
        // experts' own factors (llama.cpp's `ffn_down_exps.scale`), the stacked experts, the
        // branches' norms.
        "router.proj.weight" => "ffn_gate_inp.weight",
        "router.scale" => "ffn_gate_inp.scale",
        "router.per_expert_scale" => "ffn_down_exps.scale",
        "experts.gate_up_proj" => "ffn_gate_up_exps.weight",
        "experts.down_proj" => "ffn_down_exps.weight",
        "pre_feedforward_layernorm_2.weight" => "pre_ffw_norm_2.weight",
        "post_feedforward_layernorm_1.weight" => "post_ffw_norm_1.weight",
        "post_feedforward_layernorm_2.weight" => "post_ffw_norm_2.weight",
        // Qwen3-MoE's router; Qwen3.5-MoE's shared expert and its gate.
        "mlp.gate.weight" => "ffn_gate_inp.weight",
        "mlp.shared_expert.gate_proj.weight" => "ffn_gate_shexp.weight",
        "mlp.shared_expert.up_proj.weight" => "ffn_up_shexp.weight",
        "mlp.shared_expert.down_proj.weight" => "ffn_down_shexp.weight",
        "mlp.shared_expert_gate.weight" => "ffn_gate_inp_shexp.weight",
        other => panic!("unexpected tensor {other}"),
    };
    Some(format!("blk.{i}.{part}"))
}

/// Each layer's experts' matrices stacked as llama.cpp's converter stacks them:
/// `blk.{l}.ffn_{gate,up,down}_exps.weight`, `(experts, rows, columns)`.
fn stacked_experts(
    weights: &std::collections::HashMap<String, candle_core::Tensor>,
    cfg: &serde_json::Value,
) -> Vec<(String, candle_core::Tensor)> {
    let Some(count) = cfg.get("num_experts").and_then(|v| v.as_u64()) else {
        return Vec::new();
    };
    let layers = cfg["num_hidden_layers"].as_u64().unwrap();
    let mut out = Vec::new();
    for l in 0..layers {
        for proj in ["gate", "up", "down"] {
            let name = |e: u64| format!("model.layers.{l}.mlp.experts.{e}.{proj}_proj.weight");
            if !weights.contains_key(&name(0)) {
                continue;
            }
            let parts: Vec<_> = (0..count).map(|e| weights[&name(e)].clone()).collect();
            let stack = candle_core::Tensor::stack(&parts, 0).unwrap();
            out.push((format!("blk.{l}.ffn_{proj}_exps.weight"), stack));
        }
    }
    out
}

/// llama.cpp's converter's q/k permutation (`LlamaModel.permute`): within each head, the
/// rows of the two halves interleave, so that RoPE's pairs are adjacent.
fn permute(t: &candle_core::Tensor, heads: usize) -> candle_core::Tensor {
    let (rows, cols) = t.dims2().unwrap();
    t.reshape((heads, 2, rows / heads / 2, cols))
        .unwrap()
        .transpose(1, 2)
        .unwrap()
        .reshape((rows, cols))
        .unwrap()
}

/// A tiny checkpoint written as an f32 GGUF with its vocabulary and chat template.
pub(crate) fn tiny_gguf(name: &str, c: &Convert) -> std::path::PathBuf {
    let dir = root().join("tests/fixtures").join(name);
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let n = |k: &str| Value::U32(cfg[k].as_u64().unwrap() as u32);
    let key = |k: &str| format!("{}.{k}", c.arch);
    let tokenizer: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("tokenizer.json")).unwrap())
            .unwrap();
    let mut md: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(c.arch.into())),
        (key("block_count"), n("num_hidden_layers")),
        (key("context_length"), n("max_position_embeddings")),
        (key("embedding_length"), n("hidden_size")),
        (key("attention.head_count"), n("num_attention_heads")),
        (key("attention.head_count_kv"), n("num_key_value_heads")),
        (
            key("attention.layer_norm_rms_epsilon"),
            Value::F32(cfg["rms_norm_eps"].as_f64().unwrap() as f32),
        ),
        (
            key("rope.freq_base"),
            // transformers 5 writes it inside rope_parameters (per layer type: the full
            // layers').
            Value::F32(
                [
                    &cfg["rope_theta"],
                    &cfg["rope_parameters"]["rope_theta"],
                    &cfg["rope_parameters"]["full_attention"]["rope_theta"],
                ]
                .iter()
                .find_map(|v| v.as_f64())
                .unwrap() as f32,
            ),
        ),
        ("tokenizer.ggml.bos_token_id".into(), n("bos_token_id")),
        ("tokenizer.ggml.eos_token_id".into(), n("eos_token_id")),
        (
            "tokenizer.chat_template".into(),
            Value::String(std::fs::read_to_string(dir.join("chat_template.jinja")).unwrap()),
        ),
    ];
    md.extend(gguf_vocab(&tokenizer, "smollm"));
    // Absent where every layer has experts (Qwen3.5-MoE).
    if cfg.get("intermediate_size").is_some() {
        md.push((key("feed_forward_length"), n("intermediate_size")));
    }
    let heads = cfg["num_attention_heads"].as_u64().unwrap() as usize;
    let kv_heads = cfg["num_key_value_heads"].as_u64().unwrap() as usize;
    let weights =
        candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
    let (more_md, more_tensors) = (c.extra)(&cfg, &key, &weights);
    for (k, v) in more_md {
        md.retain(|(have, _)| *have != k);
        md.push((k, v));
    }
    let replaced: std::collections::HashSet<String> =
        more_tensors.iter().map(|(n, _)| n.clone()).collect();
    let extra_tensors = more_tensors
        .into_iter()
        .chain(stacked_experts(&weights, &cfg))
        .map(|(n, t)| {
            let t = t.to_dtype(candle_core::DType::F32).unwrap();
            (n, QTensor::quantize(&t, GgmlDType::F32).unwrap())
        });
    let tensors: Vec<(String, QTensor)> = weights
        .iter()
        .filter_map(|(hf, t)| Some((gguf_name(hf, c)?, hf, t)))
        .filter(|(name, _, _)| !replaced.contains(name))
        .map(|(name, hf, t)| {
            let mut t = t.to_dtype(candle_core::DType::F32).unwrap();
            if c.permute_qk && hf.ends_with("q_proj.weight") {
                t = permute(&t, heads);
            } else if c.permute_qk && hf.ends_with("k_proj.weight") {
                t = permute(&t, kv_heads);
            }
            (name, QTensor::quantize(&t, GgmlDType::F32).unwrap())
        })
        .chain(extra_tensors)
        .collect();
    // Tests run side by side in one process: each file its own name.
    static FILES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = FILES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{name}-{}-{n}.gguf", std::process::id()));
    let md: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
    gguf_file::write(&mut std::fs::File::create(&out).unwrap(), &md, &tensors).unwrap();
    out
}

/// The GGUF and the directory give the same tokens, prediction and scores (≤ 1e-5).
pub(crate) fn gguf_explains_as_directory(name: &str, c: &Convert) {
    gguf_explains_as_directory_within(name, c, 1e-5);
}

/// The GGUF and the directory give the same tokens and prediction, and scores within `tol`.
pub(crate) fn gguf_explains_as_directory_within(name: &str, c: &Convert, tol: f32) {
    let gguf = tiny_gguf(name, c);
    let hf = root().join("tests/fixtures").join(name);
    let (a, b) = (
        Engine::load(gguf.to_str().unwrap()).unwrap(),
        Engine::load(hf.to_str().unwrap()).unwrap(),
    );
    for chat in [false, true] {
        let mut req = ExplainRequest::new("Rivers flow to the sea because");
        req.chat_template = chat;
        req.methods = Method::ALL.to_vec();
        let (x, y) = (a.explain(&req).unwrap(), b.explain(&req).unwrap());
        let ids = |e: &tokenlens::Explanation| e.tokens.iter().map(|t| t.id).collect::<Vec<_>>();
        assert_eq!(ids(&x), ids(&y), "{name} chat {chat}: tokens");
        let top = |e: &tokenlens::Explanation| e.prediction().top[0].id;
        assert_eq!(top(&x), top(&y), "{name} chat {chat}: prediction");
        for (m, rx) in &x.methods {
            let err = rel_err(&rx.scores, &y.methods[m].scores);
            assert!(err <= tol, "{name} chat {chat}: {m} differs by {err}");
        }
    }
    let _ = std::fs::remove_file(gguf);
}

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
