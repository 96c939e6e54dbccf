//! Noise the learners are trained and tested under: the `[noise]` table of the config
//! (issue 12, "hardware-noise robustness"). All levels are 0 by default, and a site at level
//! 0 draws nothing, so every existing result and bit-exact check is unchanged.
//!
//! The sites, each with its own seeded stream so that switching one on changes no other
//! random draw of a run:
//! - [`input`]: Gaussian, shot or salt-and-pepper noise on the pixels, on the host.
//! - [`weights`]: the weight memory: read noise (fresh at every step and every evaluated
//!   batch), device variation (drawn once per weight), update noise (relative to each
//!   weight's step), stuck-at-0/1 bits (a fault map fixed per seed) and bit flips (a bit-error
//!   rate per stored bit per step). They act on the stored weight matrices of any learner that
//!   exposes them ([`weights::WeightsMut`]), around each training step and each evaluation, so
//!   the float and fixed-point models of every learner share one definition. Biases and DF's
//!   centroids are outside the weight memory and stay clean.
//! - [`activation`]: output noise of every layer's matrix-vector product (its pre-activations
//!   z, before the ReLU), σ relative to the layer's max |z| over the batch, drawn inside each
//!   learner's forward pass.
//!
//! Each site has a `regime`: it acts during training, at inference, or both. "Training" means
//! the learner's steps see it (and can adapt); "inference" means the evaluated model does.

pub mod activation;
pub mod input;
pub mod weights;

pub use input::{InputKind, InputNoise};

use serde::{Deserialize, Serialize};

/// When a noise site is active.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Regime {
    /// During training only (the learner can adapt to it).
    Train,
    /// At inference only (evaluation of the trained model).
    Inference,
    /// Both.
    #[default]
    Both,
}

impl Regime {
    pub fn in_training(self) -> bool {
        matches!(self, Regime::Train | Regime::Both)
    }
    pub fn at_inference(self) -> bool {
        matches!(self, Regime::Inference | Regime::Both)
    }
}

/// How an analog-style draw ξ ~ N(0, 1) at level σ changes a weight w.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Form {
    /// w + σ·ξ·max|W| (σ relative to the layer's largest weight, as IBM aihwkit does).
    #[default]
    Additive,
    /// w·(1 + σ·ξ).
    Multiplicative,
}

/// `[noise.weight_read]` (fresh at every read) and `[noise.variation]` (drawn once per weight).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WeightNoise {
    /// σ, relative to the layer's max |W| (additive) or to the weight itself
    /// (multiplicative); 0 = off.
    pub level: f64,
    pub form: Form,
    pub regime: Regime,
}

/// `[noise.activation]`: z + σ·ξ·max|z| on every layer's pre-activations (aihwkit's output
/// noise of an analog matrix-vector product), fresh at every forward pass.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActivationNoise {
    /// σ relative to the layer's largest |z| over the batch; 0 = off.
    pub level: f64,
    pub regime: Regime,
}

/// `[noise.update]`: each weight's step Δ is written as Δ·(1 + σ·ξ) (cycle-to-cycle write
/// noise, aihwkit's `dw_min_std`). Updates exist only in training, so it has no regime.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpdateNoise {
    /// σ relative to the step; 0 = off.
    pub level: f64,
}

/// Which value a stuck bit holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Polarity {
    /// Stuck at 0.
    Zero,
    /// Stuck at 1.
    One,
    /// Each stuck bit at 0 or 1 with even odds.
    #[default]
    Mixed,
}

/// `[noise.stuck_at]`: bits of the weight memory that hold one value whatever is written.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StuckAt {
    /// The fraction of weight-memory bits that are stuck; 0 = off. The fault map is fixed
    /// per `training.seed` (one chip).
    pub level: f64,
    pub polarity: Polarity,
    pub regime: Regime,
}

/// `[noise.bit_flip]`: random upsets of stored weight bits.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BitFlip {
    /// The bit-error rate: the probability that a stored bit flips, per training step (the
    /// flip stays in memory; the next update starts from it) and per evaluation; 0 = off.
    pub level: f64,
    pub regime: Regime,
}

/// The `[noise]` table.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Noise {
    #[serde(skip_serializing_if = "InputNoise::is_off")]
    pub input: InputNoise,
    #[serde(skip_serializing_if = "WeightNoise::is_off")]
    pub weight_read: WeightNoise,
    #[serde(skip_serializing_if = "WeightNoise::is_off")]
    pub variation: WeightNoise,
    #[serde(skip_serializing_if = "UpdateNoise::is_off")]
    pub update: UpdateNoise,
    #[serde(skip_serializing_if = "StuckAt::is_off")]
    pub stuck_at: StuckAt,
    #[serde(skip_serializing_if = "BitFlip::is_off")]
    pub bit_flip: BitFlip,
    #[serde(skip_serializing_if = "ActivationNoise::is_off")]
    pub activation: ActivationNoise,
}

