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
