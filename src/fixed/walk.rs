//! The update units' walk over a weight matrix, fast: the same words in the same lanes in the
//! same order as [`UpdateUnit::update_tiled`], computed lane by lane in parallel.
//!
//! Why this is exact: each update lane has its own LFSR, clocked once per weight it updates,
//! and a weight's new value depends only on its old value, its gradient and its lane's LFSR
//! word at that point. So the result is fixed by each lane's own sequence of weights, not by
//! how the lanes interleave: [`LaneWalk`] records, once per (shape, tile, bank map), the
//! weights each lane visits in the engine's drain order, and [`UpdateUnit::update_walk`]
//! runs the lanes independently (on rayon's threads). The per-weight arithmetic is
//! [`UpdateKernel`]: `lr_update` on `i64` where nothing can overflow (checked per weight),
//! the `i128` reference otherwise. Tests pin both to `update_tiled` and `lr_update`.
//!
//! Written by hand: no crate knows this hardware's walk.

use super::lfsr::Lfsr;
use super::model::{update_rnd, UpdateUnit};
use super::ops::lr_update;
use super::{LearningRate, QFormat, Rounding};
use rayon::prelude::*;

/// A run of consecutive elements (row-major indices `start .. start + len`) that a lane
/// updates one after another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    pub start: u32,
    pub len: u32,
}

/// Which weights each update lane visits, in order, as runs of consecutive elements (under
/// DF's bank map a lane takes whole rows, so a lane's walk is a few hundred long runs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaneWalk {
    /// (rows, cols) of the matrix.
    pub shape: (usize, usize),
    /// (tile_rows, tile_cols) of the array that drains the gradient.
    pub tile: (usize, usize),
    /// `lanes[l]` lists the runs lane `l` updates, in its order. Private: `update_walk`
    /// writes the lanes' runs from several threads, which is sound only because `tiled`
    /// hands every element to exactly one lane.
    lanes: Vec<Vec<Run>>,
}

impl LaneWalk {
    /// The walk of [`UpdateUnit::update_tiled`] for `lanes` lanes: tile rows outer, tile
    /// columns inner, a column per cycle, element (r, c) on lane `bank(r, c)`.
    ///
    /// Panics if `bank` names a lane `>= lanes` or the matrix has `>= 2^32` elements (as
    /// `update_tiled` would panic on the lane index).
    pub fn tiled(
        (rows, cols): (usize, usize),
        (tile_rows, tile_cols): (usize, usize),
        bank: impl Fn(usize, usize) -> usize,
        lanes: usize,
    ) -> LaneWalk {
        assert!(
            (rows * cols) as u64 <= u64::from(u32::MAX),
            "weight matrix too large for a lane walk"
        );
        let mut out: Vec<Vec<Run>> = vec![Vec::new(); lanes];
        for r0 in (0..rows).step_by(tile_rows.max(1)) {
            for c0 in (0..cols).step_by(tile_cols.max(1)) {
                for c in c0..(c0 + tile_cols).min(cols) {
                    for r in r0..(r0 + tile_rows).min(rows) {
                        let i = (r * cols + c) as u32;
                        let runs = &mut out[bank(r, c)];
                        match runs.last_mut() {
                            Some(run) if run.start + run.len == i => run.len += 1,
                            _ => runs.push(Run { start: i, len: 1 }),
                        }
                    }
                }
            }
        }
        LaneWalk {
            shape: (rows, cols),
            tile: (tile_rows, tile_cols),
            lanes: out,
        }
    }

    /// Each lane's runs, in order.
    pub fn lanes(&self) -> &[Vec<Run>] {
        &self.lanes
    }

