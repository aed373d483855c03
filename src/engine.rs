//! The engine: a loaded model with its tokenizer and template, answering
//! [`ExplainRequest`]s. Generation (`generate.rs`), the all-steps matrix (`steps.rs`), the
//! prediction and the other candidates (`candidates.rs`), the target, its seed and the
//! softmax (`target.rs`), the lens and the faithfulness curves live beside it.

use crate::chat_template::ChatTemplate;
use crate::error::{Error, Result};
use crate::kernels::Products;
use crate::methods::{self, PassOutput};
use crate::models::decoder::{Decoder, Saved};
use crate::precision::Plan;
use crate::source::{self, ModelPath};
use crate::types::{
    ExplainRequest, Explanation, Method, MethodResult, Pass, Stage, StreamEvent, Target,
};
use candle_core::{DType, Device};
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use tokenizers::Tokenizer;

/// How to load an engine.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// An alias (`smollm2-135m`), a GGUF file or a Hugging Face directory.
    pub model: String,
    /// Where the model runs.
    pub device: Device,
    /// Weight and activation dtype (f32 for exact gradients; bf16 halves memory).
    pub dtype: DType,
    /// A cap on prompt tokens below the model's context length. Default: the context, or on
    /// the CPU the longest prompt whose explanation fits in the memory available after
    /// loading (attention's backward pass needs the square of the prompt per head).
    pub max_tokens: Option<usize>,
    /// Bytes the dense weights may take; a model over it keeps its weights as its file stores
    /// them (GGUF quantized blocks, bf16/f16 safetensors) and converts a block of rows at a
    /// time as each product needs it (default: [`source::memory_budget`]).
    pub max_memory: Option<u64>,
}

impl LoadOptions {
    /// Defaults for a model: CPU, f32, the model's own context length.
    pub fn new(model: impl Into<String>) -> Self {
        LoadOptions {
            model: model.into(),
            device: Device::Cpu,
            dtype: DType::F32,
            max_tokens: None,
            max_memory: None,
        }
    }
}

/// A loaded model ready to explain prompts. Cheap to share behind an `Arc`; `explain` takes
/// `&self`.
#[derive(Clone)]
pub struct Engine {
    name: String,
    model: Decoder,
    tokenizer: std::sync::Arc<Tokenizer>,
    pub(crate) chat_template: Option<ChatTemplate>,
    pub(crate) add_bos: Option<u32>,
    eos: Vec<u32>,
    neutral: Option<u32>,
    weights_note: String,
    weights_bytes: u64,
    device: Device,
    max_tokens: usize,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// What [`Engine::attribute`] computes that the rest of an explanation reads (the rest is
/// in its events).
struct Attributed {
    target: Target,
    seed: f32,
    methods: BTreeMap<Method, MethodResult>,
    /// With an ablation asked: each one-pass method's most relevant units.
    ranked: BTreeMap<Method, methods::inside::Ranking>,
}

pub(crate) fn stage(stage: Stage, method: Option<Method>) -> StreamEvent {
    StreamEvent::Stage { stage, method }
}

/// Wraps a sink: `Break` becomes [`Error::Cancelled`].
pub(crate) fn emitter(
    sink: &mut dyn FnMut(&StreamEvent) -> ControlFlow<()>,
) -> impl FnMut(StreamEvent) -> Result<()> + '_ {
    move |ev| match sink(&ev) {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(()) => Err(Error::Cancelled),
    }
}

/// The prompt limit when none is given: the model's context, or less on the CPU when an
/// explanation that long would not fit in the memory available after loading (attention's
/// backward pass needs the square of the prompt per head; see `models::activation_memory`).
fn default_max_tokens(cfg: &crate::models::decoder::Config, device: &Device) -> usize {
    let ctx = cfg.max_position_embeddings;
    if !device.is_cpu() {
        return ctx;
    }
    let fits = crate::models::activation_memory::max_prompt_tokens(cfg, source::memory_available());
    if fits < ctx {
        tracing::info!(
            tokens = fits,
            context = ctx,
            "prompt limit below the context: longer explanations would not fit in memory (--max-tokens overrides)"
        );
    }
    ctx.min(fits)
}

/// Reports a pass's layers as `progress` events, at most every 100 ms (and at its end);
/// each report is also where a cancelled request stops.
pub(crate) fn layer_progress<'a>(
    emit: &'a mut dyn FnMut(StreamEvent) -> Result<()>,
    stage: Stage,
    method: Option<Method>,
) -> impl FnMut(usize, usize) -> Result<()> + 'a {
    let mut last = std::time::Instant::now();
    move |done, total| {
        if done < total && last.elapsed() < std::time::Duration::from_millis(100) {
            return Ok(());
        }
        last = std::time::Instant::now();
        emit(StreamEvent::Progress {
            stage,
            method,
            done,
            total,
        })
    }
}

