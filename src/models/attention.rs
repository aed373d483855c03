//! Causal self-attention `softmax(q kᵀ · scale + mask) v` as one differentiable op.
//!
//! Written from primitives, the backward graph would keep every (heads, seq, seq)
//! intermediate of every layer alive (scores, masked scores, exponentials, probabilities):
//! about 27 GB at 2,048 tokens on SmolLM2-135M. This op keeps only q, k and v and recomputes
//! the probabilities in its backward pass (as FlashAttention does), so attention costs
//! O(seq · head_dim) memory per layer between the passes. The cotangents into q, k and v
//! can be scaled (0: that input gets none), for callers that weigh the three differently.

use super::gated::scale_gradient;
use super::{cpu_tensor, into_cpu_storage, softmax_last_dim};
use crate::kernels::fill_rows;
use crate::kernels::{to_bf16, Products};
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor, D};

/// `(heads, n, m)` causal probabilities from `q: (heads, n, head_dim)` and
/// `k: (heads, m, head_dim)`, m ≥ n: the queries are the last n of m positions (a KV cache
/// holds the first m − n). With a sliding `window`, position p sees only p − window < j ≤ p
/// (transformers' sliding-window mask).
pub(crate) fn probabilities(
    q: &Tensor,
    k: &Tensor,
    scale: f64,
    window: Option<usize>,
    products: Products,
) -> Result<Tensor> {
    let n = q.dim(1)?;
    let m = k.dim(1)?;
    let past = m.saturating_sub(n);
    if fast_path(q) && !k.track_op() {
        // No graph to keep: one pass per row instead of a mask tensor and five elementwise
        // passes over (heads, n, m).
        return masked_softmax(&products.matmul(q, &k.t()?)?, n, scale, window);
    }
    let mask: Vec<f32> = (0..n)
        .flat_map(|i| {
            let p = i + past;
            (0..m).map(move |j| {
                if visible(p, j, window) {
                    0.0
                } else {
                    f32::NEG_INFINITY
                }
            })
        })
        .collect();
    let mask = Tensor::from_vec(mask, (n, m), q.device())?.to_dtype(q.dtype())?;
    let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(&mask)?;
    softmax_last_dim(&scores)
}

/// Whether the graph-free CPU kernels apply.
pub(crate) fn fast_path(q: &Tensor) -> bool {
    !q.track_op() && q.device().is_cpu() && q.dtype() == DType::F32
}

/// `softmax(scale · scores + causal mask)` of graph-free f32 CPU scores `(b, rows, m)` whose
/// rows cycle through `n` queries, the last n of m positions (so grouped-query scores
/// `(kv_heads, group · n, m)` work too).
pub(crate) fn masked_softmax(
    scores: &Tensor,
    n: usize,
    scale: f64,
    window: Option<usize>,
) -> Result<Tensor> {
    let m = scores.dim(candle_core::D::Minus1)?;
    scores.contiguous()?.apply_op1_no_bwd(&MaskedSoftmax {
        scale: scale as f32,
        n,
        past: m.saturating_sub(n),
        window,
    })
}

/// `scale · P ⊙ (dP − Σ_j dP ⊙ P)` row by row: softmax's backward pass for `p: (heads, n, m)`
/// and cotangents `dp: (heads, b·n, m)` (b seeds per head; b = 1 is the plain case). One pass
/// over the rows of f32 CPU tensors split over the cores; primitive ops elsewhere.
fn softmax_backward(p: &Tensor, dp: &Tensor, scale: f64) -> Result<Tensor> {
    let (h, n, m) = p.dims3()?;
    if p.device().is_cpu() && p.dtype() == DType::F32 {
        return p
            .contiguous()?
            .apply_op2_no_bwd(&dp.contiguous()?, &SoftmaxBackward(scale as f32, n));
    }
    let b = dp.dim(1)? / n.max(1);
    let dp = dp.reshape((h, b, n, m))?;
    let p = p.unsqueeze(1)?;
    let dot = dp.broadcast_mul(&p)?.sum_keepdim(D::Minus1)?;
    ((dp.broadcast_sub(&dot)?.broadcast_mul(&p))? * scale)?.reshape((h, b * n, m))
}

/// The scale and the number of query rows n of the probabilities.
struct SoftmaxBackward(f32, usize);

