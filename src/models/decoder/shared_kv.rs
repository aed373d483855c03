//! Keys and values shared across layers (Gemma 4): the last layers of a model have no key or
//! value projections of their own and attend to the final (normed, rotated) keys and values
//! of the last earlier layer of their kind. A pass keeps those producers' keys and values in
//! a [`SharedKv`] for the layers after them; the backward pass carries the readers'
//! cotangents back to the producer ([`PendingKv`]), whose own keys and values they are.

use super::self_attention::{Attention, KeysValues};
use candle_core::{Result, Tensor};

/// The keys and values that later layers read, by producing layer: one `(k, v)` `(kv_heads,
/// positions, head_dim)` per input of the pass (a batch of inputs after a prefix has several).
#[derive(Debug, Default)]
pub(super) struct SharedKv(Vec<Vec<(Tensor, Tensor)>>);

impl SharedKv {
    fn put(&mut self, layer: usize, input: usize, kv: (Tensor, Tensor)) {
        if self.0.len() <= layer {
            self.0.resize_with(layer + 1, Vec::new);
        }
        let kept = &mut self.0[layer];
        if kept.len() <= input {
            kept.truncate(input);
            kept.push(kv);
        } else {
            kept[input] = kv;
        }
    }

    fn get(&self, layer: usize, input: usize) -> Result<(Tensor, Tensor)> {
        match self.0.get(layer).and_then(|k| k.get(input)) {
            Some(kv) => Ok(kv.clone()),
            None => candle_core::bail!("layer {layer}'s keys and values were not kept"),
        }
    }
}

/// Cotangents of shared keys and values from the layers that read them, by producing layer:
/// `(dk, dv)` `(b, kv_heads, seq, head_dim)` each, where the derivatives give one.
#[derive(Debug, Default)]
pub(super) struct PendingKv(Vec<(Option<Tensor>, Option<Tensor>)>);

/// The sum of two optional cotangents.
fn plus(a: Option<Tensor>, b: Option<Tensor>) -> Result<Option<Tensor>> {
    Ok(match (a, b) {
        (Some(a), Some(b)) => Some((a + b)?),
        (a, b) => a.or(b),
    })
}

impl PendingKv {
    /// Adds a reader's cotangents of layer `layer`'s keys and values.
    pub(super) fn add(
        &mut self,
        layer: usize,
        (dk, dv): (Option<Tensor>, Option<Tensor>),
    ) -> Result<()> {
        if self.0.len() <= layer {
            self.0.resize_with(layer + 1, Default::default);
        }
        let (k, v) = std::mem::take(&mut self.0[layer]);
        self.0[layer] = (plus(k, dk)?, plus(v, dv)?);
        Ok(())
    }

    /// Layer `layer`'s own cotangents with its readers' added (and taken).
    pub(super) fn with_readers(
        &mut self,
        layer: usize,
        (dk, dv): (Option<Tensor>, Option<Tensor>),
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (k, v) = self
            .0
            .get_mut(layer)
            .map(std::mem::take)
            .unwrap_or_default();
        Ok((plus(dk, k)?, plus(dv, v)?))
    }
}

impl Attention {
    /// The keys and values this layer attends over for input `input` of the pass: its own
    /// (`own`), or those of the layer it reads; kept in `shared` where later layers read them.
    pub(super) fn attended(
        &self,
        own: Option<(Tensor, Tensor)>,
        shared: &mut SharedKv,
        input: usize,
    ) -> Result<(Tensor, Tensor)> {
        let kv = match (&self.kv, own) {
            (KeysValues::Shared { from }, _) => shared.get(*from, input)?,
            (KeysValues::Own { .. }, Some(kv)) => kv,
            (KeysValues::Own { .. }, None) => {
                candle_core::bail!("layer {} has no keys and values", self.index)
            }
        };
        if self.keeps {
            shared.put(self.index, input, kv.clone());
        }
        Ok(kv)
    }

    /// The layer it reads keys and values from, where it shares them.
    pub(super) fn reads_from(&self) -> Option<usize> {
        match self.kv {
            KeysValues::Shared { from } => Some(from),
            KeysValues::Own { .. } => None,
        }
    }
}
