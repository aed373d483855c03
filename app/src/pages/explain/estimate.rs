//! The estimate of what the form would explain, asked of the server once typing pauses.

use leptos::prelude::*;

use super::Page;
use crate::pages::api::{estimate_prompt, Estimate};

/// Typing must pause this long before the server is asked.
const PAUSE_MS: u64 = 400;

/// The estimate of what Explain would run for the form's model, prompt and template, with
/// what the view shown carries over (the logit lens, the curves, neurons and heads: the lens
/// often costs more than the map). None before the first answer. Asked in the browser only
/// (effects do not run on the server).
pub fn estimate(page: Page) -> Signal<Option<Result<Estimate, String>>> {
    let form = page.form;
    let out = RwSignal::new(None);
    let edits = StoredValue::new(0u64);
    Effect::new(move |_| {
        let (model, prompt) = (form.model.get(), form.prompt.get());
        let _ = (form.chat.get(), form.thinking.get(), form.precision.get());
        // The view's switches (the lens, the curves) change what Explain runs.
        page.shown.track();
        edits.update_value(|n| *n += 1);
        let mine = edits.get_value();
        let current = move || edits.get_value() == mine;
        set_timeout(
            move || {
                if !current() || prompt.is_empty() {
                    return;
                }
                // The request Explain would send.
                let Ok(Some(request)) = page.submitted().explain_request(&[]) else {
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
