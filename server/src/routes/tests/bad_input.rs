//! Malformed, oversized and hostile requests: each gets its status and a message, never a
//! panic or a hang.

use super::*;

#[tokio::test]
async fn bad_input_corpus() {
    let app = router(Setup::default()).await;
    let explain = |req: &str| format!(r#"{{"model": "", "request": {req}}}"#);
    let long = format!(r#"{{"prompt": "{}"}}"#, "word ".repeat(20_000));
    let forged = share_body().replacen("\"seal\":\"", "\"seal\":\"AAAA", 1);
    let mismatched = share_body().replacen("smollm2-135m", "gemma3-270m", 1);
    let cases: Vec<(&str, &str, String)> = vec![
        (
            "top_k 0",
            "/api/explain",
            explain(r#"{"prompt": "Hi", "top_k": 0}"#),
        ),
        (
            "top_k -1",
            "/api/explain",
            explain(r#"{"prompt": "Hi", "top_k": -1}"#),
        ),
        (
            "top_k huge",
            "/api/explain",
            explain(r#"{"prompt": "Hi", "top_k": 1000000000000}"#),
        ),
        (
            "top_k float",
            "/api/explain",
            explain(r#"{"prompt": "Hi", "top_k": 2.5}"#),
        ),
        (
            "method unknown",
            "/api/explain",
            explain(r#"{"prompt": "Hi", "methods": ["magic"]}"#),
        ),
        (
            "method twice",
            "/api/explain",
            explain(r#"{"prompt": "Hi", "methods": ["attnlrp", "attnlrp"]}"#),
        ),
        (
            "target id huge",
            "/api/explain",
            explain(r#"{"prompt": "Hi", "target": {"kind": "id", "value": 4000000000}}"#),
        ),
        (
            "target id negative",
            "/api/explain",
            explain(r#"{"prompt": "Hi", "target": {"kind": "id", "value": -1}}"#),
        ),
        (
            "target text empty",
            "/api/explain",
            explain(r#"{"prompt": "Hi", "target": {"kind": "text", "value": ""}}"#),
        ),
        (
            "contrast is target",
            "/api/explain",
            explain(
                r#"{"prompt": "Hi", "target": {"kind": "id", "value": 5}, "contrast": {"kind": "id", "value": 5}}"#,
            ),
        ),
        (
            "continuation huge id",
            "/api/explain",
            explain(r#"{"prompt": "Hi", "continuation": [4000000000]}"#),
        ),
        (
            "continuation negative",
            "/api/explain",
            explain(r#"{"prompt": "Hi", "continuation": [-3]}"#),
        ),
        ("prompt empty", "/api/explain", explain(r#"{"prompt": ""}"#)),
        ("prompt 100k characters", "/api/explain", explain(&long)),
        ("prompt missing", "/api/explain", explain(r#"{}"#)),
        (
            "model unknown",
            "/api/explain",
            r#"{"model": "nope", "request": {"prompt": "x"}}"#.into(),
        ),
        (
            "model a number",
            "/api/explain",
            r#"{"model": 5, "request": {"prompt": "x"}}"#.into(),
        ),
        ("not json", "/api/explain", "{not json".into()),
        ("json null", "/api/explain", "null".into()),
        ("json array", "/api/explain", "[]".into()),
        (
            "temperature -1",
            "/api/generate",
            explain(
                r#"{"prompt": "Hi", "sampling": {"temperature": -1, "top_k": 20, "top_p": 0.8, "seed": 0}}"#,
            ),
        ),
        (
            "top_p 0",
            "/api/generate",
            explain(
                r#"{"prompt": "Hi", "sampling": {"temperature": 0.7, "top_k": 20, "top_p": 0, "seed": 0}}"#,
            ),
        ),
        (
            "top_p 2",
            "/api/generate",
            explain(
                r#"{"prompt": "Hi", "sampling": {"temperature": 0.7, "top_k": 20, "top_p": 2, "seed": 0}}"#,
            ),
        ),
        (
            "sampling top_k huge",
            "/api/generate",
            explain(
                r#"{"prompt": "Hi", "sampling": {"temperature": 0.7, "top_k": 1000000000, "top_p": 0.8, "seed": 0}}"#,
            ),
        ),
        (
            "seed negative",
            "/api/generate",
            explain(
                r#"{"prompt": "Hi", "sampling": {"temperature": 0.7, "top_k": 20, "top_p": 0.8, "seed": -1}}"#,
            ),
        ),
        (
            "max_new_tokens 0",
            "/api/generate",
            explain(r#"{"prompt": "Hi", "max_new_tokens": 0}"#),
        ),
        (
            "max_new_tokens negative",
            "/api/generate",
            explain(r#"{"prompt": "Hi", "max_new_tokens": -5}"#),
        ),
        (
            "steps none",
            "/api/steps",
            explain(r#"{"prompt": "Hi", "generated": [], "methods": ["saliency"]}"#),
        ),
        (
            "steps huge id",
            "/api/steps",
            explain(r#"{"prompt": "Hi", "generated": [4000000000], "methods": ["saliency"]}"#),
        ),
        (
            "steps method twice",
            "/api/steps",
            explain(r#"{"prompt": "Hi", "generated": [1], "methods": ["cp_lrp", "cp_lrp"]}"#),
        ),
        (
            "steer outside the model",
            "/api/explain",
            explain(
                r#"{"prompt": "Hi", "steer": [{"layer": 99, "unit": {"neuron": 1}, "setting": {"scale": 0}}]}"#,
            ),
        ),
        (
            "steer scale huge",
            "/api/generate",
            explain(
                r#"{"prompt": "Hi", "steer": [{"layer": 1, "unit": {"head": 1}, "setting": {"scale": 1e9}}]}"#,
            ),
        ),
        (
            "steer not an edit",
            "/api/generate",
            explain(r#"{"prompt": "Hi", "steer": [{"layer": 1}]}"#),
        ),
        (
            "ablation without units",
            "/api/explain",
            explain(r#"{"prompt": "Hi", "methods": ["attnlrp"], "ablation": 4}"#),
        ),
        (
            "neurons too many",
            "/api/explain",
            explain(r#"{"prompt": "Hi", "neurons": 100000}"#),
        ),
        (
            "unit outside the model",
            "/api/unit",
            explain(r#"{"prompt": "Hi", "unit": {"layer": 0, "unit": {"head": 99}}}"#),
        ),
        ("unit missing", "/api/unit", explain(r#"{"prompt": "Hi"}"#)),
        ("share forged seal", "/api/share", forged),
        ("share other model", "/api/share", mismatched),
        (
            "share not a view",
            "/api/share",
            r#"{"snapshot": {"x": 1}}"#.into(),
        ),
        (
            "shared id malformed",
            "/api/shared",
            r#"{"id": "../../etc/passwd"}"#.into(),
        ),
    ];
    for (name, route, body) in &cases {
        let started = std::time::Instant::now();
        // A guard against a hang, not a measure of speed.
        let (status, text) = tokio::time::timeout(
            std::time::Duration::from_secs(600),
            send(&app, post(route, body.clone())),
        )
        .await
        .unwrap_or_else(|_| panic!("{name}: no answer within 10 minutes"));
        let error_event = text
            .lines()
            .last()
            .is_some_and(|l| l.contains(r#""type":"error""#));
        assert!(
            status.is_client_error() || (status == StatusCode::OK && error_event),
            "{name}: {status} {}",
            text.chars().take(300).collect::<String>()
        );
        assert!(text.trim().len() > 10, "{name}: no message ({status})");
        eprintln!(
            "{name}: {status} in {:?}: {}",
            started.elapsed(),
            text.lines()
                .last()
                .unwrap_or("")
                .chars()
                .take(140)
                .collect::<String>()
        );
    }
    eprintln!(
        "bad-input corpus: {} cases, each refused with a message",
        cases.len()
    );
}
