//! The engine's architecture as data: what a config builds, described once and read by
//! everyone who needs it — the RTL generator ([`crate::rtl`]), the golden model's update walk
//! ([`crate::fixed::model`]), the host driver ([`crate::driver`]), the fit estimate, the
//! manifest and the co-simulation checker ([`crate::cosim`]).
//!
//! - [`memmap`]: every stored tensor, its format, banking (`bank_word`), bus region and the
//!   engine ports that read and write it;
//! - [`program`]: the training and inference microprograms as typed ops;
//! - [`schedule`]: the pipeline latencies and lane counts of every op engine, the cycle
//!   formula and the ideal MACs;
//! - [`abi`]: region codes, hyper-parameters, counters and run codes;
//! - [`shape`]: the datapath widths the units share.
//!
//! Pure data: nothing here emits Verilog or starts a tool. Depends on `config` (and the
//! number formats it is written in) only; the golden model reads the weight banking from
//! here for its update walk.

pub mod abi;
pub mod memmap;
pub mod program;
pub mod schedule;
pub mod shape;

use crate::config::{Collaboration, Config, Loss, Negatives, Scheme};
pub use memmap::abits;
use memmap::{Banking, Client, MemMap, Tensor, TensorId};
use program::Program;
use shape::{bitlen, Shape};

#[derive(Debug, thiserror::Error)]
pub enum ArchError {
    #[error("cannot build an engine for this config: {0}")]
    Unsupported(String),
}

/// How many lanes (parallel units) each vector op has.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Lanes {
    /// INORM / NORM: rows per group (one goodness and one normalise unit each): C.
    pub norm: usize,
    /// CEN: consecutive columns per cycle, the largest divisor of R up to C (A1's R banks give
    /// them in one word, h_1's banks take them).
    pub cen: usize,
    /// DELTA: as CEN, or 1 with feedback on more than one layer (the feedback buffer and the
    /// local-δ copy take one element per cycle).
    pub delta: usize,
    /// Update units: one per weight bank, R.
    pub update: usize,
    /// Banks of h_l: max(R, C), so that C rows of one column (NORM), R or C consecutive
    /// columns of one row (the gradient GEMM's δ edge, CEN, DELTA) are conflict-free.
    pub h_banks: usize,
}

/// Everything the hardware of one config is.
#[derive(Clone, Debug)]
pub struct Arch {
    /// d_0 … d_L.
    pub dims: Vec<usize>,
    pub classes: usize,
    /// training.batch: samples a training step holds at most.
    pub batch: usize,
    /// Hypotheses per training sample.
    pub hyps: usize,
    /// R, C.
    pub rows: usize,
    pub cols: usize,
    pub scheme: Scheme,
    pub loss: Loss,
    /// `Some(n)`: LOSS selects the n hardest negatives.
    pub hard: Option<usize>,
    pub collaboration: Collaboration,
    /// 0-based layers whose goodness inference sums.
    pub eval_layers: Vec<usize>,
    pub lanes: Lanes,
    pub shape: Shape,
    pub mem: MemMap,
    pub program: Program,
    /// Bits of a hypothesis (class) index.
    pub class_bits: u32,
}

