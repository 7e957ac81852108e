//! XEP-0045 multi-user chat over a remote network: IRC channels as MUC rooms.
//!
//! All resources of one XMPP user share one puppet per server, and so one nick per room.
//! The core keeps, per user and room, which resources are in, who the members are and the
//! subject, so a second resource gets the whole join sequence from here without asking
//! the network. Everything is a pure function from (state, input) to [`Effects`]: stanzas
//! to send and actions for the network.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use causeway_bridge::{
    Action, BridgeError, Departure, Event, JoinFailure, Member, MessageKind, Peer, Privilege, Refs,
    RoomRef, UserRef,
};
use tokio_xmpp::jid::{BareJid, FullJid, Jid};
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::message::{Message, MessageType};
use tokio_xmpp::parsers::muc::user::Status;
use tokio_xmpp::parsers::muc::Muc as MucJoin;
use tokio_xmpp::parsers::ns;
use tokio_xmpp::parsers::presence::{Presence, Type as PresenceType};
use tokio_xmpp::parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};
use tokio_xmpp::Stanza;

use super::mam::{new_stanza_id, stanza_id_element, HistoryLimits, HistoryRequest, MamRequest};
use super::rich;
use super::stanzas::nc;
use super::stanzas::{delay, error, message, message_error, occupant_presence, presence_error};
use crate::address::{IrcAddress, IrcAddressing, JidCache};
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
    List(BareJid, String),
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

/// XEP-0045's admin namespace (xmpp-parsers has no type for it).
const MUC_ADMIN: &str = "http://jabber.org/protocol/muc#admin";

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
    /// Members by folded nick.
    members: BTreeMap<String, Member>,
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
}

