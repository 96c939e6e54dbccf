//! Lookup tables (ROMs) of the golden model and their `$readmemh` rendering.
//!
//! Table contents are computed here once, from the configuration, and the
//! Verilog generator writes the very same `entries()` to `.hex` files with
//! [`to_memh`], so the RTL ROMs and the golden model cannot disagree.
//! Entries are computed in `f64` and rounded half-up onto the output format;
//! `sqrt` and division are correctly rounded IEEE operations (reproducible on
//! every platform), `exp` comes from the platform's libm (it may differ by an
//! ulp between platforms, which can move an entry by 1 LSB only on an exact
//! rounding tie; the emitted `.hex` is the reference either way).

use thiserror::Error;

use super::format::{pow2, QFormat};
use super::ops::{sat_shl, sat_to, shift_round_wide, Rounding};

/// Largest table address width (64 Ki entries per ROM).
pub const MAX_ADDR_BITS: u32 = 16;

/// Why a table could not be built.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum TableError {
    /// Address width outside the supported range.
    #[error(
        "{table} table with {addr_bits} address bits is not supported: use {min} to {max} \
         address bits (at most 64 Ki entries per ROM)"
    )]
    AddrBits {
        /// Which table.
        table: &'static str,
        /// The rejected address width.
        addr_bits: u32,
        /// Smallest allowed width.
        min: u32,
        /// Largest allowed width.
        max: u32,
    },
    /// The exp table's input must be signed (its arguments are `<= 0`).
    #[error("the exp table's input format must be signed: its arguments t - max(t) are <= 0")]
    ExpInputUnsigned,
    /// The exp table's output format cannot hold `e^0 = 1`.
    #[error(
        "the exp table's output format (bits = {bits}, frac = {frac}, signed = {signed}) cannot hold \
         e^0 = 1.0: it needs at least one integer bit (bits > frac, plus the sign bit if signed)"
    )]
    ExpOutputTooNarrow {
        /// Width of the rejected format.
        bits: u32,
        /// Fraction bits of the rejected format.
        frac: u32,
        /// Signedness of the rejected format.
        signed: bool,
    },
    /// The exp table's range is not a positive finite number.
    #[error("the exp table's range must be a positive, finite real number (got {range})")]
    ExpRange {
        /// The rejected range.
        range: f64,
    },
    /// The exp table's range would need a step beyond `2^62` LSBs.
    #[error(
        "the exp table's range {range} is too large for its input format: \
         range * 2^frac / 2^addr_bits must be below 2^62"
    )]
    ExpRangeTooLarge {
        /// The rejected range.
        range: f64,
    },
}

/// Render a table for Verilog `$readmemh`: one word per line, each entry in
/// two's complement masked to `bits` bits, `ceil(bits/4)` lower-case hex
/// digits, zero padded, newline after every word. `bits` is clamped to
/// `1..=64`.
pub fn to_memh(entries: &[i64], bits: u32) -> String {
    let bits = bits.clamp(1, 64);
    let digits = bits.div_ceil(4) as usize;
    let mask = if bits == 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    let mut s = String::with_capacity(entries.len() * (digits + 1));
    for &e in entries {
        let w = (e as u64) & mask;
        s.push_str(&format!("{w:0digits$x}\n"));
    }
    s
}

// ---------------------------------------------------------------------------
// Reciprocal square root
// ---------------------------------------------------------------------------

/// Reciprocal square root unit `y = 1/sqrt(x)` by table lookup.
///
/// Normalisation (all integer, on the raw input `x > 0` with
/// `fi = in_fmt.frac` fraction bits):
/// 1. `n = bitlen(x)` (a leading-zero counter);
/// 2. `e = n` if `n - fi` is even, else `n + 1`, so `e - fi` is even and
///    the mantissa `m = x / 2^e` lies in `[1/4, 1)`;
/// 3. address `idx = floor(m * 2^A)` = the top `A = addr_bits` bits of `x`
///    aligned at bit `e` (`x >> (e - A)`, or `x << (A - e)`), in
///    `[2^(A-2), 2^A)`;
/// 4. since `x * 2^-fi = m * 2^(e - fi)`,
///    `1/sqrt(x) = (1/sqrt(m)) * 2^-k` with `k = (e - fi) / 2`: the output
///    is `table[idx] >> k` (arithmetic shift, truncating) for `k >= 0`, or
///    `table[idx] << -k` for `k < 0`, then saturated to `out_fmt`.
///
/// The ROM has `2^A` words of `out_fmt`: word `i` is `1/sqrt(m_c)` at the
/// centre `m_c = (i + 1/2) / 2^A` of its interval, rounded half-up onto
/// `out_fmt` and clamped to it. Words `i < 2^(A-2)` are never addressed
/// (m >= 1/4) and repeat word `2^(A-2)`. Note that `1/sqrt(m)` is in
/// `(1, 2]`, so `out_fmt` needs 2 integer bits to hold the words unclamped.
///
/// Error: the interval-centre value is within a relative
/// `2^-A / (1 - 2^-A)` (about `2^-A`) of `1/sqrt(m)` for every `m` in the
/// interval; add half a word LSB scaled by `2^-k`, and (for `k > 0`) one
/// output LSB for the truncating shift.
///
/// Zero input: `x <= 0` (`1/sqrt(0) = inf`; negative cannot come out of a
/// sum of squares) returns `out_fmt.max()`, the saturated infinity. With
/// [`super::ops::normalise`] a zero vector therefore normalises to the zero
/// vector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RsqrtTable {
    in_fmt: QFormat,
    out_fmt: QFormat,
    addr_bits: u32,
    entries: Vec<i64>,
}

