//! What fires a neuron in general: one pass of the model over the reference corpus up to a
//! layer keeps, for every neuron of that layer, the texts where it activates most (each
//! text's largest activation of the neuron, at a token that is not a control token). A layer
//! is computed once per model and cached on disk; a neuron's contexts are then read from it.
//!
//! The corpus (`data/corpus.jsonl`, built by `scripts/make_corpus.py` from registry packages:
//! Moby-Dick and the State of the Union addresses, public domain; lodash's source, MIT) is
//! shipped in the binary.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::kernels::Products;
use crate::types::{ContextHit, ContextsRequest, NeuronContexts, CONTEXT_HITS};

/// The reference corpus: one JSON object `{"source", "text"}` per line.
const CORPUS: &str = include_str!("../data/corpus.jsonl");

/// A corpus text.
#[derive(Debug, Deserialize)]
struct Text {
    source: String,
    text: String,
}

/// The corpus's texts, read once.
fn corpus() -> Result<&'static [Text]> {
    static TEXTS: std::sync::OnceLock<Vec<Text>> = std::sync::OnceLock::new();
    if let Some(t) = TEXTS.get() {
        return Ok(t);
    }
    let texts = CORPUS
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<std::result::Result<Vec<Text>, _>>()
        .map_err(|e| Error::InvalidSetting(format!("the shipped corpus does not read: {e}")))?;
    Ok(TEXTS.get_or_init(|| texts))
}

