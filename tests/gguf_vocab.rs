//! GGUF vocabularies made from real Hugging Face tokenizers, as llama.cpp's converter writes
//! them (`convert_hf_to_gguf.py`, `_set_vocab_gpt2`: tokens in id order, holes as `[PAD{i}]`,
//! added tokens as control tokens when special or special-looking and as user-defined tokens
//! otherwise, merges as "a b"), and GGUF fixtures completed with such a vocabulary.

use candle_core::quantized::gguf_file::{self, Content, Value};
use candle_core::Device;
use serde_json::Value as Json;
use std::path::{Path, PathBuf};

const NORMAL: i32 = 1;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const UNUSED: i32 = 5;

pub fn cache() -> PathBuf {
    tokenlens::source::cache_dir()
}

/// llama.cpp's converter's test for added tokens that are control tokens in all but name.
fn looks_special(t: &str) -> bool {
    (t.starts_with("<|") && t.ends_with("|>"))
        || (t.starts_with("<\u{ff5c}") && t.ends_with("\u{ff5c}>"))
        || t.starts_with("<start_of_")
        || matches!(t, "<pad>" | "<mask>")
}

/// The GGUF metadata llama.cpp's converter writes for a byte-level BPE `tokenizer.json`.
pub fn gguf_vocab(tokenizer_json: &Json, pre: &str) -> Vec<(String, Value)> {
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

pub fn read_gguf(path: &std::path::Path) -> Content {
    let mut f = std::io::BufReader::new(std::fs::File::open(path).unwrap());
    Content::read(&mut f).unwrap()
}

/// A family's `tokenizer.json`; GPT-2's is made of its `vocab.json` and `merges.txt` (with
/// `<|endoftext|>` the added special token, as transformers' GPT2TokenizerFast has it).
pub fn tokenizer_json(name: &str) -> Json {
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

/// A fixture directory holding `weights.gguf` (a model's weights and metadata, without a
/// vocabulary, which would be megabytes) and `vocabulary.json` (which real tokenizer from the
/// cache, its pre-tokenizer, chat template and BOS/EOS tokens) is completed here into the GGUF
/// llama.cpp's converter would write, once per test process. Returns its path.
pub fn complete_gguf(dir: &Path) -> PathBuf {
    let read = |f: &str| {
        std::fs::read_to_string(dir.join(f)).unwrap_or_else(|e| panic!("{dir:?}/{f}: {e}"))
    };
    let spec: Json = serde_json::from_str(&read("vocabulary.json")).unwrap();
    let weights = dir.join("weights.gguf");
    let mut file = std::io::BufReader::new(std::fs::File::open(&weights).unwrap());
    let content = Content::read(&mut file).unwrap();
    let tokenizer = tokenizer_json(spec["tokenizer"].as_str().unwrap());
    let mut md: Vec<(String, Value)> = content
        .metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    md.extend(gguf_vocab(&tokenizer, spec["pre"].as_str().unwrap()));
    let id_of = |key: &str| {
        let text = spec[key].as_str().unwrap();
        let id = tokenizer["added_tokens"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["content"] == text)
            .unwrap_or_else(|| panic!("{text} is not an added token"))["id"]
            .as_u64()
            .unwrap();
        Value::U32(id as u32)
    };
    md.push(("tokenizer.ggml.bos_token_id".into(), id_of("bos")));
    md.push(("tokenizer.ggml.eos_token_id".into(), id_of("eos")));
    md.push(("tokenizer.ggml.add_bos_token".into(), Value::Bool(true)));
    let template = spec["chat_template"].as_str().unwrap();
    let template = std::fs::read_to_string(crate::util::root().join(template)).unwrap();
    md.push(("tokenizer.chat_template".into(), Value::String(template)));
    let tensors: Vec<_> = content
        .tensor_infos
        .keys()
        .map(|name| {
            let t = content.tensor(&mut file, name, &Device::Cpu).unwrap();
            (name.clone(), t)
        })
        .collect();
    let name = dir.file_name().unwrap().to_string_lossy();
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.gguf"));
    let partial = out.with_extension(format!("{}.partial", std::process::id()));
    let md: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensors: Vec<_> = tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
    gguf_file::write(&mut std::fs::File::create(&partial).unwrap(), &md, &tensors).unwrap();
    std::fs::rename(&partial, &out).unwrap();
    out
}