impl candle_core::CustomOp2 for SoftmaxBackward {
    fn name(&self) -> &'static str {
        "softmax-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let m = l1.shape().dims().last().copied().unwrap_or(1).max(1);
        let n = self.1.max(1);
        let p = super::f32_slice(s1, l1, self.name())?;
        let dp = super::f32_slice(s2, l2, self.name())?;
        let heads = p.len() / (n * m);
        let per_head = dp.len() / heads.max(1) / m; // b·n rows of dP per head
                                                    // SAFETY: every element of each row is written.
        let out = unsafe {
            fill_rows(dp.len(), m, |r, d| {
                let pr = (r / per_head.max(1)) * n + r % n;
                let (p, dp) = (&p[pr * m..(pr + 1) * m], &dp[r * m..(r + 1) * m]);
                let dot: f32 = p.iter().zip(dp).map(|(a, b)| a * b).sum();
                for ((d, &p), &g) in d.iter_mut().zip(p).zip(dp) {
                    d.write(self.0 * p * (g - dot));
                }
            })
        };
        Ok((CpuStorage::F32(out), l2.shape().clone()))
    }
}

/// Whether position `p` attends to position `j`.
fn visible(p: usize, j: usize, window: Option<usize>) -> bool {
    j <= p && window.is_none_or(|w| j + w > p)
}

/// `softmax(scale · scores + causal mask)` over the last dimension of `(heads, n, m)` f32
/// scores, rows split over the cores. Forward only (used on graph-free tensors).
struct MaskedSoftmax {
    scale: f32,
    n: usize,
    past: usize,
    window: Option<usize>,
}

impl candle_core::CustomOp1 for MaskedSoftmax {
    fn name(&self) -> &'static str {
        "masked-softmax"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (_, _, m) = layout.shape().dims3()?;
        let n = self.n;
        let x = super::f32_slice(storage, layout, self.name())?;
        // SAFETY: every element of each row is written: the positions a query does not see
        // with 0, the others with their probability.
        let out = unsafe {
            fill_rows(x.len(), m, |r, dst| {
                let src = &x[r * m..(r + 1) * m];
                let p = r % n + self.past;
                let lo = self.window.map_or(0, |w| (p + 1).saturating_sub(w));
                let hi = p.min(m - 1);
                let (left, rest) = dst.split_at_mut(lo);
                let (mid, right) = rest.split_at_mut(hi + 1 - lo);
                for d in left.iter_mut().chain(right.iter_mut()) {
                    d.write(0.0);
                }
                // The visible part, initialized before it is handed on as f32.
                mid.iter_mut().for_each(|d| {
                    d.write(0.0);
                });
                let dst = &mut *(mid as *mut [std::mem::MaybeUninit<f32>] as *mut [f32]);
                let src = &src[lo..=hi];
                let max = src.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) * self.scale;
                let sum = crate::kernels::math::exp_affine_sum(src, self.scale, max, dst);
                let inv = 1.0 / sum;
                dst.iter_mut().for_each(|d| *d *= inv);
            })
        };
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

struct CausalAttention {
    scale: f64,
    window: Option<usize>,
    /// Scales on the cotangents into q, k, v (1 = ordinary).
    scales: [f64; 3],
}

impl CustomOp3 for CausalAttention {
    fn name(&self) -> &'static str {
        "causal-attention"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (q, k, v) = (
            cpu_tensor(s1, l1)?,
            cpu_tensor(s2, l2)?,
            cpu_tensor(s3, l3)?,
        );
        into_cpu_storage(
            &probabilities(&q, &k, self.scale, self.window, Products::F32)?.matmul(&v)?,
        )
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _out: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (q, k, v, g) = (q.detach(), k.detach(), v.detach(), grad.detach());
        let one = |t: Option<Tensor>| t.map(|t| t.squeeze(0)).transpose();
        let [dq, dk, dv] = attention_vjp(
            &q,
            &k,
            &v,
            &g.unsqueeze(0)?,
            self.scale,
            self.window,
            self.scales,
            Products::F32,
        )?;
        Ok((one(dq)?, one(dk)?, one(dv)?))
    }
}

/// Elements of (heads, b·n, m) score-shaped buffers one head group of [`attention_vjp`] may
/// hold at once (three of them: P, dP, dS); more heads are taken one group at a time.
const VJP_SCORE_BUDGET: usize = 1 << 26;