    /// The element indices lane `l` visits, in order.
    pub fn elements(&self, l: usize) -> impl Iterator<Item = u32> + '_ {
        self.lanes[l].iter().flat_map(|r| r.start..r.start + r.len)
    }

    /// Every element exactly once (what `tiled` builds; checked by `update_walk` in debug).
    fn covers_each_once(&self) -> bool {
        let n = self.shape.0 * self.shape.1;
        let mut seen = vec![false; n];
        for l in 0..self.lanes.len() {
            for i in self.elements(l) {
                match seen.get_mut(i as usize) {
                    Some(s) if !*s => *s = true,
                    _ => return false,
                }
            }
        }
        seen.iter().all(|&s| s)
    }
}

/// `lr_update(w, g, g_frac, fmt, lr, rounding, update_rnd(word, shift, width))` with the
/// constants hoisted out of the loop, on `i64` where that is exact.
#[derive(Clone, Copy, Debug)]
pub struct UpdateKernel {
    lr: LearningRate,
    rounding: Rounding,
    g_frac: u32,
    fmt: QFormat,
    /// Bits dropped by the rounding shifter (`g_frac + lr_frac - fmt.frac`).
    shift: u32,
    width: u32,
    /// The learning-rate multiplier (1 for a shift).
    mul: i64,
    /// |g| at most this keeps `g · mul` and the rounding inside `i64` (0: never).
    g_limit: i64,
    lo: i64,
    hi: i64,
    /// `update_rnd` as one left shift of the LFSR word.
    rnd_shl: u32,
    /// The rounding addend is `(rnd & r_mask) | r_const` (stochastic: the low bits of the
    /// word; half-up: half an LSB; truncate: nothing).
    r_mask: u64,
    r_const: u64,
    /// `2^shift - 1` (the bits the shifter drops).
    low_mask: u64,
}

impl UpdateKernel {
    pub fn new(
        lr: LearningRate,
        rounding: Rounding,
        g_frac: u32,
        fmt: QFormat,
        width: u32,
    ) -> UpdateKernel {
        let (mul, lr_frac) = match lr {
            LearningRate::Mul { value, frac } => (value, frac),
            LearningRate::Shift(k) => (1, k),
        };
        let pf = g_frac.saturating_add(lr_frac);
        let shift = pf.saturating_sub(fmt.frac);
        // The fast path needs a right shift of 1..=62 bits (so the low bits and the rounding
        // addend fit a u64 together) and |g · mul| < 2^62.
        let g_limit = if pf > fmt.frac && shift <= 62 && mul != 0 && mul != i64::MIN {
            (1i64 << 62) / mul.abs()
        } else {
            0
        };
        let s = shift.clamp(1, 62);
        let low_mask = (1u64 << s) - 1;
        let (r_mask, r_const) = match rounding {
            Rounding::Truncate => (0, 0),
            Rounding::HalfUp => (0, 1u64 << (s - 1)),
            Rounding::Stochastic => (low_mask, 0),
        };
        UpdateKernel {
            rnd_shl: if shift > width {
                (shift - width).min(63)
            } else {
                0
            },
            r_mask,
            r_const,
            low_mask,
            lr,
            rounding,
            g_frac,
            fmt,
            shift,
            width,
            mul,
            g_limit,
            lo: fmt.min(),
            hi: fmt.max(),
        }
    }

    /// [`UpdateKernel::apply`] for a 32-bit weight word, branch-free on the fast path.
    #[inline(always)]
    pub fn apply_i32(&self, w: i32, g: i64, word: u64) -> i32 {
        if g.unsigned_abs() < self.g_limit as u64 {
            let rnd = word << self.rnd_shl;
            let r = (rnd & self.r_mask) | self.r_const;
            let prod = g * self.mul;
            // As in `apply`: |prod| < 2^62, so low + r < 2^63 and w − step cannot overflow.
            let carry = (((prod as u64) & self.low_mask) + r) >> self.shift;
            let step = (prod >> self.shift) + carry as i64;
            (i64::from(w) - step).clamp(self.lo, self.hi) as i32
        } else {
            self.apply(i64::from(w), g, word) as i32
        }
    }