impl RsqrtTable {
    /// Build the ROM. `addr_bits` must be in `2..=16`.
    pub fn new(in_fmt: QFormat, out_fmt: QFormat, addr_bits: u32) -> Result<Self, TableError> {
        if !(2..=MAX_ADDR_BITS).contains(&addr_bits) {
            return Err(TableError::AddrBits {
                table: "rsqrt",
                addr_bits,
                min: 2,
                max: MAX_ADDR_BITS,
            });
        }
        let size = 1usize << addr_bits;
        let first = size / 4;
        let scale = pow2(-(addr_bits as i32));
        let entries = (0..size)
            .map(|i| {
                let m_c = (i.max(first) as f64 + 0.5) * scale;
                out_fmt.from_f64(1.0 / m_c.sqrt(), Rounding::HalfUp)
            })
            .collect();
        Ok(Self {
            in_fmt,
            out_fmt,
            addr_bits,
            entries,
        })
    }

    /// `1/sqrt(x * 2^-fi)` split as a table word and an exponent: the value is
    /// `word * 2^-(out_fmt.frac + k)`. The normalisation unit multiplies by `word` and
    /// folds `k` into its output shift, so no precision is lost to shifting the word
    /// first. `x <= 0` gives `(0, 0)`: a zero vector normalises to zero.
    pub fn rsqrt_parts(&self, x: i64) -> (i64, i64) {
        if x <= 0 {
            return (0, 0);
        }
        let fi = self.in_fmt.frac;
        let n = 64 - x.leading_zeros(); // 1..=63
        let e = n + ((n + fi) & 1); // e ≡ fi (mod 2), e <= 64
        let a = self.addr_bits;
        let idx = if e >= a { x >> (e - a) } else { x << (a - e) };
        let word = self.entries.get(idx as usize).copied().unwrap_or(0);
        (word, (i64::from(e) - i64::from(fi)) / 2) // exact: e - fi is even
    }

    /// `1/sqrt(x * 2^-fi)` as a raw value in `out_fmt` (see the type docs).
    pub fn rsqrt(&self, x: i64) -> i64 {
        if x <= 0 {
            return self.out_fmt.max();
        }
        let (word, k) = self.rsqrt_parts(x);
        let y = if k >= 0 {
            shift_round_wide(i128::from(word), k as u32, Rounding::Truncate, 0)
        } else {
            sat_shl(i128::from(word), k.unsigned_abs() as u32)
        };
        sat_to(y, self.out_fmt)
    }

    /// The ROM words, address 0 first (for [`to_memh`]).
    pub fn entries(&self) -> &[i64] {
        &self.entries
    }
    /// Input format (only its `frac` matters to the arithmetic).
    pub fn in_fmt(&self) -> QFormat {
        self.in_fmt
    }
    /// Output (and ROM word) format.
    pub fn out_fmt(&self) -> QFormat {
        self.out_fmt
    }
    /// Address width `A`.
    pub fn addr_bits(&self) -> u32 {
        self.addr_bits
    }
}

// ---------------------------------------------------------------------------
// Exponential
// ---------------------------------------------------------------------------