impl InputNoise {
    pub fn is_off(&self) -> bool {
        !self.is_on()
    }
}
impl WeightNoise {
    pub fn is_off(&self) -> bool {
        self.level == 0.0
    }
}
impl UpdateNoise {
    pub fn is_off(&self) -> bool {
        self.level == 0.0
    }
}
impl StuckAt {
    pub fn is_off(&self) -> bool {
        self.level == 0.0
    }
}
impl BitFlip {
    pub fn is_off(&self) -> bool {
        self.level == 0.0
    }
}
impl ActivationNoise {
    pub fn is_off(&self) -> bool {
        self.level == 0.0
    }
}

/// A site of the table: its key (as in `noise.<key>.level`), what its level means and the
/// levels it accepts. Validation, `dfforge noise` and the docs read this one list.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Site {
    pub key: &'static str,
    /// `noise.<key>.level`, the key validation names.
    pub level_key: &'static str,
    /// What `level` is, for error messages and plot axes.
    pub level_means: &'static str,
    /// The smallest non-zero level accepted: [`MIN_RATE`] for the fault rates, else just
    /// above 0 (shot noise's own floor of 0.001 is in [`InputNoise::level_range`]).
    pub min_level: f64,
    /// The largest level accepted.
    pub max_level: f64,
    /// Levels a sweep of this site uses by default (../shared/notes/noise.md's grid).
    pub default_levels: &'static [f64],
    /// Bit-error-like rates are plotted on a log axis.
    pub log_axis: bool,
    /// The site acts inside the learner (its weights or its activations): the float and
    /// fixed-point models only, so far; the input site acts on the host.
    pub model_internal: bool,
}

/// Every site, in the order the docs list them.
pub const SITES: &[Site] = &[
    Site {
        key: "input",
        level_key: "noise.input.level",
        level_means: "σ in pixel units (gaussian), σ at a full-scale pixel (shot), the fraction of pixels hit (salt-pepper)",
        min_level: 0.0,
        max_level: 1.0,
        default_levels: &[0.0, 0.1, 0.2, 0.3, 0.4, 0.5],
        log_axis: false,
        model_internal: false,
    },
    Site {
        key: "weight_read",
        level_key: "noise.weight_read.level",
        level_means: "σ of fresh read noise, relative to the layer's max |W| (additive) or to w (multiplicative)",
        min_level: 0.0,
        max_level: 1.0,
        default_levels: &[0.0, 0.02, 0.05, 0.1, 0.2, 0.4],
        log_axis: false,
        model_internal: true,
    },
    Site {
        key: "variation",
        level_key: "noise.variation.level",
        level_means: "σ of per-weight device variation, relative to the layer's max |W| (additive) or to w (multiplicative)",
        min_level: 0.0,
        max_level: 1.0,
        default_levels: &[0.0, 0.02, 0.05, 0.1, 0.2, 0.4],
        log_axis: false,
        model_internal: true,
    },
    Site {
        key: "update",
        level_key: "noise.update.level",
        level_means: "σ of write noise, relative to each weight's step",
        min_level: 0.0,
        max_level: 4.0,
        default_levels: &[0.0, 0.1, 0.3, 0.6, 1.0, 2.0],
        log_axis: false,
        model_internal: true,
    },
    Site {
        key: "stuck_at",
        level_key: "noise.stuck_at.level",
        level_means: "the fraction of weight-memory bits stuck",
        min_level: MIN_RATE,
        max_level: 1.0,
        default_levels: &[0.0, 0.001, 0.01, 0.05, 0.1, 0.135],
        log_axis: true,
        model_internal: true,
    },
    Site {
        key: "bit_flip",
        level_key: "noise.bit_flip.level",
        level_means: "the bit-error rate per stored bit per step (and per evaluation)",
        min_level: MIN_RATE,
        max_level: 0.5,
        default_levels: &[0.0, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2],
        log_axis: true,
        model_internal: true,
    },
    Site {
        key: "activation",
        level_means: "σ of output noise on each layer's pre-activations, relative to the layer's max |z| over the batch",
        level_key: "noise.activation.level",
        min_level: 0.0,
        max_level: 1.0,
        default_levels: &[0.0, 0.02, 0.04, 0.06, 0.1, 0.2],
        log_axis: false,
        model_internal: true,
    },
];

