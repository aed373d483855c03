//! The generated answer: one button per token; clicking one explains it, dragging across
//! several (or shift-clicking) explains them together as a span.

use leptos::prelude::*;
use tokenlens::{GeneratedToken, Method, Span, StopReason};

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
    /// The span being explained.
    #[prop(into)]
    selected_span: Signal<Option<Span>>,
    /// The method the All-steps matrix would use.
    #[prop(into)]
    method: Signal<Method>,
    /// The page is live and no run is going.
    #[prop(into)]
    can_run: Signal<bool>,
    /// Called with a clicked step.
    on_pick: Callback<usize>,
    /// Called with a dragged (or shift-clicked) span.
    on_span: Callback<Span>,
    /// Compute the All-steps matrix.
    on_all_steps: Callback<()>,
) -> impl IntoView {
    // A drag in progress outlives the tokens' re-rendering (the answer updates as it is
    // sealed, say, between a press and its release).
    let drag = RwSignal::new(None::<(usize, usize)>);
    let body = move || {
        answer.get().map(|a| {
            let stop = a.stop.map(|s| match s {
                StopReason::EndOfTurn => " · stopped: end of turn",
                StopReason::MaxNewTokens => " · stopped: max new tokens reached",
                StopReason::ContextFull => " · stopped: context full",
                StopReason::GivenAnswer => " · the given answer, each token with its probability",
            });
            let given = a.spec.answer.is_some();
            let n = a.tokens.len();
            let done = a.stop.is_some();
            view! {
                <section class="answer-section">
                    <h2>
                        {if given { "Given answer " } else { "Answer " }}
                        <span class="hint">"(click a token to see why the model would say it; drag across tokens, or shift-click, to explain a span)"</span>
                    </h2>
                    <Answer
                        tokens=a.tokens
                        selected=selected.get()
                        span=selected_span.get()
                        on_pick=on_pick
                        on_span=on_span
                        drag=drag
                    />
                    <p class="answer-meta" data-testid="answer-meta">
                        {format!("{n} tokens")}
                        {stop}
                        " · " <super::PrecisionBadge precision=a.precision note=a.precision_note.clone()/>
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
/// being explained, if any, and `span` the span; `on_pick` receives a clicked step and
/// `on_span` a span dragged across (press on its first token, release on its last) or
/// shift-clicked from the step or span in view.
#[component]
pub fn Answer(
    /// The tokens generated so far.
    tokens: Vec<GeneratedToken>,
    /// The step being explained.
    selected: Option<usize>,
    /// The span being explained.
    span: Option<Span>,
    /// Called with the clicked step.
    on_pick: Callback<usize>,
    /// Called with a span.
    on_span: Callback<Span>,
    /// A drag in progress: where it started and where the pointer is.
    drag: RwSignal<Option<(usize, usize)>>,
) -> impl IntoView {
    let between = |a: usize, b: usize| Span {
        start: a.min(b),
        end: a.max(b) + 1,
    };
    let anchor = selected.or(span.map(|s| s.start));
    let in_span = move |k: usize| span.is_some_and(|s| (s.start..s.end).contains(&k));
    let dragged = move |k: usize| {
        drag.get()
            .is_some_and(|(a, b)| a != b && (a.min(b)..=a.max(b)).contains(&k))
    };
    let titles = titles(&tokens);
    let buttons = tokens
        .into_iter()
        .zip(titles)
        .enumerate()
        .map(|(k, (t, title))| {
            // A piece of a character that a later token completes: shown as a small mark, its
            // bytes on hover.
            let piece = t.token.piece.is_some() && t.token.text.is_empty();
            view! {
                <button
                    type="button"
                    class="ans-tok"
                    class:selected=selected == Some(k)
                    class:in-span=in_span(k)
                    class:dragged=move || dragged(k)
                    class:nl=t.token.text.contains('\n')
                    class:piece=piece
                    title=title
                    data-step=k.to_string()
                    data-token-id=t.token.id.to_string()
                    on:mousedown=move |ev| {
                        if ev.button() == 0 {
                            ev.prevent_default();
                            drag.set(Some((k, k)));
                        }
                    }
                    on:mouseenter=move |_| drag.update(|d| {
                        if let Some((_, to)) = d.as_mut() {
                            *to = k;
                        }
                    })
                    on:mouseup=move |_| {
                        if let Some((from, _)) = drag.get_untracked() {
                            drag.set(None);
                            if from != k {
                                on_span.run(between(from, k));
                            }
                        }
                    }
                    on:click=move |ev| match anchor.filter(|&a| ev.shift_key() && a != k) {
                        Some(a) => on_span.run(between(a, k)),
                        None => on_pick.run(k),
                    }
                >
                    {t.token.text.clone()}
                </button>
            }
        })
        .collect_view();
    view! {
        // A drag released between tokens, or outside, ends without a span.
        <div
            class="answer"
            data-testid="answer"
            on:mouseleave=move |_| drag.set(None)
            on:mouseup=move |_| drag.set(None)
        >
            {buttons}
        </div>
    }
}

/// Each answer token's hover text: its step, text, id and probability; for the pieces of a
/// character, their bytes and the character they form.
fn titles(tokens: &[GeneratedToken]) -> Vec<String> {
    let mut out = Vec::with_capacity(tokens.len());
    let mut pieces: Vec<String> = Vec::new();
    for (k, t) in tokens.iter().enumerate() {
        let tok = &t.token;
        let what = match &tok.piece {
            Some(bytes) if tok.text.is_empty() => {
                pieces.push(bytes.clone());
                format!("bytes {bytes}, a piece of the character the next tokens complete")
            }
            Some(bytes) => {
                pieces.push(bytes.clone());
                let all = std::mem::take(&mut pieces).join(" ");
                format!(
                    "{:?} (its bytes {all}, over {} tokens)",
                    tok.text,
                    all.matches('‹').count()
                )
            }
            None => format!("{:?}", tok.text),
        };
        out.push(format!(
            "step {}: {what} (id {}, p = {:.3}); click to explain, drag or shift-click for a span",
            k + 1,
            tok.id,
            t.prob
        ));
    }
    out
}
