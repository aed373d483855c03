//! What an operator needs beside the viewer: `/healthz` and `/readyz` for load balancers and
//! Kubernetes, `/metrics` for Prometheus, an `X-Request-Id` on every request (kept from the
//! client when it is a sane one) carried by the request's log lines and its job's, and
//! requests counted by route and status.

use app::ssr::ServerState;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;

/// The request id header.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The Prometheus recorder, installed once per process (the facade has one global
/// recorder), with the process' own metrics (memory, CPU, threads) under `tokenlens_`.
pub struct Telemetry {
    handle: PrometheusHandle,
    process: metrics_process::Collector,
}

impl Telemetry {
    /// The process' recorder, installed on first use.
    pub fn global() -> &'static Telemetry {
        static T: OnceLock<Telemetry> = OnceLock::new();
        T.get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(app::metrics::JOB_SECONDS.into()),
                    app::metrics::JOB_BUCKETS,
                )
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("another metrics recorder is installed; /metrics stays empty");
            }
            app::metrics::describe();
            let process = metrics_process::Collector::new("tokenlens_");
            process.describe();
            Telemetry { handle, process }
        })
    }

    /// The metrics in Prometheus' text format, with the process' figures as of now.
    pub fn render(&self) -> String {
        self.process.collect();
        self.handle.render()
    }
}

/// `/healthz`: the process answers.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// `/readyz`: 200 when every model has loaded and the worker runs, else 503 with the
/// reasons; the permalink store's state is named either way (a server without it still
/// serves the models, and says so when asked to share).
pub async fn readyz(State(state): State<ServerState>) -> Response {
    let mut reasons = Vec::new();
    let mut models = serde_json::Map::new();
    if let Ok(loaded) = state.models.read() {
        for m in loaded.iter() {
            models.insert(m.name.clone(), "loaded".into());
        }
    }
    if let Ok(p) = state.pending.read() {
        for spec in &p.loading {
            models.insert(spec.clone(), "loading".into());
            reasons.push(format!("model {spec:?} is still loading"));
        }
        for (spec, why) in &p.failed {
            models.insert(spec.clone(), format!("failed: {why}").into());
            reasons.push(format!("model {spec:?} failed to load: {why}"));
        }
    }
    let worker = if state.worker.alive() {
        "running"
    } else {
        reasons.push("the model worker has stopped".into());
        "stopped"
    };
    let permalinks = match state.permalinks.get() {
        Err(_) => "unavailable: not connected (retrying)".to_string(),
        Ok(db) => match tokio::time::timeout(Duration::from_secs(2), db.store.ping()).await {
            Ok(Ok(())) => format!("ready ({})", db.store.backend()),
            Ok(Err(e)) => format!("unavailable: {e}"),
            Err(_) => "unavailable: no answer within 2 s".to_string(),
        },
    };
    let ready = reasons.is_empty();
    let body = serde_json::json!({
        "ready": ready,
        "reasons": reasons,
        "models": models,
        "worker": worker,
        "permalinks": permalinks,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

/// `/metrics`: Prometheus' text format.
pub async fn metrics() -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        Telemetry::global().render(),
    )
        .into_response()
}

/// Gives every request an id: the client's `X-Request-Id` when it is a sane one (1-128
/// characters of letters, digits and `-_.:`), else a new UUID; echoes it in the response.
pub async fn request_id(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .filter(|v| is_sane_id(v.as_bytes()))
        .cloned()
        .unwrap_or_else(|| {
            HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
                .unwrap_or(HeaderValue::from_static("unknown"))
        });
    req.headers_mut().insert(REQUEST_ID, id.clone());
    let mut res = next.run(req).await;
    res.headers_mut().insert(REQUEST_ID, id);
    res
}

fn is_sane_id(id: &[u8]) -> bool {
    (1..=128).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
}

/// The span every log line of a request (and of its job, on the worker) carries.
pub fn request_span(req: &Request) -> tracing::Span {
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    tracing::info_span!("request", id, method = %req.method(), route = route_of(req.uri().path()))
}

/// Counts each answered request by route and status.
pub async fn count_requests(req: Request, next: Next) -> Response {
    let route = route_of(req.uri().path());
    let res = next.run(req).await;
    if res.status() == StatusCode::PAYLOAD_TOO_LARGE {
        app::metrics::refused(app::metrics::Refusal::TooLarge);
    }
    app::metrics::request(route.to_string(), res.status().as_u16());
    res
}

/// A path as a metric label, so that ids and file names do not multiply the series: server
/// functions by name, a permalink as `/s/:id`, the pages, static files as one label each for
/// `/pkg` and the rest.
fn route_of(path: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "/",
        "/compare",
        "/healthz",
        "/readyz",
        "/metrics",
        "/api/explain",
        "/api/generate",
        "/api/steps",
        "/api/share",
        "/api/shared",
        "/api/models",
        "/api/estimate",
    ];
    if let Some(k) = KNOWN.iter().find(|k| **k == path) {
        return k;
    }
    if path.starts_with("/s/") {
        "/s/:id"
    } else if path.starts_with("/api/") {
        "/api/other"
    } else if path.starts_with("/pkg/") {
        "/pkg/*"
    } else {
        "other"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_from_clients_are_kept_only_when_sane() {
        assert!(is_sane_id(b"abc-123_x.y:z"));
        assert!(!is_sane_id(b""));
        assert!(!is_sane_id(b"a b"));
        assert!(!is_sane_id(b"a\"b"));
        assert!(!is_sane_id(&[b'a'; 129]));
    }

    #[test]
    fn routes_are_a_bounded_set() {
        assert_eq!(route_of("/s/KcDZ9592xAFR"), "/s/:id");
        assert_eq!(route_of("/api/explain"), "/api/explain");
        assert_eq!(route_of("/api/nonsense123"), "/api/other");
        assert_eq!(route_of("/pkg/tokenlens.wasm"), "/pkg/*");
        assert_eq!(route_of("/anything/else"), "other");
    }
}
