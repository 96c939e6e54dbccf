//! Exact integer GEMM kernels of the golden model.
//!
//! Operands are raw fixed-point words and every sum is exact (the config's validation proves
//! the sums fit the declared accumulators, at most 48 bits). An exact sum does not depend on
//! the order it is taken in, so the result is the same whatever tiling the systolic array uses.
//!
//! Routes, each exact by construction (docs/performance.md has the measurements):
//! - short inner dimensions (k ≤ 128, the weight gradients of small batches): sums of outer
//!   products in i32 groups of rows that cannot overflow, then i64 (`outer_product`);
//! - otherwise the operands as i16 planes, an AVX-512 VNNI, AVX2 or portable block, i32 lanes
//!   widened into i64 before any can overflow (`gemm_planes`);
//! - operands wider than 31 bits: `matrixmultiply`'s f64 GEMM, exact because every operand is
//!   an integer below 2^32 and every partial sum below 2^47 (the accumulator bound), and f64
//!   represents every integer below 2^53.
//!
//! `dot` and `rows_times_rows_int` are the plain integer references the tests compare against.

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
    thread_local! {
        // The packing buffers, kept per thread between calls (a training step calls this
        // with the same shapes every step).
        static SCRATCH: std::cell::RefCell<GemmScratch> = Default::default();
    }
    let mut out = Vec::new();
    SCRATCH.with(|s| match s.try_borrow_mut() {
        Ok(mut s) => gemm_exact_into(a, ta, b, tb, &mut out, &mut s),
        // Re-entered on this thread (a rayon task waiting inside a GEMM can run another).
        Err(_) => gemm_exact_into(a, ta, b, tb, &mut out, &mut GemmScratch::default()),
    });
    out
}

/// [`gemm_exact`] into `out` (resized to m × n), with packing buffers kept in `scratch` so a
/// training step allocates nothing once the buffers have grown.
pub fn gemm_exact_into(
    a: &IMat,
    ta: bool,
    b: &IMat,
    tb: bool,
    out: &mut Vec<i64>,
    scratch: &mut GemmScratch,
) {
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
    // Every route below writes every cell, so a buffer of the right size is not cleared.
    if out.len() != m * n {
        out.clear();
        out.resize(m * n, 0);
    }
    if m == 0 || n == 0 {
        return;
    }
    if ta && !tb && outer_product(a, b, out) {
        return;
    }
    // Dot form: the rows of op(a) against the columns of op(b), both packed k-contiguous.
    let ok_a = scratch.a.pack(a, ta);
    let ok_b = scratch.b.pack(b, !tb);
    if ok_a && ok_b && gemm_planes(&scratch.a, &scratch.b, out, Simd::Best) {
        return;
    }
    out.copy_from_slice(&gemm_exact_f64(a, ta, b, tb));
}

