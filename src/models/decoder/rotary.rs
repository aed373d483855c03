//! Rotary position embeddings: the tables the layers share, their application (a custom op
//! with its own backward) and its inverse for the explicit backward pass.
//!
//! A model has up to three tables: the global one, the sliding-window layers' one when their
//! base differs (Gemma 3), and the identity of layers without position embeddings (SmolLM3's
//! NoPE layers). [`tables`] builds them and [`table_of`] says which a layer uses: the one
//! place that knows their order.

use super::Config;
use crate::models::rope_scaling::NO_ROTATION;
use candle_core::{DType, Device, Result, Tensor, D};

/// Builds a model's RoPE tables, in the order [`table_of`] indexes them.
pub(super) fn tables(cfg: &Config, dtype: DType, dev: &Device) -> Result<Vec<Rotary>> {
    let a = &cfg.arch;
    let mut tables = vec![Rotary::new(cfg, cfg.rope_theta, true, dtype, dev)?];
    if let Some(local) = a.rope_local_theta {
        tables.push(Rotary::new(cfg, local, false, dtype, dev)?);
    }
    if a.layer_rope.contains(&false) {
        tables.push(Rotary::identity());
    }
    Ok(tables)
}

/// The index in [`tables`] of the table layer `layer` uses.
pub(super) fn table_of(cfg: &Config, layer: usize) -> usize {
    let a = &cfg.arch;
    let local = a.rope_local_theta.is_some();
    if !a.layer_rope.get(layer).copied().unwrap_or(true) {
        return 1 + usize::from(local);
    }
    let windowed = a.layer_windows.get(layer).copied().flatten().is_some();
    usize::from(windowed && local)
}

/// One RoPE table, shared by the layers that use it.
#[derive(Debug, Clone)]
pub(super) struct Rotary {
    /// None: a layer without position embeddings (`apply` and its inverse are the identity).
    tables: Option<Tables>,
    interleaved: bool,
}

#[derive(Debug, Clone)]
struct Tables {
    short: CosSin,
    /// LongRoPE's table, for passes whose last position is past the length given.
    long: Option<(CosSin, usize)>,
}

/// cos and sin of every position's angles, `(max_pos, rotary_dim / 2)`, times `attention`
/// (the scaling's attention factor on the scaled tables, 1 on the others).
#[derive(Debug, Clone)]
struct CosSin {
    cos: Tensor,
    sin: Tensor,
}

/// The `rd / 2` frequencies of base `theta` over a rotated width `rd`, each divided by its
/// factor; a factor of [`NO_ROTATION`] or more gives exactly 0 (that pair does not turn).
fn inv_freq(theta: f64, rd: usize, factors: Option<&[f64]>) -> Vec<f32> {
    let divisor = |i: usize| factors.and_then(|f| f.get(i)).copied().unwrap_or(1.0);
    (0..rd / 2)
        .map(|i| match divisor(i) {
            d if d >= NO_ROTATION => 0.0,
            d => (1.0 / theta.powf(2.0 * i as f64 / rd as f64) / d) as f32,
        })
        .collect()
}

impl CosSin {
    fn new(
        (cfg, rd): (&Config, usize),
        theta: f64,
        factors: Option<&[f64]>,
        attention: f64,
        dtype: DType,
        dev: &Device,
    ) -> Result<Self> {
        let inv_freq = Tensor::from_vec(inv_freq(theta, rd, factors), (1, rd / 2), dev)?;
        let pos = Tensor::arange(0u32, cfg.max_position_embeddings as u32, dev)?
            .to_dtype(DType::F32)?
            .reshape((cfg.max_position_embeddings, 1))?;
        let freqs = pos.broadcast_mul(&inv_freq)?;
        Ok(CosSin {
            cos: (freqs.cos()? * attention)?.to_dtype(dtype)?,
            sin: (freqs.sin()? * attention)?.to_dtype(dtype)?,
        })
    }
}

