//! Server-side state: the loaded models and the worker that runs them.
//!
//! Model work is CPU-bound and long (tens of milliseconds to seconds), so it never runs on
//! the async executor: one worker thread takes jobs from a bounded queue and streams each
//! job's events back through a channel. A full queue is refused at once ("busy") rather
//! than left to hang; a client that goes away cancels its job at the next event; a job that
//! panics ends with an error event and the worker goes on.

use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, RwLock};
use tokenlens::{Engine, StreamEvent};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::record::Task;

struct Job {
    engine: Arc<Engine>,
    task: Task,
    events: UnboundedSender<StreamEvent>,
    /// When it was queued, and how long it may take from then (`--max-job-seconds`).
    deadline: Option<(std::time::Instant, std::time::Duration)>,
    /// Its number in the order of submission.
    ticket: u64,
    /// Its client's place among the jobs of that client (freed when the job is dropped).
    _slot: Option<ClientSlot>,
    /// The request's span (its request id): the worker's log lines for the job carry it.
    span: tracing::Span,
}

/// The model worker: one thread, a bounded queue.
#[derive(Clone)]
pub struct Worker {
    jobs: SyncSender<Job>,
    /// The next ticket to hand out: taken only by a job that enters the queue, so that
    /// tickets and starts count the same jobs.
    next_ticket: Arc<Mutex<u64>>,
    /// Jobs the worker has taken up (tickets below it have started).
    started: Arc<AtomicU64>,
    /// How fast explanations run here, per model.
    pub pace: crate::pace::Pace,
    /// The worker thread, to tell whether it is still there (`/readyz`).
    thread: Arc<std::thread::JoinHandle<()>>,
}

impl Worker {
    /// Starts the worker thread with room for `queue` waiting jobs.
    pub fn start(queue: usize) -> Self {
        let (jobs, rx) = sync_channel::<Job>(queue);
        let started = Arc::new(AtomicU64::new(0));
        let progress = started.clone();
        let pace = crate::pace::Pace::default();
        let learn = pace.clone();
        let thread = std::thread::Builder::new()
            .name("tokenlens-worker".into())
            .spawn(move || {
                let run = |job: Job| {
                    progress.fetch_max(job.ticket + 1, Ordering::SeqCst);
                    let _running = crate::metrics::started();
                    let span = job.span.clone();
                    let _entered = span.enter();
                    run(job, &learn)
                };
                supervise(rx, run, |job: &Job| (job.events.clone(), job.task.name()))
            })
            .expect("spawn the model worker thread");
        Worker {
            jobs,
            next_ticket: Arc::default(),
            started,
            pace,
            thread: Arc::new(thread),
        }
    }

    /// Whether the worker thread is running (it ends only if the queue's sender is gone).
    pub fn alive(&self) -> bool {
        !self.thread.is_finished()
    }

    /// A waiting job's place in line (1: next), or 0 once it has started.
    pub fn position(&self, ticket: u64) -> u64 {
        (ticket + 1).saturating_sub(self.started.load(Ordering::SeqCst))
    }
}

/// One of a client's jobs in the system (waiting or running); dropping it frees the place.
struct ClientSlot {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
    client: IpAddr,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        if let Ok(mut counts) = self.counts.lock() {
            if let Some(n) = counts.get_mut(&self.client) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    counts.remove(&self.client);
                }
            }
        }
    }
}

/// Runs each job in turn. A panic inside one (a bug, or a model file that reaches one) becomes
/// that job's error event and a log line, and the worker goes on with the next job instead of
/// ending model service until a restart.
fn supervise<J>(
    jobs: impl IntoIterator<Item = J>,
    run: impl Fn(J),
    events_of: impl Fn(&J) -> (UnboundedSender<StreamEvent>, &'static str),
) {
    for job in jobs {
        let (events, task) = events_of(&job);
        if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(job))) {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            tracing::error!(task, "panicked: {what}");
            let _ = events.send(StreamEvent::Error {
                message: format!(
                    "the server failed on this request (an internal error: {what}); \
                     other requests are not affected"
                ),
            });
        }
    }
}

