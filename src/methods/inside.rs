//! Inside the model: the relevance of each layer's MLP neurons (its hidden units, the input
//! of `down_proj`) and attention heads (their slices of `o_proj`'s input): the method's
//! gradient there times the activation (input × gradient; under LRP's rules, relevance) or
//! the gradient's magnitude (saliency), per token. Heard during the method's own backward
//! pass (no second pass); a layer keeps its total, its top-k neurons and every head, so the
//! stream stays small.

use candle_core::{DType, Result, Tensor, D};

use crate::models::decoder::{Block, Point, Watch};
use crate::select::largest_magnitude;
use crate::types::{
    BlockRelevance, Component, HeadLayer, Method, Neuron, NeuronLayer, Reduction, Unit,
};

/// What to keep inside the model besides the scores.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Inside {
    /// The top neurons per layer (0: none).
    pub neurons: usize,
    /// Every head of every layer.
    pub heads: bool,
    /// The requested methods (each keeps its reduction's).
    pub methods: Vec<Method>,
}

impl Inside {
    /// What request `req` asks to keep.
    pub(crate) fn of(req: &crate::types::ExplainRequest) -> Self {
        Inside {
            neurons: req.neurons,
            heads: req.heads,
            methods: req.methods.clone(),
        }
    }

    /// The reductions of the requested methods that share `pass`.
    pub(crate) fn reductions(&self, pass: super::Pass) -> Vec<Reduction> {
        let mut out: Vec<Reduction> = Vec::new();
        for m in &self.methods {
            let r = m.runs();
            if r.pass == pass && !out.contains(&r.reduction) {
                out.push(r.reduction);
            }
        }
        out
    }

    /// Nothing to keep.
    pub(crate) fn is_nothing(&self) -> bool {
        self.neurons == 0 && !self.heads
    }
}

/// One seed's layers, as heard so far.
#[derive(Debug, Clone)]
struct Layers {
    neurons: Vec<Option<NeuronLayer>>,
    /// Per layer, every neuron's value (for ranking over the whole model).
    all_neurons: Vec<Vec<f32>>,
    heads: Vec<Option<HeadLayer>>,
    /// Per layer, the attention block's and the MLP's relevance in the stream.
    blocks: Vec<[BlockRelevance; 2]>,
}

/// A seed's most relevant units over the whole model, each kind where it was heard.
#[derive(Debug, Clone, Default)]
pub(crate) struct Ranking {
    pub neurons: Option<Vec<(Component, f32)>>,
    pub heads: Option<Vec<(Component, f32)>>,
    /// Each layer's neurons, each layer's heads (a layer of experts has more neurons than a
    /// dense one).
    pub widths: [Vec<usize>; 2],
}

/// What a pass heard inside the model: per reduction, per seed.
#[derive(Debug)]
pub(crate) struct Components {
    k: usize,
    layers: usize,
    /// Each layer's heads kept (0: none asked, or a layer without attention).
    heads: Vec<usize>,
    kept: Vec<(Reduction, Vec<Layers>)>,
}

/// A block's slot in [`Layers::blocks`].
fn slot(block: Block) -> usize {
    match block {
        Block::Attention => 0,
        Block::Mlp => 1,
    }
}

impl Components {
    /// Keeps the top `k` neurons of each layer (and its `heads[layer]` heads), for each of
    /// `reductions`.
    pub(crate) fn new(k: usize, heads: Vec<usize>, reductions: &[Reduction]) -> Self {
        let layers = heads.len();
        let mut kept: Vec<(Reduction, Vec<Layers>)> = Vec::new();
        for &r in reductions {
            if !kept.iter().any(|(k, _)| *k == r) {
                kept.push((r, Vec::new()));
            }
        }
        Components {
            k,
            layers,
            heads,
            kept,
        }
    }

    fn seed(&self, reduction: Reduction, i: usize) -> Option<&Layers> {
        let (_, kept) = self.kept.iter().find(|(r, _)| *r == reduction)?;
        kept.get(i)
    }

