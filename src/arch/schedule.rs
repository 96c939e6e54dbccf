//! The engine's schedule: the pipeline latency of every unit and memory read, the timing of
//! every op engine, and from them the cycles of a training step or an inference as a formula.
//!
//! The RTL generator builds each op engine's FSM from the same [`Timing`] values this module
//! sums, so `predicted_cycles` equals the engine's busy counter exactly
//! (`tests/engine_cosim.rs` checks it on random configs).

use super::program::Op;
use super::shape::Shape;
use super::Arch;

/// Cycles from an op engine issuing a memory read (its request register) to the data on
/// the bank's read port: the request register, the block RAM's own request register and its
/// four read registers ([`crate::rtl::bram`]).
pub const READ_LAT: u64 = 6;
/// A lane rotator (or plain lane) register after the read: data reaches a lane datapath
/// `READ_LAT + 1` cycles after the read was issued.
pub const LANE_LAT: u64 = READ_LAT + 1;

/// Operand pieces of a multiplier on 18×18 signed DSPs (MULT18X18D): 17-bit unsigned low
/// pieces and a signed top piece of at most 18 bits.
pub fn mul_pieces(bits_signed: u32) -> u32 {
    if bits_signed <= 18 {
        1
    } else {
        1 + (bits_signed - 18).div_ceil(17)
    }
}

/// Register stages of an exact pipelined multiply of signed `a_w`- and `b_w`-bit operands
/// (registered inputs in the cycle before): the partial products (one DSP each), then a
/// tree of two-input adds with a register after each level.
pub fn mul_stages(a_w: u32, b_w: u32) -> u64 {
    let n = mul_pieces(a_w) * mul_pieces(b_w);
    1 + u64::from(n.next_power_of_two().trailing_zeros())
}

/// Latency of the ReLU/requantise unit (`z_i` to `h_o`).
pub const RELU_LAT: u64 = 2;
/// Latency of the squared-sum unit: the last lane's input to `s_o` valid (input register,
/// the pipelined square, the accumulator).
pub fn sumsq_lat(s: &Shape) -> u64 {
    let hw = s.f.hidden.bits + 1;
    1 + mul_stages(hw, hw) + 1
}
/// Latency of the goodness scale unit (`s_i` to `g_o`): input registers, the pipelined
/// S·(1/d), rounding, saturation.
pub fn gscale_lat(s: &Shape) -> u64 {
    1 + mul_stages(s.sum_w + 1, s.recip_w + 1) + 2
}
/// Latency of the normalisation unit from `x_i` to `y_o` (lanes may start the cycle after
/// `sv_i`): three input registers, the pipelined product with the rsqrt word, the rounding
/// add, the shift and saturation.
pub fn normalise_lat(s: &Shape) -> u64 {
    5 + mul_stages(s.norm_x_w + 1, s.f.rsqrt_frac + 3)
}
/// `sv_i` to the rsqrt parts on `rs_*_o`: leading one, table address, ROM, the word
/// registered again (a block RAM's output is slow; it feeds a multiplier).
pub const NORMALISE_RS_LAT: u64 = 4;
/// Latency of the update unit (`w_i`, `g_i` to `w_o`): the input registers, the pipelined
/// product g·η/B, the high part and rounding carry, the difference, its saturation.
pub fn update_lat(s: &Shape) -> u64 {
    4 + mul_stages(s.f.update.bits, s.lr_w + 1)
}

/// Groups of `lanes` rows covering `n` rows.
pub fn groups(n: u64, lanes: u64) -> u64 {
    n.div_ceil(lanes.max(1)).max(1)
}

/// INORM / NORM l: one group of C rows (samples for INORM) at a time. Offsets are cycles
/// from the group's first read; the first group starts the cycle after `start`.
/// - reads of column k = 0..d−1 at offset k (the squares pass); the lanes' squared-sum
///   units hold S of every lane at `s_at`, where the normalise units load it and a holding
///   register keeps it;
/// - from `s_at + 1`, one lane per cycle enters the shared goodness unit (G written
///   `gscale_lat` later); with feedback the rsqrt parts are written from
///   `s_at + NORMALISE_RS_LAT`, one lane per cycle;
/// - the normalise pass reads column k again at `b_at + k` and writes x̂ `LANE_LAT +
///   normalise_lat` later;
/// - groups follow each other every `period` cycles (long enough that the G and rsqrt
///   streams of consecutive groups do not overlap); the op ends `end` cycles after the last
///   group's first read, with its last write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NormTiming {
    pub d: u64,
    /// The normalise pass runs (x̂ is written): INORM and every NORM but the top layer's.
    pub phase_b: bool,
    /// G is written (NORM).
    pub g_write: bool,
    /// The rsqrt parts are written (NORM of a layer that gets feedback).
    pub rs_write: bool,
    pub s_at: u64,
    pub b_at: u64,
    pub period: u64,
    pub end: u64,
}

