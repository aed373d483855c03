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
    CandidateExplanation, ExplainRequest, GenerateRequest, GeneratedToken, Method, MethodResult,
    Prediction, Sampling, StepRow, StepsRequest, StopReason, StreamEvent, Target, TargetSpec,
    Token,
};

use crate::display::{Clip, Display};
use crate::record::{Record, Task};

// Every stored type takes defaults for missing fields (`#[serde(default)]`), so a permalink
// stored before a field existed still opens (tests/fixtures/permalinks).

/// A generated answer's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GenSpec {
    /// Sampling (temperature 0 is greedy).
    pub sampling: Sampling,
    /// Answer length limit.
    pub max_new_tokens: usize,
}

impl Default for GenSpec {
    fn default() -> Self {
        GenSpec {
            sampling: Sampling::default(),
            max_new_tokens: DEFAULT_MAX_NEW,
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
}

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
}

/// Longest context (prompt bytes plus four per answer token before the step) whose
/// explanation brings the other candidates: they ride the target's backward passes as a seed
/// each, about top-k times the work, which short contexts afford.
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
            query_only: false,
            candidates: true,
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
        if self.thinking {
            p.insert("thinking", "1".into());
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
            thinking: flag(p, "thinking").unwrap_or(false),
            generation,
            explain,
            matrix: p.get_str("all_steps").and_then(Method::from_name),
            method: p
                .get_str("method")
                .and_then(Method::from_name)
                .unwrap_or(d.method),
            display,
            query_only: flag(p, "query_only").unwrap_or(false),
            candidates: true,
        }
    }

    /// The generation request this view makes, if it shows an answer.
    pub fn generate_request(&self) -> Option<GenerateRequest> {
        let g = self.generation.as_ref()?;
        Some(GenerateRequest {
            prompt: self.prompt.clone(),
            chat_template: self.chat,
            thinking: self.thinking,
            sampling: g.sampling,
            max_new_tokens: g.max_new_tokens,
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
        if let Some(k) = spec.step {
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
            prompt: self.prompt.clone(),
            chat_template: self.chat,
            thinking: self.thinking,
            target,
            // Every method: switching between them is a view, not a new request.
            methods: Method::ALL.to_vec(),
            top_k: 10,
            seed_with_logit: false,
            explain_candidates: self.candidates
                && self.prompt.len() + 4 * continuation.len() <= CANDIDATES_UP_TO,
            continuation,
            contrast: spec.contrast.clone(),
        }))
    }

    /// The all-steps request this view makes for `answer` (the answer's ids), if it shows
    /// the matrix.
    pub fn steps_request(&self, answer: &[u32]) -> Option<StepsRequest> {
        Some(StepsRequest {
            prompt: self.prompt.clone(),
            chat_template: self.chat,
            thinking: self.thinking,
            generated: answer.to_vec(),
            methods: vec![self.matrix?],
        })
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
    /// The other candidates, explained as the target is.
    #[serde(default)]
    pub candidates: Vec<CandidateExplanation>,
    /// The server's sealed record of the stream, once it is complete.
    #[serde(skip)]
    pub sealed: Option<Record>,
}

impl Partial {
    /// An explanation about to stream in: of answer token `step` (None: the prompt's next
    /// token), after the answer ids `continuation`.
    pub fn new(step: Option<usize>, continuation: Vec<u32>) -> Self {
        Partial {
            step,
            continuation,
            ..Partial::default()
        }
    }

    /// Takes in one event of an explain stream.
    pub fn apply(&mut self, ev: &StreamEvent) {
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
            }
            StreamEvent::Prediction { prediction, target } => {
                self.prediction = Some((prediction.clone(), target.clone()))
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
            _ => {}
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
        let (prediction, target) = self.prediction.clone()?;
        let mut candidates = self.candidates.clone();
        let picked = candidates.remove(i);
        let methods: BTreeMap<Method, MethodResult> = picked
            .methods
            .iter()
            .filter_map(|(name, r)| Some((Method::from_name(name)?, r.clone())))
            .collect();
        candidates.push(CandidateExplanation {
            target,
            methods: self
                .methods
                .iter()
                .map(|(m, r)| (m.name().to_string(), r.clone()))
                .collect(),
        });
        let rank = |c: &CandidateExplanation| c.target.rank;
        candidates.sort_by_key(rank);
        Some(Partial {
            prediction: Some((prediction, picked.target)),
            methods,
            candidates,
            sealed: None,
            ..self.clone()
        })
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
    /// The server's sealed record of the stream, once it is complete.
    #[serde(skip)]
    pub sealed: Option<Record>,
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
            },
            tokens: Vec::new(),
            stop: None,
            sealed: None,
        }
    }

    /// Takes in one event of a generate stream.
    pub fn apply(&mut self, ev: &StreamEvent) {
        match ev {
            StreamEvent::Generated { token, .. } => self.tokens.push(token.clone()),
            StreamEvent::Finished { stop } => self.stop = Some(*stop),
            _ => {}
        }
    }

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
    /// The server's sealed record of the stream, once it is complete.
    #[serde(skip)]
    pub sealed: Option<Record>,
}

