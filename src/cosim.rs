//! System co-simulation (DESIGN.md §4 step 3): train N minibatches through the RTL engine and
//! the fixed-point golden model side by side, and compare every weight, bias, centroid,
//! goodness, β and a prediction after every step. Also the seeded random configs the
//! co-simulation matrix runs on, and the engine's ideal-MAC count for PE utilisation.

use crate::arch::abi::{RUN_INFER, RUN_TRAIN};
use crate::arch::Arch;
use crate::config::{Collaboration, Config, Loss, Negatives, Optimizer, Scheme};
pub use crate::driver::check::{Checker, Mismatch};
use crate::driver::{self, Bus};
use crate::fixed::kernels::IMat;
use crate::fixed::model::FixedDf;
use crate::fixed::{QFormat, Rounding};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

#[derive(Clone, Debug, Default, Serialize)]
pub struct CosimReport {
    pub steps: usize,
    pub values_compared: u64,
    pub mismatches: u64,
    /// Engine cycles of all training runs.
    pub cycles: u64,
    pub cycles_per_step: f64,
    pub cycles_per_sample: f64,
    /// Ideal MACs of the training steps / (R·C · cycles).
    pub pe_utilisation: f64,
    /// Cycles in which the array received operands.
    pub array_cycles: u64,
    pub first_mismatch: Option<Mismatch>,
    pub waveform: Option<String>,
    /// The schedule formula's cycles for the same steps ([`crate::arch::schedule::predicted_cycles`]).
    pub predicted_cycles: u64,
}

/// A seeded stream of minibatches of raw pixels (mostly random, sometimes all zero or
/// saturated rows: the normaliser's edge cases) and labels.
pub struct RandomBatches {
    rng: ChaCha8Rng,
    pixel: QFormat,
    dim: usize,
    classes: usize,
}

impl RandomBatches {
    pub fn new(cfg: &Config, seed: u64) -> RandomBatches {
        RandomBatches {
            rng: ChaCha8Rng::seed_from_u64(seed),
            pixel: cfg.fixed.pixel,
            dim: cfg.network.input,
            classes: cfg.network.classes,
        }
    }
    pub fn next(&mut self, n: usize) -> (IMat, Vec<u32>) {
        let max = self.pixel.max();
        let mut px = IMat::zeros(n, self.dim);
        for r in 0..n {
            let kind = self.rng.gen_range(0..10);
            for v in px.row_mut(r) {
                *v = match kind {
                    0 => 0,
                    1 => max as i32,
                    _ => self.rng.gen_range(0..=max) as i32,
                };
            }
        }
        let labels = (0..n)
            .map(|_| self.rng.gen_range(0..self.classes as u32))
            .collect();
        (px, labels)
    }
}

/// Train `steps` minibatches of `batches` through `bus` and `fx` side by side. Stops at the
/// first step with a difference.
pub fn run(
    cfg: &Config,
    fx: &mut FixedDf,
    bus: &mut dyn Bus,
    batches: &mut dyn FnMut(usize) -> (IMat, Vec<u32>),
    steps: usize,
) -> anyhow::Result<CosimReport> {
    let arch = Arch::new(cfg)?;
    driver::load_params(bus, &arch, &fx.params)?;
    driver::load_feedback(bus, &arch, fx.feedback())?;
    // The golden model's learning rate, not the bitstream's reset value.
    driver::write_lr(bus, cfg, 1.0)?;
    let mut rep = CosimReport::default();
    let mut chk = Checker::default();
    let mut macs = 0u64;
    let mut samples = 0usize;
    let c0 = driver::read_counters(bus)?;
    for step in 0..steps {
        let (px, labels) = batches(step);
        let n = labels.len();
        let (trace, _) = fx.step(&px, &labels);
        driver::write_batch(bus, &arch, &px, Some(&trace.forward.hyps))?;
        let predicted = driver::expected_cycles(&arch, n, false);
        bus.expect_cycles(predicted);
        let (status, _, cyc) = bus.run(RUN_TRAIN)?;
        anyhow::ensure!(
            status == 0,
            "engine reported status {status} for a training step"
        );
        rep.cycles += cyc;
        rep.predicted_cycles += predicted;
        macs += crate::arch::schedule::ideal_macs(&arch, n, false);
        samples += n;
        let rows = trace.forward.hyps.len();
        let g = driver::read_goodness(bus, &arch, rows)?;
        for (l, gl) in g.iter().enumerate() {
            chk.vec(
                step,
                &format!("G{}", l + 1),
                Some(l + 1),
                1,
                gl,
                &trace.forward.layers[l].goodness,
            );
        }
        let beta = driver::read_beta(bus, &arch, rows)?;
        for (l, bl) in beta.iter().enumerate() {
            chk.vec(
                step,
                &format!("beta{}", l + 1),
                Some(l + 1),
                1,
                bl,
                &trace.beta[l],
            );
        }
        let p = driver::read_params(bus, &arch)?;
        chk.params(step, &p, &fx.params);
        // One inference with the updated parameters.
        let one = IMat {
            rows: 1,
            cols: px.cols,
            data: px.row(0).to_vec(),
        };
        driver::write_batch(bus, &arch, &one, None)?;
        bus.expect_cycles(driver::expected_cycles(&arch, 1, true));
        let (st, pred, _) = bus.run(RUN_INFER)?;
        anyhow::ensure!(st == 0, "engine reported status {st} for an inference");
        let want = fx.predict_raw(&one)[0];
        chk.vec(
            step,
            "prediction",
            None,
            1,
            &[i64::from(pred)],
            &[i64::from(want)],
        );
        rep.steps = step + 1;
        if chk.first.is_some() {
            break;
        }
    }
    let c1 = driver::read_counters(bus)?;
    rep.values_compared = chk.compared;
    rep.mismatches = chk.mismatches;
    rep.first_mismatch = chk.first;
    rep.array_cycles = c1[2].saturating_sub(c0[2]);
    if rep.steps > 0 {
        rep.cycles_per_step = rep.cycles as f64 / rep.steps as f64;
        rep.cycles_per_sample = rep.cycles as f64 / samples.max(1) as f64;
        rep.pe_utilisation =
            macs as f64 / ((arch.rows * arch.cols) as f64 * rep.cycles.max(1) as f64);
    }
    Ok(rep)
}

