//! Steering against PyTorch + transformers (+ lxt's efficient AttnLRP and CP-LRP) on the same
//! weights, the edits applied by forward pre-hooks at `down_proj`'s and `o_proj`'s inputs:
//! one edit of each kind (a neuron scaled by 0, a neuron clamped, a head scaled by 2.5, a head
//! clamped to a norm) on SmolLM2 and the tiny llama, qwen2, gemma3, qwen3 and llama 3.1. Under
//! the edits the target's logit and log-probability within 1e-4 (absolute, f32), the top-10
//! ids the same (ties aside) with logits within 1e-4, 32 greedy tokens identical, and every
//! method's scores within 1e-3 of the largest (relative, f32).
//!
//! Component ablation (unsteered) against the same reference: the 8 neurons and the 8 heads
//! of largest input × gradient relevance over the model (ties aside) and the target's
//! log-probability with the first k zeroed within 1e-4 (absolute); the random draws from the
//! same layers, never a top unit, their curves starting at the model as it is.
//!
//! Fixture: `tests/fixtures/steer.json`, written by `scripts/steer_reference.py`.

use std::collections::BTreeMap;

use serde::Deserialize;
use tokenlens::{Edit, GenerateRequest, Method, Sampling, TargetSpec};

use crate::util::{cases, engine_for, rel_err, Fixture};

#[derive(Deserialize)]
struct Case {
    #[serde(flatten)]
    at: Fixture,
    steer: Vec<Edit>,
    methods: BTreeMap<Method, Vec<f32>>,
    logit: f32,
    log_prob: f32,
    top: Vec<u32>,
    top_logits: Vec<f32>,
    greedy: Vec<u32>,
    ablation: BTreeMap<String, Curve>,
}

/// The reference's ablation of one kind of unit.
#[derive(Deserialize)]
struct Curve {
    units: Vec<tokenlens::Component>,
    values: Vec<f32>,
    log_probs: Vec<f32>,
}

#[test]
fn steering_matches_pytorch_and_lxt() {
    for c in cases::<Case>("steer.json") {
        let name = &c.at.fixture;
        let e = engine_for(&c.at.model);
        let mut req = c.at.request();
        req.target = TargetSpec::Id(c.at.target);
        req.methods = c.methods.keys().copied().collect();
        req.score = tokenlens::Score::Logit;
        req.steer = c.steer.clone();
        let ex = e.explain(&req).unwrap();
        let ids: Vec<u32> = ex.tokens.iter().map(|t| t.id).collect();
        assert_eq!(ids, c.at.ids, "{name}: tokens");
        let target = ex.target.as_ref().expect("target");
        assert!(
            (target.token.logit - c.logit).abs() <= 1e-4,
            "{name}: logit {} vs {}",
            target.token.logit,
            c.logit
        );
        let lp = target.token.prob.ln();
        assert!(
            (lp - c.log_prob).abs() <= 1e-4,
            "{name}: log-probability {lp} vs {}",
            c.log_prob
        );
        let top = &ex.prediction.as_ref().expect("prediction").top;
        for (i, (cand, (&id, &logit))) in
            top.iter().zip(c.top.iter().zip(&c.top_logits)).enumerate()
        {
            assert!((cand.logit - logit).abs() <= 1e-4, "{name}: top {i} logit");
            // Tied logits may come in either order.
            let tied = c
                .top_logits
                .iter()
                .filter(|&&l| (l - logit).abs() <= 1e-5)
                .count()
                > 1;
            assert!(
                cand.id == id || tied,
                "{name}: top {i}: {} vs {id}",
                cand.id
            );
        }
        for (m, want) in &c.methods {
            let err = rel_err(&ex.methods[m].scores, want);
            assert!(err <= 1e-3, "{name} {m}: scores {err:e}");
            println!("{name} {m}: steered scores within {err:.1e}");
        }
        let mut gen = GenerateRequest::new(c.at.prompt.clone());
        gen.chat_template = c.at.chat_template;
        (gen.sampling, gen.max_new_tokens) = (Sampling::greedy(), c.greedy.len());
        gen.precision = tokenlens::Precision::F32;
        gen.steer = c.steer.clone();
        let g = e.generate(&gen).unwrap();
        // The reference never stops at an end of turn.
        let n = g.generated.len();
        assert_eq!(g.ids(), c.greedy[..n], "{name}: steered greedy tokens");
        assert!(
            n == c.greedy.len() || e.eos_ids().contains(&c.greedy[n]),
            "{name}: stopped at {n}"
        );
    }
}

/// A scale of 1 changes nothing; a scale of 0 on a unit that matters changes the answer; bad
/// edits are refused with what is wrong.
#[test]
fn steering_edits_what_it_says() {
    let e = engine_for("smollm2-135m");
    let mut req = tokenlens::ExplainRequest::new("The capital of France is");
    req.chat_template = false;
    req.methods = vec![Method::Attnlrp];
    let plain = e.explain(&req).unwrap();
    req.steer = tokenlens::parse_edits("3:17*1,5:h2*1").unwrap();
    let same = e.explain(&req).unwrap();
    assert_eq!(same.methods, plain.methods, "scale 1 is no edit");
    req.steer = tokenlens::parse_edits("0:1297*0").unwrap();
    let ablated = e.explain(&req).unwrap();
    let p = |ex: &tokenlens::Explanation| ex.target.as_ref().expect("target").token.prob;
    assert!(p(&ablated) < p(&plain), "{} vs {}", p(&ablated), p(&plain));
    for (s, says) in [
        ("30:1*0", "layers 0 to 29"),
        ("0:1536*0", "neurons 0 to 1535"),
        ("0:h9*0", "heads 0 to 8"),
    ] {
        req.steer = tokenlens::parse_edits(s).unwrap();
        let err = e.explain(&req).unwrap_err().to_string();
        assert!(err.contains(says), "{s}: {err}");
        let mut gen = GenerateRequest::new("x");
        gen.steer = req.steer.clone();
        let err = e.generate(&gen).unwrap_err().to_string();
        assert!(err.contains(says), "{s}: {err}");
    }
}

