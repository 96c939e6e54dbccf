//! Does the generated engine fit the config's board? (DESIGN.md §3: the generator must say so
//! before anyone waits for a place and route.)
//!
//! An estimate of the four resources that decide it on ECP5, against the board's capacity:
//! - **Block RAMs** (DP16KD, 18 Kbit) are counted from the memory map's tensors, bank by bank,
//!   each in the cheapest DP16KD aspect ratio (16K×1 … 512×36), plus the ROMs (rsqrt, exp)
//!   and the protocol decoder's byte buffer. Yosys puts memories of a few hundred bits per
//!   bank (Δb, the hypotheses, small pixel banks) into LUT RAM instead, by a cost rule not
//!   modelled here, so the estimate errs high: 5-26 % over yosys on the calibration configs
//!   (195 against 186 for the default config).
//! - **Multipliers** (MULT18X18D) are counted in the generated RTL itself ([`super::census`]):
//!   exact against yosys on every calibration config (docs/fit-calibration.json).
//! - **Logic** (LUT4 as yosys maps it; TRELLIS_COMB, the logic cells nextpnr places, which
//!   also hold the carry chains and LUT RAM) and **flip-flops** are a linear model of the
//!   census's flip-flop bits and multipliers, fitted by least squares to yosys `synth_ecp5` +
//!   `nextpnr-ecp5 --pack-only` of the calibration configs (scripts/fit-calibrate; the test
//!   `fit_estimate_matches_the_calibration` holds every point within 15 %). On the five
//!   configs of docs/fit-calibration.json: within 6.0 % (LUT4), 4.2 % (COMB), 1.1 % (FF) of
//!   the tools (refitted when every tensor read took a second fabric register and each op
//!   engine its own copies of the run-wide registers);
//!   the leave-one-out errors were last measured on the previous fit (18.3 %, 11.7 %,
//!   14.6 %): fewer calibration points than one would like, three coefficients from five
//!   configs.
//!
//! The check is advisory where no board is involved (simulation, `dfforge gen` warns) and
//! binding where one is (`dfforge board --core engine` refuses a design that does not fit).

use super::census::Census;
use serde::Serialize;

/// One block-RAM tensor of the engine: `banks` memories of `depth` words of `width` bits.
#[derive(Clone, Debug, Serialize)]
pub struct MemInfo {
    pub name: String,
    pub banks: usize,
    pub width: u32,
    pub depth: usize,
}

/// Capacity of a target board's FPGA.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Capacity {
    pub dp16kd: usize,
    pub mult18: usize,
    /// Logic cells (LUT4 sites, TRELLIS_COMB).
    pub luts: usize,
    pub ffs: usize,
}

/// The FPGA of `hardware.board` (Lattice ECP5 data sheet, FPGA-DS-02012); `None` for
/// `generic`, which is not checked.
pub fn capacity(board: &str) -> Option<Capacity> {
    match board {
        "ulx3s-85f" => Some(Capacity {
            dp16kd: 208,
            mult18: 156,
            luts: 83_640,
            ffs: 83_640,
        }),
        "ulx3s-45f" => Some(Capacity {
            dp16kd: 108,
            mult18: 72,
            luts: 43_848,
            ffs: 43_848,
        }),
        "ulx3s-25f" => Some(Capacity {
            dp16kd: 56,
            mult18: 28,
            luts: 24_288,
            ffs: 24_288,
        }),
        _ => None,
    }
}

/// DP16KD blocks for one `width` × `depth` memory with one write and one read port: the
/// cheapest of the block's aspect ratios (the 36-bit one is the pseudo-dual-port mode).
pub fn dp16kd_blocks(width: u32, depth: usize) -> usize {
    const SHAPES: [(u32, usize); 6] = [
        (1, 16384),
        (2, 8192),
        (4, 4096),
        (9, 2048),
        (18, 1024),
        (36, 512),
    ];
    SHAPES
        .iter()
        .map(|&(w, d)| width.div_ceil(w) as usize * depth.div_ceil(d))
        .min()
        .unwrap_or(0)
}

/// MULT18X18D blocks of one `a` × `b` bit multiply (signed operands; wider ones are split).
pub fn mult18_blocks(a: u32, b: u32) -> usize {
    (a.div_ceil(18) * b.div_ceil(18)) as usize
}

