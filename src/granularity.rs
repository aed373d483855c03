//! Token, word and sentence views: group a prompt's tokens and aggregate their scores.
//!
//! Shared by the CLI and the web page (no dependencies; compiles for wasm). Control tokens
//! of a chat template (`<|im_start|>` …) are always groups of their own, so that template
//! structure never merges into the user's words.

use crate::types::Token;
use serde::{Deserialize, Serialize};

/// The unit scores are shown for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    /// One score per token.
    #[default]
    Token,
    /// Tokens joined into words: a word starts at whitespace or punctuation.
    Word,
    /// Words joined into sentences: a sentence ends after `.`, `!`, `?` or a line break.
    Sentence,
}

impl Granularity {
    /// Every granularity, finest first.
    pub const ALL: [Granularity; 3] =
        [Granularity::Token, Granularity::Word, Granularity::Sentence];

    /// The name used on the command line, in URLs and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Granularity::Token => "token",
            Granularity::Word => "word",
            Granularity::Sentence => "sentence",
        }
    }

    /// Parses [`Granularity::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.name() == name)
    }
}

/// How a group's score is made from its tokens' scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregate {
    /// The sum: relevance is additive, so sums conserve the total.
    #[default]
    Sum,
    /// The score of largest magnitude (sign kept).
    MaxAbs,
}

impl Aggregate {
    /// Both, in display order.
    pub const ALL: [Aggregate; 2] = [Aggregate::Sum, Aggregate::MaxAbs];

    /// The name used on the command line, in URLs and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Aggregate::Sum => "sum",
            Aggregate::MaxAbs => "max_abs",
        }
    }

    /// Parses [`Aggregate::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.name() == name)
    }

    /// Aggregates one group's scores (0 for an empty group).
    pub fn apply(self, scores: &[f32]) -> f32 {
        match self {
            Aggregate::Sum => scores.iter().sum(),
            Aggregate::MaxAbs => {
                scores
                    .iter()
                    .copied()
                    .fold(0.0, |m, s| if s.abs() > m.abs() { s } else { m })
            }
        }
    }
}

/// A group of consecutive tokens `[start, end)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// First token index.
    pub start: usize,
    /// One past the last token index.
    pub end: usize,
    /// The tokens' text joined.
    pub text: String,
    /// A control token.
    pub special: bool,
}

fn is_punct(c: char) -> bool {
    !c.is_alphanumeric() && !c.is_whitespace() && c != '\'' && c != '_'
}

fn ends_sentence(text: &str) -> bool {
    text.contains('\n') || text.trim_end().ends_with(['.', '!', '?', '。', '！', '？'])
}

/// Whether a new word starts at `tok`, after `prev`.
fn starts_word(prev: &Token, tok: &Token) -> bool {
    let first = tok.text.chars().next();
    let last = prev.text.chars().last();
    prev.special
        || tok.special
        || first.is_none_or(|c| c.is_whitespace() || is_punct(c))
        || last.is_none_or(|c| c.is_whitespace() || is_punct(c))
}

/// Groups `tokens` at a granularity. Groups cover every token, in order.
pub fn groups(tokens: &[Token], granularity: Granularity) -> Vec<Group> {
    let mut out: Vec<Group> = Vec::new();
    for (i, tok) in tokens.iter().enumerate() {
        let prev = i.checked_sub(1).map(|p| &tokens[p]);
        // A piece of a character (an empty text, see `Token::piece`) joins the token that
        // completes it, at every level.
        let joins = prev.is_some_and(|p| p.piece.is_some() && p.text.is_empty());
        let new = match (granularity, prev) {
            _ if joins => false,
            (_, None) | (Granularity::Token, _) => true,
            (Granularity::Word, Some(prev)) => starts_word(prev, tok),
            (Granularity::Sentence, Some(prev)) => {
                prev.special || tok.special || ends_sentence(&prev.text)
            }
        };
        match out.last_mut() {
            Some(g) if !new => {
                g.end = i + 1;
                g.text.push_str(&tok.text);
            }
            _ => out.push(Group {
                start: i,
                end: i + 1,
                text: tok.text.clone(),
                special: tok.special,
            }),
        }
    }
    out
}

/// One score per group.
pub fn aggregate(scores: &[f32], groups: &[Group], how: Aggregate) -> Vec<f32> {
    groups
        .iter()
        .map(|g| how.apply(scores.get(g.start..g.end).unwrap_or(&[])))
        .collect()
}

/// The index of the group holding each token.
pub fn group_of_token(groups: &[Group], n_tokens: usize) -> Vec<usize> {
    let mut out = vec![0; n_tokens];
    for (k, g) in groups.iter().enumerate() {
        for slot in out.iter_mut().take(g.end.min(n_tokens)).skip(g.start) {
            *slot = k;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(parts: &[(&str, bool)]) -> Vec<Token> {
        let mut at = 0;
        parts
            .iter()
            .map(|&(t, special)| {
                let tok = Token {
                    id: 0,
                    text: t.to_string(),
                    start: at,
                    end: at + t.len(),
                    special,
                    generated: false,
                    piece: None,
                };
                at += t.len();
                tok
            })
            .collect()
    }

    fn texts(g: &[Group]) -> Vec<&str> {
        g.iter().map(|g| g.text.as_str()).collect()
    }

    #[test]
    fn words_and_sentences() {
        let t = toks(&[
            ("<|im_start|>", true),
            ("user", false),
            ("\n", false),
            ("The", false),
            (" cap", false),
            ("ital", false),
            (" is", false),
            (" 2", false),
            ("0", false),
            ("2", false),
            ("4", false),
            (".", false),
            (" Why", false),
            ("?", false),
            ("<|im_end|>", true),
        ]);
        assert_eq!(
            texts(&groups(&t, Granularity::Word)),
            [
                "<|im_start|>",
                "user",
                "\n",
                "The",
                " capital",
                " is",
                " 2024",
                ".",
                " Why",
                "?",
                "<|im_end|>"
            ]
        );
        assert_eq!(
            texts(&groups(&t, Granularity::Sentence)),
            [
                "<|im_start|>",
                "user\n",
                "The capital is 2024.",
                " Why?",
                "<|im_end|>"
            ]
        );
        assert_eq!(groups(&t, Granularity::Token).len(), t.len());
    }

    /// Sums conserve the total at every granularity; max |score| keeps the sign.
    #[test]
    fn sums_are_conserved() {
        let t = toks(&[
            ("A", false),
            (" b", false),
            ("c", false),
            (".", false),
            (" D", false),
        ]);
        let s = [0.5, -2.0, 1.25, 0.125, -0.25];
        for g in Granularity::ALL {
            let gr = groups(&t, g);
            let agg = aggregate(&s, &gr, Aggregate::Sum);
            assert_eq!(agg.iter().sum::<f32>(), s.iter().sum::<f32>(), "{g:?}");
            assert_eq!(gr.first().map(|g| g.start), Some(0));
            assert_eq!(gr.last().map(|g| g.end), Some(t.len()));
        }
        let words = groups(&t, Granularity::Word);
        assert_eq!(texts(&words), ["A", " bc", ".", " D"]);
        assert_eq!(
            aggregate(&s, &words, Aggregate::MaxAbs),
            [0.5, -2.0, 0.125, -0.25]
        );
        assert_eq!(group_of_token(&words, 5), [0, 1, 1, 2, 3]);
    }
}