/// Passes run so far, one per distinct [`Pass`] (methods with the same pass share it).
pub(crate) struct Passes<T>(Vec<(Pass, T)>);

impl<T> Passes<T> {
    pub(crate) fn new() -> Self {
        Passes(Vec::new())
    }

    /// The result of `pass`, run now if it has not been.
    pub(crate) fn get_or_run(&mut self, pass: Pass, run: impl FnOnce() -> Result<T>) -> Result<&T> {
        let i = match self.0.iter().position(|(p, _)| *p == pass) {
            Some(i) => i,
            None => {
                self.0.push((pass, run()?));
                self.0.len() - 1
            }
        };
        self.0
            .get(i)
            .map(|(_, t)| t)
            .ok_or_else(|| Error::Candle(candle_core::Error::Msg("pass missing".into())))
    }
}

/// What the backward seed is multiplied by: 1, or the explained value (`seed_with_logit`).
pub(crate) fn seed_scale(req: &ExplainRequest, target: &Target) -> f32 {
    if req.seed_with_logit {
        target.explained_value()
    } else {
        1.0
    }
}

impl Engine {
    /// Loads a model by alias, GGUF path or directory on the CPU in f32.
    pub fn load(model: &str) -> Result<Self> {
        Self::load_with(&LoadOptions::new(model))
    }

    /// Loads a model with explicit options.
    pub fn load_with(opts: &LoadOptions) -> Result<Self> {
        let (name, path) = source::resolve(&opts.model)?;
        tracing::info!(model = %name, ?path, "loading");
        let mut loaded = source::open(&path, opts.dtype, &opts.device, opts.max_memory)?;
        let model = Decoder::load(loaded.config.clone(), loaded.weights.as_mut(), &opts.device)
            .map_err(|e| match (e, &path) {
                (Error::Candle(c), ModelPath::Gguf(p) | ModelPath::HfDir(p)) => {
                    Error::BadModelFile {
                        path: p.clone(),
                        reason: c.to_string(),
                    }
                }
                (e, _) => e,
            })?;
        let ctx = loaded.config.max_position_embeddings;
        Ok(Engine {
            name,
            model,
            tokenizer: std::sync::Arc::new(loaded.tokenizer),
            chat_template: loaded.chat_template,
            add_bos: loaded.add_bos,
            eos: loaded.eos,
            neutral: loaded.neutral,
            weights_note: loaded.weights_note,
            weights_bytes: loaded.weights_bytes,
            device: opts.device.clone(),
            max_tokens: opts.max_tokens.map_or_else(
                || default_max_tokens(&loaded.config, &opts.device),
                |m| m.min(ctx),
            ),
        })
    }

    /// How the weights are held (dense, or as stored and converted per use), in words.
    pub fn weights_note(&self) -> &str {
        &self.weights_note
    }

    /// Bytes the weights take in memory, as held.
    pub fn weights_bytes(&self) -> u64 {
        self.weights_bytes
    }

    /// The model's name (alias or file stem).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Decoder layers.
    pub fn n_layers(&self) -> usize {
        self.model.config().num_hidden_layers
    }

    /// The decoder layers' matrix parameters (FLOP counts of a pass: ≈ 2 × this × tokens).
    pub fn layer_matrix_params(&self) -> u64 {
        self.model.config().layer_matrix_params()
    }

    /// Vocabulary size.
    pub fn vocab_size(&self) -> usize {
        self.model.config().vocab_size
    }