impl NormTiming {
    pub fn new(arch: &Arch, op: Op) -> NormTiming {
        let (d, phase_b, g_write, rs_write) = match op {
            Op::Inorm => (arch.dims[0], true, false, false),
            Op::Norm(l) => (
                arch.dims[l + 1],
                l + 1 < arch.layers(),
                true,
                l < arch.fb_layers(),
            ),
            _ => panic!("NormTiming of {op:?}"),
        };
        let d = d as u64;
        let c = arch.lanes.norm as u64;
        let s_at = d - 1 + LANE_LAT + sumsq_lat(&arch.shape);
        let b_at = d + sumsq_lat(&arch.shape);
        let period = if phase_b { b_at + d } else { d }.max(c);
        let mut end = s_at;
        if phase_b {
            end = end.max(b_at + d - 1 + LANE_LAT + normalise_lat(&arch.shape));
        }
        if g_write {
            end = end.max(s_at + c + gscale_lat(&arch.shape));
        }
        if rs_write {
            end = end.max(s_at + NORMALISE_RS_LAT + c - 1);
        }
        NormTiming {
            d,
            phase_b,
            g_write,
            rs_write,
            s_at,
            b_at,
            period,
            end,
        }
    }

    /// Cycles of the op over `n` rows, `start` to `done` inclusive.
    pub fn cycles(&self, n: u64, lanes: u64) -> u64 {
        3 + (groups(n, lanes) - 1) * self.period + self.end
    }
}

/// Cycles from a GEMM step's issue to its operands in the array's edge registers (the read
/// and the lane rotator).
pub const EDGE_LAT: u64 = LANE_LAT;
/// The input skew delays lane r by r + 1 cycles; a PE registers its operands, its product
/// and its sum (the shadow of a tile's last product).
pub const SKEW_LAT: u64 = 1;
pub const PE_LAT: u64 = 3;
/// A tile's last step issued in cycle T leaves PE (i, j)'s shadow valid from
/// T + SHADOW_LAT + i + j.
pub const SHADOW_LAT: u64 = EDGE_LAT + SKEW_LAT + PE_LAT;

/// The three GEMMs on the array. The feed streams the tiles (R-row blocks outer, C-column
/// blocks inner) back to back, `k` operand steps each, padded to `pad` when shorter; the
/// drain engine follows each tile's last step by `lag` cycles and reads its shadows for
/// `drain` cycles: GRAD a column per cycle (R lanes into the update units), FWD and FB one
/// PE per cycle, column by column. `tail` is from the last drain sample to the cycle the
/// op's last write is issued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GemmTiming {
    pub m: u64,
    pub n: u64,
    pub k: u64,
    pub pad: u64,
    pub lag: u64,
    pub drain: u64,
    pub tail: u64,
}

impl GemmTiming {
    /// FWD l, GRAD l or FB l with `samples` samples and `rows` rows in the run.
    pub fn new(arch: &Arch, op: Op, samples: u64, rows: u64) -> GemmTiming {
        let (r, c) = (arch.rows as u64, arch.cols as u64);
        let d: Vec<u64> = arch.dims.iter().map(|&x| x as u64).collect();
        let (m, n, k) = match op {
            Op::Fwd(l) => (d[l + 1], if l == 0 { samples } else { rows }, d[l]),
            Op::Grad(l) => (d[l + 1], d[l], if l == 0 { samples } else { rows }),
            Op::Fb(l) => (d[l + 1], rows, d[l + 2]),
            _ => panic!("GemmTiming of {op:?}"),
        };
        let grad = matches!(op, Op::Grad(_));
        // A column sample of PE (i, j) must see the shadow after its last row's product
        // arrived and before the next tile's does; drains must not overlap.
        let (pad, lag, drain) = if grad {
            (r.max(c), SHADOW_LAT + r - 1, c)
        } else {
            (r * c, SHADOW_LAT, r * c)
        };
        let tail = match op {
            Op::Grad(_) => 1 + READ_LAT + update_lat(&arch.shape),
            Op::Fwd(0) => DRAIN_MUX_LAT,
            // The element meets the bias READ_LAT after its sample; then the sum, ReLU.
            Op::Fwd(_) => READ_LAT + 1 + RELU_LAT,
            // The element meets the rsqrt parts READ_LAT after its sample; then the
            // multiplier, the rounding sum and the saturated shift.
            Op::Fb(_) => {
                let (rs_w, _) = arch.rs_widths();
                READ_LAT + mul_stages(arch.shape.acc_w, rs_w + 1) + 2
            }
            _ => unreachable!(),
        };
        GemmTiming {
            m,
            n,
            k,
            pad,
            lag,
            drain,
            tail,
        }
    }