fn run(job: Job, pace: &crate::pace::Pace) {
    let events = job.events;
    let started = std::time::Instant::now();
    let mut out_of_time = None;
    let mut sink = |ev: &StreamEvent| {
        if let Some((queued, budget)) = job.deadline {
            if queued.elapsed() > budget {
                out_of_time = Some(budget);
                return ControlFlow::Break(());
            }
        }
        if events.send(ev.clone()).is_ok() {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(())
        }
    };
    let task = job.task.name();
    let model = job.engine.name().to_string();
    let methods = match &job.task {
        Task::Explain(r) => method_label(&r.methods),
        Task::Steps(r) => method_label(&r.methods),
        Task::Generate(_) | Task::Unit(_) | Task::Contexts(_) => String::new(),
    };
    let result = match &job.task {
        Task::Explain(r) => job.engine.explain_streaming(r, &mut sink).map(drop),
        Task::Generate(r) => job.engine.generate_streaming(r, &mut sink).map(drop),
        Task::Steps(r) => job.engine.explain_steps_streaming(r, &mut sink).map(drop),
        Task::Contexts(r) => {
            let mut progress = |done, total| {
                let ev = StreamEvent::Progress {
                    stage: tokenlens::Stage::Contexts,
                    method: None,
                    done,
                    total,
                };
                match sink(&ev) {
                    ControlFlow::Break(()) => Err(tokenlens::Error::Cancelled),
                    ControlFlow::Continue(()) => Ok(()),
                }
            };
            let contexts = job.engine.neuron_contexts(r, &mut progress);
            contexts.and_then(|contexts| {
                for ev in [StreamEvent::Contexts { contexts }, StreamEvent::Done] {
                    if sink(&ev).is_break() {
                        return Err(tokenlens::Error::Cancelled);
                    }
                }
                Ok(())
            })
        }
        Task::Unit(r) => job.engine.unit_card(r).and_then(|card| {
            for ev in [StreamEvent::Unit { card }, StreamEvent::Done] {
                if sink(&ev).is_break() {
                    return Err(tokenlens::Error::Cancelled);
                }
            }
            Ok(())
        }),
    };
    let seconds = started.elapsed().as_secs_f64();
    let finished = |outcome, passes| {
        crate::metrics::finished(task, &model, methods.clone(), seconds, outcome, passes)
    };
    match result {
        Ok(()) => {
            let cost = cost_of(&job.engine, &job.task).ok();
            finished(crate::metrics::Outcome::Done, cost);
            tracing::info!(task, ms = (seconds * 1e3) as u64, "done");
            // The pace of explanations (perturbation curves are forward passes the cost
            // leaves out).
            if let (Task::Explain(r), Some(cost)) = (&job.task, cost) {
                if r.faithfulness.is_none() {
                    pace.record(job.engine.name(), cost, seconds);
                }
            }
        }
        Err(tokenlens::Error::Cancelled) if out_of_time.is_some() => {
            finished(crate::metrics::Outcome::OutOfTime, None);
            let budget = out_of_time.unwrap_or_default().as_secs();
            tracing::info!(task, budget, "stopped: over the time budget");
            let _ = events.send(StreamEvent::Error {
                message: format!(
                    "stopped: this request ran past the {budget} s this server gives one \
                     request; shorten the prompt or the answer, or ask for fewer methods"
                ),
            });
        }
        Err(tokenlens::Error::Cancelled) => {
            finished(crate::metrics::Outcome::Cancelled, None);
            tracing::info!(task, "cancelled by the client")
        }
        Err(e) => {
            finished(crate::metrics::Outcome::Failed, None);
            if !e.is_user_error() {
                tracing::error!(task, "failed: {e}");
            }
            let _ = events.send(StreamEvent::Error {
                message: e.to_string(),
            });
        }
    }
}

