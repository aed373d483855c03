//! The engine's half of the attribution methods. What a method is called and how it runs is
//! its row of [`crate::types::METHODS`]; here are the kinds of pass a row can name (one
//! backward under a rule set, or integrated gradients' path), the rules and their kernels
//! (`rules.rs`, the sets in `attnlrp.rs`), the reductions to one score per token, and the
//! check each result carries.

pub mod attnlrp;
pub mod gradient;
pub(crate) mod inside;
pub mod integrated_gradients;
pub mod rules;

use candle_core::Tensor;

use crate::kernels::Products;
use crate::models::decoder::{Decoder, Progress, Saved, Seed};
use crate::models::{Derivatives, Ordinary};
use crate::types::{Check, Conservation, Method, MethodResult, Pass, PathEnds, Reduction, RuleSet};
use crate::Target;

/// The derivatives a rule set takes at the decoder's rule points.
pub fn rules(set: RuleSet) -> &'static dyn Derivatives {
    match set {
        RuleSet::Plain => &Ordinary,
        RuleSet::AttnLrp => &attnlrp::ATTNLRP,
        RuleSet::CpLrp => &attnlrp::CP_LRP,
    }
}

/// Gives a pass its seeds from a forward pass over (possibly interpolated) inputs: per
/// explained target, its cotangent and, when asked (`values`: a path method's ends), the
/// value of the function it is the gradient of.
pub(crate) type Seeds<'a> = dyn FnMut(&Saved, bool) -> crate::Result<Vec<(Seed, Option<f32>)>> + 'a;

/// What one pass gives for each of its seeds.
#[derive(Debug)]
pub(crate) struct PassOutput {
    /// The gradient with respect to the input embeddings, `(seeds, seq, hidden)` (for a path
    /// method, the path's average).
    pub input: Tensor,
    /// The latent trace `[seed][layer][token]`.
    pub trace: Vec<Vec<Vec<f32>>>,
    /// A path method's function at the path's ends, per seed.
    pub ends: Option<Vec<PathEnds>>,
    /// What the pass heard at the MLP neurons, when asked.
    pub inside: Option<inside::Components>,
}

/// Runs `pass` from the saved forward pass over the input; `progress` hears of each layer.
/// A one-pass method also keeps what `inside` asks for (neurons, heads).
pub(crate) fn run(
    dec: &Decoder,
    pass: Pass,
    saved: &Saved,
    seeds: &mut Seeds<'_>,
    (p, inside): (Products, inside::Inside),
    progress: &mut Progress<'_>,
) -> crate::Result<PassOutput> {
    match pass {
        Pass::Backward(set) => {
            let seeds: Vec<Seed> = seeds(saved, false)?.into_iter().map(|(s, _)| s).collect();
            if inside.is_nothing() {
                let g = dec.backward(saved, &seeds, rules(set), p, progress)?;
                return Ok(PassOutput {
                    input: g.input,
                    trace: g.trace,
                    ends: None,
                    inside: None,
                });
            }
            let reductions = inside.reductions(pass);
            let cfg = dec.config();
            // Each layer's attention heads (a Gated DeltaNet layer has none).
            let heads: Vec<usize> = (0..cfg.num_hidden_layers)
                .map(|l| match inside.heads && !cfg.is_linear(l) {
                    true => cfg.num_attention_heads,
                    false => 0,
                })
                .collect();
            let k = inside.neurons;
            let mut heard = inside::Components::new(k, heads, &reductions);
            let g = dec.backward_watched(saved, &seeds, rules(set), p, &mut heard, progress)?;
            Ok(PassOutput {
                input: g.input,
                trace: g.trace,
                ends: None,
                inside: Some(heard),
            })
        }
        Pass::Integrated { steps } => {
            integrated_gradients::run(dec, saved, usize::from(steps), seeds, p, progress)
        }
    }
}

/// The per-token scores from `embeds` and the gradient `grad`, both `(seq, hidden)`.
pub(crate) fn scores(
    reduction: Reduction,
    embeds: &Tensor,
    grad: &Tensor,
) -> candle_core::Result<Vec<f32>> {
    match reduction {
        Reduction::GradientNorm => gradient::l2_norm(grad),
        Reduction::InputTimesGradient => gradient::dot(embeds, grad),
    }
}

/// `method`'s result for seed `i` of `out`: its scores, its trace, and its check against
/// `seed × target`'s explained value (or the path's change).
pub(crate) fn result(
    method: Method,
    embeds: &Tensor,
    out: &PassOutput,
    i: usize,
    seed: f32,
    target: &Target,
) -> crate::Result<MethodResult> {
    let runs = method.runs();
    let scores = scores(runs.reduction, embeds, &out.input.get(i)?)?;
    let trace = out.trace.get(i).cloned().unwrap_or_default();
    let ends = out.ends.as_ref().and_then(|e| e.get(i)).copied();
    let check = |denom: f32, path: Option<PathEnds>| Conservation {
        input: scores.iter().sum::<f32>() / denom,
        last_layer: trace.last().map_or(0.0, |l| l.iter().sum::<f32>()) / denom,
        path,
    };
    let conservation = match (runs.check, ends) {
        (Check::None, _) => None,
        (Check::Conservation, _) => Some(check(seed * target.explained_value(), None)),
        (Check::Completeness, Some(e)) => Some(check(seed * (e.input - e.baseline), Some(e))),
        (Check::Completeness, None) => None,
    };
    let inside = out.inside.as_ref();
    Ok(MethodResult {
        scores,
        trace_normalized: gradient::normalize_rows(&trace),
        trace,
        conservation,
        neurons: inside.and_then(|c| c.neurons(runs.reduction, i)),
        heads: inside.and_then(|c| c.heads(runs.reduction, i)),
        ablation: None,
    })
}
