//! What a client asks for: an explanation, a generation, the all-steps matrix; their
//! defaults and the limits checked before any work.

use serde::{Deserialize, Serialize};

use super::{
    check_edits, AblationSpec, Edit, FaithfulnessSpec, Method, Precision, Score, Span, MAX_ABLATION,
};

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
    /// A given answer (forced decoding): this text, tokenized after the prompt, is the
    /// answer instead of a sampled one; each of its tokens comes with its probability under
    /// the model, and `sampling` and `max_new_tokens` are not used. It is then explained as
    /// a generated answer is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
}

/// The most characters a given answer may have (its tokens must also fit the context).
pub const MAX_ANSWER_CHARS: usize = 100_000;

fn default_max_new_tokens() -> usize {
    64
}

impl GenerateRequest {
    /// Checks the settings' ranges against a vocabulary of `vocab` tokens.
    pub fn check(&self, vocab: usize) -> Result<(), String> {
        check_settings(&self.steer)?;
        if let Some(answer) = &self.answer {
            if answer.is_empty() {
                return Err("the given answer is empty: type the answer to explain".into());
            }
            let chars = answer.chars().count();
            if chars > MAX_ANSWER_CHARS {
                return Err(format!(
                    "the given answer has {chars} characters, more than {MAX_ANSWER_CHARS}"
                ));
            }
            return Ok(());
        }
        if self.max_new_tokens == 0 {
            return Err("max new tokens must be at least 1".into());
        }
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
            answer: None,
        }
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
