//! The generated answer: one button per token; clicking one explains it.

use leptos::prelude::*;
use tokenlens::GeneratedToken;

/// The answer's tokens as buttons carrying `data-step` (0-based). `selected` is the step
/// being explained, if any; `on_pick` receives a clicked step.
#[component]
pub fn Answer(
    /// The tokens generated so far.
    tokens: Vec<GeneratedToken>,
    /// The step being explained.
    selected: Option<usize>,
    /// Called with the clicked step.
    on_pick: Callback<usize>,
) -> impl IntoView {
    let buttons = tokens
        .into_iter()
        .enumerate()
        .map(|(k, t)| {
            let title = format!(
                "step {}: {:?} (id {}, p = {:.3}); click to explain",
                k + 1,
                t.token.text,
                t.token.id,
                t.prob
            );
            view! {
                <button
                    type="button"
                    class="ans-tok"
                    class:selected=selected == Some(k)
                    class:nl=t.token.text.contains('\n')
                    title=title
                    data-step=k.to_string()
                    data-token-id=t.token.id.to_string()
                    on:click=move |_| on_pick.run(k)
                >
                    {t.token.text.clone()}
                </button>
            }
        })
        .collect_view();
    view! { <div class="answer" data-testid="answer">{buttons}</div> }
}
