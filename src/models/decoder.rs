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

use super::attention::{causal_attention, fast_path, masked_softmax, probabilities};
use super::config::{QkNorm, QueryTemperature};
use super::gated::Activation;
use super::linear::Linear;
use super::weight::Weight;
use super::Derivatives;
use crate::kernels::Products;
use candle_core::{DType, Device, Result, Tensor, Var, D};

pub use super::config::{Arch, Config, WeightSource};
pub use backward::Gradients;
pub use cached::KvCache;
pub use saved::{Progress, Saved, Seed};
pub use watch::{Point, Watch};

mod backward;
mod batch;
mod cached;
mod lens;
mod rotary;
mod saved;
mod steer;
mod units;
mod watch;

use rotary::Rotary;
use steer::{HeadEdits, NeuronEdits};

#[derive(Debug, Clone)]
struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
    act: Activation,
    /// Edited neurons (steering), if any.
    steer: Option<NeuronEdits>,
}

impl Mlp {
    fn load(w: &mut dyn WeightSource, p: &str, act: Activation) -> crate::Result<Self> {
        Ok(Mlp {
            gate_proj: Linear::new(w.get_matrix(&format!("{p}.gate_proj.weight"))?),
            up_proj: Linear::new(w.get_matrix(&format!("{p}.up_proj.weight"))?),
            down_proj: Linear::new(w.get_matrix(&format!("{p}.down_proj.weight"))?),
            act,
            steer: None,
        })
    }

    /// The gate and up projections of `x`.
    fn gate_up(&self, x: &Tensor, p: Products) -> Result<(Tensor, Tensor)> {
        match &Linear::forward_many(&[&self.gate_proj, &self.up_proj], x, p)?[..] {
            [gate, up] => Ok((gate.clone(), up.clone())),
            _ => candle_core::bail!("two projections expected"),
        }
    }

    fn forward(&self, x: &Tensor, dv: &dyn Derivatives, p: Products) -> Result<Tensor> {
        let (gate, up) = self.gate_up(x, p)?;
        let h = self.steered(dv.gated(&gate, &up, self.act)?)?;
        self.down_proj.forward(&h, p)
    }

    /// The hidden units `h` with the edited neurons' edits.
    fn steered(&self, h: Tensor) -> Result<Tensor> {
        match &self.steer {
            Some(s) => s.apply(&h),
            None => Ok(h),
        }
    }
}

/// A projection with an optional bias.
#[derive(Debug, Clone)]
struct Proj {
    linear: Linear,
    bias: Option<Tensor>,
}

impl Proj {
    fn load(w: &mut dyn WeightSource, p: &str, bias: bool) -> crate::Result<Self> {
        Ok(Proj {
            linear: Linear::new(w.get_matrix(&format!("{p}.weight"))?),
            bias: if bias {
                Some(w.get(&format!("{p}.bias"))?)
            } else {
                None
            },
        })
    }

