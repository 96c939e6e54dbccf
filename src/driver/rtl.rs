//! `--backend rtl`: a [`Learner`] that trains through the engine (simulated RTL or a board,
//! behind any [`Bus`]) with the golden model running alongside as the bit-exact check.
//!
//! The golden model draws each step's hypotheses (the host's job: it picks random negatives
//! with the same ChaCha stream as `--backend fixed`), so both see identical inputs. Every
//! step compares G and β of every row; every evaluation first compares all parameters. The
//! first difference is kept (and later steps are not compared); transport errors are kept
//! too, and the learner stops driving the engine. The CLI reports both after training.

use super::check::{Checker, Mismatch};
use super::{
    expected_cycles, read_beta, read_counters, read_goodness, read_params, write_batch, write_lr,
    Bus,
};
use crate::arch::abi::{RUN_INFER, RUN_TRAIN};
use crate::arch::Arch;
use crate::config::Config;
use crate::fixed::kernels::IMat;
use crate::fixed::model::{quantise_pixels, FixedDf};
use crate::float::linalg::Mat;
use crate::float::{BatchStats, Learner};
use std::cell::{Cell, RefCell};

pub struct RtlLearner {
    cfg: Config,
    arch: Arch,
    bus: RefCell<Box<dyn Bus>>,
    golden: FixedDf,
    /// Engine cycles of the training runs and of the inference runs.
    pub train_cycles: u64,
    /// What the schedule predicts for the same training steps (each with its own number of
    /// samples, so a partial last batch counts as what it is).
    pub predicted_train_cycles: u64,
    pub train_samples: u64,
    pub steps: u64,
    pub macs: u64,
    /// Wall time spent in the golden model's steps and in the engine's (transport included),
    /// measured in the same run: the speed ratio of `--backend rtl` to `--backend fixed`.
    pub golden_seconds: f64,
    pub engine_seconds: f64,
    infer_cycles: Cell<u64>,
    infers: Cell<u64>,
    params_checked: Cell<bool>,
    check: RefCell<Checker>,
    error: RefCell<Option<String>>,
}

impl RtlLearner {
    /// Load the golden model's initial parameters into the engine.
    pub fn new(cfg: &Config, mut bus: Box<dyn Bus>) -> anyhow::Result<RtlLearner> {
        let arch = Arch::new(cfg)?;
        let golden = FixedDf::new(cfg)?;
        super::load_params(bus.as_mut(), &arch, &golden.params)?;
        super::load_feedback(bus.as_mut(), &arch, golden.feedback())?;
        // Every run-time register is written, none left at the bitstream's reset value:
        // the learning rate here (BATCH with every batch).
        write_lr(bus.as_mut(), cfg, 1.0)?;
        Ok(RtlLearner {
            cfg: cfg.clone(),
            arch,
            bus: RefCell::new(bus),
            golden,
            train_cycles: 0,
            predicted_train_cycles: 0,
            train_samples: 0,
            steps: 0,
            macs: 0,
            golden_seconds: 0.0,
            engine_seconds: 0.0,
            infer_cycles: Cell::new(0),
            infers: Cell::new(0),
            params_checked: Cell::new(true),
            check: RefCell::new(Checker::default()),
            error: RefCell::new(None),
        })
    }

    pub fn mismatch(&self) -> Option<Mismatch> {
        self.check.borrow().first.clone()
    }
    pub fn error(&self) -> Option<String> {
        self.error.borrow().clone()
    }
    pub fn values_compared(&self) -> u64 {
        self.check.borrow().compared
    }
    pub fn infer_cycles(&self) -> (u64, u64) {
        (self.infer_cycles.get(), self.infers.get())
    }
    pub fn arch(&self) -> &Arch {
        &self.arch
    }
    /// The engine's counters (cycles, busy, array, runs).
    pub fn counters(&self) -> anyhow::Result<Vec<u64>> {
        read_counters(self.bus.borrow_mut().as_mut())
    }

    fn fail(&self, e: anyhow::Error) {
        let mut slot = self.error.borrow_mut();
        if slot.is_none() {
            *slot = Some(format!("{e:#}"));
        }
    }

