//! The explain page: prompt in; a generated answer and streamed attributions out.
//!
//! Every action writes the view into the URL (see [`crate::state`]); the page recomputes
//! whatever the URL asks for that it does not already show, so a link, a reload and
//! back/forward all reproduce a view. A permalink page starts from a stored snapshot instead.
//!
//! This module only wires state: the components (`crate::components`) draw it, `runs`
//! computes it, `actions` shares and exports it.

mod actions;
mod estimate;
mod runs;

use leptos::prelude::*;
use leptos_router::hooks::{use_navigate, use_query_map};
use leptos_router::NavigateOptions;
use tokenlens::{Operator, TargetSpec};

use super::api::list_models;
use crate::components::agreement::AgreementPanel;
use crate::components::answer::AnswerSection;
use crate::components::estimate::EstimateLine;
use crate::components::export_bar::ExportBar;
use crate::components::faithfulness::FaithfulnessPanel;
use crate::components::prediction::{Explained, PredictionPanel};
use crate::components::prompt_form::{Form, PromptForm};
use crate::components::share_bar::ShareBar;
use crate::components::status::{StatusLine, Tooltip};
use crate::components::step_matrix::StepsSection;
use crate::components::token_view::TokensPanel;
use crate::components::trace_grid::TraceSection;
use crate::components::view_controls::ViewControls;
use crate::components::{Shown, Tip};
use crate::display::Units;
use crate::state::{CompareView, ExplainSpec, Replayed, Snapshot, ViewState};
use actions::{InView, ShareState};
use runs::{key, Results, Runs, Status};