/// What a task costs on `engine`, in token-passes (see `tokenlens`' cost model).
fn cost_of(engine: &Engine, task: &Task) -> tokenlens::Result<u64> {
    match task {
        Task::Explain(r) => engine.explain_cost(r),
        Task::Generate(r) => engine.generate_cost(r),
        Task::Steps(r) => engine.steps_cost(r),
        Task::Unit(r) => engine.unit_cost(r),
        Task::Contexts(r) => engine.contexts_cost(r.layer),
    }
}

/// The methods of a job, as one label (`saliency+attnlrp`).
fn method_label(methods: &[tokenlens::Method]) -> String {
    let names: Vec<&str> = methods.iter().map(|m| m.name()).collect();
    names.join("+")
}

/// A model the server offers.
#[derive(Clone)]
pub struct Model {
    /// Name shown in the picker.
    pub name: String,
    /// The engine.
    pub engine: Arc<Engine>,
}

/// Models not (yet) offered.
#[derive(Debug, Default, Clone)]
pub struct Pending {
    /// Specs still loading.
    pub loading: Vec<String>,
    /// Specs that failed to load, with the reason.
    pub failed: Vec<(String, String)>,
}

/// Limits on what one request may ask (a hosted demo sets them all).
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    /// Longest prompt, in characters.
    pub max_prompt_chars: Option<usize>,
    /// Longest answer, in tokens (also bounds the all-steps matrix).
    pub max_new_tokens: Option<usize>,
    /// Most work one request may ask for, in token-passes (tokens × passes × steps).
    pub max_job_cost: Option<u64>,
    /// Longest a job may run; it is stopped with an error event past it.
    pub max_job_seconds: Option<u64>,
    /// Jobs one client may have in the system at once (running and waiting).
    pub max_jobs_per_client: Option<usize>,
}

impl Limits {
    /// Checks a prompt and an answer length against the limits.
    pub fn check(&self, prompt: &str, new_tokens: usize) -> Result<(), String> {
        if let Some(max) = self.max_prompt_chars {
            let n = prompt.chars().count();
            if n > max {
                return Err(format!(
                    "the prompt has {n} characters; this server takes at most {max}"
                ));
            }
        }
        if let Some(max) = self.max_new_tokens {
            if new_tokens > max {
                return Err(format!(
                    "{new_tokens} answer tokens asked for; this server generates at most {max}"
                ));
            }
        }
        Ok(())
    }
}

/// Why a job was not queued.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// No such model here.
    #[error("unknown model {model:?} (this server has: {known})")]
    UnknownModel {
        /// What was asked for.
        model: String,
        /// What the server has.
        known: String,
    },
    /// The model is still loading.
    #[error("model {0:?} is still loading; try again in a moment")]
    Loading(String),
    /// The queue is full.
    #[error("the server is busy with other requests; try again in a moment")]
    Busy,
    /// The worker is gone.
    #[error("the model worker has stopped")]
    Stopped,
    /// The client already has its share of the queue.
    #[error(
        "you already have {0} requests running or waiting on this server; wait for one to \
         finish (or cancel it) and try again"
    )]
    ClientBusy(usize),
    /// More work than one request may ask for.
    #[error(
        "this request would take about {cost} token-passes (tokens × passes × steps); this \
         server runs at most {limit} per request: shorten the prompt or the answer, or ask for \
         fewer methods"
    )]
    TooCostly {
        /// The estimate.
        cost: u64,
        /// The limit.
        limit: u64,
    },
    /// A given answer with more tokens than answers may have here.
    #[error(
        "the given answer has {tokens} tokens; this server explains answers of at most {limit}"
    )]
    AnswerTooLong {
        /// Its tokens.
        tokens: usize,
        /// The limit.
        limit: usize,
    },
}

