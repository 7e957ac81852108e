//! causeway's IRC bridge: one puppet IRC connection per XMPP user and server.
//!
//! [`IrcNetwork`] implements [`causeway_bridge::Network`]: the gateway core hands it actions
//! on behalf of XMPP users; it opens (and closes) each user's own connection as needed and
//! reports what the IRC server says as events. The connection layer is our own, on tokio and
//! rustls: the `irc` crate's client decodes invalid UTF-8 to U+FFFD or fails the stream, and
//! sends `CAP END` before anything can be negotiated; we need latin-1 fallback, CAP 302 with
//! SASL, our own flood control and dead-connection detection.

#[doc(hidden)]
mod formatting;
pub mod fuzzing;
pub mod keeper;
mod line;
mod outgoing;
mod pacing;
mod session;
mod settings;
mod state;
mod text;
mod transport;
mod verb;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use causeway_bridge::{
    Action, BridgeError, Event, Network, NetworkContext, NetworkKind, Peer, UserRef,
};
use tokio::sync::{mpsc, watch};

use crate::session::{Command, SessionSpec};

pub use session::{encoding, parse_server_time};
pub use settings::{
    Identity, IdentitySource, IrcSettings, NickIdentity, ServerSettings, TransportOverrides,
};
pub use text::{decode_line, split_body, MAX_LINE};

/// The network this crate bridges.
pub const KIND: NetworkKind = NetworkKind::Irc;

/// IRC, as a causeway network.
#[derive(Debug)]
pub struct IrcNetwork {
    inner: Arc<Inner>,
}

type SessionKey = (UserRef, String);

#[derive(Debug)]
struct SessionHandle {
    id: u64,
    commands: mpsc::UnboundedSender<Command>,
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
    /// The pace of the connections to each server.
    pacing: pacing::Pacing,
    /// The link to the connection keeper, when `[irc] keeper` names one: replaced when it
    /// breaks and the gateway attaches again (`keeper/takeover.rs`).
    keeper: watch::Sender<Option<Arc<keeper::client::KeeperLink>>>,
    /// Why the keeper could not be reached, when it could not: connections are refused
    /// with it (rather than made around the keeper, or waited for for ever).
    keeper_failed: Mutex<Option<String>>,
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
                pacing: pacing::Pacing::default(),
                keeper: watch::channel(None).0,
                keeper_failed: Mutex::default(),
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
    /// The keeper's link, when connections go through one.
    pub(crate) fn keeper(&self) -> Option<Arc<keeper::client::KeeperLink>> {
        self.keeper.borrow().clone()
    }

    pub(crate) async fn emit(&self, event: Event) {
        let events = self.events.lock().expect("events lock").clone();
        if let Some(events) = events {
            let _ = events.send(event).await;
        }
    }

