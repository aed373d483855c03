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
    /// Whether the picked model's bf16 products are emulated on this server
    /// (`TOKENLENS_BF16=emulate`): bf16's numbers at f32's speed.
    #[prop(into)]
    bf16_emulated: Signal<bool>,
) -> AnyView {
    let options = Precision::ALL
        .map(|p| {
            let label = move || match (p, bf16_unavailable.get(), bf16_emulated.get()) {
                (Precision::Auto, ..) => "auto",
                (Precision::F32, ..) => "f32 (exact)",
                (Precision::Bf16, Some(_), _) => "bf16 (runs in f32 here)",
                (Precision::Bf16, None, true) => "bf16 (emulated, approximate)",
                (Precision::Bf16, None, false) => "bf16 (fast, approximate)",
            };
            let title = move || match p {
                Precision::Bf16 if bf16_emulated.get() => Some(
                    "Emulated on this server (TOKENLENS_BF16=emulate): operands rounded to \
                     bf16, products in f32. bf16's numbers, no faster than f32."
                        .to_string(),
                ),
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
            data-bf16=move || match (bf16_unavailable.with(Option::is_some), bf16_emulated.get()) {
                (true, _) => "unavailable",
                (false, true) => "emulated",
                (false, false) => "available",
            }
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
