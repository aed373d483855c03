//! [`CompareView`]: two views compared, A above B; in the URL as A's parameters prefixed
//! `a_` and B's prefixed `b_`.

use leptos_router::params::ParamsMap;
use serde::{Deserialize, Serialize};
use tokenlens::ExplainRequest;

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
            a: side("a_"),
            b: side("b_"),
        }
    }

    /// A comparison that starts from `v`: B is `v` too, shown with `other` method.
    pub fn from_view(v: &ViewState, other: tokenlens::Method) -> Self {
        let mut a = v.clone();
        a.generation = None;
        a.matrix = None;
        let e = a.explain.get_or_insert_with(ExplainSpec::default);
        // A comparison explains the prompt's next token.
        (e.step, e.span, e.faithfulness) = (None, None, None);
        let mut b = a.clone();
        b.method = other;
        CompareView { a, b }
    }
}

/// The explain request a compared view makes (a prompt's next token).
pub fn side_request(v: &ViewState) -> Result<ExplainRequest, String> {
    let mut v = v.clone();
    let e = v.explain.get_or_insert_with(ExplainSpec::default);
    (e.step, e.span) = (None, None);
    v.generation = None;
    v.explain_request(&[])?
        .ok_or_else(|| "nothing to explain".to_string())
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
    }
}
