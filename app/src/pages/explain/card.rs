//! The open unit's card: fetched from the server (`/api/unit`) for the explanation in view's
//! context whenever the unit or the context changes; never during server rendering.

use leptos::prelude::*;
use tokenlens::{StreamEvent, UnitCard, UnitRequest};

use super::page::Page;
use crate::components::inside::card::CardState;
use crate::pages::api::{read_events, unit_card, Outcome};

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
