//! A layer's self-attention block: q, k and v projected (biases and q/k norms where the
//! family has them), rotated, attended with grouped-query heads and a causal (optionally
//! sliding) mask, merged through the output projection. The explicit backward pass is in
//! `backward.rs`; the cached and batched forms in `cached.rs` and `batch.rs`.

use super::rotary::{self, Rotary};
use super::shared_kv::SharedKv;
use super::steer::HeadEdits;
use super::{load_norm, Config, WeightSource};
use crate::kernels::Products;
use crate::models::attention::{causal_attention, fast_path, masked_softmax, probabilities};
use crate::models::config::{QkNorm, QueryTemperature};
use crate::models::gated::sigmoid;
use crate::models::linear::Linear;
use crate::models::Derivatives;
use candle_core::{Result, Tensor, D};

/// A projection with an optional bias.
#[derive(Debug, Clone)]
pub(super) struct Proj {
    pub(super) linear: Linear,
    pub(super) bias: Option<Tensor>,
}

impl Proj {
    pub(super) fn load(w: &mut dyn WeightSource, p: &str, bias: bool) -> crate::Result<Self> {
        Ok(Proj {
            linear: Linear::new(w.get_matrix(&format!("{p}.weight"))?),
            bias: if bias {
                Some(w.get(&format!("{p}.bias"))?)
            } else {
                None
            },
        })
    }

