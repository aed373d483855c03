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
}

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
            tracing::debug!(library = %name, "f32 matrix products through OpenBLAS");
            return Some(Blas {
                _lib: lib,
                sgemm,
                name,
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
    for ((&oa, &ob), c) in oa.iter().zip(&ob).zip(out.chunks_exact_mut(m * n)) {
        // SAFETY: every element the product reads lies within `av` and `bv` (checked against
        // the furthest offset above); `c` holds exactly m·n elements with ldc = n. The sizes
        // fit in i32.
        unsafe {
            (blas.sgemm)(
                ROW_MAJOR,
                ta,
                tb,
                m as i32,
                n as i32,
                k as i32,
                1.0,
                av.as_ptr().add(oa),
                lda as i32,
                bv.as_ptr().add(ob),
                ldb as i32,
                0.0,
                c.as_mut_ptr(),
                n as i32,
            );
        }
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