    /// [`UpdateKernel::apply_i32`] along a run: `ws[i]` with gradient `gs[i]` and word
    /// `words[i]`. When every gradient of the run is inside the fast path's bound, the loop
    /// has no branch and the compiler vectorises it.
    #[inline(always)]
    fn apply_run(&self, ws: &mut [i32], gs: &[i64], words: &[u64]) {
        let n = ws.len();
        let (gs, words) = (&gs[..n], &words[..n]);
        let limit = self.g_limit as u64;
        if gs
            .iter()
            .fold(true, |ok, g| ok & (g.unsigned_abs() < limit))
        {
            for ((w, &g), &word) in ws.iter_mut().zip(gs).zip(words) {
                let r = ((word << self.rnd_shl) & self.r_mask) | self.r_const;
                let prod = g.wrapping_mul(self.mul);
                let carry = (((prod as u64) & self.low_mask) + r) >> self.shift;
                let step = (prod >> self.shift) + carry as i64;
                *w = (i64::from(*w) - step).clamp(self.lo, self.hi) as i32;
            }
        } else {
            for ((w, &g), &word) in ws.iter_mut().zip(gs).zip(words) {
                *w = self.apply_i32(*w, g, word);
            }
        }
    }

    /// The new weight for old weight `w`, gradient `g` and LFSR word `word`.
    #[inline(always)]
    pub fn apply(&self, w: i64, g: i64, word: u64) -> i64 {
        let rnd = update_rnd(word, self.shift, self.width);
        if g.unsigned_abs() < self.g_limit as u64 && w.unsigned_abs() < (1u64 << 61) {
            let s = self.shift;
            let prod = g * self.mul;
            let mask = (1u64 << s) - 1;
            let r = match self.rounding {
                Rounding::Truncate => 0,
                Rounding::HalfUp => 1u64 << (s - 1),
                Rounding::Stochastic => rnd & mask,
            };
            // floor((prod + r) / 2^s) = (prod >> s) + carry of (low bits + r), as in
            // `shift_round_wide`; low + r < 2^63.
            let carry = (((prod as u64) & mask) + r) >> s;
            let step = (prod >> s) + carry as i64;
            (w - step).clamp(self.lo, self.hi)
        } else {
            lr_update(w, g, self.g_frac, self.fmt, self.lr, self.rounding, rnd)
        }
    }
}

/// A pointer the lanes share; each lane writes only its own elements.
#[derive(Clone, Copy)]
struct Shared(*mut i32);
// SAFETY: `update_walk` hands each element index to exactly one lane (`covers_each_once`),
// so no two threads ever touch the same element through this pointer.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

/// LFSR words generated per lane before the lanes' runs consume them: long enough to
/// amortise the switch between generating and applying, short enough for L1.
const BLOCK: usize = 512;

/// Clock the first `N` lanes' registers (`st`, `taps`) for steps `from..to` of a block,
/// writing lane `i`'s words to `words[i * BLOCK + t]`; returns `N`. The registers live in
/// locals, so the `N` dependency chains (shift, mask, xor) overlap. A lane's state after a
/// clock is its word (`next_bits(64)` masks to the width, which the state never exceeds).
#[inline(always)]
fn clock_lanes<const N: usize>(
    st: &mut [u64],
    taps: &[u64],
    words: &mut [u64],
    from: usize,
    to: usize,
) -> usize {
    assert!(to <= BLOCK && st.len() >= N && taps.len() >= N && words.len() >= N * BLOCK);
    let mut s: [u64; N] = std::array::from_fn(|i| st[i]);
    let tp: [u64; N] = std::array::from_fn(|i| taps[i]);
    for t in from..to {
        for i in 0..N {
            s[i] = (s[i] >> 1) ^ (tp[i] & (s[i] & 1).wrapping_neg());
            words[i * BLOCK + t] = s[i];
        }
    }
    st[..N].copy_from_slice(&s);
    N
}

