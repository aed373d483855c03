//! The all-steps matrix: every answer token explained against its context, with one forward
//! pass and each method's pass once (a seed per answer token).

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use crate::engine::{emitter, layer_progress, stage, Passes};
use crate::error::{Error, Result};
use crate::methods;
use crate::models::decoder::Saved;
use crate::precision::Plan;
use crate::{Method, Stage, StepRow, StepsRequest, StreamEvent};

impl crate::Engine {
    /// Explains every generated token against its context (prompt and earlier generated
    /// tokens): emits `tokens` (prompt and answer), `precision`, one `step` row per generated
    /// token, `done`, with `stage` and `progress` between. Returns the rows.
    pub fn explain_steps_streaming(
        &self,
        req: &StepsRequest,
        sink: &mut dyn FnMut(&StreamEvent) -> ControlFlow<()>,
    ) -> Result<Vec<StepRow>> {
        self.steered(&req.steer)?.steps_events(req, sink)
    }

    fn steps_events(
        &self,
        req: &StepsRequest,
        sink: &mut dyn FnMut(&StreamEvent) -> ControlFlow<()>,
    ) -> Result<Vec<StepRow>> {
        let mut emit = emitter(sink);
        req.check().map_err(Error::InvalidSetting)?;
        emit(stage(Stage::Tokenize, None))?;
        let tok = self.context(&req.prompt, req.chat_template, req.thinking, &req.generated)?;
        let prompt_len = tok.tokens.len() - req.generated.len();
        self.check_length(tok.tokens.len() - 1)?;
        let ids = self.announce(&tok, &mut emit)?;
        let passes = crate::types::pass_cost(&req.methods) as usize;
        let plan = self.explanation_plan(req.precision, ids.len() - 1, passes);
        if let Some(ev) = plan.event() {
            emit(ev)?;
        }
        let rows = self.step_rows(&ids, prompt_len, &req.methods, plan, &mut emit)?;
        emit(StreamEvent::Done)?;
        Ok(rows)
    }

    /// The all-steps rows of the answer after `ids[..prompt_len]`: one forward pass over
    /// prompt and answer, then each method's pass (shared by methods with the same one) with
    /// a seed per answer token (its logit at the position before it). Step k's scores cover its
    /// context, the prompt and k answer tokens.
    fn step_rows(
        &self,
        ids: &[u32],
        prompt_len: usize,
        methods: &[Method],
        plan: Plan,
        emit: &mut dyn FnMut(StreamEvent) -> Result<()>,
    ) -> Result<Vec<StepRow>> {
        let answer = &ids[prompt_len..];
        if answer.is_empty() {
            return Ok(Vec::new());
        }
        let saved = self.forward_saved(&ids[..ids.len() - 1], plan, emit)?;
        let embeds = saved.embeddings().clone();
        let positions: Vec<usize> = (0..answer.len()).map(|k| prompt_len - 1 + k).collect();
        let logits: Vec<Vec<f32>> = self
            .decoder()
            .logits_at(&saved, &positions, plan.forward)?
            .to_vec2()?;
        let mut rows: Vec<StepRow> = answer
            .iter()
            .zip(&logits)
            .enumerate()
            .map(|(step, (&id, logits))| StepRow {
                step,
                target: self.target(id, None, logits, crate::Score::Logit),
                scores: BTreeMap::new(),
            })
            .collect();
        let mut passes = Passes::new();
        for &method in methods {
            let grads = passes.get_or_run(method.runs().pass, || {
                emit(stage(Stage::Backward, Some(method)))?;
                let mut progress = layer_progress(emit, Stage::Backward, Some(method));
                // Each answer token's logit at the position before it.
                let mut seeds = |s: &Saved, values: bool| {
                    positions
                        .iter()
                        .zip(answer)
                        .map(|(&p, &id)| {
                            let seed = self.decoder().seed(s, p, &[(id, 1.0)])?;
                            let value = match values {
                                true => self.decoder().exact_logits(s, p, &[id])?.first().copied(),
                                false => None,
                            };
                            Ok((seed, value))
                        })
                        .collect()
                };
                let pass = method.runs().pass;
                Ok(self
                    .run_pass(
                        (pass, Default::default()),
                        &saved,
                        &mut seeds,
                        plan,
                        &mut progress,
                    )?
                    .input)
            })?;
            for (row, &p) in rows.iter_mut().zip(&positions) {
                let grad = grads.get(row.step)?.narrow(0, 0, p + 1)?;
                let embeds = embeds.narrow(0, 0, p + 1)?;
                let scores = methods::scores(method.runs().reduction, &embeds, &grad)?;
                row.scores.insert(method, scores);
            }
        }
        for row in &rows {
            emit(StreamEvent::Step { row: row.clone() })?;
        }
        Ok(rows)
    }
}
