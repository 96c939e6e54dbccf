//! The float (f32) reference: DF as DESIGN.md §1 defines it, and the FF and BP baselines.
//!
//! This is the accuracy ceiling the fixed-point model and the hardware are measured against.

pub mod bp;
pub mod df;
pub mod ff;
pub mod linalg;
pub mod optim;

use crate::config::{Config, Learner as LearnerKind};
use crate::noise::activation::Perturber;
use crate::noise::weights::{WeightsMut, Word};
use linalg::Mat;
use rand::Rng;

/// What one minibatch step reports.
#[derive(Clone, Copy, Debug, Default)]
pub struct BatchStats {
    /// Sum over the batch of the per-sample loss (all layers for the local learners).
    pub loss_sum: f64,
    /// Correct predictions made by the forward pass before the update, where the learner's
    /// training pass already scores every class (otherwise `None`).
    pub correct: Option<usize>,
}

/// A trainable classifier over raw pixel rows.
pub trait Learner {
    /// One minibatch: `x` is batch × d_0 raw pixels in [0,1]; `labels` are < classes.
    fn train_batch(&mut self, x: &Mat, labels: &[u32]) -> BatchStats;
    /// Predicted class of each row.
    fn predict(&self, x: &Mat) -> Vec<u32>;
    /// Multiply the configured learning rate by `f` from the next step on.
    fn set_lr_factor(&mut self, f: f32);
    /// Why the learner can no longer train, if it cannot (e.g. the engine it drives has
    /// stopped answering); the training loop stops on it. Software learners never fail.
    fn failure(&self) -> Option<String> {
        None
    }
    /// The stored weight matrices, for the weight-memory noise sites ([`crate::noise::weights`]).
    /// Learners whose weights live elsewhere (in the engine) give none, and a run with such a
    /// site on is refused before it starts.
    fn weights_mut(&mut self) -> Vec<WeightsMut<'_>> {
        Vec::new()
    }
    /// Where the learner keeps its activation-noise source ([`crate::noise::activation`]),
    /// which the training loop sets per regime; `None` if it cannot add such noise (then a
    /// run with the site on is refused before it starts).
    fn activation_noise(&mut self) -> Option<&mut Option<Perturber>> {
        None
    }
}

/// The word a weight is stored in: the config's `fixed.weight` format.
pub fn weight_word(cfg: &Config) -> Word {
    let f = cfg.fixed.weight;
    Word::new(f.bits, f.frac, f.signed)
}

/// The float weights as the weight-memory noise sites see them: bit-level faults act on the
/// word the hardware would store, in the config's `fixed.weight` format.
pub fn float_weights(w: &mut [Mat], word: Word) -> Vec<WeightsMut<'_>> {
    w.iter_mut()
        .map(|m| WeightsMut::Float(&mut m.data, word))
        .collect()
}

/// Build the learner named by the config.
pub fn make_learner(cfg: &Config) -> Box<dyn Learner> {
    match cfg.algorithm.name {
        LearnerKind::Df => Box::new(df::DfNet::new(cfg)),
        LearnerKind::Ff => Box::new(ff::FfNet::new(cfg)),
        LearnerKind::Bp => Box::new(bp::BpNet::new(cfg)),
    }
}

/// Rows scaled to unit L2 norm: x̂_0 = x / (‖x‖ + ε) (DESIGN.md §1).
pub fn normalise_rows(x: &Mat, eps: f32) -> Mat {
    let mut out = Mat::default();
    normalise_rows_into(x, eps, &mut out);
    out
}

/// [`normalise_rows`] into `out`, reusing its buffer.
pub fn normalise_rows_into(x: &Mat, eps: f32, out: &mut Mat) {
    out.reshape(x.rows, x.cols);
    out.data.copy_from_slice(&x.data);
    for r in 0..out.rows {
        let row = out.row_mut(r);
        let s = 1.0 / (linalg::norm(row) + eps);
        row.iter_mut().for_each(|v| *v *= s);
    }
}

/// A weight matrix whose rows, fed a unit-norm input, give pre-activations of unit variance:
/// uniform in ±√3 has variance 1. Every local learner normalises its inputs, so this is the
/// scale that keeps goodness O(1) at the start whatever the width.
pub fn unit_input_init(rows: usize, cols: usize, rng: &mut impl Rng) -> Mat {
    let a = 3.0f32.sqrt();
    Mat::from_fn(rows, cols, |_, _| rng.gen_range(-a..a))
}
