//! Qwen3.5's linear-attention layer (Gated DeltaNet), as transformers'
//! `Qwen3_5GatedDeltaNet`: from the normed hidden states `x`,
//!
//! ```text
//! q, k, v = split(silu(causal_conv(in_proj_qkv x)))      depthwise, `kernel` taps
//! q, k    = l2norm(q), l2norm(k)   per key head, repeated to the value heads; q · dk^-½
//! β       = σ(in_proj_b x);  g = −exp(A_log) · softplus(in_proj_a x + dt_bias)
//! o       = gated_delta(q, k, v, g, β)                   `models::gated_delta`
//! y       = out_proj(rmsnorm(o) · w ⊙ silu(in_proj_z x))  per value head
//! ```
//!
//! (which key head each value head reads, and how the rate is stored, as the file's
//! [`DeltaNetLayout`] says). The saving forward, the explicit backward (each point where a caller may take the
//! derivative otherwise through [`Derivatives`]: the convolution's SiLU, the l2 and RMS norms,
//! the delta update's products, the output gate as the MLP's gate) and the cached step of generation (the convolution's last inputs and the
//! states carried between tokens).

use super::WeightSource;
use crate::kernels::Products;
use crate::models::config::{DeltaNet, DeltaNetLayout};
use crate::models::gated::sigmoid;
use crate::models::gated_delta::{self, Dims, Inputs};
use crate::models::linear::Linear;
use crate::models::{rms_norm, Activation, Derivatives};
use candle_core::{DType, Result, Tensor};

/// transformers' ε of the l2 norms of q and k.
const L2_EPS: f64 = 1e-6;

/// One Gated DeltaNet layer (the module's documentation).
#[derive(Debug, Clone)]
pub struct GatedDeltaNet {
    in_qkv: Linear,
    in_z: Linear,
    in_b: Linear,
    in_a: Linear,
    out_proj: Linear,
    /// The convolution's taps, `(channels, kernel)`, f32.
    conv: Tensor,
    /// `exp(A_log)`, `(value_heads,)`, f32.
    rate: Tensor,
    /// `(value_heads,)`, f32.
    dt_bias: Tensor,
    /// The output norm's weight, `(value_dim,)`, f32.
    norm: Tensor,
    /// `1/√key_dim` per value: the l2 norm as an RMSNorm of ε / key_dim.
    l2_weight: Tensor,
    shape: DeltaNet,
    eps: f64,
}

/// What the backward pass reads of a saved forward.
#[derive(Debug)]
pub struct SavedDeltaNet {
    /// The convolution's output before its SiLU, `(seq, channels)`.
    pre: Tensor,
    /// q and k per key head before their l2 norms, `(seq, key_heads, key_dim)`.
    q_raw: Tensor,
    k_raw: Tensor,
    /// The delta update's inputs, `(value_heads, seq, ·)`.
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    g: Vec<f32>,
    beta: Vec<f32>,
    /// `in_proj_a x + dt_bias`, `(seq, value_heads)`.
    a: Tensor,
    /// The delta update's output, its norm and the gate's input, `(seq, value_heads,
    /// value_dim)`.
    core: Tensor,
    normed: Tensor,
    z: Tensor,
}

/// A layer's state between generation steps: the convolution's last `kernel − 1` inputs and
/// the delta update's states.
#[derive(Debug, Clone, Default)]
pub struct DeltaNetCache {
    tail: Option<Tensor>,
    states: Option<Vec<f32>>,
}

