//! `tokenlens-server`: the TokenLens viewer over HTTP (Axum + Leptos).
//!
//! Loads the default model before listening and the others in the background (each joins
//! the picker when ready), shares them with the server functions through Leptos context,
//! and runs model work on one worker thread with a bounded queue.

mod weights;

use anyhow::Context;
use app::permalinks::Permalinks;
use app::rate_limit::RateLimiter;
use app::ssr::{Limits, Model, ServerState, Worker};
use app::store::{is_valid_id, Quota};
use axum::Router;
use clap::Parser;
use leptos::prelude::*;
use leptos_axum::{generate_route_list, LeptosRoutes};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tokenlens::{Engine, LoadOptions};
use weights::WeightBudget;

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
    /// Refuse prompts longer than this many tokens. Default: each model's context length, or
    /// on the CPU the longest prompt whose explanation fits in the memory available once it
    /// is loaded (attention's backward pass needs the square of the prompt per head).
    #[arg(long)]
    max_tokens: Option<usize>,
    /// cpu, cuda or cuda:N (CUDA needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu", env = "TOKENLENS_DEVICE")]
    device: String,
    /// Weights and activations: f32 (exact gradients), bf16 or f16.
    #[arg(long, default_value = "f32", env = "TOKENLENS_DTYPE")]
    dtype: String,
    /// Memory all models' weights may take together (e.g. 16G). Each model is loaded dense
    /// while that fits in what is left (and in half the machine), with its weights as its file
    /// stores them (GGUF quantized blocks, bf16/f16 safetensors) and converted one matrix at a
    /// time otherwise, and skipped, with the reason
    /// in the model list, when even that does not fit. Default: the memory available at start
    /// less an eighth and 1 GiB.
    #[arg(long, env = "TOKENLENS_MAX_MEMORY")]
    max_memory: Option<String>,
    /// Where permalinks are stored (SQLite) when no database URL is given
    /// [default: $XDG_DATA_HOME/tokenlens or ~/.local/share/tokenlens].
    #[arg(long, env = "TOKENLENS_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// A PostgreSQL (postgres://…) or SQLite (sqlite://…) database for permalinks, shared by
    /// every server instance behind one load balancer.
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// Hosted-demo mode: the limits below take demo defaults unless given (prompt 2000
    /// characters and 1024 tokens, answers 128 tokens, 30 requests a minute per client,
    /// 1024 MB of permalinks).
    #[arg(long)]
    demo: bool,
    /// Refuse prompts longer than this many characters.
    #[arg(long)]
    max_prompt_chars: Option<usize>,
    /// Refuse answers (and all-steps matrices) longer than this many tokens.
    #[arg(long)]
    max_new_tokens: Option<usize>,
    /// Model requests and shares allowed per client per minute.
    #[arg(long)]
    rate_limit: Option<u32>,
    /// Megabytes all permalinks together may take; sharing stops with a message when full.
    #[arg(long)]
    share_quota_mb: Option<f64>,
    /// Largest single shared view, in megabytes.
    #[arg(long, default_value_t = 32.0)]
    share_max_mb: f64,
    /// Identify clients by the right-most X-Forwarded-For address, the one the proxy
    /// appended (only behind a trusted proxy); IPv6 clients count per /64.
    #[arg(long)]
    trust_forwarded_for: bool,
}

impl Args {
    /// The demo defaults for limits not given.
    fn limits(&self) -> (Limits, Option<u32>, Option<u64>, Option<usize>) {
        let demo = |v: u64| self.demo.then_some(v);
        let limits = Limits {
            max_prompt_chars: self.max_prompt_chars.or(demo(2000).map(|v| v as usize)),
            max_new_tokens: self.max_new_tokens.or(demo(128).map(|v| v as usize)),
        };
        let rate = self.rate_limit.or(demo(30).map(|v| v as u32));
        let quota = self
            .share_quota_mb
            .or(demo(1024).map(|v| v as f64))
            .map(megabytes);
        let max_tokens = self.max_tokens.or(demo(1024).map(|v| v as usize));
        (limits, rate, quota, max_tokens)
    }

    fn data_dir(&self) -> PathBuf {
        if let Some(d) = &self.data_dir {
            return d.clone();
        }
        let base = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
            .unwrap_or_else(|| PathBuf::from("."));
        base.join("tokenlens")
    }
}

