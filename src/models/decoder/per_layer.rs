//! Per-layer inputs (Gemma 4's per-layer embeddings): each layer `l` reads an input of its
//! own per token, `pli_l = (norm(proj(e) / √hidden)_l + E_pl[id]_l · √P) / √2`, where `e` is
//! the token's (scaled) input embedding and `E_pl` a second embedding table of `layers × P`
//! values a token; after its MLP the layer adds `post(W_out (act(W_gate h) ⊙ pli_l))` to the
//! stream.
//!
//! A token's input is then its input embedding and its row of the second table side by side
//! (`Decoder::embed` returns `(seq, hidden + layers · P)`): gradients, scores, integrated
//! gradients' path and the faithfulness curves' removals all treat both parts as the
//! token's input, and what reaches the table's row is the token's too.

use super::{load_norm, Config, WeightSource};
use crate::kernels::Products;
use crate::models::gated::Activation;
use crate::models::linear::Linear;
use crate::models::weight::Weight;
use crate::models::Derivatives;
use candle_core::{Result, Tensor, D};

/// The model-wide part: the second table, and the projection and norm that give each layer
/// its share of the input embedding.
#[derive(Debug, Clone)]
pub(super) struct PerLayerInputs {
    /// `(vocab, layers · width)`.
    table: Weight,
    /// `hidden → layers · width`.
    projection: Linear,
    /// The projection's norm over each layer's `width` values.
    norm: Tensor,
    /// Values per layer (P).
    pub(super) width: usize,
    layers: usize,
    hidden: usize,
    eps: f64,
}

/// A pass's per-layer inputs, and what their backward pass reads.
#[derive(Debug, Clone)]
pub(super) struct LayerInputs {
    /// The projection before its norm, `(seq, layers, width)`.
    pre: Tensor,
    /// Every layer's input, `(seq, layers, width)`.
    pub(super) all: Tensor,
}

impl LayerInputs {
    /// Layer `l`'s inputs, `(seq, width)`.
    pub(super) fn layer(&self, l: usize) -> Result<Tensor> {
        self.all.narrow(1, l, 1)?.squeeze(1)?.contiguous()
    }

    /// Layer `l`'s inputs where the model has them.
    pub(super) fn of_layer(inputs: Option<&Self>, l: usize) -> Result<Option<Tensor>> {
        inputs.map(|s| s.layer(l)).transpose()
    }
}

/// `1/√2`, the scale of the sum of the two parts.
const HALF_SQRT: f64 = std::f64::consts::FRAC_1_SQRT_2;

impl PerLayerInputs {
    pub(super) fn load(
        w: &mut dyn WeightSource,
        cfg: &Config,
        width: usize,
    ) -> crate::Result<Self> {
        Ok(PerLayerInputs {
            table: w.get_matrix("model.embed_tokens_per_layer.weight")?,
            projection: Linear::new(w.get_matrix("model.per_layer_model_projection.weight")?),
            norm: load_norm(w, "model.per_layer_projection_norm.weight", &cfg.arch)?,
            width,
            layers: cfg.num_hidden_layers,
            hidden: cfg.hidden_size,
            eps: cfg.rms_norm_eps,
        })
    }

    /// Values a token's input row adds to its input embedding.
    pub(super) fn row_width(&self) -> usize {
        self.layers * self.width
    }

    /// The tokens' rows of the second table, scaled by √width (cast to f32 first, as
    /// transformers casts it to the weights' dtype), `(seq, layers · width)`.
    pub(super) fn rows(&self, ids: &[u32]) -> Result<Tensor> {
        self.table.gather(ids)? * ((self.width as f64).sqrt() as f32) as f64
    }

    /// Splits input rows `(seq, hidden + layers · width)` into the input embeddings and the
    /// layers' inputs, with `dv`'s derivative at the projection's norm.
    pub(super) fn split(
        &self,
        x: &Tensor,
        dv: &dyn Derivatives,
        p: Products,
    ) -> Result<(Tensor, LayerInputs)> {
        let n = x.dim(0)?;
        let e = x.narrow(D::Minus1, 0, self.hidden)?.contiguous()?;
        let tokens = x.narrow(D::Minus1, self.hidden, self.row_width())?;
        let shape = (n, self.layers, self.width);
        let pre =
            (self.projection.forward(&e, p)? * (self.hidden as f64).powf(-0.5))?.reshape(shape)?;
        let context = dv.rms_norm(&pre, &self.norm, self.eps)?;
        let all = ((context + tokens.reshape(shape)?)? * HALF_SQRT)?;
        Ok((e, LayerInputs { pre, all }))
    }

