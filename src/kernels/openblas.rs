//! f32 matrix products on the CPU through OpenBLAS when the machine has it.
//!
//! candle's CPU matmul (the `gemm` crate) uses AVX2 kernels on stable Rust; on this project's
//! AVX-512 machine it reaches about a third of the sgemm rate PyTorch's MKL or OpenBLAS get
//! for the model's shapes (`tokenlens bench --sgemm` measures both), and matrix products are
//! most of a pass. OpenBLAS is loaded at run time (`libopenblas.so.0`, Debian's
//! `libopenblas0`; `TOKENLENS_BLAS` names another file, or `off`), so the binary runs
//! unchanged without it, through candle's kernel.

use super::gemm::{Kernel, ROW_MAJOR};
use candle_core::CpuStorage;
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

/// `openblas_set_num_threads`.
type SetThreads = unsafe extern "C" fn(n: i32);

pub(crate) struct OpenBlas {
    // Kept loaded for as long as `sgemm` may be called (the whole process).
    _lib: libloading::Library,
    sgemm: Sgemm,
    name: String,
    /// The library was set to one thread: products are split into tiles over the engine's
    /// own worker pool. Otherwise (a library without `openblas_set_num_threads`) each
    /// product is one call and the library threads it.
    tiled: bool,
}

impl Kernel for OpenBlas {
    type T = f32;

    unsafe fn gemm(
        &self,
        trans_a: i32,
        trans_b: i32,
        m: i32,
        n: i32,
        k: i32,
        a: *const f32,
        lda: i32,
        b: *const f32,
        ldb: i32,
        c: *mut f32,
        ldc: i32,
    ) {
        // SAFETY: the caller's contract; cblas.h's `cblas_sgemm`.
        unsafe {
            (self.sgemm)(
                ROW_MAJOR, trans_a, trans_b, m, n, k, 1.0, a, lda, b, ldb, 0.0, c, ldc,
            )
        }
    }

    fn tiled(&self) -> bool {
        self.tiled
    }

    fn slice(storage: &CpuStorage) -> Option<&[f32]> {
        match storage {
            CpuStorage::F32(v) => Some(v),
            _ => None,
        }
    }
}

/// The loaded library, if any.
pub(crate) fn get() -> Option<&'static OpenBlas> {
    static BLAS: OnceLock<Option<OpenBlas>> = OnceLock::new();
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
            return Some(OpenBlas {
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

/// The library's file name, in words for logs and benchmarks.
pub(crate) fn describe() -> String {
    match get() {
        Some(b) => format!("OpenBLAS ({})", b.name),
        None => "candle's gemm (OpenBLAS not found)".to_string(),
    }
}
