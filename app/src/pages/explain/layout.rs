//! The explain page's parts, top to bottom: the form and what it would cost, the run's
//! status, sharing, the way to compare, the "out of date" note, then the results.

use leptos::prelude::*;
use tokenlens::Method;

use super::estimate::estimate;
use super::page::Page;
use super::results::ResultsView;
use crate::components::estimate::EstimateLine;
use crate::components::prompt_form::PromptForm;
use crate::components::share_bar::ShareBar;
use crate::components::status::{StatusLine, Tooltip};
use crate::state::CompareView;

/// The page's markup over `page`.
#[component]
pub fn PageView(page: Page) -> impl IntoView {
    let status = page.status;
    let results = page.results;
    let models = Signal::derive(move || page.models.get().map(|r| r.map_err(|e| e.to_string())));
    // Something complete to share: a cancelled or failed run leaves nothing to store.
    let can_share = Signal::derive(move || {
        let complete = results.result_for.with(Option::is_some)
            || results
                .answer
                .with(|a| a.as_ref().is_some_and(|a| a.stop.is_some()))
            || results.matrix_for.with(Option::is_some);
        page.live.get() && !status.running.get() && complete
    });
    // The form asks for something else than the result shown (not while it is computed).
    let stale = Signal::derive(move || {
        let d = page.default_model.get();
        !status.running.get() && page.shown.with(|v| page.form.differs_from(v, &d))
    });
    view! {
        <main>
            <header>
                <h1>"TokenLens"</h1>
                <p class="tagline">"Why did the model say that?"</p>
            </header>
            <PromptForm
                form=page.form
                models=models
                can_run=page.can_run()
                running=status.running
                on_submit=Callback::new(move |()| page.submit())
                on_generate=Callback::new(move |()| page.generate())
                on_cancel=Callback::new(move |()| status.cancel())
                on_pick_model=Callback::new(move |name| page.pick_model(name))
            />
            <EstimateLine estimate=estimate(page)/>
            <StatusLine stage=status.stage progress=status.progress running=status.running error=status.error/>
            <ShareBar
                shared=page.shared
                live_url=Signal::derive(move || format!("/{}", page.shown.get().to_query()))
                can_share=can_share
                link=page.sharing.link
                copied=page.sharing.copied
                on_share=Callback::new(move |()| page.share())
            />
            <CompareLink page=page/>
            {move || stale.get().then(|| view! {
                <div class="stale-note" data-testid="stale" role="status">
                    "Out of date: the prompt or settings changed since this result was computed. Press Explain (or Generate) to recompute; Share and Export cover the result shown."
                </div>
            })}
            <ResultsView page=page stale=stale/>
            <Tooltip tip=page.tip/>
        </main>
    }
}

/// A prompt's explanation can be compared with another method, model or prompt.
#[component]
fn CompareLink(page: Page) -> impl IntoView {
    move || {
        let v = page.shown.get();
        let e = v.explain.as_ref()?;
        let computed = page.results.result.with(Option::is_some);
        (e.step.is_none() && e.span.is_none() && computed).then(|| {
            let other = if v.method == Method::Attnlrp {
                Method::Saliency
            } else {
                Method::Attnlrp
            };
            let href = format!("/compare{}", CompareView::from_view(&v, other).to_query());
            // A steered view also compares with the model before its edits.
            let unsteered = (!v.steer.is_empty()).then(|| {
                let target = page
                    .results
                    .result
                    .with(|r| Some(r.as_ref()?.target.as_ref()?.token.id));
                let href = format!(
                    "/compare{}",
                    CompareView::before_after(&v, target).to_query()
                );
                view! {
                    " · "
                    <a href=href data-testid="compare-unsteered">"Compare with the model before its edits →"</a>
                }
            });
            view! {
                <p class="compare-link">
                    <a href=href data-testid="compare-link">
                        "Compare with another method, model or prompt →"
                    </a>
                    {unsteered}
                </p>
            }
        })
    }
}
