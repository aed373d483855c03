//! Perturbation curves against transformers on the same weights: eligible tokens, orders,
//! steps, the neutral token, and every point of every curve, the random band and the scores.
//!
//! Fixture: `tests/fixtures/faithfulness.json`, written by `scripts/faithfulness_reference.py`
//! from the reference fixtures' PyTorch (+ lxt) scores, so both sides order the same scores.

use serde::Deserialize;
use std::collections::BTreeMap;
use tokenlens::kernels::Products;
use tokenlens::{FaithfulnessSpec, Method, Operator};

use crate::util::{engine_for, root};

/// Every point within this share of its reference curve's range (f32 forward passes against
/// float64 softmax over f32 logits).
const TOL: f32 = 1e-3;

#[derive(Deserialize)]
struct Doc {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct RefCurve {
    order: Vec<usize>,
    logit: Vec<f32>,
    prob: Vec<f32>,
}

#[derive(Deserialize)]
struct RefMethod {
    morf: RefCurve,
    lerf: RefCurve,
    abpc: f32,
    comprehensiveness: Vec<f32>,
    sufficiency: Vec<f32>,
}

#[derive(Deserialize)]
struct RefRandom {
    logit_mean: Vec<f32>,
    logit_sd: Vec<f32>,
    prob_mean: Vec<f32>,
    prob_sd: Vec<f32>,
    abpc_mean: f32,
    abpc_sd: f32,
}

#[derive(Deserialize)]
struct Case {
    fixture: String,
    model: String,
    prompt: String,
    chat_template: bool,
    operator: String,
    query_only: bool,
    ids: Vec<u32>,
    target: u32,
    neutral_id: Option<u32>,
    eligible: Vec<usize>,
    steps: Vec<usize>,
    scores: BTreeMap<Method, Vec<f32>>,
    methods: BTreeMap<Method, RefMethod>,
    random: RefRandom,
}

/// The largest difference between `got` and `want`, as a share of `want`'s range (at least
/// a hundredth of its largest magnitude, so that a flat curve is not held to zero).
fn err(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len(), "lengths");
    let max = want.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let min = want.iter().copied().fold(f32::INFINITY, f32::min);
    let mag = tokenlens::text::max_abs(want);
    let scale = (max - min).max(0.01 * mag).max(f32::MIN_POSITIVE);
    got.iter()
        .zip(want)
        .fold(0f32, |m, (g, w)| m.max((g - w).abs() / scale))
}

#[test]
fn curves_match_transformers() {
    let path = root().join("tests/fixtures/faithfulness.json");
    let doc: Doc = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let ops: Vec<&str> = doc.cases.iter().map(|c| c.operator.as_str()).collect();
    for op in Operator::ALL {
        assert!(ops.contains(&op.name()), "no case for {}", op.name());
    }
    let mut worst = 0f32;
    for c in &doc.cases {
        let ctx = format!("{} ({})", c.fixture, c.operator);
        let e = engine_for(&c.model);
        let tok = e.tokenize(&c.prompt, c.chat_template, false).unwrap();
        let ids: Vec<u32> = tok.tokens.iter().map(|t| t.id).collect();
        assert_eq!(ids, c.ids, "{ctx}: tokens");
        let spec = FaithfulnessSpec {
            operator: Operator::from_name(&c.operator).unwrap(),
            query_only: c.query_only,
        };
        let f = e
            .faithfulness(
                &tok,
                c.target,
                &c.scores,
                spec,
                Products::F32,
                &mut |_, _| Ok(()),
            )
            .unwrap();
        assert_eq!(f.eligible, c.eligible, "{ctx}: eligible tokens");
        assert_eq!(f.steps, c.steps, "{ctx}: steps");
        assert_eq!(f.neutral_id, c.neutral_id, "{ctx}: neutral token");
        let mut check = |what: String, got: &[f32], want: &[f32]| {
            let e = err(got, want);
            worst = worst.max(e);
            assert!(e <= TOL, "{ctx}: {what} differs by {e:e} of its range");
        };
        for (m, want) in &c.methods {
            let got = &f.methods[m];
            for (name, g, w) in [
                ("MoRF", &got.morf, &want.morf),
                ("LeRF", &got.lerf, &want.lerf),
            ] {
                assert_eq!(g.order, w.order, "{ctx}: {m} {name} order");
                check(format!("{m} {name} logits"), &g.logit, &w.logit);
                check(format!("{m} {name} probabilities"), &g.prob, &w.prob);
            }
            // Scores, on the scale of the curves they come from.
            let logits: Vec<f32> = want
                .morf
                .logit
                .iter()
                .chain(&want.lerf.logit)
                .copied()
                .collect();
            let probs: Vec<f32> = want
                .morf
                .prob
                .iter()
                .chain(&want.lerf.prob)
                .copied()
                .collect();
            let on = |v: f32, curve: &[f32]| [curve, &[v][..]].concat();
            check(
                format!("{m} ABPC"),
                &on(got.abpc, &logits),
                &on(want.abpc, &logits),
            );
            for (k, (g, w)) in got
                .comprehensiveness
                .iter()
                .zip(&want.comprehensiveness)
                .enumerate()
            {
                check(
                    format!("{m} comprehensiveness {k}"),
                    &on(*g, &probs),
                    &on(*w, &probs),
                );
            }
            for (k, (g, w)) in got.sufficiency.iter().zip(&want.sufficiency).enumerate() {
                check(
                    format!("{m} sufficiency {k}"),
                    &on(*g, &probs),
                    &on(*w, &probs),
                );
            }
        }
        let (r, w) = (&f.random, &c.random);
        check("random logit mean".into(), &r.logit_mean, &w.logit_mean);
        check("random prob mean".into(), &r.prob_mean, &w.prob_mean);
        check("random logit s.d.".into(), &r.logit_sd, &w.logit_sd);
        check("random prob s.d.".into(), &r.prob_sd, &w.prob_sd);
        check(
            "random ABPC".into(),
            &[r.abpc_mean, r.abpc_sd],
            &[w.abpc_mean, w.abpc_sd],
        );
    }
    println!("faithfulness: worst point {worst:e} of its curve's range");
}

