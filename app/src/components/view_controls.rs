//! How the result is shown: the method in view, query only, units, aggregation and colors.
//! Changing any of these recomputes nothing.

use leptos::prelude::*;
use tokenlens::granularity::{Aggregate, Granularity};
use tokenlens::Method;

use super::Checkbox;
use crate::display::{Clip, Display};

fn granularity_label(g: Granularity) -> &'static str {
    match g {
        Granularity::Token => "tokens",
        Granularity::Word => "words",
        Granularity::Sentence => "sentences",
    }
}

/// The method toggles (one per registered method; `computed` says which the result in view
/// already has) and the display settings.
#[component]
pub fn ViewControls(
    /// The method in view.
    method: RwSignal<Method>,
    /// Only the user's text (not the template) is shown and scaled.
    query_only: RwSignal<bool>,
    /// Units and colors.
    display: RwSignal<Display>,
    /// Whether the result in view has this method's scores yet (false: marked pending).
    computed: Callback<Method, bool>,
) -> AnyView {
    let toggles = Method::ALL
        .iter()
        .copied()
        .map(|m| {
            view! {
                <label class="method" class:pending=move || !computed.run(m) title=m.info().about>
                    <input
                        type="radio"
                        name="method"
                        value=m.name()
                        checked=method.get_untracked() == m
                        prop:checked=move || method.get() == m
                        on:change=move |_| method.set(m)
                    />
                    {m.label()}
                </label>
            }
        })
        .collect_view();
    // A `<select>` of named options bound to one display field.
    let select = move |name: &'static str,
                       options: Vec<(&'static str, &'static str)>,
                       get: fn(&Display) -> &'static str,
                       set: fn(&mut Display, &str)| {
        let now = display.with_untracked(get);
        let options = options
            .into_iter()
            .map(|(value, label)| view! { <option value=value selected=value == now>{label}</option> })
            .collect_view();
        view! {
            <select
                name=name
                prop:value=move || display.with(get)
                on:change=move |ev| {
                    let v = event_target_value(&ev);
                    display.update(|d| set(d, &v))
                }
            >
                {options}
            </select>
        }
    };
    // A checkbox bound to one boolean display field.
    let flag = move |name: &'static str,
                     label: &'static str,
                     title: &'static str,
                     field: fn(&mut Display) -> &mut bool| {
        let now = move || {
            let mut d = display.get();
            *field(&mut d)
        };
        view! {
            <label title=title>
                <input
                    type="checkbox"
                    name=name
                    checked=untrack(now)
                    prop:checked=now
                    on:change=move |ev| {
                        let on = event_target_checked(&ev);
                        display.update(|d| *field(d) = on)
                    }
                />
                {label}
            </label>
        }
    };
    let granularities = Granularity::ALL
        .into_iter()
        .map(|g| (g.name(), granularity_label(g)))
        .collect();
    let clips = Clip::ALL
        .into_iter()
        .map(|c| (c.name(), c.label()))
        .collect();
    view! {
        <div class="view-controls">
            <span class="label">"Method: "</span>
            {toggles}
            <details class="method-help" data-testid="method-help">
                <summary aria-label="what each method measures">"?"</summary>
                <dl>
                    {Method::ALL
                        .iter()
                        .copied()
                        .map(|m| view! { <dt>{m.label()}</dt><dd>{m.info().about}</dd> })
                        .collect_view()}
                </dl>
            </details>
            <label class="query-only"><Checkbox name="query_only" label=" query only" value=query_only/></label>
        </div>
        // The method in view, in words (what a keyboard user does not get from hovering).
        <p class="hint method-about" data-testid="method-about" aria-live="polite">
            {move || {
                let m = method.get();
                format!("{}: {}.", m.label(), m.info().about)
            }}
        </p>
        <div class="view-controls">
            <label>
                "View "
                {select("granularity", granularities, |d| d.granularity.name(), |d, v| {
                    if let Some(g) = Granularity::from_name(v) {
                        d.granularity = g
                    }
                })}
            </label>
            <label>
                "aggregate "
                {select("aggregate", vec![("sum", "sum"), ("max_abs", "max |score|")], |d| d.aggregate.name(), |d, v| {
                    if let Some(a) = Aggregate::from_name(v) {
                        d.aggregate = a
                    }
                })}
            </label>
            {flag("signs", " ± marks", "Mark each token's sign with + or − (signed methods), not by color alone.",
                |d| &mut d.sign_marks)}
            {flag("absolute", " absolute", "Color |score| on one sequential map, for signed methods too.",
                |d| &mut d.absolute)}
            {flag("sinks_out", " sinks out of the scale",
                "Relevance often piles on the first token, special tokens and the chat template's tokens (attention sinks), leaving the rest near white. Their scores stay in hover and exports.",
                |d| &mut d.sinks_out)}
            <label>
                "colors end at "
                {select("clip", clips, |d| d.clip.name(), |d, v| {
                    if let Some(c) = Clip::from_name(v) {
                        d.clip = c
                    }
                })}
            </label>
            <label>
                "gamma "
                <input
                    type="range"
                    name="gamma"
                    min="0.2"
                    max="3"
                    step="0.1"
                    value=display.get_untracked().gamma.to_string()
                    prop:value=move || display.get().gamma.to_string()
                    on:input=move |ev| {
                        if let Ok(g) = event_target_value(&ev).parse::<f32>() {
                            display.update(|d| d.gamma = g)
                        }
                    }
                />
                <span class="gamma-value">{move || format!("{:.1}", display.get().gamma)}</span>
            </label>
        </div>
    }
    .into_any()
}
