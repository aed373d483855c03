//! [`Snapshot`]: a view with the server's sealed records of its results, what a permalink
//! stores; replaying it rebuilds what the page showed.

use serde::{Deserialize, Serialize};

use super::{AnswerState, MatrixState, Partial, Streamed, ViewState};
use crate::record::{Record, Task};

/// A view and the server's sealed records of what it computed: what a permalink stores.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Snapshot {
    /// The view.
    pub view: ViewState,
    /// The generation, if the view shows an answer.
    pub answer: Option<Record>,
    /// The explanation, if the view explains a token.
    pub explanation: Option<Record>,
    /// The all-steps matrix, if shown.
    pub matrix: Option<Record>,
    /// A comparison's second view (B) with its records; this one is A.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub against: Option<Box<Snapshot>>,
}

/// What a snapshot shows, replayed from its records.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Replayed {
    /// The answer.
    pub answer: Option<AnswerState>,
    /// The explanation.
    pub explanation: Option<Partial>,
    /// The matrix.
    pub matrix: Option<MatrixState>,
}

impl Snapshot {
    /// A snapshot of `view` with what is sealed of its results; parts of the view without a
    /// sealed result (failed or cancelled) are left out, and the view names the model.
    pub fn of(
        mut view: ViewState,
        answer: Option<Record>,
        explanation: Option<Record>,
        matrix: Option<Record>,
    ) -> Self {
        if answer.is_none() {
            view.generation = None;
        }
        if explanation.is_none() {
            view.explain = None;
        }
        if matrix.is_none() {
            view.matrix = None;
        }
        if view.model.is_empty() {
            if let Some(r) = answer.iter().chain(&explanation).chain(&matrix).next() {
                view.model = r.model.clone();
            }
        }
        Snapshot {
            view,
            answer,
            explanation,
            matrix,
            against: None,
        }
    }

    /// Every record it holds, a comparison's second view's too.
    pub fn records(&self) -> Vec<&Record> {
        let own = [&self.answer, &self.explanation, &self.matrix];
        let mut out: Vec<&Record> = own.into_iter().flatten().collect();
        if let Some(b) = &self.against {
            out.extend(b.records());
        }
        out
    }

    /// Rebuilds what the page showed from the records, checking that each record is the
    /// job this view asks for (same model, prompt and request), so a stored view cannot
    /// pair one computation's results with another's settings.
    pub fn replay(&self) -> Result<Replayed, String> {
        if let Some(b) = &self.against {
            if b.against.is_some() {
                return Err("a comparison has two views, not more".into());
            }
            b.replay().map_err(|e| format!("the second view: {e}"))?;
        }
        let v = &self.view;
        let records = [&self.answer, &self.explanation, &self.matrix];
        if records.iter().all(|r| r.is_none()) {
            return Err("nothing computed to show".into());
        }
        for r in records.into_iter().flatten() {
            if r.model != v.model {
                return Err(format!(
                    "a result was computed on {:?}, the view names {:?}",
                    r.model, v.model
                ));
            }
        }
        let mismatch = |what: &str| format!("the stored {what} is not the one this view asks for");
        let present = |asked: bool, have: bool, what: &str| {
            if asked == have {
                Ok(())
            } else if asked {
                Err(format!("the view shows {what} but none is stored"))
            } else {
                Err(format!("{what} is stored that the view does not show"))
            }
        };
        present(v.generation.is_some(), self.answer.is_some(), "an answer")?;
        present(
            v.explain.is_some(),
            self.explanation.is_some(),
            "an explanation",
        )?;
        present(
            v.matrix.is_some(),
            self.matrix.is_some(),
            "an all-steps matrix",
        )?;

        let mut out = Replayed::default();
        if let (Some(rec), Some(req)) = (&self.answer, v.generate_request()) {
            if rec.task != Task::Generate(req.clone()) {
                return Err(mismatch("answer"));
            }
            let mut a = AnswerState::new(&rec.model, &req);
            for ev in rec.parsed() {
                a.apply(&ev?);
            }
            a.sealed = Some(rec.clone());
            out.answer = Some(a);
        }
        let ids = out
            .answer
            .as_ref()
            .map(AnswerState::ids)
            .unwrap_or_default();
        if let (Some(rec), Some(req)) = (&self.explanation, v.explain_request(&ids)?) {
            if rec.task != Task::Explain(req.clone()) {
                return Err(mismatch("explanation"));
            }
            let step = v.explain.as_ref().and_then(|e| e.step);
            let mut p = Partial::new(&v.model, v.chat, v.thinking, step, req.continuation);
            for ev in rec.parsed() {
                p.apply(&ev?);
            }
            p.sealed = Some(rec.clone());
            out.explanation = Some(p);
        }
        if let (Some(rec), Some(method), Some(req)) =
            (&self.matrix, v.matrix, v.steps_request(&ids))
        {
            let expected = req.generated.len();
            if rec.task != Task::Steps(req) {
                return Err(mismatch("all-steps matrix"));
            }
            let mut m = MatrixState::new(method, expected);
            for ev in rec.parsed() {
                m.apply(&ev?);
            }
            m.sealed = Some(rec.clone());
            out.matrix = Some(m);
        }
        Ok(out)
    }
}
