//! dfforge: Distance-Forward learning, from a float reference to FPGA hardware.
//!
//! See ARCHITECTURE.md for where things live and why.

// Loops over layer or row indices touch several parallel arrays at once; indexing reads closer
// to the equations in DESIGN.md than zipped iterators do.
#![allow(clippy::needless_range_loop)]

pub mod arch;
pub mod bench;
pub mod config;
pub mod cosim;
pub mod data;
pub mod driver;
pub mod fixed;
pub mod float;
pub mod hdl;
pub mod host;
pub mod hypotheses;
pub mod noise;
pub mod plot;
pub mod report;
pub mod rtl;
pub mod sim;
pub mod sweep;
pub mod train;
pub mod util;
