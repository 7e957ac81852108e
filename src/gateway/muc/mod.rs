//! XEP-0045 multi-user chat over a remote network: IRC channels (and Matrix rooms) as MUC
//! rooms.
//!
//! All resources of one XMPP user share one puppet per server, and so one nick per room.
//! The core keeps, per user and room, which resources are in, who the members are and the
//! subject, so a second resource gets the whole join sequence from here without asking
//! the network. Everything is a pure function from (state, input) to [`Effects`]: stanzas
//! to send and actions for the network.
//!
//! This file holds the state of the rooms and what every direction shares. What arrives
//! from XMPP is handled in `xmpp_presence` (joins and leaves), `xmpp_message` and `xmpp_iq`;
//! what the network reports in `network_members` (who is in, under which nick),
//! `network_messages` (what is said) and `network_connection` (connections lost and won,
//! refused actions); channel lists (and the rooms of a room holding rooms) in `listing`.

mod listing;
mod network_connection;
mod network_members;
mod network_messages;
mod pictures;
mod receipts;
mod signals;
mod user_pictures;

pub use signals::{CHAT_MARKERS, CHAT_STATES};
mod xmpp_iq;
mod xmpp_message;
mod xmpp_presence;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use causeway_bridge::{Action, Event, Member, Peer, Picture, RoomRef, UserRef};
pub use pictures::VCARD;
use tokio_xmpp::jid::{BareJid, FullJid, Jid};
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::message::Message;
use tokio_xmpp::Stanza;
pub use user_pictures::PHOTO_ID;

use super::limits::RoomLimits;
use super::mam::{HistoryLimits, HistoryRequest, MamRequest};
use super::occupant_id::{self, OccupantIds};
use super::stanzas::occupant_presence;
use crate::address::{IrcAddressing, JidCache};
use crate::store::ArchivedMessage;

/// What handling one input produced.
#[derive(Debug, Default)]
pub struct Effects {
    /// Stanzas to send, in order.
    pub stanzas: Vec<Stanza>,
    /// Actions for the network, in order, each with what to do if it fails.
    pub requests: Vec<Request>,
    /// Messages for the archive.
    pub archive: Vec<ArchivedMessage>,
    /// Join history to read and insert among the stanzas.
    pub history: Vec<HistoryRequest>,
    /// MAM queries to answer.
    pub mam: Vec<MamRequest>,
    /// Ad-hoc command steps to run.
    pub adhoc: Vec<super::adhoc::AdhocRequest>,
    /// Registration requests (XEP-0077) to answer.
    pub register: Vec<super::register::RegisterRequest>,
    /// What to put into users' accounts (XEP-0356), if their server lets the gateway.
    pub pushes: Vec<super::privilege::Push>,
}

/// An action for the network on behalf of a user.
#[derive(Debug)]
pub struct Request {
    /// Whose.
    pub user: UserRef,
    /// What.
    pub action: Action,
    /// Whom to tell if the network refuses it.
    pub on_error: OnError,
}

/// How to report a refused action.
#[derive(Debug, Clone)]
pub enum OnError {
    /// A join: every resource waiting on it gets a presence error.
    Join(RoomKey),
    /// A channel list: every request waiting on it gets an iq error.
    List(listing::ListKey),
    /// Nobody: a signal clients send all the time (typing, read markers), whose refusal
    /// would only be noise.
    Quiet,
    /// A message: an error back to its sender.
    Message {
        /// The address the message went to.
        to: Jid,
        /// The sender.
        sender: FullJid,
        /// The message id.
        id: Option<String>,
    },
}

/// A room of one user: (user, server, folded channel name).
pub type RoomKey = (BareJid, String, String);

#[derive(Debug)]
struct Pending {
    /// The join's `<history/>` limits.
    history: HistoryLimits,
    resource: FullJid,
    nick: String,
    id: Option<String>,
}

