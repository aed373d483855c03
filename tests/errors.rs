//! Bad input gets a typed error, never a panic.

use crate::util::{default_model_path, engine, Complete};
use tokenlens::{Engine, Error, ExplainRequest, TargetSpec};

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tokenlens-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn empty_prompt() {
    let err = engine().explain(&ExplainRequest::new("")).unwrap_err();
    assert!(matches!(err, Error::EmptyPrompt), "{err}");
}

/// A prompt of only whitespace is text: it is explained and continued, raw or templated.
#[test]
fn whitespace_prompts_are_text() {
    let e = engine();
    for p in ["\n", "   ", " \n\t"] {
        for chat in [false, true] {
            let ex = e
                .explain(&ExplainRequest {
                    chat_template: chat,
                    ..ExplainRequest::new(p)
                })
                .unwrap_or_else(|err| panic!("{p:?} (chat {chat}): {err}"));
            assert!(ex.text.contains(p), "{p:?}: {:?}", ex.text);
            assert!(ex.predicted().is_some());
        }
        let g = e
            .generate(&tokenlens::GenerateRequest {
                chat_template: false,
                max_new_tokens: 3,
                ..tokenlens::GenerateRequest::new(p)
            })
            .unwrap();
        assert_eq!(g.text, p);
    }
}

#[test]
fn prompt_longer_than_context() {
    let e = engine();
    let mut req = ExplainRequest::new("a ".repeat(e.max_tokens() + 10));
    req.chat_template = false;
    match e.explain(&req).unwrap_err() {
        Error::PromptTooLong { tokens, limit } => {
            // The context, or less where the machine's memory holds less.
            assert_eq!(limit, e.max_tokens());
            assert!(limit <= 8192);
            assert!(tokens > limit);
        }
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn target_text_that_tokenizes_to_nothing() {
    let mut req = ExplainRequest::new("Hello");
    req.target = TargetSpec::Text(String::new());
    let err = engine().explain(&req).unwrap_err();
    assert!(matches!(err, Error::EmptyTarget(_)), "{err}");
}

/// A target text of several tokens explains its first and says so (the pieces); one token
/// has no pieces.
#[test]
fn target_text_of_several_tokens_names_its_pieces() {
    let mut req = ExplainRequest::new("The capital of France is");
    req.chat_template = false;
    req.methods = vec![tokenlens::Method::Saliency];
    req.target = TargetSpec::Text(" Paris Hilton".into());
    let ex = engine().explain(&req).unwrap();
    assert_eq!(ex.target().pieces.concat(), " Paris Hilton");
    assert!(ex.target().pieces.len() > 1);
    assert_eq!(ex.target().token.text, ex.target().pieces[0]);
    req.target = TargetSpec::Text(" Paris".into());
    assert!(engine().explain(&req).unwrap().target().pieces.is_empty());
}

#[test]
fn target_id_out_of_range() {
    let mut req = ExplainRequest::new("Hello");
    req.target = TargetSpec::Id(49152);
    let err = engine().explain(&req).unwrap_err();
    assert!(
        matches!(
            err,
            Error::TargetOutOfRange {
                id: 49152,
                vocab: 49152
            }
        ),
        "{err}"
    );
}

#[test]
fn unknown_alias_and_missing_file() {
    for spec in ["no-such-model", "/nonexistent/model.gguf"] {
        let err = Engine::load(spec).unwrap_err();
        assert!(matches!(err, Error::UnknownModel { .. }), "{err}");
        assert!(
            err.to_string().contains("smollm2-135m"),
            "lists known aliases: {err}"
        );
    }
}

#[test]
fn non_gguf_file() {
    let p = tmp("not-a-model.gguf");
    std::fs::write(&p, "this is not a model").unwrap();
    let err = Engine::load(p.to_str().unwrap()).unwrap_err();
    assert!(matches!(err, Error::BadModelFile { .. }), "{err}");
}

#[test]
fn truncated_gguf() {
    let bytes = std::fs::read(default_model_path()).unwrap();
    let p = tmp("truncated.gguf");
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let err = Engine::load(p.to_str().unwrap()).unwrap_err();
    assert!(matches!(err, Error::BadModelFile { .. }), "{err}");
    assert!(err.to_string().contains("truncated"), "{err}");
    // Cut inside the header too.
    std::fs::write(&p, &bytes[..1000]).unwrap();
    let err = Engine::load(p.to_str().unwrap()).unwrap_err();
    assert!(matches!(err, Error::BadModelFile { .. }), "{err}");
}

/// Every numeric and list setting of a request is checked before any work: a huge `top_k`
/// used to cost a softmax over the vocabulary per candidate (vocabulary² work).
#[test]
fn request_settings_out_of_range() {
    use tokenlens::{GenerateRequest, Method, StepsRequest};
    let invalid = |r: Result<(), Error>, needle: &str| match r {
        Err(Error::InvalidSetting(msg)) => assert!(msg.contains(needle), "{needle}: {msg}"),
        other => panic!("{needle}: {other:?}"),
    };
    let e = engine();
    // Refused before any work: the stream ends before its forward pass begins.
    let explain = |edit: &dyn Fn(&mut ExplainRequest)| {
        let mut req = ExplainRequest::new("Hello");
        edit(&mut req);
        let mut passes = 0;
        let r = e.explain_streaming(&req, &mut |ev| {
            if matches!(ev, tokenlens::StreamEvent::Stage { stage, .. } if *stage != tokenlens::Stage::Tokenize)
            {
                passes += 1;
            }
            std::ops::ControlFlow::Continue(())
        });
        assert_eq!(passes, 0, "a pass began before the refusal");
        r.map(|_| ())
    };
    invalid(explain(&|r| r.top_k = 100_000_000), "top_k");
    invalid(explain(&|r| r.top_k = 0), "top_k");
    invalid(
        explain(&|r| r.methods = vec![Method::Saliency, Method::Saliency]),
        "saliency",
    );
    let mut g = GenerateRequest::new("Hello");
    g.sampling.top_k = 1_000_000_000;
    invalid(e.generate(&g).map(|_| ()), "top_k");
    let mut g = GenerateRequest::new("Hello");
    g.sampling.temperature = f32::NAN;
    invalid(e.generate(&g).map(|_| ()), "temperature");
    let steps = StepsRequest {
        steer: Vec::new(),
        prompt: "Hello".into(),
        chat_template: true,
        thinking: false,
        generated: vec![1, 2],
        methods: vec![Method::Attnlrp, Method::Attnlrp],
        precision: tokenlens::Precision::Auto,
    };
    let r = e.explain_steps_streaming(&steps, &mut |_| std::ops::ControlFlow::Continue(()));
    invalid(r.map(|_| ()), "attnlrp");
}
