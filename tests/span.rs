//! Log-probability targets and answer spans.
//!
//! - Against PyTorch + transformers (+ lxt) on the same weights: the log-probability of one
//!   token, and a span's summed log-probabilities, each method's scores and every trace
//!   layer within 1e-3 of the largest |value| (`tests/fixtures/span.json`, written by
//!   `scripts/span_reference.py`). The worst case, 9.4e-4, is SmolLM2's near-certain span
//!   (p ≈ 0.99 per token): its gradient `onehot − softmax` is about 0.01, so the logits'
//!   1e-5 rounding differences weigh a hundred times more there.
//! - Exact by construction: a span's explanation is the sum of its tokens' log-probability
//!   explanations (each token given everything before it) for every linear quantity: the
//!   input × gradient, AttnLRP and CP-LRP scores and every method's trace. (Saliency's
//!   scores are a norm of the summed gradient, so only its trace adds up.)

use serde::Deserialize;
use std::collections::BTreeMap;
use tokenlens::{Engine, ExplainRequest, Explanation, Method, Score, Span, TargetSpec};

use crate::reference::trace_key;
use crate::util::{cases, engine, engine_for, rel_err, root, Complete, Fixture};

const TOL: f32 = 1e-3;

#[derive(Deserialize)]
struct Case {
    #[serde(flatten)]
    at: Fixture,
    continuation: Vec<u32>,
    range: (usize, usize),
    token: Want,
    span: Want,
}

#[derive(Deserialize)]
struct Want {
    value: f32,
    scores: BTreeMap<Method, Vec<f32>>,
    traces: BTreeMap<String, Vec<Vec<f32>>>,
}

fn request(c: &Case) -> ExplainRequest {
    let mut req = c.at.request();
    req.methods = Method::single_pass();
    req
}

/// Every method's scores and trace layers against `want` (a trace layer that vanishes in the
/// reference must vanish here too).
fn check(ctx: &str, ex: &Explanation, want: &Want, worst: &mut f32) {
    for (method, w) in &want.scores {
        let got = &ex.methods[method];
        let err = rel_err(&got.scores, w);
        *worst = worst.max(err);
        assert!(err <= TOL, "{ctx} {method}: scores rel err {err:e}");
        let traces = &want.traces[trace_key(method)];
        assert_eq!(got.trace.len(), traces.len(), "{ctx} {method}: layers");
        for (l, (g, w)) in got.trace.iter().zip(traces).enumerate() {
            if tokenlens::text::max_abs(w) < 1e-4 * want.value.abs() {
                continue;
            }
            let err = rel_err(g, w);
            *worst = worst.max(err);
            assert!(
                err <= TOL,
                "{ctx} {method} trace layer {l}: rel err {err:e}"
            );
        }
    }
}

#[test]
fn log_probabilities_and_spans_match_pytorch() {
    let doc: Vec<Case> = cases("span.json");
    let mut worst = 0f32;
    for c in &doc {
        let e = engine_for(&c.at.model);
        let mut req = request(c);
        req.target = TargetSpec::Id(c.at.target);
        req.score = Score::LogProb;
        let ex = e.explain(&req).unwrap();
        let ids: Vec<u32> = ex.tokens.iter().map(|t| t.id).collect();
        assert_eq!(ids, c.at.ids, "{}: tokens", c.at.fixture);
        let lp = ex.target().log_prob.expect("a log-probability target");
        assert!(
            (lp - c.token.value).abs() <= 1e-4 * c.token.value.abs().max(1.0),
            "{}: log p {lp} vs {}",
            c.at.fixture,
            c.token.value
        );
        check(
            &format!("{} token", c.at.fixture),
            &ex,
            &c.token,
            &mut worst,
        );

        let mut req = request(c);
        req.continuation = c.continuation.clone();
        req.span = Some(Span {
            start: c.range.0,
            end: c.range.1,
        });
        let ex = e.explain(&req).unwrap();
        assert_eq!(
            ex.tokens.len(),
            c.at.ids.len() + c.range.1 - 1,
            "{}: the span's context",
            c.at.fixture
        );
        let span = ex.target().span.as_ref().expect("a span target");
        let ids: Vec<u32> = span.tokens.iter().map(|t| t.id).collect();
        assert_eq!(
            ids,
            c.continuation[c.range.0..c.range.1],
            "{}: span tokens",
            c.at.fixture
        );
        let total = span.log_prob;
        assert!(
            (total - c.span.value).abs() <= 1e-4 * c.span.value.abs().max(1.0),
            "{}: span log p {total} vs {}",
            c.at.fixture,
            c.span.value
        );
        check(&format!("{} span", c.at.fixture), &ex, &c.span, &mut worst);
    }
    eprintln!("log-probability and span attributions: worst rel err {worst:.2e}");
}