#[derive(Debug)]
struct RoomState {
    room: RoomRef,
    /// The puppet's nick: the one asked for until joined, then the network's.
    nick: String,
    joined: bool,
    resources: BTreeSet<FullJid>,
    pending: Vec<Pending>,
    /// Members by folded nick, each with its occupant-id as `id` ([`OccupantIds::admit`]).
    members: BTreeMap<String, Member>,
    /// How occupant-ids are made.
    ids: OccupantIds,
    subject: String,
    /// Origin-ids of messages sent and not yet reflected, by message id.
    origin_ids: HashMap<String, Element>,
    /// Keep the puppet in the channel while no resource is joined (bouncer mode).
    persistent: bool,
    /// Archive what the channel shows this user.
    record: bool,
    /// The room's JID, and the in-room JID of the last nick that spoke: built once, not for
    /// every message (each takes stringprep).
    jid: Option<BareJid>,
    last_speaker: Option<(String, Jid)>,
    /// The room's picture, once the network brought it.
    picture: Option<Picture>,
}

impl RoomState {
    fn new(
        addressing: &IrcAddressing,
        ids: &OccupantIds,
        room: RoomRef,
        nick: String,
        record: bool,
    ) -> RoomState {
        RoomState {
            ids: ids.clone(),
            jid: addressing.channel_jid(&room.server, &room.name).ok(),
            room,
            nick,
            joined: false,
            resources: BTreeSet::new(),
            pending: vec![],
            members: BTreeMap::new(),
            subject: String::new(),
            origin_ids: HashMap::new(),
            persistent: false,
            record,
            last_speaker: None,
            picture: None,
        }
    }

    /// The room's JID.
    fn room_jid(&self) -> Option<Jid> {
        self.jid.clone().map(Jid::from)
    }

    /// The in-room JID of `nick`.
    fn occupant(&self, nick: &str) -> Option<Jid> {
        Some(self.jid.as_ref()?.with_resource_str(nick).ok()?.into())
    }

    /// The XEP-0421 occupant-id of whoever has `nick` here: a member's own, else one made
    /// from the nick (someone speaking from outside).
    fn occupant_id(&self, nick: &str) -> String {
        self.members
            .get(&fold(nick))
            .and_then(|m| m.id.clone())
            .unwrap_or_else(|| self.ids.of(&self.room, None, nick))
    }

    /// `stanza` from `nick`'s occupant JID, with their occupant-id (and, for a presence,
    /// their picture's hash).
    fn stamped(&self, nick: &str, stanza: Stanza) -> Stanza {
        let stanza = occupant_id::stamp(stanza, &self.occupant_id(nick));
        self.with_photo(nick, stanza)
    }

    /// `members` as the room keeps them: by folded nick, with their occupant-ids.
    fn admit_all(&self, members: Vec<Member>) -> BTreeMap<String, Member> {
        let mut admitted: BTreeMap<String, Member> = BTreeMap::new();
        for member in members {
            let member = self.ids.admit(&self.room, member, |id| {
                admitted.values().any(|m| m.id.as_deref() == Some(id))
            });
            admitted.insert(fold(&member.nick), member);
        }
        admitted
    }

    /// One newcomer as the room keeps it ([`RoomState::admit_all`]).
    fn admit(&self, member: Member) -> Member {
        let folded = fold(&member.nick);
        self.ids.admit(&self.room, member, |id| {
            self.members
                .iter()
                .any(|(nick, m)| *nick != folded && m.id.as_deref() == Some(id))
        })
    }

    /// [`RoomState::occupant`], remembered for the next message of the same nick.
    fn speaker(&mut self, nick: &str) -> Option<Jid> {
        match &self.last_speaker {
            Some((last, jid)) if last == nick => Some(jid.clone()),
            _ => {
                let jid = self.occupant(nick)?;
                self.last_speaker = Some((nick.to_owned(), jid.clone()));
                Some(jid)
            }
        }
    }

