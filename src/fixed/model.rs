//! The DF training step and inference in fixed point: exactly what the hardware computes.
//!
//! Built only from the operators of [`super::ops`] and [`super::tables`], with the formats
//! of the config's `[fixed]` section. The data path, per minibatch (rows are (sample,
//! hypothesis) pairs as in the float model):
//!
//! 1. pixels are quantised on the host to `pixel` (half-up, saturating: 1.0 → max);
//! 2. input normalisation: S = Σ p² (exact), `(word, k)` = rsqrt table of S, x̂_0 = p·word
//!    requantised to `act` (the exponent k folded into the shift);
//! 3. layer 1: acc = Σ W x̂_0 + b (exact, `accumulator`), once per sample; per hypothesis
//!    z = acc + U[k] (exact); layers ≥ 2: z = Σ W x̂ + b;
//! 4. h = ReLU(z) requantised to `hidden`; S = Σ h² (exact); G = S · (1/d) requantised to
//!    `goodness`; x̂ = h · rsqrt(S) requantised to `act`;
//! 5. G̃ = G + collaborators' G (saturating adds in `goodness`);
//! 6. loss unit: N-pair: t = (G̃(k) − G̃(y) + m) · s requantised to `logit`, β from the exp
//!    table and one reciprocal ([`loss_beta_npair`]); hinge: β = [G̃(k) − G̃(y) + m > 0];
//!    β_y = −Σ β_k (exact);
//! 7. δ = β · h · (2/d) requantised to `delta`; DF-R/DF-O add (Σ_o δ_{l+1} M) · rsqrt(S_l)
//!    masked by h > 0, requantised to `delta`, saturating add;
//! 8. gradients ΔW = Σ_rows δ x̂ᵀ (exact, `update`); layer 1 first sums δ over hypotheses
//!    (x̂_0 is shared), ΔU[c] sums the rows of hypothesis c, Δb sums all rows;
//! 9. update: w −= round(ΔW · η/B) with `update_rounding`, saturating to the parameter's
//!    format. The update units (one LFSR lane per weight bank, R of them) walk W_1, b_1, W_2,
//!    b_2, …, U, each lane clocking once per parameter it updates; each W_l in the order its
//!    gradient tiles leave the R × C array, a column per cycle on all lanes
//!    ([`UpdateUnit::update_tiled`]), biases and U in address order on lane 0. That walk is the
//!    one place where the result depends on an ordering (stochastic rounding); every sum
//!    before it is exact and so independent of the array's tiling. Layer 1's per-sample error
//!    e = Σ_k δ_1 is saturated to `delta` before the weight-gradient GEMM (it is a PE operand).
//!
//! ε of the float model's normalisation is not modelled (1/‖h‖ comes from the table); a
//! zero vector normalises to zero.

use super::kernels::{gemm_exact, gemm_exact_into, rows_times_rows, GemmScratch, IMat};
use super::ops::{loss_beta_hinge, loss_beta_npair, lr_update, requant_wide, sat_to};
use super::tables::{ExpTable, RsqrtTable};
use super::vector::{requant_mul, Requant};
use super::walk::LaneWalk;
use super::{lane_seeds, LearningRate, Lfsr, QFormat, RecipConst, Rounding};
use crate::config::{Collaboration, Config, FixedPoint, Loss, Scheme};
use crate::float::df::{loss_coefficients, DfNet};
use crate::float::linalg::Mat;
use crate::float::{BatchStats, Learner};
use crate::hypotheses::{active_slots, every_class, training_hyps};
use crate::noise::activation::perturb_i64;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// Constants and tables derived from the config: exactly what the RTL generator emits.
#[derive(Clone, Debug)]
pub struct Units {
    pub f: FixedPoint,
    /// rsqrt ROM for sums of squared pixels (input frac 2·pixel.frac).
    pub rsqrt_pixel: RsqrtTable,
    /// rsqrt ROM for sums of squared hidden values (input frac 2·hidden.frac).
    pub rsqrt_hidden: RsqrtTable,
    pub exp: ExpTable,
    /// 1/d per layer (goodness).
    pub recip_d: Vec<RecipConst>,
    /// 2/d per layer, raw with `const_frac` fraction bits (δ scale).
    pub two_over_d: Vec<i64>,
    /// s, raw with `const_frac` fraction bits.
    pub scale: i64,
    /// m, raw in `goodness`.
    pub margin: i64,
    /// η/B as a constant multiplier.
    pub lr: LearningRate,
}

