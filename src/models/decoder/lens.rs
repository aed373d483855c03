//! The logit lens' logits: the model's final norm, output projection and soft-cap applied to
//! the residual stream after any layer, as the last layer's output gets them.

use candle_core::{Result, Tensor, D};

use super::{Decoder, Saved};

/// One block of lens rows: their logits and each row's log-sum-exp.
pub struct LensBlock {
    /// `(rows, vocab)` in f32.
    pub logits: Vec<Vec<f32>>,
    /// `log Σ exp(logits)` per row, so that `p = exp(logit − lse)`.
    pub lse: Vec<f32>,
}

impl Decoder {
    /// The lens logits of `rows`, each `(layer, position)` (0-based layer), as one matrix
    /// product: the residual stream after each row's layer at its position.
    pub fn lens_block(
        &self,
        saved: &Saved,
        rows: &[(usize, usize)],
        p: crate::kernels::Products,
    ) -> Result<LensBlock> {
        let mut picked = Vec::with_capacity(rows.len());
        for &(layer, position) in rows {
            let Some(h) = saved.residuals.get(layer + 1) else {
                candle_core::bail!("no layer {layer} in the saved pass");
            };
            picked.push(h.narrow(0, position, 1)?);
        }
        let h = Tensor::cat(&picked, 0)?;
        let logits = self.head(&h, p)?;
        let max = logits.max_keepdim(D::Minus1)?;
        let lse = (logits
            .broadcast_sub(&max)?
            .exp()?
            .sum_keepdim(D::Minus1)?
            .log()?
            + &max)?;
        Ok(LensBlock {
            logits: logits.to_vec2()?,
            lse: lse.squeeze(1)?.to_vec1()?,
        })
    }
}
