//! The one TOML config: network, algorithm options (DESIGN.md §1), training and data.
//!
//! It is the single source of truth that every backend reads. Parsing is strict: unknown keys
//! and out-of-range values are rejected with the file, the line and a sentence saying what is
//! allowed, because a silently ignored typo in a hardware config costs a synthesis run.

use crate::fixed::{QFormat, Rounding};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::Path;

/// The built-in default config (also `configs/default.toml`), so the program runs with no files.
pub const DEFAULT_TOML: &str = include_str!("../configs/default.toml");
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
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Data {
    /// `digits`, `mnist` or `idx:DIR`.
    pub dataset: String,
}

/// The fixed-point golden model's number formats and unit settings (DESIGN.md §2).
///
/// Every bus of the hardware has one of these formats; `crate::fixed::model` documents where
/// each is used. Narrowing from a wider bus always rounds with the named mode and saturates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FixedPoint {
    /// Input pixels x in [0, 1).
    pub pixel: QFormat,
    /// Normalised activations x̂ (inputs of every layer's MACs).
    pub act: QFormat,
    pub weight: QFormat,
    pub bias: QFormat,
    /// Label centroids U.
    pub centroid: QFormat,
    /// Forward and transposed MAC accumulators; frac must be weight.frac + act.frac.
    pub accumulator: QFormat,
    /// h = ReLU(z) after requantisation.
    pub hidden: QFormat,
    /// G and G̃.
    pub goodness: QFormat,
    /// Loss logits t = s (G̃(k) − G̃(y) + m): the exp table's input.
    pub logit: QFormat,
    /// Loss coefficients β.
    pub beta: QFormat,
    /// Local errors δ.
    pub delta: QFormat,
    /// Weight-gradient accumulators ΔW; frac must be delta.frac + act.frac.
    pub update: QFormat,
    /// Address bits of the reciprocal-square-root table (normalisation unit).
    pub rsqrt_addr_bits: u32,
    /// Fraction bits of the rsqrt table's words (values in (1, 2]).
    pub rsqrt_frac: u32,
    /// Address bits of the exp table (N-pair loss unit).
    pub exp_addr_bits: u32,
    /// Fraction bits of the exp table's words (values in (0, 1]).
    pub exp_frac: u32,
    /// The exp table covers t in [−exp_range, 0]; below it e^t is taken as 0.
    pub exp_range: f64,
    /// Fraction bits of the loss unit's reciprocal 1 / (1 + Σ e^t).
    pub recip_frac: u32,
    /// Fraction bits of the constants 1/d (goodness) and 2/d (δ) and of s (loss scale).
    pub const_frac: u32,
    /// Fraction bits of the learning-rate multiplier η/B.
    pub lr_frac: u32,
    /// Rounding of activations, goodness, β and δ.
    pub rounding: Rounding,
    /// Rounding of the weight updates (stochastic draws from the LFSR).
    pub update_rounding: Rounding,
    /// Width of the Galois LFSR feeding stochastic rounding (maximal taps from XAPP052).
    pub lfsr_width: u32,
    /// Its non-zero seed.
    pub lfsr_seed: u64,
    /// Operand width of the target's hard multiplier (ECP5 MULT18X18D: 18).
    pub multiplier_bits: u32,
    /// Products allowed to be wider than the hard multiplier (split over several DSP blocks).
    pub wide_products: Vec<String>,
}

fn q(bits: u32, frac: u32, signed: bool) -> QFormat {
    QFormat { bits, frac, signed }
}

impl Default for FixedPoint {
    fn default() -> Self {
        FixedPoint {
            pixel: q(8, 8, false),
            act: q(12, 12, false),
            weight: q(16, 12, true),
            bias: q(16, 12, true),
            centroid: q(16, 12, true),
            accumulator: q(48, 24, true),
            hidden: q(16, 10, false),
            goodness: q(18, 12, false),
            logit: q(16, 8, true),
            beta: q(16, 14, true),
            delta: q(18, 20, true),
            update: q(48, 32, true),
            rsqrt_addr_bits: 10,
            rsqrt_frac: 16,
            exp_addr_bits: 10,
            exp_frac: 16,
            exp_range: 16.0,
            recip_frac: 24,
            const_frac: 16,
            lr_frac: 16,
            rounding: Rounding::HalfUp,
            update_rounding: Rounding::Stochastic,
            lfsr_width: 32,
            lfsr_seed: 1,
            multiplier_bits: 18,
            wide_products: ["goodness", "delta_scale", "logit", "learning_rate"]
                .map(String::from)
                .to_vec(),
        }
    }
}

/// One multiplier of the hardware: its name (as `wide_products` spells it) and operand widths.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Product {
    pub name: &'static str,
    pub what: &'static str,
    pub a_bits: u32,
    pub b_bits: u32,
}

/// Bits of a signed or unsigned integer holding every value of magnitude ≤ `max_abs`.
fn bits_for(max_abs: u128, signed: bool) -> u32 {
    let mag = 128 - max_abs.leading_zeros();
    mag + u32::from(signed)
}

/// Unsigned bits of `x` as a constant with `frac` fraction bits (rounded half-up).
fn const_bits_at(x: f64, frac: u32) -> u32 {
    let raw = (x * (1u64 << frac) as f64 + 0.5).floor().max(0.0) as u128;
    bits_for(raw, false)
}

/// Largest magnitude a format holds (|min| for signed).
fn max_abs(f: QFormat) -> u128 {
    if f.signed {
        1u128 << (f.bits - 1)
    } else {
        (1u128 << f.bits) - 1
    }
}

