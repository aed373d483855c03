//! `tokenlens`: explain a model's next token from the command line.

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use tokenlens::{Engine, ExplainRequest, Explanation, LoadOptions, Method, TargetSpec};

mod bench;
mod plot;
mod terminal;

/// Why did the model say that? Attribution of a predicted token to the prompt's tokens.
#[derive(Parser, Debug)]
#[command(name = "tokenlens", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Explain the next token: colored tokens in the terminal, or the JSON document.
    Explain {
        #[command(flatten)]
        req: RequestArgs,
        /// Print one JSON document (schema: docs/schema.md).
        #[arg(long)]
        json: bool,
    },
    /// Draw the scores of one method as a heatmap figure (PNG or SVG by extension).
    Heatmap {
        #[command(flatten)]
        req: RequestArgs,
        /// Output file, `.png` or `.svg`.
        #[arg(short, long)]
        output: PathBuf,
        /// Show the whole templated prompt instead of the query's tokens.
        #[arg(long)]
        all_tokens: bool,
    },
    /// Time load, forward and each method on one prompt, as JSON (see scripts/bench.py).
    Bench(bench::BenchArgs),
    /// Draw the layer × token latent relevance trace of one method (PNG or SVG).
    Trace {
        #[command(flatten)]
        req: RequestArgs,
        /// Output file, `.png` or `.svg`.
        #[arg(short, long)]
        output: PathBuf,
    },
}

#[derive(Args, Debug)]
struct RequestArgs {
    /// The prompt (the user's message).
    #[arg(short, long)]
    prompt: String,
    /// Send the prompt as is, without the chat template.
    #[arg(long)]
    raw: bool,
    /// Model: an alias (smollm2-135m), a .gguf file or a Hugging Face directory.
    #[arg(short, long, default_value = tokenlens::source::DEFAULT_MODEL)]
    model: String,
    /// Explain this text's first token instead of the argmax (e.g. " Paris").
    #[arg(long, conflicts_with = "target_id")]
    target: Option<String>,
    /// Explain this token id instead of the argmax.
    #[arg(long)]
    target_id: Option<u32>,
    /// Comma-separated methods: saliency, input_x_gradient, attnlrp, cp_lrp.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "saliency,input_x_gradient"
    )]
    methods: Vec<String>,
    /// Candidates listed in the prediction.
    #[arg(long, default_value_t = 10)]
    top_k: usize,
    /// Seed the backward pass with the target logit instead of 1.0.
    #[arg(long)]
    seed_with_logit: bool,
    /// Refuse prompts longer than this many tokens (default: the model's context).
    #[arg(long)]
    max_tokens: Option<usize>,
}

impl RequestArgs {
    fn request(&self) -> anyhow::Result<ExplainRequest> {
        let methods = self
            .methods
            .iter()
            .map(|m| {
                Method::from_name(m.trim())
                    .ok_or_else(|| tokenlens::Error::UnknownMethod(m.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if methods.is_empty() {
            bail!("no method given");
        }
        let target = match (&self.target, self.target_id) {
            (Some(t), _) => TargetSpec::Text(t.clone()),
            (None, Some(id)) => TargetSpec::Id(id),
            (None, None) => TargetSpec::Argmax,
        };
        Ok(ExplainRequest {
            prompt: self.prompt.clone(),
            chat_template: !self.raw,
            target,
            methods,
            top_k: self.top_k,
            seed_with_logit: self.seed_with_logit,
        })
    }

    fn run(&self) -> anyhow::Result<Explanation> {
        let req = self.request()?;
        let opts = LoadOptions {
            max_tokens: self.max_tokens,
            ..LoadOptions::new(&self.model)
        };
        let engine =
            Engine::load_with(&opts).with_context(|| format!("loading model {:?}", self.model))?;
        Ok(engine.explain(&req)?)
    }

    fn first_method(&self) -> String {
        self.methods.first().cloned().unwrap_or_default()
    }
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Explain { req, json } => {
            let ex = req.run()?;
            if json {
                println!("{}", serde_json::to_string(&ex)?);
            } else {
                terminal::print(&ex);
            }
        }
        Command::Heatmap {
            req,
            output,
            all_tokens,
        } => {
            let ex = req.run()?;
            plot::heatmap(&ex, &req.first_method(), !all_tokens, &output)?;
            eprintln!("wrote {}", output.display());
        }
        Command::Bench(args) => bench::run(&args)?,
        Command::Trace { req, output } => {
            let ex = req.run()?;
            plot::trace(&ex, &req.first_method(), &output)?;
            eprintln!("wrote {}", output.display());
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