/// Exponential unit `exp(u)` for `u <= 0`, by table lookup.
///
/// The argument `u` is raw with `fi = in_fmt.frac` fraction bits (it is a
/// difference `t_k - max`, so it is `<= 0`; the RTL bus is one bit wider
/// than `in_fmt`). The table has `2^A` words of `out_fmt` and a step of
/// `2^s` raw LSBs, `s >= 0` the smallest shift for which the table covers
/// the requested range: `2^(A+s) * 2^-fi >= range`; the covered range
/// `2^(A+s-fi)` is reported by [`ExpTable::covered_range`].
///
/// Lookup: `idx = (-u) >> s` (a negation and a shift); `idx >= 2^A`
/// (below the range) gives 0; `u > 0` is treated as `u = 0`.
/// Word `i` is `exp(-(i*2^s + (2^s - 1)/2) * 2^-fi)`, the value at the
/// centre of the raw arguments it serves, rounded half-up onto `out_fmt`.
/// The words are non-increasing. Error for `u` in range: at most half an
/// output LSB plus `(2^s - 1)/2 * 2^-fi` (half a step; `exp` has slope
/// `<= 1` for `u <= 0`); below the range the error is the true value,
/// `<= exp(-covered_range)`.
#[derive(Clone, Debug, PartialEq)]
pub struct ExpTable {
    in_fmt: QFormat,
    out_fmt: QFormat,
    addr_bits: u32,
    step_shift: u32,
    entries: Vec<i64>,
}

impl ExpTable {
    /// Build the ROM covering at least `[-range, 0]` (real units).
    /// `in_fmt` must be signed, `out_fmt` must hold 1.0, `addr_bits` in
    /// `1..=16`, `range > 0` finite.
    pub fn new(
        in_fmt: QFormat,
        out_fmt: QFormat,
        addr_bits: u32,
        range: f64,
    ) -> Result<Self, TableError> {
        if !in_fmt.signed {
            return Err(TableError::ExpInputUnsigned);
        }
        if !(1..=MAX_ADDR_BITS).contains(&addr_bits) {
            return Err(TableError::AddrBits {
                table: "exp",
                addr_bits,
                min: 1,
                max: MAX_ADDR_BITS,
            });
        }
        if out_fmt.to_f64(out_fmt.max()) < 1.0 {
            return Err(TableError::ExpOutputTooNarrow {
                bits: out_fmt.bits,
                frac: out_fmt.frac,
                signed: out_fmt.signed,
            });
        }
        if !(range.is_finite() && range > 0.0) {
            return Err(TableError::ExpRange { range });
        }
        let raw_range = range / in_fmt.lsb();
        let mut s = 0u32;
        while pow2((addr_bits + s) as i32) < raw_range {
            s += 1;
            if s > 62 {
                return Err(TableError::ExpRangeTooLarge { range });
            }
        }
        let step = pow2(s as i32);
        let lsb = in_fmt.lsb();
        let entries = (0..(1usize << addr_bits))
            .map(|i| {
                let centre = i as f64 * step + (step - 1.0) / 2.0;
                out_fmt.from_f64((-centre * lsb).exp(), Rounding::HalfUp)
            })
            .collect();
        Ok(Self {
            in_fmt,
            out_fmt,
            addr_bits,
            step_shift: s,
            entries,
        })
    }

    /// `exp(u * 2^-fi)` as a raw value in `out_fmt` (see the type docs).
    pub fn lookup(&self, u: i64) -> i64 {
        let mag = (-i128::from(u.min(0))) >> self.step_shift;
        usize::try_from(mag)
            .ok()
            .and_then(|i| self.entries.get(i))
            .copied()
            .unwrap_or(0)
    }

