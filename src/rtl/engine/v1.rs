//! The DF engine: one module that trains a minibatch (or infers one sample) with the units
//! of this folder, sequenced by a small per-layer microprogram (DESIGN.md §3).
//!
//! **Memories.** One block RAM ([`super::bram`]) per tensor and layer, banked where the array
//! needs several operands per cycle: weights W_l in R banks by output row (bank o mod R), the
//! activations the array reads (x̂_0 and x̂_l) in C banks stored *diagonally* (element (r, k)
//! in bank (r + k) mod C at word (r div C)·d + k), so that a forward tile reads C rows at one
//! column and a gradient tile reads C columns of one row, each without bank conflicts (a
//! rotator puts the banks back in lane order), and the local errors δ_l in R banks by column.
//! The vector ops work on lanes, so their tensors are banked too: pixels by sample, h_l
//! diagonally like x̂, a_1 by column (docs/engine.md has the table). Small accumulators (Δb,
//! ΔU, the per-sample error e of layer 1) are register files with asynchronous read, updated
//! read-modify-write in one cycle, one entry per lane.
//!
//! **Microprogram.** `train` runs INORM, FWD 1, CEN, NORM 1, (FWD l, NORM l)…, LOSS l…,
//! DELTA l…, (GRAD l, BUPD l)…, UUPD; `infer` runs the forward ops then PRED. Each op is a
//! small loop nest in the sequencer; the layer field selects memories and constants.
//! - INORM / NORM l: a goodness pass (S = Σx², G) and a normalise pass (x̂ = x·rsqrt S), C
//!   rows (samples for INORM) at a time on C lanes of goodness and normalise units.
//! - FWD l: the forward GEMM on the array, tiles back to back; the drain engine adds the bias
//!   and applies ReLU/requantise into h_l (layer 1 drains the raw product into a per-sample
//!   buffer).
//! - CEN: layer 1's per-hypothesis epilogue z = W_1x̂_0 + b_1 + U[hyp].
//! - LOSS l: G̃ per slot (collaboration), the loss unit, β_l.
//! - DELTA l: δ = β·(2/d)·h requantised; Δb, e and ΔU accumulate on the way.
//! - GRAD l: the weight-gradient GEMM; each tile drains a column per cycle through R update
//!   units (one per W bank) into W_l (the golden model's walk order,
//!   [`crate::fixed::model::UpdateUnit::update_tiled`]).
//! - BUPD l, UUPD: update lane 0 over b_l and U.
//! - FB l (DF-R / DF-O, between DELTA l+1 and DELTA l): B_{l+1}ᵀδ_{l+1} (or W_{l+1}ᵀδ_{l+1})
//!   on the array, scaled by rsqrt(S_l) in the drain; DELTA l adds it. DF-O banks W
//!   diagonally so that one row's columns come from distinct banks.
//!
//! The host picks random negatives and writes them with the labels; hard negatives are
//! selected in LOSS from the gathered scores. Every GEMM streams its tiles back to back:
//! each PE keeps a finished tile's sum in a shadow register, which a drain engine reads while
//! the next tile streams; a tile lasts at least its drain + 1 steps (R·C + 1 for FWD/FB, so
//! forward GEMMs with d_in < R·C are drain-bound). The vector ops work on lanes (NORM/INORM
//! C rows, DELTA/CEN up to C columns); `cycles_by_op` and the counters say where the cycles
//! go.

use super::super::util::*;
use super::super::{RtlError, Shape};
use crate::config::{Collaboration, Config, Loss, Negatives, Scheme};
use crate::fixed::model::Units;
use crate::fixed::LearningRate;
use crate::hdl::*;

/// Bus region codes (docs/protocol.md); `+ l` for per-layer regions (l = 0-based layer).
pub mod region {
    pub const PIXELS: u8 = 0x00;
    pub const HYPS: u8 = 0x01;
    pub const WEIGHTS: u8 = 0x10;
    pub const BIASES: u8 = 0x20;
    pub const CENTROIDS: u8 = 0x30;
    pub const GOODNESS: u8 = 0x40;
    pub const BETA: u8 = 0x50;
    /// DF-R's feedback matrices, `+ l` for layer l's (B_{l+1} transposed, [`super::Layout::fb_addr`]).
    pub const FEEDBACK: u8 = 0x60;
    pub const HYPER: u8 = 0xF0;
    pub const COUNTERS: u8 = 0xF1;
}

/// Hyper-parameter addresses in [`region::HYPER`].
pub mod hyper {
    /// η/B as the update unit's constant (raw, `fixed.lr_frac` fraction bits).
    pub const LR: u32 = 0;
    /// Samples in the next training batch (1 ..= training.batch).
    pub const BATCH: u32 = 1;
}

/// Counter addresses in [`region::COUNTERS`].
pub mod counter {
    /// Clock cycles since reset.
    pub const CYCLES: u32 = 0;
    /// Cycles spent running a command (train or infer).
    pub const BUSY: u32 = 1;
    /// Cycles in which the array received a new operand step (R × C MACs issued).
    pub const ARRAY: u32 = 2;
    /// Completed runs.
    pub const RUNS: u32 = 3;
    pub const COUNT: u32 = 4;
}

/// Run ops (`run_op_i`).
pub const RUN_TRAIN: u8 = 1;
pub const RUN_INFER: u8 = 2;

/// Sizes and address layout of the engine's memories, shared by the generator and the host
/// driver so both agree on where every value lives.
#[derive(Clone, Debug)]
pub struct Layout {
    /// d_0 … d_L.
    pub dims: Vec<usize>,
    pub classes: usize,
    pub batch: usize,
    /// Hypotheses per sample when training.
    pub hyps: usize,
    pub rows: usize,
    pub cols: usize,
    /// DF-R / DF-O: layer l's δ gets B_{l+1}ᵀδ_{l+1} (or W_{l+1}ᵀδ_{l+1}) fed back (the FB
    /// ops and their memories).
    pub feedback: bool,
    /// DF-O: W is banked diagonally (element (o, k) in bank (o + k) mod R), so the FB op
    /// reads R consecutive columns of one row as FWD reads R rows of one column.
    pub diag_w: bool,
}

pub fn div_ceil(a: usize, b: usize) -> usize {
    a.div_ceil(b.max(1))
}

/// Address bits of a memory of `depth` words.
pub fn abits(depth: usize) -> u32 {
    bitlen(depth.saturating_sub(1).max(1) as u128)
}

impl Layout {
    pub fn new(cfg: &Config) -> Result<Layout, RtlError> {
        let a = &cfg.algorithm;
        let hyps = match a.negatives {
            Negatives::Random => a.negatives_count + 1,
            _ => cfg.network.classes,
        };
        let mut dims = vec![cfg.network.input];
        dims.extend(cfg.network.hidden.iter().copied());
        if a.scheme != Scheme::Df && dims.len() > 2 {
            // FB l sums d_{l+2} products δ·w in the PE accumulator, then shifts right by
            // weight.frac + rsqrt_frac + k, k >= 1 − hidden.frac.
            let f = &cfg.fixed;
            let widest = dims[2..].iter().copied().max().unwrap_or(1);
            let need = f.delta.bits + f.weight.bits + super::super::util::bitlen(widest as u128);
            let acc = f.accumulator.bits.max(f.update.bits);
            if need > acc {
                return Err(RtlError::Unsupported(format!(
                    "{}'s feedback sums need {need} accumulator bits (delta + weight + log2 of the widest layer above the first); widen fixed.accumulator or fixed.update to {need}",
                    a.scheme
                )));
            }
            if f.weight.frac + f.rsqrt_frac + 1 < f.hidden.frac {
                return Err(RtlError::Unsupported(format!(
                    "{}'s feedback scaling shifts right by weight.frac + rsqrt_frac + k; it needs weight.frac + rsqrt_frac + 1 >= hidden.frac",
                    a.scheme
                )));
            }
        }
        if cfg.fixed.pixel.bits > cfg.fixed.hidden.bits {
            return Err(RtlError::Unsupported(
                "the goodness unit reads pixels on its hidden-width port: fixed.pixel.bits must be <= fixed.hidden.bits".into(),
            ));
        }
        // The δ pipeline carries row and column indices in 16 bits.
        let rows = cfg.training.batch * hyps;
        if rows > u16::MAX as usize {
            return Err(RtlError::Unsupported(format!(
                "a training step has training.batch × hypotheses = {rows} rows; the engine indexes at most {} (lower training.batch or algorithm.negatives_count)",
                u16::MAX
            )));
        }
        Ok(Layout {
            dims,
            classes: cfg.network.classes,
            batch: cfg.training.batch,
            hyps,
            rows: cfg.hardware.array_rows,
            cols: cfg.hardware.array_cols,
            feedback: a.scheme != Scheme::Df,
            diag_w: a.scheme == Scheme::DfO,
        })
    }

    pub fn layers(&self) -> usize {
        self.dims.len() - 1
    }
    /// Rows (sample, hypothesis) of a training step.
    pub fn train_rows(&self) -> usize {
        self.batch * self.hyps
    }
    /// Rows of the activation memories: a training step or one sample under every class.
    pub fn max_rows(&self) -> usize {
        self.train_rows().max(self.classes)
    }
    /// Words per bank of W_l (layer `l` 0-based).
    pub fn w_depth(&self, l: usize) -> usize {
        div_ceil(self.dims[l + 1], self.rows) * self.dims[l]
    }
    /// Where W_l[o][k] lives: (bank, word) — bank o mod R (DF-O: (o + k) mod R), word
    /// (o div R)·d_in + k.
    pub fn w_bank_word(&self, l: usize, o: usize, k: usize) -> (usize, usize) {
        let bank = if self.diag_w { o + k } else { o } % self.rows;
        (bank, (o / self.rows) * self.dims[l] + k)
    }
    /// Bus address of W_l[o][k]: bank in the high bits, word in the low bits.
    pub fn w_addr(&self, l: usize, o: usize, k: usize) -> u32 {
        let (bank, word) = self.w_bank_word(l, o, k);
        ((bank as u32) << abits(self.w_depth(l))) | word as u32
    }
    /// Words per bank of the pixel memory: samples in C banks (bank s mod C, word
    /// (s div C)·d₀ + k), so INORM reads C samples at one pixel.
    pub fn px_depth(&self) -> usize {
        div_ceil(self.batch, self.cols) * self.dims[0]
    }
    /// Where pixel k of sample s lives: (bank, word).
    pub fn px_bank_word(&self, s: usize, k: usize) -> (usize, usize) {
        (s % self.cols, (s / self.cols) * self.dims[0] + k)
    }
    /// Bus address of the first word of pixel bank `b`.
    pub fn px_bank_base(&self, b: usize) -> u32 {
        (b as u32) << abits(self.px_depth())
    }
    /// Words per bank of 0-based layer l's feedback memory (DF-R, l < L−1): B_{l+1} stored
    /// transposed, `dims[l+1]` rows of `dims[l+2]`, so the FB GEMM reads it as FWD reads W.
    pub fn fb_depth(&self, l: usize) -> usize {
        div_ceil(self.dims[l + 1], self.rows) * self.dims[l + 2]
    }
    /// Where B_{l+1}[i][j] (i < `dims[l+2]`, j < `dims[l+1]`; 0-based layer l) lives: bank
    /// j mod R, word (j div R)·`dims[l+2]` + i.
    pub fn fb_bank_word(&self, l: usize, i: usize, j: usize) -> (usize, usize) {
        (j % self.rows, (j / self.rows) * self.dims[l + 2] + i)
    }
    /// Bus address of B_{l+1}[i][j]: bank in the high bits, word in the low bits.
    pub fn fb_addr(&self, l: usize, i: usize, j: usize) -> u32 {
        let (bank, word) = self.fb_bank_word(l, i, j);
        ((bank as u32) << abits(self.fb_depth(l))) | word as u32
    }
}

/// Program op kinds.
const OP_END: u64 = 0;
const OP_INORM: u64 = 1;
const OP_FWD: u64 = 2;
const OP_CEN: u64 = 3;
const OP_NORM: u64 = 4;
const OP_PRED: u64 = 5;
const OP_LOSS: u64 = 6;
const OP_DELTA: u64 = 7;
const OP_GRAD: u64 = 8;
const OP_BUPD: u64 = 9;
const OP_UUPD: u64 = 10;
const OP_FB: u64 = 11;

/// The training and inference microprograms as (kind, layer), and the inference entry.
/// With feedback, DELTA runs from the top layer down and FB l (B_{l+1}ᵀδ_{l+1} into layer l's
/// feedback buffer) runs between DELTA l+1, which wrote δ_{l+1}, and DELTA l, which adds it.
fn program(layers: usize, feedback: bool) -> (Vec<(u64, usize)>, usize) {
    let mut fwd = vec![(OP_INORM, 0), (OP_FWD, 0), (OP_CEN, 0), (OP_NORM, 0)];
    for l in 1..layers {
        fwd.push((OP_FWD, l));
        fwd.push((OP_NORM, l));
    }
    let mut p = fwd.clone();
    p.extend((0..layers).map(|l| (OP_LOSS, l)));
    if feedback {
        for l in (0..layers).rev() {
            if l + 1 < layers {
                p.push((OP_FB, l));
            }
            p.push((OP_DELTA, l));
        }
    } else {
        p.extend((0..layers).map(|l| (OP_DELTA, l)));
    }
    for l in 0..layers {
        p.push((OP_GRAD, l));
        p.push((OP_BUPD, l));
    }
    p.push((OP_UUPD, 0));
    p.push((OP_END, 0));
    let entry = p.len();
    p.extend(fwd);
    p.push((OP_PRED, 0));
    p.push((OP_END, 0));
    (p, entry)
}

/// Width of the engine's index and address arithmetic (every counter is this wide; memory
/// ports take the low bits).
const IW: u32 = 32;

fn ix(v: usize) -> Expr {
    lit(IW, v as u64)
}

/// A combinational signal driven from several places: `always @*` with a zero default and
/// one `if` per driver (the drivers' conditions are exclusive by construction).
struct Comb {
    name: String,
    w: u32,
    arms: Vec<(Expr, Expr)>,
}

/// One block-RAM tensor (possibly banked).
#[derive(Clone)]
struct Mem {
    name: String,
    banks: usize,
    width: u32,
    depth: usize,
    /// One write-data word per bank (the weights: R update lanes write a drained column
    /// at once; the x̂ lanes, δ_l lanes and h_1 likewise); the others share one write-data
    /// word across their banks.
    lane_wdata: bool,
    /// One write address per bank (h_1: CEN writes one row's consecutive columns, which sit
    /// at different words of the diagonal banks).
    lane_waddr: bool,
}

impl Mem {
    fn aw(&self) -> u32 {
        abits(self.depth)
    }
    fn we(&self) -> Expr {
        id(format!("{}_we", self.name))
    }
    fn waddr(&self) -> Expr {
        id(format!("{}_waddr", self.name))
    }
    fn wdata(&self) -> Expr {
        id(format!("{}_wdata", self.name))
    }
    fn raddr(&self) -> Expr {
        id(format!("{}_raddr", self.name))
    }
    fn rdata(&self) -> Expr {
        id(format!("{}_rdata", self.name))
    }
    /// Read data of bank `b` (a named wire, so it can be sign-extended).
    fn bank(&self, b: usize) -> Expr {
        id(format!("{}_rd{b}", self.name))
    }
}

struct Eng {
    m: Module,
    comb: Vec<Comb>,
    resets: Vec<(Expr, u32)>,
    seq: Vec<Stmt>,
    mems: Vec<Mem>,
}

impl Eng {
    /// A combinational reg with a zero default, driven through [`Eng::drive`].
    fn creg(&mut self, name: &str, w: u32) -> Expr {
        let e = self.m.reg(name, w);
        self.comb.push(Comb {
            name: name.to_string(),
            w,
            arms: Vec::new(),
        });
        e
    }
    fn drive(&mut self, name: &str, cond: Expr, val: Expr) {
        let c = self
            .comb
            .iter_mut()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no comb signal {name}"));
        c.arms.push((cond, val));
    }
    /// A register reset to zero.
    fn q(&mut self, name: &str, w: u32) -> Expr {
        let e = self.m.reg(name, w);
        self.resets.push((e.clone(), w));
        e
    }
    /// `e` delayed `n` cycles (registers `<name>_d1 … _dn`, reset to zero).
    fn delay(&mut self, name: &str, e: Expr, w: u32, n: usize) -> Expr {
        let mut cur = e;
        for i in 1..=n {
            let r = self.q(&format!("{name}_d{i}"), w);
            self.seq.push(nb(&r, &cur));
            cur = r;
        }
        cur
    }
    /// Mark bits the engine never reads (Verilator's -Wall accepts `unused_*`).
    fn consume(&mut self, name: &str, x: Expr) {
        let u = self.m.wire(&format!("unused_{name}"), 1);
        self.m.assign(u, x.red_xor());
    }
    /// `n` copies of a unit, lane u connected to slice u of its packed lane signals: a
    /// generate loop over `var` (label `label`), or one plain instance when `n` is 1 (scalar
    /// flags cannot be indexed). `mk` builds the instance from a slicer (signal, lane width)
    /// and a bit selector.
    fn lane_units(
        &mut self,
        n: usize,
        var: &str,
        label: &str,
        mk: impl Fn(&dyn Fn(&Expr, u32) -> Expr, &dyn Fn(&Expr) -> Expr) -> Instance,
    ) {
        if n == 1 {
            self.m.instance(mk(&|x, _| x.clone(), &|x| x.clone()));
            return;
        }
        self.m.genvar(var);
        self.m.gen_for(var, int(0), int(n as u64), label, |g, u| {
            g.instance(mk(
                &|x, w| x.part(&u * int(u64::from(w)), int(u64::from(w))),
                &|x| x.idx(u.clone()),
            ));
        });
    }
    /// Write one word of a banked memory when `v`: bank `bank` (8 bits), word `addr`.
    fn write_one(&mut self, m: &Mem, v: &Expr, bank: &Expr, addr: Expr, data: Expr) {
        let n = m.banks;
        self.drive(
            &format!("{}_we", m.name),
            v.clone(),
            mux(v.clone(), bank_onehot(bank, n), lit(n as u32, 0)),
        );
        self.drive(&format!("{}_waddr", m.name), v.clone(), addr);
        self.drive(&format!("{}_wdata", m.name), v.clone(), data);
    }
    /// A named `IW`-bit wire holding `e`.
    /// Index arithmetic is done at `IW` bits and ports take the low bits; how many depends on
    /// the config, so the high bits are marked unused here once for all.
    fn w32(&mut self, name: &str, e: Expr) -> Expr {
        let w = self.m.wire(name, IW);
        self.m.assign(&w, e);
        self.consume(&format!("hi_{name}"), w.slice(IW - 1, 1));
        w
    }
    /// Declare a banked block RAM and its port signals.
    fn mem(&mut self, name: &str, banks: usize, width: u32, depth: usize) -> Mem {
        self.mem_with(name, banks, width, depth, false, false)
    }
    /// [`Eng::mem`] with one write-data word per bank.
    fn mem_lanes(&mut self, name: &str, banks: usize, width: u32, depth: usize) -> Mem {
        self.mem_with(name, banks, width, depth, banks > 1, false)
    }
    fn mem_with(
        &mut self,
        name: &str,
        banks: usize,
        width: u32,
        depth: usize,
        lane_wdata: bool,
        lane_waddr: bool,
    ) -> Mem {
        let mem = Mem {
            name: name.to_string(),
            banks,
            width,
            depth,
            lane_wdata,
            lane_waddr,
        };
        let aw = mem.aw();
        let nb_ = banks as u32;
        self.creg(&format!("{name}_we"), nb_);
        self.creg(
            &format!("{name}_waddr"),
            if lane_waddr { aw * nb_ } else { aw },
        );
        self.creg(
            &format!("{name}_wdata"),
            if lane_wdata { width * nb_ } else { width },
        );
        self.creg(&format!("{name}_raddr"), aw * nb_);
        let rdata = self.m.wire(&format!("{name}_rdata"), width * nb_);
        for b in 0..banks {
            let wv = self.m.wire(&format!("{name}_rd{b}"), width);
            self.m.assign(
                wv,
                rdata.part(int((b as u64) * u64::from(width)), int(u64::from(width))),
            );
        }
        self.mems.push(mem.clone());
        mem
    }
    fn finish_mems(&mut self) {
        let mems = std::mem::take(&mut self.mems);
        // (A 1×1 array has no banked memory and so no generate loop.)
        if mems.iter().any(|m| m.banks > 1) {
            self.m.genvar("b");
        }
        for mem in &mems {
            let aw = mem.aw();
            let w = mem.width;
            let name = &mem.name;
            let inst = |b: Expr| {
                Instance::new("dff_bram", "u_bank")
                    .param("W", int(u64::from(w)))
                    .param("AW", int(u64::from(aw)))
                    .param("DEPTH", int(mem.depth as u64))
                    .conn("clk_i", id("clk_i"))
                    .conn("we_i", mem.we().idx(b.clone()))
                    .conn(
                        "waddr_i",
                        if mem.lane_waddr {
                            mem.waddr()
                                .part(&b * int(u64::from(aw)), int(u64::from(aw)))
                        } else {
                            mem.waddr()
                        },
                    )
                    .conn(
                        "wdata_i",
                        if mem.lane_wdata {
                            mem.wdata().part(&b * int(u64::from(w)), int(u64::from(w)))
                        } else {
                            mem.wdata()
                        },
                    )
                    .conn(
                        "raddr_i",
                        mem.raddr()
                            .part(&b * int(u64::from(aw)), int(u64::from(aw))),
                    )
                    .conn(
                        "rdata_o",
                        mem.rdata().part(&b * int(u64::from(w)), int(u64::from(w))),
                    )
            };
            if mem.banks == 1 {
                self.m.instance(
                    Instance::new("dff_bram", format!("u_{name}"))
                        .param("W", int(u64::from(w)))
                        .param("AW", int(u64::from(aw)))
                        .param("DEPTH", int(mem.depth as u64))
                        .conn("clk_i", id("clk_i"))
                        .conn("we_i", mem.we())
                        .conn("waddr_i", mem.waddr())
                        .conn("wdata_i", mem.wdata())
                        .conn("raddr_i", mem.raddr())
                        .conn("rdata_o", mem.rdata()),
                );
                continue;
            }
            self.m.gen_for(
                "b",
                int(0),
                int(mem.banks as u64),
                &format!("g_{name}"),
                |s, b| {
                    s.instance(inst(b));
                },
            );
        }
        self.mems = mems;
    }
}

