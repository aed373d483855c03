//! Tiny GGUFs written as llama.cpp's converter writes each family, from the Hugging Face
//! fixtures' weights (`tiny_gguf`), and the check that one explains as its directory.

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

pub(crate) fn no_extra(_: &serde_json::Value, _: &dyn Fn(&str) -> String, _: &Weights) -> Extra {
    (Vec::new(), Vec::new())
}

pub(crate) fn f32s(v: &serde_json::Value) -> candle_core::Tensor {
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
