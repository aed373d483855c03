//! What a forward pass keeps for the backward passes ([`Saved`]), and what is read off it
//! before one: the final hidden states, the logits, and the seeds (the target's direction in
//! the final-normed hidden state) that start a backward pass.

use super::ffn::SavedFfn;
use super::gated_deltanet::SavedDeltaNet;
use super::shared_kv::SharedKv;
use super::{BlockIo, Decoder, LayerInputs, SavedPerLayer};
use crate::kernels::Products;
use crate::models::rms_norm;
use candle_core::{DType, Result, Tensor};

/// Called after each layer of a pass with the layers done and the layers in the pass; an
/// error (a cancellation) stops the pass there.
pub type Progress<'a> = dyn FnMut(usize, usize) -> crate::Result<()> + 'a;

/// A forward pass's activations, kept for any number of backward passes.
#[derive(Debug)]
pub struct Saved {
    /// The input rows `(seq, input_width)` (see [`Decoder::embed`]).
    pub(super) input: Tensor,
    /// The layers' own inputs, where the model has them (Gemma 4).
    pub(super) layer_inputs: Option<LayerInputs>,
    /// The residual stream `(seq, hidden)`: the input embeddings, then each layer's output.
    pub(super) residuals: Vec<Tensor>,
    pub(super) layers: Vec<SavedLayer>,
}

impl Saved {
    /// Positions.
    pub fn len(&self) -> usize {
        self.residuals[0].dim(0).unwrap_or(0)
    }

    /// True for an empty sequence.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The input rows `(seq, input_width)`: the input embeddings, and the layers' own
    /// inputs' table rows where the model has them (see [`Decoder::embed`]).
    pub fn embeddings(&self) -> &Tensor {
        &self.input
    }

    /// The residual stream: the input embeddings, then each layer's output, `(seq, hidden)`.
    pub fn residuals(&self) -> &[Tensor] {
        &self.residuals
    }

    pub(super) fn layer(&self, layer: usize) -> Result<&SavedLayer> {
        self.layers.get(layer).ok_or_else(|| {
            candle_core::Error::Msg(format!("layer {layer} of {}", self.layers.len()))
        })
    }

    /// What layer `layer`'s feed-forward block kept.
    pub(super) fn ffn(&self, layer: usize) -> Result<&SavedFfn> {
        Ok(&self.layer(layer)?.ffn)
    }

    /// Layer `layer`'s q (rotated, per head) and k (rotated, per key/value head), `(heads,
    /// seq, head_dim)`.
    pub(super) fn attention_inputs(&self, layer: usize) -> Result<(&Tensor, &Tensor)> {
        match &self.layer(layer)?.mixer {
            SavedMixer::Attention(s) => Ok((&s.q, &s.k)),
            SavedMixer::DeltaNet(_) => {
                candle_core::bail!("layer {layer} is a Gated DeltaNet layer: it has no attention")
            }
        }
    }
}

/// What a layer's attention or Gated DeltaNet kept.
#[derive(Debug)]
pub(super) enum SavedMixer {
    Attention(SavedAttention),
    DeltaNet(SavedDeltaNet),
}

/// What attention's backward reads.
#[derive(Debug)]
pub(super) struct SavedAttention {
    /// q and k before their norms (models with q/k norms), `(heads or kv_heads, seq,
    /// head_dim)`.
    pub(super) q_pre: Option<Tensor>,
    pub(super) k_pre: Option<Tensor>,
    /// v before its norm (models that norm values).
    pub(super) v_pre: Option<Tensor>,
    /// q, k and v as attention reads them: q and k rotated, k and v per key/value head.
    pub(super) q: Tensor,
    pub(super) k: Tensor,
    pub(super) v: Tensor,
    /// The output gate before its σ, and the merged heads it multiplies, `(seq, heads ·
    /// head_dim)` (Qwen3.5).
    pub(super) gate: Option<(Tensor, Tensor)>,
}

/// What one layer's backward pass reads.
#[derive(Debug)]
pub(super) struct SavedLayer {
    /// Its attention's or Gated DeltaNet's.
    pub(super) mixer: SavedMixer,
    /// What the feed-forward block's backward reads.
    pub(super) ffn: SavedFfn,
    /// Each residual block's input, and its output where a post-norm follows, as
    /// [`DecoderLayer::walk`] saw them.
    pub(super) blocks: Vec<BlockIo>,
    /// What the block of the layer's own input kept, where it has one.
    pub(super) per_layer: Option<SavedPerLayer>,
}

/// One cotangent: directions in the final-normed hidden state, at one position or (a target
/// summed over positions, such as a span's log-probability) at several.
#[derive(Debug, Clone)]
pub struct Seed {
    /// `(position, direction)`: `direction` `(hidden,)` is d(target)/d(final hidden state)
    /// at `position`.
    pub parts: Vec<(usize, Tensor)>,
}

