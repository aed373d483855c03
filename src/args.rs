//! The command line's arguments: the prompt, the request, the device, generation, and
//! their parsers.

use anyhow::{bail, Context};
use clap::builder::TypedValueParser;
use clap::Args;
use std::ops::ControlFlow;
use tokenlens::granularity::{Aggregate, Granularity};
use tokenlens::{
    Engine, ExplainRequest, Explanation, GenerateRequest, Generation, LoadOptions, Method,
    Sampling, StepRow, StepsRequest, TargetSpec,
};

#[derive(Args, Debug)]
pub(crate) struct PromptArgs {
    /// The prompt (the user's message).
    #[arg(short, long)]
    pub(crate) prompt: String,
    /// Send the prompt as is, without the chat template.
    #[arg(long)]
    pub(crate) raw: bool,
    /// Let the model think first: the chat template's enable_thinking (Qwen3's <think>
    /// block). Off by default, as in the first seed; templates without it ignore it.
    #[arg(long, conflicts_with = "raw")]
    pub(crate) thinking: bool,
    /// Model: an alias (smollm2-135m, gemma3-270m, qwen2.5-coder-0.5b), a .gguf file, a
    /// Hugging Face directory or a Hub id.
    #[arg(short, long, default_value = tokenlens::source::DEFAULT_MODEL)]
    pub(crate) model: String,
    /// Steer the model: edits to MLP neurons and attention heads applied in every pass,
    /// comma-separated, layers and units from 0: `12:4031*0` scales neuron 4031 of layer 12
    /// by 0 (ablates it; scales from -10 to 10), `12:4031=5` clamps it to 5 at every
    /// position, `14:h3*2` doubles head 3 of layer 14, `14:h3=8` sets its output's norm to 8
    /// (direction kept). `generate` prints the original answer and the steered one (same
    /// sampling seed); `explain` explains the steered model.
    #[arg(long, value_parser = tokenlens::parse_edits, default_value = "")]
    pub(crate) steer: ::std::vec::Vec<tokenlens::Edit>,
}