    /// `member`'s presence in the room as `to` sees it, without status codes: in, or
    /// `gone`.
    fn member_presence(&self, member: &Member, to: Jid, gone: bool) -> Option<Stanza> {
        let from = self.occupant(&member.nick)?;
        let mut presence = occupant_presence(from, to, member.privilege, gone, vec![], None, None);
        if let (Stanza::Presence(p), Some(picture), false) = (&mut presence, &member.picture, gone)
        {
            p.payloads.push(pictures::photo(Some(picture)));
        }
        Some(match &member.id {
            Some(id) => occupant_id::stamp(presence, id),
            None => occupant_id::stamp(presence, &self.occupant_id(&member.nick)),
        })
    }

    /// The subject as a message from `from` (the room, or who set it).
    fn subject_message(from: Jid, to: Jid, subject: &str) -> Stanza {
        let mut msg = Message::groupchat(Some(to));
        msg.from = Some(from);
        msg.subjects.insert(Default::default(), subject.to_owned());
        msg.into()
    }
}

/// The MUC side of the gateway core for one network domain.
#[derive(Debug)]
pub struct Muc {
    addressing: IrcAddressing,
    /// Channel lists fetched, and disco#items requests waiting for one.
    lists: listing::RoomLists,
    /// Rooms parted whose departure the network has not confirmed yet. A join made
    /// meanwhile has a room state of its own, which that confirmation must leave alone.
    parted: HashSet<RoomKey, foldhash::fast::RandomState>,
    /// Archive room messages.
    record: bool,
    /// Join history lines when the client asks for none in particular.
    history_lines: usize,
    rooms: HashMap<RoomKey, RoomState, foldhash::fast::RandomState>,
    /// How occupant-ids are made: keyed by the install's secret ([`Muc::with_occupant_ids`]).
    ids: OccupantIds,
    /// Private messages whose senders wait for a XEP-0184 receipt.
    receipts: receipts::Waiting,
    /// The bridge's user references already parsed as JIDs: every event names its user.
    users: JidCache<BareJid>,
    /// Rooms and servers one user may be in at once.
    limits: RoomLimits,
    /// After a restart with the IRC keeper: channels that are not persistent which the
    /// puppets were in, taken over if the keeper kept their connection (the network
    /// reports them joined), with their settings once known; forgotten when the grace is
    /// over ([`Muc::release_unclaimed`]).
    kept: HashMap<RoomKey, Expected, foldhash::fast::RandomState>,
    /// The users' own pictures, asked of their accounts when their clients name them.
    user_pictures: user_pictures::UserPictures,
}

/// A channel expected from the keeper after a restart.
#[derive(Debug)]
struct Expected {
    room: RoomRef,
    /// (persistent, recorded), once known.
    settings: Option<(bool, bool)>,
}

fn fold(name: &str) -> String {
    name.to_lowercase()
}

impl Muc {
    /// No rooms yet.
    pub fn new(addressing: IrcAddressing, record: bool, history_lines: usize) -> Muc {
        Muc {
            addressing,
            record,
            history_lines,
            rooms: HashMap::default(),
            // Until the install's key is handed in: one of this process only.
            ids: OccupantIds::new(&rand::random::<[u8; 32]>()),
            receipts: receipts::Waiting::default(),
            lists: listing::RoomLists::default(),
            parted: HashSet::default(),
            users: JidCache::default(),
            limits: RoomLimits::NONE,
            kept: HashMap::default(),
            user_pictures: Default::default(),
        }
    }

    /// With these limits on what one user may join.
    pub fn with_limits(mut self, limits: RoomLimits) -> Muc {
        self.limits = limits;
        self
    }

    /// Occupant-ids made with these keys (the install's secret, so that they outlive the
    /// process).
    pub fn with_occupant_ids(mut self, ids: OccupantIds) -> Muc {
        self.ids = ids;
        self
    }

