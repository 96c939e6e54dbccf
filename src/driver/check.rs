//! The bit-exact check of the RTL (or a board) against the golden model: every value
//! compared, counted, and the first difference kept with where it is. Shared by
//! `--backend rtl`/`serial:` ([`super::rtl`]) and `dfforge cosim` ([`crate::cosim`]), which
//! depends on the driver, not the other way round.

use crate::fixed::kernels::IMat;
use crate::fixed::model::FxParams;
use serde::Serialize;

/// The first difference found.
#[derive(Clone, Debug, Serialize)]
pub struct Mismatch {
    pub step: usize,
    /// `W2`, `b1`, `U`, `G1`, `beta2`, `prediction`.
    pub tensor: String,
    /// 1-based layer, if the tensor has one.
    pub layer: Option<usize>,
    /// Row/column (or row) of the value.
    pub index: Vec<usize>,
    pub rtl: i64,
    pub golden: i64,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "step {}: {}{:?} RTL {} != golden {}",
            self.step, self.tensor, self.index, self.rtl, self.golden
        )
    }
}

/// Value-by-value comparison of RTL results with the golden model: counts, and the first
/// difference with where it is (shared by `dfforge cosim` and `--backend rtl`).
#[derive(Clone, Debug, Default)]
pub struct Checker {
    pub compared: u64,
    pub mismatches: u64,
    pub first: Option<Mismatch>,
}

impl Checker {
    /// Compare `rtl` with `gold` (row-major with `cols` columns; 1 for vectors).
    pub fn vec(
        &mut self,
        step: usize,
        tensor: &str,
        layer: Option<usize>,
        cols: usize,
        rtl: &[i64],
        gold: &[i64],
    ) {
        for (i, (&a, &b)) in rtl.iter().zip(gold).enumerate() {
            self.compared += 1;
            if a != b {
                self.mismatches += 1;
                if self.first.is_none() {
                    self.first = Some(Mismatch {
                        step,
                        tensor: tensor.to_string(),
                        layer,
                        index: if cols > 1 {
                            vec![i / cols, i % cols]
                        } else {
                            vec![i]
                        },
                        rtl: a,
                        golden: b,
                    });
                }
            }
        }
        if rtl.len() != gold.len() {
            self.mismatches += 1;
        }
    }

    /// Compare every parameter.
    pub fn params(&mut self, step: usize, rtl: &FxParams, gold: &FxParams) {
        for l in 0..gold.w.len() {
            let cols = gold.w[l].cols;
            let name = format!("W{}", l + 1);
            self.vec(
                step,
                &name,
                Some(l + 1),
                cols,
                &widen(&rtl.w[l]),
                &widen(&gold.w[l]),
            );
            let name = format!("b{}", l + 1);
            self.vec(step, &name, Some(l + 1), 1, &rtl.b[l], &gold.b[l]);
        }
        self.vec(
            step,
            "U",
            Some(1),
            gold.u.cols,
            &widen(&rtl.u),
            &widen(&gold.u),
        );
    }
}

fn widen(m: &IMat) -> Vec<i64> {
    m.data.iter().map(|&v| i64::from(v)).collect()
}