    /// Steps per tile.
    pub fn steps(&self) -> u64 {
        self.k.max(self.pad)
    }

    pub fn tiles(&self, arch: &Arch) -> u64 {
        self.m.div_ceil(arch.rows as u64) * self.n.div_ceil(arch.cols as u64)
    }

    /// Cycles of the op, `start` to `done` inclusive: the first step one cycle after
    /// start, the last tile's last step, its drain, the tail, then `done`.
    pub fn cycles(&self, arch: &Arch) -> u64 {
        let last_step = 1 + (self.tiles(arch) - 1) * self.steps() + self.k - 1;
        last_step + self.lag + self.drain - 1 + self.tail + 2
    }
}

/// The drain's shadow sample to its registered element (FWD/FB: the column select, then
/// the row select).
pub const DRAIN_MUX_LAT: u64 = 2;
/// Cycles a drained element waits for the per-row operand read at its sample (FWD: the
/// bias; FB: the rsqrt parts), so that both meet READ_LAT after the sample.
pub const DRAIN_READ_ALIGN: u64 = READ_LAT - DRAIN_MUX_LAT;

/// CEN: the V table (classes × d_1 values, one per cycle from the cycle after start), then
/// one row every `period` = ⌈d_1/cl⌉ cycles: a header (the hypothesis read, its V row) and,
/// `header_lat` cycles later, `period` column groups; each group's h_1 write is
/// `write_lat` after its issue. The op ends `tail` cycles after the last header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CenTiming {
    pub table: u64,
    pub period: u64,
    pub header_lat: u64,
    pub write_lat: u64,
    pub tail: u64,
}

impl CenTiming {
    pub fn new(arch: &Arch) -> CenTiming {
        let period = (arch.dims[1] as u64).div_ceil(arch.lanes.cen as u64);
        // The hypothesis read, then V's row base registered; the group counter loads one
        // cycle later.
        let header_lat = READ_LAT + 2;
        let write_lat = READ_LAT + 1 + RELU_LAT;
        CenTiming {
            table: (arch.classes * arch.dims[1]) as u64,
            period,
            header_lat,
            write_lat,
            tail: header_lat + period - 1 + write_lat,
        }
    }

    /// Cycles over `rows` rows, `start` to `done` inclusive.
    pub fn cycles(&self, rows: u64) -> u64 {
        self.table + 1 + (rows - 1) * self.period + self.tail + 2
    }
}

/// The N-pair loss unit's two multiplier pipelines ([`crate::rtl::loss::loss_npair`]):
/// LOGIT (sat(G̃k − G̃y + m) registered, the product with s, the requantised t registered)
/// and BETA (the product E·R, the saturated β registered). Each phase streams its K − 1
/// slots through its pipeline, one per cycle, so it takes K − 1 + its latency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NpairTiming {
    pub logit_lat: u64,
    pub beta_lat: u64,
}

impl NpairTiming {
    pub fn new(s: &Shape) -> NpairTiming {
        let f = &s.f;
        let ew = f.exp_frac + 1;
        let rw = f.recip_frac.min(62) + 1;
        NpairTiming {
            logit_lat: 1 + mul_stages(f.goodness.bits + 1, s.logit_scale_w) + 1,
            beta_lat: mul_stages(ew + 1, rw + 1) + 1,
        }
    }

    /// Cycles from `start_i` to `done_o`: LOGIT n + its latency, EXP 3(n + 1), DIV f + 1,
    /// BETA n + its latency, FIN, and the registered done.
    pub fn cycles(&self, s: &Shape) -> u64 {
        let n = s.classes as u64 - 1;
        let f = u64::from(s.f.recip_frac.min(62));
        (n + self.logit_lat) + 3 * (n + 1) + (f + 1) + (n + self.beta_lat) + 2
    }
}

