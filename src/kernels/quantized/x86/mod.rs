//! AVX2 and AVX512-VNNI dot products of Q4_1 / Q5_0 / Q5_1 weight blocks with 8-bit
//! activation blocks: a block's 32 weights are widened to bytes (0..31), multiplied with the
//! activation bytes and summed in 32-bit lanes (`vpdpbusd`, or `vpmaddubsw` + `vpmaddwd`),
//! then scaled by the two blocks' scales into eight f32 lanes.

use super::blocks::{Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, QK};
use std::arch::x86_64::*;
use std::sync::OnceLock;

mod kquants;
pub(super) use kquants::{dot4_q4k, dot4_q6k, dot_q4k, dot_q6k};

/// The instruction set the kernels run with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Level {
    /// AVX2 + FMA + F16C.
    Avx2,
    /// AVX-512 (BW, VL, VNNI): VNNI on 256-bit vectors for the 32-value blocks, 512-bit
    /// vectors for the k-quants.
    Vnni,
}

/// The best level this CPU has, or `None` (the scalar code).
pub(super) fn level() -> Option<Level> {
    static LEVEL: OnceLock<Option<Level>> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        if !(is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c"))
        {
            None
        } else if is_x86_feature_detected!("avx512vnni")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512bw")
        {
            Some(Level::Vnni)
        } else {
            Some(Level::Avx2)
        }
    })
}

/// Whether products read four weight rows at a time against each input row (AVX-512
/// machines, where each row fetches ahead of itself), or one (AVX2 only: on an AMD EPYC (Zen
/// 3), one row at a time and no fetching ahead took a decoding step of the Qwen3.5-4B shape
/// from 390-460 ms to 235-260 ms, and SmolLM2's from 21.8 to 16.6 ms).
pub(super) fn four_rows() -> bool {
    level() == Some(Level::Vnni)
}

/// A weight block as SIMD code reads it.
trait Weights {
    /// The 32 integers q as bytes.
    unsafe fn bytes(&self) -> __m256i;
    unsafe fn d(&self) -> f32;
    /// `m` for blocks with a minimum (`x = d·q + m`), else 0.
    unsafe fn m(&self) -> f32;
    /// Q5_0: `x = d·(q − 16)`.
    const CENTERED: bool;
    /// `Σ q·y` with the activation bytes `y`, in eight 32-bit sums.
    #[inline(always)]
    unsafe fn dot<const VNNI: bool>(&self, y: __m256i) -> __m256i {
        dot_bytes::<VNNI>(self.bytes(), y)
    }
}

/// An activation block as SIMD code reads it.
trait Activations {
    unsafe fn d(&self) -> f32;
    /// `d·Σq` (Q8_1), 0 where the block has none.
    unsafe fn s(&self) -> f32;
    fn qs(&self) -> &[i8; QK];
}

/// An f16 scale as f32, in one instruction (F16C); `half`'s conversion checks the CPU's
/// features on every call, which cost more than the block's dot product.
#[inline(always)]
unsafe fn f32_of(h: half::f16) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h.to_bits() as i32)))
}

#[inline(always)]
unsafe fn nibbles(qs: &[u8; QK / 2]) -> __m256i {
    let x = _mm_loadu_si128(qs.as_ptr().cast());
    let both = _mm256_set_m128i(_mm_srli_epi16(x, 4), x);
    _mm256_and_si256(both, _mm256_set1_epi8(0x0F))
}

/// 0x10 in byte j where bit j of `qh` is set.
#[inline(always)]
unsafe fn fifth_bits(qh: [u8; 4]) -> __m256i {
    let h = i32::from_le_bytes(qh);
    // Byte j takes byte j / 8 of h (in each 128-bit lane, h's four bytes repeat).
    let pick = _mm256_set_epi64x(
        0x0303030303030303,
        0x0202020202020202,
        0x0101010101010101,
        0,
    );
    let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(h), pick);
    let bit = _mm256_set1_epi64x(0x8040201008040201u64 as i64);
    let set = _mm256_cmpeq_epi8(_mm256_and_si256(bytes, bit), bit);
    _mm256_and_si256(set, _mm256_set1_epi8(0x10))
}