impl Decoder {
    /// Runs the decoder on input rows `(seq, input_width)` ([`Decoder::embed`]) without a
    /// graph, keeping the activations a backward pass needs. `progress` hears of each layer.
    pub fn forward_saved(
        &self,
        embeds: &Tensor,
        p: Products,
        progress: &mut Progress<'_>,
    ) -> crate::Result<Saved> {
        let eps = self.cfg.rms_norm_eps;
        let input = embeds.detach();
        let (h, layer_inputs) = self.split_input(&input, &crate::models::Ordinary, p)?;
        let mut residuals = Vec::with_capacity(self.layers.len() + 1);
        residuals.push(h);
        let mut layers = Vec::with_capacity(self.layers.len());
        let mut shared = SharedKv::default();
        for (i, layer) in self.layers.iter().enumerate() {
            let rot = &self.rotary[layer.rope()];
            let pli = LayerInputs::of_layer(layer_inputs.as_ref(), i)?;
            let at = (eps, pli.as_ref());
            let (out, saved) = layer.forward_saved(&residuals[i], at, (rot, &mut shared), p)?;
            residuals.push(out);
            layers.push(saved);
            progress(i + 1, self.layers.len())?;
        }
        Ok(Saved {
            input,
            layer_inputs,
            residuals,
            layers,
        })
    }

    /// The last layer's residual rows at `positions`, `(positions, hidden)`.
    fn last_rows(&self, saved: &Saved, positions: &[usize]) -> Result<Tensor> {
        let h = self.last_residual(saved)?;
        let idx = Tensor::from_vec(
            positions.iter().map(|&p| p as u32).collect::<Vec<_>>(),
            positions.len(),
            h.device(),
        )?;
        h.index_select(&idx, 0)
    }

    /// The final-normed hidden states at `positions`, `(positions, hidden)`.
    pub fn final_hidden(&self, saved: &Saved, positions: &[usize]) -> Result<Tensor> {
        let h = self.last_rows(saved, positions)?;
        rms_norm(&h, &self.norm, self.cfg.rms_norm_eps)
    }

    /// The (soft-capped) logits at `positions`, `(positions, vocab)` in f32, with products
    /// `p`.
    pub fn logits_at(&self, saved: &Saved, positions: &[usize], p: Products) -> Result<Tensor> {
        self.head(&self.last_rows(saved, positions)?, p)
    }

    /// The (soft-capped) logits of `ids` at `position`, each the exact f32 product of the
    /// final-normed hidden state with its output row: the values the seeds' rows carry,
    /// whatever products the rest of the logits were computed with.
    pub fn exact_logits(&self, saved: &Saved, position: usize, ids: &[u32]) -> Result<Vec<f32>> {
        let x = self
            .final_hidden(saved, &[position])?
            .to_dtype(DType::F32)?;
        let rows = self.lm_head.gather(ids)?.to_dtype(DType::F32)?;
        let logits = crate::kernels::matmul(&x, &rows.t()?)?.squeeze(0)?;
        self.softcap(&logits)?.to_vec1()
    }

    /// The seed of `Σ coef · logit[id]` at `position`: the direction of its gradient in the
    /// final-normed hidden state (the output projection's rows, through the soft-cap).
    pub fn seed(&self, saved: &Saved, position: usize, terms: &[(u32, f64)]) -> Result<Seed> {
        let x = self.final_hidden(saved, &[position])?.squeeze(0)?;
        let mut direction = x.zeros_like()?;
        for &(id, coef) in terms {
            let row = self.lm_head.rows(id as usize, 1)?.squeeze(0)?;
            let slope = match self.cfg.arch.final_logit_softcapping {
                // d/dz c·tanh(z/c) = 1 − tanh²(z/c)
                Some(c) => {
                    let z = (&x * &row)?.sum_all()?.to_dtype(DType::F64)?;
                    let t = (z.to_scalar::<f64>()? / c).tanh();
                    1.0 - t * t
                }
                None => 1.0,
            };
            direction = (direction + (row * (coef * slope))?)?;
        }
        Ok(Seed {
            parts: vec![(position, direction)],
        })
    }

    /// The seed of `Σ_i Σ_v coefs[i][v] · logit_{positions[i]}[v]`: a dense coefficient
    /// vector over the vocabulary at each position (a log-probability's gradient,
    /// `onehot − softmax`, is one), as one product with the output projection through the
    /// soft-cap's slope at each logit.
    pub fn seed_dense(
        &self,
        saved: &Saved,
        positions: &[usize],
        coefs: &[Vec<f32>],
        p: Products,
    ) -> Result<Seed> {
        let vocab = coefs.first().map_or(0, Vec::len);
        if positions.len() != coefs.len() || coefs.iter().any(|c| c.len() != vocab) {
            candle_core::bail!("one coefficient vector of the vocabulary's size per position");
        }
        let x = self.final_hidden(saved, positions)?;
        let mut c = Tensor::from_vec(coefs.concat(), (positions.len(), vocab), x.device())?;
        if let Some(cap) = self.cfg.arch.final_logit_softcapping {
            // d/dz c·tanh(z/c) = 1 − tanh²(z/c) = 1 − (capped / c)²
            let capped = self.logits_at(saved, positions, p)?;
            let slope = (1.0 - (capped / cap)?.sqr()?)?;
            c = (c * slope)?;
        }
        let directions = self.lm_head.vjp(&c.to_dtype(x.dtype())?, p)?;
        let parts = positions
            .iter()
            .enumerate()
            .map(|(i, &p)| Ok((p, directions.get(i)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Seed { parts })
    }

    pub(super) fn last_residual<'a>(&self, saved: &'a Saved) -> Result<&'a Tensor> {
        saved
            .residuals
            .last()
            .ok_or_else(|| candle_core::Error::Msg("no forward pass saved".into()))
    }
}
