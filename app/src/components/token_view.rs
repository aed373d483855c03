//! The prompt's tokens inline, each colored by its score.

use leptos::prelude::*;
use tokenlens::Token;

use super::cell_style;

/// Tokens `range` of `tokens`, colored by `scores` (divided by `max`). Each span carries
/// `data-token-index` (index in the full prompt) and `data-score` (the raw score, as in the
/// CLI's JSON). Hover handling is delegated to the parent through `hovered`.
#[component]
pub fn TokenView(
    tokens: Vec<Token>,
    /// One score per token of the full prompt, or None while it is being computed.
    scores: Option<Vec<f32>>,
    /// Signed (diverging colors) or unsigned.
    signed: bool,
    /// The token range shown.
    range: (usize, usize),
    /// The hovered token index.
    hovered: RwSignal<Option<usize>>,
) -> impl IntoView {
    let max = scores
        .as_ref()
        .map(|s| crate::format::max_abs(&s[range.0..range.1]))
        .unwrap_or(0.0);
    let spans = tokens[range.0..range.1]
        .iter()
        .enumerate()
        .map(|(k, tok)| {
            let i = range.0 + k;
            let score = scores.as_ref().map(|s| s[i]);
            let style = score
                .map(|s| cell_style(if max > 0.0 { s / max } else { 0.0 }, signed))
                .unwrap_or_default();
            let class = match (tok.special, tok.text.contains('\n')) {
                (true, _) => "tok special",
                (false, true) => "tok nl",
                _ => "tok",
            };
            view! {
                <span
                    class=class
                    class:hovered=move || hovered.get() == Some(i)
                    data-token-index=i.to_string()
                    data-score=score.map(|s| s.to_string())
                    style=style
                >
                    {tok.text.clone()}
                </span>
            }
        })
        .collect_view();
    view! { <div class="tokens" data-testid="tokens">{spans}</div> }
}
