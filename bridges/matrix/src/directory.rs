//! Which room a name means: room references resolved to room ids (aliases through the
//! homeserver, lower-cased room version 12 ids through a personal account's own rooms, the
//! ids remembered with their case or the public directory), the direct rooms between
//! puppets and Matrix users (made on first use, or joined when a Matrix user opens one),
//! and the room lists (a personal account's rooms, the public ones, a space's).

use std::sync::Arc;
use std::time::Duration;

use causeway_bridge::{BridgeError, Event, JoinFailure, ListedRoom, RoomRef, UserRef};
use ruma::api::client::directory::get_public_rooms;
use ruma::api::client::space::get_hierarchy;
use ruma::api::client::{alias, membership, room};
use ruma::room::RoomType;
use ruma::{OwnedRoomAliasId, OwnedRoomId, OwnedUserId, RoomId};
use tracing::{debug, info, warn};

use crate::client::{CallError, Client, Retry};
use crate::ids;
use crate::puppets::Puppets;
use crate::store::{MatrixStore, StoreFailure};

/// How many pages of a space's rooms (100 each) a list takes at most.
const HIERARCHY_PAGES: usize = 10;

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

    /// The direct room between the user's puppet and `@nick:server` if there is one
    /// already: nothing is created, nobody invited (for typing and read markers, which must
    /// not open a chat by themselves).
    pub(crate) async fn existing_direct_room(
        &self,
        user: &UserRef,
        server: &str,
        nick: &str,
    ) -> Option<OwnedRoomId> {
        let remote = OwnedUserId::try_from(format!("@{nick}:{server}")).ok()?;
        let puppet = self.puppets.try_id(user)?;
        let kept = self
            .store
            .direct_room(puppet.as_str(), remote.as_str())
            .await
            .ok()
            .flatten();
        match kept {
            Some(room) => OwnedRoomId::try_from(room.as_str()).ok(),
            None => self.client.own_direct_room(&remote),
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

    /// A Matrix user (or another XMPP user's puppet) opened a direct chat with the user's
    /// puppet: it joins at once, and the room is remembered as theirs.
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

    /// Each (puppet, Matrix user) whose direct room this is: none when it is none, two when
    /// it joins two puppets.
    pub(crate) async fn direct_room_parties(
        &self,
        room_id: &RoomId,
    ) -> Result<Vec<(String, String)>, StoreFailure> {
        let parties = self.store.direct_room_parties(room_id.as_str()).await?;
        if !parties.is_empty() {
            return Ok(parties);
        }
        // A personal account's direct rooms, made by its Matrix clients: kept from now on.
        let (Some(remote), Some(own)) = (
            self.client.direct_partner(room_id),
            self.puppets.own_account(),
        ) else {
            return Ok(vec![]);
        };
        self.store
            .set_direct_room(own.as_str(), &remote, room_id.as_str())
            .await?;
        Ok(vec![(own.to_string(), remote)])
    }

    /// The rooms of the room list `server` asks for: on the service's own list (`server`
    /// empty) a personal account's rooms, else the public rooms of `server` (the
    /// homeserver's own when empty or its name); `within` a space, that space's rooms.
    pub(crate) async fn list_rooms(
        &self,
        user: &UserRef,
        server: String,
        within: Option<RoomRef>,
    ) -> Vec<Event> {
        let rooms = match &within {
            Some(space) => self.space_rooms(user, space).await,
            None => Ok(self.server_rooms(user, &server).await),
        };
        vec![Event::RoomList {
            user: user.clone(),
            server,
            within,
            rooms,
        }]
    }

    /// A personal account's rooms (for the service's own list), else the public rooms of
    /// `server`; none when the homeserver cannot say.
    async fn server_rooms(&self, user: &UserRef, server: &str) -> Vec<ListedRoom> {
        if let Some(rooms) = server.is_empty().then(|| self.client.own_rooms()).flatten() {
            return rooms;
        }
        let mut request = get_public_rooms::v3::Request::new();
        request.limit = Some(ruma::UInt::from(500u32));
        if !server.is_empty() && server != self.server_name {
            request.server = ruma::OwnedServerName::try_from(server).ok();
        }
        let found = match self
            .client
            .call(request, Some(&self.puppets.id(user)), Retry::Once)
            .await
        {
            Ok(found) => found,
            Err(e) => {
                warn!(error = %e, "cannot list public rooms");
                return Vec::new();
            }
        };
        let own_list = server.is_empty();
        let rooms = found.chunk.into_iter().map(|r| {
            // The service's own list names rooms by their whole address, and only there
            // can a space's rooms be asked for by that name.
            let name = match own_list {
                true => ids::room_localpart(r.canonical_alias.as_deref(), &r.room_id),
                false => r
                    .canonical_alias
                    .map(|a| a.to_string())
                    .unwrap_or_else(|| r.room_id.to_string()),
            };
            let space = own_list && r.room_type == Some(RoomType::Space);
            let members = u64::from(r.num_joined_members);
            ids::listed_room(name, members, r.name, r.topic, space)
        });
        rooms.collect()
    }

    /// The rooms of a space one level down (sub-spaces among them), whether the account is
    /// in them or not: the homeserver's `/hierarchy`, which shows the rooms the account may
    /// see or join, each with its name, topic, alias and member count.
    async fn space_rooms(
        &self,
        user: &UserRef,
        space: &RoomRef,
    ) -> Result<Vec<ListedRoom>, BridgeError> {
        let refused = |e: CallError| match e {
            CallError::Unreachable(text) => BridgeError::Unreachable(text),
            other => BridgeError::NotFound(format!("{}: {other}", ids::matrix_name(space))),
        };
        let space_id = match self.resolve(space).await {
            Ok(id) => id,
            Err((JoinFailure::Unreachable, text)) => return Err(BridgeError::Unreachable(text)),
            Err((_, text)) => return Err(BridgeError::NotFound(text)),
        };
        let mut rooms = Vec::new();
        let mut from = None;
        for _ in 0..HIERARCHY_PAGES {
            let mut request = get_hierarchy::v1::Request::new(space_id.clone());
            request.max_depth = Some(ruma::UInt::from(1u32));
            request.limit = Some(ruma::UInt::from(100u32));
            request.from = from.take();
            let page = self
                .client
                .call(request, Some(&self.puppets.id(user)), Retry::Once)
                .await
                .map_err(refused)?;
            for room in page.rooms.into_iter().map(|chunk| chunk.summary) {
                let is_space = room.room_type == Some(RoomType::Space);
                if room.room_id == space_id {
                    if !is_space {
                        let text = format!("{} is no space", ids::matrix_name(space));
                        return Err(BridgeError::NotFound(text));
                    }
                    continue;
                }
                let name = ids::room_localpart(room.canonical_alias.as_deref(), &room.room_id);
                let members = u64::from(room.num_joined_members);
                rooms.push(ids::listed_room(
                    name, members, room.name, room.topic, is_space,
                ));
            }
            match page.next_batch {
                Some(next) => from = Some(next),
                None => break,
            }
        }
        Ok(rooms)
    }
}