/// Logic of a design: yosys's LUT4 count, the logic cells nextpnr packs (TRELLIS_COMB:
/// LUT4s, both halves of each CCU2C carry cell, LUT RAM) and flip-flops.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Logic {
    pub lut4: usize,
    pub comb: usize,
    pub ff: usize,
}

/// `resource ≈ k_ff · census flip-flop bits + k_mult · census multipliers + c`, one row per
/// resource, fitted by scripts/fit-calibrate (least squares over the configs of
/// docs/fit-calibration.json; yosys and nextpnr versions there).
#[derive(Clone, Copy, Debug)]
pub struct LogicModel {
    pub lut4: [f64; 3],
    pub comb: [f64; 3],
    pub ff: [f64; 3],
}

/// The fitted model (scripts/fit-calibrate prints these numbers).
pub const LOGIC_MODEL: LogicModel = LogicModel {
    lut4: [0.5473, 65.37, -3812.5],
    comb: [0.5856, 129.63, -1681.2],
    ff: [0.8994, -31.31, -841.4],
};

/// Above this fraction of the logic cells nextpnr's routing slows down and the clock
/// suffers; `dfforge gen` warns.
pub const LOGIC_COMFORT: f64 = 0.85;

impl LogicModel {
    pub fn estimate(&self, census: &Census) -> Logic {
        let x = [census.ff as f64, census.mult18 as f64, 1.0];
        let dot = |k: &[f64; 3]| -> usize {
            let v: f64 = k.iter().zip(x).map(|(k, x)| k * x).sum();
            v.max(0.0).round() as usize
        };
        Logic {
            lut4: dot(&self.lut4),
            comb: dot(&self.comb),
            ff: dot(&self.ff),
        }
    }
}

/// The estimate, with what it is made of.
#[derive(Clone, Debug, Serialize)]
pub struct Fit {
    pub board: String,
    pub capacity: Option<Capacity>,
    pub dp16kd: usize,
    pub mult18: usize,
    pub logic: Logic,
    /// (memory, blocks) of the engine's memories, the ROMs and the protocol buffer, largest
    /// first.
    pub memories: Vec<(String, usize)>,
    /// (module, MULT18X18D over all its instances), largest first.
    pub multipliers: Vec<(String, usize)>,
    /// What the logic estimate is computed from.
    pub census_ff: usize,
}

impl Fit {
    pub fn fits(&self) -> bool {
        self.capacity.is_none_or(|c| {
            self.dp16kd <= c.dp16kd
                && self.mult18 <= c.mult18
                && self.logic.comb <= c.luts
                && self.logic.ff <= c.ffs
        })
    }

    /// Fraction of the board's logic cells.
    pub fn logic_fraction(&self) -> Option<f64> {
        self.capacity
            .map(|c| self.logic.comb as f64 / c.luts as f64)
    }

    /// One paragraph for the user: the totals against the board, and when it does not fit,
    /// where the block RAMs go and what shrinks them.
    pub fn summary(&self) -> String {
        let Some(c) = self.capacity else {
            return format!(
                "estimated {} DP16KD block RAMs, {} MULT18X18D multipliers, {} logic cells \
                 ({} LUT4) and {} flip-flops (board `{}`: not checked)",
                self.dp16kd,
                self.mult18,
                self.logic.comb,
                self.logic.lut4,
                self.logic.ff,
                self.board
            );
        };
        let pct = |a: usize, b: usize| 100.0 * a as f64 / b as f64;
        let mut s = format!(
            "estimated {} of {} DP16KD block RAMs, {} of {} MULT18X18D multipliers, {} of {} \
             logic cells ({:.0} %; {} LUT4) and {} flip-flops on {}",
            self.dp16kd,
            c.dp16kd,
            self.mult18,
            c.mult18,
            self.logic.comb,
            c.luts,
            pct(self.logic.comb, c.luts),
            self.logic.lut4,
            self.logic.ff,
            self.board
        );
        if !self.fits() {
            let mut why = Vec::new();
            if self.dp16kd > c.dp16kd {
                let top: Vec<String> = self
                    .memories
                    .iter()
                    .take(4)
                    .map(|(n, b)| format!("{n} {b}"))
                    .collect();
                why.push(format!(
                    "too many block RAMs; largest memories (blocks): {}. Per-row activations \
                     scale with training.batch × hypotheses (negatives = \"random\" with a \
                     small negatives_count stores fewer), weights with the layer widths and \
                     fixed.weight.bits, and every tensor takes at least one block per lane \
                     (hardware.array_rows or array_cols)",
                    top.join(", ")
                ));
            }
            if self.mult18 > c.mult18 || self.logic.comb > c.luts || self.logic.ff > c.ffs {
                let top: Vec<String> = self
                    .multipliers
                    .iter()
                    .take(3)
                    .map(|(n, b)| format!("{n} {b}"))
                    .collect();
                why.push(format!(
                    "too much logic or too many multipliers; they grow with the array \
                     (hardware.array_rows × array_cols) and the bit widths (multipliers by \
                     module: {})",
                    top.join(", ")
                ));
            }
            s.push_str(&format!(": DOES NOT FIT: {}", why.join("; ")));
        } else if self.logic_fraction().is_some_and(|f| f > LOGIC_COMFORT) {
            s.push_str(&format!(
                " (above {:.0} % of the logic: expect a slower clock and a long place and route)",
                100.0 * LOGIC_COMFORT
            ));
        }
        s
    }
}

