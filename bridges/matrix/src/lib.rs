//! causeway's Matrix bridge: an application service whose puppets stand for XMPP users.
//!
//! It implements [`causeway_bridge::Network`] for Matrix. Each XMPP user who takes part is
//! represented by a puppet `@<prefix><escaped bare JID>:<server_name>`, created on first use
//! and acting through the appservice's token with identity assertion ([`client`]). The
//! homeserver pushes what happens in the puppets' rooms to the transaction listener
//! ([`listener`]); [`rooms`] keeps the members of the rooms XMPP users are in and turns
//! Matrix events into the bridge's events for every XMPP user concerned.
//!
//! Actions of one user are carried out in order by that user's worker task, so the core
//! never waits on the homeserver and a user's messages keep their order through retries.

pub mod client;
pub mod ids;
mod incoming;
mod listener;
mod outgoing;
pub mod registration;
mod rooms;
pub mod store;
pub mod text;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use causeway_bridge::{
    Action, BridgeError, Event, JoinFailure, Network, NetworkContext, NetworkKind, Peer, RoomRef,
    UserRef,
};
use ruma::api::client::{alias, membership, profile, room, state};
use ruma::events::room::member::{MembershipState, RoomMemberEventContent};
use ruma::events::room::topic::RoomTopicEventContent;
use ruma::events::StateEventType;
use ruma::{OwnedRoomAliasId, OwnedRoomId, OwnedUserId, RoomId, UserId};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::client::{CallError, Client, Retry};
use crate::rooms::Rooms;
use crate::store::MatrixStore;

/// The network this crate bridges.
pub const KIND: NetworkKind = NetworkKind::Matrix;

/// How long a message send keeps retrying while the homeserver is away.
const SEND_PATIENCE: Duration = Duration::from_secs(600);

/// How the bridge reaches its homeserver and is reached by it.
#[derive(Debug, Clone)]
pub struct MatrixSettings {
    /// The homeserver's client-server API base URL.
    pub homeserver: String,
    /// The homeserver's server name (the part after `:` in user ids).
    pub server_name: String,
    /// Localpart prefix of the puppets.
    pub user_prefix: String,
    /// Where the transaction listener binds.
    pub listen: SocketAddr,
    /// The appservice's token towards the homeserver.
    pub as_token: String,
    /// The homeserver's token towards the appservice.
    pub hs_token: String,
    /// How many members a big room shows at join; the others appear when they speak.
    pub member_limit: usize,
}

/// Which XMPP users may be reached through puppets (the gateway's `[access]`).
pub type Allowed = Arc<dyn Fn(&UserRef) -> bool + Send + Sync>;

/// What the gateway accepts as a nick: the name as the gateway will write it (normalised),
/// or `None` when it cannot be one. A Matrix member whose display name is refused shows
/// under its user id's localpart.
pub type NickRule = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The access rule in force.
struct Access(Allowed);

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Access(..)")
    }
}

/// The Matrix network, shared by all XMPP users.
#[derive(Debug, Clone)]
pub struct MatrixNetwork {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    settings: MatrixSettings,
    client: Client,
    store: Arc<dyn MatrixStore>,
    /// Who may be reached: a puppet of anyone else is nobody's.
    allowed: std::sync::RwLock<Access>,
    rooms: Mutex<Rooms>,
    /// Puppets known to exist on the homeserver.
    registered: Mutex<std::collections::HashSet<String>>,
    workers: Mutex<HashMap<UserRef, mpsc::UnboundedSender<Action>>>,
    /// Events for the core; `run` forwards them to the network context.
    emit: mpsc::Sender<Event>,
    emitted: Mutex<Option<mpsc::Receiver<Event>>>,
    /// Serialises transactions from the homeserver.
    transactions: tokio::sync::Mutex<()>,
    /// Joins asked for and not done yet: transactions wait for them (a restart's rejoins),
    /// so that what the homeserver kept for a room while we were away is not dropped for
    /// arriving before the room is known again.
    joining: tokio::sync::watch::Sender<usize>,
}

