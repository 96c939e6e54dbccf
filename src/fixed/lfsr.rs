//! Linear feedback shift register: the random source of stochastic rounding.
//!
//! Galois form, shifting right (the hardware-cheap form: the XORs sit
//! between flip-flops in parallel, one gate level, no XOR tree):
//!
//! ```text
//! out   = state & 1
//! state = (state >> 1) ^ (if out == 1 { taps } else { 0 })
//! ```
//!
//! `taps` is the feedback polynomial as a mask: for the polynomial
//! `x^n + ... + 1` with tap list `n, a, b, c` (the numbering of Xilinx
//! XAPP052, "Efficient Shift Registers, LFSR Counters, and Long
//! Pseudo-Random Sequence Generators", Table 3), bit `t-1` is set for every
//! tap `t`; bit `n-1` (the tap `n`) must be set. A maximal-length polynomial
//! visits all `2^n - 1` non-zero states. The all-zero state is a fixed point
//! (the register would lock), so a zero seed is rejected.

use thiserror::Error;

/// Why an LFSR could not be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LfsrError {
    /// Width outside `8..=64`.
    #[error("LFSR width {width} is not supported: use 8 to 64 bits")]
    Width {
        /// The rejected width.
        width: u32,
    },
    /// Taps mask without bit `width-1` or with bits at or above `width`.
    #[error(
        "LFSR taps {taps:#x} are invalid for width {width}: the mask must have bit {top} set \
         (the x^{width} term) and no bit at or above bit {width}"
    , top = width - 1)]
    Taps {
        /// Width of the register.
        width: u32,
        /// The rejected mask.
        taps: u64,
    },
    /// Seed zero (lock-up state) or wider than the register.
    #[error(
        "LFSR seed {seed:#x} is invalid for width {width}: it must be non-zero (the all-zero \
         state locks the register) and fit in {width} bits"
    )]
    Seed {
        /// Width of the register.
        width: u32,
        /// The rejected seed.
        seed: u64,
    },
    /// No built-in polynomial for this width.
    #[error(
        "no default LFSR polynomial for width {width}: built-in widths are 8, 16, 24, 32, 48 \
         and 64; give the taps mask explicitly"
    )]
    NoDefaultTaps {
        /// The width asked for.
        width: u32,
    },
}

/// Taps mask from an XAPP052 tap list (`t` -> bit `t-1`).
const fn mask(taps: &[u32]) -> u64 {
    let mut m = 0u64;
    let mut i = 0;
    while i < taps.len() {
        m |= 1u64 << (taps[i] - 1);
        i += 1;
    }
    m
}

/// Maximal-length polynomials from XAPP052 Table 3, as taps masks.
const DEFAULT_TAPS: [(u32, u64); 6] = [
    (8, mask(&[8, 6, 5, 4])),     // x^8 + x^6 + x^5 + x^4 + 1
    (16, mask(&[16, 15, 13, 4])), // x^16 + x^15 + x^13 + x^4 + 1
    (24, mask(&[24, 23, 22, 17])),
    (32, mask(&[32, 22, 2, 1])), // x^32 + x^22 + x^2 + x + 1
    (48, mask(&[48, 47, 21, 20])),
    (64, mask(&[64, 63, 61, 60])),
];

/// The built-in maximal-length taps mask for `width` (8, 16, 24, 32, 48,
/// 64), e.g. `0xD008` for 16 bits and `0x8020_0003` for 32 bits.
pub fn default_taps(width: u32) -> Option<u64> {
    DEFAULT_TAPS
        .iter()
        .find(|(w, _)| *w == width)
        .map(|&(_, t)| t)
}

/// A Galois LFSR (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lfsr {
    width: u32,
    taps: u64,
    state: u64,
}

fn width_mask(width: u32) -> u64 {
    if width >= 64 {
        u64::MAX
    } else {
        (1u64 << width) - 1
    }
}

impl Lfsr {
    /// Build from width (`8..=64`), taps mask and a non-zero seed that fits.
    pub fn new(width: u32, taps: u64, seed: u64) -> Result<Self, LfsrError> {
        if !(8..=64).contains(&width) {
            return Err(LfsrError::Width { width });
        }
        let m = width_mask(width);
        if taps & !m != 0 || taps >> (width - 1) & 1 == 0 {
            return Err(LfsrError::Taps { width, taps });
        }
        if seed == 0 || seed & !m != 0 {
            return Err(LfsrError::Seed { width, seed });
        }
        Ok(Self {
            width,
            taps,
            state: seed,
        })
    }

