//! The one TOML config: network, algorithm options (DESIGN.md §1), training and data.
//!
//! It is the single source of truth that every backend reads. Parsing is strict: unknown keys
//! and out-of-range values are rejected with the file, the line and a sentence saying what is
//! allowed, because a silently ignored typo in a hardware config costs a synthesis run.

//!
//! Where things live: the types of the file are here; [`fixed`] holds the fixed-point formats
//! and their width rules, [`load`] reading a file and applying `--set` overrides, [`validate`]
//! the range rules and the errors that name a key's line.

pub use crate::noise::Noise;
use serde::{Deserialize, Serialize};
use std::fmt;

mod fixed;
mod load;
mod validate;

pub use fixed::{FixedPoint, Product};
pub use validate::ConfigError;

/// The built-in default config (also `configs/default.toml`), so the program runs with no files.
pub const DEFAULT_TOML: &str = include_str!("../../configs/default.toml");
/// Name used in error messages for the built-in config.
pub const DEFAULT_NAME: &str = "<built-in configs/default.toml>";

/// The resolved config. In TOML it is read and written through [`ConfigFile`], which keeps
/// `training.optimizer` and `training.learning_rate` optional: without them each learner
/// takes its own from `[training.df]`, `[training.ff]` or `[training.bp]` (or, failing
/// those, [`Learner::default_training`]), and [`Training::optimizer`] and
/// [`Training::learning_rate`] hold the values of `algorithm.name`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(from = "ConfigFile", into = "ConfigFile")]
pub struct Config {
    pub network: Network,
    pub algorithm: Algorithm,
    pub training: Training,
    pub data: Data,
    /// Number formats and units of the fixed-point golden model (and the hardware).
    #[serde(default)]
    pub fixed: FixedPoint,
    /// The engine's shape and target board (RTL generator).
    #[serde(default)]
    pub hardware: Hardware,
    /// Noise to train and test under; off by default (and then not written out).
    #[serde(default, skip_serializing_if = "Noise::is_off")]
    pub noise: Noise,
}

/// The generated engine: systolic array shape and target board.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Hardware {
    /// R: rows of the output-stationary PE array (1..=64).
    pub array_rows: usize,
    /// C: columns of the PE array (1..=64).
    pub array_cols: usize,
    /// Target board, e.g. `ulx3s-85f`.
    pub board: String,
}