    pub(super) fn add_bias(&self, y: Tensor) -> Result<Tensor> {
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

/// Where a layer's keys and values come from.
#[derive(Debug, Clone)]
pub(super) enum KeysValues {
    /// Its own projections; no value projection where the values are the keys' projection
    /// (Gemma 4's `attention_k_eq_v`: then normed without a weight, not rotated).
    Own { k_proj: Proj, v_proj: Option<Proj> },
    /// An earlier layer's final (normed, rotated) keys and values (Gemma 4's shared layers).
    Shared { from: usize },
}

#[derive(Debug, Clone)]
pub(super) struct Attention {
    pub(super) q_proj: Proj,
    pub(super) kv: KeysValues,
    /// The layer's index, under which later layers find the keys and values it keeps.
    pub(super) index: usize,
    /// Whether later layers read its keys and values.
    pub(super) keeps: bool,
    pub(super) o_proj: Linear,
    pub(super) q_norm: Option<Tensor>,
    pub(super) k_norm: Option<Tensor>,
    /// Values RMS-normed over each head without a weight (Gemma 4's `v_norm`).
    pub(super) v_norm: bool,
    /// What the q/k norms normalize (when there are any).
    pub(super) qk_scope: QkNorm,
    pub(super) n_heads: usize,
    pub(super) n_kv_heads: usize,
    pub(super) head_dim: usize,
    pub(super) scale: f64,
    pub(super) eps: f64,
    pub(super) window: Option<usize>,
    /// Index into the model's rotary tables (`rotary::table_of`).
    pub(super) rope: usize,
    /// Queries scaled up past a length (Ministral 3).
    pub(super) temperature: Option<QueryTemperature>,
    /// Edited heads (steering), if any.
    pub(super) steer: Option<HeadEdits>,
    /// `q_proj` gives each head's queries then its output gate (Qwen3.5): the merged heads
    /// are multiplied by σ(gate).
    pub(super) output_gate: bool,
}

impl Attention {
    pub(super) fn load(
        w: &mut dyn WeightSource,
        p: &str,
        cfg: &Config,
        layer: usize,
    ) -> crate::Result<Self> {
        let a = &cfg.arch;
        let norm = |w: &mut dyn WeightSource, n: &str| -> crate::Result<Option<Tensor>> {
            if a.qk_norm.is_some() {
                Ok(Some(load_norm(w, &format!("{p}.{n}.weight"), a)?))
            } else {
                Ok(None)
            }
        };
        let window = a.layer_windows.get(layer).copied().flatten();
        let head_dim = cfg.head_dim_at(layer);
        let (kv, k_norm) = match cfg.kv_from(layer) {
            Some(from) => (KeysValues::Shared { from }, None),
            None => (
                KeysValues::Own {
                    k_proj: Proj::load(w, &format!("{p}.k_proj"), a.attention_bias)?,
                    v_proj: match cfg.values_from_keys(layer) {
                        true => None,
                        false => Some(Proj::load(w, &format!("{p}.v_proj"), a.attention_bias)?),
                    },
                },
                norm(w, "k_norm")?,
            ),
        };
        Ok(Attention {
            q_proj: Proj::load(w, &format!("{p}.q_proj"), a.attention_bias)?,
            kv,
            index: layer,
            keeps: a.kv_from.contains(&Some(layer)),
            o_proj: Linear::new(w.get_matrix(&format!("{p}.o_proj.weight"))?),
            q_norm: norm(w, "q_norm")?,
            k_norm,
            v_norm: a.value_norm,
            qk_scope: a.qk_norm.unwrap_or(QkNorm::PerHead),
            n_heads: cfg.num_attention_heads,
            n_kv_heads: cfg.kv_heads_at(layer),
            head_dim,
            scale: 1.0 / a.query_pre_attn_scalar.unwrap_or(head_dim as f64).sqrt(),
            eps: cfg.rms_norm_eps,
            window,
            rope: rotary::table_of(cfg, layer),
            temperature: a.query_temperature,
            steer: None,
            output_gate: a.attention_output_gate,
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
    pub(super) fn repeat_kv(&self, x: Tensor) -> Result<Tensor> {
        let rep = self.n_heads / self.n_kv_heads;
        if rep == 1 {
            return Ok(x);
        }
        let (kvh, n, hd) = x.dims3()?;
        x.unsqueeze(1)?
            .broadcast_as((kvh, rep, n, hd))?
            .reshape((kvh * rep, n, hd))
    }

    /// q, k, v for `x`, projected and split into heads (before the q/k norms; no k and v
    /// where the layer reads another's), and the output gate `(seq, heads · head_dim)` before
    /// its σ where the model has one.
    pub(super) fn project(&self, x: &Tensor, p: Products) -> Result<Projected> {
        let mut linears = vec![&self.q_proj.linear];
        if let KeysValues::Own { k_proj, v_proj } = &self.kv {
            linears.push(&k_proj.linear);
            linears.extend(v_proj.as_ref().map(|v| &v.linear));
        }
        let mut outs = Linear::forward_many(&linears, x, p)?.into_iter();
        let mut next = || {
            outs.next()
                .ok_or_else(|| candle_core::Error::Msg("a projection is missing".into()))
        };
        let q = self.q_proj.add_bias(next()?)?;
        let (q, gate) = match self.output_gate {
            true => {
                let n = q.dim(0)?;
                let both = q.reshape((n, self.n_heads, 2, self.head_dim))?;
                let half = |i: usize| -> Result<Tensor> {
                    both.narrow(2, i, 1)?
                        .reshape((n, self.n_heads * self.head_dim))
                };
                (half(0)?, Some(half(1)?))
            }
            false => (q, None),
        };
        let kv = match &self.kv {
            KeysValues::Own { k_proj, v_proj } => {
                let k = self.split_heads(&k_proj.add_bias(next()?)?, self.n_kv_heads)?;
                let v = match v_proj {
                    Some(v_proj) => {
                        self.split_heads(&v_proj.add_bias(next()?)?, self.n_kv_heads)?
                    }
                    None => k.clone(),
                };
                Some((k, v))
            }
            KeysValues::Shared { .. } => None,
        };
        Ok(Projected {
            q: self.split_heads(&q, self.n_heads)?,
            kv,
            gate,
        })
    }

    /// Projected queries normed (when the model has q/k norms), rotated and heated for
    /// positions `offset..`.
    pub(super) fn place_queries(
        &self,
        q: &Tensor,
        rot: &Rotary,
        offset: usize,
        dv: &dyn Derivatives,
    ) -> Result<Tensor> {
        let q = self.normed(q, &self.q_norm, dv)?;
        self.heated(rot.apply(&q, offset)?, offset)
    }

    /// Projected keys and values as attention reads them: keys normed (when the model has
    /// q/k norms) and rotated for positions `offset..`, values normed where the model norms
    /// them.
    pub(super) fn place_keys_values(
        &self,
        (k, v): (&Tensor, &Tensor),
        rot: &Rotary,
        offset: usize,
        dv: &dyn Derivatives,
    ) -> Result<(Tensor, Tensor)> {
        let k = rot.apply(&self.normed(k, &self.k_norm, dv)?, offset)?;
        Ok((k, self.values(v, dv)?))
    }

    /// A pass's own keys and values placed as attention reads them (none where the layer
    /// reads another's).
    pub(super) fn place_own(
        &self,
        pr: &Projected,
        rot: &Rotary,
        offset: usize,
        dv: &dyn Derivatives,
    ) -> Result<Option<(Tensor, Tensor)>> {
        pr.kv
            .as_ref()
            .map(|(k, v)| self.place_keys_values((k, v), rot, offset, dv))
            .transpose()
    }

    /// Split heads normed along the q/k norm's axis by `w`, where there is one.
    fn normed(&self, t: &Tensor, w: &Option<Tensor>, dv: &dyn Derivatives) -> Result<Tensor> {
        match w {
            Some(w) => self.on_norm_axis(t, |t| dv.rms_norm(t, w, self.eps)),
            None => Ok(t.clone()),
        }
    }

    /// Projected values `(kv_heads, seq, head_dim)` as attention reads them: normed over
    /// each head where the model norms them.
    pub(super) fn values(&self, v: &Tensor, dv: &dyn Derivatives) -> Result<Tensor> {
        match self.v_norm {
            true => dv.rms_norm(v, &self.unit_weight(v)?, self.eps),
            false => Ok(v.clone()),
        }
    }

    /// The weight of a weightless norm over a head: ones, `(head_dim,)`, as `like`.
    pub(super) fn unit_weight(&self, like: &Tensor) -> Result<Tensor> {
        Tensor::ones(self.head_dim, like.dtype(), like.device())
    }

    /// Queries `(…, heads, seq, head_dim)` at positions `offset..` times the attention
    /// temperature where it is not 1; also its own transpose, for cotangents.
    pub(super) fn heated(&self, q: Tensor, offset: usize) -> Result<Tensor> {
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

    /// q, k, v for `x` at positions `offset..` as attention reads them: projected, split,
    /// normed, rotated (no k and v where the layer reads another's); and the output gate.
    pub(super) fn qkv(
        &self,
        x: &Tensor,
        rot: &Rotary,
        offset: usize,
        dv: &dyn Derivatives,
        p: Products,
    ) -> Result<Projected> {
        let pr = self.project(x, p)?;
        let q = self.place_queries(&pr.q, rot, offset, dv)?;
        let kv = self.place_own(&pr, rot, offset, dv)?;
        Ok(Projected { q, kv, ..pr })
    }

    /// Graph-free attention of the last `q.dim(1)` positions over all of `k, v: (kv_heads,
    /// m, head_dim)`; `(heads, n, head_dim)`.
    pub(super) fn attend(&self, q: &Tensor, k: &Tensor, v: &Tensor, p: Products) -> Result<Tensor> {
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

    /// The heads' outputs `o` `(heads, seq, head_dim)` (steered) side by side, `(seq, heads ·
    /// head_dim)`, before the output gate.
    pub(super) fn merged(&self, o: Tensor, n: usize, dv: &dyn Derivatives) -> Result<Tensor> {
        self.steered(o, dv)?
            .transpose(0, 1)?
            .reshape((n, self.n_heads * self.head_dim))
    }

    /// The merged heads `m` times σ(gate), where the model gates them.
    pub(super) fn gated(&self, m: &Tensor, gate: Option<&Tensor>) -> Result<Tensor> {
        match gate {
            Some(g) => m.mul(&sigmoid(g)?),
            None => Ok(m.clone()),
        }
    }

    /// The block's output from the heads' outputs `o` `(heads, seq, head_dim)` and the
    /// output gate.
    pub(super) fn merge_heads(
        &self,
        o: Tensor,
        n: usize,
        gate: Option<&Tensor>,
        dv: &dyn Derivatives,
        p: Products,
    ) -> Result<Tensor> {
        let m = self.merged(o, n, dv)?;
        self.o_proj.forward(&self.gated(&m, gate)?, p)
    }

    /// The heads' outputs `o` `(heads, seq, head_dim)` with the edited heads' edits.
    pub(super) fn steered(&self, o: Tensor, dv: &dyn Derivatives) -> Result<Tensor> {
        match &self.steer {
            Some(s) => s.apply(&o, dv),
            None => Ok(o),
        }
    }

    /// The autograd twin's attention (f32).
    pub(super) fn forward(
        &self,
        x: &Tensor,
        rot: &Rotary,
        dv: &dyn Derivatives,
        shared: &mut SharedKv,
    ) -> Result<Tensor> {
        let n = x.dim(0)?;
        let Projected { q, kv, gate } = self.qkv(x, rot, 0, dv, Products::F32)?;
        if gate.is_some() {
            candle_core::bail!("the autograd twin has no attention output gate");
        }
        let (k, v) = self.attended(kv, shared, 0)?;
        let (k, v) = (self.repeat_kv(k)?, self.repeat_kv(v)?);
        let scales = dv.attention_scales();
        let o = causal_attention(&q, &k, &v, self.scale, scales, self.window)?; // (heads, seq, head_dim)
        self.merge_heads(o, n, None, dv, Products::F32)
    }
}

/// One pass's projections: q `(heads, seq, head_dim)`, k and v `(kv_heads, seq, head_dim)`
/// (none where the layer reads another's), and the output gate `(seq, heads · head_dim)`
/// before its σ (Qwen3.5).
pub(super) struct Projected {
    pub(super) q: Tensor,
    pub(super) kv: Option<(Tensor, Tensor)>,
    pub(super) gate: Option<Tensor>,
}
