//! Tokenizers: from a GGUF file's metadata, or from a `tokenizer.json`.
//!
//! GGUF stores either a byte-level BPE (`tokenizer.ggml.model = "gpt2"`:
//! `tokenizer.ggml.{tokens, merges, token_type}` plus a pre-tokenizer name,
//! `tokenizer.ggml.pre`; llama.cpp's `smollm` pre-tokenizer splits every digit before the
//! GPT-2 regex, as SmolLM2's own `tokenizer.json` does), or a SentencePiece BPE (`"llama"`:
//! tokens with scores, no merges; Gemma, Llama 2). The latter merges, over the whole text,
//! the adjacent pair whose joined piece scores highest (llama.cpp's and SentencePiece's
//! encoder); we express that as a BPE whose merges are every split of every piece, ranked
//! by the piece's score, with byte fallback. (transformers' GGUF converter builds a Unigram
//! model from the scores instead, which tokenizes differently: " Eiffel" → "▁E iff el".)

use crate::error::{Error, Result};
use candle_core::quantized::gguf_file::{Content, Value};
use std::path::Path;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
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

/// GGUF's token types.
const TOKEN_TYPE_NORMAL: i64 = 1;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

fn token_types(content: &Content, n: usize) -> Result<Vec<i64>> {
    Ok(match content.metadata.get("tokenizer.ggml.token_type") {
        Some(v) => v
            .to_vec()
            .map_err(tok_err)?
            .iter()
            .map(|t| value_as_i64(t).unwrap_or(TOKEN_TYPE_NORMAL))
            .collect(),
        None => vec![TOKEN_TYPE_NORMAL; n],
    })
}

/// Builds the tokenizer a GGUF file describes.
pub fn from_gguf(content: &Content) -> Result<Tokenizer> {
    let model = content
        .metadata
        .get("tokenizer.ggml.model")
        .and_then(|v| v.to_string().ok())
        .map(String::as_str)
        .unwrap_or("");
    match model {
        "gpt2" => byte_level_bpe(content),
        "llama" => sentencepiece_bpe(content),
        _ => Err(tok_err(format!(
            "GGUF tokenizer model {model:?} is not supported (byte-level BPE \"gpt2\" and \
             SentencePiece \"llama\" are)"
        ))),
    }
}

/// A SentencePiece BPE from pieces and scores (`tokenizer.ggml.model = "llama"`).
fn sentencepiece_bpe(content: &Content) -> Result<Tokenizer> {
    use std::collections::HashMap;
    use tokenizers::decoders::byte_fallback::ByteFallback;
    use tokenizers::decoders::fuse::Fuse;
    use tokenizers::decoders::sequence::Sequence as DecoderSequence;
    use tokenizers::normalizers::replace::Replace;

    let tokens = gguf_strings(content, "tokenizer.ggml.tokens")?;
    let scores: Vec<f32> = content
        .metadata
        .get("tokenizer.ggml.scores")
        .ok_or_else(|| tok_err("GGUF metadata has no tokenizer.ggml.scores"))?
        .to_vec()
        .map_err(tok_err)?
        .iter()
        .map(|v| v.to_f32().unwrap_or(0.0))
        .collect();
    if scores.len() != tokens.len() {
        return Err(tok_err(format!(
            "tokenizer.ggml.scores has {} entries for {} tokens",
            scores.len(),
            tokens.len()
        )));
    }
    let types = token_types(content, tokens.len())?;
    if content
        .metadata
        .get("tokenizer.ggml.add_space_prefix")
        .and_then(|v| v.to_bool().ok())
        .unwrap_or(false)
    {
        return Err(tok_err(
            "SentencePiece GGUF tokenizers with add_space_prefix are not supported",
        ));
    }
    let ids: HashMap<&str, u32> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_str(), i as u32))
        .collect();
    // Every split of every normal piece into two vocabulary pieces is a merge, ranked by the
    // joined piece's score (highest first).
    let mut merges: Vec<(f32, u32, String, String)> = Vec::new();
    for (i, piece) in tokens.iter().enumerate() {
        if types.get(i) != Some(&TOKEN_TYPE_NORMAL) {
            continue;
        }
        for (at, _) in piece.char_indices().skip(1) {
            let (l, r) = piece.split_at(at);
            if ids.contains_key(l) && ids.contains_key(r) {
                merges.push((scores[i], i as u32, l.to_string(), r.to_string()));
            }
        }
    }
    merges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let merges: Vec<(String, String)> = merges.into_iter().map(|(_, _, l, r)| (l, r)).collect();
    let vocab: tokenizers::models::bpe::Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let unk = crate::tokenizer::gguf_token(content, &tokens, "tokenizer.ggml.unknown_token_id");
    let mut builder = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .byte_fallback(true);
    if let Some(unk) = unk {
        builder = builder.unk_token(unk);
    }
    let mut tokenizer = Tokenizer::new(builder.build().map_err(tok_err)?);
    tokenizer
        .with_normalizer(Some(Replace::new(" ", "▁").map_err(tok_err)?))
        .map_err(tok_err)?;
    tokenizer.with_decoder(Some(DecoderSequence::new(vec![
        Replace::new("▁", " ").map_err(tok_err)?.into(),
        ByteFallback::default().into(),
        Fuse::default().into(),
    ])));
    add_vocab_tokens(&mut tokenizer, &tokens, &types)?;
    Ok(tokenizer)
}

