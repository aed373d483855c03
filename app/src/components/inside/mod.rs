//! Inside the model: the heads' relevance as a layer × head grid, each layer's most relevant
//! neurons, the card of the unit picked (what a neuron writes and where it fires, where a
//! head looks), and the ablation check (the top units zeroed against random ones).

pub mod ablation;
pub mod card;
pub mod heads;
pub mod neurons;

use leptos::prelude::*;
use tokenlens::colormap::ColorScale;
use tokenlens::Component;

use super::{Shown, Switch, Tip};
use ablation::AblationPanel;
use card::{CardState, UnitCardView};
use heads::HeadGrid;
use neurons::NeuronRows;

/// One signed color scale over every value (blue opposes, red supports), white at 0.
pub fn signed_scale(values: impl Iterator<Item = f32>, gamma: f32) -> ColorScale {
    ColorScale {
        signed: true,
        max: values.fold(0f32, |m, v| if v.is_finite() { m.max(v.abs()) } else { m }),
        gamma,
    }
}

/// The section: its switches, then the views once the explanation carries them.
#[component]
pub fn InsideSection(
    /// What is in view.
    shown: Shown,
    /// The explanation keeps neurons and heads (switching it recomputes).
    on: Signal<bool>,
    /// Turns them on or off.
    on_toggle: Callback<bool>,
    /// The ablation check is asked.
    ablation_on: Signal<bool>,
    /// Turns it on or off.
    on_ablation: Callback<bool>,
    /// The open card.
    card: Signal<CardState>,
    /// Opens a unit's card (None closes it).
    on_pick: Callback<Option<Component>>,
    /// Adds an edit to the steering field.
    on_steer: Callback<tokenlens::Edit>,
    /// The open neuron's corpus contexts.
    contexts: Signal<card::ContextsState>,
    /// Asks for them.
    on_contexts: Callback<()>,
    /// The tooltip.
    tip: RwSignal<Option<Tip>>,
) -> impl IntoView {
    let has_result = move || {
        shown
            .read(|r, _, m, _| Some(r.methods.contains_key(&m)))
            .unwrap_or(false)
    };
    let selected = Signal::derive(move || shown.display.get().unit);
    let views = move || {
        shown.read(|r, _, m, d| {
            let res = r.methods.get(&m)?;
            let (heads, neurons) = (res.heads.clone()?, res.neurons.clone()?);
            let ablation = res.ablation.clone();
            Some(view! {
                <p class="hint">
                    {format!(
                        "{}'s relevance inside the model: each head's output and each MLP neuron (the input of down_proj) times the gradient the method carries there, summed over tokens. Click a unit for its card.",
                        m.label()
                    )}
                </p>
                <HeadGrid layers=heads.clone() gamma=d.gamma selected=selected on_pick=on_pick tip=tip/>
                <NeuronRows layers=neurons.clone() gamma=d.gamma selected=selected on_pick=on_pick/>
                <UnitCardView
                    card=card
                    heads=heads
                    neurons=neurons
                    gamma=d.gamma
                    on_close=Callback::new(move |()| on_pick.run(None))
                    on_steer=on_steer
                    contexts=contexts
                    on_contexts=on_contexts
                />
                <AblationPanel ablation=ablation asked=ablation_on on_toggle=on_ablation/>
            }
            .into_any())
        })
    };
    let switch = move || {
        has_result().then(|| {
            view! {
                <Switch
                    name="inside"
                    label="neurons and heads"
                    checked=on
                    on_toggle=on_toggle
                    title="Each layer's 8 most relevant MLP neurons and every attention head, from the same backward passes (switching it recomputes)."
                />
            }
        })
    };
    view! {
        <section class="inside" data-testid="inside">
            {move || has_result().then(|| view! { <h2>"Inside the model"</h2> })}
            {switch}
            {views}
        </section>
    }
    .into_any()
}