/// Why the fixed-point model cannot be built for a config.
#[derive(Debug, thiserror::Error)]
pub enum FixedError {
    #[error("the fixed-point model trains with plain SGD (what the hardware does), but the optimizer is `{0}`; use --optimizer sgd, or set optimizer = \"sgd\" in the learner's [training.<learner>] table")]
    Optimizer(String),
    #[error("FixedDf is the golden model of DF; `{0}` has a fixed-point model of its own (fixed::baselines::make_fixed_learner; `dfforge train --backend fixed --algorithm {0}`)")]
    Learner(String),
    #[error("fixed.rounding = \"stochastic\" is only supported for update_rounding; use \"truncate\" or \"half-up\"")]
    StochasticActivations,
    #[error("invalid fixed-point unit: {0}")]
    Unit(String),
}

fn unsigned(bits: u32, frac: u32) -> QFormat {
    QFormat {
        bits,
        frac,
        signed: false,
    }
}

impl Units {
    pub fn new(cfg: &Config) -> Result<Units, FixedError> {
        let f = cfg.fixed.clone();
        if f.rounding == Rounding::Stochastic {
            return Err(FixedError::StochasticActivations);
        }
        let unit = |e: &dyn std::fmt::Display| FixedError::Unit(e.to_string());
        let word = unsigned(f.rsqrt_frac + 2, f.rsqrt_frac);
        let sq = |frac: u32| unsigned(48, 2 * frac);
        let rsqrt_pixel =
            RsqrtTable::new(sq(f.pixel.frac), word, f.rsqrt_addr_bits).map_err(|e| unit(&e))?;
        let rsqrt_hidden =
            RsqrtTable::new(sq(f.hidden.frac), word, f.rsqrt_addr_bits).map_err(|e| unit(&e))?;
        let exp = ExpTable::new(
            f.logit,
            unsigned(f.exp_frac + 1, f.exp_frac),
            f.exp_addr_bits,
            f.exp_range,
        )
        .map_err(|e| unit(&e))?;
        let recip_d = cfg
            .network
            .hidden
            .iter()
            .map(|&d| RecipConst::new(d as u32, f.const_frac).map_err(|e| unit(&e)))
            .collect::<Result<Vec<_>, _>>()?;
        let two_over_d = cfg
            .network
            .hidden
            .iter()
            .map(|&d| f.constant(2.0 / d as f64))
            .collect();
        Ok(Units {
            scale: f.constant(cfg.algorithm.scale as f64),
            margin: f
                .goodness
                .from_f64(cfg.algorithm.margin as f64, Rounding::HalfUp),
            lr: lr_constant(cfg, 1.0),
            rsqrt_pixel,
            rsqrt_hidden,
            exp,
            recip_d,
            two_over_d,
            f,
        })
    }

    /// Normalisation unit: v · rsqrt(Σ v²) onto `act`. Returns (x̂, S, (word, k)).
    pub fn normalise(
        &self,
        v: &[i32],
        v_frac: u32,
        table: &RsqrtTable,
    ) -> (Vec<i32>, i64, (i64, i64)) {
        let mut out = vec![0; v.len()];
        let (s, parts) = self.normalise_into(v, v_frac, table, &mut out);
        (out, s, parts)
    }

    /// [`Units::normalise`] into `out` (as long as `v`); returns (S, (word, k)).
    #[inline(always)]
    pub fn normalise_into(
        &self,
        v: &[i32],
        v_frac: u32,
        table: &RsqrtTable,
        out: &mut [i32],
    ) -> (i64, (i64, i64)) {
        let s: i64 = v.iter().map(|&x| i64::from(x) * i64::from(x)).sum();
        let parts = table.rsqrt_parts(s);
        let frac = i64::from(v_frac) + i64::from(self.f.rsqrt_frac) + parts.1;
        if (0..=i64::from(u32::MAX)).contains(&frac) && parts.0.unsigned_abs() < 1 << 32 {
            // `scale_by_rsqrt_i64` with the requantiser built once for the row.
            let rq = Requant::new(frac as u32, self.f.act, self.f.rounding);
            for (o, &x) in out.iter_mut().zip(v) {
                *o = rq.apply_mul_small(i64::from(x), parts.0) as i32;
            }
        } else {
            for (o, &x) in out.iter_mut().zip(v) {
                *o = self.scale_by_rsqrt_i64(i64::from(x), v_frac, parts, self.f.act) as i32;
            }
        }
        (s, parts)
    }

    /// [`Units::scale_by_rsqrt`] on `i64` where exact (the usual case), the reference otherwise.
    #[inline]
    pub fn scale_by_rsqrt_i64(&self, x: i64, x_frac: u32, parts: (i64, i64), out: QFormat) -> i64 {
        let frac = i64::from(x_frac) + i64::from(self.f.rsqrt_frac) + parts.1;
        if (0..=i64::from(u32::MAX)).contains(&frac) {
            requant_mul(x, parts.0, frac as u32, out, self.f.rounding)
        } else {
            self.scale_by_rsqrt(i128::from(x), x_frac, parts, out)
        }
    }

