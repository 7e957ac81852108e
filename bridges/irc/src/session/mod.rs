//! One puppet: an XMPP user's own connection to one IRC server.
//!
//! A session registers (CAP LS 302, SASL PLAIN when a password is set, NICK/USER), joins
//! the channels asked for, translates what the server says into bridge events, and quits
//! after its last channel is left. Lines go out through a writer task with a token bucket;
//! PONG and QUIT skip the bucket so that flood control never gets the puppet timed out.
//!
//! The files follow the data: `life` (run, reconnect, give up), `registration` (CAP, SASL),
//! `io` (the byte pumps), `codec` (bytes to a parsed line once, a typed line to bytes once),
//! `inbound` (what the server says), `outbound` (what the user asks).

mod codec;
mod inbound;
pub(crate) mod io;
mod kept;
mod life;
mod outbound;
mod registration;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use causeway_bridge::{Event, ListedRoom, MessageKind, Peer, Privilege, RoomRef, UserRef};
use tokio::sync::watch;

use crate::state::{Channel, ServerRules};
use crate::{Identity, Inner, ServerSettings};

pub use codec::encoding;
pub use inbound::parse_server_time;
pub(crate) use kept::Adopted;
pub use life::run;

/// What the network asks of a session.
#[derive(Debug)]
pub enum Command {
    /// Join a channel (with a key).
    Join {
        channel: String,
        key: Option<String>,
    },
    /// Leave a channel.
    Part {
        channel: String,
        reason: Option<String>,
    },
    /// Send a message to a channel or a nick.
    Send {
        target: String,
        body: String,
        kind: MessageKind,
        id: String,
    },
    /// Tell a channel or a nick that the user is typing, or no longer.
    Typing { target: String, typing: bool },
    /// Set a channel's topic.
    Topic { channel: String, topic: String },
    /// Change nick.
    Nick(String),
    /// Kick someone.
    Kick {
        channel: String,
        nick: String,
        reason: Option<String>,
    },
    /// Give or take privileges.
    Privilege {
        channel: String,
        nick: String,
        privilege: Privilege,
    },
    /// List the server's channels.
    List,
    /// Leave every channel and close the connection.
    Quit(Option<String>),
    /// A raw line from the user.
    Raw(String),
}

/// How many queued commands a session takes between two looks at the server's lines and
/// the shutdown signal.
const COMMAND_BURST: usize = 32;

/// Everything a session starts from.
pub struct SessionSpec {
    pub user: UserRef,
    pub server: String,
    pub settings: ServerSettings,
    pub identity: Identity,
    pub id: u64,
}

/// A message sent with echo-message, waiting for its echoes.
struct PendingEcho {
    target: String,
    id: String,
    body: String,
    kind: MessageKind,
    lines_left: usize,
}

struct Session {
    spec: SessionSpec,
    inner: Arc<Inner>,
    rules: ServerRules,
    nick: String,
    /// `nick!user@host` as others see us, for line-length computations.
    source_len: usize,
    caps: HashSet<String>,
    channels: HashMap<String, Channel, foldhash::fast::RandomState>,
    echoes: VecDeque<PendingEcho>,
    /// Whether the connect-time burst (MOTD and such) is over.
    settled: bool,
    /// Whether any channel was asked for yet: the session ends when the last one is left.
    had_channels: bool,
    /// Channels (folded) we sent a PART for and whose echo has not come back: a join asked
    /// for meanwhile is a new join, not the old membership.
    parting: HashSet<String>,
    /// Channels with their own encoding, by folded name.
    encodings: HashMap<String, &'static encoding_rs::Encoding>,
    /// The server's encoding for what is not UTF-8 (instead of latin-1), if the user set one.
    encoding_in: Option<&'static encoding_rs::Encoding>,
    /// The server's encoding for what we send (instead of UTF-8), if the user set one.
    encoding_out: Option<&'static encoding_rs::Encoding>,
    /// Set by a quit command: the session ends with this QUIT message.
    quit_reason: Option<String>,
    /// A LIST under way: the channels so far.
    listing: Option<Vec<ListedRoom>>,
    writer: Option<io::Writer>,
    /// The keeper's number for this connection, when it holds it.
    kept: Option<crate::keeper::protocol::ConnId>,
    /// Through the keeper: what is done with its lines (see `kept.rs`).
    lines: kept::LineBook,
    /// Channels (folded) taken over from an earlier gateway whose members are being asked
    /// for again.
    refreshing: HashSet<String>,
    /// How fast CTCP requests are answered (made at the first one: an idle puppet has none).
    ctcp_replies: Option<Box<governor::DefaultDirectRateLimiter>>,
}

/// Resolves once shutdown is signalled.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await.map(|_| ());
}

impl Session {
    fn new(spec: SessionSpec, inner: Arc<Inner>) -> Session {
        let nick = spec.identity.nick.clone();
        let transport = &spec.identity.transport;
        let encoding_in = transport.encoding_in.as_deref().and_then(encoding);
        let encoding_out = transport.encoding_out.as_deref().and_then(encoding);
        Session {
            inner,
            rules: ServerRules::default(),
            source_len: nick.len() + 1 + 10 + 1 + 63,
            nick,
            caps: HashSet::new(),
            channels: HashMap::default(),
            echoes: VecDeque::new(),
            settled: false,
            had_channels: false,
            parting: Default::default(),
            listing: None,
            quit_reason: None,
            encodings: HashMap::new(),
            encoding_in,
            encoding_out,
            writer: None,
            kept: None,
            lines: kept::LineBook::default(),
            refreshing: HashSet::new(),
            ctcp_replies: None,
            spec,
        }
    }

    fn room(&self, channel: &str) -> RoomRef {
        RoomRef {
            server: self.spec.server.clone(),
            name: channel.to_owned(),
        }
    }

    async fn emit(&self, event: Event) {
        self.inner
            .emit(crate::formatting::styled_event(event))
            .await;
    }

    /// A message of ours, as the room or the peer shows it.
    async fn emit_own_message(
        &self,
        peer: Peer,
        body: String,
        kind: MessageKind,
        time: Option<std::time::SystemTime>,
        own_id: Option<String>,
    ) {
        self.emit(Event::Message {
            user: self.user(),
            peer,
            from: self.nick.clone(),
            body,
            kind,
            time,
            own_id,
            remote_id: self.line_id(),
            refs: causeway_bridge::Refs::none(),
            media: None,
        })
        .await;
    }

    fn user(&self) -> UserRef {
        self.spec.user.clone()
    }

    fn peer(&self, target: &str) -> Peer {
        self.peer_folded(target, &self.rules.fold(target))
    }

    /// [`Session::peer`] of a target already folded.
    fn peer_folded(&self, target: &str, folded: &str) -> Peer {
        if self.rules.is_channel(target) {
            let name = self
                .channels
                .get(folded)
                .map(|c| c.name.clone())
                .unwrap_or_else(|| target.to_owned());
            Peer::Room(self.room(&name))
        } else {
            Peer::User {
                server: self.spec.server.clone(),
                nick: target.to_owned(),
            }
        }
    }

    fn is_me(&self, nick: &str) -> bool {
        self.rules.fold(nick) == self.rules.fold(&self.nick)
    }
}