impl GatedDeltaNet {
    /// The layer under prefix `p` (`model.layers.0.linear_attn`).
    pub fn load(
        w: &mut dyn WeightSource,
        p: &str,
        shape: DeltaNet,
        eps: f64,
    ) -> crate::Result<Self> {
        let f32_of = |w: &mut dyn WeightSource, n: &str| -> crate::Result<Tensor> {
            Ok(w.get(&format!("{p}.{n}"))?.to_dtype(DType::F32)?)
        };
        let linear = |w: &mut dyn WeightSource, n: &str| -> crate::Result<Linear> {
            Ok(Linear::new(w.get_matrix(&format!("{p}.{n}.weight"))?))
        };
        if shape.kernel == 0
            || shape.key_heads == 0
            || !shape.value_heads.is_multiple_of(shape.key_heads)
        {
            return Err(candle_core::Error::Msg(format!(
                "{p}: {shape:?} cannot be a Gated DeltaNet (a kernel of at least 1 tap, value \
                 heads a multiple of the key heads)"
            ))
            .into());
        }
        let conv = f32_of(w, "conv1d.weight")?;
        let conv = conv.reshape((shape.channels(), shape.kernel))?;
        let rate = match shape.layout {
            DeltaNetLayout::HuggingFace => f32_of(w, "A_log")?.exp()?,
            DeltaNetLayout::LlamaCpp => f32_of(w, "A_log")?.neg()?,
        };
        let dev = rate.device().clone();
        let l2 = (shape.key_dim as f32).powf(-0.5);
        Ok(GatedDeltaNet {
            in_qkv: linear(w, "in_proj_qkv")?,
            in_z: linear(w, "in_proj_z")?,
            in_b: linear(w, "in_proj_b")?,
            in_a: linear(w, "in_proj_a")?,
            out_proj: linear(w, "out_proj")?,
            conv,
            rate,
            dt_bias: f32_of(w, "dt_bias")?,
            norm: f32_of(w, "norm.weight")?,
            l2_weight: Tensor::full(l2, shape.key_dim, &dev)?,
            shape,
            eps,
        })
    }

    /// Whether its matrices keep quantized blocks.
    pub(super) fn has_blocks(&self) -> bool {
        self.out_proj.has_blocks()
    }

    /// Bytes a decoding step reads of its five matrices.
    pub(super) fn bytes_read(&self, p: Products) -> u64 {
        [
            &self.in_qkv,
            &self.in_z,
            &self.in_b,
            &self.in_a,
            &self.out_proj,
        ]
        .iter()
        .map(|w| w.bytes_read(p))
        .sum()
    }

    fn dims(&self, len: usize) -> Dims {
        Dims {
            heads: self.shape.value_heads,
            len,
            dk: self.shape.key_dim,
            dv: self.shape.value_dim,
        }
    }

    /// The convolution, before its SiLU, of `padded`: `kernel − 1` earlier inputs (or
    /// zeros), then the pass's `len`, `(kernel − 1 + len, channels)`.
    fn convolve(&self, padded: &Tensor, len: usize) -> Result<Tensor> {
        let mut out = Tensor::zeros((len, padded.dim(1)?), DType::F32, padded.device())?;
        for j in 0..self.shape.kernel {
            let tap = self.conv.narrow(1, j, 1)?.t()?;
            out = (out + padded.narrow(0, j, len)?.broadcast_mul(&tap)?)?;
        }
        Ok(out)
    }