    /// Build with the built-in maximal polynomial for `width` (see
    /// [`default_taps`]).
    pub fn with_default_taps(width: u32, seed: u64) -> Result<Self, LfsrError> {
        let taps = default_taps(width).ok_or(LfsrError::NoDefaultTaps { width })?;
        Self::new(width, taps, seed)
    }

    /// One clock: `state = (state >> 1) ^ (taps if the bit shifted out is 1)`.
    #[inline]
    pub fn step(&mut self) {
        // Branch-free form of `if out == 1 { state ^= taps }` (the bit is random).
        let out = self.state & 1;
        self.state = (self.state >> 1) ^ (self.taps & out.wrapping_neg());
    }

    /// One clock, then the low `n` bits of the new state (`n` clamped to the
    /// width; `n = 0` gives 0). One step per call, whatever `n`: the RTL
    /// taps `n` wires of the register every cycle, it does not run `n`
    /// clocks. Consecutive words are therefore shifted copies of each other
    /// (correlated); lanes that need independent bits use separate LFSRs or
    /// seeds.
    #[inline]
    pub fn next_bits(&mut self, n: u32) -> u64 {
        self.step();
        self.state & width_mask(n.min(self.width))
    }

    /// Current state (never 0).
    pub fn state(&self) -> u64 {
        self.state
    }
    /// Register width.
    #[inline]
    pub fn width(&self) -> u32 {
        self.width
    }
    /// Taps mask.
    pub fn taps(&self) -> u64 {
        self.taps
    }
}

