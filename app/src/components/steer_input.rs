//! The steering field: edits to neurons and heads as `--steer` writes them
//! (`23:h4*0, 29:1066=-5`), read when it changes; what does not read says why and keeps the
//! edits that did.

use leptos::prelude::*;
use tokenlens::{format_edits, parse_edits, Edit};

/// The field bound to `value`.
#[component]
pub fn SteerInput(value: RwSignal<Vec<Edit>>) -> impl IntoView {
    let problem = RwSignal::new(None::<String>);
    let on_change = move |ev| {
        let text = event_target_value(&ev);
        match parse_edits(&text) {
            Ok(edits) => {
                problem.set(None);
                value.set(edits);
            }
            Err(msg) => problem.set(Some(msg)),
        }
    };
    view! {
        <label title="Steering: edits applied to the model in every pass. layer:neuron*scale (23:1066*0 ablates a neuron; scales -10 to 10), layer:neuron=value (clamps it), layer:hHEAD*scale (a head), layer:hHEAD=norm (sets its output's norm); comma-separated, layers and units from 0. A unit's card adds its own.">
            "steer "
            <input
                type="text"
                name="steer"
                size="18"
                placeholder="e.g. 23:h4*0"
                prop:value=move || format_edits(&value.get())
                on:change=on_change
            />
        </label>
        {move || problem.get().map(|m| view! { <span class="error inline" role="alert" data-testid="steer-error">{m}</span> })}
    }
    .into_any()
}

/// `edits` with `edit` in place of any edit of the same unit.
pub fn with_edit(edits: &[Edit], edit: Edit) -> Vec<Edit> {
    let mut out: Vec<Edit> = edits
        .iter()
        .filter(|e| (e.layer, e.unit) != (edit.layer, edit.unit))
        .copied()
        .collect();
    out.push(edit);
    out
}