/// The f64 route (see the module docs): exact while every partial sum stays below 2^53, which
/// the accumulator bound guarantees; used for operands too wide for the i16 planes.
fn gemm_exact_f64(a: &IMat, ta: bool, b: &IMat, tb: bool) -> Vec<i64> {
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

/// Columns of op(b) one outer-product task accumulates at a time: eight AVX2 registers of
/// i32 lanes.
const JC: usize = 64;

/// Inner dimensions up to this take the outer-product form in [`gemm_exact_into`]: its sums
/// need no horizontal reduction per output, which dominates the dot-product blocks when k
/// is short. Measured with `examples/kernel_timing.rs` on the MNIST gradient shapes (ms,
/// outer / dot): k = 8: 0.22 / 0.67; k = 64: 0.71 / 0.90; k = 80: 0.45 / 0.62; k = 256:
/// 3.5 / 2.2; k = 640: 4.4 / 3.4.
const OUTER_MAX_K: usize = 128;

/// `aᵀ · b` for a short inner dimension (the weight gradients: k is the batch's rows), as
/// sums of outer products on i32 lanes: groups of `g` rows, `g · max|a| · max|b| < 2^31`
/// from the operands' actual values, are summed in i32 (exact), then added into i64
/// sums. False (out untouched) when a single product could overflow i32.
fn outer_product(a: &IMat, b: &IMat, out: &mut [i64]) -> bool {
    let (k, m, n) = (a.rows, a.cols, b.cols);
    if k == 0 || k > OUTER_MAX_K {
        return false;
    }
    let max_abs = |v: &[i32]| v.iter().map(|x| u64::from(x.unsigned_abs())).max();
    let pair = max_abs(&a.data).unwrap_or(0) * max_abs(&b.data).unwrap_or(0);
    if pair > i32::MAX as u64 {
        return false;
    }
    let group = (i32::MAX as u64)
        .checked_div(pair)
        .map_or(k, |g| (g as usize).min(k));
    // op(b) in chunks of JC columns, each chunk k × JC contiguous and zero-padded.
    let chunks = n.div_ceil(JC);
    let mut bp = vec![0i32; chunks * k * JC];
    for (r, row) in b.data.chunks_exact(n).enumerate() {
        for (c, src) in row.chunks(JC).enumerate() {
            bp[(c * k + r) * JC..][..src.len()].copy_from_slice(src);
        }
    }
    let ptr = OutPtr(out.as_mut_ptr());
    let avx2 = has_avx2();
    // Tasks: a chunk of columns × a block of output rows, enough for every thread.
    let blocks = if m * n * k < 1 << 18 {
        1
    } else {
        (4 * rayon::current_num_threads())
            .div_ceil(chunks)
            .clamp(1, m)
    };
    let rows_per = m.div_ceil(blocks);
    let task = |t: usize| {
        let (c, ob) = (t % chunks, t / chunks);
        let j0 = c * JC;
        let cols = JC.min(n - j0);
        let rows = ob * rows_per..((ob + 1) * rows_per).min(m);
        let chunk = &bp[c * k * JC..(c + 1) * k * JC];
        // SAFETY: `ptr` points to the m × n output, j0 + cols <= n, rows end at m at most,
        // and each (chunk, row block) task writes only its own cells; AVX2 is checked.
        unsafe {
            if avx2 {
                outer_chunk_avx2(a, chunk, group, rows, j0, cols, n, ptr)
            } else {
                outer_chunk(a, chunk, group, rows, j0, cols, n, ptr)
            }
        }
    };
    if blocks == 1 && chunks == 1 {
        task(0);
    } else {
        (0..chunks * blocks).into_par_iter().for_each(task);
    }
    true
}

/// Output rows `rows`, columns `j0 .. j0 + cols` of `aᵀ · b` from one column chunk of b.
///
/// # Safety
/// `out` points to an `a.cols × n` output of which no other thread writes these cells.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn outer_chunk(
    a: &IMat,
    chunk: &[i32],
    group: usize,
    rows: std::ops::Range<usize>,
    j0: usize,
    cols: usize,
    n: usize,
    out: OutPtr,
) {
    let (k, m) = (a.rows, a.cols);
    assert!(chunk.len() == k * JC && group >= 1 && cols <= JC && j0 + cols <= n && rows.end <= m);
    for o in rows {
        let mut total = [0i64; JC];
        for r0 in (0..k).step_by(group) {
            let mut acc = [0i32; JC];
            for r in r0..(r0 + group).min(k) {
                let c = a.data[r * m + o];
                let br: &[i32; JC] = chunk[r * JC..(r + 1) * JC].try_into().expect("JC words");
                for (s, &v) in acc.iter_mut().zip(br) {
                    // |c · v| · group <= 2^31 - 1 (see `outer_product`): no lane overflows.
                    *s = s.wrapping_add(c.wrapping_mul(v));
                }
            }
            for (t, &s) in total.iter_mut().zip(&acc) {
                *t += i64::from(s);
            }
        }
        // SAFETY: o < m and j0 + cols <= n (asserted), inside the m × n output (the caller's
        // contract), and no other thread writes these cells.
        unsafe { std::ptr::copy_nonoverlapping(total.as_ptr(), out.get().add(o * n + j0), cols) };
    }
}

/// [`outer_chunk`] with AVX2 code (callers check that the machine has it).
#[cfg_attr(
    any(target_arch = "x86", target_arch = "x86_64"),
    target_feature(enable = "avx2")
)]
#[allow(clippy::too_many_arguments)]
unsafe fn outer_chunk_avx2(
    a: &IMat,
    chunk: &[i32],
    group: usize,
    rows: std::ops::Range<usize>,
    j0: usize,
    cols: usize,
    n: usize,
    out: OutPtr,
) {
    outer_chunk(a, chunk, group, rows, j0, cols, n, out)
}

/// Reusable packing buffers of [`gemm_exact_into`].
#[derive(Clone, Debug, Default)]
pub struct GemmScratch {
    a: Planes,
    b: Planes,
}