    /// The ROM words, address 0 (argument 0) first (for [`to_memh`]).
    pub fn entries(&self) -> &[i64] {
        &self.entries
    }
    /// Format of the logits (argument fraction bits).
    pub fn in_fmt(&self) -> QFormat {
        self.in_fmt
    }
    /// Output (and ROM word) format.
    pub fn out_fmt(&self) -> QFormat {
        self.out_fmt
    }
    /// Address width `A`.
    pub fn addr_bits(&self) -> u32 {
        self.addr_bits
    }
    /// Step `s`: one ROM word serves `2^s` raw argument values.
    pub fn step_shift(&self) -> u32 {
        self.step_shift
    }
    /// Real range actually covered, `2^(A+s) * 2^-fi` (>= the requested one).
    pub fn covered_range(&self) -> f64 {
        pow2((self.addr_bits + self.step_shift) as i32) * self.in_fmt.lsb()
    }
    /// Absolute error bound of [`ExpTable::lookup`] for arguments inside the
    /// covered range: `out_lsb / 2 + (2^s - 1) / 2 * in_lsb`.
    pub fn error_bound(&self) -> f64 {
        self.out_fmt.lsb() / 2.0 + (pow2(self.step_shift as i32) - 1.0) / 2.0 * self.in_fmt.lsb()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn q(bits: u32, frac: u32, signed: bool) -> QFormat {
        QFormat::new(bits, frac, signed).unwrap()
    }

    // ----- $readmemh -----

    #[test]
    fn memh_rendering() {
        assert_eq!(to_memh(&[0, 1, -1, 255, -128], 8), "00\n01\nff\nff\n80\n");
        assert_eq!(to_memh(&[-1, 5], 18), "3ffff\n00005\n");
        assert_eq!(to_memh(&[-1], 1), "1\n");
        assert_eq!(to_memh(&[-1], 0), "1\n"); // clamped to 1 bit
        assert_eq!(
            to_memh(&[i64::MIN, -1], 64),
            "8000000000000000\nffffffffffffffff\n"
        );
        assert_eq!(to_memh(&[0x1234], 13), "1234\n");
        assert_eq!(to_memh(&[], 8), "");
    }

    // ----- rsqrt -----

    #[test]
    fn rsqrt_errors() {
        let f = q(32, 16, false);
        for a in [0, 1, 17] {
            let e = RsqrtTable::new(f, f, a).unwrap_err();
            assert_eq!(
                e,
                TableError::AddrBits {
                    table: "rsqrt",
                    addr_bits: a,
                    min: 2,
                    max: 16
                }
            );
            assert_eq!(
                e.to_string(),
                format!(
                    "rsqrt table with {a} address bits is not supported: use 2 to 16 address bits \
                     (at most 64 Ki entries per ROM)"
                )
            );
        }
    }

    #[test]
    fn rsqrt_table_shape_and_memh() {
        let t = RsqrtTable::new(q(48, 24, false), q(20, 16, false), 6).unwrap();
        let e = t.entries();
        assert_eq!(e.len(), 64);
        assert!(e[..16].iter().all(|&v| v == e[16]));
        assert!(e[16..].windows(2).all(|w| w[0] >= w[1]));
        // Word 16: m_c = 16.5/64 -> 1/sqrt(m_c) = 1.969..., Q.16 half-up.
        assert_eq!(
            e[16],
            (65536.0 / (16.5f64 / 64.0).sqrt() + 0.5).floor() as i64
        );
        let hex = to_memh(e, 20);
        assert_eq!(hex.lines().count(), 64);
        assert!(hex.lines().all(|l| l.len() == 5));
    }

    #[test]
    fn rsqrt_zero_and_exact_powers() {
        let out = q(32, 16, false);
        let t = RsqrtTable::new(q(48, 0, false), out, 8).unwrap();
        assert_eq!(t.rsqrt(0), out.max());
        assert_eq!(t.rsqrt(-3), out.max());
        // x = 4 (fi = 0): n = 3, e = 4, m = 1/4, k = 2 -> word[64] >> 2 ~ 0.5.
        let want = t.entries()[64] >> 2;
        assert_eq!(t.rsqrt(4), want);
        assert!((out.to_f64(t.rsqrt(4)) - 0.5).abs() < 2.0 / 256.0);
        // Odd fraction bits: x = 1 with fi = 1 is 0.5 -> 1/sqrt(0.5).
        let t1 = RsqrtTable::new(q(48, 1, false), out, 12).unwrap();
        assert!((out.to_f64(t1.rsqrt(1)) - 2f64.sqrt()).abs() < 1e-3);
        // Largest positive input does not overflow.
        let _ = t.rsqrt(i64::MAX);
    }

    /// Relative table error bound from the address width (see the docs).
    fn rel_bound(a: u32) -> f64 {
        let h = (-(a as f64)).exp2();
        h / (1.0 - h)
    }

    proptest! {
        #[test]
        fn rsqrt_error_within_bound(
            x in 1i64..(1i64 << 44), fi in 0u32..=20, a in 2u32..=12, fo in 8u32..=24
        ) {
            let inf = q(48, fi, false);
            let out = q(40, fo, false);
            let t = RsqrtTable::new(inf, out, a).unwrap();
            let y = out.to_f64(t.rsqrt(x));
            let truth = 1.0 / (x as f64 * inf.lsb()).sqrt();
            // Recompute the exponent shift k independently.
            let n = 64 - x.leading_zeros() as i64;
            let e = if (n - fi as i64) % 2 == 0 { n } else { n + 1 };
            let k = (e - fi as i64) / 2;
            let lsb = out.lsb();
            let bound = truth * rel_bound(a)
                + 0.5 * lsb * (-(k as f64)).exp2()
                + if k > 0 { lsb } else { 0.0 }
                + truth * 1e-12;
            prop_assert!((y - truth).abs() <= bound, "x={} y={} truth={} bound={}", x, y, truth, bound);
        }

        #[test]
        fn rsqrt_monotone_non_increasing(x in 1i64..(1i64 << 40), fi in 0u32..=20, a in 2u32..=10) {
            let t = RsqrtTable::new(q(48, fi, false), q(40, 20, false), a).unwrap();
            prop_assert!(t.rsqrt(x) >= t.rsqrt(x + 1));
        }
    }

    // ----- exp -----

    #[test]
    fn exp_errors() {
        let s = q(16, 8, true);
        let o = q(18, 16, false);
        let e = ExpTable::new(q(16, 8, false), o, 8, 8.0).unwrap_err();
        assert_eq!(e, TableError::ExpInputUnsigned);
        assert_eq!(
            e.to_string(),
            "the exp table's input format must be signed: its arguments t - max(t) are <= 0"
        );
        for a in [0, 17] {
            let e = ExpTable::new(s, o, a, 8.0).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!(
                    "exp table with {a} address bits is not supported: use 1 to 16 address bits \
                     (at most 64 Ki entries per ROM)"
                )
            );
        }
        for r in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let e = ExpTable::new(s, o, 8, r).unwrap_err();
            assert!(matches!(e, TableError::ExpRange { .. }));
            assert!(e
                .to_string()
                .starts_with("the exp table's range must be a positive, finite real number (got "));
        }
        let e = ExpTable::new(s, q(16, 16, false), 8, 8.0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the exp table's output format (bits = 16, frac = 16, signed = false) cannot hold \
             e^0 = 1.0: it needs at least one integer bit (bits > frac, plus the sign bit if signed)"
        );
        let e = ExpTable::new(s, o, 1, 1e30).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the exp table's range 1000000000000000000000000000000 is too large for its input format: \
             range * 2^frac / 2^addr_bits must be below 2^62"
        );
    }

    #[test]
    fn exp_table_shape() {
        let t = ExpTable::new(q(16, 8, true), q(18, 16, false), 10, 16.0).unwrap();
        // 16 * 2^8 = 2^12 raw values over 2^10 words: step 2^2.
        assert_eq!(t.step_shift(), 2);
        assert_eq!(t.covered_range(), 16.0);
        let e = t.entries();
        assert_eq!(e.len(), 1024);
        assert!(e.windows(2).all(|w| w[0] >= w[1]));
        assert_eq!(
            e[0],
            (65536.0 * (-1.5f64 / 256.0).exp() + 0.5).floor() as i64
        );
        assert_eq!(t.lookup(0), e[0]);
        assert_eq!(t.lookup(5), e[0]); // u > 0 treated as 0
        assert_eq!(t.lookup(-3), e[0]);
        assert_eq!(t.lookup(-4), e[1]);
        assert_eq!(t.lookup(-4095), e[1023]);
        assert_eq!(t.lookup(-4096), 0);
        assert_eq!(t.lookup(i64::MIN), 0);
        // Range not a power of two: rounded up to the next covered power.
        let t = ExpTable::new(q(16, 8, true), q(18, 16, false), 10, 10.0).unwrap();
        assert_eq!(t.covered_range(), 16.0);
        // Fine tables (step 1 LSB) are exact to half an output LSB.
        let t = ExpTable::new(q(16, 8, true), q(18, 16, false), 12, 1.0).unwrap();
        assert_eq!(t.step_shift(), 0);
        assert_eq!(t.entries()[0], 1 << 16);
    }

    proptest! {
        #[test]
        fn exp_lookup_within_bound(
            fi in 0u32..=16, a in 1u32..=12, fo in 4u32..=30, range in 0.01f64..64.0, u_frac in 0.0f64..1.5
        ) {
            let inf = q(40, fi, true);
            let out = q(32, fo, false);
            let t = ExpTable::new(inf, out, a, range).unwrap();
            prop_assert!(t.covered_range() >= range);
            // Error bound is at most 1 output LSB + one table step.
            let step = (t.step_shift() as f64).exp2() * inf.lsb();
            prop_assert!(t.error_bound() <= out.lsb() + step);
            let covered_raw = (t.covered_range() / inf.lsb()) as i64;
            let u = -((covered_raw as f64 * u_frac) as i64);
            let y = out.to_f64(t.lookup(u));
            let truth = (u as f64 * inf.lsb()).exp();
            if -u >= covered_raw {
                prop_assert_eq!(y, 0.0);
                prop_assert!(truth <= (-t.covered_range()).exp() + 1e-15);
            } else {
                prop_assert!((y - truth).abs() <= t.error_bound() + 1e-12, "u={} y={} truth={}", u, y, truth);
            }
        }
    }
}