impl Weights for Q4_1 {
    #[inline(always)]
    unsafe fn bytes(&self) -> __m256i {
        nibbles(&self.qs)
    }
    #[inline(always)]
    unsafe fn d(&self) -> f32 {
        f32_of(self.d)
    }
    #[inline(always)]
    unsafe fn m(&self) -> f32 {
        f32_of(self.m)
    }
    const CENTERED: bool = false;
}

impl Weights for Q5_0 {
    #[inline(always)]
    unsafe fn bytes(&self) -> __m256i {
        _mm256_or_si256(nibbles(&self.qs), fifth_bits(self.qh))
    }
    #[inline(always)]
    unsafe fn d(&self) -> f32 {
        f32_of(self.d)
    }
    #[inline(always)]
    unsafe fn m(&self) -> f32 {
        0.0
    }
    const CENTERED: bool = true;
}

impl Weights for Q5_1 {
    #[inline(always)]
    unsafe fn bytes(&self) -> __m256i {
        _mm256_or_si256(nibbles(&self.qs), fifth_bits(self.qh))
    }
    #[inline(always)]
    unsafe fn d(&self) -> f32 {
        f32_of(self.d)
    }
    #[inline(always)]
    unsafe fn m(&self) -> f32 {
        f32_of(self.m)
    }
    const CENTERED: bool = false;
}

impl Weights for Q8_0 {
    /// Signed: [`Weights::dot`] below reads them.
    #[inline(always)]
    unsafe fn bytes(&self) -> __m256i {
        _mm256_loadu_si256(self.qs.as_ptr().cast())
    }
    #[inline(always)]
    unsafe fn d(&self) -> f32 {
        f32_of(self.d)
    }
    #[inline(always)]
    unsafe fn m(&self) -> f32 {
        0.0
    }
    const CENTERED: bool = false;
    /// Signed weights: `Σ x·y = Σ |x|·(y with x's sign)`; −128's "absolute value" wraps
    /// to the byte 0x80, which as unsigned is 128, so it holds there too.
    #[inline(always)]
    unsafe fn dot<const VNNI: bool>(&self, y: __m256i) -> __m256i {
        let x = self.bytes();
        dot_bytes::<VNNI>(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x))
    }
}

impl Activations for Q8_0 {
    #[inline(always)]
    unsafe fn d(&self) -> f32 {
        f32_of(self.d)
    }
    #[inline(always)]
    unsafe fn s(&self) -> f32 {
        0.0
    }
    #[inline(always)]
    fn qs(&self) -> &[i8; QK] {
        &self.qs
    }
}

impl Activations for Q8_1 {
    #[inline(always)]
    unsafe fn d(&self) -> f32 {
        f32_of(self.d)
    }
    #[inline(always)]
    unsafe fn s(&self) -> f32 {
        f32_of(self.s)
    }
    #[inline(always)]
    fn qs(&self) -> &[i8; QK] {
        &self.qs
    }
}

/// `Σ a·b` of unsigned bytes `a` and signed bytes `b`, in eight 32-bit sums.
#[inline(always)]
unsafe fn dot_bytes<const VNNI: bool>(a: __m256i, b: __m256i) -> __m256i {
    if VNNI {
        _mm256_dpbusd_epi32(_mm256_setzero_si256(), a, b)
    } else {
        // Pairs of products fit in i16: 31 · 127 · 2 < 2¹⁵.
        _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), _mm256_set1_epi16(1))
    }
}

#[inline(always)]
unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// How far ahead of the block in use each row fetches, in bytes. The rows of a group of four
/// are short streams of a few cache lines each, too short for the hardware prefetcher to
/// learn, so each row fetches ahead itself, far enough to cover the next groups of rows:
/// SmolLM2's decoding step went from 72 to 98 tokens/s as this grew to 2.5 KB, and stayed
/// there at 5 KB.
const PREFETCH_BYTES: usize = 2560;