/// k is padded to a multiple of this: one 512-bit register of i16 (the AVX2 block takes
/// two 256-bit steps).
const KSTEP: usize = 32;
/// Rows of op(a) and of op(b)ᵀ per register block.
const MR: usize = 4;
const NR: usize = 2;

/// A matrix of integers as i16 planes, `value = Σ_p plane_p · 2^(15 p)`: one plane when every
/// value fits i16, two (low 15 bits unsigned, the rest signed) when every value fits 31 bits.
/// Each plane holds `rows` rows (rounded up to a multiple of [`MR`]·[`NR`], zero-filled) of
/// `kp` words (k rounded up to [`KSTEP`], zero-filled), so the kernel never needs an edge case.
#[derive(Clone, Debug, Default)]
struct Planes {
    rows: usize,
    k: usize,
    kp: usize,
    rows_p: usize,
    planes: usize,
    data: [Vec<i16>; 2],
    /// Largest |value| in each plane.
    max_abs: [u64; 2],
}

impl Planes {
    /// Pack the rows of `m` (or, with `cols`, its columns) k-contiguous. False when some
    /// value needs more than 30 bits (the caller takes the f64 route).
    fn pack(&mut self, m: &IMat, cols: bool) -> bool {
        let (rows, k) = if cols {
            (m.cols, m.rows)
        } else {
            (m.rows, m.cols)
        };
        let (lo, hi) = min_max(&m.data);
        let fits = |bits: u32| lo >= -(1 << (bits - 1)) && hi < 1 << (bits - 1);
        let planes = if fits(16) {
            1
        } else if fits(31) {
            // hi = v >> 15 then lies in [-2^15, 2^15).
            2
        } else {
            return false;
        };
        let kp = k.div_ceil(KSTEP) * KSTEP;
        let rows_p = rows.div_ceil(MR * NR) * MR * NR;
        // The same shape as the last pack: only the live words are rewritten (the padding
        // is still zero), so no clearing pass.
        let same =
            (self.rows, self.k, self.kp, self.rows_p, self.planes) == (rows, k, kp, rows_p, planes);
        self.rows = rows;
        self.k = k;
        self.kp = kp;
        self.rows_p = rows_p;
        self.planes = planes;
        let len = rows_p * kp;
        for p in 0..planes {
            if !(same && self.data[p].len() == len) {
                self.data[p].clear();
                self.data[p].resize(len, 0);
            }
        }
        let kp = self.kp;
        let [d0, d1] = &mut self.data;
        // Loops written so the compiler vectorises the narrowing (one plane) or the split.
        match (planes, cols) {
            _ if k == 0 || rows == 0 => {}
            (1, false) => {
                for (dst, src) in d0.chunks_exact_mut(kp).zip(m.data.chunks_exact(k)) {
                    dst.iter_mut().zip(src).for_each(|(d, &v)| *d = v as i16);
                }
            }
            (_, false) => {
                for ((dl, dh), src) in d0
                    .chunks_exact_mut(kp)
                    .zip(d1.chunks_exact_mut(kp))
                    .zip(m.data.chunks_exact(k))
                {
                    for ((l, h), &v) in dl.iter_mut().zip(dh.iter_mut()).zip(src) {
                        *l = (v & 0x7fff) as i16;
                        *h = (v >> 15) as i16;
                    }
                }
            }
            (1, true) => {
                for (j, src) in m.data.chunks_exact(rows).enumerate() {
                    for (i, &v) in src.iter().enumerate() {
                        d0[i * kp + j] = v as i16;
                    }
                }
            }
            (_, true) => {
                for (j, src) in m.data.chunks_exact(rows).enumerate() {
                    for (i, &v) in src.iter().enumerate() {
                        d0[i * kp + j] = (v & 0x7fff) as i16;
                        d1[i * kp + j] = (v >> 15) as i16;
                    }
                }
            }
        }
        // Bounds on |value| per plane (the kernel's overflow guard needs bounds, not maxima).
        let abs = |v: i32| u64::from(v.unsigned_abs());
        self.max_abs = if planes == 1 {
            [abs(lo).max(abs(hi)), 0]
        } else {
            [0x7fff, abs(lo >> 15).max(abs(hi >> 15))]
        };
        true
    }
}

