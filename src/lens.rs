//! The logit lens of an explanation's forward pass (the types: [`crate::LensCell`]).

use rayon::prelude::*;

use crate::models::decoder::Saved;
use crate::{LensCell, LENS_TOP};

/// Lens rows computed at once: 128 × a 262k vocabulary is 128 MiB.
const ROWS: usize = 128;

impl crate::Engine {
    /// At every layer and position of `saved`, the most probable next tokens and `target`'s
    /// rank and probability, had that layer been the last; `[layer][position]`. After each
    /// block of rows, `progress(layers done, layers)`: a report, and where a cancelled
    /// request stops.
    pub(crate) fn lens(
        &self,
        saved: &Saved,
        target: u32,
        p: crate::kernels::Products,
        progress: &mut dyn FnMut(usize, usize) -> crate::Result<()>,
    ) -> crate::Result<Vec<Vec<LensCell>>> {
        let n = saved.len();
        // Every (layer, position), layer by layer; blocks cross layers so that short prompts
        // still make wide matrix products.
        let all: Vec<(usize, usize)> = (0..self.n_layers())
            .flat_map(|l| (0..n).map(move |t| (l, t)))
            .collect();
        let mut cells = Vec::with_capacity(all.len());
        for rows in all.chunks(ROWS) {
            let block = self.decoder().lens_block(saved, rows, p)?;
            let done: crate::Result<Vec<LensCell>> = block
                .logits
                .par_iter()
                .zip(&block.lse)
                .map(|(l, &lse)| cell(l, lse, target))
                .collect();
            for mut c in done? {
                c.texts = c.top.iter().map(|&id| self.decode_token(id)).collect();
                cells.push(c);
            }
            progress(cells.len() / n.max(1), self.n_layers())?;
        }
        let mut out = Vec::with_capacity(self.n_layers());
        let mut it = cells.into_iter();
        for _ in 0..self.n_layers() {
            out.push(it.by_ref().take(n).collect());
        }
        Ok(out)
    }
}

/// One position's lens cell from its logits and their log-sum-exp.
fn cell(logits: &[f32], lse: f32, target: u32) -> crate::Result<LensCell> {
    let t = *logits.get(target as usize).ok_or_else(|| {
        crate::Error::InvalidSetting(format!("target id {target} is not in the vocabulary"))
    })?;
    let prob = |logit: f32| (logit - lse).exp();
    // The top few by a partial selection: higher logit first, then lower id.
    let mut top: Vec<u32> = Vec::with_capacity(LENS_TOP + 1);
    let mut floor = f32::NEG_INFINITY;
    for (id, &v) in logits.iter().enumerate() {
        if top.len() == LENS_TOP && v <= floor {
            continue;
        }
        let at = top
            .iter()
            .position(|&o| logits[o as usize] < v)
            .unwrap_or(top.len());
        top.insert(at, id as u32);
        top.truncate(LENS_TOP);
        if top.len() == LENS_TOP {
            floor = top
                .last()
                .map_or(f32::NEG_INFINITY, |&o| logits[o as usize]);
        }
    }
    Ok(LensCell {
        probs: top.iter().map(|&i| prob(logits[i as usize])).collect(),
        top,
        texts: Vec::new(),
        target_rank: logits.iter().filter(|&&v| v > t).count(),
        target_prob: prob(t),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cell_has_the_top_tokens_in_order_and_the_targets_rank() {
        let logits = [0.0, 3.0, 1.0, 3.0, -1.0, 2.0, 0.5];
        let lse = logits.iter().map(|v: &f32| v.exp()).sum::<f32>().ln();
        let c = cell(&logits, lse, 2).unwrap();
        assert_eq!(c.top, vec![1, 3, 5, 2, 6], "ties: the lower id first");
        assert_eq!(c.target_rank, 3);
        let z: f32 = logits.iter().map(|v| v.exp()).sum();
        assert!((c.target_prob - 1f32.exp() / z).abs() < 1e-6);
        assert!((c.probs[0] - 3f32.exp() / z).abs() < 1e-6);
        assert!(cell(&logits, lse, 7).is_err());
    }
}
