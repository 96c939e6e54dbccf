//! Exact integer GEMM kernels of the golden model.
//!
//! Operands are at most 32-bit words and products are summed exactly in i64 (the config's
//! validation proves the sums fit the declared accumulators, which are at most 48 bits). An
//! exact sum does not depend on the order it is taken in, so the result is the same whatever
//! tiling the systolic array uses; rayon splits work by output rows only for speed.

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
        let got = rows_times_rows(&x, &w);
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
