//! What an explanation explains, and the backward seed that starts from it: a token's logit
//! (less a contrast's), its log-probability, or a span's summed log-probability.

use crate::models::decoder::{Saved, Seed};
use crate::precision::Plan;
use crate::{
    Candidate, Error, ExplainRequest, Result, Score, Span, SpanTarget, SpanToken, Target,
    TargetSpec,
};

impl crate::Engine {
    /// The target `req` asks for, at the position whose logits are `logits`: its span, or
    /// its token (and contrast) resolved against them.
    pub(crate) fn requested_target(
        &self,
        req: &ExplainRequest,
        saved: &Saved,
        logits: &[f32],
        argmax: u32,
        plan: Plan,
    ) -> Result<Target> {
        if let Some(span) = req.span {
            let last = saved.len().saturating_sub(1);
            return self.span_target(saved, last, &req.continuation, span, plan);
        }
        let target_id = self.target_id(&req.target, argmax)?;
        let contrast_id = match &req.contrast {
            Some(spec) => {
                let id = self.target_id(spec, argmax)?;
                if id == target_id {
                    return Err(Error::ContrastIsTarget(self.decode_token(id)));
                }
                Some(id)
            }
            None => None,
        };
        let mut target = self.target(target_id, contrast_id, logits, req.score);
        target.pieces = self.target_pieces(&req.target);
        Ok(target)
    }

    /// Resolves a target spec to a token id; `Argmax` is `argmax`.
    pub(crate) fn target_id(&self, spec: &TargetSpec, argmax: u32) -> Result<u32> {
        match spec {
            TargetSpec::Argmax => Ok(argmax),
            TargetSpec::Id(id) => {
                if (*id as usize) < self.vocab_size() {
                    Ok(*id)
                } else {
                    Err(Error::TargetOutOfRange {
                        id: *id,
                        vocab: self.vocab_size(),
                    })
                }
            }
            TargetSpec::Text(text) => {
                let enc = self
                    .tokenizer()
                    .encode(text.as_str(), false)
                    .map_err(|e| Error::Tokenizer(e.to_string()))?;
                enc.get_ids()
                    .first()
                    .copied()
                    .ok_or_else(|| Error::EmptyTarget(text.clone()))
            }
        }
    }

    /// The explained token (and contrast) at the position with `logits`: logits,
    /// probabilities, rank and, for a log-probability, the values it needs.
    pub(crate) fn target(
        &self,
        id: u32,
        contrast: Option<u32>,
        logits: &[f32],
        score: Score,
    ) -> Target {
        let softmax = Softmax::of(logits);
        let rank = logits.iter().filter(|&&l| l > logits[id as usize]).count();
        let log_prob = score == Score::LogProb;
        Target {
            token: self.candidate_of(id, logits, &softmax),
            rank,
            contrast: contrast.map(|c| self.candidate_of(c, logits, &softmax)),
            pieces: Vec::new(),
            score,
            log_prob: log_prob.then(|| softmax.log_prob(logits[id as usize])),
            linear_value: (log_prob && contrast.is_none())
                .then(|| linear_value(id, logits, &softmax)),
            span: None,
        }
    }

    /// A span of `continuation` (the context holds `continuation[..span.end − 1]` and ends
    /// at position `last`) as a target: each token's log-probability at the position before
    /// it; the target's token is the span's last, predicted at `last`.
    pub(crate) fn span_target(
        &self,
        saved: &Saved,
        last: usize,
        continuation: &[u32],
        span: Span,
        plan: Plan,
    ) -> Result<Target> {
        let positions = span_positions(last, span).ok_or_else(|| {
            Error::InvalidSetting(format!("the span {span:?} has no prompt before it"))
        })?;
        let ids = continuation
            .get(span.start..span.end)
            .ok_or_else(|| Error::InvalidSetting(format!("span {span:?} outside the answer")))?;
        let rows: Vec<Vec<f32>> = self
            .decoder()
            .logits_at(saved, &positions, plan.forward)?
            .to_vec2()?;
        let mut tokens = Vec::with_capacity(ids.len());
        let mut linear = 0.0;
        for ((&id, &position), logits) in ids.iter().zip(&positions).zip(&rows) {
            let softmax = Softmax::of(logits);
            linear += linear_value(id, logits, &softmax);
            tokens.push(SpanToken {
                id,
                text: self.decode_token(id),
                position,
                log_prob: softmax.log_prob(logits[id as usize]),
            });
        }
        let (last_id, last_logits) = ids
            .last()
            .zip(rows.last())
            .ok_or_else(|| Error::InvalidSetting(format!("the span {span:?} has no tokens")))?;
        let mut target = self.target(*last_id, None, last_logits, Score::LogProb);
        let total = tokens.iter().map(|t| t.log_prob).sum();
        target.log_prob = Some(total);
        target.linear_value = Some(linear);
        target.span = Some(SpanTarget {
            span,
            tokens,
            log_prob: total,
        });
        Ok(target)
    }

