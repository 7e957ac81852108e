//! The connection keeper: a small process that owns the puppets' IRC sockets, so that the
//! gateway can restart — or crash — without dropping them (ARCHITECTURE.md has the design and the protocol).
//! `protocol` is what the two say over the keeper's Unix socket, `server` the keeper's side,
//! `client` the gateway's link, `takeover` its attachment over its life (attach, take
//! over, attach again), `state` what the gateway leaves with the keeper for a successor.

pub(crate) mod client;
pub mod protocol;
mod server;
pub(crate) mod state;
mod takeover;

pub use server::{serve, KEPT_BYTES, KEPT_LINES};
