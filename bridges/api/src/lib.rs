//! The adapter API between causeway's gateway core and its remote networks.
//!
//! A *network* (IRC, Matrix) is one value shared by all XMPP users. The core hands it
//! [`Action`]s, each on behalf of one XMPP user, and the network reports what happens
//! remotely as [`Event`]s on the channel in its [`NetworkContext`]. Per-user puppet
//! sessions live inside the network, keyed by the user's bare JID.
//!
//! *Architecture Invariant*: this crate does no I/O and knows nothing of XMPP streams,
//! databases or configuration files; bridges depend on it and on nothing of each other.

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod fake;

use std::fmt;
use std::time::SystemTime;

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

/// What the gateway core asks a network to do for one XMPP user.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Join a room under the given nick, opening the user's puppet connection if needed.
    Join {
        /// The room to join.
        room: RoomRef,
        /// The nick the user asked for (the MUC resource).
        nick: String,
        /// The room key (MUC password), if any.
        password: Option<String>,
    },
    /// Leave a room; the puppet connection closes after the user's last room.
    Part {
        /// The room to leave.
        room: RoomRef,
        /// Why, if the user said.
        reason: Option<String>,
    },
    /// Send a message to a room or a user.
    Send {
        /// Where it goes.
        to: Peer,
        /// The text, possibly with several lines.
        body: String,
        /// How it is meant.
        kind: MessageKind,
        /// The XMPP id, echoed back in the [`Event::Message`] that reflects it.
        id: String,
        /// What it corrects or answers (networks without such things send the text).
        refs: Refs,
    },
    /// Retract (delete) one of the user's messages.
    Retract {
        /// Where it was sent.
        to: Peer,
        /// Its id: the XMPP id it was sent with, or its stanza-id.
        id: String,
    },
    /// Set the user's reactions to a message (XEP-0444: the whole set, empty to remove all).
    React {
        /// Where the message is.
        to: Peer,
        /// The message's id (its stanza-id, or the XMPP id it was sent with).
        id: String,
        /// The reactions (emoji), the whole set.
        reactions: Vec<String>,
    },
    /// Change a room's subject.
    SetSubject {
        /// The room.
        room: RoomRef,
        /// The new subject.
        subject: String,
    },
    /// Change the user's nick on a server (in every room there on IRC; in `room` only where
    /// nicks are per room, as on Matrix).
    ChangeNick {
        /// The server.
        server: String,
        /// The new nick.
        nick: String,
        /// The room the change was asked in.
        room: Option<RoomRef>,
    },
    /// Remove a member from a room.
    Kick {
        /// The room.
        room: RoomRef,
        /// Whom.
        nick: String,
        /// Why.
        reason: Option<String>,
    },
    /// Give or take a member's privilege.
    SetPrivilege {
        /// The room.
        room: RoomRef,
        /// Whose.
        nick: String,
        /// The privilege to hold from now on ([`Privilege::None`] takes all away).
        privilege: Privilege,
    },
    /// Close the user's connections (to one server, or all), leaving every room there.
    Disconnect {
        /// The server, or every server.
        server: Option<String>,
        /// The quit message.
        reason: Option<String>,
    },
    /// List the server's public rooms; answered by [`Event::RoomList`].
    ListRooms {
        /// The server.
        server: String,
    },
    /// A raw protocol line for the server (IRC only), typed by the user.
    Raw {
        /// The server.
        server: String,
        /// The line, without line ending.
        line: String,
    },
}

