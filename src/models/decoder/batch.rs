//! Inference for many inputs after one shared prefix: the perturbation curves' forward
//! passes. The inputs' rows go through every matrix product together (one product of many
//! rows keeps the cores busier than many products of a few), and attention runs per input
//! against the prefix's keys and values, which are computed once.

use candle_core::{Result, Tensor};

use super::self_attention::Projected;
use super::shared_kv::SharedKv;
use super::{Attention, Decoder, KvCache, LayerInputs, Mixer, Rotary};
use crate::kernels::Products;
use crate::models::Ordinary;

/// One input's rows in the stacked batch: `(first row, rows)`.
type Segment = (usize, usize);

impl Attention {
    /// Attention of inputs stacked in `x: (Σ rows, hidden)`, each at positions `offset..`
    /// after the prefix's keys and values `(kv_heads, offset, head_dim)` (None: no prefix).
    fn forward_segments(
        &self,
        x: &Tensor,
        (rot, shared): (&Rotary, &mut SharedKv),
        prefix: Option<&(Tensor, Tensor)>,
        offset: usize,
        segments: &[Segment],
        p: Products,
    ) -> Result<Tensor> {
        let Projected { q, kv, gate } = self.project(x, p)?;
        let mut outs = Vec::with_capacity(segments.len());
        for (i, &(start, n)) in segments.iter().enumerate() {
            let qi = self.place_queries(&q.narrow(1, start, n)?, rot, offset, &Ordinary)?;
            // Its own keys and values after the prefix's, or (a layer that reads another's)
            // that layer's for this input.
            let own = match &kv {
                Some((k, v)) => {
                    let (k, v) = (k.narrow(1, start, n)?, v.narrow(1, start, n)?);
                    let (ki, vi) = self.place_keys_values((&k, &v), rot, offset, &Ordinary)?;
                    Some(match prefix {
                        Some((pk, pv)) => {
                            (Tensor::cat(&[pk, &ki], 1)?, Tensor::cat(&[pv, &vi], 1)?)
                        }
                        None => (ki.contiguous()?, vi.contiguous()?),
                    })
                }
                None => None,
            };
            let (ki, vi) = self.attended(own, shared, i)?;
            outs.push(self.attend(&qi.contiguous()?, &ki, &vi, p)?);
        }
        self.merge_heads(
            Tensor::cat(&outs, 1)?,
            x.dim(0)?,
            gate.as_ref(),
            &Ordinary,
            p,
        )
    }
}

impl Decoder {
    /// The next-token logits `(vocab,)` in f32 of each input: `tails[i]`, input rows
    /// `(rows, input_width)` with at least one row, run after the first `offset` positions held in
    /// `prefix` (which is left as it is).
    pub fn forward_batch(
        &self,
        prefix: &KvCache,
        offset: usize,
        tails: &[Tensor],
        p: Products,
    ) -> Result<Vec<Tensor>> {
        if offset > prefix.len {
            candle_core::bail!(
                "a prefix of {offset} positions from a cache of {}",
                prefix.len
            );
        }
        let mut segments = Vec::with_capacity(tails.len());
        let mut rows = 0;
        for t in tails {
            let n = t.dim(0)?;
            self.check_positions(offset, n)?;
            segments.push((rows, n));
            rows += n;
        }
        if tails.is_empty() {
            return Ok(Vec::new());
        }
        let mut crosses = false;
        for t in tails {
            crosses |= self.crosses_long_rope(prefix, offset, t.dim(0)?);
        }
        // A recurrent layer's state is the prefix's only where the cache holds exactly it:
        // else the prefix runs once more, into a cache of exactly its positions.
        if self.is_recurrent() && offset > 0 && (prefix.stale || prefix.len != offset) {
            let mut exact = KvCache::default();
            self.forward_embeds_cached(&prefix.seen(offset)?, &mut exact, p)?;
            return self.forward_batch(&exact, offset, tails, p);
        }
        if crosses {
            // The prefix was rotated with the other LongRoPE factors: whole sequences.
            let seen = prefix.seen(offset)?;
            let whole = tails
                .iter()
                .map(|t| Tensor::cat(&[&seen, t], 0))
                .collect::<Result<Vec<_>>>()?;
            return self.forward_batch(&KvCache::default(), 0, &whole, p);
        }
        let eps = self.cfg.rms_norm_eps;
        let (mut h, inputs) = self.split_input(&Tensor::cat(tails, 0)?, &Ordinary, p)?;
        let mut shared = SharedKv::default();
        for (i, layer) in self.layers.iter().enumerate() {
            let held = prefix.layers.get(i).filter(|_| offset > 0);
            let rot = &self.rotary[layer.rope()];
            let pli = LayerInputs::of_layer(inputs.as_ref(), i)?;
            let at = (eps, pli.as_ref());
            h = match &layer.mixer {
                Mixer::Attention(a) => {
                    let kv = match held.map(|l| l.view(offset)).transpose()? {
                        Some(Some((k, v))) => Some((k.contiguous()?, v.contiguous()?)),
                        // A layer that reads another's keys and values holds none.
                        _ if offset > 0 && a.reads_from().is_none() => {
                            candle_core::bail!("the prefix has no keys for layer {i}")
                        }
                        _ => None,
                    };
                    layer.forward(h, at, &Ordinary, p, |x| {
                        let ctx = (rot, &mut shared);
                        a.forward_segments(x, ctx, kv.as_ref(), offset, &segments, p)
                    })?
                }
                // Each input from the prefix's state.
                Mixer::DeltaNet(d) => layer.forward(h, at, &Ordinary, p, |x| {
                    let outs = segments
                        .iter()
                        .map(|&(start, n)| {
                            let mut state = held.map(|l| l.delta.clone()).unwrap_or_default();
                            d.forward_cached(&x.narrow(0, start, n)?, &mut state, p)
                        })
                        .collect::<Result<Vec<_>>>()?;
                    Tensor::cat(&outs, 0)
                })?,
            };
        }
        let lasts = segments
            .iter()
            .map(|&(start, n)| h.narrow(0, start + n - 1, 1))
            .collect::<Result<Vec<_>>>()?;
        // (inputs, vocab): each input's logits are a row.
        let logits = self.head(&Tensor::cat(&lasts, 0)?, p)?;
        (0..tails.len()).map(|i| logits.get(i)).collect()
    }
}
