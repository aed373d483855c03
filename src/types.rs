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
pub use steer::{
    check_edits, format_edits, parse_edits, Edit, Setting, Unit, MAX_CLAMP, MAX_EDITS, MAX_SCALE,
};
pub use stream::{Stage, StreamEvent};
pub use target::{Candidate, Prediction, Score, Span, SpanTarget, SpanToken, Target};

/// Which token to explain.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum TargetSpec {
    /// The model's most likely next token.
    #[default]
    Argmax,
    /// The first token of this text (e.g. `" Paris"`).
    Text(String),
    /// A token id.
    Id(u32),
}

/// What to explain and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExplainRequest {
    /// The user's text.
    pub prompt: String,
    /// Wrap the prompt in the model's chat template (one user message plus the generation
    /// prompt). False sends the text as is.
    #[serde(default = "default_true")]
    pub chat_template: bool,
    /// With the chat template: let the model think first (`enable_thinking`, Qwen3's
    /// `<think>` block); off renders the template as the first seed does. Other templates
    /// ignore it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub thinking: bool,
    /// The token to explain.
    #[serde(default)]
    pub target: TargetSpec,
    /// Methods to run, in order.
    #[serde(default = "default_methods")]
    pub methods: Vec<Method>,
    /// How many candidates the prediction lists.
    #[serde(default = "default_top_k")]
    pub top_k: usize,
    /// Seed the backward pass with the explained value ([`Target::explained_value`]: the
    /// logit, a logit difference, a log-probability) instead of 1.0 (LXT's trace example
    /// does this; it scales every score by it).
    #[serde(default)]
    pub seed_with_logit: bool,
    /// Also explain the other top-k candidates, after the target, all in one batched
    /// pass per distinct method pass (a `candidate` event each), so that switching to one
    /// of them needs no new request.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub explain_candidates: bool,
    /// Token ids appended after the (templated) prompt: the first generated tokens, when a
    /// generated token is explained. Explaining step N of a generation is the prompt with the
    /// first N−1 generated ids here and the N-th as the target.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub continuation: Vec<u32>,
    /// A contrastive target: the score explained becomes `logit(target) − logit(contrast)`,
    /// "why the target rather than this".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contrast: Option<TargetSpec>,
    /// Also compute perturbation curves of every method, after the methods (forward passes
    /// only; see [`Faithfulness`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faithfulness: Option<FaithfulnessSpec>,
    /// Also compute the logit lens of every layer at every position (see [`LensCell`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lens: bool,
    /// What is explained of the target: its logit (the default) or its log-probability.
    #[serde(default, skip_serializing_if = "Score::is_logit")]
    pub score: Score,
    /// Explain a run of `continuation` tokens instead of one next token: the sum of their
    /// log-probabilities, each given the tokens before it (see [`Span`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span: Option<Span>,
    /// How the matrix products are computed (see [`Precision`]).
    #[serde(default, skip_serializing_if = "Precision::is_auto")]
    pub precision: Precision,
    /// Also keep each layer's `neurons` most relevant MLP neurons for every one-pass method,
    /// from the same backward pass (0: none; see [`NeuronLayer`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub neurons: usize,
    /// Also keep every attention head's relevance in every layer for every one-pass method,
    /// from the same backward pass (see [`HeadLayer`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub heads: bool,
    /// Edits to neurons and heads applied in every pass (see [`Edit`]): explains the steered
    /// model.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steer: Vec<Edit>,
    /// Also zero the most relevant neurons (with `neurons`) and heads (with `heads`) one
    /// after another, against random ones of the same layers (see [`Ablation`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ablation: Option<AblationSpec>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The most neurons a layer keeps in an explanation.
pub const MAX_NEURONS: usize = 64;

pub(crate) fn default_true() -> bool {
    true
}
fn default_methods() -> Vec<Method> {
    vec![Method::Saliency, Method::InputXGradient]
}
fn default_top_k() -> usize {
    10
}

/// The most candidates a prediction lists.
pub const MAX_TOP_K: usize = 100;

/// Edits' settings and count, before the model is known (it checks their units).
pub(crate) fn check_settings(steer: &[Edit]) -> Result<(), String> {
    check_edits(steer, usize::MAX, usize::MAX, usize::MAX)
}

/// The methods of a request, each once (none: the prediction only).
fn check_methods(methods: &[Method]) -> Result<(), String> {
    for (i, m) in methods.iter().enumerate() {
        if methods[..i].contains(m) {
            return Err(format!("method {} is requested twice", m.name()));
        }
    }
    Ok(())
}

impl ExplainRequest {
    /// Checks the settings' ranges (the model's own limits are checked when it runs): what
    /// the server refuses with 400 before queueing and the engine refuses before any work.
    pub fn check(&self) -> Result<(), String> {
        if !(1..=MAX_TOP_K).contains(&self.top_k) {
            return Err(format!(
                "top_k must be between 1 and {MAX_TOP_K}, not {}",
                self.top_k
            ));
        }
        if let Some(span) = self.span {
            span.check(self.continuation.len())?;
            if self.target != TargetSpec::Argmax || self.contrast.is_some() {
                return Err("a span is its own target: leave target and contrast out".into());
            }
            if self.faithfulness.is_some() {
                return Err("faithfulness curves follow one token's logit, not a span".into());
            }
        }
        if self.neurons > MAX_NEURONS {
            return Err(format!(
                "neurons must be at most {MAX_NEURONS} per layer, not {}",
                self.neurons
            ));
        }
        check_settings(&self.steer)?;
        let ablated = self.ablation.as_ref().map_or(0, |a| a.units);
        if ablated > MAX_ABLATION {
            return Err(format!(
                "ablation must be at most {MAX_ABLATION} units, not {ablated}"
            ));
        }
        if ablated > 0 && self.neurons == 0 && !self.heads {
            return Err(
                "ablation zeroes the most relevant neurons or heads: ask for neurons, heads or both"
                    .into(),
            );
        }
        check_methods(&self.methods)
    }

