//! Forward-Forward and backprop in fixed point, at the same widths as DF, built from the same
//! units (normalisation, goodness, δ scale, exp table, one reciprocal, update walk), so that
//! accuracy and robustness can be compared at equal bit widths.
//!
//! FF: the label's one-hot code overwrites the first C pixels (1.0 saturates to the pixel
//! format's max); each layer is the DF layer (ReLU, goodness, normalisation) with the softplus
//! loss; its coefficient σ(±(G − θ)) comes from the exp table and one reciprocal.
//!
//! BP: hidden layers feed their `hidden` activations (not normalised, as in the float model)
//! to the next MAC, so that accumulator has weight.frac + hidden.frac fraction bits; the softmax
//! head uses the exp table and one reciprocal per sample; errors are carried in `beta` (whose
//! range, ±2 by default, fits backprop's errors; DF's `delta` is scaled by 2/d and far smaller),
//! gradients are exact.

use super::kernels::{gemm_exact, rows_times_rows, IMat};
use super::model::{
    argmax_i64, fixed_weights, lr_constant, quantise_mat, quantise_pixels, FixedError, Units,
    UpdateUnit,
};
use super::ops::{requant_wide, sat_to};
use super::{QFormat, Rounding};
use crate::config::Config;
use crate::float::ff::softplus;
use crate::float::linalg::Mat;
use crate::float::{BatchStats, Learner};
use crate::noise::activation::perturb_i64;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// σ(u) = 1/(1 + e^{−u}) for a goodness difference u, raw in `out`: the exp table gives
/// E = e^{−|u|} ≤ 1, and one reciprocal R = 2^F/(1 + E) gives σ = R (u ≥ 0) or E·R (u < 0).
fn sigmoid(units: &Units, u_goodness: i64, out: QFormat) -> i64 {
    let f = &units.f;
    // Move the goodness difference onto the exp table's input bus.
    let u = requant_wide(
        i128::from(u_goodness),
        f.goodness.frac,
        f.logit,
        f.rounding,
        0,
    );
    let one = 1i128 << f.exp_frac;
    let e = i128::from(units.exp.lookup(-u.abs()));
    let num = if u >= 0 { one } else { e };
    let r = (1i128 << f.recip_frac) / (one + e);
    requant_wide(num * r, f.recip_frac, out, Rounding::Truncate, 0)
}

