//! Which room a name means: room references resolved to room ids (aliases through the
//! homeserver, lower-cased room version 12 ids through a personal account's own rooms, the
//! ids remembered with their case or the public directory), the direct rooms between puppets and Matrix users (made on
//! first use, or joined when a Matrix user opens one), and the public room list.

use std::sync::Arc;
use std::time::Duration;

use causeway_bridge::{Event, JoinFailure, RoomRef, UserRef};
use ruma::api::client::directory::get_public_rooms;
use ruma::api::client::{alias, membership, room};
use ruma::{OwnedRoomAliasId, OwnedRoomId, OwnedUserId, RoomId};
use tracing::{debug, info, warn};

use crate::client::{Client, Retry};
use crate::ids;
use crate::puppets::Puppets;
use crate::store::{MatrixStore, StoreFailure};

/// The rooms the gateway knows by id, and the direct rooms.
#[derive(Debug)]
pub(crate) struct Directory {
    client: Client,
    store: Arc<dyn MatrixStore>,
    puppets: Arc<Puppets>,
    /// The homeserver's server name: its own room list needs no `server` parameter.
    server_name: String,
}

impl Directory {
    /// The directory of the homeserver `client` reaches, remembering ids in `store`.
    pub(crate) fn new(
        client: Client,
        store: Arc<dyn MatrixStore>,
        puppets: Arc<Puppets>,
        server_name: String,
    ) -> Directory {
        Directory {
            client,
            store,
            puppets,
            server_name,
        }
    }

    /// The room id a room reference names, resolving aliases and the case of lower-cased
    /// room version 12 ids.
    pub(crate) async fn resolve(
        &self,
        room: &RoomRef,
    ) -> Result<OwnedRoomId, (JoinFailure, String)> {
        let name = ids::matrix_name(room);
        if room.name.starts_with('#') {
            let alias = OwnedRoomAliasId::try_from(name.as_str())
                .map_err(|e| (JoinFailure::NoSuchRoom, format!("{name}: {e}")))?;
            let request = alias::get_alias::v3::Request::new(alias);
            return match self.client.call(request, None, Retry::Once).await {
                Ok(found) => {
                    self.remember(&found.room_id).await;
                    Ok(found.room_id)
                }
                Err(e) => Err(e.join_failure()),
            };
        }
        let folded = name.to_lowercase();
        if let Some(own) = self.client.own_room(&folded) {
            self.remember(&own).await;
            return Ok(own);
        }
        let exact = match self.store.find_room(&folded).await {
            Ok(Some(exact)) => exact,
            Ok(None) => self
                .find_public_room(&name)
                .await
                .unwrap_or_else(|| name.clone()),
            Err(e) => return Err((JoinFailure::Other, e.to_string())),
        };
        OwnedRoomId::try_from(exact.as_str())
            .map_err(|e| (JoinFailure::NoSuchRoom, format!("{name}: {e}")))
    }

    /// A room id never seen before, in the case the directory has it: XMPP delivers room
    /// version 12 ids lower-cased, so a public room is looked up case-insensitively.
    async fn find_public_room(&self, name: &str) -> Option<String> {
        let folded = name.to_lowercase();
        let mut since = None;
        for _ in 0..50 {
            let mut request = get_public_rooms::v3::Request::new();
            request.limit = Some(ruma::UInt::from(500u32));
            request.since = since.take();
            let page = match self.client.call(request, None, Retry::Once).await {
                Ok(page) => page,
                Err(e) => {
                    debug!(error = %e, "cannot search the room directory");
                    return None;
                }
            };
            if let Some(room) = page
                .chunk
                .iter()
                .find(|r| r.room_id.as_str().to_lowercase() == folded)
            {
                self.remember(&room.room_id).await;
                return Some(room.room_id.to_string());
            }
            since = Some(page.next_batch?);
        }
        None
    }

    /// Remember a room id with its case, so that its lower-cased form finds it again.
    pub(crate) async fn remember(&self, room_id: &RoomId) {
        if let Err(e) = self.store.remember_room(room_id.as_str()).await {
            warn!(room = %room_id, error = %e, "cannot remember the room id");
        }
    }