    /// Whether the shutdown signal has been given: no action is taken from then on.
    fn shut_down(&self) -> bool {
        let shutdown = self.shutdown.lock().expect("shutdown lock");
        shutdown.as_ref().is_some_and(|signal| *signal.borrow())
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
            // Unbounded: the core never waits on one session (which may be waiting for its
            // turn to connect, registering, or waiting on the core itself). What a user can
            // queue is bounded upstream, by the per-user message rate and channel limits.
            match sender.send(command) {
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
    ) -> Result<mpsc::UnboundedSender<Command>, BridgeError> {
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
        if let Some(why) = self.keeper_failed.lock().expect("keeper lock").clone() {
            return Err(BridgeError::Unreachable(why));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
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
        // Every line the session logs, its pumps' included, carries who and where: one span
        // per session task, entered when the task runs, never one per line.
        let span = tracing::info_span!("irc", network = "irc", user = %user, server = %server);
        self.tasks
            .lock()
            .await
            .spawn(tracing::Instrument::instrument(
                session::run(spec, self.clone(), rx, shutdown, None),
                span,
            ));
        Ok(tx)
    }
}

#[async_trait]
impl Network for IrcNetwork {
    fn kind(&self) -> NetworkKind {
        KIND
    }

    /// Lines are bytes on IRC: a channel's or a server's text may be in any encoding
    /// encoding_rs knows.
    fn supports_encoding(&self, label: &str) -> bool {
        encoding(label).is_some()
    }

    async fn run(
        &self,
        ctx: NetworkContext,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), BridgeError> {
        let keeper_path = self
            .inner
            .settings
            .lock()
            .expect("settings lock")
            .keeper
            .clone();
        *self.inner.events.lock().expect("events lock") = Some(ctx.events);
        *self.inner.shutdown.lock().expect("shutdown lock") = Some(shutdown.clone());
        // A keeper that cannot be reached at startup: connections are refused with the
        // reason (not made around it, not left waiting) until it is reached.
        let link = match &keeper_path {
            Some(path) => self.inner.attach_first(path, &shutdown).await,
            None => None,
        };
        self.inner.started.send_replace(true);
        match keeper_path {
            Some(path) => self.inner.stay_attached(&path, link, &mut shutdown).await,
            None => {
                let _ = shutdown.wait_for(|stop| *stop).await;
            }
        }
        // Sessions see the same signal and quit (or leave their connections with the
        // keeper); wait for them to say goodbye.
        let mut tasks = std::mem::take(&mut *self.inner.tasks.lock().await);
        while tasks.join_next().await.is_some() {}
        if let Some(link) = self.inner.keeper() {
            // Their last acknowledgements and states reach the keeper before the process
            // ends.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), link.flush()).await;
        }
        *self.inner.events.lock().expect("events lock") = None;
        Ok(())
    }

    async fn act(&self, user: &UserRef, action: Action) -> Result<(), BridgeError> {
        // Refused as such, not as "not connected" for want of the sessions that have quit.
        if self.inner.shut_down() {
            return Err(BridgeError::ShutDown);
        }
        if let Action::Disconnect { server, reason } = action {
            return self.disconnect(user, server.as_deref(), reason).await;
        }
        let (server, command, nick) = command_for(action)?;
        self.inner
            .dispatch(user, &server, command, nick.as_deref())
            .await
    }
}

impl IrcNetwork {
    /// Quit the user's connections: to `server`, or to every server.
    async fn disconnect(
        &self,
        user: &UserRef,
        server: Option<&str>,
        reason: Option<String>,
    ) -> Result<(), BridgeError> {
        let servers: Vec<String> = {
            let sessions = self.inner.sessions.lock().expect("sessions lock");
            sessions
                .keys()
                .filter(|(u, s)| {
                    u == user && server.is_none_or(|want| want.eq_ignore_ascii_case(s))
                })
                .map(|(_, s)| s.clone())
                .collect()
        };
        for server in servers {
            self.inner
                .dispatch(user, &server, Command::Quit(reason.clone()), None)
                .await?;
        }
        Ok(())
    }
}

/// What a session is asked for an action: the server it goes to, the command, and for a
/// join the nick to connect with. Corrections and replies go out as their text: IRC has no
/// such things.
fn command_for(action: Action) -> Result<(String, Command, Option<String>), BridgeError> {
    let routed = match action {
        Action::Join {
            room,
            nick,
            password,
        } => {
            validate_nick(&nick)?;
            validate_channel(&room.name)?;
            let command = Command::Join {
                channel: room.name,
                key: password,
            };
            return Ok((room.server, command, Some(nick)));
        }
        Action::Part { room, reason } => (
            room.server,
            Command::Part {
                channel: room.name,
                reason,
            },
        ),
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
            let command = Command::Send {
                target,
                body,
                kind,
                id,
            };
            (server, command)
        }
        Action::Typing { to, typing } => {
            let (server, target) = match to {
                Peer::Room(room) => (room.server, room.name),
                Peer::User { server, nick } => {
                    validate_nick(&nick)?;
                    (server, nick)
                }
            };
            (server, Command::Typing { target, typing })
        }
        Action::Displayed { .. } => {
            return Err(BridgeError::Invalid("IRC has no read markers".into()))
        }
        Action::SetPicture { .. } => {
            return Err(BridgeError::Invalid("IRC has no pictures".into()))
        }
        Action::SetSubject { room, subject } => (
            room.server,
            Command::Topic {
                channel: room.name,
                topic: subject,
            },
        ),
        Action::ChangeNick { server, nick, .. } => {
            validate_nick(&nick)?;
            (server, Command::Nick(nick))
        }
        Action::Kick { room, nick, reason } => (
            room.server,
            Command::Kick {
                channel: room.name,
                nick,
                reason,
            },
        ),
        Action::SetPrivilege {
            room,
            nick,
            privilege,
        } => (
            room.server,
            Command::Privilege {
                channel: room.name,
                nick,
                privilege,
            },
        ),
        Action::ListRooms {
            server,
            within: None,
        } => (server, Command::List),
        Action::ListRooms {
            within: Some(room), ..
        } => {
            return Err(BridgeError::NotFound(format!(
                "{} holds no other channels",
                room.name
            )))
        }
        Action::Raw { server, line } => (server, Command::Raw(line)),
        // Not one session's command: `act` quits each of the user's connections itself.
        Action::Disconnect { .. } => {
            return Err(BridgeError::Invalid(
                "a disconnect goes to every session, not one".into(),
            ))
        }
        Action::Retract { .. } => {
            return Err(BridgeError::Invalid(
                "IRC cannot take back a message once sent".into(),
            ))
        }
        Action::React { .. } => return Err(BridgeError::Invalid("IRC has no reactions".into())),
        Action::Moderate { .. } => {
            return Err(BridgeError::Invalid(
                "IRC cannot remove a message once sent".into(),
            ))
        }
    };
    Ok((routed.0, routed.1, None))
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
