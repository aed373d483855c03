//! A given answer (forced decoding): the answer is a text the user gives, tokenized after the
//! prompt, each token with its probability, and explained as a generated answer is.
//!
//! Against PyTorch + transformers (+ lxt) on the same weights (`tests/fixtures/answer.json`,
//! written by `scripts/answer_reference.py`): the answer's token ids equal transformers'
//! `tokenizer(answer, add_special_tokens=False)` exactly; each token's probability within
//! 1e-4; every all-steps row's scores (saliency, input × gradient, AttnLRP, CP-LRP) within
//! 1e-3 of the row's largest |score|, as the other methods' references.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use tokenlens::{Error, GenerateRequest, Method, Precision, StepsRequest, StopReason};

use crate::util::{cases, engine, engine_for, rel_err, Fixture};

const TOL: f32 = 1e-3;
const PROB_TOL: f32 = 1e-4;

#[derive(Deserialize)]
struct Case {
    #[serde(flatten)]
    at: Fixture,
    answer: String,
    answer_ids: Vec<u32>,
    probs: Vec<f32>,
    steps: Vec<BTreeMap<Method, Vec<f32>>>,
}

fn given(prompt: &str, chat: bool, answer: &str) -> GenerateRequest {
    GenerateRequest {
        chat_template: chat,
        precision: Precision::F32,
        answer: Some(answer.to_string()),
        ..GenerateRequest::new(prompt)
    }
}

#[test]
fn given_answers_match_transformers() {
    let mut worst = 0f32;
    for c in cases::<Case>("answer.json") {
        let name = &c.at.fixture;
        let e = engine_for(&c.at.model);
        let mut events = 0;
        let gen = e
            .generate_streaming(
                &given(&c.at.prompt, c.at.chat_template, &c.answer),
                &mut |ev| {
                    if matches!(ev, tokenlens::StreamEvent::Generated { .. }) {
                        events += 1;
                    }
                    ControlFlow::Continue(())
                },
            )
            .unwrap();
        let prompt_ids: Vec<u32> = gen.tokens.iter().map(|t| t.id).collect();
        assert_eq!(prompt_ids, c.at.ids, "{name}: prompt ids");
        assert_eq!(gen.ids(), c.answer_ids, "{name}: the answer's ids");
        assert_eq!(events, c.answer_ids.len(), "{name}: one event per token");
        assert_eq!(gen.stop, StopReason::GivenAnswer);
        assert_eq!(
            gen.answer, c.answer,
            "{name}: the answer decodes to its text"
        );
        for (k, (g, want)) in gen.generated.iter().zip(&c.probs).enumerate() {
            assert!(
                (g.prob - want).abs() <= PROB_TOL,
                "{name} token {k}: p {} vs {want}",
                g.prob
            );
        }
        let rows = e
            .explain_steps_streaming(
                &StepsRequest {
                    prompt: c.at.prompt.clone(),
                    chat_template: c.at.chat_template,
                    thinking: false,
                    generated: gen.ids(),
                    methods: Method::single_pass(),
                    precision: Precision::F32,
                    steer: Vec::new(),
                },
                &mut |_| ControlFlow::Continue(()),
            )
            .unwrap();
        assert_eq!(rows.len(), c.steps.len(), "{name}: rows");
        for (row, want) in rows.iter().zip(&c.steps) {
            assert_eq!(row.scores.len(), want.len(), "{name}: methods");
            for (m, w) in want {
                let got = &row.scores[m];
                assert_eq!(got.len(), c.at.ids.len() + row.step, "{name}: context");
                let err = rel_err(got, w);
                worst = worst.max(err);
                assert!(err <= TOL, "{name} step {} {m}: rel err {err:e}", row.step);
            }
        }
    }
    eprintln!("given answers: worst rel err {worst:e}");
}

#[test]
fn a_given_answer_that_cannot_be_explained_is_refused() {
    let e = engine();
    let err = e.generate(&given("Hi", true, "")).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidSetting(m) if m.contains("empty")),
        "{err}"
    );
    let long = "a ".repeat(e.max_tokens());
    match e.generate(&given("Hi", true, &long)).unwrap_err() {
        Error::AnswerTooLong {
            prompt,
            answer,
            limit,
        } => {
            assert!(prompt + answer > limit);
            assert_eq!(limit, e.max_tokens());
        }
        other => panic!("expected AnswerTooLong, got {other}"),
    }
}

#[test]
fn the_cli_explains_a_given_answer_as_the_engine_does() {
    use crate::cli::{fails_with, tokenlens};
    let (prompt, answer) = ("The capital of France is", " Paris, a city on the Seine.");
    let base = ["explain", "-p", prompt, "--raw", "--answer", answer];
    let out = tokenlens(&[&base[..], &["--json", "--methods", "saliency,attnlrp"]].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let e = engine();
    let gen = e.generate(&given(prompt, false, answer)).unwrap();
    let ids: Vec<u64> = gen.ids().iter().map(|&i| i as u64).collect();
    let got: Vec<u64> = doc["generation"]["generated"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_u64().unwrap())
        .collect();
    assert_eq!(got, ids, "--answer alone explains every token");
    assert_eq!(doc["generation"]["stop"], "given_answer");
    let rows = doc["steps"].as_array().unwrap();
    assert_eq!(rows.len(), ids.len());
    let want = e
        .explain_steps_streaming(
            &StepsRequest {
                prompt: prompt.into(),
                chat_template: false,
                thinking: false,
                generated: gen.ids(),
                methods: vec![Method::Saliency, Method::Attnlrp],
                precision: Precision::Auto,
                steer: Vec::new(),
            },
            &mut |_| ControlFlow::Continue(()),
        )
        .unwrap();
    for (row, w) in rows.iter().zip(&want) {
        let got: Vec<f32> = serde_json::from_value(row["scores"]["attnlrp"].clone()).unwrap();
        assert!(rel_err(&got, &w.scores[&Method::Attnlrp]) <= 1e-5);
    }
    // --step N of a given answer: answer token N against the prompt and the tokens before it.
    let out = tokenlens(&[&base[..], &["--json", "--step", "2"]].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["target"]["id"].as_u64(), Some(ids[1]));
    // The terminal lists each answer token.
    let out = tokenlens(&base);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Seine"), "{text}");
    assert_eq!(
        text.lines().filter(|l| l.contains(" p ")).count(),
        ids.len(),
        "{text}"
    );
    fails_with(
        &[&base[..4], &["--answer", ""]].concat(),
        "the given answer is empty",
    );
    fails_with(
        &[&base[..], &["--step", "99"]].concat(),
        "--step 99 is out of range",
    );
}
