//! The server functions' server-only half: the server state, the calling client, rate
//! checks, refusals with their HTTP status, and the queued, sealed event stream of a task.

use leptos::prelude::*;
use leptos::server_fn::codec::TextStream;
use serde::Serialize;
use tokenlens::StreamEvent;

use crate::record::{is_content, Control, Task};

pub(super) fn server_state() -> Result<crate::ssr::ServerState, ServerFnError> {
    use_context::<crate::ssr::ServerState>()
        .ok_or_else(|| ServerFnError::new("server state is missing"))
}

/// The calling client, as the rate limit and the queue count it (see
/// [`crate::rate_limit::client_key`]).
pub(super) async fn client(state: &crate::ssr::ServerState) -> std::net::IpAddr {
    use axum::extract::ConnectInfo;
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    let headers = if state.trust_forwarded_for {
        leptos_axum::extract::<axum::http::HeaderMap>().await.ok()
    } else {
        None
    };
    // A proxy that adds a header line rather than appending to the last one: the last line.
    let forwarded = headers.as_ref().and_then(|h| {
        h.get_all("x-forwarded-for")
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
    });
    let peer = leptos_axum::extract::<ConnectInfo<SocketAddr>>()
        .await
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    crate::rate_limit::client_key(forwarded, peer)
}

/// Takes one request from the calling client's rate allowance; returns the client.
pub(super) async fn rate_check(
    state: &crate::ssr::ServerState,
) -> Result<std::net::IpAddr, ServerFnError> {
    let client = client(state).await;
    state.rate.check(client).map_err(|(msg, wait)| {
        crate::metrics::refused(crate::metrics::Refusal::Rate);
        refuse_retry(axum::http::StatusCode::TOO_MANY_REQUESTS, msg, wait)
    })?;
    Ok(client)
}

/// An error answered with `status`.
pub(super) fn refuse(status: axum::http::StatusCode, msg: impl Into<String>) -> ServerFnError {
    if let Some(resp) = use_context::<leptos_axum::ResponseOptions>() {
        resp.set_status(status);
    }
    ServerFnError::new(msg.into())
}

/// An error answered with `status` and `Retry-After: seconds` (429 and 503 say when to come
/// back, as HTTP clients and load balancers expect).
pub(super) fn refuse_retry(
    status: axum::http::StatusCode,
    msg: impl Into<String>,
    seconds: u64,
) -> ServerFnError {
    if let Some(resp) = use_context::<leptos_axum::ResponseOptions>() {
        resp.insert_header(axum::http::header::RETRY_AFTER, seconds.into());
    }
    refuse(status, msg)
}

pub(super) fn json_line(v: &impl Serialize) -> Result<String, ServerFnError> {
    serde_json::to_string(v).map_err(|e| ServerFnError::new(e.to_string()))
}

/// Queues a task and streams its events as newline-delimited JSON, sealing the content
/// events: a [`Control::Sealed`] line comes just before `done` (see [`crate::record`]).
pub(super) async fn stream_task(model: &str, task: Task) -> Result<TextStream, ServerFnError> {
    use futures::StreamExt;
    let state = server_state()?;
    let new_tokens = match &task {
        Task::Explain(r) => r.continuation.len(),
        // A given answer's length is checked in tokens where the model is known.
        Task::Generate(r) if r.answer.is_some() => 0,
        Task::Generate(r) => r.max_new_tokens,
        Task::Steps(r) => r.generated.len(),
        Task::Unit(r) => r.continuation.len(),
        Task::Contexts(_) => 0,
    };
    state
        .limits
        .check(&task.text(), new_tokens)
        .map_err(|msg| {
            crate::metrics::refused(crate::metrics::Refusal::TooLarge);
            refuse(axum::http::StatusCode::BAD_REQUEST, msg)
        })?;
    task.check().map_err(|msg| {
        refuse(
            axum::http::StatusCode::BAD_REQUEST,
            format!("invalid setting: {msg}"),
        )
    })?;
    let client = rate_check(&state).await?;
    let sealed_task = task.clone();
    let (name, rx, ticket) = state.submit(model, task, client).map_err(|e| match e {
        // Come back when a job could have finished: a few seconds.
        crate::ssr::Refused::Busy
        | crate::ssr::Refused::Loading(_)
        | crate::ssr::Refused::ClientBusy(_) => refuse_retry(e.status(), e.to_string(), 5),
        e => refuse(e.status(), e.to_string()),
    })?;
    // The seal names the model that ran the job (an empty request means the default). Without
    // the database there is no key: the result streams unsealed and cannot be shared.
    let mut sealing = state
        .permalinks
        .get()
        .ok()
        .map(|p| p.seal.start(&name, &sealed_task));
    let events = queued_then_events(rx, state.worker.clone(), ticket);
    let lines = events.map(move |ev| {
        let line = json_line(&ev)?;
        if matches!(ev, StreamEvent::Done) {
            let seal = sealing.take().map(|s| s.finish()).unwrap_or_default();
            let sealed = json_line(&Control::Sealed {
                model: name.clone(),
                seal,
            })?;
            return Ok(format!("{sealed}\n{line}\n"));
        }
        if let (Some(s), true) = (sealing.as_mut(), is_content(&ev)) {
            s.add(&line);
        }
        Ok(line + "\n")
    });
    Ok(TextStream::new(lines))
}

/// The job's events, preceded while it waits for the model by its place in line (at once,
/// then about once a second).
pub(super) fn queued_then_events(
    rx: tokio::sync::mpsc::UnboundedReceiver<StreamEvent>,
    worker: crate::ssr::Worker,
    ticket: u64,
) -> impl futures::Stream<Item = StreamEvent> {
    use std::time::Duration;
    // (receiver, whether the job has sent anything, whether to wait before the next update)
    futures::stream::unfold((rx, false, false), move |(mut rx, started, pause)| {
        let worker = worker.clone();
        async move {
            if started {
                return rx.recv().await.map(|ev| (ev, (rx, true, false)));
            }
            let wait = if pause {
                Duration::from_secs(1)
            } else {
                Duration::ZERO
            };
            loop {
                match tokio::time::timeout(wait, rx.recv()).await {
                    Ok(Some(ev)) => return Some((ev, (rx, true, false))),
                    Ok(None) => return None,
                    Err(_) => {
                        let position = worker.position(ticket);
                        if position > 0 {
                            return Some((StreamEvent::Queued { position }, (rx, false, true)));
                        }
                        if wait.is_zero() {
                            // Started already: wait for its first event.
                            return rx.recv().await.map(|ev| (ev, (rx, true, false)));
                        }
                    }
                }
            }
        }
    })
}
