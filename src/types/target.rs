//! What is explained: the candidates, the prediction, the target token (its logit or its
//! log-probability) or a span of answer tokens.

use serde::{Deserialize, Serialize};

/// A candidate next token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// Vocabulary id.
    pub id: u32,
    /// Decoded text.
    pub text: String,
    /// Raw logit.
    pub logit: f32,
    /// Softmax probability over the vocabulary.
    pub prob: f32,
}

/// The model's next-token prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// The argmax token.
    #[serde(flatten)]
    pub best: Candidate,
    /// The top-k candidates, best first (the argmax included).
    pub top: Vec<Candidate>,
}

/// What is explained of a target token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Score {
    /// Its logit (as LXT and most attribution work explain).
    #[default]
    Logit,
    /// Its log-probability: the logit less the log-sum-exp over the vocabulary. The backward
    /// pass starts from its gradient with respect to the logits, `onehot − softmax`.
    LogProb,
}

impl Score {
    /// Both, in order.
    pub const ALL: [Score; 2] = [Score::Logit, Score::LogProb];

    /// The name in URLs, the CLI and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Score::Logit => "logit",
            Score::LogProb => "log_prob",
        }
    }

    /// From [`Score::name`].
    pub fn from_name(s: &str) -> Option<Self> {
        Score::ALL.into_iter().find(|x| x.name() == s)
    }

    /// The default (left out of JSON).
    pub fn is_logit(&self) -> bool {
        *self == Score::Logit
    }
}

/// A run of continuation tokens explained together: indices `start..end` (0-based, end
/// exclusive) into the request's `continuation`. The context is the prompt and
/// `continuation[..end − 1]`; the target is `Σ log p(continuation[k] | everything before
/// it)` over the span, so relevance goes to the prompt, the answer before the span and the
/// span's own tokens that condition later ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Span {
    /// The first token explained.
    pub start: usize,
    /// One past the last.
    pub end: usize,
}

impl Span {
    /// The span fits a continuation of `len` tokens and is not empty.
    pub fn check(&self, len: usize) -> Result<(), String> {
        if self.start >= self.end {
            return Err(format!(
                "the span {}..{} is empty: its start must come before its end",
                self.start, self.end
            ));
        }
        if self.end > len {
            return Err(format!(
                "the span {}..{} ends past the {len} continuation tokens",
                self.start, self.end
            ));
        }
        Ok(())
    }
}

/// One token of an explained span.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpanToken {
    /// Vocabulary id.
    pub id: u32,
    /// Decoded text.
    pub text: String,
    /// The position that predicts it (its own position − 1) in the explanation's tokens.
    pub position: usize,
    /// Its log-probability there.
    pub log_prob: f32,
}

/// An explained span: its tokens and the total.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpanTarget {
    /// The span, 0-based in the continuation, end exclusive.
    #[serde(flatten)]
    pub span: Span,
    /// Its tokens.
    pub tokens: Vec<SpanToken>,
    /// The target: the sum of their log-probabilities.
    pub log_prob: f32,
}

/// The token being explained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Target {
    /// Its logit, probability, id and text (a span's: its last token).
    #[serde(flatten)]
    pub token: Candidate,
    /// Its rank among all tokens (0 = the argmax).
    pub rank: usize,
    /// The contrast token, when the score is `logit(target) − logit(contrast)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contrast: Option<Candidate>,
    /// The tokens the requested target text splits into, when more than one: only the first
    /// is explained.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pieces: Vec<String>,
    /// What is explained of it.
    #[serde(default, skip_serializing_if = "Score::is_logit")]
    pub score: Score,
    /// Its log-probability, with [`Score::LogProb`] (a span's: the span's total).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_prob: Option<f32>,
    /// With [`Score::LogProb`], what the relevance of the explained value conserves:
    /// `Σ_v (onehot − softmax)_v · logit_v` (summed over a span's tokens), the
    /// log-probability's first-order part (the log-sum-exp is not linear).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linear_value: Option<f32>,
    /// The span explained, when it is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span: Option<SpanTarget>,
}

impl Target {
    /// What the relevance sums to per unit seed: the target's logit, or its difference from
    /// the contrast's (a log-probability contrast is the same difference), or a
    /// log-probability's [`Target::linear_value`].
    pub fn explained_value(&self) -> f32 {
        match (self.contrast.as_ref(), self.linear_value) {
            (None, Some(v)) => v,
            (c, _) => self.token.logit - c.map_or(0.0, |c| c.logit),
        }
    }

    /// The function whose gradient seeds the backward pass: the target's logit less the
    /// contrast's (a log-probability contrast is the same difference), its log-probability,
    /// or a span's summed log-probability. A path method's scores sum to its change.
    pub fn seeded_value(&self) -> f32 {
        match (self.contrast.as_ref(), self.log_prob) {
            (None, Some(v)) => v,
            (c, _) => self.token.logit - c.map_or(0.0, |c| c.logit),
        }
    }
}
