//! The decoder shared by every family: decoder layers with grouped-query attention, rotary
//! position embeddings, a gated MLP and RMSNorm, differentiable from the input embeddings.
//! What differs between families is data in [`Config`] (biases, q/k norms, where the norms
//! sit: before, around or after each block; scaled embeddings, activations, sliding
//! windows); each family's module fills it from `config.json` or GGUF metadata.
//!
//! Follows transformers' modeling files (`modeling_llama.py`, `modeling_qwen2.py`,
//! `modeling_qwen3.py`, `modeling_gemma3.py`, `modeling_olmo2.py`). Weights (a [`Weight`]
//! each: dense, or kept as the file stores them and converted per use) are constants: only
//! activations get gradients.

use super::weight::Weight;
use super::Derivatives;
use crate::kernels::Products;
use candle_core::{DType, Device, Result, Tensor, Var};

pub use super::config::{Arch, Config, WeightSource};
pub use backward::Gradients;
pub use cached::KvCache;
pub use gated_deltanet::{DeltaNetCache, GatedDeltaNet, SavedDeltaNet};
pub use saved::{Progress, Saved, Seed};
pub use watch::{Point, Watch};

mod backward;
mod batch;
mod cached;
mod dense_and_experts;
mod ffn;
mod gated_deltanet;
mod lens;
mod moe;
mod per_layer;
mod rotary;
mod saved;
mod self_attention;
mod shared_kv;
mod steer;
mod units;
mod watch;

pub(crate) use dense_and_experts::NORMS as DENSE_AND_EXPERTS_NORMS;
use ffn::Ffn;
use per_layer::{LayerInputs, PerLayerBlock, PerLayerInputs, SavedPerLayer};
use rotary::Rotary;
use self_attention::Attention;

/// A layer's norms where its family has them (see [`DecoderLayer::norms`]).
fn load_layer_norms(
    w: &mut dyn WeightSource,
    p: &str,
    a: &Arch,
) -> crate::Result<[Option<Tensor>; 4]> {
    let mut out: [Option<Tensor>; 4] = Default::default();
    for (slot, name) in out.iter_mut().zip(a.norms.names()) {
        if let Some(n) = name {
            *slot = Some(load_norm(w, &format!("{p}.{n}.weight"), a)?);
        }
    }
    Ok(out)
}

/// A layer's output scale: one finite, non-zero number (a zero would erase the stream, and
/// the backward pass divides by it).
fn layer_scalar(w: &mut dyn WeightSource, name: &str) -> crate::Result<f64> {
    let v = w
        .get(name)?
        .to_dtype(DType::F64)?
        .flatten_all()?
        .to_vec1::<f64>()?;
    match v[..] {
        [s] if s.is_finite() && s != 0.0 => Ok(s),
        _ => Err(candle_core::Error::Msg(format!(
            "{}: a layer's output scale must be one finite, non-zero number, got {v:?}",
            w.file_name(name)
        ))
        .into()),
    }
}

/// A norm weight as the model multiplies by it: `1 + w` for Gemma's Hugging Face layout.
pub(super) fn load_norm(w: &mut dyn WeightSource, name: &str, a: &Arch) -> crate::Result<Tensor> {
    let t = w.get(name)?;
    Ok(if a.norm_plus_one { (t + 1.0)? } else { t })
}

/// What mixes a layer's positions: attention, or a Gated DeltaNet (Qwen3.5's linear
/// attention) — a layer type each, chosen per layer by the family's configuration.
#[derive(Debug, Clone)]
enum Mixer {
    Attention(Attention),
    DeltaNet(GatedDeltaNet),
}

#[derive(Debug, Clone)]
struct DecoderLayer {
    mixer: Mixer,
    /// The feed-forward block: a gated MLP or sparse experts.
    mlp: Ffn,
    /// The norms before and after attention, then before and after the MLP, where the
    /// family has them ([`NormPlacement`]).
    norms: [Option<Tensor>; 4],
    /// The number the layer's output is multiplied by, where it has one (Gemma 4).
    scalar: Option<f64>,
    /// The gated block that adds the layer's own input, where the model has them (Gemma 4).
    per_layer: Option<PerLayerBlock>,
}

