//! Bit-accurate fixed-point golden model of the DF-learning hardware.
//!
//! Every hardware operation is one small pure function over raw integers
//! (carried in `i64`, widened to `i128` inside where products need it),
//! named after the RTL unit that mirrors it. Widths, fraction bits, rounding
//! modes, table contents and LFSR polynomials are all parameters so that the
//! Verilog generator can emit the same constants and tables.
//!
//! * [`format`](mod@format): [`QFormat`], the fixed-point bus description.
//! * [`ops`]: saturation, MAC, rounding shifter, requantiser, ReLU, sum of
//!   squares, goodness, normalisation, loss betas, weight update.
//! * [`tables`]: reciprocal-square-root and exp ROMs, `$readmemh` text.
//! * [`lfsr`]: the Galois LFSR feeding stochastic rounding.

pub mod baselines;
pub mod format;
pub mod kernels;
pub mod lfsr;
pub mod memory;
pub mod model;
pub mod ops;
pub mod tables;
pub mod vector;
pub mod walk;

pub use format::{FormatError, QFormat, MAX_BITS, MAX_FRAC};
pub use lfsr::{default_taps, lane_seeds, Lfsr, LfsrError};
pub use ops::{
    goodness, loss_beta_hinge, loss_beta_npair, lr_update, mac, mac_exact_bits, normalise,
    relu_requant, requantize, saturate, saturate_flag, shift_round, squared_sum, LearningRate,
    OpsError, RecipConst, Rounding, MAX_RECIP_FRAC,
};
pub use tables::{to_memh, ExpTable, RsqrtTable, TableError, MAX_ADDR_BITS};
