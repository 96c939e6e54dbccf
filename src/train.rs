//! The training loop shared by every learner: seeded shuffling, minibatches, per-epoch
//! evaluation, a progress bar, and the numbers the report needs.

use crate::config::Schedule;
use crate::data::{Dataset, Split};
use crate::float::linalg::Mat;
use crate::float::Learner;
use indicatif::{ProgressBar, ProgressStyle};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// One epoch's curve point.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    /// Mean per-sample training loss over the epoch (sum over layers for local learners).
    pub train_loss: f64,
    /// Accuracy of the forward passes made during training, before each update, where the
    /// learner scores every class while training (DF with all/hard negatives, BP).
    pub running_train_accuracy: Option<f64>,
    pub test_accuracy: f64,
}

/// What a finished training run measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainOutcome {
    pub history: Vec<EpochRecord>,
    /// Accuracy on the whole training split after the last epoch.
    pub train_accuracy: f64,
    pub test_accuracy: f64,
    /// Wall time of the training passes alone (evaluation excluded).
    pub train_seconds: f64,
    pub samples_per_second: f64,
}

/// Options of one run beyond the config.
pub struct RunOptions {
    pub epochs: usize,
    pub batch: usize,
    pub seed: u64,
    pub schedule: Schedule,
    /// Draw a progress bar (only sensible on a terminal).
    pub progress: bool,
    /// Print one line per epoch to stderr.
    pub log_epochs: bool,
    /// Random translation of each training image by up to this many pixels per axis
    /// (`training.shift`); 0 = off.
    pub shift: usize,
}

impl RunOptions {
    /// Epochs, batch, seed and schedule from the config; output switched off.
    pub fn from_config(cfg: &crate::config::Config) -> RunOptions {
        RunOptions {
            epochs: cfg.training.epochs,
            batch: cfg.training.batch,
            seed: cfg.training.seed,
            schedule: cfg.training.lr_schedule,
            progress: false,
            log_epochs: false,
            shift: cfg.training.shift,
        }
    }
}

/// Translate every row of `x` (a `width` × `height` image, row-major) by its own random
/// (dx, dy) in [-max, max]², filling the uncovered border with zeros: the classic cheap
/// augmentation for small images, done on the host so every backend sees the same pixels.
pub fn shift_images(x: &mut Mat, width: usize, height: usize, max: usize, rng: &mut impl Rng) {
    if max == 0 {
        return;
    }
    let m = max as isize;
    let mut src = vec![0f32; width * height];
    for r in 0..x.rows {
        let (dx, dy) = (rng.gen_range(-m..=m), rng.gen_range(-m..=m));
        let row = x.row_mut(r);
        src.copy_from_slice(row);
        for (py, out) in row.chunks_mut(width).enumerate() {
            let sy = py as isize - dy;
            for (px, v) in out.iter_mut().enumerate() {
                let sx = px as isize - dx;
                let inside =
                    (0..height as isize).contains(&sy) && (0..width as isize).contains(&sx);
                *v = if inside {
                    src[sy as usize * width + sx as usize]
                } else {
                    0.0
                };
            }
        }
    }
}

/// Rows `idx` of a split as a batch matrix.
pub fn gather(split: &Split, dim: usize, idx: &[usize]) -> (Mat, Vec<u32>) {
    let mut x = Mat::zeros(idx.len(), dim);
    let mut y = Vec::with_capacity(idx.len());
    for (r, &i) in idx.iter().enumerate() {
        x.row_mut(r)
            .copy_from_slice(&split.images[i * dim..(i + 1) * dim]);
        y.push(split.labels[i]);
    }
    (x, y)
}

/// Fraction of a split classified correctly.
pub fn evaluate(learner: &dyn Learner, split: &Split, dim: usize, batch: usize) -> f64 {
    let n = split.labels.len();
    if n == 0 {
        return 0.0;
    }
    let idx: Vec<usize> = (0..n).collect();
    let mut correct = 0usize;
    for chunk in idx.chunks(batch.max(1)) {
        let (x, y) = gather(split, dim, chunk);
        correct += learner
            .predict(&x)
            .iter()
            .zip(&y)
            .filter(|(p, t)| p == t)
            .count();
    }
    correct as f64 / n as f64
}

