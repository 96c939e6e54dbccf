//! Backpropagation baseline: the same MLP with a softmax head and cross-entropy.

use super::linalg::{add_row_bias, argmax, column_sums, gemm, Mat, Op};
use super::optim::Optim;
use super::{normalise_rows, unit_input_init, BatchStats, Learner};
use crate::config::Config;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub struct BpNet {
    /// Activation noise of the forward passes, set by the training loop per regime.
    act_noise: Option<crate::noise::activation::Perturber>,
    /// The stored word of a weight, for the bit-level noise sites.
    word: crate::noise::weights::Word,
    eps: f32,
    /// Hidden layers then the head (C × d_L).
    pub w: Vec<Mat>,
    pub b: Vec<Vec<f32>>,
    optim: Optim,
}

impl BpNet {
    pub fn new(cfg: &Config) -> BpNet {
        let mut widths = cfg.network.widths();
        widths.push(cfg.network.classes);
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.training.seed);
        let w: Vec<Mat> = widths
            .windows(2)
            .enumerate()
            .map(|(i, p)| {
                if i == 0 {
                    // The input is unit-norm, as for DF, so the same scale applies.
                    unit_input_init(p[1], p[0], &mut rng)
                } else {
                    // He-uniform for ReLU inputs.
                    let a = (6.0 / p[0] as f32).sqrt();
                    Mat::from_fn(p[1], p[0], |_, _| rng.gen_range(-a..a))
                }
            })
            .collect();
        let b: Vec<Vec<f32>> = widths[1..].iter().map(|&d| vec![0.0; d]).collect();
        let sizes: Vec<usize> = w
            .iter()
            .zip(&b)
            .flat_map(|(w, b)| [w.data.len(), b.len()])
            .collect();
        BpNet {
            act_noise: None,
            word: super::weight_word(cfg),
            eps: cfg.algorithm.epsilon,
            w,
            b,
            optim: Optim::new(&cfg.training, &sizes),
        }
    }

    /// Activations of every layer: [x̂_0, h_1, …, h_L, logits].
    fn forward(&self, x: &Mat) -> Vec<Mat> {
        let mut acts = vec![normalise_rows(x, self.eps)];
        let last = self.w.len() - 1;
        for (l, (w, b)) in self.w.iter().zip(&self.b).enumerate() {
            let input = &acts[l];
            let mut z = Mat::zeros(input.rows, w.rows);
            gemm(1.0, input, Op::N, w, Op::T, 0.0, &mut z);
            add_row_bias(&mut z, b);
            crate::noise::activation::perturb_f32(&self.act_noise, &mut z.data);
            if l != last {
                z.data.iter_mut().for_each(|v| *v = v.max(0.0));
            }
            acts.push(z);
        }
        acts
    }
}

impl Learner for BpNet {
    fn activation_noise(&mut self) -> Option<&mut Option<crate::noise::activation::Perturber>> {
        Some(&mut self.act_noise)
    }

    fn weights_mut(&mut self) -> Vec<crate::noise::weights::WeightsMut<'_>> {
        super::float_weights(&mut self.w, self.word)
    }

    fn train_batch(&mut self, x: &Mat, labels: &[u32]) -> BatchStats {
        let acts = self.forward(x);
        let logits = acts.last().expect("forward yields logits");
        let mut delta = Mat::zeros(logits.rows, logits.cols);
        let mut loss_sum = 0.0f64;
        let mut correct = 0;
        for (r, &y) in labels.iter().enumerate() {
            let z = logits.row(r);
            if argmax(z) == y as usize {
                correct += 1;
            }
            let mx = z.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            let denom: f64 = z.iter().map(|&v| ((v - mx) as f64).exp()).sum();
            loss_sum += denom.ln() - (z[y as usize] - mx) as f64;
            for (j, o) in delta.row_mut(r).iter_mut().enumerate() {
                let p = ((z[j] - mx) as f64).exp() / denom;
                *o = (p - if j == y as usize { 1.0 } else { 0.0 }) as f32;
            }
        }
        let inv_b = 1.0 / x.rows as f32;
        self.optim.begin_step();
        for l in (0..self.w.len()).rev() {
            let input = &acts[l];
            let mut gw = Mat::zeros(self.w[l].rows, self.w[l].cols);
            gemm(inv_b, &delta, Op::T, input, Op::N, 0.0, &mut gw);
            let mut gb = vec![0.0; self.b[l].len()];
            column_sums(&delta, inv_b, &mut gb);
            if l > 0 {
                // Error for the layer below, through the weights before this step's update.
                let mut below = Mat::zeros(input.rows, input.cols);
                gemm(1.0, &delta, Op::N, &self.w[l], Op::N, 0.0, &mut below);
                for (d, h) in below.data.iter_mut().zip(&input.data) {
                    if *h <= 0.0 {
                        *d = 0.0;
                    }
                }
                delta = below;
            }
            self.optim.apply(2 * l, &mut self.w[l].data, &gw.data);
            self.optim.apply(2 * l + 1, &mut self.b[l], &gb);
        }
        BatchStats {
            loss_sum,
            correct: Some(correct),
        }
    }

    fn set_lr_factor(&mut self, f: f32) {
        self.optim.set_lr_factor(f);
    }

    fn predict(&self, x: &Mat) -> Vec<u32> {
        let acts = self.forward(x);
        let logits = acts.last().expect("forward yields logits");
        (0..logits.rows)
            .map(|r| argmax(logits.row(r)) as u32)
            .collect()
    }
}