    /// ReLU/requantise, goodness and normalisation of one layer's accumulators (`z_frac`
    /// fraction bits) for layer index `layer` (which selects the 1/d constant).
    pub fn activate(&self, z: &[i64], z_frac: u32, rows: usize, d: usize, layer: usize) -> FxLayer {
        let f = &self.f;
        let relu = Requant::new(z_frac, f.hidden, f.rounding);
        let rc = &self.recip_d[layer];
        let good_from = 2 * f.hidden.frac + rc.frac();
        let mut h = IMat::zeros(rows, d);
        let mut xhat = IMat::zeros(rows, d);
        let mut goodness = vec![0i64; rows];
        let mut rsqrt = vec![(0i64, 0i64); rows];
        // Rows are independent: a task takes enough of them to outweigh its start-up.
        let d1 = d.max(1);
        h.data
            .par_chunks_mut(d1)
            .zip(xhat.data.par_chunks_mut(d1))
            .zip(z.par_chunks(d1))
            .zip(goodness.par_iter_mut().zip(rsqrt.par_iter_mut()))
            .with_min_len((1 << 13) / d1 + 1)
            .for_each(|(((h, x), z), (g, rs))| {
                let (s, parts) = self.hidden_row(z, &relu, h, x);
                *g = requant_mul(s, rc.value(), good_from, f.goodness, f.rounding);
                *rs = parts;
            });
        FxLayer {
            h,
            xhat,
            goodness,
            rsqrt,
        }
    }

    /// One row of [`Units::activate`]: h = ReLU(z) requantised, then x̂ = normalised h;
    /// returns (S, rsqrt parts). Compiled with AVX-512 where the machine has it (its 64-bit
    /// multiplies, shifts and clamps vectorise the requantisers), the same arithmetic.
    fn hidden_row(
        &self,
        z: &[i64],
        relu: &Requant,
        h: &mut [i32],
        x: &mut [i32],
    ) -> (i64, (i64, i64)) {
        #[cfg(target_arch = "x86_64")]
        if super::vector::has_avx512_i64() {
            // SAFETY: the features were detected at run time.
            return unsafe { self.hidden_row_avx512(z, relu, h, x) };
        }
        self.hidden_row_plain(z, relu, h, x)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512dq,avx512vl")]
    unsafe fn hidden_row_avx512(
        &self,
        z: &[i64],
        relu: &Requant,
        h: &mut [i32],
        x: &mut [i32],
    ) -> (i64, (i64, i64)) {
        self.hidden_row_plain(z, relu, h, x)
    }

    /// Inlined into both callers, so the AVX-512 copy gets the wide instructions.
    #[inline(always)]
    fn hidden_row_plain(
        &self,
        z: &[i64],
        relu: &Requant,
        h: &mut [i32],
        x: &mut [i32],
    ) -> (i64, (i64, i64)) {
        for (o, &zv) in h.iter_mut().zip(z) {
            *o = relu.apply(zv.max(0)) as i32;
        }
        self.normalise_into(h, self.f.hidden.frac, &self.rsqrt_hidden, x)
    }

    /// `x · word · 2^-(rsqrt_frac + k)` from `x_frac` fraction bits onto `out`.
    pub fn scale_by_rsqrt(&self, x: i128, x_frac: u32, (word, k): (i64, i64), out: QFormat) -> i64 {
        let p = x * i128::from(word);
        let frac = i64::from(x_frac) + i64::from(self.f.rsqrt_frac) + k;
        if frac >= 0 {
            requant_wide(p, frac as u32, out, self.f.rounding, 0)
        } else {
            // A sum below 1 has k < 0: the product gains integer bits (exact left shift).
            let shifted = p.checked_shl((-frac) as u32).unwrap_or(i128::MAX);
            requant_wide(shifted, 0, out, self.f.rounding, 0)
        }
    }
}

/// η·factor/B as the update unit's constant multiplier ([`Config::lr_constant`]).
pub fn lr_constant(cfg: &Config, factor: f32) -> LearningRate {
    cfg.lr_constant(factor)
}

/// The local update units: w −= round(g · η/B), each with its own Galois LFSR clocked once
/// per parameter it updates (whatever the rounding mode). The engine has one unit per weight
/// bank (R, so a gradient tile drains a column per cycle); lane 0 also updates the biases and
/// U. The baselines use one lane.
#[derive(Clone, Debug)]
pub struct UpdateUnit {
    pub lanes: Vec<Lfsr>,
    pub lr: LearningRate,
    pub rounding: Rounding,
}

impl UpdateUnit {
    /// One lane (seeded `lfsr_seed`).
    pub fn new(f: &FixedPoint, lr: LearningRate) -> Result<UpdateUnit, FixedError> {
        UpdateUnit::with_lanes(f, lr, 1)
    }