    /// The most tokens a prompt may have.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// End-of-sequence / end-of-turn ids.
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos
    }

    /// Whether the model has a chat template.
    pub fn has_chat_template(&self) -> bool {
        self.chat_template.is_some()
    }

    /// The model's padding token, else its unknown token, if it names one.
    pub(crate) fn pad_or_unk(&self) -> Option<u32> {
        self.neutral
    }

    /// The decoder (for tests and benchmarks that run it directly).
    pub fn decoder(&self) -> &Decoder {
        &self.model
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Decodes one token (byte-level BPE undone); a token holding part of a character reads
    /// as its bytes (`‹E6 9D›`, see [`crate::pieces`]).
    pub fn decode_token(&self, id: u32) -> String {
        crate::pieces::token_text(&self.tokenizer, id)
    }

    /// This engine with `edits` to its neurons and heads applied in every pass (itself when
    /// there are none).
    pub fn steered(&self, edits: &[crate::Edit]) -> Result<std::borrow::Cow<'_, Engine>> {
        if edits.is_empty() {
            return Ok(std::borrow::Cow::Borrowed(self));
        }
        let model = self.model.steered(edits)?;
        Ok(std::borrow::Cow::Owned(Engine {
            model,
            ..self.clone()
        }))
    }

    /// Explains a prompt; the whole result at once.
    pub fn explain(&self, req: &ExplainRequest) -> Result<Explanation> {
        self.explain_streaming(req, &mut |_| ControlFlow::Continue(()))
    }

    /// Explains a prompt, handing each [`StreamEvent`] to `sink` as soon as it is known.
    /// `sink` returning `Break` cancels the request with [`Error::Cancelled`].
    pub fn explain_streaming(
        &self,
        req: &ExplainRequest,
        sink: &mut dyn FnMut(&StreamEvent) -> ControlFlow<()>,
    ) -> Result<Explanation> {
        // The result is the fold of its own stream, as the page and replay build theirs.
        let mut ex = Explanation::begin(&self.name, req.chat_template, req.thinking);
        let mut folded = |ev: &StreamEvent| {
            ex.apply(ev);
            sink(ev)
        };
        let seed = self.steered(&req.steer)?.explain_events(req, &mut folded)?;
        ex.seed = seed;
        Ok(ex)
    }

    /// [`Engine::explain_streaming`]'s events; returns the backward seed.
    fn explain_events(
        &self,
        req: &ExplainRequest,
        sink: &mut dyn FnMut(&StreamEvent) -> ControlFlow<()>,
    ) -> Result<f32> {
        let mut emit = emitter(sink);
        req.check().map_err(Error::InvalidSetting)?;
        emit(stage(Stage::Tokenize, None))?;
        // A span's last token is a target, not context.
        let context = match req.span {
            Some(span) => req.continuation.get(..span.end - 1).unwrap_or_default(),
            None => &req.continuation[..],
        };
        let tok = self.context(&req.prompt, req.chat_template, req.thinking, context)?;
        self.check_length(tok.tokens.len())?;
        let ids = self.announce(&tok, &mut emit)?;
        let passes = crate::types::pass_cost(&req.methods) as usize;
        let plan = self.explanation_plan(req.precision, ids.len(), passes);
        if let Some(ev) = plan.event() {
            emit(ev)?;
        }
        let a = self.attribute(&ids, req, plan, &mut emit)?;
        for (&method, ranking) in &a.ranked {
            let ablation = self.ablation(&ids, a.target.token.id, ranking, plan, &mut emit)?;
            emit(StreamEvent::Ablation { method, ablation })?;
        }
        if let Some(spec) = req.faithfulness {
            emit(stage(Stage::Faithfulness, None))?;
            let scores = a
                .methods
                .iter()
                .map(|(m, r)| (*m, r.scores.clone()))
                .collect();
            // After each batch of inputs (about a second): a cancellation point.
            let mut progress = |done: usize, total: usize| -> Result<()> {
                emit(StreamEvent::Progress {
                    stage: Stage::Faithfulness,
                    method: None,
                    done,
                    total,
                })
            };
            let f = self.faithfulness(
                &tok,
                a.target.token.id,
                &scores,
                spec,
                plan.forward,
                &mut progress,
            )?;
            emit(StreamEvent::Faithfulness { result: f })?;
        }
        emit(StreamEvent::Done)?;
        Ok(a.seed)
    }

    /// Forward pass, prediction, target, and every method's backward pass on `ids`;
    /// emits `stage`, `progress`, `prediction`, `method`, `lens` and `candidate` events.
    /// `req`'s prompt is not read. One forward pass serves every method; methods with the
    /// same [`Pass`](crate::Pass) share it.
    fn attribute(
        &self,
        ids: &[u32],
        req: &ExplainRequest,
        plan: Plan,
        emit: &mut dyn FnMut(StreamEvent) -> Result<()>,
    ) -> Result<Attributed> {
        let saved = self.forward_saved(ids, plan, emit)?;
        let embeds = saved.embeddings().clone();
        let last = ids.len() - 1;
        let mut logits: Vec<f32> = self
            .model
            .logits_at(&saved, &[last], plan.forward)?
            .squeeze(0)?
            .to_vec1()?;
        if plan.forward != Products::F32 {
            self.exact_top(req, &saved, &mut logits, plan)?;
        }
        let (prediction, argmax) = self.prediction(&logits, req.top_k);
        let target = self.requested_target(req, &saved, &logits, argmax, plan)?;
        let (target_id, contrast_id) = (target.token.id, target.contrast.as_ref().map(|c| c.id));
        let seed = seed_scale(req, &target);
        emit(StreamEvent::Prediction {
            prediction: prediction.clone(),
            target: target.clone(),
        })?;
        let (mut methods, mut ranked) = (BTreeMap::new(), BTreeMap::new());
        let mut passes = Passes::new();
        for &method in &req.methods {
            let out = passes.get_or_run(method.runs().pass, || {
                emit(stage(Stage::Backward, Some(method)))?;
                let mut progress = layer_progress(emit, Stage::Backward, Some(method));
                let mut seeds = |s: &Saved, values: bool| {
                    let logits = self.logits_on(s, &saved, &logits, last, plan)?;
                    let seed = self.target_seed(s, last, &target, &logits, seed, plan)?;
                    let value = values.then(|| self.value_at(s, &logits, &target, plan));
                    Ok(vec![(seed, value.transpose()?)])
                };
                let pass = (method.runs().pass, methods::inside::Inside::of(req));
                self.run_pass(pass, &saved, &mut seeds, plan, &mut progress)
            })?;
            let result = methods::result(method, &embeds, out, 0, seed, &target)?;
            let ablated = req.ablation.as_ref().filter(|a| a.asks(method));
            if let (Some(a), Some(c)) = (ablated, &out.inside) {
                let r = method.runs().reduction;
                ranked.insert(method, c.ranking(r, 0, a.units));
            }
            emit(StreamEvent::Method {
                method,
                result: result.clone(),
            })?;
            methods.insert(method, result);
        }
        // The lens reads the same forward pass, after the map (it often takes longer than
        // the methods: every layer and position through the output layer).
        if req.lens {
            emit(stage(Stage::Lens, None))?;
            let lens = {
                let mut progress = layer_progress(emit, Stage::Lens, None);
                self.lens(&saved, target.token.id, plan.forward, &mut progress)?
            };
            emit(StreamEvent::Lens { lens })?;
        }
        // A span's candidates would be other spans: none.
        if req.explain_candidates && req.span.is_none() {
            let others: Vec<u32> = prediction
                .top
                .iter()
                .map(|c| c.id)
                .filter(|&id| id != target_id && Some(id) != contrast_id)
                .collect();
            let targets = others
                .iter()
                .map(|&id| self.target(id, contrast_id, &logits, req.score))
                .collect();
            self.candidates(&saved, targets, &logits, req, plan, emit)?;
        }
        Ok(Attributed {
            target,
            seed,
            methods,
            ranked,
        })
    }

    /// A method's pass from the saved forward pass over the input, with the plan's products;
    /// a one-pass method keeps what `inside` asks for (neurons, heads).
    pub(crate) fn run_pass(
        &self,
        (pass, inside): (Pass, methods::inside::Inside),
        saved: &Saved,
        seeds: &mut methods::Seeds<'_>,
        plan: Plan,
        progress: &mut crate::models::decoder::Progress<'_>,
    ) -> Result<PassOutput> {
        let products = (plan.attribution, inside);
        methods::run(&self.model, pass, saved, seeds, products, progress)
    }

    /// The logits at `position` of the saved pass `s`: `known` when `s` is `input` (the pass
    /// they came from, with its exact top), else computed with the plan's products (a path
    /// method's interpolated inputs).
    pub(crate) fn logits_on<'a>(
        &self,
        s: &Saved,
        input: &Saved,
        known: &'a [f32],
        position: usize,
        plan: Plan,
    ) -> Result<std::borrow::Cow<'a, [f32]>> {
        if std::ptr::eq(s, input) {
            return Ok(std::borrow::Cow::Borrowed(known));
        }
        let row = self.model.logits_at(s, &[position], plan.forward)?;
        Ok(std::borrow::Cow::Owned(row.squeeze(0)?.to_vec1()?))
    }

    /// The saved forward pass over `ids` with the plan's products.
    pub(crate) fn forward_saved(
        &self,
        ids: &[u32],
        plan: Plan,
        emit: &mut dyn FnMut(StreamEvent) -> Result<()>,
    ) -> Result<Saved> {
        emit(stage(Stage::Forward, None))?;
        let embeds = self.model.embed(ids)?;
        self.model.forward_saved(
            &embeds,
            plan.attribution,
            &mut layer_progress(emit, Stage::Forward, None),
        )
    }

    /// The device the model runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }
}
