//! What the server counts for `/metrics`: every metric's name (with the `tokenlens_` prefix
//! and its unit) and one function per event, so that names are written once. Recording goes
//! through the `metrics` facade; the server installs the Prometheus exporter (without one,
//! recording does nothing).

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};

/// HTTP requests answered, by `route` and `status`.
pub const REQUESTS: &str = "tokenlens_http_requests_total";
/// Jobs waiting for the model worker.
pub const QUEUED: &str = "tokenlens_queued_jobs";
/// Jobs the worker is running (0 or 1).
pub const RUNNING: &str = "tokenlens_running_jobs";
/// Seconds a job ran, by `task`, `model`, `method` and `outcome`.
pub const JOB_SECONDS: &str = "tokenlens_job_duration_seconds";
/// Token-passes done (tokens × passes × steps, as the cost limit counts them), by `task`
/// and `model`.
pub const TOKEN_PASSES: &str = "tokenlens_token_passes_total";
/// Requests refused before they ran, by `reason`.
pub const REFUSALS: &str = "tokenlens_refusals_total";
/// Jobs stopped before their end, by `by` (`client`, `budget`).
pub const CANCELLATIONS: &str = "tokenlens_cancellations_total";
/// Views stored as permalinks.
pub const PERMALINKS_STORED: &str = "tokenlens_permalinks_stored_total";
/// Permalink store operations that failed on the store's side (not the client's).
pub const STORE_ERRORS: &str = "tokenlens_permalink_store_errors_total";
/// Seconds each model took to load, by `model`.
pub const MODEL_LOAD_SECONDS: &str = "tokenlens_model_load_seconds";

/// A job's duration buckets (seconds): from a short explanation to the demo's time budget
/// and past it.
pub const JOB_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// Why a request was refused before it ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Over the work one request may ask for (`--max-job-cost`).
    Cost,
    /// Over the client's requests per minute (or shares per minute).
    Rate,
    /// The queue was full, or the client already had its share of it.
    QueueFull,
    /// Stopped past its time budget (`--max-job-seconds`).
    Budget,
    /// A body, prompt or answer over its limit.
    TooLarge,
}

impl Refusal {
    fn label(self) -> &'static str {
        match self {
            Refusal::Cost => "cost",
            Refusal::Rate => "rate",
            Refusal::QueueFull => "queue_full",
            Refusal::Budget => "budget",
            Refusal::TooLarge => "too_large",
        }
    }
}

/// Describes every metric (the `# HELP` lines) and starts the gauges at zero, so that a
/// scrape before the first request already lists them.
pub fn describe() {
    describe_counter!(REQUESTS, "HTTP requests answered, by route and status");
    describe_gauge!(QUEUED, "jobs waiting for the model worker");
    describe_gauge!(RUNNING, "jobs the model worker is running");
    describe_histogram!(
        JOB_SECONDS,
        metrics::Unit::Seconds,
        "seconds a job ran, by task, model, methods and outcome"
    );
    describe_counter!(TOKEN_PASSES, "token-passes done (tokens x passes x steps)");
    describe_counter!(REFUSALS, "requests refused before they ran, by reason");
    describe_counter!(
        CANCELLATIONS,
        "jobs stopped before their end, by who stopped them"
    );
    describe_counter!(PERMALINKS_STORED, "views stored as permalinks");
    describe_counter!(STORE_ERRORS, "permalink store operations that failed");
    describe_gauge!(
        MODEL_LOAD_SECONDS,
        metrics::Unit::Seconds,
        "seconds each model took to load"
    );
    gauge!(QUEUED).set(0.0);
    gauge!(RUNNING).set(0.0);
    for r in [
        Refusal::Cost,
        Refusal::Rate,
        Refusal::QueueFull,
        Refusal::Budget,
        Refusal::TooLarge,
    ] {
        counter!(REFUSALS, "reason" => r.label()).absolute(0);
    }
    counter!(PERMALINKS_STORED).absolute(0);
    counter!(STORE_ERRORS).absolute(0);
}

/// An HTTP request answered.
pub fn request(route: String, status: u16) {
    counter!(REQUESTS, "route" => route, "status" => status.to_string()).increment(1);
}

/// A request refused before it ran.
pub fn refused(reason: Refusal) {
    counter!(REFUSALS, "reason" => reason.label()).increment(1);
}

/// A job entered the queue.
pub fn queued() {
    gauge!(QUEUED).increment(1.0);
}

/// The worker took a job from the queue; it counts as running until the guard is dropped
/// (also when the job panics).
pub fn started() -> Running {
    gauge!(QUEUED).decrement(1.0);
    gauge!(RUNNING).increment(1.0);
    Running
}

/// A running job, for [`RUNNING`].
pub struct Running;

impl Drop for Running {
    fn drop(&mut self) {
        gauge!(RUNNING).decrement(1.0);
    }
}

/// How a job ended.
#[derive(Debug, Clone, Copy)]
pub enum Outcome {
    /// Its last event sent.
    Done,
    /// Stopped by its client (gone, or Cancel).
    Cancelled,
    /// Stopped past its time budget.
    OutOfTime,
    /// Failed with an error.
    Failed,
}

/// The worker finished a job: its time, and for a finished one the work it did.
pub fn finished(
    task: &'static str,
    model: &str,
    methods: String,
    seconds: f64,
    outcome: Outcome,
    token_passes: Option<u64>,
) {
    let label = match outcome {
        Outcome::Done => "done",
        Outcome::Cancelled => "cancelled",
        Outcome::OutOfTime => "out_of_time",
        Outcome::Failed => "failed",
    };
    histogram!(JOB_SECONDS, "task" => task, "model" => model.to_string(), "method" => methods,
        "outcome" => label)
    .record(seconds);
    match outcome {
        Outcome::Cancelled => counter!(CANCELLATIONS, "by" => "client").increment(1),
        Outcome::OutOfTime => {
            counter!(CANCELLATIONS, "by" => "budget").increment(1);
            refused(Refusal::Budget);
        }
        Outcome::Done | Outcome::Failed => {}
    }
    if let Some(n) = token_passes {
        counter!(TOKEN_PASSES, "task" => task, "model" => model.to_string()).increment(n);
    }
}

/// A view stored as a permalink.
pub fn permalink_stored() {
    counter!(PERMALINKS_STORED).increment(1);
}

/// A permalink store operation failed on the store's side.
pub fn store_error() {
    counter!(STORE_ERRORS).increment(1);
}

/// A model loaded in `seconds`.
pub fn model_loaded(model: &str, seconds: f64) {
    gauge!(MODEL_LOAD_SECONDS, "model" => model.to_string()).set(seconds);
}
