//! What the network reports about who is in a room: the puppet's own join and departure,
//! members coming, going, changing nick, going away or gaining privileges.

use std::collections::BTreeMap;

use causeway_bridge::{Action, Departure, Member, Privilege, RoomRef, UserRef};
use tokio_xmpp::jid::BareJid;
use tokio_xmpp::parsers::muc::user::Status;
use tokio_xmpp::parsers::presence::Show;
use tokio_xmpp::parsers::stanza_error::{DefinedCondition, ErrorType};
use tokio_xmpp::Stanza;

use super::{fold, Effects, Muc, OnError, Request};
use crate::gateway::privilege::Push;
use crate::gateway::stanzas::{error, occupant_presence, presence_error};

impl Muc {
    /// The puppet is in: everyone waiting gets the join sequence, or, joined again after a
    /// reconnection, what changed meanwhile. A join nobody waits for any more is left again.
    pub(super) fn joined(
        &mut self,
        fx: &mut Effects,
        user: &BareJid,
        room: RoomRef,
        nick: String,
        members: Vec<Member>,
        subject: String,
    ) {
        let key = Self::key(user, &room);
        // In again: the network confirms a departure before the join that follows.
        self.parted.remove(&key);
        if self.rooms.contains_key(&key) {
            // A client joined it first: expected no longer.
            self.kept.remove(&key);
        } else {
            self.take_over(&key, &room, &nick);
        }
        let Some(state) = self.rooms.get_mut(&key) else {
            // Nobody waits for this room any more: leave it again.
            self.parted.insert(key.clone());
            fx.requests.push(Request {
                user: UserRef(user.to_string()),
                action: Action::Part { room, reason: None },
                on_error: OnError::Join(key),
            });
            return;
        };
        let members: BTreeMap<String, Member> = state.admit_all(members);
        if state.joined {
            // Joined again after a reconnection: tell what changed meanwhile.
            self.rejoined(fx, &key, nick, members, subject);
            return;
        }
        state.joined = true;
        state.nick = nick;
        state.subject = subject;
        state.members = members;
        let pending = std::mem::take(&mut state.pending);
        // Entered from a client: the room goes in the user's bookmarks.
        if let (Some(joiner), Some(jid)) = (pending.first(), &state.jid) {
            fx.pushes.push(Push::Bookmark {
                user: user.clone(),
                room: jid.clone(),
                name: room.name.clone(),
                nick: joiner.nick.clone(),
            });
        }
        for joiner in pending {
            if let Some(state) = self.rooms.get_mut(&key) {
                state.resources.insert(joiner.resource.clone());
            }
            self.push_join_sequence(fx, &key, &joiner);
        }
    }

