//! [`Page`]: the explain page's state in one `Copy` value (what it shows and how, the form,
//! what it computed, the run going) and the moves between views that every action makes.

use leptos::prelude::*;
use leptos_router::hooks::use_navigate;
use leptos_router::params::ParamsMap;
use leptos_router::NavigateOptions;
use tokenlens::Method;

use super::actions::ShareState;
use super::runs::{Results, Runs, Status};
use crate::components::prompt_form::Form;
use crate::components::Tip;
use crate::display::{Display, Units};
use crate::pages::api::{list_models, ModelList};
use crate::state::{Input, Replayed, ViewState};

/// Longest address (bytes) a view keeps in its query string; a longer one becomes a permalink.
const LONG_URL: usize = 4096;

/// The server's models, as the page last heard.
pub type Models = Resource<Result<ModelList, leptos::prelude::ServerFnError>>;

/// Everything the explain page holds.
#[derive(Clone, Copy)]
pub struct Page {
    /// The form: what the next action uses.
    pub form: Form,
    /// The server's models (re-fetched every 2 s while one is loading).
    pub models: Models,
    /// Bumped to re-fetch `models`.
    pub models_tick: RwSignal<u32>,
    /// What an empty model name means: the server's first.
    pub default_model: Signal<String>,
    /// The view shown.
    pub shown: RwSignal<ViewState>,
    /// The method in view.
    pub method: RwSignal<Method>,
    /// Only the user's text in view.
    pub query_only: RwSignal<bool>,
    /// Colors and units.
    pub display: RwSignal<Display>,
    /// The run going and how the last one ended.
    pub status: Status,
    /// What is computed, and for which context.
    pub results: Results,
    /// The runner.
    pub runs: Runs,
    /// The token under the pointer.
    pub hovered: RwSignal<Option<usize>>,
    /// The tooltip.
    pub tip: RwSignal<Option<Tip>>,
    /// Share's link.
    pub sharing: ShareState,
    /// The page has hydrated: its buttons work.
    pub live: RwSignal<bool>,
    /// The units in view of the explanation shown.
    pub units: Memo<Option<Units>>,
    /// Showing a stored view (a permalink), not the URL's.
    pub shared: bool,
    query: Memo<ParamsMap>,
    navigate: Callback<(String, NavigateOptions)>,
}

impl Page {
    /// A page showing `initial`, with `replayed` results (a stored view's; `error` when it
    /// could not be replayed). `shared`: a permalink page.
    pub fn new(
        query: Memo<ParamsMap>,
        initial: &ViewState,
        replayed: Replayed,
        error: Option<String>,
        shared: bool,
    ) -> Self {
        let models_tick = RwSignal::new(0u32);
        let models = Resource::new(move || models_tick.get(), |_| list_models());
        let default_model = Signal::derive(move || {
            models.with(|m| {
                m.as_ref()
                    .and_then(|r| r.as_ref().ok())
                    .and_then(|l| l.models.first().map(|m| m.name.clone()))
                    .unwrap_or_default()
            })
        });
        let shown = RwSignal::new(initial.clone());
        let status = Status::new(error);
        let results = Results::new(replayed, shared.then_some(initial));
        let (tip, sharing) = (RwSignal::new(None::<Tip>), ShareState::new());
        let runs = Runs {
            status,
            results,
            shown,
            on_begin: Callback::new(move |()| {
                tip.set(None);
                sharing.clear();
            }),
        };
        let (query_only, display) = (
            RwSignal::new(initial.query_only),
            RwSignal::new(initial.display),
        );
        let units = Memo::new(move |_| {
            results.result.with(|r| {
                r.as_ref().map(|r| {
                    let range =
                        crate::display::shown_range(&r.tokens, r.query_span, query_only.get());
                    Units::new(&r.tokens, display.get().granularity, range, r.query_span)
                })
            })
        });
        let navigate = use_navigate();
        Page {
            form: Form::new(initial),
            models,
            models_tick,
            default_model,
            shown,
            method: RwSignal::new(initial.method),
            query_only,
            display,
            status,
            results,
            runs,
            hovered: RwSignal::new(None),
            tip,
            sharing,
            live: RwSignal::new(false),
            units,
            shared,
            query,
            navigate: Callback::new(move |(url, options): (String, NavigateOptions)| {
                navigate(&url, options)
            }),
        }
    }

    /// The URL's query.
    pub fn query(self) -> Memo<ParamsMap> {
        self.query
    }

    /// Buttons work: the page is live and no run is going.
    pub fn can_run(self) -> Signal<bool> {
        Signal::derive(move || self.live.get() && !self.status.running.get())
    }

    /// The largest view the server stores, once the models have come.
    pub fn share_limit(self) -> Option<u64> {
        self.models.with_untracked(|m| {
            m.as_ref()
                .and_then(|r| r.as_ref().ok())
                .map(|l| l.share_max_bytes)
        })
    }

    /// Moves to view `v`: a new history entry (`push`) or an amended one. On a permalink a
    /// new action opens the live view at `/`; view switches stay on it.
    pub fn go(self, v: ViewState, push: bool) {
        let (runs, shown) = (self.runs, self.shown);
        let same = !self.shared
            && self
                .query
                .with_untracked(|q| ViewState::from_params(q) == v);
        if same && push {
            // The same action again (after an error, say): run it, the URL stays.
            leptos::task::spawn_local(runs.restore(v, true));
            return;
        }
        let url = format!("/{}", v.to_query());
        if url.len() > LONG_URL && !self.shared {
            // Too long for a link: computed here, then stored as a permalink whose short link
            // takes the address bar (view switches keep the last one).
            shown.set(v.clone());
            leptos::task::spawn_local(async move {
                runs.restore(v.clone(), push).await;
                if push {
                    self.sharing
                        .share(v, self.results, self.share_limit(), true);
                }
            });
            return;
        }
        if !push {
            shown.set(v);
            if self.shared {
                return;
            }
        }
        let options = NavigateOptions {
            replace: !push,
            scroll: false,
            ..NavigateOptions::default()
        };
        self.navigate.run((url, options));
    }

    /// Shows view `v`'s settings in the form and the view controls.
    pub fn fill(self, v: &ViewState) {
        self.form.fill(v);
        self.method.set(v.method);
        self.display.set(v.display);
        self.query_only.set(v.query_only);
    }

    /// The view shown with the form's settings and `change` applied; a new input drops
    /// what was computed for the old one.
    pub fn with_form(self, change: impl Fn(&mut ViewState)) -> ViewState {
        let mut v = self.shown.get_untracked();
        let d = self.default_model.get_untracked();
        let input = untrack(|| self.form.input(false));
        let read = Input {
            generation: None,
            ..v.input()
        };
        if input.clone().resolved(&d) != read.resolved(&d) {
            v.generation = None;
            v.explain = None;
            v.matrix = None;
        }
        // The default view follows the template: only the user's text when it is on (the
        // signal follows when the view is filled in from the URL).
        v.query_only = if input.chat != v.chat {
            input.chat
        } else {
            self.query_only.get_untracked()
        };
        (v.model, v.prompt, v.chat) = (input.model, input.prompt, input.chat);
        (v.thinking, v.precision) = (self.form.thinking.get_untracked(), input.precision);
        v.steer = input.steer;
        v.method = self.method.get_untracked();
        v.display = self.display.get_untracked();
        change(&mut v);
        v
    }
}