#[derive(Args, Debug)]
pub(crate) struct RequestArgs {
    #[command(flatten)]
    pub(crate) input: PromptArgs,
    /// Explain this text's first token instead of the argmax (e.g. " Paris").
    #[arg(long, conflicts_with = "target_id")]
    pub(crate) target: Option<String>,
    /// Explain this token id instead of the argmax.
    #[arg(long)]
    pub(crate) target_id: Option<u32>,
    /// Comma-separated methods.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "saliency,input_x_gradient",
        value_parser = clap::builder::PossibleValuesParser::new(
            tokenlens::METHODS.iter().map(|m| clap::builder::PossibleValue::new(m.name).help(m.about))
        ).try_map(|name| Method::from_name(&name).ok_or_else(|| format!("unknown method {name:?}")))
    )]
    pub(crate) methods: Vec<Method>,
    /// Candidates listed in the prediction (1 to 100).
    #[arg(long, default_value_t = 10)]
    pub(crate) top_k: usize,
    /// Seed the backward pass with the target logit instead of 1.0.
    #[arg(long)]
    pub(crate) seed_with_logit: bool,
    /// Also explain the other top-k candidates, all in one batched backward pass per rule
    /// set, into the JSON document's `candidates`.
    #[arg(long)]
    pub(crate) candidates: bool,
    /// Also compute perturbation curves of every method (MoRF, LeRF, a random baseline of 10
    /// seeded orders; ABPC, comprehensiveness and sufficiency) into the JSON document's
    /// `faithfulness`. Forward passes only, about 2 × (methods + 10) × steps of them.
    #[arg(long)]
    pub(crate) faithfulness: bool,
    /// How --faithfulness takes a token out: replace (by the pad/unk/space token), zero (its
    /// embedding) or delete (later tokens move back).
    #[arg(long, default_value = "replace", value_parser = parse_operator, requires = "faithfulness")]
    pub(crate) operator: tokenlens::Operator,
    /// With --faithfulness: only the user's text and the answer before the target may be taken
    /// out (otherwise the chat template's tokens may be too; special tokens never are).
    #[arg(long, requires = "faithfulness")]
    pub(crate) query_only: bool,
    /// Also compute the logit lens: at every layer and position, the 5 most probable next
    /// tokens and the target's rank and probability, had that layer been the last (the
    /// model's final norm and output projection applied there), into the JSON document's
    /// `lens`.
    #[arg(long)]
    pub(crate) lens: bool,
    /// Also keep each layer's N most relevant MLP neurons for every one-pass method, from
    /// the same backward pass: a neuron's relevance is its activation (the input of
    /// `down_proj`) times the method's gradient there, or the gradient's magnitude for
    /// saliency, summed over tokens; into the JSON document's `methods.<m>.neurons` (per
    /// layer: its total and the top N with their per-token values).
    #[arg(long, default_value_t = 0, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=tokenlens::MAX_NEURONS as u64))]
    pub(crate) neurons: usize,
    /// Also keep every attention head's relevance in every layer for every one-pass method,
    /// from the same backward pass: a head's slice of `o_proj`'s input times the method's
    /// gradient there (saliency: its magnitude), per token; into `methods.<m>.heads`.
    #[arg(long)]
    pub(crate) heads: bool,
    /// Component ablation: zero the K most relevant neurons (with --neurons) and heads (with
    /// --heads) of every one-pass method one after another, over the whole model, and print
    /// the target's log-probability after each, next to K random units of the same layers
    /// (4 seeded draws); into `methods.<m>.ablation`. One forward pass per point.
    #[arg(long, default_value_t = 0)]
    pub(crate) ablation: usize,
    /// Refuse prompts longer than this many tokens. Default: the model's context, or on the
    /// CPU the longest prompt whose explanation fits in the memory available (attention's
    /// backward pass needs the square of the prompt per head).
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub(crate) max_tokens: Option<usize>,
    /// Contrastive target: explain logit(target) − logit(first token of this text).
    #[arg(long)]
    pub(crate) contrast: Option<String>,
    /// Generate an answer first (settings below) and explain its N-th token (1-based)
    /// against the prompt and the N−1 tokens before it.
    #[arg(long, conflicts_with_all = ["target", "target_id"])]
    pub(crate) step: Option<usize>,
    /// Generate an answer first and explain its tokens START to END (1-based, inclusive)
    /// together: the sum of their log-probabilities, each given everything before it,
    /// attributed to the prompt and the answer before it.
    #[arg(long, value_parser = parse_span, conflicts_with_all = ["target", "target_id", "contrast", "step", "faithfulness"])]
    pub(crate) span: Option<tokenlens::Span>,
    /// Generate an answer first (or take --answer) and explain each of its tokens against
    /// the prompt and the answer before it: the all-steps matrix, one forward pass and each
    /// method's backward pass once. JSON: `{"generation": …, "steps": [row, …]}`.
    #[arg(long, conflicts_with_all = ["target", "target_id", "contrast", "step", "span", "faithfulness", "lens", "candidates", "ablation", "neurons", "heads"])]
    pub(crate) all_steps: bool,
    /// What is explained of the target: its logit, or its log-probability (the logit less
    /// the log-sum-exp; the backward pass starts from onehot − softmax). A span is always
    /// its log-probability.
    #[arg(long, default_value = "logit", value_parser = parse_score)]
    pub(crate) score: tokenlens::Score,
    #[command(flatten)]
    pub(crate) gen: GenArgs,
    #[command(flatten)]
    pub(crate) device: DeviceArgs,
}

/// Where the model runs.
#[derive(Args, Debug, Clone)]
pub(crate) struct DeviceArgs {
    /// cpu, cuda or cuda:N (CUDA needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu", env = "TOKENLENS_DEVICE")]
    pub(crate) device: String,
    /// How dense weights are held: f32 (the default), bf16 or f16 (activations follow;
    /// on the CPU use --precision instead).
    #[arg(long, default_value = "f32", env = "TOKENLENS_DTYPE")]
    pub(crate) dtype: String,
    /// Matrix products: f32 (exact, as the PyTorch references), bf16 (approximate: bf16
    /// operands with f32 accumulation on the CPU's matrix units through oneMKL; forward-only
    /// passes and generation on the GGUF's quantized weights as stored) or auto (f32 where an
    /// explanation takes about a second or less, bf16 above; generation on the weights as
    /// stored).
    #[arg(long, default_value = "auto", value_parser = tokenlens::Precision::parse, env = "TOKENLENS_PRECISION")]
    pub(crate) precision: tokenlens::Precision,
    /// Memory the dense weights may take (e.g. 8G). A model over it keeps its weights as its
    /// file stores them (GGUF quantized blocks, bf16/f16 safetensors) and converts one matrix
    /// at a time during each pass (slower, same results). Default: half the machine's memory,
    /// at most what is available less an eighth and 1 GiB.
    #[arg(long, env = "TOKENLENS_MAX_MEMORY")]
    pub(crate) max_memory: Option<String>,
}

