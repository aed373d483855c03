//! Pure views: data in, markup out. No server calls here.

pub mod colorbar;
pub mod token_view;
pub mod trace_grid;

use tokenlens::colormap::{bwr, hex, text_on, viridis, Rgb};

/// Cell color for a score already divided by the view's max |score|.
pub fn score_color(v: f32, signed: bool) -> Rgb {
    if signed {
        bwr(v)
    } else {
        viridis(v)
    }
}

/// Inline style for a colored cell: background and a readable text color.
pub fn cell_style(v: f32, signed: bool) -> String {
    let bg = score_color(v, signed);
    format!("background-color:{};color:{}", hex(bg), hex(text_on(bg)))
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

/// The `data-*` attribute of the element under a pointer event, parsed.
pub fn data_attr<T: std::str::FromStr>(ev: &leptos::ev::MouseEvent, name: &str) -> Option<T> {
    use leptos::wasm_bindgen::JsCast;
    let el = ev.target()?.dyn_into::<leptos::web_sys::Element>().ok()?;
    el.get_attribute(name)?.parse().ok()
}
