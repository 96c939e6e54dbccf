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

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Training {
    pub optimizer: Optimizer,
    pub learning_rate: f32,
    pub lr_schedule: Schedule,
    pub momentum: f32,
    pub batch: usize,
    pub epochs: usize,
    pub seed: u64,
    /// Data augmentation: each training image is translated by a random whole number of
    /// pixels in [-shift, shift] on each axis (zero fill) before every step; 0 = off.
    /// Evaluation always sees the images unchanged.
    #[serde(default)]
    pub shift: usize,
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
                "has {} bits but summing delta x activation over batch {} x {} hypotheses needs                  {upd_need} bits to stay exact; widen update.bits or lower training.batch",
                self.update.bits, cfg.training.batch, k
            ),
        );
        let beta_min = match cfg.algorithm.loss {
            Loss::Npair => 1u128,
            Loss::Hinge => (k - 1).max(1),
        } << self.beta.frac;
        bad(
            "fixed.beta",
            max_abs(self.beta) >= beta_min,
            format!(
                "cannot hold beta_y = -{} (its bound with loss {} and {} hypotheses); give beta more integer bits (bits - frac - 1 >= {})",
                beta_min >> self.beta.frac,
                cfg.algorithm.loss,
                k,
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
                                       "the `{}` product ({}) is {}x{} bits, wider than the {}-bit hard multiplier; narrow its operands or add \"{}\" to fixed.wide_products to split it over several DSP blocks",
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
    #[error("cannot read config {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
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
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Io {
                    path: p.display().to_string(),
                    source,
                })?;
                Config::from_toml_str(&text, &p.display().to_string())
            }
        }
    }

    /// Load (file or built-in) and apply `KEY=VALUE` overrides, e.g. `fixed.weight.bits=10`.
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
                std::fs::read_to_string(p).map_err(|source| ConfigError::Io {
                    path: p.display().to_string(),
                    source,
                })?,
                p.display().to_string(),
            ),
        };
        let bad = |message: String| ConfigError::InvalidNoLine {
            file: name.clone(),
            message,
        };
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
                item = t.get_mut(part).expect("just inserted");
            }
            let t = item
                .as_table_like_mut()
                .ok_or_else(|| bad(format!("--set `{key}`: its parent is not a table")))?;
            t.insert(parts[parts.len() - 1], toml_edit::Item::Value(value));
        }
        Config::from_toml_str(&doc.to_string(), &format!("{name} (with --set overrides)"))
    }

    /// Parse and validate TOML text; `file` names the source in errors.
    pub fn from_toml_str(text: &str, file: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| {
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
            Some(v) => match key_line(text, v.key) {
                Some(line) => Err(ConfigError::Invalid {
                    file: file.to_string(),
                    line,
                    message: format!("`{}`: {}", v.key, v.message),
                }),
                None => Err(ConfigError::InvalidNoLine {
                    file: file.to_string(),
                    message: format!("`{}`: {}", v.key, v.message),
                }),
            },
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
        bad(
            "training.learning_rate",
            t.learning_rate.is_finite() && t.learning_rate > 0.0 && t.learning_rate <= 1000.0,
            format!("is {}; it must be in (0, 1000]", t.learning_rate),
        );
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
            format!("t.toml:{line}: `training.learning_rate`: is -1; it must be in (0, 1000]")
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

    #[test]
    fn missing_section_is_reported() {
        let e = err("[network]\ninput = 4\nhidden=[2]\nclasses=2\n");
        assert!(e.contains("missing field `algorithm`"), "{e}");
    }
}