impl RoomState {
    fn new(addressing: &IrcAddressing, room: RoomRef, nick: String, record: bool) -> RoomState {
        RoomState {
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
}

/// A disco#items request on a server JID, waiting for the channel list.
#[derive(Debug)]
struct PendingList {
    requester: FullJid,
    iq_id: String,
    rsm: Option<tokio_xmpp::parsers::rsm::SetQuery>,
}

/// One entry of a channel list: name, member count, topic.
type ListedRoom = (String, u32, String);

/// How long a channel list serves further pages before LIST is sent again.
const LIST_FRESH: std::time::Duration = std::time::Duration::from_secs(120);

/// The MUC side of the gateway core for one IRC domain.
#[derive(Debug)]
pub struct Muc {
    addressing: IrcAddressing,
    /// Channel lists by (user, server), with when they came.
    room_lists: HashMap<(BareJid, String), (std::time::Instant, Vec<ListedRoom>)>,
    /// disco#items requests waiting for a list.
    pending_lists: HashMap<(BareJid, String), Vec<PendingList>>,
    /// Rooms parted whose departure the network has not confirmed yet. A join made
    /// meanwhile has a room state of its own, which that confirmation must leave alone.
    parted: HashSet<RoomKey, foldhash::fast::RandomState>,
    /// Archive room messages.
    record: bool,
    /// Join history lines when the client asks for none in particular.
    history_lines: usize,
    rooms: HashMap<RoomKey, RoomState, foldhash::fast::RandomState>,
    /// The bridge's user references already parsed as JIDs: every event names its user.
    users: JidCache<BareJid>,
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
            room_lists: HashMap::new(),
            pending_lists: HashMap::new(),
            parted: HashSet::default(),
            users: JidCache::default(),
        }
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

    /// A presence from an allowed user to a room or occupant JID.
    pub fn handle_presence(
        &mut self,
        presence: Presence,
        from: FullJid,
        to: Jid,
        address: IrcAddress,
    ) -> Effects {
        let mut fx = Effects::default();
        let IrcAddress::Channel {
            server,
            channel,
            nick,
        } = address
        else {
            if presence.type_ == PresenceType::None {
                let err = error(
                    ErrorType::Cancel,
                    DefinedCondition::ServiceUnavailable,
                    format!("{to} is not a room"),
                );
                fx.stanzas
                    .push(presence_error(to, from.into(), presence.id, err));
            }
            return fx;
        };
        let room = RoomRef {
            server,
            name: channel,
        };
        let key = Self::key(&from.to_bare(), &room);
        match presence.type_ {
            PresenceType::None => {
                let Some(nick) = nick.filter(|n| !n.trim().is_empty()) else {
                    let err = error(
                        ErrorType::Modify,
                        DefinedCondition::JidMalformed,
                        "join with a nick: room@domain/nick",
                    );
                    fx.stanzas
                        .push(presence_error(to, from.into(), presence.id, err));
                    return fx;
                };
                let password = presence
                    .payloads
                    .iter()
                    .find(|p| p.is("x", ns::MUC))
                    .and_then(|p| MucJoin::try_from(p.clone()).ok())
                    .and_then(|m| m.password);
                let x = presence.payloads.iter().find(|p| p.is("x", ns::MUC));
                let history = HistoryLimits::from_join(x);
                self.join(
                    &mut fx,
                    key,
                    room,
                    Pending {
                        resource: from,
                        nick,
                        id: presence.id,
                        history,
                    },
                    password,
                );
            }
            PresenceType::Unavailable => self.leave(
                &mut fx,
                &key,
                &from,
                presence.statuses.values().next().cloned(),
            ),
            _ => {}
        }
        fx
    }

    fn join(
        &mut self,
        fx: &mut Effects,
        key: RoomKey,
        room: RoomRef,
        joiner: Pending,
        password: Option<String>,
    ) {
        if let Some(state) = self.rooms.get_mut(&key) {
            if state.resources.contains(&joiner.resource) {
                if joiner.nick != state.nick {
                    // A joined resource asking for another nick: an IRC nick change.
                    fx.requests.push(Request {
                        user: UserRef(key.0.to_string()),
                        action: Action::ChangeNick {
                            server: state.room.server.clone(),
                            nick: joiner.nick,
                            room: Some(state.room.clone()),
                        },
                        on_error: OnError::Message {
                            to: joiner.resource.clone().into(),
                            sender: joiner.resource,
                            id: joiner.id,
                        },
                    });
                }
                return;
            }
            if state.joined {
                state.resources.insert(joiner.resource.clone());
                self.push_join_sequence(fx, &key, &joiner);
            } else {
                state.pending.push(joiner);
            }
            return;
        }
        let nick = joiner.nick.clone();
        let mut state = RoomState::new(&self.addressing, room.clone(), nick.clone(), self.record);
        state.pending.push(joiner);
        self.rooms.insert(key.clone(), state);
        fx.requests.push(Request {
            user: UserRef(key.0.to_string()),
            action: Action::Join {
                room,
                nick,
                password,
            },
            on_error: OnError::Join(key),
        });
    }

    /// The join sequence into `fx`, with the join history (if any is wanted) read in just
    /// before the subject.
    fn push_join_sequence(&self, fx: &mut Effects, key: &RoomKey, joiner: &Pending) {
        let mut stanzas = self.join_sequence(key, joiner);
        let subject = stanzas.pop();
        fx.stanzas.extend(stanzas);
        let room = self.rooms.get(key).and_then(|s| s.jid.clone());
        if let Some(room) = room {
            let (query, max_chars) =
                joiner
                    .history
                    .query(&key.0.to_string(), &room.to_string(), self.history_lines);
            if query.max > 0 && max_chars != Some(0) {
                fx.history.push(HistoryRequest {
                    position: fx.stanzas.len(),
                    to: joiner.resource.clone(),
                    room,
                    query,
                    max_chars,
                });
            }
        }
        fx.stanzas.extend(subject);
    }

    /// Occupants, then self-presence (110, and 210 when the nick is not the one asked
    /// for), then the subject — always, empty when there is none.
    fn join_sequence(&self, key: &RoomKey, joiner: &Pending) -> Vec<Stanza> {
        let Some(state) = self.rooms.get(key) else {
            return vec![];
        };
        let to: Jid = joiner.resource.clone().into();
        let own = fold(&state.nick);
        let mut out = Vec::new();
        for (folded, member) in &state.members {
            if *folded == own {
                continue;
            }
            if let Some(from) = state.occupant(&member.nick) {
                out.push(occupant_presence(
                    from,
                    to.clone(),
                    member.privilege,
                    false,
                    vec![],
                    None,
                    None,
                ));
            }
        }
        let own_privilege = state
            .members
            .get(&own)
            .map(|m| m.privilege)
            .unwrap_or_default();
        let mut statuses = vec![Status::SelfPresence];
        if state.nick != joiner.nick {
            statuses.push(Status::AssignedNick);
        }
        if let Some(from) = state.occupant(&state.nick) {
            let mut presence =
                occupant_presence(from, to.clone(), own_privilege, false, statuses, None, None);
            if let Stanza::Presence(p) = &mut presence {
                p.id = joiner.id.clone();
            }
            out.push(presence);
        }
        if let Some(room_jid) = state.room_jid() {
            let mut subject = Message::groupchat(Some(to));
            subject.from = Some(room_jid);
            subject
                .subjects
                .insert(Default::default(), state.subject.clone());
            out.push(subject.into());
        }
        out
    }

    fn leave(&mut self, fx: &mut Effects, key: &RoomKey, from: &FullJid, reason: Option<String>) {
        let Some(state) = self.rooms.get(key) else {
            return;
        };
        let occupant = state.occupant(&state.nick);
        let privilege = state
            .members
            .get(&fold(&state.nick))
            .map(|m| m.privilege)
            .unwrap_or_default();
        let state = self.rooms.get_mut(key).expect("present above");
        state.pending.retain(|p| p.resource != *from);
        if state.resources.remove(from) {
            if let Some(occupant) = occupant {
                fx.stanzas.push(occupant_presence(
                    occupant,
                    from.clone().into(),
                    privilege,
                    true,
                    vec![Status::SelfPresence],
                    None,
                    None,
                ));
            }
        }
        if state.resources.is_empty() && state.pending.is_empty() {
            if state.persistent && state.joined {
                // Bouncer mode: the puppet stays, the archive keeps recording.
                return;
            }
            let state = self.rooms.remove(key).expect("present above");
            self.parted.insert(key.clone());
            fx.requests.push(Request {
                user: UserRef(key.0.to_string()),
                action: Action::Part {
                    room: state.room,
                    reason,
                },
                on_error: OnError::Message {
                    to: from.clone().into(),
                    sender: from.clone(),
                    id: None,
                },
            });
        }
    }

    /// A message from an allowed user to a room, an occupant or an IRC user.
    pub fn handle_message(
        &mut self,
        mut msg: Message,
        from: FullJid,
        to: Jid,
        address: IrcAddress,
    ) -> Effects {
        let mut fx = Effects::default();
        let bare = from.clone().into_bare();
        let user = UserRef(bare.as_str().to_owned());
        let id = msg.id.take().map(|i| i.0);
        // The body without a language, else the first; taken, as nothing else reads it.
        let body = msg
            .bodies
            .remove("")
            .or_else(|| msg.bodies.pop_first().map(|(_, body)| body));
        let refuse = |fx: &mut Effects, condition, text: String| {
            fx.stanzas.push(message_error(
                to.clone(),
                from.clone().into(),
                id.clone(),
                error(ErrorType::Cancel, condition, text),
            ));
        };
        let rich = self.addressing.is_matrix();
        match address {
            IrcAddress::Channel {
                server,
                channel,
                nick: None,
            } if msg.type_ == MessageType::Groupchat => {
                let room = RoomRef {
                    server,
                    name: channel,
                };
                let key = Self::key(&bare, &room);
                let Some(state) = self
                    .rooms
                    .get_mut(&key)
                    .filter(|s| s.resources.contains(&from))
                else {
                    refuse(
                        &mut fx,
                        DefinedCondition::NotAcceptable,
                        format!("you are not in {}: join it first", room.name),
                    );
                    return fx;
                };
                if let (Some(subject), None) = (msg.subjects.values().next(), &body) {
                    let action = Action::SetSubject {
                        room: state.room.clone(),
                        subject: subject.clone(),
                    };
                    fx.requests
                        .push(message_request(user, action, to, from, id));
                    return fx;
                }
                let peer = Peer::Room(state.room.clone());
                if let Some(action) = rich.then(|| rich_action(&msg, &peer)).flatten() {
                    fx.requests
                        .push(message_request(user, action, to, from, id));
                    return fx;
                }
                let Some(body) = body else { return fx };
                let id = id.unwrap_or_else(new_id);
                if let Some(origin) = msg.payloads.iter().find(|p| p.is("origin-id", ns::SID)) {
                    state.origin_ids.insert(id.clone(), origin.clone());
                }
                let action = send_action(rich, &msg, body, peer, id.clone());
                fx.requests
                    .push(message_request(user, action, to, from, Some(id)));
            }
            IrcAddress::Channel {
                server,
                nick: Some(nick),
                ..
            }
            | IrcAddress::User { server, nick } => {
                let peer = Peer::User { server, nick };
                if let Some(action) = rich.then(|| rich_action(&msg, &peer)).flatten() {
                    fx.requests
                        .push(message_request(user, action, to, from, id));
                    return fx;
                }
                let Some(body) = body else { return fx };
                let id = id.unwrap_or_else(new_id);
                let action = send_action(rich, &msg, body, peer, id.clone());
                fx.requests
                    .push(message_request(user, action, to, from, Some(id)));
            }
            IrcAddress::Server { server } => {
                let Some(body) = body else { return fx };
                for line in body.lines().filter(|l| !l.trim().is_empty()) {
                    fx.requests.push(Request {
                        user: user.clone(),
                        action: Action::Raw {
                            server: server.clone(),
                            line: line.to_owned(),
                        },
                        on_error: OnError::Message {
                            to: to.clone(),
                            sender: from.clone(),
                            id: id.clone(),
                        },
                    });
                }
            }
            IrcAddress::Channel { .. } => {
                if body.is_some() {
                    refuse(
                        &mut fx,
                        DefinedCondition::BadRequest,
                        "messages to a room are of type groupchat".into(),
                    );
                }
            }
            IrcAddress::Gateway => {}
        }
        fx
    }

    /// What to tell the user when the network refused an action.
    pub fn request_failed(&mut self, on_error: OnError, err: &BridgeError) -> Vec<Stanza> {
        match on_error {
            OnError::Join(key) => {
                let failure = match err {
                    BridgeError::Invalid(_) => JoinFailure::BadNick,
                    BridgeError::Unreachable(_) => JoinFailure::Unreachable,
                    _ => JoinFailure::Other,
                };
                self.join_failed(&key, failure, &err.to_string())
            }
            OnError::List(user, server) => {
                let from = self.addressing.server_jid(&server).map(Jid::from).ok();
                self.pending_lists
                    .remove(&(user, server))
                    .unwrap_or_default()
                    .into_iter()
                    .map(|p| {
                        let error = error(
                            ErrorType::Cancel,
                            DefinedCondition::RemoteServerNotFound,
                            format!("{err}: join a channel on this server first"),
                        );
                        tokio_xmpp::parsers::iq::Iq::Error {
                            from: from.clone(),
                            to: Some(p.requester.into()),
                            id: p.iq_id,
                            error,
                            payload: None,
                        }
                        .into()
                    })
                    .collect()
            }
            OnError::Message { to, sender, id } => {
                let condition = match err {
                    BridgeError::NotFound(_) => DefinedCondition::ItemNotFound,
                    BridgeError::Invalid(_) => DefinedCondition::BadRequest,
                    BridgeError::Unreachable(_) => DefinedCondition::RemoteServerNotFound,
                    _ => DefinedCondition::ServiceUnavailable,
                };
                vec![message_error(
                    to,
                    sender.into(),
                    id,
                    error(ErrorType::Cancel, condition, err.to_string()),
                )]
            }
        }
    }

    fn join_failed(&mut self, key: &RoomKey, failure: JoinFailure, text: &str) -> Vec<Stanza> {
        let Some(mut state) = self.rooms.remove(key) else {
            return vec![];
        };
        let (type_, condition) = match failure {
            JoinFailure::NickInUse => (ErrorType::Cancel, DefinedCondition::Conflict),
            JoinFailure::BadNick => (ErrorType::Modify, DefinedCondition::JidMalformed),
            JoinFailure::InviteOnly => (ErrorType::Auth, DefinedCondition::RegistrationRequired),
            JoinFailure::Banned => (ErrorType::Auth, DefinedCondition::Forbidden),
            JoinFailure::BadKey => (ErrorType::Auth, DefinedCondition::NotAuthorized),
            JoinFailure::Full => (ErrorType::Wait, DefinedCondition::ServiceUnavailable),
            JoinFailure::NoSuchRoom => (ErrorType::Cancel, DefinedCondition::ItemNotFound),
            JoinFailure::Unreachable => (ErrorType::Cancel, DefinedCondition::RemoteServerNotFound),
            JoinFailure::Other => (ErrorType::Cancel, DefinedCondition::NotAllowed),
        };
        let mut out = Vec::new();
        for pending in std::mem::take(&mut state.pending) {
            if let Some(from) = state.occupant(&pending.nick) {
                out.push(presence_error(
                    from,
                    pending.resource.into(),
                    pending.id,
                    error(type_.clone(), condition.clone(), text),
                ));
            }
        }
        out
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
        if let Some(state) = self.rooms.get_mut(&Self::key(user, room)) {
            state.persistent = persistent;
            state.record = record;
        }
    }

    /// Join a persistent channel again after a restart, with nobody waiting for it.
    pub fn rejoin(&mut self, user: &BareJid, room: RoomRef, nick: String) -> Effects {
        let mut fx = Effects::default();
        let key = Self::key(user, &room);
        if self.rooms.contains_key(&key) {
            return fx;
        }
        let mut state = RoomState::new(&self.addressing, room.clone(), nick.clone(), self.record);
        state.persistent = true;
        self.rooms.insert(key.clone(), state);
        fx.requests.push(Request {
            user: UserRef(user.to_string()),
            action: Action::Join {
                room,
                nick,
                password: None,
            },
            on_error: OnError::Join(key),
        });
        fx
    }

    /// disco#items on a server JID: the IRC channel list, paged with XEP-0059. A list fetched
    /// in the last two minutes serves further pages; otherwise the puppet sends LIST.
    pub fn list_rooms(
        &mut self,
        requester: FullJid,
        server: String,
        iq_id: String,
        payload: &Element,
    ) -> Effects {
        let mut fx = Effects::default();
        let rsm = tokio_xmpp::parsers::disco::DiscoItemsQuery::try_from(payload.clone())
            .ok()
            .and_then(|q| q.rsm);
        let key = (requester.to_bare(), server.to_ascii_lowercase());
        let pending = PendingList {
            requester,
            iq_id,
            rsm,
        };
        if let Some((at, rooms)) = self.room_lists.get(&key) {
            if at.elapsed() < LIST_FRESH {
                fx.stanzas.push(self.answer_list(&server, rooms, &pending));
                return fx;
            }
        }
        let waiting = self.pending_lists.entry(key.clone()).or_default();
        waiting.push(pending);
        if waiting.len() == 1 {
            fx.requests.push(Request {
                user: UserRef(key.0.to_string()),
                action: Action::ListRooms { server },
                on_error: OnError::List(key.0, key.1),
            });
        }
        fx
    }

    fn answer_list(
        &self,
        server: &str,
        rooms: &[(String, u32, String)],
        pending: &PendingList,
    ) -> Stanza {
        use tokio_xmpp::parsers::disco::{DiscoItemsResult, Item};
        use tokio_xmpp::parsers::rsm::{First, SetResult};
        let mut sorted: Vec<&ListedRoom> = rooms.iter().collect();
        sorted.sort_by_key(|room| room.0.to_lowercase());
        let ids: Vec<Option<BareJid>> = sorted
            .iter()
            .map(|(name, _, _)| self.addressing.channel_jid(server, name).ok())
            .collect();
        let position = |id: &str| {
            ids.iter()
                .position(|j| j.as_ref().is_some_and(|j| j.to_string() == id))
        };
        let (max, after, before) = match &pending.rsm {
            Some(q) => (
                q.max.unwrap_or(usize::MAX),
                q.after.clone(),
                q.before.clone(),
            ),
            None => (usize::MAX, None, None),
        };
        let (start, end) = match (after, before) {
            (Some(after), _) => {
                let start = position(&after).map_or(sorted.len(), |p| p + 1);
                (start, start.saturating_add(max).min(sorted.len()))
            }
            (None, Some(before)) => {
                let end = if before.is_empty() {
                    sorted.len()
                } else {
                    position(&before).unwrap_or(0)
                };
                (end.saturating_sub(max), end)
            }
            (None, None) => (0, max.min(sorted.len())),
        };
        let items: Vec<Item> = (start..end)
            .filter_map(|i| {
                let (name, count, topic) = sorted[i];
                let jid = ids[i].clone()?;
                let label = if topic.is_empty() {
                    format!("{name} ({count})")
                } else {
                    format!("{name} ({count}) – {topic}")
                };
                Some(Item {
                    jid: jid.into(),
                    node: None,
                    name: Some(label),
                })
            })
            .collect();
        let rsm = pending.rsm.as_ref().map(|_| SetResult {
            first: items.first().map(|i| First {
                index: Some(start),
                item: i.jid.to_string(),
            }),
            last: items.last().map(|i| i.jid.to_string()),
            count: Some(sorted.len()),
        });
        let from = self.addressing.server_jid(server).map(Jid::from).ok();
        let result = DiscoItemsResult {
            node: None,
            items,
            rsm,
        };
        tokio_xmpp::parsers::iq::Iq::Result {
            from,
            to: Some(pending.requester.clone().into()),
            id: pending.iq_id.clone(),
            payload: Some(result.into()),
        }
        .into()
    }

    /// An iq to a room or occupant from an allowed user: muc#admin (kick, roles,
    /// affiliations, lists). `Ok` carries the result payload and the network actions.
    pub fn handle_iq(
        &mut self,
        from: FullJid,
        address: IrcAddress,
        payload: Element,
        is_get: bool,
    ) -> Result<(Option<Element>, Vec<Request>), StanzaError> {
        let unsupported = || {
            error(
                ErrorType::Cancel,
                DefinedCondition::ServiceUnavailable,
                format!(
                    "<{} xmlns='{}'/> is not supported here",
                    payload.name(),
                    payload.ns()
                ),
            )
        };
        // XEP-0410 self-ping, answered here: the client learns whether it is still joined
        // without anything reaching IRC.
        if let IrcAddress::Channel {
            server,
            channel,
            nick: Some(nick),
        } = &address
        {
            if !payload.is("ping", ns::PING) || !is_get {
                return Err(unsupported());
            }
            let room = RoomRef {
                server: server.clone(),
                name: channel.clone(),
            };
            let joined = self
                .rooms
                .get(&Self::key(&from.to_bare(), &room))
                .is_some_and(|s| s.resources.contains(&from) && fold(&s.nick) == fold(nick));
            return if joined {
                Ok((None, vec![]))
            } else {
                Err(error(
                    ErrorType::Cancel,
                    DefinedCondition::NotAcceptable,
                    format!("you are not joined to {channel} as {nick}"),
                ))
            };
        }
        let IrcAddress::Channel {
            server,
            channel,
            nick: None,
        } = address
        else {
            return Err(unsupported());
        };
        if payload.is("query", ns::DISCO_INFO) && !is_get {
            return Err(unsupported());
        }
        if payload.is("query", ns::DISCO_INFO) {
            // What the room offers; its occupant count is the puppet's view, when joined.
            let room = RoomRef {
                server,
                name: channel,
            };
            let occupants = self
                .rooms
                .get(&Self::key(&from.to_bare(), &room))
                .map(|s| s.members.len());
            return Ok((
                Some(super::disco::room_info(
                    &room.name,
                    occupants,
                    self.addressing.is_matrix(),
                )),
                vec![],
            ));
        }
        if !payload.is("query", MUC_ADMIN) {
            return Err(unsupported());
        }
        let room = RoomRef {
            server,
            name: channel,
        };
        let key = Self::key(&from.to_bare(), &room);
        let Some(state) = self.rooms.get(&key).filter(|s| s.resources.contains(&from)) else {
            return Err(error(
                ErrorType::Cancel,
                DefinedCondition::NotAcceptable,
                format!("you are not in {}", room.name),
            ));
        };
        let user = UserRef(key.0.to_string());
        if is_get {
            // A list by role or affiliation, from the members the puppet sees.
            let wanted = payload.children().find(|c| c.is("item", MUC_ADMIN));
            let role = wanted.and_then(|w| w.attr("role"));
            let affiliation = wanted.and_then(|w| w.attr("affiliation"));
            let mut query = Element::builder("query", MUC_ADMIN);
            for member in state.members.values() {
                let (a, r) = super::stanzas::affiliation_and_role_names(member.privilege);
                if role.is_some_and(|x| x != r) || affiliation.is_some_and(|x| x != a) {
                    continue;
                }
                query = query.append(
                    Element::builder("item", MUC_ADMIN)
                        .attr(nc("nick"), member.nick.as_str())
                        .attr(nc("role"), r)
                        .attr(nc("affiliation"), a),
                );
            }
            return Ok((Some(query.build()), vec![]));
        }
        let mut requests = Vec::new();
        for item in payload.children().filter(|c| c.is("item", MUC_ADMIN)) {
            let Some(nick) = item.attr("nick").map(str::to_owned) else {
                return Err(error(
                    ErrorType::Modify,
                    DefinedCondition::BadRequest,
                    "IRC moderation needs the occupant's nick",
                ));
            };
            let reason = item
                .get_child("reason", MUC_ADMIN)
                .map(|r| r.text())
                .filter(|r| !r.is_empty());
            let room = state.room.clone();
            let action = match (item.attr("role"), item.attr("affiliation")) {
                (Some("none"), _) => Action::Kick { room, nick, reason },
                (role, affiliation) => {
                    // biboumi's mapping, read backwards: a role wins over an affiliation.
                    let privilege = match (role, affiliation) {
                        (Some("moderator"), _) | (None, Some("admin")) => Privilege::Op,
                        (Some("participant"), _) | (None, Some("member")) => Privilege::Voice,
                        (Some("visitor"), _) | (None, Some("none")) => Privilege::None,
                        (None, Some("owner")) => Privilege::Owner,
                        _ => {
                            return Err(error(
                                ErrorType::Cancel,
                                DefinedCondition::FeatureNotImplemented,
                                "this role or affiliation has no IRC equivalent",
                            ))
                        }
                    };
                    Action::SetPrivilege {
                        room,
                        nick,
                        privilege,
                    }
                }
            };
            requests.push(Request {
                user: user.clone(),
                action,
                on_error: OnError::Message {
                    to: state.room_jid().unwrap_or_else(|| from.clone().into()),
                    sender: from.clone(),
                    id: None,
                },
            });
        }
        if requests.is_empty() {
            return Err(error(
                ErrorType::Modify,
                DefinedCondition::BadRequest,
                "no item to change",
            ));
        }
        Ok((None, requests))
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
            } => {
                let key = Self::key(&user, &room);
                // In again: the network confirms a departure before the join that follows.
                self.parted.remove(&key);
                let Some(state) = self.rooms.get_mut(&key) else {
                    // Nobody waits for this room any more: leave it again.
                    self.parted.insert(key.clone());
                    fx.requests.push(Request {
                        user: UserRef(user.to_string()),
                        action: Action::Part {
                            room: room.clone(),
                            reason: None,
                        },
                        on_error: OnError::Join(key),
                    });
                    return fx;
                };
                let members: BTreeMap<String, Member> =
                    members.into_iter().map(|m| (fold(&m.nick), m)).collect();
                if state.joined {
                    // Joined again after a reconnection: tell what changed meanwhile.
                    self.rejoined(&mut fx, &key, nick, members, subject);
                    return fx;
                }
                state.joined = true;
                state.nick = nick;
                state.subject = subject;
                state.members = members;
                let pending = std::mem::take(&mut state.pending);
                for joiner in pending {
                    if let Some(state) = self.rooms.get_mut(&key) {
                        state.resources.insert(joiner.resource.clone());
                    }
                    self.push_join_sequence(&mut fx, &key, &joiner);
                }
            }
            Event::Disconnected {
                server,
                reason,
                retrying,
                ..
            } => {
                let text = if retrying {
                    format!("Connection to {server} lost ({reason}); reconnecting…")
                } else {
                    format!("Connection to {server} lost for good: {reason}")
                };
                self.notice_server_rooms(&mut fx, &user, &server, &text);
            }
            Event::Reconnected { server, .. } => {
                self.notice_server_rooms(
                    &mut fx,
                    &user,
                    &server,
                    &format!("Reconnected to {server}; joining the channels again."),
                );
            }
            Event::JoinFailed {
                room,
                failure,
                text,
                ..
            } => {
                let key = Self::key(&user, &room);
                fx.stanzas = self.join_failed(&key, failure, &text);
            }
            Event::Left {
                room,
                departure,
                reason,
                ..
            } => {
                let key = Self::key(&user, &room);
                if self.parted.remove(&key) {
                    // The departure the user asked for, answered when they left. A room
                    // state here is a join made since: the PART's echo overtook it.
                    return fx;
                }
                let Some(mut state) = self.rooms.remove(&key) else {
                    return fx;
                };
                let mut statuses = vec![Status::SelfPresence];
                match departure {
                    Departure::Kick { .. } => statuses.push(Status::Kicked),
                    Departure::Ban { .. } => statuses.push(Status::Banned),
                    Departure::Quit => statuses.push(Status::ServiceShutdown),
                    Departure::Part => {}
                }
                if let Some(from) = state.occupant(&state.nick) {
                    for resource in &state.resources {
                        fx.stanzas.push(occupant_presence(
                            from.clone(),
                            resource.clone().into(),
                            Privilege::None,
                            true,
                            statuses.clone(),
                            None,
                            reason.clone(),
                        ));
                    }
                }
                let error_text = reason.unwrap_or_else(|| "left the room".into());
                for pending in std::mem::take(&mut state.pending) {
                    if let Some(from) = state.occupant(&pending.nick) {
                        let err = error(
                            ErrorType::Cancel,
                            DefinedCondition::RemoteServerNotFound,
                            error_text.clone(),
                        );
                        fx.stanzas.push(presence_error(
                            from,
                            pending.resource.into(),
                            pending.id,
                            err,
                        ));
                    }
                }
            }
            Event::MemberJoined { room, member, .. } => {
                self.broadcast(&mut fx, &user, &room, |state, to| {
                    let from = state.occupant(&member.nick)?;
                    Some(occupant_presence(
                        from,
                        to,
                        member.privilege,
                        false,
                        vec![],
                        None,
                        None,
                    ))
                });
                if let Some(state) = self.rooms.get_mut(&Self::key(&user, &room)) {
                    state.members.insert(fold(&member.nick), member);
                }
            }
            Event::MemberLeft {
                room,
                nick,
                departure,
                reason,
                ..
            } => {
                let privilege = self
                    .rooms
                    .get(&Self::key(&user, &room))
                    .and_then(|s| s.members.get(&fold(&nick)))
                    .map(|m| m.privilege)
                    .unwrap_or_default();
                let statuses = match departure {
                    Departure::Kick { .. } => vec![Status::Kicked],
                    Departure::Ban { .. } => vec![Status::Banned],
                    Departure::Part | Departure::Quit => vec![],
                };
                self.broadcast(&mut fx, &user, &room, |state, to| {
                    let from = state.occupant(&nick)?;
                    Some(occupant_presence(
                        from,
                        to,
                        privilege,
                        true,
                        statuses.clone(),
                        None,
                        reason.clone(),
                    ))
                });
                if let Some(state) = self.rooms.get_mut(&Self::key(&user, &room)) {
                    state.members.remove(&fold(&nick));
                }
            }
            Event::NickChanged {
                rooms, old, new, ..
            } => {
                for room in rooms {
                    let key = Self::key(&user, &room);
                    let Some(state) = self.rooms.get_mut(&key) else {
                        continue;
                    };
                    let own = fold(&state.nick) == fold(&old);
                    let privilege = state
                        .members
                        .remove(&fold(&old))
                        .map(|m| m.privilege)
                        .unwrap_or_default();
                    state.members.insert(
                        fold(&new),
                        Member {
                            nick: new.clone(),
                            privilege,
                        },
                    );
                    if own {
                        state.nick = new.clone();
                    }
                    let extra = if own {
                        vec![Status::SelfPresence]
                    } else {
                        vec![]
                    };
                    self.broadcast(&mut fx, &user, &room, |state, to| {
                        let from = state.occupant(&old)?;
                        let mut statuses = vec![Status::NewNick];
                        statuses.extend(extra.clone());
                        Some(occupant_presence(
                            from,
                            to,
                            privilege,
                            true,
                            statuses,
                            Some(new.clone()),
                            None,
                        ))
                    });
                    self.broadcast(&mut fx, &user, &room, |state, to| {
                        let from = state.occupant(&new)?;
                        Some(occupant_presence(
                            from,
                            to,
                            privilege,
                            false,
                            extra.clone(),
                            None,
                            None,
                        ))
                    });
                }
            }
            Event::MemberAway {
                rooms,
                nick,
                message,
                ..
            } => {
                for room in rooms {
                    let privilege = self
                        .rooms
                        .get(&Self::key(&user, &room))
                        .and_then(|s| s.members.get(&fold(&nick)))
                        .map(|m| m.privilege)
                        .unwrap_or_default();
                    self.broadcast(&mut fx, &user, &room, |state, to| {
                        let from = state.occupant(&nick)?;
                        let mut presence =
                            occupant_presence(from, to, privilege, false, vec![], None, None);
                        if let (Stanza::Presence(p), Some(message)) = (&mut presence, &message) {
                            p.show = Some(tokio_xmpp::parsers::presence::Show::Away);
                            p.set_status(String::new(), message.clone());
                        }
                        Some(presence)
                    });
                }
            }
            Event::NickRefused {
                server,
                nick,
                in_use,
                text,
                ..
            } => {
                let (type_, condition) = if in_use {
                    (ErrorType::Cancel, DefinedCondition::Conflict)
                } else {
                    (ErrorType::Modify, DefinedCondition::JidMalformed)
                };
                // Every resource of the user in a room on that server asked for it.
                for state in self
                    .rooms
                    .values()
                    .filter(|s| s.room.server.eq_ignore_ascii_case(&server))
                {
                    let Some(from) = state.occupant(&nick) else {
                        continue;
                    };
                    for resource in state.resources.iter().filter(|r| r.to_bare() == user) {
                        let err = error(type_.clone(), condition.clone(), text.clone());
                        fx.stanzas.push(presence_error(
                            from.clone(),
                            resource.clone().into(),
                            None,
                            err,
                        ));
                    }
                }
            }
            Event::PrivilegeChanged {
                room,
                nick,
                privilege,
                ..
            } => {
                if let Some(state) = self.rooms.get_mut(&Self::key(&user, &room)) {
                    if let Some(member) = state.members.get_mut(&fold(&nick)) {
                        member.privilege = privilege;
                    }
                }
                self.broadcast(&mut fx, &user, &room, |state, to| {
                    let from = state.occupant(&nick)?;
                    let statuses = if fold(&nick) == fold(&state.nick) {
                        vec![Status::SelfPresence]
                    } else {
                        vec![]
                    };
                    Some(occupant_presence(
                        from, to, privilege, false, statuses, None, None,
                    ))
                });
            }
            Event::Message {
                peer: Peer::Room(room),
                from,
                body,
                kind,
                time,
                own_id,
                remote_id,
                refs,
                ..
            } => {
                let key = Self::key(&user, &room);
                let Some(state) = self.rooms.get_mut(&key) else {
                    return fx;
                };
                let origin = own_id.as_ref().and_then(|id| state.origin_ids.remove(id));
                let text = with_kind(body, kind);
                let recorded = state.joined && state.record;
                // The stanza-id is the network's id of the message, else its id in the
                // archive: one archive entry per user and message, whose id every resource
                // sees, stable across restarts. A message kept nowhere gets none, so that no
                // client pages the archive from an id it does not hold (XEP-0359, XEP-0313).
                let stanza_id = remote_id.or_else(|| recorded.then(new_stanza_id));
                let room_jid = state.jid.clone();
                // The sender's occupant JID once for all resources.
                let sender = state.speaker(&from);
                if let (true, Some(room_jid), Some(stanza_id)) = (recorded, &room_jid, &stanza_id) {
                    let at = time.unwrap_or_else(std::time::SystemTime::now);
                    fx.archive.push(ArchivedMessage {
                        stanza_id: stanza_id.clone(),
                        user: user.to_string(),
                        room: room_jid.to_string(),
                        sender: from.clone(),
                        body: text.clone(),
                        origin_id: origin
                            .as_ref()
                            .and_then(|o| o.attr("id"))
                            .map(str::to_owned),
                        at_ms: at
                            .duration_since(std::time::UNIX_EPOCH)
                            .map(|d| d.as_millis() as i64)
                            .unwrap_or(0),
                    });
                }
                let message_id = own_id
                    .clone()
                    .or_else(|| stanza_id.clone())
                    .or_else(|| Some(new_id()));
                self.broadcast_to(&mut fx, &key, |state, to| {
                    let sender = sender.clone()?;
                    let mut msg = message(
                        MessageType::Groupchat,
                        sender,
                        to,
                        message_id.clone(),
                        &text,
                    );
                    if let Some(origin) = &origin {
                        msg.payloads.push(origin.clone());
                    }
                    if let Some(corrected) = &refs.replaces {
                        msg.payloads.push(rich::replace(corrected));
                    }
                    if let Some(answered) = &refs.reply_to {
                        let nick = answered.nick.as_deref();
                        let to = nick.and_then(|n| state.occupant(n));
                        msg.payloads.push(rich::reply(&answered.id, to.as_ref()));
                        if let Some(quote) = &answered.quote {
                            let (quoted, fallback) = rich::with_quote(&text, nick, quote);
                            msg.bodies.insert(Default::default(), quoted);
                            msg.payloads.push(fallback);
                        }
                    }
                    if let (Some(room_jid), Some(stanza_id)) = (&room_jid, &stanza_id) {
                        msg.payloads.push(stanza_id_element(stanza_id, room_jid));
                    }
                    if let Some(delay) = time.and_then(|t| delay(room_jid.clone()?.into(), t)) {
                        msg.payloads.push(delay.into());
                    }
                    Some(msg.into())
                });
            }
            Event::Message {
                peer: Peer::User { server, nick },
                from,
                body,
                kind,
                time,
                own_id,
                ..
            } => {
                if own_id.is_some() {
                    // Our own private message: XEP-0280 carbons are the server's business.
                    return fx;
                }
                let Ok(sender) = self
                    .addressing
                    .user_jid(&server, if from.is_empty() { &nick } else { &from })
                else {
                    return fx;
                };
                let mut msg = message(
                    MessageType::Chat,
                    sender.clone().into(),
                    user.clone().into(),
                    None,
                    &with_kind(body, kind),
                );
                if let Some(delay) = time.and_then(|t| delay(sender.into(), t)) {
                    msg.payloads.push(delay.into());
                }
                fx.stanzas.push(msg.into());
            }
            Event::Subject {
                room, subject, by, ..
            } => {
                if let Some(state) = self.rooms.get_mut(&Self::key(&user, &room)) {
                    state.subject = subject.clone();
                }
                self.broadcast(&mut fx, &user, &room, |state, to| {
                    let from = match &by {
                        Some(nick) => state.occupant(nick)?,
                        None => state.room_jid()?,
                    };
                    let mut msg = Message::groupchat(Some(to));
                    msg.from = Some(from);
                    msg.subjects.insert(Default::default(), subject.clone());
                    Some(msg.into())
                });
            }
            Event::Retracted {
                peer: Peer::Room(room),
                id,
                from,
                moderator,
                reason,
                ..
            } => {
                self.broadcast(&mut fx, &user, &room, |state, to| {
                    let (sender, moderated_by) = match &moderator {
                        Some(nick) => (state.room_jid()?, Some(state.occupant(nick)?)),
                        None => (state.occupant(&from)?, None),
                    };
                    let text = rich::retracted_fallback(moderated_by.is_some());
                    let mut msg = message(MessageType::Groupchat, sender, to, None, text);
                    msg.payloads.extend(rich::retracted(
                        &id,
                        moderated_by.as_ref(),
                        reason.as_deref(),
                    ));
                    Some(msg.into())
                });
            }
            Event::Reactions {
                peer: Peer::Room(room),
                from,
                id,
                reactions,
                ..
            } => {
                self.broadcast(&mut fx, &user, &room, |state, to| {
                    let sender = state.occupant(&from)?;
                    let mut msg = Message::groupchat(Some(to));
                    msg.from = Some(sender);
                    msg.payloads
                        .extend(rich::reactions_payloads(&id, &reactions));
                    Some(msg.into())
                });
            }
            // In direct chats the server's carbons show a user's own doings; what others do
            // to messages there is not shown yet.
            Event::Retracted { .. } | Event::Reactions { .. } => {}
            Event::Invited {
                room, by, reason, ..
            } => {
                if let Some(invite) = self.invitation(&user, &room, by, reason) {
                    fx.stanzas.push(invite);
                }
            }
            Event::RoomList { server, rooms, .. } => {
                let key = (user.clone(), server.to_ascii_lowercase());
                for pending in self.pending_lists.remove(&key).unwrap_or_default() {
                    fx.stanzas.push(self.answer_list(&server, &rooms, &pending));
                }
                self.room_lists
                    .insert(key, (std::time::Instant::now(), rooms));
            }
            Event::ServerText { server, text, .. } => {
                if let Ok(from) = self.addressing.server_jid(&server) {
                    fx.stanzas.push(
                        message(MessageType::Chat, from.into(), user.into(), None, &text).into(),
                    );
                }
            }
            Event::SendFailed {
                peer: Peer::Room(room),
                id,
                text,
                ..
            } => {
                // To the joined resources: servers drop errors addressed to a bare JID.
                self.broadcast(&mut fx, &user, &room, |state, to| {
                    let err = error(ErrorType::Cancel, DefinedCondition::NotAcceptable, &text);
                    Some(message_error(state.room_jid()?, to, id.clone(), err))
                });
            }
            Event::SendFailed { peer, id, text, .. } => {
                let to = match &peer {
                    Peer::Room(room) => self.room_jid(room),
                    Peer::User { server, nick } => {
                        self.addressing.user_jid(server, nick).ok().map(Jid::from)
                    }
                };
                if let Some(to) = to {
                    let err = error(ErrorType::Cancel, DefinedCondition::NotAcceptable, text);
                    fx.stanzas.push(message_error(to, user.into(), id, err));
                }
            }
        }
        fx
    }

    /// A XEP-0249 direct invitation to `room`, from the inviter's JID (or the gateway).
    fn invitation(
        &self,
        user: &BareJid,
        room: &RoomRef,
        by: Option<(String, String)>,
        reason: Option<String>,
    ) -> Option<Stanza> {
        let room_jid = self.room_jid(room)?;
        let from = by
            .and_then(|(server, nick)| self.addressing.user_jid(&server, &nick).ok())
            .map(Jid::from)
            .or_else(|| self.addressing.gateway_jid().ok().map(Jid::from))?;
        let mut msg = Message::new(Some(user.clone().into()));
        msg.type_ = MessageType::Normal;
        msg.from = Some(from);
        let mut x =
            Element::builder("x", "jabber:x:conference").attr(nc("jid"), room_jid.to_string());
        if let Some(reason) = reason.filter(|r| !r.is_empty()) {
            x = x.attr(nc("reason"), reason);
        }
        msg.payloads.push(x.build());
        Some(msg.into())
    }

    /// A message from the room itself to every joined resource of `user` in every room on
    /// `server` (connection news).
    fn notice_server_rooms(&self, fx: &mut Effects, user: &BareJid, server: &str, text: &str) {
        for (key, state) in &self.rooms {
            if key.0 != *user || !key.1.eq_ignore_ascii_case(server) {
                continue;
            }
            let Some(room_jid) = state.room_jid() else {
                continue;
            };
            for resource in &state.resources {
                fx.stanzas.push(
                    message(
                        MessageType::Groupchat,
                        room_jid.clone(),
                        resource.clone().into(),
                        None,
                        text,
                    )
                    .into(),
                );
            }
        }
    }

    /// The room as it is after a rejoin, told as differences: who left, who came or changed,
    /// our own nick if the server gave another, and the subject if it changed.
    fn rejoined(
        &mut self,
        fx: &mut Effects,
        key: &RoomKey,
        nick: String,
        members: BTreeMap<String, Member>,
        subject: String,
    ) {
        let Some(state) = self.rooms.get_mut(key) else {
            return;
        };
        let old_members = std::mem::replace(&mut state.members, members);
        let old_nick = std::mem::replace(&mut state.nick, nick.clone());
        let subject_changed = state.subject != subject;
        state.subject = subject.clone();
        let Some(state) = self.rooms.get(key) else {
            return;
        };
        let own = fold(&nick);
        let own_old = fold(&old_nick);
        for resource in &state.resources {
            let to: Jid = resource.clone().into();
            if own != own_old {
                let privilege = state
                    .members
                    .get(&own)
                    .map(|m| m.privilege)
                    .unwrap_or_default();
                if let Some(from) = state.occupant(&old_nick) {
                    let statuses = vec![Status::NewNick, Status::SelfPresence];
                    fx.stanzas.push(occupant_presence(
                        from,
                        to.clone(),
                        privilege,
                        true,
                        statuses,
                        Some(nick.clone()),
                        None,
                    ));
                }
                if let Some(from) = state.occupant(&nick) {
                    fx.stanzas.push(occupant_presence(
                        from,
                        to.clone(),
                        privilege,
                        false,
                        vec![Status::SelfPresence, Status::AssignedNick],
                        None,
                        None,
                    ));
                }
            }
            for (folded, member) in &old_members {
                if *folded != own_old && !state.members.contains_key(folded) {
                    if let Some(from) = state.occupant(&member.nick) {
                        fx.stanzas.push(occupant_presence(
                            from,
                            to.clone(),
                            member.privilege,
                            true,
                            vec![],
                            None,
                            None,
                        ));
                    }
                }
            }
            for (folded, member) in &state.members {
                if *folded == own || old_members.get(folded) == Some(member) {
                    continue;
                }
                if let Some(from) = state.occupant(&member.nick) {
                    fx.stanzas.push(occupant_presence(
                        from,
                        to.clone(),
                        member.privilege,
                        false,
                        vec![],
                        None,
                        None,
                    ));
                }
            }
            if subject_changed {
                if let Some(room_jid) = state.room_jid() {
                    let mut msg = Message::groupchat(Some(to.clone()));
                    msg.from = Some(room_jid);
                    msg.subjects.insert(Default::default(), subject.clone());
                    fx.stanzas.push(msg.into());
                }
            }
        }
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
    pub fn joined_everywhere(&self) -> Vec<(Jid, Jid)> {
        let mut out = Vec::new();
        for state in self.rooms.values() {
            if let Some(occupant) = state.occupant(&state.nick) {
                for resource in &state.resources {
                    out.push((occupant.clone(), resource.clone().into()));
                }
            }
        }
        out
    }
}