/// What a network reports back to the gateway core, always about one XMPP user's puppet.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The user's puppet is in the room: the whole state, for the MUC join sequence.
    Joined {
        /// Whose puppet.
        user: UserRef,
        /// The room.
        room: RoomRef,
        /// The puppet's nick as the network has it (may differ from the one asked for).
        nick: String,
        /// Everyone in the room, the puppet included.
        members: Vec<Member>,
        /// The room's subject, empty when none.
        subject: String,
    },
    /// A join failed.
    JoinFailed {
        /// Whose puppet.
        user: UserRef,
        /// The room.
        room: RoomRef,
        /// The kind of failure.
        failure: JoinFailure,
        /// The network's own words.
        text: String,
    },
    /// The puppet is no longer in the room (parted, kicked, or its connection is gone).
    Left {
        /// Whose puppet.
        user: UserRef,
        /// The room.
        room: RoomRef,
        /// How.
        departure: Departure,
        /// The reason given.
        reason: Option<String>,
    },
    /// Someone else entered a room the puppet is in.
    MemberJoined {
        /// Whose puppet saw it.
        user: UserRef,
        /// The room.
        room: RoomRef,
        /// Who.
        member: Member,
    },
    /// Someone else left a room the puppet is in.
    MemberLeft {
        /// Whose puppet saw it.
        user: UserRef,
        /// The room.
        room: RoomRef,
        /// Who.
        nick: String,
        /// How.
        departure: Departure,
        /// The reason given.
        reason: Option<String>,
    },
    /// A nick changed (the puppet's own when `old` was its nick), in the rooms listed.
    NickChanged {
        /// Whose puppet saw it.
        user: UserRef,
        /// Rooms where the change shows.
        rooms: Vec<RoomRef>,
        /// The old nick.
        old: String,
        /// The new nick.
        new: String,
    },
    /// The network refused the puppet's nick change.
    NickRefused {
        /// Whose puppet.
        user: UserRef,
        /// The server.
        server: String,
        /// The nick asked for.
        nick: String,
        /// Taken (true) or not acceptable (false).
        in_use: bool,
        /// The network's own words.
        text: String,
    },
    /// A member went away or came back (IRCv3 away-notify).
    MemberAway {
        /// Whose puppet saw it.
        user: UserRef,
        /// Rooms the member shares with the puppet.
        rooms: Vec<RoomRef>,
        /// Who.
        nick: String,
        /// The away message; `None` when back.
        message: Option<String>,
    },
    /// A member's privilege changed.
    PrivilegeChanged {
        /// Whose puppet saw it.
        user: UserRef,
        /// The room.
        room: RoomRef,
        /// Whose privilege.
        nick: String,
        /// What they hold now.
        privilege: Privilege,
    },
    /// A message.
    Message {
        /// Whose puppet received it (or sent it, when `own_id` is set).
        user: UserRef,
        /// The room, or for a private message the other party.
        peer: Peer,
        /// The sender's nick.
        from: String,
        /// The text.
        body: String,
        /// How it is meant.
        kind: MessageKind,
        /// When the network says it was sent (IRCv3 server-time), if it says.
        time: Option<SystemTime>,
        /// For the puppet's own message: the XMPP id of the [`Action::Send`] it reflects.
        own_id: Option<String>,
        /// The network's own id of the message (a Matrix event id), when it has one; it
        /// becomes the message's stanza-id.
        remote_id: Option<String>,
        /// What it corrects or answers.
        refs: Refs,
    },
    /// A message was retracted by its sender, or removed by a moderator.
    Retracted {
        /// Whose puppet saw it.
        user: UserRef,
        /// Where.
        peer: Peer,
        /// The message's id (as the user knows it: its stanza-id).
        id: String,
        /// The nick of its sender.
        from: String,
        /// The moderator's nick, when someone else removed it.
        moderator: Option<String>,
        /// Why, if they said.
        reason: Option<String>,
    },
    /// A member's reactions to a message changed.
    Reactions {
        /// Whose puppet saw it.
        user: UserRef,
        /// Where.
        peer: Peer,
        /// Who reacted.
        from: String,
        /// The message's id (its stanza-id).
        id: String,
        /// Their reactions now, the whole set.
        reactions: Vec<String>,
    },
    /// The puppet was invited to a room (→ a XEP-0249 invitation).
    Invited {
        /// Whose puppet.
        user: UserRef,
        /// The room.
        room: RoomRef,
        /// Who invited: their server and nick (or user id).
        by: Option<(String, String)>,
        /// Why, if they said.
        reason: Option<String>,
    },
    /// A room's subject changed.
    Subject {
        /// Whose puppet saw it.
        user: UserRef,
        /// The room.
        room: RoomRef,
        /// The new subject.
        subject: String,
        /// Who changed it.
        by: Option<String>,
    },
    /// Text from the server itself (replies to raw commands, server notices, connection news).
    ServerText {
        /// Whose connection.
        user: UserRef,
        /// The server.
        server: String,
        /// The text.
        text: String,
    },
    /// The puppet's connection to a server dropped. With `retrying` the network is
    /// reconnecting and will rejoin (and report [`Event::Joined`] again); without, it gave up
    /// and [`Event::Left`] follows for every room.
    Disconnected {
        /// Whose puppet.
        user: UserRef,
        /// The server.
        server: String,
        /// What happened.
        reason: String,
        /// Whether it is coming back.
        retrying: bool,
    },
    /// The puppet is connected again after [`Event::Disconnected`]; rooms follow as joins.
    Reconnected {
        /// Whose puppet.
        user: UserRef,
        /// The server.
        server: String,
    },
    /// The server's public rooms, after [`Action::ListRooms`].
    RoomList {
        /// Whose puppet asked.
        user: UserRef,
        /// The server.
        server: String,
        /// The rooms: name, member count, topic.
        rooms: Vec<(String, u32, String)>,
    },
    /// A message could not be delivered.
    SendFailed {
        /// Whose puppet.
        user: UserRef,
        /// Where it was going.
        peer: Peer,
        /// The XMPP id of the failed [`Action::Send`], when known.
        id: Option<String>,
        /// The network's own words.
        text: String,
    },
}

impl Event {
    /// The XMPP user the event concerns.
    pub fn user(&self) -> &UserRef {
        match self {
            Event::Joined { user, .. }
            | Event::JoinFailed { user, .. }
            | Event::Left { user, .. }
            | Event::MemberJoined { user, .. }
            | Event::MemberLeft { user, .. }
            | Event::NickChanged { user, .. }
            | Event::NickRefused { user, .. }
            | Event::MemberAway { user, .. }
            | Event::PrivilegeChanged { user, .. }
            | Event::Message { user, .. }
            | Event::Subject { user, .. }
            | Event::ServerText { user, .. }
            | Event::Disconnected { user, .. }
            | Event::Reconnected { user, .. }
            | Event::RoomList { user, .. }
            | Event::SendFailed { user, .. }
            | Event::Invited { user, .. }
            | Event::Retracted { user, .. }
            | Event::Reactions { user, .. } => user,
        }
    }
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
}
