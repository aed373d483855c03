//! The logit lens: what each layer would predict if it were the last. The model's own final
//! norm (and soft-cap) and output projection are applied to the residual stream after the
//! layer, at every position.

use serde::{Deserialize, Serialize};

/// Tokens a lens cell keeps, most probable first.
pub const LENS_TOP: usize = 5;

/// One layer's prediction at one position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LensCell {
    /// The [`LENS_TOP`] most probable next tokens, most probable first (ties: lower id first).
    pub top: Vec<u32>,
    /// Their probabilities.
    pub probs: Vec<f32>,
    /// Their texts (as the tokenizer decodes each alone).
    #[serde(default)]
    pub texts: Vec<String>,
    /// The explained target's rank there (0: the layer's top-1).
    pub target_rank: usize,
    /// The explained target's probability there.
    pub target_prob: f32,
}

/// The first layer (0-based) from which `position`'s top token is the target at every later
/// layer too, if any: where the answer forms.
pub fn target_settles(lens: &[Vec<LensCell>], position: usize) -> Option<usize> {
    let ranks: Vec<usize> = lens
        .iter()
        .map(|row| row.get(position).map_or(usize::MAX, |c| c.target_rank))
        .collect();
    let last_miss = ranks.iter().rposition(|&r| r != 0);
    match last_miss {
        None if !ranks.is_empty() => Some(0),
        Some(i) if i + 1 < ranks.len() => Some(i + 1),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_settles_after_its_last_miss() {
        let cell = |rank| LensCell {
            top: Vec::new(),
            probs: Vec::new(),
            texts: Vec::new(),
            target_rank: rank,
            target_prob: 0.0,
        };
        let lens = |ranks: &[usize]| -> Vec<Vec<LensCell>> {
            ranks.iter().map(|&r| vec![cell(9), cell(r)]).collect()
        };
        assert_eq!(target_settles(&lens(&[3, 0, 2, 0, 0]), 1), Some(3));
        assert_eq!(target_settles(&lens(&[0, 0]), 1), Some(0));
        assert_eq!(target_settles(&lens(&[0, 1]), 1), None);
        assert_eq!(target_settles(&lens(&[0, 0]), 0), None);
        assert_eq!(target_settles(&[], 0), None);
    }
}