impl FixedPoint {
    /// Raw value of a constant with `const_frac` fraction bits, rounded half-up.
    pub fn constant(&self, x: f64) -> i64 {
        (x * (1u64 << self.const_frac) as f64 + 0.5).floor() as i64
    }

    /// Every multiplier the engine uses, with operand widths.
    pub fn products(&self, cfg: &Config) -> Vec<Product> {
        let a = &cfg.algorithm;
        let max_d = cfg.network.hidden.iter().copied().max().unwrap_or(1);
        let const_bits = |x: f64| bits_for(self.constant(x).unsigned_abs() as u128, false);
        let rs_bits = self.rsqrt_frac + 2;
        let mut p = vec![
            Product {
                name: "forward",
                what: "weight x activation (forward GEMM)",
                a_bits: self.weight.bits,
                b_bits: self.act.bits,
            },
            Product {
                name: "gradient",
                what: "delta x activation (weight-gradient GEMM)",
                a_bits: self.delta.bits,
                b_bits: self.act.bits,
            },
            Product {
                name: "square",
                what: "hidden x hidden (goodness squared sum)",
                a_bits: self.hidden.bits,
                b_bits: self.hidden.bits,
            },
            Product {
                name: "normalise",
                what: "hidden x rsqrt word (normalisation)",
                a_bits: self.hidden.bits,
                b_bits: rs_bits,
            },
            Product {
                name: "input_normalise",
                what: "pixel x rsqrt word (input normalisation)",
                a_bits: self.pixel.bits,
                b_bits: rs_bits,
            },
            Product {
                name: "delta",
                what: "beta x hidden (local error)",
                a_bits: self.beta.bits,
                b_bits: self.hidden.bits,
            },
            Product {
                name: "goodness",
                what: "squared sum x 1/d (goodness)",
                a_bits: self.accumulator.bits,
                b_bits: const_bits(1.0),
            },
            Product {
                name: "delta_scale",
                what: "beta*hidden x 2/d (local error scale)",
                a_bits: self.beta.bits + self.hidden.bits,
                b_bits: const_bits(2.0 / 1.0f64.max(max_d as f64)),
            },
            Product {
                name: "logit",
                what: "goodness difference x s (loss logit)",
                a_bits: self.goodness.bits + 1,
                b_bits: const_bits(a.scale as f64),
            },
            Product {
                name: "learning_rate",
                what: "weight gradient x eta/B (update)",
                a_bits: self.update.bits,
                b_bits: const_bits_at(
                    cfg.training.learning_rate as f64 / cfg.training.batch as f64,
                    self.lr_frac,
                ),
            },
            Product {
                name: "loss_recip",
                what: "exp word x reciprocal (loss unit)",
                a_bits: self.exp_frac + 1,
                b_bits: self.recip_frac - self.exp_frac.min(self.recip_frac) + 1,
            },
        ];
        if a.scheme != Scheme::Df {
            p.push(Product {
                name: "transpose",
                what: "delta x weight (DF-R/DF-O feedback GEMM)",
                a_bits: self.delta.bits,
                b_bits: self.weight.bits,
            });
            p.push(Product {
                name: "feedback_scale",
                what: "feedback x rsqrt word (DF-R/DF-O)",
                a_bits: self.delta.bits,
                b_bits: rs_bits,
            });
        }
        p
    }

