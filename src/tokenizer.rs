//! Tokenizers: from a GGUF file's metadata, or from a `tokenizer.json`.
//!
//! GGUF stores a byte-level BPE as `tokenizer.ggml.{tokens, merges, token_type}` plus a
//! pre-tokenizer name (`tokenizer.ggml.pre`). llama.cpp's `smollm` pre-tokenizer splits every
//! digit before the GPT-2 regex, which is what SmolLM2's own `tokenizer.json` does too.

use crate::error::{Error, Result};
use candle_core::quantized::gguf_file::{Content, Value};
use std::path::Path;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, Tokenizer};

/// GGUF's token type for control tokens (`<|im_start|>` and the like).
const TOKEN_TYPE_CONTROL: i64 = 3;

fn tok_err(e: impl std::fmt::Display) -> Error {
    Error::Tokenizer(e.to_string())
}

/// Reads a metadata array of strings.
pub(crate) fn gguf_strings(content: &Content, key: &str) -> Result<Vec<String>> {
    let value = content
        .metadata
        .get(key)
        .ok_or_else(|| tok_err(format!("GGUF metadata has no {key}")))?;
    value
        .to_vec()
        .map_err(tok_err)?
        .iter()
        .map(|v| v.to_string().cloned().map_err(tok_err))
        .collect()
}

fn value_as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::I32(x) => Some(*x as i64),
        Value::U32(x) => Some(*x as i64),
        Value::I64(x) => Some(*x),
        Value::U64(x) => Some(*x as i64),
        Value::I8(x) => Some(*x as i64),
        Value::U8(x) => Some(*x as i64),
        Value::I16(x) => Some(*x as i64),
        Value::U16(x) => Some(*x as i64),
        _ => None,
    }
}

/// Builds the tokenizer a GGUF file describes (byte-level BPE, `gpt2` model type).
pub fn from_gguf(content: &Content) -> Result<Tokenizer> {
    let model = content
        .metadata
        .get("tokenizer.ggml.model")
        .and_then(|v| v.to_string().ok())
        .map(String::as_str)
        .unwrap_or("");
    if model != "gpt2" {
        return Err(tok_err(format!(
            "GGUF tokenizer model {model:?} is not supported (only byte-level BPE, \"gpt2\")"
        )));
    }
    let tokens = gguf_strings(content, "tokenizer.ggml.tokens")?;
    let merges = gguf_strings(content, "tokenizer.ggml.merges")?
        .into_iter()
        .map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| tok_err(format!("malformed merge {m:?}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let types: Vec<i64> = match content.metadata.get("tokenizer.ggml.token_type") {
        Some(v) => v
            .to_vec()
            .map_err(tok_err)?
            .iter()
            .map(|t| value_as_i64(t).unwrap_or(1))
            .collect(),
        None => vec![1; tokens.len()],
    };
    let vocab: tokenizers::models::bpe::Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(tok_err)?;
    let mut tokenizer = Tokenizer::new(bpe);

    let pre = content
        .metadata
        .get("tokenizer.ggml.pre")
        .and_then(|v| v.to_string().ok())
        .map(String::as_str)
        .unwrap_or("default");
    // Offsets are kept untrimmed so that a token's span includes its leading space.
    let byte_level = ByteLevel::new(false, false, true);
    let mut steps: Vec<PreTokenizerWrapper> = Vec::new();
    if pre == "smollm" {
        steps.push(Digits::new(true).into());
    }
    steps.push(byte_level.into());
    tokenizer.with_pre_tokenizer(Some(Sequence::new(steps)));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));

    let specials: Vec<AddedToken> = tokens
        .iter()
        .zip(&types)
        .filter(|(_, &ty)| ty == TOKEN_TYPE_CONTROL)
        .map(|(t, _)| AddedToken::from(t.clone(), true))
        .collect();
    tokenizer.add_special_tokens(specials).map_err(tok_err)?;
    Ok(tokenizer)
}

/// Loads a `tokenizer.json`.
pub fn from_file(path: &Path) -> Result<Tokenizer> {
    Tokenizer::from_file(path).map_err(|e| tok_err(format!("{}: {e}", path.display())))
}
