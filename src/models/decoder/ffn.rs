//! A layer's feed-forward block: a gated MLP `down(act(gate(x)) ⊙ up(x))`, sparse experts
//! (`moe.rs`), or both side by side with norms of their own (`dense_and_experts.rs`, Gemma 4)
//! — the layer type a family's configuration picks per layer. The forward pass in
//! autograd form, the saving forward, the explicit backward, the hidden units that neurons
//! are read from, and the steering edits all go through [`Ffn`].

use super::dense_and_experts::{DenseAndExperts, SavedDenseAndExperts};
use super::moe::{Moe, SavedMoe};
use super::steer::NeuronEdits;
use super::watch::{At, Point};
use super::{Config, WeightSource};
use crate::kernels::Products;
use crate::models::config::mlp_names;
use crate::models::gated::{gated, Activation};
use crate::models::linear::Linear;
use crate::models::Derivatives;
use candle_core::{Result, Tensor};

#[derive(Debug, Clone)]
pub(super) struct Mlp {
    pub(super) gate_proj: Linear,
    pub(super) up_proj: Linear,
    pub(super) down_proj: Linear,
    pub(super) act: Activation,
    /// Edited neurons (steering), if any.
    pub(super) steer: Option<NeuronEdits>,
}

impl Mlp {
    /// The MLP under prefix `p` (`model.layers.3.mlp`, `model.layers.3.mlp.experts.7`).
    pub(super) fn load(w: &mut dyn WeightSource, p: &str, act: Activation) -> crate::Result<Self> {
        let [gate, up, down] = mlp_names(p);
        Ok(Mlp {
            gate_proj: Linear::new(w.get_matrix(&gate)?),
            up_proj: Linear::new(w.get_matrix(&up)?),
            down_proj: Linear::new(w.get_matrix(&down)?),
            act,
            steer: None,
        })
    }

    /// The gate and up projections of `x`.
    pub(super) fn gate_up(&self, x: &Tensor, p: Products) -> Result<(Tensor, Tensor)> {
        match &Linear::forward_many(&[&self.gate_proj, &self.up_proj], x, p)?[..] {
            [gate, up] => Ok((gate.clone(), up.clone())),
            _ => candle_core::bail!("two projections expected"),
        }
    }

    pub(super) fn forward(&self, x: &Tensor, dv: &dyn Derivatives, p: Products) -> Result<Tensor> {
        let (gate, up) = self.gate_up(x, p)?;
        let h = self.steered(dv.gated(&gate, &up, self.act)?)?;
        self.down_proj.forward(&h, p)
    }

    /// The output of `x` without a graph, with the gate and up projections its backward
    /// reads.
    pub(super) fn forward_saved(&self, x: &Tensor, p: Products) -> Result<(Tensor, SavedMlp)> {
        let (gate, up) = self.gate_up(x, p)?;
        let s = SavedMlp { gate, up };
        Ok((self.down_proj.forward(&self.hidden(&s)?, p)?, s))
    }

    /// The hidden units `h` with the edited neurons' edits.
    pub(super) fn steered(&self, h: Tensor) -> Result<Tensor> {
        match &self.steer {
            Some(s) => s.apply(&h),
            None => Ok(h),
        }
    }

    /// The hidden units (the input of `down_proj`, after any steering) of a saved pass.
    pub(super) fn hidden(&self, s: &SavedMlp) -> Result<Tensor> {
        self.steered(gated(&s.gate, &s.up, self.act)?)
    }

    /// Cotangents `dz: (b, seq, width)` of the hidden units carried to the MLP's input.
    pub(super) fn input_vjp(
        &self,
        s: &SavedMlp,
        dz: &Tensor,
        dv: &dyn Derivatives,
        p: Products,
    ) -> Result<Tensor> {
        let dz = match &self.steer {
            Some(steer) => steer.vjp(dz)?,
            None => dz.clone(),
        };
        let (dgate, dup) = dv.gated_vjp(&s.gate, &s.up, self.act, &dz)?;
        let dx = self.up_proj.vjp(&dup, p)?;
        match dgate {
            Some(d) => dx + self.gate_proj.vjp(&d, p)?,
            None => Ok(dx),
        }
    }

    /// Bytes a decoding step reads of its three matrices.
    pub(super) fn bytes_read(&self, p: Products) -> u64 {
        [&self.gate_proj, &self.up_proj, &self.down_proj]
            .iter()
            .map(|w| w.bytes_read(p))
            .sum()
    }
}

/// What a gated MLP's backward reads: its gate and up projections `(rows, width)`.
#[derive(Debug)]
pub(super) struct SavedMlp {
    pub(super) gate: Tensor,
    pub(super) up: Tensor,
}

/// A layer's feed-forward block.
#[derive(Debug, Clone)]
pub(super) enum Ffn {
    /// One gated MLP.
    Dense(Mlp),
    /// Sparse experts with their router.
    Experts(Moe),
    /// A dense MLP beside sparse experts, reading the un-normed stream (Gemma 4).
    DenseAndExperts(Box<DenseAndExperts>),
}

