//! Products on GGUF quantized weights as stored: `x · Wᵀ` reading W's blocks directly, with
//! the activations quantized to 8 bits per block first, as llama.cpp computes them.
//!
//! candle's kernels (`QTensor` as a custom op) run the block types they have SIMD code for:
//! Q4_0, Q8_0 and the k-quants (Q2_K … Q6_K; Q4_K, Q6_K and Q8_0 repacked for AVX512-VNNI).
//! For Q4_1, Q5_0 and Q5_1 candle has only scalar dot products (several times slower than a
//! dense f32 product), yet Q4_K_M files hold Q5_0 for every matrix whose width is not a
//! multiple of 256 and SmolLM2's GGUF is Q4_1; for those the dot products here (`blocks`,
//! AVX2 / AVX512-VNNI in `x86.rs`) run over the rows of every matrix that reads the same
//! input (a layer's q, k and v; its gate and up) in one parallel region, after one
//! quantization of the input: a decoding step of a small model is as much hand-offs between
//! the cores as it is products.

pub(crate) mod blocks;
pub mod dequant;
pub(crate) mod kblocks;
#[cfg(target_arch = "x86_64")]
mod unpack;
#[cfg(target_arch = "x86_64")]
mod x86;

use blocks::{Q4_1, Q5_0, Q5_1, Q8_0};
use candle_core::quantized::{GgmlDType, GgmlType, QTensor};
use candle_core::{DType, Device, Result, Tensor};

/// `x · Wᵀ` for `x: (m, k)` in f32 and the quantized `W: (n, k)`: `(m, n)` in f32.
pub fn matmul_t(w: &QTensor, x: &Tensor) -> Result<Tensor> {
    let mut out = matmul_t_many(&[w], x)?;
    out.pop()
        .ok_or_else(|| candle_core::Error::Msg("no product".into()))
}

/// `x · Wᵢᵀ` for each of `ws` (each `(nᵢ, k)`, quantized), `x: (m, k)`; one quantization of
/// `x` and one parallel region where the block types allow.
pub fn matmul_t_many(ws: &[&QTensor], x: &Tensor) -> Result<Vec<Tensor>> {
    let (m, k) = x.dims2()?;
    for w in ws {
        let (n, wk) = w.shape().dims2()?;
        if wk != k {
            candle_core::bail!("a ({m}, {k}) input for a ({n}, {wk}) quantized matrix");
        }
    }
    let x = x.to_dtype(DType::F32)?.contiguous()?;
    if !x.device().is_cpu() {
        return ws.iter().map(|w| x.apply_op1_no_bwd(*w)).collect();
    }
    // One pass over the cores for matrices of one block type; else one pass each.
    if let Some(first) = ws.first() {
        if ws.iter().all(|w| w.dtype() == first.dtype()) {
            return by_type(first.dtype(), ws, &x, m, k);
        }
    }
    ws.iter()
        .map(|w| Ok(by_type(w.dtype(), &[*w], &x, m, k)?.remove(0)))
        .collect()
}

/// The products of matrices of block type `dtype`, each read as stored: candle's dot products
/// for Q4_0 and the k-quants (without its repacked copies, which hold each matrix two or
/// three more times: a 4B model's 2.5 GB took 10 GB), ours for the rest.
fn by_type(
    dtype: GgmlDType,
    ws: &[&QTensor],
    x: &Tensor,
    m: usize,
    k: usize,
) -> Result<Vec<Tensor>> {
    use candle_core::quantized::k_quants as kq;
    match dtype {
        GgmlDType::Q4_0 => ours::<kq::BlockQ4_0>(ws, x, m, k),
        GgmlDType::Q4_1 => ours::<Q4_1>(ws, x, m, k),
        GgmlDType::Q5_0 => ours::<Q5_0>(ws, x, m, k),
        GgmlDType::Q5_1 => ours::<Q5_1>(ws, x, m, k),
        GgmlDType::Q8_0 => ours::<Q8_0>(ws, x, m, k),
        GgmlDType::Q2K => ours::<kq::BlockQ2K>(ws, x, m, k),
        GgmlDType::Q3K => ours::<kq::BlockQ3K>(ws, x, m, k),
        // A decoding step reads Q4_K through candle's VNNI kernel on its repacked copy (one
        // more copy of these matrices, a third larger than their blocks): our kernel on the
        // blocks as stored reaches 21 GB/s from cache against its 30-35, and a step of the
        // 4B shape took 226 ms against 164.
        GgmlDType::Q4K if m == 1 && repacked_q4k() => {
            ws.iter().map(|w| x.apply_op1_no_bwd(*w)).collect()
        }
        GgmlDType::Q4K => ours::<kblocks::Q4K>(ws, x, m, k),
        GgmlDType::Q5K => ours::<kq::BlockQ5K>(ws, x, m, k),
        GgmlDType::Q6K => ours::<kblocks::Q6K>(ws, x, m, k),
        _ => ws.iter().map(|w| x.apply_op1_no_bwd(*w)).collect(),
    }
}

