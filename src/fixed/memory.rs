//! On-chip memory account: bits of SRAM needed to train the configured network with DF and
//! with backprop, at the same widths and batch (docs/memory.md explains the model).
//!
//! Both learners are counted with their leanest exact schedule on an output-stationary array:
//! - gradients never exist as a whole matrix: each ΔW tile is accumulated in the array's
//!   R×C accumulators and drained straight into the update unit (the same for both, so it is
//!   counted once as `gradients` = one tile of `update` words);
//! - backprop must keep every layer's activations of the batch from the forward pass until
//!   its backward pass, plus two error buffers (δ_l and δ_{l-1});
//! - DF with `collaboration` none/previous and scheme df runs layer by layer: only layer l's
//!   input x̂_{l-1} and output (h_l, reused for δ_l, and x̂_l for the next layer) are alive, but
//!   for every (sample, hypothesis) row: K = C hypotheses with negatives all/hard, 1 + n with
//!   random. DF-R/DF-O also keep layer l+1's local error; collaboration `all` needs every
//!   layer's G before any loss, which costs a second forward pass, not memory (G is tiny).

use crate::config::{Config, Negatives, Scheme};
use serde::{Deserialize, Serialize};

/// Bits by kind for one learner.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryBreakdown {
    /// Weights and biases (and DF's label centroids, BP's softmax head).
    pub parameters: u64,
    /// Activations that must be stored between the forward pass and the update.
    pub activations: u64,
    /// Error vectors (δ) and loss coefficients.
    pub errors: u64,
    /// Gradient accumulators (one array tile; see the module docs).
    pub gradients: u64,
    /// ROM tables (rsqrt, exp).
    pub tables: u64,
    pub total: u64,
}

impl MemoryBreakdown {
    fn finish(mut self) -> Self {
        self.total =
            self.parameters + self.activations + self.errors + self.gradients + self.tables;
        self
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemoryAccount {
    pub df: MemoryBreakdown,
    pub bp: MemoryBreakdown,
    /// DF total / BP total.
    pub ratio_total: f64,
    /// DF / BP over what training adds beyond the parameters (activations, errors, gradients).
    pub ratio_training_state: f64,
    /// Rows per sample DF keeps alive (hypotheses).
    pub df_rows_per_sample: usize,
    /// The array tile the gradient accumulators are counted for.
    pub tile: (usize, usize),
}

/// The account for a config, with the gradient tile of an `rows × cols` array.
pub fn account_with_tile(cfg: &Config, tile: (usize, usize)) -> MemoryAccount {
    let f = &cfg.fixed;
    let w = cfg.network.widths();
    let (b, c) = (cfg.training.batch as u64, cfg.network.classes as u64);
    let nl = w.len() - 1;
    let k = match cfg.algorithm.negatives {
        Negatives::Random => cfg.algorithm.negatives_count + 1,
        _ => cfg.network.classes,
    } as u64;
    let (wb, bb, ab, hb, db) = (
        f.weight.bits as u64,
        f.bias.bits as u64,
        f.act.bits as u64,
        f.hidden.bits as u64,
        f.delta.bits as u64,
    );
    let layer_params: u64 = (1..w.len())
        .map(|l| (w[l] * w[l - 1]) as u64 * wb + w[l] as u64 * bb)
        .sum();
    let gradients = (tile.0 * tile.1) as u64 * f.update.bits as u64;
    let rsqrt = (1u64 << f.rsqrt_addr_bits) * (f.rsqrt_frac as u64 + 2);
    let exp = (1u64 << f.exp_addr_bits) * (f.exp_frac as u64 + 1);

    // DF, layer by layer: the widest live set over the layers.
    let feedback = cfg.algorithm.scheme != Scheme::Df;
    let df_live = (1..w.len())
        .map(|l| {
            let in_rows = if l == 1 { b } else { b * k };
            let input = in_rows * w[l - 1] as u64 * ab;
            let out = b * k * w[l] as u64 * (hb + ab);
            let next = if feedback && l < nl {
                b * k * w[l + 1] as u64 * (hb + db)
            } else {
                0
            };
            (input + out + next, b * k * w[l] as u64 * db)
        })
        .max_by_key(|&(a, e)| a + e)
        .unwrap_or((0, 0));
    let df = MemoryBreakdown {
        parameters: layer_params + c * w[1] as u64 * f.centroid.bits as u64,
        activations: df_live.0 + b * k * nl as u64 * f.goodness.bits as u64,
        errors: df_live.1 + b * k * f.beta.bits as u64,
        gradients,
        tables: rsqrt + exp,
        total: 0,
    }
    .finish();

    // BP: all activations of the batch, the logits, and two error buffers.
    let acts: u64 = b * w[0] as u64 * ab + (1..w.len()).map(|l| b * w[l] as u64 * hb).sum::<u64>();
    let widest = w
        .iter()
        .copied()
        .max()
        .unwrap_or(0)
        .max(cfg.network.classes) as u64;
    let bp = MemoryBreakdown {
        parameters: layer_params + c * w[nl] as u64 * wb + c * bb,
        activations: acts + b * c * f.logit.bits as u64,
        errors: 2 * b * widest * db,
        gradients,
        tables: rsqrt + exp,
        total: 0,
    }
    .finish();
    let state = |m: &MemoryBreakdown| (m.activations + m.errors + m.gradients) as f64;
    MemoryAccount {
        ratio_total: df.total as f64 / bp.total as f64,
        ratio_training_state: state(&df) / state(&bp),
        df_rows_per_sample: k as usize,
        tile,
        df,
        bp,
    }
}

/// The account with a 16×16 gradient tile (the array size arrives with the hardware config).
pub fn account(cfg: &Config) -> MemoryAccount {
    account_with_tile(cfg, (16, 16))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Negatives;

    #[test]
    fn counts_follow_the_formulas() {
        let mut cfg = Config::builtin();
        cfg.network.input = 4;
        cfg.network.hidden = vec![3, 2];
        cfg.network.classes = 2;
        cfg.algorithm.negatives = Negatives::All;
        cfg.algorithm.negatives_count = 1;
        cfg.training.batch = 1;
        let m = account_with_tile(&cfg, (1, 1));
        let f = &cfg.fixed;
        let params = (12 + 6) * f.weight.bits as u64 + 5 * f.bias.bits as u64;
        assert_eq!(m.df.parameters, params + 2 * 3 * f.centroid.bits as u64);
        assert_eq!(
            m.bp.parameters,
            params + 2 * 2 * f.weight.bits as u64 + 2 * f.bias.bits as u64
        );
        // BP keeps x̂_0 and both hidden layers for the one sample.
        assert_eq!(
            m.bp.activations,
            4 * f.act.bits as u64 + 5 * f.hidden.bits as u64 + 2 * f.logit.bits as u64
        );
        assert_eq!(m.df.gradients, f.update.bits as u64);
        assert_eq!(
            m.df.total,
            m.df.parameters + m.df.activations + m.df.errors + m.df.gradients + m.df.tables
        );
    }

    #[test]
    fn fewer_hypotheses_need_less_df_memory() {
        let mut cfg = Config::builtin();
        let all = account(&cfg);
        cfg.algorithm.negatives = Negatives::Random;
        cfg.algorithm.negatives_count = 1;
        let one = account(&cfg);
        assert!(one.df.activations < all.df.activations);
        assert_eq!(one.bp, all.bp);
    }
}