/// LOSS l, per sample: the K slots' G gathered (K reads, then READ_LAT cycles), the hard
/// negatives' rounds (n rounds of K − 1 candidates), then the N-pair unit (one start cycle,
/// [`NpairTiming::cycles`] to done, K β writes) or the hinge stream (K slots, two cycles for β_y).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LossTiming {
    pub per_sample: u64,
}

impl LossTiming {
    pub fn new(arch: &Arch) -> LossTiming {
        let k = arch.hyps as u64;
        let sel = arch.hard.map_or(0, |n| n as u64 * (k - 1));
        let unit = if arch.npair() {
            1 + NpairTiming::new(&arch.shape).cycles(&arch.shape) + k
        } else {
            k + 2
        };
        LossTiming {
            per_sample: k + READ_LAT + sel + unit,
        }
    }

    pub fn cycles(&self, samples: u64) -> u64 {
        samples * self.per_sample + 2
    }
}

/// DELTA l: one row every `period` = max(⌈d/lanes⌉, [`DELTA_MIN_PERIOD`]) cycles. A row's
/// header reads β (and its hypothesis); `header` cycles later its column groups issue, one
/// per cycle: the h read, β·(2/d) (recomputed per group on one multiplier) and δ =
/// requant(coefficient · h) on the lanes, the feedback added, then δ written back in
/// place, to the local copy, and added into Δb, e and ΔU (read-modify-write): `fin`
/// cycles after the group's issue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeltaTiming {
    pub groups: u64,
    pub period: u64,
    pub header: u64,
    /// Issue to the multiplier operands (the lane data and the coefficient).
    pub operands: u64,
    /// Issue to the last writes.
    pub fin: u64,
}

/// Rows of one DELTA op are at least this many cycles apart: a Δb, e or ΔU word is read
/// again by the next row only after the previous row's write landed.
pub const DELTA_MIN_PERIOD: u64 = READ_LAT + 1;

impl DeltaTiming {
    pub fn new(arch: &Arch, l: usize) -> DeltaTiming {
        let d = arch.dims[l + 1] as u64;
        let groups = d.div_ceil(arch.lanes.delta as u64);
        let f = &arch.shape.f;
        let m_coef = mul_stages(f.beta.bits, delta_coef_bits(arch).1 + 1);
        let operands = LANE_LAT.max(m_coef);
        let m_delta = mul_stages(delta_coef_bits(arch).0, f.hidden.bits + 1);
        DeltaTiming {
            groups,
            period: groups.max(DELTA_MIN_PERIOD),
            header: READ_LAT + 1,
            operands,
            fin: operands + m_delta + 3,
        }
    }

    pub fn cycles(&self, rows: u64) -> u64 {
        1 + (rows - 1) * self.period + self.header + self.groups - 1 + self.fin + 2
    }
}

/// (Bits of the signed coefficient β·(2/d), bits of the unsigned 2/d constants.)
pub fn delta_coef_bits(arch: &Arch) -> (u32, u32) {
    let f = &arch.shape.f;
    let tod = arch
        .dims
        .iter()
        .skip(1)
        .map(|&d| f.constant(2.0 / d as f64))
        .max()
        .unwrap_or(1);
    let tw = super::shape::bitlen(tod.max(1) as u128);
    (f.beta.bits + tw + 1, tw)
}

/// The cycles of one op (its engine from `start` to `done`, both included) with `n`
/// samples in a training step (`infer`: one sample under every class).
pub fn op_cycles(arch: &Arch, op: Op, n: usize, infer: bool) -> u64 {
    let kh = if infer { arch.classes } else { arch.hyps } as u64;
    let samples = if infer { 1 } else { n as u64 };
    let rows = samples * kh;
    match op {
        Op::Inorm => NormTiming::new(arch, op).cycles(samples, arch.lanes.norm as u64),
        Op::Norm(_) => NormTiming::new(arch, op).cycles(rows, arch.lanes.norm as u64),
        Op::Cen => CenTiming::new(arch).cycles(rows),
        Op::Loss(_) => LossTiming::new(arch).cycles(samples),
        Op::Delta(l) => DeltaTiming::new(arch, l).cycles(rows),
        // One read per class from the cycle after start, READ_LAT, the registered sum; the
        // last comparison with done.
        Op::Pred => arch.classes as u64 + READ_LAT + 3,
        // The walk from the cycle after start, the last write-back with done.
        Op::Bupd(l) => arch.dims[l + 1] as u64 + READ_LAT + update_lat(&arch.shape) + 2,
        Op::Uupd => (arch.classes * arch.dims[1]) as u64 + READ_LAT + update_lat(&arch.shape) + 2,
        Op::Fwd(_) | Op::Grad(_) | Op::Fb(_) => {
            GemmTiming::new(arch, op, samples, rows).cycles(arch)
        }
        Op::End => 0,
    }
}

