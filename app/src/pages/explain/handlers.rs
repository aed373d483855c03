//! What the page's controls do: most make the next view and move to it ([`Page::go`]); the
//! model picker, Share and Export act in place.

use leptos::prelude::*;
use tokenlens::{Operator, Score, Span, TargetSpec};

use super::actions::InView;
use super::page::Page;
use crate::state::ExplainSpec;

impl Page {
    /// The curves' operator of the explanation shown: the next one keeps them on.
    fn faithfulness_on(self) -> Option<Operator> {
        self.shown
            .with_untracked(|v| v.explain.as_ref().and_then(|e| e.faithfulness))
    }

    /// The score (logit or log-probability) stays as chosen for the next explanation (a
    /// span is always a log-probability: it sets no preference).
    fn score_now(self) -> Score {
        self.shown.with_untracked(|v| {
            v.explain
                .as_ref()
                .filter(|e| e.span.is_none())
                .map(|e| e.score)
                .unwrap_or_default()
        })
    }

    /// The lens comes with every explanation until it is turned off.
    fn lens_on(self) -> bool {
        self.shown
            .with_untracked(|v| v.explain.as_ref().is_none_or(|e| e.lens))
    }

    /// What the next explanation carries over from the one shown: the lens, the neurons and
    /// heads, the ablation check.
    fn carry(self, e: &mut ExplainSpec) {
        e.lens = self.lens_on();
        let (inside, ablation) = self.shown.with_untracked(|v| {
            v.explain
                .as_ref()
                .map_or((false, false), |e| (e.inside, e.ablation))
        });
        (e.inside, e.ablation) = (inside, ablation);
    }

    /// The view Explain goes to: the form's target (and contrast) of the form's prompt, with
    /// what the view shown carries over (the lens, the curves, neurons and heads).
    pub fn submitted(self) -> crate::state::ViewState {
        let spec = |t: String| (!t.is_empty()).then_some(TargetSpec::Text(t));
        let mut e = ExplainSpec {
            target: spec(self.form.target.get_untracked()).unwrap_or_default(),
            contrast: spec(self.form.contrast.get_untracked()),
            faithfulness: self.faithfulness_on(),
            score: self.score_now(),
            ..ExplainSpec::default()
        };
        self.carry(&mut e);
        self.with_form(|v| v.explain = Some(e.clone()))
    }

    /// Explain: the form's target (and contrast) of the form's prompt.
    pub fn submit(self) {
        self.go(self.submitted(), true);
    }

    /// Generate: an answer under the form's settings.
    pub fn generate(self) {
        let g = self.form.generation();
        let v = self.with_form(|v| {
            v.generation = Some(g.clone());
            v.explain = None;
            v.matrix = None;
        });
        self.go(v, true);
    }

    /// Explains `e` in the context shown (curves stay on once they are).
    pub fn explain_with(self, mut e: ExplainSpec) {
        let mut v = self.shown.get_untracked();
        e.faithfulness = e.faithfulness.or_else(|| self.faithfulness_on());
        self.carry(&mut e);
        v.explain = Some(e);
        self.go(v, true);
    }

    /// Explains answer token `k`.
    pub fn pick_step(self, k: usize) {
        self.explain_with(ExplainSpec {
            step: Some(k),
            score: self.score_now(),
            ..ExplainSpec::default()
        })
    }

    /// Explains a span of answer tokens: their summed log-probabilities (no curves: those
    /// follow one token's logit).
    pub fn pick_span(self, span: Span) {
        let mut v = self.shown.get_untracked();
        let mut e = ExplainSpec {
            span: Some(span),
            score: Score::LogProb,
            ..ExplainSpec::default()
        };
        self.carry(&mut e);
        v.explain = Some(e);
        self.go(v, true);
    }

    /// Changes what the explanation shown carries (curves, lens): a new entry.
    fn amend_explain(self, change: impl FnOnce(&mut ExplainSpec)) {
        let mut v = self.shown.get_untracked();
        if let Some(e) = v.explain.as_mut() {
            change(e);
            self.go(v, true);
        }
    }

    /// The perturbation curves on (with `op`) or off.
    pub fn set_faithfulness(self, op: Option<Operator>) {
        self.amend_explain(|e| e.faithfulness = op);
    }

    /// The logit lens on or off.
    pub fn set_lens(self, on: bool) {
        self.amend_explain(|e| e.lens = on);
    }

    /// Neurons and heads on or off (off takes the ablation check with it).
    pub fn set_inside(self, on: bool) {
        self.amend_explain(|e| (e.inside, e.ablation) = (on, on && e.ablation));
    }

    /// The ablation check of the method in view on or off.
    pub fn set_ablation(self, on: bool) {
        self.amend_explain(|e| e.ablation = on && e.inside);
    }

    /// The view shown without its edits (the original model's answer and explanation).
    pub fn unsteer(self) {
        let mut v = self.shown.get_untracked();
        v.steer.clear();
        self.form.steer.set(Vec::new());
        self.go(v, true);
    }

    /// Opens the card of `unit` (None closes it): a view setting. Another unit's card opens
    /// without its corpus contexts (a corpus pass per layer is asked for, not implied).
    pub fn pick_unit(self, unit: Option<tokenlens::Component>) {
        self.display.update(|d| {
            d.contexts &= d.unit == unit;
            d.unit = unit;
        });
    }

    /// Lists the open neuron's corpus contexts: a view setting, so a link holds it.
    pub fn show_contexts(self) {
        self.display.update(|d| d.contexts = d.unit.is_some());
    }

    /// The all-steps matrix of the answer shown, with the method in view.
    pub fn all_steps(self) {
        let mut v = self.shown.get_untracked();
        v.matrix = Some(self.method.get_untracked());
        self.go(v, true);
    }

    /// Picks model `name`; one without a chat template turns the template off (and one
    /// with, on).
    pub fn pick_model(self, name: String) {
        let info = self.models.with_untracked(|m| {
            m.as_ref()
                .and_then(|r| r.as_ref().ok())
                .and_then(|l| l.models.iter().find(|m| m.name == name).cloned())
        });
        if let Some(info) = info {
            self.form.chat.set(info.chat_template);
        }
        self.form.model.set(name);
    }

    /// Stores the view shown and shows its link.
    pub fn share(self) {
        self.sharing.share(
            self.shown.get_untracked(),
            self.results,
            self.share_limit(),
            false,
        );
    }

    /// Downloads what is in view as `format`; what went wrong reaches `error`.
    pub fn export(self, format: &'static str, error: RwSignal<Option<String>>) {
        error.set(None);
        let done = move |r: Result<(), String>| error.set(r.err());
        let view = self.shown.get_untracked();
        let Some(units) = self.units.get_untracked() else {
            return done(Err("nothing to export yet".into()));
        };
        self.results.result.with_untracked(|r| match r {
            Some(result) => InView {
                view: &view,
                result,
                units: &units,
                method: self.method.get_untracked(),
                display: self.display.get_untracked(),
            }
            .export(format, done),
            None => done(Err("nothing to export yet".into())),
        });
    }
}
