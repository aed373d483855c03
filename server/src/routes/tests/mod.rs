//! Every status the server answers, through the whole router (`oneshot`, no socket).

use super::*;
use app::permalinks::Permalinks;
use app::rate_limit::RateLimiter;
use app::record::seal::SealKey;
use app::ssr::{Limits, Model, Worker};
use app::store::{Quota, Store};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use std::sync::{Arc, OnceLock};
use tower::ServiceExt;

mod bad_input;

const FIXTURE: &str = "../tests/fixtures/permalinks/KcDZ9592xAFR.json";
/// The seal key of the store the fixture was taken from.
const FIXTURE_KEY: &str = "vsCqFlzovV7E5WbRhKTZtceuloHAJcjqm8cuUhfKWOM";

fn model() -> Model {
    static ENGINE: OnceLock<Arc<tokenlens::Engine>> = OnceLock::new();
    let engine = ENGINE.get_or_init(|| {
        Arc::new(
            tokenlens::Engine::load(tokenlens::source::DEFAULT_MODEL)
                .expect("the default model (scripts/fetch-models.sh)"),
        )
    });
    Model {
        name: engine.name().to_string(),
        engine: engine.clone(),
    }
}

struct Setup {
    limits: Limits,
    rate: Option<u32>,
    quota: Quota,
    database: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            limits: Limits::default(),
            rate: None,
            quota: Quota {
                max_item_bytes: 32 << 20,
                max_total_bytes: None,
            },
            database: true,
        }
    }
}