impl Arch {
    pub fn new(cfg: &Config) -> Result<Arch, ArchError> {
        let shape = Shape::new(cfg)?;
        let a = &cfg.algorithm;
        let f = &cfg.fixed;
        let hyps = match a.negatives {
            Negatives::Random => a.negatives_count + 1,
            _ => cfg.network.classes,
        };
        let mut dims = vec![cfg.network.input];
        dims.extend(cfg.network.hidden.iter().copied());
        let feedback = a.scheme != Scheme::Df;
        if feedback && dims.len() > 2 {
            // FB l sums d_{l+2} products δ·w in the PE accumulator, then shifts right by
            // weight.frac + rsqrt_frac + k, k >= 1 − hidden.frac.
            let widest = dims[2..].iter().copied().max().unwrap_or(1);
            let need = f.delta.bits + f.weight.bits + bitlen(widest as u128);
            let acc = f.accumulator.bits.max(f.update.bits);
            if need > acc {
                return Err(ArchError::Unsupported(format!(
                    "{}'s feedback sums need {need} accumulator bits (delta + weight + log2 of the widest layer above the first); widen fixed.accumulator or fixed.update to {need}",
                    a.scheme
                )));
            }
            if f.weight.frac + f.rsqrt_frac + 1 < f.hidden.frac {
                return Err(ArchError::Unsupported(format!(
                    "{}'s feedback scaling shifts right by weight.frac + rsqrt_frac + k; it needs weight.frac + rsqrt_frac + 1 >= hidden.frac",
                    a.scheme
                )));
            }
        }
        // The gradient GEMM drains the PE accumulators (as wide as the wider of accumulator
        // and update) into the update units, whose gradient input is update.bits wide.
        if f.update.bits < f.accumulator.bits {
            return Err(ArchError::Unsupported(format!(
                "the update units take the gradients from the PE accumulators, which are \
                 fixed.accumulator.bits = {} wide: fixed.update.bits ({}) must be at least that",
                f.accumulator.bits, f.update.bits
            )));
        }
        if f.pixel.bits > f.hidden.bits {
            return Err(ArchError::Unsupported(
                "the goodness unit reads pixels on its hidden-width port: fixed.pixel.bits must be <= fixed.hidden.bits".into(),
            ));
        }
        let batch = cfg.training.batch;
        let train_rows = batch * hyps;
        if train_rows > u16::MAX as usize {
            return Err(ArchError::Unsupported(format!(
                "a training step has training.batch × hypotheses = {train_rows} rows; the engine indexes at most {} (lower training.batch or algorithm.negatives_count)",
                u16::MAX
            )));
        }
        let (rr, cc) = (cfg.hardware.array_rows, cfg.hardware.array_cols);
        let cen = (1..=rr.min(cc)).rev().find(|q| rr % q == 0).unwrap_or(1);
        let lanes = Lanes {
            norm: cc,
            cen,
            delta: if feedback && dims.len() > 2 { 1 } else { cen },
            update: rr,
            h_banks: rr.max(cc),
        };
        let class_bits = abits(cfg.network.classes.max(2));
        let mut arch = Arch {
            classes: cfg.network.classes,
            batch,
            hyps,
            rows: rr,
            cols: cc,
            scheme: a.scheme,
            loss: a.loss,
            hard: (a.negatives == Negatives::Hard).then_some(a.negatives_count),
            collaboration: a.collaboration,
            eval_layers: cfg.eval_layer_indices(),
            lanes,
            shape,
            mem: MemMap {
                tensors: Vec::new(),
            },
            program: Program::new(dims.len() - 1, feedback),
            class_bits,
            dims,
        };
        arch.mem = arch.memory_map();
        Ok(arch)
    }

    pub fn layers(&self) -> usize {
        self.dims.len() - 1
    }
    /// DF-R / DF-O: layer l's δ gets B_{l+1}ᵀδ_{l+1} (or W_{l+1}ᵀδ_{l+1}) fed back.
    pub fn feedback(&self) -> bool {
        self.scheme != Scheme::Df
    }
    /// DF-O: W is banked diagonally, so the FB op reads R consecutive columns of one row as
    /// FWD reads R rows of one column.
    pub fn diag_w(&self) -> bool {
        self.scheme == Scheme::DfO
    }
    /// Layers that get feedback (l < L−1 with DF-R/DF-O).
    pub fn fb_layers(&self) -> usize {
        if self.feedback() {
            self.layers() - 1
        } else {
            0
        }
    }
    /// (sample, hypothesis) rows of a full training step.
    pub fn train_rows(&self) -> usize {
        self.batch * self.hyps
    }
    /// Rows of the activation memories: a training step or one sample under every class.
    pub fn max_rows(&self) -> usize {
        self.train_rows().max(self.classes)
    }
    pub fn npair(&self) -> bool {
        self.loss == Loss::Npair
    }

    /// Width of A1: the exact W_1 x̂_0 sum never needs more than log2(d_0) + weight + act
    /// bits, so no saturation of the accumulator can happen and the narrower word is exact.
    pub fn a1_width(&self) -> u32 {
        let f = &self.shape.f;
        self.shape
            .acc_w
            .min(bitlen(self.dims[0] as u128) + f.weight.bits + f.act.bits)
    }
    /// Width of V = (b_1 << bsh) + (U << ush), aligned to the accumulator.
    pub fn v_width(&self) -> u32 {
        let f = &self.shape.f;
        let bsh = f.accumulator.frac - f.bias.frac;
        let ush = f.accumulator.frac - f.centroid.frac;
        (f.bias.bits + bsh).max(f.centroid.bits + ush) + 1
    }
    /// Width of h_l's words: h, and for layers ≥ 2 also δ (DELTA writes it in place).
    pub fn h_width(&self, l: usize) -> u32 {
        let f = &self.shape.f;
        if l == 0 {
            f.hidden.bits
        } else {
            f.hidden.bits.max(f.delta.bits)
        }
    }
    /// Bits of the rsqrt word and of e/2 (DF-R/DF-O's rs memories hold both).
    pub fn rs_widths(&self) -> (u32, u32) {
        let s = &self.shape;
        (s.f.rsqrt_frac + 2, bitlen(u128::from(s.sum_w + 1)) - 1)
    }
    /// Width of e's exact partial sums (δ_1 summed over a sample's hypotheses).
    pub fn e_width(&self) -> u32 {
        self.shape.f.delta.bits + bitlen(self.hyps as u128)
    }
    /// Width of the Δb and ΔU sums (δ summed over every row).
    pub fn grad_sum_width(&self) -> u32 {
        self.shape.f.delta.bits + bitlen(self.train_rows() as u128)
    }

