//! Fixed-point number formats (`Q` formats) of the golden model.
//!
//! A [`QFormat`] describes one hardware bus: `bits` wires holding a two's
//! complement (`signed`) or plain binary (unsigned) integer `raw`, whose real
//! value is `raw * 2^-frac`. Every value of the golden model is carried as an
//! `i64` raw integer; the format says which raw integers the bus can hold.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::ops::Rounding;

/// Widest bus the golden model supports (accumulators). 48 bits is the
/// DSP48 accumulator width and keeps every raw value, and the product of two
/// 18-bit operands, well inside an `i64`.
pub const MAX_BITS: u32 = 48;

/// Largest number of fraction bits: the scale `2^frac` must fit in an `i64`
/// (so reciprocal and shift constants stay 64-bit) and `2^-frac` is an exact
/// `f64`.
pub const MAX_FRAC: u32 = 62;

/// Why a [`QFormat`] was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FormatError {
    /// `bits` outside `1..=48`.
    #[error(
        "fixed-point width {bits} is not supported: `bits` must be between 1 and {max} \
         (48 is the DSP accumulator width; every value must fit in an i64 with room for products)",
        max = MAX_BITS
    )]
    BitsOutOfRange {
        /// The rejected width.
        bits: u32,
    },
    /// A signed format with fewer than 2 bits.
    #[error(
        "a signed fixed-point format needs at least 2 bits (one sign bit and one value bit), \
         got bits = {bits}; use bits >= 2 or signed = false"
    )]
    SignedTooNarrow {
        /// The rejected width.
        bits: u32,
    },
    /// `frac` above 62.
    #[error(
        "{frac} fraction bits are too many: `frac` must be at most {max} so that the scale \
         2^frac fits in an i64 (frac may exceed bits, e.g. 20 fraction bits on a 12-bit bus)",
        max = MAX_FRAC
    )]
    FracTooLarge {
        /// The rejected number of fraction bits.
        frac: u32,
    },
}

/// A fixed-point format: `bits` wires, `frac` of them below the binary point.
///
/// Raw integer `r` means the real number `r * 2^-frac`. Signed formats are
/// two's complement: raw range `[-2^(bits-1), 2^(bits-1) - 1]`; unsigned:
/// `[0, 2^bits - 1]`. `frac` may exceed `bits` (a small number with leading
/// zero fraction bits dropped), up to [`MAX_FRAC`].
///
/// Build with [`QFormat::new`]; deserialisation goes through the same
/// validation, so a config file cannot produce an invalid format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawQFormat")]
pub struct QFormat {
    /// Total width of the bus in bits (sign included).
    pub bits: u32,
    /// Number of fraction bits (the binary point position).
    pub frac: u32,
    /// Two's complement if true, plain binary otherwise.
    pub signed: bool,
}

/// Unvalidated mirror of [`QFormat`] used only for deserialisation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQFormat {
    bits: u32,
    frac: u32,
    signed: bool,
}

impl std::fmt::Display for QFormat {
    /// As written in a config: `{ bits = 16, frac = 12, signed = true }`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{{ bits = {}, frac = {}, signed = {} }}",
            self.bits, self.frac, self.signed
        )
    }
}

impl TryFrom<RawQFormat> for QFormat {
    type Error = FormatError;
    fn try_from(r: RawQFormat) -> Result<Self, FormatError> {
        QFormat::new(r.bits, r.frac, r.signed)
    }
}

/// `2^e` as an exact `f64` for `-1022 <= e <= 1023` (built from the exponent
/// field, so it does not depend on the platform's `powi`).
pub(crate) fn pow2(e: i32) -> f64 {
    let e = e.clamp(-1022, 1023);
    // The biased exponent is in 1..=2046, which is a valid normal f64.
    f64::from_bits(((e + 1023) as u64) << 52)
}

impl QFormat {
    /// Validate and build a format: `1 <= bits <= 48`, `bits >= 2` when
    /// `signed`, `frac <= 62`.
    pub fn new(bits: u32, frac: u32, signed: bool) -> Result<Self, FormatError> {
        if !(1..=MAX_BITS).contains(&bits) {
            return Err(FormatError::BitsOutOfRange { bits });
        }
        if signed && bits < 2 {
            return Err(FormatError::SignedTooNarrow { bits });
        }
        if frac > MAX_FRAC {
            return Err(FormatError::FracTooLarge { frac });
        }
        Ok(Self { bits, frac, signed })
    }

