//! The fixed-point formats of the config (`[fixed]`) and the rules that keep every product
//! and bus wide enough for its values.

use super::validate::Violation;
use super::{Config, Loss, Negatives, Scheme};
use crate::fixed::{QFormat, Rounding};
use serde::{Deserialize, Serialize};

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

    pub(super) fn violations(&self, cfg: &Config) -> Vec<Violation> {
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
