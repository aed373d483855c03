//! Steering against PyTorch + transformers (+ lxt's efficient AttnLRP and CP-LRP) on the same
//! weights, the edits applied by forward pre-hooks at `down_proj`'s and `o_proj`'s inputs:
//! one edit of each kind (a neuron scaled by 0, a neuron clamped, a head scaled by 2.5, a head
//! clamped to a norm) on SmolLM2 and the tiny llama, qwen2 and gemma3. Under the edits the
//! target's logit and log-probability within 1e-4 (absolute, f32), the top-10 ids the same
//! (ties aside) with logits within 1e-4, 12 greedy tokens identical, and every method's
//! scores within 1e-3 of the largest (relative, f32).
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
