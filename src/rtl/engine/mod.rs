//! The DF engine (under reconstruction: `v1` is the monolithic engine being replaced by the
//! op-engine hierarchy of this folder).

pub mod build;
mod v1;
pub use v1::*;
pub mod norm;
pub mod gemm_drain;
pub mod gemm_feed;
pub mod update;
