//! The adapter API between causeway's gateway core and its remote networks.
//!
//! A *network* (IRC, Matrix) is one value shared by all XMPP users. The core hands it
//! [`Action`]s, each on behalf of one XMPP user, and the network reports what happens
//! remotely as [`Event`]s on the channel in its [`NetworkContext`]. Per-user puppet
//! sessions live inside the network, keyed by the user's bare JID.
//!
//! *Architecture Invariant*: this crate does no I/O and knows nothing of XMPP streams,
//! databases or configuration files; bridges depend on it and on nothing of each other.

mod account;
mod action;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod event;
pub mod fake;
pub mod styling;

use std::fmt;

use async_trait::async_trait;
use tokio::sync::mpsc;

pub use account::{AccountReply, AccountRequest, AccountStatus, Credentials, Emoji, Secret};
pub use action::Action;
pub use event::{Event, Receipt, Said};

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
/// the network names it. For IRC the name is kept as the user typed it; networks compare
/// names with their own case rules.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomRef {
    /// The server the room lives on (`irc.libera.chat`, `example.org`).
    pub server: String,
    /// The room's own name on that server (`#rust`, `!opaque`).
    pub name: String,
}

impl fmt::Display for RoomRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on {}", self.name, self.server)
    }
}

/// Where a message goes or comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Peer {
    /// A room: a groupchat message.
    Room(RoomRef),
    /// One remote user: a private message.
    User {
        /// The server the user is on.
        server: String,
        /// The user's nick (or id).
        nick: String,
    },
}

/// How a message is meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MessageKind {
    /// Plain text.
    #[default]
    Normal,
    /// An action, `/me waves` (IRC CTCP ACTION, Matrix `m.emote`).
    Action,
    /// A notice (IRC NOTICE, Matrix `m.notice`): never answered automatically.
    Notice,
}

/// A file a message carries (XEP-0066 out-of-band data; a Matrix media event): where it
/// can be fetched over HTTP(S), and what is known of it. The message's body holds the
/// address too, for clients and networks that know no attachments.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Media {
    /// Where the file is (`https://…`).
    pub url: String,
    /// Its file name, when known.
    pub name: Option<String>,
    /// Its MIME type, when known.
    pub mimetype: Option<String>,
    /// Its size in bytes, when known.
    pub size: Option<u64>,
    /// What its sender wrote about it (a Matrix caption; XEP-0066's description), if
    /// anything.
    pub caption: Option<String>,
}

/// What a message refers to besides its text: the message it corrects (XEP-0308,
/// Matrix `m.replace`) and the one it answers (XEP-0461, Matrix `m.in_reply_to`), by the id
/// the receiving side knows them by.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Refs {
    /// The id of the message this one replaces.
    pub replaces: Option<String>,
    /// The message this one answers.
    pub reply_to: Option<ReplyTo>,
}

/// The message a reply answers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReplyTo {
    /// Its id.
    pub id: String,
    /// Its sender's nick, when known.
    pub nick: Option<String>,
    /// Its text, when known, for the quote shown by clients that know no replies.
    pub quote: Option<String>,
}

impl Refs {
    /// No references: a plain message.
    pub fn none() -> Refs {
        Refs::default()
    }
}

/// One room of a room list ([`Event::RoomList`]): an IRC server's channels, a Matrix
/// account's rooms, the rooms of a Matrix space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedRoom {
    /// The room's name as the list's server names it, so that the core makes its address
    /// from it (`#rust`; on the Matrix service's own list, the whole address localpart).
    pub name: String,
    /// How many members it has.
    pub members: u32,
    /// What it is about, for people choosing a room: its topic (with its name where the
    /// network has both).
    pub about: String,
    /// Whether it holds other rooms (a Matrix space), which [`Action::ListRooms`] with it
    /// as `within` lists.
    pub holds_rooms: bool,
}

/// A member's standing in a room, highest first where several apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Privilege {
    /// No special standing.
    #[default]
    None,
    /// May speak in a moderated room (IRC `+v`).
    Voice,
    /// IRC half-operator (`+h`, `%`).
    HalfOp,
    /// Room operator (IRC `+o`, `@`).
    Op,
    /// IRC protected / admin (`+a`, `&`).
    Admin,
    /// Room owner / founder (IRC `+q`, `~`).
    Owner,
}

