//! The prompt's units (tokens, words or sentences) inline, each colored by its score.

use leptos::prelude::*;
use tokenlens::colormap::ColorScale;
use tokenlens::Token;

use super::cell_style;

/// Units `range` of `units`, colored by `scores` through `scale`. Each span carries
/// `data-token-index` (the unit's index: the token's at token granularity) and `data-score`
/// (the raw or aggregated score, as in the CLI's JSON). Hover handling is delegated to the
/// parent through `hovered`.
#[component]
pub fn TokenView(
    /// One pseudo-token per unit.
    units: Vec<Token>,
    /// One score per unit, or None while it is being computed.
    scores: Option<Vec<f32>>,
    /// How scores become colors.
    scale: ColorScale,
    /// The unit range shown.
    range: (usize, usize),
    /// The hovered unit index.
    hovered: RwSignal<Option<usize>>,
) -> impl IntoView {
    let spans = units[range.0..range.1]
        .iter()
        .enumerate()
        .map(|(k, tok)| {
            let i = range.0 + k;
            let score = scores.as_ref().map(|s| s[i]);
            let style = score
                .map(|s| cell_style(scale.color(s)))
                .unwrap_or_default();
            let class = if tok.special { "tok special" } else { "tok" };
            // A visible mark before each line break, drawn by CSS so that the span's text
            // stays the token's text. Empty parts are left out: server rendering writes an
            // empty text node as a space, which would widen every ↵ on a permalink page.
            let text = tok
                .text
                .split('\n')
                .enumerate()
                .map(|(j, part)| {
                    let mark = (j > 0).then(|| view! { <span class="nl-mark"></span>"\n" });
                    let part = (!part.is_empty()).then(|| part.to_string());
                    view! { {mark}{part} }
                })
                .collect_view();
            view! {
                <span
                    class=class
                    class:gen=tok.generated
                    class:hovered=move || hovered.get() == Some(i)
                    data-token-index=i.to_string()
                    data-score=score.map(|s| s.to_string())
                    style=style
                >
                    {text}
                </span>
            }
        })
        .collect_view();
    view! { <div class="tokens" data-testid="tokens">{spans}</div> }
}
