//! Inference with a key/value cache (no graph): generation runs each new token through the
//! model once; the perturbation curves reuse a prompt's unchanged prefix.

use candle_core::{Result, Tensor};

use super::gated_deltanet::DeltaNetCache;
use super::self_attention::Projected;
use super::shared_kv::SharedKv;
use super::{Attention, Decoder, LayerInputs, Mixer, Rotary};
use crate::kernels::Products;
use crate::models::Ordinary;

impl Attention {
    /// Inference with a KV cache (no graph): `x: (new, hidden)` at positions
    /// `offset..offset + new`; appends the new keys and values to `cache`.
    fn forward_cached(
        &self,
        x: &Tensor,
        (rot, shared): (&Rotary, &mut SharedKv),
        cache: &mut LayerCache,
        offset: usize,
        p: Products,
    ) -> Result<Tensor> {
        let n = x.dim(0)?;
        let Projected { q, kv, gate } = self.qkv(x, rot, offset, &Ordinary, p)?;
        // A layer that reads another's keys and values caches none.
        let own = match kv {
            Some((k, v)) => Some(cache.append(&k, &v, offset)?),
            None => None,
        };
        let (k, v) = self.attended(own, shared, 0)?;
        let o = self.attend(&q, &k, &v, p)?;
        self.merge_heads(o, n, gate.as_ref(), &Ordinary, p)
    }
}

/// A tensor that grows along one dimension, filled up to a length: capacity doubles when
/// full, so appending copies only what is appended.
#[derive(Debug, Default)]
pub(super) struct Growing {
    buf: Option<Tensor>,
}

impl Growing {
    /// Writes `x` at position `len` along `dim`; returns a view of all `len + new`.
    fn append(&mut self, x: &Tensor, dim: usize, len: usize) -> Result<Tensor> {
        let need = len + x.dim(dim)?;
        let cap = self.buf.as_ref().map_or(0, |b| b.dim(dim).unwrap_or(0));
        if need > cap {
            let mut shape = x.dims().to_vec();
            shape[dim] = need.max(2 * cap).max(64);
            let buf = Tensor::zeros(shape, x.dtype(), x.device())?;
            if let Some(old) = self.buf.take().filter(|_| len > 0) {
                buf.slice_set(&old.narrow(dim, 0, len)?.contiguous()?, dim, 0)?;
            }
            self.buf = Some(buf);
        }
        let Some(buf) = &self.buf else {
            candle_core::bail!("a growing buffer without its storage")
        };
        buf.slice_set(&x.contiguous()?, dim, len)?;
        buf.narrow(dim, 0, need)
    }

    /// A view of its first `len` along `dim` (none when empty).
    pub(super) fn view(&self, dim: usize, len: usize) -> Result<Option<Tensor>> {
        match (&self.buf, len) {
            (Some(b), 1..) => Ok(Some(b.narrow(dim, 0, len)?)),
            _ => Ok(None),
        }
    }

    /// A copy of its first `len` along `dim`.
    fn prefix(&self, dim: usize, len: usize) -> Result<Growing> {
        Ok(Growing {
            buf: self.view(dim, len)?.map(|t| t.copy()).transpose()?,
        })
    }
}

/// One layer's keys and values `(kv_heads, positions, head_dim)`, or a Gated DeltaNet
/// layer's state.
#[derive(Debug, Default)]
pub(super) struct LayerCache {
    k: Growing,
    v: Growing,
    pub(super) delta: DeltaNetCache,
}

impl LayerCache {
    /// Writes `k, v: (kv_heads, new, head_dim)` at position `len`; returns views of all
    /// `len + new` positions.
    fn append(&mut self, k: &Tensor, v: &Tensor, len: usize) -> Result<(Tensor, Tensor)> {
        Ok((self.k.append(k, 1, len)?, self.v.append(v, 1, len)?))
    }

    /// Views of the first `len` positions' keys and values (none when empty).
    pub(super) fn view(&self, len: usize) -> Result<Option<(Tensor, Tensor)>> {
        Ok(self.k.view(1, len)?.zip(self.v.view(1, len)?))
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
    pub(super) inputs: Growing,
    pub(super) long: bool,
    /// A model with recurrent layers (Gated DeltaNet): their state cannot be cut back to a
    /// prefix, so the cache keeps its inputs, and a prefix of fewer positions than it holds
    /// runs them again (`stale`).
    pub(super) recurrent: bool,
    pub(super) stale: bool,
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
        let stale = self.stale || (self.recurrent && len < self.len);
        let layers = match stale {
            true => Vec::new(),
            false => self
                .layers
                .iter()
                .map(|l| {
                    Ok(LayerCache {
                        k: l.k.prefix(1, len)?,
                        v: l.v.prefix(1, len)?,
                        delta: l.delta.clone(),
                    })
                })
                .collect::<Result<_>>()?,
        };
        Ok(KvCache {
            layers,
            len,
            inputs: self.inputs.prefix(0, len)?,
            long: self.long,
            recurrent: self.recurrent,
            stale,
        })
    }

