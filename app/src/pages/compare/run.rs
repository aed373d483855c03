//! Computing a comparison: each side's explanation streamed into its own result (one
//! explanation serves both when the two sides ask for the same one).

use leptos::prelude::*;

use crate::pages::api::{explain, read_events, Outcome};
use crate::record::Task;
use crate::state::{side_context, side_request, CompareView, Context, Partial, Streamed};

/// The comparison's results and run state.
#[derive(Clone, Copy)]
pub struct CompareRun {
    /// A's explanation, and what it was computed for.
    pub a: RwSignal<Option<(Context, Partial)>>,
    /// B's.
    pub b: RwSignal<Option<(Context, Partial)>>,
    /// What the run is doing.
    pub stage: RwSignal<Option<String>>,
    /// The last error.
    pub error: RwSignal<Option<String>>,
    /// A run is going.
    pub running: RwSignal<bool>,
    /// Bumped by each run: an older run stops at its next event.
    generation: RwSignal<u64>,
}

impl CompareRun {
    /// Nothing computed; or the two sides of a stored comparison.
    pub fn new(a: Option<(Context, Partial)>, b: Option<(Context, Partial)>) -> Self {
        CompareRun {
            a: RwSignal::new(a),
            b: RwSignal::new(b),
            stage: RwSignal::new(None),
            error: RwSignal::new(None),
            running: RwSignal::new(false),
            generation: RwSignal::new(0),
        }
    }

    /// Brings both sides to `v`, computing only a side whose request changed.
    pub async fn compute(self, v: CompareView) {
        let mine = self.generation.get_untracked() + 1;
        self.generation.set(mine);
        let current = move || self.generation.get_untracked() == mine;
        self.error.set(None);
        self.running.set(true);
        for (name, side, into) in [("A", &v.a, self.a), ("B", &v.b, self.b)] {
            let request = match side_request(side) {
                Ok(r) => r,
                Err(e) => {
                    self.error.set(Some(format!("{name}: {e}")));
                    break;
                }
            };
            let key = side_context(side);
            if into.with_untracked(|r| r.as_ref().is_some_and(|(k, _)| *k == key)) {
                continue;
            }
            // The same explanation as the other side's: no second run.
            let other = if name == "A" { self.b } else { self.a };
            let same = other.with_untracked(|r| {
                r.as_ref()
                    .filter(|(k, p)| *k == key && p.sealed.is_some())
                    .cloned()
            });
            if let Some(done) = same {
                into.set(Some(done));
                continue;
            }
            into.set(None);
            self.stage.set(Some(format!("{name}: explaining…")));
            let task = Task::Explain(request.clone());
            let mut fresh = Partial::new(&side.model, side.chat, side.thinking, None, Vec::new());
            let response = explain(side.model.clone(), request).await;
            let (outcome, transcript) = read_events(response, current, |ev| {
                fresh.apply(&ev);
            })
            .await;
            match outcome {
                Outcome::Done => {
                    fresh.seal(transcript.into_record(task));
                    into.set(Some((key, fresh)));
                }
                Outcome::Superseded => return,
                // A newer run owns the page: an older one's failure is not its error.
                Outcome::Failed(_) if !current() => return,
                Outcome::Failed(e) => {
                    self.error.set(Some(format!("{name}: {e}")));
                    break;
                }
            }
        }
        if current() {
            self.running.set(false);
            let failed = self.error.with_untracked(Option::is_some);
            self.stage
                .set(Some(if failed { "failed" } else { "done" }.into()));
        }
    }
}
