//! Views through the URL and back, candidates picked and back, stored snapshots replayed.

use super::*;
use crate::display::{Clip, Display};
use crate::record::{Record, Task};
use leptos_router::params::ParamsMap;
use tokenlens::granularity::{Aggregate, Granularity};
use tokenlens::{
    GeneratedToken, Method, MethodResult, Prediction, Sampling, StopReason, StreamEvent, Target,
    TargetSpec, Token,
};

/// A candidate picked from an explanation becomes its target with its own results; the
/// old target becomes a candidate, so picking it back gives the original; a token that
/// was not explained gives nothing.
#[test]
fn picking_an_explained_candidate_and_back() {
    let target = |id: u32, rank: usize| Target {
        token: tokenlens::Candidate {
            id,
            text: format!("t{id}"),
            logit: 10.0 - rank as f32,
            prob: 0.1,
        },
        rank,
        contrast: None,
        pieces: Vec::new(),
        score: tokenlens::Score::Logit,
        log_prob: None,
        linear_value: None,
        span: None,
    };
    let result = |v: f32| MethodResult {
        ablation: None,
        scores: vec![v, v],
        trace: vec![vec![v, v]],
        trace_normalized: vec![vec![1.0, 1.0]],
        conservation: None,
        neurons: None,
        heads: None,
    };
    let prediction = Prediction {
        best: target(7, 0).token,
        top: vec![target(7, 0).token, target(8, 1).token, target(9, 2).token],
    };
    let mut p = Partial::new("m", true, false, None, Vec::new());
    p.apply(&StreamEvent::Prediction {
        prediction,
        target: target(7, 0),
    });
    p.apply(&StreamEvent::Method {
        method: Method::Attnlrp,
        result: result(1.0),
    });
    for (id, v) in [(8, 2.0), (9, 3.0)] {
        p.apply(&StreamEvent::Candidate {
            target: target(id, id as usize - 7),
            methods: [(Method::Attnlrp, result(v))].into(),
        });
    }
    let picked = p.with_target(9).expect("9 was explained");
    assert_eq!(picked.target, Some(target(9, 2)));
    assert_eq!(picked.methods[&Method::Attnlrp], result(3.0));
    let ranks: Vec<usize> = picked.candidates.iter().map(|c| c.target.rank).collect();
    assert_eq!(ranks, [0, 1]);
    let back = picked.with_target(7).expect("the old target rides along");
    assert_eq!(back.predicted(), p.predicted());
    assert_eq!(back.methods, p.methods);
    assert!(p.with_target(1234).is_none());
}

fn through_url(v: &ViewState) -> ViewState {
    // What the browser hands back: the query string, parsed.
    let q = v.to_query();
    let mut p = ParamsMap::new();
    for pair in q
        .trim_start_matches('?')
        .split('&')
        .filter(|s| !s.is_empty())
    {
        let (k, val) = pair.split_once('=').unwrap_or((pair, ""));
        p.insert(
            leptos_router::location::Url::unescape(k),
            leptos_router::location::Url::unescape(val),
        );
    }
    ViewState::from_params(&p)
}

