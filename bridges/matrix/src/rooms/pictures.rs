//! The pictures of the rooms and their members: which avatar (`mxc://`) each has, the
//! picture once fetched, and whom to tell when it comes or changes — the XMPP users seated
//! in the room who have been shown the member (the others get it with the member, when
//! shown), never the member's own user.

use causeway_bridge::{Event, Picture, UserRef};
use ruma::RoomId;

use super::{Room, Rooms};

/// An avatar to fetch: the room's (`member` none) or a member's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// The member's user id, or none for the room's own.
    pub member: Option<String>,
    /// The avatar.
    pub avatar: String,
}

impl Rooms {
    /// The avatars of a room just loaded: its own, and its members'.
    pub fn set_avatars(
        &mut self,
        room: &RoomId,
        room_avatar: Option<String>,
        members: Vec<(String, String)>,
    ) {
        let Some(state) = self.rooms.get_mut(room) else {
            return;
        };
        if state.avatar.is_none() {
            state.avatar = room_avatar;
        }
        for (id, avatar) in members {
            if let Some(info) = state.members.get_mut(&id) {
                info.avatar.get_or_insert(avatar);
            }
        }
    }

    /// The avatars of `room` whose pictures are not fetched yet: its own, and those of the
    /// members some XMPP user has been shown (in a big room, the others are fetched when
    /// they are shown, [`Rooms::unfetched_member`]).
    pub fn unfetched(&self, room: &RoomId) -> Vec<Wanted> {
        let Some(state) = self.rooms.get(room) else {
            return vec![];
        };
        let own = (state.picture.is_none())
            .then(|| state.avatar.clone())
            .flatten()
            .map(|avatar| Wanted {
                member: None,
                avatar,
            });
        let shown: std::collections::HashSet<&String> = state
            .seats
            .values()
            .flat_map(|seat| seat.shown.iter())
            .collect();
        let members = shown.into_iter().filter_map(|id| {
            let info = state.members.get(id)?;
            let avatar = info.avatar.clone().filter(|_| info.picture.is_none())?;
            Some(Wanted {
                member: Some(id.clone()),
                avatar,
            })
        });
        own.into_iter().chain(members).collect()
    }

    /// The avatar of `member` (just shown to someone) when its picture is not fetched yet.
    pub fn unfetched_member(&self, room: &RoomId, member: &str) -> Option<Wanted> {
        let info = self.rooms.get(room)?.members.get(member)?;
        let avatar = info.avatar.clone().filter(|_| info.picture.is_none())?;
        Some(Wanted {
            member: Some(member.to_owned()),
            avatar,
        })
    }

    /// The pictures `user` is to be told after joining, those fetched already: the room's,
    /// and those of the members shown to them (again: one fetched while the join was told
    /// may have come too early to be taken; the core drops those it has).
    pub fn pictures_for(&self, room: &RoomId, user: &UserRef) -> Vec<Event> {
        let Some((state, seat)) = self
            .rooms
            .get(room)
            .and_then(|s| Some((s, s.seats.get(user)?)))
        else {
            return vec![];
        };
        let own = state.picture.clone().map(|picture| Event::RoomPicture {
            user: user.clone(),
            room: seat.room.clone(),
            picture: Some(picture),
        });
        let members = seat
            .shown
            .iter()
            .filter(|id| **id != seat.puppet)
            .filter_map(|id| {
                let info = state.members.get(id)?;
                Some(Event::MemberPicture {
                    user: user.clone(),
                    room: seat.room.clone(),
                    nick: info.nick.clone(),
                    picture: Some(info.picture.clone()?),
                })
            });
        own.into_iter().chain(members).collect()
    }

    /// The avatar of a member (`member` none: of the room) is now `avatar` (none:
    /// removed): whether it changed. The old picture stays until the new one is fetched.
    pub fn set_avatar(
        &mut self,
        room: &RoomId,
        member: Option<&str>,
        avatar: Option<String>,
    ) -> bool {
        let Some(state) = self.rooms.get_mut(room) else {
            return false;
        };
        let slot = match member {
            None => &mut state.avatar,
            Some(id) => match state.members.get_mut(id) {
                Some(info) => &mut info.avatar,
                None => return false,
            },
        };
        if *slot == avatar {
            return false;
        }
        *slot = avatar;
        true
    }

    /// The picture of `wanted` was fetched (none: it has none, or it could not be): kept if
    /// the avatar is still the one fetched, and told to whom it concerns if it changed.
    pub fn fetched(
        &mut self,
        room: &RoomId,
        wanted: &Wanted,
        picture: Option<Picture>,
    ) -> Vec<Event> {
        let Some(state) = self.rooms.get_mut(room) else {
            return vec![];
        };
        let slot = match &wanted.member {
            None => (state.avatar.as_ref(), &mut state.picture),
            Some(id) => match state.members.get_mut(id) {
                Some(info) => (info.avatar.as_ref(), &mut info.picture),
                None => return vec![],
            },
        };
        if slot.0 != Some(&wanted.avatar) || *slot.1 == picture {
            return vec![];
        }
        *slot.1 = picture.clone();
        told(state, wanted.member.as_deref(), &picture)
    }

    /// A member's avatar was removed (`member` none: the room's): the picture is gone, told
    /// to whom it concerns.
    pub fn picture_removed(&mut self, room: &RoomId, member: Option<&str>) -> Vec<Event> {
        let Some(state) = self.rooms.get_mut(room) else {
            return vec![];
        };
        let slot = match member {
            None => &mut state.picture,
            Some(id) => match state.members.get_mut(id) {
                Some(info) => &mut info.picture,
                None => return vec![],
            },
        };
        if slot.take().is_none() {
            return vec![];
        }
        told(state, member, &None)
    }
}

/// The events telling `picture` of the room (`member` none) or of a member to the XMPP users
/// concerned.
fn told(state: &Room, member: Option<&str>, picture: &Option<Picture>) -> Vec<Event> {
    let seats = state.seats.iter();
    let Some(id) = member else {
        return seats
            .map(|(user, seat)| Event::RoomPicture {
                user: user.clone(),
                room: seat.room.clone(),
                picture: picture.clone(),
            })
            .collect();
    };
    let Some(nick) = state.members.get(id).map(|info| info.nick.clone()) else {
        return vec![];
    };
    seats
        .filter(|(_, seat)| seat.puppet != id && seat.shown.contains(id))
        .map(|(user, seat)| Event::MemberPicture {
            user: user.clone(),
            room: seat.room.clone(),
            nick: nick.clone(),
            picture: picture.clone(),
        })
        .collect()
}