/// The vector-Jacobian product of causal attention: cotangents `d_out: (b, heads, n,
/// head_dim)` (b seeds) of `softmax(q kᵀ · scale + mask) v`, with `q: (heads, n, head_dim)`,
/// `k, v: (heads, m, head_dim)` (already repeated for grouped-query attention), carried to
/// q, k and v, each `(b, heads, ·, head_dim)` and multiplied by its scale (a scale of 0
/// gives `None`). The probabilities are recomputed once and shared by the b
/// seeds.
#[allow(clippy::too_many_arguments)]
pub fn attention_vjp(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    d_out: &Tensor,
    scale: f64,
    window: Option<usize>,
    scales: [f64; 3],
    products: Products,
) -> Result<[Option<Tensor>; 3]> {
    let matmul = |a: &Tensor, b: &Tensor| products.matmul(a, b);
    let (heads, n, hd) = q.dims3()?;
    let m = k.dim(1)?;
    let b = d_out.dim(0)?;
    let group = (VJP_SCORE_BUDGET / (3 * b * n * m).max(1)).clamp(1, heads);
    let mut parts: [Vec<Tensor>; 3] = Default::default();
    for h0 in (0..heads).step_by(group) {
        let hc = group.min(heads - h0);
        let (q, k, v) = (
            q.narrow(0, h0, hc)?,
            k.narrow(0, h0, hc)?,
            v.narrow(0, h0, hc)?,
        );
        // (hc, b, n, head_dim): each head's b seeds side by side.
        let g = d_out.narrow(1, h0, hc)?.transpose(0, 1)?.contiguous()?;
        let p = probabilities(&q, &k, scale, window, products)?; // (hc, n, m)
                                                                 // Each operand in bf16 once, for the products that read it twice.
        let (q, k, v, g, p16) = match products {
            Products::Bf16 => (
                to_bf16(&q)?,
                to_bf16(&k)?,
                to_bf16(&v)?,
                to_bf16(&g)?,
                to_bf16(&p)?,
            ),
            _ => (q, k, v, g, p.clone()),
        };
        let [fq, fk, fv] = scales;
        if fv != 0.0 {
            // dV = Pᵀ dO, the b seeds as columns of one product per head.
            let cols = g.transpose(1, 2)?.reshape((hc, n, b * hd))?;
            let dv = matmul(&p16.t()?, &cols)?.reshape((hc, m, b, hd))?;
            parts[2].push((dv.transpose(1, 2)?.transpose(0, 1)? * fv)?);
        }
        if fq == 0.0 && fk == 0.0 {
            continue;
        }
        let g = g.reshape((hc, b * n, hd))?;
        let dp = matmul(&g, &v.t()?)?; // (hc, b·n, m)
        let ds = softmax_backward(&p, &dp, scale)?;
        let ds = match products {
            Products::Bf16 => to_bf16(&ds)?,
            _ => ds,
        };
        if fq != 0.0 {
            let dq = matmul(&ds, &k)?.reshape((hc, b, n, hd))?;
            parts[0].push((dq.transpose(0, 1)? * fq)?);
        }
        if fk != 0.0 {
            // dK = dSᵀ Q per seed.
            let qs = q
                .unsqueeze(1)?
                .broadcast_as((hc, b, n, hd))?
                .reshape((hc * b, n, hd))?;
            let dk = matmul(&ds.reshape((hc * b, n, m))?.t()?, &qs)?;
            parts[1].push((dk.reshape((hc, b, m, hd))?.transpose(0, 1)? * fk)?);
        }
    }
    let join = |p: &[Tensor]| -> Result<Option<Tensor>> {
        if p.is_empty() {
            Ok(None)
        } else {
            Ok(Some(Tensor::cat(p, 1)?.contiguous()?))
        }
    };
    Ok([join(&parts[0])?, join(&parts[1])?, join(&parts[2])?])
}