#[test]
fn every_field_survives_the_url() {
    let v = ViewState {
        model: "gemma3-270m".into(),
        prompt: "Ünïcode & spaces + ?=#%\nnew line".into(),
        chat: false,
        thinking: true,
        generation: Some(GenSpec {
            sampling: Sampling {
                temperature: 0.9,
                top_k: 7,
                top_p: 0.5,
                seed: 42,
            },
            max_new_tokens: 12,
            answer: Some(" Paris & Lyon?\n東京 🙂".into()),
        }),
        explain: Some(ExplainSpec {
            target: TargetSpec::Id(315),
            contrast: Some(TargetSpec::Text(" Lyon".into())),
            step: Some(3),
            faithfulness: Some(tokenlens::Operator::Delete),
            lens: true,
            score: tokenlens::Score::LogProb,
            span: None,
            inside: true,
            ablation: true,
        }),
        matrix: Some(Method::Attnlrp),
        method: Method::CpLrp,
        display: Display {
            granularity: Granularity::Word,
            aggregate: Aggregate::MaxAbs,
            absolute: true,
            clip: Clip::P95,
            gamma: 1.7,
            sinks_out: false,
            sign_marks: true,
            lens_colors: true,
            unit: Some("12:h3".parse().unwrap()),
            contexts: true,
        },
        query_only: true,
        // Not in the URL: a view opened from one always brings the candidates.
        candidates: true,
        precision: tokenlens::Precision::Bf16,
        steer: tokenlens::parse_edits("23:h4*0,29:1066=-5").unwrap(),
    };
    assert_eq!(through_url(&v), v);
    let exact = ViewState {
        precision: tokenlens::Precision::F32,
        ..v.clone()
    };
    assert_eq!(through_url(&exact), exact);
    let greedy = ViewState {
        generation: Some(GenSpec {
            sampling: Sampling::greedy(),
            max_new_tokens: 5,
            answer: None,
        }),
        ..ViewState::default()
    };
    assert_eq!(through_url(&greedy), greedy);
    assert_eq!(through_url(&ViewState::default()), ViewState::default());
    // Every combination of template and "query only" (the default follows the template).
    for (chat, query_only) in [(true, true), (true, false), (false, true), (false, false)] {
        let v = ViewState {
            chat,
            query_only,
            ..ViewState::default()
        };
        assert_eq!(through_url(&v), v, "chat {chat}, query only {query_only}");
    }
}

/// A first view is readable: only the user's text with the template, sinks out of the
/// scale, signed colors ending at a high percentile.
#[test]
fn defaults_show_the_users_text() {
    let mut p = ParamsMap::new();
    p.insert("prompt", "Hi".into());
    let v = ViewState::from_params(&p);
    assert!(v.chat && v.query_only && v.display.sinks_out);
    assert_eq!(v.display.clip, Clip::Auto);
    assert!(v.display.clip.quantile(true) < 1.0);
    assert_eq!(v.display.clip.quantile(false), 1.0);
    p.insert("chat", "0".into());
    assert!(!ViewState::from_params(&p).query_only);
}

/// `/` without parameters is the teaching first view (a plain continuation explained with
/// AttnLRP), and its own link reads back to it.
#[test]
fn no_parameters_is_the_first_view() {
    let first = ViewState::from_params(&ParamsMap::new());
    assert_eq!(first, ViewState::first());
    assert!(!first.chat && !first.query_only);
    assert_eq!(first.method, Method::Attnlrp);
    assert_eq!(through_url(&first), first);
}

#[test]
fn junk_falls_back_to_defaults() {
    let mut p = ParamsMap::new();
    p.insert("method", "nonsense".into());
    p.insert("gamma", "-3".into());
    p.insert("units", "paragraphs".into());
    p.insert("explain", "1".into());
    p.insert("target_id", "x".into());
    let v = ViewState::from_params(&p);
    assert_eq!(v.method, Method::Saliency);
    assert_eq!(v.display, Display::default());
    assert_eq!(v.explain, Some(ExplainSpec::default()));
}

fn token(id: u32, text: &str) -> Token {
    Token {
        id,
        text: text.into(),
        start: 0,
        end: text.len(),
        special: false,
        generated: false,
        piece: None,
    }
}

fn line(ev: StreamEvent) -> String {
    serde_json::to_string(&ev).unwrap()
}

fn record(model: &str, task: Task, events: Vec<StreamEvent>) -> Record {
    Record {
        model: model.into(),
        task,
        events: events.into_iter().map(line).collect(),
        seal: "(not checked here)".into(),
    }
}