/// Cycles of one training step with `n` samples (or one inference), as the engine's busy
/// counter counts them: every op's engine cycles plus the sequencer's fetch and issue,
/// and the END op's fetch and issue.
pub fn predicted_cycles(arch: &Arch, n: usize, infer: bool) -> u64 {
    cycles_by_op(arch, n, infer).iter().map(|(_, c)| c).sum()
}

/// [`predicted_cycles`] split by op kind, in program order of first appearance.
pub fn cycles_by_op(arch: &Arch, n: usize, infer: bool) -> Vec<(&'static str, u64)> {
    let mut by: Vec<(&'static str, u64)> = Vec::new();
    let mut add = |op: &'static str, c: u64| match by.iter_mut().find(|(o, _)| *o == op) {
        Some((_, t)) => *t += c,
        None => by.push((op, c)),
    };
    for &op in arch.program.run(infer) {
        add(op.name(), op_cycles(arch, op, n, infer) + SEQ_OVERHEAD);
    }
    add("END", SEQ_OVERHEAD);
    by
}

/// The sequencer's cycles per op around its engine: fetch and issue.
pub const SEQ_OVERHEAD: u64 = 2;

/// MACs of one training step with `n` samples (or one inference): the forward GEMMs, the
/// weight-gradient GEMMs and DF-R/DF-O's feedback GEMMs (the array's useful work).
pub fn ideal_macs(arch: &Arch, n: usize, infer: bool) -> u64 {
    let d = &arch.dims;
    let rows = if infer { arch.classes } else { n * arch.hyps };
    let samples = if infer { 1 } else { n };
    let mut fwd = (samples * d[0] * d[1]) as u64;
    for l in 1..arch.layers() {
        fwd += (rows * d[l] * d[l + 1]) as u64;
    }
    if infer {
        return fwd;
    }
    let mut grad = (samples * d[0] * d[1]) as u64;
    for l in 1..arch.layers() {
        grad += (rows * d[l] * d[l + 1]) as u64;
    }
    let feedback: u64 = if arch.feedback() {
        (1..arch.layers())
            .map(|l| (rows * d[l] * d[l + 1]) as u64)
            .sum()
    } else {
        0
    };
    fwd + grad + feedback
}

/// The schedule's prediction for a config, before any simulation: ideal MACs, cycles and
/// PE utilisation of a full training step and of an inference (the manifest's `schedule`).
pub fn summary(arch: &Arch) -> serde_json::Value {
    let b = arch.batch;
    let pes = (arch.rows * arch.cols) as f64;
    let tc = predicted_cycles(arch, b, false);
    let ic = predicted_cycles(arch, 1, true);
    let tm = ideal_macs(arch, b, false);
    let im = ideal_macs(arch, 1, true);
    serde_json::json!({
        "train_step": {
            "samples": b,
            "ideal_macs": tm,
            "ideal_cycles": (tm as f64 / pes).ceil(),
            "cycles": tc,
            "cycles_per_sample": tc as f64 / b as f64,
            "pe_utilisation": tm as f64 / (pes * tc as f64),
            "cycles_by_op": cycles_by_op(arch, b, false)
                .into_iter()
                .map(|(op, c)| (op.to_string(), serde_json::json!(c)))
                .collect::<serde_json::Map<_, _>>(),
        },
        "inference": {
            "ideal_macs": im,
            "cycles": ic,
            "pe_utilisation": im as f64 / (pes * ic as f64),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiplier_pieces_and_stages() {
        assert_eq!(mul_pieces(18), 1);
        assert_eq!(mul_pieces(19), 2);
        assert_eq!(mul_pieces(35), 2);
        assert_eq!(mul_pieces(36), 3);
        assert_eq!(mul_stages(18, 18), 1);
        assert_eq!(mul_stages(48, 18), 3); // 3 products: two adder levels
        assert_eq!(mul_stages(19, 19), 3); // 4 products
    }
}
