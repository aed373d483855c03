//! Component ablation, a faithfulness check of neuron and head relevance: the target's
//! log-probability as a method's most relevant units are zeroed one after another, next to
//! random units of the same layers (seeded draws). Each point is one forward pass of the
//! prompt through the decoder steered with those units scaled by 0.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::engine::stage;
use crate::error::Result;
use crate::methods::inside::Ranking;
use crate::models::decoder::KvCache;
use crate::precision::Plan;
use crate::target::Softmax;
use crate::types::{
    Ablation, AblationCurve, Component, Edit, RandomDraw, Setting, Stage, StreamEvent, Unit,
    ABLATION_DRAWS,
};

impl crate::Engine {
    /// The ablation curves of `ranking`'s units (each kind it has) for `target` after `ids`;
    /// emits the `ablation` stage and progress (a cancellation point per forward pass).
    pub(crate) fn ablation(
        &self,
        ids: &[u32],
        target: u32,
        ranking: &Ranking,
        plan: Plan,
        emit: &mut dyn FnMut(StreamEvent) -> Result<()>,
    ) -> Result<Ablation> {
        emit(stage(Stage::Ablation, None))?;
        let kinds = [&ranking.neurons, &ranking.heads];
        let total: usize = kinds
            .iter()
            .filter_map(|k| k.as_ref())
            .map(|u| u.len() * (1 + ABLATION_DRAWS))
            .sum::<usize>()
            + 1;
        let mut done = 0;
        let mut log_prob = |zeroed: &[Component]| -> Result<f32> {
            let edits: Vec<Edit> = zeroed
                .iter()
                .map(|c| Edit {
                    layer: c.layer,
                    unit: c.unit,
                    setting: Setting::Scale(0.0),
                })
                .collect();
            let model = self.decoder().steered(&edits)?;
            let logits: Vec<f32> = model
                .forward_cached(ids, &mut KvCache::default(), plan.forward)?
                .to_vec1()?;
            let logit = logits.get(target as usize).copied().unwrap_or(f32::NAN);
            done += 1;
            emit(StreamEvent::Progress {
                stage: Stage::Ablation,
                method: None,
                done,
                total,
            })?;
            Ok(Softmax::of(&logits).log_prob(logit))
        };
        let base = log_prob(&[])?;
        let mut curve = |units: &[Component]| -> Result<Vec<f32>> {
            let mut out = vec![base];
            for k in 1..=units.len() {
                out.push(log_prob(&units[..k])?);
            }
            Ok(out)
        };
        let mut curves = [None, None];
        for (kind, (units, widths)) in kinds.iter().zip(&ranking.widths).enumerate() {
            let Some(units) = units else { continue };
            let top: Vec<Component> = units.iter().map(|u| u.0).collect();
            let mut random = Vec::with_capacity(ABLATION_DRAWS);
            for draw in 0..ABLATION_DRAWS {
                let drawn = draw_like(&top, widths, draw as u64);
                random.push(RandomDraw {
                    log_probs: curve(&drawn)?,
                    units: drawn,
                });
            }
            curves[kind] = Some(AblationCurve {
                top: curve(&top)?,
                units: units.clone(),
                random,
            });
        }
        let [neurons, heads] = curves;
        Ok(Ablation { neurons, heads })
    }
}

/// Random units of `top`'s layers, one per unit of `top` (of `widths[layer]` in each layer),
/// none of `top` and none twice, from seed `seed`.
fn draw_like(top: &[Component], widths: &[usize], seed: u64) -> Vec<Component> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out: Vec<Component> = Vec::with_capacity(top.len());
    for c in top {
        let taken = |u: &Component| top.contains(u) || out.contains(u);
        // A layer of at least as many units as `top` holds in it has a free one; give up
        // on a layer without one (a model of fewer units than asked).
        let width = widths.get(c.layer).copied().unwrap_or(0);
        let free: Vec<Component> = (0..width as u32)
            .map(|i| Component {
                layer: c.layer,
                unit: match c.unit {
                    Unit::Neuron(_) => Unit::Neuron(i),
                    Unit::Head(_) => Unit::Head(i),
                },
            })
            .filter(|u| !taken(u))
            .collect();
        if free.is_empty() {
            continue;
        }
        out.push(free[rng.random_range(0..free.len())]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_units_come_from_the_top_units_layers() {
        let at = |layer, i| Component {
            layer,
            unit: Unit::Head(i),
        };
        let top = [at(3, 1), at(3, 2), at(0, 0)];
        let widths = [4; 4];
        let drawn = draw_like(&top, &widths, 7);
        assert_eq!(drawn.len(), 3);
        assert_eq!(
            drawn.iter().map(|c| c.layer).collect::<Vec<_>>(),
            vec![3, 3, 0]
        );
        assert!(drawn.iter().all(|c| !top.contains(c)));
        assert_ne!(drawn[0], drawn[1]);
        assert_eq!(drawn, draw_like(&top, &widths, 7), "seeded");
        // Layer 3 has units 0 and 3 free; a third draw there has none.
        let top = [at(3, 1), at(3, 2), at(3, 0)];
        assert_eq!(draw_like(&top, &widths, 1).len(), 1);
        // Each layer's own width (a dense layer beside layers of experts): layer 1's 3 units
        // hold one free, layer 0's 9 hold units past layer 1's.
        let widths = [9, 3];
        let top = [at(1, 0), at(1, 1)];
        assert!(draw_like(&top, &widths, 3)
            .iter()
            .all(|c| c.unit == Unit::Head(2)));
        let top = [at(0, 0), at(0, 1), at(0, 2), at(0, 3), at(0, 4)];
        let drawn = (0..20).flat_map(|s| draw_like(&top, &widths, s));
        assert!(drawn
            .clone()
            .all(|c| c.layer == 0 && c.unit != Unit::Head(9)));
        assert!(drawn.into_iter().any(|c| c.unit == Unit::Head(8)));
    }
}