    /// LongRoPE and recurrent models: the inputs of the first `len` positions, to run again
    /// (with the other set of factors; from the start, for a stale prefix).
    pub(super) fn seen(&self, len: usize) -> Result<Tensor> {
        match self.inputs.view(0, len)? {
            Some(t) => Ok(t),
            None => candle_core::bail!("a cache without its inputs"),
        }
    }
}

impl Decoder {
    /// Inference for generation: runs `ids` (the prompt, then one token at a time) after the
    /// positions in `cache` and returns the next-token logits `(vocab,)` in f32.
    pub fn forward_cached(&self, ids: &[u32], cache: &mut KvCache, p: Products) -> Result<Tensor> {
        self.forward_embeds_cached(&self.embed(ids)?, cache, p)
    }

    /// Whether some layers carry a recurrent state (Gated DeltaNet).
    pub(super) fn is_recurrent(&self) -> bool {
        self.layers
            .iter()
            .any(|l| matches!(l.mixer, Mixer::DeltaNet(_)))
    }

    /// LongRoPE's switch: a sequence longer than this takes the long factors.
    fn long_rope_after(&self) -> Option<usize> {
        self.cfg.rope.long.as_ref().map(|l| l.original)
    }

    /// Whether running `n` positions after the first `offset` of `cache` takes the other set
    /// of LongRoPE factors than the one the cache was made with (then the whole sequence runs
    /// again, as transformers recomputes its cache where generation crosses the switch).
    pub(super) fn crosses_long_rope(&self, cache: &KvCache, offset: usize, n: usize) -> bool {
        self.long_rope_after()
            .is_some_and(|switch| offset > 0 && (offset + n > switch) != cache.long)
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

    /// [`Decoder::forward_cached`] from input rows `(seq, input_width)` ([`Decoder::embed`]).
    pub fn forward_embeds_cached(
        &self,
        embeds: &Tensor,
        cache: &mut KvCache,
        p: Products,
    ) -> Result<Tensor> {
        let offset = cache.len;
        let n = embeds.dim(0)?;
        self.check_positions(offset, n)?;
        if self.crosses_long_rope(cache, offset, n) || (cache.stale && offset > 0) {
            let whole = Tensor::cat(&[&cache.seen(offset)?, embeds], 0)?;
            *cache = KvCache::default();
            return self.forward_embeds_cached(&whole, cache, p);
        }
        cache.stale = false;
        cache.recurrent = self.is_recurrent();
        if let Some(switch) = self.long_rope_after() {
            cache.long = offset + n > switch;
        }
        if self.long_rope_after().is_some() || cache.recurrent {
            cache.inputs.append(embeds, 0, offset)?;
        }
        cache
            .layers
            .resize_with(self.layers.len(), LayerCache::default);
        let eps = self.cfg.rms_norm_eps;
        let (mut h, inputs) = self.split_input(embeds, &Ordinary, p)?;
        let mut shared = SharedKv::default();
        // A pass that stops part-way leaves recurrent states moved past `len`: until it ends,
        // the cache reruns from its inputs.
        cache.stale = cache.recurrent;
        // Only the last position's logits come out: from the first layer after which no
        // layer makes keys or values for the cache, only its row is computed (Gemma 4's
        // shared layers, as transformers' `_maybe_slice_kv_shared_inputs`).
        let last_only = self.readers_from().filter(|_| n > 1);
        let mut start = 0;
        for (i, (layer, kv)) in self.layers.iter().zip(cache.layers.iter_mut()).enumerate() {
            if last_only == Some(i) {
                (h, start) = (h.narrow(0, n - 1, 1)?, n - 1);
            }
            let rot = &self.rotary[layer.rope()];
            let pli = LayerInputs::of_layer(inputs.as_ref(), i)?
                .map(|t| t.narrow(0, start, n - start))
                .transpose()?;
            let at = offset + start;
            h = layer.forward(h, (eps, pli.as_ref()), &Ordinary, p, |x| {
                match &layer.mixer {
                    Mixer::Attention(a) => a.forward_cached(x, (rot, &mut shared), kv, at, p),
                    Mixer::DeltaNet(d) => d.forward_cached(x, &mut kv.delta, p),
                }
            })?;
        }
        cache.len = offset + n;
        cache.stale = false;
        self.head(&h.narrow(0, n - 1 - start, 1)?, p)?.squeeze(0)
    }

    /// The first layer from which every layer attends to an earlier layer's keys and values
    /// (making none of its own), where there is one.
    fn readers_from(&self) -> Option<usize> {
        (0..self.layers.len())
            .rev()
            .take_while(|&i| self.cfg.kv_from(i).is_some())
            .last()
    }
}
