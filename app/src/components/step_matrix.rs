//! The all-steps matrix: every generated token (rows) against its context (columns), as
//! Inseq draws it. Each row is its own explanation and has its own color scale.

use leptos::prelude::*;
use tokenlens::colormap::hex;
use tokenlens::Token;

use super::{axis_label, data_attr, Tip};
use crate::display::Display;
use crate::format::sig3;

const CW: usize = 14;
const CH: usize = 14;
const TOP: usize = 92;
const LEFT: usize = 110;

/// One row: the explained token's label and one score per context unit (`None` past the
/// row's context).
#[derive(Clone, Debug, PartialEq)]
pub struct MatrixRow {
    /// Generated token index.
    pub step: usize,
    /// The explained token's text.
    pub label: String,
    /// Scores per unit.
    pub scores: Vec<Option<f32>>,
}

/// Rows are generated tokens, columns units of the context (prompt and answer). Cells carry
/// `data-step`, `data-token-index` (the unit) and `data-score`.
#[component]
pub fn StepMatrix(
    /// One pseudo-token per column unit.
    units: Vec<Token>,
    /// Column range shown.
    range: (usize, usize),
    /// The rows that have arrived.
    rows: Vec<MatrixRow>,
    /// Signed method.
    signed: bool,
    /// Color settings.
    display: Display,
    /// The tooltip.
    tip: RwSignal<Option<Tip>>,
) -> impl IntoView {
    let (a, b) = range;
    let width = LEFT + (b - a) * CW + 4;
    let height = TOP + rows.len() * CH + 4;
    let mut cells = Vec::new();
    let mut row_labels = Vec::new();
    for (r, row) in rows.iter().enumerate() {
        let known: Vec<f32> = row.scores[a..b].iter().flatten().copied().collect();
        let scale = display.scale(signed, &known);
        let y = TOP + r * CH;
        row_labels.push(view! {
            <text class="row-label" x=(LEFT - 4).to_string() y=(y + CH - 3).to_string()>
                {format!("{} {}", row.step + 1, axis_label(&row.label))}
            </text>
        });
        for (t, s) in row.scores.iter().enumerate().take(b).skip(a) {
            let Some(s) = *s else { continue };
            cells.push(view! {
                <rect
                    class="mcell"
                    x=(LEFT + (t - a) * CW).to_string()
                    y=y.to_string()
                    width=CW.to_string()
                    height=CH.to_string()
                    fill=hex(scale.color(s))
                    data-step=row.step.to_string()
                    data-token-index=t.to_string()
                    data-score=s.to_string()
                ></rect>
            });
        }
    }
    let col_labels = (a..b)
        .map(|t| {
            let x = LEFT + (t - a) * CW + CW / 2 + 4;
            view! {
                <text
                    class="tok-label"
                    class:gen=units[t].generated
                    transform=format!("translate({x},{}) rotate(-90)", TOP - 4)
                >
                    {axis_label(&units[t].text)}
                </text>
            }
        })
        .collect_view();
    let on_move = move |ev: leptos::ev::MouseEvent| {
        let step: Option<usize> = data_attr(&ev, "data-step");
        let t: Option<usize> = data_attr(&ev, "data-token-index");
        let score: Option<f32> = data_attr(&ev, "data-score");
        tip.set(match (step, t, score) {
            (Some(step), Some(t), Some(s)) => Some(Tip {
                x: ev.client_x() as f64,
                y: ev.client_y() as f64,
                lines: vec![
                    format!("step {} ← #{t} {:?}", step + 1, units[t].text),
                    format!("score {}", sig3(s)),
                ],
            }),
            _ => None,
        });
    };
    view! {
        <div class="grid-scroll" data-testid="matrix">
            <svg
                class="matrix"
                width=width.to_string()
                height=height.to_string()
                on:mousemove=on_move
                on:mouseleave=move |_| tip.set(None)
            >
                {col_labels}
                {row_labels}
                {cells}
            </svg>
        </div>
    }
    .into_any()
}