    fn violations(&self, cfg: &Config) -> Vec<Violation> {
        let mut out = Vec::new();
        let mut bad = |key: &'static str, ok: bool, message: String| {
            if !ok {
                out.push(Violation { key, message });
            }
        };
        // Range: every format must hold the values its bus carries; a format whose fraction
        // bits leave it no room for them saturates everything (and trains to chance).
        for (key, f, what, need) in [
            ("fixed.pixel", self.pixel, "pixels in [0, 1]", 1.0),
            (
                "fixed.act",
                self.act,
                "normalised activations in [0, 1]",
                1.0,
            ),
            (
                "fixed.hidden",
                self.hidden,
                "hidden values h = ReLU(z) of at least 1",
                1.0,
            ),
            (
                "fixed.goodness",
                self.goodness,
                "goodness values of at least 1",
                1.0,
            ),
            ("fixed.weight", self.weight, "weights of magnitude 1", 1.0),
            ("fixed.bias", self.bias, "biases of magnitude 1", 1.0),
            (
                "fixed.centroid",
                self.centroid,
                "centroids of magnitude 1",
                1.0,
            ),
            (
                "fixed.logit",
                self.logit,
                "logits across the exp table's range (fixed.exp_range)",
                self.exp_range,
            ),
        ] {
            // The largest value, 2^(bits - frac - signed) less one LSB, must reach `need`
            // within that LSB.
            let int_bits = f.bits as i64 - f.frac as i64 - i64::from(f.signed);
            let need_bits = if need.is_finite() && need > 1.0 {
                need.log2().ceil() as i64
            } else {
                0
            };
            let ok = int_bits >= need_bits;
            let want_frac = (f.bits as i64 - i64::from(f.signed) - need_bits).max(0);
            bad(
                key,
                ok,
                format!(
                    "is {f}: its {} fraction bits leave {} integer bits, too few for {what}; \
                     use frac <= {want_frac} (or more bits)",
                    f.frac, int_bits
                ),
            );
        }
        bad(
            "fixed.accumulator",
            self.accumulator.signed && self.accumulator.frac == self.weight.frac + self.act.frac,
            format!(
                "must be signed with frac = weight.frac + act.frac = {} (the MAC adds exact products), got {}",
                self.weight.frac + self.act.frac,
                self.accumulator
            ),
        );
        bad(
            "fixed.update",
            self.update.signed && self.update.frac == self.delta.frac + self.act.frac,
            format!(
                "must be signed with frac = delta.frac + act.frac = {} (the gradient MAC adds exact products), got {}",
                self.delta.frac + self.act.frac,
                self.update
            ),
        );
        for (key, f) in [("fixed.bias", self.bias), ("fixed.centroid", self.centroid)] {
            bad(
                key,
                f.signed && f.frac <= self.accumulator.frac,
                format!(
                    "must be signed with frac <= accumulator.frac = {} (it is added into the accumulator), got {}",
                    self.accumulator.frac, f
                ),
            );
        }
        for (key, f) in [
            ("fixed.weight", self.weight),
            ("fixed.delta", self.delta),
            ("fixed.beta", self.beta),
            ("fixed.logit", self.logit),
        ] {
            bad(key, f.signed, format!("must be signed, got {f}"));
        }
        for (key, f) in [
            ("fixed.pixel", self.pixel),
            ("fixed.act", self.act),
            ("fixed.hidden", self.hidden),
            ("fixed.goodness", self.goodness),
        ] {
            bad(
                key,
                !f.signed,
                format!("must be unsigned (its values are never negative), got {f}"),
            );
        }
        // Exactness: each accumulation below must fit its accumulator for the widest case.
        let widths = cfg.network.widths();
        let k = match cfg.algorithm.negatives {
            Negatives::Random => cfg.algorithm.negatives_count + 1,
            _ => cfg.network.classes,
        } as u128;
        let acc_f = self.accumulator.frac;
        let mut fwd_need = 0;
        for l in 1..widths.len() {
            let sum = widths[l - 1] as u128 * max_abs(self.weight) * max_abs(self.act)
                + (max_abs(self.bias) << (acc_f - self.bias.frac.min(acc_f)))
                + if l == 1 {
                    max_abs(self.centroid) << (acc_f - self.centroid.frac.min(acc_f))
                } else {
                    0
                };
            fwd_need = fwd_need.max(bits_for(sum, true));
            let sq = widths[l] as u128 * max_abs(self.hidden).pow(2);
            fwd_need = fwd_need.max(bits_for(sq, true));
            if cfg.algorithm.scheme != Scheme::Df && l + 1 < widths.len() {
                let t = widths[l + 1] as u128 * max_abs(self.delta) * max_abs(self.weight);
                fwd_need = fwd_need.max(bits_for(t, true));
            }
        }
        bad(
            "fixed.accumulator",
            self.accumulator.bits >= fwd_need,
            format!(
                "has {} bits but the exact sums of this network need {fwd_need} (widest layer's products plus bias and centroid, the squared sum, and DF-R/DF-O feedback); widen accumulator.bits or narrow the operands",
                self.accumulator.bits
            ),
        );
        let rows = cfg.training.batch as u128 * k;
        let upd = rows * max_abs(self.delta) * max_abs(self.act);
        let upd_need = bits_for(upd, true);
        bad(
            "fixed.update",
            self.update.bits >= upd_need,
            format!(
                "has {} bits but summing delta x activation over batch {} x {} hypotheses needs \
                 {upd_need} bits to stay exact; widen update.bits or lower training.batch",
                self.update.bits, cfg.training.batch, k
            ),
        );
        // β_y = −Σ_{k∈N} β_k: N-pair's β_k sum to less than 1; hinge's are 1 per active
        // negative, and there are at most |N| of them (C − 1 with all negatives, n with random
        // or hard ones, although hard negatives score all C hypotheses).
        let negatives = match cfg.algorithm.negatives {
            Negatives::All => cfg.network.classes - 1,
            Negatives::Random | Negatives::Hard => cfg.algorithm.negatives_count,
        } as u128;
        let beta_min = match cfg.algorithm.loss {
            Loss::Npair => 1u128,
            Loss::Hinge => negatives.max(1),
        } << self.beta.frac;
        bad(
            "fixed.beta",
            max_abs(self.beta) >= beta_min,
            format!(
                "cannot hold beta_y = -{} (its bound with loss {} and {} negatives per sample); give beta more integer bits (bits - frac - 1 >= {})",
                beta_min >> self.beta.frac,
                cfg.algorithm.loss,
                negatives,
                bits_for(beta_min >> self.beta.frac, false)
            ),
        );
        bad(
            "fixed.rsqrt_addr_bits",
            (4..=16).contains(&self.rsqrt_addr_bits),
            format!("is {}; it must be between 4 and 16", self.rsqrt_addr_bits),
        );
        bad(
            "fixed.exp_addr_bits",
            (4..=16).contains(&self.exp_addr_bits),
            format!("is {}; it must be between 4 and 16", self.exp_addr_bits),
        );
        for (key, v) in [
            ("fixed.rsqrt_frac", self.rsqrt_frac),
            ("fixed.exp_frac", self.exp_frac),
            ("fixed.const_frac", self.const_frac),
            ("fixed.lr_frac", self.lr_frac),
        ] {
            bad(
                key,
                (4..=30).contains(&v),
                format!("is {v}; it must be between 4 and 30"),
            );
        }
        bad(
            "fixed.recip_frac",
            (self.exp_frac..=46).contains(&self.recip_frac),
            format!(
                "is {}; it must be between exp_frac ({}) and 46",
                self.recip_frac, self.exp_frac
            ),
        );
        bad(
            "fixed.exp_range",
            self.exp_range.is_finite() && self.exp_range >= 1.0 && self.exp_range <= 64.0,
            format!("is {}; it must be in [1, 64]", self.exp_range),
        );
        bad(
            "fixed.lfsr_width",
            crate::fixed::default_taps(self.lfsr_width).is_some(),
            format!(
                "is {}; supported LFSR widths are 8, 16, 24, 32, 48 and 64",
                self.lfsr_width
            ),
        );
        bad(
            "fixed.lfsr_seed",
            self.lfsr_seed != 0 && (self.lfsr_width >= 64 || self.lfsr_seed < 1u64 << self.lfsr_width),
            format!("is {}; it must be non-zero (an all-zero LFSR never leaves zero) and fit in lfsr_width bits", self.lfsr_seed),
        );
        bad(
            "fixed.multiplier_bits",
            (8..=36).contains(&self.multiplier_bits),
            format!("is {}; it must be between 8 and 36", self.multiplier_bits),
        );
        let known: Vec<&str> = self.products(cfg).iter().map(|p| p.name).collect();
        for w in &self.wide_products {
            bad(
                "fixed.wide_products",
                known.contains(&w.as_str())
                    || ["transpose", "feedback_scale"].contains(&w.as_str()),
                format!(
                    "names `{w}`, which is not a product of this engine; known: {}",
                    known.join(", ")
                ),
            );
        }
        for p in self.products(cfg) {
            let fits = p.a_bits <= self.multiplier_bits && p.b_bits <= self.multiplier_bits;
            bad(
                "fixed.wide_products",
                fits || self.wide_products.iter().any(|w| w == p.name),
                format!(
                    "the `{}` product ({}) is {}x{} bits, wider than the {}-bit hard multiplier; \
                     narrow its operands or add \"{}\" to fixed.wide_products to split it over \
                     several DSP blocks",
                    p.name, p.what, p.a_bits, p.b_bits, self.multiplier_bits, p.name
                ),
            );
        }
        out
    }
}