/// `x` (`bits`, signed) shifted left by `shf`, sign-extended to `to` bits, as a named wire.
fn shl_ext(m: &mut Module, name: &str, x: Expr, bits: u32, shf: u32, to: u32) -> Expr {
    let wv = m.wire_s(name, bits + shf);
    if shf == 0 {
        m.assign(&wv, x);
    } else {
        m.assign(&wv, cat([x, lit(shf, 0)]));
    }
    ext(&Sig::new(wv, bits + shf, true), to)
}

/// Bit `b` of an `n`-bit lane vector (a 1-bit vector is a scalar in Verilog: no select).
fn lane_bit_of(sig: &Expr, b: usize, n: usize) -> Expr {
    if n == 1 {
        sig.clone()
    } else {
        sig.idx(int(b as u64))
    }
}

/// `x` (`w` bits) in lane 0 of `n` packed lanes, the others zero.
fn only_lane0(x: Expr, w: u32, n: usize) -> Expr {
    if n == 1 {
        x
    } else {
        cat([lit(w * (n as u32 - 1), 0), x])
    }
}

/// One-hot write enables of `n` banks from an 8-bit bank number.
fn bank_onehot(bank: &Expr, n: usize) -> Expr {
    cat((0..n)
        .rev()
        .map(|b| bank.clone().eq_(lit(8, b as u64)))
        .collect::<Vec<_>>())
}

/// `(x + 1) mod m` for an `IW`-bit counter `x < m`.
fn inc_mod(x: &Expr, m: usize) -> Expr {
    mux(x.clone().eq_(ix(m - 1)), ix(0), x + ix(1))
}

/// Candidate `sel` of `n` (an 8-bit selector below `n`), as a multiplexer chain: the lane
/// rotators and bank selects of the lane datapaths.
fn pick(sel: &Expr, n: usize, cand: impl Fn(usize) -> Expr) -> Expr {
    (1..n).fold(cand(0), |v, r| {
        mux(sel.clone().eq_(lit(8, r as u64)), cand(r), v)
    })
}

/// `(a + b) mod m` for `a, b < m` (a compare and a subtract).
fn add_mod(a: &Expr, b: &Expr, m: usize, w: u32) -> Expr {
    let s = a + b;
    mux(
        s.clone().ge_(lit(w, m as u64)),
        s.clone() - lit(w, m as u64),
        s,
    )
}