impl MatrixNetwork {
    /// The network for `settings`, keeping its state in `store`, reaching the XMPP users
    /// `allowed` accepts, showing display names as nicks where `nicks` accepts them.
    pub fn new(
        settings: MatrixSettings,
        store: Arc<dyn MatrixStore>,
        allowed: Allowed,
        nicks: NickRule,
    ) -> MatrixNetwork {
        let (emit, emitted) = mpsc::channel(4096);
        let client = Client::new(&settings.homeserver, &settings.as_token);
        let rooms = Rooms::new(settings.member_limit, nicks);
        MatrixNetwork {
            inner: Arc::new(Inner {
                settings,
                client,
                store,
                allowed: std::sync::RwLock::new(Access(allowed)),
                rooms: Mutex::new(rooms),
                registered: Default::default(),
                workers: Default::default(),
                emit,
                emitted: Mutex::new(Some(emitted)),
                transactions: tokio::sync::Mutex::new(()),
                joining: tokio::sync::watch::Sender::new(0),
            }),
        }
    }
}

impl MatrixNetwork {
    /// New access rules (a configuration reload).
    pub fn set_allowed(&self, allowed: Allowed) {
        *self.inner.allowed.write().expect("allowed lock") = Access(allowed);
    }
}

#[async_trait]
impl Network for MatrixNetwork {
    fn kind(&self) -> NetworkKind {
        KIND
    }

    async fn run(
        &self,
        ctx: NetworkContext,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), BridgeError> {
        let Some(mut emitted) = self.inner.emitted.lock().expect("emitted lock").take() else {
            return Err(BridgeError::Invalid("the Matrix network runs once".into()));
        };
        let listener = tokio::net::TcpListener::bind(self.inner.settings.listen)
            .await
            .map_err(|e| {
                BridgeError::Unreachable(format!(
                    "cannot listen on {} for the homeserver: {e}",
                    self.inner.settings.listen
                ))
            })?;
        info!(listen = %self.inner.settings.listen, "Matrix transaction listener up");
        let server = listener::serve(listener, self.inner.clone(), shutdown.clone());
        let forward = async {
            while let Some(event) = emitted.recv().await {
                if ctx.events.send(event).await.is_err() {
                    break;
                }
            }
        };
        tokio::select! {
            result = server => result.map_err(|e| BridgeError::Unreachable(e.to_string()))?,
            () = forward => {}
            _ = shutdown.wait_for(|stop| *stop) => {}
        }
        Ok(())
    }

    async fn act(&self, user: &UserRef, action: Action) -> Result<(), BridgeError> {
        if let Action::Raw { .. } = action {
            return Err(BridgeError::Invalid(
                "Matrix has no raw protocol lines".into(),
            ));
        }
        if self.inner.try_puppet_id(user).is_none() {
            return Err(BridgeError::Invalid(format!(
                "{user} is too long to be written as a Matrix user id (255 bytes at most)"
            )));
        }
        if let Action::Join { .. } = action {
            self.inner.joining.send_modify(|n| *n += 1);
        }
        let mut workers = self.inner.workers.lock().expect("workers lock");
        if let Some(worker) = workers.get(user) {
            if worker.send(action.clone()).is_ok() {
                return Ok(());
            }
        }
        let (tx, rx) = mpsc::unbounded_channel();
        tx.send(action).expect("a fresh channel takes a message");
        workers.insert(user.clone(), tx);
        tokio::spawn(worker(self.inner.clone(), user.clone(), rx));
        Ok(())
    }
}

/// Carries out one user's actions in order.
async fn worker(inner: Arc<Inner>, user: UserRef, mut actions: mpsc::UnboundedReceiver<Action>) {
    while let Some(action) = actions.recv().await {
        let join = matches!(action, Action::Join { .. });
        let events = inner.perform(&user, action).await;
        if join {
            inner.joining.send_modify(|n| *n = n.saturating_sub(1));
        }
        for event in events {
            if inner.emit.send(event).await.is_err() {
                return;
            }
        }
    }
}

impl Inner {
    /// The user's puppet id, unless the JID is too long for one.
    fn try_puppet_id(&self, user: &UserRef) -> Option<OwnedUserId> {
        let local = ids::puppet_localpart(&self.settings.user_prefix, user);
        OwnedUserId::try_from(format!("@{local}:{}", self.settings.server_name)).ok()
    }

    /// The user's puppet id; every user reaching the workers has one ([`Network::act`]
    /// refuses the others).
    fn puppet_id(&self, user: &UserRef) -> OwnedUserId {
        self.try_puppet_id(user)
            .expect("act() refuses users without a puppet id")
    }

