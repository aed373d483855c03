//! Results as they stream in from the server: an explanation, an answer, an all-steps
//! matrix. Each takes the events of its stream and keeps the server's seal once complete.

use serde::{Deserialize, Serialize};
use tokenlens::{
    CandidateExplanation, Explanation, GenerateRequest, GeneratedToken, Method, Precision, StepRow,
    StopReason, StreamEvent, Token,
};

use super::GenSpec;
use crate::record::Record;

/// A result that streams in: the page's one stream runner feeds any of them.
pub trait Streamed {
    /// Takes in one event of its stream; true when what the page shows changed.
    fn apply(&mut self, ev: &StreamEvent) -> bool;
    /// The status line after `ev`, when this result says more than the event's stage.
    fn status(&self, _ev: &StreamEvent) -> Option<String> {
        None
    }
    /// Keeps the server's sealed record of the complete stream.
    fn seal(&mut self, record: Option<Record>);
}

/// One explanation as it arrives: the engine's [`Explanation`], folded from the stream by
/// the same [`Explanation::apply`] (read through `Deref`), with what the page adds: which
/// answer token it explains and the server's seal.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Partial {
    /// The explanation so far.
    pub ex: Explanation,
    /// The answer token explained (0-based), or None for the prompt's next token.
    pub step: Option<usize>,
    /// The context's generated ids (the request's continuation).
    pub continuation: Vec<u32>,
    /// The server's sealed record of the stream, once it is complete.
    pub sealed: Option<Record>,
}

impl std::ops::Deref for Partial {
    type Target = Explanation;

    fn deref(&self) -> &Explanation {
        &self.ex
    }
}

impl Partial {
    /// An explanation about to stream in from `model` (with or without the template and
    /// thinking): of answer token `step` (None: the prompt's next token), after the answer
    /// ids `continuation`.
    pub fn new(
        model: &str,
        chat: bool,
        thinking: bool,
        step: Option<usize>,
        continuation: Vec<u32>,
    ) -> Self {
        Partial {
            ex: Explanation::begin(model, chat, thinking),
            step,
            continuation,
            sealed: None,
        }
    }

    /// This explanation as it would be with candidate `id` as the target, when it brought
    /// that candidate's results (its own target becomes one of the candidates, so that going
    /// back is as quick). Not sealed: the page shows it while the request for that view runs.
    pub fn with_target(&self, id: u32) -> Option<Partial> {
        let i = self
            .candidates
            .iter()
            .position(|c| c.target.token.id == id)?;
        let target = self.target.clone()?;
        let mut candidates = self.candidates.clone();
        let picked = candidates.remove(i);
        candidates.push(CandidateExplanation {
            target,
            methods: self.methods.clone(),
        });
        let rank = |c: &CandidateExplanation| c.target.rank;
        candidates.sort_by_key(rank);
        Some(Partial {
            ex: Explanation {
                target: Some(picked.target),
                methods: picked.methods,
                candidates,
                // The curves were measured for the other target.
                faithfulness: None,
                // The lens' target columns are the other target's.
                lens: None,
                ..self.ex.clone()
            },
            sealed: None,
            ..self.clone()
        })
    }
}

impl Streamed for Partial {
    fn apply(&mut self, ev: &StreamEvent) -> bool {
        self.ex.apply(ev)
    }

    fn seal(&mut self, record: Option<Record>) {
        self.sealed = record;
    }
}

/// A generated answer and what produced it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnswerState {
    /// Model.
    pub model: String,
    /// Prompt.
    pub prompt: String,
    /// Chat template on.
    pub chat: bool,
    /// The template's `enable_thinking`.
    #[serde(default)]
    pub thinking: bool,
    /// Its settings.
    pub spec: GenSpec,
    /// Tokens so far.
    pub tokens: Vec<GeneratedToken>,
    /// Why it stopped, once it has.
    pub stop: Option<StopReason>,
    /// The precision the request asked for (`auto` before there was a choice).
    #[serde(default)]
    pub asked: Precision,
    /// The precision it was generated in (see `Explanation::precision`).
    #[serde(default = "Precision::exact")]
    pub precision: Precision,
    /// Why that is not the precision asked for, when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision_note: Option<String>,
    /// The server's sealed record of the stream, once it is complete.
    #[serde(skip)]
    pub sealed: Option<Record>,
    /// The edits it was generated under (steering).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steer: Vec<tokenlens::Edit>,
}