    /// A block's relevance, where the reduction has one (not saliency's magnitudes).
    fn block(
        reduction: Reduction,
        s: &Layers,
        layer: usize,
        block: Block,
    ) -> Option<BlockRelevance> {
        (reduction == Reduction::InputTimesGradient).then(|| s.blocks[layer][slot(block)])
    }

    /// Seed `i`'s neurons under `reduction`, once every layer was heard.
    pub(crate) fn neurons(&self, reduction: Reduction, i: usize) -> Option<Vec<NeuronLayer>> {
        let s = self.seed(reduction, i)?;
        let layers: Option<Vec<NeuronLayer>> = s.neurons.iter().cloned().collect();
        let mut layers = layers?;
        for (l, layer) in layers.iter_mut().enumerate() {
            layer.block = Self::block(reduction, s, l, Block::Mlp);
        }
        Some(layers)
    }

    /// Seed `i`'s `k` most relevant neurons and heads under `reduction` over the whole model
    /// (signed: the most supporting first), each kind where it was heard.
    pub(crate) fn ranking(&self, reduction: Reduction, i: usize, k: usize) -> Ranking {
        let Some(s) = self.seed(reduction, i) else {
            return Ranking::default();
        };
        let rank = |values: Vec<(Component, f32)>| {
            let mut values = values;
            values.sort_by(|a, b| b.1.total_cmp(&a.1));
            values.truncate(k);
            values
        };
        let at = |layer, unit| Component { layer, unit };
        let neurons = s.all_neurons.iter().all(|l| !l.is_empty()).then(|| {
            let all = s.all_neurons.iter().enumerate().flat_map(|(l, v)| {
                v.iter()
                    .enumerate()
                    .map(move |(j, &x)| (at(l, Unit::Neuron(j as u32)), x))
            });
            rank(all.collect())
        });
        let heard = s.heads.iter().zip(&self.heads);
        let heads = heard.clone().all(|(h, &w)| w == 0 || h.is_some()).then(|| {
            // Numbered by their layer: a layer without heads (a Gated DeltaNet's) keeps its
            // number.
            let layers = s.heads.iter().enumerate();
            let all = layers
                .filter_map(|(l, h)| Some((l, h.as_ref()?)))
                .flat_map(|(l, h)| {
                    h.heads
                        .iter()
                        .enumerate()
                        .map(move |(j, &x)| (at(l, Unit::Head(j as u32)), x))
                });
            rank(all.collect())
        });
        Ranking {
            neurons,
            heads: heads.filter(|_| self.heads.iter().any(|&w| w > 0)),
            widths: [
                s.all_neurons.iter().map(Vec::len).collect(),
                self.heads.clone(),
            ],
        }
    }

    /// Seed `i`'s heads under `reduction`, once every layer was heard.
    pub(crate) fn heads(&self, reduction: Reduction, i: usize) -> Option<Vec<HeadLayer>> {
        let s = self.seed(reduction, i)?;
        if self.heads.iter().all(|&w| w == 0) {
            return None;
        }
        // A layer without attention heads has an empty row.
        let layers: Option<Vec<HeadLayer>> = s
            .heads
            .iter()
            .zip(&self.heads)
            .map(|(h, &w)| match (h, w) {
                (_, 0) => Some(HeadLayer::default()),
                (h, _) => h.clone(),
            })
            .collect();
        let mut layers = layers?;
        for (l, layer) in layers.iter_mut().enumerate() {
            layer.block = Self::block(reduction, s, l, Block::Attention);
        }
        Some(layers)
    }
}

impl Watch for Components {
    fn wants(&self, point: Point) -> bool {
        let of = |block| match block {
            Block::Attention => self.heads.iter().any(|&w| w > 0),
            Block::Mlp => self.k > 0,
        };
        match point {
            Point::MlpHidden => of(Block::Mlp),
            Point::AttentionHeads => of(Block::Attention),
            // A block's relevance only where its units are kept, and only for x · g.
            Point::BlockOutput(b) | Point::BlockInput(b) => {
                of(b)
                    && self
                        .kept
                        .iter()
                        .any(|(r, _)| *r == Reduction::InputTimesGradient)
            }
        }
    }

