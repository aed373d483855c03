//! Quantized blocks unpacked 16 values at a time into AVX-512 registers, for dequantizing
//! whole rows straight into f32 or bf16 (a stored model's passes convert every matrix they
//! use; candle's scalar conversion made 0.9 G values/s here, this over 5).

use super::blocks::{Q4_1, Q5_0, Q5_1, Q8_0};
use super::kblocks::{scale_min, Q4K, Q6K};
use std::arch::x86_64::*;

/// A block type whose values AVX-512 unpacks 16 at a time.
pub(crate) trait Unpack: Sized {
    /// Values per block.
    const VALUES: usize;
    /// Values `16·i .. 16·i + 16` of the block, as f32.
    unsafe fn unpack16(&self, i: usize) -> __m512;
}

#[inline(always)]
unsafe fn f32_of(h: half::f16) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h.to_bits() as i32)))
}

/// 16 bytes at `p` as 16 f32 lanes (unsigned).
#[inline(always)]
unsafe fn bytes_u8(b: __m128i) -> __m512 {
    _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(b))
}

/// The low (`high` false) or high nibbles of the 16 bytes at `p`.
#[inline(always)]
unsafe fn nibbles16(p: *const u8, high: bool) -> __m128i {
    let b = _mm_loadu_si128(p.cast());
    let b = if high { _mm_srli_epi16(b, 4) } else { b };
    _mm_and_si128(b, _mm_set1_epi8(0x0F))
}

impl Unpack for Q8_0 {
    const VALUES: usize = 32;
    #[inline(always)]
    unsafe fn unpack16(&self, i: usize) -> __m512 {
        let q = _mm512_cvtepi8_epi32(_mm_loadu_si128(self.qs[16 * i..].as_ptr().cast()));
        _mm512_mul_ps(_mm512_cvtepi32_ps(q), _mm512_set1_ps(f32_of(self.d)))
    }
}

impl Unpack for Q4_1 {
    const VALUES: usize = 32;
    #[inline(always)]
    unsafe fn unpack16(&self, i: usize) -> __m512 {
        let q = bytes_u8(nibbles16(self.qs.as_ptr(), i == 1));
        _mm512_fmadd_ps(
            q,
            _mm512_set1_ps(f32_of(self.d)),
            _mm512_set1_ps(f32_of(self.m)),
        )
    }
}

/// Nibbles `16·i ..` with their fifth bits from `qh` (bit j for value j), as f32.
#[inline(always)]
unsafe fn five_bits(qs: &[u8; 16], qh: [u8; 4], i: usize) -> __m512 {
    let low = _mm512_cvtepu8_epi32(nibbles16(qs.as_ptr(), i == 1));
    let bits = (u32::from_le_bytes(qh) >> (16 * i)) as __mmask16;
    let high = _mm512_maskz_set1_epi32(bits, 16);
    _mm512_cvtepi32_ps(_mm512_or_si512(low, high))
}

impl Unpack for Q5_0 {
    const VALUES: usize = 32;
    #[inline(always)]
    unsafe fn unpack16(&self, i: usize) -> __m512 {
        let q = _mm512_sub_ps(five_bits(&self.qs, self.qh, i), _mm512_set1_ps(16.0));
        _mm512_mul_ps(q, _mm512_set1_ps(f32_of(self.d)))
    }
}

impl Unpack for Q5_1 {
    const VALUES: usize = 32;
    #[inline(always)]
    unsafe fn unpack16(&self, i: usize) -> __m512 {
        let q = five_bits(&self.qs, self.qh, i);
        _mm512_fmadd_ps(
            q,
            _mm512_set1_ps(f32_of(self.d)),
            _mm512_set1_ps(f32_of(self.m)),
        )
    }
}

impl Unpack for Q4K {
    const VALUES: usize = 256;
    #[inline(always)]
    unsafe fn unpack16(&self, i: usize) -> __m512 {
        // Sub-block j of 32: group j / 2 of the 32-byte groups, its low nibbles for even j.
        let j = i / 2;
        let p = self.qs.as_ptr().add(32 * (j / 2) + 16 * (i % 2));
        let q = bytes_u8(nibbles16(p, j % 2 == 1));
        let (sc, m) = scale_min(j, &self.scales);
        let scale = f32_of(self.d) * sc as f32;
        let min = f32_of(self.dmin) * m as f32;
        _mm512_fmsub_ps(q, _mm512_set1_ps(scale), _mm512_set1_ps(min))
    }
}

impl Unpack for Q6K {
    const VALUES: usize = 256;
    #[inline(always)]
    unsafe fn unpack16(&self, i: usize) -> __m512 {
        // Values 16·i.. lie in half n of 128, segment s of 32 in it, the segment's first or
        // second 16 (h); the segment picks ql's bytes (0..32 or 32..64, low or high nibbles)
        // and which two bits of qh.
        let (n, s, h) = (i / 8, (i % 8) / 2, i % 2);
        let ql = self.ql.as_ptr().add(64 * n + 32 * (s % 2) + 16 * h);
        let low = nibbles16(ql, s >= 2);
        let qh = _mm_loadu_si128(self.qh.as_ptr().add(32 * n + 16 * h).cast());
        let qh = match s {
            0 => qh,
            1 => _mm_srli_epi16(qh, 2),
            2 => _mm_srli_epi16(qh, 4),
            _ => _mm_srli_epi16(qh, 6),
        };
        let high = _mm_slli_epi16(_mm_and_si128(qh, _mm_set1_epi8(0x03)), 4);
        let q = _mm512_sub_ps(bytes_u8(_mm_or_si128(low, high)), _mm512_set1_ps(32.0));
        let scale = f32_of(self.d) * self.scales[i] as f32;
        _mm512_mul_ps(q, _mm512_set1_ps(scale))
    }
}

/// Where unpacked values go: f32 or bf16.
pub(crate) trait Sink: Copy {
    unsafe fn put(dst: *mut Self, v: __m512);
}

impl Sink for f32 {
    #[inline(always)]
    unsafe fn put(dst: *mut f32, v: __m512) {
        _mm512_storeu_ps(dst, v)
    }
}

impl Sink for half::bf16 {
    #[inline(always)]
    unsafe fn put(dst: *mut half::bf16, v: __m512) {
        let b: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(v));
        _mm256_storeu_si256(dst.cast(), b)
    }
}

/// Every value of `blocks` into `out` (`blocks.len() · VALUES` of them).
///
/// # Safety
/// The CPU has AVX-512 F, BW and BF16 (and F16C); `out` has room for the values (it may be
/// uninitialized: it is only written).
#[target_feature(enable = "avx512f,avx512bw,avx512bf16,avx512vl,f16c")]
pub(crate) unsafe fn unpack<B: Unpack, S: Sink>(blocks: &[B], out: *mut S) {
    for (b, block) in blocks.iter().enumerate() {
        for i in 0..B::VALUES / 16 {
            S::put(out.add(b * B::VALUES + 16 * i), block.unpack16(i));
        }
    }
}

/// Whether [`unpack`] runs on this CPU.
pub(crate) fn available() -> bool {
    static OK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OK.get_or_init(|| {
        is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512bf16")
            && is_x86_feature_detected!("f16c")
    })
}
