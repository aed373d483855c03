//! The CPU's matrix products, each through the fastest library this machine has, and the one
//! worker pool they all run on.
//!
//! - [`Products::F32`]: f32 operands through OpenBLAS' `sgemm` (`openblas`), or candle's
//!   kernel without it. Exact: what the PyTorch references compute.
//! - [`Products::Bf16`]: bf16 operands with f32 accumulation on the matrix units (AMX-BF16,
//!   AVX512-BF16) through oneMKL (`mkl`); on CUDA, bf16 tensor cores through candle.
//! - [`Products::Stored`]: forward-only products on the weights as the GGUF file stores
//!   them, quantized blocks read directly ([`quantized`]), as llama.cpp runs them.
//!
//! Every parallel kernel (row kernels, tiles of a product, quantized rows) runs on candle's
//! CPU pool through `parallel_for`: with a pool each, idle workers of one spun on the cores
//! the other needed (≈ 18% of a pass on two cores).

pub(crate) mod convert;
pub(crate) mod gemm;
pub(crate) mod math;
pub(crate) mod mkl;
pub(crate) mod openblas;
pub mod quantized;
pub(crate) mod small;

use candle_core::{DType, Result, Tensor};
use convert::bf16_as_f32;
pub use convert::to_bf16;

/// How a pass multiplies by matrices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Products {
    /// f32 operands: exact.
    #[default]
    F32,
    /// bf16 operands, products accumulated in f32; every other op stays f32.
    Bf16,
    /// Forward passes only: weight matrices as the GGUF stores them (quantized blocks, the
    /// activations quantized to 8 bits per block as llama.cpp does), bf16 for the rest.
    Stored,
}

impl Products {
    /// `a · b` (as `Tensor::matmul`) of two activations (attention's products) with these
    /// products. `Stored` computes them in f32: a decoding step multiplies one query by the
    /// whole cache, which bf16 would first have to convert.
    pub fn matmul(self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        match self {
            Products::F32 | Products::Stored => matmul(a, b),
            Products::Bf16 => matmul_bf16(a, b),
        }
    }

    /// The products a backward pass uses for this forward's (stored blocks have no
    /// transposed product: bf16).
    pub fn for_backward(self) -> Products {
        match self {
            Products::Stored => Products::Bf16,
            p => p,
        }
    }
}

/// Loads the libraries now (binaries call this first, before their threads start).
pub fn init() {
    let _ = openblas::get();
    if let Err(why) = mkl::get() {
        tracing::debug!(%why, "no bf16 matrix products");
    }
}

/// Which kernels run each kind of product, in words (logs, `bench`, `/api/models`).
pub fn backend() -> String {
    let bf16 = match mkl::get() {
        Ok(m) => m.name.clone(),
        Err(_) if bf16_emulated() => EMULATED.to_string(),
        Err(why) => format!("f32 ({why})"),
    };
    format!("f32: {}; bf16: {bf16}", openblas::describe())
}

/// What `TOKENLENS_BF16=emulate` computes, in words.
const EMULATED: &str = "emulated (TOKENLENS_BF16=emulate: operands rounded to bf16, \
                        products in f32; bf16's numbers at f32's speed)";

/// Whether bf16 products are computed: on this machine's matrix units, or emulated where
/// `TOKENLENS_BF16=emulate` asks for it (else a bf16 request computes in f32).
pub fn bf16_available() -> bool {
    bf16_units() || bf16_emulated()
}

/// Whether bf16 products run on this machine's matrix units (AMX-BF16, AVX512-BF16)
/// through oneMKL: faster than f32, not only rounded.
pub fn bf16_units() -> bool {
    mkl::get().is_ok()
}

/// `TOKENLENS_BF16=emulate`, on a machine without bf16 units: bf16 products are the f32
/// products of operands rounded to bf16, as the matrix units multiply them (exact products,
/// f32 sums; only the order of the sums differs). No faster than f32: for seeing and testing
/// what bf16 does to an explanation on a CPU without bf16 instructions.
pub fn bf16_emulated() -> bool {
    static EMULATE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *EMULATE.get_or_init(|| {
        let on = std::env::var("TOKENLENS_BF16").is_ok_and(|v| v == "emulate");
        on && !bf16_units()
    })
}

/// Why bf16 products are not available, when they are not.
pub fn bf16_unavailable_reason() -> Option<&'static str> {
    match bf16_emulated() {
        true => None,
        false => mkl::get().err(),
    }
}

