//! causeway's IRC bridge: one puppet IRC connection per XMPP user and server.
//!
//! [`IrcNetwork`] implements [`causeway_bridge::Network`]: the gateway core hands it actions
//! on behalf of XMPP users; it opens (and closes) each user's own connection as needed and
//! reports what the IRC server says as events. The connection layer is our own, on tokio and
//! rustls: the `irc` crate's client decodes invalid UTF-8 to U+FFFD or fails the stream, and
//! sends `CAP END` before anything can be negotiated; we need latin-1 fallback, CAP 302 with
//! SASL, our own flood control and dead-connection detection.

mod line;
mod session;
mod state;
mod text;
mod transport;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use causeway_bridge::{
    Action, BridgeError, Event, Network, NetworkContext, NetworkKind, Peer, UserRef,
};
use tokio::sync::{mpsc, watch};

use crate::session::{Command, SessionSpec};

pub use session::{encoding, parse_server_time};
pub use text::{decode_line, split_body, MAX_LINE};

/// The network this crate bridges.
pub const KIND: NetworkKind = NetworkKind::Irc;

/// How to reach one IRC server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    /// Port to connect to.
    pub port: u16,
    /// TLS; false means plain TCP.
    pub tls: bool,
    /// Verify the server's certificate (always, unless a test server is self-signed).
    pub verify_tls: bool,
    /// Outgoing flood control.
    pub flood_control: bool,
    /// Lines that may go out at once before the rate applies.
    pub flood_burst: u32,
    /// Lines per second after the burst.
    pub flood_per_second: u32,
    /// Server password (PASS), if the server wants one.
    pub password: Option<String>,
    /// Silence after which the puppet pings the server.
    pub ping_after: Duration,
    /// Silence after which the connection counts as dead.
    pub dead_after: Duration,
    /// Reconnection attempts after a lost connection before giving up (0: none).
    pub reconnect_attempts: u32,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            port: 6697,
            tls: true,
            verify_tls: true,
            flood_control: true,
            flood_burst: 10,
            flood_per_second: 2,
            password: None,
            ping_after: Duration::from_secs(60),
            dead_after: Duration::from_secs(150),
            reconnect_attempts: 16,
        }
    }
}

/// Who the puppet is on a server.
#[derive(Clone, PartialEq, Eq)]
pub struct Identity {
    /// The nick to register with.
    pub nick: String,
    /// The username (ident).
    pub username: String,
    /// The realname (gecos).
    pub realname: String,
    /// SASL PLAIN account, when it differs from the nick.
    pub sasl_account: Option<String>,
    /// SASL PLAIN password; SASL is used only when set.
    pub sasl_password: Option<String>,
    /// Raw lines sent right after registering (identify to a bot, set user modes…).
    pub after_connect: Vec<String>,
    /// The user's own choices for reaching the server, over the configured ones.
    pub transport: TransportOverrides,
}

/// A user's own choices for reaching a server; `None` keeps the configured value.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TransportOverrides {
    /// Port.
    pub port: Option<u16>,
    /// TLS on or off.
    pub tls: Option<bool>,
    /// Certificate verification.
    pub verify_tls: Option<bool>,
    /// Flood control on or off.
    pub flood_control: Option<bool>,
    /// Server password (PASS).
    pub password: Option<String>,
    /// Encoding of what the server sends that is not UTF-8 (instead of latin-1).
    pub encoding_in: Option<String>,
    /// Encoding of what we send (instead of UTF-8).
    pub encoding_out: Option<String>,
}

impl std::fmt::Debug for TransportOverrides {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransportOverrides")
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("verify_tls", &self.verify_tls)
            .field("flood_control", &self.flood_control)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("encoding_in", &self.encoding_in)
            .field("encoding_out", &self.encoding_out)
            .finish()
    }
}

impl ServerSettings {
    /// These settings with a user's overrides applied.
    pub fn overridden(mut self, overrides: &TransportOverrides) -> ServerSettings {
        self.port = overrides.port.unwrap_or(self.port);
        self.tls = overrides.tls.unwrap_or(self.tls);
        self.verify_tls = overrides.verify_tls.unwrap_or(self.verify_tls);
        self.flood_control = overrides.flood_control.unwrap_or(self.flood_control);
        if overrides.password.is_some() {
            self.password = overrides.password.clone();
        }
        self
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("nick", &self.nick)
            .field("username", &self.username)
            .field("realname", &self.realname)
            .field("sasl_account", &self.sasl_account)
            .field("sasl_password", &self.sasl_password.as_ref().map(|_| "***"))
            .field("after_connect", &self.after_connect.len())
            .field("transport", &self.transport)
            .finish()
    }
}