/// Adds the vocabulary's control tokens (`<|im_start|>`, `<start_of_turn>`) as special
/// tokens and its user-defined ones (Qwen's `<think>`; SentencePiece's runs of spaces or
/// newlines) as plain added tokens: both are matched in the raw text before the model runs,
/// as llama.cpp and the models' own `tokenizer.json` do.
fn add_vocab_tokens(tokenizer: &mut Tokenizer, tokens: &[String], types: &[i64]) -> Result<()> {
    let added = |ty: i64, special: bool| -> Vec<AddedToken> {
        tokens
            .iter()
            .zip(types)
            .filter(|(_, &t)| t == ty)
            .map(|(t, _)| AddedToken::from(t.clone(), special).normalized(false))
            .collect()
    };
    tokenizer
        .add_special_tokens(added(TOKEN_TYPE_CONTROL, true))
        .map_err(tok_err)?;
    tokenizer
        .add_tokens(added(TOKEN_TYPE_USER_DEFINED, false))
        .map_err(tok_err)?;
    Ok(())
}

/// The text of the token a metadata id points to.
pub(crate) fn gguf_token(content: &Content, tokens: &[String], key: &str) -> Option<String> {
    let id = content.metadata.get(key)?.to_u32().ok()?;
    tokens.get(id as usize).cloned()
}

/// A byte-level BPE (`tokenizer.ggml.model = "gpt2"`).
fn byte_level_bpe(content: &Content) -> Result<Tokenizer> {
    let tokens = gguf_strings(content, "tokenizer.ggml.tokens")?;
    let merges = gguf_strings(content, "tokenizer.ggml.merges")?
        .into_iter()
        .map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| tok_err(format!("malformed merge {m:?}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let types = token_types(content, tokens.len())?;
    let vocab: tokenizers::models::bpe::Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let pre_name = content
        .metadata
        .get("tokenizer.ggml.pre")
        .and_then(|v| v.to_string().ok())
        .map(String::as_str)
        .unwrap_or("default");
    let pre = crate::pre_tokenizer::find(pre_name)?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .ignore_merges(pre.ignore_merges)
        .build()
        .map_err(tok_err)?;
    let mut tokenizer = Tokenizer::new(bpe);
    if pre.nfc {
        tokenizer
            .with_normalizer(Some(tokenizers::normalizers::unicode::NFC))
            .map_err(tok_err)?;
    }
    tokenizer.with_pre_tokenizer(Some(pre.build()?));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));

    add_vocab_tokens(&mut tokenizer, &tokens, &types)?;
    Ok(tokenizer)
}

/// Loads a `tokenizer.json`.
pub fn from_file(path: &Path) -> Result<Tokenizer> {
    Tokenizer::from_file(path).map_err(|e| tok_err(format!("{}: {e}", path.display())))
}
