//! A unit's card: a neuron's logit lens (the tokens it promotes and suppresses) and its
//! activation at each token; a head's attention from a token (the last, which predicts the
//! target, or any other picked) and its relevance by source token.

use leptos::prelude::*;
use tokenlens::colormap::ColorScale;
use tokenlens::{
    Component, Edit, HeadLayer, LensToken, NeuronLayer, Setting, Token, Unit, UnitCard,
};

use super::signed_scale;
use crate::components::cell_style;
use crate::format::sig3;

/// A card as the page has it: none asked, on its way, or its answer.
#[derive(Clone, Debug, PartialEq)]
pub enum CardState {
    /// No unit picked.
    Closed,
    /// Asked, not come yet.
    Loading(Component),
    /// Its card, or why not.
    Ready(Result<UnitCard, String>),
}

/// A neuron's corpus contexts as the page has them.
#[derive(Clone, Debug, PartialEq)]
pub enum ContextsState {
    /// Not asked for the open neuron.
    Idle,
    /// Reading the corpus: the share read so far, when known.
    Reading(Option<f64>),
    /// Its contexts, or why not.
    Ready(Result<tokenlens::NeuronContexts, String>),
}

/// The contexts part of a neuron's card: a button, the progress, then the texts with the
/// token where it fires most marked.
#[component]
fn Contexts(state: Signal<ContextsState>, on_ask: Callback<()>) -> impl IntoView {
    move || match state.get() {
        ContextsState::Idle => view! {
            <button type="button" name="contexts" on:click=move |_| on_ask.run(())>
                "Where it fires in general (the reference corpus)"
            </button>
        }
        .into_any(),
        ContextsState::Reading(done) => {
            let pct = done.map_or(String::new(), |d| format!(" {:.0}%", d * 100.0));
            view! { <p class="status" data-testid="contexts-progress">{format!("reading the corpus for this layer (once per model){pct}…")}</p> }
                .into_any()
        }
        ContextsState::Ready(Err(msg)) => {
            view! { <p class="error" role="alert">{msg}</p> }.into_any()
        }
        ContextsState::Ready(Ok(c)) => {
            let rows = c
                .hits
                .iter()
                .map(|h| {
                    let (a, b) = (h.start.min(h.text.len()), h.end.min(h.text.len()));
                    let part = |r: std::ops::Range<usize>| h.text.get(r).unwrap_or("").to_string();
                    view! {
                        <li data-activation=h.activation.to_string()>
                            <span class="num">{sig3(h.activation)}</span>
                            " "
                            <span class="source">{format!("({})", h.source)}</span>
                            " "
                            <span class="context">
                                {part(0..a)}
                                <mark>{part(a..b)}</mark>
                                {part(b..h.text.len())}
                            </span>
                        </li>
                    }
                })
                .collect_view();
            view! {
                <h4>{format!("Where it fires most in the reference corpus ({} texts, {} tokens)", c.texts, c.tokens)}</h4>
                <ol class="contexts" data-testid="unit-contexts">{rows}</ol>
            }
            .into_any()
        }
    }
}

/// Tokens colored by `values` on `scale`, each carrying `data-value`.
fn colored(tokens: &[Token], values: &[f32], scale: ColorScale, testid: &'static str) -> AnyView {
    let spans = tokens
        .iter()
        .zip(values)
        .enumerate()
        .map(|(i, (t, &v))| {
            view! {
                <span
                    class="tok"
                    style=cell_style(scale.color(v))
                    data-token-index=i.to_string()
                    data-value=v.to_string()
                    title=format!("{:?}: {}", t.text, sig3(v))
                >
                    {t.text.clone()}
                </span>
            }
        })
        .collect_view();
    view! { <p class="tokens card-tokens" data-testid=testid>{spans}</p> }.into_any()
}

/// Buttons that put an edit of the unit into the steering field (then Generate or Explain
/// runs the steered model).
#[component]
fn SteerButtons(at: Component, on_steer: Callback<Edit>) -> impl IntoView {
    let button = move |label: &'static str, scale: f32| {
        let edit = Edit {
            layer: at.layer,
            unit: at.unit,
            setting: Setting::Scale(scale),
        };
        view! {
            <button type="button" name=format!("steer-x{scale}") on:click=move |_| on_steer.run(edit)>
                {label}
            </button>
        }
    };
    view! {
        <p class="steer-buttons">
            {format!("Steer with {at}: ")}
            {button("×0 (ablate)", 0.0)}
            {button("×2", 2.0)}
            {button("×5", 5.0)}
            " then Generate (the original answer shows beside the steered one) or Explain."
        </p>
    }
}

fn token_list(tokens: &[LensToken]) -> String {
    tokens
        .iter()
        .map(|t| format!("{:?} {}", t.text, sig3(t.logit)))
        .collect::<Vec<_>>()
        .join(" · ")
}