/// A config error that names where it is and what is allowed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {err}")]
    Io {
        path: String,
        // Not `#[source]`: the message already quotes it, and `{:#}` would print it twice.
        err: std::io::Error,
    },
    #[error("{file}:{line}: {message}")]
    Invalid {
        file: String,
        line: usize,
        message: String,
    },
    #[error("{file}: {message}")]
    InvalidNoLine { file: String, message: String },
}

/// A validation failure before it is placed in a file: the dotted key and the sentence.
struct Violation {
    key: &'static str,
    message: String,
}

impl Violation {
    /// The error, at the key's line in `text` when it is there.
    fn into_error(self, text: &str, file: &str) -> ConfigError {
        let message = format!("`{}`: {}", self.key, self.message);
        match key_line(text, self.key) {
            Some(line) => ConfigError::Invalid {
                file: file.to_string(),
                line,
                message,
            },
            None => ConfigError::InvalidNoLine {
                file: file.to_string(),
                message,
            },
        }
    }
}

/// A config file must not give the optimizer or learning rate both for every learner
/// (`training.learning_rate`) and for one (`[training.bp] learning_rate`): the first would
/// silently hide the second.
fn check_shadowing(cf: &ConfigFile, text: &str, file: &str) -> Result<(), ConfigError> {
    let t = &cf.training;
    for (l, own) in [
        (Learner::Df, &t.df),
        (Learner::Ff, &t.ff),
        (Learner::Bp, &t.bp),
    ] {
        let keys = match l {
            Learner::Df => ("training.df.optimizer", "training.df.learning_rate"),
            Learner::Ff => ("training.ff.optimizer", "training.ff.learning_rate"),
            Learner::Bp => ("training.bp.optimizer", "training.bp.learning_rate"),
        };
        let clash = if let (Some(all), Some(_)) = (t.optimizer, own.optimizer) {
            Some((keys.0, "optimizer", all.to_string()))
        } else if let (Some(all), Some(_)) = (t.learning_rate, own.learning_rate) {
            Some((keys.1, "learning_rate", all.to_string()))
        } else {
            None
        };
        if let Some((key, name, all)) = clash {
            return Err(Violation {
                key,
                message: format!(
                    "is given, but training.{name} = {all} applies to every learner and would \
                     hide it; keep one: remove training.{name} to give each learner its own \
                     ([training.df], [training.ff], [training.bp]), or remove this one"
                ),
            }
            .into_error(text, file));
        }
    }
    Ok(())
}

impl Config {
    /// The built-in default config.
    pub fn builtin() -> Config {
        // The default is compiled in and covered by a test, so failing here is a build defect.
        Config::from_toml_str(DEFAULT_TOML, DEFAULT_NAME).expect("built-in default config is valid")
    }