    /// The layer on `x` `(seq, hidden)` from the cache's state (a fresh one for a whole
    /// sequence), with what its backward reads.
    fn run(
        &self,
        x: &Tensor,
        p: Products,
        cache: &DeltaNetCache,
    ) -> Result<(Tensor, SavedDeltaNet, DeltaNetCache)> {
        let s = self.shape;
        let len = x.dim(0)?;
        let proj = Linear::forward_many(&[&self.in_qkv, &self.in_z, &self.in_b, &self.in_a], x, p)?;
        let [qkv, z, b, a] = &proj[..] else {
            candle_core::bail!("four projections expected");
        };
        let qkv = qkv.to_dtype(DType::F32)?;
        let before = match &cache.tail {
            Some(t) => t.clone(),
            None => Tensor::zeros((s.kernel - 1, s.channels()), DType::F32, x.device())?,
        };
        let padded = Tensor::cat(&[&before, &qkv], 0)?;
        let pre = self.convolve(&padded, len)?;
        let tail = padded.narrow(0, len, s.kernel - 1)?;
        let mixed = Activation::Silu.apply(&pre)?;
        let kd = s.key_heads * s.key_dim;
        let q_raw = mixed
            .narrow(1, 0, kd)?
            .reshape((len, s.key_heads, s.key_dim))?;
        let k_raw = mixed
            .narrow(1, kd, kd)?
            .reshape((len, s.key_heads, s.key_dim))?;
        let v = mixed.narrow(1, 2 * kd, s.value_heads * s.value_dim)?;
        let v = v.reshape((len, s.value_heads, s.value_dim))?;
        let per_value = |t: &Tensor, scale: f64| -> Result<Vec<f32>> {
            let t = rms_norm(t, &self.l2_weight, L2_EPS / s.key_dim as f64)?;
            let r = s.value_heads / s.key_heads;
            let t = match s.layout {
                DeltaNetLayout::HuggingFace => {
                    t.unsqueeze(2)?
                        .broadcast_as((len, s.key_heads, r, s.key_dim))?
                }
                DeltaNetLayout::LlamaCpp => {
                    t.unsqueeze(1)?
                        .broadcast_as((len, r, s.key_heads, s.key_dim))?
                }
            };
            let t = (t
                .reshape((len, s.value_heads, s.key_dim))?
                .transpose(0, 1)?
                * scale)?;
            t.flatten_all()?.to_vec1()
        };
        let qv = per_value(&q_raw, (s.key_dim as f64).powf(-0.5))?;
        let kv = per_value(&k_raw, 1.0)?;
        let vv = v.transpose(0, 1)?.flatten_all()?.to_vec1()?;
        let beta = sigmoid(&b.to_dtype(DType::F32)?)?;
        let a = a.to_dtype(DType::F32)?.broadcast_add(&self.dt_bias)?;
        let g = softplus(&a)?.broadcast_mul(&self.rate)?.neg()?;
        let to_heads = |t: &Tensor| -> Result<Vec<f32>> { t.t()?.flatten_all()?.to_vec1() };
        let (gv, bv) = (to_heads(&g)?, to_heads(&beta)?);
        let inputs = Inputs {
            dims: self.dims(len),
            q: &qv,
            k: &kv,
            v: &vv,
            g: &gv,
            beta: &bv,
        };
        let (core, states) = gated_delta::forward(&inputs, cache.states.as_deref())
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let core = Tensor::from_vec(core, (s.value_heads, len, s.value_dim), x.device())?
            .transpose(0, 1)?
            .contiguous()?;
        let normed = rms_norm(&core, &self.norm, self.eps)?;
        let z = z
            .to_dtype(DType::F32)?
            .reshape((len, s.value_heads, s.value_dim))?;
        let y = Activation::Silu.apply(&z)?.mul(&normed)?;
        let y = y.reshape((len, ()))?.to_dtype(x.dtype())?;
        let out = self.out_proj.forward(&y, p)?;
        let saved = SavedDeltaNet {
            pre,
            q_raw,
            k_raw,
            q: qv,
            k: kv,
            v: vv,
            g: gv,
            beta: bv,
            a,
            core,
            normed,
            z,
        };
        let next = DeltaNetCache {
            tail: Some(tail),
            states: Some(states),
        };
        Ok((out, saved, next))
    }

    /// The output on `x` `(seq, hidden)`, with what the backward reads.
    pub fn forward_saved(&self, x: &Tensor, p: Products) -> Result<(Tensor, SavedDeltaNet)> {
        let (out, saved, _) = self.run(x, p, &DeltaNetCache::default())?;
        Ok((out, saved))
    }

    /// The output on `x` `(new positions, hidden)` after the positions `cache` holds; the
    /// cache moves past them.
    pub fn forward_cached(
        &self,
        x: &Tensor,
        cache: &mut DeltaNetCache,
        p: Products,
    ) -> Result<Tensor> {
        let (out, _, next) = self.run(x, p, cache)?;
        *cache = next;
        Ok(out)
    }