/// Softmax of raw logits (in `logit`) onto `out`, one reciprocal per sample.
fn softmax(units: &Units, t: &[i64], out: QFormat) -> Vec<i64> {
    let f = &units.f;
    let m = t.iter().copied().max().unwrap_or(0);
    let e: Vec<i128> = t
        .iter()
        .map(|&x| i128::from(units.exp.lookup(x - m)))
        .collect();
    let s: i128 = e.iter().sum::<i128>().max(1);
    let r = (1i128 << f.recip_frac) / s;
    e.iter()
        .map(|&ek| requant_wide(ek * r, f.recip_frac, out, Rounding::Truncate, 0))
        .collect()
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

fn add_bias(z: &mut [i64], b: &[i64], shift: u32) {
    let d = b.len();
    for (i, v) in z.iter_mut().enumerate() {
        *v += b[i % d] << shift;
    }
}

/// Forward-Forward in fixed point.
pub struct FixedFf {
    /// Activation noise of the forward passes, set by the training loop per regime.
    act_noise: Option<crate::noise::activation::Perturber>,
    cfg: Config,
    units: Units,
    pub w: Vec<IMat>,
    pub b: Vec<Vec<i64>>,
    updater: UpdateUnit,
    rng: ChaCha8Rng,
}

impl FixedFf {
    pub fn new(cfg: &Config) -> Result<FixedFf, FixedError> {
        check_sgd(cfg)?;
        let units = Units::new(cfg)?;
        let float = crate::float::ff::FfNet::new(cfg);
        let f = &units.f;
        Ok(FixedFf {
            act_noise: None,
            w: float.w.iter().map(|m| quantise_mat(m, f.weight)).collect(),
            b: float.b.iter().map(|b| quantise_vec(b, f.bias)).collect(),
            updater: UpdateUnit::new(f, units.lr)?,
            rng: ChaCha8Rng::seed_from_u64(cfg.training.seed.wrapping_add(0x5eed)),
            cfg: cfg.clone(),
            units,
        })
    }

    fn embed(&self, px: &IMat, labels: &[u32]) -> IMat {
        let mut out = px.clone();
        let c = self.cfg.network.classes;
        let one = self.units.f.pixel.max() as i32;
        for (r, &y) in labels.iter().enumerate() {
            let row = out.row_mut(r);
            row[..c].iter_mut().for_each(|v| *v = 0);
            row[y as usize] = one;
        }
        out
    }

    fn input(&self, px: &IMat) -> IMat {
        let u = &self.units;
        let mut x0 = IMat::zeros(px.rows, px.cols);
        for r in 0..px.rows {
            x0.row_mut(r)
                .copy_from_slice(&u.normalise(px.row(r), u.f.pixel.frac, &u.rsqrt_pixel).0);
        }
        x0
    }

    /// Goodness per layer for label-embedded raw pixels.
    fn goodness(&self, px: &IMat) -> Vec<Vec<i64>> {
        let f = &self.units.f;
        let mut input = self.input(px);
        let mut out = Vec::new();
        for l in 0..self.w.len() {
            let mut z = rows_times_rows(&input, &self.w[l]);
            add_bias(&mut z, &self.b[l], f.accumulator.frac - f.bias.frac);
            perturb_i64(&self.act_noise, &mut z);
            let act = self
                .units
                .activate(&z, f.accumulator.frac, input.rows, self.w[l].rows, l);
            out.push(act.goodness);
            input = act.xhat;
        }
        out
    }
}

impl Learner for FixedFf {
    fn activation_noise(&mut self) -> Option<&mut Option<crate::noise::activation::Perturber>> {
        Some(&mut self.act_noise)
    }

    fn weights_mut(&mut self) -> Vec<crate::noise::weights::WeightsMut<'_>> {
        fixed_weights(&mut self.w, self.units.f.weight)
    }

    fn train_batch(&mut self, x: &Mat, labels: &[u32]) -> BatchStats {
        let u = &self.units;
        let f = u.f.clone();
        let bsz = x.rows;
        let c = self.cfg.network.classes as u32;
        let mut all = labels.to_vec();
        for &y in labels {
            all.push((y + self.rng.gen_range(1..c)) % c);
        }
        let px = quantise_pixels(x, f.pixel);
        let mut both = IMat::zeros(2 * bsz, px.cols);
        both.data[..px.data.len()].copy_from_slice(&px.data);
        both.data[px.data.len()..].copy_from_slice(&px.data);
        let mut input = self.input(&self.embed(&both, &all));
        let theta = f
            .goodness
            .from_f64(self.cfg.algorithm.ff_threshold as f64, Rounding::HalfUp);
        let mut loss = 0.0;
        let mut grads = Vec::new();
        for l in 0..self.w.len() {
            let mut z = rows_times_rows(&input, &self.w[l]);
            add_bias(&mut z, &self.b[l], f.accumulator.frac - f.bias.frac);
            perturb_i64(&self.act_noise, &mut z);
            let act = u.activate(&z, f.accumulator.frac, input.rows, self.w[l].rows, l);
            let mut delta = IMat::zeros(act.h.rows, act.h.cols);
            let from = f.beta.frac + f.hidden.frac + f.const_frac;
            for r in 0..act.h.rows {
                let g = act.goodness[r];
                // dL/dG: −σ(θ − G) for positive rows, +σ(G − θ) for negative rows.
                let coef = if r < bsz {
                    -sigmoid(u, theta - g, f.beta)
                } else {
                    sigmoid(u, g - theta, f.beta)
                };
                let gf = f.goodness.to_f64(g) - f.goodness.to_f64(theta);
                loss += if r < bsz { softplus(-gf) } else { softplus(gf) };
                let k = i128::from(coef) * i128::from(u.two_over_d[l]);
                for (o, &hv) in delta.row_mut(r).iter_mut().zip(act.h.row(r)) {
                    *o = requant_wide(k * i128::from(hv), from, f.delta, f.rounding, 0) as i32;
                }
            }
            grads.push((gemm_exact(&delta, true, &input, false), column_sums(&delta)));
            input = act.xhat;
        }
        for (l, (gw, gb)) in grads.iter().enumerate() {
            self.updater
                .update_words(&mut self.w[l].data, gw, f.update.frac, f.weight);
            self.updater
                .update_wide(&mut self.b[l], gb, f.delta.frac, f.bias);
        }
        BatchStats {
            loss_sum: loss,
            correct: None,
        }
    }

    fn predict(&self, x: &Mat) -> Vec<u32> {
        let c = self.cfg.network.classes;
        let px = quantise_pixels(x, self.units.f.pixel);
        let mut scores = vec![0i64; x.rows * c];
        for k in 0..c as u32 {
            let g = self.goodness(&self.embed(&px, &vec![k; x.rows]));
            for l in self.cfg.eval_layer_indices() {
                for r in 0..x.rows {
                    scores[r * c + k as usize] += g[l][r];
                }
            }
        }
        (0..x.rows)
            .map(|r| argmax_i64(&scores[r * c..(r + 1) * c]) as u32)
            .collect()
    }

    fn set_lr_factor(&mut self, f: f32) {
        self.updater.lr = lr_constant(&self.cfg, f);
    }
}

