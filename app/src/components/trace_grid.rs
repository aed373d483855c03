//! The layer × token relevance grid (latent relevance trace) as SVG.

use leptos::prelude::*;
use tokenlens::colormap::{bwr, hex};
use tokenlens::Token;

use super::{data_attr, Tip};
use crate::format::sig3;

const CW: usize = 14; // cell width
const CH: usize = 12; // cell height
const TOP: usize = 92; // room for the rotated token labels
const LEFT: usize = 34; // the layer axis, a separate SVG that stays in view

fn label(text: &str) -> String {
    let t = text.replace('\n', "↵").replace(' ', "·");
    if t.chars().count() > 14 {
        format!("{}…", t.chars().take(13).collect::<String>())
    } else {
        t
    }
}

/// Rows are layers (0 at the top), columns the tokens in `range`; cells colored by the
/// per-layer normalized trace (blue-white-red, 0 = white). Each cell carries `data-layer`,
/// `data-token-index` and `data-score` (the raw trace value).
#[component]
pub fn TraceGrid(
    tokens: Vec<Token>,
    /// `[layer][token]` raw.
    trace: Vec<Vec<f32>>,
    /// `[layer][token]` normalized per layer.
    normalized: Vec<Vec<f32>>,
    /// The token range shown.
    range: (usize, usize),
    /// The hovered token index (shared with the token view).
    hovered: RwSignal<Option<usize>>,
    /// The tooltip.
    tip: RwSignal<Option<Tip>>,
) -> impl IntoView {
    let (a, b) = range;
    let n = b - a;
    let layers = trace.len();
    let width = n * CW + 4;
    let height = TOP + layers * CH + 4;
    let cells = (0..layers)
        .flat_map(|l| (a..b).map(move |t| (l, t)))
        .map(|(l, t)| {
            let x = (t - a) * CW;
            let y = TOP + l * CH;
            view! {
                <rect
                    class="cell"
                    x=x.to_string()
                    y=y.to_string()
                    width=CW.to_string()
                    height=CH.to_string()
                    fill=hex(bwr(normalized[l][t]))
                    data-layer=l.to_string()
                    data-token-index=t.to_string()
                    data-score=trace[l][t].to_string()
                ></rect>
            }
        })
        .collect_view();
    let token_labels = (a..b)
        .map(|t| {
            let x = (t - a) * CW + CW / 2 + 4;
            let y = TOP - 4;
            view! {
                <text
                    class="tok-label"
                    transform=format!("translate({x},{y}) rotate(-90)")
                    data-token-index=t.to_string()
                >
                    {label(&tokens[t].text)}
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
        tip.set(match (l, t) {
            (Some(l), Some(t)) => Some(Tip {
                x: ev.client_x() as f64,
                y: ev.client_y() as f64,
                lines: vec![
                    format!("layer {l} · token #{t} {:?}", tokens[t].text),
                    format!("raw {}", sig3(trace[l][t])),
                    format!("normalized {}", sig3(normalized[l][t])),
                ],
            }),
            _ => None,
        });
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
