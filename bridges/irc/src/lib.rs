//! causeway's IRC bridge: puppet IRC connections, one per XMPP user and server.
//!
//! It implements [`causeway_bridge::Network`] for IRC; the gateway core reaches it only
//! through that trait. The network itself arrives with the IRC issue; this crate already
//! fixes what it is called and how the core names it.

use causeway_bridge::NetworkKind;

/// The network this crate bridges.
pub const KIND: NetworkKind = NetworkKind::Irc;