fn quantise_vec(v: &[f32], fmt: QFormat) -> Vec<i64> {
    v.iter()
        .map(|&x| fmt.from_f64(x as f64, Rounding::HalfUp))
        .collect()
}

fn check_sgd(cfg: &Config) -> Result<(), FixedError> {
    if cfg.training.optimizer != crate::config::Optimizer::Sgd {
        return Err(FixedError::Optimizer(cfg.training.optimizer.to_string()));
    }
    Ok(())
}

/// Backprop in fixed point.
pub struct FixedBp {
    /// Activation noise of the forward passes, set by the training loop per regime.
    act_noise: Option<crate::noise::activation::Perturber>,
    cfg: Config,
    units: Units,
    /// Hidden layers then the head.
    pub w: Vec<IMat>,
    pub b: Vec<Vec<i64>>,
    updater: UpdateUnit,
}

impl FixedBp {
    pub fn new(cfg: &Config) -> Result<FixedBp, FixedError> {
        check_sgd(cfg)?;
        let units = Units::new(cfg)?;
        let float = crate::float::bp::BpNet::new(cfg);
        let f = &units.f;
        Ok(FixedBp {
            act_noise: None,
            w: float.w.iter().map(|m| quantise_mat(m, f.weight)).collect(),
            b: float.b.iter().map(|b| quantise_vec(b, f.bias)).collect(),
            updater: UpdateUnit::new(f, units.lr)?,
            cfg: cfg.clone(),
            units,
        })
    }

    /// Fraction bits of layer l's MAC input: x̂_0 for the first, `hidden` after.
    fn in_frac(&self, l: usize) -> u32 {
        if l == 0 {
            self.units.f.act.frac
        } else {
            self.units.f.hidden.frac
        }
    }

    /// Inputs of every layer ([x̂_0, h_1, …, h_L]) and the head's logits in `logit`.
    fn forward(&self, px: &IMat) -> (Vec<IMat>, Vec<i64>) {
        let u = &self.units;
        let f = &u.f;
        let mut x0 = IMat::zeros(px.rows, px.cols);
        for r in 0..px.rows {
            x0.row_mut(r)
                .copy_from_slice(&u.normalise(px.row(r), f.pixel.frac, &u.rsqrt_pixel).0);
        }
        let mut inputs = vec![x0];
        let last = self.w.len() - 1;
        let mut logits = Vec::new();
        for l in 0..self.w.len() {
            let zf = f.weight.frac + self.in_frac(l);
            let mut z = rows_times_rows(&inputs[l], &self.w[l]);
            add_bias(&mut z, &self.b[l], zf.saturating_sub(f.bias.frac));
            perturb_i64(&self.act_noise, &mut z);
            if l == last {
                logits = z
                    .iter()
                    .map(|&v| requant_wide(i128::from(v), zf, f.logit, f.rounding, 0))
                    .collect();
            } else {
                let mut h = IMat::zeros(inputs[l].rows, self.w[l].rows);
                for (o, &v) in h.data.iter_mut().zip(&z) {
                    *o = requant_wide(i128::from(v.max(0)), zf, f.hidden, f.rounding, 0) as i32;
                }
                inputs.push(h);
            }
        }
        (inputs, logits)
    }
}