/// The seeds of `n` update lanes: lane 0 keeps `seed`; lane i > 0 gets a SplitMix64 mix of
/// (seed, i, attempt) masked to `width`, the first attempt that is non-zero and not taken
/// by an earlier lane, so no two lanes round in lockstep. Lanes draw from the same maximal
/// sequence at unrelated phases. (A constant mix, not a jump-ahead: the generator bakes each
/// lane's seed into the RTL.)
pub fn lane_seeds(seed: u64, n: usize, width: u32) -> Vec<u64> {
    let mix = |lane: u64, attempt: u64| {
        let mut z = seed
            ^ lane.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ attempt.wrapping_mul(0xD1B5_4A32_D192_ED03);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) & width_mask(width)
    };
    let mut out = vec![seed];
    for lane in 1..n as u64 {
        // A width-w LFSR has 2^w − 1 states; the validated widths (>= 8) leave room for the
        // lanes an array has (R <= 64).
        let s = (0..)
            .map(|attempt| mix(lane, attempt))
            .find(|v| *v != 0 && !out.contains(v))
            .expect("an unused non-zero seed exists");
        out.push(s);
    }
    out.truncate(n.max(1));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_seeds_fit_are_nonzero_and_distinct() {
        for width in [8u32, 16, 24, 32, 64] {
            for n in [1usize, 2, 12, 64] {
                let seeds = lane_seeds(1, n, width);
                assert_eq!(seeds.len(), n);
                assert_eq!(seeds[0], 1);
                for &s in &seeds {
                    assert!(s != 0 && s & !width_mask(width) == 0, "{width}: {s:#x}");
                    Lfsr::with_default_taps(width, s).unwrap();
                }
                let mut u = seeds.clone();
                u.sort_unstable();
                u.dedup();
                assert_eq!(u.len(), n, "width {width}, {n} lanes: {seeds:x?}");
            }
        }
        // Lanes are a prefix: a wider array keeps the narrower one's seeds.
        assert_eq!(lane_seeds(7, 12, 16)[..4], lane_seeds(7, 4, 16)[..]);
    }

    #[test]
    fn width16_period_is_65535() {
        let mut l = Lfsr::with_default_taps(16, 1).unwrap();
        assert_eq!(l.taps(), 0xD008);
        let mut seen = vec![false; 1 << 16];
        let mut period = 0u32;
        loop {
            l.step();
            period += 1;
            let s = l.state() as usize;
            assert!(s != 0 && s < (1 << 16));
            assert!(
                !seen[s] || s == 1,
                "state {s:#x} repeated before the period"
            );
            seen[s] = true;
            if s == 1 {
                break;
            }
        }
        assert_eq!(period, 65_535);
    }

    /// The Galois step as a GF(2) matrix, columns = images of basis vectors.
    fn matrix(width: u32, taps: u64) -> Vec<u64> {
        (0..width)
            .map(|j| {
                let mut l = Lfsr {
                    width,
                    taps,
                    state: 1u64 << j,
                };
                l.step();
                l.state
            })
            .collect()
    }
    fn apply(m: &[u64], v: u64) -> u64 {
        m.iter()
            .enumerate()
            .filter(|(j, _)| v >> j & 1 == 1)
            .fold(0, |acc, (_, c)| acc ^ c)
    }
    fn mul(a: &[u64], b: &[u64]) -> Vec<u64> {
        b.iter().map(|&c| apply(a, c)).collect()
    }
    fn pow(m: &[u64], mut e: u64) -> Vec<u64> {
        let mut base = m.to_vec();
        let mut acc: Vec<u64> = (0..m.len()).map(|j| 1u64 << j).collect();
        while e > 0 {
            if e & 1 == 1 {
                acc = mul(&acc, &base);
            }
            base = mul(&base, &base);
            e >>= 1;
        }
        acc
    }
    fn prime_factors(mut n: u64) -> Vec<u64> {
        let mut f = Vec::new();
        let mut d = 2u64;
        while d * d <= n {
            if n.is_multiple_of(d) {
                f.push(d);
                while n.is_multiple_of(d) {
                    n /= d;
                }
            }
            d += 1;
        }
        if n > 1 {
            f.push(n);
        }
        f
    }

    #[test]
    fn default_polynomials_are_maximal() {
        // The step map has order exactly 2^n - 1, so every non-zero state
        // lies on one cycle of that length.
        for &(w, taps) in DEFAULT_TAPS.iter() {
            let m = matrix(w, taps);
            let id: Vec<u64> = (0..w).map(|j| 1u64 << j).collect();
            let n = if w == 64 { u64::MAX } else { (1u64 << w) - 1 };
            assert_eq!(pow(&m, n), id, "width {w}: T^(2^n-1) != I");
            for p in prime_factors(n) {
                assert_ne!(pow(&m, n / p), id, "width {w}: order divides (2^n-1)/{p}");
            }
        }
        assert_eq!(default_taps(32), Some(0x8020_0003));
        assert_eq!(default_taps(12), None);
    }

    #[test]
    fn next_bits_is_one_step_low_bits() {
        let mut l = Lfsr::with_default_taps(16, 1).unwrap();
        assert_eq!(l.next_bits(16), 0xD008); // 1 -> shifted out, taps XORed in
        assert_eq!(l.state(), 0xD008);
        assert_eq!(l.next_bits(4), 0x6804 & 0xF);
        assert_eq!(l.state(), 0x6804);
        assert_eq!(l.next_bits(0), 0);
        assert_eq!(l.state(), 0x3402);
        assert_eq!(l.next_bits(64), 0x1A01); // clamped to the width
        let mut a = Lfsr::with_default_taps(64, u64::MAX).unwrap();
        let mut b = a.clone();
        b.step();
        assert_eq!(a.next_bits(64), b.state());
        assert_eq!(a.width(), 64);
    }

    #[test]
    fn errors() {
        let e = Lfsr::new(16, 0xD008, 0).unwrap_err();
        assert_eq!(e, LfsrError::Seed { width: 16, seed: 0 });
        assert_eq!(
            e.to_string(),
            "LFSR seed 0x0 is invalid for width 16: it must be non-zero (the all-zero state locks \
             the register) and fit in 16 bits"
        );
        assert!(matches!(
            Lfsr::new(16, 0xD008, 0x1_0000),
            Err(LfsrError::Seed { .. })
        ));
        let e = Lfsr::new(7, 0x60, 1).unwrap_err();
        assert_eq!(
            e.to_string(),
            "LFSR width 7 is not supported: use 8 to 64 bits"
        );
        assert!(matches!(
            Lfsr::new(65, 1, 1),
            Err(LfsrError::Width { width: 65 })
        ));
        let e = Lfsr::new(16, 0x5008, 1).unwrap_err();
        assert_eq!(
            e.to_string(),
            "LFSR taps 0x5008 are invalid for width 16: the mask must have bit 15 set (the x^16 \
             term) and no bit at or above bit 16"
        );
        assert!(matches!(
            Lfsr::new(16, 0x1_8000, 1),
            Err(LfsrError::Taps { .. })
        ));
        let e = Lfsr::with_default_taps(12, 1).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no default LFSR polynomial for width 12: built-in widths are 8, 16, 24, 32, 48 and 64; \
             give the taps mask explicitly"
        );
    }
}
