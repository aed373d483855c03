//! The estimate of what the form would explain, asked of the server once typing pauses.

use leptos::prelude::*;

use crate::components::prompt_form::Form;
use crate::pages::api::{estimate_prompt, Estimate};
use crate::state::{ExplainSpec, ViewState};

/// Typing must pause this long before the server is asked.
const PAUSE_MS: u64 = 400;

/// The estimate for the form's model, prompt and template (None before the first answer).
/// Asked in the browser only (effects do not run on the server).
pub fn estimate(form: Form) -> Signal<Option<Result<Estimate, String>>> {
    let out = RwSignal::new(None);
    let edits = StoredValue::new(0u64);
    Effect::new(move |_| {
        let (model, prompt) = (form.model.get(), form.prompt.get());
        let (chat, thinking) = (form.chat.get(), form.thinking.get());
        edits.update_value(|n| *n += 1);
        let mine = edits.get_value();
        let current = move || edits.get_value() == mine;
        set_timeout(
            move || {
                if !current() || prompt.trim().is_empty() {
                    return;
                }
                // The request Explain would send for this prompt.
                let v = ViewState {
                    model: model.clone(),
                    prompt,
                    chat,
                    thinking,
                    explain: Some(ExplainSpec::default()),
                    ..ViewState::default()
                };
                let Ok(Some(request)) = v.explain_request(&[]) else {
                    return;
                };
                leptos::task::spawn_local(async move {
                    let answer = estimate_prompt(model, request).await;
                    if current() {
                        out.set(Some(answer.map_err(|e| e.to_string())));
                    }
                });
            },
            std::time::Duration::from_millis(PAUSE_MS),
        );
    });
    out.into()
}