/// `a · b` for `a: (.., m, k)` and `b: (.., k, n)`, as `Tensor::matmul`; through OpenBLAS
/// for graph-free f32 CPU tensors whose last two dimensions are row- or column-major.
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if let Some(blas) = openblas::get().filter(|_| gemm::eligible(a, b, DType::F32)) {
        if let Some(t) = gemm::product(blas, a, b)? {
            return Ok(t);
        }
    }
    a.matmul(b)
}

/// `a · b` with bf16 operands and f32 products and result: f32 operands are rounded to bf16
/// first (bf16 ones are used as they are). On the CPU through oneMKL; without it, the f32
/// product of the operands as given (rounded to bf16 where bf16 is emulated). On CUDA,
/// candle's bf16 product.
pub fn matmul_bf16(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if !a.device().is_cpu() {
        let a = a.to_dtype(DType::BF16)?;
        let b = b.to_dtype(DType::BF16)?;
        return a.matmul(&b)?.to_dtype(DType::F32);
    }
    let Ok(mkl) = mkl::get() else {
        let f32_of = |t: &Tensor| match bf16_emulated() || t.dtype() == DType::BF16 {
            true => bf16_as_f32(t),
            false => t.to_dtype(DType::F32),
        };
        return matmul(&f32_of(a)?, &f32_of(b)?);
    };
    let a = to_bf16(a)?;
    let b = to_bf16(b)?;
    match gemm::product(mkl, &a, &b)? {
        Some(t) => Ok(t),
        None => a
            .contiguous()?
            .matmul(&b.contiguous()?)?
            .to_dtype(DType::F32),
    }
}

/// The threads of candle's pool (its workers and the caller). Read once: candle's own
/// `get_num_threads` counts the cores again on every call, reading `/proc/cpuinfo`, which
/// cost a decoding step more than some of its products.
pub fn threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| candle_core::utils::get_num_threads().max(1))
}

/// The machine's read bandwidth as the engine's threads see it, in bytes/s: the best of three
/// sums of a 1 GiB buffer, split over the pool as a decoding step's rows are (a benchmark
/// figure: a decoding step cannot read its weights faster).
pub fn read_bandwidth() -> f64 {
    let words = (1usize << 30) / 8;
    let buf: Vec<u64> = (0..words as u64).collect();
    let parts = threads() * 8;
    let per = words.div_ceil(parts);
    let sums: Vec<std::sync::atomic::AtomicU64> = (0..parts).map(|_| 0.into()).collect();
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let t = std::time::Instant::now();
        parallel_for(parts, |i| {
            let chunk = &buf[(i * per).min(words)..((i + 1) * per).min(words)];
            let s = chunk.iter().fold(0u64, |a, &b| a.wrapping_add(b));
            sums[i].store(s, std::sync::atomic::Ordering::Relaxed);
        });
        best = best.min(t.elapsed().as_secs_f64());
    }
    std::hint::black_box(&sums);
    (words * 8) as f64 / best
}

/// Runs `f(i)` for every `i` in `0..n` on candle's CPU worker pool, the threads its own
/// element-wise ops use.
pub(crate) fn parallel_for(n: usize, f: impl Fn(usize) + Sync) {
    if n <= 1 {
        (0..n).for_each(f);
        return;
    }
    candle_core::utils::barrier_pool().execute_chunked(n, |range| range.for_each(&f));
}

/// A `len`-element output of `zero`s, cut into chunks of `chunk` elements, each filled by
/// `f(first element's index, chunk)` on the pool.
pub(crate) fn map_chunks<T: Copy + Send>(
    len: usize,
    chunk: usize,
    zero: T,
    f: impl Fn(usize, &mut [T]) + Sync,
) -> Vec<T> {
    let chunk = chunk.max(1);
    let mut out = vec![zero; len];
    // Uncontended locks hand each chunk to exactly one worker.
    let parts: Vec<std::sync::Mutex<&mut [T]>> =
        out.chunks_mut(chunk).map(std::sync::Mutex::new).collect();
    parallel_for(parts.len(), |c| {
        let mut part = parts[c].lock().unwrap_or_else(|e| e.into_inner());
        f(c * chunk, &mut part);
    });
    drop(parts);
    out
}