    /// Hears `point` of layer `layer`: activations `(seq, width)` and their cotangents
    /// `(b, seq, width)` for the pass's seeds `first..first + b`.
    fn hear(
        &mut self,
        point: Point,
        layer: usize,
        first: usize,
        activations: &Tensor,
        cotangents: &Tensor,
    ) -> Result<()> {
        let (k, layers) = (self.k, self.layers);
        if !self.wants(point) {
            return Ok(());
        }
        if layer >= layers {
            candle_core::bail!("layer {layer} of {layers}");
        }
        let heads = self.heads[layer];
        if point == Point::AttentionHeads && heads == 0 {
            candle_core::bail!("layer {layer} has no heads to hear");
        }
        let act = activations.to_dtype(DType::F32)?;
        let cot = cotangents.to_dtype(DType::F32)?;
        let b = cot.dim(0)?;
        for (reduction, kept) in &mut self.kept {
            if kept.len() < first + b {
                let empty = Layers {
                    neurons: vec![None; layers],
                    all_neurons: vec![Vec::new(); layers],
                    heads: vec![None; layers],
                    blocks: vec![[BlockRelevance::default(); 2]; layers],
                };
                kept.resize(first + b, empty);
            }
            let block = matches!(point, Point::BlockOutput(_) | Point::BlockInput(_));
            if block && *reduction != Reduction::InputTimesGradient {
                // Conservation is of relevance sums: a gradient's magnitude has none.
                continue;
            }
            let seeds = &mut kept[first..first + b];
            // (b, seq, width)
            let terms = match reduction {
                Reduction::GradientNorm => cot.abs()?,
                Reduction::InputTimesGradient => cot.broadcast_mul(&act)?,
            };
            match point {
                Point::MlpHidden => neurons(&terms, k, layer, seeds)?,
                Point::AttentionHeads => heads_of(&terms, heads, layer, seeds)?,
                Point::BlockOutput(block) | Point::BlockInput(block) => {
                    let sums = terms.to_dtype(DType::F64)?.sum((1, 2))?.to_vec1::<f64>()?;
                    for (s, sum) in seeds.iter_mut().zip(sums) {
                        let r = &mut s.blocks[layer][slot(block)];
                        match point {
                            Point::BlockOutput(_) => r.output = sum as f32,
                            _ => r.input = sum as f32,
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// The heads of one layer from its terms `(b, seq, heads · head_dim)`, into each seed's slot.
fn heads_of(terms: &Tensor, heads: usize, layer: usize, seeds: &mut [Layers]) -> Result<()> {
    let (b, n, width) = terms.dims3()?;
    // (b, heads, seq)
    let per_head = terms
        .reshape((b, n, heads, width / heads))?
        .sum(D::Minus1)?
        .transpose(1, 2)?
        .contiguous()?
        .to_vec3::<f32>()?;
    for (slot, per_token) in seeds.iter_mut().zip(per_head) {
        let values: Vec<f32> = per_token
            .iter()
            .map(|t| t.iter().map(|&v| f64::from(v)).sum::<f64>() as f32)
            .collect();
        slot.heads[layer] = Some(HeadLayer {
            total: values.iter().map(|&v| f64::from(v)).sum::<f64>() as f32,
            heads: values,
            per_token,
            block: None,
        });
    }
    Ok(())
}

/// The top `k` neurons of one layer from its terms `(b, seq, neurons)`, into each seed's slot.
fn neurons(terms: &Tensor, k: usize, layer: usize, seeds: &mut [Layers]) -> Result<()> {
    let sums = terms.sum(1)?.to_vec2::<f32>()?;
    for (i, (sums, slot)) in sums.iter().zip(seeds).enumerate() {
        slot.all_neurons[layer] = sums.clone();
        let top = largest_magnitude(sums, k);
        let idx: Vec<u32> = top.iter().map(|&j| j as u32).collect();
        let idx = Tensor::from_vec(idx, top.len(), terms.device())?;
        let per_token = terms
            .get(i)?
            .index_select(&idx, 1)?
            .t()?
            .contiguous()?
            .to_vec2::<f32>()?;
        slot.neurons[layer] = Some(NeuronLayer {
            total: sums.iter().map(|&v| f64::from(v)).sum::<f64>() as f32,
            block: None,
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_sums_and_per_token() -> Result<()> {
        let dev = candle_core::Device::Cpu;
        // seq 2, neurons 3; one seed.
        let hidden = Tensor::new(&[[1f32, 2., 3.], [4., 5., 6.]], &dev)?;
        let cot = Tensor::new(&[[[1f32, -1., 0.], [0.5, 1., -2.]]], &dev)?;
        let reductions = [Reduction::InputTimesGradient, Reduction::GradientNorm];
        let mut n = Components::new(2, vec![3], &reductions);
        n.hear(Point::MlpHidden, 0, 0, &hidden, &cot)?;
        let x = n.neurons(Reduction::InputTimesGradient, 0).expect("heard");
        // x·g per neuron: [1 + 2, -2 + 5, 0 - 12] = [3, 3, -12]; total -6.
        assert_eq!(x[0].total, -6.0);
        assert_eq!(x[0].top[0].index, 2);
        assert_eq!(x[0].top[0].per_token, vec![0.0, -12.0]);
        let g = n.neurons(Reduction::GradientNorm, 0).expect("heard");
        // |g| per neuron: [1.5, 2, 2]; total 5.5.
        assert_eq!(g[0].total, 5.5);
        assert_eq!(g[0].top.len(), 2);
        assert!(n.neurons(Reduction::GradientNorm, 1).is_none());
        assert!(
            n.heads(Reduction::GradientNorm, 0).is_none(),
            "not heard yet"
        );
        // Three heads of width one: each head's term is its neuron's.
        n.hear(Point::AttentionHeads, 0, 0, &hidden, &cot)?;
        let h = n.heads(Reduction::InputTimesGradient, 0).expect("heard");
        assert_eq!(h[0].heads, vec![3.0, 3.0, -12.0]);
        assert_eq!(h[0].per_token[2], vec![0.0, -12.0]);
        assert_eq!(h[0].total, -6.0);
        Ok(())
    }

    #[test]
    fn a_later_group_of_seeds_fills_its_own_slots() -> Result<()> {
        let dev = candle_core::Device::Cpu;
        let hidden = Tensor::new(&[[1f32, 2.], [3., 4.]], &dev)?;
        // Seeds 1 and 2 of the pass (a second group): seed 2's cotangents are seed 1's × 2.
        let cot = Tensor::new(&[[[1f32, 0.], [0., 1.]], [[2., 0.], [0., 2.]]], &dev)?;
        let mut n = Components::new(1, vec![0], &[Reduction::InputTimesGradient]);
        assert!(!n.wants(Point::AttentionHeads));
        n.hear(Point::MlpHidden, 0, 1, &hidden, &cot)?;
        assert!(
            n.neurons(Reduction::InputTimesGradient, 0).is_none(),
            "seed 0 unheard"
        );
        let one = n.neurons(Reduction::InputTimesGradient, 1).expect("seed 1");
        let two = n.neurons(Reduction::InputTimesGradient, 2).expect("seed 2");
        // x·g: neuron 0 gets 1 (token 0), neuron 1 gets 4 (token 1); seed 2 twice that.
        assert_eq!((one[0].top[0].index, one[0].top[0].value), (1, 4.0));
        assert_eq!(one[0].top[0].per_token, vec![0.0, 4.0]);
        assert_eq!(two[0].top[0].per_token, vec![0.0, 8.0]);
        assert_eq!(two[0].total, 10.0);
        Ok(())
    }
}
