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
struct Convert {
    arch: &'static str,
    post_norms: bool,
    permute_qk: bool,
}

/// llama.cpp's name for a tensor (`convert_hf_to_gguf.py`).
fn gguf_name(hf: &str, c: &Convert) -> String {
    match hf {
        "model.embed_tokens.weight" => return "token_embd.weight".into(),
        "model.norm.weight" => return "output_norm.weight".into(),
        "lm_head.weight" => return "output.weight".into(),
        _ => {}
    }
    let rest = hf.strip_prefix("model.layers.").unwrap();
    let (i, tail) = rest.split_once('.').unwrap();
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
        "mlp.gate_proj.weight" => "ffn_gate.weight",
        "mlp.up_proj.weight" => "ffn_up.weight",
        "mlp.down_proj.weight" => "ffn_down.weight",
        other => panic!("unexpected tensor {other}"),
    };
    format!("blk.{i}.{part}")
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
fn tiny_gguf(name: &str, c: &Convert) -> std::path::PathBuf {
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
        (key("feed_forward_length"), n("intermediate_size")),
        (key("attention.head_count"), n("num_attention_heads")),
        (key("attention.head_count_kv"), n("num_key_value_heads")),
        (
            key("attention.layer_norm_rms_epsilon"),
            Value::F32(cfg["rms_norm_eps"].as_f64().unwrap() as f32),
        ),
        (
            key("rope.freq_base"),
            // transformers 5 writes it inside rope_parameters.
            Value::F32(
                cfg.get("rope_theta")
                    .unwrap_or(&cfg["rope_parameters"]["rope_theta"])
                    .as_f64()
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
    let heads = cfg["num_attention_heads"].as_u64().unwrap() as usize;
    let kv_heads = cfg["num_key_value_heads"].as_u64().unwrap() as usize;
    let weights =
        candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
    let tensors: Vec<(String, QTensor)> = weights
        .iter()
        .map(|(hf, t)| {
            let mut t = t.to_dtype(candle_core::DType::F32).unwrap();
            if c.permute_qk && hf.ends_with("q_proj.weight") {
                t = permute(&t, heads);
            } else if c.permute_qk && hf.ends_with("k_proj.weight") {
                t = permute(&t, kv_heads);
            }
            (
                gguf_name(hf, c),
                QTensor::quantize(&t, GgmlDType::F32).unwrap(),
            )
        })
        .collect();
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{name}-{}.gguf", std::process::id()));
    let md: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
    gguf_file::write(&mut std::fs::File::create(&out).unwrap(), &md, &tensors).unwrap();
    out
}

/// The GGUF and the directory give the same tokens, prediction and scores (≤ 1e-5).
fn gguf_explains_as_directory(name: &str, c: &Convert) {
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
            assert!(err <= 1e-5, "{name} chat {chat}: {m} differs by {err}");
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
    };
    gguf_explains_as_directory("tiny-smollm3", &c);
}