/// The dot products of `R` rows of weight blocks with one row of activation blocks.
#[inline(always)]
unsafe fn rows<W: Weights, A: Activations, const R: usize, const VNNI: bool>(
    xs: [&[W]; R],
    ys: &[A],
) -> [f32; R] {
    let mut acc = [_mm256_setzero_ps(); R];
    let mut mins = [0f32; R];
    let sixteen = _mm256_set1_epi8(16);
    for (b, y) in ys.iter().enumerate() {
        let yq = _mm256_loadu_si256(y.qs().as_ptr().cast());
        let (yd, ysum) = (y.d(), y.s());
        // Q5_0's offset: Σ (q − 16)·y = Σ q·y − Σ 16·y, the second once per activation block.
        let centre = if W::CENTERED {
            dot_bytes::<VNNI>(sixteen, yq)
        } else {
            _mm256_setzero_si256()
        };
        for r in 0..R {
            // Each row is its own short stream (a few cache lines): fetch ahead of it.
            fetch_ahead::<W, R>(xs[r], b);
            let x = &xs[r][b];
            let mut sum = x.dot::<VNNI>(yq);
            if W::CENTERED {
                sum = _mm256_sub_epi32(sum, centre);
            }
            let scale = _mm256_set1_ps(x.d() * yd);
            acc[r] = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(sum), acc[r]);
            if !W::CENTERED {
                mins[r] += x.m() * ysum;
            }
        }
    }
    std::array::from_fn(|r| hsum(acc[r]) + mins[r])
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn rows_avx2<W: Weights, A: Activations, const R: usize>(
    xs: [&[W]; R],
    ys: &[A],
) -> [f32; R] {
    rows::<W, A, R, false>(xs, ys)
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
unsafe fn rows_vnni<W: Weights, A: Activations, const R: usize>(
    xs: [&[W]; R],
    ys: &[A],
) -> [f32; R] {
    rows::<W, A, R, true>(xs, ys)
}

/// The dot products at `level`.
///
/// # Safety
/// The CPU has `level`'s features ([`level`] said so); each row holds `ys.len()` blocks.
unsafe fn dot<W: Weights, A: Activations, const R: usize>(
    level: Level,
    xs: [&[W]; R],
    ys: &[A],
) -> [f32; R] {
    debug_assert!(xs.iter().all(|x| x.len() >= ys.len()));
    match level {
        Level::Avx2 => rows_avx2(xs, ys),
        Level::Vnni => rows_vnni(xs, ys),
    }
}

macro_rules! entry {
    ($one:ident, $four:ident, $w:ty, $a:ty) => {
        /// One row's dot product (see [`dot`]).
        pub(super) unsafe fn $one(level: Level, xs: &[$w], ys: &[$a]) -> f32 {
            let len = xs.len().min(ys.len());
            dot(level, [&xs[..len]], &ys[..len])[0]
        }
        /// Four rows' dot products (see [`dot`]).
        pub(super) unsafe fn $four(level: Level, xs: [&[$w]; 4], ys: &[$a]) -> [f32; 4] {
            let len = xs.iter().map(|x| x.len()).fold(ys.len(), usize::min);
            dot(level, xs.map(|x| &x[..len]), &ys[..len])
        }
    };
}

entry!(dot_q4_1, dot4_q4_1, Q4_1, Q8_1);
entry!(dot_q5_0, dot4_q5_0, Q5_0, Q8_0);
entry!(dot_q5_1, dot4_q5_1, Q5_1, Q8_1);
entry!(dot_q8_0, dot4_q8_0, Q8_0, Q8_0);

/// Fetches the block `ahead` bytes past `b`'s in row `xs` (a hint: never faults), where
/// the kernel reads `R > 1` rows at once; a lone row is one long stream, which the hardware
/// prefetcher follows better alone.
#[inline(always)]
unsafe fn fetch_ahead<W, const R: usize>(xs: &[W], b: usize) {
    if R == 1 {
        return;
    }
    let ahead: *const W = xs
        .as_ptr()
        .wrapping_add(b + PREFETCH_BYTES / std::mem::size_of::<W>());
    _mm_prefetch::<_MM_HINT_T0>(ahead.cast());
}

/// `p · s` per pair of 16-bit products, into 32-bit sums: `Σ` over the pairs of
/// `maddubs(a, b)` times the 16-bit scales `s`.
#[inline(always)]
unsafe fn scaled_dot(a: __m256i, b: __m256i, s: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), s)
}

const _: () = assert!(super::kblocks::QK_K == 8 * QK);
