//! f32 matrix products on the CPU through OpenBLAS when the machine has it.
//!
//! candle's CPU matmul (the `gemm` crate) uses AVX2 kernels on stable Rust; on this project's
//! AVX-512 machine it reaches about a third of the sgemm rate PyTorch's MKL or OpenBLAS get
//! for the model's shapes (`tokenlens bench --sgemm` measures both), and matrix products are
//! most of a pass. OpenBLAS is loaded at run time (`libopenblas.so.0`, Debian's
//! `libopenblas0`; `TOKENLENS_BLAS` names another file, or `off`), so the binary runs
//! unchanged without it, through candle's kernel. Graph-recording (autograd twin), non-f32
//! and GPU tensors always take candle's matmul.

use candle_core::{CpuStorage, DType, Device, Layout, Result, Storage, Tensor};
use std::sync::OnceLock;

/// `cblas_sgemm` (row-major order, the LP64 interface Debian's OpenBLAS exports).
type Sgemm = unsafe extern "C" fn(
    order: i32,
    trans_a: i32,
    trans_b: i32,
    m: i32,
    n: i32,
    k: i32,
    alpha: f32,
    a: *const f32,
    lda: i32,
    b: *const f32,
    ldb: i32,
    beta: f32,
    c: *mut f32,
    ldc: i32,
);

const ROW_MAJOR: i32 = 101;
const NO_TRANS: i32 = 111;
const TRANS: i32 = 112;

struct Blas {
    // Kept loaded for as long as `sgemm` may be called (the whole process).
    _lib: libloading::Library,
    sgemm: Sgemm,
    name: String,
    /// The library was set to one thread: products are split into tiles over the engine's
    /// own worker pool. Otherwise (a library without `openblas_set_num_threads`) each
    /// product is one call and the library threads it.
    tiled: bool,
}

/// `openblas_set_num_threads`.
type SetThreads = unsafe extern "C" fn(n: i32);

fn blas() -> Option<&'static Blas> {
    static BLAS: OnceLock<Option<Blas>> = OnceLock::new();
    BLAS.get_or_init(|| {
        let choice = std::env::var("TOKENLENS_BLAS")
            .ok()
            .filter(|s| !s.is_empty());
        if choice.as_deref() == Some("off") {
            return None;
        }
        pick_kernel();
        let names = match choice {
            Some(path) => vec![path],
            None => vec!["libopenblas.so.0".to_string(), "libopenblas.so".to_string()],
        };
        for name in names {
            // SAFETY: loading runs the library's initializers; OpenBLAS's set up its thread
            // pool and nothing else. The symbol's type is cblas.h's `cblas_sgemm`.
            let Ok(lib) = (unsafe { libloading::Library::new(&name) }) else {
                continue;
            };
            let Ok(sgemm) = (unsafe { lib.get::<Sgemm>(b"cblas_sgemm\0") }).map(|f| *f) else {
                continue;
            };
            // One thread inside the library: its own pool's workers yield-spin between calls
            // while the engine's row kernels run, on the same cores.
            let tiled = match unsafe { lib.get::<SetThreads>(b"openblas_set_num_threads\0") } {
                Ok(set) => {
                    // SAFETY: `openblas_set_num_threads(int)`, called before any product.
                    unsafe { set(1) };
                    true
                }
                Err(_) => false,
            };
            tracing::debug!(library = %name, tiled, "f32 matrix products through OpenBLAS");
            return Some(Blas {
                _lib: lib,
                sgemm,
                name,
                tiled,
            });
        }
        None
    })
    .as_ref()
}

/// Chooses OpenBLAS's kernels from the CPU's features. Debian's OpenBLAS (0.3.21) picks
/// them by CPU model and takes a virtual machine's unnamed model for a 2004 Pentium 4
/// ("Prescott"): a third of the AVX-512 kernel's speed, slower than candle's. An
/// `OPENBLAS_CORETYPE` already set is left alone. Set once, before the library loads (the
/// binaries load it first thing, before their threads start).
fn pick_kernel() {
    if std::env::var_os("OPENBLAS_CORETYPE").is_some() {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let core = if is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512dq")
        {
            Some("SkylakeX")
        } else if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            Some("Haswell")
        } else {
            None
        };
        if let Some(core) = core {
            std::env::set_var("OPENBLAS_CORETYPE", core);
        }
    }
}

