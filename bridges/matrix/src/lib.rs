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

mod catch_up;
pub mod client;
mod directory;
#[doc(hidden)]
pub mod fuzzing;
mod history;
mod html;
pub mod ids;
mod incoming;
mod links;
mod listener;
mod media;
mod membership;
mod outgoing;
mod parts;
mod personal;
mod pictures;
mod puppets;
pub mod registration;
mod room_state;
mod rooms;
mod signals;
pub mod store;
pub mod text;
mod workers;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;
use causeway_bridge::{
    AccountReply, AccountRequest, Action, BridgeError, Event, Network, NetworkContext, NetworkKind,
    UserRef,
};
use tokio::sync::mpsc;
use tracing::info;

use crate::client::Client;
use crate::listener::Listener;
use crate::media::serve::Endpoint;
pub use crate::media::MediaSettings;
use crate::media::Shelf;
use crate::parts::{Parts, Reach};
use crate::personal::Personal;
use crate::puppets::Puppets;
use crate::rooms::Rooms;
use crate::store::MatrixStore;

/// The network this crate bridges.
pub const KIND: NetworkKind = NetworkKind::Matrix;

/// What the bridge runs: the application service, personal logins, or both.
#[derive(Debug, Clone)]
pub struct MatrixSettings {
    /// The application service, when the gateway runs one.
    pub appservice: Option<AppserviceSettings>,
    /// Personal logins, when users may log in to their own Matrix accounts.
    pub personal: Option<PersonalSettings>,
    /// How many members a big room shows at join; the others appear when they speak.
    pub member_limit: usize,
    /// How files cross.
    pub media: MediaSettings,
}

/// How the application service reaches its homeserver and is reached by it.
#[derive(Debug, Clone)]
pub struct AppserviceSettings {
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
}

/// Where personal logins keep their state, and how many there may be.
#[derive(Debug, Clone)]
pub struct PersonalSettings {
    /// Each logged-in user's matrix-sdk stores (state, crypto), one folder per user.
    pub store_dir: std::path::PathBuf,
    /// How many users may be logged in at once.
    pub max_logins: usize,
    /// The gateway's address (`https://matrix.example.org/`): a homeserver's login page
    /// shows it as the home of the client a browser login signs in to.
    pub home: String,
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
    /// The application service, when one is configured.
    appservice: Option<Arc<Appservice>>,
    /// Personal logins, when users may log in to their own accounts.
    personal: Option<Arc<Personal>>,
    /// Who the gateway serves (the same rule the appservice's puppets follow).
    access: Arc<Access>,
    /// Events for the core; `run` forwards them to the network context.
    emitted: Arc<Mutex<Option<mpsc::Receiver<Event>>>>,
    /// Set once `run` has returned: actions and account requests are refused from then on.
    ended: Arc<AtomicBool>,
    /// The endpoint Matrix files are fetched from, when links are on.
    media: Option<Arc<Endpoint>>,
}

/// The access rule in force, one for the whole network: a configuration reload replaces it
/// for the personal logins and the appservice's puppets at once.
pub(crate) struct Access(RwLock<Allowed>);

impl Access {
    fn new(rule: Allowed) -> Access {
        Access(RwLock::new(rule))
    }

    fn set(&self, rule: Allowed) {
        *self.0.write().expect("access lock") = rule;
    }

    /// The rule as it is now.
    pub(crate) fn rule(&self) -> Allowed {
        self.0.read().expect("access lock").clone()
    }

    /// Whether the gateway serves `user`.
    pub(crate) fn allows(&self, user: &UserRef) -> bool {
        (self.0.read().expect("access lock"))(user)
    }
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Access(..)")
    }
}

/// The application service: its puppets, their parts, the transaction listener.
#[derive(Debug)]
struct Appservice {
    /// Where the transaction listener binds.
    listen: SocketAddr,
    puppets: Arc<Puppets>,
    parts: Parts,
    /// The appservice API's state, served by `run`.
    api: Arc<Listener>,
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
        let access = Arc::new(Access::new(allowed));
        let shelf = Arc::new(Shelf::new(settings.media.clone(), store.clone()));
        let appservice = settings.appservice.map(|appservice| {
            Arc::new(Appservice::new(
                appservice,
                settings.member_limit,
                store.clone(),
                access.clone(),
                nicks.clone(),
                emit.clone(),
                shelf.clone(),
            ))
        });
        let personal = settings.personal.map(|personal| {
            Arc::new(Personal::new(
                personal,
                settings.member_limit,
                store.clone(),
                nicks.clone(),
                emit.clone(),
                shelf,
            ))
        });
        let media = settings.media.public_url.is_some().then(|| {
            Arc::new(Endpoint {
                settings: settings.media.clone(),
                store,
                appservice: appservice.as_ref().map(|a| a.parts.incoming.client.clone()),
                personal: personal.clone(),
                turns: tokio::sync::Semaphore::new(media::serve::AT_ONCE),
            })
        });
        MatrixNetwork {
            appservice,
            personal,
            access,
            emitted: Arc::new(Mutex::new(Some(emitted))),
            ended: Arc::default(),
            media,
        }
    }

    /// New access rules (a configuration reload).
    pub fn set_allowed(&self, allowed: Allowed) {
        self.access.set(allowed);
    }

    /// Refused once `run` has returned: nothing serves the network any more.
    fn running(&self) -> Result<(), BridgeError> {
        match self.ended.load(Ordering::Acquire) {
            true => Err(BridgeError::ShutDown),
            false => Ok(()),
        }
    }

    /// Serve the appservice and forward events until shutdown.
    async fn serve(
        &self,
        ctx: NetworkContext,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), BridgeError> {
        let Some(mut emitted) = self.emitted.lock().expect("emitted lock").take() else {
            return Err(BridgeError::Invalid("the Matrix network runs once".into()));
        };
        if let Some(personal) = self.personal.clone() {
            let rule = self.access.rule();
            tokio::spawn(async move { personal.restore(&rule).await });
        }
        let appservice = self.appservice.clone();
        let listening = shutdown.clone();
        let server = async move {
            match appservice {
                Some(appservice) => appservice.serve(listening).await,
                None => std::future::pending().await,
            }
        };
        let media = self.media.clone();
        let fetching = shutdown.clone();
        let files = async move {
            match media {
                Some(media) => serve_media(media, fetching).await,
                None => std::future::pending().await,
            }
        };
        let forward = async {
            while let Some(event) = emitted.recv().await {
                if ctx.events.send(event).await.is_err() {
                    break;
                }
            }
        };
        tokio::select! {
            result = server => result?,
            result = files => result?,
            () = forward => {}
            _ = shutdown.wait_for(|stop| *stop) => {}
        }
        Ok(())
    }
}

