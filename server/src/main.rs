//! `tokenlens-server`: the TokenLens viewer over HTTP (Axum + Leptos).
//!
//! Loads the default model before listening and the others in the background (each joins
//! the picker when ready), shares them with the server functions through Leptos context,
//! and runs model work on one worker thread with a bounded queue.

mod ops;
mod routes;
mod serve;
mod settings;
mod weights;

use anyhow::Context;
use app::permalinks::Permalinks;
use app::rate_limit::RateLimiter;
use app::ssr::{Model, ServerState, Worker};
use clap::Parser;
use leptos::prelude::*;
use settings::Args;
use std::process::ExitCode;
use std::sync::Arc;
use tokenlens::{Engine, LoadOptions};
use weights::WeightBudget;

/// Why a model failed to load, as `/api/models` tells any client: the cause without the
/// server's file paths or the chain of contexts (those go to the log).
fn public_reason(e: &anyhow::Error) -> String {
    match e.downcast_ref::<tokenlens::Error>() {
        Some(tokenlens::Error::BadModelFile { reason, .. }) => {
            // The first line: a reader's error may carry a backtrace (RUST_BACKTRACE).
            let reason = reason.lines().next().unwrap_or_default();
            format!("not a usable model file: {reason}")
        }
        Some(tokenlens::Error::Io { source, .. }) => {
            format!("the model file cannot be read ({})", source.kind())
        }
        Some(other) => other.to_string(),
        // The server's own refusals (the weight budget) name no path.
        None => e.to_string(),
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let pkg = args.site_root.join("pkg").join("tokenlens.wasm");
    anyhow::ensure!(
        pkg.is_file(),
        "the front end is not built ({} is missing); run scripts/build-web.sh",
        pkg.display()
    );
    let (first, rest) = args
        .models
        .split_first()
        .context("no model given (--model)")?;
    let settings = args.settings();
    let max_tokens = settings.max_tokens;
    // Models do not need the database: without it they are served and sharing says so.
    let permalinks = Permalinks::open(
        args.database_url.clone(),
        settings.data_dir.clone(),
        settings.quota,
    )
    .await;
    let load = {
        let device = tokenlens::source::parse_device(&args.device)?;
        let dtype = tokenlens::source::parse_dtype(&args.dtype)?;
        let budget = WeightBudget::new(
            args.max_memory
                .as_deref()
                .map(tokenlens::source::parse_size)
                .transpose()?,
        );
        move |spec: &str| -> anyhow::Result<Model> {
            let started = std::time::Instant::now();
            let opts = LoadOptions {
                max_tokens,
                max_memory: Some(budget.admit(spec, dtype).map_err(anyhow::Error::msg)?),
                device: device.clone(),
                dtype,
                ..LoadOptions::new(spec)
            };
            let engine =
                Engine::load_with(&opts).with_context(|| format!("loading model {spec:?}"))?;
            tracing::info!(
                model = engine.name(),
                ms = started.elapsed().as_millis() as u64,
                weights = engine.weights_note(),
                "model loaded"
            );
            budget.charge(engine.weights_bytes());
            app::metrics::model_loaded(engine.name(), started.elapsed().as_secs_f64());
            Ok(Model {
                name: engine.name().to_string(),
                engine: Arc::new(engine),
            })
        }
    };
    // The default model must load; the others are offered when (and if) they do.
    let mut state = ServerState::new(
        load(first)?,
        rest,
        Worker::start(args.queue),
        permalinks,
        settings.limits,
        RateLimiter::new(settings.rate_per_minute),
    );
    state.trust_forwarded_for = args.trust_forwarded_for;
    state.share_rate = Arc::new(RateLimiter::shares(settings.shares_per_minute));
    {
        let (state, rest) = (state.clone(), rest.to_vec());
        std::thread::Builder::new()
            .name("tokenlens-loader".into())
            .spawn(move || {
                for spec in rest {
                    let result = load(&spec).map_err(|e| {
                        tracing::error!("{e:#}");
                        public_reason(&e)
                    });
                    state.finish_loading(&spec, result);
                }
            })
            .context("starting the model loader")?;
    }
    let options = LeptosOptions::builder()
        .output_name("tokenlens")
        .site_root(args.site_root.to_string_lossy().to_string())
        .site_pkg_dir("pkg")
        .site_addr(args.addr)
        .build();
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("listening on {}", args.addr))?;
    tracing::info!("listening on http://{}", args.addr);
    eprintln!("TokenLens is ready at http://{}", args.addr);
    let limits = args.edge_limits();
    serve::serve(listener, routes::app(state, options), limits, shutdown()).await;
    Ok(())
}

/// Ctrl-C, or SIGTERM (what a container runtime sends).
async fn shutdown() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

fn main() -> ExitCode {
    // Before any thread starts: the heap's settings, and OpenBLAS (which may set its kernel
    // choice in the environment).
    tokenlens::heap::keep_freed_memory();
    tokenlens::kernels::init();
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    match args.log_format {
        settings::LogFormat::Text => logs.init(),
        settings::LogFormat::Json => logs.json().flatten_event(true).init(),
    }
    // Counting starts before the first model loads.
    ops::Telemetry::global();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