    /// Cotangents of every layer's inputs `d_all: (b, seq, layers, width)` carried to the
    /// input rows: their token part, and the input embedding's share added to `de` `(b, seq,
    /// hidden)`, side by side `(b, seq, hidden + layers · width)`.
    pub(super) fn backward(
        &self,
        s: &LayerInputs,
        d_all: &Tensor,
        de: &Tensor,
        dv: &dyn Derivatives,
        p: Products,
    ) -> Result<Tensor> {
        let (b, n, _, _) = d_all.dims4()?;
        let d = (d_all * HALF_SQRT)?;
        let d_pre = dv.rms_norm_vjp(&s.pre, &self.norm, self.eps, &d)?;
        let d_proj = (d_pre.reshape((b, n, self.row_width()))? * (self.hidden as f64).powf(-0.5))?;
        let de = (de + self.projection.vjp(&d_proj, p)?)?;
        Tensor::cat(&[de, d.reshape((b, n, self.row_width()))?], D::Minus1)
    }
}

/// A layer's gated block on its input: `post(W_out (act(W_gate h) ⊙ pli))`.
#[derive(Debug, Clone)]
pub(super) struct PerLayerBlock {
    gate: Linear,
    projection: Linear,
    post: Tensor,
    act: Activation,
}

/// What the block's backward pass reads.
#[derive(Debug)]
pub(super) struct SavedPerLayer {
    /// The stream the block reads and adds to.
    pub(super) input: Tensor,
    /// `W_gate h` before the activation.
    gate: Tensor,
    /// The layer's input.
    pli: Tensor,
    /// The block's output before its norm.
    raw: Tensor,
}

impl PerLayerBlock {
    pub(super) fn load(w: &mut dyn WeightSource, p: &str, cfg: &Config) -> crate::Result<Self> {
        Ok(PerLayerBlock {
            gate: Linear::new(w.get_matrix(&format!("{p}.per_layer_input_gate.weight"))?),
            projection: Linear::new(w.get_matrix(&format!("{p}.per_layer_projection.weight"))?),
            post: load_norm(
                w,
                &format!("{p}.post_per_layer_input_norm.weight"),
                &cfg.arch,
            )?,
            act: cfg.arch.activation,
        })
    }

    /// The stream `h` with the block's output added, and what its backward reads.
    pub(super) fn forward(
        &self,
        h: &Tensor,
        pli: &Tensor,
        eps: f64,
        dv: &dyn Derivatives,
        p: Products,
    ) -> Result<(Tensor, SavedPerLayer)> {
        let gate = self.gate.forward(h, p)?;
        let raw = self
            .projection
            .forward(&dv.gated(&gate, pli, self.act)?, p)?;
        let out = (h + dv.rms_norm(&raw, &self.post, eps)?)?;
        let saved = SavedPerLayer {
            input: h.clone(),
            gate,
            pli: pli.clone(),
            raw,
        };
        Ok((out, saved))
    }

    /// Cotangents `d: (b, seq, hidden)` of the stream after the block carried to the stream
    /// before it, and to the layer's input `(b, seq, width)`.
    pub(super) fn backward(
        &self,
        s: &SavedPerLayer,
        d: &Tensor,
        eps: f64,
        dv: &dyn Derivatives,
        p: Products,
    ) -> Result<(Tensor, Tensor)> {
        let dy = dv.rms_norm_vjp(&s.raw, &self.post, eps, d)?;
        let dz = self.projection.vjp(&dy, p)?;
        let (d_gate, d_pli) = dv.gated_vjp(&s.gate, &s.pli, self.act, &dz)?;
        let dh = match d_gate {
            Some(dg) => (d + self.gate.vjp(&dg, p)?)?,
            None => d.clone(),
        };
        Ok((dh, d_pli))
    }

    /// Bytes a decoding step reads of its matrices.
    pub(super) fn bytes_read(&self, p: Products) -> u64 {
        self.gate.bytes_read(p) + self.projection.bytes_read(p)
    }
}