/// The span's explanation, less the sum of its tokens' own log-probability explanations.
fn span_is_a_sum(e: &Engine, prompt: &str, chat: bool, continuation: &[u32], span: Span) -> f32 {
    let base = || {
        let mut r = ExplainRequest::new(prompt);
        r.chat_template = chat;
        r.methods = Method::single_pass();
        r
    };
    let mut req = base();
    req.continuation = continuation.to_vec();
    req.span = Some(span);
    let whole = e.explain(&req).unwrap();
    let n = whole.tokens.len();
    let mut worst = 0f32;
    for (name, got) in &whole.methods {
        let mut scores = vec![0f32; n];
        let mut trace = vec![vec![0f32; n]; whole.n_layers];
        for k in span.start..span.end {
            let mut one = base();
            one.continuation = continuation[..k].to_vec();
            one.target = TargetSpec::Id(continuation[k]);
            one.score = Score::LogProb;
            let ex = e.explain(&one).unwrap();
            let r = &ex.methods[name];
            // Tokens after the predicting position cannot affect it: zero there.
            for (s, v) in scores.iter_mut().zip(&r.scores) {
                *s += v;
            }
            for (row, add) in trace.iter_mut().zip(&r.trace) {
                for (s, v) in row.iter_mut().zip(add) {
                    *s += v;
                }
            }
        }
        if *name != Method::Saliency {
            let err = rel_err(&got.scores, &scores);
            assert!(
                err <= 1e-4,
                "{name}: span scores vs the sum, rel err {err:e}"
            );
            worst = worst.max(err);
        }
        // Against the whole trace's largest value: a layer whose gradient × input is zero by
        // construction (the last, under the final norm's scale invariance) holds only
        // rounding, which no per-layer scale can judge.
        let scale = trace
            .iter()
            .map(|row| tokenlens::text::max_abs(row))
            .fold(0f32, f32::max);
        for (l, (g, w)) in got.trace.iter().zip(&trace).enumerate() {
            let diff = g.iter().zip(w).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            let err = diff / scale.max(f32::MIN_POSITIVE);
            assert!(
                err <= 1e-4,
                "{name} trace layer {l}: span vs the sum, {err:e} of the trace's largest value"
            );
            worst = worst.max(err);
        }
    }
    worst
}

#[test]
fn a_span_is_the_sum_of_its_tokens_explanations() {
    let e = engine();
    let gen = e
        .generate(&tokenlens::GenerateRequest {
            steer: Vec::new(),
            answer: None,
            prompt: "Name three colors.".into(),
            chat_template: true,
            thinking: false,
            sampling: tokenlens::Sampling::greedy(),
            max_new_tokens: 6,
            precision: tokenlens::Precision::Auto,
        })
        .unwrap();
    let ids = gen.ids();
    assert!(
        ids.len() >= 5,
        "the answer is long enough for a span: {:?}",
        gen.answer
    );
    let worst = span_is_a_sum(
        e,
        "Name three colors.",
        true,
        &ids,
        Span { start: 1, end: 5 },
    );
    // A span that starts at the answer's first token is predicted from the prompt's last.
    let first = span_is_a_sum(
        e,
        "Name three colors.",
        true,
        &ids,
        Span { start: 0, end: 2 },
    );
    eprintln!(
        "span = sum of its tokens: worst rel err {:.2e}",
        worst.max(first)
    );
}