impl Rotary {
    /// The table for base `theta`; `scaled`: with the model's RoPE scaling, its attention
    /// factor included (the global layers; Gemma 3's and OLMo 3's sliding ones have none).
    fn new(cfg: &Config, theta: f64, scaled: bool, dtype: DType, dev: &Device) -> Result<Self> {
        // The global layers' rotated width, or the sliding layers' (narrower heads: Gemma 4).
        let rd = match scaled {
            true => cfg.rotary_dim(),
            false => cfg.local_rotary_dim(),
        };
        let (short, long, attention) = match scaled {
            true => (
                cfg.rope.factors.as_deref(),
                cfg.rope.long.as_ref(),
                cfg.rope.attention_factor.unwrap_or(1.0),
            ),
            false => (None, None, 1.0),
        };
        let long = long
            .map(|l| {
                Ok::<_, candle_core::Error>((
                    CosSin::new((cfg, rd), theta, Some(&l.factors), attention, dtype, dev)?,
                    l.original,
                ))
            })
            .transpose()?;
        Ok(Rotary {
            tables: Some(Tables {
                short: CosSin::new((cfg, rd), theta, short, attention, dtype, dev)?,
                long,
            }),
            interleaved: cfg.rope_interleaved,
        })
    }

    /// The table of layers without position embeddings.
    fn identity() -> Self {
        Rotary {
            tables: None,
            interleaved: false,
        }
    }

    /// cos and sin for positions `offset..offset + n` of a pass that ends at `offset + n`.
    fn angles(&self, offset: usize, n: usize) -> Result<Option<(Tensor, Tensor)>> {
        let Some(t) = &self.tables else {
            return Ok(None);
        };
        let table = match &t.long {
            Some((long, original)) if offset + n > *original => long,
            _ => &t.short,
        };
        Ok(Some((
            table.cos.narrow(0, offset, n)?,
            table.sin.narrow(0, offset, n)?,
        )))
    }

    /// `x: (heads, seq, head_dim)` rotated for positions `offset..offset + seq`.
    pub(super) fn apply(&self, x: &Tensor, offset: usize) -> Result<Tensor> {
        let Some((cos, sin)) = self.angles(offset, x.dim(1)?)? else {
            return Ok(x.clone());
        };
        if x.track_op() && x.device().is_cpu() && x.dtype() == DType::F32 {
            // One graph node instead of a dozen per call; see `RopeOp`.
            x.contiguous()?.apply_op1(RopeOp {
                cos: cos.contiguous()?,
                sin: sin.contiguous()?,
                interleaved: self.interleaved,
            })
        } else {
            rotate(x, &cos, &sin, self.interleaved)
        }
    }

    /// The transpose of [`Rotary::apply`] at positions `0..seq` (a rotation by −θ, times the
    /// attention factor), for cotangents `(.., seq, head_dim)` with any leading dimensions.
    pub(super) fn apply_inverse(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let (n, hd) = (x.dim(D::Minus2)?, x.dim(D::Minus1)?);
        let Some((cos, sin)) = self.angles(0, n)? else {
            return Ok(x.clone());
        };
        let lead = x.elem_count() / (n * hd).max(1);
        rotate(
            &x.reshape((lead, n, hd))?,
            &cos,
            &sin.neg()?,
            self.interleaved,
        )?
        .reshape(dims)
    }
}

