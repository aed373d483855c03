//! Each layer's most relevant MLP neurons: a row per layer with the layer's total and its top
//! neurons as chips on one signed scale; clicking a chip opens the neuron's card.

use leptos::prelude::*;
use tokenlens::{Component, NeuronLayer, Unit};

use super::heads::block_line;
use super::signed_scale;
use crate::components::cell_style;
use crate::format::sig3;

/// Rows of layers, each chip carrying `data-layer`, `data-neuron` and `data-score`.
#[component]
pub fn NeuronRows(
    layers: Vec<NeuronLayer>,
    gamma: f32,
    selected: Signal<Option<Component>>,
    on_pick: Callback<Option<Component>>,
) -> impl IntoView {
    let scale = signed_scale(
        layers.iter().flat_map(|l| l.top.iter().map(|n| n.value)),
        gamma,
    );
    let rows = layers
        .iter()
        .enumerate()
        .map(|(l, layer)| {
            let chips = layer
                .top
                .iter()
                .map(|n| {
                    let at = Component {
                        layer: l,
                        unit: Unit::Neuron(n.index),
                    };
                    view! {
                        <button
                            class="neuron"
                            class:picked=move || selected.get() == Some(at)
                            style=cell_style(scale.color(n.value))
                            data-layer=l.to_string()
                            data-neuron=n.index.to_string()
                            data-score=n.value.to_string()
                            title=format!("neuron {at}: relevance {}", sig3(n.value))
                            on:click=move |_| on_pick.run(Some(at))
                        >
                            {n.index.to_string()}
                        </button>
                    }
                })
                .collect_view();
            let title = block_line("its MLP", layer.block).unwrap_or_default();
            view! {
                <tr>
                    <th scope="row">{l.to_string()}</th>
                    <td class="num" title=title>{sig3(layer.total)}</td>
                    <td>{chips}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <h3>"Neurons: each layer's most relevant"</h3>
        <p class="legend-text">
            {format!(
                "Each chip is a neuron (its index); red supports the target, blue opposes it, on one scale ending at {}.",
                sig3(scale.max)
            )}
        </p>
        <table class="neuron-rows" data-testid="neuron-rows">
            <thead>
                <tr><th>"layer"</th><th>"Σ all"</th><th>"top neurons (index; color: relevance)"</th></tr>
            </thead>
            <tbody>{rows}</tbody>
        </table>
    }
    .into_any()
}
