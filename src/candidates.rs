//! The model's prediction (its top candidates, their logits made exact) and the other
//! candidates explained beside the target.

use crate::engine::{layer_progress, seed_scale, stage, Passes};
use crate::error::Result;
use crate::methods;
use crate::models::decoder::Saved;
use crate::precision::Plan;
use crate::target::Softmax;
use crate::types::{
    Candidate, CandidateExplanation, ExplainRequest, Prediction, Stage, StreamEvent, Target,
};
use std::collections::BTreeMap;

impl crate::Engine {
    /// The other candidates, each explained as the target is: one pass per distinct method
    /// pass carrying a seed per candidate (exact: the rules are linear in the seed); emits a
    /// `candidate` event each once every method is done.
    pub(crate) fn candidates(
        &self,
        saved: &Saved,
        targets: Vec<Target>,
        logits: &[f32],
        req: &ExplainRequest,
        plan: Plan,
        emit: &mut dyn FnMut(StreamEvent) -> Result<()>,
    ) -> Result<Vec<CandidateExplanation>> {
        if targets.is_empty() || req.methods.is_empty() {
            return Ok(Vec::new());
        }
        let embeds = saved.embeddings();
        let last = embeds.dim(0)? - 1;
        let mut out: Vec<CandidateExplanation> = targets
            .into_iter()
            .map(|target| CandidateExplanation {
                target,
                methods: BTreeMap::new(),
            })
            .collect();
        let mut passes = Passes::new();
        for &method in &req.methods {
            let g = passes.get_or_run(method.runs().pass, || {
                emit(stage(Stage::Candidates, Some(method)))?;
                let mut progress = layer_progress(emit, Stage::Candidates, Some(method));
                let mut seeds = |s: &Saved, values: bool| {
                    let logits = self.logits_on(s, saved, logits, last, plan)?;
                    out.iter()
                        .map(|c| {
                            let t = &c.target;
                            let seed =
                                self.target_seed(s, last, t, &logits, seed_scale(req, t), plan)?;
                            let value = values.then(|| self.value_at(s, &logits, t, plan));
                            Ok((seed, value.transpose()?))
                        })
                        .collect()
                };
                self.run_pass(
                    (method.runs().pass, Default::default()),
                    saved,
                    &mut seeds,
                    plan,
                    &mut progress,
                )
            })?;
            for (i, c) in out.iter_mut().enumerate() {
                let scale = seed_scale(req, &c.target);
                let result = methods::result(method, embeds, g, i, scale, &c.target)?;
                c.methods.insert(method, result);
            }
        }
        for c in &out {
            emit(StreamEvent::Candidate {
                target: c.target.clone(),
                methods: c.methods.clone(),
            })?;
        }
        Ok(out)
    }

    /// Makes the logits that an explanation shows or explains exact: the top candidates', the
    /// target's and the contrast's (`logits` came from approximate products; the backward
    /// seeds carry exact output rows, so the last layer's relevance then sums to the
    /// explained logit as in f32).
    pub(crate) fn exact_top(
        &self,
        req: &ExplainRequest,
        saved: &Saved,
        logits: &mut [f32],
        plan: Plan,
    ) -> Result<()> {
        let (prediction, argmax) = self.prediction(logits, req.top_k);
        let target = self.requested_target(req, saved, logits, argmax, plan)?;
        let mut ids: Vec<u32> = prediction.top.iter().map(|c| c.id).collect();
        ids.push(target.token.id);
        ids.extend(target.contrast.as_ref().map(|c| c.id));
        let last = saved.len() - 1;
        for (id, l) in ids
            .iter()
            .zip(self.decoder().exact_logits(saved, last, &ids)?)
        {
            if let Some(slot) = logits.get_mut(*id as usize) {
                *slot = l;
            }
        }
        Ok(())
    }

    pub(crate) fn prediction(&self, logits: &[f32], top_k: usize) -> (Prediction, u32) {
        let order: Vec<u32> = crate::select::largest(logits, top_k.max(1))
            .into_iter()
            .map(|i| i as u32)
            .collect();
        let softmax = Softmax::of(logits);
        let top: Vec<Candidate> = order
            .iter()
            .map(|&id| self.candidate_of(id, logits, &softmax))
            .collect();
        let best = top[0].clone();
        (Prediction { best, top }, order[0])
    }
}
