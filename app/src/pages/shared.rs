//! `/s/<id>`: a permalink. Shows the stored view and results as they were, without the
//! model (the server answers a 404 page before this renders for unknown ids).

use leptos::prelude::*;
use leptos_router::hooks::use_params_map;

use super::api::load_shared;
use super::compare::ComparePage;
use super::explain::StoredPage;

/// The permalink page.
#[component]
pub fn SharedPage() -> impl IntoView {
    let params = use_params_map();
    let snapshot = Resource::new(
        move || params.read().get("id").unwrap_or_default(),
        load_shared,
    );
    view! {
        <Suspense fallback=|| view! { <main><p class="waiting">"loading the shared view…"</p></main> }>
            {move || snapshot.get().map(|r| match r {
                Ok(s) if s.against.is_some() => view! { <ComparePage snapshot=s/> }.into_any(),
                Ok(s) => view! { <StoredPage snapshot=s/> }.into_any(),
                Err(e) => view! {
                    <main>
                        <h1>"TokenLens"</h1>
                        <div class="error" role="alert" data-testid="error">{e.to_string()}</div>
                        <p><a href="/">"Open the viewer"</a></p>
                    </main>
                }.into_any(),
            })}
        </Suspense>
    }
}