/// What a feed-forward block's backward reads.
#[derive(Debug)]
pub(super) enum SavedFfn {
    Dense(SavedMlp),
    Experts(SavedMoe),
    DenseAndExperts(Box<SavedDenseAndExperts>),
}

impl Ffn {
    /// Layer `layer`'s block; `p` is the layer's prefix (`model.layers.3`), `pre` the
    /// layer's norm before the block: a block that norms its input itself takes it (the
    /// layer then hands it the stream as it is).
    pub(super) fn load(
        w: &mut dyn WeightSource,
        p: &str,
        cfg: &Config,
        layer: usize,
        pre: &mut Option<Tensor>,
    ) -> crate::Result<Self> {
        let act = cfg.arch.activation;
        let mlp = format!("{p}.mlp");
        Ok(match cfg.experts_at(layer) {
            Some(e) if e.beside_dense => {
                let block = DenseAndExperts::load(w, p, cfg, layer, pre.take())?;
                Ffn::DenseAndExperts(Box::new(block))
            }
            Some(e) => Ffn::Experts(Moe::load(w, &mlp, e, act)?),
            None => Ffn::Dense(Mlp::load(w, &mlp, act)?),
        })
    }

    pub(super) fn forward(&self, x: &Tensor, dv: &dyn Derivatives, p: Products) -> Result<Tensor> {
        match self {
            Ffn::Dense(m) => m.forward(x, dv, p),
            Ffn::Experts(m) => m.forward(x, dv, p),
            Ffn::DenseAndExperts(m) => m.forward(x, dv, p),
        }
    }

    pub(super) fn forward_saved(&self, x: &Tensor, p: Products) -> Result<(Tensor, SavedFfn)> {
        Ok(match self {
            Ffn::Dense(m) => {
                let (y, s) = m.forward_saved(x, p)?;
                (y, SavedFfn::Dense(s))
            }
            Ffn::Experts(m) => {
                let (y, s) = m.forward_saved(x, p)?;
                (y, SavedFfn::Experts(s))
            }
            Ffn::DenseAndExperts(m) => {
                let (y, s) = m.forward_saved(x, p)?;
                (y, SavedFfn::DenseAndExperts(Box::new(s)))
            }
        })
    }

    /// The hidden units of a saved pass, `(seq, neurons)` (an expert's units are 0 where it
    /// was not chosen).
    pub(super) fn hidden(&self, s: &SavedFfn) -> Result<Tensor> {
        match (self, s) {
            (Ffn::Dense(m), SavedFfn::Dense(s)) => m.hidden(s),
            (Ffn::Experts(m), SavedFfn::Experts(s)) => m.hidden(s),
            (Ffn::DenseAndExperts(m), SavedFfn::DenseAndExperts(s)) => m.hidden(s),
            _ => candle_core::bail!("a saved pass of another feed-forward block"),
        }
    }

    /// Cotangents `dm: (b, seq, hidden)` of the block's output carried to its (normed)
    /// input; `watch` hears the hidden units.
    pub(super) fn backward(
        &self,
        s: &SavedFfn,
        dm: &Tensor,
        dv: &dyn Derivatives,
        p: Products,
        watch: Option<&mut At<'_>>,
    ) -> Result<Tensor> {
        match (self, s) {
            (Ffn::Dense(m), SavedFfn::Dense(s)) => {
                let dz = m.down_proj.vjp(dm, p)?;
                if let Some(w) = watch {
                    w.hear(Point::MlpHidden, || m.hidden(s), &dz)?;
                }
                m.input_vjp(s, &dz, dv, p)
            }
            (Ffn::Experts(m), SavedFfn::Experts(s)) => m.backward(s, dm, dv, p, watch),
            (Ffn::DenseAndExperts(m), SavedFfn::DenseAndExperts(s)) => {
                m.backward(s, dm, dv, p, watch)
            }
            _ => candle_core::bail!("a saved pass of another feed-forward block"),
        }
    }

    /// Neuron `j`'s output column: the `down_proj` it is a unit of, its index there and
    /// that matrix's width.
    pub(super) fn down_column(&self, j: usize) -> Result<(&Linear, usize, usize)> {
        match self {
            Ffn::Dense(m) => Ok((&m.down_proj, j, m.down_proj.dims()?.1)),
            Ffn::Experts(m) => m.down_column(j),
            Ffn::DenseAndExperts(m) => m.down_column(j),
        }
    }

    /// Sets the edits of its neurons (`None`: none).
    pub(super) fn steer(&mut self, edits: Option<NeuronEdits>) {
        match self {
            Ffn::Dense(m) => m.steer = edits,
            Ffn::Experts(m) => m.steer(edits),
            Ffn::DenseAndExperts(m) => m.steer(edits),
        }
    }

    /// Bytes a decoding step reads of its matrices (a token's chosen experts).
    pub(super) fn bytes_read(&self, p: Products) -> u64 {
        match self {
            Ffn::Dense(m) => m.bytes_read(p),
            Ffn::Experts(m) => m.bytes_read(p),
            Ffn::DenseAndExperts(m) => m.bytes_read(p),
        }
    }
}