    /// The direct room between the user's puppet and `@nick:server`, created on first use.
    pub(crate) async fn direct_room(
        &self,
        user: &UserRef,
        server: &str,
        nick: &str,
    ) -> Result<OwnedRoomId, String> {
        let remote = OwnedUserId::try_from(format!("@{nick}:{server}"))
            .map_err(|e| format!("@{nick}:{server} is not a Matrix user id: {e}"))?;
        let puppet = self
            .puppets
            .ensure(user, ids::default_nick(user))
            .await
            .map_err(|e| e.to_string())?;
        if let Some(room) = self
            .store
            .direct_room(puppet.as_str(), remote.as_str())
            .await
            .map_err(|e| e.to_string())?
        {
            return OwnedRoomId::try_from(room.as_str()).map_err(|e| e.to_string());
        }
        // A personal account's direct rooms are its Matrix clients' too.
        let own = match self.client.own_direct_room(&remote) {
            Some(room) => Some(Ok(room)),
            None => self.client.open_own_direct_room(&remote).await,
        };
        if let Some(room) = own {
            let room = room.map_err(|e| format!("cannot open a direct room with {remote}: {e}"))?;
            self.remember(&room).await;
            self.store
                .set_direct_room(puppet.as_str(), remote.as_str(), room.as_str())
                .await
                .map_err(|e| e.to_string())?;
            return Ok(room);
        }
        let mut request = room::create_room::v3::Request::new();
        request.is_direct = true;
        request.invite = vec![remote.clone()];
        request.preset = Some(room::create_room::v3::RoomPreset::TrustedPrivateChat);
        let created = self
            .client
            .call(request, Some(&puppet), Retry::For(Duration::from_secs(60)))
            .await
            .map_err(|e| format!("cannot open a direct room with {remote}: {e}"))?;
        self.remember(&created.room_id).await;
        self.store
            .set_direct_room(puppet.as_str(), remote.as_str(), created.room_id.as_str())
            .await
            .map_err(|e| e.to_string())?;
        info!(room = %created.room_id, %remote, "direct room created");
        Ok(created.room_id)
    }

    /// A Matrix user opened a direct chat with the user's puppet: it joins at once, and the
    /// room is remembered as theirs.
    pub(crate) async fn join_direct(&self, user: &UserRef, room_id: &RoomId, inviter: &str) {
        let puppet = self.puppets.id(user);
        let join = membership::join_room_by_id::v3::Request::new(room_id.to_owned());
        if let Err(e) = self
            .client
            .call(join, Some(&puppet), Retry::For(Duration::from_secs(60)))
            .await
        {
            warn!(room = %room_id, error = %e, "cannot join the direct room");
            return;
        }
        self.client.joined(room_id).await;
        if let Err(e) = self
            .store
            .set_direct_room(puppet.as_str(), inviter, room_id.as_str())
            .await
        {
            warn!(room = %room_id, error = %e, "cannot remember the direct room");
        }
        info!(room = %room_id, %inviter, "joined a direct room");
    }

    /// The puppet and the Matrix user of a direct room, if it is one.
    pub(crate) async fn direct_room_parties(
        &self,
        room_id: &RoomId,
    ) -> Result<Option<(String, String)>, StoreFailure> {
        if let Some(parties) = self.store.direct_room_parties(room_id.as_str()).await? {
            return Ok(Some(parties));
        }
        // A personal account's direct rooms, made by its Matrix clients: kept from now on.
        let (Some(remote), Some(own)) = (
            self.client.direct_partner(room_id),
            self.puppets.own_account(),
        ) else {
            return Ok(None);
        };
        self.store
            .set_direct_room(own.as_str(), &remote, room_id.as_str())
            .await?;
        Ok(Some((own.to_string(), remote)))
    }

    /// The public rooms of `server` (the homeserver's own when empty or its name).
    pub(crate) async fn list_rooms(&self, user: &UserRef, server: String) -> Vec<Event> {
        // The service's own list: a personal account's rooms.
        if let Some(rooms) = server.is_empty().then(|| self.client.own_rooms()).flatten() {
            return vec![Event::RoomList {
                user: user.clone(),
                server,
                rooms,
            }];
        }
        let mut request = get_public_rooms::v3::Request::new();
        request.limit = Some(ruma::UInt::from(500u32));
        if !server.is_empty() && server != self.server_name {
            request.server = ruma::OwnedServerName::try_from(server.as_str()).ok();
        }
        let rooms = match self
            .client
            .call(request, Some(&self.puppets.id(user)), Retry::Once)
            .await
        {
            Ok(found) => found
                .chunk
                .into_iter()
                .map(|r| {
                    // The service's own list names rooms by their whole address.
                    let name = match server.is_empty() {
                        true => ids::room_localpart(r.canonical_alias.as_deref(), &r.room_id),
                        false => r
                            .canonical_alias
                            .map(|a| a.to_string())
                            .unwrap_or_else(|| r.room_id.to_string()),
                    };
                    let members =
                        u32::try_from(u64::from(r.num_joined_members)).unwrap_or(u32::MAX);
                    (name, members, r.topic.or(r.name).unwrap_or_default())
                })
                .collect(),
            Err(e) => {
                warn!(error = %e, "cannot list public rooms");
                Vec::new()
            }
        };
        vec![Event::RoomList {
            user: user.clone(),
            server,
            rooms,
        }]
    }
}
