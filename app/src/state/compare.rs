//! [`CompareView`]: two views compared, A above B; in the URL as A's parameters prefixed
//! `a_` and B's prefixed `b_`.

use leptos_router::params::ParamsMap;
use serde::{Deserialize, Serialize};
use tokenlens::{ExplainRequest, TargetSpec};

use super::{ExplainSpec, ViewState};

/// Two views of prompt explanations: two methods (same model and prompt: one explanation),
/// two models on the same text, or a prompt and an edit of it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CompareView {
    /// The first (top) view.
    pub a: ViewState,
    /// The second.
    pub b: ViewState,
}

impl CompareView {
    /// The query string (`?…`).
    pub fn to_query(&self) -> String {
        let mut p = ParamsMap::new();
        for (prefix, v) in [("a_", &self.a), ("b_", &self.b)] {
            for (k, val) in v.to_params().into_iter() {
                p.insert(format!("{prefix}{k}"), val);
            }
        }
        p.to_query_string()
    }

    /// Reads the two views from URL parameters (each missing one takes the defaults).
    pub fn from_params(p: &ParamsMap) -> Self {
        let side = |prefix: &str| {
            let mut own = ParamsMap::new();
            for (k, val) in p.clone().into_iter() {
                if let Some(k) = k.strip_prefix(prefix) {
                    own.insert(k.to_string(), val);
                }
            }
            ViewState::from_params(&own)
        };
        CompareView {
            a: prompt_only(side("a_")),
            b: prompt_only(side("b_")),
        }
    }

    /// A comparison that starts from `v`: B is `v` too, shown with `other` method.
    pub fn from_view(v: &ViewState, other: tokenlens::Method) -> Self {
        let a = prompt_only(v.clone());
        let mut b = a.clone();
        b.method = other;
        CompareView { a, b }
    }
}

impl CompareView {
    /// The same prompt before and after `v`'s edits: A is `v` without its steering, B is `v`;
    /// both explain `target` (the token `v` explains), so the rows show what the edits moved.
    pub fn before_after(v: &ViewState, target: Option<u32>) -> Self {
        let mut b = prompt_only(v.clone());
        if let (Some(e), Some(id)) = (b.explain.as_mut(), target) {
            if e.target == TargetSpec::Argmax {
                e.target = TargetSpec::Id(id);
            }
        }
        let mut a = b.clone();
        a.steer.clear();
        CompareView { a, b }
    }
}

/// B's edits differ from A's on the same model: B explains the token A explains (`a_target`,
/// its id) rather than its own argmax, so the comparison is of one prediction under two
/// settings.
pub fn pin_steered(a: &ViewState, b: &mut ViewState, a_target: Option<u32>) {
    if a.model != b.model || a.steer == b.steer {
        return;
    }
    if let (Some(e), Some(id)) = (b.explain.as_mut(), a_target) {
        if e.target == TargetSpec::Argmax {
            e.target = TargetSpec::Id(id);
        }
    }
}

/// `v` as a comparison shows it: an explanation of the prompt's next token (no answer, step,
/// span, matrix or curves), so that what it stores is what it computed.
fn prompt_only(mut v: ViewState) -> ViewState {
    v.generation = None;
    v.matrix = None;
    let e = v.explain.get_or_insert_with(ExplainSpec::default);
    (e.step, e.span, e.faithfulness) = (None, None, None);
    v
}

/// What a compared view's explanation is computed for.
pub fn side_context(v: &ViewState) -> super::Context {
    prompt_only(v.clone()).context()
}

/// The explain request a compared view makes (a prompt's next token).
pub fn side_request(v: &ViewState) -> Result<ExplainRequest, String> {
    prompt_only(v.clone())
        .explain_request(&[])?
        .ok_or_else(|| "nothing to explain".to_string())
}

/// B moved to another model than A's: a target or contrast given by A's token ids would name
/// other tokens in B's vocabulary, so they become A's texts (`a_target`, `a_contrast`: the
/// texts of the tokens A explained).
pub fn retarget(b: &mut ViewState, a_target: Option<String>, a_contrast: Option<String>) {
    let Some(e) = b.explain.as_mut() else { return };
    if matches!(e.target, TargetSpec::Id(_)) {
        e.target = a_target.map_or(TargetSpec::Argmax, TargetSpec::Text);
    }
    if matches!(e.contrast, Some(TargetSpec::Id(_))) {
        e.contrast = a_contrast.map(TargetSpec::Text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenlens::Method;

    #[test]
    fn two_views_go_through_the_url() {
        let a = ViewState {
            prompt: "The cat sat".into(),
            chat: false,
            query_only: false,
            explain: Some(ExplainSpec::default()),
            ..ViewState::default()
        };
        let mut c = CompareView::from_view(&a, Method::Attnlrp);
        c.b.model = "gemma3-270m".into();
        c.b.prompt = "The dog sat".into();
        let q = c.to_query();
        let mut p = ParamsMap::new();
        for pair in q.trim_start_matches('?').split('&') {
            let (k, v) = pair.split_once('=').unwrap();
            let dec = leptos_router::location::Url::unescape;
            p.insert(dec(k), dec(v));
        }
        assert_eq!(CompareView::from_params(&p), c);
        assert_eq!(side_request(&c.b).unwrap().prompt, "The dog sat");
        // A link with an answer step or a span compares the prompt's next token (what it
        // computes is what Share stores).
        p.insert("a_step", "3".to_string());
        p.insert("b_span", "1:2".to_string());
        assert_eq!(CompareView::from_params(&p), c);
    }

    #[test]
    fn another_model_takes_the_targets_text_not_its_id() {
        let mut b = ViewState {
            explain: Some(ExplainSpec {
                target: TargetSpec::Id(7042),
                contrast: Some(TargetSpec::Id(4528)),
                ..ExplainSpec::default()
            }),
            ..ViewState::default()
        };
        retarget(&mut b, Some(" Paris".into()), Some(" London".into()));
        let e = b.explain.unwrap();
        assert_eq!(e.target, TargetSpec::Text(" Paris".into()));
        assert_eq!(e.contrast, Some(TargetSpec::Text(" London".into())));
    }

    #[test]
    fn steering_compares_one_prediction_before_and_after() {
        let v = ViewState {
            explain: Some(ExplainSpec::default()),
            steer: tokenlens::parse_edits("23:h4*0").unwrap(),
            ..ViewState::default()
        };
        let c = CompareView::before_after(&v, Some(7042));
        assert!(c.a.steer.is_empty());
        assert_eq!(c.b.steer, v.steer);
        for side in [&c.a, &c.b] {
            assert_eq!(side_request(side).unwrap().target, TargetSpec::Id(7042));
        }
        // B given other edits explains A's token; the same edits or another model leave
        // B's own target.
        let a = ViewState {
            explain: Some(ExplainSpec::default()),
            ..ViewState::default()
        };
        let mut b = v.clone();
        pin_steered(&a, &mut b, Some(7042));
        assert_eq!(b.explain.unwrap().target, TargetSpec::Id(7042));
        let mut same = a.clone();
        pin_steered(&a, &mut same, Some(7042));
        assert_eq!(same.explain.unwrap().target, TargetSpec::Argmax);
        let mut other = ViewState {
            model: "gemma3-270m".into(),
            ..v
        };
        pin_steered(&a, &mut other, Some(7042));
        assert_eq!(other.explain.unwrap().target, TargetSpec::Argmax);
    }
}
