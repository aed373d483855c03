//! The page's effects: the URL drives the view, view settings amend the history entry, the
//! model picker starts on the server's default, and the page goes live after hydration.
//! (Effects run only in the browser.)

use leptos::prelude::*;

use super::page::Page;
use crate::state::ViewState;

/// The URL drives the view: on load, and on every navigation (actions, back/forward). Only
/// what the new view needs and the page does not show is computed.
pub fn follow_url(page: Page) {
    let query = page.query();
    Effect::new(move |first: Option<()>| {
        let v = query.with(ViewState::from_params);
        let now = page.shown.get_untracked();
        let load = first.is_none() && (v.generation.is_some() || v.explain.is_some());
        if load || !v.same_results(&now) {
            // The view first, then the form: filling the form's signals wakes the effect
            // that amends the history entry with the shown view (below), which must already
            // be this one, or it writes the previous view back into the URL.
            page.shown.set(v.clone());
            page.fill(&v);
            leptos::task::spawn_local(page.runs.restore(v, false));
        } else if v != now {
            page.fill(&v);
            page.shown.set(v);
        }
    });
}

/// View settings (method, units, colors, query only) amend the current history entry, and
/// compute what they change: a method of several passes (computed only while in view), the
/// curves over the query only.
pub fn amend_on_view_settings(page: Page) {
    Effect::new(move |_| {
        let now = page.shown.get_untracked();
        let mut v = now.clone();
        v.method = page.method.get();
        v.display = page.display.get();
        v.query_only = page.query_only.get();
        if v != now {
            let compute = !page.shared && v.context() != now.context();
            page.go(v.clone(), false);
            if compute {
                leptos::task::spawn_local(page.runs.restore(v, false));
            }
        }
    });
}

/// The picker starts on the server's first (default) model; the list is asked again every
/// 2 s while a model is still loading.
pub fn default_model(page: Page) {
    let form = page.form;
    // Whether the link sets the template (the first view, `/` without parameters, sets it
    // off); read before any effect amends the URL with the view.
    let says_chat = page
        .query()
        .with_untracked(|q| q.latest_values().next().is_none() || q.get_str("chat").is_some());
    Effect::new(move || {
        if let Some(Ok(list)) = page.models.get() {
            if form.model.get_untracked().is_empty() {
                if let Some(first) = list.models.first() {
                    form.model.set(first.name.clone());
                    // A view from the URL keeps its own chat setting, and so does a link
                    // that sets it.
                    let empty = page
                        .shown
                        .with_untracked(|v| v.generation.is_none() && v.explain.is_none());
                    if empty && !says_chat {
                        form.chat.set(first.chat_template);
                    }
                }
            }
            if !list.loading.is_empty() {
                set_timeout(
                    move || page.models_tick.update(|t| *t += 1),
                    std::time::Duration::from_secs(2),
                );
            }
        }
    });
}

/// The page goes live once hydrated; what was typed into the server-rendered page before
/// (which hydrating the form overwrote) is put back first.
pub fn go_live(page: Page) {
    let early = std::cell::Cell::new(Some(crate::browser::early_edits()));
    Effect::new(move || {
        if let Some(edits) = early.take() {
            edits.replay();
        }
        page.live.set(true);
    });
}
