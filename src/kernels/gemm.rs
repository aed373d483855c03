//! Strided, batched matrix products through a BLAS library's row-major `gemm`, cut into
//! tiles over the engine's one worker pool: f32 operands through OpenBLAS' `cblas_sgemm`
//! ([`super::openblas`]), bf16 operands through oneMKL's `cblas_gemm_bf16bf16f32`
//! ([`super::mkl`]). Both accumulate and return f32. Operands whose last two dimensions are
//! row- or column-major go in as they lie (a transposed view needs no copy).

use candle_core::{CpuStorage, DType, Device, Layout, Result, Storage, Tensor};

pub(crate) const ROW_MAJOR: i32 = 101;
pub(crate) const NO_TRANS: i32 = 111;
pub(crate) const TRANS: i32 = 112;

/// A library's row-major product `C = A·B` (α = 1, β = 0) on operands of type `T`, f32 out.
pub(crate) trait Kernel: Sync {
    /// The operands' element type.
    type T: Copy + Send + Sync;
    /// # Safety
    /// `a`, `b` and `c` must hold the elements the leading dimensions and sizes reach.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm(
        &self,
        trans_a: i32,
        trans_b: i32,
        m: i32,
        n: i32,
        k: i32,
        a: *const Self::T,
        lda: i32,
        b: *const Self::T,
        ldb: i32,
        c: *mut f32,
        ldc: i32,
    );
    /// Whether the library runs one thread per call, so that the product is cut into tiles
    /// over the engine's pool (else one call, threaded by the library).
    fn tiled(&self) -> bool;
    /// The operands of `T` in a CPU storage, if it holds them.
    fn slice(storage: &CpuStorage) -> Option<&[Self::T]>;
}

/// How one matrix operand lies in memory: transposed or not, and its leading dimension.
fn operand(layout: &Layout, rows: usize, cols: usize) -> Option<(i32, usize)> {
    let s = layout.stride();
    let (rs, cs) = (s[s.len() - 2], s[s.len() - 1]);
    if cs == 1 && (rows == 1 || rs >= cols) {
        Some((NO_TRANS, rs.max(cols).max(1)))
    } else if rs == 1 && (cols == 1 || cs >= rows) {
        Some((TRANS, cs.max(rows).max(1)))
    } else {
        None
    }
}

/// Offsets of each matrix of the batch, and the furthest element any of them reads.
fn batch_offsets(layout: &Layout, lead: &[usize], rows: usize, cols: usize) -> (Vec<usize>, usize) {
    let s = layout.stride();
    let mut offsets = vec![layout.start_offset()];
    for (d, &len) in lead.iter().enumerate() {
        offsets = offsets
            .iter()
            .flat_map(|&o| (0..len).map(move |i| o + i * s[d]))
            .collect();
    }
    let r = s.len();
    let last = (rows.saturating_sub(1)) * s[r - 2] + (cols.saturating_sub(1)) * s[r - 1];
    let end = offsets.iter().max().copied().unwrap_or(0) + last;
    (offsets, end)
}

/// The output pointer, shared by the tiles that write disjoint parts of it.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: the tiles given to the workers never overlap (see `Tiles`).
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    // A method, so that closures capture the whole (Sync) wrapper, not its raw field.
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// How a batch of `m × n` products is cut into work for the pool: whole matrices when the
/// batch alone gives every worker some (attention's heads), else each matrix into one block
/// per worker, cut along the longer side. Each block packs its share of the side that is cut
/// and the whole of the other side: cutting the rows (tokens) would repack the whole weight
/// matrix once per block, which at a few dozen tokens costs more than the product.
struct Tiles {
    batch: usize,
    rows: Vec<(usize, usize)>,
    cols: Vec<(usize, usize)>,
}

impl Tiles {
    fn new(tiled: bool, batch: usize, m: usize, n: usize) -> Tiles {
        let threads = super::threads();
        let whole = |len: usize| vec![(0, len)];
        let split = |len: usize, parts: usize| -> Vec<(usize, usize)> {
            let per = len.div_ceil(parts.max(1)).max(1);
            (0..len)
                .step_by(per)
                .map(|s| (s, per.min(len - s)))
                .collect()
        };
        // Below this a block loses more to packing and hand-off than a second core gains.
        const MIN_SIDE: usize = 64;
        let parts = threads.div_ceil(batch.max(1));
        let (rows, cols) = if !tiled || parts <= 1 || m.max(n) < threads * MIN_SIDE {
            (whole(m), whole(n))
        } else if n >= m {
            (whole(m), split(n, parts))
        } else {
            (split(m, parts), whole(n))
        };
        Tiles { batch, rows, cols }
    }

    fn count(&self) -> usize {
        self.batch * self.rows.len() * self.cols.len()
    }

    /// Tile `t`: its matrix, its (first row, rows) and its (first column, columns).
    fn get(&self, t: usize) -> (usize, (usize, usize), (usize, usize)) {
        let per_matrix = self.rows.len() * self.cols.len();
        let (i, r) = (t / per_matrix, t % per_matrix);
        (
            i,
            self.rows[r / self.cols.len()],
            self.cols[r % self.cols.len()],
        )
    }
}