    /// The puppet is out, unasked (kicked, banned, the connection given up): every joined
    /// resource gets its unavailable self-presence, every waiting one an error.
    pub(super) fn left(
        &mut self,
        fx: &mut Effects,
        user: &BareJid,
        room: &RoomRef,
        departure: Departure,
        reason: Option<String>,
    ) {
        let key = Self::key(user, room);
        if self.parted.remove(&key) {
            // The departure the user asked for, answered when they left. A room state here
            // is a join made since: the PART's echo overtook it.
            return;
        }
        let Some(mut state) = self.rooms.remove(&key) else {
            return;
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
                let presence = occupant_presence(
                    from.clone(),
                    resource.clone().into(),
                    Privilege::None,
                    true,
                    statuses.clone(),
                    None,
                    reason.clone(),
                );
                fx.stanzas.push(state.stamped(&state.nick, presence));
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

    /// Someone came in.
    pub(super) fn member_joined(
        &mut self,
        fx: &mut Effects,
        user: &BareJid,
        room: &RoomRef,
        member: Member,
    ) {
        let Some(state) = self.rooms.get(&Self::key(user, room)) else {
            return;
        };
        let member = state.admit(member);
        self.broadcast(fx, user, room, |state, to| {
            state.member_presence(&member, to, false)
        });
        if let Some(state) = self.rooms.get_mut(&Self::key(user, room)) {
            state.members.insert(fold(&member.nick), member);
        }
    }

    /// Someone went: parted, quit, or was kicked or banned.
    pub(super) fn member_left(
        &mut self,
        fx: &mut Effects,
        user: &BareJid,
        room: &RoomRef,
        nick: &str,
        departure: Departure,
        reason: Option<String>,
    ) {
        let privilege = self.privilege_of(user, room, nick);
        let statuses = match departure {
            Departure::Kick { .. } => vec![Status::Kicked],
            Departure::Ban { .. } => vec![Status::Banned],
            Departure::Part | Departure::Quit => vec![],
        };
        self.broadcast(fx, user, room, |state, to| {
            let from = state.occupant(nick)?;
            Some(state.stamped(
                nick,
                occupant_presence(
                    from,
                    to,
                    privilege,
                    true,
                    statuses.clone(),
                    None,
                    reason.clone(),
                ),
            ))
        });
        if let Some(state) = self.rooms.get_mut(&Self::key(user, room)) {
            state.members.remove(&fold(nick));
        }
    }

    /// Someone, maybe the puppet, changed nick: XEP-0045's unavailable presence with 303,
    /// then the new nick's presence, in every room they share.
    pub(super) fn nick_changed(
        &mut self,
        fx: &mut Effects,
        user: &BareJid,
        rooms: Vec<RoomRef>,
        old: &str,
        new: &str,
    ) {
        for room in rooms {
            let key = Self::key(user, &room);
            let Some(state) = self.rooms.get_mut(&key) else {
                continue;
            };
            let own = fold(&state.nick) == fold(old);
            // The same person: the same occupant-id under the new nick.
            let member = state
                .members
                .remove(&fold(old))
                .unwrap_or_else(|| state.admit(Member::named(old, Default::default())));
            let privilege = member.privilege;
            state.members.insert(
                fold(new),
                Member {
                    nick: new.to_owned(),
                    ..member
                },
            );
            if own {
                state.nick = new.to_owned();
            }
            let extra = if own {
                vec![Status::SelfPresence]
            } else {
                vec![]
            };
            self.broadcast_to(fx, &key, |state, to| {
                let from = state.occupant(old)?;
                let mut statuses = vec![Status::NewNick];
                statuses.extend(extra.clone());
                let presence = occupant_presence(
                    from,
                    to,
                    privilege,
                    true,
                    statuses,
                    Some(new.to_owned()),
                    None,
                );
                Some(state.stamped(new, presence))
            });
            self.broadcast_to(fx, &key, |state, to| {
                let from = state.occupant(new)?;
                let presence =
                    occupant_presence(from, to, privilege, false, extra.clone(), None, None);
                Some(state.stamped(new, presence))
            });
        }
    }

    /// Someone went away (with a message) or came back (without).
    pub(super) fn member_away(
        &mut self,
        fx: &mut Effects,
        user: &BareJid,
        rooms: Vec<RoomRef>,
        nick: &str,
        message: Option<String>,
    ) {
        for room in rooms {
            let privilege = self.privilege_of(user, &room, nick);
            self.broadcast(fx, user, &room, |state, to| {
                let from = state.occupant(nick)?;
                let mut presence =
                    occupant_presence(from, to, privilege, false, vec![], None, None);
                if let (Stanza::Presence(p), Some(message)) = (&mut presence, &message) {
                    p.show = Some(Show::Away);
                    p.set_status(String::new(), message.clone());
                }
                Some(state.stamped(nick, presence))
            });
        }
    }

    /// The network refused the nick the user asked for: every resource of the user in a
    /// room on that server asked for it.
    pub(super) fn nick_refused(
        &mut self,
        fx: &mut Effects,
        user: &BareJid,
        server: &str,
        nick: &str,
        in_use: bool,
        text: &str,
    ) {
        let (type_, condition) = if in_use {
            (ErrorType::Cancel, DefinedCondition::Conflict)
        } else {
            (ErrorType::Modify, DefinedCondition::JidMalformed)
        };
        for state in self
            .rooms
            .values()
            .filter(|s| s.room.server.eq_ignore_ascii_case(server))
        {
            let Some(from) = state.occupant(nick) else {
                continue;
            };
            for resource in state.resources.iter().filter(|r| r.to_bare() == *user) {
                let err = error(type_.clone(), condition.clone(), text);
                fx.stanzas.push(presence_error(
                    from.clone(),
                    resource.clone().into(),
                    None,
                    err,
                ));
            }
        }
    }

    /// Someone's privilege changed (a mode): their presence with the new role and
    /// affiliation, marked 110 when it is the puppet's.
    pub(super) fn privilege_changed(
        &mut self,
        fx: &mut Effects,
        user: &BareJid,
        room: &RoomRef,
        nick: &str,
        privilege: Privilege,
    ) {
        if let Some(state) = self.rooms.get_mut(&Self::key(user, room)) {
            if let Some(member) = state.members.get_mut(&fold(nick)) {
                member.privilege = privilege;
            }
        }
        self.broadcast(fx, user, room, |state, to| {
            let from = state.occupant(nick)?;
            let statuses = if fold(nick) == fold(&state.nick) {
                vec![Status::SelfPresence]
            } else {
                vec![]
            };
            let presence = occupant_presence(from, to, privilege, false, statuses, None, None);
            Some(state.stamped(nick, presence))
        });
    }

    /// The privilege a member holds, as far as the puppet knows.
    fn privilege_of(&self, user: &BareJid, room: &RoomRef, nick: &str) -> Privilege {
        self.rooms
            .get(&Self::key(user, room))
            .and_then(|s| s.members.get(&fold(nick)))
            .map(|m| m.privilege)
            .unwrap_or_default()
    }
}