    /// The backward seed of `target` (explained at position `last`, where the logits are
    /// `logits`), times `scale`: its logit less the contrast's; a log-probability's gradient
    /// `onehot − softmax` over the logits (with a contrast the log-sum-exps cancel, leaving
    /// the logits' difference); a span's, the sum of its tokens' seeds.
    pub(crate) fn target_seed(
        &self,
        saved: &Saved,
        last: usize,
        target: &Target,
        logits: &[f32],
        scale: f32,
        plan: Plan,
    ) -> Result<Seed> {
        if let Some(span) = &target.span {
            // Every token's log-probability gradient, in one product.
            let positions: Vec<usize> = span.tokens.iter().map(|t| t.position).collect();
            let rows: Vec<Vec<f32>> = self
                .decoder()
                .logits_at(saved, &positions, plan.forward)?
                .to_vec2()?;
            let coefs = span
                .tokens
                .iter()
                .zip(&rows)
                .map(|(t, logits)| log_prob_gradient(t.id, logits, scale))
                .collect::<Vec<_>>();
            return Ok(self
                .decoder()
                .seed_dense(saved, &positions, &coefs, plan.attribution)?);
        }
        if target.score == Score::LogProb && target.contrast.is_none() {
            let coef = log_prob_gradient(target.token.id, logits, scale);
            return Ok(self
                .decoder()
                .seed_dense(saved, &[last], &[coef], plan.attribution)?);
        }
        let s = scale as f64;
        let mut terms = vec![(target.token.id, s)];
        terms.extend(target.contrast.as_ref().map(|c| (c.id, -s)));
        Ok(self.decoder().seed(saved, last, &terms)?)
    }

    /// The value of `target`'s seeded function ([`Target::seeded_value`]) on the saved pass
    /// `s`, whose logits at the target's position are `logits`.
    pub(crate) fn value_at(
        &self,
        s: &Saved,
        logits: &[f32],
        target: &Target,
        plan: Plan,
    ) -> Result<f32> {
        let Some(span) = &target.span else {
            let contrast = target.contrast.as_ref().map(|c| c.id);
            return Ok(self
                .target(target.token.id, contrast, logits, target.score)
                .seeded_value());
        };
        let positions: Vec<usize> = span.tokens.iter().map(|t| t.position).collect();
        let rows: Vec<Vec<f32>> = self
            .decoder()
            .logits_at(s, &positions, plan.forward)?
            .to_vec2()?;
        Ok(span
            .tokens
            .iter()
            .zip(&rows)
            .map(|(t, l)| Softmax::of(l).log_prob(l[t.id as usize]))
            .sum())
    }

    /// The tokens a target text splits into, when more than one (the first is explained).
    pub(crate) fn target_pieces(&self, spec: &TargetSpec) -> Vec<String> {
        let TargetSpec::Text(text) = spec else {
            return Vec::new();
        };
        match self.tokenizer().encode(text.as_str(), false) {
            Ok(enc) if enc.get_ids().len() > 1 => enc
                .get_ids()
                .iter()
                .map(|&id| self.decode_token(id))
                .collect(),
            _ => Vec::new(),
        }
    }

    pub(crate) fn candidate_of(&self, id: u32, logits: &[f32], softmax: &Softmax) -> Candidate {
        Candidate {
            id,
            text: self.decode_token(id),
            logit: logits[id as usize],
            prob: softmax.prob(logits[id as usize]),
        }
    }
}

/// The positions that predict a span's tokens when the context ends at `last` with the
/// span's last token still to come.
pub(crate) fn span_positions(last: usize, span: Span) -> Option<Vec<usize>> {
    // The first token after the prompt is predicted at the prompt's last position: there
    // must be one.
    let first = (last + 1 + span.start).checked_sub(span.end)?;
    Some((first..=last).collect())
}

/// `scale · (onehot(id) − softmax(logits))`: the gradient of `scale · log p(id)` over the
/// logits.
fn log_prob_gradient(id: u32, logits: &[f32], scale: f32) -> Vec<f32> {
    let softmax = Softmax::of(logits);
    let mut coef: Vec<f32> = logits.iter().map(|&l| -scale * softmax.prob(l)).collect();
    if let Some(c) = coef.get_mut(id as usize) {
        *c += scale;
    }
    coef
}

/// `Σ_v (onehot(id) − softmax)_v · logit_v`: what a log-probability's relevance conserves.
fn linear_value(id: u32, logits: &[f32], softmax: &Softmax) -> f32 {
    let mean: f64 = logits
        .iter()
        .map(|&l| softmax.prob(l) as f64 * l as f64)
        .sum();
    (logits[id as usize] as f64 - mean) as f32
}

/// Softmax probability of one token.
pub(crate) fn probability(id: u32, logits: &[f32]) -> f32 {
    Softmax::of(logits).prob(logits[id as usize])
}

/// The softmax's normalizer over a vocabulary, computed once for any number of tokens.
pub(crate) struct Softmax {
    max: f64,
    z: f64,
}

impl Softmax {
    pub(crate) fn of(logits: &[f32]) -> Self {
        let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
        let z = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
        Softmax { max, z }
    }

    pub(crate) fn prob(&self, logit: f32) -> f32 {
        ((logit as f64 - self.max).exp() / self.z) as f32
    }

    pub(crate) fn log_prob(&self, logit: f32) -> f32 {
        (logit as f64 - self.max - self.z.ln()) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_span_is_predicted_from_the_positions_before_its_tokens() {
        // Context: 10 prompt tokens then continuation[..3] (positions 10..13); span 1..4:
        // continuation[1] is predicted at 10, [2] at 11, [3] at 12 (the last).
        let at = |last, start, end| span_positions(last, Span { start, end });
        assert_eq!(at(12, 1, 4), Some(vec![10, 11, 12]));
        assert_eq!(at(9, 0, 1), Some(vec![9]));
        // A context of only the span's tokens has no position to predict the first from.
        assert_eq!(at(1, 0, 3), None);
    }

    #[test]
    fn the_linear_value_is_the_logit_less_its_expectation() {
        let logits = [1.0f32, 2.0, 3.0];
        let s = Softmax::of(&logits);
        let p: Vec<f32> = logits.iter().map(|&l| s.prob(l)).collect();
        let mean = p[0] + 2.0 * p[1] + 3.0 * p[2];
        assert!((linear_value(2, &logits, &s) - (3.0 - mean)).abs() < 1e-6);
    }
}
