//! The Matrix rooms XMPP users are in: members with the nicks they show as in the MUC,
//! topic, power levels, and which XMPP users sit in each room under which room reference
//! and nick. Pure state: Matrix happenings in, bridge events for each XMPP user out.

use std::collections::{HashMap, HashSet};

use causeway_bridge::{Departure, Event, Member, Privilege, RoomRef, UserRef};
use ruma::{OwnedRoomId, RoomId};

use crate::NickRule;
use nicks::{fold, Nicks};
pub use pictures::Wanted;
use room::{Room, Seat};

mod nicks;
mod pictures;
mod room;

/// A member's new membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Membership {
    /// In the room, under this display name.
    Join {
        /// The display name, if set.
        display: Option<String>,
    },
    /// Left or kicked.
    Leave,
    /// Banned.
    Ban,
}

/// A membership change of `target` by `sender`.
#[derive(Debug, Clone)]
pub struct Change<'a> {
    /// Whose membership.
    pub target: &'a str,
    /// Who changed it (the target itself for joins and parts).
    pub sender: &'a str,
    /// What it is now.
    pub membership: Membership,
    /// Why, if given.
    pub reason: Option<String>,
}

/// What an XMPP user entering a room is shown, and what the others are told.
#[derive(Debug)]
pub struct Entered {
    /// The members to show, the user's own puppet among them.
    pub members: Vec<Member>,
    /// The room's topic.
    pub subject: String,
    /// For the other XMPP users seated there: the puppet joining, or its new nick.
    pub news: Vec<Event>,
}

/// All rooms with at least one XMPP user in them.
#[derive(Debug)]
pub struct Rooms {
    /// How many members a room shows at join; the others appear when they speak or join.
    limit: usize,
    /// What the gateway accepts as a nick.
    nicks: Nicks,
    rooms: HashMap<OwnedRoomId, Room>,
}

impl Rooms {
    /// No rooms; big rooms show `limit` members at join; display names become nicks as
    /// `nicks` accepts them.
    pub fn new(limit: usize, nicks: NickRule) -> Rooms {
        Rooms {
            limit,
            nicks: Nicks::new(nicks),
            rooms: HashMap::new(),
        }
    }

    /// Whether the room's members are known.
    pub fn is_loaded(&self, room: &RoomId) -> bool {
        self.rooms.contains_key(room)
    }

    /// Whether the room is one XMPP users are in.
    pub fn is_tracked(&self, room: &RoomId) -> bool {
        self.rooms.get(room).is_some_and(|r| !r.seats.is_empty())
    }

    /// The room's state as fetched after a join of `joining` (a puppet, left out so that
    /// its nick is checked against everyone else's).
    pub fn load(
        &mut self,
        room: &RoomId,
        members: Vec<(String, Option<String>)>,
        joining: &str,
        topic: String,
        power: Option<&serde_json::Value>,
    ) {
        let mut state = Room::default();
        state.topic = topic;
        state.set_power(power);
        let mut members = members;
        // Stable nicks: members without a clash keep their display name whatever the order.
        members.sort();
        for (id, display) in members.into_iter().filter(|(id, _)| id != joining) {
            state.assign(&id, display, &self.nicks);
        }
        // Another user's join may have loaded it meanwhile: theirs stays, seats and all.
        self.rooms.entry(room.to_owned()).or_insert(state);
    }

    /// Drop the state of a room nobody is seated in (after a join that failed).
    pub fn forget_unseated(&mut self, room: &RoomId) {
        if self.rooms.get(room).is_some_and(|r| r.seats.is_empty()) {
            self.rooms.remove(room);
        }
    }

    /// Whether `nick` belongs to somebody other than `puppet` in the room.
    pub fn nick_taken(&self, room: &RoomId, nick: &str, puppet: &str) -> bool {
        self.rooms
            .get(room)
            .and_then(|r| r.by_nick.get(&fold(nick)))
            .is_some_and(|owner| owner != puppet)
    }

    /// Seat `user` in the room as `nick`: the members to show and the subject; and for the
    /// other XMPP users there, the puppet's arrival. (The homeserver's join event that
    /// follows changes nothing: the puppet is already named.)
    pub fn enter(
        &mut self,
        room_id: &RoomId,
        user: &UserRef,
        room: RoomRef,
        puppet: String,
        nick: &str,
    ) -> Entered {
        let limit = self.limit;
        let state = self.rooms.entry(room_id.to_owned()).or_default();
        let old = state.members.get(&puppet).map(|i| i.nick.clone());
        if old.as_deref() != Some(nick) {
            state.name_puppet(&puppet, nick);
        }
        let news = state.announce(&puppet, old.as_deref());
        let mut ids: Vec<&String> = state.members.keys().filter(|id| **id != puppet).collect();
        if ids.len() > limit {
            // Big rooms: those with power first, then by name, up to the limit.
            ids.sort_by_key(|id| (std::cmp::Reverse(state.privilege_of(id)), id.as_str()));
            ids.truncate(limit);
        }
        let mut shown: HashSet<String> = ids.into_iter().cloned().collect();
        shown.insert(puppet.clone());
        for seat in state.seats.values() {
            shown.insert(seat.puppet.clone());
        }
        let members = shown.iter().filter_map(|id| state.member(id)).collect();
        state.seats.insert(
            user.clone(),
            Seat {
                room,
                puppet,
                nick: nick.to_owned(),
                shown,
            },
        );
        Entered {
            members,
            subject: state.topic.clone(),
            news,
        }
    }

