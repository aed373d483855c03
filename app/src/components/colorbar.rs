//! The color legend; it follows the page's color controls.

use leptos::prelude::*;
use tokenlens::colormap::{hex, ColorScale};

use crate::format::sig3;

/// A horizontal colorbar from −max (or 0) to max, drawn through `scale` (so gamma shows).
#[component]
pub fn Colorbar(
    /// The scale the scores are colored with.
    scale: ColorScale,
    /// What the colors mean.
    label: String,
) -> impl IntoView {
    let max = scale.max;
    let stops: Vec<String> = (0..=20)
        .map(|i| {
            let t = i as f32 / 20.0;
            let v = if scale.signed {
                (2.0 * t - 1.0) * max
            } else {
                t * max
            };
            format!("{} {}%", hex(scale.color(v)), i * 5)
        })
        .collect();
    let gradient = format!("background:linear-gradient(to right, {})", stops.join(", "));
    let low = if scale.signed {
        sig3(-max)
    } else {
        "0".to_string()
    };
    view! {
        <div
            class="colorbar"
            data-signed=scale.signed.to_string()
            data-max=max.to_string()
            data-gamma=scale.gamma.to_string()
        >
            <span class="colorbar-label">{label}</span>
            <span class="colorbar-end">{low}</span>
            <span class="colorbar-bar" style=gradient></span>
            <span class="colorbar-end">{sig3(max)}</span>
        </div>
    }
}

/// The legend of a grid colored per row (a layer, or an answer step): a colorbar of the
/// normalized value, −1 to 1 (so gamma shows), and what the normalization is.
#[component]
pub fn PerRowLegend(
    /// What a row is ("layer", "row").
    row: &'static str,
    /// The page's gamma.
    gamma: f32,
    /// More to say, after the normalization.
    #[prop(optional_no_strip)]
    note: Option<String>,
) -> impl IntoView {
    let scale = ColorScale {
        signed: true,
        max: 1.0,
        gamma,
    };
    view! {
        <Colorbar scale=scale label=format!("value ÷ the {row}'s end value")/>
        <p class="hint legend-text" data-testid=format!("{row}-legend")>
            {format!(
                "Each {row} on its own scale: a cell's color is its value ÷ the {row}'s max |value| (or the percentile chosen in \"colors end at\"), so colors compare within a {row}, not across; hover a cell for its value."
            )}
            {note.map(|n| format!(" {n}"))}
        </p>
    }
}
