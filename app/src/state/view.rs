//! [`ViewState`]: everything needed to reproduce a view by recomputing it (model, prompt,
//! what was run, the view settings); it lives in the URL query, as LIT keeps its state.

use leptos_router::params::ParamsMap;
use serde::{Deserialize, Serialize};
use tokenlens::granularity::{Aggregate, Granularity};
use tokenlens::{
    ExplainRequest, FaithfulnessSpec, GenerateRequest, Method, Operator, Precision, Sampling,
    Score, Span, StepsRequest, TargetSpec,
};

use crate::display::{Clip, Display};

/// A generated answer's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GenSpec {
    /// Sampling (temperature 0 is greedy).
    pub sampling: Sampling,
    /// Answer length limit.
    pub max_new_tokens: usize,
    /// A given answer (forced decoding) instead of a sampled one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
}

impl Default for GenSpec {
    fn default() -> Self {
        GenSpec {
            sampling: Sampling::default(),
            max_new_tokens: DEFAULT_MAX_NEW,
            answer: None,
        }
    }
}

/// Which token an explanation explains.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ExplainSpec {
    /// The target; for an answer step, `Argmax` means the generated token itself.
    pub target: TargetSpec,
    /// The token it is contrasted with.
    pub contrast: Option<TargetSpec>,
    /// The answer token explained (0-based), or None for the prompt's next token.
    pub step: Option<usize>,
    /// Perturbation curves with this operator, after the methods (over the query only when
    /// the view's `query_only` is on).
    pub faithfulness: Option<Operator>,
    /// The logit lens in the same forward pass (views stored before it read false).
    pub lens: bool,
    /// What is explained of the target: its logit or its log-probability.
    pub score: Score,
    /// A run of answer tokens explained together (their summed log-probabilities) instead of
    /// one token; 0-based, end exclusive.
    pub span: Option<Span>,
    /// Inside the model: each layer's top neurons and every head, from the same backward
    /// passes.
    pub inside: bool,
    /// With `inside`: the ablation check of the method in view (its top units zeroed against
    /// random ones).
    pub ablation: bool,
}

/// Neurons per layer the page keeps.
pub const INSIDE_NEURONS: usize = 8;

/// Units the page's ablation check zeroes.
pub const ABLATION_UNITS: usize = 8;

/// Everything that defines a view.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ViewState {
    /// Model name (empty: the server's default).
    pub model: String,
    /// The prompt.
    pub prompt: String,
    /// Chat template on.
    pub chat: bool,
    /// The template's `enable_thinking` (Qwen3's `<think>` block).
    pub thinking: bool,
    /// A generated answer, if the view shows one.
    pub generation: Option<GenSpec>,
    /// An explained token, if the view shows one.
    pub explain: Option<ExplainSpec>,
    /// The all-steps matrix and its method, if shown.
    pub matrix: Option<Method>,
    /// The method in view.
    pub method: Method,
    /// Colors and units.
    pub display: Display,
    /// Only the user's text, not the template around it.
    pub query_only: bool,
    /// Explain the other candidates with the target, so that picking one shows it at once.
    /// Views stored before this existed read false: their records were computed without.
    #[serde(default)]
    pub candidates: bool,
    /// How the matrix products are computed. Views stored before this existed asked for
    /// what is now `auto` (their results say they ran in f32).
    pub precision: Precision,
    /// Edits to neurons and heads applied in every pass (steering).
    pub steer: Vec<tokenlens::Edit>,
}

/// Longest context (prompt bytes plus four per answer token before the step) whose
/// explanation brings the other candidates: one more pass per distinct method pass carries a
/// seed each, about top-k times the work, which short contexts afford.
const CANDIDATES_UP_TO: usize = 1000;

impl Default for ViewState {
    fn default() -> Self {
        ViewState {
            model: String::new(),
            prompt: "What is the capital of France?".into(),
            chat: true,
            thinking: false,
            generation: None,
            explain: None,
            matrix: None,
            method: Method::Saliency,
            display: Display::default(),
            // The template's tokens hold little of interest; the user's text is the view.
            query_only: true,
            candidates: true,
            precision: Precision::Auto,
            steer: Vec::new(),
        }
    }
}