/// The engine module for `cfg`.
/// `fb_sub` is a deliberate defect for the mutation test: DELTA subtracts DF-R's feedback
/// instead of adding it.
/// Returns the module and its block-RAM tensors (for the board-fit estimate, [`super::fit`]).
pub fn engine(
    cfg: &Config,
    units: &Units,
    s: &Shape,
    lay: &Layout,
    fb_sub: bool,
) -> (Module, Vec<super::super::fit::MemInfo>) {
    let f = &s.f;
    let (rr, cc) = (lay.rows, lay.cols);
    let nl = lay.layers();
    let d = &lay.dims;
    let cls = lay.classes;
    let kh = lay.hyps;
    let bsz = lay.batch;
    let nrt = lay.train_rows();
    let nrm = lay.max_rows();
    let mut e =
        Eng {
            m: Module::new("dff_engine").doc(format!(
            "DF training engine: {} network on a {rr}x{cc} array, batch {bsz}, {kh} hypotheses\n\
             per sample. Microprogrammed sequencer, banked BRAMs, the units of this config;\n\
             bus and run ports as in docs/protocol.md (dfforge src/rtl/engine.rs).",
            d.iter().map(|x| x.to_string()).collect::<Vec<_>>().join("-")
        )),
            comb: Vec::new(),
            resets: Vec::new(),
            seq: Vec::new(),
            mems: Vec::new(),
        };
    let clk = e.m.input("clk_i", 1);
    e.m.input("rst_i", 1);
    let bus_req = e.m.input("bus_req_i", 1);
    let bus_we = e.m.input("bus_we_i", 1);
    let bus_region = e.m.input("bus_region_i", 8);
    let bus_addr = e.m.input("bus_addr_i", 32);
    let bus_wdata = e.m.input("bus_wdata_i", 64);
    let bus_ack_o = e.m.output("bus_ack_o", 1);
    let bus_err_o = e.m.output("bus_err_o", 1);
    let bus_rdata_o = e.m.output("bus_rdata_o", 64);
    let run_i = e.m.input("run_i", 1);
    let run_op_i = e.m.input("run_op_i", 8);
    let run_done_o = e.m.output("run_done_o", 1);
    let run_status_o = e.m.output("run_status_o", 8);
    let run_result_o = e.m.output("run_result_o", 8);
    let busy_o = e.m.output("busy_o", 1);

    // ------------------------------------------------------------------ memories
    let cbits = abits(cls.max(2));
    let px = e.mem("px", cc, f.pixel.bits, lay.px_depth());
    let hyp = e.mem("hyp", 1, cbits, nrt);
    let xdiag = |rows: usize, dd: usize| div_ceil(rows, cc) * dd;
    let x0 = e.mem_lanes("x0", cc, f.act.bits, xdiag(bsz, d[0]));
    let w: Vec<Mem> = (0..nl)
        .map(|l| e.mem_lanes(&format!("w{}", l + 1), rr, f.weight.bits, lay.w_depth(l)))
        .collect();
    let bias: Vec<Mem> = (0..nl)
        .map(|l| e.mem(&format!("b{}", l + 1), 1, f.bias.bits, d[l + 1]))
        .collect();
    let u = e.mem("u", 1, f.centroid.bits, cls * d[1]);
    // a1: R banks by column (o mod R), word s·⌈d1/R⌉ + o div R: the drain writes PE row i
    // into bank i, CEN reads consecutive columns of one sample.
    let a1 = e.mem("a1", rr, s.acc_w, bsz * div_ceil(d[1], rr));
    // CEN's lanes, and b1[o] + U[c][o] (aligned to the accumulator) banked by o mod lanes.
    let cl = cen_lanes(lay);
    let cvw = {
        let bsh = f.accumulator.frac - f.bias.frac;
        let ush = f.accumulator.frac - f.centroid.frac;
        (f.bias.bits + bsh).max(f.centroid.bits + ush) + 1
    };
    let cv = e.mem("cv", cl, cvw, cls * div_ceil(d[1], cl));
    let h: Vec<Mem> = (0..nl)
        .map(|l| {
            let lanes = l == 0 && cc > 1;
            e.mem_with(
                &format!("h{}", l + 1),
                cc,
                f.hidden.bits,
                xdiag(nrm, d[l + 1]),
                lanes,
                lanes,
            )
        })
        .collect();
    let xh: Vec<Mem> = (0..nl.saturating_sub(1))
        .map(|l| {
            e.mem_lanes(
                &format!("xh{}", l + 1),
                cc,
                f.act.bits,
                xdiag(nrm, d[l + 1]),
            )
        })
        .collect();
    let g: Vec<Mem> = (0..nl)
        .map(|l| e.mem(&format!("g{}", l + 1), 1, f.goodness.bits, nrm))
        .collect();
    let beta: Vec<Mem> = (0..nl)
        .map(|l| e.mem(&format!("beta{}", l + 1), 1, f.beta.bits, nrt))
        .collect();
    let dr: Vec<usize> = (0..nl).map(|l| div_ceil(d[l + 1], rr)).collect();
    // δ of layers ≥ 2 (layer 1 feeds the array through e instead).
    let dl: Vec<Option<Mem>> = (0..nl)
        .map(|l| {
            (l > 0).then(|| e.mem_lanes(&format!("dl{}", l + 1), rr, f.delta.bits, nrt * dr[l]))
        })
        .collect();

    // DF-R feedback (FB l for l < L−1): B_{l+1}ᵀ in R banks like W; the local δ of layers ≥ 2
    // in C banks by row (bank r mod C, word (r div C)·d + k: an FB tile reads C rows at one
    // column); layer l's rsqrt parts per row (word ‖ e/2, from NORM); the scaled feedback.
    let fbk = lay.feedback;
    let rs_w = f.rsqrt_frac + 2;
    let he_w = bitlen(u128::from(s.sum_w + 1)) - 1;
    let nfb = if fbk { nl - 1 } else { 0 };
    // (DF-O reads W_{l+1} itself, diagonally banked.)
    let fbm: Vec<Mem> = (0..if lay.diag_w { 0 } else { nfb })
        .map(|l| e.mem(&format!("fbm{}", l + 1), rr, f.weight.bits, lay.fb_depth(l)))
        .collect();
    let dc: Vec<Option<Mem>> = (0..nl)
        .map(|l| {
            (fbk && l > 0).then(|| {
                e.mem(
                    &format!("dc{}", l + 1),
                    cc,
                    f.delta.bits,
                    xdiag(nrt, d[l + 1]),
                )
            })
        })
        .collect();
    let rsm: Vec<Mem> = (0..nfb)
        .map(|l| e.mem(&format!("rs{}", l + 1), 1, rs_w + he_w, nrm))
        .collect();
    let fbb: Vec<Mem> = (0..nfb)
        .map(|l| e.mem(&format!("fbb{}", l + 1), 1, f.delta.bits, nrt * d[l + 1]))
        .collect();

    // Register files (asynchronous read).
    let ew = f.delta.bits + bitlen(kh as u128);
    let dbw = f.delta.bits + bitlen(nrt as u128);
    let e_mem = e.m.memory(
        "e_mem",
        int(u64::from(ew) * rr as u64),
        int((bsz * dr[0]) as u64),
        None,
    );
    let db: Vec<Expr> = (0..nl)
        .map(|l| {
            e.m.memory(
                &format!("db{}_mem", l + 1),
                int(u64::from(dbw)),
                int(d[l + 1] as u64),
                None,
            )
        })
        .collect();
    let du = e.m.memory(
        "du_mem",
        int(u64::from(dbw)),
        int((cls * d[1]) as u64),
        None,
    );

    // ------------------------------------------------------------------ sequencer state
    let (prog, infer_entry) = program(nl, lay.feedback);
    let pcw = bitlen(prog.len() as u128);
    let kw = 4u32;
    let lw_ = bitlen(nl as u128);
    let st = e.q("st_q", 5);
    let pc = e.q("pc_q", pcw);
    let kind = e.q("kind_q", kw);
    let layer = e.q("layer_q", lw_);
    let mode = e.q("infer_q", 1);
    let result = e.q("result_q", 8);
    let status = e.q("status_q", 8);
    let done = e.q("done_q", 1);
    let lr = e.q("lr_q", s.lr_w);
    let npair = cfg.algorithm.loss == Loss::Npair;
    let hard = cfg.algorithm.negatives == Negatives::Hard;
    let st_names: Vec<&str> = [
        "S_INIT", "S_IDLE", "S_FETCH", "S_NA", "S_NAW", "S_NB", "S_GS", "S_GF", "S_NG", "S_CP",
        "S_CH", "S_CS", "S_PRED", "S_LG", "S_LSEL", "S_LS", "S_LW", "S_LB", "S_LH", "S_DP", "S_DS",
        "S_BU", "S_UU", "S_WAIT", "S_NEXT",
    ]
    .into_iter()
    // The N-pair unit's start/wait/write-back states exist only with that unit, the hard
    // negatives' selection (and the hinge stream from the gathered scores) only with those.
    .filter(|n| npair || !matches!(*n, "S_LS" | "S_LW" | "S_LB"))
    .filter(|n| hard || !matches!(*n, "S_LSEL" | "S_LH"))
    .filter(|n| !(npair && *n == "S_LH"))
    .collect();
    let sv: Vec<Expr> = st_names
        .iter()
        .enumerate()
        .map(|(i, n)| e.m.localparam(n, lit(5, i as u64)))
        .collect();
    let sid = |n: &str| sv[st_names.iter().position(|x| *x == n).expect("state")].clone();
    let in_st = |n: &str| st.clone().eq_(sid(n));
    let ops = [
        ("OP_END", OP_END),
        ("OP_INORM", OP_INORM),
        ("OP_FWD", OP_FWD),
        ("OP_CEN", OP_CEN),
        ("OP_NORM", OP_NORM),
        ("OP_PRED", OP_PRED),
        ("OP_LOSS", OP_LOSS),
        ("OP_DELTA", OP_DELTA),
        ("OP_GRAD", OP_GRAD),
        ("OP_BUPD", OP_BUPD),
        ("OP_UUPD", OP_UUPD),
        ("OP_FB", OP_FB),
    ];
    for (n, v) in ops {
        e.m.localparam(n, lit(kw, v));
    }
    let opn = |k: u64| id(ops.iter().find(|(_, v)| *v == k).expect("op").0);
    let is_op = |k: u64| kind.clone().eq_(opn(k));
    let is_opl = |k: u64, l: usize| is_op(k).land(layer.clone().eq_(lit(lw_, l as u64)));

    // Counters shared by the loops (meaning depends on the op; see each op).
    let row = e.q("row_q", IW);
    let jj = e.q("j_q", IW);
    let jmod = e.q("jmod_q", IW);
    let rmod = e.q("rmod_q", IW);
    let rgb = e.q("rgb_q", IW);
    let sbase = e.q("sbase_q", IW);
    let samp = e.q("samp_q", IW);
    let slot = e.q("slot_q", IW);
    let ob = e.q("ob_q", IW);
    let tb = e.q("tb_q", IW);
    let kk = e.q("k_q", IW);
    let kmod = e.q("kmod_q", IW);
    let kg = e.q("kg_q", IW);
    let ii = e.q("i_q", IW);
    if !hard {
        // (The hard-negative selection rounds are its only user.)
        e.consume("i_q", ii.clone());
    }
    // DF-O's diagonal W: k mod R and (k div R)·d for the FB column reads, and n mod R of the
    // gradient column being drained (the bank lane 0 writes).
    let kmr = e.q("kmr_q", IW);
    let kgr = e.q("kgr_q", IW);
    let dbk = e.q("dbk_q", IW);
    if !lay.diag_w {
        e.consume("diag_ctr", cat([kmr.clone(), kgr.clone(), dbk.clone()]));
    }
    let wait = e.q("wait_q", 8);
    let sacc = e.q("s_q", s.sum_w * cc as u32);
    let hypq = e.q("hyp_q", cbits);

    // The batch size is a run-time hyper-parameter (the last minibatch of an epoch may be
    // short); memories are sized for the configured batch.
    let batch = e.q("batch_q", IW);
    let nsamp = e.w32("nsamp", mux(&mode, ix(1), batch.clone()));
    let nrows = e.w32("nrows", mux(&mode, ix(cls), &batch * ix(kh)));

    // ------------------------------------------------------------------ units
    let skew = |e: &mut Eng, name: &str, lanes: usize, wdt: u32, x: Expr| -> Expr {
        let y = e.m.wire(&format!("{name}_sk"), wdt * lanes as u32);
        e.m.instance(
            Instance::new("dff_skew", format!("u_{name}_skew"))
                .param("LANES", int(lanes as u64))
                .param("W", int(u64::from(wdt)))
                .conn("clk_i", id("clk_i"))
                .conn("x_i", x)
                .conn("y_o", &y),
        );
        y
    };
    // Array operands (before skew) and flags.
    let west = e.q("west_q", s.a_w * rr as u32);
    let north = e.q("north_q", s.b_w * cc as u32);
    let av = e.q("av_q", 1);
    let ac = e.q("ac_q", 1);
    let al = e.q("al_q", 1);
    let west_sk = skew(&mut e, "west", rr, s.a_w, west.clone());
    let north_sk = skew(&mut e, "north", cc, s.b_w, north.clone());
    let wv_sk = skew(&mut e, "wv", rr, 1, repl(int(rr as u64), [av.clone()]));
    let wc_sk = skew(&mut e, "wc", rr, 1, repl(int(rr as u64), [ac.clone()]));
    let wl_sk = skew(&mut e, "wl", rr, 1, repl(int(rr as u64), [al.clone()]));
    let acc_all = e.m.wire("acc_all", s.acc_w * (rr * cc) as u32);
    for (n, wd) in [
        ("arr_east", s.a_w * rr as u32),
        ("arr_ev", rr as u32),
        ("arr_ec", rr as u32),
        ("arr_el", rr as u32),
        ("arr_south", s.b_w * cc as u32),
    ] {
        e.m.wire(n, wd);
    }
    e.m.instance(
        Instance::new("dff_array", "u_array")
            .param("R", int(rr as u64))
            .param("C", int(cc as u64))
            .conn("clk_i", id("clk_i"))
            .conn("rst_i", id("rst_i"))
            .conn("west_i", &west_sk)
            .conn("wv_i", &wv_sk)
            .conn("wc_i", &wc_sk)
            .conn("wl_i", &wl_sk)
            .conn("north_i", &north_sk)
            .conn("east_o", id("arr_east"))
            .conn("ev_o", id("arr_ev"))
            .conn("ec_o", id("arr_ec"))
            .conn("el_o", id("arr_el"))
            .conn("south_o", id("arr_south"))
            .conn("acc_o", &acc_all),
    );
    let unused_arr = e.m.wire("unused_array", 1);
    e.m.assign(
        &unused_arr,
        cat([
            id("arr_east"),
            id("arr_ev"),
            id("arr_ec"),
            id("arr_el"),
            id("arr_south"),
        ])
        .red_xor(),
    );

    // ReLU/requantise: one unit per CEN lane; lane 0 also serves the forward drain.
    let (zb_, hb_) = (f.accumulator.bits, f.hidden.bits);
    let relu_z = e.creg("relu_z", zb_ * cl as u32);
    let relu_v = e.creg("relu_v", cl as u32);
    let relu_h = e.m.wire("relu_h", hb_ * cl as u32);
    let relu_vo = e.m.wire("relu_vo", cl as u32);
    e.lane_units(cl, "rl", "g_relu", |lane, bit| {
        Instance::new("dff_relu", "u_relu")
            .conn("clk_i", id("clk_i"))
            .conn("rst_i", id("rst_i"))
            .conn("z_i", lane(&relu_z, zb_))
            .conn("v_i", bit(&relu_v))
            .conn("h_o", lane(&relu_h, hb_))
            .conn("v_o", bit(&relu_vo))
    });
    // Lane 0 alone (the forward drain).
    let relu0 = |x: Expr, w: u32| only_lane0(x, w, cl);
    let relu_h0 = if cl == 1 {
        relu_h.clone()
    } else {
        relu_h.slice(hb_ - 1, 0)
    };
    // Goodness and normalisation: one unit per column lane (INORM and NORM work C rows at a
    // time).
    let (hb, sw_, gb) = (f.hidden.bits, s.sum_w, f.goodness.bits);
    let lanes = cc as u32;
    let gd_h = e.creg("gd_h", hb * lanes);
    let gd_v = e.creg("gd_v", lanes);
    let gd_first = e.creg("gd_first", 1);
    let gd_last = e.creg("gd_last", 1);
    let gd_recip = e.creg("gd_recip", s.recip_w);
    let gd_s = e.m.wire("gd_s", sw_ * lanes);
    let gd_g = e.m.wire("gd_g", gb * lanes);
    let gd_vo = e.m.wire("gd_vo", lanes);
    e.lane_units(cc, "gl", "g_goodness", |lane, bit| {
        Instance::new("dff_goodness", "u_goodness")
            .conn("clk_i", id("clk_i"))
            .conn("rst_i", id("rst_i"))
            .conn("h_i", lane(&gd_h, hb))
            .conn("v_i", bit(&gd_v))
            .conn("first_i", &gd_first)
            .conn("last_i", &gd_last)
            .conn("recip_i", &gd_recip)
            .conn("s_o", lane(&gd_s, sw_))
            .conn("g_o", lane(&gd_g, gb))
            .conn("v_o", bit(&gd_vo))
    });
    if cc > 1 {
        // Every lane answers in the same cycle; lane 0's flag times them all.
        e.consume("gd_vo", gd_vo.slice(lanes - 1, 1));
    }
    let (xw_, ab) = (s.norm_x_w, f.act.bits);
    let nm_sv = e.creg("nm_sv", 1);
    let nm_x = e.creg("nm_x", xw_ * lanes);
    let nm_xv = e.creg("nm_xv", lanes);
    let nm_y = e.m.wire("nm_y", ab * lanes);
    let nm_yv = e.m.wire("nm_yv", lanes);
    let nm_rs_word = e.m.wire("nm_rs_word", rs_w * lanes);
    let nm_rs_he = e.m.wire("nm_rs_half_e", he_w * lanes);
    if nfb == 0 {
        e.consume("nm_rs", cat([nm_rs_word.clone(), nm_rs_he.clone()]));
    }
    e.lane_units(cc, "nu", "g_normalise", |lane, bit| {
        Instance::new("dff_normalise", "u_normalise")
            .conn("clk_i", id("clk_i"))
            .conn("rst_i", id("rst_i"))
            .conn("s_i", lane(&sacc, sw_))
            .conn("sv_i", &nm_sv)
            .conn("x_i", lane(&nm_x, xw_))
            .conn("xv_i", bit(&nm_xv))
            .conn("y_o", lane(&nm_y, ab))
            .conn("yv_o", bit(&nm_yv))
            .conn("rs_word_o", lane(&nm_rs_word, rs_w))
            .conn("rs_half_e_o", lane(&nm_rs_he, he_w))
    });
    // Update units: one per weight bank (a gradient tile drains a column per cycle), each
    // with its lane's LFSR seed (fixed::lane_seeds); lane 0 also updates the biases and U.
    let (pw_, gw_) = (s.param_w, f.update.bits);
    let up_w = e.creg("up_w", pw_ * rr as u32);
    let up_g = e.creg("up_g", gw_ * rr as u32);
    let up_kind = e.creg("up_kind", 2);
    let up_v = e.creg("up_v", rr as u32);
    let up_wo = e.m.wire("up_wo", pw_ * rr as u32);
    let up_vo = e.m.wire("up_vo", rr as u32);
    let lw_seed = f.lfsr_width;
    let lane_seeds = crate::fixed::lane_seeds(f.lfsr_seed, rr, lw_seed);
    let seeds = cat((0..rr)
        .rev()
        .map(|b| hex(lw_seed, lane_seeds[b]))
        .collect::<Vec<_>>());
    e.m.localparam("UP_SEEDS", seeds);
    e.lane_units(rr, "u", "g_update", |lane, bit| {
        Instance::new("dff_update", "u_update")
            .param("SEED", lane(&id("UP_SEEDS"), lw_seed))
            .conn("clk_i", id("clk_i"))
            .conn("rst_i", id("rst_i"))
            .conn("w_i", lane(&up_w, pw_))
            .conn("g_i", lane(&up_g, gw_))
            .conn("kind_i", &up_kind)
            .conn("v_i", bit(&up_v))
            .conn("lr_i", &lr)
            .conn("w_o", lane(&up_wo, pw_))
            .conn("v_o", bit(&up_vo))
    });
    // Lane 0 alone (BUPD, UUPD): the other lanes idle.
    let lane0 = |x: Expr, w: u32| only_lane0(x, w, rr);
    // Loss unit.
    let gw = f.goodness.bits;
    let bw = f.beta.bits;
    let ls_start = e.creg("ls_start", 1);
    let gt_q = e.q("gt_q", gw * cls as u32);
    let ls_b = e.m.wire("ls_b", bw * cls as u32);
    let ls_done = e.m.wire("ls_done", 1);
    let hg_gy = e.creg("hg_gy", gw);
    let hg_yv = e.creg("hg_yv", 1);
    let hg_g = e.creg("hg_g", gw);
    let hg_gv = e.creg("hg_gv", 1);
    let hg_last = e.creg("hg_last", 1);
    let hg_b = e.m.wire("hg_b", bw);
    let hg_bv = e.m.wire("hg_bv", 1);
    let hg_byv = e.m.wire("hg_byv", 1);
    let act_mask: u64 = ((1u64 << kh) - 1) & !1;
    // Hard negatives: the slots LOSS selected for this sample and layer.
    let act_q = e.q("act_q", cls as u32);
    let hg_act = e.creg("hg_act", 1);
    if npair {
        let busy = e.m.wire("unused_ls_busy", 1);
        e.m.instance(
            Instance::new("dff_loss_npair", "u_loss")
                .conn("clk_i", id("clk_i"))
                .conn("rst_i", id("rst_i"))
                .conn("start_i", &ls_start)
                .conn("g_i", &gt_q)
                .conn(
                    "act_i",
                    if hard {
                        act_q.clone()
                    } else {
                        lit(cls as u32, act_mask)
                    },
                )
                .conn("b_o", &ls_b)
                .conn("done_o", &ls_done)
                .conn("busy_o", &busy),
        );
        e.m.assign(&hg_b, lit(bw, 0));
        e.m.assign(&hg_bv, lit(1, 0));
        e.m.assign(&hg_byv, lit(1, 0));
        e.consume(
            "hinge",
            cat([
                hg_gy.clone(),
                hg_yv.clone(),
                hg_g.clone(),
                hg_gv.clone(),
                hg_last.clone(),
                hg_act.clone(),
                hg_b.clone(),
                hg_bv.clone(),
                hg_byv.clone(),
            ]),
        );
    } else {
        e.m.instance(
            Instance::new("dff_loss_hinge", "u_loss")
                .conn("clk_i", id("clk_i"))
                .conn("rst_i", id("rst_i"))
                .conn("gy_i", &hg_gy)
                .conn("yv_i", &hg_yv)
                .conn("g_i", &hg_g)
                .conn("gv_i", &hg_gv)
                .conn("act_i", &hg_act)
                .conn("last_i", &hg_last)
                .conn("b_o", &hg_b)
                .conn("bv_o", &hg_bv)
                .conn("byv_o", &hg_byv),
        );
        e.m.assign(&ls_b, zeros(int(u64::from(bw) * cls as u64)));
        e.m.assign(&ls_done, lit(1, 0));
        let un = e.m.wire("unused_npair", 1);
        e.m.assign(&un, cat([ls_start.clone(), gt_q.clone()]).red_xor());
    }

    // ------------------------------------------------------------------ program ROM
    let op_w = kw + lw_;
    let rom = e.m.reg("op_word", op_w);
    let arms: Vec<CaseArm> = prog
        .iter()
        .enumerate()
        .map(|(i, &(k, l))| {
            arm(
                lit(pcw, i as u64),
                vec![set(&rom, lit(op_w, (k << lw_) | l as u64))],
            )
        })
        .collect();
    e.m.always_comb(vec![case(&pc, arms, vec![set(&rom, lit(op_w, 0))])]);

    let mut seq: Vec<Stmt> = Vec::new();
    // Counters.
    let cyc = e.q("cnt_cycles_q", 64);
    let cbusy = e.q("cnt_busy_q", 64);
    let carr = e.q("cnt_array_q", 64);
    let cruns = e.q("cnt_runs_q", 64);
    let running = e.m.wire("running", 1);
    e.m.assign(&running, in_st("S_IDLE").lor(in_st("S_INIT")).lnot());
    e.m.assign(busy_o, &running);
    seq.push(nb(&cyc, &cyc + lit(64, 1)));
    seq.push(if_(&running, vec![nb(&cbusy, &cbusy + lit(64, 1))]));
    let gemm_issue = e.m.wire("gemm_issue", 1);
    seq.push(if_(&gemm_issue, vec![nb(&carr, &carr + lit(64, 1))]));
    seq.push(nb(&done, lit(1, 0)));

    // ------------------------------------------------------------------ S_INIT / S_IDLE / S_FETCH
    let mut sw: Vec<CaseArm> = Vec::new();
    let du_n = cls * d[1];
    sw.push(arm(
        sid("S_INIT"),
        vec![
            nb(&jj, &jj + ix(1)),
            if_(
                jj.clone().eq_(ix(du_n - 1)),
                vec![nb(&st, sid("S_IDLE")), nb(&jj, ix(0))],
            ),
        ],
    ));
    let lr_init = match units.lr {
        LearningRate::Mul { value, .. } => value as u64,
        LearningRate::Shift(_) => 1,
    };
    // lr and batch reset to the config's values (below), not to zero.
    e.resets.retain(|(r, _)| r != &lr && r != &batch);
    sw.push(arm(
        sid("S_IDLE"),
        vec![if_(
            &run_i,
            vec![if_(
                run_op_i.clone().eq_(lit(8, u64::from(RUN_TRAIN))),
                vec![
                    nb(&mode, lit(1, 0)),
                    nb(&pc, lit(pcw, 0)),
                    nb(&st, sid("S_FETCH")),
                    nb(&status, lit(8, 0)),
                    nb(&result, lit(8, 0)),
                ],
            )
            .else_if(
                run_op_i.clone().eq_(lit(8, u64::from(RUN_INFER))),
                vec![
                    nb(&mode, lit(1, 1)),
                    nb(&pc, lit(pcw, infer_entry as u64)),
                    nb(&st, sid("S_FETCH")),
                    nb(&status, lit(8, 0)),
                    nb(&result, lit(8, 0)),
                ],
            )
            .else_(vec![nb(&status, lit(8, 1)), nb(&done, lit(1, 1))])],
        )],
    ));
    // Fetch: load the op and reset the loop counters.
    let mut fetch = vec![
        nb(&kind, rom.slice(op_w - 1, lw_)),
        nb(&layer, rom.slice(lw_ - 1, 0)),
    ];
    for c in [
        &row, &jj, &jmod, &rmod, &rgb, &sbase, &samp, &slot, &ob, &tb, &kk, &kmod, &kg, &ii, &kmr,
        &kgr, &dbk,
    ] {
        fetch.push(nb(c, ix(0)));
    }
    fetch.push(case(
        rom.slice(op_w - 1, lw_),
        vec![
            arm(
                opn(OP_END),
                vec![
                    nb(&st, sid("S_IDLE")),
                    nb(&done, lit(1, 1)),
                    nb(&cruns, &cruns + lit(64, 1)),
                ],
            ),
            arm(opn(OP_INORM), vec![nb(&st, sid("S_NA"))]),
            arm(opn(OP_NORM), vec![nb(&st, sid("S_NA"))]),
            arm(opn(OP_FWD), vec![nb(&st, sid("S_GS"))]),
            arm(opn(OP_GRAD), vec![nb(&st, sid("S_GS"))]),
            arm(opn(OP_FB), vec![nb(&st, sid("S_GS"))]),
            arm(opn(OP_CEN), vec![nb(&st, sid("S_CP"))]),
            arm(opn(OP_PRED), vec![nb(&st, sid("S_PRED"))]),
            arm(opn(OP_LOSS), vec![nb(&st, sid("S_LG"))]),
            arm(opn(OP_DELTA), vec![nb(&st, sid("S_DP"))]),
            arm(opn(OP_BUPD), vec![nb(&st, sid("S_BU"))]),
            arm(opn(OP_UUPD), vec![nb(&st, sid("S_UU"))]),
        ],
        vec![
            nb(&st, sid("S_IDLE")),
            nb(&status, lit(8, 2)),
            nb(&done, lit(1, 1)),
        ],
    ));
    sw.push(arm(sid("S_FETCH"), fetch));
    sw.push(arm(
        sid("S_WAIT"),
        // Ends with wait_q = 0, which the next op's preamble counters start from.
        vec![
            if_(wait.clone().eq_(lit(8, 0)), vec![nb(&st, sid("S_NEXT"))])
                .else_(vec![nb(&wait, &wait - lit(8, 1))]),
        ],
    ));
    sw.push(arm(
        sid("S_NEXT"),
        vec![nb(&pc, &pc + lit(pcw, 1)), nb(&st, sid("S_FETCH"))],
    ));

    // ------------------------------------------------------------------ INORM / NORM rows
    // A group of C rows r0 + j (samples for INORM) on the C lanes: px is banked by sample
    // (lane j = bank j), h_l diagonally (lane j = bank (j + k) mod C), all at word
    // (r0 div C)·d + k. S_NA streams the rows into the goodness units; S_NAW waits for S; S_NG loads
    // S into the normalise units and writes G (and rsqrt parts for DF-R/DF-O) one lane per
    // cycle; S_NB streams the rows again through the normalise units into the
    // diagonal-banked x̂ (not for the last layer): row r, column k → bank (r + k) mod C.
    {
        let is_in = is_op(OP_INORM);
        let is_nm = is_op(OP_NORM);
        // Row geometry per op/layer.
        let dsel = |l: Option<usize>| {
            ix(match l {
                None => d[0],
                Some(l) => d[l + 1],
            })
        };
        let mut dexpr = mux(&is_in, dsel(None), ix(0));
        for l in 0..nl {
            dexpr = mux(is_opl(OP_NORM, l), dsel(Some(l)), dexpr);
        }
        let dnorm = e.w32("norm_d", dexpr);
        let nrow = e.w32("norm_rows", mux(&is_in, &nsamp, &nrows));
        let last_nm = e.m.wire("norm_last_layer", 1);
        e.m.assign(&last_nm, is_opl(OP_NORM, nl - 1));
        let issue = in_st("S_NA")
            .lor(in_st("S_NB"))
            .land(is_in.clone().lor(is_nm.clone()));
        // Source reads, every bank at (r0 div C)·d + k: px (bank s mod C), h_l (diagonal).
        let hword = e.w32("norm_hword", &rgb + &jj);
        e.drive(
            "px_raddr",
            issue.clone().land(&is_in),
            repl(int(cc as u64), [hword.slice(px.aw() - 1, 0)]),
        );
        for l in 0..nl {
            let hm = &h[l];
            let all: Vec<Expr> = (0..cc).map(|_| hword.slice(hm.aw() - 1, 0)).collect();
            e.drive(
                &format!("{}_raddr", hm.name),
                issue.clone().land(is_opl(OP_NORM, l)),
                cat(all),
            );
        }
        // Lanes in use: the rows r0 + j < rows.
        let lanes_v = e.m.wire("norm_lanes", lanes);
        e.m.assign(
            &lanes_v,
            cat((0..cc)
                .rev()
                .map(|j| (&row + ix(j)).lt_(&nrow))
                .collect::<Vec<_>>()),
        );
        let lanes_v2 = e.delay("norm_lanes", lanes_v.clone(), lanes, 2);
        // Source data two cycles later.
        let px_wide = |j: usize| {
            if f.hidden.bits > f.pixel.bits {
                cat([lit(f.hidden.bits - f.pixel.bits, 0), px.bank(j)])
            } else {
                px.bank(j)
            }
        };
        // Lane j (row r0 + j) at column k sits in bank (j + k) mod C.
        let nrot = e.delay("norm_rot", jmod.slice(7, 0), 8, 2);
        if cc == 1 {
            e.consume("norm_rot", nrot.clone());
        }
        let hlane = |l: usize, j: usize| pick(&nrot, cc, |r| h[l].bank((j + r) % cc));
        let src: Vec<Expr> = (0..cc)
            .rev()
            .map(|j| {
                let mut v = mux(&is_in, px_wide(j), lit(f.hidden.bits, 0));
                for l in 0..nl {
                    v = mux(is_opl(OP_NORM, l), hlane(l, j), v);
                }
                v
            })
            .collect();
        let srcw = e.m.wire("norm_src", hb * lanes);
        e.m.assign(&srcw, cat(src));
        let a_v = e.delay("na_v", in_st("S_NA").land(issue.clone()), 1, 2);
        let a_first = e.delay("na_first", jj.clone().eq_(ix(0)), 1, 2);
        let a_last = e.delay("na_last", jj.clone().eq_(&dnorm - ix(1)), 1, 2);
        e.drive("gd_h", lit(1, 1), srcw.clone());
        e.drive("gd_v", lit(1, 1), mux(a_v, lanes_v2.clone(), lit(lanes, 0)));
        e.drive("gd_first", lit(1, 1), a_first);
        e.drive("gd_last", lit(1, 1), a_last);
        let mut rc = lit(s.recip_w, 0);
        for l in 0..nl {
            rc = mux(
                layer.clone().eq_(lit(lw_, l as u64)),
                lit(s.recip_w, units.recip_d[l].value() as u64),
                rc,
            );
        }
        e.drive("gd_recip", lit(1, 1), rc);
        // Normalise pass: S is loaded at the start of S_NG.
        let b_v = e.delay("nb_v", in_st("S_NB").land(issue.clone()), 1, 2);
        e.drive(
            "nm_sv",
            in_st("S_NG").land(jj.clone().eq_(ix(0))),
            lit(1, 1),
        );
        let xl: Vec<Expr> = (0..cc)
            .rev()
            .map(|j| {
                let x = srcw.part(int(u64::from(hb) * j as u64), int(u64::from(hb)));
                if xw_ > hb {
                    cat([lit(xw_ - hb, 0), x])
                } else {
                    x
                }
            })
            .collect();
        e.drive("nm_x", lit(1, 1), cat(xl));
        e.drive("nm_xv", lit(1, 1), mux(b_v, lanes_v2, lit(lanes, 0)));
        // Destination, five cycles after the read: lane j → bank (r0 + j + k) mod C = (j + k)
        // mod C (r0 ≡ 0 mod C), one word (r0 div C)·d + k for all lanes.
        let bank = e.w32("norm_bank", add_mod(&rmod, &jmod, cc, IW));
        let wword = e.w32("norm_word", &rgb + &jj);
        let bank_d = e.delay("nb_bank", bank.slice(7, 0), 8, 5);
        if cc == 1 {
            e.consume("nb_bank_d", bank_d.clone());
        }
        // As wide as the widest x̂ memory needs; each takes its low bits.
        let xaw = std::iter::once(&x0)
            .chain(xh.iter())
            .map(|m| m.aw())
            .max()
            .unwrap_or(1);
        let word_d = e.delay("nb_word", wword.slice(xaw - 1, 0), xaw, 5);
        e.consume(
            "norm_bank",
            cat([
                bank.slice(IW - 1, 8),
                wword.slice(IW - 1, xaw),
                hword.slice(IW - 1, 16),
            ]),
        );
        // Bank b takes lane (b − rot) mod C.
        let lane_of = |b: usize, sig: &Expr, w: u32| -> Expr {
            let part = |j: usize| {
                if w == 1 {
                    lane_bit_of(sig, j, cc)
                } else {
                    sig.part(int(u64::from(w) * j as u64), int(u64::from(w)))
                }
            };
            pick(&bank_d, cc, |rot| part((b + cc - rot) % cc))
        };
        let xwe = e.m.wire("norm_xwe", lanes);
        e.m.assign(
            &xwe,
            cat((0..cc)
                .rev()
                .map(|b| lane_of(b, &nm_yv, 1))
                .collect::<Vec<_>>()),
        );
        let xwd = e.m.wire("norm_xwd", ab * lanes);
        e.m.assign(
            &xwd,
            cat((0..cc)
                .rev()
                .map(|b| lane_of(b, &nm_y, ab))
                .collect::<Vec<_>>()),
        );
        let xdst: Vec<(Expr, &Mem)> = std::iter::once((is_in.clone(), &x0))
            .chain(xh.iter().enumerate().map(|(l, m)| (is_opl(OP_NORM, l), m)))
            .collect();
        let any_y = nm_yv.clone().red_or();
        for (cond, m) in xdst {
            let c = any_y.clone().land(cond);
            e.drive(
                &format!("{}_we", m.name),
                c.clone(),
                mux(c.clone(), xwe.clone(), lit(m.banks as u32, 0)),
            );
            e.drive(
                &format!("{}_waddr", m.name),
                c.clone(),
                word_d.slice(m.aw() - 1, 0),
            );
            e.drive(&format!("{}_wdata", m.name), c, xwd.clone());
        }
        // S_NG: G of lane jj in cycle jj (latched when the goodness units answered), the
        // rsqrt parts of lane jj − 2 two cycles after the load (they hold until the next).
        let gq = e.q("norm_g_q", gb * lanes);
        let gidx = e.w32("norm_g_row", &row + &jj);
        let lane_bit = |sig: &Expr, j: &Expr| -> Expr {
            let mut v = lit(1, 0);
            for b in 0..cc {
                v = mux(j.clone().eq_(ix(b)), lane_bit_of(sig, b, cc), v);
            }
            v
        };
        let lane_word = |sig: &Expr, j: &Expr, w: u32| -> Expr {
            let mut v = lit(w, 0);
            for b in 0..cc {
                v = mux(
                    j.clone().eq_(ix(b)),
                    sig.part(int(u64::from(w) * b as u64), int(u64::from(w))),
                    v,
                );
            }
            v
        };
        let lanes_now = lanes_v.clone();
        for l in 0..nl {
            let c = in_st("S_NG")
                .land(is_opl(OP_NORM, l))
                .land(jj.clone().lt_(ix(cc)))
                .land(lane_bit(&lanes_now, &jj));
            e.drive(&format!("{}_we", g[l].name), c.clone(), lit(1, 1));
            e.drive(
                &format!("{}_waddr", g[l].name),
                c.clone(),
                gidx.slice(g[l].aw() - 1, 0),
            );
            e.drive(&format!("{}_wdata", g[l].name), c, lane_word(&gq, &jj, gb));
        }
        if let Some(aw) = rsm.first().map(Mem::aw) {
            let j2 = e.w32("norm_rs_lane", &jj - ix(2));
            let c = in_st("S_NG")
                .land(jj.clone().ge_(ix(2)))
                .land(lane_bit(&lanes_now, &j2));
            let ra = e.w32("norm_rs_row", &row + &j2);
            e.consume("norm_rs_row", ra.slice(IW - 1, aw));
            let rsv = cat([
                lane_word(&nm_rs_word, &j2, rs_w),
                lane_word(&nm_rs_he, &j2, he_w),
            ]);
            for (l, m) in rsm.iter().enumerate() {
                let c = c.clone().land(is_opl(OP_NORM, l));
                e.drive(&format!("{}_we", m.name), c.clone(), lit(1, 1));
                e.drive(&format!("{}_waddr", m.name), c.clone(), ra.slice(aw - 1, 0));
                e.drive(&format!("{}_wdata", m.name), c, rsv.clone());
            }
        }
        // Sequencing: the next group of C rows.
        let next_row = vec![
            nb(&jj, ix(0)),
            nb(&jmod, ix(0)),
            nb(&row, &row + ix(cc)),
            nb(&rgb, &rgb + &dnorm),
            if_(
                (&row + ix(cc)).ge_(&nrow),
                vec![nb(&wait, lit(8, 8)), nb(&st, sid("S_WAIT"))],
            )
            .else_(vec![nb(&st, sid("S_NA"))]),
        ];
        let step_j = |then_: Vec<Stmt>| {
            vec![
                nb(&jj, &jj + ix(1)),
                if_(jmod.clone().eq_(ix(cc - 1)), vec![nb(&jmod, ix(0))])
                    .else_(vec![nb(&jmod, &jmod + ix(1))]),
                if_(jj.clone().eq_(&dnorm - ix(1)), then_),
            ]
        };
        sw.push(arm(
            sid("S_NA"),
            step_j(vec![
                nb(&jj, ix(0)),
                nb(&jmod, ix(0)),
                nb(&st, sid("S_NAW")),
            ]),
        ));
        sw.push(arm(
            sid("S_NAW"),
            vec![if_(
                lane_bit_of(&gd_vo, 0, cc),
                vec![nb(&sacc, &gd_s), nb(&gq, &gd_g), nb(&st, sid("S_NG"))],
            )],
        ));
        sw.push(arm(
            sid("S_NG"),
            vec![
                nb(&jj, &jj + ix(1)),
                if_(
                    jj.clone().eq_(ix(cc + 1)),
                    vec![if_(&last_nm, next_row.clone())
                        .else_(vec![nb(&jj, ix(0)), nb(&st, sid("S_NB"))])],
                ),
            ],
        ));
        sw.push(arm(sid("S_NB"), step_j(next_row)));
    }

    // ------------------------------------------------------------------ GEMM (FWD / GRAD)
    {
        let is_f = is_op(OP_FWD);
        let is_g = is_op(OP_GRAD);
        let gemm = is_f.clone().lor(is_g.clone()).lor(is_op(OP_FB));
        // Dimensions per op/layer: M (outputs, over R), N (over C), K (streamed).
        let mut mexp = ix(0);
        let mut nexp = ix(0);
        let mut kexp = ix(0);
        for l in 0..nl {
            let n_f = if l == 0 { nsamp.clone() } else { nrows.clone() };
            mexp = mux(layer.clone().eq_(lit(lw_, l as u64)), ix(d[l + 1]), mexp);
            nexp = mux(
                is_opl(OP_FWD, l),
                n_f.clone(),
                mux(is_opl(OP_GRAD, l), ix(d[l]), nexp),
            );
            kexp = mux(
                is_opl(OP_FWD, l),
                ix(d[l]),
                mux(is_opl(OP_GRAD, l), n_f, kexp),
            );
            if l < nfb {
                // FB l: outputs d_l (over R) × rows (over C), K = d_{l+1}.
                nexp = mux(is_opl(OP_FB, l), nrows.clone(), nexp);
                kexp = mux(is_opl(OP_FB, l), ix(d[l + 2]), kexp);
            }
        }
        let gm = e.w32("gemm_m", mexp);
        let gn = e.w32("gemm_n", nexp);
        let gk = e.w32("gemm_k", kexp);
        let obr = e.w32("gemm_obr", &ob * ix(rr));
        let tbc = e.w32("gemm_tbc", &tb * ix(cc));
        // Every GEMM streams its tiles back to back, each padded to at least drain + 1 steps
        // (GRAD: max(R, C) + 1, FWD/FB: R·C + 1): the shadows must outlive their drain, and
        // one drain must end before the next starts. Steps past K issue nothing.
        let issue = e.m.wire("gemm_issue_c", 1);
        e.m.assign(
            &issue,
            in_st("S_GS").land(gemm.clone()).land(kk.clone().lt_(&gk)),
        );
        e.m.assign(&gemm_issue, &issue);
        // West operands.
        for l in 0..nl {
            // FWD: W_l banks, word ob·d_in + k.
            let wa = e.w32(&format!("fw{}_raddr", l + 1), &ob * ix(d[l]) + &kk);
            let mut wa_all = Vec::new();
            for _ in 0..rr {
                wa_all.push(wa.slice(w[l].aw() - 1, 0));
            }
            let un = e.m.wire(&format!("unused_fw{}_raddr", l + 1), 1);
            e.m.assign(&un, wa.slice(IW - 1, w[l].aw()).red_xor());
            e.drive(
                &format!("{}_raddr", w[l].name),
                issue.clone().land(is_opl(OP_FWD, l)),
                cat(wa_all),
            );
            if let Some(dm) = &dl[l] {
                // GRAD l ≥ 2: δ_l banks, word r·⌈d/R⌉ + ob.
                let da = e.w32(&format!("gd{}_raddr", l + 1), &kk * ix(dr[l]) + &ob);
                let all: Vec<Expr> = (0..rr).map(|_| da.slice(dm.aw() - 1, 0)).collect();
                let un = e.m.wire(&format!("unused_gd{}_raddr", l + 1), 1);
                e.m.assign(&un, da.slice(IW - 1, dm.aw()).red_xor());
                e.drive(
                    &format!("{}_raddr", dm.name),
                    issue.clone().land(is_opl(OP_GRAD, l)),
                    cat(all),
                );
            }
        }
        // FB l: B_{l+1}ᵀ banks (like FWD's W), word ob·d_{l+1} + k; north: the local δ_{l+1}
        // row banks, word tb·d_{l+1} + k. Lanes are banks in order (tiles start at multiples
        // of R and C), so neither edge rotates.
        // DF-O reads row k of W_{l+1} instead: bank b holds column ob·R + ((b − k) mod R) at
        // word (k div R)·d_l + ob·R + ((b − k) mod R); the lanes rotate by k mod R.
        for l in 0..nfb {
            let c = issue.clone().land(is_opl(OP_FB, l));
            if lay.diag_w {
                let wm = &w[l + 1];
                let mut all = Vec::new();
                for b in (0..rr).rev() {
                    let off = e.w32(
                        &format!("fbo{}_off{b}", l + 1),
                        mux(ix(b).ge_(&kmr), ix(b) - &kmr, ix(b + rr) - &kmr),
                    );
                    let a = e.w32(&format!("fbo{}_raddr{b}", l + 1), &kgr + &obr + &off);
                    e.consume(
                        &format!("fbo{}_raddr{b}", l + 1),
                        cat([a.slice(IW - 1, wm.aw()), off.clone()]),
                    );
                    all.push(a.slice(wm.aw() - 1, 0));
                }
                e.drive(&format!("{}_raddr", wm.name), c.clone(), cat(all));
            } else {
                let fm = &fbm[l];
                let wa = e.w32(&format!("fbw{}_raddr", l + 1), &ob * ix(d[l + 2]) + &kk);
                e.consume(&format!("fbw{}_raddr", l + 1), wa.slice(IW - 1, fm.aw()));
                let all: Vec<Expr> = (0..rr).map(|_| wa.slice(fm.aw() - 1, 0)).collect();
                e.drive(&format!("{}_raddr", fm.name), c.clone(), cat(all));
            }
            let dm = dc[l + 1].as_ref().expect("local δ copy of the layer above");
            let na = e.w32(&format!("fbn{}_raddr", l + 1), &tb * ix(d[l + 2]) + &kk);
            e.consume(&format!("fbn{}_raddr", l + 1), na.slice(IW - 1, dm.aw()));
            let all: Vec<Expr> = (0..cc).map(|_| na.slice(dm.aw() - 1, 0)).collect();
            e.drive(&format!("{}_raddr", dm.name), c, cat(all));
        }
        // Layer 1's e: register file, word s·⌈d1/R⌉ + ob, saturated to `delta`, delayed to
        // match the BRAM latency.
        let ea = e.w32("ge_raddr", &kk * ix(dr[0]) + &ob);
        let e_word = e.m.wire("e_word", ew * rr as u32);
        e.m.assign(&e_word, e_mem.idx(ea.slice(abits(bsz * dr[0]) - 1, 0)));
        let un = e.m.wire("unused_ge_raddr", 1);
        e.m.assign(&un, ea.slice(IW - 1, abits(bsz * dr[0])).red_xor());
        let mut e_lanes = Vec::new();
        for i in (0..rr).rev() {
            let lane = e.m.wire_s(&format!("e_lane{i}"), ew);
            e.m.assign(
                &lane,
                e_word.part(int((i as u64) * u64::from(ew)), int(u64::from(ew))),
            );
            let sat = saturate(
                &mut e.m,
                &format!("e_sat{i}"),
                &Sig::new(lane, ew, true),
                f.delta,
            );
            e_lanes.push(ext(&sat, s.a_w));
        }
        let e_cat = e.m.wire("e_lanes", s.a_w * rr as u32);
        e.m.assign(&e_cat, cat(e_lanes));
        let e_d = e.delay("e_lanes", e_cat.clone(), s.a_w * rr as u32, 2);
        // West data two cycles after issue: select by op/layer.
        let mut wsrc = zeros(int(u64::from(s.a_w) * rr as u64));
        // Diagonal W (DF-O): lane i = bank (i + k) mod R, for FWD and FB alike.
        let rotw = if lay.diag_w {
            Some(e.delay("rotw", kmr.slice(7, 0), 8, 2))
        } else {
            None
        };
        for l in 0..nl {
            let wl: Vec<Expr> = (0..rr)
                .rev()
                .map(|i| {
                    let lane = |b: usize| ext(&Sig::new(w[l].bank(b), f.weight.bits, true), s.a_w);
                    match &rotw {
                        None => lane(i),
                        Some(rot) => {
                            let mut v = lit(s.a_w, 0);
                            for r in 0..rr {
                                v = mux(rot.clone().eq_(lit(8, r as u64)), lane((i + r) % rr), v);
                            }
                            v
                        }
                    }
                })
                .collect();
            let lay_d = e.m.wire(&format!("west_w{}", l + 1), s.a_w * rr as u32);
            e.m.assign(&lay_d, cat(wl));
            wsrc = mux(is_opl(OP_FWD, l), lay_d.clone(), wsrc);
            if lay.diag_w && l >= 1 {
                wsrc = mux(is_opl(OP_FB, l - 1), lay_d, wsrc);
            }
            if let Some(dm) = &dl[l] {
                let dlanes: Vec<Expr> = (0..rr)
                    .rev()
                    .map(|i| ext(&Sig::new(dm.bank(i), f.delta.bits, true), s.a_w))
                    .collect();
                let dd = e.m.wire(&format!("west_d{}", l + 1), s.a_w * rr as u32);
                e.m.assign(&dd, cat(dlanes));
                wsrc = mux(is_opl(OP_GRAD, l), dd, wsrc);
            }
        }
        wsrc = mux(is_opl(OP_GRAD, 0), e_d, wsrc);
        for (l, fm) in fbm.iter().enumerate() {
            let lanes: Vec<Expr> = (0..rr)
                .rev()
                .map(|i| ext(&Sig::new(fm.bank(i), f.weight.bits, true), s.a_w))
                .collect();
            let fw = e.m.wire(&format!("west_fb{}", l + 1), s.a_w * rr as u32);
            e.m.assign(&fw, cat(lanes));
            wsrc = mux(is_opl(OP_FB, l), fw, wsrc);
        }
        // North: x̂ banks (x0 for layer 1, xh_{l-1} otherwise).
        let rot = e.delay("rot", kmod.slice(7, 0), 8, 2);
        for l in 0..nl {
            let xm = if l == 0 { &x0 } else { &xh[l - 1] };
            let aw = xm.aw();
            // FWD: all banks at word tb·d_in + k.
            let fa = e.w32(&format!("fx{}_raddr", l + 1), &tb * ix(d[l]) + &kk);
            let un = e.m.wire(&format!("unused_fx{}_raddr", l + 1), 1);
            e.m.assign(&un, fa.slice(IW - 1, aw).red_xor());
            let fall: Vec<Expr> = (0..cc).map(|_| fa.slice(aw - 1, 0)).collect();
            // GRAD: bank b at word (r div C)·d_in + k0 + ((b − r) mod C).
            let mut gall = Vec::new();
            for b in (0..cc).rev() {
                let off = e.w32(
                    &format!("gx{}_off{b}", l + 1),
                    mux(ix(b).ge_(&kmod), ix(b) - &kmod, ix(b + cc) - &kmod),
                );
                let a = e.w32(&format!("gx{}_raddr{b}", l + 1), &kg + &tbc + &off);
                let un = e.m.wire(&format!("unused_gx{}_raddr{b}", l + 1), 1);
                e.m.assign(&un, cat([a.slice(IW - 1, aw), off.clone()]).red_xor());
                gall.push(a.slice(aw - 1, 0));
            }
            let cond_f = issue.clone().land(is_opl(OP_FWD, l));
            let cond_g = issue.clone().land(is_opl(OP_GRAD, l));
            e.drive(&format!("{}_raddr", xm.name), cond_f, cat(fall));
            e.drive(&format!("{}_raddr", xm.name), cond_g, cat(gall));
        }
        // Rotated north lanes: lane j = bank (j + rot) mod C.
        let mut nsrc = zeros(int(u64::from(s.b_w) * cc as u64));
        for l in 0..nl {
            let xm = if l == 0 { &x0 } else { &xh[l - 1] };
            let lanes: Vec<Expr> = (0..cc)
                .rev()
                .map(|j| {
                    let mut v = lit(s.b_w, 0);
                    for r in 0..cc {
                        v = mux(
                            rot.clone().eq_(lit(8, r as u64)),
                            cat([lit(s.b_w - f.act.bits, 0), xm.bank((j + r) % cc)]),
                            v,
                        );
                    }
                    v
                })
                .collect();
            let nn = e.m.wire(&format!("north_x{}", l + 1), s.b_w * cc as u32);
            e.m.assign(&nn, cat(lanes));
            nsrc = mux(layer.clone().eq_(lit(lw_, l as u64)), nn, nsrc);
        }
        for l in 0..nfb {
            let dm = dc[l + 1].as_ref().expect("local δ copy");
            let lanes: Vec<Expr> = (0..cc)
                .rev()
                .map(|j| ext(&Sig::new(dm.bank(j), f.delta.bits, true), s.b_w))
                .collect();
            let nn = e.m.wire(&format!("north_fb{}", l + 1), s.b_w * cc as u32);
            e.m.assign(&nn, cat(lanes));
            nsrc = mux(is_opl(OP_FB, l), nn, nsrc);
        }
        let iv = e.delay("gs_v", issue.clone(), 1, 2);
        let ic = e.delay("gs_c", issue.clone().land(kk.clone().eq_(ix(0))), 1, 2);
        let il = e.delay(
            "gs_l",
            issue.clone().land(kk.clone().eq_(&gk - ix(1))),
            1,
            2,
        );
        e.seq.push(nb(&west, wsrc));
        e.seq.push(nb(&north, nsrc));
        e.seq.push(nb(&av, iv));
        e.seq.push(nb(&ac, ic));
        e.seq.push(nb(&al, il));

        // The drain engine follows the stream with its own tile counters (same order: ob
        // outer, tb inner): `dr_lag` cycles after a tile's last step it reads the PE
        // shadows, which hold the tile until the next tile's last step reaches them. GRAD
        // drains a column (R lanes) per cycle for C cycles, after R + 6 (the last row's
        // shadows are complete); FWD and FB one PE per cycle, row-major, for R·C cycles,
        // after 7 (PE (0, 0) first). A tile lasts at least drain + 1 steps (below), so a
        // drain ends before the next starts and before any shadow it reads is replaced.
        let dr_act = e.q("dr_act_q", 1);
        let dr_i = e.q("dr_i_q", IW);
        let dr_j = e.q("dr_j_q", IW);
        let dr_sel = e.q("dr_sel_q", IW);
        let dr_ob = e.q("dr_ob_q", IW);
        let dr_tb = e.q("dr_tb_q", IW);
        let dr_tbm = e.q("dr_tbm_q", IW);
        // o mod C of the drained element and ob·R mod C of the tile (h's diagonal banks).
        let dr_om = e.q("dr_om_q", IW);
        let dr_obm = e.q("dr_obm_q", IW);
        let tile_end = issue.clone().land(kk.clone().eq_(&gk - ix(1)));
        let lag_g = rr + 6;
        let lag_e = 7;
        let mut taps = Vec::new();
        let mut cur = tile_end;
        for t in 1..=lag_g.max(lag_e) {
            let r = e.q(&format!("dr_start_d{t}"), 1);
            e.seq.push(nb(&r, &cur));
            taps.push(r.clone());
            cur = r;
        }
        let dr_start = e.m.wire("dr_start", 1);
        e.m.assign(
            &dr_start,
            mux(is_g.clone(), &taps[lag_g - 1], &taps[lag_e - 1]),
        );
        // A started tile not yet drained (the op's tail waits for it).
        let dr_pending = e.m.wire("dr_pending", 1);
        e.m.assign(
            &dr_pending,
            taps.iter().fold(dr_act.clone(), |a, t| a.lor(t.clone())),
        );
        let dr_obr = e.w32("dr_obr", &dr_ob * ix(rr));
        let dr_tbc = e.w32("dr_tbc", &dr_tb * ix(cc));
        let dr_last = mux(
            is_g.clone(),
            dr_j.clone().eq_(ix(cc - 1)),
            dr_sel.clone().eq_(ix(rr * cc - 1)),
        );
        e.seq.push(
            if_(
                in_st("S_FETCH"),
                vec![
                    nb(&dr_ob, ix(0)),
                    nb(&dr_tb, ix(0)),
                    nb(&dr_tbm, ix(0)),
                    nb(&dr_obm, ix(0)),
                ],
            )
            .else_if(
                &dr_start,
                vec![
                    nb(&dr_act, lit(1, 1)),
                    nb(&dr_om, &dr_obm),
                    nb(&dr_i, ix(0)),
                    nb(&dr_j, ix(0)),
                    nb(&dr_sel, ix(0)),
                    nb(&dbk, &dr_tbm),
                ],
            )
            .else_if(
                &dr_act,
                vec![
                    nb(&dr_sel, &dr_sel + ix(1)),
                    nb(&dbk, inc_mod(&dbk, rr)),
                    if_(
                        dr_j.clone().eq_(ix(cc - 1)).land(is_g.clone().lnot()),
                        vec![
                            nb(&dr_j, ix(0)),
                            nb(&dr_i, &dr_i + ix(1)),
                            nb(&dr_om, inc_mod(&dr_om, cc)),
                        ],
                    )
                    .else_(vec![nb(&dr_j, &dr_j + ix(1))]),
                    if_(
                        dr_last,
                        vec![
                            nb(&dr_act, lit(1, 0)),
                            if_(
                                (&dr_tbc + ix(cc)).ge_(&gn),
                                vec![
                                    nb(&dr_tb, ix(0)),
                                    nb(&dr_tbm, ix(0)),
                                    nb(&dr_ob, &dr_ob + ix(1)),
                                    nb(&dr_obm, add_mod(&dr_obm, &ix(rr % cc), cc, IW)),
                                ],
                            )
                            .else_(vec![
                                nb(&dr_tb, &dr_tb + ix(1)),
                                nb(&dr_tbm, add_mod(&dr_tbm, &ix(cc % rr), rr, IW)),
                            ]),
                        ],
                    ),
                ],
            ),
        );
        // FWD / FB: PE (i, j) = sel; valid if o = ob·R + i < M and n = tb·C + j < N.
        let dvalid = e.m.wire("drain_valid", 1);
        e.m.assign(
            &dvalid,
            dr_act
                .clone()
                .land(is_g.clone().lnot())
                .land((&dr_obr + &dr_i).lt_(&gm))
                .land((&dr_tbc + &dr_j).lt_(&gn)),
        );
        let acc_sel = e.m.wire_s("acc_sel", s.acc_w);
        e.m.assign(
            &acc_sel,
            acc_all.part(&dr_sel * int(u64::from(s.acc_w)), int(u64::from(s.acc_w))),
        );
        let acc_d1 = e.q("acc_d1", s.acc_w);
        let acc_d2 = e.q("acc_d2", s.acc_w);
        e.seq.push(nb(&acc_d1, &acc_sel));
        e.seq.push(nb(&acc_d2, &acc_d1));
        if nl == 1 && nfb == 0 {
            // Only FWD l ≥ 2 and FB read it.
            e.consume("acc_d2", acc_d2.clone());
        }
        let o_idx = e.w32("drain_o", &dr_obr + &dr_i);
        if nl == 1 && nfb == 0 {
            // (FWD l ≥ 2 and FB read it.)
            e.consume("drain_o", o_idx.slice(0, 0));
        }
        let n_idx = e.w32("drain_n", &dr_tbc + &dr_j);
        // FWD layer 1: a1, row n, column o = ob·R + i: bank i, word n·⌈d1/R⌉ + ob (one
        // cycle later).
        let a1w = e.w32("a1_word", &n_idx * ix(div_ceil(d[1], rr)) + &dr_ob);
        let a1v = e.delay("a1w_v", dvalid.clone().land(is_opl(OP_FWD, 0)), 1, 1);
        let a1a = e.delay("a1w_a", a1w.slice(a1.aw() - 1, 0), a1.aw(), 1);
        let a1b = e.delay("a1w_b", dr_i.slice(7, 0), 8, 1);
        e.consume("a1_word", a1w.slice(IW - 1, a1.aw()));
        e.write_one(&a1, &a1v, &a1b, a1a, acc_d1.clone());
        // FWD layer ≥ 2: z = acc + b << sh → ReLU → h_l (four cycles later): row n, column o
        // in bank (n + o) mod C = (j + o mod C) mod C (tiles start at multiples of C), word
        // (n div C)·d + o = tb·d + o.
        let hbank = e.w32("drain_hbank", add_mod(&dr_j, &dr_om, cc, IW));
        if nl == 1 {
            e.consume("drain_hbank", hbank.slice(7, 0));
        }
        let bias_sh = f.accumulator.frac - f.bias.frac;
        let zw = s.acc_w + 2;
        for l in 1..nl {
            let c = dvalid.clone().land(is_opl(OP_FWD, l));
            e.drive(
                &format!("{}_raddr", bias[l].name),
                c.clone(),
                o_idx.slice(bias[l].aw() - 1, 0),
            );
            let hw = e.w32(&format!("h{}_word", l + 1), &dr_tb * ix(d[l + 1]) + &o_idx);
            e.consume(&format!("h{}_word", l + 1), hw.slice(IW - 1, h[l].aw()));
            let v2 = e.delay(&format!("fz{}_v", l + 1), c.clone(), 1, 2);
            let z = e.m.wire_s(&format!("fz{}", l + 1), zw);
            let zb = shl_ext(
                &mut e.m,
                &format!("fb{}", l + 1),
                bias[l].bank(0),
                f.bias.bits,
                bias_sh,
                zw,
            );
            e.m.assign(&z, ext(&Sig::new(acc_d2.clone(), s.acc_w, true), zw) + zb);
            let zc = saturate(
                &mut e.m,
                &format!("fz{}_c", l + 1),
                &Sig::new(z, zw, true),
                f.accumulator,
            );
            e.drive("relu_z", v2.clone(), relu0(zc.e.clone(), zb_));
            e.drive("relu_v", v2, relu0(lit(1, 1), 1));
            let ha = e.delay(
                &format!("fh{}_a", l + 1),
                hw.slice(h[l].aw() - 1, 0),
                h[l].aw(),
                4,
            );
            let hv = e.delay(&format!("fh{}_v", l + 1), c, 1, 4);
            let hb4 = e.delay(&format!("fh{}_b", l + 1), hbank.slice(7, 0), 8, 4);
            e.drive(
                &format!("{}_we", h[l].name),
                hv.clone(),
                bank_onehot(&hb4, cc),
            );
            e.drive(&format!("{}_waddr", h[l].name), hv.clone(), ha);
            e.drive(&format!("{}_wdata", h[l].name), hv, relu_h0.clone());
        }
        // GRAD: the tile drains one column n per cycle, W_l[ob·R + i][n] on lane i for all
        // rows at once, through the update unit of the element's bank: bank i (row banks) or
        // (i + n) mod R (DF-O's diagonal banks; `dbk` = n mod R). Every bank is read and
        // written at the same word ob·d_in + n.
        let accw = s.acc_w;
        let gcol: Vec<Expr> = (0..rr)
            .map(|i| {
                acc_all.part(
                    (ix(i * cc) + &dr_j) * int(u64::from(accw)),
                    int(u64::from(accw)),
                )
            })
            .collect();
        let glv: Vec<Expr> = (0..rr).map(|i| (&dr_obr + ix(i)).lt_(&gm)).collect();
        let gd_n = e.w32("grad_n", &dr_tbc + &dr_j);
        let gd_valid = e.m.wire("grad_valid", 1);
        e.m.assign(
            &gd_valid,
            dr_act
                .clone()
                .land(is_g.clone())
                .land(gd_n.clone().lt_(&gn)),
        );
        // Bank b takes lane (b − n) mod R under DF-O.
        let (gbank, gbank_v): (Vec<Expr>, Vec<Expr>) = (0..rr)
            .map(|b| {
                if !lay.diag_w {
                    return (gcol[b].clone(), glv[b].clone());
                }
                let (mut a, mut v) = (gcol[b].clone(), glv[b].clone());
                for sft in 1..rr {
                    let lane = (b + rr - sft) % rr;
                    let hit = dbk.clone().eq_(ix(sft));
                    a = mux(hit.clone(), gcol[lane].clone(), a);
                    v = mux(hit, glv[lane].clone(), v);
                }
                (a, v)
            })
            .unzip();
        let gacc = e.m.wire("grad_col", accw * rr as u32);
        e.m.assign(&gacc, cat(gbank.into_iter().rev().collect::<Vec<_>>()));
        let gacc2 = e.delay("grad_col", gacc, accw * rr as u32, 2);
        for l in 0..nl {
            let c = gd_valid.clone().land(is_opl(OP_GRAD, l));
            let gv = e.m.wire(&format!("gu{}_lanes", l + 1), rr as u32);
            e.m.assign(
                &gv,
                mux(
                    c.clone(),
                    cat(gbank_v.iter().rev().cloned().collect::<Vec<_>>()),
                    lit(rr as u32, 0),
                ),
            );
            let wa = e.w32(&format!("gw{}_word", l + 1), &dr_ob * ix(d[l]) + &gd_n);
            e.consume(&format!("gw{}_word", l + 1), wa.slice(IW - 1, w[l].aw()));
            let all: Vec<Expr> = (0..rr).map(|_| wa.slice(w[l].aw() - 1, 0)).collect();
            e.drive(&format!("{}_raddr", w[l].name), c.clone(), cat(all));
            let v2 = e.delay(&format!("gu{}_v", l + 1), c.clone(), 1, 2);
            let lv2 = e.delay(&format!("gu{}_lv", l + 1), gv.clone(), rr as u32, 2);
            let ups: Vec<Expr> = (0..rr)
                .rev()
                .map(|b| ext(&Sig::new(w[l].bank(b), f.weight.bits, true), s.param_w))
                .collect();
            e.drive("up_w", v2.clone(), cat(ups));
            let ugs: Vec<Expr> = (0..rr)
                .rev()
                .map(|b| {
                    let g = gacc2.part(int((b as u64) * u64::from(accw)), int(u64::from(accw)));
                    ext(&Sig::new(g, accw, true), f.update.bits)
                })
                .collect();
            e.drive("up_g", v2.clone(), cat(ugs));
            e.drive("up_kind", v2.clone(), lit(2, 0));
            e.drive("up_v", v2, lv2);
            let wv = e.delay(&format!("gu{}_wv", l + 1), c.clone(), 1, 5);
            let wl = e.delay(&format!("gu{}_wl", l + 1), gv, rr as u32, 5);
            let wad = e.delay(
                &format!("gu{}_wa", l + 1),
                wa.slice(w[l].aw() - 1, 0),
                w[l].aw(),
                5,
            );
            e.drive(&format!("{}_we", w[l].name), wv.clone(), wl);
            e.drive(&format!("{}_waddr", w[l].name), wv.clone(), wad);
            let wds: Vec<Expr> = (0..rr)
                .rev()
                .map(|b| {
                    up_wo.part(
                        int((b as u64) * u64::from(s.param_w)),
                        int(u64::from(f.weight.bits)),
                    )
                })
                .collect();
            e.drive(&format!("{}_wdata", w[l].name), wv, cat(wds));
        }
        // FB l: fb = requant(acc · word · 2^-(weight.frac + rsqrt_frac + k)) onto `delta`
        // (`Units::scale_by_rsqrt` with layer l's rsqrt parts of the row, k = e/2 − hidden.frac)
        // → fbb_l[n·d_l + o], three cycles after the drain.
        if nfb > 0 {
            let pw = s.acc_w + rs_w + 1;
            let shw = 8u32;
            // weight.frac + rsqrt_frac − hidden.frac >= −1 (Shape checks it); e/2 >= 1 unless
            // S = 0, whose word is 0, so the shift wraps only where the product is 0.
            let sh0 = i64::from(f.weight.frac) + i64::from(f.rsqrt_frac) - i64::from(f.hidden.frac);
            let mut rs_sel = lit(rs_w + he_w, 0);
            for (l, m) in rsm.iter().enumerate() {
                let c = dvalid.clone().land(is_opl(OP_FB, l));
                e.drive(&format!("{}_raddr", m.name), c, n_idx.slice(m.aw() - 1, 0));
                rs_sel = mux(layer.clone().eq_(lit(lw_, l as u64)), m.bank(0), rs_sel);
            }
            let rs = e.m.wire("fb_rs", rs_w + he_w);
            e.m.assign(&rs, rs_sel);
            let word = rs.slice(rs_w + he_w - 1, he_w);
            let half_e = rs.slice(he_w - 1, 0);
            let p = e.m.wire_s("fb_p", pw);
            e.m.assign(
                &p,
                ext(&Sig::new(acc_d2.clone(), s.acc_w, true), pw)
                    * cat([lit(pw - rs_w, 0), word]).signed(),
            );
            let sh = e.m.wire("fb_sh", shw);
            e.m.assign(&sh, cat([lit(shw - he_w, 0), half_e]) + ulit(shw, sh0));
            let sw_ = pw + 1;
            let sum = e.m.wire_s("fb_sum", sw_);
            let half = if f.rounding == crate::fixed::Rounding::HalfUp {
                mux(
                    sh.clone().eq_(lit(shw, 0)),
                    lit(sw_, 0),
                    lit(sw_, 1) << (sh.clone() - lit(shw, 1)),
                )
            } else {
                lit(sw_, 0)
            };
            e.m.assign(&sum, ext(&Sig::new(p, pw, true), sw_) + half.signed());
            let q = e.m.wire_s("fb_q", sw_);
            // A shift of pw or more leaves |p| < 2^(sh−1): half-up gives 0 (the addend above
            // would not fit), truncation −1 for negative p, which the arithmetic shift gives.
            if f.rounding == crate::fixed::Rounding::HalfUp {
                e.m.assign(
                    &q,
                    // (A signed zero: an unsigned arm would make Verilog shift logically.)
                    mux(
                        sh.clone().ge_(lit(shw, u64::from(pw))),
                        lit(sw_, 0).signed(),
                        sum.ashr(&sh),
                    ),
                );
            } else {
                e.m.assign(&q, sum.ashr(sh));
            }
            let y = saturate(&mut e.m, "fb_y", &Sig::new(q, sw_, true), f.delta);
            let fbq = e.q("fb_val_q", f.delta.bits);
            e.seq.push(nb(&fbq, &y.e));
            for (l, m) in fbb.iter().enumerate() {
                let c = dvalid.clone().land(is_opl(OP_FB, l));
                let a = e.w32(
                    &format!("fbb{}_word", l + 1),
                    &n_idx * ix(d[l + 1]) + &o_idx,
                );
                e.consume(&format!("fbb{}_word", l + 1), a.slice(IW - 1, m.aw()));
                let v3 = e.delay(&format!("fbb{}_v", l + 1), c, 1, 3);
                let a3 = e.delay(
                    &format!("fbb{}_a", l + 1),
                    a.slice(m.aw() - 1, 0),
                    m.aw(),
                    3,
                );
                e.drive(&format!("{}_we", m.name), v3.clone(), lit(1, 1));
                e.drive(&format!("{}_waddr", m.name), v3.clone(), a3);
                e.drive(&format!("{}_wdata", m.name), v3, fbq.clone());
            }
        }
        // Sequencing: stream the tiles back to back (ob outer, tb inner), then wait for the
        // drain engine.
        // kg = (r div C)·d_in for the GRAD column-lane reads, advanced where kmod wraps.
        // The last tile of each loop is found by comparison (no division by R or C).
        let mut kgd = ix(0);
        for l in 0..nl {
            kgd = mux(is_opl(OP_GRAD, l), ix(d[l]), kgd);
        }
        let kgstep = e.w32("kg_step", kgd);
        let tb_last = e.m.wire("gemm_tb_last", 1);
        e.m.assign(&tb_last, (&tbc + ix(cc)).ge_(&gn));
        let ob_last = e.m.wire("gemm_ob_last", 1);
        e.m.assign(&ob_last, (&obr + ix(rr)).ge_(&gm));
        // DF-O: k mod R, and (k div R)·d_l for FB l's column reads.
        let diag_gs = if lay.diag_w {
            let mut kgrd = ix(0);
            for l in 0..nfb {
                kgrd = mux(is_opl(OP_FB, l), ix(d[l + 1]), kgrd);
            }
            let kgrstep = e.w32("kgr_step", kgrd);
            vec![if_(
                kmr.clone().eq_(ix(rr - 1)),
                vec![nb(&kmr, ix(0)), nb(&kgr, &kgr + &kgrstep)],
            )
            .else_(vec![nb(&kmr, &kmr + ix(1))])]
        } else {
            vec![]
        };
        let mut gs_body = vec![
            nb(&kk, &kk + ix(1)),
            if_(
                kmod.clone().eq_(ix(cc - 1)),
                vec![nb(&kmod, ix(0)), nb(&kg, &kg + &kgstep)],
            )
            .else_(vec![nb(&kmod, &kmod + ix(1))]),
        ];
        gs_body.extend(diag_gs);
        // The op's tail: wait until the last tile is drained (then S_WAIT covers the
        // write-back).
        sw.push(arm(
            sid("S_GF"),
            vec![if_(
                dr_pending.clone().lnot(),
                vec![nb(&wait, lit(8, 8)), nb(&st, sid("S_WAIT"))],
            )],
        ));
        let next_tile = vec![
            nb(&kk, ix(0)),
            nb(&kmod, ix(0)),
            nb(&kg, ix(0)),
            nb(&kmr, ix(0)),
            nb(&kgr, ix(0)),
            if_(
                tb_last.clone(),
                vec![
                    nb(&tb, ix(0)),
                    if_(
                        ob_last.clone(),
                        vec![nb(&wait, lit(8, 8)), nb(&st, sid("S_WAIT"))],
                    )
                    .else_(vec![nb(&ob, &ob + ix(1)), nb(&st, sid("S_GS"))]),
                ],
            )
            .else_(vec![nb(&tb, &tb + ix(1)), nb(&st, sid("S_GS"))]),
        ];
        // The stream's step loop: tiles back to back, each padded to drain + 1 steps.
        let pad_g = rr.max(cc) + 1;
        let pad_e = rr * cc + 1;
        let pad = e.w32("gemm_pad", mux(is_g.clone(), ix(pad_g), ix(pad_e)));
        let gp = e.w32(
            "gemm_steps",
            mux(gk.clone().lt_(&pad), pad.clone(), gk.clone()),
        );
        let mut g_end = next_tile;
        g_end.push(if_(
            tb_last.clone().land(ob_last.clone()),
            vec![nb(&st, sid("S_GF"))],
        ));
        gs_body.push(if_(kk.clone().eq_(&gp - ix(1)), g_end));
        sw.push(arm(sid("S_GS"), gs_body));
    }

    // ------------------------------------------------------------------ CEN
    // S_CP first writes V[c][o] = b1[o] + U[c][o] (aligned to the accumulator; exact, so
    // z below is the same sum) for every class, one per cycle, into `cv` (bank o mod cl).
    // Then per row r = (sample s, slot): S_CH reads hyp[r] (infer: hyp = slot); S_CS works cl
    // consecutive columns o0 + i per cycle: z = a1[s][o] + V[hyp][o] through ReLU into h_1.
    // Counters in S_CP: jj = o, slot = c, sbase = c·d1, kmod = o mod cl, kg = o div cl; in
    // S_CS: jj = o0, jmod = o0 mod R, kg = o0 div R, kk = o0 div cl, kmod = o0 mod C.
    {
        let bias_sh = f.accumulator.frac - f.bias.frac;
        let cen_sh = f.accumulator.frac - f.centroid.frac;
        let zw = s.acc_w + 3;
        let dl1 = div_ceil(d[1], cl);
        // Prep.
        let prep = in_st("S_CP");
        let ua = e.w32("cen_u", &sbase + &jj);
        e.drive("u_raddr", prep.clone(), ua.slice(u.aw() - 1, 0));
        e.drive("b1_raddr", prep.clone(), jj.slice(bias[0].aw() - 1, 0));
        let vw_ = e.w32("cv_word", &slot * ix(dl1) + &kg);
        e.consume(
            "cen_u",
            cat([ua.slice(IW - 1, u.aw()), vw_.slice(IW - 1, cv.aw())]),
        );
        let pv2 = e.delay("cp_v", prep.clone(), 1, 2);
        let pa2 = e.delay("cp_a", vw_.slice(cv.aw() - 1, 0), cv.aw(), 2);
        let pb2 = e.delay("cp_b", kmod.slice(7, 0), 8, 2);
        if cl == 1 {
            e.consume("cp_b_d", pb2.clone());
        }
        let vsum = e.m.wire_s("cv_sum", cvw);
        let zb = shl_ext(&mut e.m, "cb", bias[0].bank(0), f.bias.bits, bias_sh, cvw);
        let zu = shl_ext(&mut e.m, "cu", u.bank(0), f.centroid.bits, cen_sh, cvw);
        e.m.assign(&vsum, zb + zu);
        e.write_one(&cv, &pv2, &pb2, pa2, vsum.clone());
        sw.push(arm(
            sid("S_CP"),
            vec![
                nb(&jj, &jj + ix(1)),
                nb(&kmod, inc_mod(&kmod, cl)),
                if_(kmod.clone().eq_(ix(cl - 1)), vec![nb(&kg, &kg + ix(1))]),
                if_(
                    jj.clone().eq_(ix(d[1] - 1)),
                    vec![
                        nb(&jj, ix(0)),
                        nb(&kmod, ix(0)),
                        nb(&kg, ix(0)),
                        nb(&slot, &slot + ix(1)),
                        nb(&sbase, &sbase + ix(d[1])),
                        if_(
                            slot.clone().eq_(ix(cls - 1)),
                            vec![
                                nb(&slot, ix(0)),
                                nb(&sbase, ix(0)),
                                nb(&wait, lit(8, 0)),
                                nb(&st, sid("S_CH")),
                            ],
                        ),
                    ],
                ),
            ],
        ));
        // Rows.
        let c_ch = in_st("S_CH").land(wait.clone().eq_(lit(8, 0)));
        e.drive(
            "hyp_raddr",
            c_ch.clone().land(is_op(OP_CEN)),
            row.slice(hyp.aw() - 1, 0),
        );
        let issue = in_st("S_CS");
        // a1: every bank at word s·⌈d1/R⌉ + o0 div R; lane i = bank (o0 mod R) + i.
        let a1a = e.w32("cen_a1", &samp * ix(div_ceil(d[1], rr)) + &kg);
        e.drive(
            "a1_raddr",
            issue.clone(),
            repl(int(rr as u64), [a1a.slice(a1.aw() - 1, 0)]),
        );
        // V: every bank at word hyp·⌈d1/cl⌉ + o0 div cl; lane i = bank i.
        let va = e.w32(
            "cen_v",
            cat([lit(IW - cbits, 0), hypq.clone()]) * ix(dl1) + &kk,
        );
        e.drive(
            "cv_raddr",
            issue.clone(),
            repl(int(cl as u64), [va.slice(cv.aw() - 1, 0)]),
        );
        let v2 = e.delay("cz_v", issue.clone(), 1, 2);
        let am2 = e.delay("cz_am", jmod.slice(7, 0), 8, 2);
        if cl == rr {
            // (Every lane's column is in bank i: o0 is a multiple of R.)
            e.consume("cz_am_d", am2.clone());
        }
        let o2 = e.delay("cz_o", jj.slice(15, 0), 16, 2);
        let mut zs = Vec::new();
        let mut zv = Vec::new();
        for i in 0..cl {
            let mut a = a1.bank(i % rr);
            for m0 in (cl..rr).step_by(cl) {
                a = mux(am2.clone().eq_(lit(8, m0 as u64)), a1.bank(m0 + i), a);
            }
            let aw_ = e.m.wire(&format!("cz{i}_a1"), s.acc_w);
            e.m.assign(&aw_, a);
            let z = e.m.wire_s(&format!("cz{i}"), zw);
            e.m.assign(
                &z,
                ext(&Sig::new(aw_, s.acc_w, true), zw) + ext(&Sig::new(cv.bank(i), cvw, true), zw),
            );
            let zc = saturate(
                &mut e.m,
                &format!("cz{i}_c"),
                &Sig::new(z, zw, true),
                f.accumulator,
            );
            zs.push(zc.e.clone());
            let lv = e.m.wire(&format!("cz{i}_v"), 1);
            e.m.assign(
                &lv,
                v2.clone()
                    .land((cat([lit(16, 0), o2.clone()]) + ix(i)).lt_(ix(d[1]))),
            );
            zv.push(lv);
        }
        e.drive(
            "relu_z",
            v2.clone(),
            cat(zs.into_iter().rev().collect::<Vec<_>>()),
        );
        e.drive(
            "relu_v",
            v2.clone(),
            cat(zv.iter().rev().cloned().collect::<Vec<_>>()),
        );
        // h_1 row r, column o: bank (r + o) mod C, word (r div C)·d1 + o; lane i writes
        // bank (r + o0 + i) mod C, four cycles after the read.
        let hw = e.w32("cen_h", &rgb + &jj);
        let hb0 = e.w32("cen_hbank", add_mod(&rmod, &kmod, cc, IW));
        let haw = h[0].aw();
        let ha4 = e.delay("ch_a", hw.slice(haw - 1, 0), haw, 4);
        let hb4 = e.delay("ch_b", hb0.slice(7, 0), 8, 4);
        let lv4: Vec<Expr> = zv
            .iter()
            .enumerate()
            .map(|(i, v)| e.delay(&format!("ch_v{i}"), v.clone(), 1, 2))
            .collect();
        e.consume("cen_h", cat([hw.slice(IW - 1, haw), hb0.slice(IW - 1, 8)]));
        let mut we = Vec::new();
        let mut wa = Vec::new();
        let mut wd = Vec::new();
        for b in (0..cc).rev() {
            // Lane (b − hb4) mod C.
            let mut v = lit(1, 0);
            let mut a = lit(haw, 0);
            let mut dd = lit(hb_, 0);
            for i in 0..cl {
                let hit = hb4.clone().eq_(lit(8, ((b + cc - i % cc) % cc) as u64));
                v = mux(hit.clone(), lv4[i].clone(), v);
                a = mux(hit.clone(), ha4.clone() + lit(haw, i as u64), a);
                dd = mux(
                    hit,
                    relu_h.part(int((i as u64) * u64::from(hb_)), int(u64::from(hb_))),
                    dd,
                );
            }
            let aw_ = e.m.wire(&format!("ch_wa{b}"), haw);
            e.m.assign(&aw_, a);
            we.push(v);
            wa.push(aw_);
            wd.push(dd);
        }
        let any = lv4
            .iter()
            .skip(1)
            .fold(lv4[0].clone(), |x, y| x.lor(y.clone()));
        e.drive("h1_we", any.clone(), cat(we));
        e.drive("h1_waddr", any.clone(), cat(wa));
        e.drive("h1_wdata", any, cat(wd));
        let un = e.m.wire("unused_cen", 1);
        e.m.assign(
            &un,
            cat([a1a.slice(IW - 1, a1.aw()), va.slice(IW - 1, cv.aw())]).red_xor(),
        );
        let kpr = e.w32("cen_k", mux(&mode, ix(cls), ix(kh)));
        sw.push(arm(
            sid("S_CH"),
            vec![
                // wait_q counts the hyp read latency (issued when it is 0).
                nb(&wait, &wait + lit(8, 1)),
                if_(
                    wait.clone().eq_(lit(8, 2)),
                    vec![
                        nb(&hypq, mux(&mode, slot.slice(cbits - 1, 0), hyp.bank(0))),
                        nb(&wait, lit(8, 0)),
                        nb(&st, sid("S_CS")),
                    ],
                ),
            ],
        ));
        sw.push(arm(
            sid("S_CS"),
            vec![
                nb(&jj, &jj + ix(cl)),
                nb(&kk, &kk + ix(1)),
                nb(&kmod, add_mod(&kmod, &ix(cl % cc), cc, IW)),
                if_(
                    jmod.clone().eq_(ix(rr - cl)),
                    vec![nb(&jmod, ix(0)), nb(&kg, &kg + ix(1))],
                )
                .else_(vec![nb(&jmod, &jmod + ix(cl))]),
                if_(
                    (&jj + ix(cl)).ge_(ix(d[1])),
                    vec![
                        nb(&jj, ix(0)),
                        nb(&kk, ix(0)),
                        nb(&kmod, ix(0)),
                        nb(&jmod, ix(0)),
                        nb(&kg, ix(0)),
                        nb(&row, &row + ix(1)),
                        if_(
                            rmod.clone().eq_(ix(cc - 1)),
                            vec![nb(&rmod, ix(0)), nb(&rgb, &rgb + ix(d[1]))],
                        )
                        .else_(vec![nb(&rmod, &rmod + ix(1))]),
                        if_(
                            slot.clone().eq_(&kpr - ix(1)),
                            vec![nb(&slot, ix(0)), nb(&samp, &samp + ix(1))],
                        )
                        .else_(vec![nb(&slot, &slot + ix(1))]),
                        if_(
                            row.clone().eq_(&nrows - ix(1)),
                            vec![nb(&wait, lit(8, 8)), nb(&st, sid("S_WAIT"))],
                        )
                        .else_(vec![nb(&st, sid("S_CH"))]),
                    ],
                ),
            ],
        ));
    }

    // ------------------------------------------------------------------ PRED (infer)
    // Scores Σ_{l∈S} G_l per class; the first maximum wins (as the golden model's argmax).
    {
        let issue = in_st("S_PRED").land(row.clone().lt_(ix(cls)));
        for l in 0..nl {
            e.drive(
                &format!("{}_raddr", g[l].name),
                issue.clone(),
                row.slice(g[l].aw() - 1, 0),
            );
        }
        let scw = f.goodness.bits + bitlen(nl as u128);
        let mut sc = lit(scw, 0);
        for l in cfg.eval_layer_indices() {
            sc = sc + cat([lit(scw - f.goodness.bits, 0), g[l].bank(0)]);
        }
        let score = e.m.wire("pred_score", scw);
        e.m.assign(&score, sc);
        let v2 = e.delay("pr_v", issue.clone(), 1, 2);
        let r2 = e.delay("pr_r", row.slice(7, 0), 8, 2);
        let best = e.q("best_q", scw);
        e.seq.push(if_(
            v2.clone()
                .land(r2.clone().eq_(lit(8, 0)).lor(score.clone().gt_(&best))),
            vec![nb(&best, &score), nb(&result, &r2)],
        ));
        sw.push(arm(
            sid("S_PRED"),
            vec![
                nb(&row, &row + ix(1)),
                if_(row.clone().eq_(ix(cls + 3)), vec![nb(&st, sid("S_NEXT"))]),
            ],
        ));
    }

    // ------------------------------------------------------------------ LOSS
    // Per sample: read the K slots' G̃ (collaboration adds, saturating), run the loss unit,
    // write β. N-pair: gather into gt_q, start, wait, write K betas. Hinge: stream.
    {
        let issue = in_st("S_LG").land(slot.clone().lt_(ix(kh)));
        let ga = e.w32("loss_row", &sbase + &slot);
        for l in 0..nl {
            e.drive(
                &format!("{}_raddr", g[l].name),
                issue.clone(),
                ga.slice(g[l].aw() - 1, 0),
            );
        }
        let gaw = g[0].aw().min(beta[0].aw());
        e.consume("loss_row", ga.slice(IW - 1, gaw));
        // G̃ of the op's layer from the G of every layer (two cycles after the read).
        let gmax = f.goodness.max() as u64;
        let mut gt_sel = lit(gw, 0);
        for l in 0..nl {
            let mut acc = cat([lit(1, 0), g[l].bank(0)]);
            let mut name_i = 0;
            for t in 0..nl {
                let inc = match cfg.algorithm.collaboration {
                    Collaboration::None => false,
                    Collaboration::Previous => t < l,
                    Collaboration::All => t != l,
                };
                if inc {
                    let wv = e.m.wire(&format!("gt{}_sum{name_i}", l + 1), gw + 1);
                    e.m.assign(&wv, acc + cat([lit(1, 0), g[t].bank(0)]));
                    let sat = e.m.wire(&format!("gt{}_sat{name_i}", l + 1), gw + 1);
                    e.m.assign(
                        &sat,
                        mux(wv.clone().gt_(lit(gw + 1, gmax)), lit(gw + 1, gmax), wv),
                    );
                    acc = sat;
                    name_i += 1;
                }
            }
            let gl = e.m.wire(&format!("gt{}", l + 1), gw + 1);
            e.m.assign(&gl, acc);
            gt_sel = mux(
                layer.clone().eq_(lit(lw_, l as u64)),
                gl.slice(gw - 1, 0),
                gt_sel,
            );
            let un = e.m.wire(&format!("unused_gt{}", l + 1), 1);
            e.m.assign(&un, gl.idx(gw));
        }
        let gtw = e.m.wire("gt_cur", gw);
        e.m.assign(&gtw, gt_sel);
        let v2 = e.delay("lg_v", issue.clone(), 1, 2);
        let s2 = e.delay("lg_slot", slot.slice(7, 0), 8, 2);
        let bsel: Vec<Expr> = (0..nl).map(|l| is_opl(OP_LOSS, l)).collect();
        let kpr = kh;
        // After a sample's β are written: the next sample, or the op's end.
        let next_sample = vec![
            nb(&slot, ix(0)),
            nb(&samp, &samp + ix(1)),
            nb(&sbase, &sbase + ix(kpr)),
            if_(
                samp.clone().eq_(&nsamp - ix(1)),
                vec![nb(&wait, lit(8, 4)), nb(&st, sid("S_WAIT"))],
            )
            .else_(vec![nb(&st, sid("S_LG"))]),
        ];
        // Hard negatives: after the gather, n rounds over slots 1..K-1 each mark the highest
        // unmarked G̃ (the first of equals: ties to the lower slot, as the golden model).
        // (Used only where scores are gathered first: N-pair, or hard negatives.)
        let to_select = if !(npair || hard) {
            vec![]
        } else {
            vec![
                nb(&slot, ix(0)),
                nb(&jj, ix(1)),
                nb(&ii, ix(0)),
                nb(&act_q, lit(cls as u32, 0)),
                nb(&st, sid(if hard { "S_LSEL" } else { "S_LS" })),
            ]
        };
        if hard {
            let bestv = e.q("sel_best_q", gw);
            let besti = e.q("sel_idx_q", 8);
            let bval = e.q("sel_valid_q", 1);
            let j8 = jj.slice(7, 0);
            let mut cand = lit(gw, 0);
            let mut taken = lit(1, 0);
            for j in 1..cls {
                let hit = j8.clone().eq_(lit(8, j as u64));
                cand = mux(
                    hit.clone(),
                    gt_q.part(int((j as u64) * u64::from(gw)), int(u64::from(gw))),
                    cand,
                );
                taken = taken.lor(hit.land(act_q.idx(int(j as u64))));
            }
            let candw = e.m.wire("sel_cand", gw);
            e.m.assign(&candw, cand);
            let better = e.m.wire("sel_better", 1);
            e.m.assign(
                &better,
                taken
                    .lnot()
                    .land(bval.clone().lnot().lor(candw.clone().gt_(&bestv))),
            );
            let win = e.m.wire("sel_win", 8);
            e.m.assign(&win, mux(&better, j8.clone(), besti.clone()));
            let mark: Vec<Stmt> = (1..cls)
                .map(|j| {
                    if_(
                        win.clone().eq_(lit(8, j as u64)),
                        vec![nb(act_q.idx(int(j as u64)), lit(1, 1))],
                    )
                })
                .collect();
            let mut end_round = mark;
            end_round.push(nb(&bval, lit(1, 0)));
            end_round.push(nb(&jj, ix(1)));
            end_round.push(nb(&ii, &ii + ix(1)));
            end_round.push(if_(
                ii.clone().eq_(ix(cfg.algorithm.negatives_count - 1)),
                vec![
                    nb(&slot, ix(0)),
                    nb(&st, sid(if npair { "S_LS" } else { "S_LH" })),
                ],
            ));
            sw.push(arm(
                sid("S_LSEL"),
                vec![
                    if_(
                        &better,
                        vec![
                            nb(&bestv, &candw),
                            nb(&besti, j8.clone()),
                            nb(&bval, lit(1, 1)),
                        ],
                    ),
                    if_(jj.clone().eq_(ix(kpr - 1)), end_round).else_(vec![nb(&jj, &jj + ix(1))]),
                ],
            ));
        } else {
            e.consume("act_q", act_q.clone());
        }
        if npair || hard {
            // Gather: gt_q slot s2 ← G̃.
            let mut upd = Vec::new();
            for j in 0..cls {
                upd.push(if_(
                    v2.clone().land(s2.clone().eq_(lit(8, j as u64))),
                    vec![nb(
                        gt_q.part(int((j as u64) * u64::from(gw)), int(u64::from(gw))),
                        &gtw,
                    )],
                ));
            }
            e.seq.extend(upd);
        }
        if npair {
            e.drive("ls_start", in_st("S_LS"), lit(1, 1));
            // Write β slot by slot from b_o (held until the next start).
            let wb = in_st("S_LB");
            let mut bv = lit(bw, 0);
            for j in 0..cls {
                bv = mux(
                    slot.clone().eq_(ix(j)),
                    ls_b.part(int((j as u64) * u64::from(bw)), int(u64::from(bw))),
                    bv,
                );
            }
            let bval = e.m.wire("loss_beta", bw);
            e.m.assign(&bval, bv);
            for l in 0..nl {
                let c = wb.clone().land(bsel[l].clone());
                e.drive(&format!("{}_we", beta[l].name), c.clone(), lit(1, 1));
                e.drive(
                    &format!("{}_waddr", beta[l].name),
                    c.clone(),
                    ga.slice(beta[l].aw() - 1, 0),
                );
                e.drive(&format!("{}_wdata", beta[l].name), c, bval.clone());
            }
            sw.push(arm(
                sid("S_LG"),
                vec![
                    nb(&slot, &slot + ix(1)),
                    if_(slot.clone().eq_(ix(kpr + 2)), to_select.clone()),
                ],
            ));
            sw.push(arm(sid("S_LS"), vec![nb(&st, sid("S_LW"))]));
            sw.push(arm(
                sid("S_LW"),
                vec![if_(&ls_done, vec![nb(&st, sid("S_LB"))])],
            ));
            sw.push(arm(
                sid("S_LB"),
                vec![
                    nb(&slot, &slot + ix(1)),
                    if_(slot.clone().eq_(ix(kpr - 1)), next_sample.clone()),
                ],
            ));
        } else {
            // Hinge. With hard negatives it streams the gathered G̃ after the selection (data
            // in the issue cycle); otherwise straight from the G memories (two cycles later).
            // Slot 0 loads G̃(y), slots 1.. give β_k one cycle later, β_y follows the last.
            let (on, s8, g, act, lag) = if hard {
                let on = in_st("S_LH").land(slot.clone().lt_(ix(kpr)));
                let s8 = slot.slice(7, 0);
                let mut g = lit(gw, 0);
                let mut a = lit(1, 0);
                for j in 0..cls {
                    let hit = s8.clone().eq_(lit(8, j as u64));
                    g = mux(
                        hit.clone(),
                        gt_q.part(int((j as u64) * u64::from(gw)), int(u64::from(gw))),
                        g,
                    );
                    a = a.lor(hit.land(act_q.idx(int(j as u64))));
                }
                let gs = e.m.wire("lh_g", gw);
                e.m.assign(&gs, g);
                (on, s8, gs, a, 0)
            } else {
                (v2.clone(), s2.clone(), gtw.clone(), lit(1, 1), 2)
            };
            e.drive("hg_gy", on.clone(), g.clone());
            e.drive(
                "hg_yv",
                on.clone().land(s8.clone().eq_(lit(8, 0))),
                lit(1, 1),
            );
            e.drive("hg_g", on.clone(), g);
            e.drive(
                "hg_gv",
                on.clone().land(s8.clone().ne_(lit(8, 0))),
                lit(1, 1),
            );
            e.drive("hg_act", on.clone(), act);
            e.drive(
                "hg_last",
                on.land(s8.eq_(lit(8, (kpr - 1) as u64))),
                lit(1, 1),
            );
            let a1 = e.delay("lh_a", ga.slice(15, 0), 16, lag + 1);
            let base2 = e.delay("lh_base", sbase.slice(15, 0), 16, lag + 2);
            for l in 0..nl {
                let c = hg_bv.clone().lor(hg_byv.clone()).land(bsel[l].clone());
                e.drive(&format!("{}_we", beta[l].name), c.clone(), lit(1, 1));
                e.drive(
                    &format!("{}_waddr", beta[l].name),
                    c.clone(),
                    mux(
                        &hg_byv,
                        base2.slice(beta[l].aw() - 1, 0),
                        a1.slice(beta[l].aw() - 1, 0),
                    ),
                );
                e.drive(&format!("{}_wdata", beta[l].name), c, hg_b.clone());
            }
            e.consume("lh", cat([a1.clone(), base2.clone()]));
            if hard {
                sw.push(arm(
                    sid("S_LG"),
                    vec![
                        nb(&slot, &slot + ix(1)),
                        if_(slot.clone().eq_(ix(kpr + 2)), to_select.clone()),
                    ],
                ));
                sw.push(arm(
                    sid("S_LH"),
                    vec![
                        nb(&slot, &slot + ix(1)),
                        if_(slot.clone().eq_(ix(kpr + 2)), next_sample.clone()),
                    ],
                ));
            } else {
                sw.push(arm(
                    sid("S_LG"),
                    vec![
                        nb(&slot, &slot + ix(1)),
                        if_(slot.clone().eq_(ix(kpr + 4)), next_sample.clone()),
                    ],
                ));
            }
            e.consume("npair_ports", cat([ls_b.clone(), ls_done.clone()]));
        }
    }

    // ------------------------------------------------------------------ DELTA
    // Per row: S_DP reads β (and hyp for layer 1); S_DS streams h: δ = requant(β·(2/d)·h),
    // `dlanes` columns per cycle: the largest divisor of R up to C (so one δ_l word and one
    // e word take them; h's diagonal banks serve up to C), one lane under DF-R/DF-O with more
    // than one layer (their feedback buffer and local-δ copy are written one element at a
    // time).
    let dlanes = delta_lanes(lay);
    {
        let c_dp = in_st("S_DP").land(wait.clone().eq_(lit(8, 0)));
        for l in 0..nl {
            e.drive(
                &format!("{}_raddr", beta[l].name),
                c_dp.clone().land(is_opl(OP_DELTA, l)),
                row.slice(beta[l].aw() - 1, 0),
            );
        }
        e.drive(
            "hyp_raddr",
            c_dp.clone().land(is_op(OP_DELTA)),
            row.slice(hyp.aw() - 1, 0),
        );
        let mut bsel = lit(bw, 0);
        for l in 0..nl {
            bsel = mux(layer.clone().eq_(lit(lw_, l as u64)), beta[l].bank(0), bsel);
        }
        let betaq = e.q("beta_q", bw);
        let tw = super::super::two_over_d_width(units);
        let mut tsel = lit(tw, 0);
        for l in 0..nl {
            tsel = mux(
                layer.clone().eq_(lit(lw_, l as u64)),
                lit(tw, units.two_over_d[l] as u64),
                tsel,
            );
        }
        let twod = e.m.wire("two_over_d", tw);
        e.m.assign(&twod, tsel);
        let cw_ = bw + tw;
        let cq = e.q("coef_q", cw_);
        let cprod = e.m.wire_s("coef", cw_);
        e.m.assign(
            &cprod,
            ext(&Sig::new(betaq.clone(), bw, true), cw_) * cat([lit(bw, 0), twod.clone()]).signed(),
        );
        let dsel = {
            let mut x = ix(0);
            for l in 0..nl {
                x = mux(layer.clone().eq_(lit(lw_, l as u64)), ix(d[l + 1]), x);
            }
            e.w32("dl_d", x)
        };
        let issue = in_st("S_DS");
        // DELTA works `dlanes` consecutive columns k0 + i of one row per cycle. h_l row r,
        // column k: bank (r + k) mod C, word (r div C)·d + k; bank b serves lane
        // (b − (r + k0)) mod C (kmod = k0 mod C).
        let ha = e.w32("dl_h", &rgb + &jj);
        let dl_hbank = e.w32("dl_hbank", add_mod(&rmod, &kmod, cc, IW));
        let hb_words: Vec<Expr> = (0..cc)
            .map(|b| {
                let lane = mux(
                    ix(b).ge_(&dl_hbank),
                    ix(b) - &dl_hbank,
                    ix(b + cc) - &dl_hbank,
                );
                e.w32(&format!("dl_h{b}"), &ha + lane)
            })
            .collect();
        e.consume(
            "dl_hw",
            cat(hb_words
                .iter()
                .map(|w| w.slice(IW - 1, 16))
                .collect::<Vec<_>>()),
        );
        for l in 0..nl {
            let all: Vec<Expr> = (0..cc)
                .rev()
                .map(|b| hb_words[b].slice(h[l].aw() - 1, 0))
                .collect();
            e.drive(
                &format!("{}_raddr", h[l].name),
                issue.clone().land(is_opl(OP_DELTA, l)),
                cat(all),
            );
        }
        let un = e.m.wire("unused_dl_h", 1);
        e.m.assign(&un, ha.slice(IW - 1, 16).red_xor());
        let hbk = e.delay("dl_hb", dl_hbank.slice(7, 0), 8, 2);
        if cc == 1 {
            e.consume("dl_hb_d", hbk.clone());
        }
        let pw = cw_ + f.hidden.bits + 1;
        let from = f.beta.frac + f.hidden.frac + f.const_frac;
        let mut hvs = Vec::new();
        let mut dqs = Vec::new();
        for i in 0..dlanes {
            let mut hsel = lit(f.hidden.bits, 0);
            for l in 0..nl {
                let v = pick(&hbk, cc, |b| h[l].bank((b + i) % cc));
                hsel = mux(layer.clone().eq_(lit(lw_, l as u64)), v, hsel);
            }
            let sfx = if i == 0 {
                String::new()
            } else {
                format!("{i}")
            };
            let hv = e.m.wire(&format!("dl_hv{sfx}"), f.hidden.bits);
            e.m.assign(&hv, hsel);
            let p = e.m.wire_s(&format!("dl_p{sfx}"), pw);
            e.m.assign(
                &p,
                ext(&Sig::new(cq.clone(), cw_, true), pw)
                    * cat([lit(cw_ + 1, 0), hv.clone()]).signed(),
            );
            let dq = requant(
                &mut e.m,
                &format!("dl{sfx}"),
                &Sig::new(p, pw, true),
                from,
                f.delta,
                f.rounding,
                None,
            );
            hvs.push(hv);
            dqs.push(dq);
        }
        let hv = hvs[0].clone();
        let dq = dqs[0].clone();
        // Lanes 1.. of δ (lane 0 is `delta_q`, which DF-R/DF-O's feedback may change).
        let dvals: Vec<Expr> = (1..dlanes)
            .map(|i| {
                let r = e.q(&format!("delta{i}_q"), f.delta.bits);
                e.seq.push(nb(&r, &dqs[i].e));
                r
            })
            .collect();
        let dval = e.q("delta_q", f.delta.bits);
        // DF-R: δ_l = sat(local + [h > 0]·fb) for l < L−1; the local value is kept for FB l−1.
        let dloc = if nfb > 0 {
            // fbb_l is one bank, row-major: word r·d + k.
            let fa = e.w32("dl_fbb", &sbase + &jj);
            e.consume("dl_fbb", fa.slice(IW - 1, 16));
            for (l, m) in fbb.iter().enumerate() {
                e.drive(
                    &format!("{}_raddr", m.name),
                    issue.clone().land(is_opl(OP_DELTA, l)),
                    fa.slice(m.aw() - 1, 0),
                );
            }
            let mut fsel = lit(f.delta.bits, 0);
            for (l, m) in fbb.iter().enumerate() {
                fsel = mux(layer.clone().eq_(lit(lw_, l as u64)), m.bank(0), fsel);
            }
            let has_fb = layer.clone().lt_(lit(lw_, nfb as u64));
            let fbv = e.m.wire_s("dl_fb", f.delta.bits);
            e.m.assign(
                &fbv,
                mux(
                    has_fb.land(hv.clone().ne_(lit(f.hidden.bits, 0))),
                    fsel,
                    lit(f.delta.bits, 0),
                ),
            );
            let tw_ = f.delta.bits + 1;
            let tot = e.m.wire_s("dl_tot", tw_);
            let fb_ext = ext(&Sig::new(fbv, f.delta.bits, true), tw_);
            e.m.assign(
                &tot,
                if fb_sub {
                    ext(&dq, tw_) - fb_ext
                } else {
                    ext(&dq, tw_) + fb_ext
                },
            );
            let fin = saturate(&mut e.m, "dl_fin", &Sig::new(tot, tw_, true), f.delta);
            e.seq.push(nb(&dval, &fin.e));
            let dl_ = e.q("delta_local_q", f.delta.bits);
            e.seq.push(nb(&dl_, &dq.e));
            Some(dl_)
        } else {
            e.seq.push(nb(&dval, &dq.e));
            None
        };
        let v3 = e.delay("ds_v", issue.clone(), 1, 3);
        let j3 = e.delay("ds_j", jj.slice(15, 0), 16, 3);
        let jm3 = e.delay("ds_jm", jmod.slice(7, 0), 8, 3);
        let jd3 = e.delay("ds_jd", kg.slice(15, 0), 16, 3);
        let r3 = e.delay("ds_r", row.slice(15, 0), 16, 3);
        let s3 = e.delay("ds_s", samp.slice(15, 0), 16, 3);
        let k3 = e.delay("ds_k", slot.slice(7, 0), 8, 3);
        let un = e.m.wire("unused_ds", 1);
        e.m.assign(
            &un,
            cat([
                j3.clone(),
                jm3.clone(),
                jd3.clone(),
                r3.clone(),
                s3.clone(),
                k3.clone(),
            ])
            .red_xor(),
        );
        let dsx = |x: &Expr, wdt: u32| ext(&Sig::new(x.clone(), f.delta.bits, true), wdt);
        // δ of each lane (three cycles after the read) and whether its column k0 + i < d.
        let lane_d: Vec<Expr> = std::iter::once(dval.clone())
            .chain(dvals.iter().cloned())
            .collect();
        let lv3: Vec<Expr> = (0..dlanes)
            .map(|i| {
                let v = e.m.wire(&format!("ds_lane{i}"), 1);
                e.m.assign(&v, (cat([lit(16, 0), j3.clone()]) + ix(i)).lt_(&dsel));
                v
            })
            .collect();
        // The local δ copies' bank (row mod C) and word base ((row div C)·d), aligned with the
        // δ value (shared by the layers; each memory takes the low bits it needs).
        let dc_aw = dc.iter().flatten().map(Mem::aw).max();
        let dc_pos = dc_aw.map(|aw| {
            e.consume("dc_rgb", rgb.slice(IW - 1, aw));
            (
                e.delay("dc_bank", rmod.slice(7, 0), 8, 3),
                e.delay("dc_rgb", rgb.slice(aw - 1, 0), aw, 3),
                aw,
            )
        });
        for l in 0..nl {
            let c = v3.clone().land(is_opl(OP_DELTA, l));
            if let Some(dm) = &dl[l] {
                // δ_l column k: bank k mod R, word r·⌈d/R⌉ + k div R; the lanes' columns
                // k0 + i share the word (dlanes divides R) and fill banks jm3 + i.
                let wa = e.w32(
                    &format!("dl{}_word", l + 1),
                    cat([lit(16, 0), r3.clone()]) * ix(dr[l]) + cat([lit(16, 0), jd3.clone()]),
                );
                let we: Vec<Expr> = (0..rr)
                    .rev()
                    .map(|b| {
                        let mut v = lit(1, 0);
                        for i in 0..dlanes.min(b + 1) {
                            v = mux(jm3.clone().eq_(lit(8, (b - i) as u64)), lv3[i].clone(), v);
                        }
                        v
                    })
                    .collect();
                let wd: Vec<Expr> = (0..rr)
                    .rev()
                    .map(|b| {
                        let mut v = lane_d[0].clone();
                        for i in 1..dlanes.min(b + 1) {
                            v = mux(
                                jm3.clone().eq_(lit(8, (b - i) as u64)),
                                lane_d[i].clone(),
                                v,
                            );
                        }
                        v
                    })
                    .collect();
                e.drive(
                    &format!("{}_we", dm.name),
                    c.clone(),
                    mux(c.clone(), cat(we), lit(rr as u32, 0)),
                );
                e.drive(
                    &format!("{}_waddr", dm.name),
                    c.clone(),
                    wa.slice(dm.aw() - 1, 0),
                );
                e.drive(&format!("{}_wdata", dm.name), c.clone(), cat(wd));
                let un = e.m.wire(&format!("unused_dl{}_word", l + 1), 1);
                e.m.assign(&un, wa.slice(IW - 1, dm.aw()).red_xor());
            }
            if let (Some(dm), Some(dloc), Some((rm3, rg3, aw))) = (&dc[l], &dloc, &dc_pos) {
                // Local δ_l copy: bank r mod C, word (r div C)·d + j.
                let wa = e.w32(
                    &format!("dc{}_word", l + 1),
                    cat([lit(IW - aw, 0), rg3.clone()]) + cat([lit(16, 0), j3.clone()]),
                );
                e.consume(&format!("dc{}_word", l + 1), wa.slice(IW - 1, dm.aw()));
                let oh: Vec<Expr> = (0..cc)
                    .rev()
                    .map(|b| rm3.clone().eq_(lit(8, b as u64)))
                    .collect();
                e.drive(
                    &format!("{}_we", dm.name),
                    c.clone(),
                    mux(c.clone(), cat(oh), lit(cc as u32, 0)),
                );
                e.drive(
                    &format!("{}_waddr", dm.name),
                    c.clone(),
                    wa.slice(dm.aw() - 1, 0),
                );
                e.drive(&format!("{}_wdata", dm.name), c.clone(), dloc.clone());
            }
            // Δb_l[k0 + i] (first row assigns).
            let dbm = &db[l];
            let ab = abits(d[l + 1]);
            for i in 0..dlanes {
                let sfx = if i == 0 {
                    String::new()
                } else {
                    format!("_{i}")
                };
                let jw = e.w32(
                    &format!("db{}_k{i}", l + 1),
                    cat([lit(16, 0), j3.clone()]) + ix(i),
                );
                e.consume(&format!("db{}_k{i}", l + 1), jw.slice(IW - 1, ab));
                let jdx = jw.slice(ab - 1, 0);
                let sum = e.m.wire_s(&format!("db{}_sum{sfx}", l + 1), dbw);
                e.m.assign(
                    &sum,
                    mux(
                        r3.clone().eq_(lit(16, 0)),
                        dsx(&lane_d[i], dbw),
                        dbm.idx(jdx.clone()).signed() + dsx(&lane_d[i], dbw),
                    ),
                );
                e.seq.push(if_(
                    c.clone().land(lv3[i].clone()),
                    vec![nb(dbm.idx(jdx), &sum)],
                ));
            }
        }
        // Layer 1: e[s][j] (first slot assigns) and ΔU[hyp][j].
        {
            let c = v3.clone().land(is_opl(OP_DELTA, 0));
            let ewa = e.w32(
                "e_word_w",
                cat([lit(16, 0), s3.clone()]) * ix(dr[0]) + cat([lit(16, 0), jd3.clone()]),
            );
            let eab = abits(bsz * dr[0]);
            let un = e.m.wire("unused_e_word_w", 1);
            e.m.assign(&un, ewa.slice(IW - 1, eab).red_xor());
            let old = e.m.wire("e_old", ew * rr as u32);
            e.m.assign(&old, e_mem.idx(ewa.slice(eab - 1, 0)));
            // e lane p (column k0 − jm3 + p) takes δ lane p − jm3 when that lane is in use.
            let lanes: Vec<Expr> = (0..rr)
                .rev()
                .map(|p| {
                    let o = old.part(int((p as u64) * u64::from(ew)), int(u64::from(ew)));
                    let mut v = o.clone();
                    for i in 0..dlanes.min(p + 1) {
                        v = mux(
                            jm3.clone().eq_(lit(8, (p - i) as u64)).land(lv3[i].clone()),
                            mux(
                                k3.clone().eq_(lit(8, 0)),
                                dsx(&lane_d[i], ew),
                                o.clone().signed() + dsx(&lane_d[i], ew),
                            ),
                            v,
                        );
                    }
                    v
                })
                .collect();
            let neww = e.m.wire("e_new", ew * rr as u32);
            e.m.assign(&neww, cat(lanes));
            e.seq.push(if_(
                c.clone(),
                vec![nb(e_mem.idx(ewa.slice(eab - 1, 0)), &neww)],
            ));
            let hyp3 = e.delay("ds_hyp", hypq.clone(), cbits, 3);
            let ua = e.w32(
                "du_w",
                cat([lit(IW - cbits, 0), hyp3]) * ix(d[1]) + cat([lit(16, 0), j3.clone()]),
            );
            let uab = abits(cls * d[1]);
            let un = e.m.wire("unused_du_w", 1);
            e.m.assign(&un, ua.slice(IW - 1, uab).red_xor());
            for i in 0..dlanes {
                let sfx = if i == 0 {
                    String::new()
                } else {
                    format!("_{i}")
                };
                let uw = e.w32(&format!("du_w{i}"), &ua + ix(i));
                e.consume(&format!("du_w{i}"), uw.slice(IW - 1, uab));
                let idx = uw.slice(uab - 1, 0);
                let usum = e.m.wire_s(&format!("du_sum{sfx}"), dbw);
                e.m.assign(&usum, du.idx(idx.clone()).signed() + dsx(&lane_d[i], dbw));
                e.seq.push(if_(
                    c.clone().land(lv3[i].clone()),
                    vec![nb(du.idx(idx), &usum)],
                ));
            }
        }
        sw.push(arm(
            sid("S_DP"),
            vec![
                nb(&wait, &wait + lit(8, 1)),
                if_(
                    wait.clone().eq_(lit(8, 2)),
                    vec![nb(&betaq, &bsel), nb(&hypq, hyp.bank(0))],
                ),
                if_(
                    wait.clone().eq_(lit(8, 3)),
                    vec![nb(&cq, &cprod), nb(&wait, lit(8, 0)), nb(&st, sid("S_DS"))],
                ),
            ],
        ));
        sw.push(arm(
            sid("S_DS"),
            vec![
                nb(&jj, &jj + ix(dlanes)),
                nb(&kmod, add_mod(&kmod, &ix(dlanes % cc), cc, IW)),
                if_(
                    jmod.clone().eq_(ix(rr - dlanes)),
                    vec![nb(&jmod, ix(0)), nb(&kg, &kg + ix(1))],
                )
                .else_(vec![nb(&jmod, &jmod + ix(dlanes))]),
                if_(
                    (&jj + ix(dlanes)).ge_(&dsel),
                    vec![
                        nb(&jj, ix(0)),
                        nb(&jmod, ix(0)),
                        nb(&kmod, ix(0)),
                        nb(&kg, ix(0)),
                        nb(&row, &row + ix(1)),
                        nb(&sbase, &sbase + &dsel),
                        // (row mod C, (row div C)·d) for the local δ copy's bank and word.
                        if_(
                            rmod.clone().eq_(ix(cc - 1)),
                            vec![nb(&rmod, ix(0)), nb(&rgb, &rgb + &dsel)],
                        )
                        .else_(vec![nb(&rmod, &rmod + ix(1))]),
                        if_(
                            slot.clone().eq_(ix(kh - 1)),
                            vec![nb(&slot, ix(0)), nb(&samp, &samp + ix(1))],
                        )
                        .else_(vec![nb(&slot, &slot + ix(1))]),
                        if_(
                            row.clone().eq_(&nrows - ix(1)),
                            vec![nb(&wait, lit(8, 6)), nb(&st, sid("S_WAIT"))],
                        )
                        .else_(vec![nb(&st, sid("S_DP"))]),
                    ],
                ),
            ],
        ));
    }

    // ------------------------------------------------------------------ BUPD / UUPD
    {
        for (l, bm) in bias.iter().enumerate() {
            let c = in_st("S_BU").land(is_opl(OP_BUPD, l));
            e.drive(
                &format!("{}_raddr", bm.name),
                c.clone(),
                jj.slice(bm.aw() - 1, 0),
            );
            let v2 = e.delay(&format!("bu{}_v", l + 1), c.clone(), 1, 2);
            let j2 = e.delay(
                &format!("bu{}_j", l + 1),
                jj.slice(abits(d[l + 1]) - 1, 0),
                abits(d[l + 1]),
                2,
            );
            let gsum = e.m.wire_s(&format!("bu{}_g", l + 1), dbw);
            e.m.assign(&gsum, db[l].idx(j2));
            e.drive(
                "up_w",
                v2.clone(),
                lane0(
                    ext(&Sig::new(bm.bank(0), f.bias.bits, true), s.param_w),
                    s.param_w,
                ),
            );
            e.drive(
                "up_g",
                v2.clone(),
                lane0(
                    ext(&Sig::new(gsum, dbw, true), f.update.bits),
                    f.update.bits,
                ),
            );
            e.drive("up_kind", v2.clone(), lit(2, 1));
            e.drive("up_v", v2, lane0(lit(1, 1), 1));
            let wv = e.delay(&format!("bu{}_wv", l + 1), c.clone(), 1, 5);
            let wa = e.delay(
                &format!("bu{}_wa", l + 1),
                jj.slice(bm.aw() - 1, 0),
                bm.aw(),
                5,
            );
            e.drive(&format!("{}_we", bm.name), wv.clone(), lit(1, 1));
            e.drive(&format!("{}_waddr", bm.name), wv.clone(), wa);
            e.drive(
                &format!("{}_wdata", bm.name),
                wv,
                up_wo.slice(f.bias.bits - 1, 0),
            );
        }
        let mut bd = ix(0);
        for l in 0..nl {
            bd = mux(layer.clone().eq_(lit(lw_, l as u64)), ix(d[l + 1]), bd);
        }
        let bdn = e.w32("bu_d", bd);
        sw.push(arm(
            sid("S_BU"),
            vec![
                nb(&jj, &jj + ix(1)),
                if_(
                    jj.clone().eq_(&bdn - ix(1)),
                    vec![nb(&wait, lit(8, 8)), nb(&st, sid("S_WAIT"))],
                ),
            ],
        ));
        // U: address order, ΔU cleared as it is consumed.
        let uab = abits(cls * d[1]);
        let c = in_st("S_UU");
        e.drive("u_raddr", c.clone(), jj.slice(u.aw() - 1, 0));
        let v2 = e.delay("uu_v", c.clone(), 1, 2);
        let j2 = e.delay("uu_j", jj.slice(uab - 1, 0), uab, 2);
        let gsum = e.m.wire_s("uu_g", dbw);
        e.m.assign(&gsum, du.idx(j2.clone()));
        e.drive(
            "up_w",
            v2.clone(),
            lane0(
                ext(&Sig::new(u.bank(0), f.centroid.bits, true), s.param_w),
                s.param_w,
            ),
        );
        e.drive(
            "up_g",
            v2.clone(),
            lane0(
                ext(&Sig::new(gsum, dbw, true), f.update.bits),
                f.update.bits,
            ),
        );
        e.drive("up_kind", v2.clone(), lit(2, 2));
        e.drive("up_v", v2.clone(), lane0(lit(1, 1), 1));
        e.seq.push(if_(
            v2.clone().lor(in_st("S_INIT")),
            vec![nb(
                du.idx(mux(in_st("S_INIT"), jj.slice(uab - 1, 0), j2)),
                lit(dbw, 0),
            )],
        ));
        let wv = e.delay("uu_wv", c.clone(), 1, 5);
        let wa = e.delay("uu_wa", jj.slice(u.aw() - 1, 0), u.aw(), 5);
        e.drive("u_we", wv.clone(), lit(1, 1));
        e.drive("u_waddr", wv.clone(), wa);
        e.drive("u_wdata", wv, up_wo.slice(f.centroid.bits - 1, 0));
        sw.push(arm(
            sid("S_UU"),
            vec![
                nb(&jj, &jj + ix(1)),
                if_(
                    jj.clone().eq_(ix(cls * d[1] - 1)),
                    vec![nb(&wait, lit(8, 8)), nb(&st, sid("S_WAIT"))],
                ),
            ],
        ));
    }

    // ------------------------------------------------------------------ bus
    // Decode region/address; writes go straight to the memory's write port, reads take the
    // BRAM latency. Only while the sequencer is idle.
    {
        let bst = e.q("bus_st_q", 2);
        let back = e.q("bus_ack_q", 1);
        let berr = e.q("bus_err_q", 1);
        let brd = e.q("bus_rdata_q", 64);
        e.m.assign(bus_ack_o, &back);
        e.m.assign(bus_err_o, &berr);
        e.m.assign(bus_rdata_o, &brd);
        let go = e.m.wire("bus_go", 1);
        e.m.assign(
            &go,
            bus_req
                .clone()
                .land(bst.clone().eq_(lit(2, 0)))
                .land(in_st("S_IDLE"))
                .land(back.clone().lnot()),
        );
        let wr = go.clone().land(&bus_we);
        let rd = go.clone().land(bus_we.clone().lnot());
        // (region, mem, banks) of every bus-visible memory; `writable`.
        let mut vis: Vec<(u8, Mem, bool)> = vec![
            (region::PIXELS, px.clone(), true),
            (region::HYPS, hyp.clone(), true),
            (region::CENTROIDS, u.clone(), true),
        ];
        for l in 0..nl {
            vis.push((region::WEIGHTS + l as u8, w[l].clone(), true));
            vis.push((region::BIASES + l as u8, bias[l].clone(), true));
            vis.push((region::GOODNESS + l as u8, g[l].clone(), false));
            vis.push((region::BETA + l as u8, beta[l].clone(), false));
        }
        for (l, m) in fbm.iter().enumerate() {
            vis.push((region::FEEDBACK + l as u8, m.clone(), true));
        }
        let mut ok = lit(1, 0);
        let mut rsel: Vec<(Expr, Expr)> = Vec::new();
        for (rg, m, writable) in &vis {
            let aw = m.aw();
            let hit = bus_region.clone().eq_(lit(8, u64::from(*rg)));
            let word = bus_addr.slice(aw - 1, 0);
            let valid = if m.banks > 1 {
                let bank = bus_addr.slice(aw + 7, aw);
                let hi_ok = if aw + 8 < 32 {
                    bus_addr.slice(31, aw + 8).eq_(lit(32 - aw - 8, 0))
                } else {
                    lit(1, 1)
                };
                hit.clone()
                    .land(bank.lt_(lit(8, m.banks as u64)))
                    .land(cat([lit(1, 0), word.clone()]).lt_(lit(aw + 1, m.depth as u64)))
                    .land(hi_ok)
            } else {
                hit.clone()
                    .land(bus_addr.clone().lt_(lit(32, m.depth as u64)))
            };
            ok = ok.lor(if *writable {
                valid.clone()
            } else {
                valid.clone().land(bus_we.clone().lnot())
            });
            let bank_oh: Expr = if m.banks > 1 {
                let bank = bus_addr.slice(aw + 7, aw);
                cat((0..m.banks)
                    .rev()
                    .map(|b| bank.clone().eq_(lit(8, b as u64)))
                    .collect::<Vec<_>>())
            } else {
                lit(1, 1)
            };
            if *writable {
                let c = wr.clone().land(valid.clone());
                e.drive(
                    &format!("{}_we", m.name),
                    c.clone(),
                    mux(c.clone(), bank_oh, lit(m.banks as u32, 0)),
                );
                e.drive(
                    &format!("{}_waddr", m.name),
                    c.clone(),
                    if m.lane_waddr {
                        repl(int(m.banks as u64), [word.clone()])
                    } else {
                        word.clone()
                    },
                );
                let data = bus_wdata.slice(m.width - 1, 0);
                e.drive(
                    &format!("{}_wdata", m.name),
                    c,
                    if m.lane_wdata {
                        repl(int(m.banks as u64), [data])
                    } else {
                        data
                    },
                );
            }
            let c = rd.clone().land(valid.clone());
            let all: Vec<Expr> = (0..m.banks).map(|_| word.clone()).collect();
            e.drive(&format!("{}_raddr", m.name), c, cat(all));
            // Read data two cycles later, sign-extended (signed formats) to 64 bits.
            let signed = match *rg {
                region::PIXELS | region::HYPS => false,
                r if (region::GOODNESS..region::GOODNESS + 16).contains(&r) => false,
                _ => true,
            };
            // The request is held until acknowledged: the address still selects the bank.
            let mut bsel = lit(m.width, 0);
            for b in 0..m.banks {
                if m.banks == 1 {
                    bsel = m.bank(0);
                } else {
                    bsel = mux(
                        bus_addr.slice(aw + 7, aw).eq_(lit(8, b as u64)),
                        m.bank(b),
                        bsel,
                    );
                }
            }
            let rw_ = e.m.wire(&format!("bus_rd_{}", m.name), m.width);
            e.m.assign(&rw_, bsel);
            let v64 = if signed {
                ext(&Sig::new(rw_, m.width, true), 64).unsigned()
            } else {
                cat([lit(64 - m.width, 0), rw_])
            };
            rsel.push((hit, v64));
        }
        // Hyper-parameters and counters.
        let hyper_hit = bus_region
            .clone()
            .eq_(lit(8, u64::from(region::HYPER)))
            .land(bus_addr.clone().eq_(lit(32, 0)));
        // Hyper-parameter 1: the batch size of the next runs, 1 ..= the configured batch.
        let batch_hit = bus_region
            .clone()
            .eq_(lit(8, u64::from(region::HYPER)))
            .land(bus_addr.clone().eq_(lit(32, 1)))
            .land(
                bus_we.clone().lnot().lor(
                    bus_wdata
                        .clone()
                        .ge_(lit(64, 1))
                        .land(bus_wdata.clone().le_(lit(64, bsz as u64))),
                ),
            );
        let cnt_hit = bus_region
            .clone()
            .eq_(lit(8, u64::from(region::COUNTERS)))
            .land(bus_addr.clone().lt_(lit(32, u64::from(counter::COUNT))))
            .land(bus_we.clone().lnot());
        ok = ok
            .lor(hyper_hit.clone())
            .lor(cnt_hit.clone())
            .lor(batch_hit.clone());
        let okw = e.m.wire("bus_ok", 1);
        e.m.assign(&okw, ok);
        e.seq.push(if_(
            wr.clone().land(hyper_hit.clone()),
            vec![nb(&lr, bus_wdata.slice(s.lr_w - 1, 0))],
        ));
        e.seq.push(if_(
            wr.clone().land(batch_hit.clone()),
            vec![nb(&batch, bus_wdata.slice(IW - 1, 0))],
        ));
        let mut rv = lit(64, 0);
        for (hit, v) in rsel {
            rv = mux(hit, v, rv);
        }
        let rdw = e.m.wire("bus_rd_mem", 64);
        e.m.assign(&rdw, rv);
        let craddr = bus_addr.slice(1, 0);
        let cval = mux(
            craddr.clone().eq_(lit(2, 0)),
            cyc.clone(),
            mux(
                craddr.clone().eq_(lit(2, 1)),
                cbusy.clone(),
                mux(craddr.eq_(lit(2, 2)), carr.clone(), cruns.clone()),
            ),
        );
        let cv = e.m.wire("bus_rd_special", 64);
        e.m.assign(
            &cv,
            mux(
                hyper_hit.clone(),
                cat([lit(64 - s.lr_w, 0), lr.clone()]),
                mux(
                    batch_hit.clone(),
                    cat([lit(64 - IW, 0), batch.clone()]),
                    cval,
                ),
            ),
        );
        let special = e.q("bus_special_q", 1);
        let sval = e.q("bus_sval_q", 64);
        e.seq.push(case(
            bst.clone(),
            vec![
                arm(
                    lit(2, 0),
                    vec![
                        nb(&back, lit(1, 0)),
                        if_(
                            go.clone(),
                            vec![if_(
                                okw.clone().lnot().lor(bus_we.clone()),
                                vec![nb(&back, lit(1, 1)), nb(&berr, okw.clone().lnot())],
                            )
                            .else_(vec![
                                nb(&bst, lit(2, 1)),
                                nb(&special, hyper_hit.lor(cnt_hit).lor(batch_hit)),
                                nb(&sval, &cv),
                            ])],
                        ),
                    ],
                ),
                arm(lit(2, 1), vec![nb(&bst, lit(2, 2))]),
                arm(
                    lit(2, 2),
                    vec![
                        nb(&bst, lit(2, 0)),
                        nb(&back, lit(1, 1)),
                        nb(&berr, lit(1, 0)),
                        nb(&brd, mux(&special, &sval, &rdw)),
                    ],
                ),
            ],
            vec![nb(&bst, lit(2, 0))],
        ));
    }

    // ------------------------------------------------------------------ outputs
    e.consume(
        "valid_outs",
        cat([up_vo.clone(), relu_vo.clone(), bus_wdata.clone()]),
    );
    e.m.assign(run_done_o, &done);
    e.m.assign(run_status_o, &status);
    e.m.assign(run_result_o, &result);

    seq.push(case(&st, sw, vec![nb(&st, sid("S_IDLE"))]));
    // Assemble the clocked block: resets, the shared sequential statements, the FSM.
    let mut body = e.seq.clone();
    body.extend(seq);
    let resets = e.resets.clone();
    let mut rst_body: Vec<Stmt> = resets
        .iter()
        .map(|(r, w)| nb(r.clone(), zeros(int(u64::from(*w)))))
        .collect();
    rst_body.push(nb(&st, sid("S_INIT")));
    rst_body.push(nb(&lr, lit(s.lr_w, lr_init)));
    rst_body.push(nb(&batch, ix(bsz)));
    e.m.always_ff(&clk, vec![if_(id("rst_i"), rst_body).else_(body)]);
    // Combinational drivers.
    let combs = std::mem::take(&mut e.comb);
    for c in combs {
        let mut body = vec![set(id(&c.name), zeros(int(u64::from(c.w))))];
        for (cond, val) in c.arms {
            body.push(if_(cond, vec![set(id(&c.name), val)]));
        }
        e.m.always_comb(body);
    }
    e.finish_mems();
    let mems = e
        .mems
        .iter()
        .map(|m| super::super::fit::MemInfo {
            name: m.name.clone(),
            banks: m.banks,
            width: m.width,
            depth: m.depth,
        })
        .collect();
    (e.m, mems)
}