/// The site named `key`.
pub fn site(key: &str) -> Option<&'static Site> {
    SITES.iter().find(|s| s.key == key)
}

impl Noise {
    /// Every site at level 0 (then the table is left out of written configs and reports).
    pub fn is_off(&self) -> bool {
        !self.input.is_on() && !self.weights_on() && self.activation.is_off()
    }

    /// Some weight-memory site is on.
    pub fn weights_on(&self) -> bool {
        !(self.weight_read.is_off()
            && self.variation.is_off()
            && self.update.is_off()
            && self.stuck_at.is_off()
            && self.bit_flip.is_off())
    }

    /// The level of the site `key` (for validation messages and `dfforge noise`).
    pub fn level(&self, key: &str) -> Option<f64> {
        Some(match key {
            "input" => self.input.level,
            "weight_read" => self.weight_read.level,
            "variation" => self.variation.level,
            "update" => self.update.level,
            "stuck_at" => self.stuck_at.level,
            "bit_flip" => self.bit_flip.level,
            "activation" => self.activation.level,
            _ => return None,
        })
    }

    /// The regime of the site `key` (`update` acts in training only).
    pub fn regime(&self, key: &str) -> Option<Regime> {
        Some(match key {
            "input" => self.input.regime,
            "weight_read" => self.weight_read.regime,
            "variation" => self.variation.regime,
            "update" => Regime::Train,
            "stuck_at" => self.stuck_at.regime,
            "bit_flip" => self.bit_flip.regime,
            "activation" => self.activation.regime,
            _ => return None,
        })
    }

    /// Set the site `key` to `level` in `regime` (update noise has no regime: it acts in
    /// training only). An unknown key is refused with the known ones.
    pub fn set(&mut self, key: &str, level: f64, regime: Regime) -> Result<(), String> {
        match key {
            "input" => (self.input.level, self.input.regime) = (level, regime),
            "weight_read" => (self.weight_read.level, self.weight_read.regime) = (level, regime),
            "variation" => (self.variation.level, self.variation.regime) = (level, regime),
            "update" => self.update.level = level,
            "stuck_at" => (self.stuck_at.level, self.stuck_at.regime) = (level, regime),
            "bit_flip" => (self.bit_flip.level, self.bit_flip.regime) = (level, regime),
            "activation" => (self.activation.level, self.activation.regime) = (level, regime),
            _ => {
                return Err(format!(
                    "unknown noise site `{key}`; known: {}",
                    SITES.iter().map(|s| s.key).collect::<Vec<_>>().join(", ")
                ))
            }
        }
        Ok(())
    }

    /// Each site inside the learner (weights, activations) that is on, by key: the sites the
    /// engine does not model yet.
    pub fn model_sites_on(&self) -> Vec<&'static str> {
        SITES
            .iter()
            .filter(|s| s.model_internal && self.level(s.key).is_some_and(|l| l != 0.0))
            .map(|s| s.key)
            .collect()
    }
}

/// The smallest non-zero fault rate (stuck-at fraction, bit-error rate): below it 1 − p
/// rounds to 1 in f64 and a geometric sampler never returns; far below any rate that
/// matters (10⁻¹² of a 10⁷-bit memory is one fault in ten thousand runs).
pub const MIN_RATE: f64 = 1e-12;

/// Seeds of the noise streams (XORed with `training.seed`), each its own so that switching
/// one site on changes no other random draw of a run.
pub const INPUT_TRAIN_STREAM: u64 = 0x1_7e55_a17e;
pub const INPUT_EVAL_STREAM: u64 = 0x1_7e55_e7a1;
/// Read noise, update noise and bit flips during training.
pub const WEIGHT_TRAIN_STREAM: u64 = 0x2_3e19_a17e;
/// Read noise and bit flips of every evaluation (the same draws at each one).
pub const WEIGHT_EVAL_STREAM: u64 = 0x2_3e19_e7a1;
/// The variation map (one draw per weight, for the run).
pub const VARIATION_STREAM: u64 = 0x2_7a61_a710;
/// Activation noise during training, and at each evaluation (the same draws at each one).
pub const ACTIVATION_TRAIN_STREAM: u64 = 0x3_ac71_a17e;
pub const ACTIVATION_EVAL_STREAM: u64 = 0x3_ac71_e7a1;
/// The stuck-at fault map (one chip per seed).
pub const STUCK_AT_STREAM: u64 = 0x2_57c4_fa17;