/// Longest address (bytes) a view keeps in its query string; a longer one becomes a permalink.
const LONG_URL: usize = 4096;

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
    let models_list = Signal::derive(move || models.get().map(|r| r.map_err(|e| e.to_string())));
    let form = Form::new(&initial);
    // What the page shows: the view, and how.
    let shown = RwSignal::new(initial.clone());
    let view_method = RwSignal::new(initial.method);
    let query_only = RwSignal::new(initial.query_only);
    let display = RwSignal::new(initial.display);
    // A stored view shows what its sealed records replay to.
    let (replayed, replay_error) = match snapshot.as_ref().map(Snapshot::replay) {
        Some(Ok(r)) => (r, None),
        Some(Err(e)) => (
            Replayed::default(),
            Some(format!("this shared view cannot be shown: {e}")),
        ),
        None => (Replayed::default(), None),
    };
    let status = Status::new(replay_error);
    let results = Results::new(replayed, snapshot.as_ref().map(|s| &s.view));
    let Results {
        result,
        answer,
        matrix,
        ..
    } = results;
    let hovered = RwSignal::new(None::<usize>);
    let tip = RwSignal::new(None::<Tip>);
    let sharing = ShareState::new();
    let runs = Runs {
        status,
        results,
        shown,
        on_begin: Callback::new(move |()| {
            tip.set(None);
            sharing.clear();
        }),
    };
    let can_run = Signal::derive(move || live.get() && !status.running.get());

    let share_limit = move || {
        models.with_untracked(|m| {
            m.as_ref()
                .and_then(|r| r.as_ref().ok())
                .map(|l| l.share_max_bytes)
        })
    };
    // Moves to view `v`: a new history entry (`push`) or an amended one. On a permalink the
    // live view opens at `/`.
    let navigate = StoredValue::new(use_navigate());
    let go = move |v: ViewState, push: bool| {
        let same = !shared && query.with_untracked(|q| ViewState::from_params(q) == v);
        if same && push {
            // The same action again (after an error, say): run it, the URL stays.
            leptos::task::spawn_local(runs.restore(v, true));
            return;
        }
        let url = format!("/{}", v.to_query());
        if url.len() > LONG_URL && !shared {
            // Too long for a link: computed here, then stored as a permalink whose short link
            // takes the address bar (view switches keep the last one).
            shown.set(v.clone());
            leptos::task::spawn_local(async move {
                runs.restore(v.clone(), push).await;
                if push {
                    sharing.share(v, results, share_limit(), true);
                }
            });
            return;
        }
        if !push {
            shown.set(v);
            if shared {
                return;
            }
        }
        let options = NavigateOptions {
            replace: !push,
            scroll: false,
            ..NavigateOptions::default()
        };
        navigate.with_value(|n| n(&url, options));
    };

    // The URL drives the view: on load, and on every navigation (actions, back/forward).
    let fill = move |v: &ViewState| {
        form.fill(v);
        view_method.set(v.method);
        display.set(v.display);
        query_only.set(v.query_only);
    };
    if !shared {
        Effect::new(move |first: Option<()>| {
            let v = query.with(ViewState::from_params);
            let now = shown.get_untracked();
            let differs = key(&v) != key(&now) || v.matrix != now.matrix;
            if differs || (first.is_none() && (v.generation.is_some() || v.explain.is_some())) {
                // The view first, then the form: filling the form's signals wakes the effect
                // that amends the history entry with the shown view (below), which must
                // already be this one, or it writes the previous view back into the URL.
                shown.set(v.clone());
                fill(&v);
                leptos::task::spawn_local(runs.restore(v, false));
            } else if v != now {
                fill(&v);
                shown.set(v);
            }
        });
    }

    let faithfulness_on =
        move || shown.with_untracked(|v| v.explain.as_ref().and_then(|e| e.faithfulness));
    // The score (logit or log-probability) stays as chosen for the next explanation.
    // (A span is always a log-probability: it sets no preference.)
    let score_now = move || {
        shown.with_untracked(|v| {
            v.explain
                .as_ref()
                .filter(|e| e.span.is_none())
                .map(|e| e.score)
                .unwrap_or_default()
        })
    };
    // The lens comes with every explanation until it is turned off.
    let lens_on = move || shown.with_untracked(|v| v.explain.as_ref().is_none_or(|e| e.lens));
    // The view with the form's settings and `change` applied.
    let from_form = move |change: &dyn Fn(&mut ViewState)| {
        let mut v = shown.get_untracked();
        let (model, prompt) = (form.model.get_untracked(), form.prompt.get_untracked());
        let (chat, thinking) = (form.chat.get_untracked(), form.thinking.get_untracked());
        let precision = form.precision.get_untracked();
        let same_prompt = (&v.model, &v.prompt, v.chat, v.thinking, v.precision)
            == (&model, &prompt, chat, thinking, precision);
        if !same_prompt {
            v.generation = None;
            v.explain = None;
            v.matrix = None;
        }
        // The default view follows the template: only the user's text when it is on (the
        // signal follows when the view is filled in from the URL).
        v.query_only = if chat != v.chat {
            chat
        } else {
            query_only.get_untracked()
        };
        (v.model, v.prompt, v.chat, v.thinking) = (model, prompt, chat, thinking);
        v.precision = precision;
        v.method = view_method.get_untracked();
        v.display = display.get_untracked();
        change(&mut v);
        v
    };
    let on_submit = Callback::new(move |()| {
        let spec = |t: String| (!t.is_empty()).then_some(TargetSpec::Text(t));
        let e = ExplainSpec {
            target: spec(form.target.get_untracked()).unwrap_or_default(),
            contrast: spec(form.contrast.get_untracked()),
            step: None,
            faithfulness: faithfulness_on(),
            lens: lens_on(),
            score: score_now(),
            span: None,
        };
        go(from_form(&|v| v.explain = Some(e.clone())), true);
    });
    let on_generate = Callback::new(move |()| {
        let g = form.generation();
        let v = from_form(&|v| {
            v.generation = Some(g.clone());
            v.explain = None;
            v.matrix = None;
        });
        go(v, true);
    });
    // Every explanation keeps the faithfulness curves on once they are (the panel turns them
    // off).
    let explain_with = Callback::new(move |mut e: ExplainSpec| {
        let mut v = shown.get_untracked();
        e.faithfulness = e.faithfulness.or_else(faithfulness_on);
        e.lens = lens_on();
        v.explain = Some(e);
        go(v, true);
    });
    let on_faithfulness = Callback::new(move |op: Option<Operator>| {
        let mut v = shown.get_untracked();
        if let Some(e) = v.explain.as_mut() {
            e.faithfulness = op;
            go(v, true);
        }
    });
    let on_lens = Callback::new(move |on: bool| {
        let mut v = shown.get_untracked();
        if let Some(e) = v.explain.as_mut() {
            e.lens = on;
            go(v, true);
        }
    });
    let on_all_steps = Callback::new(move |()| {
        let mut v = shown.get_untracked();
        v.matrix = Some(view_method.get_untracked());
        go(v, true);
    });
    let pick_step = Callback::new(move |k: usize| {
        explain_with.run(ExplainSpec {
            step: Some(k),
            score: score_now(),
            ..ExplainSpec::default()
        })
    });
    // A span of answer tokens: their summed log-probabilities (no curves: those follow one
    // token's logit).
    let pick_span = Callback::new(move |span: tokenlens::Span| {
        let mut v = shown.get_untracked();
        v.explain = Some(ExplainSpec {
            span: Some(span),
            score: tokenlens::Score::LogProb,
            lens: lens_on(),
            ..ExplainSpec::default()
        });
        go(v, true);
    });
    // View settings amend the current history entry; picking a method of several passes
    // (computed only while in view) also computes it.
    Effect::new(move |_| {
        let now = shown.get_untracked();
        let mut v = now.clone();
        v.method = view_method.get();
        v.display = display.get();
        v.query_only = query_only.get();
        if v != now {
            let compute = !shared && key(&v) != key(&now);
            go(v.clone(), false);
            if compute {
                leptos::task::spawn_local(runs.restore(v, false));
            }
        }
    });
    let on_share = Callback::new(move |()| {
        sharing.share(shown.get_untracked(), results, share_limit(), false);
    });
    // Something complete to share: a cancelled or failed run leaves nothing to store.
    let can_share = Signal::derive(move || {
        let complete = results.result_for.with(Option::is_some)
            || answer.with(|a| a.as_ref().is_some_and(|a| a.stop.is_some()))
            || results.matrix_for.with(Option::is_some);
        live.get() && !status.running.get() && complete
    });

    // The units in view (tokens, words or sentences) of the current explanation.
    let units = Memo::new(move |_| {
        result.with(|r| {
            r.as_ref().map(|r| {
                let range = match (query_only.get(), r.query_span) {
                    (true, Some([a, b])) => (a, b),
                    _ => (0, r.tokens.len()),
                };
                Units::new(&r.tokens, display.get().granularity, range, r.query_span)
            })
        })
    });
    let export_error = RwSignal::new(None::<String>);
    let on_export = Callback::new(move |format: &'static str| {
        export_error.set(None);
        let done = move |r: Result<(), String>| export_error.set(r.err());
        let view = shown.get_untracked();
        let Some(units) = units.get_untracked() else {
            return done(Err("nothing to export yet".into()));
        };
        result.with_untracked(|r| match r {
            Some(result) => InView {
                view: &view,
                result,
                units: &units,
                method: view_method.get_untracked(),
                display: display.get_untracked(),
            }
            .export(format, done),
            None => done(Err("nothing to export yet".into())),
        });
    });
    let export_ready = Signal::derive(move || {
        let m = view_method.get();
        live.get() && result.with(|r| r.as_ref().is_some_and(|r| r.methods.contains_key(&m)))
    });

    // The picker starts on the server's first (default) model.
    Effect::new(move || {
        if let Some(Ok(list)) = models.get() {
            if form.model.get_untracked().is_empty() {
                if let Some(first) = list.models.first() {
                    form.model.set(first.name.clone());
                    // A view from the URL keeps its own chat setting.
                    if shown.with_untracked(|v| v.generation.is_none() && v.explain.is_none()) {
                        form.chat.set(first.chat_template);
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
    let on_pick_model = Callback::new(move |name: String| {
        let info = models.with_untracked(|m| {
            m.as_ref()
                .and_then(|r| r.as_ref().ok())
                .and_then(|l| l.models.iter().find(|m| m.name == name).cloned())
        });
        if let Some(info) = info {
            form.chat.set(info.chat_template);
        }
        form.model.set(name);
    });

    // Effects run only in the browser, after hydration: the page is live from here on.
    Effect::new(move || {
        if let Some(edits) = early.take() {
            edits.replay();
        }
        live.set(true);
    });

    let explained = Signal::derive(move || {
        result.with(|r| {
            let r = r.as_ref()?;
            let (prediction, target) = r.predicted()?;
            let (prediction, target) = (prediction.clone(), target.clone());
            let generated = r
                .step
                .and_then(|k| answer.with(|a| a.as_ref().and_then(|a| a.tokens.get(k).cloned())));
            Some(Explained {
                prediction,
                target,
                step: r.step,
                generated,
                precision: r.precision,
            })
        })
    });
    let selected = Signal::derive(move || result.with(|r| r.as_ref().and_then(|r| r.step)));
    let selected_span = Signal::derive(move || {
        result.with(|r| {
            let t = r.as_ref()?.target.as_ref()?;
            t.span.as_ref().map(|s| s.span)
        })
    });
    // A method still to come is marked pending while the run goes (not after it stopped).
    let computed = Callback::new(move |m| {
        !status.running.get()
            || result.with(|r| r.as_ref().is_none_or(|r| r.methods.contains_key(&m)))
    });
    // The form asks for something else than the result shown (not while it is computed).
    let stale = Signal::derive(move || {
        let default_model = models.with(|m| {
            m.as_ref()
                .and_then(|r| r.as_ref().ok())
                .and_then(|l| l.models.first().map(|m| m.name.clone()))
                .unwrap_or_default()
        });
        !status.running.get() && shown.with(|v| form.differs_from(v, &default_model))
    });
    let in_view = Shown {
        result: result.into(),
        units: units.into(),
        method: view_method.into(),
        display: display.into(),
        running: status.running.into(),
    };
    view! {
        <main>
            <header>
                <h1>"TokenLens"</h1>
                <p class="tagline">"Why did the model say that?"</p>
            </header>
            <PromptForm
                form=form
                models=models_list
                can_run=can_run
                running=status.running
                on_submit=on_submit
                on_generate=on_generate
                on_cancel=Callback::new(move |()| status.cancel())
                on_pick_model=on_pick_model
            />
            <EstimateLine estimate=estimate::estimate(form)/>
            <StatusLine stage=status.stage progress=status.progress running=status.running error=status.error/>
            <ShareBar
                shared=shared
                live_url=Signal::derive(move || format!("/{}", shown.get().to_query()))
                can_share=can_share
                link=sharing.link
                copied=sharing.copied
                on_share=on_share
            />
            // A prompt's explanation can be compared with another method, model or prompt.
            {move || {
                let v = shown.get();
                let e = v.explain.as_ref()?;
                (e.step.is_none() && e.span.is_none() && result.with(Option::is_some)).then(|| {
                    let other = if v.method == tokenlens::Method::Attnlrp {
                        tokenlens::Method::Saliency
                    } else {
                        tokenlens::Method::Attnlrp
                    };
                    let href = format!("/compare{}", CompareView::from_view(&v, other).to_query());
                    view! {
                        <p class="compare-link">
                            <a href=href data-testid="compare-link">
                                "Compare with another method, model or prompt →"
                            </a>
                        </p>
                    }
                })
            }}
            {move || stale.get().then(|| view! {
                <div class="stale-note" data-testid="stale" role="status">
                    "Out of date: the prompt or settings changed since this result was computed. Press Explain (or Generate) to recompute; Share and Export cover the result shown."
                </div>
            })}
            <div class="results" class:stale=move || stale.get()>
            <AnswerSection
                answer=answer
                selected=selected
                selected_span=selected_span
                method=view_method
                can_run=can_run
                on_pick=pick_step
                on_span=pick_span
                on_all_steps=on_all_steps
            />
            <PredictionPanel explained=explained on_explain=explain_with/>
            // How to show a result, once there is one to show.
            <Show when=move || result.with(Option::is_some) || matrix.with(Option::is_some)>
                <ViewControls method=view_method query_only=query_only display=display computed=computed/>
                <ExportBar ready=export_ready error=export_error on_export=on_export/>
            </Show>
            <TokensPanel shown=in_view hovered=hovered tip=tip/>
            <TraceSection
                shown=in_view
                lens_on=Signal::derive(move || shown.with(|v| v.explain.as_ref().is_some_and(|e| e.lens)))
                on_lens=on_lens
                on_colors=Callback::new(move |on| display.update(|d| d.lens_colors = on))
                hovered=hovered
                tip=tip
            />
            <AgreementPanel shown=in_view/>
            <FaithfulnessPanel
                shown=in_view
                operator=Signal::derive(move || {
                    shown.with(|v| v.explain.as_ref().and_then(|e| e.faithfulness))
                })
                on_change=on_faithfulness
                tip=tip
            />
            <StepsSection matrix=matrix query_only=query_only display=display running=status.running tip=tip/>
            </div>
            <Tooltip tip=tip/>
        </main>
    }
}
