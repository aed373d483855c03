//! GGUF's Q4_1, Q5_0 and Q5_1 blocks and the 8-bit activation blocks they are multiplied
//! with (Q8_0, Q8_1), laid out as ggml stores them, with SIMD dot products.
//!
//! A block holds 32 values. Q4_1: `x = d·q + m`, q in 0..15, two per byte (values 0..15 in
//! the low nibbles, 16..31 in the high ones). Q5_0: `x = d·(q − 16)`, q in 0..31, its fifth
//! bits in `qh` (bit j for value j). Q5_1: `x = d·q + m` with Q5_0's layout. The activations
//! are quantized per block to `y = d·q` (q in −127..127; Q8_1 also keeps `s = d·Σq`, which
//! carries a block's `m`), as ggml's `quantize_row_q8_{0,1}` do, so a block's dot product is
//! an integer sum times the two scales: `Σ x·y = dₓ·d_y·Σ qₓ·q_y (+ mₓ·s_y)`.

use candle_core::quantized::{k_quants::GgmlType, GgmlDType};
use half::f16;

/// Values per block.
pub(crate) const QK: usize = 32;

/// ggml's `block_q4_1`.
#[derive(Debug, Clone, PartialEq)]
#[repr(C)]
pub struct Q4_1 {
    pub(crate) d: f16,
    pub(crate) m: f16,
    pub(crate) qs: [u8; QK / 2],
}

/// ggml's `block_q5_0`.
#[derive(Debug, Clone, PartialEq)]
#[repr(C)]
pub struct Q5_0 {
    pub(crate) d: f16,
    pub(crate) qh: [u8; 4],
    pub(crate) qs: [u8; QK / 2],
}

/// ggml's `block_q5_1`.
#[derive(Debug, Clone, PartialEq)]
#[repr(C)]
pub struct Q5_1 {
    pub(crate) d: f16,
    pub(crate) m: f16,
    pub(crate) qh: [u8; 4],
    pub(crate) qs: [u8; QK / 2],
}

/// ggml's `block_q8_0`: an activation block.
#[derive(Debug, Clone, PartialEq)]
#[repr(C)]
pub struct Q8_0 {
    pub(crate) d: f16,
    pub(crate) qs: [i8; QK],
}

/// ggml's `block_q8_1`: an activation block with `s = d·Σq`.
#[derive(Debug, Clone, PartialEq)]
#[repr(C)]
pub struct Q8_1 {
    pub(crate) d: f16,
    pub(crate) s: f16,
    pub(crate) qs: [i8; QK],
}

const _: () = assert!(std::mem::size_of::<Q4_1>() == 20);
const _: () = assert!(std::mem::size_of::<Q5_0>() == 22);
const _: () = assert!(std::mem::size_of::<Q5_1>() == 24);
const _: () = assert!(std::mem::size_of::<Q8_0>() == 34);
const _: () = assert!(std::mem::size_of::<Q8_1>() == 36);

/// `count` blocks of `T` over a quantized tensor's bytes (checked: length and alignment).
pub(crate) fn cast<T: GgmlType>(bytes: &[u8], count: usize) -> candle_core::Result<&[T]> {
    let size = std::mem::size_of::<T>();
    if bytes.len() != count * size {
        candle_core::bail!(
            "{:?}: {} bytes for {count} blocks of {size}",
            T::DTYPE,
            bytes.len()
        );
    }
    if bytes.as_ptr().align_offset(std::mem::align_of::<T>()) != 0 {
        candle_core::bail!("{:?}: blocks not aligned", T::DTYPE);
    }
    // SAFETY: `T` is a `repr(C)` struct of f16s and byte arrays, valid for any bits; the
    // length and alignment were checked above.
    Ok(unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<T>(), count) })
}

/// Block `i`'s 32 values `q` (the 4-bit part and, with `qh`, the fifth bit) as integers.
fn nibbles(qs: &[u8; QK / 2], qh: Option<[u8; 4]>) -> [i32; QK] {
    let h = qh.map_or(0, u32::from_le_bytes);
    std::array::from_fn(|j| {
        let lo = if j < QK / 2 {
            qs[j] & 0x0F
        } else {
            qs[j - QK / 2] >> 4
        };
        lo as i32 | (((h >> j) & 1) as i32) << 4
    })
}

/// ggml's `quantize_row_q8_{0,1}` of one block: the scale, its f32 value and the integers.
fn quantize(x: &[f32]) -> (f32, [i8; QK]) {
    let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    (d, std::array::from_fn(|j| (x[j] * id).round() as i8))
}