/// Lanes one task runs: their LFSRs are clocked side by side (independent dependency
/// chains overlap), then each lane's next [`BLOCK`] elements are updated run by run.
/// Inlined into [`run_lanes_dispatch`]'s feature-enabled copy so its loops get the vector
/// instructions.
#[inline(always)]
fn run_lanes(lfsrs: &mut [Lfsr], walks: &[Vec<Run>], ws: Shared, gs: &[i64], k: &UpdateKernel) {
    let g = lfsrs.len();
    let taps: Vec<u64> = lfsrs.iter().map(Lfsr::taps).collect();
    let mut st: Vec<u64> = lfsrs.iter().map(Lfsr::state).collect();
    let counts: Vec<usize> = walks
        .iter()
        .map(|w| w.iter().map(|r| r.len as usize).sum())
        .collect();
    // Per lane: the run it is in and how far into it.
    let mut at = vec![(0usize, 0usize); g];
    let mut words = vec![0u64; g * BLOCK];
    let longest = counts.iter().copied().max().unwrap_or(0);
    for t0 in (0..longest).step_by(BLOCK) {
        let want: Vec<usize> = counts
            .iter()
            .map(|&c| c.saturating_sub(t0).min(BLOCK))
            .collect();
        let common = want.iter().copied().min().unwrap_or(0);
        // The lanes' registers clocked together, then each lane's remainder on its own.
        let mut l = 0;
        while l < g {
            let n = match g - l {
                1 => clock_lanes::<1>(&mut st[l..], &taps[l..], &mut words[l * BLOCK..], 0, common),
                2 | 3 => {
                    clock_lanes::<2>(&mut st[l..], &taps[l..], &mut words[l * BLOCK..], 0, common)
                }
                _ => clock_lanes::<4>(&mut st[l..], &taps[l..], &mut words[l * BLOCK..], 0, common),
            };
            l += n;
        }
        for l in 0..g {
            clock_lanes::<1>(
                &mut st[l..],
                &taps[l..],
                &mut words[l * BLOCK..],
                common,
                want[l],
            );
        }
        for l in 0..g {
            let mut used = 0;
            while used < want[l] {
                let (ri, off) = at[l];
                let run = walks[l][ri];
                let n = (run.len as usize - off).min(want[l] - used);
                let i = run.start as usize + off;
                assert!(i + n <= gs.len());
                // SAFETY: i + n <= gs.len() = the weights' length, and the runs of different
                // lanes are disjoint (see `Shared`).
                let w = unsafe { std::slice::from_raw_parts_mut(ws.0.add(i), n) };
                k.apply_run(w, &gs[i..i + n], &words[l * BLOCK + used..]);
                used += n;
                at[l] = if off + n == run.len as usize {
                    (ri + 1, 0)
                } else {
                    (ri, off + n)
                };
            }
        }
    }
    for (lf, &s) in lfsrs.iter_mut().zip(&st) {
        *lf = Lfsr::new(lf.width(), lf.taps(), s).expect("an LFSR state stays valid");
    }
}

/// [`run_lanes`] with the vector units of the machine (AVX-512 where present: its 64-bit
/// multiply, shifts and clamps vectorise the update), the same arithmetic.
fn run_lanes_dispatch(
    lfsrs: &mut [Lfsr],
    walks: &[Vec<Run>],
    ws: Shared,
    gs: &[i64],
    k: &UpdateKernel,
) {
    #[cfg(target_arch = "x86_64")]
    {
        if super::vector::has_avx512_i64() {
            #[target_feature(enable = "avx512f,avx512dq,avx512vl")]
            unsafe fn wide(
                lfsrs: &mut [Lfsr],
                walks: &[Vec<Run>],
                ws: Shared,
                gs: &[i64],
                k: &UpdateKernel,
            ) {
                run_lanes(lfsrs, walks, ws, gs, k)
            }
            // SAFETY: the features were detected at run time.
            return unsafe { wide(lfsrs, walks, ws, gs, k) };
        }
    }
    run_lanes(lfsrs, walks, ws, gs, k)
}

