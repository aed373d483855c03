//! The generated answer: one button per token; clicking one explains it.

use leptos::prelude::*;
use tokenlens::{GeneratedToken, Method, StopReason};

use crate::state::AnswerState;

/// The answer section: the tokens, how many and why generation stopped, and the All-steps
/// button (on once the answer is complete and `can_run`).
#[component]
pub fn AnswerSection(
    /// The answer (None: no answer in view).
    #[prop(into)]
    answer: Signal<Option<AnswerState>>,
    /// The step being explained.
    #[prop(into)]
    selected: Signal<Option<usize>>,
    /// The method the All-steps matrix would use.
    #[prop(into)]
    method: Signal<Method>,
    /// The page is live and no run is going.
    #[prop(into)]
    can_run: Signal<bool>,
    /// Called with a clicked step.
    on_pick: Callback<usize>,
    /// Compute the All-steps matrix.
    on_all_steps: Callback<()>,
) -> impl IntoView {
    let body = move || {
        answer.get().map(|a| {
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
                    <Answer tokens=a.tokens selected=selected.get() on_pick=on_pick/>
                    <p class="answer-meta" data-testid="answer-meta">
                        {format!("{n} tokens")}
                        {stop.map(|s| format!(" · stopped: {s}"))}
                    </p>
                    <div class="row">
                        <button
                            type="button"
                            name="all_steps"
                            disabled=move || !can_run.get() || !done || n == 0
                            on:click=move |_| on_all_steps.run(())
                            title="explain every answer token against its context"
                        >
                            {move || format!("All steps ({})", method.get().label())}
                        </button>
                    </div>
                </section>
            }
        })
    };
    body.into_any()
}

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