/// Causal attention of `q, k, v: (heads, seq, head_dim)` (k and v already repeated for
/// grouped-query attention) → `(heads, seq, head_dim)`, optionally within a sliding
/// `window`. The gradients flowing back into q, k and v are multiplied by `scales`
/// (`[1, 1, 1]`: ordinary gradients).
pub fn causal_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f64,
    scales: [f64; 3],
    window: Option<usize>,
) -> Result<Tensor> {
    // An input whose gradient scale is 0 leaves the graph here: candle expects a gradient
    // for every tracked input of an op.
    let hold = |t: &Tensor, f: f64| if f == 0.0 { t.detach() } else { t.clone() };
    let (q, k, v) = (
        &hold(q, scales[0]),
        &hold(k, scales[1]),
        &hold(v, scales[2]),
    );
    let tracked = q.track_op() || k.track_op() || v.track_op();
    if tracked && q.device().is_cpu() && !super::primitive_forced() {
        q.contiguous()?.apply_op3(
            &k.contiguous()?,
            &v.contiguous()?,
            CausalAttention {
                scale,
                scales,
                window,
            },
        )
    } else {
        // No graph to keep (or a GPU): the primitive form.
        let [fq, fk, fv] = scales;
        let (q, k, v) = (
            scale_gradient(q, fq)?,
            scale_gradient(k, fk)?,
            scale_gradient(v, fv)?,
        );
        crate::kernels::matmul(
            &probabilities(&q, &k, scale, window, Products::F32)?,
            &v.contiguous()?,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// The fused op's gradients equal those of the primitive graph.
    #[test]
    fn gradients_match_the_primitive_form() -> Result<()> {
        let dev = Device::Cpu;
        let mk = |seed: f32| -> Result<Var> {
            let t = Tensor::arange(0f32, 2. * 5. * 4., &dev)?
                .reshape((2, 5, 4))?
                .affine(0.37, seed as f64)?
                .sin()?;
            Var::from_tensor(&t)
        };
        let (q, k, v) = (mk(0.1)?, mk(1.3)?, mk(2.7)?);
        let coef = Tensor::arange(0f32, 40., &dev)?.reshape((2, 5, 4))?.cos()?;
        let f = [0.25, 0.25, 0.5];
        for window in [None, Some(2)] {
            let fused =
                causal_attention(q.as_tensor(), k.as_tensor(), v.as_tensor(), 0.5, f, window)?;
            let (qs, ks, vs) = (
                scale_gradient(q.as_tensor(), f[0])?,
                scale_gradient(k.as_tensor(), f[1])?,
                scale_gradient(v.as_tensor(), f[2])?,
            );
            let plain = probabilities(&qs, &ks, 0.5, window, Products::F32)?.matmul(&vs)?;
            let d = (&fused - &plain)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(d < 1e-6, "forward differs by {d}");
            let g1 = (fused * &coef)?.sum_all()?.backward()?;
            let g2 = (plain * &coef)?.sum_all()?.backward()?;
            for x in [&q, &k, &v] {
                let (a, b) = (g1.get(x).unwrap(), g2.get(x).unwrap());
                let d = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
                assert!(d < 1e-5, "gradient differs by {d}");
                assert!(a.abs()?.sum_all()?.to_scalar::<f32>()? > 0.0);
            }
        }
        Ok(())
    }

    /// The one-pass softmax (graph-free inputs) equals the primitive one (tracked inputs).
    #[test]
    fn fast_softmax_matches_the_primitive_one() -> Result<()> {
        let dev = Device::Cpu;
        let t = |seed: f64, n: usize| -> Result<Tensor> {
            Tensor::arange(0f32, (3 * n * 4) as f32, &dev)?
                .reshape((3, n, 4))?
                .affine(0.61, seed)?
                .sin()
        };
        for (n, m, window) in [(5, 5, None), (2, 7, None), (6, 6, Some(3)), (1, 9, Some(4))] {
            let (q, k) = (t(0.3, n)?, t(1.7, m)?);
            let fast = probabilities(&q, &k, 0.7, window, Products::F32)?;
            let qv = Var::from_tensor(&q)?;
            let slow = probabilities(qv.as_tensor(), &k, 0.7, window, Products::F32)?;
            let d = (&fast - &slow)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(d < 1e-6, "n {n} m {m} {window:?}: differs by {d}");
        }
        Ok(())
    }

    #[test]
    fn sliding_window_masks_old_positions() -> Result<()> {
        let dev = Device::Cpu;
        let q = Tensor::zeros((1, 4, 2), candle_core::DType::F32, &dev)?;
        let p = probabilities(&q, &q, 1.0, Some(2), Products::F32)?
            .squeeze(0)?
            .to_vec2::<f32>()?;
        // Uniform over the last two positions (or fewer at the start).
        assert_eq!(p[0], [1.0, 0.0, 0.0, 0.0]);
        assert_eq!(p[3], [0.0, 0.0, 0.5, 0.5]);
        Ok(())
    }
}
