//! The explain page: prompt in; a generated answer and streamed attributions out.
//!
//! Every action writes the view into the URL (see [`crate::state`]); the page recomputes
//! whatever the URL asks for that it does not already show, so a link, a reload and
//! back/forward all reproduce a view. A permalink page starts from a stored snapshot instead.

use leptos::prelude::*;
use leptos_router::hooks::{use_navigate, use_query_map};
use leptos_router::NavigateOptions;
use tokenlens::granularity::{Aggregate, Granularity};
use tokenlens::{ExplainRequest, Method, Sampling, StopReason, StreamEvent, TargetSpec};

use super::api::{explain, explain_steps, generate, list_models, read_events, share, Outcome};
use crate::components::answer::Answer;
use crate::components::colorbar::Colorbar;
use crate::components::step_matrix::{MatrixRow, StepMatrix};
use crate::components::token_view::TokenView;
use crate::components::trace_grid::TraceGrid;
use crate::components::{data_attr, Tip};
use crate::display::{Clip, Units};
use crate::export::Figure;
use crate::format::{ranks, sig3};
use crate::record::Task;
use crate::state::{
    AnswerState, ExplainSpec, GenSpec, MatrixState, Partial, Replayed, Snapshot, ViewState,
    DEFAULT_MAX_NEW,
};

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

fn granularity_label(g: Granularity) -> &'static str {
    match g {
        Granularity::Token => "tokens",
        Granularity::Word => "words",
        Granularity::Sentence => "sentences",
    }
}

/// What a computed part of the view was computed for: the view's model-dependent fields.
type Key = (
    String,
    String,
    bool,
    bool,
    Option<GenSpec>,
    Option<ExplainSpec>,
);

/// The explanation in view re-targeted at the token `request` explains, when that token is
/// one of its explained candidates and everything else (model, context, no contrast) is the
/// same.
fn instant_candidate(
    v: &ViewState,
    request: &ExplainRequest,
    result: RwSignal<Option<Partial>>,
    result_for: RwSignal<Option<Key>>,
) -> Option<Partial> {
    let TargetSpec::Id(id) = request.target else {
        return None;
    };
    if request.contrast.is_some() {
        return None;
    }
    let same_context = result_for.with_untracked(|k| {
        k.as_ref()
            .is_some_and(|(model, prompt, chat, thinking, generation, _)| {
                (model, prompt, chat, thinking, generation)
                    == (&v.model, &v.prompt, &v.chat, &v.thinking, &v.generation)
            })
    });
    if !same_context {
        return None;
    }
    result.with_untracked(|r| {
        let r = r.as_ref()?;
        let (_, target) = r.prediction.as_ref()?;
        let same = r.continuation == request.continuation && target.contrast.is_none();
        same.then(|| r.with_target(id)).flatten()
    })
}

fn key(v: &ViewState) -> Key {
    (
        v.model.clone(),
        v.prompt.clone(),
        v.chat,
        v.thinking,
        v.generation.clone(),
        v.explain.clone(),
    )
}

