//! The host side of the protocol in docs/protocol.md: frames and typed errors
//! ([`protocol`]), transports ([`link`]: the [`Link`] trait and [`SimLink`], a Verilator model
//! behind pipes) and the typed [`Client`].

pub mod client;
pub mod link;
pub mod protocol;

pub use client::Client;
pub use link::{Link, LinkError, SimLink, SimLinkOptions};
pub use protocol::{Command, ProtocolError, Response, Status};