/// Where a puppet's identity comes from: the gateway's database and defaults. Asked once per
/// connection, so settings changed by the user apply on the next connect.
#[async_trait]
pub trait IdentitySource: Send + Sync + std::fmt::Debug + 'static {
    /// The identity of `user` on `server`, joining under `nick`.
    async fn identity(&self, user: &UserRef, server: &str, nick: &str) -> Identity;

    /// The encoding the user chose for a channel, if any (`koi8-r`…).
    async fn channel_encoding(
        &self,
        user: &UserRef,
        server: &str,
        channel: &str,
    ) -> Option<String> {
        let _ = (user, server, channel);
        None
    }

    /// The nick to connect with when no room gives one (raw commands, channel lists).
    async fn nick(&self, user: &UserRef, server: &str) -> String {
        let _ = server;
        let local = user.0.split('@').next().unwrap_or("causeway");
        let nick: String = local
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || "-_[]{}|^`".contains(*c))
            .take(16)
            .collect();
        if nick.is_empty() {
            "causeway".into()
        } else {
            nick
        }
    }
}

/// Identities from the nick alone: username from its letters and digits, realname the nick.
#[derive(Debug, Default)]
pub struct NickIdentity;

#[async_trait]
impl IdentitySource for NickIdentity {
    async fn identity(&self, _user: &UserRef, _server: &str, nick: &str) -> Identity {
        Identity::from_nick(nick)
    }
}

impl Identity {
    /// Username from the nick's letters and digits, realname the nick, no SASL.
    pub fn from_nick(nick: &str) -> Identity {
        Identity {
            nick: nick.to_owned(),
            username: sanitize_username(nick),
            realname: nick.to_owned(),
            sasl_account: None,
            sasl_password: None,
            after_connect: Vec::new(),
            transport: TransportOverrides::default(),
        }
    }
}

/// Settings for the whole network.
#[derive(Debug, Clone, Default)]
pub struct IrcSettings {
    /// Per-server settings by host name (lower case).
    pub servers: HashMap<String, ServerSettings>,
    /// For servers not listed.
    pub default_server: ServerSettings,
}

impl IrcSettings {
    fn server(&self, host: &str) -> ServerSettings {
        self.servers
            .get(&host.to_ascii_lowercase())
            .cloned()
            .unwrap_or_else(|| self.default_server.clone())
    }
}

/// IRC, as a causeway network.
#[derive(Debug)]
pub struct IrcNetwork {
    inner: Arc<Inner>,
}

type SessionKey = (UserRef, String);

#[derive(Debug)]
struct SessionHandle {
    id: u64,
    commands: mpsc::Sender<Command>,
}

/// What sessions share with the network.
#[derive(Debug)]
pub(crate) struct Inner {
    /// Replaced on a configuration reload; read when a connection opens.
    settings: Mutex<IrcSettings>,
    identities: Arc<dyn IdentitySource>,
    sessions: Mutex<HashMap<SessionKey, SessionHandle, foldhash::fast::RandomState>>,
    events: Mutex<Option<mpsc::Sender<Event>>>,
    shutdown: Mutex<Option<watch::Receiver<bool>>>,
    next_id: AtomicU64,
    /// Set once `run` has installed the event channel: actions wait for it.
    started: watch::Sender<bool>,
    tasks: tokio::sync::Mutex<tokio::task::JoinSet<()>>,
}

impl IrcNetwork {
    /// A network with these settings; nothing connects until a user joins.
    pub fn new(settings: IrcSettings, identities: Arc<dyn IdentitySource>) -> IrcNetwork {
        IrcNetwork {
            inner: Arc::new(Inner {
                settings: Mutex::new(settings),
                identities,
                sessions: Mutex::default(),
                events: Mutex::default(),
                shutdown: Mutex::default(),
                next_id: AtomicU64::new(1),
                started: watch::channel(false).0,
                tasks: tokio::sync::Mutex::default(),
            }),
        }
    }

    /// New settings (a configuration reload): they apply to connections opened from now on.
    pub fn set_settings(&self, settings: IrcSettings) {
        *self.inner.settings.lock().expect("settings lock") = settings;
    }

    /// How many puppet connections are open.
    pub fn connections(&self) -> usize {
        self.inner.sessions.lock().expect("sessions lock").len()
    }
}

impl Inner {
    pub(crate) async fn emit(&self, event: Event) {
        let events = self.events.lock().expect("events lock").clone();
        if let Some(events) = events {
            let _ = events.send(event).await;
        }
    }