/// The open card.
#[component]
pub fn UnitCardView(
    card: Signal<CardState>,
    heads: Vec<HeadLayer>,
    neurons: Vec<NeuronLayer>,
    gamma: f32,
    on_close: Callback<()>,
    /// Adds an edit of the open unit to the steering field.
    on_steer: Callback<Edit>,
    /// The open neuron's corpus contexts.
    contexts: Signal<ContextsState>,
    /// Asks for them.
    on_contexts: Callback<()>,
) -> impl IntoView {
    // The query position a head's attention is read from (None: the last).
    let from = RwSignal::new(None::<usize>);
    let (heads, neurons) = (StoredValue::new(heads), StoredValue::new(neurons));
    let body = move || match card.get() {
        CardState::Closed => None,
        CardState::Loading(u) => {
            Some(view! { <p class="status">{format!("loading the card of {u}…")}</p> }.into_any())
        }
        CardState::Ready(Err(msg)) => {
            Some(view! { <p class="error" role="alert">{msg}</p> }.into_any())
        }
        CardState::Ready(Ok(c)) => {
            let at = c.unit;
            let body = match at.unit {
                Unit::Neuron(j) => {
                    let card = neurons.with_value(|n| neuron(&c, n, j, gamma));
                    view! { {card} <Contexts state=contexts on_ask=on_contexts/> }.into_any()
                }
                Unit::Head(h) => heads.with_value(|l| head(&c, l, h as usize, gamma, from)),
            };
            Some(view! { {body} <SteerButtons at=at on_steer=on_steer/> }.into_any())
        }
    };
    let open = move || !matches!(card.get(), CardState::Closed);
    view! {
        <Show when=open>
            <div class="unit-card" data-testid="unit-card">
                <button class="close" title="Close the card" on:click=move |_| on_close.run(())>"×"</button>
                {body}
            </div>
        </Show>
    }
    .into_any()
}

fn neuron(c: &UnitCard, neurons: &[NeuronLayer], j: u32, gamma: f32) -> AnyView {
    let acts = c.activations.clone().unwrap_or_default();
    let scale = signed_scale(acts.iter().copied(), gamma);
    let relevance = neurons
        .get(c.unit.layer)
        .and_then(|l| l.top.iter().find(|n| n.index == j))
        .map(|n| {
            let scale = signed_scale(n.per_token.iter().copied(), gamma);
            view! {
                <h4>{format!("Its relevance at each token (Σ {})", sig3(n.value))}</h4>
                {colored(&c.tokens, &n.per_token, scale, "unit-relevance")}
            }
        });
    view! {
        <h3>{format!("Neuron {}", c.unit)}</h3>
        <p class="hint">"What it writes: its down_proj column read through the final norm and the output layer (a logit lens of the neuron). A negative activation turns promotion into suppression."</p>
        <p data-testid="unit-promotes"><strong>"promotes: "</strong>{token_list(&c.promotes)}</p>
        <p data-testid="unit-suppresses"><strong>"suppresses: "</strong>{token_list(&c.suppresses)}</p>
        <h4>"Where it fires in this prompt (its activation at each token)"</h4>
        {colored(&c.tokens, &acts, scale, "unit-activations")}
        {relevance}
    }
    .into_any()
}

fn head(
    c: &UnitCard,
    heads: &[HeadLayer],
    h: usize,
    gamma: f32,
    from: RwSignal<Option<usize>>,
) -> AnyView {
    let rows = c.attention.clone().unwrap_or_default();
    let n = rows.len();
    let tokens = c.tokens.clone();
    let pattern = move || {
        let q = from.get().filter(|&q| q < n).unwrap_or(n.saturating_sub(1));
        let row = rows.get(q).cloned().unwrap_or_default();
        let scale = ColorScale {
            signed: false,
            max: row.iter().copied().fold(0f32, f32::max),
            gamma,
        };
        let mut padded = row;
        padded.resize(tokens.len(), 0.0);
        colored(&tokens, &padded, scale, "unit-attention")
    };
    let options = c
        .tokens
        .iter()
        .enumerate()
        .rev()
        .map(|(i, t)| view! { <option value=i.to_string()>{format!("{i}: {:?}", t.text)}</option> })
        .collect_view();
    let relevance = heads
        .get(c.unit.layer)
        .and_then(|l| l.per_token.get(h))
        .map(|per| {
            let scale = signed_scale(per.iter().copied(), gamma);
            view! {
                <h4>{format!("Its relevance by source token (Σ {})", sig3(per.iter().sum()))}</h4>
                {colored(&c.tokens, per, scale, "unit-relevance")}
            }
        });
    view! {
        <h3>{format!("Head {}", c.unit)}</h3>
        <label>
            "Attention from token "
            <select name="attend_from" on:change=move |ev| from.set(event_target_value(&ev).parse().ok())>
                {options}
            </select>
            " (the last predicts the target)"
        </label>
        {pattern}
        {relevance}
    }
    .into_any()
}
