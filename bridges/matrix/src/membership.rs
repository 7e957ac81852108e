//! The puppets' own membership: joining a room as the MUC nick (through the member state
//! event, so the room never sees the puppet under another name), checked against everyone
//! else's nick; leaving it; per-room nick changes.

use std::sync::Arc;
use std::time::Duration;

use causeway_bridge::{Departure, Event, JoinFailure, RoomRef, UserRef};
use ruma::api::client::{membership, state};
use ruma::events::room::member::{MembershipState, RoomMemberEventContent};
use ruma::{RoomId, UserId};
use tracing::{debug, warn};

use crate::client::{Client, Retry};
use crate::directory::Directory;
use crate::history;
use crate::media::Shelf;
use crate::puppets::Puppets;
use crate::room_state::RoomState;
use crate::SharedRooms;

/// Joins, parts and nick changes of the puppets.
#[derive(Debug)]
pub(crate) struct Memberships {
    client: Client,
    puppets: Arc<Puppets>,
    directory: Arc<Directory>,
    room_state: Arc<RoomState>,
    rooms: SharedRooms,
    /// The links to the files of the history shown at join.
    shelf: Arc<Shelf>,
}

impl Memberships {
    /// Memberships acting through `client`, keeping who is where in `rooms`.
    pub(crate) fn new(
        client: Client,
        puppets: Arc<Puppets>,
        directory: Arc<Directory>,
        room_state: Arc<RoomState>,
        rooms: SharedRooms,
        shelf: Arc<Shelf>,
    ) -> Memberships {
        Memberships {
            client,
            puppets,
            directory,
            room_state,
            rooms,
            shelf,
        }
    }

    /// Seat the user in the room as `nick` (not empty: `act` refuses that): the puppet joins
    /// (registered first if new), the room's state is loaded, and the user gets the members
    /// and the subject.
    pub(crate) async fn join(&self, user: &UserRef, room: RoomRef, nick: String) -> Vec<Event> {
        let failed = |failure: JoinFailure, text: String| {
            vec![Event::JoinFailed {
                user: user.clone(),
                room: room.clone(),
                failure,
                text,
            }]
        };
        let puppet = match self.puppets.ensure(user, &nick).await {
            Ok(puppet) => puppet,
            Err(e) => {
                let (failure, text) = e.join_failure();
                return failed(failure, text);
            }
        };
        let room_id = match self.directory.resolve(&room).await {
            Ok(id) => id,
            Err((failure, text)) => return failed(failure, text),
        };
        let conflict = || {
            failed(
                JoinFailure::NickInUse,
                format!("{nick} is already someone's name in this room"),
            )
        };
        if self.nick_taken(&room_id, &nick, &puppet) {
            return conflict();
        }
        // A personal account already in the room stays as it is, under its own name.
        let member_before = self.client.in_room(&room_id);
        // Joining through the member state event sets the per-room display name in the
        // same event, so the room never sees the puppet under another name.
        let mut content = RoomMemberEventContent::new(MembershipState::Join);
        content.displayname = Some(nick.clone());
        let member_state =
            || state::send_state_event::v3::Request::new(room_id.clone(), &puppet, &content);
        let request = match member_state() {
            Ok(request) => request,
            Err(e) => return failed(JoinFailure::Other, e.to_string()),
        };
        let joined = match member_before {
            true => Ok(()),
            false => self
                .client
                .call(request, Some(&puppet), Retry::Once)
                .await
                .map(|_| ()),
        };
        if let Err(e) = joined {
            // Rooms that refuse a join through the state API still take /join; the display
            // name follows in a second member event.
            let join = membership::join_room_by_id::v3::Request::new(room_id.clone());
            if let Err(e2) = self.client.call(join, Some(&puppet), Retry::Once).await {
                debug!(room = %room_id, error = %e, "state join refused");
                let (failure, text) = e2.join_failure();
                return failed(failure, text);
            }
            if let Ok(rename) = member_state() {
                if let Err(e) = self.client.call(rename, Some(&puppet), Retry::Once).await {
                    warn!(room = %room_id, error = %e, "cannot set the puppet's name in the room");
                }
            }
        }
        if !member_before {
            self.client.joined(&room_id).await;
        }
        self.directory.remember(&room_id).await;
        let loaded = self.room_state.load(&room_id, &puppet).await;
        if loaded.is_err() || self.nick_taken(&room_id, &nick, &puppet) {
            // Not seated after all: the puppet does not stay behind in the room.
            self.rooms
                .lock()
                .expect("rooms lock")
                .forget_unseated(&room_id);
            let leave = membership::leave_room::v3::Request::new(room_id.clone());
            if member_before {
                // The user's own membership, from before: not the gateway's to end.
            } else if let Err(e) = self.client.call(leave, Some(&puppet), Retry::Once).await {
                warn!(room = %room_id, error = %e, "cannot leave after a failed join");
            }
            return match loaded {
                Err((failure, text)) => failed(failure, text),
                Ok(()) => conflict(),
            };
        }
        // A personal login's files are fetched by it; the puppets' by the appservice.
        let owner = self.client.is_personal().then_some(user);
        let files = (self.shelf.as_ref(), owner);
        let history = history::recent(&self.client, &self.rooms, &room_id, &puppet, files).await;
        let entered = self.rooms.lock().expect("rooms lock").enter(
            &room_id,
            user,
            room.clone(),
            puppet.to_string(),
            &nick,
        );
        let mut events = Vec::with_capacity(2 + entered.news.len());
        if !history.is_empty() {
            events.push(Event::History {
                user: user.clone(),
                room: room.clone(),
                messages: history,
            });
        }
        events.push(Event::Joined {
            user: user.clone(),
            room,
            nick,
            members: entered.members,
            subject: entered.subject,
        });
        events.extend(entered.news);
        events
    }