/// The smallest and largest value (0, 0 when empty), in one pass.
fn min_max(v: &[i32]) -> (i32, i32) {
    #[inline(always)]
    fn fold(v: &[i32]) -> (i32, i32) {
        match v.first() {
            None => (0, 0),
            Some(&x) => v.iter().fold((x, x), |(lo, hi), &x| (lo.min(x), hi.max(x))),
        }
    }
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    if has_avx2() {
        #[target_feature(enable = "avx2")]
        unsafe fn fold_avx2(v: &[i32]) -> (i32, i32) {
            fold(v)
        }
        // SAFETY: AVX2 is present (checked at run time).
        return unsafe { fold_avx2(v) };
    }
    fold(v)
}

/// A pointer to the output the threads share; each writes only its own cells (columns in
/// `gemm_planes`, a column chunk × row block in `outer_product`).
#[derive(Clone, Copy)]
struct OutPtr(*mut i64);
// SAFETY: `gemm_planes` gives every thread a disjoint range of output columns.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}
impl OutPtr {
    fn get(self) -> *mut i64 {
        self.0
    }
}

/// `out[m][n] = Σ_k a[m][k] · b[n][k]` over the planes, exact. False (out untouched) when an
/// i32 lane could overflow even between two consecutive widenings (the f64 route then).
fn gemm_planes(a: &Planes, b: &Planes, out: &mut [i64], simd: Simd) -> bool {
    debug_assert_eq!(a.kp, b.kp);
    let (m, n) = (a.rows, b.rows);
    // Each 16-wide step adds two products to every i32 lane; `flush` steps keep every lane
    // below 2^31 (the bound uses the planes' actual largest values), then the lanes are
    // widened into i64 sums.
    let mut flush = [[0usize; 2]; 2];
    for p in 0..a.planes {
        for q in 0..b.planes {
            let pair = 2 * a.max_abs[p] * b.max_abs[q];
            if pair > i32::MAX as u64 {
                return false;
            }
            flush[p][q] = (i32::MAX as u64)
                .checked_div(pair)
                .map_or(usize::MAX, |f| f.min(usize::MAX as u64) as usize);
        }
    }
    let kernel = match simd {
        Simd::Best if has_vnni() => Simd::Vnni,
        Simd::Best if has_avx2() => Simd::Avx2,
        Simd::Best => Simd::Scalar,
        k => k,
    };
    let ptr = OutPtr(out.as_mut_ptr());
    let work = m * n * a.kp;
    let threads = if work < 1 << 18 {
        1
    } else {
        rayon::current_num_threads()
    };
    // Column blocks of op(b)ᵀ rows, a few per thread, multiples of NR.
    let per = n.div_ceil(threads * 4).div_ceil(NR).max(1) * NR;
    let run = |n0: usize| {
        let n1 = (n0 + per).min(b.rows_p);
        // Cache blocking: a panel of op(a)'s rows (about 128 KiB) stays in cache while every
        // block of this thread's op(b) rows passes over it.
        let mc = ((1usize << 16) / a.kp.max(1)).max(1).div_ceil(MR) * MR;
        for m0 in (0..a.rows_p).step_by(mc) {
            for nb in (n0..n1).step_by(NR) {
                for mb in (m0..(m0 + mc).min(a.rows_p)).step_by(MR) {
                    let mut sums = [[0i64; NR]; MR];
                    for p in 0..a.planes {
                        for q in 0..b.planes {
                            let mut part = [[0i64; NR]; MR];
                            let ap = &a.data[p][mb * a.kp..(mb + MR) * a.kp];
                            let bp = &b.data[q][nb * b.kp..(nb + NR) * b.kp];
                            // SAFETY (both SIMD blocks): the features were detected at run
                            // time (`Simd::Best`; tests name a kernel only where it runs), and
                            // the slices hold MR and NR rows of kp words.
                            match kernel {
                                Simd::Vnni => unsafe {
                                    block_vnni(ap, bp, a.kp, flush[p][q], &mut part)
                                },
                                Simd::Avx2 => unsafe {
                                    block_avx2(ap, bp, a.kp, flush[p][q], &mut part)
                                },
                                _ => block_scalar(ap, bp, a.kp, &mut part),
                            }
                            let sh = 15 * (p + q) as u32;
                            for i in 0..MR {
                                for j in 0..NR {
                                    // The total is exact in i64, so the wrapping sum of its
                                    // shifted parts is too.
                                    sums[i][j] =
                                        sums[i][j].wrapping_add(part[i][j].wrapping_shl(sh));
                                }
                            }
                        }
                    }
                    for (i, row) in sums.iter().enumerate() {
                        let r = mb + i;
                        if r >= m {
                            break;
                        }
                        for (j, &v) in row.iter().enumerate() {
                            let c = nb + j;
                            if c < n {
                                // SAFETY: r < m, c < n, and this thread owns column c.
                                unsafe { *ptr.get().add(r * n + c) = v };
                            }
                        }
                    }
                }
            }
        }
    };
    if threads == 1 {
        (0..b.rows_p).step_by(per).for_each(run);
    } else {
        (0..b.rows_p)
            .step_by(per)
            .collect::<Vec<_>>()
            .into_par_iter()
            .for_each(run);
    }
    true
}