/// Scalar `Σ q·y` of one block.
fn sum_i(q: &[i32; QK], y: &[i8; QK]) -> i32 {
    q.iter().zip(y).map(|(&a, &b)| a * b as i32).sum()
}

macro_rules! activation_block {
    ($t:ty, $dtype:expr, $sum:expr, $dot:expr, $dot4:expr) => {
        impl GgmlType for $t {
            const DTYPE: GgmlDType = $dtype;
            const BLCK_SIZE: usize = QK;
            type VecDotType = $t;

            fn to_float(xs: &[Self], ys: &mut [f32]) {
                for (b, y) in xs.iter().zip(ys.chunks_exact_mut(QK)) {
                    for (v, &q) in y.iter_mut().zip(&b.qs) {
                        *v = q as f32 * b.d.to_f32();
                    }
                }
            }

            fn from_float(xs: &[f32], ys: &mut [Self]) {
                for (b, x) in ys.iter_mut().zip(xs.chunks_exact(QK)) {
                    let (d, qs) = quantize(x);
                    let sum: i32 = qs.iter().map(|&q| q as i32).sum();
                    *b = $sum(d, sum, qs);
                }
            }

            fn vec_dot(n: usize, xs: &[Self], ys: &[Self]) -> f32 {
                $dot(n, xs, ys).unwrap_or_else(|| Self::vec_dot_unopt(n, xs, ys))
            }

            fn vec_dot_4(
                n: usize,
                x0: &[Self],
                x1: &[Self],
                x2: &[Self],
                x3: &[Self],
                ys: &[Self],
            ) -> (f32, f32, f32, f32) {
                match $dot4(n, [x0, x1, x2, x3], ys) {
                    Some([a, b, c, d]) => (a, b, c, d),
                    None => (
                        Self::vec_dot_unopt(n, x0, ys),
                        Self::vec_dot_unopt(n, x1, ys),
                        Self::vec_dot_unopt(n, x2, ys),
                        Self::vec_dot_unopt(n, x3, ys),
                    ),
                }
            }

            fn vec_dot_unopt(_n: usize, xs: &[Self], ys: &[Self]) -> f32 {
                xs.iter()
                    .zip(ys)
                    .map(|(a, b)| {
                        let s: i32 =
                            a.qs.iter()
                                .zip(&b.qs)
                                .map(|(&p, &q)| p as i32 * q as i32)
                                .sum();
                        s as f32 * a.d.to_f32() * b.d.to_f32()
                    })
                    .sum()
            }
        }
    };
}

/// The SIMD dot product of Q8_0 rows (as weights), where the CPU has it.
fn simd_q8_0(_n: usize, xs: &[Q8_0], ys: &[Q8_0]) -> Option<f32> {
    #[cfg(target_arch = "x86_64")]
    if let Some(level) = super::x86::level() {
        // SAFETY: `level` checked the CPU features the kernel is compiled for.
        return Some(unsafe { super::x86::dot_q8_0(level, xs, ys) });
    }
    None
}

/// [`simd_q8_0`] of four rows.
fn simd4_q8_0(_n: usize, xs: [&[Q8_0]; 4], ys: &[Q8_0]) -> Option<[f32; 4]> {
    #[cfg(target_arch = "x86_64")]
    if let Some(level) = super::x86::level() {
        // SAFETY: as in `simd_q8_0`.
        return Some(unsafe { super::x86::dot4_q8_0(level, xs, ys) });
    }
    None
}

/// Q8_1 is only ever an activation: no SIMD dot product of two of them.
fn no_simd(_n: usize, _xs: &[Q8_1], _ys: &[Q8_1]) -> Option<f32> {
    None
}

fn no_simd4(_n: usize, _xs: [&[Q8_1]; 4], _ys: &[Q8_1]) -> Option<[f32; 4]> {
    None
}

activation_block!(
    Q8_0,
    GgmlDType::Q8_0,
    |d: f32, _sum: i32, qs| Q8_0 {
        d: f16::from_f32(d),
        qs
    },
    simd_q8_0,
    simd4_q8_0
);
activation_block!(
    Q8_1,
    GgmlDType::Q8_1,
    |d: f32, sum: i32, qs| Q8_1 {
        d: f16::from_f32(d),
        s: f16::from_f32(sum as f32 * d),
        qs
    },
    no_simd,
    no_simd4
);

/// A weight block type: how to read its integers, scale and minimum.
pub(crate) trait WeightBlock {
    /// The block's 32 integers.
    fn ints(&self) -> [i32; QK];
    /// `d`.
    fn scale(&self) -> f32;
    /// The constant added to every value (`m`), or the offset subtracted from q (Q5_0: 16).
    fn offset(&self) -> Offset;
}

