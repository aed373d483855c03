//! The k-quants' dot products (Q4_K, Q6_K) against Q8_K activation blocks: AVX2, and
//! Q6_K on 512-bit vectors where the CPU has AVX-512.

use super::super::kblocks::{Q4K, Q6K, Q8K};
use super::{f32_of, fetch_ahead, hsum, scaled_dot, Level};
use std::arch::x86_64::*;

/// Q4_K's twelve bytes of six-bit scales and minimums as sixteen bytes: the eight scales,
/// then the eight minimums (ggml's unpacking of `get_scale_min_k4`, four words at once).
#[inline(always)]
fn q4k_scales_mins(q: &[u8; 12]) -> [u32; 4] {
    const LOW6: u32 = 0x3f3f_3f3f;
    const LOW4: u32 = 0x0f0f_0f0f;
    const LOW2: u32 = 0x0303_0303;
    let w = |i: usize| u32::from_le_bytes([q[4 * i], q[4 * i + 1], q[4 * i + 2], q[4 * i + 3]]);
    let (a, b, c) = (w(0), w(1), w(2));
    [
        a & LOW6,
        (c & LOW4) | (((a >> 6) & LOW2) << 4),
        b & LOW6,
        ((c >> 4) & LOW4) | (((b >> 6) & LOW2) << 4),
    ]
}

/// Byte masks that spread 16-bit lane `i` of a 128-bit half over the whole half.
const SPREAD16: [[u8; 32]; 8] = {
    let mut m = [[0u8; 32]; 8];
    let mut i = 0;
    while i < 8 {
        let mut b = 0;
        while b < 32 {
            m[i][b] = (2 * i + b % 2) as u8;
            b += 1;
        }
        i += 1;
    }
    m
};

/// Q4_K rows against Q8_K activations: per sub-block of 32, `Σ q·y` times its scale in
/// 32-bit lanes, then `d·d_y` in f32; the minimums through the activations' sums. The
/// scales and minimums are unpacked once per block into vectors (per sub-block in scalar
/// code, they cost more than the products on a CPU without AVX-512).
#[inline(always)]
unsafe fn q4k_rows<const R: usize>(xs: [&[Q4K]; R], ys: &[Q8K]) -> [f32; R] {
    let mut acc = [_mm256_setzero_ps(); R];
    let mut acc_min = [_mm_setzero_ps(); R];
    let low = _mm256_set1_epi8(0x0F);
    for (b, y) in ys.iter().enumerate() {
        // The activations' sums per sub-block of 32, as eight 16-bit lanes.
        let bsums = _mm256_loadu_si256(y.bsums.as_ptr().cast());
        let sums = _mm_hadd_epi16(
            _mm256_castsi256_si128(bsums),
            _mm256_extracti128_si256::<1>(bsums),
        );
        for r in 0..R {
            fetch_ahead::<Q4K, R>(xs[r], b);
            let x = &xs[r][b];
            let u = q4k_scales_mins(&x.scales);
            let both = _mm256_cvtepu8_epi16(_mm_set_epi32(
                u[3] as i32,
                u[2] as i32,
                u[1] as i32,
                u[0] as i32,
            ));
            let scales = _mm256_permute2x128_si256::<0x00>(both, both);
            let mins = _mm256_extracti128_si256::<1>(both);
            let mut dot = _mm256_setzero_si256();
            for g in 0..4 {
                let q = _mm256_loadu_si256(x.qs[32 * g..].as_ptr().cast());
                let lo = _mm256_and_si256(q, low);
                let hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low);
                let spread = |i: usize| {
                    _mm256_shuffle_epi8(scales, _mm256_loadu_si256(SPREAD16[i].as_ptr().cast()))
                };
                let yl = _mm256_loadu_si256(y.qs[64 * g..].as_ptr().cast());
                let yh = _mm256_loadu_si256(y.qs[64 * g + 32..].as_ptr().cast());
                dot = _mm256_add_epi32(dot, scaled_dot(lo, yl, spread(2 * g)));
                dot = _mm256_add_epi32(dot, scaled_dot(hi, yh, spread(2 * g + 1)));
            }
            let d = f32_of(x.d) * y.d;
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(dot), acc[r]);
            let m = _mm_cvtepi32_ps(_mm_madd_epi16(mins, sums));
            acc_min[r] = _mm_fmadd_ps(_mm_set1_ps(f32_of(x.dmin) * y.d), m, acc_min[r]);
        }
    }
    std::array::from_fn(|r| hsum(acc[r]) - hsum128(acc_min[r]))
}

