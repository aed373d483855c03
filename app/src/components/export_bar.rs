//! The export buttons (PNG, SVG, HTML, JSON) and what went wrong with the last export.

use leptos::prelude::*;

/// The formats, each with what its file holds.
const FORMATS: [(&str, &str, &str); 4] = [
    (
        "png",
        "PNG",
        "the token view and the grid with legend and labels, 2× resolution",
    ),
    (
        "svg",
        "SVG",
        "the token view and the grid with legend and labels, as vectors",
    ),
    (
        "html",
        "HTML",
        "a standalone page: colored tokens, hover scores, the grid; works offline",
    ),
    (
        "json",
        "JSON",
        "the explanation in the CLI's JSON schema (every method)",
    ),
];

/// One button per format, on while `ready`; `on_export` receives the format's name.
#[component]
pub fn ExportBar(
    /// The method in view has its scores.
    #[prop(into)]
    ready: Signal<bool>,
    /// The last export's error.
    #[prop(into)]
    error: Signal<Option<String>>,
    /// Export in this format.
    on_export: Callback<&'static str>,
) -> AnyView {
    let buttons = FORMATS
        .into_iter()
        .map(|(format, label, title)| {
            view! {
                <button
                    type="button"
                    name=format!("export_{format}")
                    disabled=move || !ready.get()
                    on:click=move |_| on_export.run(format)
                    title=title
                >
                    {label}
                </button>
            }
        })
        .collect_view();
    view! {
        <div class="export-bar" data-testid="export-bar">
            <span class="label">"Export: "</span>
            {buttons}
            {move || error.get().map(|e| view! { <span class="error" data-testid="export-error">{e}</span> })}
        </div>
    }
    .into_any()
}
