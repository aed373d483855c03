//! What a request will cost before it runs, in token-passes: one token through one forward
//! and one backward pass. A server refuses a request above its budget before queueing it,
//! rather than letting it hold the model for minutes.

use crate::{Engine, ExplainRequest, GenerateRequest, Method, Result, StepsRequest};

/// Forward + backward passes the methods need (methods that share a pass share it; a path
/// method runs one per point); a request with no method still runs one forward pass.
fn passes(methods: &[Method]) -> u64 {
    crate::types::pass_cost(methods)
}

/// Component ablation in token-passes: per one-pass method and kind of unit, a forward pass
/// per point of the top curve and of each random draw's (a forward pass about a third of a
/// forward and backward pass).
fn ablation_passes(r: &ExplainRequest) -> u64 {
    let Some(a) = &r.ablation else { return 0 };
    let methods = r
        .methods
        .iter()
        .filter(|&&m| matches!(m.runs().pass, crate::types::Pass::Backward(_)) && a.asks(m))
        .count() as u64;
    let kinds = u64::from(r.neurons > 0) + u64::from(r.heads);
    let points = 1 + a.units as u64 * (1 + crate::types::ABLATION_DRAWS as u64);
    (methods * kinds * points).div_ceil(3)
}

impl Engine {
    fn prompt_tokens(&self, prompt: &str, chat: bool, thinking: bool) -> Result<u64> {
        Ok(self.tokenize(prompt, chat, thinking)?.tokens.len() as u64)
    }

    /// An explanation: its tokens times its passes; explaining the other candidates too
    /// carries a seed per candidate through each backward pass (about the work of as many
    /// passes).
    pub fn explain_cost(&self, r: &ExplainRequest) -> Result<u64> {
        let n = self.prompt_tokens(&r.prompt, r.chat_template, r.thinking)?;
        let seeds = if r.explain_candidates {
            r.top_k.max(1) as u64
        } else {
            1
        };
        let lens = if r.lens { self.lens_passes() } else { 0 };
        let n = n + r.continuation.len() as u64;
        let inside = self.inside_passes(r);
        Ok(n * (passes(&r.methods) * seeds + lens + inside) + n * ablation_passes(r))
    }

    /// Neurons and heads in token-passes: no work to speak of, but per token a number per
    /// head and kept neuron of every layer, for every one-pass method, into the stream; each
    /// thousand numbers per token (about 10 KB of JSON) counts as a pass, so that a job limit
    /// bounds the stream too (SmolLM2 with every head and 8 neurons for its four one-pass
    /// methods: 2).
    fn inside_passes(&self, r: &ExplainRequest) -> u64 {
        let c = self.decoder().config();
        let per_layer = r.neurons as u64
            + if r.heads {
                c.num_attention_heads as u64
            } else {
                0
            };
        let methods = r
            .methods
            .iter()
            .filter(|m| matches!(m.runs().pass, crate::types::Pass::Backward(_)))
            .count() as u64;
        (methods * c.num_hidden_layers as u64 * per_layer).div_ceil(1000)
    }

    /// The logit lens in token-passes: per token, every layer's output through the output
    /// projection (`2 · layers · vocab · hidden` FLOP) against a pass's `6 ·` matrix
    /// parameters; about 3 for SmolLM2, 10 for Gemma 3 270M's large vocabulary.
    fn lens_passes(&self) -> u64 {
        let c = self.decoder().config();
        let lens = (c.num_hidden_layers * c.vocab_size * c.hidden_size) as u64;
        lens.div_ceil(3 * c.layer_matrix_params().max(1))
    }

    /// The all-steps matrix: one forward pass over prompt and answer, then each method's pass
    /// carrying a seed per answer token over the whole sequence.
    pub fn steps_cost(&self, r: &StepsRequest) -> Result<u64> {
        let n = self.prompt_tokens(&r.prompt, r.chat_template, r.thinking)?;
        let g = r.generated.len() as u64;
        Ok((n + g) * g.max(1) * passes(&r.methods))
    }

    /// A unit's card: one forward pass over the context (a third of a token-pass per token).
    pub fn unit_cost(&self, r: &crate::types::UnitRequest) -> Result<u64> {
        let n = self.prompt_tokens(&r.prompt, r.chat_template, r.thinking)?;
        Ok((n + r.continuation.len() as u64).div_ceil(3))
    }

    /// A generation: the prompt once, then one token per step (forward only, with a cache);
    /// a given answer, one step per token of it.
    pub fn generate_cost(&self, r: &GenerateRequest) -> Result<u64> {
        let n = self.prompt_tokens(&r.prompt, r.chat_template, r.thinking)?;
        let steps = match &r.answer {
            Some(a) => self.answer_ids(a)?.len(),
            None => r.max_new_tokens,
        };
        Ok(n + steps as u64)
    }
}