/// A view that generated two tokens, explains the second, and shows the matrix; with
/// records of those three jobs.
fn shared() -> Snapshot {
    let view = ViewState {
        model: "m".into(),
        prompt: "Hi".into(),
        generation: Some(GenSpec {
            sampling: Sampling::greedy(),
            max_new_tokens: 2,
            answer: None,
        }),
        explain: Some(ExplainSpec {
            step: Some(1),
            ..ExplainSpec::default()
        }),
        matrix: Some(Method::Attnlrp),
        ..ViewState::default()
    };
    let answer = [(11, " a"), (12, " b")];
    let gen_events = answer
        .iter()
        .enumerate()
        .map(|(index, (id, text))| StreamEvent::Generated {
            index,
            token: GeneratedToken {
                token: token(*id, text),
                prob: 0.5,
            },
        })
        .chain([StreamEvent::Finished {
            stop: StopReason::MaxNewTokens,
        }])
        .collect();
    let ids = [11, 12];
    let explain = view.explain_request(&ids).unwrap().unwrap();
    assert_eq!(explain.continuation, vec![11]);
    assert_eq!(explain.target, TargetSpec::Id(12));
    let tokens = StreamEvent::Tokens {
        text: "Hi a".into(),
        tokens: vec![token(1, "Hi"), token(11, " a")],
        query_span: Some([0, 1]),
        n_layers: 1,
    };
    let result = MethodResult {
        ablation: None,
        scores: vec![0.25, 0.75],
        trace: vec![vec![0.25, 0.75]],
        trace_normalized: vec![vec![1.0 / 3.0, 1.0]],
        conservation: None,
        neurons: None,
        heads: None,
    };
    let method = StreamEvent::Method {
        method: Method::Saliency,
        result,
    };
    Snapshot {
        answer: Some(record(
            "m",
            Task::Generate(view.generate_request().unwrap()),
            gen_events,
        )),
        explanation: Some(record(
            "m",
            Task::Explain(explain),
            vec![tokens.clone(), method],
        )),
        matrix: Some(record(
            "m",
            Task::Steps(view.steps_request(&ids).unwrap()),
            vec![tokens],
        )),
        view,
        against: None,
    }
}

#[test]
fn a_snapshot_replays_to_what_the_page_showed() {
    let s = shared();
    let r = s.replay().expect("replay");
    let a = r.answer.expect("answer");
    assert_eq!(a.ids(), vec![11, 12]);
    assert_eq!(a.stop, Some(StopReason::MaxNewTokens));
    assert_eq!(a.sealed.as_ref(), s.answer.as_ref());
    let e = r.explanation.expect("explanation");
    assert_eq!((e.step, e.continuation.clone()), (Some(1), vec![11]));
    assert_eq!(e.tokens.len(), 2);
    assert_eq!(e.methods[&Method::Saliency].scores, vec![0.25, 0.75]);
    let m = r.matrix.expect("matrix");
    assert_eq!((m.method, m.tokens.len()), (Some(Method::Attnlrp), 2));
    // Through JSON (what the database keeps) it is the same.
    let back: Snapshot = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
    assert_eq!(back, s);
}

/// A result computed in f32 where bf16 was asked for keeps why, through a shared link.
#[test]
fn a_precision_fallback_is_replayed_with_its_note() {
    let mut s = shared();
    let note = "bf16 was asked for; every product ran in f32: no bf16 here";
    let ev = line(StreamEvent::Precision {
        precision: tokenlens::Precision::F32,
        note: Some(note.into()),
    });
    for r in [&mut s.explanation, &mut s.matrix].into_iter().flatten() {
        r.events.insert(1, ev.clone());
    }
    let r = s.replay().expect("replay");
    let e = r.explanation.expect("explanation");
    assert_eq!(
        (e.precision, e.precision_note.as_deref()),
        (tokenlens::Precision::F32, Some(note))
    );
    let m = r.matrix.expect("matrix");
    assert_eq!(m.precision_note.as_deref(), Some(note));
    // The answer's stream had none: generated as asked.
    assert_eq!(r.answer.expect("answer").precision_note, None);
}

#[test]
fn a_snapshot_whose_records_are_not_its_views_is_refused() {
    let refused = |f: &dyn Fn(&mut Snapshot)| {
        let mut s = shared();
        f(&mut s);
        s.replay().expect_err("inconsistent")
    };
    // Another prompt, model, sampling or step than the records were computed for.
    assert!(refused(&|s| s.view.prompt = "Ho".into()).contains("not the one"));
    assert!(refused(&|s| s.view.model = "n".into()).contains("computed on \"m\""));
    assert!(
        refused(&|s| s.view.generation.as_mut().unwrap().max_new_tokens = 3).contains("answer")
    );
    assert!(refused(&|s| s.view.explain.as_mut().unwrap().step = Some(0)).contains("explanation"));
    assert!(refused(&|s| s.view.explain.as_mut().unwrap().step = Some(2)).contains("no token 3"));
    assert!(refused(&|s| s.view.matrix = Some(Method::CpLrp)).contains("matrix"));
    // Records swapped between jobs, one missing, or nothing at all.
    assert!(refused(&|s| std::mem::swap(&mut s.answer, &mut s.matrix)).contains("not the one"));
    assert!(refused(&|s| s.explanation = None).contains("none is stored"));
    assert!(refused(&|s| s.view.matrix = None).contains("does not show"));
    assert!(
        refused(&|s| s.answer.as_mut().unwrap().events[0] = "{".into()).contains("does not parse")
    );
    let empty = Snapshot::of(ViewState::default(), None, None, None);
    assert!(empty.replay().unwrap_err().contains("nothing computed"));
}