/// A streamed explanation with curves: every method first (the map never waits), then the
/// curves' stage with progress, then the curves as one event, equal to what the call returns;
/// a sink that stops during the curves cancels the request.
#[test]
fn curves_stream_after_the_methods_and_cancel() {
    use std::ops::ControlFlow;
    use tokenlens::{ExplainRequest, Method, Stage, StreamEvent};
    let e = engine_for("tests/fixtures/tiny-llama");
    let mut req = ExplainRequest::new("Why is the sky blue?");
    req.chat_template = false;
    req.methods = vec![Method::Saliency, Method::Attnlrp];
    req.faithfulness = Some(FaithfulnessSpec {
        operator: Operator::Delete,
        query_only: false,
    });
    let mut events = Vec::new();
    let ex = e
        .explain_streaming(&req, &mut |ev| {
            events.push(ev.clone());
            ControlFlow::Continue(())
        })
        .unwrap();
    let at = |p: &dyn Fn(&StreamEvent) -> bool| events.iter().position(p).unwrap();
    let last_method = events
        .iter()
        .rposition(|ev| matches!(ev, StreamEvent::Method { .. }))
        .unwrap();
    let stage = at(&|ev| {
        matches!(
            ev,
            StreamEvent::Stage {
                stage: Stage::Faithfulness,
                ..
            }
        )
    });
    let curves = at(&|ev| matches!(ev, StreamEvent::Faithfulness { .. }));
    assert!(
        last_method < stage && stage < curves,
        "methods end at event {last_method}, the curves' stage at {stage}, the curves at {curves}"
    );
    assert!(matches!(events[curves + 1], StreamEvent::Done));
    let StreamEvent::Faithfulness { result } = &events[curves] else {
        unreachable!()
    };
    assert_eq!(Some(result), ex.faithfulness.as_ref());
    assert_eq!(result.operator, Operator::Delete);
    assert_eq!(result.methods.len(), 2);

    let mut seen = 0;
    let cancelled = e.explain_streaming(&req, &mut |ev| match ev {
        StreamEvent::Progress {
            stage: Stage::Faithfulness,
            ..
        } => {
            seen += 1;
            ControlFlow::Break(())
        }
        _ => ControlFlow::Continue(()),
    });
    assert!(
        matches!(cancelled, Err(tokenlens::Error::Cancelled)),
        "{cancelled:?}"
    );
    assert_eq!(seen, 1);
}

/// Each input of a batch gets the logits it gets on its own after the same prefix (the
/// curves' inputs run in batches), with tails of different lengths, and from no prefix.
#[test]
fn a_batch_equals_its_inputs_run_alone() {
    use tokenlens::models::decoder::KvCache;
    let model = engine_for("tests/fixtures/tiny-llama").decoder();
    let ids: Vec<u32> = vec![1, 5, 9, 3, 7, 2, 8, 4];
    let mut base = KvCache::default();
    model
        .forward_cached(&ids, &mut base, Products::F32)
        .unwrap();
    let close = |got: &candle_core::Tensor, want: candle_core::Tensor| {
        let (g, w): (Vec<f32>, Vec<f32>) = (got.to_vec1().unwrap(), want.to_vec1().unwrap());
        let worst = g
            .iter()
            .zip(&w)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-4, "differs by {worst}");
    };
    let offset = 3;
    let inputs: Vec<Vec<u32>> = vec![vec![6, 2, 8, 4], vec![3, 8], ids[offset..].to_vec()];
    let tails: Vec<_> = inputs.iter().map(|t| model.embed(t).unwrap()).collect();
    let got = model
        .forward_batch(&base, offset, &tails, Products::F32)
        .unwrap();
    assert_eq!(got.len(), inputs.len());
    for (t, g) in inputs.iter().zip(&got) {
        let mut alone = base.prefix(offset).unwrap();
        close(
            g,
            model.forward_cached(t, &mut alone, Products::F32).unwrap(),
        );
    }
    let whole = model
        .forward_batch(&base, 0, &[model.embed(&ids).unwrap()], Products::F32)
        .unwrap();
    close(
        &whole[0],
        model
            .forward_cached(&ids, &mut KvCache::default(), Products::F32)
            .unwrap(),
    );
    assert!(
        model
            .forward_batch(&base, 9, &tails, Products::F32)
            .is_err(),
        "past the cache"
    );
}

