//! The page's three jobs (generate, explain, all steps), each a stream the one runner
//! reads into its result, and `restore`: bringing the page to a view by computing only what
//! it does not already show.

use leptos::prelude::*;
use leptos::server_fn::codec::TextStream;
use tokenlens::{ExplainRequest, StreamEvent, TargetSpec};

use crate::pages::api::{explain, explain_steps, generate, read_events, Outcome};
use crate::record::Task;
use crate::state::{AnswerState, Context, Input, MatrixState, Partial, Streamed, ViewState};

/// The status line of a stream event, if it changes it.
fn stage_text(ev: &StreamEvent) -> Option<String> {
    match ev {
        StreamEvent::Stage { stage, method } => Some(match method {
            Some(m) => format!("{stage:?} pass: {}…", m.name()).to_lowercase(),
            None => format!("{stage:?}…").to_lowercase(),
        }),
        StreamEvent::Progress {
            stage,
            method,
            done,
            total,
        } => {
            let pass = match method {
                Some(m) => format!("{stage:?} pass: {}", m.name()),
                None => format!("{stage:?}"),
            };
            let pct = 100 * done / (*total).max(1);
            Some(format!("{}… {pct}%", pass.to_lowercase()))
        }
        StreamEvent::Queued { position } => Some(format!(
            "waiting for the model: {} in line…",
            crate::format::ordinal(*position)
        )),
        _ => None,
    }
}

/// How far a pass has come, while it runs (a `progress` event before its last layer).
fn pass_fraction(ev: &StreamEvent) -> Option<f64> {
    match ev {
        StreamEvent::Progress { done, total, .. } if done < total => {
            Some(*done as f64 / (*total).max(1) as f64)
        }
        _ => None,
    }
}

/// Whether a run is going, what it is doing, and how the last one ended.
#[derive(Clone, Copy)]
pub struct Status {
    /// A run is going.
    pub running: RwSignal<bool>,
    /// The status line.
    pub stage: RwSignal<Option<String>>,
    /// The running stage's progress bar (its units of work done), shown only mid-stage.
    pub progress: RwSignal<Option<f64>>,
    /// The last run's error.
    pub error: RwSignal<Option<String>>,
    run_id: RwSignal<u64>,
}

impl Status {
    /// No run yet; `error` to show from the start (a stored view that cannot be shown).
    pub fn new(error: Option<String>) -> Self {
        Status {
            running: RwSignal::new(false),
            stage: RwSignal::new(None),
            progress: RwSignal::new(None),
            error: RwSignal::new(error),
            run_id: RwSignal::new(0),
        }
    }

    /// Starts a run, superseding any other; returns its "still current" test.
    fn begin(self) -> impl Fn() -> bool + Copy {
        let id = self.run_id.get_untracked() + 1;
        self.run_id.set(id);
        self.running.set(true);
        self.error.set(None);
        self.stage.set(Some("sending…".into()));
        let run_id = self.run_id;
        move || run_id.get_untracked() == id
    }

    fn on_event(self, ev: &StreamEvent) {
        if let Some(s) = stage_text(ev) {
            self.stage.set(Some(s));
            self.progress.set(pass_fraction(ev));
        }
    }

    fn finish(self, outcome: &Outcome, current: bool) {
        if !current {
            return;
        }
        self.running.set(false);
        self.progress.set(None);
        match outcome {
            Outcome::Done => self.stage.set(Some("done".into())),
            Outcome::Superseded => {}
            Outcome::Failed(msg) => {
                self.error.set(Some(msg.clone()));
                self.stage.set(None);
            }
        }
    }

    /// Cancels the run going (its stream is dropped, which ends it on the server).
    pub fn cancel(self) {
        self.run_id.update(|i| *i += 1);
        self.running.set(false);
        self.progress.set(None);
        self.stage.set(Some("cancelled".into()));
    }
}