#[test]
fn bad_spans_are_refused_with_a_reason() {
    let e = engine();
    let mut req = ExplainRequest::new("Hi");
    req.continuation = vec![1, 2, 3];
    let cases = [
        (Span { start: 2, end: 2 }, "is empty"),
        (
            Span { start: 1, end: 4 },
            "ends past the 3 continuation tokens",
        ),
    ];
    for (span, why) in cases {
        req.span = Some(span);
        let err = e.explain(&req).unwrap_err().to_string();
        assert!(err.contains(why), "{span:?}: {err}");
    }
    req.span = Some(Span { start: 0, end: 2 });
    req.contrast = Some(TargetSpec::Text(" no".into()));
    let err = e.explain(&req).unwrap_err().to_string();
    assert!(err.contains("a span is its own target"), "{err}");
}

/// `explain --span START:END` (1-based, inclusive) generates, then explains those answer
/// tokens as the engine does; the terminal names the span; bad spans are refused by name.
#[test]
fn the_cli_explains_a_span() {
    use crate::cli::{fails_with, tokenlens};
    let model = root().join("tests/fixtures/tiny-llama");
    let model = model.to_str().unwrap();
    let prompt = "Why is the sky blue?";
    let base = ["explain", "--model", model, "--prompt", prompt, "--raw"];
    let gen = ["--greedy", "--max-new-tokens", "4", "--methods", "attnlrp"];
    let args = |extra: &[&'static str]| -> Vec<&str> {
        base.iter().chain(&gen).chain(extra).copied().collect()
    };
    let out = tokenlens(&args(&["--span", "2:3", "--json"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let span = &doc["target"]["span"];
    assert_eq!(
        (span["start"].as_u64(), span["end"].as_u64()),
        (Some(1), Some(3))
    );
    assert_eq!(doc["target"]["score"], "log_prob");

    let e = engine_for(model);
    let answer = e
        .generate(&tokenlens::GenerateRequest {
            steer: Vec::new(),
            answer: None,
            prompt: prompt.into(),
            chat_template: false,
            thinking: false,
            sampling: tokenlens::Sampling::greedy(),
            max_new_tokens: 4,
            // As the CLI's default, whose --span this is compared with.
            precision: tokenlens::Precision::Auto,
        })
        .unwrap()
        .ids();
    let mut req = ExplainRequest::new(prompt);
    req.chat_template = false;
    req.methods = vec![Method::Attnlrp];
    req.continuation = answer[..3].to_vec();
    req.span = Some(Span { start: 1, end: 3 });
    let want = e.explain(&req).unwrap();
    let got: Vec<f32> =
        serde_json::from_value(doc["methods"]["attnlrp"]["scores"].clone()).unwrap();
    assert_eq!(got, want.methods[&Method::Attnlrp].scores);

    let out = tokenlens(&args(&["--span", "2:3"]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("target:     the span"), "{text}");
    assert!(text.contains("(answer tokens 2 to 3): Σ log p"), "{text}");

    fails_with(&args(&["--span", "0:2"]), "--span counts from 1");
    fails_with(&args(&["--span", "3:2"]), "ends before it starts");
    fails_with(&args(&["--span", "2-3"]), "expected START:END");
    fails_with(
        &args(&["--span", "2:9"]),
        "--span 2:9 is out of range: the answer has 4 tokens",
    );
    fails_with(
        &args(&["--span", "1:2", "--target", " x"]),
        "cannot be used with",
    );
}