#[test]
fn ablation_matches_pytorch() {
    let mut compared = 0;
    for c in cases::<Case>("steer.json") {
        let name = &c.at.fixture;
        let e = engine_for(&c.at.model);
        let mut req = c.at.request();
        req.target = TargetSpec::Id(c.at.target);
        req.methods = vec![Method::InputXGradient, Method::IntegratedGradients];
        (req.neurons, req.heads) = (1, true);
        req.ablation = Some(tokenlens::AblationSpec {
            units: 8,
            methods: Vec::new(),
        });
        let ex = e.explain(&req).unwrap();
        assert!(ex.methods[&Method::IntegratedGradients].ablation.is_none());
        let a = ex.methods[&Method::InputXGradient]
            .ablation
            .as_ref()
            .expect("ablation");
        for (kind, got) in [("neurons", &a.neurons), ("heads", &a.heads)] {
            let (got, want) = (got.as_ref().expect(kind), &c.ablation[kind]);
            let units: Vec<_> = got.units.iter().map(|u| u.0).collect();
            let scale = tokenlens::text::max_abs(&want.values);
            for (i, ((u, v), (w, wv))) in got
                .units
                .iter()
                .zip(want.units.iter().zip(&want.values))
                .enumerate()
            {
                // A unit within 1e-3 of the next one's relevance may swap with it.
                assert!(
                    (v - wv).abs() <= 1e-3 * scale,
                    "{name} {kind} {i}: {v} vs {wv}"
                );
                let tied = want
                    .values
                    .iter()
                    .filter(|&&x| (x - wv).abs() <= 1e-3 * scale)
                    .count()
                    > 1;
                assert!(u == w || tied, "{name} {kind} {i}: {u} vs {w}");
            }
            if units == want.units {
                compared += 1;
                for (k, (g, w)) in got.top.iter().zip(&want.log_probs).enumerate() {
                    assert!((g - w).abs() <= 1e-4, "{name} {kind}: k {k}: {g} vs {w}");
                }
            }
            // Eight units, or all the model has (the tiny Qwen3.5's one attention layer has 4
            // heads).
            assert_eq!(got.top.len(), want.units.len() + 1, "{name} {kind}");
            assert!(want.units.len() == 8 || kind == "heads", "{name} {kind}");
            assert_eq!(got.random.len(), tokenlens::ABLATION_DRAWS);
            for d in &got.random {
                assert_eq!(
                    d.log_probs[0], got.top[0],
                    "{name} {kind}: k = 0 is the model"
                );
                let layers =
                    |u: &[tokenlens::Component]| u.iter().map(|c| c.layer).collect::<Vec<_>>();
                // A layer with too few units left gives fewer random ones.
                assert!(d.units.len() <= units.len() && d.log_probs.len() == d.units.len() + 1);
                if d.units.len() == units.len() {
                    assert_eq!(layers(&d.units), layers(&units), "{name} {kind}");
                }
                assert!(d.units.iter().all(|u| !units.contains(u)), "{name} {kind}");
            }
            println!("{name} {kind}: top {:?}", got.top);
        }
    }
    // Ties may reorder a case's units; most cases compare their curves.
    assert!(compared >= 6, "{compared} of 8 curves compared");
}

/// Ablation's forward passes count in a request's cost; it asks for the units it zeroes.
#[test]
fn ablation_is_costed_and_needs_units() {
    let e = engine_for("smollm2-135m");
    let mut req = tokenlens::ExplainRequest::new("The capital of France is");
    req.methods = vec![Method::Attnlrp];
    let bare = e.explain_cost(&req).unwrap();
    (req.neurons, req.heads) = (4, true);
    let without = e.explain_cost(&req).unwrap();
    // 30 layers × (9 heads + 4 neurons) numbers per token: one pass more.
    assert_eq!(without, 2 * bare, "neurons and heads count as their stream");
    let spec = |units, methods| Some(tokenlens::AblationSpec { units, methods });
    req.ablation = spec(8, vec![]);
    let with = e.explain_cost(&req).unwrap();
    // 2 kinds × (1 + 8 × 5 draws) forward passes, a third of a token-pass each.
    let n = bare; // one pass
    assert_eq!(with - without, n * 82u64.div_ceil(3), "{without} → {with}");
    // Only the methods named.
    req.methods = vec![Method::Attnlrp, Method::CpLrp];
    req.ablation = spec(8, vec![Method::CpLrp]);
    let both = e.explain_cost(&req).unwrap();
    assert_eq!(
        both - e
            .explain_cost(&{
                let mut r = req.clone();
                r.ablation = None;
                r
            })
            .unwrap(),
        n * 28
    );
    let ex = e.explain(&req).unwrap();
    assert!(ex.methods[&Method::Attnlrp].ablation.is_none());
    assert!(ex.methods[&Method::CpLrp].ablation.is_some());
    req.ablation = spec(tokenlens::MAX_ABLATION + 1, vec![]);
    let err = e.explain(&req).unwrap_err().to_string();
    assert!(err.contains("at most"), "{err}");
    (req.ablation, req.neurons, req.heads) = (spec(4, vec![]), 0, false);
    let err = e.explain(&req).unwrap_err().to_string();
    assert!(err.contains("ask for neurons, heads or both"), "{err}");
}