/// Loads OpenBLAS now (binaries call this first, before their threads start).
pub fn init() {
    let _ = blas();
}

/// Which kernel runs f32 CPU matrix products, in words.
pub fn backend() -> String {
    match blas() {
        Some(b) => format!("OpenBLAS ({})", b.name),
        None => "candle's gemm (OpenBLAS not found)".to_string(),
    }
}

/// `a · b` for `a: (.., m, k)` and `b: (.., k, n)` with the same leading dimensions, as
/// `Tensor::matmul`; through OpenBLAS for graph-free f32 CPU tensors whose last two
/// dimensions are row- or column-major (transposed views need no copy).
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let eligible = !a.track_op()
        && !b.track_op()
        && a.device().is_cpu()
        && b.device().is_cpu()
        && a.dtype() == DType::F32
        && b.dtype() == DType::F32;
    match blas().filter(|_| eligible) {
        Some(blas) => match blas_matmul(blas, a, b)? {
            Some(t) => Ok(t),
            None => a.matmul(b),
        },
        None => a.matmul(b),
    }
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
        let threads = candle_core::utils::get_num_threads().max(1);
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

/// The OpenBLAS product, or `None` where the operands do not suit it (then candle's).
fn blas_matmul(blas: &Blas, a: &Tensor, b: &Tensor) -> Result<Option<Tensor>> {
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
    let (Storage::Cpu(CpuStorage::F32(av)), Storage::Cpu(CpuStorage::F32(bv))) = (&*sa, &*sb)
    else {
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
    let mut out = vec![0f32; oa.len() * m * n];
    let tiles = Tiles::new(blas.tiled, oa.len(), m, n);
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
            (blas.sgemm)(
                ROW_MAJOR,
                ta,
                tb,
                rows as i32,
                cols as i32,
                k as i32,
                1.0,
                av.as_ptr().add(a_off),
                lda as i32,
                bv.as_ptr().add(b_off),
                ldb as i32,
                0.0,
                c.get().add(i * m * n + r0 * n + c0),
                n as i32,
            );
        }
    };
    if blas.tiled {
        super::parallel_for(tiles.count(), run);
    } else {
        (0..tiles.count()).for_each(run);
    }
    let mut shape = lead.to_vec();
    shape.extend([m, n]);
    Ok(Some(Tensor::from_vec(out, shape, &Device::Cpu)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every layout the passes use (plain, transposed either side, batched, a narrowed
    /// view) equals candle's product.
    #[test]
    fn equals_candles_matmul() -> Result<()> {
        let dev = Device::Cpu;
        let t = |shape: &[usize], seed: f64| -> Result<Tensor> {
            let n: usize = shape.iter().product();
            Tensor::arange(0f32, n as f32, &dev)?
                .affine(0.37, seed)?
                .sin()?
                .reshape(shape)
        };
        let a = t(&[3, 5, 7], 0.1)?;
        let b = t(&[3, 7, 4], 1.3)?;
        let bt = t(&[3, 4, 7], 2.1)?.transpose(1, 2)?;
        let at = t(&[3, 7, 5], 0.7)?.transpose(1, 2)?;
        let wide = t(&[3, 5, 9], 0.2)?.narrow(2, 1, 7)?;
        let cases = [
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
        ];
        for (i, (x, y)) in cases.iter().enumerate() {
            let got = matmul(x, y)?;
            let want = x.contiguous()?.matmul(&y.contiguous()?)?;
            assert_eq!(got.dims(), want.dims(), "case {i}");
            let d = (got - want)?
                .abs()?
                .flatten_all()?
                .max(0)?
                .to_scalar::<f32>()?;
            assert!(d < 1e-5, "case {i}: differs by {d}");
        }
        Ok(())
    }
}
