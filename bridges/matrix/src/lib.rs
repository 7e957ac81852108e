//! causeway's Matrix bridge: an application service whose puppets stand for XMPP users.
//!
//! It implements [`causeway_bridge::Network`] for Matrix; the gateway core reaches it only
//! through that trait. The network itself arrives with the Matrix issue; this crate already
//! fixes what it is called and how the core names it.

use causeway_bridge::NetworkKind;

/// The network this crate bridges.
pub const KIND: NetworkKind = NetworkKind::Matrix;
