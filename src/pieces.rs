//! Characters, not bytes: byte-level tokens that each hold part of a character's UTF-8 bytes
//! (CJK, emoji, accented letters in byte-level BPE; SentencePiece's `<0xE6>` byte fallback)
//! decode to U+FFFD on their own. A run of them that forms whole characters is merged: the
//! last token of the run carries the characters, the ones before it an empty text, and each
//! keeps its bytes as [`Token::piece`] (shown on hover). A token that is part of no complete
//! character reads as its bytes, e.g. `‹E6 9D›`.

use tokenizers::{DecoderWrapper, Tokenizer};

use crate::Token;

/// The most tokens one run of pieces may take (a character is at most 4 bytes; a piece may
/// hold a byte of the next character too).
const MAX_RUN: usize = 8;

/// GPT-2's byte-level alphabet: the byte a vocabulary character stands for.
fn byte_level_byte(c: char) -> Option<u8> {
    let direct =
        |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let code = c as u32;
    if direct(code) {
        return u8::try_from(code).ok();
    }
    // The other bytes, in order, are written as 256, 257, …
    let n = code.checked_sub(256)? as usize;
    (0u32..256)
        .filter(|&b| !direct(b))
        .nth(n)
        .and_then(|b| u8::try_from(b).ok())
}

/// The bytes token `id` stands for, where the vocabulary says them: a byte-level BPE token's
/// characters mapped back, or a SentencePiece byte-fallback token `<0xNN>`.
pub(crate) fn piece_bytes(tokenizer: &Tokenizer, id: u32) -> Option<Vec<u8>> {
    let piece = tokenizer.id_to_token(id)?;
    if let Some(hex) = piece.strip_prefix("<0x").and_then(|p| p.strip_suffix('>')) {
        return u8::from_str_radix(hex, 16).ok().map(|b| vec![b]);
    }
    match tokenizer.get_decoder() {
        Some(DecoderWrapper::ByteLevel(_)) => piece.chars().map(byte_level_byte).collect(),
        _ => None,
    }
}

/// Bytes as a label: `‹E6 9D›`.
pub fn bytes_label(bytes: &[u8]) -> String {
    let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02X}")).collect();
    format!("‹{}›", hex.join(" "))
}

/// Whether a decoded text holds a replacement character (a partial UTF-8 sequence).
pub(crate) fn is_partial(text: &str) -> bool {
    text.contains('\u{FFFD}')
}

/// A token's text on its own: its decoding, or, when that is part of a character, its bytes
/// as a label.
pub(crate) fn token_text(tokenizer: &Tokenizer, id: u32) -> String {
    let text = tokenizer.decode(&[id], false).unwrap_or_default();
    if !is_partial(&text) {
        return text;
    }
    match piece_bytes(tokenizer, id) {
        Some(b) if std::str::from_utf8(&b).is_err() => bytes_label(&b),
        _ => text,
    }
}

/// Merges runs of partial tokens in `tokens[from..]` into the characters they form (see the
/// module's doc); tokens before `from` are left as they are, except a run of pieces still
/// open just before it, which the tokens from `from` may complete.
pub(crate) fn merge(tokenizer: &Tokenizer, tokens: &mut [Token], from: usize) {
    let bytes_of = |t: &Token| (!t.special).then(|| piece_bytes(tokenizer, t.id)).flatten();
    // A run still open before `from`: its pieces have an empty text.
    let mut start = from.min(tokens.len());
    while start > 0 && tokens[start - 1].piece.is_some() && tokens[start - 1].text.is_empty() {
        start -= 1;
    }
    let mut run: Vec<(usize, Vec<u8>)> = Vec::new();
    for i in start..tokens.len() {
        let Some(bytes) = bytes_of(&tokens[i]) else {
            close(tokens, &mut run);
            continue;
        };
        let mut all: Vec<u8> = run.iter().flat_map(|(_, b)| b.iter().copied()).collect();
        all.extend_from_slice(&bytes);
        let joined = match std::str::from_utf8(&all) {
            Ok(_) if run.is_empty() => continue, // a whole token: nothing to merge
            Ok(text) => Some(text.to_string()),
            Err(e) if e.error_len().is_none() && run.len() < MAX_RUN => None,
            Err(_) => {
                // The run cannot be completed by this token: it stays as bytes, and the
                // token is looked at on its own.
                close(tokens, &mut run);
                match std::str::from_utf8(&bytes) {
                    Ok(_) => continue,
                    Err(e) if e.error_len().is_none() => None,
                    Err(_) => continue,
                }
            }
        };
        tokens[i].piece = Some(bytes_label(&bytes));
        run.push((i, bytes));
        match joined {
            // Complete: the last piece carries the characters.
            Some(text) => {
                for (k, _) in &run[..run.len() - 1] {
                    tokens[*k].text.clear();
                }
                tokens[i].text = text;
                run.clear();
            }
            // Open: the pieces wait (shown as their bytes until the run closes).
            None => tokens[i].text.clear(),
        }
    }
    // A run left open at the end (an answer cut mid-character) stays open: a later token may
    // complete it.
}

/// Ends a run of pieces left open at the end of `tokens` (a prompt is complete): its pieces
/// read as their bytes.
pub(crate) fn close_open(tokens: &mut [Token]) {
    let mut k = tokens.len();
    while k > 0 && tokens[k - 1].piece.is_some() && tokens[k - 1].text.is_empty() {
        k -= 1;
        if let Some(label) = tokens[k].piece.clone() {
            tokens[k].text = label;
        }
    }
}

/// The tokens of a run still open at the end of `tokens` (pieces waiting for the rest of
/// their character).
pub(crate) fn open_run<'a>(tokens: impl DoubleEndedIterator<Item = &'a Token>) -> Vec<Token> {
    let mut run: Vec<Token> = tokens
        .rev()
        .take_while(|t| t.piece.is_some() && t.text.is_empty())
        .cloned()
        .collect();
    run.reverse();
    run
}

/// A run of pieces that no token completes reads as its bytes.
fn close(tokens: &mut [Token], run: &mut Vec<(usize, Vec<u8>)>) {
    for (k, b) in run.drain(..) {
        tokens[k].text = bytes_label(&b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_byte_level_alphabet_round_trips() {
        // GPT-2: '!' is 0x21, 'Ġ' (U+0120) is the space, 'Ċ' (U+010A) the newline.
        assert_eq!(byte_level_byte('!'), Some(0x21));
        assert_eq!(byte_level_byte('\u{120}'), Some(0x20));
        assert_eq!(byte_level_byte('\u{10A}'), Some(0x0A));
        assert_eq!(byte_level_byte('\u{100}'), Some(0x00));
        assert_eq!(byte_level_byte('æ'), Some(0xE6));
        let mut seen: Vec<u8> = (0u32..512)
            .filter_map(char::from_u32)
            .filter_map(byte_level_byte)
            .collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 256);
    }

    #[test]
    fn labels_read_as_hex() {
        assert_eq!(bytes_label(&[0xE6, 0x9D]), "‹E6 9D›");
    }
}