    fn nick_taken(&self, room_id: &RoomId, nick: &str, puppet: &UserId) -> bool {
        self.rooms
            .lock()
            .expect("rooms lock")
            .nick_taken(room_id, nick, puppet.as_str())
    }

    /// The user leaves the room; the puppet leaves it on Matrix. A personal account stays
    /// in it: its memberships are the user's, made and ended in their Matrix clients, and a
    /// MUC is left whenever an XMPP client goes offline.
    pub(crate) async fn part(
        &self,
        user: &UserRef,
        room: RoomRef,
        reason: Option<String>,
    ) -> Vec<Event> {
        let left = self.rooms.lock().expect("rooms lock").leave(user, &room);
        let left_event = Event::Left {
            user: user.clone(),
            room: room.clone(),
            departure: Departure::Part,
            reason: reason.clone(),
        };
        let Some(room_id) = left else {
            return vec![left_event];
        };
        if self.client.is_personal() {
            return vec![left_event];
        }
        let puppet = self.puppets.id(user);
        let mut request = membership::leave_room::v3::Request::new(room_id.clone());
        request.reason = reason;
        if let Err(e) = self
            .client
            .call(request, Some(&puppet), Retry::For(Duration::from_secs(60)))
            .await
        {
            warn!(room = %room_id, error = %e, "cannot leave the room");
        }
        vec![left_event]
    }

    /// The user leaves every room (on `server`, when one is named).
    pub(crate) async fn disconnect(
        &self,
        user: &UserRef,
        server: Option<String>,
        reason: Option<String>,
    ) -> Vec<Event> {
        let rooms = self.rooms.lock().expect("rooms lock").rooms_of(user);
        let mut events = Vec::new();
        for room in rooms {
            if server.as_ref().is_none_or(|s| *s == room.server) {
                events.extend(self.part(user, room, reason.clone()).await);
            }
        }
        events
    }

    /// Matrix nicks are per room: the change applies to the room it was asked in (to every
    /// room on the server when none is named).
    pub(crate) async fn change_nick(
        &self,
        user: &UserRef,
        server: &str,
        nick: String,
        only: Option<RoomRef>,
    ) -> Vec<Event> {
        let rooms = match only {
            Some(room) => vec![room],
            None => self.rooms.lock().expect("rooms lock").rooms_of(user),
        };
        let puppet = self.puppets.id(user);
        let mut events = Vec::new();
        for room in rooms.into_iter().filter(|r| r.server == server) {
            let Some((room_id, old)) = self.rooms.lock().expect("rooms lock").joined(user, &room)
            else {
                continue;
            };
            if self.nick_taken(&room_id, &nick, &puppet) {
                events.push(Event::NickRefused {
                    user: user.clone(),
                    server: server.to_owned(),
                    nick: nick.clone(),
                    in_use: true,
                    text: format!("{nick} is already someone's name in {}", room.name),
                });
                continue;
            }
            let mut content = RoomMemberEventContent::new(MembershipState::Join);
            content.displayname = Some(nick.clone());
            let Ok(request) =
                state::send_state_event::v3::Request::new(room_id.clone(), &puppet, &content)
            else {
                continue;
            };
            match self.client.call(request, Some(&puppet), Retry::Once).await {
                Ok(_) => {
                    let news = self.rooms.lock().expect("rooms lock").renamed_self(
                        &room_id,
                        user,
                        puppet.as_str(),
                        &nick,
                    );
                    events.push(Event::NickChanged {
                        user: user.clone(),
                        rooms: vec![room],
                        old,
                        new: nick.clone(),
                    });
                    events.extend(news);
                }
                Err(e) => events.push(Event::NickRefused {
                    user: user.clone(),
                    server: server.to_owned(),
                    nick: nick.clone(),
                    in_use: false,
                    text: e.to_string(),
                }),
            }
        }
        events
    }
}