/// Estimate for an engine with `mems` (and `roms`: name, width, depth) whose generated RTL
/// has `census`, on `board`.
pub fn estimate(
    board: &str,
    mems: &[MemInfo],
    roms: &[(String, u32, usize)],
    census: &Census,
) -> Fit {
    let mut memories: Vec<(String, usize)> = mems
        .iter()
        .map(|m| (m.name.clone(), m.banks * dp16kd_blocks(m.width, m.depth)))
        .chain(
            roms.iter()
                .map(|(n, w, d)| (n.clone(), dp16kd_blocks(*w, *d))),
        )
        .collect();
    memories.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut multipliers: Vec<(String, usize)> = census
        .modules
        .iter()
        .filter(|(_, c)| c.mult18 > 0)
        .map(|(n, c)| (n.clone(), c.mult18))
        .collect();
    multipliers.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    Fit {
        board: board.to_string(),
        capacity: capacity(board),
        dp16kd: memories.iter().map(|m| m.1).sum(),
        mult18: census.mult18,
        logic: LOGIC_MODEL.estimate(census),
        memories,
        multipliers,
        census_ff: census.ff,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_counts_take_the_cheapest_aspect_ratio() {
        assert_eq!(dp16kd_blocks(18, 1024), 1);
        assert_eq!(dp16kd_blocks(16, 1024), 1);
        assert_eq!(dp16kd_blocks(36, 512), 1);
        assert_eq!(dp16kd_blocks(12, 2048), 2); // 2 × 9-bit wide, or 2 × 1K deep at 18
        assert_eq!(dp16kd_blocks(1, 16384), 1);
        assert_eq!(dp16kd_blocks(16, 40960), 40);
        assert_eq!(dp16kd_blocks(4, 1), 1);
        assert_eq!(mult18_blocks(18, 18), 1);
        assert_eq!(mult18_blocks(48, 17), 3);
        assert_eq!(mult18_blocks(19, 19), 4);
    }

    #[test]
    fn generic_boards_are_not_checked_and_named_ones_are() {
        let mems = [MemInfo {
            name: "big".into(),
            banks: 300,
            width: 18,
            depth: 1024,
        }];
        let none = Census::default();
        let f = estimate("generic", &mems, &[], &none);
        assert!(f.fits());
        let mut pe = Census::default();
        pe.mult18 = 16;
        let f = estimate("ulx3s-85f", &mems, &[], &pe);
        assert_eq!((f.dp16kd, f.mult18), (300, 16));
        assert!(!f.fits());
        assert!(f.summary().contains("DOES NOT FIT") && f.summary().contains("big 300"));
        pe.mult18 = 157;
        let f = estimate("ulx3s-85f", &mems[..0], &[], &pe);
        assert!(!f.fits(), "157 multipliers on a 156-multiplier part");
        let mut logic = Census::default();
        logic.ff = 1_000_000;
        let f = estimate("ulx3s-85f", &mems[..0], &[], &logic);
        assert!(
            !f.fits() && f.summary().contains("too much logic"),
            "{}",
            f.summary()
        );
    }
}