/// `dff_skew`: lane r of `x_i` delayed r + 1 cycles (the systolic input skew).
pub fn skew() -> Module {
    let mut m = Module::new("dff_skew")
        .doc("Input skew of the systolic array: lane r is delayed r + 1 cycles.");
    let lanes = m.param("LANES", int(4));
    let wp = m.param("W", int(8));
    let clk = m.input("clk_i", 1);
    let x = m.input("x_i", &lanes * &wp);
    let y = m.output("y_o", &lanes * &wp);
    m.genvar("r");
    m.gen_for("r", int(0), &lanes, "g_lane", |s, r| {
        let r0 = r.clone();
        s.gen_if_else(
            r0.eq_(int(0)),
            "g_first",
            |t| {
                let sr = t.reg("sr_q", &wp);
                t.always_ff(&clk, vec![nb(&sr, x.part(&r * &wp, &wp))]);
                t.assign(y.part(&r * &wp, &wp), &sr);
            },
            "g_rest",
            |t| {
                let sr = t.reg("sr_q", (&r + int(1)) * &wp);
                t.always_ff(
                    &clk,
                    vec![nb(
                        &sr,
                        cat([sr.part(int(0), &r * &wp), x.part(&r * &wp, &wp)]),
                    )],
                );
                t.assign(y.part(&r * &wp, &wp), sr.part(&r * &wp, &wp));
            },
        );
    });
    m
}