    /// Width clamped to what an `i64` can describe, so that a format built by
    /// struct literal (bypassing [`QFormat::new`]) still cannot make
    /// [`QFormat::min`]/[`QFormat::max`] overflow (raw values then stay
    /// within `±2^62`).
    fn safe_bits(&self) -> u32 {
        if self.signed {
            self.bits.clamp(2, 63)
        } else {
            self.bits.clamp(1, 62)
        }
    }

    /// Smallest raw value: `-2^(bits-1)` if signed, else 0.
    pub fn min(&self) -> i64 {
        if self.signed {
            -(1i64 << (self.safe_bits() - 1))
        } else {
            0
        }
    }

    /// Largest raw value: `2^(bits-1) - 1` if signed, else `2^bits - 1`.
    pub fn max(&self) -> i64 {
        if self.signed {
            (1i64 << (self.safe_bits() - 1)) - 1
        } else {
            (1i64 << self.safe_bits()) - 1
        }
    }

    /// Whether the bus can carry `raw` without clipping.
    pub fn contains(&self, raw: i64) -> bool {
        (self.min()..=self.max()).contains(&raw)
    }

    /// Weight of one raw step, `2^-frac`, exact.
    pub fn lsb(&self) -> f64 {
        pow2(-(self.frac.min(MAX_FRAC) as i32))
    }

    /// Real value of a raw integer: `raw * 2^-frac` (exact for |raw| < 2^53,
    /// which covers every 48-bit bus).
    pub fn to_f64(&self, raw: i64) -> f64 {
        raw as f64 * self.lsb()
    }

    /// Quantise a real number onto this bus (host side: loading weights and
    /// inputs into the accelerator).
    ///
    /// `y = x * 2^frac` (exact, a power-of-two scale), then rounded to an
    /// integer by `mode` and saturated to `[min, max]`:
    /// `Truncate` = floor, `HalfUp` = floor(y + 1/2), `Stochastic` here has no
    /// random source and uses the mid-point random word, which equals
    /// `HalfUp`; use [`QFormat::from_f64_rnd`] to supply one. NaN maps to 0,
    /// ±inf saturate.
    pub fn from_f64(&self, x: f64, mode: Rounding) -> i64 {
        self.from_f64_rnd(x, mode, 1u64 << 63)
    }

