//! Fast forms of the elementwise requantisers, for the loops of the DF step.
//!
//! [`requant_mul`] is `requant_wide(a · b, from, fmt, mode, 0)` (the i128 reference of
//! [`super::ops`]) computed on `i64` whenever the product and the rounding fit, which they do
//! for every format the config validation allows in practice (products of ≤ 32-bit words);
//! anything else takes the reference. A proptest pins both to the reference over the whole
//! `i64` range.

use super::ops::requant_wide;
use super::{QFormat, Rounding};

/// `requant_wide(i128::from(x), from, fmt, mode, 0)` (round with a zero random word, then
/// saturate), on `i64` where exact.
#[inline(always)]
pub fn requant_i64(x: i64, from: u32, fmt: QFormat, mode: Rounding) -> i64 {
    if from > fmt.frac {
        let s = from - fmt.frac;
        if s <= 62 {
            let mask = (1u64 << s) - 1;
            let r = match mode {
                Rounding::HalfUp => 1u64 << (s - 1),
                // Truncate, and stochastic with a zero random word, add nothing.
                _ => 0,
            };
            // floor((x + r) / 2^s) = (x >> s) + carry of (low bits + r), as in
            // `shift_round_wide`; low + r < 2^63, and |x >> s| < 2^62 leaves room for it.
            let carry = (((x as u64) & mask) + r) >> s;
            return ((x >> s) + carry as i64).clamp(fmt.min(), fmt.max());
        }
    } else if from == fmt.frac {
        return x.clamp(fmt.min(), fmt.max());
    }
    requant_wide(i128::from(x), from, fmt, mode, 0)
}

/// [`requant_i64`] with its constants hoisted out of an elementwise loop: built once per loop,
/// [`Requant::apply`] is then branch-free (a shift, a carry and a clamp) whenever
/// `requant_i64` would take its fast path, and the reference otherwise.
#[derive(Clone, Copy, Debug)]
pub struct Requant {
    from: u32,
    fmt: QFormat,
    mode: Rounding,
    /// The right shift is 0..=62 bits (then `apply` is exact on `i64`).
    fast: bool,
    shift: u32,
    mask: u64,
    r: u64,
    lo: i64,
    hi: i64,
}

impl Requant {
    pub fn new(from: u32, fmt: QFormat, mode: Rounding) -> Requant {
        let shift = from.wrapping_sub(fmt.frac);
        let fast = from >= fmt.frac && shift <= 62;
        let s = if fast { shift } else { 0 };
        let r = match mode {
            Rounding::HalfUp if s > 0 => 1u64 << (s - 1),
            _ => 0,
        };
        Requant {
            from,
            fmt,
            mode,
            fast,
            shift: s,
            mask: (1u64 << s) - 1,
            r,
            lo: fmt.min(),
            hi: fmt.max(),
        }
    }

    /// `requant_i64(x, from, fmt, mode)`.
    #[inline(always)]
    pub fn apply(&self, x: i64) -> i64 {
        if self.fast {
            let carry = (((x as u64) & self.mask) + self.r) >> self.shift;
            ((x >> self.shift) + carry as i64).clamp(self.lo, self.hi)
        } else {
            requant_wide(i128::from(x), self.from, self.fmt, self.mode, 0)
        }
    }

    /// `requant_mul(a, b, from, fmt, mode)` for `|a| <= 2^31` and `|b| < 2^32` (the product
    /// then fits `i64`), which callers check once per loop.
    #[inline(always)]
    pub fn apply_mul_small(&self, a: i64, b: i64) -> i64 {
        debug_assert!(a.unsigned_abs() <= 1 << 31 && b.unsigned_abs() < 1 << 32);
        self.apply(a * b)
    }
}

/// The AVX-512 subsets (F, DQ, VL) with which the compiler vectorises 64-bit multiplies,
/// shifts and clamps: the requantisers and the update kernel are compiled for them where
/// this is true.
pub fn has_avx512_i64() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512dq")
            && std::is_x86_feature_detected!("avx512vl")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `requant_wide(a · b, from, fmt, mode, 0)` with the product on `i64` where it fits.
#[inline(always)]
pub fn requant_mul(a: i64, b: i64, from: u32, fmt: QFormat, mode: Rounding) -> i64 {
    match a.checked_mul(b) {
        Some(p) => requant_i64(p, from, fmt, mode),
        None => requant_wide(i128::from(a) * i128::from(b), from, fmt, mode, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn int() -> impl Strategy<Value = i64> {
        prop_oneof![
            Just(0i64),
            Just(1),
            Just(-1),
            Just(i64::MIN),
            Just(i64::MAX),
            any::<i64>(),
            -(1i64 << 20)..(1 << 20),
            -(1i64 << 40)..(1 << 40)
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn requant_mul_is_the_reference(
            a in int(), b in int(), from in 0u32..130, bits in 1u32..64, frac in 0u32..64,
            signed: bool, mode in 0usize..3,
        ) {
            let mode = [Rounding::Truncate, Rounding::HalfUp, Rounding::Stochastic][mode];
            let fmt = QFormat { bits: bits.max(if signed { 2 } else { 1 }), frac, signed };
            let want = requant_wide(i128::from(a) * i128::from(b), from, fmt, mode, 0);
            prop_assert_eq!(requant_mul(a, b, from, fmt, mode), want);
            let want = requant_wide(i128::from(a), from, fmt, mode, 0);
            prop_assert_eq!(requant_i64(a, from, fmt, mode), want);
            prop_assert_eq!(Requant::new(from, fmt, mode).apply(a), want);
            let (sa, sb) = (a % (1 << 31), b % (1 << 32));
            let want = requant_wide(i128::from(sa) * i128::from(sb), from, fmt, mode, 0);
            prop_assert_eq!(Requant::new(from, fmt, mode).apply_mul_small(sa, sb), want);
        }
    }
}