/// A `len`-element output, cut into chunks of `chunk` elements, each written whole by
/// `f(first element's index, chunk)` on the pool: no zeroing first (a bf16 pass spent 8% of
/// its time zeroing buffers about to be overwritten).
///
/// # Safety
/// `f` must write every element of each chunk it is given.
pub(crate) unsafe fn fill_chunks<T: Copy + Send>(
    len: usize,
    chunk: usize,
    f: impl Fn(usize, &mut [std::mem::MaybeUninit<T>]) + Sync,
) -> Vec<T> {
    let chunk = chunk.max(1);
    let mut out: Vec<T> = Vec::with_capacity(len);
    {
        let spare = &mut out.spare_capacity_mut()[..len];
        let parts: Vec<std::sync::Mutex<&mut [std::mem::MaybeUninit<T>]>> =
            spare.chunks_mut(chunk).map(std::sync::Mutex::new).collect();
        parallel_for(parts.len(), |c| {
            let mut part = parts[c].lock().unwrap_or_else(|e| e.into_inner());
            f(c * chunk, &mut part);
        });
    }
    // SAFETY: the caller's `f` wrote every element of every chunk, which cover 0..len.
    unsafe { out.set_len(len) };
    out
}

/// A `len`-element output of rows of `m`, each row written whole by `f(row index, row)`
/// (the row is not zeroed first); the rows are split over the cores.
///
/// # Safety
/// `f` must write every element of the row it is given.
pub(crate) unsafe fn fill_rows(
    len: usize,
    m: usize,
    f: impl Fn(usize, &mut [std::mem::MaybeUninit<f32>]) + Sync,
) -> Vec<f32> {
    let m = m.max(1);
    let per = (len / m).div_ceil(threads() * 4).max(16);
    // SAFETY: every chunk is whole rows, each written whole by `f` (the caller's promise).
    unsafe {
        fill_chunks(len, per * m, |start, block| {
            for (k, row) in block.chunks_mut(m).enumerate() {
                f(start / m + k, row);
            }
        })
    }
}

/// A `len`-element output of rows of `m`, zero-initialized, each row filled by
/// `f(row index, row)`; the rows are split over the cores.
pub(crate) fn map_rows(len: usize, m: usize, f: impl Fn(usize, &mut [f32]) + Sync) -> Vec<f32> {
    let m = m.max(1);
    // Blocks of at least 16 rows keep the hand-offs few.
    let per = (len / m).div_ceil(threads() * 4).max(16);
    map_chunks(len, per * m, 0f32, |start, block| {
        for (k, row) in block.chunks_mut(m).enumerate() {
            f(start / m + k, row);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::gemm::tests::{layouts, max_diff};
    use super::*;

    /// Every layout the passes use equals candle's product.
    #[test]
    fn f32_products_equal_candles() -> Result<()> {
        for (i, (x, y)) in layouts()?.iter().enumerate() {
            let got = matmul(x, y)?;
            let want = x.contiguous()?.matmul(&y.contiguous()?)?;
            assert_eq!(got.dims(), want.dims(), "case {i}");
            let d = max_diff(&got, &want)?;
            assert!(d < 1e-5, "case {i}: differs by {d}");
        }
        Ok(())
    }

    /// bf16 products equal the f32 product of the operands rounded to bf16 (both accumulate
    /// in f32), in every layout; a bf16 operand is taken as it is.
    #[test]
    fn bf16_products_equal_f32_products_of_rounded_operands() -> Result<()> {
        if !bf16_available() {
            eprintln!("skipped: {}", bf16_unavailable_reason().unwrap_or(""));
            return Ok(());
        }
        for (i, (x, y)) in layouts()?.iter().enumerate() {
            let got = matmul_bf16(x, y)?;
            assert_eq!(got.dtype(), DType::F32);
            let round = |t: &Tensor| t.to_dtype(DType::BF16)?.to_dtype(DType::F32);
            let want = round(x)?.contiguous()?.matmul(&round(y)?.contiguous()?)?;
            let d = max_diff(&got, &want)?;
            assert!(d < 1e-4, "case {i}: differs by {d}");
            // Not the exact f32 product: the rounding is there.
            let exact = x.contiguous()?.matmul(&y.contiguous()?)?;
            assert!(max_diff(&got, &exact)? > 0.0, "case {i}: no rounding?");
            let mixed = matmul_bf16(&x.to_dtype(DType::BF16)?, y)?;
            assert!(max_diff(&mixed, &got)? < 1e-4, "case {i}: bf16 operand");
        }
        Ok(())
    }
}
