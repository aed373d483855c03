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
    let state = use_context::<crate::ssr::ServerState>()
        .ok_or_else(|| ServerFnError::new("server state is missing"))?;
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

/// Queues a task and streams its events as newline-delimited JSON.
#[cfg(feature = "ssr")]
fn stream_task(model: &str, task: crate::ssr::Task) -> Result<TextStream, ServerFnError> {
    use futures::StreamExt;
    let state = use_context::<crate::ssr::ServerState>()
        .ok_or_else(|| ServerFnError::new("server state is missing"))?;
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
    stream_task(&model, crate::ssr::Task::Explain(request))
}

/// Generates an answer, streaming tokens, one `generated` event per token, `finished`,
/// done.
#[server(input = Json, output = StreamingText, endpoint = "generate")]
pub async fn generate(
    model: String,
    request: GenerateRequest,
) -> Result<TextStream, ServerFnError> {
    stream_task(&model, crate::ssr::Task::Generate(request))
}

/// Explains every generated token, streaming tokens, one `step` row per token, done.
#[server(input = Json, output = StreamingText, endpoint = "steps")]
pub async fn explain_steps(
    model: String,
    request: StepsRequest,
) -> Result<TextStream, ServerFnError> {
    stream_task(&model, crate::ssr::Task::Steps(request))
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
