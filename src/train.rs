//! The training loop shared by every learner: seeded shuffling, minibatches, per-epoch
//! evaluation, a progress bar, and the numbers the report needs. It stops a run that cannot
//! give a meaningful result: a learner that failed (e.g. its simulator died), a loss that
//! became non-finite or exploded, a split without samples.

use crate::config::Schedule;
use crate::data::{Dataset, Split};
use crate::float::linalg::Mat;
use crate::float::Learner;
use crate::noise::activation::Perturber;
use crate::noise::weights::WeightSites;
use crate::noise::Noise;
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

/// Why a run stopped early.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("the {0} split has no samples: there is nothing to {1}")]
    NoSamples(&'static str, &'static str),
    #[error(
        "the noise sites {} act inside the learner (its weights or activations), which this \
         backend does not expose: they are modelled in the software backends (--backend \
         float or fixed) so far; \
         switch them off ([noise.<site>] level = 0) or change the backend",
        .0.join(", ")
    )]
    NoiseSites(Vec<&'static str>),
    #[error("training stopped at epoch {epoch}, step {step}: {reason}")]
    Learner {
        epoch: usize,
        step: usize,
        reason: String,
    },
    #[error(
        "training diverged at epoch {epoch}, step {step}: the loss per sample {what} \
         (it was {start:.4} before the first update); {hint}"
    )]
    Diverged {
        epoch: usize,
        step: usize,
        what: String,
        start: f64,
        hint: String,
    },
}

/// A run whose recent loss per sample is this many times its loss before the first update
/// has diverged (a working run's loss falls; a diverging one grows by orders of magnitude).
pub const DIVERGED_RATIO: f64 = 1000.0;
/// Steps averaged for the recent loss.
const LOSS_WINDOW: usize = 5;

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
    /// The `[noise]` sites: input noise is added to every training batch and/or every
    /// evaluated set after augmentation, on the host, so every backend sees the same pixels;
    /// the weight-memory sites act on the learner's stored weights around each step and
    /// each evaluation ([`crate::noise::weights`]).
    pub noise: crate::noise::Noise,
    /// Stop with [`TrainError::Diverged`] when the loss becomes non-finite or explodes.
    pub check_divergence: bool,
    /// The likely cause named when the loss diverges (the learner, its optimizer and
    /// learning rate, and which key sets it).
    pub divergence_hint: String,
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
            noise: cfg.noise.clone(),
            check_divergence: true,
            divergence_hint: divergence_hint(cfg),
        }
    }
}

/// The likely cause of a diverging run under `cfg`, and the fix.
pub fn divergence_hint(cfg: &crate::config::Config) -> String {
    let t = &cfg.training;
    let l = cfg.algorithm.name;
    let (_, (_, lr_key)) = t.resolve(l);
    let lr = t.learning_rate;
    let src = match lr_key {
        "default" => format!("dfforge's default for {l}"),
        "training.learning_rate" => {
            "training.learning_rate or --lr, which set it for every learner".to_string()
        }
        k => format!("{k} in the config"),
    };
    let fix = match t.learner(l).learning_rate {
        Some(own) if lr_key == "training.learning_rate" && own < lr => format!(
            "drop --lr (or training.learning_rate) so that {l} uses its own rate {own} \
             ([training.{l}] learning_rate), or lower it"
        ),
        _ => format!(
            "lower it, e.g. --lr {} (or [training.{l}] learning_rate in the config)",
            lr / 10.0
        ),
    };
    format!(
        "the likely cause is a learning rate too high for {l}: {lr} with {} (from {src}); {fix}",
        t.optimizer
    )
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
    let idx: Vec<usize> = (0..n).collect();
    let correct: usize = idx
        .chunks(batch.max(1))
        .map(|chunk| {
            let (x, y) = gather(split, dim, chunk);
            correct_of(learner, &x, &y)
        })
        .sum();
    correct as f64 / n.max(1) as f64
}

fn correct_of(learner: &dyn Learner, x: &Mat, y: &[u32]) -> usize {
    learner
        .predict(x)
        .iter()
        .zip(y)
        .filter(|(p, t)| p == t)
        .count()
}

