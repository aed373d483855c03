//! The decoder's explicit backward pass.
//!
//! [`Decoder::forward_saved`] (`saved.rs`) runs the model once without a graph and keeps what a backward
//! pass needs (the residual stream, q/k/v, the MLP's or the chosen experts' gate and up
//! projections);
//! [`Decoder::backward`] then carries any number of seeds back to the input embeddings,
//! layer by layer, with each block's vector-Jacobian product written out. At the norms, the
//! gated activation and attention's inputs it takes the caller's [`Derivatives`], so one
//! forward pass serves any number of backward passes, each with its own. The seeds are a
//! batch: every product here is linear in the cotangent, so B seeds in one pass give exactly
//! B one-at-a-time passes, with B times larger (faster) matrix products and the attention
//! probabilities recomputed once for all of them.
//!
//! Everything is candle tensor ops (CPU kernels where the op has one, primitive ops
//! elsewhere), so the same code runs on CUDA. candle's autograd through [`Decoder::forward`]
//! is the twin the tests hold it against.

use super::saved::{Progress, Saved, SavedAttention, SavedLayer, SavedMixer, Seed};
use super::self_attention::KeysValues;
use super::shared_kv::{PendingKv, SharedKv};
use super::watch::{At, Point};
use super::{Attention, Block, Decoder, DecoderLayer, Mixer, Rotary, Watch};
use crate::kernels::Products;
use crate::models::attention::attention_vjp;
use crate::models::gated::sigmoid;
use crate::models::{Derivatives, Ordinary};
use candle_core::{DType, Result, Tensor, D};

/// What a backward pass gives for each of its seeds.
#[derive(Debug)]
pub struct Gradients {
    /// d(target)/d(input embeddings), `(seeds, seq, hidden)`.
    pub input: Tensor,
    /// The latent trace `[seed][layer][token]`: `Σ_d h_l · dh_l` at each layer's output.
    pub trace: Vec<Vec<Vec<f32>>>,
}

/// Elements of the score-shaped buffers one group of seeds may need per attention head
/// (probabilities, their cotangents and the scores' cotangents, per seed).
const SEED_GROUP_BUDGET: usize = 1 << 28;

/// Elements of the cotangents one group of seeds may hold at once in a layer (the residual
/// stream's, and the MLP's gate and up, each `seeds × positions × width`): 1 GiB of f32. A
/// 4B model's 512-token answer explained at every step would otherwise take 285 seeds a
/// group, and 6 GB for the MLP's cotangents alone.
const SEED_ACTIVATION_BUDGET: usize = 1 << 28;

impl Decoder {
    /// Carries `seeds` back through the saved forward pass with `dv`'s derivatives: the
    /// gradient of each seed's target with respect to the input embeddings, and the latent
    /// trace `Σ_d h_l·dh_l` at every layer's output.
    /// Seeds are taken in groups small enough for memory; `progress` hears of each layer.
    pub fn backward(
        &self,
        saved: &Saved,
        seeds: &[Seed],
        dv: &dyn Derivatives,
        p: Products,
        progress: &mut Progress<'_>,
    ) -> crate::Result<Gradients> {
        self.backward_along(saved, seeds, dv, p, &saved.residuals, progress)
    }

    /// [`Decoder::backward`] with `watch` hearing the layers' points it wants on the way
    /// down.
    pub fn backward_watched(
        &self,
        saved: &Saved,
        seeds: &[Seed],
        dv: &dyn Derivatives,
        p: Products,
        watch: &mut dyn Watch,
        progress: &mut Progress<'_>,
    ) -> crate::Result<Gradients> {
        let along = &saved.residuals;
        self.backward_inner(saved, seeds, dv, p, along, Some(watch), progress)
    }

    /// [`Decoder::backward`] with the trace taken along other directions: layer l's trace is
    /// `Σ_d along[l] · dh_l` (`along[0]`, the embeddings' slot, is not read). `along` is the
    /// residual stream in [`Decoder::backward`]; a path method passes the stream's change.
    pub fn backward_along(
        &self,
        saved: &Saved,
        seeds: &[Seed],
        dv: &dyn Derivatives,
        p: Products,
        along: &[Tensor],
        progress: &mut Progress<'_>,
    ) -> crate::Result<Gradients> {
        self.backward_inner(saved, seeds, dv, p, along, None, progress)
    }