impl DecoderLayer {
    fn load(w: &mut dyn WeightSource, cfg: &Config, i: usize) -> crate::Result<Self> {
        let p = format!("model.layers.{i}");
        let a = &cfg.arch;
        let mixer = match cfg.arch.delta_net.filter(|_| cfg.is_linear(i)) {
            Some(d) => Mixer::DeltaNet(GatedDeltaNet::load(
                w,
                &format!("{p}.linear_attn"),
                d,
                cfg.rms_norm_eps,
            )?),
            None => Mixer::Attention(Attention::load(w, &format!("{p}.self_attn"), cfg, i)?),
        };
        let scalar = match a.layer_scalar {
            true => Some(layer_scalar(w, &format!("{p}.layer_scalar"))?),
            false => None,
        };
        let per_layer = match a.per_layer_input {
            Some(_) => Some(PerLayerBlock::load(w, &p, cfg)?),
            None => None,
        };
        let mut norms = load_layer_norms(w, &p, a)?;
        Ok(DecoderLayer {
            mixer,
            mlp: Ffn::load(w, &p, cfg, i, &mut norms[2])?,
            norms,
            scalar,
            per_layer,
        })
    }

    /// The layer's attention, where it attends (a Gated DeltaNet layer does not).
    fn attention(&self) -> Option<&Attention> {
        match &self.mixer {
            Mixer::Attention(a) => Some(a),
            Mixer::DeltaNet(_) => None,
        }
    }

    /// The index of its RoPE table (a Gated DeltaNet layer has none: the first).
    fn rope(&self) -> usize {
        self.attention().map_or(0, |a| a.rope)
    }

    /// The layer's wiring, the one place it is written: two residual blocks, attention then
    /// the MLP, each `h + post(block(pre(h)))` with the norms the family has. The graph
    /// forward, the saving forward and the backward all walk it.
    fn residual_blocks(&self) -> [Residual<'_>; 2] {
        let [a_pre, a_post, m_pre, m_post] = &self.norms;
        [
            Residual {
                pre: a_pre.as_ref(),
                block: Block::Attention,
                post: a_post.as_ref(),
            },
            Residual {
                // None where the block norms its input itself (it took the norm).
                pre: m_pre.as_ref(),
                block: Block::Mlp,
                post: m_post.as_ref(),
            },
        ]
    }

    /// One layer through its residual blocks, then its own input's block where it has one
    /// (`pli`, `(seq, width)`), then its scale; `run` computes a block on its normed input.
    /// Returns the output and what the backward pass reads of the wiring.
    fn walk(
        &self,
        mut h: Tensor,
        (eps, pli, p): (f64, Option<&Tensor>, Products),
        dv: &dyn Derivatives,
        mut run: impl FnMut(Block, &Tensor) -> Result<Tensor>,
    ) -> Result<Walked> {
        let mut blocks = Vec::with_capacity(2);
        for r in self.residual_blocks() {
            let x = match r.pre {
                Some(w) => dv.rms_norm(&h, w, eps)?,
                None => h.clone(),
            };
            let y = run(r.block, &x)?;
            let (y, raw) = match r.post {
                Some(w) => (dv.rms_norm(&y, w, eps)?, Some(y)),
                None => (y, None),
            };
            blocks.push(BlockIo {
                input: h.clone(),
                raw,
            });
            h = (h + y)?;
        }
        let per_layer = match (&self.per_layer, pli) {
            (Some(b), Some(pli)) => {
                let (out, saved) = b.forward(&h, pli, eps, dv, p)?;
                h = out;
                Some(saved)
            }
            (None, None) => None,
            _ => {
                candle_core::bail!("a layer's own input without its block, or its block without it")
            }
        };
        if let Some(s) = self.scalar {
            h = (h * s)?;
        }
        Ok(Walked {
            out: h,
            blocks,
            per_layer,
        })
    }

    /// One layer; `attend` runs the attention block on its normed input, the MLP multiplies
    /// with products `p`; `pli`: the layer's own input, where the model has them.
    fn forward(
        &self,
        h: Tensor,
        (eps, pli): (f64, Option<&Tensor>),
        dv: &dyn Derivatives,
        p: Products,
        mut attend: impl FnMut(&Tensor) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let run = |block: Block, x: &Tensor| match block {
            Block::Attention => attend(x),
            Block::Mlp => self.mlp.forward(x, dv, p),
        };
        Ok(self.walk(h, (eps, pli, p), dv, run)?.out)
    }
}

/// A layer's output, and what its backward pass reads of the wiring.
struct Walked {
    out: Tensor,
    /// Per residual block.
    blocks: Vec<BlockIo>,
    /// The own input's block's.
    per_layer: Option<SavedPerLayer>,
}