/// How a block's values are offset from `d·q`.
pub(crate) enum Offset {
    /// `x = d·q + m`.
    Min(f32),
    /// `x = d·(q − o)`.
    Centered(i32),
}

impl WeightBlock for Q4_1 {
    fn ints(&self) -> [i32; QK] {
        nibbles(&self.qs, None)
    }
    fn scale(&self) -> f32 {
        self.d.to_f32()
    }
    fn offset(&self) -> Offset {
        Offset::Min(self.m.to_f32())
    }
}

impl WeightBlock for Q5_0 {
    fn ints(&self) -> [i32; QK] {
        nibbles(&self.qs, Some(self.qh))
    }
    fn scale(&self) -> f32 {
        self.d.to_f32()
    }
    fn offset(&self) -> Offset {
        Offset::Centered(16)
    }
}

impl WeightBlock for Q5_1 {
    fn ints(&self) -> [i32; QK] {
        nibbles(&self.qs, Some(self.qh))
    }
    fn scale(&self) -> f32 {
        self.d.to_f32()
    }
    fn offset(&self) -> Offset {
        Offset::Min(self.m.to_f32())
    }
}

/// The scalar dot product of weight blocks with Q8_0 or Q8_1 activation blocks
/// (`s` = the activation block's `d·Σq`, needed by blocks with a minimum).
fn dot_scalar<W: WeightBlock>(xs: &[W], ys: impl Iterator<Item = (f32, f32, [i8; QK])>) -> f32 {
    xs.iter()
        .zip(ys)
        .map(|(x, (yd, ys, yq))| {
            let q = x.ints();
            match x.offset() {
                Offset::Min(m) => sum_i(&q, &yq) as f32 * x.scale() * yd + m * ys,
                Offset::Centered(o) => {
                    let sy: i32 = yq.iter().map(|&v| v as i32).sum();
                    (sum_i(&q, &yq) - o * sy) as f32 * x.scale() * yd
                }
            }
        })
        .sum()
}

/// `vec_dot` and `vec_dot_4` of a weight block type through its SIMD kernels `$simd` and
/// `$simd4` (in `x86.rs`), and its scalar `vec_dot_unopt` where the CPU has none.
macro_rules! simd_dots {
    ($act:ty, $simd:ident, $simd4:ident) => {
        fn vec_dot(n: usize, xs: &[Self], ys: &[$act]) -> f32 {
            #[cfg(target_arch = "x86_64")]
            if let Some(level) = super::x86::level() {
                // SAFETY: `level` checked the CPU features the kernel is compiled for.
                return unsafe { super::x86::$simd(level, xs, ys) };
            }
            Self::vec_dot_unopt(n, xs, ys)
        }

        fn vec_dot_4(
            n: usize,
            x0: &[Self],
            x1: &[Self],
            x2: &[Self],
            x3: &[Self],
            ys: &[$act],
        ) -> (f32, f32, f32, f32) {
            #[cfg(target_arch = "x86_64")]
            if let Some(level) = super::x86::level() {
                // SAFETY: as in `vec_dot`.
                let [a, b, c, d] = unsafe { super::x86::$simd4(level, [x0, x1, x2, x3], ys) };
                return (a, b, c, d);
            }
            (
                Self::vec_dot_unopt(n, x0, ys),
                Self::vec_dot_unopt(n, x1, ys),
                Self::vec_dot_unopt(n, x2, ys),
                Self::vec_dot_unopt(n, x3, ys),
            )
        }
    };
}
pub(crate) use simd_dots;

macro_rules! weight_block {
    ($t:ty, $dtype:expr, $act:ty, $simd:ident, $simd4:ident) => {
        impl GgmlType for $t {
            const DTYPE: GgmlDType = $dtype;
            const BLCK_SIZE: usize = QK;
            type VecDotType = $act;

            fn to_float(xs: &[Self], ys: &mut [f32]) {
                for (b, y) in xs.iter().zip(ys.chunks_exact_mut(QK)) {
                    let q = b.ints();
                    for (v, &q) in y.iter_mut().zip(&q) {
                        *v = match b.offset() {
                            Offset::Min(m) => q as f32 * b.scale() + m,
                            Offset::Centered(o) => (q - o) as f32 * b.scale(),
                        };
                    }
                }
            }

            fn from_float(_xs: &[f32], _ys: &mut [Self]) {
                // Weights are read from files, never quantized here.
                unimplemented!("quantizing to {:?}", $dtype)
            }

            simd_dots!($act, $simd, $simd4);

            fn vec_dot_unopt(_n: usize, xs: &[Self], ys: &[$act]) -> f32 {
                dot_scalar(xs, ys.iter().map(|y| (y.d.to_f32(), act_sum(y), y.qs)))
            }
        }
    };
}

