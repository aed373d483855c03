//! Server functions, and the client's reader for their event streams.

use leptos::prelude::*;
use leptos::server_fn::codec::{Json, StreamingText, TextStream};
use serde::{Deserialize, Serialize};
use tokenlens::{ExplainRequest, GenerateRequest, StepsRequest, StreamEvent};

#[cfg(feature = "ssr")]
use crate::record::Task;
use crate::record::{is_content, Control, Transcript};

/// A model the server offers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Its name (what `explain` takes).
    pub name: String,
    /// Decoder layers.
    pub n_layers: usize,
    /// Whether it has a chat template.
    pub chat_template: bool,
    /// How its weights are held: dense, or as stored and converted per layer (and why).
    #[serde(default)]
    pub weights: String,
}

/// The models a server offers, and those still loading.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct ModelList {
    /// Ready, the default first.
    pub models: Vec<ModelInfo>,
    /// Still loading (as given to the server).
    pub loading: Vec<String>,
    /// Failed to load: what was asked for, and why.
    pub failed: Vec<(String, String)>,
    /// The largest view this server stores as a permalink, in bytes of JSON.
    pub share_max_bytes: u64,
}

/// The models this server has loaded, the default first.
#[server(endpoint = "models")]
pub async fn list_models() -> Result<ModelList, ServerFnError> {
    let state = server_state()?;
    let poisoned = || ServerFnError::new("model list poisoned");
    let models = state
        .models
        .read()
        .map_err(|_| poisoned())?
        .iter()
        .map(|m| ModelInfo {
            name: m.name.clone(),
            n_layers: m.engine.n_layers(),
            chat_template: m.engine.has_chat_template(),
            weights: m.engine.weights_note().to_string(),
        })
        .collect();
    let pending = state.pending.read().map_err(|_| poisoned())?.clone();
    Ok(ModelList {
        models,
        loading: pending.loading,
        failed: pending.failed,
        share_max_bytes: state.permalinks.quota().max_item_bytes,
    })
}

#[cfg(feature = "ssr")]
fn server_state() -> Result<crate::ssr::ServerState, ServerFnError> {
    use_context::<crate::ssr::ServerState>()
        .ok_or_else(|| ServerFnError::new("server state is missing"))
}