/// Whether candle's repacked Q4_K kernel runs here (AVX512-VNNI: its AVX2 form is slower than
/// ours; `TOKENLENS_REPACK=0` turns it off, trading speed for the copy's memory).
fn repacked_q4k() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        let vnni = is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512f");
        #[cfg(not(target_arch = "x86_64"))]
        let vnni = false;
        vnni && std::env::var("TOKENLENS_REPACK").map_or(true, |v| v != "0")
    })
}

/// Whether [`matmul_t`] reads this block type directly (else the weights are dequantized).
pub fn readable(dtype: GgmlDType) -> bool {
    !matches!(dtype, GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16)
}

/// Rows of the input taken together against each group of four weight rows (the quantized
/// input tile stays in L1 while the weights stream once per tile), as ggml's blocking.
const ROW_TILE: usize = 16;

/// A quad of weight rows: (matrix, first row).
type Quad = (usize, usize);

/// The products with our block type `T`: the input quantized once, then every matrix's quads
/// of rows × tiles of input rows split over the pool.
fn ours<T: GgmlType>(ws: &[&QTensor], x: &Tensor, m: usize, k: usize) -> Result<Vec<Tensor>> {
    if !k.is_multiple_of(T::BLCK_SIZE) {
        candle_core::bail!(
            "a row of {k} is not a whole number of {:?} blocks",
            T::DTYPE
        );
    }
    let kb = k / T::BLCK_SIZE;
    let data = ws.iter().map(|w| w.data()).collect::<Result<Vec<_>>>()?;
    let mut mats = Vec::with_capacity(ws.len());
    for (w, bytes) in ws.iter().zip(&data) {
        let (n, _) = w.shape().dims2()?;
        mats.push((blocks::cast::<T>(bytes, n * kb)?, n));
    }
    let lhs = {
        let (s, l) = x.storage_and_layout();
        let candle_core::Storage::Cpu(c) = &*s else {
            candle_core::bail!("quantized product: not a CPU tensor")
        };
        let start = l.start_offset();
        let xs = &c.as_slice::<f32>()?[start..start + m * k];
        let mut q: Vec<T::VecDotType> = (0..m * kb).map(|_| T::VecDotType::zeros()).collect();
        for (row, dst) in xs.chunks_exact(k).zip(q.chunks_exact_mut(kb)) {
            T::VecDotType::from_float(row, dst);
        }
        q
    };
    let quads: Vec<Quad> = mats
        .iter()
        .enumerate()
        .flat_map(|(i, &(_, n))| (0..n).step_by(4).map(move |r| (i, r)))
        .collect();
    let tiles = m.div_ceil(ROW_TILE);
    let mut outs: Vec<Vec<f32>> = mats.iter().map(|&(_, n)| vec![0f32; m * n]).collect();
    let ptrs: Vec<Out> = outs.iter_mut().map(|o| Out(o.as_mut_ptr())).collect();
    #[cfg(target_arch = "x86_64")]
    let four = x86::four_rows();
    #[cfg(not(target_arch = "x86_64"))]
    let four = true;
    super::parallel_for(tiles * quads.len(), |item| {
        let (tile, (i, r0)) = (item / quads.len(), quads[item % quads.len()]);
        let (w, n) = mats[i];
        let row = |r: usize| &w[r * kb..(r + 1) * kb];
        for t in tile * ROW_TILE..m.min((tile + 1) * ROW_TILE) {
            let y = &lhs[t * kb..(t + 1) * kb];
            let dst = ptrs[i].0;
            // SAFETY: (input row t, weight row r) of matrix i is written by this item alone;
            // t < m and r < n, inside the m × n output.
            let put = |r: usize, v: f32| unsafe { *dst.add(t * n + r) = v };
            if r0 + 4 <= n && four {
                let (a, b, c, d) =
                    T::vec_dot_4(k, row(r0), row(r0 + 1), row(r0 + 2), row(r0 + 3), y);
                for (j, v) in [a, b, c, d].into_iter().enumerate() {
                    put(r0 + j, v);
                }
            } else {
                for r in r0..n.min(r0 + 4) {
                    put(r, T::vec_dot(k, row(r), y));
                }
            }
        }
    });
    drop(ptrs);
    outs.into_iter()
        .zip(&mats)
        .map(|(o, &(_, n))| Tensor::from_vec(o, (m, n), &Device::Cpu))
        .collect()
}