impl AnswerState {
    /// An answer about to stream in from `request` on `model`.
    pub fn new(model: &str, request: &GenerateRequest) -> Self {
        AnswerState {
            model: model.to_string(),
            prompt: request.prompt.clone(),
            chat: request.chat_template,
            thinking: request.thinking,
            spec: GenSpec {
                sampling: request.sampling,
                max_new_tokens: request.max_new_tokens,
                answer: request.answer.clone(),
            },
            tokens: Vec::new(),
            stop: None,
            asked: request.precision,
            precision: Precision::F32,
            precision_note: None,
            sealed: None,
            steer: request.steer.clone(),
        }
    }

    /// What the model read to generate it.
    pub fn input(&self) -> super::Input {
        super::Input::new(
            &self.model,
            &self.prompt,
            self.chat,
            self.thinking,
            self.asked,
            Some(self.spec.clone()),
            &self.steer,
        )
    }

    /// The answer's ids.
    pub fn ids(&self) -> Vec<u32> {
        self.tokens.iter().map(|t| t.token.id).collect()
    }
}

impl Streamed for AnswerState {
    fn apply(&mut self, ev: &StreamEvent) -> bool {
        match ev {
            StreamEvent::Generated { token, .. } => self.tokens.push(token.clone()),
            StreamEvent::Finished { stop } => self.stop = Some(*stop),
            StreamEvent::Precision { precision, note } => {
                self.precision = *precision;
                self.precision_note = note.clone();
            }
            _ => return false,
        }
        true
    }

    fn status(&self, ev: &StreamEvent) -> Option<String> {
        matches!(ev, StreamEvent::Generated { .. })
            .then(|| format!("generating… {} tokens", self.tokens.len()))
    }

    fn seal(&mut self, record: Option<Record>) {
        self.sealed = record;
    }
}

/// The all-steps matrix as it arrives.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MatrixState {
    /// Prompt and answer tokens.
    pub tokens: Vec<Token>,
    /// The user's text among them.
    pub query_span: Option<[usize; 2]>,
    /// The method of every row.
    pub method: Option<Method>,
    /// Rows so far.
    pub rows: Vec<StepRow>,
    /// Rows the request asked for.
    #[serde(default)]
    pub expected: usize,
    /// The precision it was computed in (see `Explanation::precision`).
    #[serde(default = "Precision::exact")]
    pub precision: Precision,
    /// Why that is not the precision asked for, when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision_note: Option<String>,
    /// The server's sealed record of the stream, once it is complete.
    #[serde(skip)]
    pub sealed: Option<Record>,
}

impl MatrixState {
    /// A matrix of `method` about to stream in, of `expected` rows.
    pub fn new(method: Method, expected: usize) -> Self {
        MatrixState {
            method: Some(method),
            expected,
            ..MatrixState::default()
        }
    }
}

impl Streamed for MatrixState {
    fn apply(&mut self, ev: &StreamEvent) -> bool {
        match ev {
            StreamEvent::Tokens {
                tokens, query_span, ..
            } => {
                self.tokens = tokens.clone();
                self.query_span = *query_span;
                self.precision = Precision::F32;
                self.precision_note = None;
            }
            StreamEvent::Precision { precision, note } => {
                self.precision = *precision;
                self.precision_note = note.clone();
            }
            StreamEvent::Step { row } => self.rows.push(row.clone()),
            _ => return false,
        }
        true
    }

    fn status(&self, ev: &StreamEvent) -> Option<String> {
        matches!(ev, StreamEvent::Step { .. })
            .then(|| format!("all steps: {} of {}", self.rows.len(), self.expected))
    }

    fn seal(&mut self, record: Option<Record>) {
        self.sealed = record;
    }
}
