//! Products of small row-major f32 matrices on the calling thread (the `gemm` crate's
//! kernels, AVX-512 here), for work already spread across the cores one task per head.

/// A row-major matrix `rows × cols` as stored, read as itself or as its transpose.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mat<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    transposed: bool,
}

impl<'a> Mat<'a> {
    /// `data` as a `rows × cols` matrix.
    pub(crate) fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        assert!(
            data.len() >= rows * cols,
            "{rows}×{cols} from {}",
            data.len()
        );
        Mat {
            data,
            rows,
            cols,
            transposed: false,
        }
    }

    /// Its transpose (`cols × rows`), read in place.
    pub(crate) fn t(self) -> Self {
        Mat {
            transposed: !self.transposed,
            ..self
        }
    }

    /// (rows, cols) as read.
    fn shape(&self) -> (usize, usize) {
        if self.transposed {
            (self.cols, self.rows)
        } else {
            (self.rows, self.cols)
        }
    }

    /// (row stride, column stride) as read.
    fn strides(&self) -> (isize, isize) {
        let c = self.cols as isize;
        if self.transposed {
            (1, c)
        } else {
            (c, 1)
        }
    }
}

/// `c = a · b`, or `c += a · b` with `add`; `c` row-major `(a's rows × b's cols)`.
pub(crate) fn product(a: Mat, b: Mat, c: &mut [f32], add: bool) {
    let ((m, k), (k2, n)) = (a.shape(), b.shape());
    assert_eq!(k, k2, "inner sizes {k} and {k2}");
    assert!(c.len() >= m * n, "{m}×{n} into {}", c.len());
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !add {
            c[..m * n].fill(0.0);
        }
        return;
    }
    let ((a_rs, a_cs), (b_rs, b_cs)) = (a.strides(), b.strides());
    // SAFETY: every index the kernel reads or writes, `i·rs + j·cs` for `i` below the rows
    // and `j` below the columns of each operand as read, lies inside its slice: checked above
    // (`Mat::new` and the lengths of `c`).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            add,
            a.data.as_ptr(),
            a_cs,
            a_rs,
            b.data.as_ptr(),
            b_cs,
            b_rs,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(
        a: &[f32],
        (m, k): (usize, usize),
        at: bool,
        b: &[f32],
        n: usize,
        bt: bool,
    ) -> Vec<f32> {
        let ai = |i: usize, p: usize| if at { a[p * m + i] } else { a[i * k + p] };
        let bi = |p: usize, j: usize| if bt { b[j * k + p] } else { b[p * n + j] };
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| ai(i, p) * bi(p, j)).sum();
            }
        }
        c
    }

    #[test]
    fn products_of_every_layout_match_the_sums() {
        let (m, k, n) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.91).cos()).collect();
        for (at, bt) in [(false, false), (true, false), (false, true), (true, true)] {
            let am = if at {
                Mat::new(&a, k, m).t()
            } else {
                Mat::new(&a, m, k)
            };
            let bm = if bt {
                Mat::new(&b, n, k).t()
            } else {
                Mat::new(&b, k, n)
            };
            let want = naive(&a, (m, k), at, &b, n, bt);
            let mut c = vec![1.0; m * n];
            product(am, bm, &mut c, false);
            for (x, y) in c.iter().zip(&want) {
                assert!((x - y).abs() < 1e-5, "{at} {bt}: {x} vs {y}");
            }
            product(am, bm, &mut c, true);
            for (x, y) in c.iter().zip(&want) {
                assert!(
                    (x - 2.0 * y).abs() < 1e-5,
                    "{at} {bt} (add): {x} vs {}",
                    2.0 * y
                );
            }
        }
    }
}
