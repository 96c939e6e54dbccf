//! Does the generated engine fit the config's board? (DESIGN.md §3: the generator must say so
//! before anyone waits for a place and route.)
//!
//! An estimate of the two resources that decide it on ECP5: block RAMs (DP16KD, 18 Kbit) and
//! hard multipliers (MULT18X18D), against the board's capacity.
//! - **Block RAMs** are counted from the memories the engine generator declares
//!   ([`super::engine::engine`] returns them), bank by bank, each in the cheapest DP16KD
//!   aspect ratio (16K×1 … 512×36), plus the ROMs (rsqrt, exp) and the protocol decoder's
//!   byte buffer. Yosys may put a small memory into LUT RAM instead; the estimate does not,
//!   so it errs high. Against yosys 0.23 `synth_ecp5` of the default engine: 209 estimated,
//!   212 mapped (docs/engine.md). LUTs are not estimated.
//! - **Multipliers**: one per PE for each 18×18 piece of its operands (exact for the array),
//!   plus the vector units' multiplies, counted the same way from their operand widths.
//!
//! The check is advisory where no board is involved (simulation, `dfforge gen` warns) and
//! binding where one is (`dfforge board --core engine` refuses a design that does not fit).

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
}

/// The FPGA of `hardware.board` (Lattice ECP5 data sheet, FPGA-DS-02012); `None` for
/// `generic`, which is not checked.
pub fn capacity(board: &str) -> Option<Capacity> {
    match board {
        "ulx3s-85f" => Some(Capacity {
            dp16kd: 208,
            mult18: 156,
        }),
        "ulx3s-45f" => Some(Capacity {
            dp16kd: 108,
            mult18: 72,
        }),
        "ulx3s-25f" => Some(Capacity {
            dp16kd: 56,
            mult18: 28,
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

/// The estimate, with what it is made of.
#[derive(Clone, Debug, Serialize)]
pub struct Fit {
    pub board: String,
    pub capacity: Option<Capacity>,
    pub dp16kd: usize,
    pub mult18: usize,
    /// (memory, blocks) of the engine's memories, the ROMs and the protocol buffer, largest
    /// first.
    pub memories: Vec<(String, usize)>,
    /// (unit, blocks) of the multipliers.
    pub multipliers: Vec<(String, usize)>,
}

impl Fit {
    pub fn fits(&self) -> bool {
        self.capacity
            .is_none_or(|c| self.dp16kd <= c.dp16kd && self.mult18 <= c.mult18)
    }

    /// One paragraph for the user: the totals against the board, and when it does not fit,
    /// where the block RAMs go and what shrinks them.
    pub fn summary(&self) -> String {
        let Some(c) = self.capacity else {
            return format!(
                "estimated {} DP16KD block RAMs and {} MULT18X18D multipliers (board `{}`: not checked)",
                self.dp16kd, self.mult18, self.board
            );
        };
        let mut s = format!(
            "estimated {} of {} DP16KD block RAMs and {} of {} MULT18X18D multipliers on {} \
             (LUTs are not estimated)",
            self.dp16kd, c.dp16kd, self.mult18, c.mult18, self.board
        );
        if !self.fits() {
            let top: Vec<String> = self
                .memories
                .iter()
                .take(4)
                .map(|(n, b)| format!("{n} {b}"))
                .collect();
            s.push_str(&format!(
                ": DOES NOT FIT. Largest memories (blocks): {}. Per-row activations scale with \
                 training.batch × hypotheses (negatives = \"random\" with a small negatives_count \
                 stores fewer), weights with the layer widths; multipliers with the array \
                 (hardware.array_rows × array_cols)",
                top.join(", ")
            ));
        }
        s
    }
}

/// Estimate for an engine with `mems` on `board`; `multipliers` lists the data path's
/// multiplies as (unit, a bits, b bits, count).
pub fn estimate(
    board: &str,
    mems: &[MemInfo],
    roms: &[(String, u32, usize)],
    multipliers: &[(String, u32, u32, usize)],
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
    let multipliers: Vec<(String, usize)> = multipliers
        .iter()
        .map(|(n, a, b, k)| (n.clone(), k * mult18_blocks(*a, *b)))
        .collect();
    Fit {
        board: board.to_string(),
        capacity: capacity(board),
        dp16kd: memories.iter().map(|m| m.1).sum(),
        mult18: multipliers.iter().map(|m| m.1).sum(),
        memories,
        multipliers,
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
        let f = estimate("generic", &mems, &[], &[]);
        assert!(f.fits());
        let f = estimate("ulx3s-85f", &mems, &[], &[("pe".into(), 18, 18, 16)]);
        assert_eq!((f.dp16kd, f.mult18), (300, 16));
        assert!(!f.fits());
        assert!(f.summary().contains("DOES NOT FIT") && f.summary().contains("big 300"));
        let f = estimate("ulx3s-85f", &mems[..0], &[], &[("pe".into(), 18, 18, 157)]);
        assert!(!f.fits(), "157 multipliers on a 156-multiplier part");
    }
}