fn bar(progress: bool, len: u64, epoch: usize, epochs: usize) -> ProgressBar {
    if !progress {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} samples  {per_sec}  eta {eta}  {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    pb.set_prefix(format!("epoch {epoch}/{epochs}"));
    pb
}

/// Train for `opts.epochs` epochs, evaluating the test split after each.
pub fn train(learner: &mut dyn Learner, data: &Dataset, opts: &RunOptions) -> TrainOutcome {
    let dim = data.dim();
    let n = data.train.labels.len();
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed ^ 0xd15ea5e);
    // A stream of its own, so switching augmentation on leaves the shuffle order unchanged.
    let mut shift_rng = ChaCha8Rng::seed_from_u64(opts.seed ^ 0x5_41f7);
    let mut history = Vec::with_capacity(opts.epochs);
    let mut train_seconds = 0.0;
    let steps_per_epoch = n.div_ceil(opts.batch.max(1));
    let total_steps = (steps_per_epoch * opts.epochs).max(1);
    let mut step = 0usize;
    for epoch in 1..=opts.epochs {
        order.shuffle(&mut rng);
        let pb = bar(opts.progress, n as u64, epoch, opts.epochs);
        let (mut loss, mut correct, mut scored, mut seen) = (0.0f64, 0usize, 0usize, 0usize);
        let start = Instant::now();
        for chunk in order.chunks(opts.batch) {
            let (mut x, y) = gather(&data.train, dim, chunk);
            shift_images(&mut x, data.width, data.height, opts.shift, &mut shift_rng);
            learner.set_lr_factor(opts.schedule.factor(step as f64 / total_steps as f64));
            step += 1;
            let s = learner.train_batch(&x, &y);
            loss += s.loss_sum;
            seen += chunk.len();
            if let Some(c) = s.correct {
                correct += c;
                scored += chunk.len();
            }
            pb.inc(chunk.len() as u64);
            if scored > 0 {
                pb.set_message(format!(
                    "loss {:.4}  running acc {:.4}",
                    loss / seen as f64,
                    correct as f64 / scored as f64
                ));
            } else {
                pb.set_message(format!("loss {:.4}", loss / seen as f64));
            }
        }
        train_seconds += start.elapsed().as_secs_f64();
        let test_accuracy = evaluate(&*learner, &data.test, dim, 256);
        pb.finish_and_clear();
        if opts.log_epochs {
            eprintln!(
                "epoch {epoch}/{}: loss {:.4}  test accuracy {:.4}",
                opts.epochs,
                loss / seen.max(1) as f64,
                test_accuracy
            );
        }
        history.push(EpochRecord {
            epoch,
            train_loss: loss / seen.max(1) as f64,
            running_train_accuracy: (scored > 0).then(|| correct as f64 / scored as f64),
            test_accuracy,
        });
    }
    let train_accuracy = evaluate(&*learner, &data.train, dim, 256);
    let test_accuracy = history.last().map_or(0.0, |h| h.test_accuracy);
    TrainOutcome {
        history,
        train_accuracy,
        test_accuracy,
        train_seconds,
        samples_per_second: (n * opts.epochs) as f64 / train_seconds.max(1e-9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 5x4 image whose pixel values are their own row-major index + 1.
    fn ramp() -> Mat {
        Mat::from_fn(1, 20, |_, c| (c + 1) as f32)
    }

    #[test]
    fn shift_moves_each_image_rigidly_with_zero_fill() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let mut x = ramp();
            shift_images(&mut x, 5, 4, 2, &mut rng);
            let row = x.row(0);
            // Recover (dx, dy) from any pixel that survived, then check every pixel against it.
            let (i, v) = row
                .iter()
                .enumerate()
                .find(|(_, v)| **v != 0.0)
                .expect("2 px keeps some of a 5x4 image");
            let src = *v as usize - 1;
            let (dx, dy) = (
                (i % 5) as isize - (src % 5) as isize,
                (i / 5) as isize - (src / 5) as isize,
            );
            assert!(dx.abs() <= 2 && dy.abs() <= 2, "({dx},{dy})");
            seen.insert((dx, dy));
            for (j, out) in row.iter().enumerate() {
                let (sx, sy) = ((j % 5) as isize - dx, (j / 5) as isize - dy);
                let want = if (0..5).contains(&sx) && (0..4).contains(&sy) {
                    (sy * 5 + sx + 1) as f32
                } else {
                    0.0
                };
                assert_eq!(*out, want, "pixel {j} under shift ({dx},{dy})");
            }
        }
        assert_eq!(seen.len(), 25, "every shift in [-2,2]^2 is drawn");
    }

    #[test]
    fn shift_zero_leaves_images_alone() {
        let mut x = ramp();
        shift_images(&mut x, 5, 4, 0, &mut ChaCha8Rng::seed_from_u64(0));
        assert_eq!(x, ramp());
    }
}