impl DeviceArgs {
    /// Load options for a model on this device.
    pub(crate) fn options(
        &self,
        model: &str,
        max_tokens: Option<usize>,
    ) -> anyhow::Result<LoadOptions> {
        Ok(LoadOptions {
            device: tokenlens::source::parse_device(&self.device)?,
            dtype: tokenlens::source::parse_dtype(&self.dtype)?,
            max_tokens,
            max_memory: self
                .max_memory
                .as_deref()
                .map(tokenlens::source::parse_size)
                .transpose()?,
            ..LoadOptions::new(model)
        })
    }
}

/// Generation settings (the first seed's defaults).
#[derive(Args, Debug, Clone)]
pub(crate) struct GenArgs {
    /// The most tokens to generate.
    #[arg(long, default_value_t = 64)]
    pub(crate) max_new_tokens: usize,
    /// Always take the most likely token (same as --temperature 0).
    #[arg(long)]
    pub(crate) greedy: bool,
    /// Sampling temperature (0 = greedy).
    #[arg(long, default_value_t = 0.7)]
    pub(crate) temperature: f32,
    /// Sample among the k most likely tokens (0 = all).
    #[arg(long, default_value_t = 20)]
    pub(crate) sample_top_k: usize,
    /// Sample among the smallest set of tokens holding this probability.
    #[arg(long, default_value_t = 0.8)]
    pub(crate) top_p: f32,
    /// Random seed for sampling: the same seed gives the same answer.
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
    /// Take this text as the answer instead of generating one (forced decoding, as Inseq's
    /// `generated_texts`): it is tokenized after the prompt, each token gets its
    /// probability under the model, and --step, --span and --all-steps explain it as they
    /// do a generated answer. `explain --answer TEXT` alone explains every token of it
    /// (--all-steps).
    #[arg(long)]
    pub(crate) answer: Option<String>,
}

impl GenArgs {
    pub(crate) fn request(
        &self,
        input: &PromptArgs,
        precision: tokenlens::Precision,
    ) -> GenerateRequest {
        GenerateRequest {
            prompt: input.prompt.clone(),
            chat_template: !input.raw,
            thinking: input.thinking,
            sampling: Sampling {
                temperature: if self.greedy { 0.0 } else { self.temperature },
                top_k: self.sample_top_k,
                top_p: self.top_p,
                seed: self.seed,
            },
            max_new_tokens: self.max_new_tokens,
            precision,
            steer: input.steer.clone(),
            answer: self.answer.clone(),
        }
    }
}

pub(crate) fn parse_granularity(s: &str) -> Result<Granularity, String> {
    Granularity::from_name(s).ok_or_else(|| format!("{s:?}: expected token, word or sentence"))
}

pub(crate) fn parse_aggregate(s: &str) -> Result<Aggregate, String> {
    Aggregate::from_name(s).ok_or_else(|| format!("{s:?}: expected sum or max_abs"))
}

pub(crate) fn load(
    model: &str,
    max_tokens: Option<usize>,
    device: &DeviceArgs,
) -> anyhow::Result<Engine> {
    let opts = device.options(model, max_tokens)?;
    Engine::load_with(&opts).with_context(|| format!("loading model {model:?}"))
}

impl RequestArgs {
    pub(crate) fn request(&self) -> anyhow::Result<ExplainRequest> {
        let methods = self.methods.clone();
        if methods.is_empty() {
            bail!("no method given");
        }
        let target = match (&self.target, self.target_id) {
            (Some(t), _) => TargetSpec::Text(t.clone()),
            (None, Some(id)) => TargetSpec::Id(id),
            (None, None) => TargetSpec::Argmax,
        };
        Ok(ExplainRequest {
            prompt: self.input.prompt.clone(),
            chat_template: !self.input.raw,
            thinking: self.input.thinking,
            target,
            methods,
            top_k: self.top_k,
            seed_with_logit: self.seed_with_logit,
            explain_candidates: self.candidates,
            continuation: Vec::new(),
            contrast: self.contrast.clone().map(TargetSpec::Text),
            faithfulness: self.faithfulness.then_some(tokenlens::FaithfulnessSpec {
                operator: self.operator,
                query_only: self.query_only,
            }),
            lens: self.lens,
            score: self.score,
            span: None,
            precision: self.device.precision,
            neurons: self.neurons,
            heads: self.heads,
            steer: self.input.steer.clone(),
            ablation: (self.ablation > 0).then(|| tokenlens::AblationSpec {
                units: self.ablation,
                methods: Vec::new(),
            }),
        })
    }

