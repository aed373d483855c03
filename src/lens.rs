//! The logit lens of an explanation's forward pass (the types: [`crate::LensCell`]).

use crate::models::decoder::Saved;
use crate::{LensCell, LENS_TOP};

/// Positions whose lens logits are computed at once: 128 × a 262k vocabulary is 128 MiB.
const ROWS: usize = 128;

impl crate::Engine {
    /// At every layer and position of `saved`, the most probable next tokens and `target`'s
    /// rank and probability, had that layer been the last; `[layer][position]`.
    pub(crate) fn lens(&self, saved: &Saved, target: u32) -> crate::Result<Vec<Vec<LensCell>>> {
        let model = self.decoder();
        let n = saved.len();
        let mut out = Vec::with_capacity(self.n_layers());
        for layer in 0..self.n_layers() {
            let mut row = Vec::with_capacity(n);
            for from in (0..n).step_by(ROWS) {
                let to = (from + ROWS).min(n);
                let logits: Vec<Vec<f32>> = model.lens_logits(saved, layer, from, to)?.to_vec2()?;
                for l in &logits {
                    row.push(cell(l, target)?);
                }
            }
            out.push(row);
        }
        Ok(out)
    }
}

/// One position's lens cell from its logits.
fn cell(logits: &[f32], target: u32) -> crate::Result<LensCell> {
    let t = *logits.get(target as usize).ok_or_else(|| {
        crate::Error::InvalidSetting(format!("target id {target} is not in the vocabulary"))
    })?;
    let softmax = crate::engine::Softmax::of(logits);
    // The top few by a partial selection: higher logit first, then lower id.
    let mut top: Vec<u32> = Vec::with_capacity(LENS_TOP + 1);
    for (id, &v) in logits.iter().enumerate() {
        let worse = |&o: &u32| logits[o as usize] < v;
        if top.len() < LENS_TOP || top.last().is_some_and(worse) {
            let at = top
                .iter()
                .position(|&o| logits[o as usize] < v)
                .unwrap_or(top.len());
            top.insert(at, id as u32);
            top.truncate(LENS_TOP);
        }
    }
    Ok(LensCell {
        probs: top
            .iter()
            .map(|&i| softmax.prob(logits[i as usize]))
            .collect(),
        top,
        target_rank: logits.iter().filter(|&&v| v > t).count(),
        target_prob: softmax.prob(t),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cell_has_the_top_tokens_in_order_and_the_targets_rank() {
        let logits = [0.0, 3.0, 1.0, 3.0, -1.0, 2.0, 0.5];
        let c = cell(&logits, 2).unwrap();
        assert_eq!(c.top, vec![1, 3, 5, 2, 6], "ties: the lower id first");
        assert_eq!(c.target_rank, 3);
        let z: f32 = logits.iter().map(|v| v.exp()).sum();
        assert!((c.target_prob - 1f32.exp() / z).abs() < 1e-6);
        assert!((c.probs[0] - 3f32.exp() / z).abs() < 1e-6);
        assert!(cell(&logits, 7).is_err());
    }
}
