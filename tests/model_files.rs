//! Model files whose metadata disagrees with their tensors, or with itself, are refused
//! before any large allocation, with the field named: never a panic, a division by zero or
//! an out-of-memory abort. The GGUFs are written here with candle's writer: a tiny
//! byte-level-BPE Llama, then one field changed at a time.

use crate::util::{root, Complete};
use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use tokenlens::{Engine, Error, ExplainRequest};

pub fn tmp_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tokenlens-model-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const HIDDEN: usize = 8;
const HEADS: u32 = 2;
const KV_HEADS: u32 = 1;
const HEAD_DIM: usize = 4;
const FFN: usize = 16;

/// A valid tiny Llama GGUF; `edit` changes its metadata (by key) before it is written.
pub fn write_gguf(name: &str, edit: impl FnOnce(&mut Vec<(String, Value)>)) -> std::path::PathBuf {
    write_gguf_with(name, edit, |_| {})
}

/// The same, with `edit_tensors` changing its tensors too.
fn write_gguf_with(
    name: &str,
    edit: impl FnOnce(&mut Vec<(String, Value)>),
    edit_tensors: impl FnOnce(&mut Vec<(&str, QTensor)>),
) -> std::path::PathBuf {
    let tokens = ["a", "b", "ab", "Ġ", "<|im_end|>"];
    let vocab = tokens.len();
    let mut md: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String("llama".into())),
        ("llama.embedding_length".into(), Value::U32(HIDDEN as u32)),
        ("llama.feed_forward_length".into(), Value::U32(FFN as u32)),
        ("llama.block_count".into(), Value::U32(1)),
        ("llama.attention.head_count".into(), Value::U32(HEADS)),
        ("llama.attention.head_count_kv".into(), Value::U32(KV_HEADS)),
        ("llama.context_length".into(), Value::U32(64)),
        (
            "llama.attention.layer_norm_rms_epsilon".into(),
            Value::F32(1e-5),
        ),
        ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Value::String("qwen2".into())),
        (
            "tokenizer.ggml.tokens".into(),
            Value::Array(
                tokens
                    .iter()
                    .map(|t| Value::String(t.to_string()))
                    .collect(),
            ),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            Value::Array(vec![
                Value::I32(1),
                Value::I32(1),
                Value::I32(1),
                Value::I32(1),
                Value::I32(3),
            ]),
        ),
        (
            "tokenizer.ggml.merges".into(),
            Value::Array(vec![Value::String("a b".into())]),
        ),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(4)),
    ];
    edit(&mut md);
    let dev = Device::Cpu;
    let q = HEADS as usize * HEAD_DIM;
    let kv = KV_HEADS as usize * HEAD_DIM;
    let t = |shape: &[usize], scale: f64| -> QTensor {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|i| ((i * 7 % 13) as f64 * scale - 0.3) as f32)
            .collect();
        let x = Tensor::from_vec(v, shape, &dev).unwrap();
        QTensor::quantize(&x, GgmlDType::F32).unwrap()
    };
    let mut tensors: Vec<(&str, QTensor)> = vec![
        ("token_embd.weight", t(&[vocab, HIDDEN], 0.05)),
        ("output_norm.weight", t(&[HIDDEN], 0.1)),
        ("blk.0.attn_norm.weight", t(&[HIDDEN], 0.1)),
        ("blk.0.ffn_norm.weight", t(&[HIDDEN], 0.1)),
        ("blk.0.attn_q.weight", t(&[q, HIDDEN], 0.05)),
        ("blk.0.attn_k.weight", t(&[kv, HIDDEN], 0.05)),
        ("blk.0.attn_v.weight", t(&[kv, HIDDEN], 0.05)),
        ("blk.0.attn_output.weight", t(&[HIDDEN, q], 0.05)),
        ("blk.0.ffn_gate.weight", t(&[FFN, HIDDEN], 0.05)),
        ("blk.0.ffn_up.weight", t(&[FFN, HIDDEN], 0.05)),
        ("blk.0.ffn_down.weight", t(&[HIDDEN, FFN], 0.05)),
    ];
    edit_tensors(&mut tensors);
    let path = tmp_dir().join(name);
    let mut f = std::fs::File::create(&path).unwrap();
    let md_refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (*k, v)).collect();
    gguf_file::write(&mut f, &md_refs, &t_refs).unwrap();
    path
}

fn set(md: &mut [(String, Value)], key: &str, v: Value) {
    md.iter_mut().find(|(k, _)| k == key).unwrap().1 = v;
}

