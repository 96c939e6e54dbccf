//! Dense f32 matrices and the GEMM every float learner uses.
//!
//! The products go through the `gemm` crate (runtime-dispatched SIMD kernels, rayon threads
//! for large products): each output element is computed by one thread in a fixed order, so
//! results are bit-identical run to run (the determinism the reports promise).

/// A row-major matrix.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Mat {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

impl Mat {
    pub fn zeros(rows: usize, cols: usize) -> Mat {
        Mat {
            rows,
            cols,
            data: vec![0.0; rows * cols],
        }
    }

    pub fn from_fn(rows: usize, cols: usize, mut f: impl FnMut(usize, usize) -> f32) -> Mat {
        let mut data = Vec::with_capacity(rows * cols);
        for r in 0..rows {
            for c in 0..cols {
                data.push(f(r, c));
            }
        }
        Mat { rows, cols, data }
    }

    pub fn row(&self, r: usize) -> &[f32] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }

    pub fn row_mut(&mut self, r: usize) -> &mut [f32] {
        &mut self.data[r * self.cols..(r + 1) * self.cols]
    }

    /// Resize in place keeping the allocation; the contents are unspecified (whatever the
    /// buffer held), for outputs that are overwritten whole.
    pub fn reshape(&mut self, rows: usize, cols: usize) {
        self.rows = rows;
        self.cols = cols;
        self.data.resize(rows * cols, 0.0);
    }

    /// Resize in place and zero, so buffers can be reused across batches.
    pub fn reshape_zeroed(&mut self, rows: usize, cols: usize) {
        self.rows = rows;
        self.cols = cols;
        self.data.clear();
        self.data.resize(rows * cols, 0.0);
    }
}

/// Which operand layout a GEMM reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Use the matrix as stored.
    N,
    /// Use its transpose.
    T,
}

/// `c = alpha * op(a) * op(b) + beta * c`, shapes checked.
pub fn gemm(alpha: f32, a: &Mat, op_a: Op, b: &Mat, op_b: Op, beta: f32, c: &mut Mat) {
    let (m, k) = match op_a {
        Op::N => (a.rows, a.cols),
        Op::T => (a.cols, a.rows),
    };
    let (k2, n) = match op_b {
        Op::N => (b.rows, b.cols),
        Op::T => (b.cols, b.rows),
    };
    assert_eq!(k, k2, "gemm inner dimensions differ");
    assert_eq!((c.rows, c.cols), (m, n), "gemm output shape");
    if m == 0 || n == 0 {
        return;
    }
    let (rsa, csa) = match op_a {
        Op::N => (a.cols as isize, 1),
        Op::T => (1, a.cols as isize),
    };
    let (rsb, csb) = match op_b {
        Op::N => (b.cols as isize, 1),
        Op::T => (1, b.cols as isize),
    };
    if k == 0 {
        // An empty sum: c = beta · c.
        c.data
            .iter_mut()
            .for_each(|v| *v = if beta == 0.0 { 0.0 } else { beta * *v });
        return;
    }
    let threads = threads_for(m, n, k);
    // SAFETY: the shapes were checked above, so every index the kernel forms with these
    // strides lies inside the three slices; `c` is borrowed mutably and aliases neither input.
    // The crate's convention is dst = alpha·dst + beta·lhs·rhs, so our (alpha, beta) swap.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.data.as_mut_ptr(),
            1,
            c.cols as isize,
            beta != 0.0,
            a.data.as_ptr(),
            csa,
            rsa,
            b.data.as_ptr(),
            csb,
            rsb,
            beta,
            alpha,
            false,
            false,
            false,
            if threads > 1 {
                gemm::Parallelism::Rayon(threads)
            } else {
                gemm::Parallelism::None
            },
        );
    }
}

/// Threads for an m × n × k product: one below [`PARALLEL_MACS`] multiply-adds (splitting a
/// small product costs more than it saves), else rayon's pool.
pub fn threads_for(m: usize, n: usize, k: usize) -> usize {
    let macs = m.saturating_mul(n).saturating_mul(k);
    let limit = std::env::var("DFFORGE_PARALLEL_MACS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(PARALLEL_MACS);
    if macs < limit {
        1
    } else {
        rayon::current_num_threads()
    }
}

/// See [`threads_for`]; measured on configs/mnist.toml (docs/performance.md).
pub const PARALLEL_MACS: usize = 1 << 20;

/// Add `bias` to every row.
pub fn add_row_bias(m: &mut Mat, bias: &[f32]) {
    for r in 0..m.rows {
        for (v, b) in m.row_mut(r).iter_mut().zip(bias) {
            *v += b;
        }
    }
}

/// Column sums (`out[c] = Σ_r m[r][c] * scale`).
pub fn column_sums(m: &Mat, scale: f32, out: &mut [f32]) {
    out.iter_mut().for_each(|v| *v = 0.0);
    for r in 0..m.rows {
        for (o, v) in out.iter_mut().zip(m.row(r)) {
            *o += v;
        }
    }
    out.iter_mut().for_each(|v| *v *= scale);
}

/// Euclidean norm.
pub fn norm(v: &[f32]) -> f32 {
    v.iter().map(|x| x * x).sum::<f32>().sqrt()
}

/// Index of the largest value; ties go to the lowest index, so predictions are reproducible.
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &Mat, b: &Mat) -> Mat {
        Mat::from_fn(a.rows, b.cols, |i, j| {
            (0..a.cols)
                .map(|p| a.data[i * a.cols + p] * b.data[p * b.cols + j])
                .sum()
        })
    }

    fn transpose(a: &Mat) -> Mat {
        Mat::from_fn(a.cols, a.rows, |i, j| a.data[j * a.cols + i])
    }

    #[test]
    fn gemm_matches_naive_in_all_layouts() {
        // Small integers keep every f32 sum exact, so equality is the right check.
        let a = Mat::from_fn(5, 7, |i, j| ((i * 7 + j) % 5) as f32 - 2.0);
        let b = Mat::from_fn(7, 3, |i, j| ((i * 3 + j) % 4) as f32 - 1.0);
        let want = naive(&a, &b);
        for (aa, oa) in [(a.clone(), Op::N), (transpose(&a), Op::T)] {
            for (bb, ob) in [(b.clone(), Op::N), (transpose(&b), Op::T)] {
                let mut c = Mat::zeros(5, 3);
                gemm(1.0, &aa, oa, &bb, ob, 0.0, &mut c);
                assert_eq!(c, want, "{oa:?} {ob:?}");
            }
        }
        let mut c = want.clone();
        gemm(2.0, &a, Op::N, &b, Op::N, -1.0, &mut c);
        assert_eq!(c, want);
    }

    #[test]
    fn argmax_prefers_first_of_ties() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
    }
}
