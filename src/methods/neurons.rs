//! Neuron relevance: at each layer's MLP hidden units (the input of `down_proj`), the
//! method's gradient times the activation (input × gradient; under LRP's rules, relevance)
//! or the gradient's magnitude (saliency), per token. Heard during the method's own backward
//! pass (no second pass); a layer keeps its total and its top-k neurons, so the stream stays
//! small.

use candle_core::{DType, Result, Tensor};

use crate::types::{Neuron, NeuronLayer, Reduction};

/// What a pass heard at the neurons: per reduction, `[seed][layer]`.
#[derive(Debug)]
pub(crate) struct Neurons {
    k: usize,
    layers: usize,
    kept: Vec<(Reduction, Vec<Vec<Option<NeuronLayer>>>)>,
}

impl Neurons {
    /// Keeps the top `k` neurons of each of `layers` layers, for each of `reductions`.
    pub(crate) fn new(k: usize, layers: usize, reductions: &[Reduction]) -> Self {
        let mut kept: Vec<(Reduction, Vec<Vec<Option<NeuronLayer>>>)> = Vec::new();
        for &r in reductions {
            if !kept.iter().any(|(k, _)| *k == r) {
                kept.push((r, Vec::new()));
            }
        }
        Neurons { k, layers, kept }
    }

    /// Hears layer `layer`'s hidden units `(seq, neurons)` and their cotangents `(b, seq,
    /// neurons)` for the pass's seeds `first..first + b`.
    pub(crate) fn hear(
        &mut self,
        layer: usize,
        first: usize,
        hidden: &Tensor,
        cotangents: &Tensor,
    ) -> Result<()> {
        let hidden = hidden.to_dtype(DType::F32)?;
        let cot = cotangents.to_dtype(DType::F32)?;
        for (reduction, kept) in &mut self.kept {
            // (b, seq, neurons)
            let terms = match reduction {
                Reduction::GradientNorm => cot.abs()?,
                Reduction::InputTimesGradient => cot.broadcast_mul(&hidden)?,
            };
            let sums = terms.sum(1)?.to_vec2::<f32>()?;
            for (i, sums) in sums.iter().enumerate() {
                let top = top_k(sums, self.k);
                let idx: Vec<u32> = top.iter().map(|&j| j as u32).collect();
                let idx = Tensor::from_vec(idx, top.len(), terms.device())?;
                let per_token = terms
                    .get(i)?
                    .index_select(&idx, 1)?
                    .t()?
                    .contiguous()?
                    .to_vec2::<f32>()?;
                let seed = first + i;
                if kept.len() <= seed {
                    kept.resize(seed + 1, vec![None; self.layers]);
                }
                let slot = kept[seed].get_mut(layer).ok_or_else(|| {
                    candle_core::Error::Msg(format!("layer {layer} of {}", self.layers))
                })?;
                *slot = Some(NeuronLayer {
                    total: sums.iter().map(|&v| f64::from(v)).sum::<f64>() as f32,
                    top: top
                        .iter()
                        .zip(per_token)
                        .map(|(&j, per_token)| Neuron {
                            index: j as u32,
                            value: sums[j],
                            per_token,
                        })
                        .collect(),
                });
            }
        }
        Ok(())
    }

    /// Seed `i`'s layers under `reduction`, once every layer was heard.
    pub(crate) fn layers(&self, reduction: Reduction, i: usize) -> Option<Vec<NeuronLayer>> {
        let (_, kept) = self.kept.iter().find(|(r, _)| *r == reduction)?;
        kept.get(i)?.iter().cloned().collect()
    }
}

/// The indices of the `k` values of largest magnitude, largest first.
fn top_k(values: &[f32], k: usize) -> Vec<usize> {
    let by_magnitude = |a: &usize, b: &usize| values[*b].abs().total_cmp(&values[*a].abs());
    let mut idx: Vec<usize> = (0..values.len()).collect();
    let k = k.min(idx.len());
    if k == 0 {
        return Vec::new();
    }
    idx.select_nth_unstable_by(k - 1, by_magnitude);
    idx.truncate(k);
    idx.sort_by(by_magnitude);
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_neurons_by_magnitude() {
        assert_eq!(top_k(&[0.1, -3.0, 2.0, 0.0, -0.5], 3), vec![1, 2, 4]);
        assert_eq!(top_k(&[1.0], 4), vec![0]);
        assert!(top_k(&[1.0, 2.0], 0).is_empty());
    }

    #[test]
    fn terms_sums_and_per_token() -> Result<()> {
        let dev = candle_core::Device::Cpu;
        // seq 2, neurons 3; one seed.
        let hidden = Tensor::new(&[[1f32, 2., 3.], [4., 5., 6.]], &dev)?;
        let cot = Tensor::new(&[[[1f32, -1., 0.], [0.5, 1., -2.]]], &dev)?;
        let mut n = Neurons::new(
            2,
            1,
            &[Reduction::InputTimesGradient, Reduction::GradientNorm],
        );
        n.hear(0, 0, &hidden, &cot)?;
        let x = n.layers(Reduction::InputTimesGradient, 0).expect("heard");
        // x·g per neuron: [1 + 2, -2 + 5, 0 - 12] = [3, 3, -12]; total -6.
        assert_eq!(x[0].total, -6.0);
        assert_eq!(x[0].top[0].index, 2);
        assert_eq!(x[0].top[0].per_token, vec![0.0, -12.0]);
        let g = n.layers(Reduction::GradientNorm, 0).expect("heard");
        // |g| per neuron: [1.5, 2, 2]; total 5.5.
        assert_eq!(g[0].total, 5.5);
        assert_eq!(g[0].top.len(), 2);
        assert!(n.layers(Reduction::GradientNorm, 1).is_none());
        Ok(())
    }
}
