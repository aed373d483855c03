//! One neuron or head looked at alone: what a neuron writes (its `down_proj` column read
//! through the final norm and the output projection, a logit lens of the neuron), its
//! activation at every position of a saved forward pass, and a head's attention pattern.

use super::saved::Saved;
use super::shared_kv::SharedKv;
use super::{Decoder, LayerInputs};
use crate::kernels::Products;
use crate::models::attention::probabilities;
use crate::models::Ordinary;
use candle_core::{DType, Result, Tensor};

impl Decoder {
    fn check_unit(&self, layer: usize, index: usize, of: usize, kind: &str) -> Result<()> {
        let layers = self.layers.len();
        if layer >= layers || index >= of {
            candle_core::bail!(
                "no {kind} {layer}:{index}: the model has layers 0 to {} of {kind} 0 to {}",
                layers.saturating_sub(1),
                of.saturating_sub(1)
            );
        }
        Ok(())
    }

    /// Neuron `j` of `layer`'s logit lens: its `down_proj` column through the final norm and
    /// the output projection (and soft-cap), `(vocab,)` in f32.
    pub fn neuron_lens(&self, layer: usize, j: usize) -> Result<Vec<f32>> {
        self.check_unit(layer, j, self.cfg.neurons(layer), "neuron")?;
        let (down, j, width) = self.layers[layer].mlp.down_column(j)?;
        let dtype = self.embed_tokens.compute_dtype();
        let mut onehot = vec![0f32; width];
        onehot[j] = 1.0;
        let e = Tensor::from_vec(onehot, (1, width), self.norm.device())?.to_dtype(dtype)?;
        let column = down.forward(&e, Products::F32)?;
        self.head(&column, Products::F32)?.squeeze(0)?.to_vec1()
    }

    /// Neuron `j` of `layer`'s activation (the input of `down_proj`, after any steering; 0
    /// where its expert was not chosen) at each position of `saved`.
    pub fn neuron_activations(&self, saved: &Saved, layer: usize, j: usize) -> Result<Vec<f32>> {
        self.check_unit(layer, j, self.cfg.neurons(layer), "neuron")?;
        let hidden = self.layers[layer].mlp.hidden(saved.ffn(layer)?)?;
        hidden
            .narrow(1, j, 1)?
            .squeeze(1)?
            .to_dtype(DType::F32)?
            .to_vec1()
    }

    /// Layer `layer`'s MLP hidden units (after any steering) over `ids`, `(seq, neurons)`:
    /// the layers before it run, then its attention and its MLP's input.
    pub fn mlp_hidden(&self, ids: &[u32], layer: usize, p: Products) -> Result<Tensor> {
        let layers = self.layers.len();
        if layer >= layers {
            candle_core::bail!("layer {layer} of {layers}");
        }
        let eps = self.cfg.rms_norm_eps;
        let (mut h, inputs) = self.split_input(&self.embed(ids)?, &Ordinary, p)?;
        let pli = |i: usize| LayerInputs::of_layer(inputs.as_ref(), i);
        let mut shared = SharedKv::default();
        for (i, l) in self.layers[..layer].iter().enumerate() {
            let rot = &self.rotary[l.rope()];
            h = l
                .forward_saved(&h, (eps, pli(i)?.as_ref()), (rot, &mut shared), p)?
                .0;
        }
        let l = &self.layers[layer];
        let (own, rot) = (pli(layer)?, &self.rotary[l.rope()]);
        let (_, saved) = l.forward_saved(&h, (eps, own.as_ref()), (rot, &mut shared), p)?;
        l.mlp.hidden(&saved.ffn)
    }

    /// Head `h` of `layer`'s attention probabilities over `saved`'s positions, `[query][key]`
    /// (each row sums to 1 over the keys it sees).
    pub fn attention_pattern(
        &self,
        saved: &Saved,
        layer: usize,
        h: usize,
    ) -> Result<Vec<Vec<f32>>> {
        self.check_unit(layer, h, self.cfg.num_attention_heads, "head")?;
        let Some(at) = self.layers[layer].attention() else {
            candle_core::bail!(
                "layer {layer} is a Gated DeltaNet layer: it has no attention heads"
            );
        };
        let (q, k) = saved.attention_inputs(layer)?;
        let kv = h / (at.n_heads / at.n_kv_heads);
        let q = q.narrow(0, h, 1)?.to_dtype(DType::F32)?.contiguous()?;
        let k = k.narrow(0, kv, 1)?.to_dtype(DType::F32)?.contiguous()?;
        probabilities(&q, &k, at.scale, at.window, Products::F32)?
            .squeeze(0)?
            .to_vec2()
    }
}