/// A member of a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The member's nick (display name) in the room.
    pub nick: String,
    /// Their highest privilege.
    pub privilege: Privilege,
    /// Who they are on the network, independent of their nick (a Matrix user id; an IRC
    /// account, else `user@host`), when the network knows: the gateway derives their
    /// XEP-0421 occupant-id from it, so that it survives nick changes and restarts.
    pub id: Option<String>,
    /// Their picture, once the network has it ([`Event::MemberPicture`] brings it later).
    pub picture: Option<Picture>,
}

impl Member {
    /// A member the network knows only by nick.
    pub fn named(nick: impl Into<String>, privilege: Privilege) -> Member {
        Member {
            nick: nick.into(),
            privilege,
            id: None,
            picture: None,
        }
    }
}

/// A picture (a person's or a room's avatar), small: its image, its type, and the SHA-1 of
/// the image (hex), by which clients keep it (XEP-0153, XEP-0084).
#[derive(Clone, PartialEq, Eq)]
pub struct Picture {
    /// The image.
    pub data: std::sync::Arc<[u8]>,
    /// Its MIME type (`image/png`).
    pub mimetype: String,
    /// The SHA-1 of `data`, in lower-case hex.
    pub sha1: String,
}

impl Picture {
    /// The picture of `data`, of type `mimetype`.
    pub fn new(data: impl Into<std::sync::Arc<[u8]>>, mimetype: impl Into<String>) -> Picture {
        use sha1::Digest;
        let data = data.into();
        let sha1 = sha1::Sha1::digest(&data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Picture {
            data,
            mimetype: mimetype.into(),
            sha1,
        }
    }
}

impl fmt::Debug for Picture {
    // The image stays out of debug output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Picture({}, {} bytes, {})",
            self.mimetype,
            self.data.len(),
            self.sha1
        )
    }
}

/// Why a join failed, for the matching XEP-0045 error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinFailure {
    /// The nick is taken (→ `conflict`).
    NickInUse,
    /// The nick is not acceptable to the server (→ `jid-malformed`).
    BadNick,
    /// Invite only (→ `registration-required`).
    InviteOnly,
    /// Banned (→ `forbidden`).
    Banned,
    /// Wrong or missing key (→ `not-authorized`).
    BadKey,
    /// The room is full (→ `service-unavailable`).
    Full,
    /// No such room or not allowed to create it (→ `item-not-found`).
    NoSuchRoom,
    /// The server could not be reached or refused the connection (→ `remote-server-not-found`).
    Unreachable,
    /// Anything else (→ `not-allowed`).
    Other,
}

/// How a member left a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Departure {
    /// Left the room (IRC PART).
    Part,
    /// Left the network (IRC QUIT).
    Quit,
    /// Was kicked by `by`.
    Kick {
        /// Who kicked.
        by: String,
    },
    /// Was banned by `by`.
    Ban {
        /// Who banned.
        by: String,
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
    /// The action names a room or user that does not exist remotely, or one the user is
    /// not in.
    #[error("{0}")]
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
    /// Returning ends the network: puppets are disconnected with `quit_message`.
    async fn run(
        &self,
        ctx: NetworkContext,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), BridgeError>;
    /// Carry out one action of one XMPP user. Success means the action was handed to the
    /// network; its outcome arrives as events. An action taken before `run` has started is
    /// held until it has (the core rejoins rooms right after spawning `run`).
    async fn act(&self, user: &UserRef, action: Action) -> Result<(), BridgeError>;
    /// Whether `label` names a text encoding this network can carry a user's text in (a
    /// WHATWG label: `latin1`, `koi8-r`, `windows-1252`), for the settings that choose one.
    /// A network whose text is always UTF-8 has none to choose.
    fn supports_encoding(&self, _label: &str) -> bool {
        false
    }
    /// Whether users log in to their own accounts on this network (Matrix personal logins);
    /// the core then offers registration and the account commands on its component.
    fn has_accounts(&self) -> bool {
        false
    }
    /// Carry out a request about the user's own account and answer it. A network without
    /// accounts refuses.
    async fn account(
        &self,
        _user: &UserRef,
        _request: AccountRequest,
    ) -> Result<AccountReply, BridgeError> {
        Err(BridgeError::Invalid(
            "this network has no accounts to log in to".into(),
        ))
    }
}
