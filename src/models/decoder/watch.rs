//! Listening inside a backward pass: a [`Watch`] hears, at each layer's [`Point`]s, the
//! activations there with their cotangents, and the pass computes a point's activations only
//! when a watch wants them.

use super::Block;
use candle_core::{Result, Tensor};

/// Where a [`Watch`] hears a backward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// A layer's MLP hidden units: the input of `down_proj`, `(seq, intermediate)`.
    MlpHidden,
    /// A layer's attention heads' outputs, side by side: the input of `o_proj`, `(seq,
    /// heads · head_dim)`.
    AttentionHeads,
    /// What a residual block adds to the stream, `(seq, hidden)` (its output after any
    /// post-norm), with the cotangent of the stream after it.
    BlockOutput(Block),
    /// The residual stream a block reads, `(seq, hidden)`, with the cotangent the block
    /// alone hands back to it (its part of the stream's cotangent before it).
    BlockInput(Block),
}

/// Hears, during a backward pass, the activations at each layer's [`Point`]s with their
/// cotangents (`(seeds, …)` the activation's shape).
pub trait Watch {
    /// Whether it listens at `point`: the pass computes a point's activations only then.
    fn wants(&self, point: Point) -> bool;

    /// Hears `point` of `layer`: its activations and their cotangents for the pass's seeds
    /// `first..first + seeds`.
    fn hear(
        &mut self,
        point: Point,
        layer: usize,
        first: usize,
        activations: &Tensor,
        cotangents: &Tensor,
    ) -> Result<()>;
}

/// A [`Watch`] at one layer of one group of seeds.
pub(super) struct At<'a> {
    pub(super) watch: &'a mut (dyn Watch + 'a),
    pub(super) layer: usize,
    pub(super) first: usize,
}

impl At<'_> {
    /// Whether the watch listens at `point`.
    pub(super) fn wants(&self, point: Point) -> bool {
        self.watch.wants(point)
    }

    /// Hears `point` when the watch wants it, its activations computed by `activations` only
    /// then.
    pub(super) fn hear(
        &mut self,
        point: Point,
        activations: impl FnOnce() -> Result<Tensor>,
        cotangents: &Tensor,
    ) -> Result<()> {
        if self.watch.wants(point) {
            let a = activations()?;
            let (layer, first) = (self.layer, self.first);
            self.watch.hear(point, layer, first, &a, cotangents)?;
        }
        Ok(())
    }
}
