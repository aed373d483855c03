//! "Is this the same?", decided once. [`Input`] is what the model reads (which model, which
//! text, how, and the answer it continues); [`Context`] is an input with what is asked of it
//! (the token explained, its contrast, span and score, the curves, a costly method). The
//! page's reruns, its "out of date" note, instant candidates, the compare page's reuse of one
//! side for the other and the all-steps matrix all compare these, and nothing else.

use tokenlens::{FaithfulnessSpec, Method, Precision};

use super::{ExplainSpec, GenSpec, ViewState};

/// What the model reads.
#[derive(Clone, Debug, PartialEq)]
pub struct Input {
    /// Model name (empty: the server's default; see [`Input::resolved`]).
    pub model: String,
    /// The prompt.
    pub prompt: String,
    /// Chat template on.
    pub chat: bool,
    /// The template's `enable_thinking`; always false without the template (it does nothing
    /// there), so that two inputs differing only in it are the same.
    pub thinking: bool,
    /// How the products are computed.
    pub precision: Precision,
    /// The generated answer's settings, if the input continues one.
    pub generation: Option<GenSpec>,
    /// Edits to the model (steering).
    pub steer: Vec<tokenlens::Edit>,
}

impl Input {
    /// An input; `thinking` counts only with the template.
    pub fn new(
        model: &str,
        prompt: &str,
        chat: bool,
        thinking: bool,
        precision: Precision,
        generation: Option<GenSpec>,
        steer: &[tokenlens::Edit],
    ) -> Self {
        Input {
            model: model.to_string(),
            prompt: prompt.to_string(),
            chat,
            thinking: chat && thinking,
            precision,
            // A given answer is read with no sampling settings.
            generation: generation.map(|g| match g.answer {
                Some(answer) => GenSpec {
                    answer: Some(answer),
                    ..GenSpec::default()
                },
                None => g,
            }),
            steer: steer.to_vec(),
        }
    }

    /// This input with an empty model name read as `default_model`.
    pub fn resolved(mut self, default_model: &str) -> Self {
        if self.model.is_empty() {
            self.model = default_model.to_string();
        }
        self
    }
}

/// What an explanation is computed for: its input and what is asked of it.
#[derive(Clone, Debug, PartialEq)]
pub struct Context {
    /// What the model reads.
    pub input: Input,
    /// The token (or span) explained, its contrast and score.
    pub explain: Option<ExplainSpec>,
    /// The perturbation curves asked for.
    pub faithfulness: Option<FaithfulnessSpec>,
    /// A method of several passes, computed only while in view.
    pub costly: Option<Method>,
    /// The method whose units the ablation check zeroes (the one in view).
    pub ablated: Option<Method>,
}

impl Context {
    /// Whether a result computed for this context serves `want`: the same, or one that also
    /// computed a costly method `want` does not need.
    pub fn covers(&self, want: &Context) -> bool {
        self == want
            || (want.costly.is_none()
                && self.costly.is_some()
                && self.input == want.input
                && self.explain == want.explain
                && self.faithfulness == want.faithfulness
                && self.ablated == want.ablated)
    }
}

impl ViewState {
    /// What the model reads in this view.
    pub fn input(&self) -> Input {
        Input::new(
            &self.model,
            &self.prompt,
            self.chat,
            self.thinking,
            self.precision,
            self.generation.clone(),
            &self.steer,
        )
    }

    /// What this view's explanation is computed for.
    pub fn context(&self) -> Context {
        Context {
            input: self.input(),
            explain: self.explain.clone(),
            faithfulness: self.faithfulness_spec(),
            costly: self.explain.as_ref().and(self.costly_method()),
            ablated: self
                .explain
                .as_ref()
                .filter(|e| e.inside && e.ablation)
                .map(|_| self.method),
        }
    }

    /// What this view's all-steps matrix is computed for: the input and the matrix's method
    /// (not the token explained beside it).
    pub fn matrix_context(&self) -> Option<(Input, Method)> {
        Some((self.input(), self.matrix?))
    }

    /// Whether view `other` shows results computed for the same contexts as this one (it
    /// may differ in how they are shown).
    pub fn same_results(&self, other: &ViewState) -> bool {
        self.context() == other.context() && self.matrix_context() == other.matrix_context()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenlens::{Operator, TargetSpec};

    fn explained() -> ViewState {
        ViewState {
            explain: Some(ExplainSpec::default()),
            ..ViewState::default()
        }
    }

    #[test]
    fn what_is_shown_is_not_what_is_computed() {
        let v = explained();
        let mut w = v.clone();
        w.method = Method::Attnlrp;
        w.display.absolute = true;
        w.query_only = false;
        assert!(v.same_results(&w), "how a result is shown needs no run");
        w.method = Method::IntegratedGradients;
        assert!(!v.same_results(&w), "a costly method in view is computed");
        assert!(
            w.context().covers(&v.context()),
            "…and serves the cheap view after"
        );
        assert!(!v.context().covers(&w.context()));
    }

    #[test]
    fn what_is_asked_is_part_of_the_context() {
        let v = explained();
        for change in [
            |w: &mut ViewState| w.prompt.push('!'),
            |w: &mut ViewState| w.model = "gemma3-270m".into(),
            |w: &mut ViewState| w.chat = !w.chat,
            |w: &mut ViewState| w.precision = Precision::Bf16,
            |w: &mut ViewState| w.generation = Some(GenSpec::default()),
            |w: &mut ViewState| {
                w.explain.as_mut().unwrap().target = TargetSpec::Text(" Paris".into())
            },
            |w: &mut ViewState| {
                w.explain.as_mut().unwrap().contrast = Some(TargetSpec::Text(" Lyon".into()))
            },
            |w: &mut ViewState| w.explain.as_mut().unwrap().score = tokenlens::Score::LogProb,
            |w: &mut ViewState| {
                w.explain.as_mut().unwrap().faithfulness = Some(Operator::default())
            },
        ] {
            let mut w = v.clone();
            change(&mut w);
            assert_ne!(v.context(), w.context(), "{:?}", w.to_query());
        }
        // The query-only switch changes the curves (they perturb what is in view), not the
        // explanation without them.
        let mut w = v.clone();
        w.query_only = !w.query_only;
        assert_eq!(v.context(), w.context());
    }

    #[test]
    fn thinking_counts_only_with_the_template() {
        let mut v = explained();
        v.chat = false;
        let mut w = v.clone();
        w.thinking = true;
        assert_eq!(v.input(), w.input());
        v.chat = true;
        w.chat = true;
        assert_ne!(v.input(), w.input());
    }

    #[test]
    fn the_matrix_follows_its_input_not_the_token_explained() {
        let mut v = explained();
        v.generation = Some(GenSpec::default());
        v.matrix = Some(Method::Saliency);
        let mut w = v.clone();
        w.explain.as_mut().unwrap().step = Some(3);
        assert_eq!(v.matrix_context(), w.matrix_context());
        w.matrix = Some(Method::Attnlrp);
        assert_ne!(v.matrix_context(), w.matrix_context());
    }

    #[test]
    fn an_empty_model_is_the_default() {
        let v = explained();
        assert_eq!(v.input().resolved("smollm2-135m").model, "smollm2-135m");
        let mut w = v.clone();
        w.model = "gemma3-270m".into();
        assert_eq!(w.input().resolved("smollm2-135m").model, "gemma3-270m");
    }
}