/// Why a model failed to load, as `/api/models` tells any client: the cause without the
/// server's file paths or the chain of contexts (those go to the log).
fn public_reason(e: &anyhow::Error) -> String {
    match e.downcast_ref::<tokenlens::Error>() {
        Some(tokenlens::Error::BadModelFile { reason, .. }) => {
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

fn megabytes(mb: f64) -> u64 {
    (mb.max(0.0) * 1048576.0) as u64
}

/// `/s/<id>` for an id that is malformed or not stored: a 404 page, before the app renders.
async fn permalink_guard(
    axum::extract::State(permalinks): axum::extract::State<Permalinks>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let Some(id) = req.uri().path().strip_prefix("/s/") else {
        return next.run(req).await;
    };
    let id = id.trim_end_matches('/').to_string();
    let unavailable =
        |msg: &str| (axum::http::StatusCode::SERVICE_UNAVAILABLE, msg.to_string()).into_response();
    let problem = if !is_valid_id(&id) {
        Some("This is not a TokenLens permalink: the id is malformed.")
    } else {
        let Ok(db) = permalinks.get() else {
            return unavailable(app::permalinks::UNAVAILABLE);
        };
        match db.store.contains(&id).await {
            Ok(true) => None,
            Ok(false) => Some("No view is stored under this link on this server."),
            Err(e) => {
                tracing::error!("looking up permalink {id}: {e}");
                return unavailable("the permalink database is unavailable; try again later");
            }
        }
    };
    match problem {
        None => next.run(req).await,
        Some(msg) => (
            axum::http::StatusCode::NOT_FOUND,
            axum::response::Html(not_found_page(&id, msg)),
        )
            .into_response(),
    }
}

/// Server functions answer every error with 500; a request body that does not parse is the
/// client's mistake, so it gets 400 (the message stays as it was).
async fn bad_request_status(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::StatusCode;
    let res = next.run(req).await;
    if res.status() != StatusCode::INTERNAL_SERVER_ERROR
        || !res.headers().contains_key("serverfnerror")
    {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    // Error bodies are one short message.
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    if [&b"Deserialization|"[..], b"Args|", b"MissingArg|"]
        .iter()
        .any(|p| bytes.starts_with(p))
    {
        parts.status = StatusCode::BAD_REQUEST;
    }
    axum::response::Response::from_parts(parts, axum::body::Body::from(bytes))
}

fn not_found_page(id: &str, msg: &str) -> String {
    let escaped: String = id
        .chars()
        .take(64)
        .map(|c| match c {
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '&' => "&amp;".to_string(),
            '"' => "&quot;".to_string(),
            c => c.to_string(),
        })
        .collect();
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Not found · TokenLens</title>\
         <link rel=\"stylesheet\" href=\"/style.css\"></head><body><main><h1>TokenLens</h1>\
         <div class=\"error\" role=\"alert\" data-testid=\"not-found\"><p><strong>404</strong> · {msg}</p>\
         <p>Link id: <code>{escaped}</code></p></div><p><a href=\"/\">Open the viewer</a></p></main></body></html>"
    )
}

fn app(state: ServerState, options: LeptosOptions) -> Router {
    let routes = generate_route_list(app::App);
    let permalinks = state.permalinks.clone();
    // A shared view is the largest request: let it through whole (the store then says
    // clearly when one is over its limit), and nothing much larger.
    let body_limit = (permalinks.quota().max_item_bytes + (1 << 20)).max(2 << 20);
    Router::new()
        .leptos_routes_with_context(&options, routes, move || provide_context(state.clone()), {
            let options = options.clone();
            move || app::shell(options.clone())
        })
        .fallback(leptos_axum::file_and_error_handler(app::shell))
        .with_state(options)
        .layer(axum::middleware::from_fn_with_state(
            permalinks,
            permalink_guard,
        ))
        .layer(axum::middleware::from_fn(bad_request_status))
        .layer(axum::extract::DefaultBodyLimit::max(
            usize::try_from(body_limit).unwrap_or(usize::MAX),
        ))
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
    let (limits, rate, quota, max_tokens) = args.limits();
    // Models do not need the database: without it they are served and sharing says so.
    let permalinks = Permalinks::open(
        args.database_url.clone(),
        args.data_dir(),
        Quota {
            max_item_bytes: megabytes(args.share_max_mb),
            max_total_bytes: quota,
        },
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
        limits,
        RateLimiter::new(rate),
    );
    state.trust_forwarded_for = args.trust_forwarded_for;
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
    axum::serve(
        listener,
        app(state, options).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown())
    .await?;
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