    /// Cotangents `dy: (b, seq, hidden)` of the output carried to the input, with `dv`'s derivatives.
    pub fn backward(
        &self,
        s: &SavedDeltaNet,
        dy: &Tensor,
        dv: &dyn Derivatives,
        p: Products,
    ) -> Result<Tensor> {
        let sh = self.shape;
        let (b, len, _) = dy.dims3()?;
        let dtype = dy.dtype();
        let (hv, dk, dvw) = (sh.value_heads, sh.key_dim, sh.value_dim);
        let dyc = self.out_proj.vjp(dy, p)?.to_dtype(DType::F32)?;
        let dyc = dyc.reshape((b, len, hv, dvw))?;
        // The output gate, as the MLP's: silu(z) ⊙ normed.
        let (dz, dnormed) = dv.gated_vjp(&s.z, &s.normed, Activation::Silu, &dyc)?;
        let dcore = dv.rms_norm_vjp(&s.core, &self.norm, self.eps, &dnormed)?;
        let d_out: Vec<f32> = dcore.transpose(1, 2)?.flatten_all()?.to_vec1()?;
        let inputs = Inputs {
            dims: self.dims(len),
            q: &s.q,
            k: &s.k,
            v: &s.v,
            g: &s.g,
            beta: &s.beta,
        };
        let gr = gated_delta::backward(&inputs, &d_out, &dv.delta_scales())
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let dev = dy.device();
        // Back from the value heads to the key heads, through the l2 norms.
        let per_key = |d: Vec<f32>, raw: &Tensor, scale: f64| -> Result<Tensor> {
            let r = hv / sh.key_heads;
            let d = match sh.layout {
                DeltaNetLayout::HuggingFace => {
                    Tensor::from_vec(d, (b, sh.key_heads, r, len, dk), dev)?.sum(2)?
                }
                DeltaNetLayout::LlamaCpp => {
                    Tensor::from_vec(d, (b, r, sh.key_heads, len, dk), dev)?.sum(1)?
                }
            };
            let d = (d.transpose(1, 2)? * scale)?;
            let d = dv.rms_norm_vjp(raw, &self.l2_weight, L2_EPS / dk as f64, &d)?;
            d.reshape((b, len, sh.key_heads * dk))
        };
        let dq = per_key(gr.q, &s.q_raw, (dk as f64).powf(-0.5))?;
        let dkk = per_key(gr.k, &s.k_raw, 1.0)?;
        let dvv = Tensor::from_vec(gr.v, (b, hv, len, dvw), dev)?
            .transpose(1, 2)?
            .reshape((b, len, hv * dvw))?;
        let dmixed = Tensor::cat(&[dq, dkk, dvv], 2)?;
        let dpre = dv.activation_vjp(&s.pre, Activation::Silu, &dmixed)?;
        // The convolution's transpose: input t feeds outputs t … t + kernel − 1.
        let k = sh.kernel;
        let channels = sh.channels();
        let pad = Tensor::zeros((b, k - 1, channels), DType::F32, dev)?;
        let padded = Tensor::cat(&[&dpre, &pad], 1)?;
        let mut dqkv = Tensor::zeros((b, len, channels), DType::F32, dev)?;
        for j in 0..k {
            let tap = self.conv.narrow(1, j, 1)?.t()?;
            dqkv = (dqkv + padded.narrow(1, k - 1 - j, len)?.broadcast_mul(&tap)?)?;
        }
        // β = σ(b): σ' = β(1 − β); g = −rate · softplus(a): softplus' = σ(a).
        let beta = Tensor::from_slice(&s.beta, (hv, len), dev)?.t()?;
        let dbeta = Tensor::from_vec(gr.beta, (b, hv, len), dev)?.transpose(1, 2)?;
        let db = dbeta.broadcast_mul(&(&beta * beta.affine(-1.0, 1.0)?)?)?;
        let dg = Tensor::from_vec(gr.g, (b, hv, len), dev)?.transpose(1, 2)?;
        let slope = sigmoid(&s.a)?.broadcast_mul(&self.rate)?.neg()?;
        let da = dg.broadcast_mul(&slope)?;
        let mut dx = self.in_qkv.vjp(&dqkv.to_dtype(dtype)?, p)?;
        dx = (dx + self.in_b.vjp(&db.to_dtype(dtype)?, p)?)?;
        if dv.delta_scales().decay != 0.0 {
            dx = (dx + self.in_a.vjp(&da.to_dtype(dtype)?, p)?)?;
        }
        if let Some(dz) = dz {
            let dz = dz.reshape((b, len, hv * dvw))?.to_dtype(dtype)?;
            dx = (dx + self.in_z.vjp(&dz, p)?)?;
        }
        Ok(dx)
    }
}

/// `ln(1 + eˣ)`, stable for large |x|: `max(x, 0) + ln(1 + e^-|x|)`.
fn softplus(x: &Tensor) -> Result<Tensor> {
    x.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()
}
