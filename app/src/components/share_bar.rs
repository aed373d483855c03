//! The Share button, the link it made (and whether it reached the clipboard), and on a
//! permalink page the note that the view is stored, with a link to recompute it live.

use leptos::prelude::*;

/// The share bar. `live_url`: where the stored view recomputes (shown on permalink pages).
#[component]
pub fn ShareBar(
    /// This page shows a stored view.
    shared: bool,
    /// The live page of the view in sight.
    #[prop(into)]
    live_url: Signal<String>,
    /// Something can be shared now.
    #[prop(into)]
    can_share: Signal<bool>,
    /// The last link, or why there is none.
    #[prop(into)]
    link: Signal<Option<Result<String, String>>>,
    /// Whether the last link reached the clipboard (None while none is out).
    #[prop(into)]
    copied: Signal<Option<bool>>,
    /// Store the view and make a link.
    on_share: Callback<()>,
) -> AnyView {
    let note = shared.then(|| {
        view! {
            <span class="shared-note" data-testid="shared-note">
                "A shared view, as it was stored: nothing was recomputed. "
                <a href=move || live_url.get()>"Recompute it live"</a>
            </span>
        }
    });
    let result = move || {
        link.get().map(|l| match l {
            Ok(link) => view! {
                <input class="share-link" data-testid="share-link" readonly=true prop:value=link/>
                {move || copied.get().map(|copied| view! {
                    <span class="share-copied" data-testid="share-copied">
                        {if copied { "link copied" } else { "copy the link from the box" }}
                    </span>
                })}
            }
            .into_any(),
            Err(e) => view! { <span class="error" data-testid="share-error">{e}</span> }.into_any(),
        })
    };
    view! {
        <div class="share-bar">
            {note}
            <button
                type="button"
                name="share"
                title="store this view and copy a link to it"
                disabled=move || !can_share.get()
                on:click=move |_| on_share.run(())
            >
                "Share"
            </button>
            {result}
        </div>
    }
    .into_any()
}
