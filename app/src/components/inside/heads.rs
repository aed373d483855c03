//! The layer × head relevance grid: one cell per attention head, on one signed scale; a
//! cell's tooltip gives its value and its layer's attention block's conservation.

use leptos::prelude::*;
use tokenlens::colormap::hex;
use tokenlens::{Component, HeadLayer, Unit};

use super::signed_scale;
use crate::components::{arrow_keys, data_attr, focus_point, Tip};
use crate::format::sig3;

const CW: usize = 22; // cell width
const CH: usize = 12; // cell height
const LEFT: usize = 34; // the layer axis
const TOP: usize = 16; // the head axis

/// A layer's attention block's conservation, in words.
pub fn block_line(name: &str, b: Option<tokenlens::BlockRelevance>) -> Option<String> {
    let b = b?;
    Some(format!(
        "{name} block writes {} into the stream and hands back {} ({} of it)",
        sig3(b.output),
        sig3(b.input),
        sig3(b.input / b.output)
    ))
}

/// Rows are layers (0 at the top), columns heads. Each cell carries `data-layer`,
/// `data-head` and `data-score`; clicking it opens the head's card.
#[component]
pub fn HeadGrid(
    layers: Vec<HeadLayer>,
    gamma: f32,
    selected: Signal<Option<Component>>,
    on_pick: Callback<Option<Component>>,
    tip: RwSignal<Option<Tip>>,
) -> impl IntoView {
    let n = layers.first().map_or(0, |l| l.heads.len());
    let scale = signed_scale(layers.iter().flat_map(|l| l.heads.iter().copied()), gamma);
    let (width, height) = (LEFT + n * CW + 2, TOP + layers.len() * CH + 2);
    let lines: Vec<Option<String>> = layers
        .iter()
        .map(|l| block_line("its attention", l.block))
        .collect();
    let lines = StoredValue::new(lines);
    let cells = layers
        .iter()
        .enumerate()
        .flat_map(|(l, layer)| layer.heads.iter().enumerate().map(move |(h, &v)| (l, h, v)))
        .map(|(l, h, v)| {
            let at = Component {
                layer: l,
                unit: Unit::Head(h as u32),
            };
            view! {
                <rect
                    class="head"
                    class:picked=move || selected.get() == Some(at)
                    x=(LEFT + h * CW).to_string()
                    y=(TOP + l * CH).to_string()
                    width=CW.to_string()
                    height=CH.to_string()
                    fill=hex(scale.color(v))
                    data-layer=l.to_string()
                    data-head=h.to_string()
                    data-score=v.to_string()
                    tabindex=if l == 0 && h == 0 { "0" } else { "-1" }
                    role="button"
                    aria-label=format!("head {at}: relevance {}", sig3(v))
                    on:click=move |_| on_pick.run(Some(at))
                    on:keydown=move |ev| {
                        if ev.key() == "Enter" || ev.key() == " " {
                            ev.prevent_default();
                            on_pick.run(Some(at))
                        }
                    }
                />
            }
        })
        .collect_view();
    let layer_labels = (0..layers.len())
        .filter(|l| l % 5 == 0)
        .map(|l| {
            view! { <text class="axis" x="0" y=(TOP + l * CH + CH - 2).to_string()>{l.to_string()}</text> }
        })
        .collect_view();
    let head_labels = (0..n)
        .map(|h| {
            view! { <text class="axis" x=(LEFT + h * CW + 4).to_string() y="11">{format!("h{h}")}</text> }
        })
        .collect_view();
    // The tooltip of the cell an event is on, at (x, y).
    let show = move |ev: &leptos::ev::Event, (x, y): (f64, f64)| {
        let (Some(l), Some(h), Some(v)) = (
            data_attr::<usize>(ev, "data-layer"),
            data_attr::<usize>(ev, "data-head"),
            data_attr::<f32>(ev, "data-score"),
        ) else {
            return;
        };
        let mut shown = vec![format!("layer {l} head {h}: relevance {}", sig3(v))];
        shown.extend(lines.with_value(|v| v.get(l).cloned().flatten()));
        tip.set(Some(Tip { x, y, lines: shown }));
    };
    let on_move = move |ev: leptos::ev::MouseEvent| {
        show(&ev, (f64::from(ev.client_x()), f64::from(ev.client_y())));
    };
    let on_focus = move |ev: leptos::ev::FocusEvent| {
        if let Some(at) = focus_point(&ev) {
            show(&ev, at);
        }
    };
    // One tab stop; the arrow keys move between heads and layers.
    let on_keys = move |ev: leptos::ev::KeyboardEvent| {
        arrow_keys(&ev, |el, key| {
            let at = |name: &str| el.get_attribute(name)?.parse::<usize>().ok();
            let (l, h) = (at("data-layer")?, at("data-head")?);
            let (l, h) = match key {
                "ArrowLeft" => (l, h.checked_sub(1)?),
                "ArrowRight" => (l, h + 1),
                "ArrowUp" => (l.checked_sub(1)?, h),
                "ArrowDown" => (l + 1, h),
                _ => return None,
            };
            let selector = format!("rect[data-layer=\"{l}\"][data-head=\"{h}\"]");
            el.parent_element()?
                .query_selector(&selector)
                .ok()
                .flatten()
        })
    };
    view! {
        <h3>"Heads: layer × head relevance"</h3>
        <p class="legend-text">
            {format!(
                "Red supports the target, blue opposes it, white is 0; one scale for the grid, ending at its largest |relevance| {}.",
                sig3(scale.max)
            )}
        </p>
        <svg
            class="head-grid"
            data-testid="head-grid"
            width=width.to_string()
            height=height.to_string()
            role="group"
            aria-label="Heads: layer × head relevance (arrow keys move, Enter opens a head's card)"
            on:mousemove=on_move
            on:mouseleave=move |_| tip.set(None)
            on:focusin=on_focus
            on:focusout=move |_| tip.set(None)
            on:keydown=on_keys
        >
            {head_labels}
            {layer_labels}
            {cells}
        </svg>
    }
    .into_any()
}