/// LongRoPE (the tiny Phi-3: the long factors past 16 positions): after a prefix made with
/// the short factors, a batch with an input that crosses the switch gets each whole
/// sequence's logits (the prefix runs again from its kept inputs), as does one that stays
/// below it.
#[test]
fn a_batch_across_long_ropes_switch_equals_whole_sequences() {
    batch_after_prefix_equals_whole_sequences(
        "tests/fixtures/tiny-phi3",
        &[
            vec![vec![5u32, 6, 7, 8, 9, 10, 11, 12], vec![5, 6]],
            vec![vec![5, 6], vec![9, 10, 11]],
        ],
    );
}

/// Layers with inputs of their own (the tiny Gemma 4's per-layer embeddings): a batch after
/// a prefix reads each new row's own inputs, as the whole sequence does.
#[test]
fn a_batch_with_per_layer_inputs_equals_whole_sequences() {
    batch_after_prefix_equals_whole_sequences(
        "tests/fixtures/tiny-gemma4",
        &[vec![vec![5u32, 6, 7, 8, 9], vec![5, 6]], vec![vec![11]]],
    );
}

/// After a 10-token prefix of a 12-token cache, each batch of `inputs` gets each whole
/// sequence's logits, within 1e-4.
fn batch_after_prefix_equals_whole_sequences(model: &str, batches: &[Vec<Vec<u32>>]) {
    use tokenlens::models::decoder::KvCache;
    let model = engine_for(model).decoder();
    let ids: Vec<u32> = (0..12).map(|i| 100 + 7 * i).collect();
    let mut base = KvCache::default();
    model
        .forward_cached(&ids, &mut base, Products::F32)
        .unwrap();
    let offset = 10;
    for inputs in batches {
        let tails: Vec<_> = inputs.iter().map(|t| model.embed(t).unwrap()).collect();
        let got = model
            .forward_batch(&base, offset, &tails, Products::F32)
            .unwrap();
        for (t, g) in inputs.iter().zip(&got) {
            let whole = [&ids[..offset], t].concat();
            let want = model
                .forward_cached(&whole, &mut KvCache::default(), Products::F32)
                .unwrap();
            let (g, w): (Vec<f32>, Vec<f32>) = (g.to_vec1().unwrap(), want.to_vec1().unwrap());
            let worst = g
                .iter()
                .zip(&w)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
                worst < 1e-4,
                "{} positions: differs by {worst}",
                whole.len()
            );
        }
    }
}

/// Recurrent layers (the tiny Qwen3.5's Gated DeltaNet): a batch after a prefix of all the
/// positions a cache holds starts each input from the cache's states; after a shorter prefix
/// (a state cannot be cut back) each runs from its kept inputs; a cache's copied prefix
/// continues as the whole sequence does. Each equals its whole sequence run alone.
#[test]
fn recurrent_layers_batch_and_cut_prefixes_as_whole_sequences() {
    use tokenlens::models::decoder::KvCache;
    let model = engine_for("tests/fixtures/tiny-qwen3_5").decoder();
    let ids: Vec<u32> = (0..12).map(|i| 100 + 7 * i).collect();
    let mut base = KvCache::default();
    model
        .forward_cached(&ids, &mut base, Products::F32)
        .unwrap();
    let whole = |t: &[u32]| -> Vec<f32> {
        model
            .forward_cached(t, &mut KvCache::default(), Products::F32)
            .unwrap()
            .to_vec1()
            .unwrap()
    };
    let close = |g: &[f32], w: &[f32], what: &str| {
        let worst = g
            .iter()
            .zip(w)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-4, "{what}: differs by {worst}");
    };
    let inputs = [vec![5u32, 6, 7], vec![9]];
    let tails: Vec<_> = inputs.iter().map(|t| model.embed(t).unwrap()).collect();
    for offset in [12, 7] {
        let got = model
            .forward_batch(&base, offset, &tails, Products::F32)
            .unwrap();
        for (t, g) in inputs.iter().zip(&got) {
            let want = whole(&[&ids[..offset], t].concat());
            close(
                &g.to_vec1().unwrap(),
                &want,
                &format!("batch after {offset}"),
            );
        }
    }
    let mut cut = base.prefix(5).unwrap();
    let next = model
        .forward_cached(&[42, 43], &mut cut, Products::F32)
        .unwrap();
    close(
        &next.to_vec1().unwrap(),
        &whole(&[&ids[..5], &[42, 43]].concat()),
        "a cut prefix continued",
    );
}