/// A request whose refusal goes back as an error to the message that asked for it.
fn message_request(
    user: UserRef,
    action: Action,
    to: Jid,
    from: FullJid,
    id: Option<String>,
) -> Request {
    Request {
        user,
        action,
        on_error: OnError::Message {
            to,
            sender: from,
            id,
        },
    }
}

/// A retraction or a reactions update, for networks that have them.
fn rich_action(msg: &Message, peer: &Peer) -> Option<Action> {
    if let Some(id) = rich::retraction(msg) {
        return Some(Action::Retract {
            to: peer.clone(),
            id,
        });
    }
    let (id, reactions) = rich::reactions(msg)?;
    Some(Action::React {
        to: peer.clone(),
        id,
        reactions,
    })
}

/// The network message for a client's message with `body`: `/me` as an action, and (for
/// networks that have them) what it corrects or answers, the reply fallback cut off.
fn send_action(rich: bool, msg: &Message, body: String, to: Peer, id: String) -> Action {
    let (refs, body) = if rich {
        let refs = rich::refs(msg);
        let body = match refs.reply_to {
            Some(_) => rich::strip_reply_fallback(msg, &body),
            None => body,
        };
        (refs, body)
    } else {
        (Refs::none(), body)
    };
    let (body, kind) = split_me(body);
    Action::Send {
        to,
        body,
        kind,
        id,
        refs,
    }
}

/// `/me waves` is an action.
fn split_me(mut body: String) -> (String, MessageKind) {
    if body.starts_with("/me ") {
        body.drain(.."/me ".len());
        (body, MessageKind::Action)
    } else {
        (body, MessageKind::Normal)
    }
}

/// How an action or notice reads in XMPP.
fn with_kind(body: String, kind: MessageKind) -> String {
    match kind {
        MessageKind::Action => format!("/me {body}"),
        MessageKind::Normal | MessageKind::Notice => body,
    }
}

fn new_id() -> String {
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