    fn add_bias(&self, y: Tensor) -> Result<Tensor> {
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

#[derive(Debug, Clone)]
struct Attention {
    q_proj: Proj,
    k_proj: Proj,
    v_proj: Proj,
    o_proj: Linear,
    q_norm: Option<Tensor>,
    k_norm: Option<Tensor>,
    /// What the q/k norms normalize (when there are any).
    qk_scope: QkNorm,
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
    scale: f64,
    eps: f64,
    window: Option<usize>,
    /// Index into the model's rotary tables (`rotary::table_of`).
    rope: usize,
    /// Queries scaled up past a length (Ministral 3).
    temperature: Option<QueryTemperature>,
    /// Edited heads (steering), if any.
    steer: Option<HeadEdits>,
}

impl Attention {
    fn load(w: &mut dyn WeightSource, p: &str, cfg: &Config, layer: usize) -> crate::Result<Self> {
        let a = &cfg.arch;
        let norm = |w: &mut dyn WeightSource, n: &str| -> crate::Result<Option<Tensor>> {
            if a.qk_norm.is_some() {
                Ok(Some(load_norm(w, &format!("{p}.{n}.weight"), a)?))
            } else {
                Ok(None)
            }
        };
        let window = a.layer_windows.get(layer).copied().flatten();
        Ok(Attention {
            q_proj: Proj::load(w, &format!("{p}.q_proj"), a.attention_bias)?,
            k_proj: Proj::load(w, &format!("{p}.k_proj"), a.attention_bias)?,
            v_proj: Proj::load(w, &format!("{p}.v_proj"), a.attention_bias)?,
            o_proj: Linear::new(w.get_matrix(&format!("{p}.o_proj.weight"))?),
            q_norm: norm(w, "q_norm")?,
            k_norm: norm(w, "k_norm")?,
            qk_scope: a.qk_norm.unwrap_or(QkNorm::PerHead),
            n_heads: cfg.num_attention_heads,
            n_kv_heads: cfg.num_key_value_heads,
            head_dim: cfg.head_dim(),
            scale: 1.0
                / a.query_pre_attn_scalar
                    .unwrap_or(cfg.head_dim() as f64)
                    .sqrt(),
            eps: cfg.rms_norm_eps,
            window,
            rope: rotary::table_of(cfg, layer),
            temperature: a.query_temperature,
            steer: None,
        })
    }

    /// `(seq, hidden) -> (heads, seq, head_dim)`
    fn split_heads(&self, x: &Tensor, heads: usize) -> Result<Tensor> {
        let n = x.dim(0)?;
        x.reshape((n, heads, self.head_dim))?
            .transpose(0, 1)?
            .contiguous()
    }

    /// Repeats each key/value head for its group of query heads, as transformers' `repeat_kv`.
    fn repeat_kv(&self, x: Tensor) -> Result<Tensor> {
        let rep = self.n_heads / self.n_kv_heads;
        if rep == 1 {
            return Ok(x);
        }
        let (kvh, n, hd) = x.dims3()?;
        x.unsqueeze(1)?
            .broadcast_as((kvh, rep, n, hd))?
            .reshape((kvh * rep, n, hd))
    }

    /// q, k, v for `x`, projected and split into heads (before the q/k norms).
    fn project(&self, x: &Tensor, p: Products) -> Result<(Tensor, Tensor, Tensor)> {
        let projs = [&self.q_proj, &self.k_proj, &self.v_proj];
        let linears = projs.map(|pr| &pr.linear);
        let [q, k, v] = <[Tensor; 3]>::try_from(Linear::forward_many(&linears, x, p)?)
            .map_err(|_| candle_core::Error::Msg("three projections expected".into()))?;
        Ok((
            self.split_heads(&self.q_proj.add_bias(q)?, self.n_heads)?,
            self.split_heads(&self.k_proj.add_bias(k)?, self.n_kv_heads)?,
            self.split_heads(&self.v_proj.add_bias(v)?, self.n_kv_heads)?,
        ))
    }

    /// Projected q and k normed (when the model has q/k norms) and rotated for positions
    /// `offset..`.
    fn position(
        &self,
        q: &Tensor,
        k: &Tensor,
        rot: &Rotary,
        offset: usize,
        dv: &dyn Derivatives,
    ) -> Result<(Tensor, Tensor)> {
        let norm = |t: &Tensor, w: &Option<Tensor>| match w {
            Some(w) => self.on_norm_axis(t, |t| dv.rms_norm(t, w, self.eps)),
            None => Ok(t.clone()),
        };
        let q = norm(q, &self.q_norm)?;
        let k = norm(k, &self.k_norm)?;
        let q = self.heated(rot.apply(&q, offset)?, offset)?;
        Ok((q, rot.apply(&k, offset)?))
    }

    /// Queries `(…, heads, seq, head_dim)` at positions `offset..` times the attention
    /// temperature where it is not 1; also its own transpose, for cotangents.
    fn heated(&self, q: Tensor, offset: usize) -> Result<Tensor> {
        let Some(t) = &self.temperature else {
            return Ok(q);
        };
        let n = q.dim(D::Minus2)?;
        if offset + n <= t.length {
            return Ok(q);
        }
        let f: Vec<f32> = (offset..offset + n).map(|p| t.at(p) as f32).collect();
        let f = Tensor::from_vec(f, (n, 1), q.device())?.to_dtype(q.dtype())?;
        q.broadcast_mul(&f)
    }

    /// Applies `f`, a map along the last axis, to split heads `(…, heads, seq, head_dim)`
    /// along the q/k norm's axis (see [`Attention::onto_norm_axis`]).
    fn on_norm_axis(
        &self,
        t: &Tensor,
        f: impl FnOnce(&Tensor) -> Result<Tensor>,
    ) -> Result<Tensor> {
        self.back_from_norm_axis(&f(&self.onto_norm_axis(t)?)?, t.dims())
    }

    /// Split heads `(…, heads, seq, head_dim)` laid out with the q/k norm's axis last: as
    /// they are for per-head norms, `(…, seq, heads · head_dim)` for all-heads norms.
    pub(super) fn onto_norm_axis(&self, t: &Tensor) -> Result<Tensor> {
        if self.qk_scope == QkNorm::PerHead {
            return Ok(t.clone());
        }
        let dims = t.dims();
        let r = dims.len();
        let mut shape = dims[..r - 3].to_vec();
        shape.extend([dims[r - 2], dims[r - 3] * dims[r - 1]]);
        t.transpose(r - 3, r - 2)?.reshape(shape)
    }

    /// The inverse of [`Attention::onto_norm_axis`], back to split heads of shape `dims`.
    pub(super) fn back_from_norm_axis(&self, t: &Tensor, dims: &[usize]) -> Result<Tensor> {
        if self.qk_scope == QkNorm::PerHead {
            return Ok(t.clone());
        }
        let r = dims.len();
        let mut shape = dims[..r - 3].to_vec();
        shape.extend([dims[r - 2], dims[r - 3], dims[r - 1]]);
        t.reshape(shape)?.transpose(r - 3, r - 2)?.contiguous()
    }

    /// q, k, v for `x` at positions `offset..`: projected, split, normed, rotated.
    fn qkv(
        &self,
        x: &Tensor,
        rot: &Rotary,
        offset: usize,
        dv: &dyn Derivatives,
        p: Products,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let (q, k, v) = self.project(x, p)?;
        let (q, k) = self.position(&q, &k, rot, offset, dv)?;
        Ok((q, k, v))
    }

    /// Graph-free attention of the last `q.dim(1)` positions over all of `k, v: (kv_heads,
    /// m, head_dim)`; `(heads, n, head_dim)`.
    fn attend(&self, q: &Tensor, k: &Tensor, v: &Tensor, p: Products) -> Result<Tensor> {
        let n = q.dim(1)?;
        if fast_path(q) {
            // Grouped-query attention without copying k and v per query head: the g query
            // heads of one key/value head become g·n rows against it.
            let g = self.n_heads / self.n_kv_heads;
            let qg = q.reshape((self.n_kv_heads, g * n, self.head_dim))?;
            let probs = masked_softmax(&p.matmul(&qg, &k.t()?)?, n, self.scale, self.window)?;
            p.matmul(&probs, v)?
                .reshape((self.n_heads, n, self.head_dim))
        } else {
            let (k, v) = (
                self.repeat_kv(k.contiguous()?)?,
                self.repeat_kv(v.contiguous()?)?,
            );
            let probs = probabilities(q, &k.contiguous()?, self.scale, self.window, p)?;
            p.matmul(&probs, &v.contiguous()?)
        }
    }

    fn merge_heads(
        &self,
        o: Tensor,
        n: usize,
        dv: &dyn Derivatives,
        p: Products,
    ) -> Result<Tensor> {
        let o = self.steered(o, dv)?;
        let o = o
            .transpose(0, 1)?
            .reshape((n, self.n_heads * self.head_dim))?;
        self.o_proj.forward(&o, p)
    }

    /// The heads' outputs `o` `(heads, seq, head_dim)` with the edited heads' edits.
    fn steered(&self, o: Tensor, dv: &dyn Derivatives) -> Result<Tensor> {
        match &self.steer {
            Some(s) => s.apply(&o, dv),
            None => Ok(o),
        }
    }

    /// The autograd twin's attention (f32).
    fn forward(&self, x: &Tensor, rot: &Rotary, dv: &dyn Derivatives) -> Result<Tensor> {
        let n = x.dim(0)?;
        let (q, k, v) = self.qkv(x, rot, 0, dv, Products::F32)?;
        let (k, v) = (self.repeat_kv(k)?, self.repeat_kv(v)?);
        let scales = dv.attention_scales();
        let o = causal_attention(&q, &k, &v, self.scale, scales, self.window)?; // (heads, seq, head_dim)
        self.merge_heads(o, n, dv, Products::F32)
    }
}

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

/// A norm weight as the model multiplies by it: `1 + w` for Gemma's Hugging Face layout.
fn load_norm(w: &mut dyn WeightSource, name: &str, a: &Arch) -> crate::Result<Tensor> {
    let t = w.get(name)?;
    Ok(if a.norm_plus_one { (t + 1.0)? } else { t })
}

#[derive(Debug, Clone)]
struct DecoderLayer {
    self_attn: Attention,
    mlp: Mlp,
    /// The norms before and after attention, then before and after the MLP, where the
    /// family has them ([`NormPlacement`]).
    norms: [Option<Tensor>; 4],
}

impl DecoderLayer {
    fn load(w: &mut dyn WeightSource, cfg: &Config, i: usize) -> crate::Result<Self> {
        let p = format!("model.layers.{i}");
        let a = &cfg.arch;
        Ok(DecoderLayer {
            self_attn: Attention::load(w, &format!("{p}.self_attn"), cfg, i)?,
            mlp: Mlp::load(w, &format!("{p}.mlp"), a.activation)?,
            norms: load_layer_norms(w, &p, a)?,
        })
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
                pre: m_pre.as_ref(),
                block: Block::Mlp,
                post: m_post.as_ref(),
            },
        ]
    }