    /// Unseat `user` from the room it knows as `room`: the room id, if it was seated.
    pub fn leave(&mut self, user: &UserRef, room: &RoomRef) -> Option<OwnedRoomId> {
        let room_id = self.find(user, room)?;
        let state = self.rooms.get_mut(&room_id)?;
        state.seats.remove(user);
        if state.seats.is_empty() {
            self.rooms.remove(&room_id);
        }
        Some(room_id)
    }

    fn find(&self, user: &UserRef, room: &RoomRef) -> Option<OwnedRoomId> {
        self.rooms.iter().find_map(|(id, state)| {
            let seat = state.seats.get(user)?;
            (seat.room.server.eq_ignore_ascii_case(&room.server)
                && fold(&seat.room.name) == fold(&room.name))
            .then(|| id.clone())
        })
    }

    /// The room id and the user's nick in a room the user is seated in.
    pub fn joined(&self, user: &UserRef, room: &RoomRef) -> Option<(OwnedRoomId, String)> {
        let id = self.find(user, room)?;
        let nick = self.rooms.get(&id)?.seats.get(user)?.nick.clone();
        Some((id, nick))
    }

    /// The rooms the user is seated in.
    pub fn rooms_of(&self, user: &UserRef) -> Vec<RoomRef> {
        self.rooms
            .values()
            .filter_map(|r| r.seats.get(user).map(|s| s.room.clone()))
            .collect()
    }

    /// The rooms XMPP users are in, each with a puppet seated there to read it as.
    pub fn tracked(&self) -> Vec<(OwnedRoomId, String)> {
        self.rooms
            .iter()
            .filter_map(|(id, r)| {
                r.seats
                    .values()
                    .next()
                    .map(|s| (id.clone(), s.puppet.clone()))
            })
            .collect()
    }

    /// A puppet seated in the room, to read it as.
    pub fn any_puppet(&self, room: &RoomId) -> Option<String> {
        let state = self.rooms.get(room)?;
        state.seats.values().next().map(|s| s.puppet.clone())
    }

    /// The nick `user_id` would show as under `display`, in a room with nobody else (a
    /// direct room's other party).
    pub fn nick_for(&self, user_id: &str, display: Option<&str>) -> String {
        self.nicks.wanted(user_id, display)
    }

    /// The nick a member shows as.
    pub fn nick_of(&self, room: &RoomId, user_id: &str) -> Option<String> {
        Some(self.rooms.get(room)?.members.get(user_id)?.nick.clone())
    }

    /// The user id of the member showing as `nick`.
    pub fn member_id(&self, room: &RoomId, nick: &str) -> Option<String> {
        self.rooms.get(room)?.by_nick.get(&fold(nick)).cloned()
    }

    /// The user's puppet now shows as `nick` in the room: the nick change for the other
    /// XMPP users there (the homeserver's member event that follows changes nothing).
    pub fn renamed_self(
        &mut self,
        room: &RoomId,
        user: &UserRef,
        puppet: &str,
        nick: &str,
    ) -> Vec<Event> {
        let Some(state) = self.rooms.get_mut(room) else {
            return vec![];
        };
        let old = state.members.get(puppet).map(|i| i.nick.clone());
        state.name_puppet(puppet, nick);
        if let Some(seat) = state.seats.get_mut(user) {
            seat.nick = nick.to_owned();
        }
        state.announce(puppet, old.as_deref())
    }

    /// A membership change: presence for every XMPP user seated.
    pub fn membership(&mut self, room: &RoomId, change: Change<'_>) -> Vec<Event> {
        let Change {
            target,
            sender,
            membership,
            reason,
        } = change;
        let Some(state) = self.rooms.get_mut(room) else {
            return vec![];
        };
        let banned = matches!(membership, Membership::Ban);
        if let Membership::Join { display } = membership {
            let old = state.members.get(target).cloned();
            if old.as_ref().is_some_and(|o| o.display == display) {
                return vec![];
            }
            state.assign(target, display, &self.nicks);
            return state.announce(target, old.map(|o| o.nick).as_deref());
        }
        let mut events = Vec::new();
        let by = state
            .members
            .get(sender)
            .map(|i| i.nick.clone())
            .unwrap_or_else(|| sender.to_owned());
        let Some(info) = state.remove(target) else {
            return events;
        };
        let departure = match (sender == target, banned) {
            (_, true) => Departure::Ban { by },
            (false, false) => Departure::Kick { by },
            (true, false) => Departure::Part,
        };
        let mut gone = Vec::new();
        for (user, seat) in &mut state.seats {
            if seat.puppet == target {
                gone.push(user.clone());
                events.push(Event::Left {
                    user: user.clone(),
                    room: seat.room.clone(),
                    departure: departure.clone(),
                    reason: reason.clone(),
                });
            } else if seat.shown.remove(target) {
                events.push(Event::MemberLeft {
                    user: user.clone(),
                    room: seat.room.clone(),
                    nick: info.nick.clone(),
                    departure: departure.clone(),
                    reason: reason.clone(),
                });
            }
        }
        for user in gone {
            state.seats.remove(&user);
        }
        if state.seats.is_empty() {
            self.rooms.remove(room);
        }
        events
    }

