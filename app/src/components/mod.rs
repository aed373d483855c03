//! Views: data in through `Signal` props, markup out, actions out through `Callback`s. No
//! server calls here.

pub mod agreement;
pub mod answer;
pub mod colorbar;
pub mod compare_rows;
pub mod estimate;
pub mod export_bar;
pub mod faithfulness;
pub mod inside;
pub mod precision_select;
pub mod prediction;
pub mod prompt_form;
pub mod share_bar;
pub mod status;
pub mod steer_input;
pub mod step_matrix;
pub mod token_view;
pub mod trace_grid;
pub mod view_controls;

use leptos::prelude::*;
use tokenlens::colormap::{hex, text_on, Rgb};

/// Inline style for a colored cell: background and a readable text color.
pub fn cell_style(bg: Rgb) -> String {
    format!("background-color:{};color:{}", hex(bg), hex(text_on(bg)))
}

/// A token's text for an axis label: visible whitespace, at most 14 characters.
pub fn axis_label(text: &str) -> String {
    tokenlens::text::label(text, 14)
}

/// A labelled checkbox bound to `value` (checked as the server renders it, then following the
/// signal both ways).
#[component]
pub fn Checkbox(
    /// The input's name.
    name: &'static str,
    /// The text after the box.
    label: &'static str,
    /// The state.
    value: RwSignal<bool>,
    /// Greyed out while true.
    #[prop(optional, into)]
    disabled: Signal<bool>,
) -> impl IntoView {
    view! {
        <input
            type="checkbox"
            name=name
            checked=value.get_untracked()
            prop:checked=move || value.get()
            prop:disabled=move || disabled.get()
            on:change=move |ev| value.set(leptos::prelude::event_target_checked(&ev))
        />
        {label}
    }
}

/// A labelled checkbox showing `checked` that asks `on_toggle` to change it: for switches
/// whose change goes through the page (recomputing, amending the view), unlike [`Checkbox`].
#[component]
pub fn Switch(
    /// The input's name.
    name: &'static str,
    /// The text after the box.
    label: &'static str,
    /// The state shown.
    #[prop(into)]
    checked: Signal<bool>,
    /// Asked with the new state.
    on_toggle: Callback<bool>,
    /// What the switch does, on hover.
    #[prop(optional)]
    title: Option<&'static str>,
    /// Greyed out while true.
    #[prop(optional, into)]
    disabled: Signal<bool>,
) -> impl IntoView {
    view! {
        <label title=title class:off=move || disabled.get()>
            <input
                type="checkbox"
                name=name
                prop:checked=move || checked.get()
                prop:disabled=move || disabled.get()
                on:change=move |ev| on_toggle.run(leptos::prelude::event_target_checked(&ev))
            />
            " "
            {label}
        </label>
    }
}

/// The explanation in view and how it is shown: what the token view and the grid draw.
#[derive(Clone, Copy)]
pub struct Shown {
    /// The explanation (None: nothing in view).
    pub result: Signal<Option<crate::state::Partial>>,
    /// Its units in view.
    pub units: Signal<Option<crate::display::Units>>,
    /// The method in view.
    pub method: Signal<tokenlens::Method>,
    /// Units and colors.
    pub display: Signal<crate::display::Display>,
    /// A run is going (what is missing may still come).
    pub running: Signal<bool>,
}

impl Shown {
    /// Reads what is in view, tracked: `f` gets the explanation, its units, the method and
    /// the display settings; None while there is no explanation.
    pub fn read<R>(
        &self,
        f: impl FnOnce(
            &crate::state::Partial,
            crate::display::Units,
            tokenlens::Method,
            crate::display::Display,
        ) -> Option<R>,
    ) -> Option<R> {
        let (m, d) = (self.method.get(), self.display.get());
        let u = self.units.get()?;
        self.result.with(|r| f(r.as_ref()?, u, m, d))
    }
}

/// A hover tooltip: where, and what it says.
#[derive(Clone, Debug, PartialEq)]
pub struct Tip {
    /// Viewport x of the pointer.
    pub x: f64,
    /// Viewport y of the pointer.
    pub y: f64,
    /// Lines of text.
    pub lines: Vec<String>,
}

/// The `data-*` attribute of the element an event happened on, parsed.
pub fn data_attr<T: std::str::FromStr>(ev: &leptos::ev::Event, name: &str) -> Option<T> {
    target(ev)?.get_attribute(name)?.parse().ok()
}

/// The element an event happened on.
fn target(ev: &leptos::ev::Event) -> Option<leptos::web_sys::Element> {
    use leptos::wasm_bindgen::JsCast;
    ev.target()?.dyn_into::<leptos::web_sys::Element>().ok()
}

/// Where a tooltip for a focused element goes: below its left edge (viewport px).
pub fn focus_point(ev: &leptos::ev::Event) -> Option<(f64, f64)> {
    #[cfg(feature = "hydrate")]
    {
        let rect = target(ev)?.get_bounding_client_rect();
        Some((rect.left(), rect.bottom()))
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = ev;
        None
    }
}

/// Keyboard movement inside a group of focusable items (tokens, grid cells) that has one tab
/// stop: `next` picks the item an arrow key leads to from the focused one; that item becomes
/// the tab stop and takes focus.
pub fn arrow_keys(
    ev: &leptos::ev::KeyboardEvent,
    next: impl Fn(&leptos::web_sys::Element, &str) -> Option<leptos::web_sys::Element>,
) {
    use leptos::wasm_bindgen::JsCast;
    let Some(from) = target(ev) else { return };
    let Some(to) = next(&from, &ev.key()) else {
        return;
    };
    ev.prevent_default();
    let _ = from.set_attribute("tabindex", "-1");
    let _ = to.set_attribute("tabindex", "0");
    // `focus` is looked up on the element itself, so an SVG element takes it too.
    let _ = to.unchecked_into::<leptos::web_sys::HtmlElement>().focus();
}

/// What a result was computed in, beside it: "f32: exact" or "bf16: approximate", with what
/// that means on hover; with `note`, why it is not what was asked for.
#[component]
pub fn PrecisionBadge(
    precision: tokenlens::Precision,
    /// Why the result is not in the precision asked for.
    note: Option<String>,
) -> impl IntoView {
    let what = match precision {
        tokenlens::Precision::Bf16 => {
            "bf16: the matrix products ran with bf16 operands (f32 sums) on the CPU's matrix units, generation on the model file's quantized weights; scores agree with f32 in ranking (Spearman ≥ 0.95 on the reference fixtures), not to the digit"
        }
        _ => "f32: every product in f32, as the PyTorch references compute",
    };
    let (label, title) = match &note {
        Some(why) => (
            format!("{} (bf16 unavailable)", precision.label()),
            format!("{why}. {what}"),
        ),
        None => (precision.label().to_string(), what.to_string()),
    };
    view! {
        <span
            class="precision-badge"
            data-precision=precision.name()
            data-fallback=note.is_some().then_some("bf16")
            title=title
        >
            {label}
        </span>
    }
}