/// `a · b` for `a: (.., m, k)` and `b: (.., k, n)` with the same leading dimensions, f32
/// out; `None` where the operands do not suit the library (not on the CPU, another dtype, a
/// layout that is neither row- nor column-major, sizes past i32), and the caller takes
/// candle's product.
pub(crate) fn product<K: Kernel>(kernel: &K, a: &Tensor, b: &Tensor) -> Result<Option<Tensor>> {
    if !a.device().is_cpu() || !b.device().is_cpu() || a.track_op() || b.track_op() {
        return Ok(None);
    }
    let (ad, bd) = (a.dims(), b.dims());
    let r = ad.len();
    if r < 2 || bd.len() != r || ad[..r - 2] != bd[..r - 2] || ad[r - 1] != bd[r - 2] {
        return Ok(None); // candle's matmul gives the error
    }
    let (m, k, n) = (ad[r - 2], ad[r - 1], bd[r - 1]);
    let fits = |x: usize| x > 0 && x < i32::MAX as usize;
    if !(fits(m) && fits(k) && fits(n)) {
        return Ok(None);
    }
    let lead = &ad[..r - 2];
    let (sa, la) = a.storage_and_layout();
    let (sb, lb) = b.storage_and_layout();
    let (Storage::Cpu(ca), Storage::Cpu(cb)) = (&*sa, &*sb) else {
        return Ok(None);
    };
    let (Some(av), Some(bv)) = (K::slice(ca), K::slice(cb)) else {
        return Ok(None);
    };
    let (Some((ta, lda)), Some((tb, ldb))) = (operand(la, m, k), operand(lb, k, n)) else {
        return Ok(None);
    };
    let (oa, end_a) = batch_offsets(la, lead, m, k);
    let (ob, end_b) = batch_offsets(lb, lead, k, n);
    if end_a >= av.len() || end_b >= bv.len() || !fits(lda) || !fits(ldb) {
        return Ok(None);
    }
    // Not zeroed: with β = 0 the library writes every element of every tile, and the tiles
    // cover the output.
    let total = oa.len() * m * n;
    let mut out: Vec<f32> = Vec::with_capacity(total);
    let tiles = Tiles::new(kernel.tiled(), oa.len(), m, n);
    let c = SendPtr(out.as_mut_ptr());
    let run = |t: usize| {
        let (i, (r0, rows), (c0, cols)) = tiles.get(t);
        // The tile's first element in each operand: a row offset of `a` and a column
        // offset of `b` move by one element or by a leading dimension, as each is laid out.
        let a_off = oa[i] + if ta == NO_TRANS { r0 * lda } else { r0 };
        let b_off = ob[i] + if tb == NO_TRANS { c0 } else { c0 * ldb };
        // SAFETY: every element the product reads lies within `av` and `bv` (checked against
        // the furthest offset above; a tile reads a sub-block of its matrix); the tiles of `out`
        // are disjoint rows × columns blocks of matrix `i` (ldc = n), each written by one call.
        // The sizes fit in i32.
        unsafe {
            kernel.gemm(
                ta,
                tb,
                rows as i32,
                cols as i32,
                k as i32,
                av.as_ptr().add(a_off),
                lda as i32,
                bv.as_ptr().add(b_off),
                ldb as i32,
                c.get().add(i * m * n + r0 * n + c0),
                n as i32,
            );
        }
    };
    if kernel.tiled() {
        super::parallel_for(tiles.count(), run);
    } else {
        (0..tiles.count()).for_each(run);
    }
    // SAFETY: every element was written by the calls above (see the note at `out`).
    unsafe { out.set_len(total) };
    let mut shape = lead.to_vec();
    shape.extend([m, n]);
    Ok(Some(Tensor::from_vec(out, shape, &Device::Cpu)?))
}

/// Whether both operands are graph-free CPU tensors of `dtype`.
pub(crate) fn eligible(a: &Tensor, b: &Tensor, dtype: DType) -> bool {
    !a.track_op()
        && !b.track_op()
        && a.device().is_cpu()
        && b.device().is_cpu()
        && a.dtype() == dtype
        && b.dtype() == dtype
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A deterministic test tensor.
    pub(crate) fn t(shape: &[usize], seed: f64) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        Tensor::arange(0f32, n as f32, &Device::Cpu)?
            .affine(0.37, seed)?
            .sin()?
            .reshape(shape)
    }

    /// Every layout the passes use (plain, transposed either side, batched, a narrowed
    /// view), as pairs of operands.
    pub(crate) fn layouts() -> Result<Vec<(Tensor, Tensor)>> {
        let a = t(&[3, 5, 7], 0.1)?;
        let b = t(&[3, 7, 4], 1.3)?;
        let bt = t(&[3, 4, 7], 2.1)?.transpose(1, 2)?;
        let at = t(&[3, 7, 5], 0.7)?.transpose(1, 2)?;
        let wide = t(&[3, 5, 9], 0.2)?.narrow(2, 1, 7)?;
        Ok(vec![
            (a.clone(), b.clone()),
            (a.clone(), bt.clone()),
            (at.clone(), b.clone()),
            (at, bt),
            (wide, b),
            (a.get(0)?, t(&[7, 2], 0.5)?),
            (t(&[1, 7], 0.9)?, t(&[7, 1], 0.4)?),
            // Large enough to be cut into row blocks, and into column blocks (one row).
            (t(&[67, 33], 0.3)?, t(&[33, 21], 0.8)?),
            (t(&[33, 67], 0.3)?.t()?, t(&[21, 33], 0.8)?.t()?),
            (t(&[2, 1, 33], 0.6)?, t(&[2, 33, 301], 1.1)?),
            (t(&[1, 33], 0.6)?, t(&[301, 33], 1.1)?.t()?),
        ])
    }

    /// The largest |difference| between two tensors.
    pub(crate) fn max_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
        (a - b)?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_dtype(DType::F32)?
            .to_scalar::<f32>()
    }
}
