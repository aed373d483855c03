//! The explain page: prompt in; a generated answer and streamed attributions out.
//!
//! Every action writes the view into the URL (see [`crate::state`]); the page recomputes
//! whatever the URL asks for that it does not already show, so a link, a reload and
//! back/forward all reproduce a view. A permalink page starts from a stored snapshot instead.
//!
//! Rooms: [`page`] holds the state and the moves between views, `handlers` what each control
//! does, `effects` what follows the URL and the view settings, `layout` and `results` the
//! markup, `runs` the computing, `actions` sharing and exporting, `estimate` the cost asked
//! while typing.

mod actions;
mod card;
mod effects;
mod estimate;
mod handlers;
mod layout;
mod original;
mod page;
mod results;
mod runs;

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

use crate::state::{Replayed, Snapshot, ViewState};
use layout::PageView;
use page::Page;

/// The live page: the view in the URL.
#[component]
pub fn ExplainPage() -> impl IntoView {
    let query = use_query_map();
    let initial = ViewState::from_params(&query.get_untracked());
    let page = Page::new(query, &initial, Replayed::default(), None, false);
    effects::go_live(page);
    effects::follow_url(page);
    effects::amend_on_view_settings(page);
    effects::default_model(page);
    view! { <PageView page=page/> }
}

/// A permalink's page: the stored view with what its sealed records replay to. Its actions
/// open the live page at `/`; view settings change only what is shown here.
#[component]
pub fn StoredPage(snapshot: Snapshot) -> impl IntoView {
    let (replayed, error) = match snapshot.replay() {
        Ok(r) => (r, None),
        Err(e) => (
            Replayed::default(),
            Some(format!("this shared view cannot be shown: {e}")),
        ),
    };
    let page = Page::new(use_query_map(), &snapshot.view, replayed, error, true);
    effects::go_live(page);
    effects::amend_on_view_settings(page);
    effects::default_model(page);
    view! { <PageView page=page/> }
}