#[test]
fn snapshot_of_leaves_out_what_was_not_sealed() {
    let full = shared();
    let mut view = full.view.clone();
    view.model = String::new();
    let s = Snapshot::of(view, full.answer.clone(), None, None);
    assert_eq!(s.view.explain, None);
    assert_eq!(s.view.matrix, None);
    assert_eq!(s.view.model, "m", "the view names the model that ran it");
    let r = s.replay().expect("the answer alone replays");
    assert!(r.explanation.is_none() && r.matrix.is_none());
}

#[test]
fn a_span_view_goes_through_the_url_and_asks_for_the_span() {
    let v = ViewState {
        generation: Some(GenSpec::default()),
        explain: Some(ExplainSpec {
            span: Some(tokenlens::Span { start: 1, end: 3 }),
            score: tokenlens::Score::LogProb,
            ..ExplainSpec::default()
        }),
        ..ViewState::default()
    };
    assert!(
        v.to_query().contains("span=2%3A3"),
        "1-based, inclusive: {}",
        v.to_query()
    );
    assert_eq!(through_url(&v), v);
    let r = v.explain_request(&[11, 12, 13, 14]).unwrap().unwrap();
    assert_eq!(r.continuation, vec![11, 12, 13]);
    assert_eq!(r.span, Some(tokenlens::Span { start: 1, end: 3 }));
    assert_eq!(r.score, tokenlens::Score::LogProb);
    assert!(!r.explain_candidates);
    let err = v.explain_request(&[11, 12]).unwrap_err();
    assert!(err.contains("ends past the 2 continuation tokens"), "{err}");
    // Unreadable or backwards spans in a link are left out, not guessed.
    for bad in ["0:2", "3:2", "x", "2"] {
        let mut p = v.to_params();
        p.insert("span", bad.to_string());
        let read = ViewState::from_params(&p);
        assert_eq!(read.explain.and_then(|e| e.span), None, "{bad}");
    }
}

#[test]
fn inside_asks_for_neurons_heads_and_the_ablation_of_the_method_in_view() {
    let mut v = ViewState {
        explain: Some(ExplainSpec::default()),
        ..ViewState::default()
    };
    let req = v.explain_request(&[]).unwrap().unwrap();
    assert_eq!(
        (req.neurons, req.heads, req.ablation.is_none()),
        (0, false, true)
    );
    let e = v.explain.as_mut().unwrap();
    (e.inside, e.ablation) = (true, true);
    v.method = Method::CpLrp;
    let req = v.explain_request(&[]).unwrap().unwrap();
    assert_eq!(
        (req.neurons, req.heads),
        (crate::state::view::INSIDE_NEURONS, true)
    );
    let a = req.ablation.expect("ablation");
    assert_eq!(a.methods, vec![Method::CpLrp]);
    // Another method in view is another ablation: another context; without the ablation,
    // switching one-pass methods stays a view.
    let mut w = v.clone();
    w.method = Method::Attnlrp;
    assert_ne!(w.context(), v.context());
    for x in [&mut v, &mut w] {
        x.explain.as_mut().unwrap().ablation = false;
    }
    assert_eq!(w.context(), v.context());
    // The ablation needs the neurons and heads.
    v.explain.as_mut().unwrap().inside = false;
    v.explain.as_mut().unwrap().ablation = true;
    assert!(v.explain_request(&[]).unwrap().unwrap().ablation.is_none());
    assert!(!v.to_query().contains("ablation"));
}
