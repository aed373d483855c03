//! Server-side state: the loaded models and the worker that runs them.
//!
//! Model work is CPU-bound and long (tens of milliseconds to seconds), so it never runs on
//! the async executor: one worker thread takes jobs from a bounded queue and streams each
//! job's events back through a channel. A full queue is refused at once ("busy") rather
//! than left to hang; a client that goes away cancels its job at the next event.

use std::ops::ControlFlow;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use tokenlens::{Engine, ExplainRequest, StreamEvent};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

struct Job {
    engine: Arc<Engine>,
    request: ExplainRequest,
    events: UnboundedSender<StreamEvent>,
}

/// The model worker: one thread, a bounded queue.
#[derive(Clone)]
pub struct Worker {
    jobs: SyncSender<Job>,
}

impl Worker {
    /// Starts the worker thread with room for `queue` waiting jobs.
    pub fn start(queue: usize) -> Self {
        let (jobs, rx) = sync_channel::<Job>(queue);
        std::thread::Builder::new()
            .name("tokenlens-worker".into())
            .spawn(move || {
                for job in rx {
                    run(job);
                }
            })
            .expect("spawn the model worker thread");
        Worker { jobs }
    }
}

fn run(job: Job) {
    let events = job.events;
    let started = std::time::Instant::now();
    let result = job.engine.explain_streaming(&job.request, &mut |ev| {
        if events.send(ev.clone()).is_ok() {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(())
        }
    });
    match result {
        Ok(_) => tracing::info!(ms = started.elapsed().as_millis() as u64, "explained"),
        Err(tokenlens::Error::Cancelled) => tracing::info!("request cancelled by the client"),
        Err(e) => {
            if !e.is_user_error() {
                tracing::error!("explain failed: {e}");
            }
            let _ = events.send(StreamEvent::Error {
                message: e.to_string(),
            });
        }
    }
}

/// A model the server offers.
#[derive(Clone)]
pub struct Model {
    /// Name shown in the picker.
    pub name: String,
    /// The engine.
    pub engine: Arc<Engine>,
}

/// Everything server functions need; provided as Leptos context.
#[derive(Clone)]
pub struct ServerState {
    /// Loaded models, the default first.
    pub models: Arc<Vec<Model>>,
    /// The worker.
    pub worker: Worker,
}

impl ServerState {
    /// Queues a request on a model; the receiver yields its events.
    pub fn submit(
        &self,
        model: &str,
        request: ExplainRequest,
    ) -> Result<UnboundedReceiver<StreamEvent>, String> {
        let engine = self
            .models
            .iter()
            .find(|m| m.name == model)
            .map(|m| m.engine.clone())
            .ok_or_else(|| {
                let known: Vec<&str> = self.models.iter().map(|m| m.name.as_str()).collect();
                format!(
                    "unknown model {model:?} (this server has: {})",
                    known.join(", ")
                )
            })?;
        let (events, rx) = unbounded_channel();
        match self.worker.jobs.try_send(Job {
            engine,
            request,
            events,
        }) {
            Ok(()) => Ok(rx),
            Err(TrySendError::Full(_)) => {
                Err("the server is busy with other requests; try again in a moment".into())
            }
            Err(TrySendError::Disconnected(_)) => Err("the model worker has stopped".into()),
        }
    }
}