/// The page. `snapshot`: a stored view to show (a permalink) instead of the URL's.
#[component]
pub fn ExplainPage(#[prop(optional)] snapshot: Option<Snapshot>) -> impl IntoView {
    let query = use_query_map();
    let shared = snapshot.is_some();
    let initial = match &snapshot {
        Some(s) => s.view.clone(),
        None => ViewState::from_params(&query.get_untracked()),
    };
    // What was typed into the server-rendered page before this code ran, which hydrating the
    // form would overwrite; put back once the page is live (see the effect near the end).
    let early = std::cell::Cell::new(Some(crate::browser::early_edits()));
    // Until the page is live its buttons are off: a press then would do nothing.
    let live = RwSignal::new(false);
    // Re-fetched every 2 s while some model is still loading on the server.
    let models_tick = RwSignal::new(0u32);
    let models = Resource::new(move || models_tick.get(), |_| list_models());
    // The form (what the next action will use).
    let prompt = RwSignal::new(initial.prompt.clone());
    let model = RwSignal::new(initial.model.clone());
    let chat = RwSignal::new(initial.chat);
    let thinking = RwSignal::new(initial.thinking);
    let target_text = RwSignal::new(String::new());
    let contrast_text = RwSignal::new(String::new());
    let greedy = RwSignal::new(false);
    let sampling = RwSignal::new(Sampling::default());
    let max_new = RwSignal::new(DEFAULT_MAX_NEW);
    // What the page shows: the view, and how.
    let shown = RwSignal::new(initial.clone());
    let view_method = RwSignal::new(initial.method);
    let query_only = RwSignal::new(initial.query_only);
    let display = RwSignal::new(initial.display);
    // Results, and what each was computed for.
    let running = RwSignal::new(false);
    let stage = RwSignal::new(None::<String>);
    // The running pass's progress bar (layers done), shown only mid-pass.
    let progress = RwSignal::new(None::<f64>);
    let on_status = move |ev: &StreamEvent| {
        if let Some(s) = stage_text(ev) {
            stage.set(Some(s));
            progress.set(pass_fraction(ev));
        }
    };
    // A stored view shows what its sealed records replay to.
    let (replayed, replay_error) = match snapshot.as_ref().map(Snapshot::replay) {
        Some(Ok(r)) => (r, None),
        Some(Err(e)) => (
            Replayed::default(),
            Some(format!("this shared view cannot be shown: {e}")),
        ),
        None => (Replayed::default(), None),
    };
    let error = RwSignal::new(replay_error);
    let result = RwSignal::new(replayed.explanation);
    let answer = RwSignal::new(replayed.answer);
    let matrix = RwSignal::new(replayed.matrix);
    let result_for = RwSignal::new(snapshot.as_ref().map(|s| key(&s.view)));
    let matrix_for = RwSignal::new(snapshot.as_ref().map(|s| (key(&s.view), s.view.matrix)));
    let run_id = RwSignal::new(0u64);
    let hovered = RwSignal::new(None::<usize>);
    let tip = RwSignal::new(None::<Tip>);
    let share_link = RwSignal::new(None::<Result<String, String>>);
    // Whether the last link reached the clipboard (None while none is out).
    let link_copied = RwSignal::new(None::<bool>);

    // The form shows a view's settings.
    let fill_form = move |v: &ViewState| {
        if !v.model.is_empty() {
            model.set(v.model.clone());
        }
        prompt.set(v.prompt.clone());
        chat.set(v.chat);
        thinking.set(v.thinking);
        if let Some(g) = &v.generation {
            greedy.set(g.sampling.is_greedy());
            if !g.sampling.is_greedy() {
                sampling.set(g.sampling);
            }
            max_new.set(g.max_new_tokens);
        }
        let text = |t: Option<&TargetSpec>| match t {
            Some(TargetSpec::Text(s)) => s.clone(),
            _ => String::new(),
        };
        let e = v.explain.as_ref();
        target_text.set(text(e.map(|e| &e.target)));
        contrast_text.set(text(e.and_then(|e| e.contrast.as_ref())));
        view_method.set(v.method);
        display.set(v.display);
        query_only.set(v.query_only);
    };
    fill_form(&initial);

    // Starts a run: supersedes any other; returns its "still current" test.
    let begin = move || {
        let id = run_id.get_untracked() + 1;
        run_id.set(id);
        running.set(true);
        error.set(None);
        tip.set(None);
        share_link.set(None);
        link_copied.set(None);
        stage.set(Some("sending…".into()));
        move || run_id.get_untracked() == id
    };
    let finish = move |outcome: &Outcome, current: bool| {
        if !current {
            return;
        }
        running.set(false);
        progress.set(None);
        match outcome {
            Outcome::Done => stage.set(Some("done".into())),
            Outcome::Superseded => {}
            Outcome::Failed(msg) => {
                error.set(Some(msg.clone()));
                stage.set(None);
            }
        }
    };

    // Explains the token `v.explain` names: of the prompt, or of `v`'s answer at a step.
    let run_explain = move |v: ViewState| async move {
        let ids = answer.with_untracked(|a| a.as_ref().map(AnswerState::ids).unwrap_or_default());
        let request = match v.explain_request(&ids) {
            Ok(Some(r)) => r,
            Ok(None) => return Outcome::Done,
            Err(msg) => {
                error.set(Some(msg.clone()));
                return Outcome::Failed(msg);
            }
        };
        let step = v.explain.as_ref().and_then(|e| e.step);
        let continuation = request.continuation.clone();
        // A candidate of the explanation in view, already explained with it: shown at once,
        // while the request for this view runs and then replaces it (sealed, so shareable).
        let instant = instant_candidate(&v, &request, result, result_for);
        let current = begin();
        result.set(instant.clone());
        result_for.set(None);
        let task = Task::Explain(request.clone());
        let mut fresh = Partial::new(step, continuation.clone());
        let (outcome, transcript) =
            read_events(explain(v.model.clone(), request).await, current, |ev| {
                on_status(&ev);
                fresh.apply(&ev);
                let changed = matches!(
                    ev,
                    StreamEvent::Tokens { .. }
                        | StreamEvent::Prediction { .. }
                        | StreamEvent::Method { .. }
                        | StreamEvent::Candidate { .. }
                );
                if changed && instant.is_none() {
                    result.set(Some(fresh.clone()));
                }
            })
            .await;
        if outcome == Outcome::Done {
            fresh.sealed = transcript.into_record(task);
            result.set(Some(fresh));
            result_for.set(Some(key(&v)));
        }
        finish(&outcome, current());
        outcome
    };

    let run_generate = move |v: ViewState| async move {
        let Some(request) = v.generate_request() else {
            return Outcome::Done;
        };
        let current = begin();
        result.set(None);
        result_for.set(None);
        matrix.set(None);
        matrix_for.set(None);
        answer.set(Some(AnswerState::new(&v.model, &request)));
        let task = Task::Generate(request.clone());
        let (outcome, transcript) =
            read_events(generate(v.model.clone(), request).await, current, |ev| {
                on_status(&ev);
                answer.update(|a| {
                    if let Some(a) = a {
                        a.apply(&ev);
                        if matches!(ev, StreamEvent::Generated { .. }) {
                            stage.set(Some(format!("generating… {} tokens", a.tokens.len())));
                        }
                    }
                });
            })
            .await;
        if outcome == Outcome::Done {
            answer.update(|a| {
                if let Some(a) = a {
                    a.sealed = transcript.into_record(task)
                }
            });
        }
        finish(&outcome, current());
        outcome
    };

    let run_steps = move |v: ViewState| async move {
        let ids = answer.with_untracked(|a| a.as_ref().map(AnswerState::ids));
        let (Some(method), Some(request)) = (v.matrix, ids.and_then(|ids| v.steps_request(&ids)))
        else {
            return Outcome::Done;
        };
        let current = begin();
        matrix.set(Some(MatrixState::new(method)));
        matrix_for.set(None);
        let total = request.generated.len();
        let task = Task::Steps(request.clone());
        let (outcome, transcript) = read_events(
            explain_steps(v.model.clone(), request).await,
            current,
            |ev| {
                on_status(&ev);
                matrix.update(|m| {
                    if let Some(m) = m {
                        m.apply(&ev);
                        if matches!(ev, StreamEvent::Step { .. }) {
                            stage.set(Some(format!("all steps: {} of {total}", m.rows.len())));
                        }
                    }
                })
            },
        )
        .await;
        if outcome == Outcome::Done {
            matrix.update(|m| {
                if let Some(m) = m {
                    m.sealed = transcript.into_record(task)
                }
            });
            matrix_for.set(Some((key(&v), v.matrix)));
        }
        finish(&outcome, current());
        outcome
    };

    // Brings the page to view `v`, computing only what it does not already show.
    // `force`: recompute the last part even if it is shown (the same action again).
    let restore = move |v: ViewState, force: bool| async move {
        shown.set(v.clone());
        match &v.generation {
            None => {
                answer.set(None);
                matrix.set(None);
            }
            Some(g) => {
                let have = answer.with_untracked(|a| {
                    a.as_ref().is_some_and(|a| {
                        a.model == v.model
                            && a.prompt == v.prompt
                            && a.chat == v.chat
                            && a.thinking == v.thinking
                            && &a.spec == g
                            && a.stop.is_some()
                    })
                });
                let last = v.explain.is_none() && v.matrix.is_none();
                if (!have || (force && last)) && run_generate(v.clone()).await != Outcome::Done {
                    return;
                }
            }
        }
        match &v.explain {
            None => result.set(None),
            Some(_) => {
                let have = result_for.with_untracked(|k| k.as_ref() == Some(&key(&v)));
                let last = v.matrix.is_none();
                if (!have || (force && last)) && run_explain(v.clone()).await != Outcome::Done {
                    return;
                }
            }
        }
        match v.matrix {
            None => matrix.set(None),
            Some(_) => {
                let have = matrix_for.with_untracked(|k| k.as_ref() == Some(&(key(&v), v.matrix)));
                if !have || force {
                    run_steps(v.clone()).await;
                }
            }
        }
    };

    // Moves to view `v`: a new history entry (`push`) or an amended one. On a permalink the
    // live view opens at `/`.
    let navigate = use_navigate();
    let go = move |v: ViewState, push: bool| {
        let url = format!("/{}", v.to_query());
        let same = !shared && query.with_untracked(|q| ViewState::from_params(q) == v);
        if same && push {
            // The same action again (after an error, say): run it, the URL stays.
            leptos::task::spawn_local(restore(v, true));
            return;
        }
        if !push {
            shown.set(v);
            if shared {
                return;
            }
        }
        navigate(
            &url,
            NavigateOptions {
                replace: !push,
                scroll: false,
                ..NavigateOptions::default()
            },
        );
    };
    let go = StoredValue::new(go);
    let go = move |v: ViewState, push: bool| go.with_value(|g| g(v, push));

    // The URL drives the view: on load, and on every navigation (actions, back/forward).
    if !shared {
        Effect::new(move |first: Option<()>| {
            let v = query.with(ViewState::from_params);
            let now = shown.get_untracked();
            let differs = key(&v) != key(&now) || v.matrix != now.matrix;
            if differs || (first.is_none() && (v.generation.is_some() || v.explain.is_some())) {
                fill_form(&v);
                leptos::task::spawn_local(restore(v, false));
            } else if v != now {
                fill_form(&v);
                shown.set(v);
            }
        });
    }

    // The view with the form's settings and `change` applied.
    let from_form = move |change: &dyn Fn(&mut ViewState)| {
        let mut v = shown.get_untracked();
        let same_prompt = v.model == model.get_untracked()
            && v.prompt == prompt.get_untracked()
            && v.chat == chat.get_untracked()
            && v.thinking == thinking.get_untracked();
        if !same_prompt {
            v.generation = None;
            v.explain = None;
            v.matrix = None;
        }
        v.model = model.get_untracked();
        v.prompt = prompt.get_untracked();
        v.chat = chat.get_untracked();
        v.thinking = thinking.get_untracked();
        v.method = view_method.get_untracked();
        v.display = display.get_untracked();
        v.query_only = query_only.get_untracked();
        change(&mut v);
        v
    };
    let form_generation = move || GenSpec {
        sampling: if greedy.get_untracked() {
            Sampling::greedy()
        } else {
            sampling.get_untracked()
        },
        max_new_tokens: max_new.get_untracked(),
    };

    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let spec = |t: String| (!t.is_empty()).then_some(TargetSpec::Text(t));
        let e = ExplainSpec {
            target: spec(target_text.get_untracked()).unwrap_or_default(),
            contrast: spec(contrast_text.get_untracked()),
            step: None,
        };
        go(from_form(&|v| v.explain = Some(e.clone())), true);
    };
    let start_generate = move || {
        let g = form_generation();
        go(
            from_form(&|v| {
                v.generation = Some(g.clone());
                v.explain = None;
                v.matrix = None;
            }),
            true,
        );
    };
    let explain_with = move |e: ExplainSpec| {
        let mut v = shown.get_untracked();
        v.explain = Some(e);
        go(v, true);
    };
    let start_steps = move || {
        let mut v = shown.get_untracked();
        v.matrix = Some(view_method.get_untracked());
        go(v, true);
    };
    let cancel = move |_| {
        run_id.update(|i| *i += 1);
        running.set(false);
        progress.set(None);
        stage.set(Some("cancelled".into()));
    };
    let pick_step = Callback::new(move |k: usize| {
        explain_with(ExplainSpec {
            target: TargetSpec::Argmax,
            contrast: None,
            step: Some(k),
        })
    });
    // View settings amend the current history entry.
    let restyle = move || {
        let mut v = shown.get_untracked();
        v.method = view_method.get_untracked();
        v.display = display.get_untracked();
        v.query_only = query_only.get_untracked();
        if v != shown.get_untracked() {
            go(v, false);
        }
    };
    Effect::new(move |_| {
        view_method.track();
        display.track();
        query_only.track();
        restyle();
    });
    let share_view = move |_| {
        let snapshot = Snapshot::of(
            shown.get_untracked(),
            answer.with_untracked(|a| a.as_ref().and_then(|a| a.sealed.clone())),
            result.with_untracked(|r| r.as_ref().and_then(|r| r.sealed.clone())),
            matrix.with_untracked(|m| m.as_ref().and_then(|m| m.sealed.clone())),
        );
        // What the server would refuse, said at once.
        let limit = models.with_untracked(|m| {
            m.as_ref()
                .and_then(|r| r.as_ref().ok())
                .map(|l| l.share_max_bytes)
        });
        let size = serde_json::to_string(&snapshot).map_or(0, |j| j.len() as u64);
        let refused = match (snapshot.replay(), limit) {
            (Err(e), _) => Some(format!("nothing to share yet: {e}")),
            (_, Some(limit)) if size > limit => Some(format!(
                "this view is too large to share ({}; this server stores views up to {})",
                crate::format::size(size),
                crate::format::size(limit),
            )),
            _ => None,
        };
        if let Some(msg) = refused {
            share_link.set(Some(Err(msg)));
            return;
        }
        share_link.set(Some(Ok("saving…".into())));
        link_copied.set(None);
        leptos::task::spawn_local(async move {
            let link = share(snapshot).await.map_err(|e| e.to_string()).map(|id| {
                let origin = window().location().origin().unwrap_or_default();
                format!("{origin}/s/{id}")
            });
            let copied = match &link {
                Ok(l) => Some(crate::browser::copy_text(l).await),
                Err(_) => None,
            };
            share_link.set(Some(link));
            link_copied.set(copied);
        });
    };

    // The units in view (tokens, words or sentences) of the current explanation.
    let units = Memo::new(move |_| {
        result.with(|r| {
            r.as_ref().map(|r| {
                let range = match (query_only.get(), r.query_span) {
                    (true, Some([a, b])) => (a, b),
                    _ => (0, r.tokens.len()),
                };
                Units::new(&r.tokens, display.get().granularity, range)
            })
        })
    });

    let model_options = move || {
        models.get().map(|res| match res {
            Ok(list) => {
                // A view from a link may name a model this server does not have.
                let current = model.get_untracked();
                let missing = (!current.is_empty()
                    && !list.models.iter().any(|m| m.name == current)
                    && !list.loading.contains(&current))
                .then(|| {
                    view! {
                        <option value=current.clone() disabled=true selected=true>{format!("{current} (not on this server)")}</option>
                    }
                });
                let ready = list
                    .models
                    .into_iter()
                    .map(|m| {
                        let label = format!("{} ({} layers)", m.name, m.n_layers);
                        let on = m.name == current;
                        view! { <option value=m.name.clone() selected=on>{label}</option> }
                    })
                    .collect_view();
                let loading = list
                    .loading
                    .into_iter()
                    .map(|spec| {
                        view! { <option value=spec.clone() disabled=true>{format!("{spec} (loading…)")}</option> }
                    })
                    .collect_view();
                view! { {missing}{ready}{loading} }.into_any()
            }
            Err(e) => {
                view! { <option value="">{format!("models unavailable: {e}")}</option> }.into_any()
            }
        })
    };
    // The picker starts on the server's first (default) model.
    Effect::new(move || {
        if let Some(Ok(list)) = models.get() {
            if model.get_untracked().is_empty() {
                if let Some(first) = list.models.first() {
                    model.set(first.name.clone());
                    // A view from the URL keeps its own chat setting.
                    if shown.with_untracked(|v| v.generation.is_none() && v.explain.is_none()) {
                        chat.set(first.chat_template);
                    }
                }
            }
            if !list.loading.is_empty() {
                set_timeout(
                    move || models_tick.update(|t| *t += 1),
                    std::time::Duration::from_secs(2),
                );
            }
        }
    });
    // Picking a model without a chat template turns the template off (and one with, on).
    let pick_model = move |name: String| {
        let info = models.with_untracked(|m| {
            m.as_ref()
                .and_then(|r| r.as_ref().ok())
                .and_then(|l| l.models.iter().find(|m| m.name == name).cloned())
        });
        if let Some(info) = info {
            chat.set(info.chat_template);
        }
        model.set(name);
    };

    let method_toggles = move || {
        Method::ALL
            .into_iter()
            .map(|m| {
                let pending = move || {
                    result.with(|r| r.as_ref().is_some_and(|r| !r.methods.contains_key(&m)))
                };
                view! {
                    <label class="method" class:pending=pending title=m.info().about>
                        <input
                            type="radio"
                            name="method"
                            value=m.name()
                            checked=view_method.get_untracked() == m
                            prop:checked=move || view_method.get() == m
                            on:change=move |_| view_method.set(m)
                        />
                        {m.label()}
                    </label>
                }
            })
            .collect_view()
    };

    let answer_view = move || {
        answer.get().map(|a| {
            let selected = result.with(|r| r.as_ref().and_then(|r| r.step));
            let stop = a.stop.map(|s| match s {
                StopReason::EndOfTurn => "end of turn",
                StopReason::MaxNewTokens => "max new tokens reached",
                StopReason::ContextFull => "context full",
            });
            let n = a.tokens.len();
            let done = a.stop.is_some();
            view! {
                <section class="answer-section">
                    <h2>"Answer " <span class="hint">"(click a token to see why it was generated)"</span></h2>
                    <Answer tokens=a.tokens selected=selected on_pick=pick_step/>
                    <p class="answer-meta" data-testid="answer-meta">
                        {format!("{n} tokens")}
                        {stop.map(|s| format!(" · stopped: {s}"))}
                    </p>
                    <div class="row">
                        <button
                            type="button"
                            name="all_steps"
                            disabled=move || !live.get() || running.get() || !done || n == 0
                            on:click=move |_| start_steps()
                            title="explain every answer token against its context"
                        >
                            {move || format!("All steps ({})", view_method.get().label())}
                        </button>
                    </div>
                </section>
            }
            .into_any()
        })
    };

    let prediction_view = move || {
        result.with(|r| {
            r.as_ref().and_then(|r| r.prediction.clone().map(|p| (p, r.step))).map(|((p, t), step)| {
                let target_id = t.token.id;
                let continuation = result.with_untracked(|r| r.as_ref().map(|r| r.continuation.len()));
                let top = p
                    .top
                    .iter()
                    .map(|c| {
                        let id = c.id;
                        let chosen = c.id == t.token.id;
                        let contrasted = t.contrast.as_ref().is_some_and(|x| x.id == id);
                        view! {
                            <li>
                                <button
                                    type="button"
                                    class="candidate"
                                    class:chosen=chosen
                                    title="explain this token instead"
                                    data-token-id=id.to_string()
                                    on:click=move |_| explain_with(ExplainSpec { target: TargetSpec::Id(id), contrast: None, step })
                                >
                                    <span class="cand-text">{format!("{:?}", c.text)}</span>
                                    <span class="cand-prob">{format!("{:.1}%", c.prob * 100.0)}</span>
                                </button>
                                <button
                                    type="button"
                                    class="versus"
                                    class:chosen=contrasted
                                    disabled=chosen
                                    title="why the target rather than this token"
                                    data-token-id=id.to_string()
                                    on:click=move |_| {
                                        explain_with(ExplainSpec { target: TargetSpec::Id(target_id), contrast: Some(TargetSpec::Id(id)), step })
                                    }
                                >
                                    "vs"
                                </button>
                            </li>
                        }
                    })
                    .collect_view();
                let what = match (step, continuation) {
                    (Some(k), _) => format!("answer token {}", k + 1),
                    _ => "next token".to_string(),
                };
                let contrast = t.contrast.clone().map(|c| {
                    view! {
                        <p data-testid="contrast">
                            "rather than " <strong>{format!("{:?}", c.text)}</strong>
                            {format!(
                                " (id {}, p = {:.3}): scores explain logit({:?}) − logit({:?}) = {}",
                                c.id,
                                c.prob,
                                t.token.text,
                                c.text,
                                sig3(t.explained_logit()),
                            )}
                        </p>
                    }
                });
                view! {
                    <div class="prediction" data-testid="prediction">
                        <p>
                            {format!("Model's {what}: ")} <strong>{format!("{:?}", p.best.text)}</strong>
                            {format!(" (p = {:.3}, logit {})", p.best.prob, sig3(p.best.logit))}
                        </p>
                        <p data-testid="target">
                            "Explaining: " <strong>{format!("{:?}", t.token.text)}</strong>
                            {format!(
                                " (id {}, rank {}, p = {:.3}, logit {})",
                                t.token.id,
                                t.rank,
                                t.token.prob,
                                sig3(t.token.logit),
                            )}
                        </p>
                        {contrast}
                        <ol class="top-k">{top}</ol>
                    </div>
                }
                .into_any()
            })
        })
    };

    let tokens_view = move || {
        let d = display.get();
        result.with(|r| {
            let r = r.as_ref()?;
            let u = units.get()?;
            let m = view_method.get();
            let res = r.methods.get(&m);
            let scores = res.map(|x| u.scores(&x.scores, d.aggregate));
            let scale = d.scale(
                m.is_signed(),
                scores.as_ref().map_or(&[][..], |s| &s[u.range.0..u.range.1]),
            );
            let legend = scores.is_some().then(|| {
                view! {
                    <Colorbar
                        scale=scale
                        label=format!("{} per {}", m.label(), d.granularity.name())
                    />
                }
            });
            let conservation = res.and_then(|x| x.conservation.clone()).map(|c| {
                view! {
                    <p class="conservation">
                        {format!(
                            "Conservation: inputs hold {:.1}% of the explained logit, the last layer {:.1}%.",
                            c.input * 100.0,
                            c.last_layer * 100.0,
                        )}
                    </p>
                }
            });
            let waiting = res
                .is_none()
                .then(|| view! { <p class="waiting">{format!("computing {}…", m.label())}</p> });
            Some(view! {
                {legend}
                {waiting}
                <TokenView
                    units=u.labels(&r.tokens)
                    scores=scores
                    scale=scale
                    range=u.range
                    hovered=hovered
                />
                {conservation}
            }
            .into_any())
        })
    };

    let grid_view = move || {
        let d = display.get();
        result.with(|r| {
            let r = r.as_ref()?;
            let u = units.get()?;
            let m = view_method.get();
            let res = r.methods.get(&m)?;
            Some(
                view! {
                    <h2>
                        {format!(
                            "Layer × {} relevance ({}, {} layers)",
                            d.granularity.name(),
                            m.label(),
                            r.n_layers,
                        )}
                    </h2>
                    <TraceGrid
                        tokens=u.labels(&r.tokens)
                        trace=u.trace(&res.trace, d.aggregate)
                        display=d
                        range=u.range
                        hovered=hovered
                        tip=tip
                    />
                }
                .into_any(),
            )
        })
    };

    let matrix_view = move || {
        let d = display.get();
        matrix.with(|mx| {
            let mx = mx.as_ref()?;
            let method = mx.method?;
            let header = view! {
                <h2>{format!("All steps: each answer token × its context ({})", method.label())}</h2>
            };
            if mx.tokens.is_empty() {
                return Some(view! { {header} <p class="waiting">"computing…"</p> }.into_any());
            }
            let range = match (query_only.get(), mx.query_span) {
                (true, Some([a, _])) => (a, mx.tokens.len()),
                _ => (0, mx.tokens.len()),
            };
            let u = Units::new(&mx.tokens, d.granularity, range);
            let rows: Vec<MatrixRow> = mx
                .rows
                .iter()
                .map(|row| {
                    let scores = &row.scores[method.name()];
                    let n = scores.len();
                    MatrixRow {
                        step: row.step,
                        label: row.target.token.text.clone(),
                        scores: u
                            .groups
                            .iter()
                            .map(|g| {
                                (g.start < n).then(|| d.aggregate.apply(&scores[g.start..g.end.min(n)]))
                            })
                            .collect(),
                    }
                })
                .collect();
            Some(view! {
                {header}
                <StepMatrix
                    units=u.labels(&mx.tokens)
                    range=u.range
                    rows=rows
                    signed=method.is_signed()
                    display=d
                    tip=tip
                />
            }
            .into_any())
        })
    };

    // Token hover, delegated: one listener for all spans.
    let token_hover = move |ev: leptos::ev::MouseEvent| {
        let i: Option<usize> = data_attr(&ev, "data-token-index");
        hovered.set(i);
        tip.set(i.and_then(|i| {
            let u = units.get_untracked()?;
            let d = display.get_untracked();
            result.with_untracked(|r| {
                let r = r.as_ref()?;
                let m = view_method.get_untracked();
                let g = u.groups.get(i)?;
                let mut lines = if g.end - g.start == 1 {
                    let tok = &r.tokens[g.start];
                    vec![format!("{:?} (id {}, #{})", tok.text, tok.id, g.start)]
                } else {
                    vec![format!("{:?} (tokens #{}–#{})", g.text, g.start, g.end - 1)]
                };
                if r.tokens[g.start].generated {
                    lines.push("generated".into());
                }
                if let Some(res) = r.methods.get(&m) {
                    let scores = u.scores(&res.scores, d.aggregate);
                    let rank = ranks(&scores)[i];
                    let how = match (d.granularity, d.aggregate) {
                        (Granularity::Token, _) => "",
                        (_, Aggregate::Sum) => " (sum)",
                        (_, Aggregate::MaxAbs) => " (max |score|)",
                    };
                    lines.push(format!(
                        "{}{how}: {} (rank {rank} of {})",
                        m.label(),
                        sig3(scores[i]),
                        scores.len()
                    ));
                }
                Some(Tip {
                    x: ev.client_x() as f64,
                    y: ev.client_y() as f64,
                    lines,
                })
            })
        }));
    };
    let token_leave = move |_| {
        hovered.set(None);
        tip.set(None);
    };

    let num_input = move |name: &'static str,
                          label: &'static str,
                          step: &'static str,
                          get: Signal<String>,
                          set: Callback<String>| {
        view! {
            <label class="num">
                {label}
                <input
                    type="number"
                    name=name
                    step=step
                    // The attribute is what the server renders (the field's default, which
                    // tells an early edit apart); the property follows the state.
                    value=get.get_untracked()
                    prop:value=move || get.get()
                    on:change=move |ev| set.run(event_target_value(&ev))
                />
            </label>
        }
    };
    let set_sampling = move |f: fn(&mut Sampling, &str)| {
        Callback::new(move |v: String| sampling.update(|s| f(s, v.trim())))
    };

    // The figure of what is in view: units, colors, legend and grid, as the page shows them.
    let figure = move || -> Option<Figure> {
        let d = display.get_untracked();
        let m = view_method.get_untracked();
        let u = units.get_untracked()?;
        let v = shown.get_untracked();
        result.with_untracked(|r| {
            let r = r.as_ref()?;
            let res = r.methods.get(&m)?;
            let (a, b) = u.range;
            let scores = u.scores(&res.scores, d.aggregate);
            let labels = u.labels(&r.tokens);
            let trace: Vec<Vec<f32>> = u
                .trace(&res.trace, d.aggregate)
                .into_iter()
                .map(|row| row[a..b].to_vec())
                .collect();
            let target = r.prediction.as_ref().map(|(_, t)| {
                let vs = t
                    .contrast
                    .as_ref()
                    .map(|c| format!(" rather than {:?}", c.text))
                    .unwrap_or_default();
                format!("{:?}{vs}", t.token.text)
            });
            Some(Figure {
                title: format!(
                    "{} · {} · explaining {}",
                    if v.model.is_empty() {
                        "default model"
                    } else {
                        &v.model
                    },
                    m.label(),
                    target.unwrap_or_default()
                ),
                subtitle: format!("Prompt: {}", v.prompt),
                scale: d.scale(m.is_signed(), &scores[a..b]),
                units: labels[a..b]
                    .iter()
                    .cloned()
                    .zip(scores[a..b].iter().copied())
                    .collect(),
                legend: format!("{} per {}", m.label(), d.granularity.name()),
                layer_scales: trace.iter().map(|row| d.scale(true, row)).collect(),
                trace,
            })
        })
    };
    let export_error = RwSignal::new(None::<String>);
    let export = move |format: &'static str| {
        export_error.set(None);
        let base = format!("tokenlens-{}", view_method.get_untracked().name());
        let done = move |r: Result<(), String>| {
            if let Err(e) = r {
                export_error.set(Some(e));
            }
        };
        if format == "json" {
            let v = shown.get_untracked();
            let json = result.with_untracked(|r| {
                r.as_ref()
                    .and_then(|r| crate::export::explanation(&v.model, v.chat, v.thinking, r))
                    .and_then(|e| serde_json::to_string_pretty(&e).ok())
            });
            match json {
                Some(j) => done(crate::browser::download_text(
                    &format!("{base}.json"),
                    "application/json",
                    &j,
                )),
                None => done(Err("nothing to export yet".into())),
            }
            return;
        }
        let Some(fig) = figure() else {
            return done(Err(
                "nothing to export yet: wait for the method's scores".into()
            ));
        };
        match format {
            "svg" => done(crate::browser::download_text(
                &format!("{base}.svg"),
                "image/svg+xml",
                &fig.svg(),
            )),
            "html" => done(crate::browser::download_text(
                &format!("{base}.html"),
                "text/html",
                &fig.html(),
            )),
            _ => {
                let (w, h) = fig.size();
                leptos::task::spawn_local(async move {
                    done(
                        crate::browser::download_png(&format!("{base}.png"), &fig.svg(), w, h, 2)
                            .await,
                    );
                });
            }
        }
    };
    let export_ready = move || {
        let m = view_method.get();
        if !live.get() {
            return false;
        }
        result.with(|r| r.as_ref().is_some_and(|r| r.methods.contains_key(&m)))
    };
    let export_bar = view! {
        <div class="export-bar" data-testid="export-bar">
            <span class="label">"Export: "</span>
            <button type="button" name="export_png" disabled=move || !export_ready() on:click=move |_| export("png")
                title="the token view and the grid with legend and labels, 2× resolution">"PNG"</button>
            <button type="button" name="export_svg" disabled=move || !export_ready() on:click=move |_| export("svg")
                title="the token view and the grid with legend and labels, as vectors">"SVG"</button>
            <button type="button" name="export_html" disabled=move || !export_ready() on:click=move |_| export("html")
                title="a standalone page: colored tokens, hover scores, the grid; works offline">"HTML"</button>
            <button type="button" name="export_json" disabled=move || !export_ready() on:click=move |_| export("json")
                title="the explanation in the CLI's JSON schema (every method)">"JSON"</button>
            {move || export_error.get().map(|e| view! { <span class="error" data-testid="export-error">{e}</span> })}
        </div>
    }
    .into_any();

    let share_bar = view! {
        <div class="share-bar">
            {shared.then(|| view! {
                <span class="shared-note" data-testid="shared-note">
                    "A shared view, as it was stored: nothing was recomputed. "
                    <a href=move || format!("/{}", shown.get().to_query())>"Recompute it live"</a>
                </span>
            })}
            <button
                type="button"
                name="share"
                title="store this view and copy a link to it"
                disabled=move || !live.get() || running.get() || (result.with(Option::is_none) && answer.with(Option::is_none))
                on:click=share_view
            >
                "Share"
            </button>
            {move || share_link.get().map(|l| match l {
                Ok(link) => view! {
                    <input class="share-link" data-testid="share-link" readonly=true prop:value=link/>
                    {move || link_copied.get().map(|copied| view! {
                        <span class="share-copied" data-testid="share-copied">
                            {if copied { "link copied" } else { "copy the link from the box" }}
                        </span>
                    })}
                }.into_any(),
                Err(e) => view! { <span class="error" data-testid="share-error">{e}</span> }.into_any(),
            })}
        </div>
    }
    .into_any();

    // Effects run only in the browser, after hydration: the page is live from here on.
    Effect::new(move || {
        if let Some(edits) = early.take() {
            edits.replay();
        }
        live.set(true);
    });

    // Type-erased parts: the page's full view type otherwise exceeds rustc's query depth.
    let form = view! {
            <form class="controls" on:submit=submit>
                // No server-rendered text inside: Leptos writes a textarea's children unescaped
                // (a prompt holding "</textarea>" would break out), so only the property is set.
                <textarea
                    name="prompt"
                    rows="3"
                    placeholder="Type a prompt"
                    prop:value=move || prompt.get()
                    on:input=move |ev| prompt.set(event_target_value(&ev))
                ></textarea>
                <div class="row">
                    <label>
                        "Model "
                        <select
                            name="model"
                            prop:value=move || model.get()
                            on:change=move |ev| pick_model(event_target_value(&ev))
                        >
                            <Suspense fallback=|| view! { <option>"loading…"</option> }>
                                {model_options}
                            </Suspense>
                        </select>
                    </label>
                    <label>
                        <input
                            type="checkbox"
                            name="chat"
                            checked=chat.get_untracked()
                            prop:checked=move || chat.get()
                            on:change=move |ev| chat.set(event_target_checked(&ev))
                        />
                        " chat template"
                    </label>
                    <label title="The chat template's enable_thinking: the model may reason in a <think> block before answering (Qwen3; other templates ignore it)">
                        <input
                            type="checkbox"
                            name="thinking"
                            checked=thinking.get_untracked()
                            prop:checked=move || thinking.get()
                            prop:disabled=move || !chat.get()
                            on:change=move |ev| thinking.set(event_target_checked(&ev))
                        />
                        " thinking"
                    </label>
                    <label>
                        "Target "
                        <input
                            type="text"
                            name="target"
                            placeholder="most likely token"
                            prop:value=move || target_text.get()
                            on:input=move |ev| target_text.set(event_target_value(&ev))
                        />
                    </label>
                    <label>
                        "rather than "
                        <input
                            type="text"
                            name="contrast"
                            placeholder="(optional)"
                            prop:value=move || contrast_text.get()
                            on:input=move |ev| contrast_text.set(event_target_value(&ev))
                        />
                    </label>
                    <button type="submit" name="submit" disabled=move || !live.get() || running.get()>
                        "Explain next token"
                    </button>
                    <button type="button" name="generate" disabled=move || !live.get() || running.get() on:click=move |_| start_generate()>
                        "Generate"
                    </button>
                    <button type="button" name="cancel" disabled=move || !running.get() on:click=cancel>
                        "Cancel"
                    </button>
                </div>
                <div class="row gen-settings">
                    <span class="label">"Generation: "</span>
                    <label>
                        <input
                            type="checkbox"
                            name="greedy"
                            checked=greedy.get_untracked()
                            prop:checked=move || greedy.get()
                            on:change=move |ev| greedy.set(event_target_checked(&ev))
                        />
                        " greedy"
                    </label>
                    {num_input("temperature", "temperature ", "0.05",
                        Signal::derive(move || sampling.get().temperature.to_string()),
                        set_sampling(|s, v| if let Ok(x) = v.parse() { s.temperature = x }))}
                    {num_input("sample_top_k", "top-k ", "1",
                        Signal::derive(move || sampling.get().top_k.to_string()),
                        set_sampling(|s, v| if let Ok(x) = v.parse() { s.top_k = x }))}
                    {num_input("top_p", "top-p ", "0.05",
                        Signal::derive(move || sampling.get().top_p.to_string()),
                        set_sampling(|s, v| if let Ok(x) = v.parse() { s.top_p = x }))}
                    {num_input("seed", "seed ", "1",
                        Signal::derive(move || sampling.get().seed.to_string()),
                        set_sampling(|s, v| if let Ok(x) = v.parse() { s.seed = x }))}
                    {num_input("max_new_tokens", "max new tokens ", "1",
                        Signal::derive(move || max_new.get().to_string()),
                        Callback::new(move |v: String| if let Ok(x) = v.trim().parse() { max_new.set(x) }))}
                </div>
            </form>
    }
    .into_any();
    let view_controls = view! {
            <div class="view-controls">
                <span class="label">"Method: "</span>
                {method_toggles}
                <label class="query-only">
                    <input
                        type="checkbox"
                        name="query_only"
                        checked=query_only.get_untracked()
                        prop:checked=move || query_only.get()
                        on:change=move |ev| query_only.set(event_target_checked(&ev))
                    />
                    " query only"
                </label>
            </div>
            <div class="view-controls">
                <label>
                    "View "
                    <select
                        name="granularity"
                        prop:value=move || display.get().granularity.name()
                        on:change=move |ev| {
                            if let Some(g) = Granularity::from_name(&event_target_value(&ev)) {
                                display.update(|d| d.granularity = g)
                            }
                        }
                    >
                        {Granularity::ALL
                            .into_iter()
                            .map(|g| {
                                let on = display.get_untracked().granularity == g;
                                view! { <option value=g.name() selected=on>{granularity_label(g)}</option> }
                            })
                            .collect_view()}
                    </select>
                </label>
                <label>
                    "aggregate "
                    <select
                        name="aggregate"
                        prop:value=move || display.get().aggregate.name()
                        on:change=move |ev| {
                            if let Some(a) = Aggregate::from_name(&event_target_value(&ev)) {
                                display.update(|d| d.aggregate = a)
                            }
                        }
                    >
                        <option value="sum" selected=display.get_untracked().aggregate == Aggregate::Sum>"sum"</option>
                        <option value="max_abs" selected=display.get_untracked().aggregate == Aggregate::MaxAbs>"max |score|"</option>
                    </select>
                </label>
                <label>
                    <input
                        type="checkbox"
                        name="absolute"
                        checked=display.get_untracked().absolute
                        prop:checked=move || display.get().absolute
                        on:change=move |ev| {
                            let on = event_target_checked(&ev);
                            display.update(|d| d.absolute = on)
                        }
                    />
                    " absolute"
                </label>
                <label>
                    "colors end at "
                    <select
                        name="clip"
                        prop:value=move || display.get().clip.name()
                        on:change=move |ev| {
                            if let Some(c) = Clip::from_name(&event_target_value(&ev)) {
                                display.update(|d| d.clip = c)
                            }
                        }
                    >
                        {Clip::ALL
                            .into_iter()
                            .map(|c| {
                                let on = display.get_untracked().clip == c;
                                view! { <option value=c.name() selected=on>{c.label()}</option> }
                            })
                            .collect_view()}
                    </select>
                </label>
                <label>
                    "gamma "
                    <input
                        type="range"
                        name="gamma"
                        min="0.2"
                        max="3"
                        step="0.1"
                        value=display.get_untracked().gamma.to_string()
                        prop:value=move || display.get().gamma.to_string()
                        on:input=move |ev| {
                            if let Ok(g) = event_target_value(&ev).parse::<f32>() {
                                display.update(|d| d.gamma = g)
                            }
                        }
                    />
                    <span class="gamma-value">{move || format!("{:.1}", display.get().gamma)}</span>
                </label>
            </div>
    }
    .into_any();

    view! {
        <main>
            <header>
                <h1>"TokenLens"</h1>
                <p class="tagline">"Why did the model say that?"</p>
            </header>
            {form}
            <div class="status" data-testid="status" class:running=move || running.get()>
                {move || stage.get()}
                {move || {
                    progress
                        .get()
                        .map(|f| view! { <progress max="1" value=f data-testid="progress"></progress> })
                }}
            </div>
            {move || error.get().map(|e| view! { <div class="error" role="alert" data-testid="error">{e}</div> })}
            {share_bar}
            {answer_view}
            {prediction_view}
            {view_controls}
            {export_bar}
            <section class="token-section" on:mouseover=token_hover on:mouseleave=token_leave>
                {tokens_view}
            </section>
            <section class="grid-section">{grid_view}</section>
            <section class="matrix-section">{matrix_view}</section>
            {move || {
                tip.get().map(|t| {
                    let style = format!("left:{}px;top:{}px", t.x + 14.0, t.y + 14.0);
                    let lines = t.lines.into_iter().map(|l| view! { <div>{l}</div> }).collect_view();
                    view! { <div class="tooltip" data-testid="tooltip" style=style>{lines}</div> }
                })
            }}
        </main>
    }
}