async fn router(s: Setup) -> Router {
    let dir = std::env::temp_dir().join(format!(
        "tokenlens-routes-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    let permalinks = if s.database {
        let store = Store::open(None, &dir, s.quota).await.unwrap();
        let key = {
            use base64::Engine as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(FIXTURE_KEY)
                .unwrap()
        };
        Permalinks::connected(store, SealKey::new(key).unwrap())
    } else {
        // A file where the data directory's parent should be: the database cannot open.
        std::fs::write(&dir, "").unwrap();
        Permalinks::open(None, dir.join("data"), s.quota).await
    };
    let state = ServerState::new(
        model(),
        &[],
        Worker::start(4),
        permalinks,
        s.limits,
        RateLimiter::new(s.rate),
    );
    let options = LeptosOptions::builder()
        .output_name("tokenlens")
        .site_root("target/site")
        .build();
    app(state, options)
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// The response, its body not read yet (a stream keeps its job alive while held).
async fn open(app: &Router, req: Request<Body>) -> axum::response::Response {
    app.clone().oneshot(req).await.unwrap()
}

async fn text(res: axum::response::Response) -> String {
    let body = axum::body::to_bytes(res.into_body(), 64 << 20)
        .await
        .unwrap();
    String::from_utf8_lossy(&body).into_owned()
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, String) {
    let res = open(app, req).await;
    (res.status(), text(res).await)
}

/// A request that only predicts (no method): the cheapest job there is.
const HI: &str = r#"{"model": "", "request": {"prompt": "Hi", "methods": []}}"#;

/// A POST as clients send it, with its length.
fn post(path: &str, body: impl Into<String>) -> Request<Body> {
    let body = body.into();
    Request::post(path)
        .header("content-type", "application/json")
        .header("content-length", body.len())
        .body(Body::from(body))
        .unwrap()
}

fn share_body() -> String {
    let snapshot = std::fs::read_to_string(FIXTURE).unwrap();
    format!("{{\"snapshot\": {snapshot}}}")
}

#[tokio::test]
async fn statuses() {
    let app = router(Setup::default()).await;
    let explain = |req: &str| {
        post(
            "/api/explain",
            format!(r#"{{"model": "", "request": {req}}}"#),
        )
    };
    // 200: a stream that ends with done.
    let (status, body) = send(
        &app,
        explain(r#"{"prompt": "Hi", "methods": ["saliency"]}"#),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.trim_end().ends_with(r#"{"type":"done"}"#), "{body}");
    // A prompt of only whitespace is text a model can continue, not an empty prompt.
    let (status, body) = send(
        &app,
        explain(r#"{"prompt": "   ", "methods": ["saliency"]}"#),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.trim_end().ends_with(r#"{"type":"done"}"#), "{body}");
    // A unit's card: one unit event.
    let (status, body) = send(
        &app,
        post(
            "/api/unit",
            r#"{"model": "", "request": {"prompt": "Hi", "unit": {"layer": 2, "unit": {"neuron": 7}}}}"#,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.contains(r#"{"type":"unit","card":{"unit":{"layer":2"#),
        "{body}"
    );
    assert!(body.contains(r#""activations":["#) && body.contains(r#""promotes":["#));
    // 400: a setting out of range; a body that does not parse.
    let (status, body) = send(&app, explain(r#"{"prompt": "Hi", "top_k": 1000}"#)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("top_k must be between 1 and 100"), "{body}");
    let (status, _) = send(&app, post("/api/explain", "{not json")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // 404: an unknown model; a permalink id that is not stored.
    let (status, body) = send(
        &app,
        post(
            "/api/explain",
            r#"{"model": "nope", "request": {"prompt": "x"}}"#,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _) = send(
        &app,
        Request::get("/s/AAAAAAAAAAAA").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // 200: a sealed view is stored under its content id, and opens.
    let (status, id) = send(&app, post("/api/share", share_body())).await;
    assert_eq!(status, StatusCode::OK, "{id}");
    let id = id.trim_matches('"').to_string();
    let (status, _) = send(&app, post("/api/shared", format!(r#"{{"id": "{id}"}}"#))).await;
    assert_eq!(status, StatusCode::OK);
    // 413: a body past the limit (model routes: 256 KB; a share may be larger).
    let big = |n: usize| {
        format!(
            r#"{{"model": "", "request": {{"prompt": "{}"}}}}"#,
            "a".repeat(n)
        )
    };
    let (status, _) = send(&app, post("/api/explain", big(300 << 10))).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, _) = send(&app, post("/api/explain", big(20 << 20))).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, body) = send(&app, post("/api/share", big(300 << 10))).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "parsed, not cut off: {body}"
    );
    // Sent without a length (chunked): cut off at the limit, 413 all the same.
    let chunked = Request::post("/api/explain")
        .header("content-type", "application/json")
        .body(Body::from(big(300 << 10)))
        .unwrap();
    let (status, body) = send(&app, chunked).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
}

#[tokio::test]
async fn rate_limit_is_429() {
    let app = router(Setup {
        rate: Some(1),
        ..Setup::default()
    })
    .await;
    let req = || post("/api/explain", HI);
    assert_eq!(send(&app, req()).await.0, StatusCode::OK);
    let res = open(&app, req()).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
}

/// Without --demo and without --rate-limit, shares are still limited per client (10 a
/// minute by default): each one writes to the database.
#[tokio::test]
async fn shares_are_rate_limited_in_every_mode() {
    let app = router(Setup::default()).await;
    for _ in 0..app::rate_limit::DEFAULT_SHARES_PER_MINUTE {
        let (status, body) = send(&app, post("/api/share", share_body())).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let res = open(&app, post("/api/share", share_body())).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().contains_key("retry-after"));
    let body = text(res).await;
    assert!(body.contains("too many shares"), "{body}");
    // Model requests are not counted against shares.
    let (status, _) = send(&app, post("/api/models", "")).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn storage_statuses_are_413_507_and_503() {
    // One view over the per-view limit: 413.
    let small = Quota {
        max_item_bytes: 1000,
        max_total_bytes: None,
    };
    let app = router(Setup {
        quota: small,
        ..Setup::default()
    })
    .await;
    let (status, body) = send(&app, post("/api/share", share_body())).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    // All views over the quota: 507.
    let full = Quota {
        max_item_bytes: 32 << 20,
        max_total_bytes: Some(1000),
    };
    let app = router(Setup {
        quota: full,
        ..Setup::default()
    })
    .await;
    let (status, body) = send(&app, post("/api/share", share_body())).await;
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE, "{body}");
    // No database: 503, and the models still answer.
    let app = router(Setup {
        database: false,
        ..Setup::default()
    })
    .await;
    let (status, body) = send(&app, post("/api/share", share_body())).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("cannot be reached"), "{body}");
    let (status, _) = send(
        &app,
        Request::get("/s/KcDZ9592xAFR").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let (status, _) = send(&app, post("/api/models", "")).await;
    assert_eq!(status, StatusCode::OK);
}

/// Work is bounded per request: by its estimated cost before it is queued (400), and by
/// its running time (an error event ends the stream).
#[tokio::test]
async fn work_per_request_is_bounded() {
    let limits = Limits {
        max_job_cost: Some(30),
        ..Limits::default()
    };
    let app = router(Setup {
        limits,
        ..Setup::default()
    })
    .await;
    let req = |methods: &str| {
        post(
            "/api/explain",
            format!(
                r#"{{"model": "", "request": {{"prompt": "Why is the sky blue?", "chat_template": false, "methods": {methods}}}}}"#
            ),
        )
    };
    // The raw prompt (6 tokens, one pass) fits in 30; templated (about 30 tokens) with
    // three passes it does not.
    assert_eq!(send(&app, req(r#"["saliency"]"#)).await.0, StatusCode::OK);
    let chat = post(
        "/api/explain",
        r#"{"model": "", "request": {"prompt": "Why is the sky blue?", "methods": ["saliency", "attnlrp", "cp_lrp"]}}"#,
    );
    let (status, body) = send(&app, chat).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body.contains("token-passes") && body.contains("at most 30"),
        "{body}"
    );
    let limits = Limits {
        max_job_seconds: Some(0),
        ..Limits::default()
    };
    let app = router(Setup {
        limits,
        ..Setup::default()
    })
    .await;
    let (status, body) = send(&app, req(r#"["saliency"]"#)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("ran past the 0 s"), "{body}");
    assert!(!body.contains(r#""type":"done""#), "{body}");
}

/// A request that waits is told its place in line; a client with its share of the queue
/// (one running, one waiting) gets 429 with Retry-After for a third.
#[tokio::test]
async fn fair_queueing() {
    let limits = Limits {
        max_jobs_per_client: Some(2),
        ..Limits::default()
    };
    let app = router(Setup {
        limits,
        ..Setup::default()
    })
    .await;
    let long = format!(
        r#"{{"model": "", "request": {{"prompt": "{}", "chat_template": false, "methods": ["saliency", "attnlrp", "cp_lrp"]}}}}"#,
        "The quick brown fox jumps over the lazy dog. ".repeat(20)
    );
    // Held, not read: the job runs while the next one waits.
    let first = open(&app, post("/api/explain", long)).await;
    assert_eq!(first.status(), StatusCode::OK);
    let second = open(&app, post("/api/explain", HI)).await;
    assert_eq!(second.status(), StatusCode::OK);
    let third = open(&app, post("/api/explain", HI)).await;
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(third.headers()["retry-after"], "5");
    let body = text(second).await;
    // Second in line until the worker takes the first job, then next.
    assert!(
        body.starts_with(r#"{"type":"queued","position":"#),
        "{body}"
    );
    assert!(body.contains(r#"{"type":"queued","position":1}"#), "{body}");
    assert!(body.trim_end().ends_with(r#"{"type":"done"}"#), "{body}");
    assert!(text(first).await.contains(r#""type":"done""#));
    // Both finished: the client has its places back.
    assert_eq!(send(&app, post("/api/explain", HI)).await.0, StatusCode::OK);
}

/// The bad-input corpus: every numeric field at 0, negative and huge, malformed JSON, unknown
/// model and method, empty and 100k-character prompts, forged and mismatched share bodies.
/// Each ends with a clear answer (a 4xx with a message, or a stream whose last event is an
/// error) within seconds; none is a 5xx, none hangs.
#[tokio::test]
async fn probes_metrics_and_request_ids() {
    crate::ops::Telemetry::global();
    let app = router(Setup::default()).await;
    let get = |path: &str| Request::get(path).body(Body::empty()).unwrap();
    assert_eq!(
        send(&app, get("/healthz")).await,
        (StatusCode::OK, "ok\n".into())
    );
    let (status, body) = send(&app, get("/readyz")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["worker"], "running");
    assert_eq!(ready["permalinks"], "ready (sqlite)");
    // A job counted by route and status, and as a finished job.
    let mut req = post("/api/explain", HI);
    req.headers_mut()
        .insert("x-request-id", "client-id-1".parse().unwrap());
    let res = open(&app, req).await;
    assert_eq!(res.headers()["x-request-id"], "client-id-1");
    assert!(text(res).await.ends_with("{\"type\":\"done\"}\n"));
    let res = open(&app, get("/healthz")).await;
    let made = res.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(made.len(), 36, "a new UUID: {made}");
    let (status, metrics) = send(&app, get("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    for line in [
        "tokenlens_http_requests_total{route=\"/api/explain\",status=\"200\"}",
        "tokenlens_job_duration_seconds_bucket{task=\"explain\"",
        "tokenlens_refusals_total{reason=\"cost\"} ",
        "tokenlens_process_resident_memory_bytes ",
    ] {
        assert!(metrics.contains(line), "/metrics has no {line}");
    }
}

#[tokio::test]
async fn not_ready_while_a_model_loads() {
    let app = {
        let state = ServerState::new(
            model(),
            &["another-model".to_string()],
            Worker::start(1),
            Permalinks::open(
                None,
                std::env::temp_dir().join("tokenlens-unused"),
                Quota {
                    max_item_bytes: 1 << 20,
                    max_total_bytes: None,
                },
            )
            .await,
            Limits::default(),
            RateLimiter::new(None),
        );
        let options = LeptosOptions::builder()
            .output_name("tokenlens")
            .site_root("target/site")
            .build();
        app(state, options)
    };
    let (status, body) = send(&app, Request::get("/readyz").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("\"another-model\":\"loading\""), "{body}");
    assert!(body.contains("is still loading"), "{body}");
}