    #[allow(clippy::too_many_arguments)]
    fn backward_inner<'w>(
        &self,
        saved: &Saved,
        seeds: &[Seed],
        dv: &dyn Derivatives,
        p: Products,
        along: &[Tensor],
        mut watch: Option<&mut (dyn Watch + 'w)>,
        progress: &mut Progress<'_>,
    ) -> crate::Result<Gradients> {
        if along.len() != saved.residuals.len() {
            let msg = format!(
                "{} trace directions for {} residual slots",
                along.len(),
                saved.residuals.len()
            );
            return Err(candle_core::Error::Msg(msg).into());
        }
        let n = saved.len().max(1);
        let widths = 3 * (self.input_width() + 2 * self.cfg.max_active_width());
        let group = (SEED_GROUP_BUDGET / (3 * n * n))
            .min(SEED_ACTIVATION_BUDGET / (n * widths).max(1))
            .clamp(1, seeds.len().max(1));
        let mut inputs = Vec::new();
        let mut trace = Vec::with_capacity(seeds.len());
        let total = seeds.len().div_ceil(group) * self.layers.len();
        let mut done = 0;
        for (i, chunk) in seeds.chunks(group).enumerate() {
            let (first, watch) = (i * group, watch.as_deref_mut());
            let g =
                self.backward_group(saved, chunk, dv, p, along, (first, watch), &mut |l, _| {
                    progress(done + l, total)
                })?;
            done += self.layers.len();
            inputs.push(g.input);
            trace.extend(g.trace);
        }
        let input = match inputs.len() {
            1 => inputs.remove(0),
            _ => Tensor::cat(&inputs, 0)?,
        };
        Ok(Gradients { input, trace })
    }

