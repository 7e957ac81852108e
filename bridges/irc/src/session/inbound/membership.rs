//! Who is where: joins, parts, kicks, quits, nick changes, channel modes (privileges),
//! topics, away states, and our own host changing.

use std::collections::BTreeSet;

use causeway_bridge::{Departure, Event, Member, Privilege, RoomRef};

use crate::line::Line;
use crate::session::Session;
use crate::state::{highest, MemberState};

impl Session {
    pub(super) async fn on_join(&mut self, line: &Line, from: &str) {
        let folded = self.rules.fold(line.param(0));
        let Some(channel) = self.channels.get_mut(&folded) else {
            return;
        };
        // Who they are beyond the nick, only where NAMES says it too (userhost-in-names):
        // one person has one occupant-id, whether seen joining or already in.
        let id = if self.caps.contains("userhost-in-names") {
            line.source_identity()
        } else {
            None
        };
        let member = MemberState {
            nick: from.to_owned(),
            modes: BTreeSet::new(),
            id: id.clone(),
        };
        if self.rules.fold(from) == self.rules.fold(&self.nick) {
            if let Some(source) = &line.source {
                self.source_len = source.len();
            }
            channel.members.insert(self.rules.fold(from), member);
            return;
        }
        if !channel.joined {
            channel.members.insert(self.rules.fold(from), member);
            return;
        }
        channel.members.insert(self.rules.fold(from), member);
        let room = RoomRef {
            server: self.spec.server.clone(),
            name: channel.name.clone(),
        };
        let member = Member {
            nick: from.to_owned(),
            privilege: Privilege::None,
            id: id.map(String::from),
            picture: None,
        };
        self.emit(Event::MemberJoined {
            user: self.user(),
            room,
            member,
        })
        .await;
    }

    pub(super) async fn on_leave(
        &mut self,
        channel: &str,
        nick: &str,
        departure: Departure,
        reason: Option<String>,
    ) {
        let folded = self.rules.fold(channel);
        if self.is_me(nick) {
            let ours = self.parting.remove(&folded);
            if ours && self.channels.get(&folded).is_some_and(|c| !c.joined) {
                // The echo of a PART sent before the join now in progress: that join
                // stands.
                return;
            }
            if let Some(state) = self.channels.remove(&folded) {
                self.refreshing.remove(&folded);
                self.state_changed();
                let room = self.room(&state.name);
                self.emit(Event::Left {
                    user: self.user(),
                    room,
                    departure,
                    reason,
                })
                .await;
            }
            return;
        }
        let nick_folded = self.rules.fold(nick);
        let Some(state) = self.channels.get_mut(&folded) else {
            return;
        };
        let Some(member) = state.members.remove(&nick_folded) else {
            return;
        };
        if state.joined {
            let room = RoomRef {
                server: self.spec.server.clone(),
                name: state.name.clone(),
            };
            self.emit(Event::MemberLeft {
                user: self.user(),
                room,
                nick: member.nick,
                departure,
                reason,
            })
            .await;
        }
    }

    pub(super) async fn on_nick(&mut self, old: &str, new: &str) {
        let old_folded = self.rules.fold(old);
        let mine = self.is_me(old);
        if mine {
            self.state_changed();
            self.nick = new.to_owned();
            self.source_len = self.source_len + new.len() - old.len().min(self.source_len);
        }
        let mut rooms = Vec::new();
        for channel in self.channels.values_mut() {
            if let Some(mut member) = channel.members.remove(&old_folded) {
                member.nick = new.to_owned();
                channel.members.insert(self.rules.fold(new), member);
                if channel.joined {
                    rooms.push(RoomRef {
                        server: self.spec.server.clone(),
                        name: channel.name.clone(),
                    });
                }
            }
        }
        if !rooms.is_empty() || mine {
            self.emit(Event::NickChanged {
                user: self.user(),
                rooms,
                old: old.to_owned(),
                new: new.to_owned(),
            })
            .await;
        }
    }

    pub(super) async fn on_mode(&mut self, line: &Line) {
        let target = line.param(0);
        let folded = self.rules.fold(target);
        if !self.rules.is_channel(target) {
            return;
        }
        let mut args = line.params.iter().skip(2);
        let mut adding = true;
        let mut changed: Vec<String> = Vec::new();
        for mode in line.param(1).chars() {
            match mode {
                '+' => adding = true,
                '-' => adding = false,
                mode => {
                    let arg = if self.rules.mode_takes_param(mode, adding) {
                        args.next()
                    } else {
                        None
                    };
                    if !self.rules.prefixes.iter().any(|(m, _)| *m == mode) {
                        continue;
                    }
                    let Some(nick) = arg else { continue };
                    let Some(channel) = self.channels.get_mut(&folded) else {
                        continue;
                    };
                    if let Some(member) = channel.members.get_mut(&self.rules.fold(nick)) {
                        if adding {
                            member.modes.insert(mode);
                        } else {
                            member.modes.remove(&mode);
                        }
                        changed.push(self.rules.fold(nick));
                    }
                }
            }
        }
        let Some(channel) = self.channels.get(&folded) else {
            return;
        };
        if !channel.joined {
            return;
        }
        changed.dedup();
        let room = self.room(&channel.name);
        let updates: Vec<(String, Privilege)> = changed
            .iter()
            .filter_map(|n| channel.members.get(n))
            .map(|m| (m.nick.clone(), highest(&self.rules, &m.modes)))
            .collect();
        for (nick, privilege) in updates {
            self.emit(Event::PrivilegeChanged {
                user: self.user(),
                room: room.clone(),
                nick,
                privilege,
            })
            .await;
        }
    }

    pub(super) async fn on_quit(&mut self, line: &Line, from: &str) {
        let reason = line.params.first().cloned().filter(|r| !r.is_empty());
        let folded = self.rules.fold(from);
        let rooms: Vec<String> = self
            .channels
            .values()
            .filter(|c| c.joined && c.members.contains_key(&folded))
            .map(|c| c.name.clone())
            .collect();
        for room in rooms {
            self.on_leave(&room, from, Departure::Quit, reason.clone())
                .await;
        }
    }

    pub(super) async fn on_topic(&mut self, line: &Line, from: String) {
        let folded = self.rules.fold(line.param(0));
        let topic = line.param(1).to_owned();
        let server = self.spec.server.clone();
        if let Some(channel) = self.channels.get_mut(&folded) {
            channel.topic = topic.clone();
            let room = RoomRef {
                server,
                name: channel.name.clone(),
            };
            self.emit(Event::Subject {
                user: self.user(),
                room,
                subject: topic,
                by: Some(from),
            })
            .await;
        }
    }

    pub(super) fn on_chghost(&mut self, line: &Line, from: &str) {
        if self.is_me(from) {
            self.source_len = self.nick.len() + 1 + line.param(0).len() + 1 + line.param(1).len();
        }
    }

    pub(super) async fn on_away(&mut self, line: &Line, from: String) {
        let folded = self.rules.fold(&from);
        let rooms: Vec<RoomRef> = self
            .channels
            .values()
            .filter(|c| c.joined && c.members.contains_key(&folded))
            .map(|c| RoomRef {
                server: self.spec.server.clone(),
                name: c.name.clone(),
            })
            .collect();
        if !rooms.is_empty() {
            let message = line.params.first().cloned().filter(|m| !m.is_empty());
            self.emit(Event::MemberAway {
                user: self.user(),
                rooms,
                nick: from,
                message,
            })
            .await;
        }
    }
}