/// Serve Matrix files to XMPP users until shutdown.
async fn serve_media(
    endpoint: Arc<Endpoint>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<(), BridgeError> {
    let listen = endpoint.settings.listen;
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        BridgeError::Unreachable(format!("cannot listen on {listen} for file links: {e}"))
    })?;
    info!(%listen, "Matrix file endpoint up");
    media::serve::serve(listener, endpoint, shutdown)
        .await
        .map_err(|e| BridgeError::Unreachable(e.to_string()))
}

impl Appservice {
    fn new(
        settings: AppserviceSettings,
        member_limit: usize,
        store: Arc<dyn MatrixStore>,
        access: Arc<Access>,
        nicks: NickRule,
        emit: mpsc::Sender<Event>,
        shelf: Arc<Shelf>,
    ) -> Appservice {
        let AppserviceSettings {
            homeserver,
            server_name,
            user_prefix,
            listen,
            as_token,
            hs_token,
        } = settings;
        let client = Client::new(&homeserver, &as_token);
        let puppets = Arc::new(Puppets::new(
            client.clone(),
            server_name.clone(),
            user_prefix,
            access,
        ));
        let reach = Reach {
            client,
            puppets: puppets.clone(),
            server_name,
            member_limit,
            nicks,
            shelf,
            owner: None,
        };
        let parts = Parts::new(reach, store.clone(), emit);
        let api = Listener {
            hs_token,
            store,
            incoming: parts.incoming.clone(),
            puppets: puppets.clone(),
            joins: parts.joins.clone(),
            transactions: tokio::sync::Mutex::new(None),
            catch_up: Arc::default(),
        };
        Appservice {
            listen,
            puppets,
            parts,
            api: Arc::new(api),
        }
    }

    /// Serve the homeserver's transactions until shutdown.
    async fn serve(&self, shutdown: tokio::sync::watch::Receiver<bool>) -> Result<(), BridgeError> {
        let listener = tokio::net::TcpListener::bind(self.listen)
            .await
            .map_err(|e| {
                BridgeError::Unreachable(format!(
                    "cannot listen on {} for the homeserver: {e}",
                    self.listen
                ))
            })?;
        info!(listen = %self.listen, "Matrix transaction listener up");
        tokio::spawn(
            self.api
                .catch_up
                .clone()
                .run(self.parts.incoming.clone(), shutdown.clone()),
        );
        listener::serve(listener, self.api.clone(), shutdown)
            .await
            .map_err(|e| BridgeError::Unreachable(e.to_string()))
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
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), BridgeError> {
        let served = self.serve(ctx, shutdown).await;
        self.ended.store(true, Ordering::Release);
        if let Some(personal) = &self.personal {
            personal.stop_all();
        }
        served
    }

    async fn act(&self, user: &UserRef, action: Action) -> Result<(), BridgeError> {
        self.running()?;
        match &action {
            Action::Raw { .. } => {
                return Err(BridgeError::Invalid(
                    "Matrix has no raw protocol lines".into(),
                ))
            }
            Action::Join { nick, .. } if nick.trim().is_empty() => {
                return Err(BridgeError::Invalid("an empty nick".into()))
            }
            _ => {}
        }
        if let Some(personal) = &self.personal {
            personal.ready().await;
            if let Some(login) = personal.login(user) {
                return login.parts.workers.queue(user, action);
            }
        }
        let Some(appservice) = &self.appservice else {
            return Err(BridgeError::Invalid(
                "log in to Matrix first (the ad-hoc command \"Log in to Matrix\" on this service)"
                    .into(),
            ));
        };
        if appservice.puppets.try_id(user).is_none() {
            return Err(BridgeError::Invalid(format!(
                "{user} is too long to be written as a Matrix user id (255 bytes at most)"
            )));
        }
        appservice.parts.workers.queue(user, action)
    }

    fn has_accounts(&self) -> bool {
        self.personal.is_some()
    }

    async fn account(
        &self,
        user: &UserRef,
        request: AccountRequest,
    ) -> Result<AccountReply, BridgeError> {
        self.running()?;
        let Some(personal) = &self.personal else {
            return Err(BridgeError::Invalid(
                "this gateway does not take personal Matrix logins".into(),
            ));
        };
        if !self.access.allows(user) {
            return Err(BridgeError::Invalid(format!(
                "{user} may not use this gateway"
            )));
        }
        personal.account(user, request).await
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
