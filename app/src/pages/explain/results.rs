//! The results: the answer, the prediction, how to show them, and the views (tokens, the
//! layer grid, agreement, faithfulness, the all-steps matrix).

use leptos::prelude::*;

use super::page::Page;
use crate::components::agreement::AgreementPanel;
use crate::components::answer::AnswerSection;
use crate::components::export_bar::ExportBar;
use crate::components::faithfulness::FaithfulnessPanel;
use crate::components::inside::InsideSection;
use crate::components::prediction::{Explained, PredictionPanel};
use crate::components::step_matrix::StepsSection;
use crate::components::token_view::TokensPanel;
use crate::components::trace_grid::TraceSection;
use crate::components::view_controls::ViewControls;
use crate::components::Shown;

/// The explanation in view as the prediction panel shows it: what was predicted and what
/// is explained (for an answer step, the token generated there).
fn explained(page: Page) -> Signal<Option<Explained>> {
    let (result, answer) = (page.results.result, page.results.answer);
    Signal::derive(move || {
        result.with(|r| {
            let r = r.as_ref()?;
            let (prediction, target) = r.predicted()?;
            let generated = r
                .step
                .and_then(|k| answer.with(|a| a.as_ref().and_then(|a| a.tokens.get(k).cloned())));
            Some(Explained {
                prediction: prediction.clone(),
                target: target.clone(),
                step: r.step,
                generated,
                precision: r.precision,
                precision_note: r.precision_note.clone(),
            })
        })
    })
}

/// The results part of the page; dimmed while `stale`.
#[component]
pub fn ResultsView(page: Page, #[prop(into)] stale: Signal<bool>) -> impl IntoView {
    let (status, result, matrix) = (page.status, page.results.result, page.results.matrix);
    let (method, display, query_only) = (page.method, page.display, page.query_only);
    // Memos: the answer re-renders only when the step or span explained changes, not on
    // every event of the explanation's stream.
    let selected = Memo::new(move |_| result.with(|r| r.as_ref().and_then(|r| r.step)));
    let selected_span = Memo::new(move |_| {
        result.with(|r| {
            let t = r.as_ref()?.target.as_ref()?;
            t.span.as_ref().map(|s| s.span)
        })
    });
    // A method still to come is marked pending while the run goes (not after it stopped).
    let computed = Callback::new(move |m| {
        !status.running.get()
            || result.with(|r| r.as_ref().is_none_or(|r| r.methods.contains_key(&m)))
    });
    let export_error = RwSignal::new(None::<String>);
    let export_ready = Signal::derive(move || {
        let m = method.get();
        page.live.get() && result.with(|r| r.as_ref().is_some_and(|r| r.methods.contains_key(&m)))
    });
    let in_view = Shown {
        result: result.into(),
        units: page.units.into(),
        method: method.into(),
        display: display.into(),
        running: status.running.into(),
    };
    let tip = page.tip;
    let (contexts, on_contexts) = super::card::neuron_contexts_of(page);
    view! {
        <div class="results" class:stale=move || stale.get()>
        <AnswerSection
            answer=page.results.answer
            selected=selected
            selected_span=selected_span
            method=method
            can_run=page.can_run()
            on_pick=Callback::new(move |k| page.pick_step(k))
            on_span=Callback::new(move |s| page.pick_span(s))
            on_all_steps=Callback::new(move |()| page.all_steps())
        />
        <super::original::OriginalAnswer
            original=super::original::original_answer(page)
            on_open=Callback::new(move |()| page.unsteer())
        />
        <PredictionPanel explained=explained(page) on_explain=Callback::new(move |e| page.explain_with(e))/>
        // How to show a result, once there is one to show.
        <Show when=move || result.with(Option::is_some) || matrix.with(Option::is_some)>
            <ViewControls method=method query_only=query_only display=display computed=computed/>
            <ExportBar
                ready=export_ready
                error=export_error
                on_export=Callback::new(move |f| page.export(f, export_error))
            />
        </Show>
        <TokensPanel shown=in_view hovered=page.hovered tip=tip/>
        <TraceSection
            shown=in_view
            lens_on=Signal::derive(move || page.shown.with(|v| v.explain.as_ref().is_some_and(|e| e.lens)))
            on_lens=Callback::new(move |on| page.set_lens(on))
            on_colors=Callback::new(move |on| display.update(|d| d.lens_colors = on))
            hovered=page.hovered
            tip=tip
        />
        <InsideSection
            shown=in_view
            on=Signal::derive(move || page.shown.with(|v| v.explain.as_ref().is_some_and(|e| e.inside)))
            on_toggle=Callback::new(move |on| page.set_inside(on))
            ablation_on=Signal::derive(move || page.shown.with(|v| v.explain.as_ref().is_some_and(|e| e.inside && e.ablation)))
            on_ablation=Callback::new(move |on| page.set_ablation(on))
            card=super::card::open_card(page)
            on_pick=Callback::new(move |u| page.pick_unit(u))
            on_steer=Callback::new(move |e| page.form.steer.update(|s| *s = crate::components::steer_input::with_edit(s, e)))
            contexts=contexts
            on_contexts=on_contexts
            tip=tip
        />
        <AgreementPanel shown=in_view/>
        <FaithfulnessPanel
            shown=in_view
            operator=Signal::derive(move || {
                page.shown.with(|v| v.explain.as_ref().and_then(|e| e.faithfulness))
            })
            on_change=Callback::new(move |op| page.set_faithfulness(op))
            tip=tip
        />
        <StepsSection matrix=matrix query_only=query_only display=display running=status.running tip=tip/>
        </div>
    }
}