    /// A message-like happening from `sender`: for every XMPP user seated other than the
    /// sender's own, the member is shown first if they were not, then `make` builds the
    /// event from the user, their room reference and the sender's nick.
    pub fn spoke(
        &mut self,
        room: &RoomId,
        sender: &str,
        make: &dyn Fn(&UserRef, &RoomRef, &str) -> Event,
    ) -> Vec<Event> {
        let Some(state) = self.rooms.get_mut(room) else {
            return vec![];
        };
        if !state.members.contains_key(sender) {
            state.assign(sender, None, &self.nicks);
        }
        let member = state.member(sender).expect("assigned");
        let mut events = Vec::new();
        for (user, seat) in &mut state.seats {
            if seat.puppet == sender {
                continue;
            }
            if seat.shown.insert(sender.to_owned()) {
                events.push(Event::MemberJoined {
                    user: user.clone(),
                    room: seat.room.clone(),
                    member: member.clone(),
                });
            }
            events.push(make(user, &seat.room, &member.nick));
        }
        events
    }

    /// A signal from `sender` (typing, a read receipt): for every XMPP user seated other
    /// than the sender's own who has been shown the sender already — reading or typing
    /// shows nobody new in a big room's lazy member list.
    pub fn signalled(
        &self,
        room: &RoomId,
        sender: &str,
        make: &dyn Fn(&UserRef, &RoomRef, &str) -> Event,
    ) -> Vec<Event> {
        let Some(state) = self.rooms.get(room) else {
            return vec![];
        };
        let Some(nick) = state.members.get(sender).map(|m| m.nick.as_str()) else {
            return vec![];
        };
        state
            .seats
            .iter()
            .filter(|(_, seat)| seat.puppet != sender && seat.shown.contains(sender))
            .map(|(user, seat)| make(user, &seat.room, nick))
            .collect()
    }

    /// [`spoke`](Self::spoke), or [`spoke_elsewhere`](Self::spoke_elsewhere) when a
    /// personal login's own account did it from another of its devices: then it is the
    /// user's own, and no echo of what they did through the gateway.
    pub fn spoke_as(
        &mut self,
        elsewhere: bool,
        room: &RoomId,
        sender: &str,
        make: &dyn Fn(&UserRef, &RoomRef, &str) -> Event,
    ) -> Vec<Event> {
        if elsewhere {
            self.spoke_elsewhere(room, sender, make)
        } else {
            self.spoke(room, sender, make)
        }
    }

    /// A personal login's own account spoke from another of its devices: shown to that
    /// login's user alone, under their nick in the room.
    pub fn spoke_elsewhere(
        &mut self,
        room: &RoomId,
        sender: &str,
        make: &dyn Fn(&UserRef, &RoomRef, &str) -> Event,
    ) -> Vec<Event> {
        let Some(state) = self.rooms.get(room) else {
            return vec![];
        };
        state
            .seats
            .iter()
            .filter(|(_, seat)| seat.puppet == sender)
            .map(|(user, seat)| make(user, &seat.room, &seat.nick))
            .collect()
    }

    /// The topic changed.
    pub fn topic(&mut self, room: &RoomId, sender: &str, topic: String) -> Vec<Event> {
        let Some(state) = self.rooms.get_mut(room) else {
            return vec![];
        };
        state.topic = topic.clone();
        let by = state.members.get(sender).map(|i| i.nick.clone());
        state
            .seats
            .iter()
            .map(|(user, seat)| Event::Subject {
                user: user.clone(),
                room: seat.room.clone(),
                subject: topic.clone(),
                by: by.clone(),
            })
            .collect()
    }

    /// The power levels changed: the new privileges of members shown.
    pub fn power(&mut self, room: &RoomId, power: &serde_json::Value) -> Vec<Event> {
        let Some(state) = self.rooms.get_mut(room) else {
            return vec![];
        };
        let before: HashMap<String, Privilege> = state
            .members
            .keys()
            .map(|id| (id.clone(), state.privilege_of(id)))
            .collect();
        state.set_power(Some(power));
        let mut events = Vec::new();
        for (id, old) in before {
            let new = state.privilege_of(&id);
            if new == old {
                continue;
            }
            let nick = state.members[&id].nick.clone();
            for (user, seat) in &state.seats {
                if seat.shown.contains(&id) {
                    events.push(Event::PrivilegeChanged {
                        user: user.clone(),
                        room: seat.room.clone(),
                        nick: nick.clone(),
                        privilege: new,
                    });
                }
            }
        }
        events
    }
}

#[cfg(test)]
mod tests;