fn target_params(p: &mut ParamsMap, key: &str, t: &TargetSpec) {
    match t {
        TargetSpec::Argmax => {}
        TargetSpec::Text(s) => p.insert(key.to_string(), s.clone()),
        TargetSpec::Id(id) => p.insert(format!("{key}_id"), id.to_string()),
    }
}

fn target_from(p: &ParamsMap, key: &str) -> Option<TargetSpec> {
    if let Some(id) = p.get_str(&format!("{key}_id")).and_then(|s| s.parse().ok()) {
        return Some(TargetSpec::Id(id));
    }
    p.get(key).filter(|s| !s.is_empty()).map(TargetSpec::Text)
}

/// `START:END`, 1-based and inclusive, into a [`Span`].
fn span_from(s: &str) -> Option<Span> {
    let (a, b) = s.split_once(':')?;
    let (a, b): (usize, usize) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    (a >= 1 && b >= a).then(|| Span {
        start: a - 1,
        end: b,
    })
}

fn flag(p: &ParamsMap, key: &str) -> Option<bool> {
    p.get_str(key)
        .map(|v| matches!(v, "1" | "true" | "on" | "yes"))
}

fn num<T: std::str::FromStr>(p: &ParamsMap, key: &str) -> Option<T> {
    p.get_str(key).and_then(|v| v.trim().parse().ok())
}

impl ViewState {
    /// The URL query parameters (defaults left out, so links stay short).
    pub fn to_params(&self) -> ParamsMap {
        let mut p = ParamsMap::new();
        let d = ViewState::default();
        if !self.model.is_empty() {
            p.insert("model", self.model.clone());
        }
        p.insert("prompt", self.prompt.clone());
        if self.chat != d.chat {
            p.insert("chat", u8::from(self.chat).to_string());
        }
        if self.thinking {
            p.insert("thinking", "1".into());
        }
        if let Some(g) = &self.generation {
            p.insert("generate", "1".into());
            if let Some(answer) = &g.answer {
                p.insert("answer", answer.clone());
            }
            p.insert("max_new", g.max_new_tokens.to_string());
            if g.sampling.is_greedy() {
                p.insert("greedy", "1".into());
            } else {
                let s = &g.sampling;
                p.insert("temperature", s.temperature.to_string());
                p.insert("sample_top_k", s.top_k.to_string());
                p.insert("top_p", s.top_p.to_string());
                p.insert("seed", s.seed.to_string());
            }
        }
        if let Some(e) = &self.explain {
            p.insert("explain", "1".into());
            target_params(&mut p, "target", &e.target);
            if let Some(c) = &e.contrast {
                target_params(&mut p, "contrast", c);
            }
            if let Some(k) = e.step {
                p.insert("step", k.to_string());
            }
            if let Some(op) = e.faithfulness {
                p.insert("faithfulness", op.name().into());
            }
            if e.lens {
                p.insert("lens", "1".into());
            }
            if e.inside {
                p.insert("inside", "1".into());
            }
            if e.inside && e.ablation {
                p.insert("ablation", "1".into());
            }
            if !e.score.is_logit() {
                p.insert("score", e.score.name().into());
            }
            // 1-based and inclusive, as the CLI's --span.
            if let Some(s) = e.span {
                p.insert("span", format!("{}:{}", s.start + 1, s.end));
            }
        }
        if let Some(m) = self.matrix {
            p.insert("all_steps", m.name().into());
        }
        if self.method != d.method {
            p.insert("method", self.method.name().into());
        }
        let (x, dd) = (&self.display, &d.display);
        if x.granularity != dd.granularity {
            p.insert("units", x.granularity.name().into());
        }
        if x.aggregate != dd.aggregate {
            p.insert("aggregate", x.aggregate.name().into());
        }
        if x.absolute != dd.absolute {
            p.insert("absolute", "1".into());
        }
        if x.clip != dd.clip {
            p.insert("clip", x.clip.name().into());
        }
        if x.gamma != dd.gamma {
            p.insert("gamma", format!("{:.1}", x.gamma));
        }
        if x.sinks_out != dd.sinks_out {
            p.insert("sinks_out", if x.sinks_out { "1" } else { "0" }.into());
        }
        // Only the user's text is the default with the chat template.
        if x.sign_marks {
            p.insert("signs", "1".into());
        }
        if x.lens_colors {
            p.insert("grid", "lens".into());
        }
        if let Some(u) = x.unit {
            p.insert("unit", u.to_string());
            if x.contexts {
                p.insert("contexts", "1".into());
            }
        }
        if self.query_only != self.chat {
            p.insert("query_only", if self.query_only { "1" } else { "0" }.into());
        }
        if self.precision != d.precision {
            p.insert("precision", self.precision.name().into());
        }
        if !self.steer.is_empty() {
            p.insert("steer", tokenlens::format_edits(&self.steer));
        }
        p
    }