/// Cycles the N-pair loss unit is busy between `start_i` and `done_o` (its phases are fixed
/// by the class count and the reciprocal's fraction bits; see [`super::loss::loss_npair`]).
pub fn npair_cycles(classes: usize, recip_frac: u32) -> u64 {
    let n = classes as u64 - 1;
    let f = u64::from(recip_frac.min(62));
    // LOGIT n, EXP 2(n + 1), DIV f + 1, BETA n, plus the start and done cycles.
    n + 2 * (n + 1) + (f + 1) + n + NPAIR_OVERHEAD
}

const NPAIR_OVERHEAD: u64 = 2;
/// Cycles in S_NAW: from the state after the last goodness-pass read to the goodness unit's
/// answer (BRAM latency 2, the unit's 4, one to register the state change).
const NORM_WAIT: u64 = 7;

/// Columns the DELTA op works per cycle: the largest divisor of R up to C, or 1 with
/// feedback (DF-R/DF-O on more than one layer).
pub fn delta_lanes(lay: &Layout) -> usize {
    if lay.feedback && lay.layers() > 1 {
        1
    } else {
        cen_lanes(lay)
    }
}

/// Columns the CEN op works per cycle: the largest divisor of R up to C (a₁'s R banks give
/// them in one word, h₁'s C diagonal banks take them).
pub fn cen_lanes(lay: &Layout) -> usize {
    (1..=lay.rows.min(lay.cols))
        .rev()
        .find(|q| lay.rows % q == 0)
        .unwrap_or(1)
}

