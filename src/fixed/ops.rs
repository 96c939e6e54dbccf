//! Integer operators of the golden model, one pure function per RTL unit.
//!
//! Every function here takes raw integers (see [`QFormat`]) and returns the
//! raw integer the matching hardware unit drives onto its output bus, bit for
//! bit. Widths, fraction bits and rounding modes are parameters so the
//! Verilog generator can instantiate the same unit with the same constants.
//! Random bits for stochastic rounding are always passed in explicitly (they
//! come from an [`super::lfsr::Lfsr`] in the RTL), so every function is
//! deterministic given its arguments.
//!
//! Internally, wide intermediate values (products, shifted products) are
//! carried in `i128`, which is exact for every product of two `i64`s; the
//! result is only narrowed after the final saturation, so no function here
//! panics or wraps, whatever the raw inputs.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::format::{QFormat, MAX_FRAC};
use super::tables::ExpTable;

/// How a right shift disposes of the bits it drops.
///
/// Serialised as `"truncate"`, `"half-up"`, `"stochastic"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rounding {
    /// Floor: a plain arithmetic shift right, dropped bits are discarded
    /// (no adder). Biased towards minus infinity by half an LSB on average.
    Truncate,
    /// Add half an output LSB (`1 << (shift-1)`), then floor. Ties round
    /// towards plus infinity. One adder; bias only on exact ties.
    HalfUp,
    /// Add the low `shift` bits of an LFSR word to the dropped bits, then
    /// floor: rounds up with probability equal to the dropped fraction, so
    /// the result is unbiased in expectation.
    Stochastic,
}

/// Learning rate of the weight update unit.
///
/// Serialised as `{ "shift": k }` or `{ "mul": { "value": v, "frac": f } }`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LearningRate {
    /// `eta = 2^-k`: the update is a shifter only, no multiplier.
    Shift(u32),
    /// `eta = value * 2^-frac`: one multiplier by a constant.
    Mul {
        /// Raw constant fed to the multiplier.
        value: i64,
        /// Fraction bits of `value`.
        frac: u32,
    },
}

/// Errors of operator constants that are checked when built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OpsError {
    /// `d == 0` for the goodness reciprocal.
    #[error("the goodness unit divides the sum of squares by the layer width d, which must be at least 1 (got 0)")]
    ZeroDimension,
    /// Reciprocal constant with too many fraction bits.
    #[error(
        "reciprocal constant with {frac} fraction bits is not supported: at most {max}, \
         so that the constant 2^frac/d fits in an i64",
        max = MAX_FRAC
    )]
    RecipFracTooLarge {
        /// The rejected number of fraction bits.
        frac: u32,
    },
}

// ---------------------------------------------------------------------------
// Saturation
// ---------------------------------------------------------------------------

/// Saturation unit: clip `x` to `[fmt.min(), fmt.max()]`.
///
/// Hardware: two comparators against the format's bounds and a 3-way mux
/// (the overflow detect on the top bits of a wider bus).
pub fn saturate(x: i64, fmt: QFormat) -> i64 {
    x.clamp(fmt.min(), fmt.max())
}

/// [`saturate`] plus the overflow flag the RTL exports for counters:
/// `(clipped value, true if x was outside the format)`.
pub fn saturate_flag(x: i64, fmt: QFormat) -> (i64, bool) {
    let y = saturate(x, fmt);
    (y, y != x)
}

/// Saturate a wide intermediate to `fmt` (the same unit on a wider bus).
pub(crate) fn sat_to(x: i128, fmt: QFormat) -> i64 {
    // In range of i64 after the clamp, so the narrowing is lossless.
    x.clamp(i128::from(fmt.min()), i128::from(fmt.max())) as i64
}

/// Left shift by `d` saturating at the `i128` bounds (never wraps).
pub(crate) fn sat_shl(x: i128, d: u32) -> i128 {
    if x == 0 || d == 0 {
        return x;
    }
    if d >= 127 {
        return if x > 0 { i128::MAX } else { i128::MIN };
    }
    if x > (i128::MAX >> d) {
        i128::MAX
    } else if x < (i128::MIN >> d) {
        i128::MIN
    } else {
        x << d
    }
}

// ---------------------------------------------------------------------------
// Multiply-accumulate
// ---------------------------------------------------------------------------

/// MAC unit (one DSP slice): `acc + a*b`, saturated to `acc_fmt`.
///
/// Hardware: the product `a*b` is exact (an 18x18 -> 36-bit multiplier, or
/// wider), the accumulator adder is followed by a saturation unit, so an
/// overflow clips at every step instead of wrapping. The fraction bits are
/// implicit: `acc_fmt.frac` should equal `frac(a) + frac(b)`; this function
/// does integer arithmetic only. Configuration validation uses
/// [`mac_exact_bits`] to prove that the saturation never triggers.
pub fn mac(acc: i64, a: i64, b: i64, acc_fmt: QFormat) -> i64 {
    let p = i128::from(a) * i128::from(b);
    sat_to(i128::from(acc) + p, acc_fmt)
}

/// Accumulator width that holds *every* sum of `k` products `a*b` exactly,
/// with `a` anywhere in `a_fmt` and `b` anywhere in `b_fmt`.
///
/// The extreme sums are `k * min(a*b)` and `k * max(a*b)` (reached by
/// repeating the extreme product), so the answer is the smallest width of a
/// format (signed if any product can be negative, else unsigned) containing
/// both. E.g. signed 18 x signed 18, k = 1 -> 36 (because `(-2^17)^2 = 2^34`
/// needs 36 signed bits). The result may exceed 48; the caller compares it
/// with the accumulator it has.
pub fn mac_exact_bits(a_fmt: QFormat, b_fmt: QFormat, k: u32) -> u32 {
    let (amin, amax) = (i128::from(a_fmt.min()), i128::from(a_fmt.max()));
    let (bmin, bmax) = (i128::from(b_fmt.min()), i128::from(b_fmt.max()));
    let corners = [amin * bmin, amin * bmax, amax * bmin, amax * bmax];
    // 0 lies in both operand ranges, so pmin <= 0 <= pmax.
    let pmin = corners.iter().copied().min().unwrap_or(0).min(0);
    let pmax = corners.iter().copied().max().unwrap_or(0).max(0);
    // |pmin| < 2^95 and pmax < 2^96, times k < 2^32: fits in u128.
    let hi = pmax.unsigned_abs() * u128::from(k);
    let lo_mag = pmin.unsigned_abs() * u128::from(k);
    let bitlen = |v: u128| 128 - v.leading_zeros();
    if lo_mag == 0 {
        bitlen(hi).max(1)
    } else {
        // Need 2^(W-1) - 1 >= hi and 2^(W-1) >= lo_mag.
        (1 + bitlen(hi).max(bitlen(lo_mag - 1))).max(2)
    }
}

