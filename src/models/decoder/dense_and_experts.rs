//! Gemma 4's feed-forward block with experts (26B-A4B): a dense gated MLP and sparse experts
//! side by side on the same stream `h` (the block reads it un-normed), each branch with norms
//! of its own before and after, their sum handed to the layer's post-feed-forward norm:
//! `post₁(mlp(pre₁ h)) + post₂(experts(pre₂ h; routed by h))` (transformers'
//! `Gemma4TextDecoderLayer` with `enable_moe_block`). The router reads `h` through a norm of
//! its own (`moe.rs`). Neurons: every expert's units, then the dense MLP's, as a shared
//! expert's come last.

use super::ffn::{Mlp, SavedMlp};
use super::moe::{Moe, SavedMoe};
use super::steer::NeuronEdits;
use super::watch::{At, Point};
use super::{load_norm, Config, WeightSource};
use crate::kernels::Products;
use crate::models::linear::Linear;
use crate::models::{Derivatives, Ordinary};
use candle_core::{Result, Tensor, D};

#[derive(Debug, Clone)]
pub(super) struct DenseAndExperts {
    dense: Mlp,
    experts: Moe,
    /// Before and after the dense MLP, then before and after the experts, `(hidden,)` each.
    norms: [Tensor; 4],
    eps: f64,
}

/// What its backward reads.
#[derive(Debug)]
pub(super) struct SavedDenseAndExperts {
    /// The block's input (the stream).
    h: Tensor,
    dense: SavedMlp,
    experts: SavedMoe,
    /// Each branch's output before its norm.
    raw: [Tensor; 2],
}

/// transformers' names of the norms it loads itself, after the dense MLP's input norm (the
/// layer's `pre_feedforward_layernorm`, handed over by the layer): in
/// [`DenseAndExperts::norms`]' order from the second.
pub(crate) const NORMS: [&str; 3] = [
    "post_feedforward_layernorm_1",
    "pre_feedforward_layernorm_2",
    "post_feedforward_layernorm_2",
];

impl DenseAndExperts {
    /// Layer `layer`'s block under prefix `p` (`model.layers.3`); `pre` is the layer's norm
    /// before its feed-forward block, which here norms the dense MLP's input alone.
    pub(super) fn load(
        w: &mut dyn WeightSource,
        p: &str,
        cfg: &Config,
        layer: usize,
        pre: Option<Tensor>,
    ) -> crate::Result<Self> {
        let a = &cfg.arch;
        let (Some(e), Some(pre)) = (cfg.experts_at(layer), pre) else {
            return Err(candle_core::Error::Msg(format!(
                "layer {layer}: experts beside the dense MLP need the experts and the layer's \
                 norm before its feed-forward block"
            ))
            .into());
        };
        let eps = cfg.rms_norm_eps;
        let mut norm = |n: &str| load_norm(w, &format!("{p}.{n}.weight"), a);
        let norms = [pre, norm(NORMS[0])?, norm(NORMS[1])?, norm(NORMS[2])?];
        Ok(DenseAndExperts {
            dense: Mlp::load(w, &format!("{p}.mlp"), a.activation)?,
            experts: Moe::load_gemma4(w, p, e, a.activation, eps)?,
            norms,
            eps,
        })
    }

    /// The block on the stream `h`, for autograd, with `dv`'s derivatives.
    pub(super) fn forward(&self, h: &Tensor, dv: &dyn Derivatives, p: Products) -> Result<Tensor> {
        let [pre1, post1, pre2, post2] = &self.norms;
        let y1 = self
            .dense
            .forward(&dv.rms_norm(h, pre1, self.eps)?, dv, p)?;
        let x2 = dv.rms_norm(h, pre2, self.eps)?;
        let y2 = self.experts.forward_routed(&x2, h, dv, p)?;
        dv.rms_norm(&y1, post1, self.eps)? + dv.rms_norm(&y2, post2, self.eps)?
    }