/// What the page has computed, and for which view.
#[derive(Clone, Copy)]
pub struct Results {
    /// The explanation.
    pub result: RwSignal<Option<Partial>>,
    /// The generated answer.
    pub answer: RwSignal<Option<AnswerState>>,
    /// The all-steps matrix.
    pub matrix: RwSignal<Option<MatrixState>>,
    /// What `result` was computed for (None while it streams).
    pub result_for: RwSignal<Option<Context>>,
    /// What `matrix` was computed for.
    pub matrix_for: RwSignal<Option<(Input, tokenlens::Method)>>,
}

impl Results {
    /// The results replayed from a stored view (`shown`), or none.
    pub fn new(replayed: crate::state::Replayed, shown: Option<&ViewState>) -> Self {
        Results {
            result: RwSignal::new(replayed.explanation),
            answer: RwSignal::new(replayed.answer),
            matrix: RwSignal::new(replayed.matrix),
            result_for: RwSignal::new(shown.map(ViewState::context)),
            matrix_for: RwSignal::new(shown.and_then(ViewState::matrix_context)),
        }
    }

    /// The explanation in view re-targeted at the token `request` explains, when that token
    /// is one of its explained candidates and everything else (model, context, no contrast)
    /// is the same.
    fn instant_candidate(self, v: &ViewState, request: &ExplainRequest) -> Option<Partial> {
        let TargetSpec::Id(id) = request.target else {
            return None;
        };
        if request.contrast.is_some() {
            return None;
        }
        let same_input = self
            .result_for
            .with_untracked(|k| k.as_ref().is_some_and(|k| k.input == v.input()));
        if !same_input {
            return None;
        }
        self.result.with_untracked(|r| {
            let r = r.as_ref()?;
            let target = r.target.as_ref()?;
            let same = r.continuation == request.continuation && target.contrast.is_none();
            same.then(|| r.with_target(id)).flatten()
        })
    }
}

/// Empties `s` unless it is empty already (a write wakes what reads it, even of the same
/// value: the answer, say, would be drawn again under a pointer pressing on it).
fn clear<T: Send + Sync + 'static>(s: RwSignal<Option<T>>) {
    if s.with_untracked(Option::is_some) {
        s.set(None);
    }
}

/// The page's runner: its status, its results, and what to clear when a run starts.
#[derive(Clone, Copy)]
pub struct Runs {
    /// Run status.
    pub status: Status,
    /// Results.
    pub results: Results,
    /// The view the page shows.
    pub shown: RwSignal<ViewState>,
    /// Clears what belongs to the previous run (tooltip, share link).
    pub on_begin: Callback<()>,
}