// ---------------------------------------------------------------------------
// Shifting and rounding
// ---------------------------------------------------------------------------

/// [`shift_round`] on an `i128` bus; exact for every `i128` and shift.
pub(crate) fn shift_round_wide(x: i128, shift: u32, mode: Rounding, rnd: u64) -> i128 {
    if shift == 0 {
        return x;
    }
    let r: u128 = match mode {
        Rounding::Truncate => 0,
        Rounding::HalfUp if shift <= 127 => 1u128 << (shift - 1),
        Rounding::HalfUp => 0, // handled below
        Rounding::Stochastic if shift >= 64 => u128::from(rnd),
        Rounding::Stochastic => u128::from(rnd & ((1u64 << shift) - 1)),
    };
    if shift <= 127 {
        // x = q * 2^s + low with 0 <= low < 2^s; floor((x + r) / 2^s)
        // = q + floor((low + r) / 2^s), and low + r < 2^(s+1) <= 2^128.
        let q = x >> shift;
        let low = (x as u128) & ((1u128 << shift) - 1);
        let carry = ((low + r) >> shift) as i128;
        q + carry
    } else {
        // |x| <= 2^127 <= 2^(s-1): the quotient is -1 or 0.
        match mode {
            Rounding::Truncate => {
                if x < 0 {
                    -1
                } else {
                    0
                }
            }
            // x + 2^(s-1) lies in [0, 2^s).
            Rounding::HalfUp => 0,
            // x + r lies in (-2^s, 2^s).
            Rounding::Stochastic => {
                if x.saturating_add(r as i128) < 0 {
                    -1
                } else {
                    0
                }
            }
        }
    }
}

/// Rounding shifter: arithmetic right shift of `x` by `shift` bits.
///
/// Returns `floor((x + r) / 2^shift)`, computed exactly, with
/// * `Truncate`: `r = 0` (the bare shift),
/// * `HalfUp`: `r = 2^(shift-1)`,
/// * `Stochastic`: `r = rnd_bits & (2^shift - 1)`, the low `shift` bits of
///   the random word (all 64 bits if `shift >= 64`: for `shift > 64` the
///   word no longer covers every dropped bit, so the rounding is no longer
///   exactly unbiased; the RTL never shifts that far).
///
/// `shift = 0` returns `x` unchanged for every mode. `shift >= 63` is exact
/// too (the result is then -1, 0 or 1). Never overflows: the carry of the
/// rounding adder is kept.
pub fn shift_round(x: i64, shift: u32, mode: Rounding, rnd_bits: u64) -> i64 {
    // |result| <= 2^62 + 1 for shift >= 1, so the narrowing is lossless.
    shift_round_wide(i128::from(x), shift, mode, rnd_bits) as i64
}

/// Change the binary point from `from_frac` to `to_frac` without saturation:
/// exact left shift (saturating only at the `i128` bounds) when gaining
/// fraction bits, [`shift_round_wide`] when dropping them.
pub(crate) fn rescale_wide(
    x: i128,
    from_frac: u32,
    to_frac: u32,
    mode: Rounding,
    rnd: u64,
) -> i128 {
    if to_frac >= from_frac {
        sat_shl(x, to_frac - from_frac)
    } else {
        shift_round_wide(x, from_frac - to_frac, mode, rnd)
    }
}

/// [`requantize`] from an `i128` bus.
pub fn requant_wide(x: i128, from_frac: u32, to_fmt: QFormat, mode: Rounding, rnd: u64) -> i64 {
    sat_to(rescale_wide(x, from_frac, to_fmt.frac, mode, rnd), to_fmt)
}

/// Requantiser: move `x` (raw, `from_frac` fraction bits) onto the bus
/// `to_fmt`.
///
/// Hardware: if `to_fmt.frac >= from_frac`, a left shift by the difference
/// (exact, no rounding); otherwise the rounding shifter
/// ([`shift_round`] by `from_frac - to_fmt.frac` with `mode` and `rnd`).
/// Then the saturation unit clips to `to_fmt` (rounding happens before
/// saturation).
pub fn requantize(x: i64, from_frac: u32, to_fmt: QFormat, mode: Rounding, rnd: u64) -> i64 {
    requant_wide(i128::from(x), from_frac, to_fmt, mode, rnd)
}

/// Activation unit: `max(0, z)` (a mux on the sign bit), then
/// [`requantize`] from `z_frac` to `out_fmt`.
pub fn relu_requant(z: i64, z_frac: u32, out_fmt: QFormat, mode: Rounding, rnd: u64) -> i64 {
    requantize(z.max(0), z_frac, out_fmt, mode, rnd)
}

// ---------------------------------------------------------------------------
// Goodness and normalisation
// ---------------------------------------------------------------------------

/// Sum-of-squares unit: `sum h_i^2`, one [`mac`] per element with `a = b =
/// h_i`, saturating to `acc_fmt` after every step. The fraction bits of the
/// result are `2 * frac(h)`. Because every term is non-negative, the running
/// sum never decreases, so saturating per step gives the same result as
/// saturating the exact sum once.
pub fn squared_sum(h: &[i64], acc_fmt: QFormat) -> i64 {
    h.iter()
        .fold(saturate(0, acc_fmt), |acc, &x| mac(acc, x, x, acc_fmt))
}

