//! Inference with a key/value cache (no graph): generation runs each new token through the
//! model once; the perturbation curves reuse a prompt's unchanged prefix.

use candle_core::{Result, Tensor};

use super::{Attention, Decoder, Rotary};
use crate::kernels::Products;
use crate::models::Ordinary;

impl Attention {
    /// Inference with a KV cache (no graph): `x: (new, hidden)` at positions
    /// `offset..offset + new`; appends the new keys and values to `cache`.
    fn forward_cached(
        &self,
        x: &Tensor,
        rot: &Rotary,
        cache: &mut LayerCache,
        offset: usize,
        p: Products,
    ) -> Result<Tensor> {
        let n = x.dim(0)?;
        let (q, k, v) = self.qkv(x, rot, offset, &Ordinary, p)?;
        let (k, v) = cache.append(&k, &v, offset)?;
        let o = self.attend(&q, &k, &v, p)?;
        self.merge_heads(o, n, &Ordinary, p)
    }
}

/// One layer's keys and values `(kv_heads, capacity, head_dim)`, filled up to a length;
/// capacity doubles when full, so appending a token copies only that token.
#[derive(Debug, Default)]
pub(super) struct LayerCache {
    pub(super) buffers: Option<(Tensor, Tensor)>,
}

impl LayerCache {
    /// Writes `k, v: (kv_heads, new, head_dim)` at position `len`; returns views of all
    /// `len + new` positions.
    fn append(&mut self, k: &Tensor, v: &Tensor, len: usize) -> Result<(Tensor, Tensor)> {
        let (kvh, new, hd) = k.dims3()?;
        let need = len + new;
        let cap = self
            .buffers
            .as_ref()
            .map_or(0, |(b, _)| b.dim(1).unwrap_or(0));
        if need > cap {
            let cap = need.max(2 * cap).max(64);
            let grow = |old: Option<&Tensor>| -> Result<Tensor> {
                let buf = Tensor::zeros((kvh, cap, hd), k.dtype(), k.device())?;
                if let Some(old) = old.filter(|_| len > 0) {
                    buf.slice_set(&old.narrow(1, 0, len)?.contiguous()?, 1, 0)?;
                }
                Ok(buf)
            };
            let old = self.buffers.take();
            self.buffers = Some((
                grow(old.as_ref().map(|b| &b.0))?,
                grow(old.as_ref().map(|b| &b.1))?,
            ));
        }
        let Some((kb, vb)) = &self.buffers else {
            candle_core::bail!("kv cache buffers missing")
        };
        kb.slice_set(&k.contiguous()?, 1, len)?;
        vb.slice_set(&v.contiguous()?, 1, len)?;
        Ok((kb.narrow(1, 0, need)?, vb.narrow(1, 0, need)?))
    }
}

/// Keys and values of every position seen so far, per layer: generation runs each new
/// token through the model once.
#[derive(Debug, Default)]
pub struct KvCache {
    pub(super) layers: Vec<LayerCache>,
    pub(super) len: usize,
    /// LongRoPE models only: the inputs seen so far, and whether the keys were rotated with
    /// the long factors. A sequence takes one set for all its positions, chosen by its length
    /// (transformers recomputes its cache where generation crosses the switch), so a cache
    /// made with the other set is recomputed from its inputs.
    pub(super) inputs: Option<Tensor>,
    pub(super) long: bool,
}

impl KvCache {
    /// Positions held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A new cache holding this one's first `len` positions, copied: appending to either
    /// leaves the other alone (inputs that share a prefix run it once).
    pub fn prefix(&self, len: usize) -> Result<KvCache> {
        let len = len.min(self.len);
        let layers = self
            .layers
            .iter()
            .map(|l| {
                let buffers = match (&l.buffers, len) {
                    (Some((k, v)), 1..) => {
                        Some((k.narrow(1, 0, len)?.copy()?, v.narrow(1, 0, len)?.copy()?))
                    }
                    _ => None,
                };
                Ok(LayerCache { buffers })
            })
            .collect::<Result<_>>()?;
        let inputs = match (&self.inputs, len) {
            (Some(t), 1..) => Some(t.narrow(0, 0, len)?.copy()?),
            _ => None,
        };
        Ok(KvCache {
            layers,
            len,
            inputs,
            long: self.long,
        })
    }
}

impl Decoder {
    /// Inference for generation: runs `ids` (the prompt, then one token at a time) after the
    /// positions in `cache` and returns the next-token logits `(vocab,)` in f32.
    pub fn forward_cached(&self, ids: &[u32], cache: &mut KvCache, p: Products) -> Result<Tensor> {
        self.forward_embeds_cached(&self.embed(ids)?, cache, p)
    }

    /// LongRoPE's switch: a sequence longer than this takes the long factors.
    pub(super) fn long_rope_after(&self) -> Option<usize> {
        self.cfg.rope.long.as_ref().map(|l| l.original)
    }

    /// Refuses to run no positions, or `n` positions after `offset` past the context.
    pub(super) fn check_positions(&self, offset: usize, n: usize) -> Result<()> {
        if n == 0 {
            candle_core::bail!("no positions to run");
        }
        if offset + n > self.cfg.max_position_embeddings {
            candle_core::bail!(
                "{} positions exceed the model's context of {}",
                offset + n,
                self.cfg.max_position_embeddings
            );
        }
        Ok(())
    }

    /// [`Decoder::forward_cached`] from input embeddings `(seq, hidden)`.
    pub fn forward_embeds_cached(
        &self,
        embeds: &Tensor,
        cache: &mut KvCache,
        p: Products,
    ) -> Result<Tensor> {
        let offset = cache.len;
        let n = embeds.dim(0)?;
        self.check_positions(offset, n)?;
        if let Some(switch) = self.long_rope_after() {
            let long = offset + n > switch;
            if offset > 0 && cache.long != long {
                // Crossing LongRoPE's switch: the whole sequence again, with the long factors.
                let Some(seen) = cache.inputs.take() else {
                    candle_core::bail!("a LongRoPE cache without its inputs");
                };
                *cache = KvCache::default();
                return self.forward_embeds_cached(&Tensor::cat(&[&seen, embeds], 0)?, cache, p);
            }
            cache.long = long;
            cache.inputs = Some(match cache.inputs.take() {
                Some(seen) => Tensor::cat(&[&seen, embeds], 0)?,
                None => embeds.clone(),
            });
        }
        cache
            .layers
            .resize_with(self.layers.len(), LayerCache::default);
        let eps = self.cfg.rms_norm_eps;
        let mut h = embeds.clone();
        for (layer, kv) in self.layers.iter().zip(cache.layers.iter_mut()) {
            let rot = &self.rotary[layer.self_attn.rope];
            h = layer.forward(h, eps, &Ordinary, p, |x| {
                layer.self_attn.forward_cached(x, rot, kv, offset, p)
            })?;
        }
        cache.len = offset + n;
        self.head(&h.narrow(0, n - 1, 1)?, p)?.squeeze(0)
    }
}