/// Rotates `x: (heads, seq, head_dim)` by the angles whose cos and sin are
/// `(seq, rotary_dim / 2)`; the values past `rotary_dim` pass through.
fn rotate(x: &Tensor, cos: &Tensor, sin: &Tensor, interleaved: bool) -> Result<Tensor> {
    let (h, n, hd) = x.dims3()?;
    let rd = 2 * cos.dim(D::Minus1)?;
    if rd < hd {
        let turned = rotate(
            &x.narrow(D::Minus1, 0, rd)?.contiguous()?,
            cos,
            sin,
            interleaved,
        )?;
        return Tensor::cat(&[turned, x.narrow(D::Minus1, rd, hd - rd)?], D::Minus1);
    }
    if interleaved {
        // Pairs (0,1), (2,3), …: the layout of llama.cpp's permuted Q/K weights.
        let x = x.reshape((h, n, hd / 2, 2))?;
        let x0 = x.narrow(D::Minus1, 0, 1)?.squeeze(D::Minus1)?;
        let x1 = x.narrow(D::Minus1, 1, 1)?.squeeze(D::Minus1)?;
        let r0 = (x0.broadcast_mul(cos)? - x1.broadcast_mul(sin)?)?;
        let r1 = (x0.broadcast_mul(sin)? + x1.broadcast_mul(cos)?)?;
        Tensor::stack(&[r0, r1], D::Minus1)?.reshape((h, n, hd))
    } else {
        let x0 = x.narrow(D::Minus1, 0, hd / 2)?;
        let x1 = x.narrow(D::Minus1, hd / 2, hd / 2)?;
        let r0 = (x0.broadcast_mul(cos)? - x1.broadcast_mul(sin)?)?;
        let r1 = (x1.broadcast_mul(cos)? + x0.broadcast_mul(sin)?)?;
        Tensor::cat(&[r0, r1], D::Minus1)
    }
}

/// RoPE as one op. A rotation's gradient is the inverse rotation: rotate by −θ.
struct RopeOp {
    cos: Tensor, // (seq, head_dim / 2), f32, contiguous
    sin: Tensor,
    interleaved: bool,
}

impl candle_core::CustomOp1 for RopeOp {
    fn name(&self) -> &'static str {
        "rope"
    }

    fn cpu_fwd(
        &self,
        storage: &candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let (h, n, hd) = layout.shape().dims3()?;
        let x = crate::models::f32_slice(storage, layout, self.name())?;
        let cos = self.cos.flatten_all()?.to_vec1::<f32>()?;
        let sin = self.sin.flatten_all()?.to_vec1::<f32>()?;
        // The rotated width: the values past it pass through (partial rotary).
        let half = self.cos.dim(D::Minus1)?;
        let mut out = x.to_vec();
        for head in 0..h {
            for t in 0..n {
                let base = (head * n + t) * hd;
                let (c, s) = (
                    &cos[t * half..(t + 1) * half],
                    &sin[t * half..(t + 1) * half],
                );
                for i in 0..half {
                    let (i0, i1) = if self.interleaved {
                        (base + 2 * i, base + 2 * i + 1)
                    } else {
                        (base + i, base + half + i)
                    };
                    let (x0, x1) = (x[i0], x[i1]);
                    out[i0] = x0 * c[i] - x1 * s[i];
                    out[i1] = x0 * s[i] + x1 * c[i];
                }
            }
        }
        Ok((candle_core::CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(rotate(
            &grad.detach(),
            &self.cos,
            &self.sin.neg()?,
            self.interleaved,
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::inv_freq;
    use crate::models::rope_scaling::from_hf;

    /// Gemma 4's proportional RoPE on a full layer of head width 16, base 1e6, a quarter
    /// turning: transformers 5.25's `_compute_proportional_rope_parameters` gives
    /// `[1, 0.17782794, 0, 0, 0, 0, 0, 0]` (checked on a tiny Gemma 4).
    #[test]
    fn proportional_rope_turns_its_share_of_frequencies_over_the_whole_head() {
        let raw = serde_json::json!({"rope_scaling": {
            "rope_type": "proportional", "partial_rotary_factor": 0.25}});
        let s = from_hf(&raw, 16, 1e6, 128).unwrap();
        let got = inv_freq(1e6, 16, s.factors.as_deref());
        let want = [1.0, 0.177_827_94, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() <= 1e-7, "{got:?}");
        }
        let bad = serde_json::json!({"rope_scaling": {
            "rope_type": "proportional", "partial_rotary_factor": 0.01}});
        let err = from_hf(&bad, 16, 1e6, 128).unwrap_err();
        assert!(err.contains("turns 0 of 8"), "{err}");
    }
}