/// A version of the corpus, for the cache's name.
fn corpus_version() -> u64 {
    // FNV-1a: stable across builds and platforms.
    CORPUS.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// A layer's contexts: per neuron, its top (text, token, activation), most first.
#[derive(Debug, Serialize, Deserialize)]
struct LayerContexts {
    texts: usize,
    tokens: usize,
    neurons: Vec<Vec<(u32, u32, f32)>>,
}

impl crate::Engine {
    /// Where layer `layer`'s contexts are cached for this model (`<cache>/contexts/<model>-
    /// <weights bytes>-<corpus version>/layer-<layer>.json`).
    pub fn contexts_path(&self, layer: usize) -> PathBuf {
        let model = format!(
            "{}-{}-{:016x}",
            self.name().replace(['/', '\\'], "_"),
            self.weights_bytes(),
            corpus_version()
        );
        crate::source::cache_dir()
            .join("contexts")
            .join(model)
            .join(format!("layer-{layer}.json"))
    }

    /// Whether layer `layer`'s contexts are already on disk (a request for them costs
    /// nothing to compute).
    pub fn contexts_cached(&self, layer: usize) -> bool {
        self.contexts_path(layer).is_file()
    }

    /// The texts of the corpus in token-passes up to `layer` (forward only: a third of a
    /// pass), for a request's cost.
    pub fn contexts_cost(&self, layer: usize) -> Result<u64> {
        if self.contexts_cached(layer) {
            return Ok(0);
        }
        // About 30 tokens a text.
        let tokens = corpus()?.len() as u64 * 30;
        let layers = self.n_layers().max(1) as u64;
        Ok((tokens * (layer as u64 + 1)).div_ceil(3 * layers))
    }

    /// The neuron's top-activating contexts; computes (and caches) its layer's first, with
    /// `progress` hearing of each text read.
    pub fn neuron_contexts(
        &self,
        req: &ContextsRequest,
        progress: &mut dyn FnMut(usize, usize) -> Result<()>,
    ) -> Result<NeuronContexts> {
        let c = self.decoder().config();
        let (layers, width) = (c.num_hidden_layers, c.neurons(req.layer));
        if req.layer >= layers || req.neuron as usize >= width {
            let what = format!("no neuron {}:{}", req.layer, req.neuron);
            return Err(crate::unit::no_unit(
                &what, req.layer, layers, "neurons", width,
            ));
        }
        let layer = self.layer_contexts(req.layer, progress)?;
        let texts = corpus()?;
        let top = layer
            .neurons
            .get(req.neuron as usize)
            .cloned()
            .unwrap_or_default();
        let mut hits = Vec::with_capacity(top.len());
        for (t, pos, activation) in top {
            let Some(text) = texts.get(t as usize) else {
                continue;
            };
            let tok = self.tokenize(&text.text, false, false)?;
            let Some(at) = tok.tokens.get(pos as usize) else {
                continue;
            };
            hits.push(ContextHit {
                source: text.source.clone(),
                text: text.text.clone(),
                start: at.start,
                end: at.end,
                activation,
            });
        }
        Ok(NeuronContexts {
            layer: req.layer,
            neuron: req.neuron,
            texts: layer.texts,
            tokens: layer.tokens,
            hits,
        })
    }

    /// Layer `layer`'s contexts, from the cache or computed over the corpus (then cached).
    fn layer_contexts(
        &self,
        layer: usize,
        progress: &mut dyn FnMut(usize, usize) -> Result<()>,
    ) -> Result<LayerContexts> {
        let path = self.contexts_path(layer);
        if let Ok(bytes) = std::fs::read(&path) {
            match serde_json::from_slice::<LayerContexts>(&bytes) {
                Ok(c) => return Ok(c),
                // A damaged cache is computed again.
                Err(e) => tracing::warn!("ignoring {}: {e}", path.display()),
            }
        }
        let texts = corpus()?;
        let width = self.decoder().config().neurons(layer);
        let mut top: Vec<Vec<(u32, u32, f32)>> = vec![Vec::new(); width];
        let mut tokens = 0;
        for (i, text) in texts.iter().enumerate() {
            let tok = self.tokenize(&text.text, false, false)?;
            let ids: Vec<u32> = tok.tokens.iter().map(|t| t.id).collect();
            let ids = &ids[..ids.len().min(self.max_tokens())];
            tokens += ids.len();
            let hidden = self
                .decoder()
                .mlp_hidden(ids, layer, Products::F32)?
                .to_dtype(candle_core::DType::F32)?
                .to_vec2::<f32>()?;
            // Each neuron's largest activation in this text, at a token that is no control
            // token.
            let mut best: Vec<(u32, f32)> = vec![(0, f32::NEG_INFINITY); width];
            for (pos, row) in hidden.iter().enumerate() {
                if tok.tokens.get(pos).is_some_and(|t| t.special) {
                    continue;
                }
                for (b, &v) in best.iter_mut().zip(row) {
                    if v > b.1 {
                        *b = (pos as u32, v);
                    }
                }
            }
            for (kept, (pos, v)) in top.iter_mut().zip(best) {
                if !v.is_finite() {
                    continue;
                }
                if kept.len() < CONTEXT_HITS || kept.last().is_some_and(|l| v > l.2) {
                    kept.push((i as u32, pos, v));
                    kept.sort_by(|a, b| b.2.total_cmp(&a.2));
                    kept.truncate(CONTEXT_HITS);
                }
            }
            progress(i + 1, texts.len())?;
        }
        let out = LayerContexts {
            texts: texts.len(),
            tokens,
            neurons: top,
        };
        if let Err(e) = write_atomically(&path, &serde_json::to_vec(&out).unwrap_or_default()) {
            tracing::warn!("could not cache {}: {e}", path.display());
        }
        Ok(out)
    }
}

/// Writes `bytes` to `path` through a temporary file, so a reader never sees half of it.
fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_corpus_reads_and_holds_english_and_code() {
        let texts = corpus().unwrap();
        assert!(texts.len() >= 3000, "{}", texts.len());
        for source in ["moby-dick", "sotu", "code"] {
            assert!(texts.iter().any(|t| t.source == source), "{source}");
        }
        assert!(texts.iter().all(|t| !t.text.trim().is_empty()));
        assert_eq!(corpus_version(), corpus_version());
    }
}
