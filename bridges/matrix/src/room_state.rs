//! A room's state as the puppets read and write it: members, topic and power levels
//! loaded when the first puppet joins, the topic an XMPP user sets, the members one kicks.

use std::sync::Arc;
use std::time::Duration;

use causeway_bridge::{Event, JoinFailure, Peer, RoomRef, UserRef};
use ruma::api::client::{membership, state};
use ruma::events::room::topic::RoomTopicEventContent;
use ruma::events::StateEventType;
use ruma::{OwnedUserId, RoomId};

use crate::client::{Client, Retry};
use crate::puppets::Puppets;
use crate::{server_text, SharedRooms};

/// Room state, read and written as the puppets.
#[derive(Debug)]
pub(crate) struct RoomState {
    client: Client,
    puppets: Arc<Puppets>,
    rooms: SharedRooms,
}

impl RoomState {
    /// Room state through `client`, kept in `rooms`.
    pub(crate) fn new(client: Client, puppets: Arc<Puppets>, rooms: SharedRooms) -> RoomState {
        RoomState {
            client,
            puppets,
            rooms,
        }
    }

    /// Fetch members, topic and power levels of a room the puppet has just joined, unless
    /// another XMPP user's puppet is there already.
    pub(crate) async fn load(
        &self,
        room_id: &RoomId,
        puppet: &OwnedUserId,
    ) -> Result<(), (JoinFailure, String)> {
        if self.rooms.lock().expect("rooms lock").is_loaded(room_id) {
            return Ok(());
        }
        let request = membership::joined_members::v3::Request::new(room_id.to_owned());
        let members = self
            .client
            .call(request, Some(puppet), Retry::For(Duration::from_secs(30)))
            .await
            .map_err(|e| e.join_failure())?;
        let topic = self
            .content::<RoomTopicEventContent>(room_id, puppet, StateEventType::RoomTopic)
            .await
            .map(|t| t.topic)
            .unwrap_or_default();
        let power = self
            .json(room_id, puppet, StateEventType::RoomPowerLevels)
            .await;
        let room_avatar = self
            .json(room_id, puppet, StateEventType::RoomAvatar)
            .await
            .and_then(|avatar| Some(avatar["url"].as_str()?.to_owned()));
        let avatars: Vec<(String, String)> = members
            .joined
            .iter()
            .filter_map(|(id, m)| Some((id.to_string(), m.avatar_url.as_ref()?.to_string())))
            .collect();
        let members = members
            .joined
            .into_iter()
            .map(|(id, m)| (id.to_string(), m.display_name))
            .collect();
        let mut rooms = self.rooms.lock().expect("rooms lock");
        rooms.load(room_id, members, puppet.as_str(), topic, power.as_ref());
        rooms.set_avatars(room_id, room_avatar, avatars);
        Ok(())
    }

    /// The content of the room's state event of `kind`, as JSON.
    async fn json(
        &self,
        room_id: &RoomId,
        puppet: &OwnedUserId,
        kind: StateEventType,
    ) -> Option<serde_json::Value> {
        let request = state::get_state_event_for_key::v3::Request::new(
            room_id.to_owned(),
            kind,
            String::new(),
        );
        let response = self
            .client
            .call(request, Some(puppet), Retry::Once)
            .await
            .ok()?;
        serde_json::from_str(response.event_or_content.get()).ok()
    }

    /// The content of the room's state event of `kind`, typed.
    async fn content<T: serde::de::DeserializeOwned>(
        &self,
        room_id: &RoomId,
        puppet: &OwnedUserId,
        kind: StateEventType,
    ) -> Option<T> {
        serde_json::from_value(self.json(room_id, puppet, kind).await?).ok()
    }

    /// The user sets the room's topic.
    pub(crate) async fn set_subject(
        &self,
        user: &UserRef,
        room: RoomRef,
        subject: String,
    ) -> Vec<Event> {
        let Some((room_id, _)) = self.rooms.lock().expect("rooms lock").joined(user, &room) else {
            return vec![];
        };
        let puppet = self.puppets.id(user);
        let content = RoomTopicEventContent::new(subject);
        let request = match state::send_state_event::v3::Request::new(
            room_id.clone(),
            &ruma::events::EmptyStateKey,
            &content,
        ) {
            Ok(r) => r,
            Err(e) => return vec![server_text(user, &room.server, &e.to_string())],
        };
        match self
            .client
            .call(request, Some(&puppet), Retry::For(Duration::from_secs(60)))
            .await
        {
            Ok(_) => vec![],
            Err(e) => vec![Event::SendFailed {
                user: user.clone(),
                peer: Peer::Room(room),
                id: None,
                text: format!("the topic was not changed: {e}"),
            }],
        }
    }

    /// The user kicks the member called `nick`.
    pub(crate) async fn kick(
        &self,
        user: &UserRef,
        room: RoomRef,
        nick: String,
        reason: Option<String>,
    ) -> Vec<Event> {
        let target = {
            let rooms = self.rooms.lock().expect("rooms lock");
            rooms
                .joined(user, &room)
                .and_then(|(room_id, _)| Some((room_id.clone(), rooms.member_id(&room_id, &nick)?)))
        };
        let Some((room_id, target)) = target else {
            return vec![server_text(
                user,
                &room.server,
                &format!("nobody called {nick} here"),
            )];
        };
        let Ok(target) = OwnedUserId::try_from(target) else {
            return vec![];
        };
        let mut request = membership::kick_user::v3::Request::new(room_id, target);
        request.reason = reason;
        match self
            .client
            .call(request, Some(&self.puppets.id(user)), Retry::Once)
            .await
        {
            Ok(_) => vec![],
            Err(e) => vec![server_text(
                user,
                &room.server,
                &format!("kick refused: {e}"),
            )],
        }
    }
}