impl Default for Hardware {
    fn default() -> Self {
        Hardware {
            array_rows: 4,
            array_cols: 4,
            board: "ulx3s-85f".into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// d_0: pixels per sample.
    pub input: usize,
    /// d_1..d_L.
    pub hidden: Vec<usize>,
    /// C.
    pub classes: usize,
}

impl Network {
    /// Widths d_0..d_L.
    pub fn widths(&self) -> Vec<usize> {
        let mut w = vec![self.input];
        w.extend(&self.hidden);
        w
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Learner {
    /// Distance-Forward (this project's subject).
    Df,
    /// Hinton's Forward-Forward baseline.
    Ff,
    /// Backpropagation baseline with a softmax head.
    Bp,
}

impl Learner {
    pub const ALL: [Learner; 3] = [Learner::Df, Learner::Ff, Learner::Bp];

    /// Optimizer and learning rate of a learner whose config gives neither
    /// `training.<learner>` nor `training.optimizer`/`learning_rate`: plain SGD (what the
    /// hardware does) at a step that trains the built-in digits config. Goodness gradients
    /// carry a 2/d factor on unit-norm inputs, so DF and FF need large steps; backprop's
    /// cross-entropy gradients are O(1), so the same step makes it diverge.
    pub fn default_training(self) -> (Optimizer, f32) {
        match self {
            Learner::Df => (Optimizer::Sgd, 20.0),
            Learner::Ff => (Optimizer::Sgd, 50.0),
            Learner::Bp => (Optimizer::Sgd, 0.5),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Loss {
    Npair,
    Hinge,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Negatives {
    All,
    Random,
    Hard,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Collaboration {
    None,
    Previous,
    All,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Scheme {
    /// Purely local updates.
    #[serde(rename = "df")]
    Df,
    /// Local error plus a fixed random projection of the next layer's error.
    #[serde(rename = "df-r")]
    DfR,
    /// Local error plus the next layer's error through its transposed weights.
    #[serde(rename = "df-o")]
    DfO,
}

/// How the learning rate moves over the run (a multiplier on `learning_rate`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// Always 1.
    Constant,
    /// From 1 down to 0 at the end of the last epoch.
    Linear,
    /// Half a cosine from 1 down to 0.
    Cosine,
}

impl Schedule {
    /// The multiplier after fraction `progress` (0..1) of all training steps.
    pub fn factor(self, progress: f64) -> f32 {
        let p = progress.clamp(0.0, 1.0);
        match self {
            Schedule::Constant => 1.0,
            Schedule::Linear => (1.0 - p) as f32,
            Schedule::Cosine => (0.5 * (1.0 + (std::f64::consts::PI * p).cos())) as f32,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Optimizer {
    Sgd,
    Momentum,
    Adam,
}

macro_rules! display_as_serde {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // The serde name is the one users write in TOML and on the command line.
                let v = serde_json::to_value(self).map_err(|_| fmt::Error)?;
                f.write_str(v.as_str().unwrap_or("?"))
            }
        }
    )*};
}
display_as_serde!(
    Learner,
    Loss,
    Negatives,
    Collaboration,
    Scheme,
    Optimizer,
    Schedule
);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Algorithm {
    pub name: Learner,
    pub loss: Loss,
    pub margin: f32,
    pub scale: f32,
    pub negatives: Negatives,
    pub negatives_count: usize,
    pub collaboration: Collaboration,
    pub scheme: Scheme,
    /// 1-based layer indices summed at inference; empty means all.
    pub eval_layers: Vec<usize>,
    pub epsilon: f32,
    pub ff_threshold: f32,
    pub feedback_seed: u64,
}

/// One learner's own optimizer and learning rate: `[training.df]`, `[training.ff]`,
/// `[training.bp]`, and (as [`Training::all_learners`]) `training.optimizer` and
/// `training.learning_rate` themselves.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LearnerTraining {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optimizer: Option<Optimizer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learning_rate: Option<f32>,
}

impl LearnerTraining {
    fn is_empty(&self) -> bool {
        self.optimizer.is_none() && self.learning_rate.is_none()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Training {
    /// The optimizer of this run (of `algorithm.name`): `training.optimizer` if the config
    /// gives it, else the learner's own ([`Training::learner`]), else
    /// [`Learner::default_training`]. Set by parsing; code that changes it directly changes
    /// this run only (it is written back as `training.optimizer`).
    pub optimizer: Optimizer,
    /// The learning rate of this run, resolved like [`Training::optimizer`].
    pub learning_rate: f32,
    pub lr_schedule: Schedule,
    pub momentum: f32,
    pub batch: usize,
    pub epochs: usize,
    pub seed: u64,
    /// Data augmentation: each training image is translated by a random whole number of
    /// pixels in [-shift, shift] on each axis (zero fill) before every step; 0 = off.
    /// Evaluation always sees the images unchanged.
    pub shift: usize,
    /// `training.optimizer` and `training.learning_rate` as the config gives them (for every
    /// learner; `None` when absent).
    pub all_learners: LearnerTraining,
    /// `[training.df]`: DF's own settings.
    pub df: LearnerTraining,
    /// `[training.ff]`: FF's own settings.
    pub ff: LearnerTraining,
    /// `[training.bp]`: backprop's own settings.
    pub bp: LearnerTraining,
}

impl Training {
    /// The table of one learner's own settings.
    pub fn learner(&self, l: Learner) -> &LearnerTraining {
        match l {
            Learner::Df => &self.df,
            Learner::Ff => &self.ff,
            Learner::Bp => &self.bp,
        }
    }

    /// Optimizer and learning rate learner `l` trains with under this config, each with the
    /// key it comes from (`default`: [`Learner::default_training`]). `training.optimizer`
    /// and `training.learning_rate` apply to every learner and come first; then the
    /// learner's own table.
    pub fn resolve(&self, l: Learner) -> ((Optimizer, &'static str), (f32, &'static str)) {
        let own = self.learner(l);
        let (opt0, lr0) = l.default_training();
        let (own_opt, own_lr) = match l {
            Learner::Df => ("training.df.optimizer", "training.df.learning_rate"),
            Learner::Ff => ("training.ff.optimizer", "training.ff.learning_rate"),
            Learner::Bp => ("training.bp.optimizer", "training.bp.learning_rate"),
        };
        let opt = match (self.all_learners.optimizer, own.optimizer) {
            (Some(o), _) => (o, "training.optimizer"),
            (None, Some(o)) => (o, own_opt),
            (None, None) => (opt0, "default"),
        };
        let lr = match (self.all_learners.learning_rate, own.learning_rate) {
            (Some(v), _) => (v, "training.learning_rate"),
            (None, Some(v)) => (v, own_lr),
            (None, None) => (lr0, "default"),
        };
        (opt, lr)
    }
}

/// [`Training`] as TOML has it: the optimizer and learning rate are optional.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optimizer: Option<Optimizer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learning_rate: Option<f32>,
    pub lr_schedule: Schedule,
    pub momentum: f32,
    pub batch: usize,
    pub epochs: usize,
    pub seed: u64,
    #[serde(default)]
    pub shift: usize,
    #[serde(default, skip_serializing_if = "LearnerTraining::is_empty")]
    pub df: LearnerTraining,
    #[serde(default, skip_serializing_if = "LearnerTraining::is_empty")]
    pub ff: LearnerTraining,
    #[serde(default, skip_serializing_if = "LearnerTraining::is_empty")]
    pub bp: LearnerTraining,
}

/// [`Config`] as TOML has it (see [`TrainingFile`]).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub network: Network,
    pub algorithm: Algorithm,
    pub training: TrainingFile,
    pub data: Data,
    #[serde(default)]
    pub fixed: FixedPoint,
    #[serde(default)]
    pub hardware: Hardware,
    #[serde(default, skip_serializing_if = "Noise::is_off")]
    pub noise: Noise,
}

impl From<ConfigFile> for Config {
    fn from(f: ConfigFile) -> Config {
        let t = f.training;
        let mut training = Training {
            optimizer: Optimizer::Sgd,
            learning_rate: 0.0,
            lr_schedule: t.lr_schedule,
            momentum: t.momentum,
            batch: t.batch,
            epochs: t.epochs,
            seed: t.seed,
            shift: t.shift,
            all_learners: LearnerTraining {
                optimizer: t.optimizer,
                learning_rate: t.learning_rate,
            },
            df: t.df,
            ff: t.ff,
            bp: t.bp,
        };
        let ((opt, _), (lr, _)) = training.resolve(f.algorithm.name);
        training.optimizer = opt;
        training.learning_rate = lr;
        Config {
            network: f.network,
            algorithm: f.algorithm,
            training,
            data: f.data,
            fixed: f.fixed,
            hardware: f.hardware,
            noise: f.noise,
        }
    }
}

impl From<Config> for ConfigFile {
    fn from(c: Config) -> ConfigFile {
        let t = c.training;
        let ((opt, _), (lr, _)) = t.resolve(c.algorithm.name);
        // A value changed in code (not what the keys resolve to) is written for every
        // learner, so that reading the text back gives this run's value.
        let optimizer = if t.optimizer != opt {
            Some(t.optimizer)
        } else {
            t.all_learners.optimizer
        };
        let learning_rate = if t.learning_rate.to_bits() != lr.to_bits() {
            Some(t.learning_rate)
        } else {
            t.all_learners.learning_rate
        };
        // The shared keys take precedence: the per-learner values they hide are left out
        // (a file may not give both, see `check_shadowing`).
        let own = |mut o: LearnerTraining| {
            if optimizer.is_some() {
                o.optimizer = None;
            }
            if learning_rate.is_some() {
                o.learning_rate = None;
            }
            o
        };
        ConfigFile {
            network: c.network,
            algorithm: c.algorithm,
            training: TrainingFile {
                optimizer,
                learning_rate,
                lr_schedule: t.lr_schedule,
                momentum: t.momentum,
                batch: t.batch,
                epochs: t.epochs,
                seed: t.seed,
                shift: t.shift,
                df: own(t.df),
                ff: own(t.ff),
                bp: own(t.bp),
            },
            data: c.data,
            fixed: c.fixed,
            hardware: c.hardware,
            noise: c.noise,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Data {
    /// `digits`, `mnist` or `idx:DIR`.
    pub dataset: String,
}

impl Config {
    /// Switch the learner (`algorithm.name`), taking its optimizer and learning rate as
    /// the config resolves them for it ([`Training::resolve`]).
    pub fn set_learner(&mut self, l: Learner) {
        self.algorithm.name = l;
        let ((opt, _), (lr, _)) = self.training.resolve(l);
        self.training.optimizer = opt;
        self.training.learning_rate = lr;
    }

    /// The fixed-point models and the engine update with η/B as a constant of
    /// `fixed.lr_frac` fraction bits: a learning rate that rounds to 0 there would train
    /// nothing (and exit as if it had). `Err` says so and how to fix it.
    pub fn check_fixed_learning_rate(&self) -> Result<(), String> {
        let t = &self.training;
        let v = t.learning_rate as f64 / t.batch as f64 * (1u64 << self.fixed.lr_frac) as f64;
        if (v + 0.5).floor() >= 1.0 {
            return Ok(());
        }
        Err(format!(
            "the fixed-point update multiplies by eta/B = {} / {} with fixed.lr_frac = {} \
             fraction bits, which rounds to 0: nothing would ever be learned; raise \
             fixed.lr_frac (to at least {}) or the learning rate",
            t.learning_rate,
            t.batch,
            self.fixed.lr_frac,
            (t.batch as f64 / t.learning_rate as f64).log2().ceil() as i64
        ))
    }

    /// Number of DF layers L.
    /// η·factor/B as the update unit's constant multiplier, half-up to `fixed.lr_frac`
    /// fraction bits (`factor` is the learning-rate schedule's).
    pub fn lr_constant(&self, factor: f32) -> crate::fixed::LearningRate {
        let t = &self.training;
        let eta = t.learning_rate as f64 * factor as f64 / t.batch as f64;
        let frac = self.fixed.lr_frac;
        crate::fixed::LearningRate::Mul {
            value: (eta * (1u64 << frac) as f64 + 0.5).floor() as i64,
            frac,
        }
    }

    pub fn layers(&self) -> usize {
        self.network.hidden.len()
    }

    /// The inference layer set S as 0-based indices.
    pub fn eval_layer_indices(&self) -> Vec<usize> {
        if self.algorithm.eval_layers.is_empty() {
            (0..self.layers()).collect()
        } else {
            self.algorithm.eval_layers.iter().map(|l| l - 1).collect()
        }
    }

    /// The config as TOML text (for reports and `dfforge config`).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests;
