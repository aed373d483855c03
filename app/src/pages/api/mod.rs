//! Server functions, and the client's reader for their event streams. Each server function's
//! server-only helpers are in `ssr`.

use leptos::prelude::*;
use leptos::server_fn::codec::{Json, StreamingText, TextStream};
use serde::{Deserialize, Serialize};
use tokenlens::{ExplainRequest, GenerateRequest, StepsRequest};

mod events;
#[cfg(feature = "ssr")]
mod ssr;

#[cfg(feature = "ssr")]
use crate::record::Task;
pub use events::{read_events, Outcome};
#[cfg(feature = "ssr")]
use ssr::{rate_check, refuse, refuse_retry, server_state, stream_task};

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
    /// Why bf16 products are unavailable to this model here, if they are: a bf16
    /// explanation then runs in f32 (and says so).
    #[serde(default)]
    pub bf16_unavailable: Option<String>,
    /// Whether its bf16 products are emulated here (`TOKENLENS_BF16=emulate`): bf16's
    /// numbers, computed in f32, no faster.
    #[serde(default)]
    pub bf16_emulated: bool,
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

/// What explaining a prompt involves before it runs.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct Estimate {
    /// Its tokens (template and answer so far included).
    pub tokens: usize,
    /// The longest context the model explains on this server.
    pub max_tokens: usize,
    /// About how long it takes here, from this server's recent explanations (None until one
    /// has run on this model).
    pub seconds: Option<f64>,
    /// Why the server would refuse it, if it would.
    pub refused: Option<String>,
}

/// The token count and time estimate of an explanation, before it runs (cheap: it only
/// tokenizes, so it does not count against the request rate).
#[server(input = Json, endpoint = "estimate")]
pub async fn estimate_prompt(
    model: String,
    request: ExplainRequest,
) -> Result<Estimate, ServerFnError> {
    let state = server_state()?;
    state
        .limits
        .check(&request.prompt, request.continuation.len())
        .map_err(|msg| refuse(axum::http::StatusCode::BAD_REQUEST, msg))?;
    state
        .estimate(&model, &request)
        .map_err(|e| refuse(e.status(), e.to_string()))
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
            bf16_unavailable: m.engine.bf16_unavailable().map(str::to_string),
            bf16_emulated: m.engine.bf16_emulated(),
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

/// A neuron's or head's card for a context: one `unit` event, done.
#[server(input = Json, output = StreamingText, endpoint = "unit")]
pub async fn unit_card(
    model: String,
    request: tokenlens::UnitRequest,
) -> Result<TextStream, ServerFnError> {
    stream_task(&model, Task::Unit(request)).await
}

/// A neuron's top-activating contexts over the reference corpus: progress while its layer is
/// read (once per model: then cached), one `contexts` event, done.
#[server(input = Json, output = StreamingText, endpoint = "contexts")]
pub async fn neuron_contexts(
    model: String,
    request: tokenlens::ContextsRequest,
) -> Result<TextStream, ServerFnError> {
    stream_task(&model, Task::Contexts(request)).await
}

/// Stores a view and its sealed results; returns the permalink id. Refused unless every
/// record carries this server's seal and is the job the view asks for.
#[server(input = Json, endpoint = "share")]
pub async fn share(snapshot: crate::state::Snapshot) -> Result<String, ServerFnError> {
    use crate::store::StoreError;
    use axum::http::StatusCode;
    let state = server_state()?;
    let client = rate_check(&state).await?;
    state.share_rate.check(client).map_err(|(msg, wait)| {
        crate::metrics::refused(crate::metrics::Refusal::Rate);
        refuse_retry(StatusCode::TOO_MANY_REQUESTS, msg, wait)
    })?;
    let db = state
        .permalinks
        .get()
        .map_err(|msg| refuse(StatusCode::SERVICE_UNAVAILABLE, msg))?;
    if snapshot.records().into_iter().any(|r| !db.seal.verify(r)) {
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
            StoreError::TooLarge { .. } => {
                crate::metrics::refused(crate::metrics::Refusal::TooLarge);
                StatusCode::PAYLOAD_TOO_LARGE
            }
            StoreError::QuotaReached { .. } => StatusCode::INSUFFICIENT_STORAGE,
            _ => {
                crate::metrics::store_error();
                tracing::error!("storing a permalink: {e}");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        refuse(status, e.to_string())
    })?;
    crate::metrics::permalink_stored();
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
            crate::metrics::store_error();
            tracing::error!("reading permalink {id:?}: {e}");
            Err(ServerFnError::new(e.to_string()))
        }
    }
}
