//! The host side of the protocol in docs/protocol.md: frames and typed errors
//! ([`protocol`]), transports ([`link`]: the [`Link`] trait and [`SimLink`], a Verilator model
//! behind pipes; [`serial`]: [`SerialLink`], a board or a simulated board on a serial port)
//! and the typed [`Client`].

pub mod client;
pub mod link;
pub mod protocol;
pub mod serial;

pub use client::Client;
pub use link::{Link, LinkError, SimLink, SimLinkOptions};
pub use protocol::{Command, ProtocolError, Response, Status};
pub use serial::{SerialLink, SerialOptions};
