//! dfforge: Distance-Forward learning, from a float reference to FPGA hardware.
//!
//! See ARCHITECTURE.md for where things live and why.

pub mod config;
pub mod data;
pub mod fixed;
pub mod float;
pub mod hdl;
pub mod plot;
pub mod report;
pub mod rtl;
pub mod sim;
pub mod train;
pub mod util;
