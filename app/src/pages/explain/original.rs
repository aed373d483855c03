//! Beside a steered answer, the original: the same prompt and sampling (same seed) without
//! the edits, streamed from the server when the view shows a steered answer.

use leptos::prelude::*;
use tokenlens::{GenerateRequest, StreamEvent};

use super::page::Page;
use crate::pages::api::{generate, read_events, Outcome};

/// The original answer as it streams: its text so far, and how it ended.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Original {
    /// The edits it is the original of.
    pub steer: String,
    /// Its text so far.
    pub text: String,
    /// Done, or why not.
    pub end: Option<Result<(), String>>,
}

/// The request for the view's answer without its edits, when the view shows a steered one.
fn wanted(page: Page) -> Option<(String, GenerateRequest)> {
    let v = page.shown.get();
    if v.steer.is_empty() {
        return None;
    }
    let request = GenerateRequest {
        steer: Vec::new(),
        ..v.generate_request()?
    };
    Some((v.model.clone(), request))
}

/// The original answer of the view's steered answer, kept current (None: not steered).
pub fn original_answer(page: Page) -> Signal<Option<Original>> {
    let state = RwSignal::new(None::<Original>);
    let key = Memo::new(move |_| wanted(page));
    Effect::new(move |_| {
        let Some((model, request)) = key.get() else {
            state.set(None);
            return;
        };
        let steer = tokenlens::format_edits(&page.shown.with_untracked(|v| v.steer.clone()));
        state.set(Some(Original {
            steer: steer.clone(),
            ..Original::default()
        }));
        let current = move || {
            state.with_untracked(|s| s.as_ref().is_some_and(|o| o.steer == steer))
                && key.with_untracked(Option::is_some)
        };
        leptos::task::spawn_local(async move {
            let response = generate(model, request).await;
            let (outcome, _) = read_events(response, current, |ev| {
                if let StreamEvent::Generated { token, .. } = ev {
                    state.update(|s| {
                        if let Some(o) = s {
                            o.text.push_str(&token.token.text);
                        }
                    });
                }
            })
            .await;
            let end = match outcome {
                Outcome::Done => Ok(()),
                Outcome::Superseded => return,
                Outcome::Failed(msg) => Err(msg),
            };
            state.update(|s| {
                if let Some(o) = s {
                    o.end = Some(end);
                }
            });
        });
    });
    state.into()
}

/// The original answer's block.
#[component]
pub fn OriginalAnswer(original: Signal<Option<Original>>, on_open: Callback<()>) -> impl IntoView {
    move || {
        original.get().map(|o| {
            let status = match &o.end {
                None => "generating…".to_string(),
                Some(Ok(())) => String::new(),
                Some(Err(msg)) => format!("failed: {msg}"),
            };
            view! {
                <div class="original-answer" data-testid="original-answer">
                    <strong>"Without steering"</strong>
                    {format!(" (the same prompt and seed, no {}): ", o.steer)}
                    <span class="original-text" data-testid="original-text">{o.text.clone()}</span>
                    <span class="status">{status}</span>
                    " "
                    <button type="button" name="open_original" on:click=move |_| on_open.run(())>
                        "Open it"
                    </button>
                </div>
            }
        })
    }
}