    /// Drop the session handle `id` for (user, server), if it is still the current one.
    pub(crate) fn forget(&self, user: &UserRef, server: &str, id: u64) {
        let mut sessions = self.sessions.lock().expect("sessions lock");
        let key = (user.clone(), server.to_owned());
        if sessions.get(&key).is_some_and(|h| h.id == id) {
            sessions.remove(&key);
        }
    }

    /// Hand a command to the user's session on `server`, opening one for a join.
    ///
    /// Boxed: sessions call this, and it may start a session; the box breaks the cycle in
    /// the future types.
    pub(crate) fn redispatch<'a>(
        self: &'a Arc<Self>,
        user: &'a UserRef,
        server: &'a str,
        command: Command,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            if let Err(e) = self.dispatch(user, server, command, None).await {
                tracing::warn!(%user, %server, error = %e, "command lost with its session");
            }
        })
    }

    async fn dispatch(
        self: &Arc<Self>,
        user: &UserRef,
        server: &str,
        mut command: Command,
        nick: Option<&str>,
    ) -> Result<(), BridgeError> {
        let key: SessionKey = (user.clone(), server.to_ascii_lowercase());
        let server = key.1.as_str();
        // A session that just ended refuses the command: try once more with a new one.
        for _ in 0..2 {
            let sender = {
                let sessions = self.sessions.lock().expect("sessions lock");
                sessions.get(&key).map(|h| h.commands.clone())
            };
            let sender = match sender {
                Some(sender) => sender,
                None => {
                    // A join brings its nick; a channel list or a raw command opens a
                    // connection under the user's nick for the server.
                    let nick = match (&command, nick) {
                        (Command::Join { .. }, Some(nick)) => nick.to_owned(),
                        (Command::List | Command::Raw(_), _) => {
                            self.identities.nick(user, server).await
                        }
                        _ => {
                            return Err(BridgeError::NotFound(format!("not connected to {server}")))
                        }
                    };
                    self.open(user, server, &nick).await?
                }
            };
            match sender.send(command).await {
                Ok(()) => return Ok(()),
                Err(mpsc::error::SendError(back)) => {
                    let mut sessions = self.sessions.lock().expect("sessions lock");
                    if sessions
                        .get(&key)
                        .is_some_and(|h| h.commands.same_channel(&sender))
                    {
                        sessions.remove(&key);
                    }
                    command = back;
                }
            }
        }
        Err(BridgeError::Unreachable(format!(
            "the connection to {server} keeps closing"
        )))
    }

    async fn open(
        self: &Arc<Self>,
        user: &UserRef,
        server: &str,
        nick: &str,
    ) -> Result<mpsc::Sender<Command>, BridgeError> {
        // Actions may come before `run` got going (rejoins at startup): wait for it.
        let _ = self
            .started
            .subscribe()
            .wait_for(|started| *started)
            .await
            .map(|_| ());
        let shutdown = self
            .shutdown
            .lock()
            .expect("shutdown lock")
            .clone()
            .ok_or(BridgeError::ShutDown)?;
        if *shutdown.borrow() {
            return Err(BridgeError::ShutDown);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(256);
        {
            let mut sessions = self.sessions.lock().expect("sessions lock");
            if let Some(existing) = sessions.get(&(user.clone(), server.to_owned())) {
                return Ok(existing.commands.clone());
            }
            sessions.insert(
                (user.clone(), server.to_owned()),
                SessionHandle {
                    id,
                    commands: tx.clone(),
                },
            );
        }
        let identity = self.identities.identity(user, server, nick).await;
        let spec = SessionSpec {
            user: user.clone(),
            server: server.to_owned(),
            settings: self
                .settings
                .lock()
                .expect("settings lock")
                .server(server)
                .overridden(&identity.transport),
            identity,
            id,
        };
        self.tasks
            .lock()
            .await
            .spawn(session::run(spec, self.clone(), rx, shutdown));
        Ok(tx)
    }
}

/// An ident is ASCII letters and digits; derive one from the nick.
fn sanitize_username(nick: &str) -> String {
    let clean: String = nick
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(10)
        .collect();
    if clean.is_empty() {
        "causeway".into()
    } else {
        clean.to_ascii_lowercase()
    }
}

#[async_trait]
impl Network for IrcNetwork {
    fn kind(&self) -> NetworkKind {
        KIND
    }