/// Which block kernel [`gemm_planes`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Simd {
    /// The fastest the machine has.
    Best,
    /// AVX-512 VNNI `vpdpwssd` (multiply-add-accumulate in one instruction).
    Vnni,
    Avx2,
    Scalar,
}

pub(crate) fn has_vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

fn has_avx2() -> bool {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        std::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
    {
        false
    }
}

/// The portable block: MR rows of `a` against NR rows of `b`, i64 sums.
fn block_scalar(a: &[i16], b: &[i16], kp: usize, out: &mut [[i64; NR]; MR]) {
    for (i, o) in out.iter_mut().enumerate() {
        let ar = &a[i * kp..(i + 1) * kp];
        for (j, v) in o.iter_mut().enumerate() {
            let br = &b[j * kp..(j + 1) * kp];
            *v = ar
                .iter()
                .zip(br)
                .map(|(&x, &y)| i64::from(x) * i64::from(y))
                .sum();
        }
    }
}

/// The AVX2 block: `vpmaddwd` multiplies 16 i16 pairs and adds neighbours into 8 i32 lanes;
/// every `flush` steps the lanes are widened and added into i64 sums.
///
/// Written by hand: the crates that ship integer GEMMs (e.g. for 8-bit inference) neither
/// take 16-bit operands nor guarantee exact sums.
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
#[target_feature(enable = "avx2")]
unsafe fn block_avx2(a: &[i16], b: &[i16], kp: usize, flush: usize, out: &mut [[i64; NR]; MR]) {
    #[cfg(target_arch = "x86")]
    use std::arch::x86::*;
    #[cfg(target_arch = "x86_64")]
    use std::arch::x86_64::*;
    // One 256-bit register of i16 per step.
    const STEP: usize = 16;
    assert!(a.len() >= MR * kp && b.len() >= NR * kp && kp.is_multiple_of(STEP));
    let widen = |v: __m256i| -> i64 {
        let lo = _mm256_cvtepi32_epi64(_mm256_castsi256_si128(v));
        let hi = _mm256_cvtepi32_epi64(_mm256_extracti128_si256::<1>(v));
        let s = _mm256_add_epi64(lo, hi);
        let t = _mm_add_epi64(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s));
        _mm_cvtsi128_si64(t).wrapping_add(_mm_extract_epi64::<1>(t))
    };
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let steps = kp / STEP;
    let mut sums = [[0i64; NR]; MR];
    let mut s0 = 0;
    while s0 < steps {
        let s1 = s0 + flush.min(steps - s0);
        let mut acc = [[_mm256_setzero_si256(); NR]; MR];
        for s in s0..s1 {
            let o = s * STEP;
            // SAFETY: o + 16 <= kp and the rows lie inside the checked slices.
            let b0 = _mm256_loadu_si256(pb.add(o) as *const __m256i);
            let b1 = _mm256_loadu_si256(pb.add(kp + o) as *const __m256i);
            for (i, acc) in acc.iter_mut().enumerate() {
                let av = _mm256_loadu_si256(pa.add(i * kp + o) as *const __m256i);
                acc[0] = _mm256_add_epi32(acc[0], _mm256_madd_epi16(av, b0));
                acc[1] = _mm256_add_epi32(acc[1], _mm256_madd_epi16(av, b1));
            }
        }
        for i in 0..MR {
            for j in 0..NR {
                sums[i][j] = sums[i][j].wrapping_add(widen(acc[i][j]));
            }
        }
        s0 = s1;
    }
    *out = sums;
}

#[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
unsafe fn block_avx2(a: &[i16], b: &[i16], kp: usize, _: usize, out: &mut [[i64; NR]; MR]) {
    block_scalar(a, b, kp, out)
}

