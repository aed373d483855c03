//! Inside the model: the relevance of each layer's MLP neurons and attention heads in an
//! explanation, and of its two residual blocks as a whole (their conservation).

use super::{Edit, Token, Unit};
use serde::{Deserialize, Serialize};
use std::fmt;

/// One layer's attention heads in an explanation. A head's part of the attention output (its
/// slice of `o_proj`'s input) times the method's gradient there, summed over the slice (the
/// gradient's magnitude for saliency), is its relevance at a token; its value is the sum over
/// tokens.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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

/// What a component ablation zeroes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AblationSpec {
    /// The most relevant units zeroed one after another (0: none).
    pub units: usize,
    /// Whose relevance ranks them: these one-pass methods (none: every one requested).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<super::Method>,
}

impl AblationSpec {
    /// Whether `method`'s units are ablated.
    pub fn asks(&self, method: super::Method) -> bool {
        self.units > 0 && (self.methods.is_empty() || self.methods.contains(&method))
    }
}

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

impl std::str::FromStr for Component {
    type Err = String;

    /// `layer:index` (a neuron) or `layer:hHEAD` (a head), from 0.
    fn from_str(s: &str) -> Result<Self, String> {
        parse_component(s).map_err(|why| {
            format!("unit {s:?}: {why} (write layer:neuron or layer:hHEAD, e.g. 12:4031 or 14:h3)")
        })
    }
}

/// `layer:index` or `layer:hHEAD`, or what is wrong with it.
pub(crate) fn parse_component(s: &str) -> Result<Component, &'static str> {
    let (layer, unit) = s.trim().split_once(':').ok_or("no ':'")?;
    let layer = layer
        .trim()
        .parse()
        .map_err(|_| "the layer is not a number")?;
    let unit = unit.trim();
    let unit = match unit.strip_prefix('h') {
        Some(h) => Unit::Head(h.parse().map_err(|_| "the head is not a number")?),
        None => Unit::Neuron(unit.parse().map_err(|_| "the neuron is not a number")?),
    };
    Ok(Component { layer, unit })
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

/// Tokens a unit card lists at each end of its logit lens.
pub const CARD_TOKENS: usize = 10;

/// A neuron's or head's card for one context: what the unit writes and where it fires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitRequest {
    /// The user's text.
    pub prompt: String,
    /// Wrap the prompt in the model's chat template.
    #[serde(default = "super::default_true")]
    pub chat_template: bool,
    /// The template's `enable_thinking`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub thinking: bool,
    /// Answer tokens after the (templated) prompt.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub continuation: Vec<u32>,
    /// The neuron or head.
    pub unit: Component,
    /// Edits applied to the model (see [`Edit`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steer: Vec<Edit>,
}

impl UnitRequest {
    /// Checks the edits' settings (the model checks the units).
    pub fn check(&self) -> Result<(), String> {
        super::check_settings(&self.steer)
    }
}

/// A token of a unit's logit lens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LensToken {
    /// Vocabulary id.
    pub id: u32,
    /// Decoded text.
    pub text: String,
    /// The unit's output direction's logit for it.
    pub logit: f32,
}

/// What [`UnitRequest`] answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitCard {
    /// The unit.
    pub unit: Component,
    /// The context's tokens.
    pub tokens: Vec<Token>,
    /// A neuron: its activation (the input of `down_proj`) at each token.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub activations: Option<Vec<f32>>,
    /// A neuron: the tokens its `down_proj` column, read through the final norm and the output
    /// projection, promotes most (largest logit first) ...
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub promotes: Vec<LensToken>,
    /// ... and suppresses most (smallest first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suppresses: Vec<LensToken>,
    /// A head: its attention probabilities `[query][key]` over the context.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub attention: Option<Vec<Vec<f32>>>,
}
