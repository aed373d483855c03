//! Routes and middleware: the Leptos app with its server functions, the `/s/<id>` guard, the
//! 400 status for bodies that do not parse, the request limits, and the operator's routes
//! and layers (probes, metrics, request ids: [`crate::ops`]).

use app::permalinks::Permalinks;
use app::ssr::ServerState;
use app::store::is_valid_id;
use axum::Router;
use leptos::prelude::*;
use leptos_axum::{generate_route_list, LeptosRoutes};

/// `/s/<id>` for an id that is malformed or not stored: a 404 page, before the app renders.
async fn permalink_guard(
    axum::extract::State(permalinks): axum::extract::State<Permalinks>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let Some(id) = req.uri().path().strip_prefix("/s/") else {
        return next.run(req).await;
    };
    let id = id.trim_end_matches('/').to_string();
    let unavailable =
        |msg: &str| (axum::http::StatusCode::SERVICE_UNAVAILABLE, msg.to_string()).into_response();
    let problem = if !is_valid_id(&id) {
        Some("This is not a TokenLens permalink: the id is malformed.")
    } else {
        let Ok(db) = permalinks.get() else {
            return unavailable(app::permalinks::UNAVAILABLE);
        };
        match db.store.contains(&id).await {
            Ok(true) => None,
            Ok(false) => Some("No view is stored under this link on this server."),
            Err(e) => {
                app::metrics::store_error();
                tracing::error!("looking up permalink {id}: {e}");
                return unavailable("the permalink database is unavailable; try again later");
            }
        }
    };
    match problem {
        None => next.run(req).await,
        Some(msg) => (
            axum::http::StatusCode::NOT_FOUND,
            axum::response::Html(not_found_page(&id, msg)),
        )
            .into_response(),
    }
}

/// Server functions answer every error with 500; a request body that does not parse is the
/// client's mistake, so it gets 400 (the message stays as it was), and one cut off at the
/// body limit while it streamed in (no Content-Length to refuse it by) gets 413.
async fn bad_request_status(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::StatusCode;
    let res = next.run(req).await;
    if res.status() != StatusCode::INTERNAL_SERVER_ERROR
        || !res.headers().contains_key("serverfnerror")
    {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    // Error bodies are one short message.
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    if bytes.starts_with(b"Deserialization|length limit exceeded") {
        parts.status = StatusCode::PAYLOAD_TOO_LARGE;
    } else if [&b"Deserialization|"[..], b"Args|", b"MissingArg|"]
        .iter()
        .any(|p| bytes.starts_with(p))
    {
        parts.status = StatusCode::BAD_REQUEST;
    }
    axum::response::Response::from_parts(parts, axum::body::Body::from(bytes))
}

fn not_found_page(id: &str, msg: &str) -> String {
    let escaped = tokenlens::text::escape_html(&id.chars().take(64).collect::<String>());
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Not found · TokenLens</title>\
         <link rel=\"stylesheet\" href=\"/style.css\"></head><body><main><h1>TokenLens</h1>\
         <div class=\"error\" role=\"alert\" data-testid=\"not-found\"><p><strong>404</strong> · {msg}</p>\
         <p>Link id: <code>{escaped}</code></p></div><p><a href=\"/\">Open the viewer</a></p></main></body></html>"
    )
}

/// The whole HTTP surface: the Leptos pages and server functions, the permalink guard and
/// the limits every request meets.
pub fn app(state: ServerState, options: LeptosOptions) -> Router {
    use tower_http::limit::RequestBodyLimitLayer;
    use tower_http::timeout::RequestBodyTimeoutLayer;
    let routes = generate_route_list(app::App);
    let permalinks = state.permalinks.clone();
    let state_for_ops = state.clone();
    // A shared view is the largest request: let it through whole (the store then says
    // clearly when one is over its limit), and nothing much larger.
    let share_limit = usize::try_from(permalinks.quota().max_item_bytes + (1 << 20))
        .unwrap_or(usize::MAX)
        .max(2 << 20);
    let site = Router::new()
        .leptos_routes_with_context(&options, routes, move || provide_context(state.clone()), {
            let options = options.clone();
            move || app::shell(options.clone())
        })
        .fallback(leptos_axum::file_and_error_handler(app::shell))
        .with_state(options)
        .layer(axum::middleware::from_fn_with_state(
            permalinks,
            permalink_guard,
        ))
        .layer(axum::middleware::from_fn(bad_request_status))
        // The limits below are the tower-http layers'; axum's own default (2 MB) is lifted.
        .layer(axum::extract::DefaultBodyLimit::disable())
        // A body that trickles in holds a connection: 30 s to send it, at most.
        .layer(RequestBodyTimeoutLayer::new(BODY_TIMEOUT));
    // Sharing takes a whole view; every other request (a prompt and its settings, an id)
    // is small: 413 past each limit, before anything is parsed.
    let limited = |limit: usize| {
        tower::ServiceBuilder::new()
            .layer(RequestBodyLimitLayer::new(limit))
            .service(site.clone())
    };
    let site = Router::new()
        .route_service("/api/share", limited(share_limit))
        .fallback_service(limited(REQUEST_LIMIT))
        // Each request's log lines carry its id; its answer is logged at info.
        .layer(
            tower_http::trace::TraceLayer::new_for_http()
                .make_span_with(crate::ops::request_span)
                .on_response(
                    tower_http::trace::DefaultOnResponse::new().level(tracing::Level::INFO),
                ),
        );
    // The probes and metrics: no rate limit, no log line per request.
    let ops = Router::new()
        .route("/healthz", axum::routing::get(crate::ops::healthz))
        .route("/readyz", axum::routing::get(crate::ops::readyz))
        .route("/metrics", axum::routing::get(crate::ops::metrics))
        .with_state(state_for_ops);
    ops.merge(site)
        .layer(axum::middleware::from_fn(crate::ops::count_requests))
        .layer(axum::middleware::from_fn(crate::ops::request_id))
}

/// The largest body of any request but a share: a prompt of the longest context with its
/// settings, JSON-escaped, fits several times over.
pub const REQUEST_LIMIT: usize = 256 << 10;

/// How long a request body may take to arrive.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

#[cfg(test)]
mod tests;
