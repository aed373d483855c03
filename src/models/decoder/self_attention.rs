//! A layer's self-attention block: q, k and v projected (biases and q/k norms where the
//! family has them), rotated, attended with grouped-query heads and a causal (optionally
//! sliding) mask, merged through the output projection. The explicit backward pass is in
//! `backward.rs`; the cached and batched forms in `cached.rs` and `batch.rs`.

use super::rotary::{self, Rotary};
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

#[derive(Debug, Clone)]
pub(super) struct Attention {
    pub(super) q_proj: Proj,
    pub(super) k_proj: Proj,
    pub(super) v_proj: Proj,
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
        Ok(Attention {
            q_proj: Proj::load(w, &format!("{p}.q_proj"), a.attention_bias)?,
            k_proj: Proj::load(w, &format!("{p}.k_proj"), a.attention_bias)?,
            v_proj: Proj::load(w, &format!("{p}.v_proj"), a.attention_bias)?,
            o_proj: Linear::new(w.get_matrix(&format!("{p}.o_proj.weight"))?),
            q_norm: norm(w, "q_norm")?,
            k_norm: norm(w, "k_norm")?,
            v_norm: a.value_norm,
            qk_scope: a.qk_norm.unwrap_or(QkNorm::PerHead),
            n_heads: cfg.num_attention_heads,
            n_kv_heads: cfg.num_key_value_heads,
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

    /// q, k, v for `x`, projected and split into heads (before the q/k norms), and the
    /// output gate `(seq, heads · head_dim)` before its σ where the model has one.
    pub(super) fn project(&self, x: &Tensor, p: Products) -> Result<Projected> {
        let projs = [&self.q_proj, &self.k_proj, &self.v_proj];
        let linears = projs.map(|pr| &pr.linear);
        let [q, k, v] = <[Tensor; 3]>::try_from(Linear::forward_many(&linears, x, p)?)
            .map_err(|_| candle_core::Error::Msg("three projections expected".into()))?;
        let q = self.q_proj.add_bias(q)?;
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
        Ok(Projected {
            q: self.split_heads(&q, self.n_heads)?,
            k: self.split_heads(&self.k_proj.add_bias(k)?, self.n_kv_heads)?,
            v: self.split_heads(&self.v_proj.add_bias(v)?, self.n_kv_heads)?,
            gate,
        })
    }

    /// Projected q and k normed (when the model has q/k norms) and rotated for positions
    /// `offset..`.
    pub(super) fn position(
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

    /// q, k, v for `x` at positions `offset..`: projected, split, normed, rotated; and the
    /// output gate.
    pub(super) fn qkv(
        &self,
        x: &Tensor,
        rot: &Rotary,
        offset: usize,
        dv: &dyn Derivatives,
        p: Products,
    ) -> Result<Projected> {
        let pr = self.project(x, p)?;
        let (q, k) = self.position(&pr.q, &pr.k, rot, offset, dv)?;
        let v = self.values(&pr.v, dv)?;
        Ok(Projected { q, k, v, ..pr })
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
    pub(super) fn forward(&self, x: &Tensor, rot: &Rotary, dv: &dyn Derivatives) -> Result<Tensor> {
        let n = x.dim(0)?;
        let Projected { q, k, v, gate } = self.qkv(x, rot, 0, dv, Products::F32)?;
        if gate.is_some() {
            candle_core::bail!("the autograd twin has no attention output gate");
        }
        let (k, v) = (self.repeat_kv(k)?, self.repeat_kv(v)?);
        let scales = dv.attention_scales();
        let o = causal_attention(&q, &k, &v, self.scale, scales, self.window)?; // (heads, seq, head_dim)
        self.merge_heads(o, n, None, dv, Products::F32)
    }
}

/// One pass's projections: q `(heads, seq, head_dim)`, k and v `(kv_heads, seq, head_dim)`,
/// and the output gate `(seq, heads · head_dim)` before its σ (Qwen3.5).
pub(super) struct Projected {
    pub(super) q: Tensor,
    pub(super) k: Tensor,
    pub(super) v: Tensor,
    pub(super) gate: Option<Tensor>,
}
