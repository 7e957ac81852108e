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
//!
//! [`MatrixNetwork`] composes parts that each own their state: the puppets ([`puppets`]),
//! the message links ([`links`]), the room ids and direct rooms ([`directory`]), the
//! puppets' memberships ([`membership`]) and room state ([`room_state`]), the members
//! ([`rooms`]), the send side ([`outgoing`]), the transaction side ([`incoming`]) and the
//! per-user workers ([`workers`]).

pub mod client;
mod directory;
pub mod ids;
mod incoming;
mod links;
mod listener;
mod membership;
mod outgoing;
mod puppets;
pub mod registration;
mod room_state;
mod rooms;
pub mod store;
pub mod text;
mod workers;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use causeway_bridge::{Action, BridgeError, Event, Network, NetworkContext, NetworkKind, UserRef};
use tokio::sync::mpsc;
use tracing::info;

use crate::client::Client;
use crate::directory::Directory;
use crate::incoming::Incoming;
use crate::links::MessageLinks;
use crate::listener::Listener;
use crate::membership::Memberships;
use crate::outgoing::Outgoing;
use crate::puppets::Puppets;
use crate::room_state::RoomState;
use crate::rooms::Rooms;
use crate::store::MatrixStore;
use crate::workers::{JoinsInProgress, Performer, Workers};

/// The network this crate bridges.
pub const KIND: NetworkKind = NetworkKind::Matrix;

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

/// The members of the rooms XMPP users are in, shared by the parts.
type SharedRooms = Arc<Mutex<Rooms>>;

/// The Matrix network, shared by all XMPP users.
#[derive(Debug, Clone)]
pub struct MatrixNetwork {
    /// Where the transaction listener binds.
    listen: SocketAddr,
    puppets: Arc<Puppets>,
    workers: Arc<Workers>,
    /// The appservice API's state, served by `run`.
    api: Arc<Listener>,
    /// Events for the core; `run` forwards them to the network context.
    emitted: Arc<Mutex<Option<mpsc::Receiver<Event>>>>,
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
        let MatrixSettings {
            homeserver,
            server_name,
            user_prefix,
            listen,
            as_token,
            hs_token,
            member_limit,
        } = settings;
        let (emit, emitted) = mpsc::channel(4096);
        let client = Client::new(&homeserver, &as_token);
        let rooms: SharedRooms = Arc::new(Mutex::new(Rooms::new(member_limit, nicks)));
        let puppets = Arc::new(Puppets::new(
            client.clone(),
            server_name.clone(),
            user_prefix,
            allowed,
        ));
        let links = Arc::new(MessageLinks::new(store.clone()));
        let directory = Arc::new(Directory::new(
            client.clone(),
            store.clone(),
            puppets.clone(),
            server_name,
        ));
        let room_state = Arc::new(RoomState::new(
            client.clone(),
            puppets.clone(),
            rooms.clone(),
        ));
        let joins = Arc::new(JoinsInProgress::new());
        let performer = Performer {
            membership: Arc::new(Memberships::new(
                client.clone(),
                puppets.clone(),
                directory.clone(),
                room_state.clone(),
                rooms.clone(),
            )),
            room_state,
            outgoing: Arc::new(Outgoing {
                client: client.clone(),
                puppets: puppets.clone(),
                links: links.clone(),
                directory: directory.clone(),
                rooms: rooms.clone(),
            }),
            directory: directory.clone(),
            joins: joins.clone(),
            emit: emit.clone(),
        };
        let incoming = Incoming {
            client,
            puppets: puppets.clone(),
            links,
            directory,
            rooms,
            emit,
        };
        let api = Listener {
            hs_token,
            store,
            incoming,
            puppets: puppets.clone(),
            joins,
            transactions: tokio::sync::Mutex::new(()),
        };
        MatrixNetwork {
            listen,
            puppets,
            workers: Arc::new(Workers::new(performer)),
            api: Arc::new(api),
            emitted: Arc::new(Mutex::new(Some(emitted))),
        }
    }

    /// New access rules (a configuration reload).
    pub fn set_allowed(&self, allowed: Allowed) {
        self.puppets.set_allowed(allowed);
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
        let Some(mut emitted) = self.emitted.lock().expect("emitted lock").take() else {
            return Err(BridgeError::Invalid("the Matrix network runs once".into()));
        };
        let listener = tokio::net::TcpListener::bind(self.listen)
            .await
            .map_err(|e| {
                BridgeError::Unreachable(format!(
                    "cannot listen on {} for the homeserver: {e}",
                    self.listen
                ))
            })?;
        info!(listen = %self.listen, "Matrix transaction listener up");
        let server = listener::serve(listener, self.api.clone(), shutdown.clone());
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
        if self.puppets.try_id(user).is_none() {
            return Err(BridgeError::Invalid(format!(
                "{user} is too long to be written as a Matrix user id (255 bytes at most)"
            )));
        }
        self.workers.queue(user, action);
        Ok(())
    }
}

/// A notice from the network to the user.
fn server_text(user: &UserRef, server: &str, text: &str) -> Event {
    Event::ServerText {
        user: user.clone(),
        server: server.to_owned(),
        text: text.to_owned(),
    }
}