    /// Load from a file, or the built-in default when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        match path {
            None => Ok(Config::builtin()),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|err| ConfigError::Io {
                    path: p.display().to_string(),
                    err,
                })?;
                Config::from_toml_str(&text, &p.display().to_string())
            }
        }
    }

    /// Load (file or built-in) and apply `KEY=VALUE` overrides, e.g. `fixed.weight.bits=14`.
    ///
    /// VALUE is read as a TOML value (`3`, `0.5`, `"hinge"`, `[64, 64]`, `{ bits = 8, frac = 8,
    /// signed = false }`); anything that is not valid TOML is taken as a string, so
    /// `algorithm.loss=hinge` works without quotes.
    pub fn load_with(path: Option<&Path>, sets: &[String]) -> Result<Config, ConfigError> {
        if sets.is_empty() {
            return Config::load(path);
        }
        let (text, name) = match path {
            None => (DEFAULT_TOML.to_string(), DEFAULT_NAME.to_string()),
            Some(p) => (
                std::fs::read_to_string(p).map_err(|err| ConfigError::Io {
                    path: p.display().to_string(),
                    err,
                })?,
                p.display().to_string(),
            ),
        };
        let bad = |message: String| ConfigError::InvalidNoLine {
            file: name.clone(),
            message,
        };
        // The file on its own must not give a setting both for every learner and for one.
        if let Ok(cf) = toml::from_str::<ConfigFile>(&text) {
            check_shadowing(&cf, &text, &name)?;
        }
        let mut doc: toml_edit::DocumentMut = text
            .parse()
            .map_err(|e: toml_edit::TomlError| bad(e.to_string()))?;
        for set in sets {
            let (key, value) = set.split_once('=').ok_or_else(|| {
                bad(format!(
                    "--set `{set}`: write KEY=VALUE, e.g. --set training.epochs=5"
                ))
            })?;
            let parts: Vec<&str> = key.trim().split('.').collect();
            // `training.optimizer`/`learning_rate` set here apply to every learner: drop the
            // per-learner ones they override, so they cannot shadow each other.
            if let ["training", k @ ("optimizer" | "learning_rate")] = parts.as_slice() {
                if let Some(t) = doc.get_mut("training").and_then(|t| t.as_table_like_mut()) {
                    for l in ["df", "ff", "bp"] {
                        if let Some(own) = t.get_mut(l).and_then(|o| o.as_table_like_mut()) {
                            own.remove(k);
                        }
                    }
                }
            }
            // And the other way round: a learner's own value set after the shared one wins
            // for that learner. The shared value moves into the other learners' tables, so
            // that they keep it and nothing is hidden.
            if let ["training", l @ ("df" | "ff" | "bp"), k @ ("optimizer" | "learning_rate")] =
                parts.as_slice()
            {
                if let Some(t) = doc.get_mut("training").and_then(|t| t.as_table_like_mut()) {
                    if let Some(shared) = t.remove(k) {
                        for other in ["df", "ff", "bp"].into_iter().filter(|o| o != l) {
                            if t.get(other).is_none() {
                                t.insert(other, toml_edit::Item::Table(toml_edit::Table::new()));
                            }
                            if let Some(own) = t.get_mut(other).and_then(|o| o.as_table_like_mut())
                            {
                                own.insert(k, shared.clone());
                            }
                        }
                    }
                }
            }
            let value: toml_edit::Value = value
                .trim()
                .parse()
                .unwrap_or_else(|_| toml_edit::Value::from(value.trim()));
            let mut item = doc.as_item_mut();
            for part in &parts[..parts.len() - 1] {
                let t = item.as_table_like_mut().ok_or_else(|| {
                    bad(format!(
                        "--set `{key}`: `{part}` is inside a value, not a table"
                    ))
                })?;
                if t.get(part).is_none() {
                    t.insert(part, toml_edit::Item::Table(toml_edit::Table::new()));
                }
                item = t.get_mut(part).ok_or_else(|| {
                    bad(format!(
                        "--set `{key}`: cannot create the table `{part}` here"
                    ))
                })?;
            }
            let t = item
                .as_table_like_mut()
                .ok_or_else(|| bad(format!("--set `{key}`: its parent is not a table")))?;
            t.insert(parts[parts.len() - 1], toml_edit::Item::Value(value));
        }
        Config::parse(
            &doc.to_string(),
            &format!("{name} (with --set overrides)"),
            false,
        )
    }

    /// Parse and validate TOML text; `file` names the source in errors.
    pub fn from_toml_str(text: &str, file: &str) -> Result<Config, ConfigError> {
        Config::parse(text, file, true)
    }

    /// Parse, resolve and validate; `shadowing`: refuse a setting given both for every
    /// learner and for one ([`check_shadowing`]).
    fn parse(text: &str, file: &str, shadowing: bool) -> Result<Config, ConfigError> {
        let cf: ConfigFile = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            let message = e.message().trim().to_string();
            match line {
                Some(line) => ConfigError::Invalid {
                    file: file.to_string(),
                    line,
                    message,
                },
                None => ConfigError::InvalidNoLine {
                    file: file.to_string(),
                    message,
                },
            }
        })?;
        if shadowing {
            check_shadowing(&cf, text, file)?;
        }
        let cfg = Config::from(cf);
        cfg.validate_in(text, file)?;
        Ok(cfg)
    }

    /// Validate a config that did not come from text (e.g. after CLI overrides).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_in("", "<config after command-line overrides>")
    }

    fn validate_in(&self, text: &str, file: &str) -> Result<(), ConfigError> {
        match self.violations().into_iter().next() {
            None => Ok(()),
            Some(v) => Err(v.into_error(text, file)),
        }
    }

    fn violations(&self) -> Vec<Violation> {
        let mut out = Vec::new();
        let mut bad = |key: &'static str, ok: bool, message: String| {
            if !ok {
                out.push(Violation { key, message });
            }
        };
        let n = &self.network;
        bad(
            "network.input",
            (1..=1 << 20).contains(&n.input),
            format!("is {}; it must be between 1 and 1048576 pixels", n.input),
        );
        bad(
            "network.hidden",
            !n.hidden.is_empty() && n.hidden.len() <= 16,
            format!(
                "has {} layers; give between 1 and 16 layer widths, e.g. [128, 128]",
                n.hidden.len()
            ),
        );
        bad(
            "network.hidden",
            n.hidden.iter().all(|&w| (1..=65536).contains(&w)),
            format!("is {:?}; every width must be between 1 and 65536", n.hidden),
        );
        bad(
            "network.classes",
            (2..=256).contains(&n.classes),
            format!("is {}; it must be between 2 and 256", n.classes),
        );
        let a = &self.algorithm;
        bad(
            "algorithm.margin",
            a.margin.is_finite() && a.margin >= 0.0,
            format!("is {}; it must be a finite number >= 0", a.margin),
        );
        bad(
            "algorithm.scale",
            a.scale.is_finite() && a.scale > 0.0 && a.scale <= 1000.0,
            format!("is {}; it must be in (0, 1000]", a.scale),
        );
        bad(
            "algorithm.negatives_count",
            a.negatives_count >= 1 && a.negatives_count < n.classes,
            format!(
                "is {}; with {} classes it must be between 1 and {} (the number of wrong labels)",
                a.negatives_count,
                n.classes,
                n.classes.saturating_sub(1)
            ),
        );
        let layers = n.hidden.len();
        let mut seen = std::collections::BTreeSet::new();
        bad(
            "algorithm.eval_layers",
            a.eval_layers
                .iter()
                .all(|&l| l >= 1 && l <= layers && seen.insert(l)),
            format!(
                "is {:?}; list distinct 1-based layer numbers between 1 and {layers}, or [] for all",
                a.eval_layers
            ),
        );
        bad(
            "algorithm.epsilon",
            a.epsilon.is_finite() && a.epsilon > 0.0 && a.epsilon < 1.0,
            format!("is {}; it must be in (0, 1)", a.epsilon),
        );
        bad(
            "algorithm.ff_threshold",
            a.ff_threshold.is_finite() && a.ff_threshold >= 0.0,
            format!("is {}; it must be a finite number >= 0", a.ff_threshold),
        );
        bad(
            "algorithm.name",
            a.name != Learner::Ff || n.input >= n.classes,
            format!(
                "is ff, which writes the label into the first {} pixels, but network.input is only {}",
                n.classes, n.input
            ),
        );
        let t = &self.training;
        for (key, lr) in [
            ("training.learning_rate", t.all_learners.learning_rate),
            ("training.df.learning_rate", t.df.learning_rate),
            ("training.ff.learning_rate", t.ff.learning_rate),
            ("training.bp.learning_rate", t.bp.learning_rate),
            ("training.learning_rate", Some(t.learning_rate)),
        ] {
            if let Some(lr) = lr {
                bad(
                    key,
                    lr.is_finite() && lr > 0.0 && lr <= 1000.0,
                    format!("is {lr}; it must be in (0, 1000]"),
                );
            }
        }
        bad(
            "training.momentum",
            t.momentum.is_finite() && (0.0..1.0).contains(&t.momentum),
            format!("is {}; it must be in [0, 1)", t.momentum),
        );
        bad(
            "training.batch",
            (1..=65536).contains(&t.batch),
            format!("is {}; it must be between 1 and 65536", t.batch),
        );
        bad(
            "training.epochs",
            (1..=100_000).contains(&t.epochs),
            format!("is {}; it must be between 1 and 100000", t.epochs),
        );
        bad(
            "training.shift",
            t.shift <= 8,
            format!(
                "is {}; it must be between 0 and 8 pixels (0 switches augmentation off)",
                t.shift
            ),
        );
        if let Err(e) = self.data.dataset.parse::<crate::data::DatasetSpec>() {
            bad("data.dataset", false, e.to_string());
        }
        let h = &self.hardware;
        bad(
            "hardware.array_rows",
            (1..=64).contains(&h.array_rows),
            format!("is {}; it must be between 1 and 64", h.array_rows),
        );
        bad(
            "hardware.array_cols",
            (1..=64).contains(&h.array_cols),
            format!("is {}; it must be between 1 and 64", h.array_cols),
        );
        bad(
            "hardware.board",
            ["ulx3s-85f", "ulx3s-45f", "ulx3s-25f", "generic"].contains(&h.board.as_str()),
            format!(
                "is `{}`; known boards: ulx3s-85f, ulx3s-45f, ulx3s-25f, generic",
                h.board
            ),
        );
        if out.is_empty() {
            out.extend(self.fixed.violations(self));
        }
        out
    }

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

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// 1-based line of a dotted key's value in TOML text, if present.
fn key_line(text: &str, dotted: &str) -> Option<usize> {
    let doc: toml_edit::ImDocument<&str> = toml_edit::ImDocument::parse(text).ok()?;
    let mut item = doc.as_item();
    for part in dotted.split('.') {
        item = item.get(part)?;
    }
    let span = item.span()?;
    Some(line_of(text, span.start))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Config::from_toml_str(text, "t.toml")
            .unwrap_err()
            .to_string()
    }

    fn default_with(old: &str, new: &str) -> String {
        assert!(DEFAULT_TOML.contains(old), "default has no `{old}`");
        DEFAULT_TOML.replacen(old, new, 1)
    }

    #[test]
    fn builtin_default_is_valid_and_round_trips() {
        let c = Config::builtin();
        assert_eq!(c.network.widths(), vec![64, 128, 128]);
        let again = Config::from_toml_str(&c.to_toml(), "x").unwrap();
        assert_eq!(c, again);
    }

    #[test]
    fn unknown_key_is_rejected_with_its_line() {
        let text = default_with("batch = 32", "batch = 32\nbatch_size = 4");
        let line = text
            .lines()
            .position(|l| l.starts_with("batch_size"))
            .unwrap()
            + 1;
        let e = err(&text);
        assert!(e.starts_with(&format!("t.toml:{line}:")), "{e}");
        assert!(e.contains("unknown field `batch_size`"), "{e}");
    }

    #[test]
    fn bad_enum_value_lists_the_allowed_ones() {
        let e = err(&default_with("loss = \"npair\"", "loss = \"triplet\""));
        assert!(e.contains("npair") && e.contains("hinge"), "{e}");
    }

    #[test]
    fn out_of_range_values_name_line_and_rule() {
        let text = default_with("learning_rate = 20.0", "learning_rate = -1.0");
        let line = text
            .lines()
            .position(|l| l.starts_with("learning_rate"))
            .unwrap()
            + 1;
        let e = err(&text);
        assert_eq!(
            e,
            format!("t.toml:{line}: `training.df.learning_rate`: is -1; it must be in (0, 1000]")
        );
        let e = err(&default_with("negatives_count = 9", "negatives_count = 10"));
        assert!(e.contains("between 1 and 9"), "{e}");
        let e = err(&default_with("eval_layers = []", "eval_layers = [3]"));
        assert!(e.contains("between 1 and 2"), "{e}");
        let e = err(&default_with("hidden = [128, 128]", "hidden = []"));
        assert!(e.contains("`network.hidden`"), "{e}");
        let e = err(&default_with("dataset = \"digits\"", "dataset = \"cifar\""));
        assert!(e.contains("`data.dataset`") && e.contains("idx:"), "{e}");
    }

    #[test]
    fn malformed_toml_names_the_line() {
        let e = err("[network]\ninput = 64\nhidden = [1,\n");
        assert!(e.starts_with("t.toml:"), "{e}");
        let e = err("[network]\ninput = \"many\"\n");
        assert!(e.starts_with("t.toml:2:"), "{e}");
    }

    #[test]
    fn set_overrides_reach_nested_keys_and_are_validated() {
        let sets = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let c = Config::load_with(
            None,
            &sets(&[
                "training.epochs=3",
                "algorithm.loss=hinge",
                "fixed.beta.frac=11",
                "network.hidden=[8, 4]",
            ]),
        )
        .unwrap();
        assert_eq!(c.training.epochs, 3);
        assert_eq!(c.algorithm.loss, Loss::Hinge);
        assert_eq!(c.fixed.beta.frac, 11);
        assert_eq!(c.network.hidden, vec![8, 4]);
        let e = Config::load_with(None, &sets(&["training.epoch=3"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `epoch`"), "{e}");
        let e = Config::load_with(None, &sets(&["training.batch=0"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`training.batch`"), "{e}");
        let e = Config::load_with(None, &sets(&["nokey"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("KEY=VALUE"), "{e}");
    }

    fn sets(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn set_err(v: &[&str]) -> String {
        Config::load_with(None, &sets(v)).unwrap_err().to_string()
    }

    // Issue 11, item 6: a format whose fraction bits leave no room for its values
    // (frac > bits) was accepted and trained to chance with exit status 0.
    #[test]
    fn formats_too_narrow_for_their_values_are_refused() {
        for (set, key) in [
            ("fixed.hidden.frac=30", "fixed.hidden"),
            ("fixed.logit.frac=20", "fixed.logit"),
            ("fixed.pixel.frac=12", "fixed.pixel"),
            ("fixed.act.frac=13", "fixed.act"),
            ("fixed.weight.frac=16", "fixed.weight"),
            ("fixed.goodness.frac=19", "fixed.goodness"),
        ] {
            let e = set_err(&[set]);
            assert!(
                e.contains(&format!("`{key}`")) && e.contains("use frac <="),
                "{set}: {e}"
            );
        }
        // The exp table's input must span its range: 16 needs 4 integer bits.
        let e = set_err(&["fixed.logit.frac=12"]);
        assert!(
            e.contains("`fixed.logit`") && e.contains("frac <= 11"),
            "{e}"
        );
        Config::load_with(None, &sets(&["fixed.logit.frac=11"])).unwrap();
        // Formats that are all fraction by design stay allowed (δ has frac > bits).
        let c = Config::builtin();
        assert!(c.fixed.delta.frac > c.fixed.delta.bits);
        Config::load_with(None, &sets(&["fixed.pixel.frac=7", "fixed.hidden.frac=16"])).unwrap();
    }

    // Issue 11, item 14: the `fixed.update` message carried 18 embedded spaces (and the
    // `wide_products` one a run of them): messages are single-spaced sentences.
    #[test]
    fn validation_messages_have_no_runs_of_spaces() {
        for v in [
            &["fixed.update.bits=20"][..],
            &["fixed.multiplier_bits=8"],
            &["fixed.accumulator.bits=20"],
            &["fixed.beta.frac=14", "algorithm.loss=hinge"],
            &["fixed.hidden.frac=30"],
            &["fixed.wide_products=[\"nope\"]"],
            &["training.df.learning_rate=-1"],
            &["training.learning_rate=5", "training.epochs=0"],
        ] {
            let e = set_err(v);
            assert!(!e.contains("  "), "{v:?}: {e:?}");
        }
    }

    // Issue 11, item 14: hinge with `negatives = "hard"` and `negatives_count = 1` was held
    // to the β bound of all ten hypotheses; β_y is minus the number of active negatives.
    #[test]
    fn hinge_beta_bound_counts_the_negatives_that_enter_the_loss() {
        let hinge = ["algorithm.loss=hinge", "fixed.beta.frac=14"];
        let ok = |extra: &[&str]| {
            let mut v = hinge.to_vec();
            v.extend_from_slice(extra);
            Config::load_with(None, &sets(&v))
        };
        // β is 16 bits with 14 fraction bits: it holds -2 but not -3.
        ok(&["algorithm.negatives=hard", "algorithm.negatives_count=1"]).unwrap();
        ok(&["algorithm.negatives=random", "algorithm.negatives_count=2"]).unwrap();
        let e = ok(&["algorithm.negatives=hard", "algorithm.negatives_count=3"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("beta_y = -3") && e.contains("3 negatives"),
            "{e}"
        );
        let e = ok(&[]).unwrap_err().to_string();
        assert!(
            e.contains("beta_y = -9") && e.contains("9 negatives"),
            "{e}"
        );
    }

    // Issue 11, item 14: the operating system's message appeared twice ("No such file or
    // directory (os error 2): No such file or directory (os error 2)").
    #[test]
    fn io_errors_are_quoted_once() {
        let e = Config::load(Some(Path::new("/nonexistent/dfforge.toml"))).unwrap_err();
        let chain = format!("{:#}", anyhow::Error::from(e));
        assert_eq!(chain.matches("os error 2").count(), 1, "{chain}");
        assert!(chain.contains("/nonexistent/dfforge.toml"), "{chain}");
    }

    // Issue 11, item 13: every learner used DF's learning rate (20), on which backprop
    // diverges; each learner now has its own, and old configs keep working.
    #[test]
    fn each_learner_has_its_own_optimizer_and_learning_rate() {
        let lr = |v: &[&str]| {
            let c = Config::load_with(None, &sets(v)).unwrap();
            (c.training.optimizer, c.training.learning_rate)
        };
        assert_eq!(lr(&[]), (Optimizer::Sgd, 20.0));
        assert_eq!(lr(&["algorithm.name=bp"]), (Optimizer::Sgd, 1.0));
        assert_eq!(lr(&["algorithm.name=ff"]), (Optimizer::Sgd, 50.0));
        // For every learner: training.learning_rate and training.optimizer.
        assert_eq!(
            lr(&[
                "algorithm.name=bp",
                "training.learning_rate=0.01",
                "training.optimizer=adam"
            ]),
            (Optimizer::Adam, 0.01)
        );
        // One learner's own.
        assert_eq!(
            lr(&["algorithm.name=bp", "training.bp.learning_rate=0.3"]),
            (Optimizer::Sgd, 0.3)
        );
        // A config without any (older configs had only the shared keys): the defaults.
        let mut text: String = DEFAULT_TOML
            .lines()
            .take_while(|l| !l.starts_with("# Each learner"))
            .map(|l| format!("{l}\n"))
            .collect();
        text.push_str(&DEFAULT_TOML[DEFAULT_TOML.find("[data]").unwrap()..]);
        let c = Config::from_toml_str(&text, "t.toml").unwrap();
        assert_eq!(c.training.learning_rate, Learner::Df.default_training().1);
        let bp = text.replace("name = \"df\"", "name = \"bp\"");
        let c = Config::from_toml_str(&bp, "t.toml").unwrap();
        assert_eq!(c.training.learning_rate, Learner::Bp.default_training().1);
        // An old config with the shared keys: they apply to every learner, as before.
        let old = text.replace(
            "epochs = 30\n",
            "epochs = 30\noptimizer = \"sgd\"\nlearning_rate = 7.0\n",
        );
        let c = Config::from_toml_str(&old.replace("name = \"df\"", "name = \"bp\""), "t").unwrap();
        assert_eq!(c.training.learning_rate, 7.0);
        // A file giving both would hide one: refused, by line.
        let both = DEFAULT_TOML.replace("epochs = 30\n", "epochs = 30\nlearning_rate = 7.0\n");
        let e = err(&both);
        assert!(
            e.contains("`training.df.learning_rate`") && e.contains("would hide it"),
            "{e}"
        );
        // The resolved config round-trips, for this learner and for the others.
        for v in [
            &[][..],
            &["algorithm.name=bp"],
            &["training.learning_rate=3.0"],
            &["algorithm.name=ff", "training.optimizer=adam"],
        ] {
            let c = Config::load_with(None, &sets(v)).unwrap();
            let again = Config::from_toml_str(&c.to_toml(), "x").unwrap();
            assert_eq!(c, again, "{v:?}");
            // The learner changed in code (its rate not re-resolved): what runs is written.
            let mut bp = c.clone();
            bp.algorithm.name = Learner::Bp;
            let again = Config::from_toml_str(&bp.to_toml(), "x").unwrap().training;
            assert_eq!(
                (again.optimizer, again.learning_rate),
                (c.training.optimizer, c.training.learning_rate),
                "{v:?}"
            );
        }
        // A value changed in code is written out, so a report records what ran.
        let mut c = Config::builtin();
        c.training.learning_rate = 5.0;
        let again = Config::from_toml_str(&c.to_toml(), "x").unwrap();
        assert_eq!(again.training.learning_rate, 5.0);
    }

    // Found by the config fuzzer: `--set training.df.learning_rate=1` after
    // `--set training.learning_rate=2` was silently hidden by the shared key, and the
    // config did not round-trip through its own TOML. The later --set now wins.
    #[test]
    fn a_learners_own_set_after_the_shared_one_wins() {
        for (v, df, ff) in [
            (
                &["training.learning_rate=2", "training.df.learning_rate=1"][..],
                (Optimizer::Sgd, 1.0),
                (Optimizer::Sgd, 2.0),
            ),
            (
                &["training.df.learning_rate=1", "training.learning_rate=2"],
                (Optimizer::Sgd, 2.0),
                (Optimizer::Sgd, 2.0),
            ),
            (
                &["training.optimizer=adam", "training.ff.optimizer=momentum"],
                (Optimizer::Adam, 20.0),
                (Optimizer::Momentum, 50.0),
            ),
        ] {
            let c = Config::load_with(None, &sets(v)).unwrap();
            let got = |l: Learner| {
                let ((o, _), (r, _)) = c.training.resolve(l);
                (o, r)
            };
            assert_eq!((got(Learner::Df), got(Learner::Ff)), (df, ff), "{v:?}");
            assert_eq!(
                (c.training.optimizer, c.training.learning_rate),
                df,
                "{v:?}"
            );
            let again = Config::from_toml_str(&c.to_toml(), "x").unwrap();
            assert_eq!(c, again, "{v:?}");
        }
    }

    #[test]
    fn missing_section_is_reported() {
        let e = err("[network]\ninput = 4\nhidden=[2]\nclasses=2\n");
        assert!(e.contains("missing field `algorithm`"), "{e}");
    }
}