    /// One group of seeds, the first of them seed `first` of the pass.
    #[allow(clippy::too_many_arguments)]
    fn backward_group<'w>(
        &self,
        saved: &Saved,
        seeds: &[Seed],
        dv: &dyn Derivatives,
        p: Products,
        along: &[Tensor],
        (first, mut watch): (usize, Option<&mut (dyn Watch + 'w)>),
        progress: &mut Progress<'_>,
    ) -> crate::Result<Gradients> {
        let eps = self.cfg.rms_norm_eps;
        let h = self.last_residual(saved)?;
        let (n, hidden) = h.dims2()?;
        let b = seeds.len();
        // The seeds through the final norm, each into its row of a (b·n, hidden) cotangent.
        let mut rows = Vec::with_capacity(b);
        let mut at = Vec::with_capacity(b);
        for (i, s) in seeds.iter().enumerate() {
            for (position, direction) in &s.parts {
                if *position >= n {
                    let msg = format!("seed position {position} outside {n} positions");
                    return Err(candle_core::Error::Msg(msg).into());
                }
                let x = h.narrow(0, *position, 1)?;
                let d = direction.reshape((1, hidden))?;
                rows.push(dv.rms_norm_vjp(&x, &self.norm, eps, &d)?);
                // Parts at the same position add up in the index_add below.
                at.push((i * n + position) as u32);
            }
        }
        let at = Tensor::from_vec(at.clone(), at.len(), h.device())?;
        let mut dh = Tensor::zeros((b * n, hidden), h.dtype(), h.device())?
            .index_add(&at, &Tensor::cat(&rows, 0)?, 0)?
            .reshape((b, n, hidden))?;
        let mut trace = vec![Vec::with_capacity(self.layers.len()); b];
        // Cotangents of each layer's own input, where the model has them.
        let mut own: Vec<Option<Tensor>> = vec![None; self.layers.len()];
        // Cotangents of shared keys and values, from their readers to their layer.
        let mut pending = PendingKv::default();
        for (l, layer) in self.layers.iter().enumerate().rev() {
            // The trace at this layer's output: Σ_d h · dh (or along the given direction).
            let out = &along[l + 1];
            let r = dh
                .to_dtype(DType::F32)?
                .broadcast_mul(&out.to_dtype(DType::F32)?)?
                .sum(D::Minus1)?
                .to_vec2::<f32>()?;
            for (t, r) in trace.iter_mut().zip(r) {
                t.push(r);
            }
            let rot = &self.rotary[layer.rope()];
            let at = watch.as_deref_mut().map(|watch| At {
                watch,
                layer: l,
                first,
            });
            let d_own;
            (dh, d_own) = layer.backward(
                &saved.layers[l],
                (&saved.residuals[l + 1], &dh),
                dv,
                eps,
                (rot, p, &mut pending),
                at,
            )?;
            if let Some(d) = d_own {
                own[l] = Some(d);
            }
            progress(self.layers.len() - l, self.layers.len())?;
        }
        for t in &mut trace {
            t.reverse();
        }
        let input = match (&self.per_layer, &saved.layer_inputs) {
            (Some(pl), Some(inputs)) => {
                let all = own
                    .into_iter()
                    .map(|d| {
                        d.ok_or_else(|| {
                            candle_core::Error::Msg(
                                "a layer's own input without a cotangent".into(),
                            )
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                pl.backward(inputs, &Tensor::stack(&all, 2)?, &dh, dv, p)?
            }
            _ => dh,
        };
        Ok(Gradients { input, trace })
    }
}

impl DecoderLayer {
    /// One layer without a graph: its output and what its backward pass reads.
    pub(super) fn forward_saved(
        &self,
        h: &Tensor,
        (eps, pli): (f64, Option<&Tensor>),
        (rot, shared): (&Rotary, &mut SharedKv),
        p: Products,
    ) -> Result<(Tensor, SavedLayer)> {
        let n = h.dim(0)?;
        let (mut mixed, mut ffn) = (None, None);
        let walked = self.walk(
            h.clone(),
            (eps, pli, p),
            &Ordinary,
            |block, x| match block {
                Block::Attention => match &self.mixer {
                    Mixer::Attention(at) => {
                        let pr = at.project(x, p)?;
                        let q = at.place_queries(&pr.q, rot, 0, &Ordinary)?;
                        let own = at.place_own(&pr, rot, 0, &Ordinary)?;
                        let (k, v) = at.attended(own, shared, 0)?;
                        let m = at.merged(at.attend(&q, &k, &v, p)?, n, &Ordinary)?;
                        let a = at.o_proj.forward(&at.gated(&m, pr.gate.as_ref())?, p)?;
                        let keep = |t: &Tensor| at.q_norm.is_some().then(|| t.clone());
                        let (k_pre, v_pre) = match &pr.kv {
                            Some((k, v)) => (keep(k), at.v_norm.then(|| v.clone())),
                            None => (None, None),
                        };
                        mixed = Some(SavedMixer::Attention(SavedAttention {
                            q_pre: keep(&pr.q),
                            k_pre,
                            v_pre,
                            q,
                            k,
                            v,
                            gate: pr.gate.map(|g| (g, m)),
                        }));
                        Ok(a)
                    }
                    Mixer::DeltaNet(d) => {
                        let (a, s) = d.forward_saved(x, p)?;
                        mixed = Some(SavedMixer::DeltaNet(s));
                        Ok(a)
                    }
                },
                Block::Mlp => {
                    let (m, s) = self.mlp.forward_saved(x, p)?;
                    ffn = Some(s);
                    Ok(m)
                }
            },
        )?;
        let (Some(mixer), Some(ffn)) = (mixed, ffn) else {
            candle_core::bail!("a layer ran without its attention or its MLP");
        };
        let saved = SavedLayer {
            mixer,
            ffn,
            blocks: walked.blocks,
            per_layer: walked.per_layer,
        };
        Ok((walked.out, saved))
    }

    /// Cotangents `dout: (b, seq, hidden)` of the layer's output `out` carried to its input,
    /// through the residual blocks in reverse, and to the layer's own input where it has one
    /// `(b, seq, width)`; `watch` hears the layer's points.
    fn backward(
        &self,
        s: &SavedLayer,
        (out, dout): (&Tensor, &Tensor),
        dv: &dyn Derivatives,
        eps: f64,
        (rot, p, pending): (&Rotary, Products, &mut PendingKv),
        mut watch: Option<At<'_>>,
    ) -> Result<(Tensor, Option<Tensor>)> {
        // The stream after each block: the next block's input, then the layer's output before
        // its scale.
        let (mut d, mut after) = match self.scalar {
            Some(s) => ((dout * s)?, (out * s.recip())?),
            None => (dout.clone(), out.clone()),
        };
        let mut d_own = None;
        if let (Some(b), Some(sp)) = (&self.per_layer, &s.per_layer) {
            let (dh, d_pli) = b.backward(sp, &d, eps, dv, p)?;
            (d, d_own, after) = (dh, Some(d_pli), sp.input.clone());
        }
        for (r, io) in self.residual_blocks().iter().zip(&s.blocks).rev() {
            if let Some(w) = watch.as_mut() {
                let added = || &after - &io.input;
                w.hear(Point::BlockOutput(r.block), added, &d)?;
            }
            let dy = match (r.post, &io.raw) {
                (Some(w), Some(raw)) => dv.rms_norm_vjp(raw, w, eps, &d)?,
                _ => d.clone(),
            };
            let dx = match (r.block, &self.mixer, &s.mixer) {
                (Block::Attention, Mixer::Attention(a), SavedMixer::Attention(s)) => {
                    a.backward(s, &dy, dv, (rot, p, &mut *pending), watch.as_mut())?
                }
                (Block::Attention, Mixer::DeltaNet(d), SavedMixer::DeltaNet(s)) => {
                    Some(d.backward(s, &dy, dv, p)?)
                }
                (Block::Attention, ..) => {
                    candle_core::bail!("a layer's saved pass is of another kind than the layer")
                }
                (Block::Mlp, ..) => Some(self.mlp.backward(&s.ffn, &dy, dv, p, watch.as_mut())?),
            };
            if let Some(dx) = dx {
                let back = match r.pre {
                    Some(w) => dv.rms_norm_vjp(&io.input, w, eps, &dx)?,
                    None => dx,
                };
                if let Some(w) = watch.as_mut() {
                    w.hear(Point::BlockInput(r.block), || Ok(io.input.clone()), &back)?;
                }
                d = (d + back)?;
            }
            after = io.input.clone();
        }
        Ok((d, d_own))
    }
}

/// A sum of optional terms.
#[derive(Default)]
struct Sum(Option<Tensor>);

impl Sum {
    fn add(&mut self, t: Option<Tensor>) -> Result<()> {
        if let Some(t) = t {
            self.0 = Some(match self.0.take() {
                Some(s) => (s + t)?,
                None => t,
            });
        }
        Ok(())
    }
}

impl Attention {
    /// Cotangents `da: (b, seq, hidden)` of the attention block's output carried to its
    /// (normed) input; `None` when `dv` gives q, k and v no cotangent.
    fn backward(
        &self,
        s: &SavedAttention,
        da: &Tensor,
        dv: &dyn Derivatives,
        (rot, p, pending): (&Rotary, Products, &mut PendingKv),
        watch: Option<&mut At<'_>>,
    ) -> Result<Option<Tensor>> {
        let (b, n, _) = da.dims3()?;
        let (heads, hd) = (self.n_heads, self.head_dim);
        let d_in = self.o_proj.vjp(da, p)?;
        // The output gate m ⊙ σ(gate): its shares of the cotangent to the heads and the gate.
        let (d_in, d_gate) = match &s.gate {
            Some((gate, m)) => {
                let [to_heads, to_gate] = dv.output_gate_scales();
                let sg = sigmoid(gate)?;
                let d_m = (d_in.broadcast_mul(&sg)? * to_heads)?;
                let d_g = (to_gate != 0.0)
                    .then(|| {
                        let slope = m.mul(&sg)?.mul(&sg.affine(-1.0, 1.0)?)?;
                        d_in.broadcast_mul(&slope)? * to_gate
                    })
                    .transpose()?;
                (d_m, d_g)
            }
            None => (d_in, None),
        };
        // The heads' outputs, computed again from the saved q, k and v where needed.
        let clamps = self.steer.as_ref().is_some_and(|h| h.clamps());
        let raw = match clamps {
            true => Some(self.attend(&s.q, &s.k, &s.v, p)?),
            false => None,
        };
        if let Some(w) = watch {
            let outputs = || {
                let o = match &raw {
                    Some(o) => o.clone(),
                    None => self.attend(&s.q, &s.k, &s.v, p)?,
                };
                // Before the output gate: `d_in` is the heads' share past it.
                let o = self.steered(o, &Ordinary)?;
                o.transpose(0, 1)?.reshape((n, heads * hd))
            };
            w.hear(Point::AttentionHeads, outputs, &d_in)?;
        }
        let mut d_o = d_in
            .reshape((b, n, heads, hd))?
            .transpose(1, 2)?
            .contiguous()?;
        if let Some(steer) = &self.steer {
            d_o = steer.vjp(raw.as_ref(), &d_o, dv)?.contiguous()?;
        }
        let k = self.repeat_kv(s.k.clone())?.contiguous()?;
        let v = self.repeat_kv(s.v.clone())?.contiguous()?;
        let [dq, dk, d_v] = attention_vjp(
            &s.q,
            &k,
            &v,
            &d_o,
            self.scale,
            self.window,
            dv.attention_scales(),
            p,
        )?;
        // Through RoPE (a rotation: its transpose rotates back) and the q/k norm.
        let unrotate = |d: Tensor, pre: &Option<Tensor>, w: &Option<Tensor>| -> Result<Tensor> {
            let d = rot.apply_inverse(&d)?;
            match (pre, w) {
                // Along the norm's axis: each head, or all heads of a position together.
                (Some(pre), Some(w)) => {
                    let dims = d.dims().to_vec();
                    let (pre, d) = (self.onto_norm_axis(pre)?, self.onto_norm_axis(&d)?);
                    self.back_from_norm_axis(&dv.rms_norm_vjp(&pre, w, self.eps, &d)?, &dims)
                }
                _ => Ok(d),
            }
        };
        let mut dx = Sum::default();
        let dq = dq
            .map(|dq| unrotate(self.heated(dq, 0)?, &s.q_pre, &self.q_norm))
            .transpose()?
            .map(|dq| merge(&dq))
            .transpose()?;
        match (dq, d_gate) {
            (dq, Some(dg)) => {
                // q_proj's rows: each head's queries, then its gate.
                let dq = match dq {
                    Some(dq) => dq,
                    None => dg.zeros_like()?,
                };
                let split = |t: &Tensor| t.reshape((b, n, heads, 1, hd));
                let both = Tensor::cat(&[split(&dq)?, split(&dg)?], 3)?;
                let both = both.reshape((b, n, heads * 2 * hd))?;
                dx.add(Some(self.q_proj.linear.vjp(&both, p)?))?;
            }
            (Some(dq), None) => dx.add(Some(self.q_proj.linear.vjp(&dq, p)?))?,
            (None, None) => {}
        }
        // The cotangents of the keys and values attention read, per key/value head: a reader
        // of another layer's hands them to it; a layer that others read adds theirs.
        let dk = dk.map(|d| self.reduce_kv(&d)).transpose()?;
        let d_v = d_v.map(|d| self.reduce_kv(&d)).transpose()?;
        let (k_proj, v_proj) = match &self.kv {
            KeysValues::Shared { from } => {
                pending.add(*from, (dk, d_v))?;
                return Ok(dx.0);
            }
            KeysValues::Own { k_proj, v_proj } => (k_proj, v_proj),
        };
        let (dk, d_v) = pending.with_readers(self.index, (dk, d_v))?;
        let dk = dk
            .map(|d| unrotate(d, &s.k_pre, &self.k_norm))
            .transpose()?;
        let d_v = d_v
            .map(|d| match &s.v_pre {
                Some(pre) => dv.rms_norm_vjp(pre, &self.unit_weight(pre)?, self.eps, &d),
                None => Ok(d),
            })
            .transpose()?;
        // Values that are the keys' projection hand their cotangent to it.
        let mut dk_proj = Sum(dk);
        match v_proj {
            Some(v_proj) => {
                if let Some(d_v) = d_v {
                    dx.add(Some(v_proj.linear.vjp(&merge(&d_v)?, p)?))?;
                }
            }
            None => dk_proj.add(d_v)?,
        }
        if let Some(dk) = dk_proj.0 {
            dx.add(Some(k_proj.linear.vjp(&merge(&dk)?, p)?))?;
        }
        Ok(dx.0)
    }

    /// The transpose of `repeat_kv`: `(b, heads, seq, head_dim)` summed over each key/value
    /// head's group of query heads.
    fn reduce_kv(&self, d: &Tensor) -> Result<Tensor> {
        let rep = self.n_heads / self.n_kv_heads;
        if rep == 1 {
            return Ok(d.clone());
        }
        let (b, _, n, hd) = d.dims4()?;
        d.reshape((b, self.n_kv_heads, rep, n, hd))?.sum(2)
    }
}

/// `(b, heads, seq, head_dim)` → `(b, seq, heads · head_dim)`.
fn merge(d: &Tensor) -> Result<Tensor> {
    let (b, h, n, hd) = d.dims4()?;
    d.transpose(1, 2)?.reshape((b, n, h * hd))
}
