//! What a streaming request sends, event by event, and the stages it reports.

use super::{
    Ablation, Faithfulness, LensCell, Method, MethodResult, Prediction, StepRow, Target, Token,
    UnitCard,
};
use super::{GeneratedToken, StopReason};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Stages of an explanation, for progress reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Templating and tokenization.
    Tokenize,
    /// The forward pass.
    Forward,
    /// A backward pass for one method.
    Backward,
    /// Generating the answer.
    Generate,
    /// The other top-k candidates' backward pass (all candidates together) for one method.
    Candidates,
    /// Perturbation curves: forward passes with tokens taken out.
    Faithfulness,
    /// The logit lens: every layer's prediction at every position.
    Lens,
    /// Component ablation: forward passes with neurons or heads zeroed.
    Ablation,
    /// Reading the reference corpus up to a layer (a neuron's contexts).
    Contexts,
}

/// What a streaming request sends. An explanation: `tokens`, `precision`, `prediction`, one
/// `method` per method, with the lens `lens`, with `explain_candidates` one `candidate` per
/// other top-k candidate, with `ablation` one `ablation` per one-pass method, with a
/// faithfulness spec `faithfulness`, `done`. A generation:
/// `tokens`, one `generated` per token, `finished`, `done`. All steps: `tokens` (prompt and
/// answer), one `step` per generated token, `done`. `stage`, `progress` and `queued` events
/// may come between them; `error` ends a stream early.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent {
    /// A stage began.
    Stage {
        /// Which.
        stage: Stage,
        /// The method, for backward passes.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        method: Option<Method>,
    },
    /// The prompt's tokens.
    Tokens {
        /// The tokenized text.
        text: String,
        /// Tokens.
        tokens: Vec<Token>,
        /// The query's token range.
        query_span: Option<[usize; 2]>,
        /// Decoder layers.
        n_layers: usize,
    },
    /// The prediction and the chosen target.
    Prediction {
        /// Prediction.
        prediction: Prediction,
        /// Target.
        target: Target,
    },
    /// One method finished.
    Method {
        /// Which.
        method: Method,
        /// Its scores.
        result: MethodResult,
    },
    /// Another top-k candidate explained (with `explain_candidates`), best first.
    Candidate {
        /// The candidate as a target.
        target: Target,
        /// Results keyed by method name.
        methods: BTreeMap<super::Method, MethodResult>,
    },
    /// The perturbation curves of every method (with a faithfulness spec), after the
    /// methods and candidates.
    Faithfulness {
        /// Curves, scores and the random baseline.
        result: Faithfulness,
    },
    /// One method's component ablation (with `ablation` in the request), after the methods.
    Ablation {
        /// Which method's relevance ranked the units.
        method: Method,
        /// Its curves.
        ablation: Ablation,
    },
    /// A neuron's or head's card (a unit request's one result).
    Unit {
        /// The card.
        card: UnitCard,
    },
    /// A neuron's top-activating corpus contexts (a contexts request's one result).
    Contexts {
        /// Its contexts.
        contexts: super::NeuronContexts,
    },
    /// The logit lens `[layer][token]` (with `lens` in the request), after the methods.
    Lens {
        /// Every layer's prediction at every position.
        lens: Vec<Vec<LensCell>>,
    },
    /// All done.
    Done,
    /// A generated token (generation requests).
    Generated {
        /// Its index in the answer (0-based).
        index: usize,
        /// The token.
        token: GeneratedToken,
    },
    /// Generation ended.
    Finished {
        /// Why.
        stop: StopReason,
    },
    /// One row of the all-steps matrix (steps requests).
    Step {
        /// The row.
        row: StepRow,
    },
    /// The request failed.
    Error {
        /// A readable message.
        message: String,
    },
    /// Progress inside a stage: `done` of `total` units of work (layers of a pass, a path
    /// method's layers over all its passes, or the curves' perturbed inputs); sent as it
    /// runs, at most about ten times a second.
    Progress {
        /// The pass's stage.
        stage: Stage,
        /// The method, for backward passes.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        method: Option<Method>,
        /// Units done.
        done: usize,
        /// Units in the stage.
        total: usize,
    },
    /// The precision the request's products run in, after `tokens` (when it is not f32, or
    /// not what was asked for; a stream without this event ran in f32 as asked).
    Precision {
        /// `bf16`, or `f32` with a `note` (never `auto`).
        precision: super::Precision,
        /// Why it is not the precision asked for (bf16 on a machine without bf16 products).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// The request waits for the model (servers only; sent about once a second until it
    /// starts).
    Queued {
        /// Its place in line: 1 is next.
        position: u64,
    },
}
