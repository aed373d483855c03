//! Server functions, and the client's reader for their event streams.

use leptos::prelude::*;
use leptos::server_fn::codec::{Json, StreamingText, TextStream};
use serde::{Deserialize, Serialize};
use tokenlens::{ExplainRequest, GenerateRequest, StepsRequest, StreamEvent};

/// A model the server offers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Its name (what `explain` takes).
    pub name: String,
    /// Decoder layers.
    pub n_layers: usize,
    /// Whether it has a chat template.
    pub chat_template: bool,
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
        })
        .collect();
    let pending = state.pending.read().map_err(|_| poisoned())?.clone();
    Ok(ModelList {
        models,
        loading: pending.loading,
        failed: pending.failed,
    })
}

#[cfg(feature = "ssr")]
fn server_state() -> Result<crate::ssr::ServerState, ServerFnError> {
    use_context::<crate::ssr::ServerState>()
        .ok_or_else(|| ServerFnError::new("server state is missing"))
}

/// Takes one request from the calling client's rate allowance.
#[cfg(feature = "ssr")]
async fn rate_check(state: &crate::ssr::ServerState) -> Result<(), ServerFnError> {
    use axum::extract::ConnectInfo;
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    let forwarded = if state.trust_forwarded_for {
        leptos_axum::extract::<axum::http::HeaderMap>()
            .await
            .ok()
            .and_then(|h| {
                let v = h.get("x-forwarded-for")?.to_str().ok()?;
                v.split(',').next()?.trim().parse::<IpAddr>().ok()
            })
    } else {
        None
    };
    let client = match forwarded {
        Some(ip) => ip,
        None => leptos_axum::extract::<ConnectInfo<SocketAddr>>()
            .await
            .map(|c| c.0.ip())
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
    };
    state.rate.check(client).map_err(|msg| {
        if let Some(resp) = use_context::<leptos_axum::ResponseOptions>() {
            resp.set_status(axum::http::StatusCode::TOO_MANY_REQUESTS);
        }
        ServerFnError::new(msg)
    })
}

/// Queues a task and streams its events as newline-delimited JSON.
#[cfg(feature = "ssr")]
async fn stream_task(model: &str, task: crate::ssr::Task) -> Result<TextStream, ServerFnError> {
    use futures::StreamExt;
    let state = server_state()?;
    let (prompt, new_tokens) = match &task {
        crate::ssr::Task::Explain(r) => (&r.prompt, r.continuation.len()),
        crate::ssr::Task::Generate(r) => (&r.prompt, r.max_new_tokens),
        crate::ssr::Task::Steps(r) => (&r.prompt, r.generated.len()),
    };
    state
        .limits
        .check(prompt, new_tokens)
        .map_err(ServerFnError::new)?;
    rate_check(&state).await?;
    let rx = state.submit(model, task).map_err(ServerFnError::new)?;
    let events = futures::stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|ev| (ev, rx)) },
    )
    .map(|ev| {
        serde_json::to_string(&ev)
            .map(|s| s + "\n")
            .map_err(|e| ServerFnError::new(e.to_string()))
    });
    Ok(TextStream::new(events))
}

/// Explains a token, streaming [`StreamEvent`]s: tokens, prediction, one result per method,
/// done (or an error).
#[server(input = Json, output = StreamingText, endpoint = "explain")]
pub async fn explain(model: String, request: ExplainRequest) -> Result<TextStream, ServerFnError> {
    stream_task(&model, crate::ssr::Task::Explain(request)).await
}

/// Generates an answer, streaming tokens, one `generated` event per token, `finished`,
/// done.
#[server(input = Json, output = StreamingText, endpoint = "generate")]
pub async fn generate(
    model: String,
    request: GenerateRequest,
) -> Result<TextStream, ServerFnError> {
    stream_task(&model, crate::ssr::Task::Generate(request)).await
}

/// Explains every generated token, streaming tokens, one `step` row per token, done.
#[server(input = Json, output = StreamingText, endpoint = "steps")]
pub async fn explain_steps(
    model: String,
    request: StepsRequest,
) -> Result<TextStream, ServerFnError> {
    stream_task(&model, crate::ssr::Task::Steps(request)).await
}

/// Stores a view and its results; returns the permalink id.
#[server(input = Json, endpoint = "share")]
pub async fn share(snapshot: crate::state::Snapshot) -> Result<String, ServerFnError> {
    let state = server_state()?;
    rate_check(&state).await?;
    let id = state.store.put(&snapshot).await.map_err(|e| {
        if !matches!(
            e,
            crate::store::StoreError::QuotaReached { .. }
                | crate::store::StoreError::TooLarge { .. }
        ) {
            tracing::error!("storing a permalink: {e}");
        }
        ServerFnError::new(e.to_string())
    })?;
    tracing::info!(id, "view shared");
    Ok(id)
}

/// The view stored under a permalink id (an error if there is none).
#[server(input = Json, endpoint = "shared")]
pub async fn load_shared(id: String) -> Result<crate::state::Snapshot, ServerFnError> {
    let state = server_state()?;
    match state.store.get(&id).await {
        Ok(Some(s)) => Ok(s),
        Ok(None) => Err(ServerFnError::new(format!(
            "no shared view {id:?} on this server"
        ))),
        Err(e) => Err(ServerFnError::new(e.to_string())),
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
/// then ends the request on the server).
pub async fn read_events(
    response: Result<TextStream, ServerFnError>,
    current: impl Fn() -> bool,
    mut on_event: impl FnMut(StreamEvent),
) -> Outcome {
    use futures::StreamExt;
    let mut stream = match response {
        Ok(s) => s.into_inner(),
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    let mut buf = String::new();
    while let Some(chunk) = stream.next().await {
        if !current() {
            return Outcome::Superseded;
        }
        match chunk {
            Ok(text) => buf.push_str(&text),
            Err(e) => return Outcome::Failed(e.to_string()),
        }
        // Chunks may hold several lines or part of one.
        while let Some(pos) = buf.find('\n') {
            let line: String = buf.drain(..=pos).collect();
            match serde_json::from_str::<StreamEvent>(line.trim_end()) {
                Ok(StreamEvent::Done) => return Outcome::Done,
                Ok(StreamEvent::Error { message }) => return Outcome::Failed(message),
                Ok(ev) => on_event(ev),
                Err(e) => return Outcome::Failed(format!("malformed event from the server: {e}")),
            }
        }
    }
    Outcome::Failed("the connection closed before the result was complete".into())
}