/// [`evaluate`] under the inference regime of the noise sites of a run seeded `seed`: input
/// noise on every sample and activation noise in every forward pass (each from a stream
/// seeded the same at every call, so epochs and learners compare like with like), and the
/// weight-memory sites' deployed weights ([`WeightSites::deploy`]), restored after. A site
/// on only in training is switched off for the evaluation and back on after it.
pub fn evaluate_noisy(
    learner: &mut dyn Learner,
    split: &Split,
    dim: usize,
    batch: usize,
    noise: &Noise,
    seed: u64,
    weights: Option<&mut WeightSites>,
) -> f64 {
    let n = split.labels.len();
    if n == 0 {
        return 0.0;
    }
    let input = (noise.input.is_on() && noise.input.regime.at_inference()).then_some(&noise.input);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ crate::noise::INPUT_EVAL_STREAM);
    let act = &noise.activation;
    let training_act = if act.is_off() {
        None
    } else {
        learner.activation_noise().map(|slot| {
            let eval = act
                .regime
                .at_inference()
                .then(|| Perturber::new(act.level, seed ^ crate::noise::ACTIVATION_EVAL_STREAM));
            std::mem::replace(slot, eval)
        })
    };
    let mut deployed = weights.and_then(|w| w.deploy(&mut learner.weights_mut()));
    let idx: Vec<usize> = (0..n).collect();
    let mut correct = 0usize;
    for chunk in idx.chunks(batch.max(1)) {
        let (mut x, y) = gather(split, dim, chunk);
        if let Some(noise) = input {
            noise.apply(&mut x.data, &mut rng);
        }
        if let Some(d) = deployed.as_mut() {
            d.before_batch(&mut learner.weights_mut());
        }
        correct += correct_of(&*learner, &x, &y);
    }
    if let Some(d) = deployed {
        d.finish(&mut learner.weights_mut());
    }
    if let (Some(before), Some(slot)) = (training_act, learner.activation_noise()) {
        *slot = before;
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

/// Watches the loss for divergence ([`DIVERGED_RATIO`], non-finite values).
#[derive(Default)]
struct LossWatch {
    /// Loss per sample of the first step with a positive loss: the first step's forward
    /// pass runs before any update, so this is the untrained model's loss.
    start: Option<f64>,
    recent: std::collections::VecDeque<f64>,
}

impl LossWatch {
    /// Record one step's mean loss per sample; `Some(what happened)` if it diverged.
    fn step(&mut self, mean: f64) -> Option<String> {
        if !mean.is_finite() {
            return Some(format!("became {mean}"));
        }
        let Some(start) = self.start else {
            if mean > 0.0 {
                self.start = Some(mean);
            }
            return None;
        };
        self.recent.push_back(mean);
        if self.recent.len() > LOSS_WINDOW {
            self.recent.pop_front();
        }
        let now = self.recent.iter().sum::<f64>() / self.recent.len() as f64;
        (now > DIVERGED_RATIO * start).then(|| {
            format!(
                "grew to {now:.4e} (mean of the last {} steps), {:.0} times its start",
                self.recent.len(),
                now / start
            )
        })
    }

    fn start_mean(&self) -> f64 {
        self.start.unwrap_or(0.0)
    }
}

/// Train for `opts.epochs` epochs, evaluating the test split after each. Stops with an
/// error (and prints no epoch line for the failed epoch) when the learner fails, the loss
/// diverges, or a split is empty.
pub fn train(
    learner: &mut dyn Learner,
    data: &Dataset,
    opts: &RunOptions,
) -> Result<TrainOutcome, TrainError> {
    let out = run(learner, data, opts);
    // The noise belonged to this run: the learner handed back computes clean, whether the
    // run finished or stopped.
    if let Some(slot) = learner.activation_noise() {
        *slot = None;
    }
    out
}

fn run(
    learner: &mut dyn Learner,
    data: &Dataset,
    opts: &RunOptions,
) -> Result<TrainOutcome, TrainError> {
    let dim = data.dim();
    let n = data.train.labels.len();
    if n == 0 {
        return Err(TrainError::NoSamples("training", "train on"));
    }
    if data.test.labels.is_empty() {
        // An accuracy over zero samples would be printed as 0.0000.
        return Err(TrainError::NoSamples("test", "measure accuracy on"));
    }
    let mut watch = LossWatch::default();
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed ^ 0xd15ea5e);
    // A stream of its own, so switching augmentation on leaves the shuffle order unchanged.
    let mut shift_rng = ChaCha8Rng::seed_from_u64(opts.seed ^ 0x5_41f7);
    let mut sites = WeightSites::new(&opts.noise, opts.seed);
    let act = &opts.noise.activation;
    if (sites.is_some() && learner.weights_mut().is_empty())
        || (!act.is_off() && learner.activation_noise().is_none())
    {
        return Err(TrainError::NoiseSites(opts.noise.model_sites_on()));
    }
    if let Some(slot) = learner.activation_noise() {
        *slot = (!act.is_off() && act.regime.in_training())
            .then(|| Perturber::new(act.level, opts.seed ^ crate::noise::ACTIVATION_TRAIN_STREAM));
    }
    let noise = &opts.noise.input;
    let mut noise_rng = ChaCha8Rng::seed_from_u64(opts.seed ^ crate::noise::INPUT_TRAIN_STREAM);
    // Inference noise: the same draws at every evaluation, so epochs and learners compare
    // like with like.

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
            if noise.regime.in_training() {
                noise.apply(&mut x.data, &mut noise_rng);
            }
            learner.set_lr_factor(opts.schedule.factor(step as f64 / total_steps as f64));
            step += 1;
            if let Some(w) = sites.as_mut() {
                w.before_step(&mut learner.weights_mut());
            }
            let s = learner.train_batch(&x, &y);
            if let Some(w) = sites.as_mut() {
                w.after_step(&mut learner.weights_mut());
            }
            if let Some(reason) = learner.failure() {
                pb.finish_and_clear();
                return Err(TrainError::Learner {
                    epoch,
                    step,
                    reason,
                });
            }
            let diverged = watch.step(s.loss_sum / chunk.len().max(1) as f64);
            if let Some(what) = diverged.filter(|_| opts.check_divergence) {
                pb.finish_and_clear();
                return Err(TrainError::Diverged {
                    epoch,
                    step,
                    what,
                    start: watch.start_mean(),
                    hint: opts.divergence_hint.clone(),
                });
            }
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
        let test_accuracy = evaluate_noisy(
            learner,
            &data.test,
            dim,
            256,
            &opts.noise,
            opts.seed,
            sites.as_mut(),
        );
        pb.finish_and_clear();
        if let Some(reason) = learner.failure() {
            return Err(TrainError::Learner {
                epoch,
                step,
                reason,
            });
        }
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
    let train_accuracy = evaluate_noisy(
        learner,
        &data.train,
        dim,
        256,
        &opts.noise,
        opts.seed,
        sites.as_mut(),
    );
    if let Some(reason) = learner.failure() {
        return Err(TrainError::Learner {
            epoch: opts.epochs,
            step,
            reason,
        });
    }
    let test_accuracy = history.last().map_or(0.0, |h| h.test_accuracy);
    Ok(TrainOutcome {
        history,
        train_accuracy,
        test_accuracy,
        train_seconds,
        samples_per_second: (n * opts.epochs) as f64 / train_seconds.max(1e-9),
    })
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

    /// A learner with a scripted loss per sample for each step, that fails after `ok` steps.
    struct Scripted {
        losses: Vec<f64>,
        steps: usize,
        ok: usize,
        act: Option<Perturber>,
        /// Whether each step found activation noise set.
        noisy_steps: Vec<bool>,
    }

    impl Scripted {
        /// A learner reporting `losses` (the last repeated) that fails after step `ok`.
        fn new(losses: Vec<f64>, ok: usize) -> Scripted {
            Scripted {
                losses,
                steps: 0,
                ok,
                act: None,
                noisy_steps: Vec::new(),
            }
        }
    }

    impl Learner for Scripted {
        fn train_batch(&mut self, _x: &Mat, labels: &[u32]) -> crate::float::BatchStats {
            let l = self.losses[self.steps.min(self.losses.len() - 1)];
            self.steps += 1;
            self.noisy_steps.push(self.act.is_some());
            crate::float::BatchStats {
                loss_sum: l * labels.len() as f64,
                correct: None,
            }
        }
        fn predict(&self, x: &Mat) -> Vec<u32> {
            vec![0; x.rows]
        }
        fn set_lr_factor(&mut self, _f: f32) {}
        fn failure(&self) -> Option<String> {
            (self.steps > self.ok).then(|| "the simulator exited (signal 9)".to_string())
        }
        fn activation_noise(&mut self) -> Option<&mut Option<Perturber>> {
            Some(&mut self.act)
        }
    }

    fn tiny(train: usize, test: usize) -> Dataset {
        let split = |n: usize| {
            crate::data::Split::new(vec![0.5; n * 4], (0..n as u32).map(|i| i % 2).collect(), 4)
        };
        Dataset {
            name: "tiny".into(),
            width: 2,
            height: 2,
            classes: 2,
            train: split(train),
            test: split(test),
        }
    }

    fn opts(epochs: usize) -> RunOptions {
        RunOptions {
            epochs,
            batch: 4,
            log_epochs: true,
            ..RunOptions::from_config(&crate::config::Config::builtin())
        }
    }

    /// A learner that records every pixel it is given, for training and for prediction.
    #[derive(Default)]
    struct Recorder {
        trained: Vec<Vec<f32>>,
        predicted: std::cell::RefCell<Vec<Vec<f32>>>,
    }

    impl Learner for Recorder {
        fn train_batch(&mut self, x: &Mat, labels: &[u32]) -> crate::float::BatchStats {
            self.trained.push(x.data.clone());
            crate::float::BatchStats {
                loss_sum: 0.1 * labels.len() as f64,
                correct: None,
            }
        }
        fn predict(&self, x: &Mat) -> Vec<u32> {
            self.predicted.borrow_mut().push(x.data.clone());
            vec![0; x.rows]
        }
        fn set_lr_factor(&mut self, _f: f32) {}
    }

    fn record(noise: crate::noise::InputNoise) -> Recorder {
        let mut l = Recorder::default();
        let o = RunOptions {
            noise: crate::noise::Noise {
                input: noise,
                ..Default::default()
            },
            ..opts(2)
        };
        train(&mut l, &tiny(16, 8), &o).unwrap();
        l
    }

    fn all_clean(batches: &[Vec<f32>]) -> bool {
        batches.iter().flatten().all(|&v| v == 0.5)
    }

    // Issue 12, input noise: each regime reaches exactly the pixels it names, from seeded
    // streams, and level 0 reaches none.
    #[test]
    fn input_noise_reaches_training_or_inference_as_its_regime_says() {
        use crate::noise::{InputKind, InputNoise, Regime};
        let at = |regime| InputNoise {
            kind: InputKind::Gaussian,
            level: 0.1,
            regime,
        };
        let off = record(InputNoise::default());
        assert!(all_clean(&off.trained) && all_clean(&off.predicted.borrow()));

        let train_only = record(at(Regime::Train));
        assert!(train_only
            .trained
            .iter()
            .all(|b| b.iter().any(|&v| v != 0.5)));
        assert!(all_clean(&train_only.predicted.borrow()));

        let infer_only = record(at(Regime::Inference));
        assert!(all_clean(&infer_only.trained));
        let p = infer_only.predicted.borrow();
        assert!(p.iter().all(|b| b.iter().any(|&v| v != 0.5)));
        // Every evaluation of the test set (one per epoch) sees the same draws.
        assert_eq!(
            p[0], p[1],
            "the test set's noise is the same at every epoch"
        );

        let both = record(at(Regime::Both));
        assert!(!all_clean(&both.trained) && !all_clean(&both.predicted.borrow()));
        // Reproducible, and the training draws do not move the test set's.
        let again = record(at(Regime::Both));
        assert_eq!(both.trained, again.trained);
        assert_eq!(*both.predicted.borrow(), *again.predicted.borrow());
        assert_eq!(p[0], both.predicted.borrow()[0]);
    }

    // Issue 11, item 4: when the engine's simulator died mid-epoch, the loop finished the
    // epoch (scoring the dead engine's answers) and printed a bogus epoch line before the
    // error. It must stop at the failing step, with no epoch record.
    #[test]
    fn a_failing_learner_stops_the_run_at_the_failing_step() {
        let mut l = Scripted::new(vec![0.1], 2);
        match train(&mut l, &tiny(40, 8), &opts(2)) {
            Err(TrainError::Learner {
                epoch: 1,
                step: 3,
                reason,
            }) => assert!(reason.contains("simulator exited"), "{reason}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(l.steps, 3, "no step after the failure");
    }

    // Issue 12: activation noise reaches the training steps in the train regime, and the
    // learner is handed back without it whether the run finished or stopped.
    #[test]
    fn activation_noise_is_set_for_training_and_cleared_on_every_return() {
        let mut o = opts(1);
        o.noise.activation.level = 0.1;
        o.noise.activation.regime = crate::noise::Regime::Train;
        let mut l = Scripted::new(vec![0.1], 2);
        assert!(
            train(&mut l, &tiny(40, 8), &o).is_err(),
            "the learner fails at step 3"
        );
        assert_eq!(l.noisy_steps, [true, true, true]);
        assert!(l.act.is_none(), "cleared after the failed run");
        let mut l = Scripted::new(vec![0.1], 100);
        train(&mut l, &tiny(40, 8), &o).unwrap();
        assert!(l.noisy_steps.iter().all(|&n| n) && l.act.is_none());
        // In the inference regime the steps see none.
        o.noise.activation.regime = crate::noise::Regime::Inference;
        let mut l = Scripted::new(vec![0.1], 100);
        train(&mut l, &tiny(40, 8), &o).unwrap();
        assert!(l.noisy_steps.iter().all(|&n| !n) && l.act.is_none());
    }

    // Issue 11, item 13: a loss that becomes non-finite or explodes stops the run and names
    // the likely cause.
    #[test]
    fn a_diverging_loss_stops_the_run_with_the_likely_cause() {
        let run = |losses: Vec<f64>| {
            let mut l = Scripted::new(losses, usize::MAX);
            train(&mut l, &tiny(40, 8), &opts(3))
        };
        // Falling, noisy, or a brief spike: fine.
        run(vec![2.3, 2.0, 40.0, 1.5, 1.0, 0.5]).unwrap();
        run(vec![0.0, 0.0, 0.06, 0.05]).unwrap();
        for (losses, what) in [
            (vec![2.3, f64::NAN], "became NaN"),
            (vec![2.3, 2.0, f64::INFINITY], "became inf"),
            (vec![2.3, 5e3, 1e5, 2e5, 1e5, 3e5], "times its start"),
        ] {
            match run(losses.clone()) {
                Err(e @ TrainError::Diverged { epoch: 1, .. }) => {
                    let m = e.to_string();
                    assert!(
                        m.contains(what) && m.contains("learning rate too high"),
                        "{m}"
                    );
                }
                other => panic!("{losses:?}: {other:?}"),
            }
        }
        // Not checked when asked not to (speed measurements).
        let mut l = Scripted::new(vec![1.0, f64::NAN], usize::MAX);
        let o = RunOptions {
            check_divergence: false,
            ..opts(1)
        };
        train(&mut l, &tiny(40, 8), &o).unwrap();
    }

    // Issue 11, item 9: an accuracy over zero samples was reported as 0.0000.
    #[test]
    fn empty_splits_are_refused() {
        let mut l = Scripted::new(vec![1.0], usize::MAX);
        let e = train(&mut l, &tiny(8, 0), &opts(1))
            .unwrap_err()
            .to_string();
        assert!(e.contains("test split has no samples"), "{e}");
        let e = train(&mut l, &tiny(0, 8), &opts(1))
            .unwrap_err()
            .to_string();
        assert!(e.contains("training split has no samples"), "{e}");
        assert_eq!(l.steps, 0);
    }

    #[test]
    fn shift_zero_leaves_images_alone() {
        let mut x = ramp();
        shift_images(&mut x, 5, 4, 0, &mut ChaCha8Rng::seed_from_u64(0));
        assert_eq!(x, ramp());
    }
}