    async fn run(
        &self,
        ctx: NetworkContext,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), BridgeError> {
        *self.inner.events.lock().expect("events lock") = Some(ctx.events);
        *self.inner.shutdown.lock().expect("shutdown lock") = Some(shutdown.clone());
        self.inner.started.send_replace(true);
        let _ = shutdown.wait_for(|stop| *stop).await;
        // Sessions see the same signal and quit; wait for them to say goodbye.
        let mut tasks = std::mem::take(&mut *self.inner.tasks.lock().await);
        while tasks.join_next().await.is_some() {}
        *self.inner.events.lock().expect("events lock") = None;
        Ok(())
    }

    async fn act(&self, user: &UserRef, action: Action) -> Result<(), BridgeError> {
        let inner = &self.inner;
        match action {
            Action::Join {
                room,
                nick,
                password,
            } => {
                validate_nick(&nick)?;
                validate_channel(&room.name)?;
                let command = Command::Join {
                    channel: room.name.clone(),
                    key: password,
                };
                inner
                    .dispatch(user, &room.server, command, Some(&nick))
                    .await
            }
            Action::Part { room, reason } => {
                inner
                    .dispatch(
                        user,
                        &room.server,
                        Command::Part {
                            channel: room.name,
                            reason,
                        },
                        None,
                    )
                    .await
            }
            // Corrections and replies go out as their text: IRC has no such things.
            Action::Send {
                to, body, kind, id, ..
            } => {
                let (server, target) = match to {
                    Peer::Room(room) => (room.server, room.name),
                    Peer::User { server, nick } => {
                        validate_nick(&nick)?;
                        (server, nick)
                    }
                };
                inner
                    .dispatch(
                        user,
                        &server,
                        Command::Send {
                            target,
                            body,
                            kind,
                            id,
                        },
                        None,
                    )
                    .await
            }
            Action::SetSubject { room, subject } => {
                inner
                    .dispatch(
                        user,
                        &room.server,
                        Command::Topic {
                            channel: room.name,
                            topic: subject,
                        },
                        None,
                    )
                    .await
            }
            Action::ChangeNick { server, nick, .. } => {
                validate_nick(&nick)?;
                inner
                    .dispatch(user, &server, Command::Nick(nick), None)
                    .await
            }
            Action::Kick { room, nick, reason } => {
                inner
                    .dispatch(
                        user,
                        &room.server,
                        Command::Kick {
                            channel: room.name,
                            nick,
                            reason,
                        },
                        None,
                    )
                    .await
            }
            Action::SetPrivilege {
                room,
                nick,
                privilege,
            } => {
                let command = Command::Privilege {
                    channel: room.name,
                    nick,
                    privilege,
                };
                inner.dispatch(user, &room.server, command, None).await
            }
            Action::Disconnect { server, reason } => {
                let servers: Vec<String> = {
                    let sessions = inner.sessions.lock().expect("sessions lock");
                    sessions
                        .keys()
                        .filter(|(u, s)| {
                            u == user
                                && server
                                    .as_ref()
                                    .is_none_or(|want| want.eq_ignore_ascii_case(s))
                        })
                        .map(|(_, s)| s.clone())
                        .collect()
                };
                for server in servers {
                    inner
                        .dispatch(user, &server, Command::Quit(reason.clone()), None)
                        .await?;
                }
                Ok(())
            }
            Action::ListRooms { server } => {
                inner.dispatch(user, &server, Command::List, None).await
            }
            Action::Raw { server, line } => {
                inner
                    .dispatch(user, &server, Command::Raw(line), None)
                    .await
            }
            Action::Retract { .. } => Err(BridgeError::Invalid(
                "IRC cannot take back a message once sent".into(),
            )),
            Action::React { .. } => Err(BridgeError::Invalid("IRC has no reactions".into())),
        }
    }
}

/// Nicks travel as IRC parameters: no spaces, no line breaks, no leading `:` or `#`.
fn validate_nick(nick: &str) -> Result<(), BridgeError> {
    let bad = nick.is_empty()
        || nick.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, ',' | '*' | '?' | '!' | '@')
        })
        || nick.starts_with([':', '#', '&', '$']);
    if bad {
        Err(BridgeError::Invalid(format!(
            "{nick:?} cannot be an IRC nick"
        )))
    } else {
        Ok(())
    }
}

fn validate_channel(channel: &str) -> Result<(), BridgeError> {
    let bad = channel.len() < 2
        || channel
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == ',');
    if bad {
        Err(BridgeError::Invalid(format!(
            "{channel:?} cannot be an IRC channel"
        )))
    } else {
        Ok(())
    }
}