impl UpdateUnit {
    /// [`UpdateUnit::update_tiled`] along a precomputed walk: the same result, every lane's
    /// LFSR left in the same state, the lanes run in parallel.
    pub fn update_walk(
        &mut self,
        ws: &mut [i32],
        gs: &[i64],
        walk: &LaneWalk,
        g_frac: u32,
        fmt: QFormat,
    ) {
        let n = walk.shape.0 * walk.shape.1;
        assert_eq!(ws.len(), n, "weights do not match the walk's shape");
        assert_eq!(gs.len(), n, "gradients do not match the walk's shape");
        assert!(walk.lanes.len() <= self.lanes.len(), "walk has more lanes");
        debug_assert!(walk.covers_each_once());
        let width = self.lanes.first().map_or(32, |l| l.width());
        let k = UpdateKernel::new(self.lr, self.rounding, g_frac, fmt, width);
        let ptr = Shared(ws.as_mut_ptr());
        let lanes = &mut self.lanes[..walk.lanes.len()];
        let threads = if n < 1 << 14 {
            1
        } else {
            rayon::current_num_threads()
        };
        // One group of lanes per thread (each group's LFSRs are clocked side by side).
        let group = lanes.len().div_ceil(threads).clamp(1, 8);
        if threads == 1 || lanes.len() <= group {
            run_lanes_dispatch(lanes, &walk.lanes, ptr, gs, &k);
        } else {
            lanes
                .par_chunks_mut(group)
                .zip(walk.lanes.par_chunks(group))
                .for_each(|(l, w)| run_lanes_dispatch(l, w, ptr, gs, &k));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::fixed::lane_seeds;
    use proptest::prelude::*;

    fn unit(lanes: usize, lr: LearningRate, rounding: Rounding, seed: u64) -> UpdateUnit {
        let f = Config::builtin().fixed;
        let mut u = UpdateUnit::with_lanes(&f, lr, lanes).unwrap();
        u.rounding = rounding;
        for (l, s) in u.lanes.iter_mut().zip(lane_seeds(seed, lanes, 32)) {
            *l = Lfsr::with_default_taps(32, s).unwrap();
        }
        u
    }

    fn q(bits: u32, frac: u32) -> QFormat {
        QFormat {
            bits,
            frac,
            signed: true,
        }
    }

    /// A matrix large enough for the parallel path (lane groups on threads, several word
    /// blocks per lane), DF's row map and DF-O's diagonal map: the same weights and LFSR
    /// states as the reference walk.
    #[test]
    fn parallel_walk_equals_update_tiled() {
        let (rows, cols, tile) = (150, 130, (12, 12));
        assert!(rows * cols >= 1 << 14);
        for diag in [false, true] {
            let bank = |o: usize, k: usize| (if diag { o + k } else { o }) % tile.0;
            let lr = LearningRate::Mul {
                value: 3 << 16,
                frac: 16,
            };
            let fmt = q(16, 12);
            let ws0: Vec<i32> = (0..rows * cols)
                .map(|i| ((i * 7919) % 65536) as i32 - 32768)
                .collect();
            let gs: Vec<i64> = (0..rows * cols)
                .map(|i| {
                    ((i as i64 * 104_729) % (1 << 34)) - (1 << 33)
                        + if i == 77 { 1 << 60 } else { 0 }
                })
                .collect();
            let mut a = unit(tile.0, lr, Rounding::Stochastic, 5);
            let mut b = a.clone();
            let (mut wa, mut wb) = (ws0.clone(), ws0);
            a.update_tiled(&mut wa, &gs, (rows, cols), tile, bank, 32, fmt);
            let walk = LaneWalk::tiled((rows, cols), tile, bank, tile.0);
            assert!(walk.covers_each_once());
            b.update_walk(&mut wb, &gs, &walk, 32, fmt);
            assert_eq!(wa, wb, "diag = {diag}");
            assert_eq!(a.lanes, b.lanes, "diag = {diag}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// The parallel walk equals the reference walk, weights and LFSR states, for the DF
        /// bank map (o mod R) and DF-O's diagonal map, edge tiles included, and for gradients
        /// that take the `i128` path.
        #[test]
        fn walk_equals_update_tiled(
            rows in 1usize..40, cols in 1usize..40, tr in 1usize..7, tc in 1usize..7,
            diag: bool, seed in 1u64..1000, big: bool, mode in 0usize..3, lr_value in 1i64..1 << 24,
        ) {
            let rounding = [Rounding::Truncate, Rounding::HalfUp, Rounding::Stochastic][mode];
            let lr = LearningRate::Mul { value: lr_value, frac: 16 };
            let bank = |o: usize, k: usize| (if diag { o + k } else { o }) % tr;
            let fmt = q(16, 12);
            let mut s = seed;
            let mut next = || {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (s >> 11) as i64
            };
            let ws0: Vec<i32> = (0..rows * cols).map(|_| (next() % 65536 - 32768) as i32).collect();
            let gs: Vec<i64> = (0..rows * cols)
                .map(|_| {
                    let v = next();
                    if big { v % (1 << 47) - (1 << 46) } else { v % (1 << 30) - (1 << 29) }
                })
                .collect();
            let mut a = unit(tr, lr, rounding, seed);
            let mut b = a.clone();
            let mut wa = ws0.clone();
            let mut wb = ws0;
            a.update_tiled(&mut wa, &gs, (rows, cols), (tr, tc), bank, 32, fmt);
            let walk = LaneWalk::tiled((rows, cols), (tr, tc), bank, tr);
            prop_assert!(walk.covers_each_once());
            b.update_walk(&mut wb, &gs, &walk, 32, fmt);
            prop_assert_eq!(wa, wb);
            prop_assert_eq!(a.lanes, b.lanes);
        }

        /// The kernel is `lr_update` exactly, at the extremes of every operand.
        #[test]
        fn kernel_equals_lr_update(
            w in prop_oneof![Just(i64::from(i16::MIN)), Just(i64::from(i16::MAX)), -40000i64..40000],
            g in prop_oneof![Just(i64::MIN), Just(i64::MAX), Just(0i64), any::<i64>(), -(1i64 << 40)..(1 << 40)],
            word: u64, g_frac in 0u32..70, lr_frac in 0u32..40, value in prop_oneof![Just(i64::MIN), Just(i64::MAX), -(1i64 << 30)..(1 << 30)],
            shift_lr: bool, mode in 0usize..3, wbits in 2u32..33, wfrac in 0u32..20, width in 8u32..65,
        ) {
            let rounding = [Rounding::Truncate, Rounding::HalfUp, Rounding::Stochastic][mode];
            let lr = if shift_lr { LearningRate::Shift(lr_frac) } else { LearningRate::Mul { value, frac: lr_frac } };
            let fmt = q(wbits, wfrac.min(wbits - 1));
            let w = w.clamp(fmt.min(), fmt.max());
            let k = UpdateKernel::new(lr, rounding, g_frac, fmt, width);
            let lr_frac = match lr { LearningRate::Mul { frac, .. } => frac, LearningRate::Shift(s) => s };
            let shift = (g_frac + lr_frac).saturating_sub(fmt.frac);
            let want = lr_update(w, g, g_frac, fmt, lr, rounding, update_rnd(word, shift, width));
            prop_assert_eq!(k.apply(w, g, word), want);
            prop_assert_eq!(i64::from(k.apply_i32(w as i32, g, word)), want);
        }
    }
}