/// The calling client, as the rate limit and the queue count it (see
/// [`crate::rate_limit::client_key`]).
#[cfg(feature = "ssr")]
async fn client(state: &crate::ssr::ServerState) -> std::net::IpAddr {
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
#[cfg(feature = "ssr")]
async fn rate_check(state: &crate::ssr::ServerState) -> Result<std::net::IpAddr, ServerFnError> {
    let client = client(state).await;
    state.rate.check(client).map_err(|(msg, wait)| {
        refuse_retry(axum::http::StatusCode::TOO_MANY_REQUESTS, msg, wait)
    })?;
    Ok(client)
}

/// An error answered with `status`.
#[cfg(feature = "ssr")]
fn refuse(status: axum::http::StatusCode, msg: impl Into<String>) -> ServerFnError {
    if let Some(resp) = use_context::<leptos_axum::ResponseOptions>() {
        resp.set_status(status);
    }
    ServerFnError::new(msg.into())
}

/// An error answered with `status` and `Retry-After: seconds` (429 and 503 say when to come
/// back, as HTTP clients and load balancers expect).
#[cfg(feature = "ssr")]
fn refuse_retry(
    status: axum::http::StatusCode,
    msg: impl Into<String>,
    seconds: u64,
) -> ServerFnError {
    if let Some(resp) = use_context::<leptos_axum::ResponseOptions>() {
        resp.insert_header(axum::http::header::RETRY_AFTER, seconds.into());
    }
    refuse(status, msg)
}

#[cfg(feature = "ssr")]
fn json_line(v: &impl Serialize) -> Result<String, ServerFnError> {
    serde_json::to_string(v).map_err(|e| ServerFnError::new(e.to_string()))
}

/// Queues a task and streams its events as newline-delimited JSON, sealing the content
/// events: a [`Control::Sealed`] line comes just before `done` (see [`crate::record`]).
#[cfg(feature = "ssr")]
async fn stream_task(model: &str, task: Task) -> Result<TextStream, ServerFnError> {
    use futures::StreamExt;
    let state = server_state()?;
    let new_tokens = match &task {
        Task::Explain(r) => r.continuation.len(),
        Task::Generate(r) => r.max_new_tokens,
        Task::Steps(r) => r.generated.len(),
    };
    state
        .limits
        .check(task.prompt(), new_tokens)
        .map_err(|msg| refuse(axum::http::StatusCode::BAD_REQUEST, msg))?;
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
#[cfg(feature = "ssr")]
fn queued_then_events(
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

/// Explains a token, streaming [`StreamEvent`]s: tokens, prediction, one result per method,
/// done (or an error).
#[server(input = Json, output = StreamingText, endpoint = "explain")]
pub async fn explain(model: String, request: ExplainRequest) -> Result<TextStream, ServerFnError> {
    stream_task(&model, Task::Explain(request)).await
}

/// Generates an answer, streaming tokens, one `generated` event per token, `finished`,
/// done.
#[server(input = Json, output = StreamingText, endpoint = "generate")]
pub async fn generate(
    model: String,
    request: GenerateRequest,
) -> Result<TextStream, ServerFnError> {
    stream_task(&model, Task::Generate(request)).await
}

/// Explains every generated token, streaming tokens, one `step` row per token, done.
#[server(input = Json, output = StreamingText, endpoint = "steps")]
pub async fn explain_steps(
    model: String,
    request: StepsRequest,
) -> Result<TextStream, ServerFnError> {
    stream_task(&model, Task::Steps(request)).await
}

/// Stores a view and its sealed results; returns the permalink id. Refused unless every
/// record carries this server's seal and is the job the view asks for.
#[server(input = Json, endpoint = "share")]
pub async fn share(snapshot: crate::state::Snapshot) -> Result<String, ServerFnError> {
    use crate::store::StoreError;
    use axum::http::StatusCode;
    let state = server_state()?;
    let client = rate_check(&state).await?;
    state
        .share_rate
        .check(client)
        .map_err(|(msg, wait)| refuse_retry(StatusCode::TOO_MANY_REQUESTS, msg, wait))?;
    let db = state
        .permalinks
        .get()
        .map_err(|msg| refuse(StatusCode::SERVICE_UNAVAILABLE, msg))?;
    let records = [&snapshot.answer, &snapshot.explanation, &snapshot.matrix];
    if records.into_iter().flatten().any(|r| !db.seal.verify(r)) {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "these results do not carry this server's seal (computed elsewhere, or changed); \
             recompute the view and share it again",
        ));
    }
    if let Err(e) = snapshot.replay() {
        let msg = format!("this view cannot be shared: {e}");
        return Err(refuse(StatusCode::BAD_REQUEST, msg));
    }
    let id = db.store.put(&snapshot).await.map_err(|e| {
        let status = match e {
            StoreError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            StoreError::QuotaReached { .. } => StatusCode::INSUFFICIENT_STORAGE,
            _ => {
                tracing::error!("storing a permalink: {e}");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        refuse(status, e.to_string())
    })?;
    tracing::info!(id, "view shared");
    Ok(id)
}

/// The view stored under a permalink id (an error if there is none).
#[server(input = Json, endpoint = "shared")]
pub async fn load_shared(id: String) -> Result<crate::state::Snapshot, ServerFnError> {
    let state = server_state()?;
    let db = state
        .permalinks
        .get()
        .map_err(|msg| refuse(axum::http::StatusCode::SERVICE_UNAVAILABLE, msg))?;
    match db.store.get(&id).await {
        Ok(Some(s)) => Ok(s),
        Ok(None) => Err(refuse(
            axum::http::StatusCode::NOT_FOUND,
            format!("no shared view {id:?} on this server"),
        )),
        // A malformed id is the client's mistake (400); anything else is ours, logged.
        Err(e @ crate::store::StoreError::MalformedId(_)) => {
            Err(refuse(axum::http::StatusCode::BAD_REQUEST, e.to_string()))
        }
        Err(e) => {
            tracing::error!("reading permalink {id:?}: {e}");
            Err(ServerFnError::new(e.to_string()))
        }
    }
}

/// How reading a stream ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// `done` arrived.
    Done,
    /// `current()` turned false: the run was cancelled or replaced.
    Superseded,
    /// An error event, a transport error or a malformed line.
    Failed(String),
}

/// Reads newline-delimited events from a stream server function's response, handing each
/// to `on_event`, until `done`, an error, or `current()` turns false (dropping the stream
/// then ends the request on the server). Returns how it ended and what it read: the
/// content event lines and the seal, from which a sealed stream becomes a record.
pub async fn read_events(
    response: Result<TextStream, ServerFnError>,
    current: impl Fn() -> bool,
    mut on_event: impl FnMut(StreamEvent),
) -> (Outcome, Transcript) {
    use futures::StreamExt;
    let mut transcript = Transcript::default();
    let mut stream = match response {
        Ok(s) => s.into_inner(),
        Err(e) => return (Outcome::Failed(e.to_string()), transcript),
    };
    let mut buf = String::new();
    while let Some(chunk) = stream.next().await {
        if !current() {
            return (Outcome::Superseded, transcript);
        }
        match chunk {
            Ok(text) => buf.push_str(&text),
            Err(e) => return (Outcome::Failed(e.to_string()), transcript),
        }
        // Chunks may hold several lines or part of one.
        while let Some(pos) = buf.find('\n') {
            let line: String = buf.drain(..=pos).collect();
            let line = line.trim_end();
            let ev = match serde_json::from_str::<StreamEvent>(line) {
                Ok(ev) => ev,
                Err(e) => match serde_json::from_str::<Control>(line) {
                    Ok(Control::Sealed { model, seal }) => {
                        transcript.sealed = Some((model, seal));
                        continue;
                    }
                    Err(_) => {
                        let msg = format!("malformed event from the server: {e}");
                        return (Outcome::Failed(msg), transcript);
                    }
                },
            };
            match ev {
                StreamEvent::Done => return (Outcome::Done, transcript),
                StreamEvent::Error { message } => return (Outcome::Failed(message), transcript),
                ev => {
                    if is_content(&ev) {
                        transcript.events.push(line.to_string());
                    }
                    on_event(ev)
                }
            }
        }
    }
    let msg = "the connection closed before the result was complete".to_string();
    (Outcome::Failed(msg), transcript)
}
