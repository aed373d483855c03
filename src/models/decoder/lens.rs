//! The logit lens' logits: the model's final norm, output projection and soft-cap applied to
//! the residual stream after any layer, as the last layer's output gets them.

use candle_core::{DType, Result, Tensor};

use super::{Decoder, Saved};

impl Decoder {
    /// Logits `(to − from, vocab)` in f32 of the residual stream after layer `layer` (0-based)
    /// at positions `from..to`.
    pub fn lens_logits(
        &self,
        saved: &Saved,
        layer: usize,
        from: usize,
        to: usize,
    ) -> Result<Tensor> {
        let Some(h) = saved.residuals.get(layer + 1) else {
            candle_core::bail!("no layer {layer} in the saved pass");
        };
        let x = crate::models::rms_norm(
            &h.narrow(0, from, to.saturating_sub(from))?,
            &self.norm,
            self.cfg.rms_norm_eps,
            false,
        )?;
        let logits = self.lm_head.matmul(&x.t()?.contiguous()?)?.t()?;
        self.softcap(&logits)?.to_dtype(DType::F32)
    }
}
