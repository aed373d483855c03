//! The open unit's card: fetched from the server (`/api/unit`) for the explanation in view's
//! context whenever the unit or the context changes; never during server rendering.

use leptos::prelude::*;
use tokenlens::{ContextsRequest, StreamEvent, Unit, UnitCard, UnitRequest};

use super::page::Page;
use crate::components::inside::card::{CardState, ContextsState};
use crate::pages::api::{neuron_contexts, read_events, unit_card, Outcome};

/// What the card is computed for: the model, the request.
fn wanted(page: Page) -> Option<(String, UnitRequest)> {
    let unit = page.display.with(|d| d.unit)?;
    let v = page.shown.get();
    let continuation = page
        .results
        .result
        .with(|r| r.as_ref().map(|r| r.continuation.clone()))?;
    Some((
        v.model.clone(),
        UnitRequest {
            prompt: v.prompt.clone(),
            chat_template: v.chat,
            thinking: v.thinking,
            continuation,
            unit,
            steer: v.steer.clone(),
        },
    ))
}

/// Fetches one card.
async fn fetch(model: String, request: UnitRequest) -> Result<UnitCard, String> {
    let mut card = None;
    let response = unit_card(model, request).await;
    let (outcome, _) = read_events(
        response,
        || true,
        |ev| {
            if let StreamEvent::Unit { card: c } = ev {
                card = Some(c);
            }
        },
    )
    .await;
    match (outcome, card) {
        (_, Some(c)) => Ok(c),
        (Outcome::Failed(msg), None) => Err(msg),
        _ => Err("the server sent no card".into()),
    }
}

/// The card of the unit open in `page`, kept current.
pub fn open_card(page: Page) -> Signal<CardState> {
    let state = RwSignal::new(CardState::Closed);
    let key = Memo::new(move |_| wanted(page));
    Effect::new(move |_| {
        let Some((model, request)) = key.get() else {
            state.set(CardState::Closed);
            return;
        };
        let unit = request.unit;
        state.set(CardState::Loading(unit));
        leptos::task::spawn_local(async move {
            let card = fetch(model, request).await;
            // A later pick supersedes this one.
            if state.with_untracked(|s| *s == CardState::Loading(unit)) {
                state.set(CardState::Ready(card));
            }
        });
    });
    state.into()
}

/// The open neuron's corpus contexts, read while the view asks for them (`contexts=1`), and
/// the callback that asks.
pub fn neuron_contexts_of(page: Page) -> (Signal<ContextsState>, Callback<()>) {
    let state = RwSignal::new(ContextsState::Idle);
    let wanted = Memo::new(move |_| {
        page.display
            .with(|d| d.unit.filter(|_| d.contexts))
            .and_then(|at| match at.unit {
                Unit::Neuron(neuron) => Some(ContextsRequest {
                    layer: at.layer,
                    neuron,
                }),
                Unit::Head(_) => None,
            })
    });
    Effect::new(move |_| {
        let Some(request) = wanted.get() else {
            state.set(ContextsState::Idle);
            return;
        };
        let model = page.shown.with_untracked(|v| v.model.clone());
        state.set(ContextsState::Reading(None));
        leptos::task::spawn_local(async move {
            let asked = request.clone();
            let current = move || wanted.get_untracked().as_ref() == Some(&asked);
            let mut found = None;
            let response = neuron_contexts(model, request).await;
            let (outcome, _) = read_events(response, &current, |ev| match ev {
                StreamEvent::Progress { done, total, .. } => {
                    state.set(ContextsState::Reading(Some(
                        done as f64 / total.max(1) as f64,
                    )));
                }
                StreamEvent::Contexts { contexts } => found = Some(contexts),
                _ => {}
            })
            .await;
            if !current() {
                return;
            }
            state.set(ContextsState::Ready(match (outcome, found) {
                (_, Some(c)) => Ok(c),
                (Outcome::Failed(msg), None) => Err(msg),
                _ => Err("the server sent no contexts".into()),
            }));
        });
    });
    (state.into(), Callback::new(move |()| page.show_contexts()))
}
