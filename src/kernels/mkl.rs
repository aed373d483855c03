//! bf16 matrix products on the CPU's matrix units (AMX-BF16, AVX512-BF16) through oneMKL's
//! `cblas_gemm_bf16bf16f32`: bf16 operands, products accumulated and returned in f32.
//!
//! Measured here (2 cores, Sapphire Rapids), one thread: 430-850 GFLOP/s for the model's
//! shapes where OpenBLAS' f32 `sgemm` gets 130-190 (`tokenlens bench --sgemm` prints both).
//! oneMKL is loaded at run time as OpenBLAS is: `TOKENLENS_MKL` names the `libmkl_rt` file
//! (or `off`); else the copy `scripts/fetch-mkl.sh` unpacks from PyPI's `mkl` wheel into the
//! cache (`~/.cache/tokenlens/mkl`), else the system's. It runs sequentially (one thread
//! per call) and the products are cut into tiles over the engine's pool. Without it, or on a
//! CPU without bf16 instructions, bf16 products are not offered and the engine computes in
//! f32 (with a log line).

use super::gemm::{Kernel, ROW_MAJOR};
use candle_core::CpuStorage;
use half::bf16;
use std::path::PathBuf;
use std::sync::OnceLock;

/// `cblas_gemm_bf16bf16f32` (row-major, LP64).
type GemmBf16 = unsafe extern "C" fn(
    order: i32,
    trans_a: i32,
    trans_b: i32,
    m: i32,
    n: i32,
    k: i32,
    alpha: f32,
    a: *const u16,
    lda: i32,
    b: *const u16,
    ldb: i32,
    beta: f32,
    c: *mut f32,
    ldc: i32,
);

/// `MKL_Set_Threading_Layer` / `MKL_Set_Interface_Layer`.
type SetLayer = unsafe extern "C" fn(code: i32) -> i32;
/// `MKL_Get_Version_String`.
type VersionString = unsafe extern "C" fn(buf: *mut u8, len: i32);

const MKL_THREADING_SEQUENTIAL: i32 = 1;
const MKL_INTERFACE_LP64: i32 = 0;

/// The loaded library.
pub(crate) struct Mkl {
    // Kept loaded for as long as `gemm` may be called (the whole process).
    _lib: libloading::Library,
    gemm: GemmBf16,
    /// Where it was loaded from and its version, in words.
    pub(crate) name: String,
}

impl Kernel for Mkl {
    type T = bf16;

    unsafe fn gemm(
        &self,
        trans_a: i32,
        trans_b: i32,
        m: i32,
        n: i32,
        k: i32,
        a: *const bf16,
        lda: i32,
        b: *const bf16,
        ldb: i32,
        c: *mut f32,
        ldc: i32,
    ) {
        // SAFETY: the caller's contract; `bf16` is a transparent u16, MKL's `MKL_BF16`.
        unsafe {
            (self.gemm)(
                ROW_MAJOR,
                trans_a,
                trans_b,
                m,
                n,
                k,
                1.0,
                a.cast(),
                lda,
                b.cast(),
                ldb,
                0.0,
                c,
                ldc,
            )
        }
    }

    fn tiled(&self) -> bool {
        true
    }

    fn slice(storage: &CpuStorage) -> Option<&[bf16]> {
        match storage {
            CpuStorage::BF16(v) => Some(v),
            _ => None,
        }
    }
}

/// Whether the CPU multiplies bf16 in hardware (AVX512-BF16 or AMX-BF16); elsewhere oneMKL
/// emulates it, slower than f32.
fn cpu_has_bf16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512bf16") || amx_bf16()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// CPUID leaf 7, EDX bit 22: AMX-BF16.
#[cfg(target_arch = "x86_64")]
fn amx_bf16() -> bool {
    let max = std::arch::x86_64::__cpuid(0).eax;
    max >= 7 && std::arch::x86_64::__cpuid_count(7, 0).edx & (1 << 22) != 0
}

/// Where to look for `libmkl_rt`, in order.
fn candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(p) = std::env::var_os("TOKENLENS_MKL").filter(|p| !p.is_empty()) {
        out.push(PathBuf::from(p));
        return out;
    }
    let dir = crate::source::cache_dir().join("mkl");
    for name in ["libmkl_rt.so.3", "libmkl_rt.so.2", "libmkl_rt.so"] {
        out.push(dir.join(name));
    }
    for name in ["libmkl_rt.so.3", "libmkl_rt.so.2", "libmkl_rt.so"] {
        out.push(PathBuf::from(name));
    }
    out
}

/// Why bf16 products are not available, or the library.
pub(crate) fn get() -> Result<&'static Mkl, &'static str> {
    static MKL: OnceLock<Result<Mkl, String>> = OnceLock::new();
    MKL.get_or_init(|| {
        if std::env::var("TOKENLENS_MKL").is_ok_and(|v| v == "off") {
            return Err("TOKENLENS_MKL=off".into());
        }
        if !cpu_has_bf16() {
            return Err("this CPU has no bf16 instructions (AVX512-BF16 or AMX-BF16)".into());
        }
        for path in candidates() {
            // SAFETY: loading runs oneMKL's initializers (it sets up nothing but its own
            // tables); the symbols' types are mkl_cblas.h's and mkl_service.h's.
            let Ok(lib) = (unsafe { libloading::Library::new(&path) }) else {
                continue;
            };
            let Ok(gemm) =
                (unsafe { lib.get::<GemmBf16>(b"cblas_gemm_bf16bf16f32\0") }).map(|f| *f)
            else {
                continue;
            };
            // SAFETY: both take an int and are called before any computation.
            unsafe {
                if let Ok(f) = lib.get::<SetLayer>(b"MKL_Set_Interface_Layer\0") {
                    f(MKL_INTERFACE_LP64);
                }
                if let Ok(f) = lib.get::<SetLayer>(b"MKL_Set_Threading_Layer\0") {
                    f(MKL_THREADING_SEQUENTIAL);
                }
            }
            let version = unsafe { lib.get::<VersionString>(b"MKL_Get_Version_String\0") }
                .map(|f| {
                    let mut buf = [0u8; 198];
                    // SAFETY: writes at most `len` bytes, NUL-terminated.
                    unsafe { f(buf.as_mut_ptr(), buf.len() as i32) };
                    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
                    String::from_utf8_lossy(&buf[..end]).trim().to_string()
                })
                .unwrap_or_default();
            let name = format!("oneMKL {version} ({})", path.display());
            tracing::debug!(library = %name, "bf16 matrix products through oneMKL");
            return Ok(Mkl {
                _lib: lib,
                gemm,
                name,
            });
        }
        Err("oneMKL (libmkl_rt) was not found: scripts/fetch-mkl.sh installs it".into())
    })
    .as_ref()
    .map_err(String::as_str)
}
