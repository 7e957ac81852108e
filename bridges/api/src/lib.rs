//! The adapter API between causeway's gateway core and its remote networks.
//!
//! A *network* (IRC, Matrix) is one value shared by all XMPP users. The core hands it
//! [`Action`]s, each on behalf of one XMPP user, and the network reports what happens
//! remotely as [`Event`]s on the channel in its [`NetworkContext`]. Per-user puppet
//! sessions live inside the network, keyed by the user's bare JID.
//!
//! *Architecture Invariant*: this crate does no I/O and knows nothing of XMPP streams,
//! databases or configuration files; bridges depend on it and on nothing of each other.

pub mod fake;

use std::fmt;

use async_trait::async_trait;
use tokio::sync::mpsc;

/// Which remote network a bridge speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NetworkKind {
    /// Internet Relay Chat.
    Irc,
    /// Matrix, through an application service.
    Matrix,
}

impl NetworkKind {
    /// The lowercase name used in configuration, logs and disco identities.
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkKind::Irc => "irc",
            NetworkKind::Matrix => "matrix",
        }
    }
}

impl fmt::Display for NetworkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The XMPP user on whose behalf an action is taken: their bare JID, as a string so that
/// bridges need no XMPP crate.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserRef(pub String);

impl fmt::Display for UserRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A room on the remote network (an IRC channel on a server, a Matrix room), named the way
/// the network names it, case preserved.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoomRef {
    /// The server the room lives on (`irc.libera.chat`, `example.org`).
    pub server: String,
    /// The room's own name on that server (`#rust`, `!opaque`).
    pub name: String,
}

/// What the gateway core asks a network to do for one XMPP user.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Join a room under the given nick, opening the user's puppet connection if needed.
    Join {
        /// The room to join.
        room: RoomRef,
        /// The nick the user asked for (the MUC resource).
        nick: String,
    },
    /// Leave a room; the puppet connection closes after the user's last room.
    Part {
        /// The room to leave.
        room: RoomRef,
        /// Why, if the user said.
        reason: Option<String>,
    },
    /// Send a message to a room.
    Message {
        /// The room to send to.
        room: RoomRef,
        /// The text, possibly with several lines.
        body: String,
        /// The XMPP id of the message, for reflection and later corrections.
        id: String,
    },
}

/// What a network reports back to the gateway core.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The user is now in the room under `nick` (which the network may have changed).
    Joined {
        /// Whose puppet joined.
        user: UserRef,
        /// The room joined.
        room: RoomRef,
        /// The nick the network gave.
        nick: String,
    },
    /// The user is no longer in the room.
    Parted {
        /// Whose puppet left.
        user: UserRef,
        /// The room left.
        room: RoomRef,
        /// The reason the network gave.
        reason: Option<String>,
    },
    /// A message arrived in a room that the user is in.
    Message {
        /// The user whose puppet saw it.
        user: UserRef,
        /// The room it arrived in.
        room: RoomRef,
        /// The sender's nick.
        from: String,
        /// The text.
        body: String,
        /// The network's own id for it, when it has one.
        remote_id: Option<String>,
    },
}

/// Where a running network reports its events.
#[derive(Debug, Clone)]
pub struct NetworkContext {
    /// Events for the gateway core, in the order they happened.
    pub events: mpsc::Sender<Event>,
}

/// Why a network could not carry out an action; each becomes a stanza error with this text.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum BridgeError {
    /// The remote server could not be reached or dropped the connection.
    #[error("remote server unreachable: {0}")]
    Unreachable(String),
    /// The remote side refused the action (banned, invite-only, nick in use…).
    #[error("refused by the remote server: {0}")]
    Refused(String),
    /// The action names a room or user that does not exist remotely.
    #[error("no such remote entity: {0}")]
    NotFound(String),
    /// The action was malformed (bad room name, empty nick…).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The network has shut down and takes no more actions.
    #[error("network has shut down")]
    ShutDown,
}

/// A remote network (IRC, Matrix). One value per network, shared by all users.
#[async_trait]
pub trait Network: Send + Sync + 'static {
    /// Which network this is.
    fn kind(&self) -> NetworkKind;
    /// Run until shutdown; report everything that happens as events on `ctx.events`.
    async fn run(&self, ctx: NetworkContext) -> Result<(), BridgeError>;
    /// Carry out one action of one XMPP user.
    async fn act(&self, user: &UserRef, action: Action) -> Result<(), BridgeError>;
}