/// The sequencer's schedule as a formula: cycles of one training step with `n` samples (or
/// one inference), as the engine's busy counter counts them (from the first op fetch to the
/// cycle that raises `run_done_o`).
/// `tests/engine_cosim.rs` checks it against the RTL's counter, cycle for cycle.
pub fn predicted_cycles(cfg: &Config, lay: &Layout, n: usize, infer: bool) -> u64 {
    cycles_by_op(cfg, lay, n, infer)
        .iter()
        .map(|(_, c)| c)
        .sum()
}

/// [`predicted_cycles`] split by op kind (each op's FETCH and wait included), in program
/// order of first appearance: where a step's cycles go.
pub fn cycles_by_op(cfg: &Config, lay: &Layout, n: usize, infer: bool) -> Vec<(&'static str, u64)> {
    let mut by: Vec<(&'static str, u64)> = Vec::new();
    let mut add = |op: &'static str, c: u64| match by.iter_mut().find(|(o, _)| *o == op) {
        Some((_, t)) => *t += c,
        None => by.push((op, c)),
    };
    let npair = cfg.algorithm.loss == Loss::Npair;
    let recip_frac = cfg.fixed.recip_frac;
    let hard = hard_count(cfg);
    let (rr, cc) = (lay.rows as u64, lay.cols as u64);
    let d: Vec<u64> = lay.dims.iter().map(|&x| x as u64).collect();
    let nl = lay.layers();
    let kh = if infer { lay.classes } else { lay.hyps } as u64;
    let samples = if infer { 1 } else { n as u64 };
    let rows = samples * kh;
    let dc = |a: u64, b: u64| a.div_ceil(b);
    // A GEMM streams its tiles back to back, each max(K, drain + 1) steps, then waits for the
    // drain engine to finish the last tile (lag + drain + 1 after its last step, less the
    // steps the tile was padded by). The gradient GEMM drains a column per cycle (C cycles,
    // lag R + 6), the others one PE per cycle (R·C, lag 7).
    let seamless = |m: u64, nn: u64, k: u64, pad: u64, drain: u64, lag: u64| {
        let p = k.max(pad);
        dc(m, rr) * dc(nn, cc) * p + (lag + drain + 1 - (p - k)) + 10
    };
    let gemm = |m: u64, nn: u64, k: u64| seamless(m, nn, k, rr * cc + 1, rr * cc, 7);
    let grad = |m: u64, nn: u64, k: u64| seamless(m, nn, k, rr.max(cc) + 1, cc, rr + 6);
    // Every op: FETCH, its body, then (most) S_WAIT + S_NEXT.
    add(
        "INORM",
        1 + dc(samples, cc) * (2 * d[0] + NORM_WAIT + cc + 2) + 10,
    );
    add("FWD", 1 + gemm(d[1], samples, d[0]));
    // V = b1 + U for every class (one per cycle), then cl columns per cycle.
    add(
        "CEN",
        1 + lay.classes as u64 * d[1] + rows * (3 + d[1].div_ceil(cen_lanes(lay) as u64)) + 10,
    );
    for l in 0..nl {
        if l > 0 {
            add("FWD", 1 + gemm(d[l + 1], rows, d[l]));
        }
        let second = if l + 1 < nl { d[l + 1] } else { 0 };
        // C rows at a time; S_NG writes G (and the rsqrt parts) lane by lane in C + 2.
        add(
            "NORM",
            1 + dc(rows, cc) * (d[l + 1] + NORM_WAIT + cc + 2 + second) + 10,
        );
    }
    if infer {
        add("PRED", 1 + (lay.classes as u64 + 4) + 1);
    } else {
        // Hard negatives: n selection rounds over the K − 1 wrong slots.
        let sel = hard.map_or(0, |nn| nn as u64 * (kh - 1));
        for _ in 0..nl {
            let body = match (npair, hard.is_some()) {
                (true, _) => {
                    samples * ((kh + 3) + sel + 1 + npair_cycles(lay.classes, recip_frac) + kh) + 6
                }
                (false, true) => samples * ((kh + 3) + sel + (kh + 3)) + 6,
                (false, false) => samples * (kh + 5) + 6,
            };
            add("LOSS", 1 + body);
        }
        for l in 0..nl {
            add(
                "DELTA",
                1 + rows * (4 + d[l + 1].div_ceil(delta_lanes(lay) as u64)) + 8,
            );
            if lay.feedback && l + 1 < nl {
                add("FB", 1 + gemm(d[l + 1], rows, d[l + 2]));
            }
        }
        for l in 0..nl {
            let k = if l == 0 { samples } else { rows };
            add("GRAD", 1 + grad(d[l + 1], d[l], k));
            add("BUPD", 1 + d[l + 1] + 10);
        }
        add("UUPD", 1 + lay.classes as u64 * d[1] + 10);
    }
    add("END", 1);
    by
}