impl Runs {
    /// Reads one job's stream into `into`, accumulating in `fresh`; shows each change unless
    /// `hold` (something else is in view until it is complete). On completion the result
    /// keeps the server's seal.
    async fn stream<T: Streamed + Clone + Send + Sync + 'static>(
        self,
        response: Result<TextStream, leptos::prelude::ServerFnError>,
        current: impl Fn() -> bool,
        task: Task,
        into: RwSignal<Option<T>>,
        mut fresh: T,
        hold: bool,
    ) -> Outcome {
        let status = self.status;
        let (outcome, transcript) = read_events(response, &current, |ev| {
            status.on_event(&ev);
            if fresh.apply(&ev) {
                if let Some(s) = fresh.status(&ev) {
                    status.stage.set(Some(s));
                }
                if !hold {
                    into.set(Some(fresh.clone()));
                }
            }
        })
        .await;
        if outcome == Outcome::Done {
            fresh.seal(transcript.into_record(task));
            into.set(Some(fresh));
        }
        status.finish(&outcome, current());
        outcome
    }

    fn begin(self) -> impl Fn() -> bool + Copy {
        self.on_begin.run(());
        self.status.begin()
    }

    /// Explains what `v.explain` names: the prompt's next token, `v`'s answer token at a
    /// step, or a span of the answer.
    async fn run_explain(self, v: ViewState) -> Outcome {
        let r = self.results;
        let ids = r
            .answer
            .with_untracked(|a| a.as_ref().map(AnswerState::ids).unwrap_or_default());
        let request = match v.explain_request(&ids) {
            Ok(Some(req)) => req,
            Ok(None) => return Outcome::Done,
            Err(msg) => {
                self.status.error.set(Some(msg.clone()));
                return Outcome::Failed(msg);
            }
        };
        let step = v.explain.as_ref().and_then(|e| e.step);
        // A candidate of the explanation in view, already explained with it: shown at once,
        // while the request for this view runs and then replaces it (sealed, so shareable).
        let instant = r.instant_candidate(&v, &request);
        let hold = instant.is_some();
        let current = self.begin();
        r.result.set(instant);
        r.result_for.set(None);
        let fresh = Partial::new(
            &v.model,
            v.chat,
            v.thinking,
            step,
            request.continuation.clone(),
        );
        let task = Task::Explain(request.clone());
        let response = explain(v.model.clone(), request).await;
        let outcome = self
            .stream(response, current, task, r.result, fresh, hold)
            .await;
        if outcome == Outcome::Done {
            r.result_for.set(Some(v.context()));
        }
        outcome
    }

    async fn run_generate(self, v: ViewState) -> Outcome {
        let Some(request) = v.generate_request() else {
            return Outcome::Done;
        };
        let r = self.results;
        let current = self.begin();
        r.result.set(None);
        r.result_for.set(None);
        r.matrix.set(None);
        r.matrix_for.set(None);
        let fresh = AnswerState::new(&v.model, &request);
        r.answer.set(Some(fresh.clone()));
        let task = Task::Generate(request.clone());
        let response = generate(v.model.clone(), request).await;
        self.stream(response, current, task, r.answer, fresh, false)
            .await
    }

    async fn run_steps(self, v: ViewState) -> Outcome {
        let r = self.results;
        let ids = r
            .answer
            .with_untracked(|a| a.as_ref().map(AnswerState::ids));
        let (Some(method), Some(request)) = (v.matrix, ids.and_then(|ids| v.steps_request(&ids)))
        else {
            return Outcome::Done;
        };
        let current = self.begin();
        let fresh = MatrixState::new(method, request.generated.len());
        r.matrix.set(Some(fresh.clone()));
        r.matrix_for.set(None);
        let task = Task::Steps(request.clone());
        let response = explain_steps(v.model.clone(), request).await;
        let outcome = self
            .stream(response, current, task, r.matrix, fresh, false)
            .await;
        if outcome == Outcome::Done {
            r.matrix_for.set(v.matrix_context());
        }
        outcome
    }

    /// Brings the page to view `v`, computing only what it does not already show.
    /// `force`: recompute the last part even if it is shown (the same action again).
    pub async fn restore(self, v: ViewState, force: bool) {
        let r = self.results;
        self.shown.set(v.clone());
        match &v.generation {
            None => {
                clear(r.answer);
                clear(r.matrix);
            }
            Some(_) => {
                let have = r.answer.with_untracked(|a| {
                    a.as_ref()
                        .is_some_and(|a| a.stop.is_some() && a.input() == v.input())
                });
                let last = v.explain.is_none() && v.matrix.is_none();
                if (!have || (force && last)) && self.run_generate(v.clone()).await != Outcome::Done
                {
                    return;
                }
            }
        }
        match &v.explain {
            None => clear(r.result),
            Some(_) => {
                let have = r
                    .result_for
                    .with_untracked(|k| k.as_ref().is_some_and(|k| k.covers(&v.context())));
                let last = v.matrix.is_none();
                if (!have || (force && last)) && self.run_explain(v.clone()).await != Outcome::Done
                {
                    return;
                }
            }
        }
        match v.matrix {
            None => clear(r.matrix),
            Some(_) => {
                let have = r.matrix_for.with_untracked(|k| *k == v.matrix_context());
                if !have || force {
                    self.run_steps(v.clone()).await;
                }
            }
        }
    }
}