    /// The block without a graph, and what the backward reads.
    pub(super) fn forward_saved(
        &self,
        h: &Tensor,
        p: Products,
    ) -> Result<(Tensor, SavedDenseAndExperts)> {
        let [pre1, post1, pre2, post2] = &self.norms;
        let dv = &Ordinary;
        let (y1, dense) = self
            .dense
            .forward_saved(&dv.rms_norm(h, pre1, self.eps)?, p)?;
        let x2 = dv.rms_norm(h, pre2, self.eps)?;
        let (y2, experts) = self.experts.forward_saved_routed(&x2, h, p)?;
        let out = (dv.rms_norm(&y1, post1, self.eps)? + dv.rms_norm(&y2, post2, self.eps)?)?;
        let saved = SavedDenseAndExperts {
            h: h.clone(),
            dense,
            experts,
            raw: [y1, y2],
        };
        Ok((out, saved))
    }

    /// The hidden units of a saved pass: the experts', then the dense MLP's.
    pub(super) fn hidden(&self, s: &SavedDenseAndExperts) -> Result<Tensor> {
        let routed = self.experts.hidden(&s.experts)?;
        let dense = self.dense.hidden(&s.dense)?.to_dtype(routed.dtype())?;
        Tensor::cat(&[&routed, &dense], D::Minus1)
    }

    /// Cotangents `dm: (b, seq, hidden)` of the block's output carried to the stream;
    /// `watch` hears the hidden units.
    pub(super) fn backward(
        &self,
        s: &SavedDenseAndExperts,
        dm: &Tensor,
        dv: &dyn Derivatives,
        p: Products,
        watch: Option<&mut At<'_>>,
    ) -> Result<Tensor> {
        let [pre1, post1, pre2, post2] = &self.norms;
        let hears = watch.as_ref().is_some_and(|w| w.wants(Point::MlpHidden));
        // The dense branch.
        let dy1 = dv.rms_norm_vjp(&s.raw[0], post1, self.eps, dm)?;
        let dz1 = self.dense.down_proj.vjp(&dy1, p)?;
        let da = self.dense.input_vjp(&s.dense, &dz1, dv, p)?;
        let mut dh = dv.rms_norm_vjp(&s.h, pre1, self.eps, &da)?;
        // The experts' branch: into their normed input, and into the router's.
        let dy2 = dv.rms_norm_vjp(&s.raw[1], post2, self.eps, dm)?;
        let back = self
            .experts
            .backward_parts(&s.experts, &dy2, dv, p, hears)?;
        dh = (dh + dv.rms_norm_vjp(&s.h, pre2, self.eps, &back.dx)?)?;
        if let Some(d) = back.d_router {
            dh = (dh + d)?;
        }
        if let (Some(w), Some((act, cot))) = (watch, back.heard) {
            let dense = self.dense.hidden(&s.dense)?.to_dtype(act.dtype())?;
            let act = Tensor::cat(&[&act, &dense], D::Minus1)?;
            let cot = Tensor::cat(&[&cot, &dz1.to_dtype(cot.dtype())?], D::Minus1)?;
            w.hear(Point::MlpHidden, || Ok(act), &cot)?;
        }
        Ok(dh)
    }

    /// Neuron `j`'s output column: an expert's, or past them the dense MLP's.
    pub(super) fn down_column(&self, j: usize) -> Result<(&Linear, usize, usize)> {
        let routed = self.experts.neurons()?;
        match j.checked_sub(routed) {
            None => self.experts.down_column(j),
            Some(i) => {
                let width = self.dense.down_proj.dims()?.1;
                match i < width {
                    true => Ok((&self.dense.down_proj, i, width)),
                    false => candle_core::bail!("no neuron {j} among {}", routed + width),
                }
            }
        }
    }

    /// Sets the edits of its neurons: the experts take theirs, the dense MLP the rest.
    pub(super) fn steer(&mut self, edits: Option<NeuronEdits>) {
        let routed = self.experts.neurons().unwrap_or(0);
        let width = self.dense.down_proj.dims().map_or(0, |(_, w)| w);
        self.experts
            .steer(edits.as_ref().and_then(|n| n.part(0, routed)));
        self.dense.steer = edits.as_ref().and_then(|n| n.part(routed, width));
    }

    /// Bytes a decoding step reads: the dense MLP's and a token's chosen experts'.
    pub(super) fn bytes_read(&self, p: Products) -> u64 {
        self.dense.bytes_read(p) + self.experts.bytes_read(p)
    }
}