/// The generator's performance prediction for a config, before any simulation: ideal MACs,
/// the schedule's cycles and the PE utilisation of a training step (full batch) and of an
/// inference. Goes into the manifest.
pub fn schedule_summary(cfg: &Config, lay: &Layout) -> serde_json::Value {
    let b = lay.batch;
    let pes = (lay.rows * lay.cols) as f64;
    let tc = predicted_cycles(cfg, lay, b, false);
    let ic = predicted_cycles(cfg, lay, 1, true);
    let tm = crate::cosim::ideal_macs(lay, b, false);
    let im = crate::cosim::ideal_macs(lay, 1, true);
    serde_json::json!({
        "train_step": {
            "samples": b,
            "ideal_macs": tm,
            "ideal_cycles": (tm as f64 / pes).ceil(),
            "cycles": tc,
            "cycles_per_sample": tc as f64 / b as f64,
            "pe_utilisation": tm as f64 / (pes * tc as f64),
            "cycles_by_op": cycles_by_op(cfg, lay, b, false)
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

/// `Some(n)` when the config selects n hard negatives (the LOSS op's selection rounds).
pub fn hard_count(cfg: &Config) -> Option<usize> {
    (cfg.algorithm.negatives == Negatives::Hard).then_some(cfg.algorithm.negatives_count)
}