/// Constant `c = round_half_up(2^frac / d)` that replaces the division by
/// the layer width `d` in the goodness unit (a multiplier by a constant,
/// emitted as a Verilog parameter).
///
/// `|c * 2^-frac - 1/d| <= 2^-(frac+1)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecipConst {
    d: u32,
    frac: u32,
    value: i64,
}

impl RecipConst {
    /// Build `round_half_up(2^frac / d) = floor((2^(frac+1) + d) / (2d))`.
    /// Rejects `d = 0` and `frac > 62`.
    pub fn new(d: u32, frac: u32) -> Result<Self, OpsError> {
        if d == 0 {
            return Err(OpsError::ZeroDimension);
        }
        if frac > MAX_FRAC {
            return Err(OpsError::RecipFracTooLarge { frac });
        }
        let d128 = u128::from(d);
        let v = ((1u128 << (frac + 1)) + d128) / (2 * d128);
        // v <= 2^frac <= 2^62.
        Ok(Self {
            d,
            frac,
            value: v as i64,
        })
    }
    /// The divisor `d`.
    pub fn d(&self) -> u32 {
        self.d
    }
    /// Fraction bits of the constant.
    pub fn frac(&self) -> u32 {
        self.frac
    }
    /// The raw constant `c`.
    pub fn value(&self) -> i64 {
        self.value
    }
}

/// Goodness unit: `G = sum_sq / d` as a multiplication by the constant
/// `recip` (see [`RecipConst`]).
///
/// Hardware: the exact product `sum_sq * c` (fraction bits
/// `sum_frac + recip.frac()`), then the [`requantize`] unit to `out_fmt`
/// with `mode`/`rnd` (round, then saturate). The error against the exact
/// `sum_sq / d` is at most `sum_sq_real * 2^-(recip.frac()+1)` from the
/// constant plus the output rounding (< 1 LSB truncate, <= 1/2 LSB half-up).
pub fn goodness(
    sum_sq: i64,
    sum_frac: u32,
    recip: &RecipConst,
    out_fmt: QFormat,
    mode: Rounding,
    rnd: u64,
) -> i64 {
    let p = i128::from(sum_sq) * i128::from(recip.value);
    requant_wide(p, sum_frac.saturating_add(recip.frac), out_fmt, mode, rnd)
}