    /// One layer through its residual blocks; `run` computes a block on its normed input.
    /// Returns the output and, per block, what its backward pass reads of the wiring.
    fn walk(
        &self,
        mut h: Tensor,
        eps: f64,
        dv: &dyn Derivatives,
        mut run: impl FnMut(Block, &Tensor) -> Result<Tensor>,
    ) -> Result<(Tensor, Vec<BlockIo>)> {
        let mut io = Vec::with_capacity(2);
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
            io.push(BlockIo {
                input: h.clone(),
                raw,
            });
            h = (h + y)?;
        }
        Ok((h, io))
    }

    /// One layer; `attend` runs the attention block on its normed input, the MLP multiplies
    /// with products `p`.
    fn forward(
        &self,
        h: Tensor,
        eps: f64,
        dv: &dyn Derivatives,
        p: Products,
        mut attend: impl FnMut(&Tensor) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let run = |block: Block, x: &Tensor| match block {
            Block::Attention => attend(x),
            Block::Mlp => self.mlp.forward(x, dv, p),
        };
        Ok(self.walk(h, eps, dv, run)?.0)
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
        Ok(Decoder {
            cfg,
            embed_tokens,
            layers,
            norm,
            lm_head,
            rotary,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Input embeddings `(seq, hidden)` of token ids (scaled, for Gemma: the input of the
    /// first layer, which gradients are taken with respect to).
    pub fn embed(&self, ids: &[u32]) -> Result<Tensor> {
        let e = self.embed_tokens.gather(ids)?;
        match self.cfg.arch.embed_scale {
            // transformers casts the scale to the weights' dtype first.
            Some(s) => e * (s as f32) as f64,
            None => Ok(e),
        }
    }

    /// Whether the model's matrices keep quantized blocks (a quantized GGUF), which
    /// forward-only passes can read as stored.
    pub fn has_stored_blocks(&self) -> bool {
        self.lm_head.has_blocks()
            || self
                .layers
                .first()
                .is_some_and(|l| l.mlp.down_proj.has_blocks())
    }

    /// Bytes of weight matrices one decoding step reads with products `p` (every layer's
    /// projections and the output layer; the embedding reads one row).
    pub fn decode_bytes(&self, p: Products) -> u64 {
        let layers: u64 = self
            .layers
            .iter()
            .map(|l| {
                let a = &l.self_attn;
                [
                    &a.q_proj.linear,
                    &a.k_proj.linear,
                    &a.v_proj.linear,
                    &a.o_proj,
                    &l.mlp.gate_proj,
                    &l.mlp.up_proj,
                    &l.mlp.down_proj,
                ]
                .iter()
                .map(|w| w.bytes_read(p))
                .sum::<u64>()
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

    /// Runs the decoder from input embeddings `(seq, hidden)` recording candle's autograd
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
        let mut h = embeds.clone();
        let mut layer_outputs = Vec::with_capacity(self.layers.len());
        let mut taps = Vec::new();
        for layer in &self.layers {
            let rot = &self.rotary[layer.self_attn.rope];
            h = layer.forward(h, eps, dv, Products::F32, |x| {
                layer.self_attn.forward(x, rot, dv)
            })?;
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
