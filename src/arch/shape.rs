//! Widths the units and the engine share, derived from the config's formats (the golden
//! model's [`Units`] adds the learning-rate constant).

use super::ArchError;
use crate::config::{Config, FixedPoint, Scheme};
use crate::fixed::{LearningRate, QFormat, Rounding};

/// Bits of an unsigned integer holding `v` (at least 1).
pub fn bitlen(v: u128) -> u32 {
    (128 - v.leading_zeros()).max(1)
}

/// Widths the units share, derived from the config.
#[derive(Clone, Debug)]
pub struct Shape {
    pub f: FixedPoint,
    pub rows: u32,
    pub cols: u32,
    /// PE operand a: weights (forward) or deltas (gradient, transposed), signed.
    pub a_w: u32,
    /// PE operand b: activations (as signed) or weights (transposed).
    pub b_w: u32,
    /// PE accumulator: the wider of `accumulator` and `update`.
    pub acc_w: u32,
    /// Σ x² of one row, exact.
    pub sum_w: u32,
    /// The 1/d constant of the goodness unit.
    pub recip_w: u32,
    /// Normalisation lane input (pixels or hidden values).
    pub norm_x_w: u32,
    /// Parameters at the update unit (widest of weight, bias, centroid).
    pub param_w: u32,
    /// Learning-rate register.
    pub lr_w: u32,
    /// The N-pair scale s as a signed constant (`const_frac` fraction bits): the logit
    /// multiplier's second operand.
    pub logit_scale_w: u32,
    pub classes: usize,
}

impl Shape {
    pub fn new(cfg: &Config) -> Result<Shape, ArchError> {
        let f = cfg.fixed.clone();
        let su = |fm: QFormat| fm.bits + u32::from(!fm.signed);
        let max_d = cfg
            .network
            .hidden
            .iter()
            .copied()
            .chain([cfg.network.input])
            .max()
            .unwrap_or(1);
        let xw = f.hidden.bits.max(f.pixel.bits);

        if f.rsqrt_frac + 1 < f.act.frac {
            return Err(ArchError::Unsupported(format!(
                "the normalisation unit needs fixed.rsqrt_frac + 1 >= act.frac (got {} and {})",
                f.rsqrt_frac, f.act.frac
            )));
        }
        if f.rounding == Rounding::Stochastic {
            return Err(ArchError::Unsupported(
                "fixed.rounding must be truncate or half-up".into(),
            ));
        }
        let sum_w = 2 * xw + bitlen(max_d as u128);
        if sum_w > 62 {
            return Err(ArchError::Unsupported(format!(
                "sums of squares need {sum_w} bits; at most 62 are supported"
            )));
        }
        let feedback = cfg.algorithm.scheme != Scheme::Df;
        Ok(Shape {
            rows: cfg.hardware.array_rows as u32,
            cols: cfg.hardware.array_cols as u32,
            a_w: f.weight.bits.max(f.delta.bits),
            // DF-R streams δ on the north edge of the FB GEMM.
            b_w: su(f.act)
                .max(f.weight.bits)
                .max(if feedback { f.delta.bits } else { 0 }),
            acc_w: f.accumulator.bits.max(f.update.bits),
            sum_w,
            recip_w: f.const_frac + 1,
            norm_x_w: xw,
            param_w: f.weight.bits.max(f.bias.bits).max(f.centroid.bits),
            lr_w: lr_register_bits(cfg.lr_constant(1.0), f.lr_frac),
            logit_scale_w: bitlen(f.constant(cfg.algorithm.scale as f64).unsigned_abs() as u128)
                + 1,
            classes: cfg.network.classes,
            f,
        })
    }
}

/// Width of the engine's learning-rate register: enough for η/B at the start of the run
/// (the schedule only lowers it) and at least `lr_frac + 1` bits. The register's value is
/// written by the host; its width is part of the hardware
/// ([`crate::rtl::cmd::hardware_identity`]).
pub fn lr_register_bits(lr: LearningRate, lr_frac: u32) -> u32 {
    let lr_max = match lr {
        LearningRate::Mul { value, .. } => value.max(1) as u128,
        LearningRate::Shift(_) => 1,
    };
    bitlen(lr_max).max(lr_frac + 1)
}