/// Normalisation unit: `y_i = requantize(h_i * rs)` for every lane.
///
/// `h_i` is in `h_fmt`, `rs` (usually the output of
/// [`super::tables::RsqrtTable::rsqrt`] on `squared_sum(h)`) has `rs_fmt.frac`
/// fraction bits; each lane multiplies exactly and requantises from
/// `h_fmt.frac + rs_fmt.frac` to `out_fmt` with `mode`, then saturates.
/// `rnd` is called exactly once per lane, in lane order, whatever the mode
/// (the LFSR is clocked every cycle), and supplies that lane's random word.
/// A zero vector gives a zero vector (whatever `rs` is, `0 * rs = 0`).
pub fn normalise(
    h: &[i64],
    h_fmt: QFormat,
    rs: i64,
    rs_fmt: QFormat,
    out_fmt: QFormat,
    mode: Rounding,
    mut rnd: impl FnMut() -> u64,
) -> Vec<i64> {
    let from = h_fmt.frac.saturating_add(rs_fmt.frac);
    h.iter()
        .map(|&x| {
            let r = rnd();
            requant_wide(i128::from(x) * i128::from(rs), from, out_fmt, mode, r)
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Loss units
// ---------------------------------------------------------------------------

/// Largest reciprocal precision accepted by [`loss_beta_npair`]; larger
/// values are treated as this (the quotient must fit a 64-bit register).
pub const MAX_RECIP_FRAC: u32 = 62;

/// N-pair loss unit: `beta_k = e^{t_k} / (1 + sum_j e^{t_j})` for the logits
/// `t` (raw, in `exp.in_fmt()`), as raw values in `beta_fmt`.
///
/// Hardware, in order:
/// 1. each `t_k` is saturated to `exp.in_fmt()` (the input bus);
/// 2. `m = max(0, max_k t_k)`: a comparator tree; the 0 is the logit of
///    the constant 1 in the denominator, so that every exponent below is
///    `<= 0` (including `-m` for the constant term);
/// 3. `E_k = exp.lookup(t_k - m)`, `E_0 = exp.lookup(-m)` (ROM reads, raw
///    with `fe = exp.out_fmt().frac` fraction bits);
/// 4. `S = E_0 + sum_k E_k` (exact adder tree);
/// 5. ONE reciprocal `R = floor(2^F / S)`, `F = min(recip_frac, 62)`: the
///    RTL uses a sequential restoring divider (one per sample, not per
///    class; its latency is hidden behind the K multipliers' pipeline);
/// 6. `beta_k = floor(E_k * R / 2^(F - fb))`, `fb = beta_fmt.frac` (a
///    truncating requantiser; a left shift if `F < fb`), saturated to
///    `beta_fmt`.
///
/// Because every rounding is a floor, `sum_k beta_k <= 2^fb`, i.e. the
/// betas never sum past 1. Error of each `beta_k` against the exact
/// softmax, with `eps` the exp table's absolute error (see [`ExpTable`]) and
/// `K = t.len()`: at most `(K+2) eps / (1 - (K+1) eps) + 2^-fb (1 + 2^(fe +
/// fb - F))` (the table term because the largest exponential is `e^0 = 1`,
/// so the true denominator is >= 1). If every `E` underflows to 0 (a
/// degenerate table) the betas are all 0. An empty `t` gives an empty
/// vector.
pub fn loss_beta_npair(t: &[i64], exp: &ExpTable, recip_frac: u32, beta_fmt: QFormat) -> Vec<i64> {
    let tf = exp.in_fmt();
    let ts: Vec<i64> = t.iter().map(|&x| saturate(x, tf)).collect();
    let m = ts.iter().copied().max().unwrap_or(0).max(0);
    // |t_k - m| < 2^49: no overflow.
    let e: Vec<i64> = ts.iter().map(|&x| exp.lookup(x - m)).collect();
    let s: i128 = i128::from(exp.lookup(-m)) + e.iter().map(|&v| i128::from(v)).sum::<i128>();
    if s <= 0 {
        return vec![0; t.len()];
    }
    let f = recip_frac.min(MAX_RECIP_FRAC);
    let r = (1i128 << f) / s;
    // E_k <= S, so E_k * R <= 2^F.
    e.iter()
        .map(|&ek| requant_wide(i128::from(ek) * r, f, beta_fmt, Rounding::Truncate, 0))
        .collect()
}

/// Hinge loss unit: `beta_k = 1` if `t_k > 0` else `0`, as raw values in
/// `beta_fmt` (1 is `2^fb`, saturated if `beta_fmt` cannot hold it). Exact:
/// a sign/zero test and a mux per lane.
pub fn loss_beta_hinge(t: &[i64], beta_fmt: QFormat) -> Vec<i64> {
    let one = sat_to(1i128 << beta_fmt.frac.min(MAX_FRAC), beta_fmt);
    t.iter().map(|&x| if x > 0 { one } else { 0 }).collect()
}

// ---------------------------------------------------------------------------
// Weight update
// ---------------------------------------------------------------------------

/// Weight update unit: `w - round(eta * grad)` saturated to `w_fmt`.
///
/// Hardware: the step `eta * grad` is formed exactly (a shift for
/// [`LearningRate::Shift`], an exact product `grad * value` for
/// [`LearningRate::Mul`]) with `grad_frac + k` (resp. `grad_frac + frac`)
/// fraction bits, rounded to `w_fmt.frac` fraction bits with `mode`/`rnd` by
/// the rounding shifter (exact left shift if it has fewer), subtracted from
/// `w` exactly, and the difference saturated to `w_fmt`. Note that the
/// *step* is rounded, so `Truncate` rounds the step down (the weight up).
pub fn lr_update(
    w: i64,
    grad: i64,
    grad_frac: u32,
    w_fmt: QFormat,
    lr: LearningRate,
    mode: Rounding,
    rnd: u64,
) -> i64 {
    let (prod, pf) = match lr {
        LearningRate::Shift(k) => (i128::from(grad), grad_frac.saturating_add(k)),
        LearningRate::Mul { value, frac } => (
            i128::from(grad) * i128::from(value),
            grad_frac.saturating_add(frac),
        ),
    };
    let step = rescale_wide(prod, pf, w_fmt.frac, mode, rnd);
    sat_to(i128::from(w).saturating_sub(step), w_fmt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixed::tables::{ExpTable, RsqrtTable};
    use num_bigint::BigInt;
    use num_rational::BigRational;
    use num_traits::{One, ToPrimitive, Zero};
    use proptest::prelude::*;

    // ----- exact reference maths (num-bigint / num-rational) -----

    fn big(x: i64) -> BigInt {
        BigInt::from(x)
    }
    fn p2(s: u32) -> BigInt {
        BigInt::one() << (s as usize)
    }
    /// floor(x / 2^s) as an exact rational floor.
    fn floor_div(x: &BigInt, s: u32) -> BigInt {
        BigRational::new(x.clone(), p2(s)).floor().to_integer()
    }
    /// The rounding addend of the spec, written independently.
    fn addend(mode: Rounding, s: u32, rnd: u64) -> BigInt {
        match (mode, s) {
            (_, 0) | (Rounding::Truncate, _) => BigInt::zero(),
            (Rounding::HalfUp, s) => p2(s - 1),
            (Rounding::Stochastic, s) if s >= 64 => BigInt::from(rnd),
            (Rounding::Stochastic, s) => BigInt::from(rnd) % p2(s),
        }
    }
    fn round_ref(x: &BigInt, s: u32, mode: Rounding, rnd: u64) -> BigInt {
        floor_div(&(x + addend(mode, s, rnd)), s)
    }
    fn clamp_ref(x: BigInt, f: QFormat) -> i64 {
        x.clamp(big(f.min()), big(f.max())).to_i64().unwrap()
    }
    fn requant_ref(x: BigInt, from: u32, f: QFormat, mode: Rounding, rnd: u64) -> i64 {
        if f.frac >= from {
            clamp_ref(x << ((f.frac - from) as usize), f)
        } else {
            clamp_ref(round_ref(&x, from - f.frac, mode, rnd), f)
        }
    }

    fn q(bits: u32, frac: u32, signed: bool) -> QFormat {
        QFormat::new(bits, frac, signed).unwrap()
    }
    fn any_fmt() -> impl Strategy<Value = QFormat> {
        (2u32..=48, 0u32..=62, any::<bool>()).prop_map(|(b, f, s)| q(b, f, s))
    }
    fn any_mode() -> impl Strategy<Value = Rounding> {
        prop_oneof![
            Just(Rounding::Truncate),
            Just(Rounding::HalfUp),
            Just(Rounding::Stochastic)
        ]
    }
    fn in_fmt(f: QFormat) -> impl Strategy<Value = i64> {
        f.min()..=f.max()
    }
    const MODES: [Rounding; 3] = [Rounding::Truncate, Rounding::HalfUp, Rounding::Stochastic];

    // ----- serde names -----

    #[test]
    fn rounding_serde_names() {
        use serde::de::value::{Error as DeError, StrDeserializer};
        use serde::de::IntoDeserializer;
        for (name, mode) in [
            ("truncate", Rounding::Truncate),
            ("half-up", Rounding::HalfUp),
            ("stochastic", Rounding::Stochastic),
        ] {
            let d: StrDeserializer<DeError> = name.into_deserializer();
            assert_eq!(Rounding::deserialize(d).unwrap(), mode);
        }
        let d: StrDeserializer<DeError> = "half_up".into_deserializer();
        assert!(Rounding::deserialize(d).is_err());
    }

    // ----- saturation -----

    #[test]
    fn saturate_edges() {
        let f = q(18, 0, true);
        assert_eq!(saturate_flag(131_071, f), (131_071, false));
        assert_eq!(saturate_flag(131_072, f), (131_071, true));
        assert_eq!(saturate_flag(-131_072, f), (-131_072, false));
        assert_eq!(saturate_flag(-131_073, f), (-131_072, true));
        assert_eq!(saturate_flag(0, f), (0, false));
        assert_eq!(saturate_flag(i64::MIN, f), (-131_072, true));
        assert_eq!(saturate_flag(i64::MAX, f), (131_071, true));
        let u = q(8, 4, false);
        assert_eq!(saturate_flag(-1, u), (0, true));
        assert_eq!(saturate_flag(256, u), (255, true));
        let w = q(48, 0, true);
        assert_eq!(saturate(i64::MIN, w), -(1i64 << 47));
        assert_eq!(saturate(i64::MAX, w), (1i64 << 47) - 1);
    }

    proptest! {
        #[test]
        fn saturate_matches_clamp(x in any::<i64>(), f in any_fmt()) {
            let (y, flag) = saturate_flag(x, f);
            prop_assert_eq!(y, clamp_ref(big(x), f));
            prop_assert_eq!(flag, !f.contains(x));
            prop_assert!(f.contains(y));
        }
    }

    // ----- MAC -----

    #[test]
    fn mac_extremes_48_bit_acc_18_bit_operands() {
        let acc = q(48, 20, true);
        let m = -(1i64 << 17); // most negative 18-bit value
        assert_eq!(mac(0, m, m, acc), 1i64 << 34);
        assert_eq!(mac(acc.max(), m, m, acc), acc.max());
        assert_eq!(mac(acc.min(), m, (1 << 17) - 1, acc), acc.min());
        assert_eq!(mac(acc.max() - 5, 2, 3, acc), acc.max());
        assert_eq!(mac(acc.max() - 6, 2, 3, acc), acc.max());
        assert_eq!(mac(acc.max() - 7, 2, 3, acc), acc.max() - 1);
        // Arbitrary i64 inputs do not overflow.
        assert_eq!(mac(i64::MAX, i64::MIN, i64::MIN, acc), acc.max());
        assert_eq!(mac(i64::MIN, i64::MIN, i64::MAX, acc), acc.min());
    }

    proptest! {
        #[test]
        fn mac_matches_bigint(
            acc in in_fmt(q(48, 0, true)),
            a in in_fmt(q(18, 0, true)),
            b in in_fmt(q(18, 0, true)),
            bits in 2u32..=48,
        ) {
            let f = q(bits, 0, true);
            let acc = saturate(acc, f);
            prop_assert_eq!(mac(acc, a, b, f), clamp_ref(big(acc) + big(a) * big(b), f));
        }

        #[test]
        fn mac_exact_bits_is_minimal(af in any_fmt(), bf in any_fmt(), k in 0u32..100_000) {
            let w = mac_exact_bits(af, bf, k);
            let c = [
                big(af.min()) * big(bf.min()),
                big(af.min()) * big(bf.max()),
                big(af.max()) * big(bf.min()),
                big(af.max()) * big(bf.max()),
            ];
            let lo = c.iter().min().unwrap() * BigInt::from(k);
            let hi = c.iter().max().unwrap() * BigInt::from(k);
            let signed = lo < BigInt::zero();
            let range = |w: u32| -> (BigInt, BigInt) {
                if signed { (-p2(w - 1), p2(w - 1) - 1) } else { (BigInt::zero(), p2(w) - 1) }
            };
            let (rmin, rmax) = range(w);
            prop_assert!(rmin <= lo && hi <= rmax, "width {} too small", w);
            let floor = if signed { 2 } else { 1 };
            if w > floor {
                let (rmin, rmax) = range(w - 1);
                prop_assert!(lo < rmin || hi > rmax, "width {} not minimal", w);
            }
        }
    }

    #[test]
    fn mac_exact_bits_known() {
        let s18 = q(18, 0, true);
        assert_eq!(mac_exact_bits(s18, s18, 1), 36);
        // 2 * 2^34 = 2^35 needs 37 signed bits; 1024 * 2^34 = 2^44 needs 46.
        assert_eq!(mac_exact_bits(s18, s18, 2), 37);
        assert_eq!(mac_exact_bits(s18, s18, 1024), 46);
        let u8f = q(8, 0, false);
        assert_eq!(mac_exact_bits(u8f, u8f, 1), 16); // 255^2 = 65025
        assert_eq!(mac_exact_bits(u8f, u8f, 0), 1);
        assert_eq!(mac_exact_bits(s18, u8f, 1), 26); // -2^17 * 255
        let w48 = q(48, 0, false);
        assert_eq!(mac_exact_bits(w48, w48, u32::MAX), 128);
    }

    // ----- shift_round -----

    proptest! {
        #[test]
        fn shift_round_matches_rational(x in any::<i64>(), s in 0u32..140, rnd in any::<u64>(), mode in any_mode()) {
            let want = round_ref(&big(x), s, mode, rnd);
            prop_assert_eq!(big(shift_round(x, s, mode, rnd)), want);
        }

        #[test]
        fn shift_round_wide_matches_rational(hi in any::<i64>(), lo in any::<u64>(), s in 0u32..260, rnd in any::<u64>(), mode in any_mode()) {
            let x = (i128::from(hi) << 64) | i128::from(lo);
            let want = round_ref(&BigInt::from(x), s, mode, rnd);
            prop_assert_eq!(BigInt::from(shift_round_wide(x, s, mode, rnd)), want);
        }

        #[test]
        fn stochastic_fixed_r_is_floor(x in any::<i64>(), s in 1u32..64, r in any::<u64>()) {
            let r = r & ((1u64 << s) - 1);
            let junk = r | (0xdead_beef_u64 << s.min(63)); // high bits are ignored
            let want = floor_div(&(big(x) + BigInt::from(r)), s);
            prop_assert_eq!(big(shift_round(x, s, Rounding::Stochastic, r)), want.clone());
            prop_assert_eq!(big(shift_round(x, s, Rounding::Stochastic, junk)), want);
        }
    }

    #[test]
    fn stochastic_mean_is_exact() {
        // Sum over all 2^s random words of floor((x + r) / 2^s) equals x,
        // i.e. the mean is exactly x / 2^s (checked exhaustively).
        for s in 1..=8u32 {
            for x in (-1000i64..1000).chain([i64::MIN, i64::MAX, i64::MIN + 1]) {
                let sum: i128 = (0..(1u64 << s))
                    .map(|r| i128::from(shift_round(x, s, Rounding::Stochastic, r)))
                    .sum();
                assert_eq!(sum, i128::from(x), "x = {x}, s = {s}");
            }
        }
    }

    #[test]
    fn shift_round_edges() {
        for mode in MODES {
            assert_eq!(shift_round(12345, 0, mode, u64::MAX), 12345);
            assert_eq!(shift_round(0, 5, Rounding::Stochastic, 0), 0);
        }
        assert_eq!(shift_round(-5, 1, Rounding::Truncate, 0), -3);
        assert_eq!(shift_round(-5, 1, Rounding::HalfUp, 0), -2);
        assert_eq!(shift_round(5, 1, Rounding::HalfUp, 0), 3);
        assert_eq!(shift_round(i64::MIN, 63, Rounding::Truncate, 0), -1);
        assert_eq!(shift_round(i64::MIN, 63, Rounding::HalfUp, 0), -1);
        assert_eq!(shift_round(i64::MAX, 63, Rounding::HalfUp, 0), 1);
        assert_eq!(shift_round(i64::MAX, 63, Rounding::Truncate, 0), 0);
        assert_eq!(shift_round(i64::MAX, 1, Rounding::HalfUp, 0), 1i64 << 62);
        assert_eq!(shift_round(-1, 64, Rounding::Truncate, 0), -1);
        assert_eq!(shift_round(-1, 64, Rounding::HalfUp, 0), 0);
        assert_eq!(shift_round(-1, 64, Rounding::Stochastic, 1), 0);
        assert_eq!(shift_round(-1, 64, Rounding::Stochastic, 0), -1);
        assert_eq!(shift_round(i64::MAX, 64, Rounding::Stochastic, u64::MAX), 1);
        assert_eq!(shift_round(-7, u32::MAX, Rounding::Truncate, 0), -1);
        assert_eq!(shift_round(7, u32::MAX, Rounding::Truncate, 0), 0);
        assert_eq!(shift_round(-7, u32::MAX, Rounding::HalfUp, 0), 0);
    }

    // ----- requantize / relu -----

    proptest! {
        #[test]
        fn requantize_matches_rational(
            x in any::<i64>(), from in 0u32..100, f in any_fmt(), mode in any_mode(), rnd in any::<u64>()
        ) {
            prop_assert_eq!(requantize(x, from, f, mode, rnd), requant_ref(big(x), from, f, mode, rnd));
        }

        #[test]
        fn relu_requant_matches(z in any::<i64>(), zf in 0u32..70, f in any_fmt(), mode in any_mode(), rnd in any::<u64>()) {
            let want = requant_ref(big(z.max(0)), zf, f, mode, rnd);
            let got = relu_requant(z, zf, f, mode, rnd);
            prop_assert_eq!(got, want);
            prop_assert!(got >= 0);
        }
    }

    #[test]
    fn requantize_left_and_right() {
        let out = q(8, 4, true); // Q3.4, [-8, 7.9375]
        assert_eq!(requantize(3, 2, out, Rounding::Truncate, 0), 12); // 0.75 -> 12/16
        assert_eq!(requantize(100, 0, out, Rounding::Truncate, 0), 127); // saturates
        assert_eq!(requantize(-100, 0, out, Rounding::Truncate, 0), -128);
        assert_eq!(requantize(0x123, 8, out, Rounding::Truncate, 0), 0x12);
        assert_eq!(requantize(0x128, 8, out, Rounding::HalfUp, 0), 0x13);
        assert_eq!(requantize(-0x128, 8, out, Rounding::HalfUp, 0), -0x12);
        assert_eq!(requantize(i64::MIN, 0, out, Rounding::HalfUp, 0), -128);
        assert_eq!(
            requantize(i64::MAX, 0, q(48, 62, true), Rounding::HalfUp, 0),
            (1 << 47) - 1
        );
        assert_eq!(relu_requant(-1000, 4, out, Rounding::HalfUp, 0), 0);
    }

    // ----- squared sum, goodness -----

    proptest! {
        #[test]
        fn squared_sum_matches_bigint(h in prop::collection::vec(-(1i64 << 17)..(1i64 << 17), 0..64), bits in 2u32..=48) {
            let f = q(bits, 0, true);
            let exact: BigInt = h.iter().map(|&x| big(x) * big(x)).sum();
            prop_assert_eq!(squared_sum(&h, f), clamp_ref(exact, f));
        }

        #[test]
        fn goodness_matches_rational(
            sum in 0i64..(1i64 << 47), sf in 0u32..40, d in 1u32..5000, rf in 0u32..=62,
            of in any_fmt(), mode in any_mode(), rnd in any::<u64>()
        ) {
            let c = RecipConst::new(d, rf).unwrap();
            // c = round_half_up(2^rf / d): |c - 2^rf/d| <= 1/2, ties up.
            let exact = BigRational::new(p2(rf), BigInt::from(d));
            let cr = BigRational::from_integer(BigInt::from(c.value()));
            let half = BigRational::new(BigInt::one(), BigInt::from(2));
            prop_assert!(&cr - &half <= exact && exact < &cr + &half);
            let g = goodness(sum, sf, &c, of, mode, rnd);
            prop_assert_eq!(g, requant_ref(big(sum) * BigInt::from(c.value()), sf + rf, of, mode, rnd));
        }
    }

    #[test]
    fn goodness_error_bound() {
        // G = S / d with S = sum * 2^-20, d = 100, constant with 24 fraction
        // bits, output Q(32, 16): |G - S/d| <= S 2^-25 + 2^-16 / 2 (half-up).
        let c = RecipConst::new(100, 24).unwrap();
        let out = q(32, 16, false);
        for sum in (0..(1i64 << 40)).step_by((1usize << 40) / 997) {
            let g = out.to_f64(goodness(sum, 20, &c, out, Rounding::HalfUp, 0));
            let s = sum as f64 * (-20f64).exp2();
            assert!((g - s / 100.0).abs() <= s * (-25f64).exp2() + (-17f64).exp2() + 1e-12);
        }
    }

    #[test]
    fn recip_const_errors() {
        assert_eq!(RecipConst::new(0, 10), Err(OpsError::ZeroDimension));
        assert_eq!(
            OpsError::ZeroDimension.to_string(),
            "the goodness unit divides the sum of squares by the layer width d, which must be at least 1 (got 0)"
        );
        let e = RecipConst::new(3, 63).unwrap_err();
        assert_eq!(e, OpsError::RecipFracTooLarge { frac: 63 });
        assert_eq!(
            e.to_string(),
            "reciprocal constant with 63 fraction bits is not supported: at most 62, \
             so that the constant 2^frac/d fits in an i64"
        );
        let c = RecipConst::new(1, 62).unwrap();
        assert_eq!((c.d(), c.frac(), c.value()), (1, 62, 1i64 << 62));
        assert_eq!(RecipConst::new(3, 4).unwrap().value(), 5); // 16/3 = 5.33
        assert_eq!(RecipConst::new(32, 4).unwrap().value(), 1); // 0.5 ties up
        assert_eq!(RecipConst::new(33, 4).unwrap().value(), 0);
    }

    // ----- normalise (with the rsqrt table) -----

    proptest! {
        #[test]
        fn normalise_matches_rational(
            h in prop::collection::vec(-(1i64 << 17)..(1i64 << 17), 0..16),
            rs in any::<i64>(), hf in 0u32..20, rf in 0u32..40, of in any_fmt(), mode in any_mode(),
            seed in any::<u64>()
        ) {
            let hfmt = q(18, hf, true);
            let rsf = q(48, rf, false);
            let mut calls = 0u64;
            let y = normalise(&h, hfmt, rs, rsf, of, mode, || { calls += 1; seed.wrapping_mul(calls) });
            prop_assert_eq!(calls as usize, h.len());
            for (i, (&hi, &yi)) in h.iter().zip(&y).enumerate() {
                let r = seed.wrapping_mul(i as u64 + 1);
                prop_assert_eq!(yi, requant_ref(big(hi) * big(rs), hf + rf, of, mode, r));
            }
        }

        #[test]
        fn normalise_gives_unit_norm(h in prop::collection::vec(-(1i64 << 12)..(1i64 << 12), 1..32)) {
            // h in Q(18, 12): sum of squares in Q(48, 24); rsqrt table with
            // 10 address bits, output Q(32, 20); y in Q(18, 16).
            let hfmt = q(18, 12, true);
            let acc = q(48, 24, false);
            let rsf = q(32, 20, false);
            let yf = q(18, 16, true);
            let table = RsqrtTable::new(acc, rsf, 10).unwrap();
            let s = squared_sum(&h, acc);
            prop_assume!(s >= 1 << 20); // norm >= 1/16, enough output bits
            let rs = table.rsqrt(s);
            let y = normalise(&h, hfmt, rs, rsf, yf, Rounding::HalfUp, || 0);
            let n2: f64 = y.iter().map(|&v| yf.to_f64(v).powi(2)).sum();
            // Table relative error ~2^-10 (so norm^2 within ~2^-9) plus
            // per-lane rounding (2^-17 each, summed over <= 32 lanes).
            prop_assert!((n2 - 1.0).abs() <= (-8f64).exp2(), "norm^2 = {}", n2);
        }
    }

    #[test]
    fn normalise_zero_vector() {
        let acc = q(48, 24, false);
        let rsf = q(32, 20, false);
        let table = RsqrtTable::new(acc, rsf, 8).unwrap();
        let h = vec![0i64; 7];
        let s = squared_sum(&h, acc);
        assert_eq!(s, 0);
        let rs = table.rsqrt(s);
        assert_eq!(rs, rsf.max());
        for mode in MODES {
            let y = normalise(&h, q(18, 12, true), rs, rsf, q(18, 16, true), mode, || {
                u64::MAX
            });
            assert_eq!(y, vec![0; 7]);
        }
    }

    // ----- loss units -----

    fn npair_setup() -> (ExpTable, QFormat, u32) {
        let tf = q(16, 8, true); // logits in [-128, 128)
        let ef = q(18, 16, false);
        let exp = ExpTable::new(tf, ef, 10, 16.0).unwrap();
        (exp, q(17, 16, false), 40)
    }

    proptest! {
        #[test]
        fn npair_sums_below_one_and_matches_softmax(
            t in prop::collection::vec(-(1i64 << 15)..(1i64 << 15), 1..12),
            rf in 20u32..=62,
        ) {
            let (exp, bf, _) = npair_setup();
            let tf = exp.in_fmt();
            let beta = loss_beta_npair(&t, &exp, rf, bf);
            prop_assert_eq!(beta.len(), t.len());
            let total: i64 = beta.iter().sum();
            prop_assert!(total <= 1 << bf.frac, "sum of betas {} > 1", total);

            // f64 softmax with the constant 1 in the denominator.
            let tr: Vec<f64> = t.iter().map(|&x| tf.to_f64(x)).collect();
            let m = tr.iter().copied().fold(0.0f64, f64::max);
            let den = (-m).exp() + tr.iter().map(|&x| (x - m).exp()).sum::<f64>();
            let k = t.len() as f64;
            let eps = exp.error_bound().max((-exp.covered_range()).exp());
            let (fe, fb) = (exp.out_fmt().frac as i32, bf.frac as i32);
            let bound = (k + 2.0) * eps / (1.0 - (k + 1.0) * eps)
                + (-fb as f64).exp2() * (1.0 + f64::from(fe + fb - rf as i32).exp2())
                + 1e-12;
            for (i, &b) in beta.iter().enumerate() {
                let p = (tr[i] - m).exp() / den;
                prop_assert!((bf.to_f64(b) - p).abs() <= bound, "beta {} vs {} (bound {})", bf.to_f64(b), p, bound);
            }
        }

        #[test]
        fn hinge_exact(t in prop::collection::vec(any::<i64>(), 0..20), bf in any_fmt()) {
            let beta = loss_beta_hinge(&t, bf);
            let one = clamp_ref(p2(bf.frac), bf);
            for (&x, &b) in t.iter().zip(&beta) {
                prop_assert_eq!(b, if x > 0 { one } else { 0 });
            }
        }
    }

    #[test]
    fn npair_edge_cases() {
        let (exp, bf, rf) = npair_setup();
        assert!(loss_beta_npair(&[], &exp, rf, bf).is_empty());
        // One logit at 0: beta = 1/2.
        let b = loss_beta_npair(&[0], &exp, rf, bf);
        assert!((bf.to_f64(b[0]) - 0.5).abs() < 1e-3);
        // A huge logit takes (almost) everything; out-of-range inputs are
        // saturated to the logit format first.
        let b = loss_beta_npair(&[i64::MAX, i64::MIN], &exp, rf, bf);
        assert!(bf.to_f64(b[0]) > 0.999 && b[1] == 0);
        // Very negative logits: the constant 1 dominates.
        let b = loss_beta_npair(&[-(1 << 15), -(1 << 15)], &exp, rf, bf);
        assert_eq!(b, vec![0, 0]);
        // A recip_frac beyond the limit is clamped, not a panic.
        let b = loss_beta_npair(&[0, 0], &exp, 1000, bf);
        assert_eq!(b, loss_beta_npair(&[0, 0], &exp, MAX_RECIP_FRAC, bf));
        // Hinge: 1.0 saturates when the format cannot hold it.
        assert_eq!(loss_beta_hinge(&[1, 0, -1], q(8, 7, true)), vec![127, 0, 0]);
        assert_eq!(loss_beta_hinge(&[5, 0, -1], q(8, 4, false)), vec![16, 0, 0]);
    }

    // ----- weight update -----

    fn lr_ref(
        w: i64,
        g: i64,
        gf: u32,
        wf: QFormat,
        lr: LearningRate,
        mode: Rounding,
        rnd: u64,
    ) -> i64 {
        let (prod, pf) = match lr {
            LearningRate::Shift(k) => (big(g), gf + k),
            LearningRate::Mul { value, frac } => (big(g) * big(value), gf + frac),
        };
        let step = if wf.frac >= pf {
            prod << ((wf.frac - pf) as usize)
        } else {
            round_ref(&prod, pf - wf.frac, mode, rnd)
        };
        clamp_ref(big(w) - step, wf)
    }

    proptest! {
        #[test]
        fn lr_update_matches_rational(
            wbits in 2u32..=48, wfrac in 0u32..=40, w in any::<i64>(), g in any::<i64>(), gf in 0u32..=50,
            shift in prop::option::of(0u32..=70), value in -(1i64 << 20)..(1i64 << 20), vf in 0u32..=40,
            mode in any_mode(), rnd in any::<u64>()
        ) {
            let wf = q(wbits, wfrac, true);
            let w = saturate(w, wf);
            let lr = match shift {
                Some(k) => LearningRate::Shift(k),
                None => LearningRate::Mul { value, frac: vf },
            };
            prop_assert_eq!(lr_update(w, g, gf, wf, lr, mode, rnd), lr_ref(w, g, gf, wf, lr, mode, rnd));
        }
    }

    #[test]
    fn lr_update_examples() {
        let wf = q(16, 12, true);
        // w = 1.0, grad = 0.5 (Q.12), eta = 2^-2: w - 0.125 = 0.875.
        assert_eq!(
            lr_update(
                4096,
                2048,
                12,
                wf,
                LearningRate::Shift(2),
                Rounding::HalfUp,
                0
            ),
            3584
        );
        // eta = 0.75 (3 * 2^-2): 1.0 - 0.375 = 0.625.
        let lr = LearningRate::Mul { value: 3, frac: 2 };
        assert_eq!(
            lr_update(4096, 2048, 12, wf, lr, Rounding::Truncate, 0),
            2560
        );
        // Saturation at both ends.
        assert_eq!(
            lr_update(
                wf.max(),
                -(1 << 40),
                12,
                wf,
                LearningRate::Shift(0),
                Rounding::HalfUp,
                0
            ),
            wf.max()
        );
        assert_eq!(
            lr_update(
                wf.min(),
                1 << 40,
                12,
                wf,
                LearningRate::Shift(0),
                Rounding::HalfUp,
                0
            ),
            wf.min()
        );
        // Extreme inputs do not panic.
        let lr = LearningRate::Mul {
            value: i64::MIN,
            frac: 0,
        };
        assert_eq!(
            lr_update(0, i64::MIN, 0, wf, lr, Rounding::HalfUp, 0),
            wf.min()
        );
        assert_eq!(
            lr_update(
                0,
                1,
                0,
                wf,
                LearningRate::Shift(u32::MAX),
                Rounding::HalfUp,
                0
            ),
            0
        );
    }

    #[test]
    fn learning_rate_serde_names() {
        use serde::de::value::{Error as DeError, StrDeserializer};
        use serde::de::IntoDeserializer;
        // Only the tag is checked here (no serde data format in the deps).
        let d: StrDeserializer<DeError> = "shift".into_deserializer();
        let err = LearningRate::deserialize(d).unwrap_err().to_string();
        assert!(err.contains("newtype variant"), "{err}");
    }
}