/// Loading `path` fails with a model-file error that names `field`.
fn refused(path: &std::path::Path, field: &str) {
    let err = Engine::load(path.to_str().unwrap()).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, Error::BadModelFile { .. } | Error::Tokenizer(_)),
        "{msg}"
    );
    assert!(msg.contains(field), "{field} not named in: {msg}");
}

#[test]
fn the_tiny_gguf_loads_and_explains() {
    let p = write_gguf("ok.gguf", |_| {});
    let e = Engine::load(p.to_str().unwrap()).unwrap();
    assert_eq!(
        e.tokenizer().encode("ab a", false).unwrap().get_ids(),
        [2, 3, 0]
    );
    assert!(e.eos_ids().contains(&4));
    let mut req = ExplainRequest::new("ab a b");
    req.chat_template = false;
    e.explain(&req).unwrap();
}

#[test]
fn zero_heads() {
    let p = write_gguf("zero-heads.gguf", |md| {
        set(md, "llama.attention.head_count", Value::U32(0))
    });
    refused(&p, "num_attention_heads");
}

#[test]
fn heads_times_width_disagree_with_q_rows() {
    let p = write_gguf("heads.gguf", |md| {
        // Heads of width 8: q would need 16 rows; the tensor has 8.
        md.push(("llama.attention.key_length".into(), Value::U32(8)));
    });
    refused(&p, "attn_q");
}

#[test]
fn vocabulary_disagrees_with_embedding_rows() {
    let p = write_gguf("vocab.gguf", |md| {
        let mut tokens = match &md[10].1 {
            Value::Array(a) => a.clone(),
            _ => unreachable!(),
        };
        tokens.push(Value::String("zz".into()));
        set(md, "tokenizer.ggml.tokens", Value::Array(tokens));
    });
    refused(&p, "vocab_size");
}

#[test]
fn absurd_context_and_layer_counts() {
    let p = write_gguf("context.gguf", |md| {
        set(md, "llama.context_length", Value::U32(u32::MAX))
    });
    refused(&p, "context length");
    let p = write_gguf("layers.gguf", |md| {
        set(md, "llama.block_count", Value::U32(3_000_000_000))
    });
    refused(&p, "block_count");
    let p = write_gguf("missing-layer.gguf", |md| {
        set(md, "llama.block_count", Value::U32(2))
    });
    refused(&p, "blk.1");
}

#[test]
fn alignment_zero() {
    let p = write_gguf("alignment.gguf", |md| {
        md.push(("general.alignment".into(), Value::U32(0)))
    });
    refused(&p, "general.alignment");
}

#[test]
fn unknown_pre_tokenizer_names_the_supported_ones() {
    let p = write_gguf("pre.gguf", |md| {
        set(md, "tokenizer.ggml.pre", Value::String("klingon".into()))
    });
    refused(&p, "\"klingon\"");
    let msg = Engine::load(p.to_str().unwrap()).unwrap_err().to_string();
    assert!(msg.contains("llama-bpe") && msg.contains("tekken"), "{msg}");
}

/// A norm vector of the wrong length (found by the property test: it panicked inside the
/// first pass) is refused at load, named.
#[test]
fn vector_of_the_wrong_length() {
    let p = write_gguf_with(
        "short-norm.gguf",
        |_| {},
        |tensors| {
            let short = Tensor::ones(5, candle_core::DType::F32, &Device::Cpu).unwrap();
            let q = QTensor::quantize(&short, GgmlDType::F32).unwrap();
            tensors.retain(|(n, _)| *n != "blk.0.attn_norm.weight");
            tensors.push(("blk.0.attn_norm.weight", q));
        },
    );
    refused(&p, "blk.0.attn_norm.weight");
}

/// A SentencePiece vocabulary whose score array is shorter than its pieces (indexing past
/// its end panicked while building the merges) is refused, named.
#[test]
fn short_score_array() {
    let p = write_gguf("short-scores.gguf", |md| {
        set(md, "tokenizer.ggml.model", Value::String("llama".into()));
        md.push((
            "tokenizer.ggml.scores".into(),
            Value::Array(vec![Value::F32(0.0)]),
        ));
    });
    refused(&p, "tokenizer.ggml.scores");
    // With a score per piece the same file loads and explains.
    let e = Engine::load(sentencepiece_gguf("sentencepiece.gguf").to_str().unwrap()).unwrap();
    let mut req = ExplainRequest::new("ab a");
    req.chat_template = false;
    e.explain(&req).unwrap();
}

