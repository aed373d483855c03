//! Per-token reductions of the input embeddings' gradient, and the trace's row
//! normalization (the trace itself is summed in `models::decoder::backward`).
//!
//! - saliency: `‖dy/de_t‖₂` over the hidden dimension (the first seed's method; Simonyan et
//!   al. 2014, "Deep Inside Convolutional Networks").
//! - input×gradient / relevance: `Σ_d e_t,d · dy/de_t,d` (Shrikumar et al. 2016). With LRP rules
//!   in the backward pass this sum is AttnLRP's relevance (see `attnlrp.rs`).
//! - trace: the same sum at every decoder layer's output h_l (LXT's latent relevance trace).

use candle_core::{Result, Tensor, D};

/// `‖grad_t‖₂` per token; `grad: (seq, hidden)`.
pub fn l2_norm(grad: &Tensor) -> Result<Vec<f32>> {
    grad.sqr()?
        .sum(D::Minus1)?
        .sqrt()?
        .to_dtype(candle_core::DType::F32)?
        .to_vec1()
}

/// `Σ_d x[t,d]·grad[t,d]` per token; both `(seq, hidden)`.
pub fn dot(x: &Tensor, grad: &Tensor) -> Result<Vec<f32>> {
    // Accumulate in f32 whatever the model's dtype.
    let x = x.to_dtype(candle_core::DType::F32)?;
    let g = grad.to_dtype(candle_core::DType::F32)?;
    (x * g)?.sum(D::Minus1)?.to_vec1()
}

/// Each row divided by its largest |value| (rows of zeros stay zero).
pub fn normalize_rows(rows: &[Vec<f32>]) -> Vec<Vec<f32>> {
    rows.iter()
        .map(|r| {
            let m = crate::text::max_abs(r);
            if m > 0.0 {
                r.iter().map(|v| v / m).collect()
            } else {
                r.clone()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn scores_by_hand() -> Result<()> {
        let x = Tensor::new(&[[1f32, 2.], [3., -1.]], &Device::Cpu)?;
        let g = Tensor::new(&[[3f32, 4.], [0.5, 2.]], &Device::Cpu)?;
        // ‖(3,4)‖ = 5, ‖(0.5,2)‖ = √4.25
        let n = l2_norm(&g)?;
        assert!((n[0] - 5.0).abs() < 1e-6 && (n[1] - 4.25f32.sqrt()).abs() < 1e-6);
        // 1·3 + 2·4 = 11, 3·0.5 − 1·2 = −0.5
        assert_eq!(dot(&x, &g)?, vec![11.0, -0.5]);
        assert_eq!(
            normalize_rows(&[vec![2.0, -4.0], vec![0.0, 0.0]]),
            vec![vec![0.5, -1.0], vec![0.0, 0.0]]
        );
        Ok(())
    }
}
