//! The layer × token relevance grid (latent relevance trace) as SVG.

use leptos::prelude::*;
use tokenlens::colormap::{hex, ColorScale};
use tokenlens::Token;

use super::{axis_label as label, data_attr, Shown, Tip};
use crate::format::sig3;

/// The grid section: its heading and the grid of the method in view, once its scores are in.
#[component]
pub fn TraceSection(
    /// What is in view.
    shown: Shown,
    /// The hovered unit (shared between the token view and the grid).
    hovered: RwSignal<Option<usize>>,
    /// The tooltip.
    tip: RwSignal<Option<Tip>>,
) -> impl IntoView {
    let body = move || {
        shown.read(|r, u, m, d| {
            let res = r.methods.get(&m)?;
            let heading = format!(
                "Layer × {} relevance ({}, {} layers)",
                d.granularity.name(),
                m.label(),
                r.n_layers,
            );
            let trace = u.trace(&res.trace, d.aggregate);
            // Each layer on its own scale.
            let trace_scales = trace.iter().map(|row| u.scale(&d, true, row)).collect();
            Some(view! {
                <h2>{heading}</h2>
                <TraceGrid
                    tokens=u.labels(&r.tokens)
                    trace=trace
                    scales=trace_scales
                    range=u.range
                    hovered=hovered
                    tip=tip
                />
            })
        })
    };
    view! { <section class="grid-section">{body}</section> }.into_any()
}

const CW: usize = 14; // cell width
const CH: usize = 12; // cell height
const TOP: usize = 92; // room for the rotated token labels
const LEFT: usize = 34; // the layer axis, a separate SVG that stays in view

/// Rows are layers (0 at the top), columns the units (tokens, words or sentences) in
/// `range`; each layer colored on its own scale (blue-white-red, 0 = white, ending at the
/// layer's max |value| or the chosen percentile, with the page's gamma). Each cell carries
/// `data-layer`, `data-token-index` (the unit) and `data-score` (the raw trace value).
#[component]
pub fn TraceGrid(
    tokens: Vec<Token>,
    /// `[layer][unit]` raw.
    trace: Vec<Vec<f32>>,
    /// One color scale per layer.
    scales: Vec<ColorScale>,
    /// The token range shown.
    range: (usize, usize),
    /// The hovered token index (shared with the token view).
    hovered: RwSignal<Option<usize>>,
    /// The tooltip.
    tip: RwSignal<Option<Tip>>,
) -> impl IntoView {
    let (a, b) = range;
    let n = b.saturating_sub(a);
    let layers = trace.len();

    let scales2 = scales.clone();
    let width = n * CW + 4;
    let height = TOP + layers * CH + 4;
    let cells = trace
        .iter()
        .zip(&scales)
        .enumerate()
        .flat_map(|(l, (row, scale))| {
            let in_view = row.iter().enumerate().skip(a).take(n);
            in_view.map(move |(t, &v)| (l, t, v, scale))
        })
        .map(|(l, t, v, scale)| {
            let x = (t - a) * CW;
            let y = TOP + l * CH;
            view! {
                <rect
                    class="cell"
                    x=x.to_string()
                    y=y.to_string()
                    width=CW.to_string()
                    height=CH.to_string()
                    fill=hex(scale.color(v))
                    data-layer=l.to_string()
                    data-token-index=t.to_string()
                    data-score=v.to_string()
                ></rect>
            }
        })
        .collect_view();
    let token_labels = tokens
        .iter()
        .enumerate()
        .skip(a)
        .take(n)
        .map(|(t, tok)| {
            let x = (t - a) * CW + CW / 2 + 4;
            let y = TOP - 4;
            view! {
                <text
                    class="tok-label"
                    transform=format!("translate({x},{y}) rotate(-90)")
                    data-token-index=t.to_string()
                >
                    {label(&tok.text)}
                </text>
            }
        })
        .collect_view();
    let layer_labels = (0..layers)
        .filter(|l| l % 5 == 0 || *l == layers - 1)
        .map(|l| {
            view! {
                <text class="layer-label" x=(LEFT - 4).to_string() y=(TOP + l * CH + CH - 2).to_string()>
                    {l.to_string()}
                </text>
            }
        })
        .collect_view();
    let column = move || {
        hovered.get().filter(|t| (a..b).contains(t)).map(|t| {
            view! {
                <rect
                    class="column-highlight"
                    x=((t - a) * CW).to_string()
                    y="0"
                    width=CW.to_string()
                    height=height.to_string()
                ></rect>
            }
        })
    };
    let on_move = move |ev: leptos::ev::MouseEvent| {
        let t: Option<usize> = data_attr(&ev, "data-token-index");
        hovered.set(t);
        let l: Option<usize> = data_attr(&ev, "data-layer");
        let cell = (l.zip(t)).and_then(|(l, t)| {
            let v = *trace.get(l)?.get(t)?;
            Some((l, t, v, tokens.get(t)?, scales2.get(l)?))
        });
        tip.set(cell.map(|(l, t, v, tok, scale)| Tip {
            x: ev.client_x() as f64,
            y: ev.client_y() as f64,
            lines: vec![
                format!("layer {l} · #{t} {:?}", tok.text),
                format!("raw {}", sig3(v)),
                format!("normalized {}", sig3(scale.normalize(v))),
            ],
        }));
    };
    let on_leave = move |_| {
        hovered.set(None);
        tip.set(None);
    };
    view! {
        <div class="grid-scroll" data-testid="grid">
            <div class="grid-row">
                <svg class="grid-axis" width=LEFT.to_string() height=height.to_string()>
                    <text class="axis-label" x=(LEFT - 4).to_string() y=(TOP - 4).to_string()>
                        "layer"
                    </text>
                    {layer_labels}
                </svg>
                <svg
                    class="grid"
                    width=width.to_string()
                    height=height.to_string()
                    on:mousemove=on_move
                    on:mouseleave=on_leave
                >
                    {token_labels}
                    {cells}
                    {column}
                </svg>
            </div>
        </div>
    }
    // Type-erased: the nested SVG view types otherwise exceed rustc's recursion limit.
    .into_any()
}