impl MatrixState {
    /// A matrix of `method` about to stream in.
    pub fn new(method: Method) -> Self {
        MatrixState {
            method: Some(method),
            ..MatrixState::default()
        }
    }

    /// Takes in one event of a steps stream.
    pub fn apply(&mut self, ev: &StreamEvent) {
        match ev {
            StreamEvent::Tokens {
                tokens, query_span, ..
            } => {
                self.tokens = tokens.clone();
                self.query_span = *query_span;
            }
            StreamEvent::Step { row } => self.rows.push(row.clone()),
            _ => {}
        }
    }
}

/// A view and the server's sealed records of what it computed: what a permalink stores.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Snapshot {
    /// The view.
    pub view: ViewState,
    /// The generation, if the view shows an answer.
    pub answer: Option<Record>,
    /// The explanation, if the view explains a token.
    pub explanation: Option<Record>,
    /// The all-steps matrix, if shown.
    pub matrix: Option<Record>,
}

/// What a snapshot shows, replayed from its records.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Replayed {
    /// The answer.
    pub answer: Option<AnswerState>,
    /// The explanation.
    pub explanation: Option<Partial>,
    /// The matrix.
    pub matrix: Option<MatrixState>,
}

impl Snapshot {
    /// A snapshot of `view` with what is sealed of its results; parts of the view without a
    /// sealed result (failed or cancelled) are left out, and the view names the model.
    pub fn of(
        mut view: ViewState,
        answer: Option<Record>,
        explanation: Option<Record>,
        matrix: Option<Record>,
    ) -> Self {
        if answer.is_none() {
            view.generation = None;
        }
        if explanation.is_none() {
            view.explain = None;
        }
        if matrix.is_none() {
            view.matrix = None;
        }
        if view.model.is_empty() {
            if let Some(r) = answer.iter().chain(&explanation).chain(&matrix).next() {
                view.model = r.model.clone();
            }
        }
        Snapshot {
            view,
            answer,
            explanation,
            matrix,
        }
    }