    /// A request with the defaults: chat template on, argmax target, the gradient methods.
    pub fn new(prompt: impl Into<String>) -> Self {
        ExplainRequest {
            prompt: prompt.into(),
            chat_template: true,
            thinking: false,
            target: TargetSpec::Argmax,
            methods: default_methods(),
            top_k: default_top_k(),
            seed_with_logit: false,
            explain_candidates: false,
            continuation: Vec::new(),
            contrast: None,
            faithfulness: None,
            lens: false,
            score: Score::Logit,
            span: None,
            precision: Precision::Auto,
            neurons: 0,
            heads: false,
            steer: Vec::new(),
            ablation: None,
        }
    }
}

/// How the next token is chosen during generation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    /// Softmax temperature; 0 means greedy (always the argmax).
    pub temperature: f32,
    /// Keep only the k most likely tokens (0 = no limit).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches p (1 = no limit).
    pub top_p: f32,
    /// Random seed: the same seed, prompt and settings give the same answer.
    pub seed: u64,
}

impl Default for Sampling {
    /// The first seed's settings: temperature 0.7, top-k 20, top-p 0.8 (seed 0).
    fn default() -> Self {
        Sampling {
            temperature: 0.7,
            top_k: 20,
            top_p: 0.8,
            seed: 0,
        }
    }
}

impl Sampling {
    /// Always the most likely token.
    pub fn greedy() -> Self {
        Sampling {
            temperature: 0.0,
            ..Sampling::default()
        }
    }

    /// Checks the ranges: temperature finite and ≥ 0, top-p in (0, 1], top-k at most the
    /// vocabulary (0: no limit).
    pub fn check(&self, vocab: usize) -> Result<(), String> {
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return Err(format!(
                "temperature must be 0 (greedy) or positive, not {}",
                self.temperature
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(format!("top-p must be in (0, 1], not {}", self.top_p));
        }
        if self.top_k > vocab {
            return Err(format!(
                "top_k must be at most the vocabulary size {vocab} (0: no limit), not {}",
                self.top_k
            ));
        }
        Ok(())
    }

    /// True when no randomness is involved.
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0 || self.top_k == 1
    }
}

/// A generation request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerateRequest {
    /// The user's text.
    pub prompt: String,
    /// Wrap the prompt in the model's chat template.
    #[serde(default = "default_true")]
    pub chat_template: bool,
    /// With the chat template: let the model think first (`enable_thinking`, Qwen3's
    /// `<think>` block); off renders the template as the first seed does. Other templates
    /// ignore it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub thinking: bool,
    /// Sampling settings.
    #[serde(default)]
    pub sampling: Sampling,
    /// The most tokens to generate.
    #[serde(default = "default_max_new_tokens")]
    pub max_new_tokens: usize,
    /// How the matrix products are computed (see [`Precision`]; `auto` generates on the
    /// weights as stored).
    #[serde(default, skip_serializing_if = "Precision::is_auto")]
    pub precision: Precision,
    /// Edits to neurons and heads applied while generating (see [`Edit`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steer: Vec<Edit>,
}

fn default_max_new_tokens() -> usize {
    64
}

impl GenerateRequest {
    /// Checks the settings' ranges against a vocabulary of `vocab` tokens.
    pub fn check(&self, vocab: usize) -> Result<(), String> {
        if self.max_new_tokens == 0 {
            return Err("max new tokens must be at least 1".into());
        }
        check_settings(&self.steer)?;
        self.sampling.check(vocab)
    }

    /// A request with the defaults: chat template on, the first seed's sampling, 64 tokens.
    pub fn new(prompt: impl Into<String>) -> Self {
        GenerateRequest {
            prompt: prompt.into(),
            chat_template: true,
            thinking: false,
            sampling: Sampling::default(),
            max_new_tokens: default_max_new_tokens(),
            precision: Precision::Auto,
            steer: Vec::new(),
        }
    }
}

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
    /// The sampling settings used.
    pub sampling: Sampling,
}

impl Generation {
    /// The answer's token ids.
    pub fn ids(&self) -> Vec<u32> {
        self.generated.iter().map(|g| g.token.id).collect()
    }
}

/// Explain every generated token against its context: the rows of the all-steps matrix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepsRequest {
    /// The user's text.
    pub prompt: String,
    /// Wrap the prompt in the model's chat template.
    #[serde(default = "default_true")]
    pub chat_template: bool,
    /// With the chat template: let the model think first (`enable_thinking`, Qwen3's
    /// `<think>` block); off renders the template as the first seed does. Other templates
    /// ignore it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub thinking: bool,
    /// The generated token ids, in order.
    pub generated: Vec<u32>,
    /// Methods to compute for each step.
    #[serde(default = "default_methods")]
    pub methods: Vec<Method>,
    /// How the matrix products are computed (see [`Precision`]).
    #[serde(default, skip_serializing_if = "Precision::is_auto")]
    pub precision: Precision,
    /// Edits to neurons and heads applied in every pass (see [`Edit`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steer: Vec<Edit>,
}

impl StepsRequest {
    /// Checks the settings: tokens to explain, methods known and each once.
    pub fn check(&self) -> Result<(), String> {
        if self.generated.is_empty() {
            return Err("there are no generated tokens to explain".into());
        }
        check_settings(&self.steer)?;
        check_methods(&self.methods)
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
            }
            StreamEvent::Precision { precision } => self.precision = *precision,
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