/// The tiny Llama with a SentencePiece vocabulary (`tokenizer.ggml.model = "llama"`): the
/// same pieces, each scored.
pub fn sentencepiece_gguf(name: &str) -> std::path::PathBuf {
    write_gguf(name, |md| {
        set(md, "tokenizer.ggml.model", Value::String("llama".into()));
        let n = match &md
            .iter()
            .find(|(k, _)| k == "tokenizer.ggml.tokens")
            .unwrap()
            .1
        {
            Value::Array(a) => a.len(),
            _ => unreachable!(),
        };
        let scores = (0..n).map(|i| Value::F32(-(i as f32))).collect();
        md.push(("tokenizer.ggml.scores".into(), Value::Array(scores)));
    })
}

/// A chat template that loops for ever would hold the worker on every request: it is refused
/// at load, by its fuel (a count of template steps, not a clock).
#[test]
fn endless_chat_template() {
    let p = write_gguf("template.gguf", |md| {
        md.retain(|(k, _)| k != "tokenizer.chat_template");
        md.push((
            "tokenizer.chat_template".into(),
            Value::String(
                "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"
                    .into(),
            ),
        ))
    });
    refused(&p, "fuel");
}

#[test]
fn config_json_that_disagrees_with_its_weights() {
    let moe = "tiny-qwen3-moe";
    let olmo3 = "tiny-olmo3";
    let cases: [(&str, &str, serde_json::Value, &str); 16] = [
        (
            "tiny-llama",
            "num_attention_heads",
            0.into(),
            "num_attention_heads",
        ),
        ("tiny-llama", "num_attention_heads", 8.into(), "q_proj"),
        ("tiny-llama", "vocab_size", 100.into(), "vocab_size"),
        (
            "tiny-llama",
            "max_position_embeddings",
            4_000_000_000u64.into(),
            "context length",
        ),
        // Sparse experts: counts that cannot route, or disagree with the stored experts.
        (moe, "num_experts_per_tok", 7.into(), "num_experts_per_tok"),
        (moe, "num_experts", 0.into(), "num_experts"),
        (moe, "num_experts", 8.into(), "num_experts, hidden_size"),
        (
            moe,
            "moe_intermediate_size",
            10.into(),
            "moe_intermediate_size",
        ),
        (moe, "mlp_only_layers", "all".into(), "mlp_only_layers"),
        // Sliding windows: a list of another length, a window that is not a count.
        (
            olmo3,
            "layer_types",
            serde_json::json!(["full_attention"]),
            "layer_types lists 1 layers; num_hidden_layers is 4",
        ),
        (olmo3, "layer_types", 4.into(), "layer_types"),
        (olmo3, "sliding_window", 2.5.into(), "sliding_window is 2.5"),
        // Gemma 4's full layers: a head width their weights do not have.
        (
            "tiny-gemma4",
            "per_layer_config",
            serde_json::json!({"1": {"head_dim": 32}, "3": {"head_dim": 32}, "6": {"head_dim": 32}}),
            "model.layers.1.self_attn.q_proj.weight",
        ),
        // Their values: a value projection the file does not have, a key/value head count
        // their keys do not have.
        (
            "tiny-gemma4",
            "attention_k_eq_v",
            false.into(),
            "model.layers.1.self_attn.v_proj.weight",
        ),
        (
            "tiny-gemma4",
            "per_layer_config",
            serde_json::json!({"1": {"head_dim": 16, "num_key_value_heads": 2},
                               "3": {"head_dim": 16, "num_key_value_heads": 2},
                               "6": {"head_dim": 16, "num_key_value_heads": 2}}),
            "model.layers.1.self_attn.k_proj.weight",
        ),
        // 26B-A4B's experts: more than the router has rows for.
        (
            "tiny-gemma4-moe",
            "num_experts",
            8.into(),
            "model.layers.0.router.proj.weight",
        ),
    ];
    for (i, (model, key, value, field)) in cases.into_iter().enumerate() {
        let src = root().join("tests/fixtures").join(model);
        let dir = tmp_dir().join(format!("config-{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in std::fs::read_dir(&src).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, dir.join(f.file_name().unwrap())).unwrap();
        }
        let cfg_path = dir.join("config.json");
        let mut cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
        cfg[key] = value;
        std::fs::write(&cfg_path, cfg.to_string()).unwrap();
        refused(&dir, field);
    }
}

/// A Gemma 4 layer whose output scale is 0 would erase the stream (and the backward pass
/// divides by it): refused at load, naming the tensor.
#[test]
fn a_layer_scale_of_zero_is_refused() {
    let src = root().join("tests/fixtures/tiny-gemma4");
    let dir = tmp_dir().join("gemma4-scale");
    std::fs::create_dir_all(&dir).unwrap();
    for f in std::fs::read_dir(&src).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, dir.join(f.file_name().unwrap())).unwrap();
    }
    let file = dir.join("model.safetensors");
    let mut tensors = candle_core::safetensors::load(&file, &Device::Cpu).unwrap();
    let name = "model.layers.2.layer_scalar";
    let zero = tensors[name].zeros_like().unwrap();
    tensors.insert(name.into(), zero);
    candle_core::safetensors::save(&tensors, &file).unwrap();
    refused(&dir, name);
}

