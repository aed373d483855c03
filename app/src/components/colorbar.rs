//! The color legend.

use leptos::prelude::*;
use tokenlens::colormap::hex;

use super::score_color;
use crate::format::sig3;

/// A horizontal colorbar from −max (or 0) to max.
#[component]
pub fn Colorbar(
    /// Diverging (signed scores) or sequential.
    signed: bool,
    /// The score at the right end.
    max: f32,
    /// What the colors mean.
    label: String,
) -> impl IntoView {
    let stops: Vec<String> = (0..=10)
        .map(|i| {
            let t = i as f32 / 10.0;
            let v = if signed { 2.0 * t - 1.0 } else { t };
            format!("{} {}%", hex(score_color(v, signed)), i * 10)
        })
        .collect();
    let gradient = format!("background:linear-gradient(to right, {})", stops.join(", "));
    let low = if signed { sig3(-max) } else { "0".to_string() };
    view! {
        <div class="colorbar" data-signed=signed.to_string()>
            <span class="colorbar-label">{label}</span>
            <span class="colorbar-end">{low}</span>
            <span class="colorbar-bar" style=gradient></span>
            <span class="colorbar-end">{sig3(max)}</span>
        </div>
    }
}