    /// The query string (`?…`), or empty.
    pub fn to_query(&self) -> String {
        self.to_params().to_query_string()
    }

    /// The view at `/` with no parameters, the first a newcomer sees: a fact whose answer
    /// word is the target (SmolLM2 gives " Paris" 77% as a plain continuation, where its chat
    /// template starts every answer with "The"), explained with signed AttnLRP.
    pub fn first() -> Self {
        ViewState {
            prompt: "The capital of France is".into(),
            chat: false,
            query_only: false,
            method: Method::Attnlrp,
            ..ViewState::default()
        }
    }

    /// Reads a view from URL parameters; anything missing or unreadable takes its default.
    /// No parameters at all is [`ViewState::first`].
    pub fn from_params(p: &ParamsMap) -> Self {
        if p.latest_values().next().is_none() {
            return ViewState::first();
        }
        let d = ViewState::default();
        let generation = flag(p, "generate").unwrap_or(false).then(|| {
            let defaults = Sampling::default();
            GenSpec {
                sampling: if flag(p, "greedy").unwrap_or(false) {
                    Sampling::greedy()
                } else {
                    Sampling {
                        temperature: num(p, "temperature").unwrap_or(defaults.temperature),
                        top_k: num(p, "sample_top_k").unwrap_or(defaults.top_k),
                        top_p: num(p, "top_p").unwrap_or(defaults.top_p),
                        seed: num(p, "seed").unwrap_or(defaults.seed),
                    }
                },
                max_new_tokens: num(p, "max_new").unwrap_or(DEFAULT_MAX_NEW),
                answer: p.get_str("answer").map(str::to_string),
            }
        });
        let explain = flag(p, "explain").unwrap_or(false).then(|| ExplainSpec {
            target: target_from(p, "target").unwrap_or_default(),
            contrast: target_from(p, "contrast"),
            step: num(p, "step"),
            faithfulness: p.get_str("faithfulness").and_then(Operator::from_name),
            lens: flag(p, "lens").unwrap_or(false),
            score: p
                .get_str("score")
                .and_then(Score::from_name)
                .unwrap_or_default(),
            span: p.get_str("span").and_then(span_from),
            inside: flag(p, "inside").unwrap_or(false),
            ablation: flag(p, "ablation").unwrap_or(false),
        });
        let display = Display {
            granularity: p
                .get_str("units")
                .and_then(Granularity::from_name)
                .unwrap_or(d.display.granularity),
            aggregate: p
                .get_str("aggregate")
                .and_then(Aggregate::from_name)
                .unwrap_or(d.display.aggregate),
            absolute: flag(p, "absolute").unwrap_or(d.display.absolute),
            clip: p
                .get_str("clip")
                .and_then(Clip::from_name)
                .unwrap_or(d.display.clip),
            gamma: num::<f32>(p, "gamma")
                .filter(|g| g.is_finite() && *g > 0.0)
                .unwrap_or(d.display.gamma),
            sinks_out: flag(p, "sinks_out").unwrap_or(d.display.sinks_out),
            sign_marks: flag(p, "signs").unwrap_or(false),
            lens_colors: p.get_str("grid") == Some("lens"),
            unit: p.get_str("unit").and_then(|u| u.parse().ok()),
            contexts: flag(p, "contexts").unwrap_or(false),
        };
        let chat = flag(p, "chat").unwrap_or(d.chat);
        ViewState {
            model: p.get("model").unwrap_or_default(),
            prompt: p.get("prompt").unwrap_or(d.prompt),
            chat,
            thinking: flag(p, "thinking").unwrap_or(false),
            generation,
            explain,
            matrix: p.get_str("all_steps").and_then(Method::from_name),
            method: p
                .get_str("method")
                .and_then(Method::from_name)
                .unwrap_or(d.method),
            display,
            query_only: flag(p, "query_only").unwrap_or(chat),
            candidates: true,
            precision: p
                .get_str("precision")
                .and_then(|s| Precision::parse(s).ok())
                .unwrap_or(d.precision),
            // Edits that do not read are left out (the form shows what was read).
            steer: p
                .get_str("steer")
                .and_then(|s| tokenlens::parse_edits(s).ok())
                .unwrap_or_default(),
        }
    }

