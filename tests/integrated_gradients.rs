//! Integrated gradients against Captum 0.8 (`IntegratedGradients`, zero baseline,
//! `riemann_right`, 32 steps) on the same weights: token scores within 1e-3 of the largest
//! (relative, f32), the path's ends (`f(baseline)`, `f(x)`) within 1e-3, the completeness the
//! engine reports equal to Captum's `f(x) − f(baseline) + delta` over `f(x) − f(baseline)`, and
//! the layer trace (layer conductance along the same path, a PyTorch loop in the script) at
//! the first and last layers within 1e-3 relative.
//!
//! Fixture: `tests/fixtures/integrated_gradients.json`, written by `scripts/ig_reference.py`.

use serde::Deserialize;
use tokenlens::{Method, Pass, TargetSpec};

use crate::util::{cases, engine_for, rel_err, Fixture};

const TOL: f32 = 1e-3;

#[derive(Deserialize)]
struct Case {
    #[serde(flatten)]
    at: Fixture,
    steps: u16,
    scores: Vec<f32>,
    /// `f(baseline)`, `f(x)`.
    ends: [f32; 2],
    /// Captum's convergence delta: Σ scores − (f(x) − f(baseline)).
    delta: f32,
    trace_first: Vec<f32>,
    trace_last: Vec<f32>,
}

#[test]
fn integrated_gradients_match_captum() {
    let m = Method::IntegratedGradients;
    for c in cases::<Case>("integrated_gradients.json") {
        let name = &c.at.fixture;
        assert_eq!(
            m.runs().pass,
            Pass::Integrated { steps: c.steps },
            "{name}: steps"
        );
        let e = engine_for(&c.at.model);
        let mut req = c.at.request();
        req.target = TargetSpec::Id(c.at.target);
        req.methods = vec![m];
        let ex = e.explain(&req).unwrap();
        let ids: Vec<u32> = ex.tokens.iter().map(|t| t.id).collect();
        assert_eq!(ids, c.at.ids, "{name}: tokens");
        let r = &ex.methods[&m];
        assert!(r.scores.iter().all(|s| s.is_finite()), "{name}: finite");
        let err = rel_err(&r.scores, &c.scores);
        assert!(
            err <= TOL,
            "{name}: scores differ by {err:e} of the largest"
        );
        let cons = r.conservation.as_ref().expect("a completeness line");
        let path = cons.path.expect("the path's ends");
        for (got, want) in [path.baseline, path.input].iter().zip(c.ends) {
            assert!(
                (got - want).abs() <= TOL * want.abs().max(1.0),
                "{name}: ends"
            );
        }
        let change = c.ends[1] - c.ends[0];
        let want = (change + c.delta) / change;
        assert!(
            (cons.input - want).abs() <= TOL * want.abs().max(1.0),
            "{name}: completeness {} vs Captum's {want}",
            cons.input
        );
        let first = rel_err(&r.trace[0], &c.trace_first);
        let last = rel_err(&r.trace[r.trace.len() - 1], &c.trace_last);
        assert!(
            first <= TOL && last <= TOL,
            "{name}: trace {first:e}, {last:e}"
        );
        println!(
            "{name}: scores within {err:.1e}, trace {first:.1e}/{last:.1e}, completeness {:.3}",
            cons.input
        );
    }
}

/// The path's passes are the method's own: a request with integrated gradients and a
/// one-pass method reports each, the cost model counts its points, and its progress ends
/// at its total.
#[test]
fn integrated_gradients_cost_its_points() {
    let e = crate::util::engine_for("tests/fixtures/tiny-llama");
    let mut req = tokenlens::ExplainRequest::new("Why is the sky blue?");
    req.methods = vec![Method::Saliency];
    let one = e.explain_cost(&req).unwrap();
    req.methods = vec![Method::Saliency, Method::IntegratedGradients];
    let both = e.explain_cost(&req).unwrap();
    assert_eq!(both, one * 33);
    let mut last = None;
    let ex = e
        .explain_streaming(&req, &mut |ev| {
            if let tokenlens::StreamEvent::Progress {
                method: Some(Method::IntegratedGradients),
                done,
                total,
                ..
            } = ev
            {
                last = Some((*done, *total));
            }
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
    // Its progress counts 32 forward and 32 backward passes and ends at the whole.
    let layers = e.n_layers();
    assert_eq!(last, Some((64 * layers, 64 * layers)));
    assert_eq!(ex.methods.len(), 2);
    let ig = &ex.methods[&Method::IntegratedGradients];
    assert_eq!(ig.trace.len(), e.n_layers());
    assert!(ig.scores.iter().any(|s| *s != 0.0));
}
