//! What a network reports to the core, each about one XMPP user's puppet.

use std::time::SystemTime;

use crate::{
    BridgeError, Departure, JoinFailure, ListedRoom, Media, Member, MessageKind, Peer, Picture,
    Privilege, Refs, RoomRef, UserRef,
};

/// A message of a room's history ([`Event::History`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Said {
    /// The sender's nick.
    pub from: String,
    /// The text.
    pub body: String,
    /// How it is meant.
    pub kind: MessageKind,
    /// When it was sent.
    pub time: SystemTime,
    /// The network's id of the message (a Matrix event id): its stanza-id, by which the
    /// archive keeps it once.
    pub remote_id: String,
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
    /// A member's picture is known, or changed (`None`: they have none now).
    MemberPicture {
        /// Whose puppet saw it.
        user: UserRef,
        /// The room.
        room: RoomRef,
        /// Who.
        nick: String,
        /// The picture.
        picture: Option<Picture>,
    },
    /// A room's picture is known, or changed (`None`: it has none now).
    RoomPicture {
        /// Whose puppet saw it.
        user: UserRef,
        /// The room.
        room: RoomRef,
        /// The picture.
        picture: Option<Picture>,
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
        /// The network's own id of the message (a Matrix event id; for an IRC line that
        /// came through the connection keeper, its number there), when it has one; it
        /// becomes the message's stanza-id, by which the archive keeps it once.
        remote_id: Option<String>,
        /// What it corrects or answers.
        refs: Refs,
        /// The file it carries; `body` holds its address too.
        media: Option<Box<Media>>,
    },
    /// What was said in a room before the user joined, as the network keeps it, oldest
    /// first; reported before [`Event::Joined`], for the join history and the archive.
    History {
        /// Whose puppet is joining.
        user: UserRef,
        /// The room.
        room: RoomRef,
        /// The messages.
        messages: Vec<Said>,
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
    /// Someone started or stopped typing (→ XEP-0085 chat states).
    Typing {
        /// Whose puppet saw it.
        user: UserRef,
        /// Where: a room, or the person typing to the user.
        peer: Peer,
        /// Who, in a room (their nick); in a direct chat the peer.
        from: String,
        /// Typing now, or no longer.
        typing: bool,
    },
    /// Someone has seen the messages up to `id` (→ a XEP-0333 displayed marker).
    Displayed {
        /// Whose puppet saw it.
        user: UserRef,
        /// Where: a room, or the person who read.
        peer: Peer,
        /// Who, in a room (their nick); in a direct chat the peer.
        from: String,
        /// The message's id (its stanza-id).
        id: String,
    },
    /// The remote server took the user's private message `id` (a Matrix homeserver
    /// accepted the event; an IRC server echoed it) (→ a XEP-0184 receipt, when asked).
    Delivered {
        /// Whose message.
        user: UserRef,
        /// To whom.
        peer: Peer,
        /// The XMPP id of its [`crate::Action::Send`].
        id: String,
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
    /// The server's public rooms (or those within a room), after [`Action::ListRooms`].
    RoomList {
        /// Whose puppet asked.
        user: UserRef,
        /// The server.
        server: String,
        /// The room whose rooms these are, as the action named it.
        within: Option<RoomRef>,
        /// The rooms, or why they cannot be listed ([`BridgeError::NotFound`]: no such
        /// room holding rooms, or none the user may see).
        rooms: Result<Vec<ListedRoom>, BridgeError>,
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
    /// Nothing to show: the network asks to hear when everything it reported before this
    /// is durable (the messages it brought archived), to let go of what it keeps until
    /// then (the IRC connection keeper's lines). The core answers through the receipt.
    Checkpoint {
        /// Whose puppet.
        user: UserRef,
        /// Answered once what came before is durable; dropped unanswered otherwise.
        receipt: Receipt,
    },
}

/// The answer to an [`Event::Checkpoint`]: [`Receipt::durable`] once everything reported
/// before it is durable. A receipt dropped unanswered means it is not (the database is
/// failing, the gateway stopping): the network keeps what it kept and asks again later.
#[derive(Clone)]
pub struct Receipt(std::sync::Arc<std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>>);

impl Receipt {
    /// A receipt, and what its answer arrives on.
    pub fn new() -> (Receipt, tokio::sync::oneshot::Receiver<()>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (
            Receipt(std::sync::Arc::new(std::sync::Mutex::new(Some(tx)))),
            rx,
        )
    }

    /// Everything before the checkpoint is durable.
    pub fn durable(&self) {
        let answer = self.0.lock().map(|mut a| a.take());
        if let Ok(Some(answer)) = answer {
            let _ = answer.send(());
        }
    }
}

impl std::fmt::Debug for Receipt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Receipt")
    }
}

/// Receipts are equal when they are the same receipt.
impl PartialEq for Receipt {
    fn eq(&self, other: &Receipt) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
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
            | Event::MemberPicture { user, .. }
            | Event::RoomPicture { user, .. }
            | Event::NickChanged { user, .. }
            | Event::NickRefused { user, .. }
            | Event::MemberAway { user, .. }
            | Event::PrivilegeChanged { user, .. }
            | Event::Message { user, .. }
            | Event::History { user, .. }
            | Event::Subject { user, .. }
            | Event::ServerText { user, .. }
            | Event::Disconnected { user, .. }
            | Event::Reconnected { user, .. }
            | Event::RoomList { user, .. }
            | Event::SendFailed { user, .. }
            | Event::Invited { user, .. }
            | Event::Retracted { user, .. }
            | Event::Reactions { user, .. }
            | Event::Typing { user, .. }
            | Event::Displayed { user, .. }
            | Event::Delivered { user, .. }
            | Event::Checkpoint { user, .. } => user,
        }
    }
}
