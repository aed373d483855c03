//! Method agreement: Spearman's rank correlation between the computed methods' scores of
//! the units in view, as a small matrix. Two maps that rank the tokens alike (ρ near 1) tell
//! the same story; near 0 they disagree, and at most one of them can be faithful.

use leptos::prelude::*;
use tokenlens::Method;

use super::Shown;
use crate::format::sig3;
use tokenlens::text::spearman;

/// The agreement matrix of the methods the explanation in view has (two or more).
#[component]
pub fn AgreementPanel(
    /// What is in view.
    shown: Shown,
) -> impl IntoView {
    let body = move || {
        shown.read(|r, u, _, d| {
            let (a, b) = u.range;
            let methods: Vec<(Method, Vec<f32>)> = Method::ALL
                .iter()
                .copied()
                .filter_map(|m| {
                    let s = u.scores(&r.methods.get(&m)?.scores, d.aggregate);
                    Some((m, s.get(a..b)?.to_vec()))
                })
                .collect();
            if methods.len() < 2 {
                return None;
            }
            let head = methods
                .iter()
                .map(|(m, _)| view! { <th scope="col">{m.label()}</th> })
                .collect_view();
            let rows = methods
                .iter()
                .map(|(m, x)| {
                    let cells = methods
                        .iter()
                        .map(|(n, y)| {
                            let rho = spearman(x, y);
                            let text = rho.map_or("–".to_string(), sig3);
                            view! {
                                <td
                                    data-methods=format!("{}:{}", m.name(), n.name())
                                    data-rho=rho.map(|v| v.to_string())
                                >
                                    {text}
                                </td>
                            }
                        })
                        .collect_view();
                    view! { <tr><th scope="row">{m.label()}</th>{cells}</tr> }
                })
                .collect_view();
            Some(view! {
                <section class="agreement" data-testid="agreement">
                    <h2>"Do the methods agree?"</h2>
                    <p class="hint">
                        "Spearman's ρ between the methods' scores of the units in view: 1 = the same ranking, 0 = unrelated, −1 = reversed."
                    </p>
                    <table>
                        <thead><tr><th></th>{head}</tr></thead>
                        <tbody>{rows}</tbody>
                    </table>
                </section>
            })
        })
    };
    body.into_any()
}
