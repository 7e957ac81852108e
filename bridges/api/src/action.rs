//! What the core asks of a network, on behalf of one XMPP user.

use crate::{Media, MessageKind, Peer, Picture, Privilege, Refs, RoomRef};

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
        /// The file it carries (networks without attachments send the text, which holds
        /// the address).
        media: Option<Box<Media>>,
    },
    /// Retract (delete) one of the user's messages.
    Retract {
        /// Where it was sent.
        to: Peer,
        /// Its id: the XMPP id it was sent with, or its stanza-id.
        id: String,
    },
    /// The user's own picture is now `picture` (none: they have none): shown as theirs where
    /// the network shows the gateway's puppets (a personal account is the user's own, and
    /// stays as it is).
    SetPicture {
        /// The picture.
        picture: Option<Picture>,
    },
    /// The user started or stopped typing to a room or a person (XEP-0085 chat states).
    Typing {
        /// Where.
        to: Peer,
        /// Typing now (composing), or no longer.
        typing: bool,
    },
    /// The user has seen the messages up to `id` (a XEP-0333 displayed marker; a read
    /// receipt).
    Displayed {
        /// Where.
        to: Peer,
        /// The message's id (its stanza-id, or the XMPP id it was sent with).
        id: String,
    },
    /// Remove someone else's message from a room, as a moderator (XEP-0425).
    Moderate {
        /// The room.
        room: RoomRef,
        /// The message's id (its stanza-id).
        id: String,
        /// Why, if the moderator said.
        reason: Option<String>,
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
    /// List the server's public rooms, or the rooms inside one that holds rooms (a Matrix
    /// space, listed with [`crate::ListedRoom::holds_rooms`]); answered by [`Event::RoomList`].
    ListRooms {
        /// The server.
        server: String,
        /// The room whose rooms to list instead of the server's.
        within: Option<RoomRef>,
    },
    /// A raw protocol line for the server (IRC only), typed by the user.
    Raw {
        /// The server.
        server: String,
        /// The line, without line ending.
        line: String,
    },
}