/// An activation block's `s` (0 for Q8_0, which has none and needs none).
trait ActSum {
    fn s(&self) -> f32;
}
impl ActSum for Q8_0 {
    fn s(&self) -> f32 {
        0.0
    }
}
impl ActSum for Q8_1 {
    fn s(&self) -> f32 {
        self.s.to_f32()
    }
}
fn act_sum(y: &impl ActSum) -> f32 {
    y.s()
}

weight_block!(Q4_1, GgmlDType::Q4_1, Q8_1, dot_q4_1, dot4_q4_1);
weight_block!(Q5_0, GgmlDType::Q5_0, Q8_0, dot_q5_0, dot4_q5_0);
weight_block!(Q5_1, GgmlDType::Q5_1, Q8_1, dot_q5_1, dot4_q5_1);

#[cfg(test)]
mod tests {
    use super::*;

    fn blocks_of<T: GgmlType>(bytes: &[u8]) -> Vec<T> {
        let n = bytes.len() / std::mem::size_of::<T>();
        let mut out: Vec<T> = (0..n).map(|_| T::zeros()).collect();
        // SAFETY: as in `cast`: plain-data blocks, the destination sized for `n` of them.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                out.as_mut_ptr().cast::<u8>(),
                n * std::mem::size_of::<T>(),
            );
        }
        out
    }

    /// Pseudo-random bytes for blocks, with f16 scales kept in a sane range.
    fn weights<T: GgmlType>(count: usize, seed: u64) -> Vec<T> {
        let size = std::mem::size_of::<T>();
        let mut s = seed;
        let mut bytes: Vec<u8> = (0..count * size)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (s >> 33) as u8
            })
            .collect();
        for b in bytes.chunks_exact_mut(size) {
            let (d, m) = (b[5] % 7, b[6] % 5);
            b[0..2].copy_from_slice(&f16::from_f32(0.013 + d as f32 * 0.002).to_le_bytes());
            if !matches!(T::DTYPE, GgmlDType::Q5_0 | GgmlDType::Q8_0) {
                b[2..4].copy_from_slice(&f16::from_f32(-0.1 + m as f32 * 0.03).to_le_bytes());
            }
        }
        blocks_of(&bytes)
    }

    /// The SIMD dot products (one row and four at once) equal the scalar ones, for every
    /// block type, on random blocks; the scalar one equals the dequantized values' dot
    /// product with the dequantized activations.
    #[test]
    fn simd_dots_equal_scalar_dots() {
        fn check<T: GgmlType>() {
            let nb = 18;
            let x: Vec<f32> = (0..nb * QK)
                .map(|i| ((i as f32) * 0.37).sin() * 1.5)
                .collect();
            let mut y: Vec<T::VecDotType> = (0..nb).map(|_| T::VecDotType::zeros()).collect();
            T::VecDotType::from_float(&x, &mut y);
            let rows: Vec<Vec<T>> = (0..4).map(|r| weights::<T>(nb, r + 11)).collect();
            for r in &rows {
                let fast = T::vec_dot(nb * QK, r, &y);
                let slow = T::vec_dot_unopt(nb * QK, r, &y);
                assert!(
                    (fast - slow).abs() <= 1e-4 * slow.abs().max(1.0),
                    "{:?}: {fast} vs {slow}",
                    T::DTYPE
                );
                let mut w = vec![0f32; nb * QK];
                T::to_float(r, &mut w);
                let mut yf = vec![0f32; nb * QK];
                T::VecDotType::to_float(&y, &mut yf);
                let dense: f32 = w.iter().zip(&yf).map(|(a, b)| a * b).sum();
                assert!(
                    (dense - slow).abs() <= 2e-3 * dense.abs().max(1.0),
                    "{:?}: {dense} vs {slow}",
                    T::DTYPE
                );
                assert!(slow.abs() > 0.01, "a dot product that is not zero");
            }
            let (a, b, c, d) = T::vec_dot_4(nb * QK, &rows[0], &rows[1], &rows[2], &rows[3], &y);
            for (got, r) in [a, b, c, d].iter().zip(&rows) {
                let want = T::vec_dot_unopt(nb * QK, r, &y);
                assert!(
                    (got - want).abs() <= 1e-4 * want.abs().max(1.0),
                    "{:?} x4",
                    T::DTYPE
                );
            }
        }
        check::<Q4_1>();
        check::<Q5_0>();
        check::<Q5_1>();
        check::<Q8_0>();
    }
}
