//! `tokenlens-server`: the TokenLens viewer over HTTP (Axum + Leptos).
//!
//! Loads the default model before listening and the others in the background (each joins
//! the picker when ready), shares them with the server functions through Leptos context,
//! and runs model work on one worker thread with a bounded queue.

use anyhow::Context;
use app::ssr::{Model, ServerState, Worker};
use axum::Router;
use clap::Parser;
use leptos::prelude::*;
use leptos_axum::{generate_route_list, LeptosRoutes};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tokenlens::{Engine, LoadOptions};

/// Serve the TokenLens viewer.
#[derive(Parser, Debug)]
#[command(name = "tokenlens-server", version, about)]
struct Args {
    /// Models to offer (alias, .gguf file or Hugging Face directory); repeat for several.
    /// The first is the default.
    #[arg(short, long = "model", default_value = tokenlens::source::DEFAULT_MODEL)]
    models: Vec<String>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3000", env = "TOKENLENS_ADDR")]
    addr: SocketAddr,
    /// Directory with the built front end (pkg/, style.css), as `scripts/build-web.sh` makes it.
    #[arg(long, default_value = "target/site", env = "TOKENLENS_SITE")]
    site_root: PathBuf,
    /// Requests that may wait for the model worker before new ones are refused as busy.
    #[arg(long, default_value_t = 8)]
    queue: usize,
    /// Refuse prompts longer than this many tokens (default: each model's context length).
    #[arg(long)]
    max_tokens: Option<usize>,
    /// cpu, cuda or cuda:N (CUDA needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu", env = "TOKENLENS_DEVICE")]
    device: String,
    /// Weights and activations: f32 (exact gradients), bf16 or f16.
    #[arg(long, default_value = "f32", env = "TOKENLENS_DTYPE")]
    dtype: String,
}

fn app(state: ServerState, options: LeptosOptions) -> Router {
    let routes = generate_route_list(app::App);
    Router::new()
        .leptos_routes_with_context(&options, routes, move || provide_context(state.clone()), {
            let options = options.clone();
            move || app::shell(options.clone())
        })
        .fallback(leptos_axum::file_and_error_handler(app::shell))
        .with_state(options)
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
    let load = {
        let max_tokens = args.max_tokens;
        let device = tokenlens::source::parse_device(&args.device)?;
        let dtype = tokenlens::source::parse_dtype(&args.dtype)?;
        move |spec: &str| -> anyhow::Result<Model> {
            let started = std::time::Instant::now();
            let opts = LoadOptions {
                max_tokens,
                device: device.clone(),
                dtype,
                ..LoadOptions::new(spec)
            };
            let engine =
                Engine::load_with(&opts).with_context(|| format!("loading model {spec:?}"))?;
            tracing::info!(
                model = engine.name(),
                ms = started.elapsed().as_millis() as u64,
                "model loaded"
            );
            Ok(Model {
                name: engine.name().to_string(),
                engine: Arc::new(engine),
            })
        }
    };
    // The default model must load; the others are offered when (and if) they do.
    let state = ServerState::new(load(first)?, rest, Worker::start(args.queue));
    {
        let (state, rest) = (state.clone(), rest.to_vec());
        std::thread::Builder::new()
            .name("tokenlens-loader".into())
            .spawn(move || {
                for spec in rest {
                    let result = load(&spec).map_err(|e| {
                        tracing::error!("{e:#}");
                        format!("{e:#}")
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
    axum::serve(listener, app(state, options).into_make_service())
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