impl Learner for FixedBp {
    fn activation_noise(&mut self) -> Option<&mut Option<crate::noise::activation::Perturber>> {
        Some(&mut self.act_noise)
    }

    fn weights_mut(&mut self) -> Vec<crate::noise::weights::WeightsMut<'_>> {
        fixed_weights(&mut self.w, self.units.f.weight)
    }

    fn train_batch(&mut self, x: &Mat, labels: &[u32]) -> BatchStats {
        let f = self.units.f.clone();
        let c = self.cfg.network.classes;
        let px = quantise_pixels(x, f.pixel);
        let (inputs, logits) = self.forward(&px);
        // Head error p − onehot(y), in `beta`.
        let one = 1i64 << f.beta.frac;
        let mut err = IMat::zeros(x.rows, c);
        let (mut loss, mut correct) = (0.0f64, 0usize);
        for (r, &y) in labels.iter().enumerate() {
            let t = &logits[r * c..(r + 1) * c];
            if argmax_i64(t) == y as usize {
                correct += 1;
            }
            let p = softmax(&self.units, t, f.beta);
            loss -= (f.beta.to_f64(p[y as usize]).max(1e-12)).ln();
            for (k, pk) in p.iter().enumerate() {
                err.data[r * c + k] = (pk - if k == y as usize { one } else { 0 }) as i32;
            }
        }
        let mut grads = Vec::with_capacity(self.w.len());
        let mut delta = err;
        let mut delta_frac = f.beta.frac;
        for l in (0..self.w.len()).rev() {
            grads.push((
                gemm_exact(&delta, true, &inputs[l], false),
                column_sums(&delta),
                delta_frac + self.in_frac(l),
                delta_frac,
            ));
            if l > 0 {
                // Error of the layer below through the pre-update weights, masked by ReLU.
                let back = gemm_exact(&delta, false, &self.w[l], false);
                let from = delta_frac + f.weight.frac;
                let mut below = IMat::zeros(inputs[l].rows, inputs[l].cols);
                for (i, o) in below.data.iter_mut().enumerate() {
                    if inputs[l].data[i] > 0 {
                        *o = requant_wide(i128::from(back[i]), from, f.beta, f.rounding, 0) as i32;
                    }
                }
                delta = below;
                delta_frac = f.beta.frac;
            }
        }
        grads.reverse();
        for (l, (gw, gb, gw_frac, gb_frac)) in grads.iter().enumerate() {
            // Weight gradients are exact sums; saturate them to the update bus first.
            let gw: Vec<i64> = gw
                .iter()
                .map(|&g| {
                    sat_to(
                        i128::from(g),
                        QFormat {
                            bits: f.update.bits,
                            frac: *gw_frac,
                            signed: true,
                        },
                    )
                })
                .collect();
            self.updater
                .update_words(&mut self.w[l].data, &gw, *gw_frac, f.weight);
            self.updater
                .update_wide(&mut self.b[l], gb, *gb_frac, f.bias);
        }
        BatchStats {
            loss_sum: loss,
            correct: Some(correct),
        }
    }

    fn predict(&self, x: &Mat) -> Vec<u32> {
        let c = self.cfg.network.classes;
        let (_, logits) = self.forward(&quantise_pixels(x, self.units.f.pixel));
        (0..x.rows)
            .map(|r| argmax_i64(&logits[r * c..(r + 1) * c]) as u32)
            .collect()
    }

    fn set_lr_factor(&mut self, f: f32) {
        self.updater.lr = lr_constant(&self.cfg, f);
    }
}

/// The fixed-point learner the config names.
pub fn make_fixed_learner(cfg: &Config) -> Result<Box<dyn Learner>, FixedError> {
    Ok(match cfg.algorithm.name {
        crate::config::Learner::Df => Box::new(super::model::FixedDf::new(cfg)?),
        crate::config::Learner::Ff => Box::new(FixedFf::new(cfg)?),
        crate::config::Learner::Bp => Box::new(FixedBp::new(cfg)?),
    })
}
