//! The tokens a request explains: the prompt (in the chat template or as is) and any answer
//! tokens after it, with each token's place in the text.

use crate::error::{Error, Result};
use crate::{StreamEvent, Token};

/// A tokenized prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct Tokenized {
    /// The text that was tokenized.
    pub text: String,
    /// Its tokens.
    pub tokens: Vec<Token>,
    /// Token range of the user's text, when templated.
    pub query_span: Option<[usize; 2]>,
}

impl crate::Engine {
    /// Templates (optionally; `thinking` is the template's `enable_thinking`) and tokenizes
    /// a prompt.
    pub fn tokenize(&self, prompt: &str, chat_template: bool, thinking: bool) -> Result<Tokenized> {
        // Whitespace is text a model can be asked to continue ("\n", "   ").
        if prompt.is_empty() {
            return Err(Error::EmptyPrompt);
        }
        let (text, query) = if chat_template {
            let t = self.chat_template.as_ref().ok_or(Error::NoChatTemplate)?;
            let r = t.render(prompt, thinking)?;
            (r.text, r.query)
        } else {
            (prompt.to_string(), None)
        };
        let enc = self
            .tokenizer()
            .encode(text.as_str(), false)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        let mut tokens = Vec::with_capacity(enc.len() + 1);
        // A chat template writes its own BOS (transformers tokenizes templated text without
        // special tokens); raw text gets the tokenizer's BOS when the model asks for one.
        if let Some(bos) = self.add_bos.filter(|_| !chat_template) {
            tokens.push(Token {
                id: bos,
                text: self.decode_token(bos),
                start: 0,
                end: 0,
                special: true,
                generated: false,
                piece: None,
            });
        }
        for (i, (&id, &(start, end))) in enc.get_ids().iter().zip(enc.get_offsets()).enumerate() {
            tokens.push(Token {
                id,
                text: self.decode_token(id),
                start,
                end,
                special: enc.get_special_tokens_mask().get(i) == Some(&1) || self.is_special(id),
                generated: false,
                piece: None,
            });
        }
        crate::pieces::merge(self.tokenizer(), &mut tokens, 0);
        crate::pieces::close_open(&mut tokens);
        let query_span = query.and_then(|q| {
            let inside = |t: &Token| t.end > q.start && t.start < q.end;
            let first = tokens.iter().position(inside)?;
            let last = tokens.iter().rposition(inside)?;
            Some([first, last + 1])
        });
        Ok(Tokenized {
            text,
            tokens,
            query_span,
        })
    }

    fn is_special(&self, id: u32) -> bool {
        self.tokenizer()
            .get_added_tokens_decoder()
            .get(&id)
            .is_some_and(|t| t.special)
    }

    /// The token ids of a given answer: its text tokenized alone, without special tokens (as
    /// `tokenizer(answer, add_special_tokens=False)` in transformers), to follow the prompt.
    pub fn answer_ids(&self, answer: &str) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer()
            .encode(answer, false)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        if enc.is_empty() {
            return Err(Error::InvalidSetting(format!(
                "the given answer {answer:?} has no tokens"
            )));
        }
        Ok(enc.get_ids().to_vec())
    }

    /// The prompt (templated, tokenized) followed by `continuation` ids (generated tokens).
    pub fn context(
        &self,
        prompt: &str,
        chat_template: bool,
        thinking: bool,
        continuation: &[u32],
    ) -> Result<Tokenized> {
        let mut tok = self.tokenize(prompt, chat_template, thinking)?;
        for &id in continuation {
            if id as usize >= self.vocab_size() {
                return Err(Error::ContinuationOutOfRange {
                    id,
                    vocab: self.vocab_size(),
                });
            }
            let open = crate::pieces::open_run(tok.tokens.iter());
            let token = self.appended_token(&mut tok.text, open, id);
            tok.tokens.push(token);
        }
        Ok(tok)
    }

    /// A generated token appended to `text`, with its offsets there. `open`: the pieces of a
    /// character it may complete (the tokens before it, see [`crate::pieces::open_run`]);
    /// a token that completes one carries the whole character.
    pub(crate) fn appended_token(&self, text: &mut String, open: Vec<Token>, id: u32) -> Token {
        let mut run = open;
        run.push(Token {
            id,
            start: 0,
            end: 0,
            text: self.decode_token(id),
            special: self.is_special(id),
            generated: true,
            piece: None,
        });
        let last = run.len() - 1;
        crate::pieces::merge(self.tokenizer(), &mut run, last);
        let mut token = run.swap_remove(last);
        token.start = text.len();
        text.push_str(&token.text);
        token.end = text.len();
        token
    }

    /// Emits the `tokens` event; returns the ids.
    pub(crate) fn announce(
        &self,
        tok: &Tokenized,
        emit: &mut dyn FnMut(StreamEvent) -> Result<()>,
    ) -> Result<Vec<u32>> {
        emit(StreamEvent::Tokens {
            text: tok.text.clone(),
            tokens: tok.tokens.clone(),
            query_span: tok.query_span,
            n_layers: self.n_layers(),
        })?;
        Ok(tok.tokens.iter().map(|t| t.id).collect())
    }

    pub(crate) fn check_length(&self, tokens: usize) -> Result<()> {
        if tokens > self.max_tokens() {
            return Err(Error::PromptTooLong {
                tokens,
                limit: self.max_tokens(),
            });
        }
        Ok(())
    }
}