impl Refused {
    /// The HTTP status that says it.
    pub fn status(&self) -> axum::http::StatusCode {
        use axum::http::StatusCode;
        match self {
            Refused::UnknownModel { .. } => StatusCode::NOT_FOUND,
            Refused::TooCostly { .. } | Refused::AnswerTooLong { .. } => StatusCode::BAD_REQUEST,
            Refused::ClientBusy(_) => StatusCode::TOO_MANY_REQUESTS,
            Refused::Loading(_) | Refused::Busy => StatusCode::SERVICE_UNAVAILABLE,
            Refused::Stopped => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// Everything server functions need; provided as Leptos context.
#[derive(Clone)]
pub struct ServerState {
    /// Loaded models, the default first; others join as they finish loading.
    pub models: Arc<RwLock<Vec<Model>>>,
    /// Models still loading (their specs), and ones that failed (spec and message).
    pub pending: Arc<RwLock<Pending>>,
    /// The worker.
    pub worker: Worker,
    /// Permalinks: the database and the seal key, once reachable.
    pub permalinks: crate::permalinks::Permalinks,
    /// Request limits.
    pub limits: Limits,
    /// Requests per client.
    pub rate: Arc<crate::rate_limit::RateLimiter>,
    /// Shares per client (on top of `rate`), in every mode.
    pub share_rate: Arc<crate::rate_limit::RateLimiter>,
    /// Take the client's address from `X-Forwarded-For` (behind a trusted proxy).
    pub trust_forwarded_for: bool,
    /// Jobs in the system per client.
    per_client: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl ServerState {
    /// A state offering `first`, with `rest` loading.
    pub fn new(
        first: Model,
        rest: &[String],
        worker: Worker,
        permalinks: crate::permalinks::Permalinks,
        limits: Limits,
        rate: crate::rate_limit::RateLimiter,
    ) -> Self {
        ServerState {
            models: Arc::new(RwLock::new(vec![first])),
            pending: Arc::new(RwLock::new(Pending {
                loading: rest.to_vec(),
                failed: Vec::new(),
            })),
            worker,
            permalinks,
            limits,
            rate: Arc::new(rate),
            share_rate: Arc::new(crate::rate_limit::RateLimiter::shares(Some(
                crate::rate_limit::DEFAULT_SHARES_PER_MINUTE,
            ))),
            trust_forwarded_for: false,
            per_client: Arc::default(),
        }
    }

    /// Moves a model from loading to offered (or to failed).
    pub fn finish_loading(&self, spec: &str, result: Result<Model, String>) {
        if let Ok(mut p) = self.pending.write() {
            p.loading.retain(|s| s != spec);
            if let Err(e) = &result {
                p.failed.push((spec.to_string(), e.clone()));
            }
        }
        if let (Ok(m), Ok(mut models)) = (result, self.models.write()) {
            models.push(m);
        }
    }

    /// Queues `client`'s request on a model; returns the model's name (an empty `model` is
    /// the default), a receiver of the job's events and its ticket (for
    /// [`Worker::position`]).
    pub fn submit(
        &self,
        model: &str,
        task: Task,
        client: IpAddr,
    ) -> Result<(String, UnboundedReceiver<StreamEvent>, u64), Refused> {
        let (name, engine) = self.find(model)?;
        // A given answer is as long as its tokens (max_new_tokens bounds a sampled one).
        if let (Task::Generate(r), Some(limit)) = (&task, self.limits.max_new_tokens) {
            if let Some(Ok(ids)) = r.answer.as_deref().map(|a| engine.answer_ids(a)) {
                if ids.len() > limit {
                    crate::metrics::refused(crate::metrics::Refusal::TooLarge);
                    return Err(Refused::AnswerTooLong {
                        tokens: ids.len(),
                        limit,
                    });
                }
            }
        }
        if let Some(limit) = self.limits.max_job_cost {
            let cost = cost_of(&engine, &task);
            // A prompt that cannot be tokenized fails in the job, with its own message.
            if let Ok(cost) = cost {
                if cost > limit {
                    crate::metrics::refused(crate::metrics::Refusal::Cost);
                    return Err(Refused::TooCostly { cost, limit });
                }
            }
        }
        let slot = match self.limits.max_jobs_per_client {
            Some(max) => Some(self.take_slot(client, max)?),
            None => None,
        };
        let (events, rx) = unbounded_channel();
        let mut next_ticket = self
            .worker
            .next_ticket
            .lock()
            .map_err(|_| Refused::Stopped)?;
        let ticket = *next_ticket;
        let deadline = self
            .limits
            .max_job_seconds
            .map(|s| (std::time::Instant::now(), std::time::Duration::from_secs(s)));
        match self.worker.jobs.try_send(Job {
            engine,
            task,
            events,
            deadline,
            ticket,
            _slot: slot,
            span: tracing::Span::current(),
        }) {
            Ok(()) => {
                *next_ticket += 1;
                crate::metrics::queued();
                Ok((name, rx, ticket))
            }
            Err(TrySendError::Full(_)) => {
                crate::metrics::refused(crate::metrics::Refusal::QueueFull);
                Err(Refused::Busy)
            }
            Err(TrySendError::Disconnected(_)) => Err(Refused::Stopped),
        }
    }

    /// The model of this name (empty: the default) and its engine.
    fn find(&self, model: &str) -> Result<(String, Arc<Engine>), Refused> {
        let models = self.models.read().map_err(|_| Refused::Stopped)?;
        // An empty name is the default model (a URL may leave it out).
        let found = if model.is_empty() {
            models.first()
        } else {
            models.iter().find(|m| m.name == model)
        };
        if let Some(m) = found {
            return Ok((m.name.clone(), m.engine.clone()));
        }
        let pending = self.pending.read().map_err(|_| Refused::Stopped)?;
        if pending.loading.iter().any(|s| s == model) {
            return Err(Refused::Loading(model.to_string()));
        }
        let known: Vec<&str> = models.iter().map(|m| m.name.as_str()).collect();
        Err(Refused::UnknownModel {
            model: model.to_string(),
            known: known.join(", "),
        })
    }

    /// What explaining `r` on `model` involves before it runs: its tokens, the model's
    /// limit here, this server's time estimate, and why it would be refused, if it would.
    pub fn estimate(
        &self,
        model: &str,
        r: &tokenlens::ExplainRequest,
    ) -> Result<crate::pages::api::Estimate, Refused> {
        let (_, engine) = self.find(model)?;
        let mut out = crate::pages::api::Estimate {
            max_tokens: engine.max_tokens(),
            ..Default::default()
        };
        match engine.tokenize(&r.prompt, r.chat_template, r.thinking) {
            Ok(t) => out.tokens = t.tokens.len() + r.continuation.len(),
            Err(e) => out.refused = Some(e.to_string()),
        }
        if let Ok(cost) = engine.explain_cost(r) {
            out.seconds = self.worker.pace.seconds(engine.name(), cost);
            if let Some(limit) = self.limits.max_job_cost.filter(|&l| cost > l) {
                out.refused = Some(Refused::TooCostly { cost, limit }.to_string());
            }
        }
        Ok(out)
    }

    fn take_slot(&self, client: IpAddr, max: usize) -> Result<ClientSlot, Refused> {
        let mut counts = self.per_client.lock().map_err(|_| Refused::Stopped)?;
        let n = counts.entry(client).or_insert(0);
        if *n >= max {
            crate::metrics::refused(crate::metrics::Refusal::QueueFull);
            return Err(Refused::ClientBusy(*n));
        }
        *n += 1;
        Ok(ClientSlot {
            counts: self.per_client.clone(),
            client,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job that panics ends with an error event; the jobs after it still run.
    #[test]
    fn a_panicking_job_does_not_end_the_worker() {
        let (a, mut a_rx) = unbounded_channel();
        let (b, mut b_rx) = unbounded_channel();
        let jobs = vec![(a, true), (b, false)];
        supervise(
            jobs,
            |(events, panics): (UnboundedSender<StreamEvent>, bool)| {
                if panics {
                    panic!("index out of bounds");
                }
                let _ = events.send(StreamEvent::Done);
            },
            |(events, _)| (events.clone(), "explain"),
        );
        match a_rx.try_recv() {
            Ok(StreamEvent::Error { message }) => {
                assert!(message.contains("index out of bounds"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(b_rx.try_recv(), Ok(StreamEvent::Done)));
    }
}