    /// The XMPP user a Matrix user id stands for: one of our puppets (in its one canonical
    /// spelling) of a user the gateway serves. Invitations, direct chats and the
    /// homeserver's questions about anyone else reach nobody.
    fn puppet_owner(&self, user_id: &str) -> Option<UserRef> {
        let (local, server) = ids::split_user_id(user_id)?;
        if server != self.settings.server_name {
            return None;
        }
        let owner = ids::puppet_owner(&self.settings.user_prefix, local)?;
        let canonical = ids::puppet_localpart(&self.settings.user_prefix, &owner) == local;
        let allowed = (self.allowed.read().expect("allowed lock").0)(&owner);
        (canonical && owner.0.contains('@') && allowed).then_some(owner)
    }

    async fn perform(&self, user: &UserRef, action: Action) -> Vec<Event> {
        match action {
            Action::Join {
                room,
                nick,
                password: _,
            } => self.join(user, room, nick).await,
            Action::Part { room, reason } => self.part(user, room, reason).await,
            Action::Send {
                to,
                body,
                kind,
                id,
                refs,
            } => {
                let message = outgoing::Outgoing {
                    body,
                    kind,
                    id,
                    refs,
                };
                self.send(user, to, message).await
            }
            Action::Retract { to, id } => self.retract(user, to, id).await,
            Action::React { to, id, reactions } => self.react(user, to, id, reactions).await,
            Action::SetSubject { room, subject } => self.set_subject(user, room, subject).await,
            Action::ChangeNick { server, nick, room } => {
                self.change_nick(user, &server, nick, room).await
            }
            Action::Kick { room, nick, reason } => self.kick(user, room, nick, reason).await,
            Action::Disconnect { server, reason } => {
                let rooms = self.rooms.lock().expect("rooms lock").rooms_of(user);
                let mut events = Vec::new();
                for room in rooms {
                    if server.as_ref().is_none_or(|s| *s == room.server) {
                        events.extend(self.part(user, room, reason.clone()).await);
                    }
                }
                events
            }
            Action::ListRooms { server } => self.list_rooms(user, server).await,
            Action::SetPrivilege { room, .. } => vec![server_text(
                user,
                &room.server,
                "changing power levels from XMPP is not supported yet",
            )],
            Action::Raw { .. } => vec![],
        }
    }

    /// Make sure the puppet exists, with `nick` as display name when it is new.
    async fn ensure_puppet(&self, user: &UserRef, nick: &str) -> Result<OwnedUserId, CallError> {
        let id = self.puppet_id(user);
        if self
            .registered
            .lock()
            .expect("registered lock")
            .contains(id.as_str())
        {
            return Ok(id);
        }
        let mut request = ruma::api::client::account::register::v3::Request::new();
        request.username = Some(id.localpart().to_owned());
        request.login_type =
            Some(ruma::api::client::account::register::LoginType::ApplicationService);
        request.inhibit_login = true;
        match self.client.call(request, None, Retry::Once).await {
            Ok(_) => {
                info!(puppet = %id, "puppet registered");
                let name = profile::set_profile_field::v3::Request::new(
                    id.clone(),
                    ruma::profile::ProfileFieldValue::DisplayName(nick.to_owned()),
                );
                if let Err(e) = self.client.call(name, Some(&id), Retry::Once).await {
                    warn!(puppet = %id, error = %e, "cannot set the puppet's display name");
                }
            }
            Err(e) if e.errcode() == Some("M_USER_IN_USE") => {}
            Err(e) => return Err(e),
        }
        self.registered
            .lock()
            .expect("registered lock")
            .insert(id.to_string());
        Ok(id)
    }