    /// The generation request this view makes, if it shows an answer.
    pub fn generate_request(&self) -> Option<GenerateRequest> {
        let g = self.generation.as_ref()?;
        Some(GenerateRequest {
            steer: self.steer.clone(),
            prompt: self.prompt.clone(),
            chat_template: self.chat,
            thinking: self.thinking,
            sampling: g.sampling,
            max_new_tokens: g.max_new_tokens,
            precision: self.precision,
            answer: g.answer.clone(),
        })
    }

    /// The explain request this view makes, if it explains a token: of the prompt, or of
    /// `answer` (the answer's ids) at the view's step, against everything before it.
    pub fn explain_request(&self, answer: &[u32]) -> Result<Option<ExplainRequest>, String> {
        let Some(spec) = &self.explain else {
            return Ok(None);
        };
        let mut target = spec.target.clone();
        let mut continuation = Vec::new();
        if let Some(span) = spec.span {
            span.check(answer.len())
                .map_err(|e| format!("{e} of the answer"))?;
            continuation = answer[..span.end].to_vec();
            target = TargetSpec::Argmax;
        } else if let Some(k) = spec.step {
            let Some(&id) = answer.get(k) else {
                return Err(format!(
                    "the answer has {} tokens; there is no token {}",
                    answer.len(),
                    k + 1
                ));
            };
            continuation = answer[..k].to_vec();
            // An answer step explains the token that was generated unless told otherwise.
            if target == TargetSpec::Argmax {
                target = TargetSpec::Id(id);
            }
        }
        Ok(Some(ExplainRequest {
            steer: self.steer.clone(),
            prompt: self.prompt.clone(),
            chat_template: self.chat,
            thinking: self.thinking,
            target,
            methods: self.requested_methods(),
            top_k: 10,
            seed_with_logit: false,
            explain_candidates: self.candidates
                && spec.span.is_none()
                && self.prompt.len() + 4 * continuation.len() <= CANDIDATES_UP_TO,
            continuation,
            contrast: spec.contrast.clone().filter(|_| spec.span.is_none()),
            faithfulness: self.faithfulness_spec().filter(|_| spec.span.is_none()),
            lens: spec.lens,
            score: if spec.span.is_some() {
                Score::LogProb
            } else {
                spec.score
            },
            span: spec.span,
            precision: self.precision,
            neurons: if spec.inside { INSIDE_NEURONS } else { 0 },
            heads: spec.inside,
            ablation: (spec.inside && spec.ablation).then(|| tokenlens::AblationSpec {
                units: ABLATION_UNITS,
                methods: vec![self.method],
            }),
        }))
    }

    /// The methods an explanation of this view computes: every method of one pass
    /// (switching between them is a view, not a new request), and the method in view when
    /// it takes more ([`ViewState::costly_method`]).
    pub fn requested_methods(&self) -> Vec<Method> {
        let mut methods = Method::single_pass();
        methods.extend(self.costly_method());
        methods
    }

    /// The method in view when it takes more than one pass (integrated gradients): computed
    /// only while it is in view.
    pub fn costly_method(&self) -> Option<Method> {
        (self.method.runs().pass.cost() > 1).then_some(self.method)
    }

    /// The perturbation curves the view asks for: the explain spec's operator, over the query
    /// only when the view shows only the query.
    pub fn faithfulness_spec(&self) -> Option<FaithfulnessSpec> {
        Some(FaithfulnessSpec {
            operator: self.explain.as_ref()?.faithfulness?,
            query_only: self.query_only,
        })
    }

    /// The all-steps request this view makes for `answer` (the answer's ids), if it shows
    /// the matrix.
    pub fn steps_request(&self, answer: &[u32]) -> Option<StepsRequest> {
        Some(StepsRequest {
            steer: self.steer.clone(),
            prompt: self.prompt.clone(),
            chat_template: self.chat,
            thinking: self.thinking,
            generated: answer.to_vec(),
            methods: vec![self.matrix?],
            precision: self.precision,
        })
    }
}

/// The page's default answer length.
pub const DEFAULT_MAX_NEW: usize = 48;