    fn memory_map(&self) -> MemMap {
        use memmap::Client as K;
        let f = &self.shape.f;
        let d = &self.dims;
        let nl = self.layers();
        let (rr, cc) = (self.rows, self.cols);
        let nrt = self.train_rows();
        let nrm = self.max_rows();
        let by_row = |n: usize, cols: usize| Banking::ByRow { n, cols };
        let diag = |n: usize, cols: usize| Banking::Diagonal { n, cols };
        let by_col = |n: usize, cols: usize| Banking::ByCol { n, cols };
        let one = |cols: usize| Banking::ByRow { n: 1, cols };
        let mut t: Vec<Tensor> = Vec::new();
        t.push(
            Tensor::new(
                TensorId::Pixels,
                "px",
                self.batch,
                d[0],
                f.pixel.bits,
                false,
                by_row(cc, d[0]),
                &[],
                &[K::Norm],
            )
            .on_bus(abi::region::PIXELS, true),
        );
        t.push(
            Tensor::new(
                TensorId::Hyps,
                "hyp",
                nrt,
                1,
                self.class_bits,
                false,
                one(1),
                &[],
                &[K::Cen, K::Delta],
            )
            .on_bus(abi::region::HYPS, true),
        );
        t.push(Tensor::new(
            TensorId::X0,
            "x0",
            self.batch,
            d[0],
            f.act.bits,
            false,
            diag(cc, d[0]),
            &[K::Norm],
            &[K::GemmFeed],
        ));
        for l in 0..nl {
            let wb = memmap::weight_banking_of(rr, self.diag_w(), d[l]);
            t.push(
                Tensor::new(
                    TensorId::W(l),
                    format!("w{}", l + 1),
                    d[l + 1],
                    d[l],
                    f.weight.bits,
                    true,
                    wb,
                    &[K::Update],
                    &[K::GemmFeed, K::Update],
                )
                .on_bus(abi::region::WEIGHTS + l as u8, true),
            );
            let b_readers: &[Client] = if l == 0 {
                &[K::Cen, K::Update]
            } else {
                &[K::GemmDrain, K::Update]
            };
            t.push(
                Tensor::new(
                    TensorId::B(l),
                    format!("b{}", l + 1),
                    1,
                    d[l + 1],
                    f.bias.bits,
                    true,
                    one(d[l + 1]),
                    &[K::Update],
                    b_readers,
                )
                .on_bus(abi::region::BIASES + l as u8, true),
            );
        }
        t.push(
            Tensor::new(
                TensorId::U,
                "u",
                self.classes,
                d[1],
                f.centroid.bits,
                true,
                one(d[1]),
                &[K::Update],
                &[K::Cen, K::Update],
            )
            .on_bus(abi::region::CENTROIDS, true),
        );
        t.push(Tensor::new(
            TensorId::A1,
            "a1",
            self.batch,
            d[1],
            self.a1_width(),
            true,
            by_col(rr, d[1]),
            &[K::GemmDrain],
            &[K::Cen],
        ));
        t.push(Tensor::new(
            TensorId::V,
            "v",
            self.classes,
            d[1],
            self.v_width(),
            true,
            by_col(self.lanes.cen, d[1]),
            &[K::Cen],
            &[K::Cen],
        ));
        for l in 0..nl {
            let (w, r): (&[Client], &[Client]) = match l {
                0 => (&[K::Cen], &[K::Norm, K::Delta]),
                _ => (&[K::GemmDrain, K::Delta], &[K::Norm, K::Delta, K::GemmFeed]),
            };
            t.push(Tensor::new(
                TensorId::H(l),
                format!("h{}", l + 1),
                nrm,
                d[l + 1],
                self.h_width(l),
                l > 0,
                diag(self.lanes.h_banks, d[l + 1]),
                w,
                r,
            ));
        }
        for l in 0..nl.saturating_sub(1) {
            t.push(Tensor::new(
                TensorId::Xh(l),
                format!("xh{}", l + 1),
                nrm,
                d[l + 1],
                f.act.bits,
                false,
                diag(cc, d[l + 1]),
                &[K::Norm],
                &[K::GemmFeed],
            ));
        }
        for l in 0..nl {
            let g_readers: &[Client] = if self.eval_layers.contains(&l) {
                &[K::Loss, K::Pred]
            } else {
                &[K::Loss]
            };
            t.push(
                Tensor::new(
                    TensorId::G(l),
                    format!("g{}", l + 1),
                    nrm,
                    1,
                    f.goodness.bits,
                    false,
                    one(1),
                    &[K::Norm],
                    g_readers,
                )
                .on_bus(abi::region::GOODNESS + l as u8, false),
            );
            t.push(
                Tensor::new(
                    TensorId::Beta(l),
                    format!("beta{}", l + 1),
                    nrt,
                    1,
                    f.beta.bits,
                    true,
                    one(1),
                    &[K::Loss],
                    &[K::Delta],
                )
                .on_bus(abi::region::BETA + l as u8, false),
            );
        }
        let nfb = self.fb_layers();
        if !self.diag_w() {
            for l in 0..nfb {
                t.push(
                    Tensor::new(
                        TensorId::Fbm(l),
                        format!("fbm{}", l + 1),
                        d[l + 1],
                        d[l + 2],
                        f.weight.bits,
                        true,
                        by_row(rr, d[l + 2]),
                        &[],
                        &[K::GemmFeed],
                    )
                    .on_bus(abi::region::FEEDBACK + l as u8, true),
                );
            }
        }
        if self.feedback() {
            let (rs_w, he_w) = self.rs_widths();
            for l in 1..nl {
                t.push(Tensor::new(
                    TensorId::Dc(l),
                    format!("dc{}", l + 1),
                    nrt,
                    d[l + 1],
                    f.delta.bits,
                    true,
                    by_row(cc, d[l + 1]),
                    &[K::Delta],
                    &[K::GemmFeed],
                ));
            }
            for l in 0..nfb {
                t.push(Tensor::new(
                    TensorId::Rs(l),
                    format!("rs{}", l + 1),
                    nrm,
                    1,
                    rs_w + he_w,
                    false,
                    one(1),
                    &[K::Norm],
                    &[K::GemmDrain],
                ));
                t.push(Tensor::new(
                    TensorId::Fbb(l),
                    format!("fbb{}", l + 1),
                    nrt,
                    d[l + 1],
                    f.delta.bits,
                    true,
                    one(d[l + 1]),
                    &[K::GemmDrain],
                    &[K::Delta],
                ));
            }
        }
        t.push(Tensor::new(
            TensorId::E,
            "e",
            self.batch,
            d[1],
            self.e_width(),
            true,
            by_col(rr, d[1]),
            &[K::Delta],
            &[K::Delta, K::GemmFeed],
        ));
        let dl = self.lanes.delta;
        for l in 0..nl {
            t.push(Tensor::new(
                TensorId::Db(l),
                format!("db{}", l + 1),
                1,
                d[l + 1],
                self.grad_sum_width(),
                true,
                by_col(dl, d[l + 1]),
                &[K::Delta],
                &[K::Delta, K::Update],
            ));
        }
        t.push(Tensor::new(
            TensorId::Du,
            "du",
            self.classes,
            d[1],
            self.grad_sum_width(),
            true,
            by_col(dl, d[1]),
            &[K::Init, K::Delta, K::Update],
            &[K::Delta, K::Update],
        ));
        MemMap { tensors: t }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_engine_keeps_delta_in_h_and_narrows_a1() {
        let a = Arch::new(&Config::builtin()).unwrap();
        assert_eq!(a.lanes.h_banks, 4);
        assert!(a.mem.get(TensorId::H(1)).unwrap().width >= a.shape.f.delta.bits);
        // 64 inputs (7 bits) + 16-bit weights + 12-bit activations.
        assert_eq!(a.a1_width(), 35);
        // Every bus region is unique and every tensor has a writer and a reader.
        let mut codes = std::collections::HashSet::new();
        for t in &a.mem.tensors {
            if let Some(r) = t.region {
                assert!(codes.insert(r.code), "region {:#x} twice", r.code);
            }
            assert!(!t.writers.is_empty() && !t.readers.is_empty(), "{}", t.name);
        }
    }
}