/// The AVX-512 VNNI block: `vpdpwssd` multiplies 32 i16 pairs, adds neighbours and
/// accumulates into 16 i32 lanes in one instruction (two products per lane per step, as
/// in the AVX2 block, so the same `flush` bound holds); then widened into i64 sums.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vnni")]
unsafe fn block_vnni(a: &[i16], b: &[i16], kp: usize, flush: usize, out: &mut [[i64; NR]; MR]) {
    use std::arch::x86_64::*;
    assert!(a.len() >= MR * kp && b.len() >= NR * kp && kp.is_multiple_of(KSTEP));
    let widen = |v: __m512i| -> i64 {
        let lo = _mm512_cvtepi32_epi64(_mm512_castsi512_si256(v));
        let hi = _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64::<1>(v));
        _mm512_reduce_add_epi64(_mm512_add_epi64(lo, hi))
    };
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let steps = kp / KSTEP;
    let mut sums = [[0i64; NR]; MR];
    let mut s0 = 0;
    while s0 < steps {
        let s1 = s0 + flush.min(steps - s0);
        let mut acc = [[_mm512_setzero_si512(); NR]; MR];
        for s in s0..s1 {
            let o = s * KSTEP;
            // SAFETY: o + 32 <= kp and the rows lie inside the checked slices.
            let bv: [__m512i; NR] =
                std::array::from_fn(|j| _mm512_loadu_si512(pb.add(j * kp + o) as *const __m512i));
            for (i, acc) in acc.iter_mut().enumerate() {
                let av = _mm512_loadu_si512(pa.add(i * kp + o) as *const __m512i);
                for (c, &bj) in acc.iter_mut().zip(&bv) {
                    *c = _mm512_dpwssd_epi32(*c, av, bj);
                }
            }
        }
        for i in 0..MR {
            for j in 0..NR {
                sums[i][j] = sums[i][j].wrapping_add(widen(acc[i][j]));
            }
        }
        s0 = s1;
    }
    *out = sums;
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn block_vnni(a: &[i16], b: &[i16], kp: usize, _: usize, out: &mut [[i64; NR]; MR]) {
    block_scalar(a, b, kp, out)
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
    use proptest::prelude::*;

    fn naive(a: &IMat, ta: bool, b: &IMat, tb: bool) -> Vec<i64> {
        let at = if ta { a.transpose() } else { a.clone() };
        let bt = if tb { b.clone() } else { b.transpose() };
        let mut out = Vec::new();
        for r in 0..at.rows {
            for c in 0..bt.rows {
                let s: i128 = (0..at.cols)
                    .map(|k| i128::from(at.row(r)[k]) * i128::from(bt.row(c)[k]))
                    .sum();
                out.push(i64::try_from(s).expect("test sums fit i64"));
            }
        }
        out
    }

    /// Values drawn mostly from a range of `bits` bits, with its extremes mixed in.
    fn values(n: usize, bits: u32, seed: u64) -> Vec<i32> {
        let (lo, hi) = (-(1i64 << (bits - 1)), (1i64 << (bits - 1)) - 1);
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                match (s >> 60) % 8 {
                    0 => lo as i32,
                    1 => hi as i32,
                    2 => 0,
                    _ => (lo + ((s >> 11) as i64).rem_euclid(hi - lo + 1)) as i32,
                }
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]
        /// The i16-plane GEMM (SIMD and portable blocks) equals the naive exact product in
        /// every layout, for operands of 1..=32 bits (one plane, two planes, the f64 route),
        /// at the operands' extreme values, on ragged shapes.
        #[test]
        fn plane_gemm_is_the_exact_product(
            m in 1usize..23, n in 1usize..23, k in 0usize..70, abits in 1u32..19,
            bbits in 1u32..32, ta: bool, tb: bool, seed: u64,
        ) {
            let (ar, ac) = if ta { (k, m) } else { (m, k) };
            let (br, bc) = if tb { (n, k) } else { (k, n) };
            let a = IMat { rows: ar, cols: ac, data: values(ar * ac, abits, seed) };
            let b = IMat { rows: br, cols: bc, data: values(br * bc, bbits, seed ^ 0x9e37) };
            let want = naive(&a, ta, &b, tb);
            prop_assert_eq!(&gemm_exact(&a, ta, &b, tb), &want);
            let mut scratch = GemmScratch::default();
            let mut out = vec![7; 3];
            gemm_exact_into(&a, ta, &b, tb, &mut out, &mut scratch);
            prop_assert_eq!(&out, &want);
            // A buffer of the right size is reused as it is: every cell is overwritten.
            let mut out = vec![-7; m * n];
            gemm_exact_into(&a, ta, &b, tb, &mut out, &mut scratch);
            prop_assert_eq!(&out, &want);
            if scratch.a.pack(&a, ta) && scratch.b.pack(&b, !tb) {
                // Every block kernel this machine can run.
                let kernels = [(Simd::Scalar, true), (Simd::Avx2, has_avx2()), (Simd::Vnni, has_vnni())];
                for (kernel, runs) in kernels {
                    let mut out = vec![0; m * n];
                    if runs && gemm_planes(&scratch.a, &scratch.b, &mut out, kernel) {
                        prop_assert_eq!(&out, &want, "{:?}", kernel);
                    }
                }
            }
        }
    }

    #[test]
    fn plane_gemm_widens_before_any_lane_overflows() {
        // Every product is (-2^15)·(2^15 - 1): two per step put a lane at -2^31 + 2^16,
        // so the kernel must widen after every step; 784-term sums of both signs.
        for (x, w) in [(-32768, 32767), (32767, 32767), (-32768, -32767)] {
            let a = IMat {
                rows: 9,
                cols: 784,
                data: vec![x; 9 * 784],
            };
            let b = IMat {
                rows: 5,
                cols: 784,
                data: vec![w; 5 * 784],
            };
            assert_eq!(rows_times_rows(&a, &b), rows_times_rows_int(&a, &b));
        }
        // Several cache panels of op(a) rows (the panel is 2^16 / kp rows).
        let a = IMat {
            rows: 300,
            cols: 600,
            data: values(300 * 600, 12, 5),
        };
        let b = IMat {
            rows: 37,
            cols: 600,
            data: values(37 * 600, 16, 6),
        };
        assert_eq!(rows_times_rows(&a, &b), rows_times_rows_int(&a, &b));
        // (-2^15)² twice overflows i32 in one step: the f64 route takes it.
        let a = IMat {
            rows: 3,
            cols: 40,
            data: vec![-32768; 120],
        };
        assert_eq!(rows_times_rows(&a, &a), rows_times_rows_int(&a, &a));
    }

    #[test]
    fn outer_product_is_exact_in_parallel_and_in_row_groups() {
        // k = 100 rows of 16- and 12-bit values: groups of (2^31 - 1) / (2^15 · 2^11) = 31 rows are
        // summed in i32; 300 × 200 outputs in several (row block, column chunk) tasks, the
        // last chunk ragged.
        let a = IMat {
            rows: 100,
            cols: 300,
            data: values(100 * 300, 16, 11),
        };
        let b = IMat {
            rows: 100,
            cols: 200,
            data: values(100 * 200, 12, 12),
        };
        let mut out = vec![0; 300 * 200];
        assert!(outer_product(&a, &b, &mut out));
        assert_eq!(out, naive(&a, true, &b, false));
        // A single product that overflows i32 is refused (the dot-product route takes it).
        let big = IMat {
            rows: 2,
            cols: 3,
            data: vec![1 << 20; 6],
        };
        let mut out = vec![0; 9];
        assert!(!outer_product(&big, &big, &mut out));
        assert_eq!(
            gemm_exact(&big, true, &big, false),
            naive(&big, true, &big, false)
        );
    }

    #[test]
    fn reused_scratch_gives_the_exact_product() {
        // One scratch through shapes and plane counts in turn, each shape twice with
        // different values (the second pack of a shape skips clearing its buffers).
        let mut scratch = GemmScratch::default();
        let mut out = Vec::new();
        let mut seed = 1;
        for (m, n, k, bits) in [
            (9, 7, 70, 14),
            (9, 7, 70, 20),
            (9, 7, 70, 9),
            (5, 3, 33, 16),
            (9, 7, 70, 14),
        ] {
            for _ in 0..2 {
                seed += 1;
                let a = IMat {
                    rows: m,
                    cols: k,
                    data: values(m * k, bits, seed),
                };
                let b = IMat {
                    rows: n,
                    cols: k,
                    data: values(n * k, 12, seed ^ 5),
                };
                gemm_exact_into(&a, false, &b, true, &mut out, &mut scratch);
                assert_eq!(out, naive(&a, false, &b, true), "{m}×{n}×{k}, {bits} bits");
            }
        }
    }

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