impl Mixer {
    /// Whether its matrices keep quantized blocks.
    fn has_blocks(&self) -> bool {
        match self {
            Mixer::Attention(a) => a.o_proj.has_blocks(),
            Mixer::DeltaNet(d) => d.has_blocks(),
        }
    }

    /// Bytes a decoding step reads of its matrices.
    fn bytes_read(&self, p: Products) -> u64 {
        match self {
            Mixer::Attention(a) => {
                let mut ws = vec![&a.q_proj.linear, &a.o_proj];
                if let self_attention::KeysValues::Own { k_proj, v_proj } = &a.kv {
                    ws.push(&k_proj.linear);
                    ws.extend(v_proj.as_ref().map(|v| &v.linear));
                }
                ws.iter().map(|w| w.bytes_read(p)).sum()
            }
            Mixer::DeltaNet(d) => d.bytes_read(p),
        }
    }
}

/// A layer's two kinds of block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block {
    /// Self-attention.
    Attention,
    /// The (gated) MLP.
    Mlp,
}

/// One residual block of a layer: `h + post(block(pre(h)))`.
struct Residual<'a> {
    /// The norm of its input, if any.
    pre: Option<&'a Tensor>,
    block: Block,
    /// The norm of its output, if any.
    post: Option<&'a Tensor>,
}

/// What a block's backward pass reads of the wiring around it.
#[derive(Debug)]
struct BlockIo {
    /// The residual stream the block reads and adds to.
    input: Tensor,
    /// Its output before the post-norm (only where there is one).
    raw: Option<Tensor>,
}

/// What a forward pass returns.
#[derive(Debug)]
pub struct ForwardOutput {
    /// The final-norm hidden state of the last position, `(hidden,)`.
    pub last_hidden: Tensor,
    /// Every decoder layer's output `(seq, hidden)` (the residual stream after the layer).
    pub layer_outputs: Vec<Tensor>,
    /// Zero variables added to each layer output; their gradients are dy/dh_l.
    pub taps: Vec<Var>,
}

/// A decoder up to the final norm, plus the (possibly tied) output projection.
#[derive(Debug, Clone)]
pub struct Decoder {
    cfg: Config,
    embed_tokens: Weight,
    layers: Vec<DecoderLayer>,
    norm: Tensor,
    lm_head: Weight, // (vocab, hidden)
    /// Global RoPE, then (Gemma 3) the local layers' RoPE.
    rotary: Vec<Rotary>,
    /// The layers' own inputs, where the model has them (Gemma 4).
    per_layer: Option<PerLayerInputs>,
}

