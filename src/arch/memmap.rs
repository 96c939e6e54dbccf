//! The engine's memory map: every tensor the engine stores, its format, how it is banked,
//! where the host reaches it on the bus, and which engine ports read and write it.
//!
//! One [`Banking`] rule per tensor gives `bank_word(row, col)`; the RTL generator declares
//! the banks from it, the host driver loads and reads parameters through it, the golden
//! model's update walk takes the weight bank (= update lane) from it, and the fit estimate
//! counts its block RAMs from it. Nothing else keeps a copy of a layout.

use super::abi::region;
use super::shape::bitlen;

/// How a tensor's elements (row r, column k) are spread over `n` banks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Banking {
    /// Bank r mod n, word (r div n)·cols + k: n consecutive rows of one column in n banks at
    /// one word (n = 1: one memory, row-major).
    ByRow { n: usize, cols: usize },
    /// Bank (r + k) mod n, word (r div n)·cols + k: n consecutive rows of one column and n
    /// consecutive columns of one row are both in n distinct banks.
    Diagonal { n: usize, cols: usize },
    /// Bank k mod n, word r·⌈cols/n⌉ + k div n: n consecutive columns of one row (starting
    /// at a multiple of n) share one word of n banks.
    ByCol { n: usize, cols: usize },
}

impl Banking {
    pub fn banks(&self) -> usize {
        match *self {
            Banking::ByRow { n, .. } | Banking::Diagonal { n, .. } | Banking::ByCol { n, .. } => n,
        }
    }

    /// Words per bank for a tensor of `rows` rows.
    pub fn depth(&self, rows: usize) -> usize {
        match *self {
            Banking::ByRow { n, cols } | Banking::Diagonal { n, cols } => rows.div_ceil(n) * cols,
            Banking::ByCol { n, cols } => rows * cols.div_ceil(n),
        }
    }

    /// (bank, word) of element (r, k).
    pub fn bank_word(&self, r: usize, k: usize) -> (usize, usize) {
        match *self {
            Banking::ByRow { n, cols } => (r % n, (r / n) * cols + k),
            Banking::Diagonal { n, cols } => ((r + k) % n, (r / n) * cols + k),
            Banking::ByCol { n, cols } => (k % n, r * cols.div_ceil(n) + k / n),
        }
    }
}

/// The banking of W_l: its rows over the R update lanes' banks, diagonally under DF-O (so
/// the FB op reads R consecutive columns of one row). The golden model's update walk
/// takes each weight's lane (= bank) from here.
pub fn weight_banking(cfg: &crate::config::Config, l: usize) -> Banking {
    let d_in = if l == 0 {
        cfg.network.input
    } else {
        cfg.network.hidden[l - 1]
    };
    weight_banking_of(
        cfg.hardware.array_rows,
        cfg.algorithm.scheme == crate::config::Scheme::DfO,
        d_in,
    )
}

pub(crate) fn weight_banking_of(rows: usize, diag: bool, d_in: usize) -> Banking {
    if diag {
        Banking::Diagonal {
            n: rows,
            cols: d_in,
        }
    } else {
        Banking::ByRow {
            n: rows,
            cols: d_in,
        }
    }
}

/// Address bits of a memory of `depth` words (at least 1).
pub fn abits(depth: usize) -> u32 {
    bitlen(depth.saturating_sub(1).max(1) as u128)
}

/// What a tensor holds (layer indices are 0-based; names are 1-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum TensorId {
    /// Raw pixels of the batch (host-written).
    Pixels,
    /// The hypothesis of each (sample, slot) row (host-written).
    Hyps,
    /// x̂_0: the normalised input.
    X0,
    /// W_l.
    W(usize),
    /// b_l.
    B(usize),
    /// The centroids U (classes × d_1).
    U,
    /// W_1 x̂_0, once per sample (the accumulator, narrowed to what the sum can reach).
    A1,
    /// V[c] = b_1 + U[c], aligned to the accumulator (rebuilt by CEN).
    V,
    /// h_l = ReLU(z_l); for layers ≥ 2 DELTA overwrites it in place with δ_l, which the
    /// gradient GEMM reads from here.
    H(usize),
    /// x̂_l for the layers below the top.
    Xh(usize),
    /// G_l per row.
    G(usize),
    /// β_l per row.
    Beta(usize),
    /// DF-R: B_{l+1}ᵀ (host-written once).
    Fbm(usize),
    /// DF-R/DF-O: a copy of the local δ_l (before feedback), banked by row for FB's north edge.
    Dc(usize),
    /// DF-R/DF-O: layer l's rsqrt parts per row (word ‖ e/2), for the feedback scaling.
    Rs(usize),
    /// DF-R/DF-O: the scaled feedback into layer l (B_{l+1}ᵀδ_{l+1} · rsqrt S_l).
    Fbb(usize),
    /// Layer 1's per-sample error e = Σ_k δ_1 (exact partial sums).
    E,
    /// Δb_l (exact sums over the rows).
    Db(usize),
    /// ΔU (exact sums over the rows of each hypothesis).
    Du,
}