/// An output buffer written by the pool's workers at disjoint elements.
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: every element is written by exactly one work item (see `ours`).
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(rows: usize, cols: usize, seed: f32) -> Result<Tensor> {
        let v: Vec<f32> = (0..rows * cols)
            .map(|i| (i as f32 * 0.731 + seed).sin() * 2.0 + (i % 7) as f32 * 0.1 - 0.3)
            .collect();
        Tensor::from_vec(v, (rows, cols), &Device::Cpu)
    }

    /// Each block type's product equals candle's reference dot products on the same blocks
    /// (both quantize the activations the same way), and is within the quantization's error
    /// of the dense f32 product of the dequantized weights.
    #[test]
    fn our_products_equal_candles_reference() -> Result<()> {
        for dtype in [
            GgmlDType::Q4_1,
            GgmlDType::Q5_0,
            GgmlDType::Q5_1,
            GgmlDType::Q8_0,
        ] {
            for (m, n, k) in [(1, 40, 576), (3, 37, 64), (17, 64, 96), (1, 5, 32)] {
                let w = QTensor::quantize(&data(n, k, 0.3)?, dtype)?;
                let x = data(m, k, 1.7)?;
                let got = matmul_t(&w, &x)?;
                // candle's own product: scalar dot products for Q4_1/Q5_x (same quantized
                // activations), its SIMD kernels for Q8_0.
                let want = x.apply_op1_no_bwd(&w)?;
                let d = (&got - &want)?.abs()?.max_all()?.to_scalar::<f32>()?;
                let scale = want.abs()?.max_all()?.to_scalar::<f32>()?;
                // candle rounds Q8_1's `s = d·Σq` through f16 arithmetic, ggml (and we) from
                // f32: blocks with a minimum differ by that rounding, |m|·|s|·2⁻¹¹ a block.
                let tol = match dtype {
                    GgmlDType::Q4_1 | GgmlDType::Q5_1 => 1e-3,
                    _ => 1e-5,
                };
                assert!(
                    d <= tol * scale.max(1.0),
                    "{dtype:?} {m}x{k}x{n}: {d} from candle's"
                );
                let dense = x.matmul(&w.dequantize(&Device::Cpu)?.t()?)?;
                let e = (&got - &dense)?.abs()?.max_all()?.to_scalar::<f32>()?;
                assert!(
                    e <= 0.02 * scale,
                    "{dtype:?} {m}x{k}x{n}: {e} from the dense product"
                );
                assert!(scale > 1.0, "a product that is not zero");
            }
        }
        Ok(())
    }

    /// Several matrices on one input give each matrix's own product.
    #[test]
    fn many_products_equal_one_at_a_time() -> Result<()> {
        for dtype in [GgmlDType::Q4_1, GgmlDType::Q8_0, GgmlDType::Q4K] {
            let k = 256;
            let ws = [
                QTensor::quantize(&data(32, k, 0.1)?, dtype)?,
                QTensor::quantize(&data(16, k, 0.2)?, dtype)?,
                QTensor::quantize(&data(48, k, 0.3)?, dtype)?,
            ];
            for m in [1, 5] {
                let x = data(m, k, 0.9)?;
                let many = matmul_t_many(&ws.iter().collect::<Vec<_>>(), &x)?;
                for (w, got) in ws.iter().zip(&many) {
                    let want = matmul_t(w, &x)?;
                    let d = (got - &want)?.abs()?.max_all()?.to_scalar::<f32>()?;
                    assert!(d <= 1e-4, "{dtype:?} m={m}: {d}");
                }
            }
        }
        Ok(())
    }

    #[test]
    fn a_row_that_is_not_whole_blocks_is_an_error() -> Result<()> {
        let w = QTensor::quantize(&data(4, 64, 0.1)?, GgmlDType::Q4_1)?;
        assert!(matmul_t(&w, &data(1, 32, 0.2)?).is_err());
        Ok(())
    }
}