/// A model over its memory budget keeps its weights as the file stores them (GGUF quantized
/// blocks, bf16 safetensors) and converts them per use: the scores are those of the dense
/// copy (the same converted values enter the same operations; only the output layer's
/// product is cut into blocks of rows, for which OpenBLAS may take another kernel, so equal
/// within 1e-6 relative rather than bit for bit).
#[test]
fn stored_weights_give_the_dense_scores() {
    // Q4_0 embeddings and Q8_0 layers.
    let gguf = crate::gguf_vocab::complete_gguf(&root().join("tests/fixtures/tiny-llama3"));
    // tiny-qwen3's safetensors are bf16 (q/k norms and an explicit head width besides).
    let bf16 = root().join("tests/fixtures/tiny-qwen3");
    for (spec, kind) in [
        (gguf.to_str().unwrap(), "Q4_0/Q8_0"),
        (bf16.to_str().unwrap(), "BF16"),
    ] {
        same_scores_when_stored(spec, kind);
    }
}

fn same_scores_when_stored(spec: &str, kind: &str) {
    use tokenlens::{LoadOptions, Method};
    let dense = Engine::load_with(&LoadOptions::new(spec)).unwrap();
    let stored = Engine::load_with(&LoadOptions {
        max_memory: Some(0),
        ..LoadOptions::new(spec)
    })
    .unwrap();
    assert!(
        dense.weights_note().starts_with("dense"),
        "{}",
        dense.weights_note()
    );
    let note = stored.weights_note();
    assert!(
        note.starts_with("kept as stored") && note.contains(kind),
        "{note}"
    );
    assert!(stored.weights_bytes() < dense.weights_bytes(), "{note}");
    let mut req = ExplainRequest::new("ab a b ab, the quick brown fox");
    req.chat_template = false;
    req.methods = Method::ALL.to_vec();
    let (a, b) = (dense.explain(&req).unwrap(), stored.explain(&req).unwrap());
    let ids = |p: &tokenlens::Prediction| p.top.iter().map(|c| c.id).collect::<Vec<_>>();
    assert_eq!(ids(a.prediction()), ids(b.prediction()), "{spec}");
    let logits = |p: &tokenlens::Prediction| p.top.iter().map(|c| c.logit).collect::<Vec<_>>();
    let err = crate::util::rel_err(&logits(a.prediction()), &logits(b.prediction()));
    assert!(err <= 1e-6, "{spec}: logits differ by {err}");
    for (m, ra) in &a.methods {
        let err = crate::util::rel_err(&ra.scores, &b.methods[m].scores);
        assert!(err <= 1e-6, "{spec}: {m} differs by {err}");
    }
}

/// A safetensors header whose offsets point outside the file, or disagree with the shape and
/// dtype, is refused by name before anything is read.
#[test]
fn safetensors_offsets_are_checked() {
    let src = root().join("tests/fixtures/tiny-llama");
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    const NAME: &str = "model.layers.0.self_attn.q_proj.weight";
    let name = NAME;
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: [(&str, Edit); 3] = [
        (
            "past",
            Box::new(|h| h[NAME]["data_offsets"][1] = (1u64 << 40).into()),
        ),
        ("shape", Box::new(|h| h[NAME]["shape"][0] = 3.into())),
        ("dtype", Box::new(|h| h[NAME]["dtype"] = "F8_E4M3".into())),
    ];
    for (i, (what, edit)) in cases.iter().enumerate() {
        let mut h = header.clone();
        edit(&mut h);
        let h = serde_json::to_vec(&h).unwrap();
        let dir = tmp_dir().join(format!("safetensors-{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in std::fs::read_dir(&src).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, dir.join(f.file_name().unwrap())).unwrap();
        }
        let mut out = (h.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(&h);
        out.extend_from_slice(&bytes[8 + n..]);
        std::fs::write(dir.join("model.safetensors"), out).unwrap();
        let e = Engine::load(dir.to_str().unwrap())
            .err()
            .unwrap_or_else(|| panic!("{what}: loaded"));
        assert!(e.to_string().contains(name), "{what}: {e}");
    }
}