#[inline(always)]
unsafe fn hsum128(s: __m128) -> f32 {
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

/// `Σ_j sc_j · Σ y` over Q6_K's sub-blocks of 16: what its values' offset of 32 takes away.
#[inline(always)]
fn q6k_offset(x: &Q6K, y: &Q8K) -> i32 {
    x.scales
        .iter()
        .zip(&y.bsums)
        .map(|(&s, &b)| s as i32 * b as i32)
        .sum()
}

/// Byte masks that take byte `2s` eight times, then byte `2s + 1` eight times.
const PAIR8: [[u8; 16]; 8] = {
    let mut m = [[0u8; 16]; 8];
    let mut s = 0;
    while s < 8 {
        let mut b = 0;
        while b < 16 {
            m[s][b] = (2 * s + b / 8) as u8;
            b += 1;
        }
        s += 1;
    }
    m
};

/// Q6_K rows against Q8_K activations: the six-bit values rebuilt 32 at a time from `ql` and
/// `qh`, `Σ q·y` per sub-block of 16 times its signed scale, less 32 times the scaled sums of
/// the activations (in the same 32-bit lanes).
#[inline(always)]
unsafe fn q6k_rows<const R: usize>(xs: [&[Q6K]; R], ys: &[Q8K]) -> [f32; R] {
    let mut acc = [_mm256_setzero_ps(); R];
    let (low4, low2) = (_mm256_set1_epi8(0x0F), _mm256_set1_epi8(0x03));
    for (b, y) in ys.iter().enumerate() {
        let bsums = _mm256_loadu_si256(y.bsums.as_ptr().cast());
        for r in 0..R {
            fetch_ahead::<Q6K, R>(xs[r], b);
            let x = &xs[r][b];
            let sc = _mm_loadu_si128(x.scales.as_ptr().cast());
            // 32 · Σ_j sc_j · bsums_j, spread over the lanes the products sum into.
            let mut dot = _mm256_sub_epi32(
                _mm256_setzero_si256(),
                _mm256_slli_epi32::<5>(_mm256_madd_epi16(_mm256_cvtepi8_epi16(sc), bsums)),
            );
            for n in 0..2 {
                let ql0 = _mm256_loadu_si256(x.ql[64 * n..].as_ptr().cast());
                let ql1 = _mm256_loadu_si256(x.ql[64 * n + 32..].as_ptr().cast());
                let qh = _mm256_loadu_si256(x.qh[32 * n..].as_ptr().cast());
                let high = |shift: i32| -> __m256i {
                    let h = match shift {
                        0 => qh,
                        2 => _mm256_srli_epi16(qh, 2),
                        4 => _mm256_srli_epi16(qh, 4),
                        _ => _mm256_srli_epi16(qh, 6),
                    };
                    _mm256_slli_epi16(_mm256_and_si256(h, low2), 4)
                };
                let v = [
                    _mm256_or_si256(_mm256_and_si256(ql0, low4), high(0)),
                    _mm256_or_si256(_mm256_and_si256(ql1, low4), high(2)),
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low4), high(4)),
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low4), high(6)),
                ];
                for (i, v) in v.into_iter().enumerate() {
                    // Segment s of 32 values: sub-blocks 2s and 2s + 1 of 16.
                    let s = 4 * n + i;
                    let pick = _mm_loadu_si128(PAIR8[s].as_ptr().cast());
                    let scales = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc, pick));
                    let yq = _mm256_loadu_si256(y.qs[32 * s..].as_ptr().cast());
                    dot = _mm256_add_epi32(dot, scaled_dot(v, yq, scales));
                }
            }
            let d = f32_of(x.d) * y.d;
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(dot), acc[r]);
        }
    }
    std::array::from_fn(|r| hsum(acc[r]))
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4k_avx2<const R: usize>(xs: [&[Q4K]; R], ys: &[Q8K]) -> [f32; R] {
    q4k_rows(xs, ys)
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q6k_avx2<const R: usize>(xs: [&[Q6K]; R], ys: &[Q8K]) -> [f32; R] {
    q6k_rows(xs, ys)
}

/// A 512-bit vector of 16-bit lanes: `a` in the low half, `b` in the high.
#[inline(always)]
unsafe fn halves16(a: i16, b: i16) -> __m512i {
    _mm512_inserti64x4::<1>(
        _mm512_castsi256_si512(_mm256_set1_epi16(a)),
        _mm256_set1_epi16(b),
    )
}

/// [`q6k_rows`] on 512-bit vectors: two 32-value segments a product.
#[inline(always)]
unsafe fn q6k_rows512<const R: usize>(xs: [&[Q6K]; R], ys: &[Q8K]) -> [f32; R] {
    let mut acc = [_mm512_setzero_ps(); R];
    let mut offsets = [0f32; R];
    let (low4, low2) = (_mm512_set1_epi8(0x0F), _mm512_set1_epi8(0x03));
    // The two bits of qh for the first segment of a pair in the low half, the second's in
    // the high half: shifts 0 | 2, and 4 | 6.
    let shifts = [halves16(0, 2), halves16(4, 6)];
    // Lanes of 16-bit scales: sub-blocks 4k .. 4k + 4, each over 8 lanes.
    let picks: [__m512i; 4] = std::array::from_fn(|k| {
        let idx: [i16; 32] = std::array::from_fn(|l| (4 * k + l / 8) as i16);
        _mm512_loadu_si512(idx.as_ptr().cast())
    });
    for (b, y) in ys.iter().enumerate() {
        let yq: [__m512i; 4] =
            std::array::from_fn(|k| _mm512_loadu_si512(y.qs[64 * k..].as_ptr().cast()));
        for r in 0..R {
            fetch_ahead::<Q6K, R>(xs[r], b);
            let x = &xs[r][b];
            let sc = _mm512_castsi256_si512(_mm256_cvtepi8_epi16(_mm_loadu_si128(
                x.scales.as_ptr().cast(),
            )));
            let mut dot = _mm512_setzero_si512();
            for n in 0..2 {
                let ql = _mm512_loadu_si512(x.ql[64 * n..].as_ptr().cast());
                let qh = _mm512_broadcast_i64x4(_mm256_loadu_si256(x.qh[32 * n..].as_ptr().cast()));
                let high = |s: __m512i| {
                    _mm512_slli_epi16::<4>(_mm512_and_si512(_mm512_srlv_epi16(qh, s), low2))
                };
                let v = [
                    _mm512_or_si512(_mm512_and_si512(ql, low4), high(shifts[0])),
                    _mm512_or_si512(
                        _mm512_and_si512(_mm512_srli_epi16::<4>(ql), low4),
                        high(shifts[1]),
                    ),
                ];
                for (i, v) in v.into_iter().enumerate() {
                    let k = 2 * n + i;
                    let scales = _mm512_permutexvar_epi16(picks[k], sc);
                    dot = _mm512_add_epi32(
                        dot,
                        _mm512_madd_epi16(_mm512_maddubs_epi16(v, yq[k]), scales),
                    );
                }
            }
            let offset = q6k_offset(x, y);
            let d = f32_of(x.d) * y.d;
            acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(dot), acc[r]);
            offsets[r] += d * 32.0 * offset as f32;
        }
    }
    std::array::from_fn(|r| _mm512_reduce_add_ps(acc[r]) - offsets[r])
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
unsafe fn q6k_avx512<const R: usize>(xs: [&[Q6K]; R], ys: &[Q8K]) -> [f32; R] {
    q6k_rows512(xs, ys)
}

macro_rules! k_entry {
    ($one:ident, $four:ident, $w:ty, $avx2:ident, $avx512:ident) => {
        /// One row's dot product.
        pub(in crate::kernels::quantized) unsafe fn $one(
            level: Level,
            xs: &[$w],
            ys: &[Q8K],
        ) -> f32 {
            let len = xs.len().min(ys.len());
            match level {
                Level::Avx2 => $avx2([&xs[..len]], &ys[..len])[0],
                Level::Vnni => $avx512([&xs[..len]], &ys[..len])[0],
            }
        }
        /// Four rows' dot products.
        pub(in crate::kernels::quantized) unsafe fn $four(
            level: Level,
            xs: [&[$w]; 4],
            ys: &[Q8K],
        ) -> [f32; 4] {
            let len = xs.iter().map(|x| x.len()).fold(ys.len(), usize::min);
            match level {
                Level::Avx2 => $avx2(xs.map(|x| &x[..len]), &ys[..len]),
                Level::Vnni => $avx512(xs.map(|x| &x[..len]), &ys[..len]),
            }
        }
    };
}

// Q4_K stays on 256-bit vectors: a 512-bit form measured slower (14 against 21 GB/s from
// cache), the multiplies being on one port either way.
k_entry!(dot_q4k, dot4_q4k, Q4K, q4k_avx2, q4k_avx2);
k_entry!(dot_q6k, dot4_q6k, Q6K, q6k_avx2, q6k_avx512);