/// The engine ports that drive a memory's write or read port: one op engine (or the bus)
/// each. Only one op runs at a time, and the bus only while the engine is idle, so at most
/// one client of a port is active in any cycle (the port takes the OR of its clients, each
/// of which drives zeros while idle).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Client {
    Bus,
    /// The sequencer's clearing sweep after reset.
    Init,
    Norm,
    GemmFeed,
    GemmDrain,
    Update,
    Cen,
    Loss,
    Delta,
    Pred,
}

impl Client {
    /// Prefix of the client's port signals in the engine (`<prefix>_<mem>_we`, …).
    pub fn prefix(self) -> &'static str {
        match self {
            Client::Bus => "bus",
            Client::Init => "init",
            Client::Norm => "norm",
            Client::GemmFeed => "feed",
            Client::GemmDrain => "drain",
            Client::Update => "upd",
            Client::Cen => "cen",
            Client::Loss => "loss",
            Client::Delta => "delta",
            Client::Pred => "pred",
        }
    }
}

/// Where the host reaches a tensor on the engine bus (docs/protocol.md): the region code,
/// whether the host may write it, and how its words travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Region {
    pub code: u8,
    pub writable: bool,
    /// Read data is sign-extended to 64 bits.
    pub signed: bool,
    /// Bytes per word in protocol frames: the format's bits, with a spare sign bit for
    /// unsigned formats (the device sign-extends what it receives).
    pub wbytes: u8,
}

/// One stored tensor: `rows × cols` values of `width` bits in `banking.banks()` memories of
/// `depth` words.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Tensor {
    pub id: TensorId,
    /// Name of its memories in the RTL (`w1`, `h2`, …).
    pub name: String,
    pub rows: usize,
    pub cols: usize,
    pub width: u32,
    pub signed: bool,
    pub banking: Banking,
    pub depth: usize,
    pub region: Option<Region>,
    /// Who writes / reads it.
    pub writers: Vec<Client>,
    pub readers: Vec<Client>,
}

impl Tensor {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        id: TensorId,
        name: impl Into<String>,
        rows: usize,
        cols: usize,
        width: u32,
        signed: bool,
        banking: Banking,
        writers: &[Client],
        readers: &[Client],
    ) -> Tensor {
        Tensor {
            id,
            name: name.into(),
            rows,
            cols,
            width,
            signed,
            banking,
            depth: banking.depth(rows).max(1),
            region: None,
            writers: writers.to_vec(),
            readers: readers.to_vec(),
        }
    }

    /// Reachable from the host in region `code`.
    pub(crate) fn on_bus(mut self, code: u8, writable: bool) -> Tensor {
        let bits = self.width + u32::from(!self.signed);
        self.region = Some(Region {
            code,
            writable,
            signed: self.signed,
            wbytes: bits.div_ceil(8).clamp(1, 8) as u8,
        });
        if writable {
            self.writers.insert(0, Client::Bus);
        }
        self.readers.insert(0, Client::Bus);
        self
    }

    pub fn banks(&self) -> usize {
        self.banking.banks()
    }

    /// Address bits of one bank.
    pub fn aw(&self) -> u32 {
        abits(self.depth)
    }

    /// (bank, word) of element (r, k).
    pub fn bank_word(&self, r: usize, k: usize) -> (usize, usize) {
        self.banking.bank_word(r, k)
    }

    /// Bus address of word `word` of bank `bank`: the bank above the word bits.
    pub fn bus_addr(&self, bank: usize, word: usize) -> u32 {
        ((bank as u32) << self.aw()) | word as u32
    }

    /// Bus address of element (r, k).
    pub fn addr(&self, r: usize, k: usize) -> u32 {
        let (b, w) = self.bank_word(r, k);
        self.bus_addr(b, w)
    }

    /// The whole tensor as its banks hold it (`get(r, k)` per element; padding words 0).
    pub fn to_banks(&self, get: impl Fn(usize, usize) -> i64) -> Vec<Vec<i64>> {
        let mut out = vec![vec![0i64; self.depth]; self.banks()];
        for r in 0..self.rows {
            for k in 0..self.cols {
                let (b, w) = self.bank_word(r, k);
                out[b][w] = get(r, k);
            }
        }
        out
    }
}