fn q(bits: u32, frac: u32, signed: bool) -> QFormat {
    QFormat { bits, frac, signed }
}

/// A seeded random small config for the co-simulation matrix. Covers array shapes (square,
/// non-square, 1×N, N×1), layer widths that are not multiples of the array, 1–3 layers,
/// every negatives mode, every collaboration mode, N-pair and hinge, and three sets of
/// number formats (the default, a narrow truncating one, a wide one). `i` steers the
/// choices: configs 0–17 cover the 18 combinations of collaboration (i mod 3), negatives
/// (i div 3 mod 3) and loss (i div 9 mod 2).
pub fn random_config(seed: u64, i: usize) -> Config {
    let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_mul(0x9e37_79b9).wrapping_add(i as u64));
    let mut c = Config::builtin();
    c.training.optimizer = Optimizer::Sgd;
    let shapes = [
        (2, 2),
        (3, 2),
        (1, 4),
        (2, 3),
        (4, 1),
        (3, 3),
        (1, 1),
        (2, 5),
    ];
    let (r, cc) = shapes[(i + rng.gen_range(0..2)) % shapes.len()];
    c.hardware.array_rows = r;
    c.hardware.array_cols = cc;
    c.network.classes = rng.gen_range(3..=6);
    c.network.input = rng.gen_range(5..=14);
    // A Latin square over (format set and collaboration, negatives): every scheme meets every
    // format set, collaboration and negatives mode, and i = 0..5 already covers all three.
    // (A one-layer DF-R/DF-O net has nothing to feed back, which is a case too.)
    let scheme = [Scheme::Df, Scheme::DfR, Scheme::DfO][(i + i / 3) % 3];
    let nl = 1 + (i + rng.gen_range(0..3)) % 3;
    c.network.hidden = (0..nl).map(|_| rng.gen_range(3..=11)).collect();
    c.training.batch = rng.gen_range(1..=4);
    c.training.learning_rate = [5.0, 20.0, 60.0][rng.gen_range(0..3)];
    let a = &mut c.algorithm;
    a.scheme = scheme;
    a.negatives = [Negatives::All, Negatives::Random, Negatives::Hard][(i / 3) % 3];
    a.negatives_count = rng.gen_range(1..c.network.classes);
    a.collaboration = [
        Collaboration::None,
        Collaboration::Previous,
        Collaboration::All,
    ][i % 3];
    a.loss = if (i / 9).is_multiple_of(2) {
        Loss::Npair
    } else {
        Loss::Hinge
    };
    a.margin = [0.05, 0.2, 0.0][rng.gen_range(0..3)];
    a.scale = [40.0, 10.0][rng.gen_range(0..2)];
    if nl > 1 && rng.gen_bool(0.3) {
        a.eval_layers = vec![nl];
    }
    let f = &mut c.fixed;
    match i % 3 {
        1 => {
            f.weight = q(14, 10, true);
            f.act = q(10, 10, false);
            f.accumulator = q(40, 20, true);
            f.bias = q(14, 10, true);
            f.centroid = q(14, 10, true);
            f.hidden = q(12, 8, false);
            f.goodness = q(16, 10, false);
            f.delta = q(16, 18, true);
            f.update = q(44, 28, true);
            f.rounding = Rounding::Truncate;
            f.rsqrt_addr_bits = 8;
            f.rsqrt_frac = 12;
            f.lfsr_width = 16;
            f.lfsr_seed = 0xace1;
        }
        2 => {
            f.weight = q(18, 14, true);
            f.bias = q(18, 14, true);
            f.centroid = q(18, 14, true);
            f.accumulator = q(48, 26, true);
            f.act = q(12, 12, false);
            f.update_rounding = Rounding::HalfUp;
        }
        _ => {}
    }
    // Hinge's β_y = −(number of active negatives) needs integer bits.
    if c.algorithm.loss == Loss::Hinge {
        c.fixed.beta.frac = c.fixed.beta.bits - 6;
    }
    c
}