    /// New limits (a configuration reload): for joins from now on.
    pub fn set_limits(&mut self, limits: RoomLimits) {
        self.limits = limits;
    }

    /// New defaults (a configuration reload): for rooms joined from now on.
    pub fn set_defaults(&mut self, record: bool, history_lines: usize) {
        self.record = record;
        self.history_lines = history_lines;
    }

    /// The addressing in use.
    pub fn addressing(&self) -> &IrcAddressing {
        &self.addressing
    }

    fn key(user: &BareJid, room: &RoomRef) -> RoomKey {
        (
            user.clone(),
            room.server.to_ascii_lowercase(),
            fold(&room.name),
        )
    }

    fn room_jid(&self, room: &RoomRef) -> Option<Jid> {
        self.addressing
            .channel_jid(&room.server, &room.name)
            .ok()
            .map(Jid::from)
    }

    /// Whether the user's channel is persistent and archived (decided from the settings when
    /// it is joined).
    pub fn set_channel_settings(
        &mut self,
        user: &BareJid,
        room: &RoomRef,
        persistent: bool,
        record: bool,
    ) {
        let key = Self::key(user, room);
        if let Some(state) = self.rooms.get_mut(&key) {
            state.persistent = persistent;
            state.record = record;
        } else if let Some(expected) = self.kept.get_mut(&key) {
            expected.settings = Some((persistent, record));
        }
    }

    /// What the network reported.
    pub fn handle_event(&mut self, event: Event) -> Effects {
        let mut fx = Effects::default();
        let Ok(user) = self.users.get(&event.user().0) else {
            return fx;
        };
        match event {
            Event::Joined {
                room,
                nick,
                members,
                subject,
                ..
            } => self.joined(&mut fx, &user, room, nick, members, subject),
            Event::JoinFailed {
                room,
                failure,
                text,
                ..
            } => fx.stanzas = self.join_failed(&Self::key(&user, &room), failure, &text),
            Event::Left {
                room,
                departure,
                reason,
                ..
            } => self.left(&mut fx, &user, &room, departure, reason),
            Event::MemberJoined { room, member, .. } => {
                self.member_joined(&mut fx, &user, &room, member)
            }
            Event::MemberLeft {
                room,
                nick,
                departure,
                reason,
                ..
            } => self.member_left(&mut fx, &user, &room, &nick, departure, reason),
            Event::NickChanged {
                rooms, old, new, ..
            } => self.nick_changed(&mut fx, &user, rooms, &old, &new),
            Event::MemberPicture {
                room,
                nick,
                picture,
                ..
            } => self.member_picture(&mut fx, &user, &room, &nick, picture),
            Event::RoomPicture { room, picture, .. } => {
                self.room_picture(&mut fx, &user, &room, picture)
            }
            Event::MemberAway {
                rooms,
                nick,
                message,
                ..
            } => self.member_away(&mut fx, &user, rooms, &nick, message),
            Event::NickRefused {
                server,
                nick,
                in_use,
                text,
                ..
            } => self.nick_refused(&mut fx, &user, &server, &nick, in_use, &text),
            Event::PrivilegeChanged {
                room,
                nick,
                privilege,
                ..
            } => self.privilege_changed(&mut fx, &user, &room, &nick, privilege),
            event @ Event::Message {
                peer: Peer::Room(_),
                ..
            } => self.room_message(&mut fx, &user, event),
            event @ Event::Message { .. } => self.private_message(&mut fx, &user, event),
            Event::History { room, messages, .. } => self.history(&mut fx, &user, &room, messages),
            Event::Subject {
                room, subject, by, ..
            } => self.subject(&mut fx, &user, &room, subject, by),
            Event::Retracted {
                peer: Peer::Room(room),
                id,
                from,
                moderator,
                reason,
                ..
            } => self.retracted(&mut fx, &user, &room, &id, &from, moderator, reason),
            Event::Reactions {
                peer: Peer::Room(room),
                from,
                id,
                reactions,
                ..
            } => self.reactions(&mut fx, &user, &room, &from, &id, &reactions),
            event @ (Event::Retracted { .. } | Event::Reactions { .. }) => {
                self.direct_rich(&mut fx, &user, event)
            }
            event @ (Event::Typing { .. } | Event::Displayed { .. }) => {
                self.signal(&mut fx, &user, event)
            }
            Event::Invited {
                room, by, reason, ..
            } => fx.stanzas.extend(self.invitation(&user, &room, by, reason)),
            Event::RoomList {
                server,
                within,
                rooms,
                ..
            } => self.room_list(&mut fx, &user, server, within, rooms),
            Event::ServerText { server, text, .. } => {
                self.server_text(&mut fx, user, &server, &text)
            }
            Event::SendFailed { peer, id, text, .. } => {
                if let Some(id) = &id {
                    self.receipts.forget(&user, id);
                }
                self.send_failed(&mut fx, user, peer, id, text)
            }
            Event::Delivered { id, .. } => self.delivered(&mut fx, &user, &id),
            Event::Disconnected {
                server,
                reason,
                retrying,
                ..
            } => self.disconnected(&mut fx, &user, &server, &reason, retrying),
            Event::Reconnected { server, .. } => self.reconnected(&mut fx, &user, &server),
            // The core answers it once the archive has what came before (`serve.rs`).
            Event::Checkpoint { .. } => {}
        }
        fx
    }