    pub(crate) fn run(&self) -> anyhow::Result<Explanation> {
        let mut req = self.request()?;
        if self.step == Some(0) {
            bail!("--step counts from 1 (the answer's first token), not 0");
        }
        let engine = load(&self.input.model, self.max_tokens, &self.device)?;
        if let Some(span) = self.span {
            let gen = engine.generate(&self.gen.request(&self.input, self.device.precision))?;
            let ids = gen.ids();
            if span.end > ids.len() {
                bail!(
                    "--span {}:{} is out of range: the answer has {} tokens ({:?})",
                    span.start + 1,
                    span.end,
                    ids.len(),
                    gen.answer
                );
            }
            req.continuation = ids[..span.end].to_vec();
            req.span = Some(span);
            req.score = tokenlens::Score::LogProb;
        }
        if let Some(step) = self.step {
            let gen = engine.generate(&self.gen.request(&self.input, self.device.precision))?;
            let ids = gen.ids();
            if step > ids.len() {
                bail!(
                    "--step {step} is out of range: the answer has {} tokens ({:?}), so steps \
                     1 to {0}",
                    ids.len(),
                    gen.answer
                );
            }
            req.continuation = ids[..step - 1].to_vec();
            req.target = TargetSpec::Id(ids[step - 1]);
        }
        Ok(engine.explain(&req)?)
    }

    /// Whether every answer token is explained: --all-steps, or --answer without --step or
    /// --span.
    pub(crate) fn all_steps(&self) -> bool {
        self.all_steps || (self.gen.answer.is_some() && self.step.is_none() && self.span.is_none())
    }

    /// The answer (generated, or the given one) and its all-steps rows.
    pub(crate) fn run_steps(&self) -> anyhow::Result<(Generation, Vec<StepRow>)> {
        let methods = self.request()?.methods;
        let engine = load(&self.input.model, self.max_tokens, &self.device)?;
        let gen = engine.generate(&self.gen.request(&self.input, self.device.precision))?;
        if gen.generated.is_empty() {
            bail!("the model's answer is empty (it ended its turn at once): there is nothing to explain");
        }
        let req = StepsRequest {
            prompt: self.input.prompt.clone(),
            chat_template: !self.input.raw,
            thinking: self.input.thinking,
            generated: gen.ids(),
            methods,
            precision: self.device.precision,
            steer: self.input.steer.clone(),
        };
        let rows = engine.explain_steps_streaming(&req, &mut |_| ControlFlow::Continue(()))?;
        Ok((gen, rows))
    }

    pub(crate) fn first_method(&self) -> anyhow::Result<Method> {
        self.methods.first().copied().context("no method given")
    }
}

/// `--span START:END`, 1-based and inclusive, into the 0-based half-open [`tokenlens::Span`].
pub(crate) fn parse_span(s: &str) -> Result<tokenlens::Span, String> {
    let (a, b) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?}: expected START:END, e.g. 2:5"))?;
    let num = |v: &str| {
        v.trim()
            .parse::<usize>()
            .map_err(|_| format!("{s:?}: {v:?} is not a token number"))
    };
    let (a, b) = (num(a)?, num(b)?);
    if a == 0 {
        return Err("--span counts from 1 (the answer's first token)".into());
    }
    if b < a {
        return Err(format!("--span {a}:{b} ends before it starts"));
    }
    Ok(tokenlens::Span {
        start: a - 1,
        end: b,
    })
}

/// A `--score` name.
pub(crate) fn parse_score(s: &str) -> Result<tokenlens::Score, String> {
    tokenlens::Score::from_name(s)
        .ok_or_else(|| format!("unknown score {s:?}; one of: logit, log_prob"))
}

/// An `--operator` name.
pub(crate) fn parse_operator(s: &str) -> Result<tokenlens::Operator, String> {
    tokenlens::Operator::from_name(s).ok_or_else(|| {
        let names: Vec<&str> = tokenlens::Operator::ALL.iter().map(|o| o.name()).collect();
        format!("unknown operator {s:?}; one of: {}", names.join(", "))
    })
}
