//! Generating an answer: sampled token by token with a KV cache, streamed.

use std::ops::ControlFlow;

use crate::engine::{emitter, stage};
use crate::error::{Error, Result};
use crate::models::decoder::KvCache;
use crate::sampling::Sampler;
use crate::target::probability;
use crate::{GenerateRequest, GeneratedToken, Generation, Stage, StopReason, StreamEvent};

impl crate::Engine {
    /// Generates an answer; the whole result at once.
    pub fn generate(&self, req: &GenerateRequest) -> Result<Generation> {
        self.generate_streaming(req, &mut |_| ControlFlow::Continue(()))
    }

    /// Generates an answer with a KV cache, emitting `tokens`, one `generated` event per
    /// token, `finished` and `done`. Stops at an end-of-turn token (not kept),
    /// `max_new_tokens`, or a full context. With a given answer (`req.answer`), its tokens
    /// are the answer, each with its probability under the model (forced decoding).
    pub fn generate_streaming(
        &self,
        req: &GenerateRequest,
        sink: &mut dyn FnMut(&StreamEvent) -> ControlFlow<()>,
    ) -> Result<Generation> {
        self.steered(&req.steer)?.generate_events(req, sink)
    }

    fn generate_events(
        &self,
        req: &GenerateRequest,
        sink: &mut dyn FnMut(&StreamEvent) -> ControlFlow<()>,
    ) -> Result<Generation> {
        let mut emit = emitter(sink);
        req.check(self.vocab_size())
            .map_err(Error::InvalidSetting)?;
        let mut sampler = Sampler::new(req.sampling)?;
        emit(stage(Stage::Tokenize, None))?;
        let tok = self.tokenize(&req.prompt, req.chat_template, req.thinking)?;
        self.check_length(tok.tokens.len())?;
        // A given answer's tokens, in reverse (popped one by one).
        let mut given: Option<Vec<u32>> = match &req.answer {
            Some(answer) => {
                let ids = self.answer_ids(answer)?;
                if tok.tokens.len() + ids.len() > self.max_tokens() {
                    return Err(Error::AnswerTooLong {
                        prompt: tok.tokens.len(),
                        answer: ids.len(),
                        limit: self.max_tokens(),
                    });
                }
                Some(ids.into_iter().rev().collect())
            }
            None => None,
        };
        let ids = self.announce(&tok, &mut emit)?;
        let plan = self.generation_plan(req.precision);
        if let Some(ev) = plan.event() {
            emit(ev)?;
        }
        emit(stage(Stage::Generate, None))?;
        let mut cache = KvCache::default();
        let mut logits = self
            .decoder()
            .forward_cached(&ids, &mut cache, plan.forward)?
            .to_vec1::<f32>()?;
        let mut text = tok.text.clone();
        let mut generated: Vec<GeneratedToken> = Vec::new();
        let stop = loop {
            let id = match given.as_mut() {
                Some(rest) => match rest.pop() {
                    Some(id) => id,
                    None => break StopReason::GivenAnswer,
                },
                None => sampler.sample(&logits),
            };
            if given.is_none() && self.eos_ids().contains(&id) {
                break StopReason::EndOfTurn;
            }
            let open = crate::pieces::open_run(generated.iter().map(|g| &g.token));
            let token = GeneratedToken {
                prob: probability(id, &logits),
                token: self.appended_token(&mut text, open, id),
            };
            emit(StreamEvent::Generated {
                index: generated.len(),
                token: token.clone(),
            })?;
            generated.push(token);
            match &given {
                Some(rest) if rest.is_empty() => break StopReason::GivenAnswer,
                Some(_) => {}
                None if generated.len() >= req.max_new_tokens => break StopReason::MaxNewTokens,
                // The next token's context must still fit (to generate it, and to explain it).
                None if cache.len() + 1 >= self.max_tokens() => break StopReason::ContextFull,
                None => {}
            }
            logits = self
                .decoder()
                .forward_cached(&[id], &mut cache, plan.forward)?
                .to_vec1()?;
        };
        emit(StreamEvent::Finished { stop })?;
        emit(StreamEvent::Done)?;
        let answer_ids: Vec<u32> = generated.iter().map(|g| g.token.id).collect();
        let answer = self
            .tokenizer()
            .decode(&answer_ids, false)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(Generation {
            model: self.name().to_string(),
            text: tok.text,
            chat_template: req.chat_template,
            thinking: req.thinking,
            tokens: tok.tokens,
            generated,
            answer,
            stop,
            precision: plan.precision,
            precision_note: plan.note(),
            sampling: req.sampling,
        })
    }
}
