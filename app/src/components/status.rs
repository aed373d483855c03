//! The status line (what the run is doing, a progress bar mid-pass), the error, and the
//! hover tooltip.

use leptos::prelude::*;

use super::Tip;

/// The status line and, below it, the last error.
#[component]
pub fn StatusLine(
    /// What the run is doing, or how it ended.
    #[prop(into)]
    stage: Signal<Option<String>>,
    /// The pass's progress, mid-pass.
    #[prop(into)]
    progress: Signal<Option<f64>>,
    /// A run is going.
    #[prop(into)]
    running: Signal<bool>,
    /// The last error.
    #[prop(into)]
    error: Signal<Option<String>>,
) -> AnyView {
    view! {
        <div class="status" data-testid="status" role="status" aria-live="polite" class:running=move || running.get()>
            {move || stage.get()}
            {move || {
                progress
                    .get()
                    .map(|f| view! { <progress max="1" value=f data-testid="progress"></progress> })
            }}
        </div>
        {move || error.get().map(|e| view! { <div class="error" role="alert" data-testid="error">{e}</div> })}
    }
    .into_any()
}

/// The tooltip, beside the pointer.
#[component]
pub fn Tooltip(
    /// What it says and where (None: hidden).
    #[prop(into)]
    tip: Signal<Option<Tip>>,
) -> impl IntoView {
    let body = move || {
        tip.get().map(|t| {
            let style = format!("left:{}px;top:{}px", t.x + 14.0, t.y + 14.0);
            let lines = t
                .lines
                .into_iter()
                .map(|l| view! { <div>{l}</div> })
                .collect_view();
            view! { <div class="tooltip" data-testid="tooltip" style=style>{lines}</div> }
        })
    };
    body.into_any()
}