/// Every tensor of one engine.
#[derive(Clone, Debug, serde::Serialize)]
pub struct MemMap {
    pub tensors: Vec<Tensor>,
}

impl MemMap {
    pub fn get(&self, id: TensorId) -> Option<&Tensor> {
        self.tensors.iter().find(|t| t.id == id)
    }

    /// The tensor `id`; panics if this engine has none (a generator bug, not user input).
    pub fn t(&self, id: TensorId) -> &Tensor {
        self.get(id)
            .unwrap_or_else(|| panic!("this engine stores no {id:?}"))
    }

    /// The tensor the host reaches in region `code`.
    pub fn by_region(&self, code: u8) -> Option<&Tensor> {
        self.tensors
            .iter()
            .find(|t| t.region.is_some_and(|r| r.code == code))
    }

    /// Bytes per word on the protocol in region `code` (8 for the hyper-parameters and
    /// counters, whose words are 64-bit).
    pub fn wbytes(&self, code: u8) -> u8 {
        self.by_region(code)
            .and_then(|t| t.region)
            .map_or(8, |r| r.wbytes)
    }

    /// Tensors `c` writes.
    pub fn written_by(&self, c: Client) -> impl Iterator<Item = &Tensor> {
        self.tensors.iter().filter(move |t| t.writers.contains(&c))
    }

    /// Tensors `c` reads.
    pub fn read_by(&self, c: Client) -> impl Iterator<Item = &Tensor> {
        self.tensors.iter().filter(move |t| t.readers.contains(&c))
    }
}

/// Region codes of the per-layer tensors (`+ l`), for the bus map's checks.
pub fn layer_region(base: u8, l: usize) -> u8 {
    debug_assert!(matches!(
        base,
        region::WEIGHTS | region::BIASES | region::GOODNESS | region::BETA | region::FEEDBACK
    ));
    base + l as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_banking_is_a_bijection_onto_its_depth() {
        for (rows, cols) in [(1, 1), (7, 5), (12, 12), (20, 3), (3, 20)] {
            for n in [1, 2, 3, 4, 5] {
                for b in [
                    Banking::ByRow { n, cols },
                    Banking::Diagonal { n, cols },
                    Banking::ByCol { n, cols },
                ] {
                    let depth = b.depth(rows);
                    let mut seen = std::collections::HashSet::new();
                    for r in 0..rows {
                        for k in 0..cols {
                            let (bank, word) = b.bank_word(r, k);
                            assert!(
                                bank < n && word < depth,
                                "{b:?} ({r},{k}) → ({bank},{word})"
                            );
                            assert!(
                                seen.insert((bank, word)),
                                "{b:?}: two elements at ({bank},{word})"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn diagonal_banks_serve_a_column_and_a_row_without_conflict() {
        let b = Banking::Diagonal { n: 4, cols: 10 };
        // Four consecutive rows of one column, four consecutive columns of one row.
        for r0 in 0..6 {
            for k in 0..10 {
                let banks: std::collections::HashSet<_> =
                    (0..4).map(|j| b.bank_word(r0 + j, k).0).collect();
                assert_eq!(banks.len(), 4);
            }
        }
        for r in 0..6 {
            for k0 in 0..7 {
                let banks: std::collections::HashSet<_> =
                    (0..4).map(|j| b.bank_word(r, k0 + j).0).collect();
                assert_eq!(banks.len(), 4);
            }
        }
    }

    #[test]
    fn by_col_groups_share_a_word() {
        let b = Banking::ByCol { n: 4, cols: 10 };
        assert_eq!(b.depth(3), 9);
        assert_eq!(b.bank_word(2, 5), (1, 7));
        let words: std::collections::HashSet<_> = (4..8).map(|k| b.bank_word(1, k).1).collect();
        assert_eq!(words.len(), 1);
    }
}
