//! The layer × token relevance grid (latent relevance trace) as SVG, with the logit lens.

pub mod lens;

use leptos::prelude::*;
use tokenlens::colormap::{hex, ColorScale};
use tokenlens::{LensCell, Token};

use super::colorbar::PerRowLegend;
use super::{arrow_keys, axis_label as label, data_attr, focus_point, Shown, Switch, Tip};
use crate::format::sig3;
use lens::{LensLegend, SettlesRow};

/// The grid section: its heading, the lens switches and the grid of the method in view, once
/// its scores are in.
#[component]
pub fn TraceSection(
    /// What is in view.
    shown: Shown,
    /// The explanation brings the logit lens (switching it recomputes).
    lens_on: Signal<bool>,
    /// Turns the lens on or off.
    on_lens: Callback<bool>,
    /// Colors the grid by the lens, or not (a view setting).
    on_colors: Callback<bool>,
    /// The hovered unit (shared between the token view and the grid).
    hovered: RwSignal<Option<usize>>,
    /// The tooltip.
    tip: RwSignal<Option<Tip>>,
) -> impl IntoView {
    let body = move || {
        shown.read(|r, u, m, d| {
            let res = r.methods.get(&m)?;
            let trace = u.trace(&res.trace, d.aggregate);
            let unit_lens = r.lens.as_ref().map(|l| lens::per_unit(l, &u));
            let target = r.target.as_ref().map(|t| t.token.text.clone());
            let by_lens = d.lens_colors && unit_lens.is_some();
            let heading = format!(
                "Layer × {} {} ({}, {} layers)",
                d.granularity.name(),
                if by_lens { "logit lens" } else { "relevance" },
                if by_lens { "p(target)" } else { m.label() },
                r.n_layers,
            );
            let (shade, scales): (Vec<Vec<f32>>, Vec<ColorScale>) = match &unit_lens {
                Some(l) if by_lens => {
                    let probs = lens::target_probs(l);
                    let scales = probs.iter().map(|_| lens::scale(d.gamma)).collect();
                    (probs, scales)
                }
                // Each layer on its own scale.
                _ => (
                    trace.clone(),
                    trace.iter().map(|row| u.scale(&d, true, row)).collect(),
                ),
            };
            // Saliency's tokens are unsigned (viridis); its grid is not.
            let note = (!m.is_signed()).then(|| {
                format!(
                    "{}'s tokens show an unsigned score (viridis); its layer trace is signed: red supports the target, blue opposes it.",
                    m.label()
                )
            });
            let legend = if by_lens {
                view! { <LensLegend gamma=d.gamma/> }.into_any()
            } else {
                view! { <PerRowLegend row="layer" gamma=d.gamma note=note/> }.into_any()
            };
            let settles = r
                .lens
                .clone()
                .zip(target.clone())
                .map(|(lens, target)| view! { <SettlesRow lens=lens target=target/> });
            Some(view! {
                <h2>{heading}</h2>
                {legend}
                <TraceGrid
                    tokens=u.labels(&r.tokens)
                    trace=trace
                    shade=shade
                    scales=scales
                    lens=unit_lens.unwrap_or_default()
                    target=target.unwrap_or_default()
                    by_lens=by_lens
                    range=u.range
                    hovered=hovered
                    tip=tip
                />
                {settles}
            })
        })
    };
    // The switches show once there is a grid to switch.
    let has_grid = move || {
        shown
            .read(|r, _, m, _| Some(r.methods.contains_key(&m)))
            .unwrap_or(false)
    };
    let has_lens = move || {
        shown
            .result
            .with(|r| r.as_ref().is_some_and(|r| r.lens.is_some()))
    };
    let switches = move || {
        has_grid().then(|| {
            view! {
                <div class="lens-switches">
                    <Switch
                        name="lens"
                        label="logit lens"
                        checked=lens_on
                        on_toggle=on_lens
                        title="What each layer would predict, had the model stopped there: its final norm and output layer applied after every layer (computed in the same forward pass; switching it recomputes)."
                    />
                    <Switch
                        name="lens_colors"
                        label="color the grid by the lens' p(target)"
                        checked=Signal::derive(move || shown.display.get().lens_colors)
                        on_toggle=on_colors
                        disabled=Signal::derive(move || !has_lens())
                    />
                </div>
            }
        })
    };
    view! { <section class="grid-section">{switches}{body}</section> }.into_any()
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
    /// `[layer][unit]` raw relevance.
    trace: Vec<Vec<f32>>,
    /// `[layer][unit]`: what the colors show (the relevance, or the lens' p(target)).
    shade: Vec<Vec<f32>>,
    /// One color scale per layer, for `shade`.
    scales: Vec<ColorScale>,
    /// The lens `[layer][unit]`, when the explanation has one.
    lens: Vec<Vec<Option<LensCell>>>,
    /// The explained token's text.
    target: String,
    /// The colors show the lens, not the relevance.
    by_lens: bool,
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
    let lens_prob = |l: usize, t: usize| -> Option<String> {
        let c = lens.get(l)?.get(t)?.as_ref()?;
        Some(c.target_prob.to_string())
    };
    let cells = trace
        .iter()
        .zip(&shade)
        .zip(&scales)
        .enumerate()
        .flat_map(|(l, ((row, shade), scale))| {
            let in_view = row.iter().zip(shade).enumerate().skip(a).take(n);
            in_view.map(move |(t, (&v, &s))| (l, t, v, s, scale))
        })
        .map(|(l, t, v, s, scale)| {
            let x = (t - a) * CW;
            let y = TOP + l * CH;
            view! {
                <rect
                    class="cell"
                    x=x.to_string()
                    y=y.to_string()
                    width=CW.to_string()
                    height=CH.to_string()
                    fill=hex(scale.color(s))
                    data-layer=l.to_string()
                    data-token-index=t.to_string()
                    data-score=v.to_string()
                    data-lens-prob=lens_prob(l, t)
                    tabindex=if l == 0 && t == a { "0" } else { "-1" }
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
    let data = StoredValue::new((trace, tokens, scales2, lens, target));
    let show = move |l: Option<usize>, t: Option<usize>, at: Option<(f64, f64)>| {
        hovered.set(t);
        let lines = data.with_value(|(trace, tokens, scales, lens, target)| {
            let (l, t) = l.zip(t)?;
            let v = *trace.get(l)?.get(t)?;
            let (tok, scale) = (tokens.get(t)?, scales.get(l)?);
            let mut lines = vec![
                format!("layer {l} · #{t} {:?}", tok.text),
                format!("relevance {}", sig3(v)),
            ];
            if !by_lens {
                lines.push(format!("normalized {}", sig3(scale.normalize(v))));
            }
            if let Some(c) = lens
                .get(l)
                .and_then(|row| row.get(t))
                .and_then(Option::as_ref)
            {
                lines.extend(lens::lines(c, target));
            }
            Some(lines)
        });
        tip.set(lines.zip(at).map(|(lines, (x, y))| Tip { x, y, lines }));
    };
    let on_move = move |ev: leptos::ev::MouseEvent| {
        let at = (f64::from(ev.client_x()), f64::from(ev.client_y()));
        show(
            data_attr(&ev, "data-layer"),
            data_attr(&ev, "data-token-index"),
            Some(at),
        );
    };
    let on_focus = move |ev: leptos::ev::FocusEvent| {
        let at = focus_point(&ev);
        show(
            data_attr(&ev, "data-layer"),
            data_attr(&ev, "data-token-index"),
            at,
        );
    };
    // Arrows move a cell: left and right along the layer, up and down across layers.
    let on_keys = move |ev: leptos::ev::KeyboardEvent| {
        arrow_keys(&ev, |el, key| {
            let at = |name: &str| el.get_attribute(name)?.parse::<usize>().ok();
            let (l, t) = (at("data-layer")?, at("data-token-index")?);
            let (l, t) = match key {
                "ArrowLeft" => (l, t.checked_sub(1)?),
                "ArrowRight" => (l, t + 1),
                "ArrowUp" => (l.checked_sub(1)?, t),
                "ArrowDown" => (l + 1, t),
                _ => return None,
            };
            let selector = format!("rect[data-layer=\"{l}\"][data-token-index=\"{t}\"]");
            el.parent_element()?
                .query_selector(&selector)
                .ok()
                .flatten()
        })
    };
    let on_leave = move |_: leptos::ev::MouseEvent| show(None, None, None);
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
                    role="group"
                    aria-label="the layer × token grid: arrow keys move between cells, each says its value"
                    on:mousemove=on_move
                    on:mouseleave=on_leave
                    on:focusin=on_focus
                    on:focusout=move |_| show(None, None, None)
                    on:keydown=on_keys
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
