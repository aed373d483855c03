//! What fires a neuron in general: the texts of the reference corpus (public-domain English
//! and some code, `data/corpus.jsonl`) where it activates most.

use serde::{Deserialize, Serialize};

/// Contexts a neuron's card lists.
pub const CONTEXT_HITS: usize = 5;

/// A neuron's top-activating contexts over the reference corpus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContextsRequest {
    /// The layer, from 0.
    pub layer: usize,
    /// The neuron in it.
    pub neuron: u32,
}

/// One corpus text where a neuron fires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContextHit {
    /// Where the text comes from (`moby-dick`, `sotu`, `code`).
    pub source: String,
    /// The text.
    pub text: String,
    /// Byte range `[start, end)` in `text` of the token where the neuron fires most.
    pub start: usize,
    /// End of that range.
    pub end: usize,
    /// Its activation there.
    pub activation: f32,
}

/// A neuron's contexts, most activating first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NeuronContexts {
    /// The layer.
    pub layer: usize,
    /// The neuron.
    pub neuron: u32,
    /// The corpus's texts searched and their tokens.
    pub texts: usize,
    /// Tokens read.
    pub tokens: usize,
    /// The texts where it fires most (at most [`CONTEXT_HITS`]).
    pub hits: Vec<ContextHit>,
}
