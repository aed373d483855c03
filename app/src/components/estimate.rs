//! Before a run: the prompt's token count and about how long explaining it takes on this
//! server; a warning when that is long (a soft limit), an error over the model's limit.

use leptos::prelude::*;

use crate::pages::api::Estimate;

/// Explanations slower than this get a warning before they run.
const SLOW_SECONDS: f64 = 20.0;

/// The estimate line under the prompt (nothing until the first estimate arrives).
#[component]
pub fn EstimateLine(
    /// The estimate for what the form holds now, or why there is none.
    #[prop(into)]
    estimate: Signal<Option<Result<Estimate, String>>>,
) -> AnyView {
    let body = move || {
        estimate.get().map(|e| {
            let e = match e {
                Ok(e) => e,
                Err(msg) => {
                    return view! { <p class="estimate over" data-testid="estimate">{msg}</p> }
                        .into_any()
                }
            };
            let tokens = format!("{} tokens", e.tokens);
            let (class, text) = if let Some(why) = &e.refused {
                ("over", format!("{tokens}: {why}"))
            } else if e.tokens > e.max_tokens {
                (
                    "over",
                    format!(
                        "{tokens}: over this model's limit of {} tokens on this server; shorten the prompt",
                        e.max_tokens
                    ),
                )
            } else {
                match e.seconds {
                    Some(s) if s > SLOW_SECONDS => (
                        "slow",
                        format!(
                            "{tokens}: explaining takes about {s:.0} s here (the map streams in as each method finishes; a shorter prompt is faster)"
                        ),
                    ),
                    Some(s) => ("", format!("{tokens} · explaining takes about {s:.1} s here")),
                    None => ("", tokens),
                }
            };
            view! {
                <p
                    class=format!("estimate {class}")
                    data-testid="estimate"
                    data-tokens=e.tokens
                    data-seconds=e.seconds.map(|s| s.to_string())
                >
                    {text}
                </p>
            }
            .into_any()
        })
    };
    body.into_any()
}
