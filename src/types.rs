//! Plain serde types shared by the engine, the CLI's `--json` output, the server and the web
//! page. No candle here: this module compiles for wasm.
//!
//! The JSON schema is documented in `docs/schema.md`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

mod contexts;
mod faithfulness;
mod inside;
mod lens;
mod method;
mod precision;
mod request;
mod steer;
mod stream;
mod target;
pub use contexts::{ContextHit, ContextsRequest, NeuronContexts, CONTEXT_HITS};
pub use faithfulness::{
    Curve, Faithfulness, FaithfulnessSpec, MethodFaithfulness, Operator, RandomBand, FRACTIONS,
};
pub use inside::{
    Ablation, AblationCurve, AblationSpec, BlockRelevance, Component, HeadLayer, LensToken, Neuron,
    NeuronLayer, RandomDraw, UnitCard, UnitRequest, ABLATION_DRAWS, CARD_TOKENS, MAX_ABLATION,
};
pub use lens::{target_settles, LensCell, LENS_TOP};
pub use method::{
    pass_cost, passes, Check, Method, MethodInfo, Pass, Reduction, RuleSet, Runs, METHODS,
};
pub use precision::Precision;
pub(crate) use request::{check_settings, default_true};
pub use request::{
    ExplainRequest, GenerateRequest, Sampling, StepsRequest, TargetSpec, MAX_NEURONS, MAX_TOP_K,
};
pub use steer::{
    check_edits, format_edits, parse_edits, Edit, Setting, Unit, MAX_CLAMP, MAX_EDITS, MAX_SCALE,
};
pub use stream::{Stage, StreamEvent};
pub use target::{Candidate, Prediction, Score, Span, SpanTarget, SpanToken, Target};

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The model produced an end-of-turn / end-of-sequence token (not included in the
    /// answer).
    EndOfTurn,
    /// `max_new_tokens` were generated.
    MaxNewTokens,
    /// The model's context (or the server's token limit) is full.
    ContextFull,
    /// The given answer (forced decoding) has no more tokens.
    GivenAnswer,
}

/// One generated token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeneratedToken {
    /// The token (offsets into [`Generation::text`] + the answer so far).
    #[serde(flatten)]
    pub token: Token,
    /// Its probability under the model (temperature 1, before any filtering).
    pub prob: f32,
}

/// A finished generation; `tokenlens generate --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// The model's name.
    pub model: String,
    /// The (templated) prompt text.
    pub text: String,
    /// Whether the chat template was applied.
    pub chat_template: bool,
    /// With the chat template: let the model think first (`enable_thinking`, Qwen3's
    /// `<think>` block); off renders the template as the first seed does. Other templates
    /// ignore it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub thinking: bool,
    /// The prompt's tokens.
    pub tokens: Vec<Token>,
    /// The answer's tokens.
    pub generated: Vec<GeneratedToken>,
    /// The answer as text.
    pub answer: String,
    /// Why it stopped.
    pub stop: StopReason,
    /// The precision the products were computed in (`f32` or `bf16`, never `auto`).
    #[serde(
        default = "Precision::exact",
        skip_serializing_if = "Precision::is_exact"
    )]
    pub precision: Precision,
    /// Why it is not in the precision asked for, when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision_note: Option<String>,
    /// The sampling settings used.
    pub sampling: Sampling,
}

impl Generation {
    /// The answer's token ids.
    pub fn ids(&self) -> Vec<u32> {
        self.generated.iter().map(|g| g.token.id).collect()
    }
}

/// One row of the all-steps matrix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRow {
    /// Generated token index (0-based): the row explains `generated[step]`.
    pub step: usize,
    /// The token explained.
    pub target: Target,
    /// Scores per method name, one per token before the explained one (prompt tokens, then
    /// `generated[..step]`).
    pub scores: BTreeMap<Method, Vec<f32>>,
}

/// One token of the (templated) prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Token {
    /// Vocabulary id.
    pub id: u32,
    /// The token decoded on its own (byte-level BPE undone: a space is a space).
    pub text: String,
    /// Start byte offset in [`Explanation::text`].
    pub start: usize,
    /// End byte offset (exclusive) in [`Explanation::text`].
    pub end: usize,
    /// A control token of the template (`<|im_start|>` and the like).
    pub special: bool,
    /// Produced by the model (a continuation token), not part of the prompt.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub generated: bool,
    /// Part of a character that several byte-level tokens form (CJK, emoji): this token's
    /// bytes, e.g. `‹E6 9D›`. The run's last token has the characters as its `text`, the
    /// ones before it an empty text; a token that completes no character has its bytes as
    /// its text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub piece: Option<String>,
}

impl Token {
    /// What to show for this token alone: its text, or the bytes of a piece whose character a
    /// later token completes.
    pub fn shown(&self) -> &str {
        match (&self.piece, self.text.is_empty()) {
            (Some(bytes), true) => bytes,
            _ => &self.text,
        }
    }
}

/// Relevance bookkeeping: how much of the explained value the scores account for (LRP's
/// conservation), or of its change along the path (a path method's completeness).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conservation {
    /// Sum of the input scores / (seed × explained value; see [`Target::explained_value`]),
    /// or / (seed × the path's change) when `path` is set.
    pub input: f32,
    /// Sum of the last layer's trace over the same; 1 up to rounding (LRP) or up to the
    /// integration error (a path method).
    pub last_layer: f32,
    /// A path method's completeness: the function it differentiates at the path's two ends.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub path: Option<PathEnds>,
}

