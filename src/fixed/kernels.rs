//! Exact integer GEMM kernels of the golden model.
//!
//! Operands are raw fixed-point words and every sum is exact (the config's validation proves
//! the sums fit the declared accumulators, at most 48 bits). An exact sum does not depend on
//! the order it is taken in, so the result is the same whatever tiling the systolic array uses.
//!
//! Speed: the products go through `matrixmultiply`'s f64 GEMM. This is exact, not an
//! approximation: every operand is an integer below 2^32 and every partial sum an integer of
//! magnitude below 2^47 (the accumulator bound), and f64 represents every integer below 2^53,
//! so no product, addition or fused multiply-add ever rounds. `dot` is the plain integer
//! reference the tests compare against.

use rayon::prelude::*;

/// A row-major matrix of raw fixed-point words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IMat {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<i32>,
}

impl IMat {
    pub fn zeros(rows: usize, cols: usize) -> IMat {
        IMat {
            rows,
            cols,
            data: vec![0; rows * cols],
        }
    }

    pub fn row(&self, r: usize) -> &[i32] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }

    pub fn row_mut(&mut self, r: usize) -> &mut [i32] {
        &mut self.data[r * self.cols..(r + 1) * self.cols]
    }

    pub fn transpose(&self) -> IMat {
        let mut t = IMat::zeros(self.cols, self.rows);
        for r in 0..self.rows {
            for c in 0..self.cols {
                t.data[c * self.rows + r] = self.data[r * self.cols + c];
            }
        }
        t
    }
}

/// Σ a_i b_i, exact. Written so the compiler vectorises the widening multiply.
#[inline]
pub fn dot(a: &[i32], b: &[i32]) -> i64 {
    let mut acc = [0i64; 4];
    let chunks = a.len() / 4;
    for i in 0..chunks {
        for (l, s) in acc.iter_mut().enumerate() {
            *s += i64::from(a[4 * i + l]) * i64::from(b[4 * i + l]);
        }
    }
    let mut s: i64 = acc.iter().sum();
    for i in chunks * 4..a.len() {
        s += i64::from(a[i]) * i64::from(b[i]);
    }
    s
}

/// `out[r][o] = Σ_j x[r][j] · w[o][j]`: every row of `x` against every row of `w`.
pub fn rows_times_rows(x: &IMat, w: &IMat) -> Vec<i64> {
    gemm_exact(x, false, w, true)
}

/// `op(a) · op(b)` exactly, where `op` transposes when asked; row-major result.
pub fn gemm_exact(a: &IMat, ta: bool, b: &IMat, tb: bool) -> Vec<i64> {
    let (m, k) = if ta {
        (a.cols, a.rows)
    } else {
        (a.rows, a.cols)
    };
    let (k2, n) = if tb {
        (b.cols, b.rows)
    } else {
        (b.rows, b.cols)
    };
    assert_eq!(k, k2, "inner dimensions differ");
    let mut out = vec![0f64; m * n];
    if m > 0 && n > 0 {
        let af: Vec<f64> = a.data.iter().map(|&v| f64::from(v)).collect();
        let bf: Vec<f64> = b.data.iter().map(|&v| f64::from(v)).collect();
        let (rsa, csa) = if ta {
            (1, a.cols as isize)
        } else {
            (a.cols as isize, 1)
        };
        let (rsb, csb) = if tb {
            (1, b.cols as isize)
        } else {
            (b.cols as isize, 1)
        };
        // SAFETY: shapes were checked above, so every index dgemm forms lies inside the
        // buffers; `out` is a fresh allocation that aliases neither input.
        unsafe {
            matrixmultiply::dgemm(
                m,
                k,
                n,
                1.0,
                af.as_ptr(),
                rsa,
                csa,
                bf.as_ptr(),
                rsb,
                csb,
                0.0,
                out.as_mut_ptr(),
                n as isize,
                1,
            );
        }
    }
    out.into_iter().map(|v| v as i64).collect()
}

/// The same product with integer arithmetic only (reference for tests).
pub fn rows_times_rows_int(x: &IMat, w: &IMat) -> Vec<i64> {
    assert_eq!(x.cols, w.cols, "inner dimensions differ");
    let mut out = vec![0i64; x.rows * w.rows];
    if w.rows == 0 {
        return out;
    }
    out.par_chunks_mut(w.rows).enumerate().for_each(|(r, o)| {
        let xr = x.row(r);
        for (oi, v) in o.iter_mut().enumerate() {
            *v = dot(xr, w.row(oi));
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_gemm_is_exact_at_the_accumulator_bound() {
        // 18-bit operands, 1024-term sums: |sum| up to 2^44, inside the 2^47 bound.
        let mut s = 12345u64;
        let mut next = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) as i64 % (1 << 17)) as i32
        };
        let x = IMat {
            rows: 7,
            cols: 1024,
            data: (0..7 * 1024).map(|_| next()).collect(),
        };
        let mut w = IMat {
            rows: 5,
            cols: 1024,
            data: (0..5 * 1024).map(|_| next()).collect(),
        };
        w.data[0..1024].iter_mut().for_each(|v| *v = -(1 << 17));
        let mut x2 = x.clone();
        x2.data[0..1024].iter_mut().for_each(|v| *v = -(1 << 17));
        assert_eq!(rows_times_rows(&x2, &w), rows_times_rows_int(&x2, &w));
        assert_eq!(rows_times_rows(&x, &w), rows_times_rows_int(&x, &w));
        let xt = x.transpose();
        let wt = w.transpose();
        assert_eq!(
            gemm_exact(&xt, true, &wt, false),
            rows_times_rows_int(&x, &w)
        );
    }

    #[test]
    fn rows_times_rows_is_the_exact_product() {
        let x = IMat {
            rows: 3,
            cols: 5,
            data: (0..15).map(|v| (v * 7919 % 23) - 11).collect(),
        };
        let w = IMat {
            rows: 2,
            cols: 5,
            data: vec![i32::MAX, i32::MIN, 1, -1, 0, 3, 4, 5, 6, 7],
        };
        let got = rows_times_rows_int(&x, &w);
        for r in 0..3 {
            for o in 0..2 {
                let want: i128 = (0..5)
                    .map(|j| i128::from(x.row(r)[j]) * i128::from(w.row(o)[j]))
                    .sum();
                assert_eq!(i128::from(got[r * 2 + o]), want);
            }
        }
        assert_eq!(x.transpose().transpose(), x);
    }
}
