//! The precision select: auto, f32 or bf16, and what bf16 means on this server.

use leptos::prelude::*;
use tokenlens::Precision;

/// The precision of the products: auto, f32 or bf16. Where the picked model cannot multiply in
/// bf16 here (`bf16_unavailable` gives why), the bf16 option says that it runs in f32.
#[component]
pub fn PrecisionSelect(
    /// The form's choice.
    value: RwSignal<Precision>,
    /// Why bf16 products are unavailable to the picked model on this server, if they are.
    #[prop(into)]
    bf16_unavailable: Signal<Option<String>>,
) -> AnyView {
    let options = Precision::ALL
        .map(|p| {
            let label = move || match (p, bf16_unavailable.get()) {
                (Precision::Auto, _) => "auto",
                (Precision::F32, _) => "f32 (exact)",
                (Precision::Bf16, None) => "bf16 (fast, approximate)",
                (Precision::Bf16, Some(_)) => "bf16 (runs in f32 here)",
            };
            let title = move || match p {
                Precision::Bf16 => bf16_unavailable
                    .get()
                    .map(|why| format!("Explanations run in f32 on this server: {why}")),
                _ => None,
            };
            view! {
                <option value=p.name() selected=move || value.get() == p title=title>{label}</option>
            }
        })
        .collect_view();
    view! {
        <label
            title="How the matrix products are computed. f32: exact, as the PyTorch references. bf16: bf16 operands with f32 sums on the CPU's matrix units, and generation on the model file's quantized weights as llama.cpp runs them: several times faster, scores approximate. auto: f32 for explanations that take about a second or less, bf16 above; generation on the quantized weights."
            data-bf16=move || bf16_unavailable.with(|u| if u.is_some() { "unavailable" } else { "available" })
        >
            "Precision "
            <select
                name="precision"
                prop:value=move || value.get().name()
                on:change=move |ev| {
                    if let Ok(p) = Precision::parse(&event_target_value(&ev)) {
                        value.set(p);
                    }
                }
            >
                {options}
            </select>
        </label>
    }
    .into_any()
}