    fn step(&mut self, px: &IMat, labels: &[u32]) -> anyhow::Result<BatchStats> {
        let t0 = std::time::Instant::now();
        let (trace, stats) = self.golden.step(px, labels);
        self.golden_seconds += t0.elapsed().as_secs_f64();
        let t1 = std::time::Instant::now();
        let bus = self.bus.get_mut().as_mut();
        write_batch(bus, &self.arch, px, Some(&trace.forward.hyps))?;
        let predicted = expected_cycles(&self.arch, labels.len(), false);
        bus.expect_cycles(predicted);
        let (status, _, cyc) = bus.run(RUN_TRAIN)?;
        anyhow::ensure!(
            status == 0,
            "the engine answered status {status} to a training step"
        );
        self.engine_seconds += t1.elapsed().as_secs_f64();
        self.train_cycles += cyc;
        self.predicted_train_cycles += predicted;
        self.train_samples += labels.len() as u64;
        self.macs += crate::arch::schedule::ideal_macs(&self.arch, labels.len(), false);
        let rows = trace.forward.hyps.len();
        let step = self.steps as usize;
        if self.check.get_mut().first.is_none() {
            let g = read_goodness(bus, &self.arch, rows)?;
            let b = read_beta(bus, &self.arch, rows)?;
            let chk = self.check.get_mut();
            for l in 0..g.len() {
                let gold = &trace.forward.layers[l].goodness;
                chk.vec(step, &format!("G{}", l + 1), Some(l + 1), 1, &g[l], gold);
                chk.vec(
                    step,
                    &format!("beta{}", l + 1),
                    Some(l + 1),
                    1,
                    &b[l],
                    &trace.beta[l],
                );
            }
        }
        self.steps += 1;
        self.params_checked.set(false);
        Ok(stats)
    }

    /// Compare every parameter with the golden model (once per parameter version).
    fn check_params(&self) -> anyhow::Result<()> {
        if self.params_checked.get() || self.check.borrow().first.is_some() {
            return Ok(());
        }
        let p = read_params(self.bus.borrow_mut().as_mut(), &self.arch)?;
        let step = self.steps.saturating_sub(1) as usize;
        self.check
            .borrow_mut()
            .params(step, &p, &self.golden.params);
        self.params_checked.set(true);
        Ok(())
    }

    fn infer(&self, px: &IMat) -> anyhow::Result<Vec<u32>> {
        self.check_params()?;
        let mut out = Vec::with_capacity(px.rows);
        let mut bus = self.bus.borrow_mut();
        for r in 0..px.rows {
            let one = IMat {
                rows: 1,
                cols: px.cols,
                data: px.row(r).to_vec(),
            };
            write_batch(bus.as_mut(), &self.arch, &one, None)?;
            bus.expect_cycles(expected_cycles(&self.arch, 1, true));
            let (status, pred, cyc) = bus.run(RUN_INFER)?;
            anyhow::ensure!(
                status == 0,
                "the engine answered status {status} to an inference"
            );
            self.infer_cycles.set(self.infer_cycles.get() + cyc);
            self.infers.set(self.infers.get() + 1);
            out.push(u32::from(pred));
        }
        Ok(out)
    }
}

impl Learner for RtlLearner {
    fn train_batch(&mut self, x: &Mat, labels: &[u32]) -> BatchStats {
        let px = quantise_pixels(x, self.cfg.fixed.pixel);
        if self.error.borrow().is_some() {
            return BatchStats {
                loss_sum: 0.0,
                correct: None,
            };
        }
        match self.step(&px, labels) {
            Ok(s) => s,
            Err(e) => {
                self.fail(e);
                BatchStats {
                    loss_sum: 0.0,
                    correct: None,
                }
            }
        }
    }

    fn predict(&self, x: &Mat) -> Vec<u32> {
        let px = quantise_pixels(x, self.cfg.fixed.pixel);
        if self.error.borrow().is_some() {
            return vec![u32::MAX; px.rows];
        }
        match self.infer(&px) {
            Ok(p) => p,
            Err(e) => {
                self.fail(e);
                vec![u32::MAX; px.rows]
            }
        }
    }

    fn failure(&self) -> Option<String> {
        self.error()
    }

    fn set_lr_factor(&mut self, f: f32) {
        self.golden.set_lr_factor(f);
        if self.error.borrow().is_some() {
            return;
        }
        if let Err(e) = write_lr(self.bus.get_mut().as_mut(), &self.cfg, f) {
            self.fail(e);
        }
    }
}