    /// `n` lanes, seeded [`lane_seeds`]`(lfsr_seed, n)` (lane 0 with `lfsr_seed`).
    pub fn with_lanes(
        f: &FixedPoint,
        lr: LearningRate,
        n: usize,
    ) -> Result<UpdateUnit, FixedError> {
        let lanes = lane_seeds(f.lfsr_seed, n.max(1), f.lfsr_width)
            .into_iter()
            .map(|s| {
                Lfsr::with_default_taps(f.lfsr_width, s)
                    .map_err(|e| FixedError::Unit(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(UpdateUnit {
            lanes,
            lr,
            rounding: f.update_rounding,
        })
    }

    /// One parameter on lane 0: `w` in `fmt`, gradient `g` with `g_frac` fraction bits.
    pub fn update(&mut self, w: i64, g: i64, g_frac: u32, fmt: QFormat) -> i64 {
        self.update_lane(0, w, g, g_frac, fmt)
    }

    /// One parameter on lane `lane`.
    pub fn update_lane(&mut self, lane: usize, w: i64, g: i64, g_frac: u32, fmt: QFormat) -> i64 {
        let lfsr = &mut self.lanes[lane];
        let word = lfsr.next_bits(64);
        let lr_frac = match self.lr {
            LearningRate::Mul { frac, .. } => frac,
            LearningRate::Shift(s) => s,
        };
        let shift = (g_frac + lr_frac).saturating_sub(fmt.frac);
        let rnd = update_rnd(word, shift, lfsr.width());
        lr_update(w, g, g_frac, fmt, self.lr, self.rounding, rnd)
    }

    /// A tensor of 32-bit words, in order, on lane 0.
    pub fn update_words(&mut self, ws: &mut [i32], gs: &[i64], g_frac: u32, fmt: QFormat) {
        for (w, &g) in ws.iter_mut().zip(gs) {
            *w = self.update(i64::from(*w), g, g_frac, fmt) as i32;
        }
    }

    /// A `rows × cols` weight matrix (row-major `ws`, `gs`) in the engine's drain order:
    /// tiles of `tile_rows × tile_cols` (the array's R × C), tile rows outer, tile columns
    /// inner; within a tile one column per cycle, its elements on the lanes `bank(r, c)`
    /// (the weight bank each element lives in, all different within a column). Each lane
    /// therefore sees its elements tile by tile, column by column.
    #[allow(clippy::too_many_arguments)]
    pub fn update_tiled(
        &mut self,
        ws: &mut [i32],
        gs: &[i64],
        (rows, cols): (usize, usize),
        (tile_rows, tile_cols): (usize, usize),
        bank: impl Fn(usize, usize) -> usize,
        g_frac: u32,
        fmt: QFormat,
    ) {
        for r0 in (0..rows).step_by(tile_rows.max(1)) {
            for c0 in (0..cols).step_by(tile_cols.max(1)) {
                for c in c0..(c0 + tile_cols).min(cols) {
                    for r in r0..(r0 + tile_rows).min(rows) {
                        let i = r * cols + c;
                        let lane = bank(r, c);
                        ws[i] = self.update_lane(lane, i64::from(ws[i]), gs[i], g_frac, fmt) as i32;
                    }
                }
            }
        }
    }

    /// A tensor of wide words (biases), in order.
    pub fn update_wide(&mut self, ws: &mut [i64], gs: &[i64], g_frac: u32, fmt: QFormat) {
        for (w, &g) in ws.iter_mut().zip(gs) {
            *w = self.update(*w, g, g_frac, fmt);
        }
    }
}

/// One layer's forward results over all rows.
#[derive(Clone, Debug)]
pub struct FxLayer {
    /// h in `hidden`.
    pub h: IMat,
    /// x̂ in `act`.
    pub xhat: IMat,
    /// G in `goodness`.
    pub goodness: Vec<i64>,
    /// rsqrt(Σ h²) as (word, k), used by the DF-R/DF-O feedback.
    pub rsqrt: Vec<(i64, i64)>,
}

#[derive(Clone, Debug)]
pub struct FxForward {
    pub k: usize,
    pub hyps: Vec<u32>,
    /// x̂_0 in `act`, one row per sample.
    pub x0: IMat,
    pub layers: Vec<FxLayer>,
}

/// Everything one training step computed, for co-simulation and tests.
#[derive(Clone, Debug)]
pub struct StepTrace {
    pub forward: FxForward,
    /// β per layer per row, in `beta`.
    pub beta: Vec<Vec<i64>>,
    /// δ per layer (after feedback), in `delta`.
    pub delta: Vec<IMat>,
}

/// The parameters, raw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FxParams {
    /// `w[l]` is d_{l+1} × d_l in `weight`.
    pub w: Vec<IMat>,
    /// In `bias`.
    pub b: Vec<Vec<i64>>,
    /// C × d_1 in `centroid`.
    pub u: IMat,
}

pub struct FixedDf {
    /// Activation noise of the forward passes, set by the training loop per regime.
    act_noise: Option<crate::noise::activation::Perturber>,
    cfg: Config,
    pub units: Units,
    pub params: FxParams,
    /// DF-R's fixed feedback matrices in `weight` (same shapes as `w`).
    feedback: Vec<IMat>,
    updater: UpdateUnit,
    rng: ChaCha8Rng,
    /// The update walk of each W_l, built on the first step from the bank map (which the
    /// config fixes) and reused: see [`super::walk`].
    walks: Vec<Option<LaneWalk>>,
    /// Each W_l's gradient and the GEMM's packing buffers, kept across steps (a step
    /// allocates none of them once they have grown).
    grads_w: Vec<Vec<i64>>,
    scratch: GemmScratch,
}

/// Raw weight words as the weight-memory noise sites see them.
pub fn fixed_weights(w: &mut [IMat], fmt: QFormat) -> Vec<crate::noise::weights::WeightsMut<'_>> {
    // Raw words live in i32.
    let word = crate::noise::weights::Word::new(fmt.bits.min(32), fmt.frac, fmt.signed);
    w.iter_mut()
        .map(|m| crate::noise::weights::WeightsMut::Fixed(&mut m.data, word))
        .collect()
}

/// Quantise a float matrix onto a format (half-up, saturating).
pub fn quantise_mat(m: &Mat, fmt: QFormat) -> IMat {
    IMat {
        rows: m.rows,
        cols: m.cols,
        data: m
            .data
            .iter()
            .map(|&v| fmt.from_f64(v as f64, Rounding::HalfUp) as i32)
            .collect(),
    }
}

/// Host-side pixel quantisation.
pub fn quantise_pixels(x: &Mat, fmt: QFormat) -> IMat {
    quantise_mat(x, fmt)
}

impl FixedDf {
    /// Start from the float model's initial parameters (same seed), quantised.
    pub fn new(cfg: &Config) -> Result<FixedDf, FixedError> {
        if cfg.training.optimizer != crate::config::Optimizer::Sgd {
            return Err(FixedError::Optimizer(cfg.training.optimizer.to_string()));
        }
        if cfg.algorithm.name != crate::config::Learner::Df {
            return Err(FixedError::Learner(cfg.algorithm.name.to_string()));
        }
        let units = Units::new(cfg)?;
        let float = DfNet::new(cfg);
        let f = &units.f;
        let params = FxParams {
            w: float
                .params
                .w
                .iter()
                .map(|m| quantise_mat(m, f.weight))
                .collect(),
            b: float
                .params
                .b
                .iter()
                .map(|b| {
                    b.iter()
                        .map(|&v| f.bias.from_f64(v as f64, Rounding::HalfUp))
                        .collect()
                })
                .collect(),
            u: quantise_mat(&float.params.u, f.centroid),
        };
        let feedback = float
            .feedback
            .iter()
            .map(|m| quantise_mat(m, f.weight))
            .collect();
        let updater = UpdateUnit::with_lanes(f, units.lr, cfg.hardware.array_rows)?;
        Ok(FixedDf {
            act_noise: None,
            cfg: cfg.clone(),
            units,
            params,
            feedback,
            updater,
            rng: ChaCha8Rng::seed_from_u64(cfg.training.seed.wrapping_add(0x5eed)),
            walks: Vec::new(),
            grads_w: Vec::new(),
            scratch: GemmScratch::default(),
        })
    }

    fn classes(&self) -> usize {
        self.cfg.network.classes
    }

    /// The forward pass of every layer for the given hypotheses (`pixels` raw in `pixel`).
    pub fn forward(&self, pixels: &IMat, k: usize, hyps: &[u32]) -> FxForward {
        let u = &self.units;
        let f = &u.f;
        let p = &self.params;
        let acc_f = f.accumulator.frac;
        let mut x0 = IMat::zeros(pixels.rows, pixels.cols);
        for r in 0..pixels.rows {
            u.normalise_into(pixels.row(r), f.pixel.frac, &u.rsqrt_pixel, x0.row_mut(r));
        }
        // Layer 1: the sample's product once, a centroid per hypothesis.
        let d1 = p.w[0].rows;
        let a1 = rows_times_rows(&x0, &p.w[0]);
        let bias_shift = acc_f - f.bias.frac;
        let cen_shift = acc_f - f.centroid.frac;
        let mut z = vec![0i64; hyps.len() * d1];
        z.par_chunks_mut(d1.max(1))
            .zip(hyps.par_iter())
            .enumerate()
            .with_min_len((1 << 13) / d1.max(1) + 1)
            .for_each(|(r, (z, &h))| {
                let (a, cen) = (&a1[(r / k) * d1..][..d1], p.u.row(h as usize));
                for (((z, &a), &b), &c) in z.iter_mut().zip(a).zip(&p.b[0]).zip(cen) {
                    *z = a + (b << bias_shift) + (i64::from(c) << cen_shift);
                }
            });
        perturb_i64(&self.act_noise, &mut z);
        let mut layers = vec![u.activate(&z, acc_f, hyps.len(), d1, 0)];
        for l in 1..p.w.len() {
            let prev = &layers[l - 1].xhat;
            let d = p.w[l].rows;
            let mut z = rows_times_rows(prev, &p.w[l]);
            z.par_chunks_mut(d.max(1))
                .with_min_len((1 << 13) / d.max(1) + 1)
                .for_each(|z| {
                    for (z, &b) in z.iter_mut().zip(&p.b[l]) {
                        *z += b << bias_shift;
                    }
                });
            perturb_i64(&self.act_noise, &mut z);
            layers.push(u.activate(&z, acc_f, prev.rows, d, l));
        }
        FxForward {
            k,
            hyps: hyps.to_vec(),
            x0,
            layers,
        }
    }

    /// G̃ per layer per row (saturating adds of the collaborators' goodness).
    pub fn collaborative_goodness(&self, fwd: &FxForward) -> Vec<Vec<i64>> {
        let nl = fwd.layers.len();
        let gf = self.units.f.goodness;
        (0..nl)
            .map(|l| {
                (0..fwd.hyps.len())
                    .map(|r| {
                        let mut g = i128::from(fwd.layers[l].goodness[r]);
                        for t in 0..nl {
                            let include = match self.cfg.algorithm.collaboration {
                                Collaboration::None => false,
                                Collaboration::Previous => t < l,
                                Collaboration::All => t != l,
                            };
                            if include {
                                g = i128::from(sat_to(
                                    g + i128::from(fwd.layers[t].goodness[r]),
                                    gf,
                                ));
                            }
                        }
                        g as i64
                    })
                    .collect()
            })
            .collect()
    }

    /// Negative slots of one sample's layer scores (same rule as the float model).
    fn active_slots(&self, gt: &[i64]) -> Vec<bool> {
        active_slots(&self.cfg.algorithm, gt, |a, b| a.cmp(b))
    }

    /// Loss unit for one sample and layer: β per slot in `beta` (slot 0 is β_y).
    pub fn loss_unit(&self, gt: &[i64], active: &[bool]) -> Vec<i64> {
        let u = &self.units;
        let f = &u.f;
        let diff_fmt = QFormat {
            bits: f.goodness.bits + 1,
            frac: f.goodness.frac,
            signed: true,
        };
        let diffs: Vec<i64> = (1..gt.len())
            .filter(|&j| active[j])
            .map(|j| {
                sat_to(
                    i128::from(gt[j]) - i128::from(gt[0]) + i128::from(u.margin),
                    diff_fmt,
                )
            })
            .collect();
        let betas = match self.cfg.algorithm.loss {
            Loss::Npair => {
                let t: Vec<i64> = diffs
                    .iter()
                    .map(|&d| {
                        requant_wide(
                            i128::from(d) * i128::from(u.scale),
                            f.goodness.frac + f.const_frac,
                            f.logit,
                            f.rounding,
                            0,
                        )
                    })
                    .collect();
                loss_beta_npair(&t, &u.exp, f.recip_frac, f.beta)
            }
            Loss::Hinge => loss_beta_hinge(&diffs, f.beta),
        };
        let mut out = vec![0i64; gt.len()];
        let mut it = betas.into_iter();
        for j in 1..gt.len() {
            if active[j] {
                out[j] = it.next().unwrap_or(0);
            }
        }
        out[0] = -out[1..].iter().sum::<i64>();
        out
    }

    /// Loss coefficients and local errors of every layer (the backward half of a step).
    pub fn errors(
        &self,
        fwd: &FxForward,
        bsz: usize,
    ) -> (Vec<Vec<i64>>, Vec<IMat>, f64, Option<usize>) {
        let u = &self.units;
        let f = &u.f;
        let k = fwd.k;
        let nl = fwd.layers.len();
        let gtilde = self.collaborative_goodness(fwd);
        let mut loss = 0.0f64;
        let mut betas = Vec::with_capacity(nl);
        let mut local = Vec::with_capacity(nl);
        let from = f.beta.frac + f.hidden.frac + f.const_frac;
        let rq = Requant::new(from, f.delta, f.rounding);
        for (l, act) in fwd.layers.iter().enumerate() {
            let d = act.h.cols;
            let mut beta = vec![0i64; fwd.hyps.len()];
            let mut delta = IMat::zeros(act.h.rows, d);
            // Samples are independent: each task takes whole samples (k rows each).
            let per_sample = (k * d).max(1);
            let losses: Vec<f64> = beta
                .par_chunks_mut(k.max(1))
                .zip(delta.data.par_chunks_mut(per_sample))
                .zip(act.h.data.par_chunks(per_sample))
                .zip(gtilde[l].par_chunks(k.max(1)))
                .take(bsz)
                .with_min_len((1 << 13) / per_sample + 1)
                .map(|(((beta, delta), h), gt)| {
                    let active = self.active_slots(gt);
                    // The reported loss uses the float formula on the dequantised scores.
                    let gtf: Vec<f32> = gt.iter().map(|&g| f.goodness.to_f64(g) as f32).collect();
                    let loss = loss_coefficients(&self.cfg.algorithm, &gtf, &active).0;
                    let b = self.loss_unit(gt, &active);
                    for (j, &bj) in b.iter().enumerate() {
                        beta[j] = bj;
                        if bj == 0 {
                            continue;
                        }
                        let c = i128::from(bj) * i128::from(u.two_over_d[l]);
                        let out = delta[j * d..(j + 1) * d].iter_mut();
                        let hs = &h[j * d..(j + 1) * d];
                        match i64::try_from(c) {
                            // h is an i32 word: the product fits i64 (`apply_mul_small`).
                            Ok(c) if c.unsigned_abs() < 1 << 32 => {
                                out.zip(hs).for_each(|(o, &hv)| {
                                    *o = rq.apply_mul_small(i64::from(hv), c) as i32
                                })
                            }
                            Ok(c) => out.zip(hs).for_each(|(o, &hv)| {
                                *o = requant_mul(c, i64::from(hv), from, f.delta, f.rounding) as i32
                            }),
                            Err(_) => out.zip(hs).for_each(|(o, &hv)| {
                                *o = requant_wide(c * i128::from(hv), from, f.delta, f.rounding, 0)
                                    as i32
                            }),
                        }
                    }
                    loss
                })
                .collect();
            // Summed in sample order, as before the loop ran in parallel (float sums depend on
            // their order).
            for v in losses {
                loss += v;
            }
            betas.push(beta);
            local.push(delta);
        }
        // Plain DF needs no copy: its errors are the local ones.
        let mut delta = if self.cfg.algorithm.scheme == Scheme::Df {
            std::mem::take(&mut local)
        } else {
            local.clone()
        };
        if self.cfg.algorithm.scheme != Scheme::Df {
            for l in 0..nl.saturating_sub(1) {
                let m = match self.cfg.algorithm.scheme {
                    Scheme::DfO => &self.params.w[l + 1],
                    _ => &self.feedback[l + 1],
                };
                let back = gemm_exact(&local[l + 1], false, m, false);
                let act = &fwd.layers[l];
                let d = act.h.cols;
                for r in 0..act.h.rows {
                    for j in 0..d {
                        if act.h.data[r * d + j] > 0 {
                            let fb = u.scale_by_rsqrt_i64(
                                back[r * d + j],
                                f.delta.frac + f.weight.frac,
                                act.rsqrt[r],
                                f.delta,
                            );
                            let cur = &mut delta[l].data[r * d + j];
                            *cur = sat_to(i128::from(*cur) + i128::from(fb), f.delta) as i32;
                        }
                    }
                }
            }
        }
        let correct = (k == self.classes()).then(|| {
            let s = self.scores(fwd);
            (0..bsz)
                .filter(|&i| argmax_i64(&s[i * k..(i + 1) * k]) == 0)
                .count()
        });
        (betas, delta, loss, correct)
    }

    fn eval_layers(&self) -> Vec<usize> {
        self.cfg.eval_layer_indices()
    }

    /// Σ_{l∈S} G_l per row (exact).
    pub fn scores(&self, fwd: &FxForward) -> Vec<i64> {
        let mut s = vec![0i64; fwd.hyps.len()];
        for l in self.eval_layers() {
            for (a, b) in s.iter_mut().zip(&fwd.layers[l].goodness) {
                *a += b;
            }
        }
        s
    }

    /// One training step on raw pixels; returns the trace and stats.
    pub fn step(&mut self, pixels: &IMat, labels: &[u32]) -> (StepTrace, BatchStats) {
        let (k, hyps) = training_hyps(&self.cfg.algorithm, self.classes(), &mut self.rng, labels);
        let fwd = self.forward(pixels, k, &hyps);
        let (beta, delta, loss, correct) = self.errors(&fwd, labels.len());
        self.update(&fwd, &delta, labels.len());
        (
            StepTrace {
                forward: fwd,
                beta,
                delta,
            },
            BatchStats {
                loss_sum: loss,
                correct,
            },
        )
    }

    /// DF-R's fixed feedback matrices B_l in `weight` (shapes of W_l; B_0 is unused).
    pub fn feedback(&self) -> &[IMat] {
        &self.feedback
    }

    /// Weight-gradient GEMMs and the update unit's walk.
    fn update(&mut self, fwd: &FxForward, delta: &[IMat], bsz: usize) {
        let k = fwd.k;
        let nl = delta.len();
        let d1 = delta[0].cols;
        // Layer 1: x̂_0 is shared by the hypotheses, so sum their errors first.
        let mut e = IMat::zeros(bsz, d1);
        let mut gu = vec![0i64; self.params.u.data.len()];
        for r in 0..delta[0].rows {
            let (s, hyp) = (r / k, fwd.hyps[r] as usize);
            for o in 0..d1 {
                let v = delta[0].data[r * d1 + o];
                e.data[s * d1 + o] += v;
                gu[hyp * d1 + o] += i64::from(v);
            }
        }
        // e enters the array as an operand of the PE's `a` port, so it is saturated to
        // `delta` first (what the engine's E buffer does on its way to the array); the bias
        // gradient uses the exact sums.
        let grads_b0 = column_sums(&e);
        for v in e.data.iter_mut() {
            *v = sat_to(i128::from(*v), self.units.f.delta) as i32;
        }
        let mut grads_w = std::mem::take(&mut self.grads_w);
        grads_w.resize_with(nl, Vec::new);
        let mut grads_b = Vec::with_capacity(nl);
        gemm_exact_into(&e, true, &fwd.x0, false, &mut grads_w[0], &mut self.scratch);
        grads_b.push(grads_b0);
        for l in 1..nl {
            // δᵀ · x̂ (the GEMM packs the operands' columns itself: no transposed copies).
            let x = &fwd.layers[l - 1].xhat;
            gemm_exact_into(
                &delta[l],
                true,
                x,
                false,
                &mut grads_w[l],
                &mut self.scratch,
            );
            grads_b.push(column_sums(&delta[l]));
        }
        let f = &self.units.f;
        let upd = &mut self.updater;
        let tile = (self.cfg.hardware.array_rows, self.cfg.hardware.array_cols);
        self.walks.resize(nl.max(self.walks.len()), None);
        for l in 0..nl {
            // W_l[o][k]'s bank in the engine's memory map; each bank has its own lane.
            let banking = crate::arch::memmap::weight_banking(&self.cfg, l);
            let bank = |o: usize, k: usize| banking.bank_word(o, k).0;
            let shape = (self.params.w[l].rows, self.params.w[l].cols);
            // The same walk as `upd.update_tiled(w, g, shape, tile, bank, ..)`, lanes in
            // parallel; the walk depends only on the shape, the tile and `bank`.
            let walk = match &mut self.walks[l] {
                Some(w) if w.shape == shape && w.tile == tile => w,
                slot => slot.insert(LaneWalk::tiled(shape, tile, bank, upd.lanes.len())),
            };
            upd.update_walk(
                &mut self.params.w[l].data,
                &grads_w[l],
                walk,
                f.update.frac,
                f.weight,
            );
            upd.update_wide(&mut self.params.b[l], &grads_b[l], f.delta.frac, f.bias);
        }
        upd.update_words(&mut self.params.u.data, &gu, f.delta.frac, f.centroid);
        self.grads_w = grads_w;
    }

    /// Predicted class per row of raw pixels.
    pub fn predict_raw(&self, pixels: &IMat) -> Vec<u32> {
        let c = self.classes();
        let hyps = every_class(pixels.rows, c);
        let fwd = self.forward(pixels, c, &hyps);
        let s = self.scores(&fwd);
        (0..pixels.rows)
            .map(|i| argmax_i64(&s[i * c..(i + 1) * c]) as u32)
            .collect()
    }
}

/// The stochastic-rounding word of the update unit: the LFSR word fills the top of the
/// `shift` dropped bits, so rounding stays unbiased when more bits are dropped than the LFSR
/// has (the RTL's `update` unit concatenates the same way).
pub fn update_rnd(word: u64, shift: u32, width: u32) -> u64 {
    if shift > width {
        word << (shift - width).min(63)
    } else {
        word
    }
}

fn column_sums(m: &IMat) -> Vec<i64> {
    let mut out = vec![0i64; m.cols];
    for r in 0..m.rows {
        for (o, &v) in out.iter_mut().zip(m.row(r)) {
            *o += i64::from(v);
        }
    }
    out
}

/// Largest value's index; ties to the lowest (the hardware's comparator tree does the same).
pub fn argmax_i64(v: &[i64]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

impl Learner for FixedDf {
    fn activation_noise(&mut self) -> Option<&mut Option<crate::noise::activation::Perturber>> {
        Some(&mut self.act_noise)
    }

    fn weights_mut(&mut self) -> Vec<crate::noise::weights::WeightsMut<'_>> {
        fixed_weights(&mut self.params.w, self.units.f.weight)
    }

    fn train_batch(&mut self, x: &Mat, labels: &[u32]) -> BatchStats {
        let px = quantise_pixels(x, self.units.f.pixel);
        self.step(&px, labels).1
    }

    fn predict(&self, x: &Mat) -> Vec<u32> {
        self.predict_raw(&quantise_pixels(x, self.units.f.pixel))
    }

    fn set_lr_factor(&mut self, f: f32) {
        // The host rewrites the η/B register between steps (a "set hyper-parameters" command).
        self.updater.lr = lr_constant(&self.cfg, f);
    }
}