impl Decoder {
    /// Loads weights by their Hugging Face names.
    pub fn load(cfg: Config, w: &mut dyn WeightSource, dev: &Device) -> crate::Result<Self> {
        let embed_tokens = w.get_matrix("model.embed_tokens.weight")?;
        let dtype = embed_tokens.compute_dtype();
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| DecoderLayer::load(w, &cfg, i))
            .collect::<crate::Result<Vec<_>>>()?;
        let norm = load_norm(w, "model.norm.weight", &cfg.arch)?;
        let lm_head = if w.contains("lm_head.weight") {
            w.get_matrix("lm_head.weight")?
        } else {
            embed_tokens.clone()
        };
        let rotary = rotary::tables(&cfg, dtype, dev)?;
        let per_layer = match cfg.arch.per_layer_input {
            Some(width) => Some(PerLayerInputs::load(w, &cfg, width)?),
            None => None,
        };
        Ok(Decoder {
            cfg,
            embed_tokens,
            layers,
            norm,
            lm_head,
            rotary,
            per_layer,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The inputs of token ids, which gradients are taken with respect to: their input
    /// embeddings `(seq, hidden)` (scaled, for Gemma), and where the layers have inputs of
    /// their own (Gemma 4), the tokens' rows of their table beside them, `(seq, hidden +
    /// layers · width)` ([`Decoder::input_width`]).
    pub fn embed(&self, ids: &[u32]) -> Result<Tensor> {
        let e = self.embed_tokens.gather(ids)?;
        let e = match self.cfg.arch.embed_scale {
            // transformers casts the scale to the weights' dtype first.
            Some(s) => (e * (s as f32) as f64)?,
            None => e,
        };
        match &self.per_layer {
            Some(pl) => Tensor::cat(&[e, pl.rows(ids)?], 1),
            None => Ok(e),
        }
    }

    /// Values of a token's input row: `hidden_size`, and the layers' own inputs' table row
    /// where the model has one.
    pub fn input_width(&self) -> usize {
        self.cfg.hidden_size + self.per_layer.as_ref().map_or(0, PerLayerInputs::row_width)
    }

    /// Input rows `(seq, input_width)` split into the residual stream's start `(seq,
    /// hidden)` and the layers' own inputs, where the model has them.
    fn split_input(
        &self,
        x: &Tensor,
        dv: &dyn Derivatives,
        p: Products,
    ) -> Result<(Tensor, Option<LayerInputs>)> {
        match &self.per_layer {
            Some(pl) => {
                let (e, inputs) = pl.split(x, dv, p)?;
                Ok((e, Some(inputs)))
            }
            None => Ok((x.clone(), None)),
        }
    }

    /// Whether the model's matrices keep quantized blocks (a quantized GGUF), which
    /// forward-only passes can read as stored.
    pub fn has_stored_blocks(&self) -> bool {
        self.lm_head.has_blocks() || self.layers.first().is_some_and(|l| l.mixer.has_blocks())
    }

    /// Bytes of weight matrices one decoding step reads with products `p` (every layer's
    /// projections and the output layer; the embedding reads one row).
    pub fn decode_bytes(&self, p: Products) -> u64 {
        let layers: u64 = self
            .layers
            .iter()
            .map(|l| {
                let own = l.per_layer.as_ref().map_or(0, |b| b.bytes_read(p));
                l.mixer.bytes_read(p) + l.mlp.bytes_read(p) + own
            })
            .sum();
        layers + self.lm_head.bytes_read(p)
    }

    /// The output projection `(vocab, hidden)`.
    pub fn lm_head(&self) -> &Weight {
        &self.lm_head
    }

    /// The output head on residual rows `h: (rows, hidden)`: the final norm, `lm_head` with
    /// products `p`, the soft-cap; `(rows, vocab)` logits in f32.
    pub fn head(&self, h: &Tensor, p: Products) -> Result<Tensor> {
        let x = super::norm::rms_norm(h, &self.norm, self.cfg.rms_norm_eps)?;
        self.softcap(&self.lm_head.forward(&x, p)?)?
            .to_dtype(DType::F32)
    }

    /// Final logit soft-capping `c·tanh(x / c)`, when configured.
    pub fn softcap(&self, logits: &Tensor) -> Result<Tensor> {
        match self.cfg.arch.final_logit_softcapping {
            Some(c) => (logits / c)?.tanh()? * c,
            None => Ok(logits.clone()),
        }
    }

    /// Runs the decoder from input rows `(seq, input_width)` recording candle's autograd
    /// graph, with `dv`'s derivatives at its points: the independent twin that the tests
    /// hold the explicit backward ([`Decoder::backward`]) against. With `tap_layers`, a zero
    /// variable is added to each layer's output so that a backward pass yields dy/dh_l.
    pub fn forward(
        &self,
        embeds: &Tensor,
        dv: &dyn Derivatives,
        tap_layers: bool,
    ) -> Result<ForwardOutput> {
        let n = embeds.dim(0)?;
        let eps = self.cfg.rms_norm_eps;
        let (mut h, inputs) = self.split_input(embeds, dv, Products::F32)?;
        let mut layer_outputs = Vec::with_capacity(self.layers.len());
        let mut taps = Vec::new();
        let mut shared = shared_kv::SharedKv::default();
        for (i, layer) in self.layers.iter().enumerate() {
            let rot = &self.rotary[layer.rope()];
            let Some(at) = layer.attention() else {
                // The explicit backward's independent check here is PyTorch's autograd
                // (the Gated DeltaNet's reference), not a candle graph.
                candle_core::bail!("the autograd twin has no Gated DeltaNet layer");
            };
            let pli = LayerInputs::of_layer(inputs.as_ref(), i)?;
            let f = |x: &Tensor| at.forward(x, rot, dv, &mut shared);
            h = layer.forward(h, (eps, pli.as_ref()), dv, Products::F32, f)?;
            if tap_layers {
                let tap = Var::zeros(h.shape(), h.dtype(), h.device())?;
                h = (h + tap.as_tensor())?;
                taps.push(tap);
            }
            layer_outputs.push(h.clone());
        }
        let last = h.narrow(0, n - 1, 1)?;
        let last_hidden = dv.rms_norm(&last, &self.norm, eps)?.squeeze(0)?;
        Ok(ForwardOutput {
            last_hidden,
            layer_outputs,
            taps,
        })
    }
}
