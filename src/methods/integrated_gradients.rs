//! Integrated gradients (Sundararajan et al., "Axiomatic Attribution for Deep Networks",
//! ICML 2017), as Captum's `IntegratedGradients` computes it on the input embeddings with
//! `method="riemann_right"`.
//!
//! The path runs straight from the baseline (the zero embedding at every position) to the
//! input. At `n` points `α_i = i/n`, `i = 1..n`, one forward and one plain backward pass give
//! the gradient `g_i` of the explained function `f` (the target's logit, its log-probability
//! or a span's, as the other methods explain it); the right Riemann sum averages them,
//! `ḡ = Σ_i g_i / n`, and token t's score is `Σ_d (x − baseline)_t,d · ḡ_t,d`. Completeness:
//! the scores sum to `f(x) − f(baseline)` up to the integration error, which the result
//! reports (the baseline's own forward pass gives `f(baseline)`).
//!
//! Why not the trapezoid or Gauss-Legendre: the decoders here normalize their input
//! (RMSNorm), so at the zero baseline every norm's gradient is `1/√ε` and a deep model's
//! gradient there overflows; the right sum never evaluates it. The price is that the
//! steepest stretch of the path, just after the baseline where the norms leave ε's regime,
//! is sampled coarsely: the completeness line says how much that costs.
//!
//! The trace is the same sum at each layer's output h_l, along the path the input's path
//! induces there (layer conductance, Dhamdhere et al. 2019): `Σ_i g_l,i · (h_l,i − h_l,i−1)`.
//! At the embeddings, whose change is `(x − baseline)/n` a step, it gives the input scores;
//! each layer's row sums to `f(x) − f(baseline)` up to the same error.
//!
//! The points run one after another, each one sequence through the saved forward pass; the
//! input's own pass serves as the last point. Seeds are batched within a point (a target and
//! its candidates, or every answer token of the all-steps matrix, share each point's pass).

use candle_core::{DType, Tensor};

use super::{PassOutput, Seeds};
use crate::kernels::Products;
use crate::models::decoder::{Decoder, Progress, Saved};
use crate::models::Ordinary;
use crate::types::PathEnds;

/// A point's forward pass: the input's own, or one made for an interpolated input.
enum Point<'a> {
    Input(&'a Saved),
    Made(Saved),
}

impl Point<'_> {
    fn saved(&self) -> &Saved {
        match self {
            Point::Input(s) => s,
            Point::Made(s) => s,
        }
    }
}

/// Runs the path from the zero baseline to the input whose forward pass is `saved`, with
/// `steps` points after the baseline (at least 1).
pub(crate) fn run(
    dec: &Decoder,
    saved: &Saved,
    steps: usize,
    seeds: &mut Seeds<'_>,
    p: Products,
    progress: &mut Progress<'_>,
) -> crate::Result<PassOutput> {
    let n = steps.max(1);
    let layers = dec.config().num_hidden_layers;
    // n forward passes (the input's own is done) and n backward passes.
    let total = 2 * n * layers;
    let mut done = 0;
    let x = saved.embeddings();
    // Point i's forward pass (the input's own at the end).
    let point = |i: usize, done: &mut usize, progress: &mut Progress<'_>| {
        if i == n {
            return Ok::<_, crate::Error>(Point::Input(saved));
        }
        let alpha = i as f64 / n as f64;
        let base = *done;
        let made = dec.forward_saved(&(x * alpha)?, p, &mut |l, _| progress(base + l, total))?;
        *done += layers;
        Ok(Point::Made(made))
    };
    let baseline = point(0, &mut done, progress)?;
    let value = |v: Option<f32>| {
        v.ok_or_else(|| candle_core::Error::Msg("a path's end has no value".into()))
    };
    let mut ends: Vec<PathEnds> = seeds(baseline.saved(), true)?
        .into_iter()
        .map(|(_, v)| {
            let v = value(v)?;
            Ok(PathEnds {
                baseline: v,
                input: v,
            })
        })
        .collect::<candle_core::Result<_>>()?;
    let mut prev: Vec<Tensor> = baseline.saved().residuals().to_vec();
    drop(baseline);
    let mut sum: Option<Tensor> = None;
    let mut trace: Vec<Vec<Vec<f32>>> = Vec::new();
    for i in 1..=n {
        let cur = point(i, &mut done, progress)?;
        let here = cur.saved().residuals();
        // The stream's change over this step, at every layer.
        let along = here
            .iter()
            .zip(&prev)
            .map(|(h, b)| h - b)
            .collect::<candle_core::Result<Vec<Tensor>>>()?;
        // Only the path's ends need the function's value.
        let (point_seeds, values): (Vec<_>, Vec<_>) =
            seeds(cur.saved(), i == n)?.into_iter().unzip();
        if i == n {
            for (e, v) in ends.iter_mut().zip(values) {
                e.input = value(v)?;
            }
        }
        let base = done;
        let g = dec.backward_along(
            cur.saved(),
            &point_seeds,
            &Ordinary,
            p,
            &along,
            &mut |l, _| progress(base + l, total),
        )?;
        done += layers;
        let part = (g.input.to_dtype(DType::F32)? / n as f64)?;
        sum = Some(match sum {
            Some(s) => (s + part)?,
            None => part,
        });
        accumulate(&mut trace, g.trace);
        prev = here.to_vec();
    }
    let input = sum.ok_or_else(|| candle_core::Error::Msg("no path points".into()))?;
    Ok(PassOutput {
        input: input.to_dtype(x.dtype())?,
        trace,
        ends: Some(ends),
        inside: None,
    })
}

/// Adds a point's trace `[seed][layer][token]` into the running sum.
fn accumulate(sum: &mut Vec<Vec<Vec<f32>>>, part: Vec<Vec<Vec<f32>>>) {
    if sum.is_empty() {
        *sum = part;
        return;
    }
    for (s, p) in sum.iter_mut().zip(part) {
        for (sl, pl) in s.iter_mut().zip(p) {
            for (a, b) in sl.iter_mut().zip(pl) {
                *a += b;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_add_up() {
        let mut sum = Vec::new();
        accumulate(&mut sum, vec![vec![vec![2.0, 4.0]]]);
        accumulate(&mut sum, vec![vec![vec![1.0, 1.0]]]);
        assert_eq!(sum, vec![vec![vec![3.0, 5.0]]]);
    }
}
