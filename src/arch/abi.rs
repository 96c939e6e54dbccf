//! The engine's bus ABI (docs/protocol.md, "engine interface"): region codes, the
//! hyper-parameter and counter addresses, run codes and run status codes. The RTL generator,
//! the host driver and the protocol layer ([`crate::host::protocol`]) all take their numbers
//! from here.

/// Bus region codes; `+ l` for the per-layer regions (l = 0-based layer).
pub mod region {
    pub const PIXELS: u8 = 0x00;
    pub const HYPS: u8 = 0x01;
    pub const WEIGHTS: u8 = 0x10;
    pub const BIASES: u8 = 0x20;
    pub const CENTROIDS: u8 = 0x30;
    pub const GOODNESS: u8 = 0x40;
    pub const BETA: u8 = 0x50;
    /// DF-R's feedback matrices, `+ l` for layer l's (B_{l+1} transposed).
    pub const FEEDBACK: u8 = 0x60;
    pub const HYPER: u8 = 0xF0;
    pub const COUNTERS: u8 = 0xF1;
}

/// Hyper-parameter addresses in [`region::HYPER`].
pub mod hyper {
    /// η/B as the update unit's constant (raw, `fixed.lr_frac` fraction bits).
    pub const LR: u32 = 0;
    /// Samples in the next training batch (1 ..= training.batch).
    pub const BATCH: u32 = 1;
}

/// Counter addresses in [`region::COUNTERS`].
pub mod counter {
    /// Clock cycles since reset.
    pub const CYCLES: u32 = 0;
    /// Cycles spent running a command (train or infer).
    pub const BUSY: u32 = 1;
    /// Cycles in which the array received a new operand step (R × C MACs issued).
    pub const ARRAY: u32 = 2;
    /// Completed runs.
    pub const RUNS: u32 = 3;
    /// Number of counters.
    pub const COUNT: u32 = 4;
}

/// Run ops (`run_op_i`).
pub const RUN_TRAIN: u8 = 1;
pub const RUN_INFER: u8 = 2;

/// Run status codes (`run_status_o`).
pub mod status {
    pub const OK: u8 = 0;
    /// `run_op_i` was neither train nor infer.
    pub const BAD_OP: u8 = 1;
}
