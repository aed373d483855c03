//! A comparison's rows: A, B and their difference B − A, segment by segment on one color
//! scale (see [`crate::compare`]).

use leptos::prelude::*;
use tokenlens::colormap::ColorScale;

use super::cell_style;
use super::colorbar::Colorbar;
use crate::compare::Segment;
use crate::format::sig3;

/// The shared scale: blue-white-red, ending at the largest |value| of any row.
pub fn shared_scale(segments: &[Segment], gamma: f32) -> ColorScale {
    let max = segments
        .iter()
        .flat_map(|s| [s.a, s.b, s.diff()])
        .collect::<Vec<f32>>();
    let max = tokenlens::text::max_abs(&max);
    ColorScale {
        signed: true,
        max,
        gamma,
    }
}

/// The difference row's text of a segment: an edit shows both sides.
fn diff_text(s: &Segment) -> String {
    if s.edited {
        format!("{}→{}", s.a_text, s.b_text)
    } else {
        s.a_text.clone()
    }
}

/// Three rows of aligned segments; each segment carries `data-a`, `data-b`, `data-diff` and,
/// inside an edit, `data-edited`.
#[component]
pub fn CompareRows(
    /// The aligned segments.
    segments: Vec<Segment>,
    /// What row A is (model · method · target).
    a_label: String,
    /// What row B is.
    b_label: String,
    /// The page's gamma.
    gamma: f32,
) -> impl IntoView {
    let scale = shared_scale(&segments, gamma);
    let row = |name: &'static str, label: String, pick: fn(&Segment) -> (String, f32)| {
        let cells = segments
            .iter()
            .map(|s| {
                let (text, v) = pick(s);
                // Monospace: a segment is as wide on every row as its longest text.
                let width = [
                    s.a_text.chars().count(),
                    s.b_text.chars().count(),
                    diff_text(s).chars().count(),
                ]
                .into_iter()
                .max()
                .unwrap_or(0);
                let title = format!(
                    "{text:?}\nA {} · B {} · B − A {}{}",
                    sig3(s.a),
                    sig3(s.b),
                    sig3(s.diff()),
                    if s.edited { " (edited)" } else { "" }
                );
                view! {
                    <span
                        class="seg"
                        class:edited=s.edited
                        style=format!("{};min-width:{width}ch", cell_style(scale.color(v)))
                        title=title
                        data-a=s.a.to_string()
                        data-b=s.b.to_string()
                        data-diff=s.diff().to_string()
                        data-edited=s.edited.then_some("1")
                    >
                        {tokenlens::text::visible_whitespace(&text, false)}
                    </span>
                }
            })
            .collect_view();
        view! {
            <div class="cmp-row" data-row=name>
                <span class="cmp-label">{label}</span>
                <span class="cmp-cells">{cells}</span>
            </div>
        }
    };
    view! {
        <Colorbar scale=scale label="share of the row's total |score|".to_string()/>
        <p class="hint legend-text" data-testid="compare-legend">
            "Each row's scores as shares of its own total |score|, so that different methods and models compare; one scale for all three rows. Segments are cut wherever either tokenization has a boundary, and a token's share is spread over its characters. Hover a segment for its values."
        </p>
        <div class="compare-rows" data-testid="compare-rows">
            {row("a", format!("A: {a_label}"), |s| (s.a_text.clone(), s.a))}
            {row("b", format!("B: {b_label}"), |s| (s.b_text.clone(), s.b))}
            {row("diff", "B − A".to_string(), |s| (diff_text(s), s.diff()))}
        </div>
    }
    .into_any()
}
