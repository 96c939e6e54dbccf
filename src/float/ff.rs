//! Hinton's Forward-Forward baseline (2022), on the same MLP as DF.
//!
//! The label is written into the first C pixels as a one-hot code; each layer is trained to
//! give goodness above a threshold θ for the true label and below it for one random wrong
//! label, with the softplus loss. Layers pass on their length-normalised activity.

use super::linalg::{add_row_bias, argmax, column_sums, gemm, norm, Mat, Op};
use super::optim::Optim;
use super::{normalise_rows, unit_input_init, BatchStats, Learner};
use crate::config::{Algorithm, Config};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub struct FfNet {
    /// Activation noise of the forward passes, set by the training loop per regime.
    act_noise: Option<crate::noise::activation::Perturber>,
    /// The stored word of a weight, for the bit-level noise sites.
    word: crate::noise::weights::Word,
    alg: Algorithm,
    classes: usize,
    pub w: Vec<Mat>,
    pub b: Vec<Vec<f32>>,
    optim: Optim,
    rng: ChaCha8Rng,
}

/// Numerically stable ln(1 + e^x) (also the fixed-point FF's reported loss).
pub fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Copy of `x` with the first C pixels replaced by the one-hot code of `labels`.
fn embed(x: &Mat, labels: &[u32], classes: usize) -> Mat {
    let mut out = x.clone();
    for (r, &y) in labels.iter().enumerate() {
        let row = out.row_mut(r);
        row[..classes].iter_mut().for_each(|v| *v = 0.0);
        row[y as usize] = 1.0;
    }
    out
}

impl FfNet {
    pub fn new(cfg: &Config) -> FfNet {
        let widths = cfg.network.widths();
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.training.seed);
        let w: Vec<Mat> = widths
            .windows(2)
            .map(|p| unit_input_init(p[1], p[0], &mut rng))
            .collect();
        let b: Vec<Vec<f32>> = widths[1..].iter().map(|&d| vec![0.0; d]).collect();
        let sizes: Vec<usize> = w
            .iter()
            .zip(&b)
            .flat_map(|(w, b)| [w.data.len(), b.len()])
            .collect();
        FfNet {
            act_noise: None,
            word: super::weight_word(cfg),
            alg: cfg.algorithm.clone(),
            classes: cfg.network.classes,
            w,
            b,
            optim: Optim::new(&cfg.training, &sizes),
            rng: ChaCha8Rng::seed_from_u64(cfg.training.seed.wrapping_add(0x5eed)),
        }
    }

    /// Goodness of each layer for each row of an already label-embedded input.
    fn goodness(&self, x: &Mat) -> Vec<Vec<f32>> {
        let mut input = normalise_rows(x, self.alg.epsilon);
        let mut out = Vec::new();
        for (w, b) in self.w.iter().zip(&self.b) {
            let (h, g) = layer(&input, w, b, &self.act_noise);
            input = normalise_rows(&h, self.alg.epsilon);
            out.push(g);
        }
        out
    }
}

/// ReLU layer; returns activity and goodness (1/d) Σ h² per row.
fn layer(
    input: &Mat,
    w: &Mat,
    b: &[f32],
    noise: &Option<crate::noise::activation::Perturber>,
) -> (Mat, Vec<f32>) {
    let mut h = Mat::zeros(input.rows, w.rows);
    gemm(1.0, input, Op::N, w, Op::T, 0.0, &mut h);
    add_row_bias(&mut h, b);
    crate::noise::activation::perturb_f32(noise, &mut h.data);
    h.data.iter_mut().for_each(|v| *v = v.max(0.0));
    let d = h.cols as f32;
    let g = (0..h.rows).map(|r| norm(h.row(r)).powi(2) / d).collect();
    (h, g)
}

impl Learner for FfNet {
    fn activation_noise(&mut self) -> Option<&mut Option<crate::noise::activation::Perturber>> {
        Some(&mut self.act_noise)
    }

    fn weights_mut(&mut self) -> Vec<crate::noise::weights::WeightsMut<'_>> {
        super::float_weights(&mut self.w, self.word)
    }

    fn train_batch(&mut self, x: &Mat, labels: &[u32]) -> BatchStats {
        let bsz = x.rows;
        let c = self.classes as u32;
        // Rows 0..B carry the true label, rows B..2B one random wrong label each.
        let mut all_labels = labels.to_vec();
        for &y in labels {
            let off = self.rng.gen_range(1..c);
            all_labels.push((y + off) % c);
        }
        let mut both = Mat::zeros(2 * bsz, x.cols);
        both.data[..x.data.len()].copy_from_slice(&x.data);
        both.data[x.data.len()..].copy_from_slice(&x.data);
        let mut input = normalise_rows(&embed(&both, &all_labels, self.classes), self.alg.epsilon);
        let theta = self.alg.ff_threshold as f64;
        let inv_b = 1.0 / bsz as f32;
        let mut loss_sum = 0.0;
        self.optim.begin_step();
        for l in 0..self.w.len() {
            let (h, g) = layer(&input, &self.w[l], &self.b[l], &self.act_noise);
            let d = h.cols as f32;
            let mut delta = Mat::zeros(h.rows, h.cols);
            for r in 0..h.rows {
                let gr = g[r] as f64;
                // Positive rows want G > θ, negative rows G < θ.
                let (loss, dl_dg) = if r < bsz {
                    (softplus(theta - gr), -sigmoid(theta - gr))
                } else {
                    (softplus(gr - theta), sigmoid(gr - theta))
                };
                loss_sum += loss;
                let f = dl_dg as f32 * 2.0 / d;
                for (o, hv) in delta.row_mut(r).iter_mut().zip(h.row(r)) {
                    *o = f * hv;
                }
            }
            let mut gw = Mat::zeros(self.w[l].rows, self.w[l].cols);
            gemm(inv_b, &delta, Op::T, &input, Op::N, 0.0, &mut gw);
            let mut gb = vec![0.0; self.b[l].len()];
            column_sums(&delta, inv_b, &mut gb);
            self.optim.apply(2 * l, &mut self.w[l].data, &gw.data);
            self.optim.apply(2 * l + 1, &mut self.b[l], &gb);
            input = normalise_rows(&h, self.alg.epsilon);
        }
        BatchStats {
            loss_sum,
            correct: None,
        }
    }

    fn set_lr_factor(&mut self, f: f32) {
        self.optim.set_lr_factor(f);
    }

    fn predict(&self, x: &Mat) -> Vec<u32> {
        let c = self.classes;
        let eval: Vec<usize> = if self.alg.eval_layers.is_empty() {
            (0..self.w.len()).collect()
        } else {
            self.alg.eval_layers.iter().map(|l| l - 1).collect()
        };
        let mut scores = Mat::zeros(x.rows, c);
        for k in 0..c as u32 {
            let g = self.goodness(&embed(x, &vec![k; x.rows], c));
            for &l in &eval {
                for r in 0..x.rows {
                    scores.data[r * c + k as usize] += g[l][r];
                }
            }
        }
        (0..x.rows).map(|r| argmax(scores.row(r)) as u32).collect()
    }
}
