//! `tokenlens`: explain a model's next token from the command line.

use anyhow::bail;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use tokenlens::granularity::{Aggregate, Granularity};
use tokenlens::{Engine, GenerateRequest, Generation, StreamEvent};

use args::{
    load, parse_aggregate, parse_granularity, DeviceArgs, GenArgs, PromptArgs, RequestArgs,
};

mod args;
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
        /// Show (and in JSON, add) scores per word or sentence as well as per token.
        #[arg(long, value_parser = parse_granularity, default_value = "token")]
        granularity: Granularity,
        /// How a word's or sentence's score is made from its tokens': sum or max_abs.
        #[arg(long, value_parser = parse_aggregate, default_value = "sum")]
        aggregate: Aggregate,
    },
    /// Generate an answer, streamed token by token (KV cache; stops at end of turn).
    Generate {
        #[command(flatten)]
        input: PromptArgs,
        #[command(flatten)]
        gen: GenArgs,
        #[command(flatten)]
        device: DeviceArgs,
        /// Print one JSON document (schema: docs/schema.md) instead of streaming text.
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
    /// A neuron's or head's card for one prompt: a neuron's logit lens (the tokens its
    /// `down_proj` column promotes and suppresses through the final norm and the output
    /// projection) and its activation at each token; a head's attention pattern.
    Unit {
        #[command(flatten)]
        input: PromptArgs,
        /// The unit: `layer:neuron` or `layer:hHEAD` (from 0, as --neurons and --heads print
        /// them), e.g. 12:4031 or 14:h3.
        #[arg(short, long)]
        unit: tokenlens::Component,
        /// Also list a neuron's top-activating contexts over the reference corpus (3,600
        /// texts of public-domain English and code): its layer is read over the whole corpus
        /// once (progress on stderr), then cached on disk for the model.
        #[arg(long)]
        contexts: bool,
        #[command(flatten)]
        device: DeviceArgs,
        /// Print the card as JSON.
        #[arg(long)]
        json: bool,
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

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Explain {
            req,
            json,
            granularity,
            aggregate,
        } => {
            if req.all_steps() {
                let (gen, rows) = req.run_steps()?;
                match json {
                    true => println!(
                        "{}",
                        serde_json::json!({ "generation": gen, "steps": rows })
                    ),
                    false => terminal::print_steps(&gen, &rows, req.first_method()?),
                }
                return Ok(());
            }
            let ex = req.run()?;
            if json {
                let mut doc = serde_json::to_value(&ex)?;
                if granularity != Granularity::Token {
                    doc["granularity"] = terminal::grouped(&ex, granularity, aggregate);
                }
                println!("{doc}");
            } else {
                terminal::print(&ex, granularity, aggregate);
            }
        }
        Command::Generate {
            input,
            gen,
            device,
            json,
        } => {
            let engine = load(&input.model, None, &device)?;
            let req = gen.request(&input, device.precision);
            if req.steer.is_empty() {
                let g = match json {
                    true => engine.generate(&req)?,
                    false => generate_to_terminal(&engine, &req)?,
                };
                if json {
                    println!("{}", serde_json::to_string(&g)?);
                }
            } else {
                // Bad edits are refused before anything is generated.
                engine.steered(&req.steer)?;
                // The original answer, then the steered one with the same sampling seed.
                let original = GenerateRequest {
                    steer: Vec::new(),
                    ..req.clone()
                };
                let steer = tokenlens::format_edits(&req.steer);
                let both = if json {
                    (engine.generate(&original)?, engine.generate(&req)?)
                } else {
                    println!("original:");
                    let a = generate_to_terminal(&engine, &original)?;
                    println!("\nsteered ({steer}):");
                    (a, generate_to_terminal(&engine, &req)?)
                };
                if json {
                    let doc = serde_json::json!({
                        "steer": req.steer, "original": both.0, "steered": both.1
                    });
                    println!("{doc}");
                }
            }
        }
        Command::Heatmap {
            req,
            output,
            all_tokens,
        } => {
            let ex = req.run()?;
            plot::heatmap(&ex, req.first_method()?, !all_tokens, &output)?;
            eprintln!("wrote {}", output.display());
        }
        Command::Unit {
            input,
            unit,
            contexts,
            device,
            json,
        } => {
            let engine = load(&input.model, None, &device)?;
            let card = engine.unit_card(&tokenlens::UnitRequest {
                prompt: input.prompt.clone(),
                chat_template: !input.raw,
                thinking: input.thinking,
                continuation: Vec::new(),
                unit,
                steer: input.steer.clone(),
            })?;
            let contexts = match (contexts, unit.unit) {
                (false, _) => None,
                (true, tokenlens::Unit::Neuron(neuron)) => {
                    let req = tokenlens::ContextsRequest {
                        layer: unit.layer,
                        neuron,
                    };
                    let mut shown = 0;
                    let c = engine.neuron_contexts(&req, &mut |done, total| {
                        // A line every tenth of the corpus.
                        if done * 10 / total.max(1) > shown {
                            shown = done * 10 / total.max(1);
                            eprintln!("reading the corpus: {done} of {total} texts");
                        }
                        Ok(())
                    })?;
                    Some(c)
                }
                (true, tokenlens::Unit::Head(_)) => {
                    bail!("--contexts lists a neuron's contexts; {unit} is a head")
                }
            };
            match json {
                true => println!(
                    "{}",
                    serde_json::json!({ "card": card, "contexts": contexts })
                ),
                false => {
                    terminal::print_unit(&card);
                    if let Some(c) = &contexts {
                        terminal::print_contexts(c);
                    }
                }
            }
        }
        Command::Bench(args) => bench::run(&args)?,
        Command::Trace { req, output } => {
            let ex = req.run()?;
            plot::trace(&ex, req.first_method()?, &output)?;
            eprintln!("wrote {}", output.display());
        }
    }
    Ok(())
}

/// Streams the answer to stdout as it is generated; the stop reason goes to stderr.
fn generate_to_terminal(engine: &Engine, req: &GenerateRequest) -> anyhow::Result<Generation> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let g = engine.generate_streaming(req, &mut |ev| {
        if let StreamEvent::Generated { token, .. } = ev {
            // A closed stdout (`| head`) ends generation.
            if write!(out, "{}", token.token.text)
                .and_then(|_| out.flush())
                .is_err()
            {
                return std::ops::ControlFlow::Break(());
            }
        }
        std::ops::ControlFlow::Continue(())
    })?;
    writeln!(out)?;
    eprintln!("[{} tokens, stop: {:?}]", g.generated.len(), g.stop);
    Ok(g)
}

fn main() -> ExitCode {
    tokenlens::heap::keep_freed_memory();
    tokenlens::kernels::init();
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