/// The function a path method integrates the gradient of (the target's logit, less the
/// contrast's; its log-probability; a span's summed log-probability), at the path's ends.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PathEnds {
    /// At the baseline.
    pub baseline: f32,
    /// At the input.
    pub input: f32,
}

/// One method's scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodResult {
    /// One score per token.
    pub scores: Vec<f32>,
    /// `[n_layers][n_tokens]`: per decoder layer output h_l, `sum_d h_l[t,d] * dy/dh_l[t,d]`
    /// (a path method: summed along the stream's change over the path, layer conductance).
    pub trace: Vec<Vec<f32>>,
    /// `trace` with each layer divided by its max |value|.
    pub trace_normalized: Vec<Vec<f32>>,
    /// Conservation (LRP rules) or completeness (path methods); none for plain gradients.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub conservation: Option<Conservation>,
    /// With [`ExplainRequest::neurons`]: per layer, its MLP neurons' relevance.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub neurons: Option<Vec<NeuronLayer>>,
    /// With [`ExplainRequest::heads`]: per layer, its attention heads' relevance.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub heads: Option<Vec<HeadLayer>>,
    /// With [`ExplainRequest::ablation`]: zeroing the most relevant units against random
    /// ones (after the methods, in its own event).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ablation: Option<Ablation>,
}

/// Everything an explanation holds; the CLI's `--json` document. One shape from the engine
/// to the page: [`Explanation::apply`] folds the stream's events into it (the engine builds
/// its result so, and the page, permalink replay and exports read the same), so the fields
/// that come later are empty or `None` until their event.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Explanation {
    /// The model's name.
    pub model: String,
    /// The text that was tokenized (the templated prompt, or the raw prompt).
    pub text: String,
    /// Whether the chat template was applied.
    pub chat_template: bool,
    /// With the chat template: let the model think first (`enable_thinking`, Qwen3's
    /// `<think>` block); off renders the template as the first seed does. Other templates
    /// ignore it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub thinking: bool,
    /// The tokens of `text`.
    pub tokens: Vec<Token>,
    /// Token range `[start, end)` of the user's text inside the template; null in raw mode.
    pub query_span: Option<[usize; 2]>,
    /// Decoder layers (rows of every trace).
    pub n_layers: usize,
    /// The next-token prediction (present once the forward pass is done).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction: Option<Prediction>,
    /// The token explained (with the prediction).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    /// The backward seed (1.0, or the explained value with `seed_with_logit`).
    pub seed: f32,
    /// Results by method, as they come.
    pub methods: BTreeMap<Method, MethodResult>,
    /// With `explain_candidates`: the other top-k candidates, each explained as the target
    /// is (same methods, same contrast), best first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<CandidateExplanation>,
    /// Perturbation curves, when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faithfulness: Option<Faithfulness>,
    /// The logit lens, `[layer][token]`, when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lens: Option<Vec<Vec<LensCell>>>,
    /// The precision the products were computed in (`f32` or `bf16`, never `auto`).
    #[serde(
        default = "Precision::exact",
        skip_serializing_if = "Precision::is_exact"
    )]
    pub precision: Precision,
    /// Why it is not in the precision asked for, when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision_note: Option<String>,
}

impl Explanation {
    /// An explanation about to stream in, from `model`, with or without the chat template
    /// and thinking; seeded with 1 (the engine sets a logit seed).
    pub fn begin(model: &str, chat_template: bool, thinking: bool) -> Self {
        Explanation {
            model: model.to_string(),
            chat_template,
            thinking,
            seed: 1.0,
            ..Explanation::default()
        }
    }

    /// Takes in one event of its stream; true when it changed what the explanation holds.
    pub fn apply(&mut self, ev: &StreamEvent) -> bool {
        match ev {
            StreamEvent::Tokens {
                text,
                tokens,
                query_span,
                n_layers,
            } => {
                self.text = text.clone();
                self.tokens = tokens.clone();
                self.query_span = *query_span;
                self.n_layers = *n_layers;
                // A stream without a `precision` event ran in f32.
                self.precision = Precision::F32;
                self.precision_note = None;
            }
            StreamEvent::Precision { precision, note } => {
                self.precision = *precision;
                self.precision_note = note.clone();
            }
            StreamEvent::Prediction { prediction, target } => {
                self.prediction = Some(prediction.clone());
                self.target = Some(target.clone());
            }
            StreamEvent::Method { method, result } => {
                self.methods.insert(*method, result.clone());
            }
            StreamEvent::Candidate { target, methods } => {
                self.candidates.push(CandidateExplanation {
                    target: target.clone(),
                    methods: methods.clone(),
                });
            }
            StreamEvent::Faithfulness { result } => self.faithfulness = Some(result.clone()),
            StreamEvent::Ablation { method, ablation } => {
                if let Some(r) = self.methods.get_mut(method) {
                    r.ablation = Some(ablation.clone());
                }
            }
            StreamEvent::Lens { lens } => self.lens = Some(lens.clone()),
            _ => return false,
        }
        true
    }

    /// The prediction and the target, once they have come.
    pub fn predicted(&self) -> Option<(&Prediction, &Target)> {
        self.prediction.as_ref().zip(self.target.as_ref())
    }
}

/// A top-k candidate explained beside the target (after the target's passes, every
/// candidate's seed batched in one more pass per distinct method pass).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateExplanation {
    /// The candidate as a target: its logit, probability and rank (and the contrast).
    pub target: Target,
    /// Results keyed by method name.
    pub methods: BTreeMap<Method, MethodResult>,
}