    /// Rebuilds what the page showed from the records, checking that each record is the
    /// job this view asks for (same model, prompt and request), so a stored view cannot
    /// pair one computation's results with another's settings.
    pub fn replay(&self) -> Result<Replayed, String> {
        let v = &self.view;
        let records = [&self.answer, &self.explanation, &self.matrix];
        if records.iter().all(|r| r.is_none()) {
            return Err("nothing computed to show".into());
        }
        for r in records.into_iter().flatten() {
            if r.model != v.model {
                return Err(format!(
                    "a result was computed on {:?}, the view names {:?}",
                    r.model, v.model
                ));
            }
        }
        let mismatch = |what: &str| format!("the stored {what} is not the one this view asks for");
        let present = |asked: bool, have: bool, what: &str| {
            if asked == have {
                Ok(())
            } else if asked {
                Err(format!("the view shows {what} but none is stored"))
            } else {
                Err(format!("{what} is stored that the view does not show"))
            }
        };
        present(v.generation.is_some(), self.answer.is_some(), "an answer")?;
        present(
            v.explain.is_some(),
            self.explanation.is_some(),
            "an explanation",
        )?;
        present(
            v.matrix.is_some(),
            self.matrix.is_some(),
            "an all-steps matrix",
        )?;

        let mut out = Replayed::default();
        if let (Some(rec), Some(req)) = (&self.answer, v.generate_request()) {
            if rec.task != Task::Generate(req.clone()) {
                return Err(mismatch("answer"));
            }
            let mut a = AnswerState::new(&rec.model, &req);
            for ev in rec.parsed() {
                a.apply(&ev?);
            }
            a.sealed = Some(rec.clone());
            out.answer = Some(a);
        }
        let ids = out
            .answer
            .as_ref()
            .map(AnswerState::ids)
            .unwrap_or_default();
        if let (Some(rec), Some(req)) = (&self.explanation, v.explain_request(&ids)?) {
            if rec.task != Task::Explain(req.clone()) {
                return Err(mismatch("explanation"));
            }
            let step = v.explain.as_ref().and_then(|e| e.step);
            let mut p = Partial::new(step, req.continuation);
            for ev in rec.parsed() {
                p.apply(&ev?);
            }
            p.sealed = Some(rec.clone());
            out.explanation = Some(p);
        }
        if let (Some(rec), Some(method), Some(req)) =
            (&self.matrix, v.matrix, v.steps_request(&ids))
        {
            if rec.task != Task::Steps(req) {
                return Err(mismatch("all-steps matrix"));
            }
            let mut m = MatrixState::new(method);
            for ev in rec.parsed() {
                m.apply(&ev?);
            }
            m.sealed = Some(rec.clone());
            out.matrix = Some(m);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A candidate picked from an explanation becomes its target with its own results; the
    /// old target becomes a candidate, so picking it back gives the original; a token that
    /// was not explained gives nothing.
    #[test]
    fn picking_an_explained_candidate_and_back() {
        let target = |id: u32, rank: usize| Target {
            token: tokenlens::Candidate {
                id,
                text: format!("t{id}"),
                logit: 10.0 - rank as f32,
                prob: 0.1,
            },
            rank,
            contrast: None,
        };
        let result = |v: f32| MethodResult {
            scores: vec![v, v],
            trace: vec![vec![v, v]],
            trace_normalized: vec![vec![1.0, 1.0]],
            conservation: None,
        };
        let prediction = Prediction {
            best: target(7, 0).token,
            top: vec![target(7, 0).token, target(8, 1).token, target(9, 2).token],
        };
        let mut p = Partial::new(None, Vec::new());
        p.apply(&StreamEvent::Prediction {
            prediction,
            target: target(7, 0),
        });
        p.apply(&StreamEvent::Method {
            method: Method::Attnlrp,
            result: result(1.0),
        });
        for (id, v) in [(8, 2.0), (9, 3.0)] {
            p.apply(&StreamEvent::Candidate {
                target: target(id, id as usize - 7),
                methods: [("attnlrp".to_string(), result(v))].into(),
            });
        }
        let picked = p.with_target(9).expect("9 was explained");
        assert_eq!(picked.prediction.as_ref().unwrap().1, target(9, 2));
        assert_eq!(picked.methods[&Method::Attnlrp], result(3.0));
        let ranks: Vec<usize> = picked.candidates.iter().map(|c| c.target.rank).collect();
        assert_eq!(ranks, [0, 1]);
        let back = picked.with_target(7).expect("the old target rides along");
        assert_eq!(back.prediction, p.prediction);
        assert_eq!(back.methods, p.methods);
        assert!(p.with_target(1234).is_none());
    }

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
            thinking: true,
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
            // Not in the URL: a view opened from one always brings the candidates.
            candidates: true,
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

    fn token(id: u32, text: &str) -> Token {
        Token {
            id,
            text: text.into(),
            start: 0,
            end: text.len(),
            special: false,
            generated: false,
        }
    }

    fn line(ev: StreamEvent) -> String {
        serde_json::to_string(&ev).unwrap()
    }

    fn record(model: &str, task: Task, events: Vec<StreamEvent>) -> Record {
        Record {
            model: model.into(),
            task,
            events: events.into_iter().map(line).collect(),
            seal: "(not checked here)".into(),
        }
    }

    /// A view that generated two tokens, explains the second, and shows the matrix; with
    /// records of those three jobs.
    fn shared() -> Snapshot {
        let view = ViewState {
            model: "m".into(),
            prompt: "Hi".into(),
            generation: Some(GenSpec {
                sampling: Sampling::greedy(),
                max_new_tokens: 2,
            }),
            explain: Some(ExplainSpec {
                step: Some(1),
                ..ExplainSpec::default()
            }),
            matrix: Some(Method::Attnlrp),
            ..ViewState::default()
        };
        let answer = [(11, " a"), (12, " b")];
        let gen_events = answer
            .iter()
            .enumerate()
            .map(|(index, (id, text))| StreamEvent::Generated {
                index,
                token: GeneratedToken {
                    token: token(*id, text),
                    prob: 0.5,
                },
            })
            .chain([StreamEvent::Finished {
                stop: StopReason::MaxNewTokens,
            }])
            .collect();
        let ids = [11, 12];
        let explain = view.explain_request(&ids).unwrap().unwrap();
        assert_eq!(explain.continuation, vec![11]);
        assert_eq!(explain.target, TargetSpec::Id(12));
        let tokens = StreamEvent::Tokens {
            text: "Hi a".into(),
            tokens: vec![token(1, "Hi"), token(11, " a")],
            query_span: Some([0, 1]),
            n_layers: 1,
        };
        let result = MethodResult {
            scores: vec![0.25, 0.75],
            trace: vec![vec![0.25, 0.75]],
            trace_normalized: vec![vec![1.0 / 3.0, 1.0]],
            conservation: None,
        };
        let method = StreamEvent::Method {
            method: Method::Saliency,
            result,
        };
        Snapshot {
            answer: Some(record(
                "m",
                Task::Generate(view.generate_request().unwrap()),
                gen_events,
            )),
            explanation: Some(record(
                "m",
                Task::Explain(explain),
                vec![tokens.clone(), method],
            )),
            matrix: Some(record(
                "m",
                Task::Steps(view.steps_request(&ids).unwrap()),
                vec![tokens],
            )),
            view,
        }
    }

    #[test]
    fn a_snapshot_replays_to_what_the_page_showed() {
        let s = shared();
        let r = s.replay().expect("replay");
        let a = r.answer.expect("answer");
        assert_eq!(a.ids(), vec![11, 12]);
        assert_eq!(a.stop, Some(StopReason::MaxNewTokens));
        assert_eq!(a.sealed.as_ref(), s.answer.as_ref());
        let e = r.explanation.expect("explanation");
        assert_eq!((e.step, e.continuation.clone()), (Some(1), vec![11]));
        assert_eq!(e.tokens.len(), 2);
        assert_eq!(e.methods[&Method::Saliency].scores, vec![0.25, 0.75]);
        let m = r.matrix.expect("matrix");
        assert_eq!((m.method, m.tokens.len()), (Some(Method::Attnlrp), 2));
        // Through JSON (what the database keeps) it is the same.
        let back: Snapshot = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn a_snapshot_whose_records_are_not_its_views_is_refused() {
        let refused = |f: &dyn Fn(&mut Snapshot)| {
            let mut s = shared();
            f(&mut s);
            s.replay().expect_err("inconsistent")
        };
        // Another prompt, model, sampling or step than the records were computed for.
        assert!(refused(&|s| s.view.prompt = "Ho".into()).contains("not the one"));
        assert!(refused(&|s| s.view.model = "n".into()).contains("computed on \"m\""));
        assert!(
            refused(&|s| s.view.generation.as_mut().unwrap().max_new_tokens = 3).contains("answer")
        );
        assert!(
            refused(&|s| s.view.explain.as_mut().unwrap().step = Some(0)).contains("explanation")
        );
        assert!(
            refused(&|s| s.view.explain.as_mut().unwrap().step = Some(2)).contains("no token 3")
        );
        assert!(refused(&|s| s.view.matrix = Some(Method::CpLrp)).contains("matrix"));
        // Records swapped between jobs, one missing, or nothing at all.
        assert!(refused(&|s| std::mem::swap(&mut s.answer, &mut s.matrix)).contains("not the one"));
        assert!(refused(&|s| s.explanation = None).contains("none is stored"));
        assert!(refused(&|s| s.view.matrix = None).contains("does not show"));
        assert!(
            refused(&|s| s.answer.as_mut().unwrap().events[0] = "{".into())
                .contains("does not parse")
        );
        let empty = Snapshot::of(ViewState::default(), None, None, None);
        assert!(empty.replay().unwrap_err().contains("nothing computed"));
    }

    #[test]
    fn snapshot_of_leaves_out_what_was_not_sealed() {
        let full = shared();
        let mut view = full.view.clone();
        view.model = String::new();
        let s = Snapshot::of(view, full.answer.clone(), None, None);
        assert_eq!(s.view.explain, None);
        assert_eq!(s.view.matrix, None);
        assert_eq!(s.view.model, "m", "the view names the model that ran it");
        let r = s.replay().expect("the answer alone replays");
        assert!(r.explanation.is_none() && r.matrix.is_none());
    }
}