    /// The room id a room reference names, resolving aliases and the case of lower-cased
    /// room version 12 ids.
    async fn resolve(&self, room: &RoomRef) -> Result<OwnedRoomId, (JoinFailure, String)> {
        let name = ids::matrix_name(room);
        if room.name.starts_with('#') {
            let alias = OwnedRoomAliasId::try_from(name.as_str())
                .map_err(|e| (JoinFailure::NoSuchRoom, format!("{name}: {e}")))?;
            let request = alias::get_alias::v3::Request::new(alias);
            return match self.client.call(request, None, Retry::Once).await {
                Ok(found) => {
                    self.remember_room(&found.room_id).await;
                    Ok(found.room_id)
                }
                Err(e) => Err(join_failure(&e)),
            };
        }
        let exact = match self.store.find_room(&name.to_lowercase()).await {
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
            let mut request = ruma::api::client::directory::get_public_rooms::v3::Request::new();
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
                self.remember_room(&room.room_id).await;
                return Some(room.room_id.to_string());
            }
            since = Some(page.next_batch?);
        }
        None
    }

    async fn remember_room(&self, room_id: &RoomId) {
        if let Err(e) = self.store.remember_room(room_id.as_str()).await {
            warn!(room = %room_id, error = %e, "cannot remember the room id");
        }
    }

    async fn join(&self, user: &UserRef, room: RoomRef, nick: String) -> Vec<Event> {
        let failed = |failure: JoinFailure, text: String| {
            vec![Event::JoinFailed {
                user: user.clone(),
                room: room.clone(),
                failure,
                text,
            }]
        };
        if nick.trim().is_empty() {
            return failed(JoinFailure::BadNick, "an empty nick".into());
        }
        let puppet = match self.ensure_puppet(user, &nick).await {
            Ok(puppet) => puppet,
            Err(e) => {
                let (failure, text) = join_failure(&e);
                return failed(failure, text);
            }
        };
        let room_id = match self.resolve(&room).await {
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
        if let Err(e) = self.client.call(request, Some(&puppet), Retry::Once).await {
            // Rooms that refuse a join through the state API still take /join; the display
            // name follows in a second member event.
            let join = membership::join_room_by_id::v3::Request::new(room_id.clone());
            if let Err(e2) = self.client.call(join, Some(&puppet), Retry::Once).await {
                debug!(room = %room_id, error = %e, "state join refused");
                let (failure, text) = join_failure(&e2);
                return failed(failure, text);
            }
            if let Ok(rename) = member_state() {
                if let Err(e) = self.client.call(rename, Some(&puppet), Retry::Once).await {
                    warn!(room = %room_id, error = %e, "cannot set the puppet's name in the room");
                }
            }
        }
        self.remember_room(&room_id).await;
        let loaded = self.load_room(&room_id, &puppet).await;
        if loaded.is_err() || self.nick_taken(&room_id, &nick, &puppet) {
            // Not seated after all: the puppet does not stay behind in the room.
            self.rooms
                .lock()
                .expect("rooms lock")
                .forget_unseated(&room_id);
            let leave = membership::leave_room::v3::Request::new(room_id.clone());
            if let Err(e) = self.client.call(leave, Some(&puppet), Retry::Once).await {
                warn!(room = %room_id, error = %e, "cannot leave after a failed join");
            }
            return match loaded {
                Err((failure, text)) => failed(failure, text),
                Ok(()) => conflict(),
            };
        }
        let (members, subject) = self.rooms.lock().expect("rooms lock").enter(
            &room_id,
            user,
            room.clone(),
            puppet.to_string(),
            &nick,
        );
        vec![Event::Joined {
            user: user.clone(),
            room,
            nick,
            members,
            subject,
        }]
    }

    fn nick_taken(&self, room_id: &RoomId, nick: &str, puppet: &UserId) -> bool {
        self.rooms
            .lock()
            .expect("rooms lock")
            .nick_taken(room_id, nick, puppet.as_str())
    }

    /// Fetch members, topic and power levels of a room the puppet has just joined, unless
    /// another XMPP user's puppet is there already.
    async fn load_room(
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
            .map_err(|e| join_failure(&e))?;
        let topic = self
            .state_content::<RoomTopicEventContent>(room_id, puppet, StateEventType::RoomTopic)
            .await
            .map(|t| t.topic)
            .unwrap_or_default();
        let power = self
            .state_json(room_id, puppet, StateEventType::RoomPowerLevels)
            .await;
        let members = members
            .joined
            .into_iter()
            .map(|(id, m)| (id.to_string(), m.display_name))
            .collect();
        self.rooms.lock().expect("rooms lock").load(
            room_id,
            members,
            puppet.as_str(),
            topic,
            power.as_ref(),
        );
        Ok(())
    }

    async fn state_json(
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

    async fn state_content<T: serde::de::DeserializeOwned>(
        &self,
        room_id: &RoomId,
        puppet: &OwnedUserId,
        kind: StateEventType,
    ) -> Option<T> {
        serde_json::from_value(self.state_json(room_id, puppet, kind).await?).ok()
    }

    async fn part(&self, user: &UserRef, room: RoomRef, reason: Option<String>) -> Vec<Event> {
        let left = self.rooms.lock().expect("rooms lock").leave(user, &room);
        let left_event = Event::Left {
            user: user.clone(),
            room: room.clone(),
            departure: causeway_bridge::Departure::Part,
            reason: reason.clone(),
        };
        let Some(room_id) = left else {
            return vec![left_event];
        };
        let puppet = self.puppet_id(user);
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

    /// The direct room between the user's puppet and `@nick:server`, created on first use.
    async fn direct_room(
        &self,
        user: &UserRef,
        server: &str,
        nick: &str,
    ) -> Result<OwnedRoomId, String> {
        let remote = OwnedUserId::try_from(format!("@{nick}:{server}"))
            .map_err(|e| format!("@{nick}:{server} is not a Matrix user id: {e}"))?;
        let puppet = self
            .ensure_puppet(user, ids::default_nick(user))
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
        let mut request = room::create_room::v3::Request::new();
        request.is_direct = true;
        request.invite = vec![remote.clone()];
        request.preset = Some(room::create_room::v3::RoomPreset::TrustedPrivateChat);
        let created = self
            .client
            .call(request, Some(&puppet), Retry::For(Duration::from_secs(60)))
            .await
            .map_err(|e| format!("cannot open a direct room with {remote}: {e}"))?;
        self.remember_room(&created.room_id).await;
        self.store
            .set_direct_room(puppet.as_str(), remote.as_str(), created.room_id.as_str())
            .await
            .map_err(|e| e.to_string())?;
        info!(room = %created.room_id, %remote, "direct room created");
        Ok(created.room_id)
    }

    async fn set_subject(&self, user: &UserRef, room: RoomRef, subject: String) -> Vec<Event> {
        let Some((room_id, _)) = self.rooms.lock().expect("rooms lock").joined(user, &room) else {
            return vec![];
        };
        let puppet = self.puppet_id(user);
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

    /// Matrix nicks are per room: the change applies to the room it was asked in (to every
    /// room on the server when none is named).
    async fn change_nick(
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
        let puppet = self.puppet_id(user);
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
                    self.rooms.lock().expect("rooms lock").renamed_self(
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

    async fn kick(
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
            .call(request, Some(&self.puppet_id(user)), Retry::Once)
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

    async fn list_rooms(&self, user: &UserRef, server: String) -> Vec<Event> {
        let mut request = ruma::api::client::directory::get_public_rooms::v3::Request::new();
        request.limit = Some(ruma::UInt::from(500u32));
        if !server.is_empty() && server != self.settings.server_name {
            request.server = ruma::OwnedServerName::try_from(server.as_str()).ok();
        }
        let rooms = match self
            .client
            .call(request, Some(&self.puppet_id(user)), Retry::Once)
            .await
        {
            Ok(found) => found
                .chunk
                .into_iter()
                .map(|r| {
                    let name = r
                        .canonical_alias
                        .map(|a| a.to_string())
                        .unwrap_or_else(|| r.room_id.to_string());
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

fn server_text(user: &UserRef, server: &str, text: &str) -> Event {
    Event::ServerText {
        user: user.clone(),
        server: server.to_owned(),
        text: text.to_owned(),
    }
}

fn send_failed(user: &UserRef, peer: Peer, id: String, text: &str) -> Event {
    Event::SendFailed {
        user: user.clone(),
        peer,
        id: Some(id),
        text: text.to_owned(),
    }
}

/// The XEP-0045 failure for a homeserver's refusal.
fn join_failure(e: &CallError) -> (JoinFailure, String) {
    let text = e.to_string();
    let failure = match e {
        CallError::Unreachable(_) => JoinFailure::Unreachable,
        CallError::Refused { error, .. } if error.contains("banned") => JoinFailure::Banned,
        CallError::Refused {
            errcode, status, ..
        } => match errcode.as_str() {
            "M_NOT_FOUND" => JoinFailure::NoSuchRoom,
            "M_FORBIDDEN" => JoinFailure::InviteOnly,
            _ if *status == 404 => JoinFailure::NoSuchRoom,
            _ => JoinFailure::Other,
        },
        CallError::Invalid(_) => JoinFailure::Other,
    };
    (failure, text)
}
