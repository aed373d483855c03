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
        "gemma4" => gemma4_bpe(content),
        _ => Err(tok_err(format!(
            "GGUF tokenizer model {model:?} is not supported (byte-level BPE \"gpt2\", \
             SentencePiece \"llama\" and Gemma 4's \"gemma4\" are)"
        ))),
    }
}

/// A SentencePiece BPE from pieces and scores (`tokenizer.ggml.model = "llama"`).
fn sentencepiece_bpe(content: &Content) -> Result<Tokenizer> {
    use std::collections::HashMap;

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
    // SentencePiece's dummy prefix: a space before the text (and, as llama.cpp and the
    // Hugging Face tokenizers do, before each stretch of text after a special token). On
    // unless the GGUF says otherwise, as in llama.cpp (Gemma's files switch it off).
    let space_prefix = content
        .metadata
        .get("tokenizer.ggml.add_space_prefix")
        .and_then(|v| v.to_bool().ok())
        .unwrap_or(true);
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
    let vocab = id_vocab(&tokens);
    let unk = crate::tokenizer::gguf_token(content, &tokens, "tokenizer.ggml.unknown_token_id");
    let mut builder = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .byte_fallback(true);
    if let Some(unk) = unk {
        builder = builder.unk_token(unk);
    }
    let mut tokenizer = Tokenizer::new(builder.build().map_err(tok_err)?);
    with_escaped_spaces(&mut tokenizer, space_prefix)?;
    add_vocab_tokens(&mut tokenizer, &tokens, &types)?;
    Ok(tokenizer)
}

/// SentencePiece's normalizer and decoder: spaces are written as "▁" (after a "▁" before
/// the text when `space_prefix`), and decoding undoes that and the byte fallback. A single
/// token keeps its space (" Hello"), so a token's text is what it adds to the text.
fn with_escaped_spaces(tokenizer: &mut Tokenizer, space_prefix: bool) -> Result<()> {
    use tokenizers::decoders::byte_fallback::ByteFallback;
    use tokenizers::decoders::fuse::Fuse;
    use tokenizers::decoders::sequence::Sequence as DecoderSequence;
    use tokenizers::normalizers::{Prepend, Replace, Sequence};

    let escape = Replace::new(" ", "▁").map_err(tok_err)?;
    let normalizer: tokenizers::NormalizerWrapper = if space_prefix {
        Sequence::new(vec![Prepend::new("▁".into()).into(), escape.into()]).into()
    } else {
        escape.into()
    };
    tokenizer
        .with_normalizer(Some(normalizer))
        .map_err(tok_err)?;
    tokenizer.with_decoder(Some(DecoderSequence::new(vec![
        Replace::new("▁", " ").map_err(tok_err)?.into(),
        ByteFallback::default().into(),
        Fuse::default().into(),
    ])));
    Ok(())
}

/// Gemma 4's tokenizer (`tokenizer.ggml.model = "gemma4"`): a BPE with merges over raw
/// UTF-8 pieces, spaces written as "▁" (no dummy prefix), byte fallback, and the text split
/// only at runs of newlines (llama.cpp's `gemma4` pre-tokenizer); a run of newlines that is a
/// vocabulary token is that token.
fn gemma4_bpe(content: &Content) -> Result<Tokenizer> {
    use tokenizers::pre_tokenizers::split::{Split, SplitPattern};

    let tokens = gguf_strings(content, "tokenizer.ggml.tokens")?;
    let merges = gguf_merges(content)?;
    let types = token_types(content, tokens.len())?;
    let vocab = id_vocab(&tokens);
    let mut builder = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .byte_fallback(true);
    if let Some(unk) = gguf_token(content, &tokens, "tokenizer.ggml.unknown_token_id") {
        builder = builder.unk_token(unk);
    }
    let mut tokenizer = Tokenizer::new(builder.build().map_err(tok_err)?);
    with_escaped_spaces(&mut tokenizer, false)?;
    let split = Split::new(
        SplitPattern::Regex("[^\n]+|[\n]+".into()),
        tokenizers::SplitDelimiterBehavior::Isolated,
        false,
    )
    .map_err(tok_err)?;
    tokenizer.with_pre_tokenizer(Some(split));
    add_vocab_tokens(&mut tokenizer, &tokens, &types)?;
    Ok(tokenizer)
}

/// The merges of a GGUF BPE ("a b" each).
fn gguf_merges(content: &Content) -> Result<Vec<(String, String)>> {
    gguf_strings(content, "tokenizer.ggml.merges")?
        .into_iter()
        .map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| tok_err(format!("malformed merge {m:?}")))
        })
        .collect()
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

/// Each token by its id, as a BPE vocabulary.
fn id_vocab(tokens: &[String]) -> tokenizers::models::bpe::Vocab {
    tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect()
}

/// The text of the token a metadata id points to.
pub(crate) fn gguf_token(content: &Content, tokens: &[String], key: &str) -> Option<String> {
    let id = content.metadata.get(key)?.to_u32().ok()?;
    tokens.get(id as usize).cloned()
}

/// A byte-level BPE (`tokenizer.ggml.model = "gpt2"`).
fn byte_level_bpe(content: &Content) -> Result<Tokenizer> {
    let tokens = gguf_strings(content, "tokenizer.ggml.tokens")?;
    let merges = gguf_merges(content)?;
    let types = token_types(content, tokens.len())?;
    let vocab = id_vocab(&tokens);
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
