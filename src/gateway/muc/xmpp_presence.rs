//! Presences from XMPP: joining a room (the join sequence, with history), changing nick,
//! leaving; and joining persistent channels again after a restart.

use causeway_bridge::{Action, RoomRef, UserRef};
use tokio_xmpp::jid::{BareJid, FullJid, Jid};
use tokio_xmpp::parsers::muc::user::Status;
use tokio_xmpp::parsers::muc::Muc as MucJoin;
use tokio_xmpp::parsers::ns;
use tokio_xmpp::parsers::presence::{Presence, Type as PresenceType};
use tokio_xmpp::parsers::stanza_error::{DefinedCondition, ErrorType};
use tokio_xmpp::Stanza;

use super::{fold, Effects, Expected, Muc, OnError, Pending, Request, RoomKey, RoomState};
use crate::address::IrcAddress;
use crate::gateway::mam::{HistoryLimits, HistoryRequest};
use crate::gateway::stanzas::{error, occupant_presence, presence_error};

impl Muc {
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
        if presence.type_ == PresenceType::None {
            self.user_photo(&mut fx, &from, &presence);
        }
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
                if let Some(text) = self.over_limits(&key) {
                    let err = error(ErrorType::Cancel, DefinedCondition::PolicyViolation, text);
                    fx.stanzas
                        .push(presence_error(to, from.into(), presence.id, err));
                    return fx;
                }
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
        let mut state = RoomState::new(
            &self.addressing,
            &self.ids,
            room.clone(),
            nick.clone(),
            self.record,
        );
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

    /// Why a join of a room the user is not in would take more than one user may have
    /// ([`RoomLimits`](crate::gateway::limits::RoomLimits)); `None` when it may go ahead.
    fn over_limits(&self, key: &RoomKey) -> Option<String> {
        if self.rooms.contains_key(key) {
            return None;
        }
        let mut rooms = 0;
        let mut servers = std::collections::HashSet::new();
        for (user, server, _) in self.rooms.keys() {
            if *user == key.0 {
                rooms += 1;
                servers.insert(server.as_str());
            }
        }
        if rooms >= self.limits.rooms {
            return Some(format!(
                "you are in {rooms} rooms through this gateway already, the most it allows one user: leave one first"
            ));
        }
        if !servers.contains(key.1.as_str()) && servers.len() >= self.limits.servers {
            return Some(format!(
                "you are on {} servers through this gateway already, the most it allows one user: leave the rooms of one first",
                servers.len()
            ));
        }
        None
    }

    /// The join sequence into `fx`, with the join history (if any is wanted) read in just
    /// before the subject.
    pub(super) fn push_join_sequence(&self, fx: &mut Effects, key: &RoomKey, joiner: &Pending) {
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
            if *folded != own {
                out.extend(state.member_presence(member, to.clone(), false));
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
            out.push(state.stamped(&state.nick, presence));
        }
        // The room's picture, when it is known already (XEP-0486).
        out.extend(
            state
                .room_photo(to.clone())
                .filter(|_| state.picture.is_some()),
        );
        if let Some(room_jid) = state.room_jid() {
            out.push(RoomState::subject_message(room_jid, to, &state.subject));
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
                let presence = occupant_presence(
                    occupant,
                    from.clone().into(),
                    privilege,
                    true,
                    vec![Status::SelfPresence],
                    None,
                    None,
                );
                fx.stanzas.push(state.stamped(&state.nick, presence));
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

    /// Join a channel again after a restart, with nobody waiting for it (a persistent one).
    pub fn rejoin(
        &mut self,
        user: &BareJid,
        room: RoomRef,
        nick: String,
        persistent: bool,
    ) -> Effects {
        let mut fx = Effects::default();
        let key = Self::key(user, &room);
        if self.rooms.contains_key(&key) {
            return fx;
        }
        let mut state = RoomState::new(
            &self.addressing,
            &self.ids,
            room.clone(),
            nick.clone(),
            self.record,
        );
        state.persistent = persistent;
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

    /// After a restart with the IRC keeper: a channel that is not persistent which the
    /// puppet was in. Nothing is asked of the network: if the keeper kept the connection,
    /// the network reports the channel joined and it is taken over (then held until
    /// [`Muc::release_unclaimed`] for a client coming back); if not, nothing shows on IRC.
    pub fn expect_kept(&mut self, user: &BareJid, room: &RoomRef) {
        let expected = Expected {
            room: room.clone(),
            settings: None,
        };
        self.kept.insert(Self::key(user, room), expected);
    }

    /// A channel reported joined with no room state: one the keeper kept is taken over.
    pub(super) fn take_over(&mut self, key: &RoomKey, room: &RoomRef, nick: &str) {
        let Some(Expected { settings, .. }) = self.kept.remove(key) else {
            return;
        };
        let mut state = RoomState::new(
            &self.addressing,
            &self.ids,
            room.clone(),
            nick.to_owned(),
            self.record,
        );
        if let Some((persistent, record)) = settings {
            state.persistent = persistent;
            state.record = record;
        }
        self.rooms.insert(key.clone(), state);
    }

    /// The grace after a restart is over: every channel that is not persistent and that no
    /// client joined since is left, as it would have been had its last client left. The
    /// channels expected from the keeper that it did not keep are returned, for the store
    /// to forget.
    pub fn release_unclaimed(&mut self) -> (Effects, Vec<(BareJid, RoomRef)>) {
        let mut fx = Effects::default();
        // Those a client joined meanwhile are in the channel, kept or joined anew.
        let kept = std::mem::take(&mut self.kept);
        let not_kept = kept
            .into_iter()
            .filter(|(key, _)| !self.rooms.contains_key(key))
            .map(|((user, ..), expected)| (user, expected.room))
            .collect();
        let unclaimed: Vec<RoomKey> = self
            .rooms
            .iter()
            .filter(|(_, s)| !s.persistent && s.resources.is_empty() && s.pending.is_empty())
            .map(|(key, _)| key.clone())
            .collect();
        for key in unclaimed {
            let state = self.rooms.remove(&key).expect("listed above");
            self.parted.insert(key.clone());
            fx.requests.push(Request {
                user: UserRef(key.0.to_string()),
                action: Action::Part {
                    room: state.room,
                    reason: None,
                },
                on_error: OnError::Join(key),
            });
        }
        (fx, not_kept)
    }
}
