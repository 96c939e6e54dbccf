//! A small typed Verilog IR, its checker and its emitter.
//!
//! dfforge owns this instead of using rust-hdl because it needs widths that
//! come from a runtime config, parameterised modules (one module, many
//! instances), and generate loops so that regular structure such as a
//! systolic array stays a few readable lines of Verilog. The flow is:
//! build a [`Module`] with the builders in [`ir`], run [`check()`] (which
//! rejects wiring mistakes with errors naming module and signal), then
//! [`emit()`] one file per module named by [`file_name`].

pub mod check;
pub mod emit;
pub mod examples;
pub mod ir;
pub mod reads;

#[cfg(test)]
mod check_tests;
#[cfg(test)]
mod tool_tests;

pub use check::{check, CheckError, ErrorKind};
pub use emit::{emit, expr as emit_expr, file_name};
pub use ir::*;