    /// As [`QFormat::from_f64`] with an explicit random word for
    /// `Stochastic`: `floor(y + r)` with `r = (rnd >> 11) * 2^-53`, uniform in
    /// `[0, 1)` when `rnd` is. Rounding is exact (no double rounding): the
    /// fractional part of `y` is compared with `1 - r`, both exact in `f64`.
    pub fn from_f64_rnd(&self, x: f64, mode: Rounding, rnd: u64) -> i64 {
        if x.is_nan() {
            return 0;
        }
        let y = x * pow2(self.frac.min(MAX_FRAC) as i32);
        let (lo, hi) = (self.min() as f64, self.max() as f64);
        if y <= lo {
            return self.min();
        }
        if y >= hi {
            return self.max();
        }
        // Here |y| < 2^62, so floor(y) and its fraction are exact.
        let fl = y.floor();
        let fr = y - fl;
        let up = match mode {
            Rounding::Truncate => false,
            Rounding::HalfUp => fr >= 0.5,
            Rounding::Stochastic => {
                let r = (rnd >> 11) as f64 * pow2(-53);
                fr >= 1.0 - r
            }
        };
        let q = fl as i64 + i64::from(up);
        q.clamp(self.min(), self.max())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_accepts_valid_formats() {
        assert!(QFormat::new(1, 0, false).is_ok());
        assert!(QFormat::new(2, 0, true).is_ok());
        assert!(QFormat::new(48, 62, true).is_ok());
        assert!(QFormat::new(12, 20, false).is_ok());
    }

    #[test]
    fn error_bits_zero() {
        let e = QFormat::new(0, 0, false).unwrap_err();
        assert_eq!(e, FormatError::BitsOutOfRange { bits: 0 });
        assert_eq!(
            e.to_string(),
            "fixed-point width 0 is not supported: `bits` must be between 1 and 48 \
             (48 is the DSP accumulator width; every value must fit in an i64 with room for products)"
        );
    }

    #[test]
    fn error_bits_too_wide() {
        let e = QFormat::new(49, 0, true).unwrap_err();
        assert_eq!(e, FormatError::BitsOutOfRange { bits: 49 });
        assert!(e
            .to_string()
            .starts_with("fixed-point width 49 is not supported"));
        assert!(e.to_string().contains("between 1 and 48"));
    }

    #[test]
    fn error_signed_too_narrow() {
        let e = QFormat::new(1, 0, true).unwrap_err();
        assert_eq!(e, FormatError::SignedTooNarrow { bits: 1 });
        assert_eq!(
            e.to_string(),
            "a signed fixed-point format needs at least 2 bits (one sign bit and one value bit), \
             got bits = 1; use bits >= 2 or signed = false"
        );
    }

    #[test]
    fn error_frac_too_large() {
        let e = QFormat::new(16, 63, false).unwrap_err();
        assert_eq!(e, FormatError::FracTooLarge { frac: 63 });
        assert_eq!(
            e.to_string(),
            "63 fraction bits are too many: `frac` must be at most 62 so that the scale \
             2^frac fits in an i64 (frac may exceed bits, e.g. 20 fraction bits on a 12-bit bus)"
        );
    }

    #[test]
    fn ranges() {
        let s = QFormat::new(18, 10, true).unwrap();
        assert_eq!((s.min(), s.max()), (-131_072, 131_071));
        let u = QFormat::new(8, 0, false).unwrap();
        assert_eq!((u.min(), u.max()), (0, 255));
        let w = QFormat::new(48, 0, true).unwrap();
        assert_eq!((w.min(), w.max()), (-(1i64 << 47), (1i64 << 47) - 1));
        assert!(s.contains(-131_072) && !s.contains(-131_073) && !s.contains(131_072));
        // A format built by literal, bypassing validation, must not panic.
        let bad = QFormat {
            bits: 200,
            frac: 99,
            signed: true,
        };
        assert_eq!(bad.max(), (1i64 << 62) - 1);
        let _ = bad.from_f64(1.0, Rounding::HalfUp);
    }

    #[test]
    fn f64_round_trip_and_rounding() {
        let f = QFormat::new(8, 2, true).unwrap();
        assert_eq!(f.lsb(), 0.25);
        assert_eq!(f.from_f64(1.125, Rounding::Truncate), 4);
        assert_eq!(f.from_f64(1.125, Rounding::HalfUp), 5);
        assert_eq!(f.from_f64(-1.125, Rounding::HalfUp), -4);
        assert_eq!(f.from_f64(-1.125, Rounding::Truncate), -5);
        assert_eq!(f.from_f64(1e9, Rounding::HalfUp), 127);
        assert_eq!(f.from_f64(-1e9, Rounding::HalfUp), -128);
        assert_eq!(f.from_f64(f64::NAN, Rounding::HalfUp), 0);
        assert_eq!(f.from_f64(f64::INFINITY, Rounding::HalfUp), 127);
        assert_eq!(f.to_f64(-5), -1.25);
        // Stochastic: y = 4.5; r = 0.25 -> floor(4.75) = 4; r = 0.5 -> 5.
        assert_eq!(f.from_f64_rnd(1.125, Rounding::Stochastic, 1 << 62), 4);
        assert_eq!(f.from_f64_rnd(1.125, Rounding::Stochastic, 1 << 63), 5);
        assert_eq!(f.from_f64_rnd(1.0, Rounding::Stochastic, u64::MAX), 4);
        // Large integers near 2^52 are not double-rounded.
        let g = QFormat::new(48, 0, true).unwrap();
        let big = (1i64 << 46) + 1;
        assert_eq!(g.from_f64(big as f64, Rounding::HalfUp), big);
    }

    #[test]
    fn serde_validates() {
        let ok = QFormat::try_from(RawQFormat {
            bits: 16,
            frac: 8,
            signed: true,
        });
        assert_eq!(ok, QFormat::new(16, 8, true));
        let bad = QFormat::try_from(RawQFormat {
            bits: 64,
            frac: 8,
            signed: true,
        });
        assert_eq!(bad, Err(FormatError::BitsOutOfRange { bits: 64 }));
    }
}
