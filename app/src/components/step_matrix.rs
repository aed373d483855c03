//! The all-steps matrix: every generated token (rows) against its context (columns), as
//! Inseq draws it. Each row is its own explanation and has its own color scale.

use leptos::prelude::*;
use tokenlens::colormap::{hex, ColorScale};
use tokenlens::Token;

use super::colorbar::PerRowLegend;
use super::{axis_label, data_attr, Checkbox, Tip};
use crate::display::{Display, Units};
use crate::format::sig3;
use crate::state::MatrixState;

/// The All-steps section: its heading and the matrix as its rows arrive.
#[component]
pub fn StepsSection(
    /// The matrix (None: none in view).
    #[prop(into)]
    matrix: Signal<Option<MatrixState>>,
    /// Only the user's text and the answer are shown.
    #[prop(into)]
    query_only: Signal<bool>,
    /// Units and colors.
    #[prop(into)]
    display: Signal<Display>,
    /// A run is going.
    #[prop(into)]
    running: Signal<bool>,
    /// The tooltip.
    tip: RwSignal<Option<Tip>>,
) -> impl IntoView {
    let values = RwSignal::new(false);
    let section = NodeRef::<leptos::html::Section>::new();
    // The matrix comes into view when its first row arrives (it is below the fold).
    Effect::new(move |had: Option<bool>| {
        let has = matrix.with(|m| m.as_ref().is_some_and(|m| !m.rows.is_empty()));
        if has && had == Some(false) {
            if let Some(el) = section.get_untracked() {
                el.scroll_into_view();
            }
        }
        has
    });
    let body = move || {
        let d = display.get();
        matrix.with(|mx| {
            let mx = mx.as_ref()?;
            let method = mx.method?;
            let (precision, note) = (mx.precision, mx.precision_note.clone());
            let header = view! {
                <h2>
                    {format!("All steps: each answer token × its context ({}) ", method.label())}
                    <super::PrecisionBadge precision=precision note=note/>
                </h2>
            };
            if mx.tokens.is_empty() {
                let text = if running.get() {
                    "computing…"
                } else {
                    "not computed (the run stopped first); press All steps"
                };
                return Some(
                    view! { {header} <p class="waiting" data-testid="waiting">{text}</p> }
                        .into_any(),
                );
            }
            let range = crate::display::shown_range(&mx.tokens, mx.query_span, query_only.get());
            let u = Units::new(&mx.tokens, d.granularity, range, mx.query_span);
            let rows: Vec<MatrixRow> = mx
                .rows
                .iter()
                .map(|row| {
                    let scores = row.scores.get(&method).map_or(&[][..], Vec::as_slice);
                    let scores: Vec<Option<f32>> = u
                        .groups
                        .iter()
                        .map(|g| {
                            let part = scores.get(g.start..g.end.min(scores.len()))?;
                            (!part.is_empty()).then(|| d.aggregate.apply(part))
                        })
                        .collect();
                    // Each row on its own scale, over the cells of its context.
                    let known: Vec<f32> = scores.iter().map(|s| s.unwrap_or(0.0)).collect();
                    let context = scores.iter().take_while(|s| s.is_some()).count();
                    let scale = Units {
                        range: (u.range.0, u.range.1.min(context)),
                        ..u.clone()
                    }
                    .scale(&d, method.is_signed(), &known);
                    MatrixRow {
                        step: row.step,
                        label: row.target.token.text.clone(),
                        scores,
                        scale,
                    }
                })
                .collect();
            // Values fit in the cells of a small matrix (as Inseq's HTML prints them).
            let small = u.range.1.saturating_sub(u.range.0) <= MAX_VALUE_COLUMNS;
            let toggle = small.then(|| {
                view! {
                    <label class="values-toggle">
                        <Checkbox name="cell_values" label=" values in cells" value=values/>
                    </label>
                }
            });
            Some(
                view! {
                    {header}
                    <PerRowLegend row="row" gamma=d.gamma/>
                    {toggle}
                    <StepMatrix
                        units=u.labels(&mx.tokens)
                        range=u.range
                        rows=rows
                        values=small && values.get()
                        tip=tip
                    />
                }
                .into_any(),
            )
        })
    };
    view! { <section class="matrix-section" node_ref=section>{body}</section> }.into_any()
}

const CW: usize = 14;
const CH: usize = 14;
/// Cell width with values printed in it.
const VALUE_CW: usize = 40;
/// Widest matrix (columns) that offers values in its cells.
const MAX_VALUE_COLUMNS: usize = 40;
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
    /// The row's color scale.
    pub scale: ColorScale,
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
    /// Print each cell's value in it (wider cells).
    values: bool,
    /// The tooltip.
    tip: RwSignal<Option<Tip>>,
) -> impl IntoView {
    let (a, b) = range;
    let cw = if values { VALUE_CW } else { CW };
    let width = LEFT + b.saturating_sub(a) * cw + 4;
    let height = TOP + rows.len() * CH + 4;
    let mut cells = Vec::new();
    let mut row_labels = Vec::new();
    for (r, row) in rows.iter().enumerate() {
        let scale = row.scale;
        let y = TOP + r * CH;
        row_labels.push(view! {
            <text class="row-label" x=(LEFT - 4).to_string() y=(y + CH - 3).to_string()>
                {format!("{} {}", row.step + 1, axis_label(&row.label))}
            </text>
        });
        for (t, s) in row.scores.iter().enumerate().take(b).skip(a) {
            let Some(s) = *s else { continue };
            cells.push(
                view! {
                    <rect
                        class="mcell"
                        x=(LEFT + (t - a) * cw).to_string()
                        y=y.to_string()
                        width=cw.to_string()
                        height=CH.to_string()
                        fill=hex(scale.color(s))
                        data-step=row.step.to_string()
                        data-token-index=t.to_string()
                        data-score=s.to_string()
                    ></rect>
                }
                .into_any(),
            );
            if values {
                let bg = scale.color(s);
                cells.push(
                    view! {
                        <text
                            class="mval"
                            x=(LEFT + (t - a) * cw + cw / 2).to_string()
                            y=(y + CH - 4).to_string()
                            fill=hex(tokenlens::colormap::text_on(bg))
                            text-anchor="middle"
                        >
                            {crate::format::short(s)}
                        </text>
                    }
                    .into_any(),
                );
            }
        }
    }
    let col_labels = units
        .iter()
        .enumerate()
        .skip(a)
        .take(b.saturating_sub(a))
        .map(|(t, unit)| {
            let x = LEFT + (t - a) * cw + cw / 2 + 4;
            view! {
                <text
                    class="tok-label"
                    class:gen=unit.generated
                    transform=format!("translate({x},{}) rotate(-90)", TOP - 4)
                >
                    {axis_label(&unit.text)}
                </text>
            }
        })
        .collect_view();
    let on_move = move |ev: leptos::ev::MouseEvent| {
        let step: Option<usize> = data_attr(&ev, "data-step");
        let t: Option<usize> = data_attr(&ev, "data-token-index");
        let score: Option<f32> = data_attr(&ev, "data-score");
        let unit = t.and_then(|t| Some((t, units.get(t)?)));
        tip.set(match (step, unit, score) {
            (Some(step), Some((t, unit)), Some(s)) => Some(Tip {
                x: ev.client_x() as f64,
                y: ev.client_y() as f64,
                lines: vec![
                    format!("step {} ← #{t} {:?}", step + 1, unit.text),
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
