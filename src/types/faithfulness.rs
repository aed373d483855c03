//! Perturbation curves: is the heatmap faithful? Tokens are taken out of the input in the
//! order a method ranks them, most relevant first (MoRF) and least relevant first (LeRF),
//! and the target's logit and probability are recorded after each step; a random order gives
//! the baseline (as the AttnLRP paper's area between perturbation curves, and ERASER's
//! comprehensiveness and sufficiency).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How a token is taken out of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Operator {
    /// Its id becomes a neutral token's: the model's padding token, else its unknown token,
    /// else the token of a single space. Positions stay.
    #[default]
    Replace,
    /// Its input embedding becomes zero. Positions stay.
    Zero,
    /// It is removed; the tokens after it move one position back.
    Delete,
}

impl Operator {
    /// Every operator.
    pub const ALL: [Operator; 3] = [Operator::Replace, Operator::Zero, Operator::Delete];

    /// The name in URLs, the CLI and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Operator::Replace => "replace",
            Operator::Zero => "zero",
            Operator::Delete => "delete",
        }
    }

    /// The operator of this name.
    pub fn from_name(s: &str) -> Option<Operator> {
        Operator::ALL.into_iter().find(|o| o.name() == s)
    }
}

/// What a faithfulness run perturbs and how.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FaithfulnessSpec {
    /// How tokens are taken out.
    #[serde(default)]
    pub operator: Operator,
    /// Only the user's text (the query span) and the answer so far may move; otherwise every
    /// token, the chat template's too. Special tokens never move.
    #[serde(default)]
    pub query_only: bool,
}

/// The target's value after each step of one order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Curve {
    /// The eligible positions in the order they are taken out.
    pub order: Vec<usize>,
    /// The target's logit after each step (`steps[i]` tokens out).
    pub logit: Vec<f32>,
    /// The target's probability after each step.
    pub prob: Vec<f32>,
}

/// One method's curves and scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodFaithfulness {
    /// Most relevant first (highest score first; ties: earlier position first).
    pub morf: Curve,
    /// Least relevant first (lowest score first; ties: earlier position first).
    pub lerf: Curve,
    /// Area between the curves: the mean over the steps of LeRF's logit minus MoRF's
    /// (logit units; higher is more faithful).
    pub abpc: f32,
    /// ERASER's comprehensiveness at each of [`FRACTIONS`]: the target's probability
    /// unperturbed minus with the top fraction of eligible tokens taken out.
    pub comprehensiveness: Vec<f32>,
    /// ERASER's sufficiency at each of [`FRACTIONS`]: the probability unperturbed minus with
    /// everything eligible but the top fraction taken out.
    pub sufficiency: Vec<f32>,
}

/// The random-order baseline: seeded permutations of the eligible tokens, each scored as a
/// method whose ranking is that permutation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RandomBand {
    /// The permutations' seeds (SplitMix64 Fisher–Yates, see `tokenlens::faithfulness`).
    pub seeds: Vec<u64>,
    /// Mean of the permutations' logit curves at each step.
    pub logit_mean: Vec<f32>,
    /// Their sample standard deviation at each step.
    pub logit_sd: Vec<f32>,
    /// Mean probability at each step.
    pub prob_mean: Vec<f32>,
    /// Sample standard deviation of the probability at each step.
    pub prob_sd: Vec<f32>,
    /// Mean ABPC of the permutations (each against its reverse).
    pub abpc_mean: f32,
    /// Sample standard deviation of their ABPC.
    pub abpc_sd: f32,
}

/// The fractions of eligible tokens at which comprehensiveness and sufficiency are measured.
pub const FRACTIONS: [f32; 3] = [0.1, 0.2, 0.5];

/// Perturbation curves of every computed method, and the random baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Faithfulness {
    /// How tokens were taken out.
    pub operator: Operator,
    /// The token put in, for `replace`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub neutral_id: Option<u32>,
    /// The positions that may be taken out, in prompt order.
    pub eligible: Vec<usize>,
    /// Tokens taken out at each step (0 first): every count up to 32 eligible tokens, else
    /// 20 even steps.
    pub steps: Vec<usize>,
    /// Per method, by name.
    pub methods: BTreeMap<crate::types::Method, MethodFaithfulness>,
    /// The random baseline.
    pub random: RandomBand,
}