    /// One stanza per joined resource of `user` in `room`.
    fn broadcast(
        &self,
        fx: &mut Effects,
        user: &BareJid,
        room: &RoomRef,
        build: impl Fn(&RoomState, Jid) -> Option<Stanza>,
    ) {
        self.broadcast_to(fx, &Self::key(user, room), build)
    }

    /// [`Muc::broadcast`] with the room's key at hand.
    fn broadcast_to(
        &self,
        fx: &mut Effects,
        key: &RoomKey,
        build: impl Fn(&RoomState, Jid) -> Option<Stanza>,
    ) {
        let Some(state) = self.rooms.get(key) else {
            return;
        };
        for resource in &state.resources {
            if let Some(stanza) = build(state, resource.clone().into()) {
                fx.stanzas.push(stanza);
            }
        }
    }

    /// The user's rooms on a server, with the puppet's nick in each (for connection info).
    pub fn user_rooms(&self, user: &BareJid, server: &str) -> Vec<(String, String)> {
        self.rooms
            .iter()
            .filter(|(key, _)| key.0 == *user && key.1.eq_ignore_ascii_case(server))
            .map(|(_, state)| (state.room.name.clone(), state.nick.clone()))
            .collect()
    }

    /// Each user with rooms, and those rooms' JIDs (for the admins' session list).
    pub fn sessions(&self) -> Vec<(String, Vec<String>)> {
        let mut by_user: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (key, state) in &self.rooms {
            if let Some(room) = state.room_jid() {
                let mark = if state.resources.is_empty() {
                    " (persistent, nobody online)"
                } else {
                    ""
                };
                by_user
                    .entry(key.0.to_string())
                    .or_default()
                    .push(format!("{room}{mark}"));
            }
        }
        by_user.into_iter().collect()
    }

    /// Every resource joined anywhere, with the room JID and own occupant JID, for the
    /// shutdown announcement.
    pub fn joined_everywhere(&self) -> Vec<(Jid, Jid, String)> {
        let mut out = Vec::new();
        for state in self.rooms.values() {
            if let Some(occupant) = state.occupant(&state.nick) {
                let id = state.occupant_id(&state.nick);
                for resource in &state.resources {
                    out.push((occupant.clone(), resource.clone().into(), id.clone()));
                }
            }
        }
        out
    }
}

pub(crate) fn new_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("cw{:x}{:x}", nanos, NEXT.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
mod tests;
