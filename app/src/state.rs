//! What defines a view, and what a view holds.
//!
//! [`ViewState`] is everything needed to reproduce a view by recomputing it (model, prompt,
//! what was run, the view settings); it lives in the URL query, as LIT keeps its state.
//! [`Snapshot`] is a view with its computed results: what a permalink stores.

use leptos_router::params::ParamsMap;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tokenlens::granularity::{Aggregate, Granularity};
use tokenlens::{
    GeneratedToken, Method, MethodResult, Prediction, Sampling, StepRow, StopReason, Target,
    TargetSpec, Token,
};

use crate::display::{Clip, Display};

/// A generated answer's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GenSpec {
    /// Sampling (temperature 0 is greedy).
    pub sampling: Sampling,
    /// Answer length limit.
    pub max_new_tokens: usize,
}

/// Which token an explanation explains.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct ExplainSpec {
    /// The target; for an answer step, `Argmax` means the generated token itself.
    pub target: TargetSpec,
    /// The token it is contrasted with.
    pub contrast: Option<TargetSpec>,
    /// The answer token explained (0-based), or None for the prompt's next token.
    pub step: Option<usize>,
}

/// Everything that defines a view.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ViewState {
    /// Model name (empty: the server's default).
    pub model: String,
    /// The prompt.
    pub prompt: String,
    /// Chat template on.
    pub chat: bool,
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
}

impl Default for ViewState {
    fn default() -> Self {
        ViewState {
            model: String::new(),
            prompt: "What is the capital of France?".into(),
            chat: true,
            generation: None,
            explain: None,
            matrix: None,
            method: Method::Saliency,
            display: Display::default(),
            query_only: false,
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
        if let Some(g) = &self.generation {
            p.insert("generate", "1".into());
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
        if self.query_only {
            p.insert("query_only", "1".into());
        }
        p
    }

    /// The query string (`?…`), or empty.
    pub fn to_query(&self) -> String {
        self.to_params().to_query_string()
    }

    /// Reads a view from URL parameters; anything missing or unreadable takes its default.
    pub fn from_params(p: &ParamsMap) -> Self {
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
            }
        });
        let explain = flag(p, "explain").unwrap_or(false).then(|| ExplainSpec {
            target: target_from(p, "target").unwrap_or_default(),
            contrast: target_from(p, "contrast"),
            step: num(p, "step"),
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
        };
        ViewState {
            model: p.get("model").unwrap_or_default(),
            prompt: p.get("prompt").unwrap_or(d.prompt),
            chat: flag(p, "chat").unwrap_or(d.chat),
            generation,
            explain,
            matrix: p.get_str("all_steps").and_then(Method::from_name),
            method: p
                .get_str("method")
                .and_then(Method::from_name)
                .unwrap_or(d.method),
            display,
            query_only: flag(p, "query_only").unwrap_or(false),
        }
    }

    /// The part that needs the model (what a view recomputes); the rest is presentation.
    pub fn computation(&self) -> (&str, &str, bool, &Option<GenSpec>, &Option<ExplainSpec>) {
        (
            &self.model,
            &self.prompt,
            self.chat,
            &self.generation,
            &self.explain,
        )
    }
}

/// The page's default answer length.
pub const DEFAULT_MAX_NEW: usize = 48;

/// One explanation as it arrives (and as a permalink keeps it).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Partial {
    /// The tokenized text.
    pub text: String,
    /// Its tokens.
    pub tokens: Vec<Token>,
    /// The user's text among them.
    pub query_span: Option<[usize; 2]>,
    /// Decoder layers.
    pub n_layers: usize,
    /// The prediction and the target explained.
    pub prediction: Option<(Prediction, Target)>,
    /// Results so far.
    pub methods: BTreeMap<Method, MethodResult>,
    /// The answer token explained (0-based), or None for the prompt's next token.
    pub step: Option<usize>,
    /// The context's generated ids (the request's continuation).
    pub continuation: Vec<u32>,
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
    /// Its settings.
    pub spec: GenSpec,
    /// Tokens so far.
    pub tokens: Vec<GeneratedToken>,
    /// Why it stopped, once it has.
    pub stop: Option<StopReason>,
}

impl AnswerState {
    /// The answer's ids.
    pub fn ids(&self) -> Vec<u32> {
        self.tokens.iter().map(|t| t.token.id).collect()
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
}

/// A view and its results: what a permalink stores.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The view.
    pub view: ViewState,
    /// The answer shown.
    pub answer: Option<AnswerState>,
    /// The explanation shown.
    pub explanation: Option<Partial>,
    /// The matrix shown.
    pub matrix: Option<MatrixState>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn through_url(v: &ViewState) -> ViewState {
        // What the browser hands back: the query string, parsed.
        let q = v.to_query();
        let mut p = ParamsMap::new();
        for pair in q
            .trim_start_matches('?')
            .split('&')
            .filter(|s| !s.is_empty())
        {
            let (k, val) = pair.split_once('=').unwrap_or((pair, ""));
            p.insert(
                leptos_router::location::Url::unescape(k),
                leptos_router::location::Url::unescape(val),
            );
        }
        ViewState::from_params(&p)
    }

    #[test]
    fn every_field_survives_the_url() {
        let v = ViewState {
            model: "gemma3-270m".into(),
            prompt: "Ünïcode & spaces + ?=#%\nnew line".into(),
            chat: false,
            generation: Some(GenSpec {
                sampling: Sampling {
                    temperature: 0.9,
                    top_k: 7,
                    top_p: 0.5,
                    seed: 42,
                },
                max_new_tokens: 12,
            }),
            explain: Some(ExplainSpec {
                target: TargetSpec::Id(315),
                contrast: Some(TargetSpec::Text(" Lyon".into())),
                step: Some(3),
            }),
            matrix: Some(Method::Attnlrp),
            method: Method::CpLrp,
            display: Display {
                granularity: Granularity::Word,
                aggregate: Aggregate::MaxAbs,
                absolute: true,
                clip: Clip::P95,
                gamma: 1.7,
            },
            query_only: true,
        };
        assert_eq!(through_url(&v), v);
        let greedy = ViewState {
            generation: Some(GenSpec {
                sampling: Sampling::greedy(),
                max_new_tokens: 5,
            }),
            ..ViewState::default()
        };
        assert_eq!(through_url(&greedy), greedy);
        assert_eq!(through_url(&ViewState::default()), ViewState::default());
    }

    #[test]
    fn junk_falls_back_to_defaults() {
        let mut p = ParamsMap::new();
        p.insert("method", "nonsense".into());
        p.insert("gamma", "-3".into());
        p.insert("units", "paragraphs".into());
        p.insert("explain", "1".into());
        p.insert("target_id", "x".into());
        let v = ViewState::from_params(&p);
        assert_eq!(v.method, Method::Saliency);
        assert_eq!(v.display, Display::default());
        assert_eq!(v.explain, Some(ExplainSpec::default()));
    }
}
