//! One Matrix room as the gateway keeps it: its members with the nicks they show as, the
//! topic and power levels, and the XMPP users seated in it with what each has been shown.

use std::collections::{HashMap, HashSet};

use causeway_bridge::{Event, Member, Picture, Privilege, RoomRef, UserRef};

use super::nicks::{fold, Nicks};

/// A room with at least one XMPP user in it.
#[derive(Debug, Default)]
pub(super) struct Room {
    /// Joined members by user id.
    pub(super) members: HashMap<String, Info>,
    /// Member user id by case-folded nick.
    pub(super) by_nick: HashMap<String, String>,
    pub(super) topic: String,
    /// Power levels of the members who have one set.
    power: HashMap<String, i64>,
    /// The level of everyone else.
    power_default: i64,
    /// The XMPP users in the room.
    pub(super) seats: HashMap<UserRef, Seat>,
    /// The room's avatar (`mxc://`), and its picture once fetched.
    pub(super) avatar: Option<String>,
    pub(super) picture: Option<Picture>,
}

/// A joined member.
#[derive(Debug, Clone)]
pub(super) struct Info {
    /// The nick the member shows as (the display name, disambiguated).
    pub(super) nick: String,
    /// The display name as Matrix has it.
    pub(super) display: Option<String>,
    /// The avatar (`mxc://`), and its picture once fetched.
    pub(super) avatar: Option<String>,
    pub(super) picture: Option<Picture>,
}

/// An XMPP user in the room.
#[derive(Debug)]
pub(super) struct Seat {
    /// The room reference the user joined with.
    pub(super) room: RoomRef,
    /// The user's puppet (or personal account).
    pub(super) puppet: String,
    /// The user's nick in the room.
    pub(super) nick: String,
    /// Members this user has been shown (lazy member lists).
    pub(super) shown: HashSet<String>,
}

/// The privilege a power level stands for.
fn privilege(level: i64) -> Privilege {
    match level {
        100.. => Privilege::Owner,
        50..=99 => Privilege::Op,
        1..=49 => Privilege::Voice,
        _ => Privilege::None,
    }
}

impl Room {
    pub(super) fn privilege_of(&self, user_id: &str) -> Privilege {
        privilege(*self.power.get(user_id).unwrap_or(&self.power_default))
    }

    pub(super) fn member(&self, user_id: &str) -> Option<Member> {
        let info = self.members.get(user_id)?;
        Some(Member {
            nick: info.nick.clone(),
            privilege: self.privilege_of(user_id),
            id: Some(user_id.to_owned()),
            picture: info.picture.clone(),
        })
    }

    /// Give `user_id` a nick from its display name, unless it already has that one.
    pub(super) fn assign(
        &mut self,
        user_id: &str,
        display: Option<String>,
        nicks: &Nicks,
    ) -> String {
        let base = nicks.wanted(user_id, display.as_deref());
        let mut kept = (None, None);
        if let Some(old) = self.members.get(user_id) {
            if old.display == display {
                return old.nick.clone();
            }
            self.by_nick.remove(&fold(&old.nick));
            kept = (old.avatar.clone(), old.picture.clone());
        }
        let nick = nicks.pick(base, user_id, |nick| {
            self.by_nick
                .get(&fold(nick))
                .is_none_or(|owner| owner == user_id)
        });
        self.by_nick.insert(fold(&nick), user_id.to_owned());
        self.members.insert(
            user_id.to_owned(),
            Info {
                nick: nick.clone(),
                display,
                avatar: kept.0,
                picture: kept.1,
            },
        );
        nick
    }

    /// A puppet shows as the MUC nick its user asked for (checked against others before).
    pub(super) fn name_puppet(&mut self, puppet: &str, nick: &str) {
        self.remove(puppet);
        self.by_nick.insert(fold(nick), puppet.to_owned());
        self.members.insert(
            puppet.to_owned(),
            Info {
                nick: nick.to_owned(),
                display: Some(nick.to_owned()),
                avatar: None,
                picture: None,
            },
        );
    }

    /// Tell the XMPP users seated here, but the member's own, that `target` now shows as its
    /// nick: as a member joining to those not shown it yet, as a nick change to those who
    /// knew it as `old`.
    pub(super) fn announce(&mut self, target: &str, old: Option<&str>) -> Vec<Event> {
        let Some(member) = self.member(target) else {
            return vec![];
        };
        let mut events = Vec::new();
        for (user, seat) in &mut self.seats {
            if seat.puppet == target {
                continue;
            }
            match old {
                Some(old) if seat.shown.contains(target) => {
                    if old != member.nick {
                        events.push(Event::NickChanged {
                            user: user.clone(),
                            rooms: vec![seat.room.clone()],
                            old: old.to_owned(),
                            new: member.nick.clone(),
                        });
                    }
                }
                _ => {
                    seat.shown.insert(target.to_owned());
                    events.push(Event::MemberJoined {
                        user: user.clone(),
                        room: seat.room.clone(),
                        member: member.clone(),
                    });
                }
            }
        }
        events
    }

    pub(super) fn remove(&mut self, user_id: &str) -> Option<Info> {
        let info = self.members.remove(user_id)?;
        self.by_nick.remove(&fold(&info.nick));
        Some(info)
    }

    pub(super) fn set_power(&mut self, power: Option<&serde_json::Value>) {
        let Some(power) = power else { return };
        self.power_default = power
            .get("users_default")
            .and_then(serde_json::Value::as_i64)
            .unwrap_or(0);
        self.power = power
            .get("users")
            .and_then(serde_json::Value::as_object)
            .map(|users| {
                users
                    .iter()
                    .filter_map(|(id, level)| Some((id.clone(), level.as_i64()?)))
                    .collect()
            })
            .unwrap_or_default();
    }
}
