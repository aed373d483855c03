//! A family read from a GGUF (as llama.cpp's converter writes it) explains exactly as the
//! same weights read from their Hugging Face directory: the tensor names, the norms'
//! placement and the RoPE layout all come out right.

use crate::gguf_vocab::gguf_vocab;
use crate::util::{rel_err, root, Complete};
use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Device;
use tokenlens::{Engine, ExplainRequest, Method};

/// llama.cpp's name for an OLMo 2 tensor (`convert_hf_to_gguf.py`, `Olmo2Model`; q and k
/// are not permuted: OLMo 2's RoPE is the half-split NEOX kind).
fn olmo2_gguf_name(hf: &str) -> String {
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
        "post_attention_layernorm.weight" => "post_attention_norm.weight",
        "post_feedforward_layernorm.weight" => "post_ffw_norm.weight",
        "mlp.gate_proj.weight" => "ffn_gate.weight",
        "mlp.up_proj.weight" => "ffn_up.weight",
        "mlp.down_proj.weight" => "ffn_down.weight",
        other => panic!("unexpected OLMo 2 tensor {other}"),
    };
    format!("blk.{i}.{part}")
}

/// tiny-olmo2 written as an f32 GGUF with its vocabulary and chat template.
fn tiny_olmo2_gguf() -> std::path::PathBuf {
    let dir = root().join("tests/fixtures/tiny-olmo2");
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let n = |k: &str| Value::U32(cfg[k].as_u64().unwrap() as u32);
    let tokenizer: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("tokenizer.json")).unwrap())
            .unwrap();
    let mut md: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String("olmo2".into())),
        ("olmo2.block_count".into(), n("num_hidden_layers")),
        ("olmo2.context_length".into(), n("max_position_embeddings")),
        ("olmo2.embedding_length".into(), n("hidden_size")),
        ("olmo2.feed_forward_length".into(), n("intermediate_size")),
        (
            "olmo2.attention.head_count".into(),
            n("num_attention_heads"),
        ),
        (
            "olmo2.attention.head_count_kv".into(),
            n("num_key_value_heads"),
        ),
        (
            "olmo2.attention.layer_norm_rms_epsilon".into(),
            Value::F32(cfg["rms_norm_eps"].as_f64().unwrap() as f32),
        ),
        (
            "olmo2.rope.freq_base".into(),
            Value::F32(cfg["rope_theta"].as_f64().unwrap() as f32),
        ),
        ("tokenizer.ggml.bos_token_id".into(), n("bos_token_id")),
        ("tokenizer.ggml.eos_token_id".into(), n("eos_token_id")),
        (
            "tokenizer.chat_template".into(),
            Value::String(std::fs::read_to_string(dir.join("chat_template.jinja")).unwrap()),
        ),
    ];
    md.extend(gguf_vocab(&tokenizer, "smollm"));
    let weights =
        candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
    let tensors: Vec<(String, QTensor)> = weights
        .iter()
        .map(|(name, t)| {
            let t = t.to_dtype(candle_core::DType::F32).unwrap();
            (
                olmo2_gguf_name(name),
                QTensor::quantize(&t, GgmlDType::F32).unwrap(),
            )
        })
        .collect();
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("tiny-olmo2-{}.gguf", std::process::id()));
    let md: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
    gguf_file::write(&mut std::fs::File::create(&out).unwrap(), &md, &tensors).unwrap();
    out
}

#[test]
fn olmo2_gguf_explains_as_its_hugging_face_directory() {
    let gguf = tiny_olmo2_gguf();
    let hf = root().join("tests/fixtures/tiny-olmo2");
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
        assert_eq!(ids(&x), ids(&y), "chat {chat}: tokens");
        let top = |e: &tokenlens::Explanation| e.prediction().top[0].id;
        assert_eq!(top(&x), top(&y), "chat {chat}: prediction");
        for (m, rx) in &x.methods {
            let err = rel_err(&rx.scores, &y.methods[m].scores);
            assert!(err <= 1e-5, "chat {chat}: {m} differs by {err}");
        }
    }
    let _ = std::fs::remove_file(gguf);
}
