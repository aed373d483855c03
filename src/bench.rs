//! `tokenlens bench`: times the engine on one prompt, for `scripts/bench.py` to set beside
//! PyTorch's times. Prints one JSON object.

use anyhow::Context;
use std::path::PathBuf;
use std::time::Instant;
use tokenlens::{Engine, ExplainRequest, GenerateRequest, Method, Sampling};

/// Options of `tokenlens bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// File holding the prompt (sent raw unless --chat).
    #[arg(long)]
    prompt_file: PathBuf,
    /// Wrap the prompt in the model's chat template.
    #[arg(long)]
    chat: bool,
    /// Model: alias, .gguf or directory.
    #[arg(short, long, default_value = tokenlens::source::DEFAULT_MODEL)]
    model: String,
    /// Comma-separated methods to time (each: forward + backward + trace).
    #[arg(long, value_delimiter = ',', default_value = "saliency,attnlrp")]
    methods: Vec<String>,
    /// Timed repetitions after one warm-up; the median is reported.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Also time greedy generation of this many new tokens (KV cache); 0 skips it.
    #[arg(long, default_value_t = 0)]
    generate: usize,
    #[command(flatten)]
    device: crate::DeviceArgs,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Peak resident memory of this process in MiB (Linux; 0 elsewhere).
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

fn time(repeat: usize, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    f()?; // warm-up
    let mut times = Vec::with_capacity(repeat);
    for _ in 0..repeat.max(1) {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64());
    }
    Ok(median(times))
}

/// Runs the benchmark and prints its JSON.
pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let prompt = std::fs::read_to_string(&args.prompt_file)
        .with_context(|| format!("reading {}", args.prompt_file.display()))?;
    let t = Instant::now();
    let engine = Engine::load_with(&args.device.options(&args.model, None)?)?;
    let load_s = t.elapsed().as_secs_f64();
    let mut req = ExplainRequest::new(prompt);
    req.chat_template = args.chat;
    let n_tokens = engine.tokenize(&req.prompt, args.chat, false)?.tokens.len();

    req.methods = vec![];
    let forward_s = time(args.repeat, || Ok(engine.explain(&req).map(|_| ())?))?;
    let mut methods = serde_json::Map::new();
    for name in &args.methods {
        let m =
            Method::from_name(name).ok_or_else(|| tokenlens::Error::UnknownMethod(name.clone()))?;
        req.methods = vec![m];
        let s = time(args.repeat, || Ok(engine.explain(&req).map(|_| ())?))?;
        methods.insert(name.clone(), s.into());
    }
    let mut generation = serde_json::Value::Null;
    if args.generate > 0 {
        let greq = GenerateRequest {
            prompt: req.prompt.clone(),
            chat_template: args.chat,
            thinking: false,
            sampling: Sampling::greedy(),
            max_new_tokens: args.generate,
        };
        let mut n = 0;
        let s = time(args.repeat, || {
            n = engine.generate(&greq)?.generated.len();
            Ok(())
        })?;
        generation = serde_json::json!({ "new_tokens": n, "s": s, "tokens_per_s": n as f64 / s });
    }
    let out = serde_json::json!({
        "n_tokens": n_tokens,
        "load_s": load_s,
        "forward_s": forward_s,
        "methods_s": methods,
        "generate": generation,
        "peak_rss_mib": peak_rss_mib(),
        "threads": std::thread::available_parallelism().map_or(1, |n| n.get()),
    });
    println!("{out}");
    Ok(())
}
