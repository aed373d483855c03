//! The one error type of the engine.
//!
//! Variants separate what a user got wrong (a bad prompt, an unknown model, a bad target) from
//! faults inside the engine, so that front ends can word them differently.

use std::path::PathBuf;

/// Everything the engine can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The prompt is empty (whitespace is not: a model can continue it).
    #[error("the prompt is empty")]
    EmptyPrompt,
    /// The prompt has more tokens than the model (or the configured limit) accepts.
    #[error(
        "the prompt has {tokens} tokens, more than the {limit} this model accepts here (its \
         context, or what fits in memory; --max-tokens sets it)"
    )]
    PromptTooLong {
        /// Tokens in the prompt after templating.
        tokens: usize,
        /// The limit it ran past.
        limit: usize,
    },
    /// The model spec names no file, directory or known alias.
    #[error("unknown model {spec:?}: not a file, a directory or a known alias (known: {known})")]
    UnknownModel {
        /// What the user asked for.
        spec: String,
        /// Comma-separated aliases.
        known: String,
    },
    /// An alias is known but its file is not in the cache yet.
    #[error("model {alias:?} is not downloaded: expected {path:?}; run `scripts/fetch-models.sh`")]
    ModelNotFetched {
        /// The alias.
        alias: String,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The model file exists but cannot be read as a model.
    #[error("cannot read model file {path:?}: {reason}")]
    BadModelFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The model's architecture is not one the engine implements.
    #[error("unsupported model architecture {0:?}")]
    UnsupportedArchitecture(String),
    /// A target text that produces no token.
    #[error("the target text {0:?} tokenizes to nothing")]
    EmptyTarget(String),
    /// A target id outside the vocabulary.
    #[error("target id {id} is out of range: the vocabulary has {vocab} tokens")]
    TargetOutOfRange {
        /// The id asked for.
        id: u32,
        /// Vocabulary size.
        vocab: usize,
    },
    /// A method name the engine does not know.
    #[error("unknown method {0:?} (known: {known})", known = crate::Method::names())]
    UnknownMethod(String),
    /// The chat template failed to render.
    #[error(
        "the model's chat template cannot be rendered ({0}); send the prompt without it: \
         --raw in the CLI, \"chat template\" unticked in the page"
    )]
    Template(String),
    /// The model has no chat template but one was asked for.
    #[error(
        "this model has no chat template; send the prompt without it: --raw in the CLI, \
         \"chat template\" unticked in the page"
    )]
    NoChatTemplate,
    /// Tokenizer failure.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A given answer that does not fit after its prompt.
    #[error(
        "the prompt ({prompt} tokens) and the given answer ({answer} tokens) are longer than \
         the {limit} tokens this model accepts here (its context, or what fits in memory; \
         --max-tokens sets it)"
    )]
    AnswerTooLong {
        /// Tokens in the prompt after templating.
        prompt: usize,
        /// Tokens in the answer.
        answer: usize,
        /// The limit.
        limit: usize,
    },
    /// A request setting out of its range (sampling, lengths, steps).
    #[error("invalid setting: {0}")]
    InvalidSetting(String),
    /// A continuation (generated) token id outside the vocabulary.
    #[error("generated token id {id} is out of range: the vocabulary has {vocab} tokens")]
    ContinuationOutOfRange {
        /// The id.
        id: u32,
        /// Vocabulary size.
        vocab: usize,
    },
    /// The contrast token is the target itself: the difference is identically 0.
    #[error("the contrast token is the target itself ({0:?}); pick another")]
    ContrastIsTarget(String),
    /// The caller cancelled the request.
    #[error("cancelled")]
    Cancelled,
    /// A tensor operation failed (an engine fault, not a user mistake).
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
    /// Reading a file failed.
    #[error("{path:?}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

impl Error {
    /// True when the error is the user's to fix (bad input), false for engine faults.
    pub fn is_user_error(&self) -> bool {
        !matches!(self, Error::Candle(_) | Error::Io { .. })
    }
}

/// Result with the engine's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
