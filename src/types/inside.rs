//! Inside the model: the relevance of each layer's MLP neurons and attention heads in an
//! explanation, and of its two residual blocks as a whole (their conservation).

use super::Unit;
use serde::{Deserialize, Serialize};
use std::fmt;

/// One layer's attention heads in an explanation. A head's part of the attention output (its
/// slice of `o_proj`'s input) times the method's gradient there, summed over the slice (the
/// gradient's magnitude for saliency), is its relevance at a token; its value is the sum over
/// tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadLayer {
    /// Σ over the layer's heads (and tokens).
    pub total: f32,
    /// Each head's relevance summed over tokens.
    pub heads: Vec<f32>,
    /// `[head][token]`: each head's relevance at each token.
    pub per_token: Vec<Vec<f32>>,
    /// The attention block's relevance in the residual stream (methods of input × gradient
    /// and LRP; none for saliency): `total` equals its `output` wherever `o_proj` is linear
    /// and the post-norm (if any) follows LRP's identity rule.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub block: Option<BlockRelevance>,
}

/// One layer's MLP neurons in an explanation. A neuron is one of the MLP's hidden units (the
/// input of `down_proj`: `act(gate) · up`); its relevance at token t is its activation times
/// the method's gradient there (input × gradient, AttnLRP, CP-LRP), or the gradient's
/// magnitude (saliency); a neuron's value is the sum over tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NeuronLayer {
    /// Σ over the layer's neurons (and tokens).
    pub total: f32,
    /// The neurons of largest |value|, largest first.
    pub top: Vec<Neuron>,
    /// The MLP block's relevance in the residual stream (as [`HeadLayer::block`]).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub block: Option<BlockRelevance>,
}

/// One neuron's relevance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Neuron {
    /// Its index among the layer's hidden units.
    pub index: u32,
    /// Its relevance summed over tokens.
    pub value: f32,
    /// Its relevance at each token.
    pub per_token: Vec<f32>,
}

/// A residual block's relevance in the stream `h_after = h_before + f(h_before)`, with `g`
/// the method's (rule-modified) gradient: what it writes, `output = Σ f · g_after`, and what
/// it hands back to the stream before it, `input = Σ h_before · g_from_block` (its part of
/// `g_before`). `input / output` is the block's conservation: 1 where its rules conserve
/// relevance (LRP's MLP; CP-LRP's attention, its probabilities constant), not under AttnLRP's
/// softmax rule or plain gradients.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct BlockRelevance {
    /// Relevance the block writes into the stream, summed over tokens.
    pub output: f32,
    /// Relevance the block hands back to the stream before it, summed over tokens.
    pub input: f32,
}

/// The most units an ablation curve zeroes.
pub const MAX_ABLATION: usize = 32;

/// Random draws an ablation curve is compared with.
pub const ABLATION_DRAWS: usize = 4;

/// A neuron or head of one layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Component {
    /// The layer, from 0.
    pub layer: usize,
    /// The neuron or head in it.
    pub unit: Unit,
}

impl fmt::Display for Component {
    /// `layer:index` for a neuron, `layer:hHEAD` for a head (as `--steer` reads them).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.unit {
            Unit::Neuron(i) => write!(f, "{}:{i}", self.layer),
            Unit::Head(i) => write!(f, "{}:h{i}", self.layer),
        }
    }
}

/// Component ablation, a faithfulness check of the neuron and head relevance: the target's
/// log-probability as the most relevant units are zeroed one after another (set to 0 at
/// every position; no mean replacement), next to as many random units of the same layers.
/// A relevance that does no better than random shows as a top curve inside the band.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ablation {
    /// Over the model's MLP neurons (with neurons asked).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub neurons: Option<AblationCurve>,
    /// Over its attention heads (with heads asked).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub heads: Option<AblationCurve>,
}

/// One kind of unit's ablation curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AblationCurve {
    /// The units of largest relevance over the whole model (signed: the most supporting
    /// first), with their relevance.
    pub units: Vec<(Component, f32)>,
    /// The target's log-probability with the first k of `units` zeroed, k = 0..=units.len()
    /// (k = 0: the model as it is).
    pub top: Vec<f32>,
    /// Per random draw (seeded, [`ABLATION_DRAWS`] of them): its units (unit i drawn from the
    /// layer of `units[i]`, never one of `units`) and its curve as `top`'s.
    pub random: Vec<RandomDraw>,
}

/// One random draw of an ablation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RandomDraw {
    /// The units, one per layer of the top units.
    pub units: Vec<Component>,
    /// The target's log-probability with the first k zeroed.
    pub log_probs: Vec<f32>,
}
