//! One puppet: an XMPP user's own connection to one IRC server.
//!
//! A session registers (CAP LS 302, SASL PLAIN when a password is set, NICK/USER), joins
//! the channels asked for, translates what the server says into bridge events, and quits
//! after its last channel is left. Lines go out through a writer task with a token bucket;
//! PONG and QUIT skip the bucket so that flood control never gets the puppet timed out.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use causeway_bridge::{
    Departure, Event, JoinFailure, Member, MessageKind, Peer, Privilege, RoomRef, UserRef,
};
use governor::{Quota, RateLimiter};
use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::line::{format, numeric::*, Line};
use crate::state::{highest, Channel, MemberState, ServerRules};
use crate::text::{decode_line, split_body};
use crate::transport::{self, IrcIo};
use crate::{Identity, Inner, ServerSettings};

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

/// How long connecting and registering may take.
const REGISTRATION_TIMEOUT: Duration = Duration::from_secs(30);
/// How many queued commands a session takes between two looks at the server's lines and
/// the shutdown signal.
const COMMAND_BURST: usize = 32;

/// How long a connection with no channel left stays open before it quits.
const LINGER: Duration = Duration::from_secs(3);
/// Longest line accepted from a server (IRCv3 allows 8191 bytes of tags plus 512).
const MAX_INBOUND: usize = 8191 + 512;
/// The capabilities we use when offered.
const WANTED_CAPS: &[&str] = &[
    "multi-prefix",
    "server-time",
    "message-tags",
    "echo-message",
    "away-notify",
    "account-notify",
    "chghost",
    "batch",
    "sasl",
];

/// Everything a session starts from.
pub struct SessionSpec {
    pub user: UserRef,
    pub server: String,
    pub settings: ServerSettings,
    pub identity: Identity,
    pub id: u64,
}

enum Inbound {
    Line(Vec<u8>),
    Closed(String),
}

struct Writer {
    urgent: flume::Sender<Vec<u8>>,
    normal: flume::Sender<Vec<u8>>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    fn start(io: WriteHalf<Box<dyn IrcIo>>, settings: &ServerSettings) -> Writer {
        // flume's queues allocate as they fill, tokio's a block of slots up front: an idle
        // puppet's channels cost next to nothing.
        let (urgent, urgent_rx) = flume::unbounded();
        let (normal, normal_rx) = flume::unbounded();
        let limiter = settings.flood_control.then(|| {
            let per_second =
                NonZeroU32::new(settings.flood_per_second.max(1)).expect("at least one");
            let burst = NonZeroU32::new(settings.flood_burst.max(1)).expect("at least one");
            RateLimiter::direct(Quota::per_second(per_second).allow_burst(burst))
        });
        let task = tokio::spawn(write_lines(io, urgent_rx, normal_rx, limiter));
        Writer {
            urgent,
            normal,
            task,
        }
    }

    /// Queue a line as it goes on the wire (its encoding applied, no CR LF).
    fn send(&self, bytes: Vec<u8>) {
        let _ = self.normal.send(bytes);
    }

    /// Queue a protocol line (always ASCII/UTF-8) ahead of flood control.
    fn send_urgent(&self, line: String) {
        debug!(line = %redact(&line), "irc >");
        let _ = self.urgent.send(line.into_bytes());
    }

    /// Send the last lines and close the connection, waiting briefly for the bytes to go.
    async fn finish(self, last: Option<String>) {
        if let Some(line) = last {
            self.send_urgent(line);
        }
        drop(self.urgent);
        drop(self.normal);
        let _ = tokio::time::timeout(Duration::from_secs(3), self.task).await;
    }
}

fn redact(line: &str) -> &str {
    if line.starts_with("AUTHENTICATE ") && line != "AUTHENTICATE PLAIN"
        || line.starts_with("PASS ")
    {
        "<credentials>"
    } else {
        line
    }
}

/// How many bytes of queued lines one write may carry.
const COALESCE_BYTES: usize = 16 * 1024;

async fn write_lines(
    mut io: WriteHalf<Box<dyn IrcIo>>,
    urgent: flume::Receiver<Vec<u8>>,
    normal: flume::Receiver<Vec<u8>>,
    limiter: Option<governor::DefaultDirectRateLimiter>,
) {
    loop {
        let mut batch = tokio::select! {
            biased;
            Ok(line) = urgent.recv_async() => line,
            Ok(line) = normal.recv_async() => {
                if let Some(limiter) = &limiter {
                    limiter.until_ready().await;
                }
                line
            }
            else => break,
        };
        batch.extend_from_slice(b"\r\n");
        // Lines queued meanwhile go in the same write: a burst costs one system call, not
        // one per line. Flood control still passes each normal line.
        while batch.len() < COALESCE_BYTES {
            let next = match urgent.try_recv() {
                Ok(line) => line,
                Err(_) if normal.is_empty() => break,
                Err(_) if limiter.as_ref().is_some_and(|l| l.check().is_err()) => break,
                Err(_) => match normal.try_recv() {
                    Ok(line) => line,
                    Err(_) => break,
                },
            };
            batch.extend_from_slice(&next);
            batch.extend_from_slice(b"\r\n");
        }
        if io.write_all(&batch).await.is_err() || io.flush().await.is_err() {
            break;
        }
    }
    let _ = io.shutdown().await;
}

/// What one read asks for while a connection is quiet. A read that fills it doubles the
/// next (a burst is read in few system calls, up to [`BURST_READ`]); once every line is
/// handed on, the buffer goes back to this size, so an idle puppet holds half a KiB here.
const QUIET_READ: usize = 512;
const BURST_READ: usize = 16 * 1024;

async fn read_lines(mut io: ReadHalf<Box<dyn IrcIo>>, tx: flume::Sender<Inbound>) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = QUIET_READ;
    // Inside an overlong line, whose rest is skipped up to its end.
    let mut skipping = false;
    let reason = loop {
        let mut start = 0;
        while let Some(at) = buf[start..].iter().position(|&b| b == b'\n') {
            let line = &buf[start..start + at];
            start += at + 1;
            if std::mem::take(&mut skipping) {
                continue;
            }
            if line.len() >= MAX_INBOUND {
                warn!("overlong line from the IRC server skipped");
                continue;
            }
            if tx.send_async(Inbound::Line(trim_line(line))).await.is_err() {
                return;
            }
        }
        buf.drain(..start);
        if buf.len() >= MAX_INBOUND {
            // An overlong line: skip the rest of it, keep the connection.
            if !skipping {
                warn!("overlong line from the IRC server skipped");
            }
            skipping = true;
            buf.clear();
        }
        if buf.is_empty() && buf.capacity() > QUIET_READ {
            buf = Vec::new();
            chunk = QUIET_READ;
        }
        buf.reserve_exact(chunk);
        let room = buf.capacity() - buf.len();
        match io.read_buf(&mut buf).await {
            Ok(0) => {
                // A last line without its end still counts.
                if !buf.is_empty() && !skipping {
                    let _ = tx.send_async(Inbound::Line(trim_line(&buf))).await;
                }
                break "the server closed the connection".to_owned();
            }
            Ok(n) if n == room => chunk = (chunk * 2).min(BURST_READ),
            Ok(_) => {}
            Err(e) => break format!("read error: {e}"),
        }
    };
    let _ = tx.send_async(Inbound::Closed(reason)).await;
}

/// A line without its CR LF.
fn trim_line(line: &[u8]) -> Vec<u8> {
    let mut end = line.len();
    while end > 0 && matches!(line[end - 1], b'\n' | b'\r') {
        end -= 1;
    }
    line[..end].to_vec()
}

use tokio::io::AsyncReadExt as _;

/// The encoding a label names (`koi8-r`, `windows-1252`…), if encoding_rs knows it.
pub fn encoding(label: &str) -> Option<&'static encoding_rs::Encoding> {
    encoding_rs::Encoding::for_label(label.trim().as_bytes())
}

/// Resolves once shutdown is signalled.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await.map(|_| ());
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
    parting: std::collections::HashSet<String>,
    /// Channels with their own encoding, by folded name.
    encodings: HashMap<String, &'static encoding_rs::Encoding>,
    /// The server's encoding for what is not UTF-8 (instead of latin-1), if the user set one.
    encoding_in: Option<&'static encoding_rs::Encoding>,
    /// The server's encoding for what we send (instead of UTF-8), if the user set one.
    encoding_out: Option<&'static encoding_rs::Encoding>,
    /// Set by a quit command: the session ends with this QUIT message.
    quit_reason: Option<String>,
    /// A LIST under way: the channels so far.
    listing: Option<Vec<(String, u32, String)>>,
    writer: Option<Writer>,
}

/// How a connection ended.
enum Ending {
    /// Shutdown, or the network dropped the session: QUIT with this reason.
    Quit(String),
    /// The connection broke.
    Lost(String),
}

/// Run a session until its last channel is left, shutdown, or the server stays unreachable.
/// A connection that breaks while in channels is re-established with backoff and the
/// channels are joined again.
pub async fn run(
    spec: SessionSpec,
    inner: Arc<Inner>,
    mut commands: mpsc::Receiver<Command>,
    mut shutdown: watch::Receiver<bool>,
) {
    let user = spec.user.clone();
    let server = spec.server.clone();
    let id = spec.id;
    let initial_nick = spec.identity.nick.clone();
    let mut session = Session {
        spec,
        inner: inner.clone(),
        rules: ServerRules::default(),
        nick: initial_nick.clone(),
        source_len: initial_nick.len() + 1 + 10 + 1 + 63,
        caps: HashSet::new(),
        channels: HashMap::default(),
        echoes: VecDeque::new(),
        settled: false,
        had_channels: false,
        parting: Default::default(),
        listing: None,
        quit_reason: None,
        encodings: HashMap::new(),
        encoding_in: None,
        encoding_out: None,
        writer: None,
    };
    session.encoding_in = session
        .spec
        .identity
        .transport
        .encoding_in
        .as_deref()
        .and_then(encoding);
    session.encoding_out = session
        .spec
        .identity
        .transport
        .encoding_out
        .as_deref()
        .and_then(encoding);
    let mut delays = reconnect_delays();
    let mut attempts = 0u32;
    let quit_reason = loop {
        let reconnecting = attempts > 0;
        let (lines_tx, mut lines) = flume::bounded(256);
        let registered = tokio::time::timeout(
            REGISTRATION_TIMEOUT,
            session.register(lines_tx, &mut lines, reconnecting),
        )
        .await;
        let failure = match registered {
            Ok(Ok(())) => None,
            Ok(Err((failure, text))) => Some((failure, text)),
            Err(_) => Some((
                JoinFailure::Unreachable,
                format!("{server} did not complete the registration in time"),
            )),
        };
        if let Some((failure, text)) = failure {
            if let Some(writer) = session.writer.take() {
                writer.finish(Some("QUIT".into())).await;
            }
            if !reconnecting {
                warn!(%user, %server, %text, "irc connection failed");
                session
                    .fail_waiting_joins(&mut commands, failure, &text)
                    .await;
                inner.forget(&user, &server, id);
                return;
            }
            attempts += 1;
            warn!(%user, %server, attempts, %text, "irc reconnection failed");
            match delays
                .next()
                .filter(|_| attempts <= session.spec.settings.reconnect_attempts)
            {
                Some(delay) => match session
                    .wait_offline(delay, &mut commands, &mut shutdown)
                    .await
                {
                    Some(ending) => break ending,
                    None => continue,
                },
                None => {
                    session.give_up(&text).await;
                    break None;
                }
            }
        }
        for line in session.spec.identity.after_connect.clone() {
            let line = crate::text::strip_line_breaks(&line);
            if !line.trim().is_empty() {
                session.send(line.into_owned());
            }
        }
        if reconnecting {
            info!(%user, %server, nick = %session.nick, attempts, "irc connection re-established");
            session
                .emit(Event::Reconnected {
                    user: user.clone(),
                    server: server.clone(),
                })
                .await;
            session.rejoin();
            delays = reconnect_delays();
        } else {
            info!(%user, %server, nick = %session.nick, "irc connection registered");
        }
        match session
            .serve(&mut lines, &mut commands, &mut shutdown)
            .await
        {
            Ending::Quit(reason) => break Some(reason),
            Ending::Lost(reason) => {
                if let Some(writer) = session.writer.take() {
                    writer.finish(None).await;
                }
                if *shutdown.borrow() || !session.channels.values().any(|c| c.joined) {
                    session.connection_lost(&reason).await;
                    break None;
                }
                if session.spec.settings.reconnect_attempts == 0 {
                    session.give_up(&reason).await;
                    break None;
                }
                warn!(%user, %server, %reason, "irc connection lost, reconnecting");
                session
                    .emit(Event::Disconnected {
                        user: user.clone(),
                        server: server.clone(),
                        reason: reason.clone(),
                        retrying: true,
                    })
                    .await;
                for channel in session.channels.values_mut() {
                    channel.joined = false;
                    channel.members.clear();
                }
                attempts = 1;
                let delay = delays.next().unwrap_or(Duration::from_secs(1));
                if let Some(ending) = session
                    .wait_offline(delay, &mut commands, &mut shutdown)
                    .await
                {
                    break ending;
                }
            }
        }
    };
    // Nothing new reaches this session from here on; what raced its end goes to a new one,
    // once this one has said QUIT, so the nick is free again.
    inner.forget(&user, &server, id);
    commands.close();
    let mut rest = Vec::new();
    while let Ok(cmd) = commands.try_recv() {
        rest.push(cmd);
    }
    if let Some(writer) = session.writer.take() {
        let quit = quit_reason.map(|reason| {
            if reason.is_empty() {
                "QUIT".to_owned()
            } else {
                format("QUIT", &[&reason])
            }
        });
        writer.finish(quit).await;
    }
    info!(%user, %server, "irc connection closed");
    if !*shutdown.borrow() {
        for cmd in rest {
            inner.redispatch(&user, &server, cmd).await;
        }
    }
}

/// Reconnection delays: exponential from 1 s, capped at 30 s, with jitter.
fn reconnect_delays() -> impl Iterator<Item = Duration> {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(15))
        .with_jitter()
        .without_max_times()
        .build()
}

impl Session {
    /// The connected life of the session: lines in, commands in, pings, until it ends.
    async fn serve(
        &mut self,
        lines: &mut flume::Receiver<Inbound>,
        commands: &mut mpsc::Receiver<Command>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Ending {
        let mut ticker = tokio::time::interval(
            (self.spec.settings.ping_after() / 4)
                .clamp(Duration::from_millis(250), Duration::from_secs(15)),
        );
        let mut last_read = Instant::now();
        let mut pinged = false;
        // Set while no channel is left: the connection stays for a moment, so that leaving
        // one channel and joining the next does not cost a reconnection (or a nick in use).
        let mut linger: Option<tokio::time::Instant> = None;
        // What the linger branch waits for while it is off (and never polled).
        let no_linger = tokio::time::Instant::now();
        loop {
            let linger_until = linger.unwrap_or(no_linger);
            tokio::select! {
                biased;
                _ = stopped(shutdown) => return Ending::Quit("causeway is shutting down".to_owned()),
                inbound = lines.recv_async() => match inbound {
                    Ok(Inbound::Line(bytes)) => {
                        last_read = Instant::now();
                        pinged = false;
                        let text = self.decode(&bytes);
                        if let Some(reason) = self.handle_line(&text).await {
                            return Ending::Lost(reason);
                        }
                    }
                    Ok(Inbound::Closed(reason)) => return Ending::Lost(reason),
                    Err(_) => return Ending::Lost("the connection reader ended".into()),
                },
                command = commands.recv() => {
                    let Some(mut command) = command else { return Ending::Quit(String::new()) };
                    // Commands queued meanwhile are taken without a select each.
                    for taken in 1.. {
                        self.handle_command(command).await;
                        if let Some(reason) = self.quit_reason.take() {
                            return Ending::Quit(reason);
                        }
                        if taken == COMMAND_BURST {
                            break;
                        }
                        match commands.try_recv() {
                            Ok(next) => command = next,
                            Err(_) => break,
                        }
                    }
                }
                _ = ticker.tick() => {
                    let silent = last_read.elapsed();
                    if silent > self.spec.settings.dead_after() {
                        return Ending::Lost(format!("no data from the server for {} s", silent.as_secs()));
                    }
                    if silent > self.spec.settings.ping_after() && !pinged {
                        self.send_urgent(format("PING", &["causeway"]));
                        pinged = true;
                    }
                }
                _ = tokio::time::sleep_until(linger_until), if linger.is_some() => return Ending::Quit(String::new()),
            }
            if self.had_channels && self.channels.is_empty() {
                linger.get_or_insert_with(|| tokio::time::Instant::now() + LINGER);
            } else {
                linger = None;
            }
        }
    }

    /// Between connections: wait `delay`, taking commands as well as can be done offline.
    /// `Some` when the session should end instead of reconnecting.
    async fn wait_offline(
        &mut self,
        delay: Duration,
        commands: &mut mpsc::Receiver<Command>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Option<Option<String>> {
        let until = tokio::time::Instant::now() + delay;
        loop {
            tokio::select! {
                biased;
                _ = stopped(shutdown) => {
                    self.connection_lost("causeway is shutting down").await;
                    return Some(None);
                }
                _ = tokio::time::sleep_until(until) => return None,
                command = commands.recv() => match command {
                    Some(Command::Join { channel, .. }) => {
                        let folded = self.rules.fold(&channel);
                        self.channels.entry(folded).or_insert_with(|| Channel::joining(&channel));
                    }
                    Some(Command::Part { channel, reason }) => {
                        if let Some(state) = self.channels.remove(&self.rules.fold(&channel)) {
                            let room = self.room(&state.name);
                            self.emit(Event::Left { user: self.user(), room, departure: Departure::Part, reason }).await;
                        }
                        if self.channels.is_empty() {
                            return Some(None);
                        }
                    }
                    Some(Command::Send { target, id, .. }) => {
                        let peer = self.peer(&target);
                        let text = format!("not connected to {} right now: reconnecting", self.spec.server);
                        self.emit(Event::SendFailed { user: self.user(), peer, id: Some(id), text }).await;
                    }
                    Some(_) => {}
                    None => return Some(Some(String::new())),
                },
            }
        }
    }

    /// Join again every channel the puppet was in (after a reconnection).
    fn rejoin(&mut self) {
        // PARTs sent on the lost connection will never be echoed.
        self.parting.clear();
        let names: Vec<String> = self.channels.values().map(|c| c.name.clone()).collect();
        for name in names {
            self.send(format("JOIN", &[&name]));
        }
    }

    /// Reconnection failed for good: every channel is left.
    async fn give_up(&mut self, reason: &str) {
        let reason = format!("could not reconnect to {}: {reason}", self.spec.server);
        self.emit(Event::Disconnected {
            user: self.user(),
            server: self.spec.server.clone(),
            reason: reason.clone(),
            retrying: false,
        })
        .await;
        self.connection_lost(&reason).await;
    }

    /// The first connection failed: every join asked for so far fails the same way.
    async fn fail_waiting_joins(
        &mut self,
        commands: &mut mpsc::Receiver<Command>,
        failure: JoinFailure,
        text: &str,
    ) {
        commands.close();
        while let Ok(cmd) = commands.try_recv() {
            if let Command::Join { channel, .. } = cmd {
                let room = self.room(&channel);
                self.emit(Event::JoinFailed {
                    user: self.user(),
                    room,
                    failure,
                    text: text.to_owned(),
                })
                .await;
            }
        }
    }

    fn room(&self, channel: &str) -> RoomRef {
        RoomRef {
            server: self.spec.server.clone(),
            name: channel.to_owned(),
        }
    }

    async fn emit(&self, event: Event) {
        self.inner.emit(event).await;
    }

    fn send(&self, line: String) {
        if let Some(writer) = &self.writer {
            debug!(line = %redact(&line), "irc >");
            writer.send(self.encode(line));
        }
    }

    /// A received line as text: UTF-8 when it is; otherwise in the channel's encoding, else
    /// the server's incoming encoding, else latin-1 (which takes every byte as it is).
    fn decode(&self, bytes: &[u8]) -> String {
        if let Ok(text) = std::str::from_utf8(bytes) {
            return text.to_owned();
        }
        let latin = decode_line(bytes);
        let channel = Line::parse(&latin).and_then(|line| {
            let target = if line.numeric().is_some() {
                line.param(1)
            } else {
                line.param(0)
            };
            self.encodings.get(&self.rules.fold(target)).copied()
        });
        match channel.or(self.encoding_in) {
            Some(encoding) => encoding.decode_without_bom_handling(bytes).0.into_owned(),
            None => latin,
        }
    }

    /// A line to send, in the target channel's encoding, else the server's outgoing one,
    /// else UTF-8.
    fn encode(&self, line: String) -> Vec<u8> {
        let channel = if self.encodings.is_empty() {
            None
        } else {
            Line::parse(&line)
                .and_then(|l| self.encodings.get(&self.rules.fold(l.param(0))).copied())
        };
        match channel.or(self.encoding_out) {
            Some(encoding) => encoding.encode(&line).0.into_owned(),
            None => line.into_bytes(),
        }
    }

    fn send_urgent(&self, line: String) {
        if let Some(writer) = &self.writer {
            writer.send_urgent(line);
        }
    }

    fn user(&self) -> UserRef {
        self.spec.user.clone()
    }

    /// Connect and register; `Err` carries why, for the joins waiting on it.
    async fn register(
        &mut self,
        lines_tx: flume::Sender<Inbound>,
        lines: &mut flume::Receiver<Inbound>,
        reconnecting: bool,
    ) -> Result<(), (JoinFailure, String)> {
        self.caps.clear();
        self.rules = ServerRules::default();
        self.settled = false;
        self.echoes.clear();
        let mut nick_tries = 0;
        let settings = &self.spec.settings;
        let server = self.spec.server.clone();
        let io = transport::connect(&server, settings.port, settings.tls, settings.verify_tls)
            .await
            .map_err(|e| {
                (
                    JoinFailure::Unreachable,
                    format!("cannot connect to {server}:{}: {e}", settings.port),
                )
            })?;
        let (read, write) = tokio::io::split(io);
        tokio::spawn(read_lines(read, lines_tx));
        self.writer = Some(Writer::start(write, settings));

        self.send_urgent("CAP LS 302".into());
        if let Some(password) = &self.spec.settings.password {
            self.send_urgent(format("PASS", &[password]));
        }
        let identity = self.spec.identity.clone();
        self.send_urgent(format("NICK", &[&identity.nick]));
        self.send_urgent(format(
            "USER",
            &[&identity.username, "0", "*", &identity.realname],
        ));

        let mut offered: Vec<String> = Vec::new();
        loop {
            let text = match lines.recv_async().await {
                Ok(Inbound::Line(bytes)) => self.decode(&bytes),
                Ok(Inbound::Closed(reason)) => return Err((JoinFailure::Unreachable, reason)),
                Err(_) => return Err((JoinFailure::Unreachable, "connection ended".into())),
            };
            let Some(line) = Line::parse(&text) else {
                continue;
            };
            debug!(line = %text, "irc <");
            match (line.command.as_str(), line.numeric()) {
                ("PING", _) => self.send_urgent(format("PONG", &[line.param(0)])),
                ("ERROR", _) => return Err((JoinFailure::Unreachable, line.param(0).to_owned())),
                ("CAP", _) => match line.param(1) {
                    "LS" => {
                        // `CAP * LS * :caps` continues; `CAP * LS :caps` ends the list.
                        let more = line.params.len() > 3 && line.param(2) == "*";
                        let list = line.params.last().cloned().unwrap_or_default();
                        offered.extend(
                            list.split(' ')
                                .filter(|c| !c.is_empty())
                                .map(|c| c.split('=').next().unwrap_or(c).to_owned()),
                        );
                        if !more {
                            let wanted: Vec<&str> = WANTED_CAPS
                                .iter()
                                .copied()
                                .filter(|c| offered.iter().any(|o| o == c))
                                .filter(|c| *c != "sasl" || identity.sasl_password.is_some())
                                .collect();
                            if wanted.is_empty() {
                                self.send_urgent("CAP END".into());
                            } else {
                                self.send_urgent(format("CAP", &["REQ", &wanted.join(" ")]));
                            }
                        }
                    }
                    "ACK" => {
                        let acked = line.params.last().cloned().unwrap_or_default();
                        self.caps.extend(
                            acked
                                .split(' ')
                                .filter(|c| !c.is_empty())
                                .map(|c| c.trim_start_matches('-').to_owned()),
                        );
                        if self.caps.contains("sasl") && identity.sasl_password.is_some() {
                            self.send_urgent("AUTHENTICATE PLAIN".into());
                        } else {
                            self.send_urgent("CAP END".into());
                        }
                    }
                    "NAK" => self.send_urgent("CAP END".into()),
                    _ => {}
                },
                ("AUTHENTICATE", _) if line.param(0) == "+" => {
                    use base64::Engine as _;
                    let password = identity.sasl_password.clone().unwrap_or_default();
                    let account = identity
                        .sasl_account
                        .clone()
                        .unwrap_or_else(|| identity.nick.clone());
                    let token = base64::engine::general_purpose::STANDARD
                        .encode(format!("{account}\0{account}\0{password}"));
                    self.send_urgent(format!("AUTHENTICATE {token}"));
                }
                (_, Some(RPL_SASLSUCCESS)) => {
                    info!(user = %self.spec.user, %server, "SASL authentication succeeded");
                    self.send_urgent("CAP END".into());
                }
                (_, Some(ERR_SASLFAIL | ERR_SASLTOOLONG | ERR_SASLABORTED | ERR_SASLALREADY)) => {
                    self.send_urgent("CAP END".into());
                    self.send_urgent("QUIT".into());
                    return Err((
                        JoinFailure::Other,
                        format!(
                            "SASL authentication failed on {server}: {}",
                            line.params.last().cloned().unwrap_or_default()
                        ),
                    ));
                }
                (_, Some(RPL_WELCOME)) => {
                    // (A server without CAP support answers 421 to CAP and registers us anyway.)
                    self.nick = line.param(0).to_owned();
                    return Ok(());
                }
                (_, Some(ERR_NICKNAMEINUSE | ERR_NICKCOLLISION | ERR_UNAVAILRESOURCE))
                    if reconnecting && nick_tries < 3 =>
                {
                    // Our old connection may still hold the nick: take a variant for now.
                    nick_tries += 1;
                    let variant = format!("{}{}", self.nick, "_".repeat(nick_tries));
                    self.send_urgent(format("NICK", &[&variant]));
                }
                (_, Some(ERR_NICKNAMEINUSE | ERR_NICKCOLLISION | ERR_UNAVAILRESOURCE)) => {
                    return Err((
                        JoinFailure::NickInUse,
                        format!("{} is already in use on {server}", identity.nick),
                    ));
                }
                (_, Some(ERR_ERRONEUSNICKNAME | ERR_NONICKNAMEGIVEN)) => {
                    return Err((
                        JoinFailure::BadNick,
                        format!(
                            "{:?} is not a valid nick on {server}: {}",
                            identity.nick,
                            line.params.last().cloned().unwrap_or_default()
                        ),
                    ));
                }
                (_, Some(ERR_PASSWDMISMATCH | ERR_YOUREBANNEDCREEP)) => {
                    return Err((
                        JoinFailure::Banned,
                        format!(
                            "{server} refused the connection: {}",
                            line.params.last().cloned().unwrap_or_default()
                        ),
                    ));
                }
                _ => {}
            }
        }
    }

    async fn handle_command(&mut self, command: Command) {
        match command {
            Command::Join { channel, key } => {
                let folded = self.rules.fold(&channel);
                if self.parting.contains(&folded) {
                    // Left and joined again before the PART came back: join anew (the
                    // server takes the PART and the JOIN in order).
                    self.channels.remove(&folded);
                }
                if let Some(existing) = self.channels.get(&folded) {
                    if existing.joined {
                        // Already in: the state as it is, for a second resource.
                        let event = Event::Joined {
                            user: self.user(),
                            room: self.room(&existing.name),
                            nick: self.nick.clone(),
                            members: existing.member_list(&self.rules),
                            subject: existing.topic.clone(),
                        };
                        self.emit(event).await;
                    }
                    return;
                }
                let wanted = self
                    .inner
                    .identities
                    .channel_encoding(&self.spec.user, &self.spec.server, &channel)
                    .await;
                match wanted.as_deref().and_then(encoding) {
                    Some(chosen) => self.encodings.insert(folded.clone(), chosen),
                    None => self.encodings.remove(&folded),
                };
                self.channels.insert(folded, Channel::joining(&channel));
                self.had_channels = true;
                match key {
                    Some(key) => self.send(format("JOIN", &[&channel, &key])),
                    None => self.send(format("JOIN", &[&channel])),
                }
            }
            Command::Part { channel, reason } => {
                let folded = self.rules.fold(&channel);
                let Some(state) = self.channels.get(&folded) else {
                    return;
                };
                if state.joined {
                    self.parting.insert(folded.clone());
                } else {
                    // Still joining: forget it; the JOIN reply will be ignored.
                    self.channels.remove(&folded);
                }
                match reason {
                    Some(reason) if !reason.is_empty() => {
                        self.send(format("PART", &[&channel, &reason]))
                    }
                    _ => self.send(format("PART", &[&channel])),
                }
            }
            Command::Send {
                target,
                body,
                kind,
                id,
            } => self.send_message(target, body, kind, id).await,
            Command::Topic { channel, topic } => self.send(format("TOPIC", &[&channel, &topic])),
            Command::Nick(nick) => self.send(format("NICK", &[&nick])),
            Command::Kick {
                channel,
                nick,
                reason,
            } => self.send(format(
                "KICK",
                &[&channel, &nick, reason.as_deref().unwrap_or("")],
            )),
            Command::Privilege {
                channel,
                nick,
                privilege,
            } => self.set_privilege(&channel, &nick, privilege),
            Command::Quit(reason) => {
                let channels: Vec<Channel> = self.channels.drain().map(|(_, c)| c).collect();
                for channel in channels.into_iter().filter(|c| c.joined) {
                    let room = self.room(&channel.name);
                    let reason = Some(reason.clone().unwrap_or_else(|| "disconnected".into()));
                    self.emit(Event::Left {
                        user: self.user(),
                        room,
                        departure: Departure::Quit,
                        reason,
                    })
                    .await;
                }
                self.quit_reason = Some(reason.unwrap_or_default());
            }
            Command::List => {
                // A connection opened only for this ends once the list is in.
                self.had_channels = true;
                self.listing = Some(Vec::new());
                self.send("LIST".into());
            }
            Command::Raw(line) => {
                // A connection opened only for raw commands lingers, then ends.
                self.had_channels = true;
                let line = crate::text::strip_line_breaks(&line);
                if !line.trim().is_empty() {
                    self.send(line.into_owned());
                }
            }
        }
    }

    async fn send_message(&mut self, target: String, body: String, kind: MessageKind, id: String) {
        let is_channel = self.rules.is_channel(&target);
        let folded = self.rules.fold(&target);
        let peer = self.peer_folded(&target, &folded);
        if is_channel && !self.channels.get(&folded).is_some_and(|c| c.joined) {
            let text = format!("you are not in {target}");
            self.emit(Event::SendFailed {
                user: self.user(),
                peer,
                id: Some(id),
                text,
            })
            .await;
            return;
        }
        let (command, wrap) = match kind {
            MessageKind::Notice => ("NOTICE", 0),
            MessageKind::Action => ("PRIVMSG", 9),
            MessageKind::Normal => ("PRIVMSG", 0),
        };
        let parts = split_body(&body, self.source_len, command, &target, wrap);
        if parts.is_empty() {
            return;
        }
        let count = parts.len();
        for part in parts {
            let text = if kind == MessageKind::Action {
                format!("\u{1}ACTION {part}\u{1}")
            } else {
                part
            };
            self.send(format(command, &[&target, &text]));
        }
        if self.caps.contains("echo-message") {
            self.echoes.push_back(PendingEcho {
                target: folded,
                id,
                body,
                kind,
                lines_left: count,
            });
        } else {
            let event = Event::Message {
                user: self.user(),
                peer,
                from: self.nick.clone(),
                body,
                kind,
                time: None,
                own_id: Some(id),
                remote_id: None,
                refs: causeway_bridge::Refs::none(),
            };
            self.emit(event).await;
        }
    }

    fn set_privilege(&self, channel: &str, nick: &str, privilege: Privilege) {
        let current = self
            .channels
            .get(&self.rules.fold(channel))
            .and_then(|c| c.members.get(&self.rules.fold(nick)))
            .map(|m| m.modes.clone())
            .unwrap_or_default();
        let target = self.rules.mode_of_privilege(privilege);
        let mut changes = String::new();
        let mut args = Vec::new();
        for mode in current.iter().filter(|m| Some(**m) != target) {
            changes.push_str(&format!("-{mode}"));
            args.push(nick);
        }
        if let Some(mode) = target.filter(|m| !current.contains(m)) {
            changes.push_str(&format!("+{mode}"));
            args.push(nick);
        }
        if !changes.is_empty() {
            let mut params = vec![channel, changes.as_str()];
            params.extend(args);
            self.send(format("MODE", &params));
        }
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

    /// Handle one line from the server; `Some(reason)` when the server ends the connection.
    async fn handle_line(&mut self, text: &str) -> Option<String> {
        let Some(line) = Line::parse(text) else {
            warn!(line = %text, "unparseable line from the IRC server");
            return None;
        };
        debug!(line = %text, "irc <");
        let from = line.source_nick().unwrap_or_default().to_owned();
        match line.command.as_str() {
            "PING" => self.send_urgent(format("PONG", &[line.param(0)])),
            "PONG" => {}
            "ERROR" => {
                return Some(format!(
                    "the server closed the connection: {}",
                    line.param(0)
                ))
            }
            "JOIN" => self.on_join(&line, &from).await,
            "PART" => {
                let reason = line.params.get(1).cloned().filter(|r| !r.is_empty());
                self.on_leave(line.param(0), &from, Departure::Part, reason)
                    .await;
            }
            "KICK" => {
                let reason = line.params.get(2).cloned().filter(|r| !r.is_empty());
                let victim = line.param(1).to_owned();
                self.on_leave(line.param(0), &victim, Departure::Kick { by: from }, reason)
                    .await;
            }
            "QUIT" => {
                let reason = line.params.first().cloned().filter(|r| !r.is_empty());
                let folded = self.rules.fold(&from);
                let rooms: Vec<String> = self
                    .channels
                    .values()
                    .filter(|c| c.joined && c.members.contains_key(&folded))
                    .map(|c| c.name.clone())
                    .collect();
                for room in rooms {
                    self.on_leave(&room, &from, Departure::Quit, reason.clone())
                        .await;
                }
            }
            "NICK" => self.on_nick(&from, line.param(0)).await,
            "TOPIC" => {
                let folded = self.rules.fold(line.param(0));
                let topic = line.param(1).to_owned();
                let server = self.spec.server.clone();
                if let Some(channel) = self.channels.get_mut(&folded) {
                    channel.topic = topic.clone();
                    let room = RoomRef {
                        server,
                        name: channel.name.clone(),
                    };
                    self.emit(Event::Subject {
                        user: self.user(),
                        room,
                        subject: topic,
                        by: Some(from),
                    })
                    .await;
                }
            }
            "MODE" => self.on_mode(&line).await,
            "PRIVMSG" | "NOTICE" => self.on_message(&line, &from).await,
            "CHGHOST" => {
                if self.is_me(&from) {
                    self.source_len =
                        self.nick.len() + 1 + line.param(0).len() + 1 + line.param(1).len();
                }
            }
            "AWAY" => {
                let folded = self.rules.fold(&from);
                let rooms: Vec<RoomRef> = self
                    .channels
                    .values()
                    .filter(|c| c.joined && c.members.contains_key(&folded))
                    .map(|c| RoomRef {
                        server: self.spec.server.clone(),
                        name: c.name.clone(),
                    })
                    .collect();
                if !rooms.is_empty() {
                    let message = line.params.first().cloned().filter(|m| !m.is_empty());
                    self.emit(Event::MemberAway {
                        user: self.user(),
                        rooms,
                        nick: from,
                        message,
                    })
                    .await;
                }
            }
            "CAP" | "ACCOUNT" | "BATCH" => {}
            _ => self.on_numeric(&line).await,
        }
        None
    }

    async fn on_join(&mut self, line: &Line, from: &str) {
        let folded = self.rules.fold(line.param(0));
        let Some(channel) = self.channels.get_mut(&folded) else {
            return;
        };
        let member = MemberState {
            nick: from.to_owned(),
            modes: BTreeSet::new(),
        };
        if self.rules.fold(from) == self.rules.fold(&self.nick) {
            if let Some(source) = &line.source {
                self.source_len = source.len();
            }
            channel.members.insert(self.rules.fold(from), member);
            return;
        }
        if !channel.joined {
            channel.members.insert(self.rules.fold(from), member);
            return;
        }
        channel.members.insert(self.rules.fold(from), member);
        let room = RoomRef {
            server: self.spec.server.clone(),
            name: channel.name.clone(),
        };
        let member = Member {
            nick: from.to_owned(),
            privilege: Privilege::None,
        };
        self.emit(Event::MemberJoined {
            user: self.user(),
            room,
            member,
        })
        .await;
    }

    async fn on_leave(
        &mut self,
        channel: &str,
        nick: &str,
        departure: Departure,
        reason: Option<String>,
    ) {
        let folded = self.rules.fold(channel);
        if self.is_me(nick) {
            let ours = self.parting.remove(&folded);
            if ours && self.channels.get(&folded).is_some_and(|c| !c.joined) {
                // The echo of a PART sent before the join now in progress: that join
                // stands.
                return;
            }
            if let Some(state) = self.channels.remove(&folded) {
                let room = self.room(&state.name);
                self.emit(Event::Left {
                    user: self.user(),
                    room,
                    departure,
                    reason,
                })
                .await;
            }
            return;
        }
        let nick_folded = self.rules.fold(nick);
        let Some(state) = self.channels.get_mut(&folded) else {
            return;
        };
        let Some(member) = state.members.remove(&nick_folded) else {
            return;
        };
        if state.joined {
            let room = RoomRef {
                server: self.spec.server.clone(),
                name: state.name.clone(),
            };
            self.emit(Event::MemberLeft {
                user: self.user(),
                room,
                nick: member.nick,
                departure,
                reason,
            })
            .await;
        }
    }

    async fn on_nick(&mut self, old: &str, new: &str) {
        let old_folded = self.rules.fold(old);
        let mine = self.is_me(old);
        if mine {
            self.nick = new.to_owned();
            self.source_len = self.source_len + new.len() - old.len().min(self.source_len);
        }
        let mut rooms = Vec::new();
        for channel in self.channels.values_mut() {
            if let Some(mut member) = channel.members.remove(&old_folded) {
                member.nick = new.to_owned();
                channel.members.insert(self.rules.fold(new), member);
                if channel.joined {
                    rooms.push(RoomRef {
                        server: self.spec.server.clone(),
                        name: channel.name.clone(),
                    });
                }
            }
        }
        if !rooms.is_empty() || mine {
            self.emit(Event::NickChanged {
                user: self.user(),
                rooms,
                old: old.to_owned(),
                new: new.to_owned(),
            })
            .await;
        }
    }

    async fn on_mode(&mut self, line: &Line) {
        let target = line.param(0);
        let folded = self.rules.fold(target);
        if !self.rules.is_channel(target) {
            return;
        }
        let mut args = line.params.iter().skip(2);
        let mut adding = true;
        let mut changed: Vec<String> = Vec::new();
        for mode in line.param(1).chars() {
            match mode {
                '+' => adding = true,
                '-' => adding = false,
                mode => {
                    let arg = if self.rules.mode_takes_param(mode, adding) {
                        args.next()
                    } else {
                        None
                    };
                    if !self.rules.prefixes.iter().any(|(m, _)| *m == mode) {
                        continue;
                    }
                    let Some(nick) = arg else { continue };
                    let Some(channel) = self.channels.get_mut(&folded) else {
                        continue;
                    };
                    if let Some(member) = channel.members.get_mut(&self.rules.fold(nick)) {
                        if adding {
                            member.modes.insert(mode);
                        } else {
                            member.modes.remove(&mode);
                        }
                        changed.push(self.rules.fold(nick));
                    }
                }
            }
        }
        let Some(channel) = self.channels.get(&folded) else {
            return;
        };
        if !channel.joined {
            return;
        }
        changed.dedup();
        let room = self.room(&channel.name);
        let updates: Vec<(String, Privilege)> = changed
            .iter()
            .filter_map(|n| channel.members.get(n))
            .map(|m| (m.nick.clone(), highest(&self.rules, &m.modes)))
            .collect();
        for (nick, privilege) in updates {
            self.emit(Event::PrivilegeChanged {
                user: self.user(),
                room: room.clone(),
                nick,
                privilege,
            })
            .await;
        }
    }

    async fn on_message(&mut self, line: &Line, from: &str) {
        let target = line.param(0).to_owned();
        let mut body = line.param(1).to_owned();
        let notice = line.command == "NOTICE";
        let server_source = line
            .source
            .as_deref()
            .is_none_or(|s| !s.contains('!') && !s.contains('@'));
        if server_source
            || (!self.rules.is_channel(&target) && !self.is_me(&target) && !self.is_me(from))
        {
            // Server notices, and notices to `*` or `AUTH` during connection.
            self.emit(Event::ServerText {
                user: self.user(),
                server: self.spec.server.clone(),
                text: body,
            })
            .await;
            return;
        }
        let mut kind = if notice {
            MessageKind::Notice
        } else {
            MessageKind::Normal
        };
        if let Some(ctcp) = body.strip_prefix('\u{1}') {
            let ctcp = ctcp.strip_suffix('\u{1}').unwrap_or(ctcp).to_owned();
            let (verb, rest) = ctcp.split_once(' ').unwrap_or((&ctcp, ""));
            match (verb.to_ascii_uppercase().as_str(), notice) {
                ("ACTION", _) => {
                    kind = MessageKind::Action;
                    body = rest.to_owned();
                }
                (_, true) => return, // CTCP replies to nothing we asked
                ("VERSION", false) => {
                    self.send(format(
                        "NOTICE",
                        &[
                            from,
                            &format!("\u{1}VERSION causeway {}\u{1}", env!("CARGO_PKG_VERSION")),
                        ],
                    ));
                    return;
                }
                ("PING", false) => {
                    self.send(format("NOTICE", &[from, &format!("\u{1}PING {rest}\u{1}")]));
                    return;
                }
                _ => return,
            }
        }
        let time = line.tags.get("time").and_then(|t| parse_server_time(t));
        if self.is_me(from) {
            // echo-message: our own message coming back.
            let folded = self.rules.fold(&target);
            let peer = self.peer(&target);
            let own = match self.echoes.iter().position(|e| e.target == folded) {
                Some(i) => {
                    let pending = &mut self.echoes[i];
                    pending.lines_left -= 1;
                    if pending.lines_left > 0 {
                        return;
                    }
                    let pending = self.echoes.remove(i).expect("index is valid");
                    Some((pending.id, pending.body, pending.kind))
                }
                None => None,
            };
            let (own_id, body, kind) = match own {
                Some((id, body, kind)) => (Some(id), body, kind),
                None => (None, body, kind),
            };
            let event = Event::Message {
                user: self.user(),
                peer,
                from: self.nick.clone(),
                body,
                kind,
                time,
                own_id,
                remote_id: None,
                refs: causeway_bridge::Refs::none(),
            };
            self.emit(event).await;
            return;
        }
        let peer = if self.rules.is_channel(&target) {
            self.peer(&target)
        } else {
            self.peer(from)
        };
        if let Peer::Room(room) = &peer {
            if !self
                .channels
                .get(&self.rules.fold(&room.name))
                .is_some_and(|c| c.joined)
            {
                return;
            }
        }
        let event = Event::Message {
            user: self.user(),
            peer,
            from: from.to_owned(),
            body,
            kind,
            time,
            own_id: None,
            remote_id: None,
            refs: causeway_bridge::Refs::none(),
        };
        self.emit(event).await;
    }

    async fn on_numeric(&mut self, line: &Line) {
        let Some(code) = line.numeric() else {
            debug!(command = %line.command, "unhandled IRC command");
            return;
        };
        let text = line.params.last().cloned().unwrap_or_default();
        match code {
            RPL_ISUPPORT => {
                for token in &line.params[1..line.params.len().saturating_sub(1)] {
                    self.rules.apply(token);
                }
            }
            RPL_TOPIC => {
                if let Some(channel) = self.channels.get_mut(&self.rules.fold(line.param(1))) {
                    channel.topic = text;
                }
            }
            RPL_NOTOPIC | RPL_TOPICWHOTIME => {}
            RPL_NAMREPLY => {
                let folded = self.rules.fold(line.param(2));
                let entries: Vec<(BTreeSet<char>, String)> = text
                    .split(' ')
                    .filter(|e| !e.is_empty())
                    .map(|e| self.rules.parse_names_entry(e))
                    .collect();
                if let Some(channel) = self.channels.get_mut(&folded) {
                    for (modes, nick) in entries {
                        let key = self.rules.fold(&nick);
                        channel.members.insert(key, MemberState { nick, modes });
                    }
                }
            }
            322 if self.listing.is_some() => {
                // RPL_LIST: me channel count :topic
                let count = line.param(2).parse().unwrap_or(0);
                let entry = (line.param(1).to_owned(), count, text);
                if let Some(listing) = &mut self.listing {
                    listing.push(entry);
                }
            }
            321 => {} // RPL_LISTSTART
            323 => {
                if let Some(rooms) = self.listing.take() {
                    self.emit(Event::RoomList {
                        user: self.user(),
                        server: self.spec.server.clone(),
                        rooms,
                    })
                    .await;
                }
            }
            RPL_ENDOFNAMES => {
                let folded = self.rules.fold(line.param(1));
                let Some(channel) = self.channels.get_mut(&folded) else {
                    return;
                };
                if channel.joined {
                    return;
                }
                channel.joined = true;
                let event = Event::Joined {
                    user: self.spec.user.clone(),
                    room: RoomRef {
                        server: self.spec.server.clone(),
                        name: channel.name.clone(),
                    },
                    nick: self.nick.clone(),
                    members: channel.member_list(&self.rules),
                    subject: channel.topic.clone(),
                };
                self.emit(event).await;
            }
            ERR_NOSUCHCHANNEL | ERR_TOOMANYCHANNELS | ERR_CHANNELISFULL | ERR_INVITEONLYCHAN
            | ERR_BANNEDFROMCHAN | ERR_BADCHANNELKEY | ERR_BADCHANMASK | ERR_NEEDREGGEDNICK
                if self
                    .channels
                    .get(&self.rules.fold(line.param(1)))
                    .is_some_and(|c| !c.joined) =>
            {
                let failure = match code {
                    ERR_CHANNELISFULL => JoinFailure::Full,
                    ERR_INVITEONLYCHAN => JoinFailure::InviteOnly,
                    ERR_BANNEDFROMCHAN => JoinFailure::Banned,
                    ERR_BADCHANNELKEY => JoinFailure::BadKey,
                    ERR_NOSUCHCHANNEL | ERR_BADCHANMASK => JoinFailure::NoSuchRoom,
                    _ => JoinFailure::Other,
                };
                let state = self
                    .channels
                    .remove(&self.rules.fold(line.param(1)))
                    .expect("checked above");
                let room = self.room(&state.name);
                self.emit(Event::JoinFailed {
                    user: self.user(),
                    room,
                    failure,
                    text,
                })
                .await;
            }
            ERR_CANNOTSENDTOCHAN | ERR_NOSUCHNICK => {
                let target = line.param(1).to_owned();
                let folded = self.rules.fold(&target);
                let id = self
                    .echoes
                    .iter()
                    .position(|e| e.target == folded)
                    .and_then(|i| self.echoes.remove(i))
                    .map(|e| e.id);
                let peer = self.peer(&target);
                self.emit(Event::SendFailed {
                    user: self.user(),
                    peer,
                    id,
                    text,
                })
                .await;
            }
            ERR_NICKNAMEINUSE | ERR_NICKCOLLISION | ERR_UNAVAILRESOURCE | ERR_ERRONEUSNICKNAME => {
                let nick = line.param(1).to_owned();
                let in_use = code != ERR_ERRONEUSNICKNAME;
                self.emit(Event::NickRefused {
                    user: self.user(),
                    server: self.spec.server.clone(),
                    nick,
                    in_use,
                    text,
                })
                .await;
            }
            376 | 422 => self.settled = true, // end of MOTD / no MOTD
            _ if !self.settled || code < 100 || (250..=266).contains(&code) => {} // the connect-time burst
            _ => {
                let text = line.params[1..].join(" ");
                self.emit(Event::ServerText {
                    user: self.user(),
                    server: self.spec.server.clone(),
                    text,
                })
                .await;
            }
        }
    }

    /// The connection is gone: every channel is left, with the reason.
    async fn connection_lost(&mut self, reason: &str) {
        warn!(user = %self.spec.user, server = %self.spec.server, %reason, "irc connection lost");
        let channels: Vec<Channel> = self.channels.drain().map(|(_, c)| c).collect();
        for channel in channels {
            let room = self.room(&channel.name);
            if channel.joined {
                self.emit(Event::Left {
                    user: self.user(),
                    room,
                    departure: Departure::Quit,
                    reason: Some(format!("connection to {} lost: {reason}", self.spec.server)),
                })
                .await;
            } else {
                self.emit(Event::JoinFailed {
                    user: self.user(),
                    room,
                    failure: JoinFailure::Unreachable,
                    text: reason.to_owned(),
                })
                .await;
            }
        }
    }
}

/// Parse an IRCv3 `time` tag (`2024-01-31T12:34:56.789Z`).
pub fn parse_server_time(text: &str) -> Option<SystemTime> {
    let text = text.strip_suffix('Z')?;
    let (date, time) = text.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (year, month, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (hms, millis) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|p| p.parse::<i64>());
    let (h, m, s) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    let millis: u32 = format!("{millis:0<3}").get(..3)?.parse().ok()?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + m * 60 + s;
    let secs = u64::try_from(secs).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_time_parses() {
        let t = parse_server_time("2024-01-31T12:34:56.789Z").unwrap();
        let secs = t.duration_since(SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(secs.as_secs(), 1_706_704_496);
        assert_eq!(secs.subsec_millis(), 789);
        assert_eq!(
            parse_server_time("1970-01-01T00:00:00Z"),
            Some(SystemTime::UNIX_EPOCH)
        );
        assert_eq!(parse_server_time("garbage"), None);
        assert_eq!(parse_server_time("2024-13-01T00:00:00Z"), None);
    }

    /// Feed `chunks` to the line reader, one write each, then close; what it hands on.
    async fn lines_read(chunks: Vec<Vec<u8>>) -> Vec<Inbound> {
        let (server, client) = tokio::io::duplex(64 * 1024);
        let (read, _write) = tokio::io::split(Box::new(client) as Box<dyn IrcIo>);
        let (tx, rx) = flume::unbounded();
        let reader = tokio::spawn(read_lines(read, tx));
        let mut server = server;
        for chunk in chunks {
            server.write_all(&chunk).await.unwrap();
            tokio::task::yield_now().await;
        }
        drop(server);
        reader.await.unwrap();
        rx.drain().collect()
    }

    fn texts(inbound: &[Inbound]) -> Vec<String> {
        inbound
            .iter()
            .map(|i| match i {
                Inbound::Line(bytes) => String::from_utf8_lossy(bytes).into_owned(),
                Inbound::Closed(reason) => format!("closed: {reason}"),
            })
            .collect()
    }

    #[tokio::test]
    async fn lines_split_across_reads_come_whole_without_their_ends() {
        let read = lines_read(vec![
            b"PING :a\r\nPRIVMSG #c :he".to_vec(),
            b"llo\r".to_vec(),
            b"\nNOTICE x :bare lf\nlast without end".to_vec(),
        ])
        .await;
        assert_eq!(
            texts(&read),
            [
                "PING :a",
                "PRIVMSG #c :hello",
                "NOTICE x :bare lf",
                "last without end",
                "closed: the server closed the connection"
            ]
        );
    }

    #[tokio::test]
    async fn a_burst_larger_than_any_read_loses_nothing() {
        let burst: Vec<u8> = (0..2_000)
            .flat_map(|i| format!("PRIVMSG #c :message {i}\r\n").into_bytes())
            .collect();
        let read = lines_read(vec![burst]).await;
        let texts = texts(&read);
        assert_eq!(texts.len(), 2_001);
        assert_eq!(texts[0], "PRIVMSG #c :message 0");
        assert_eq!(texts[1_999], "PRIVMSG #c :message 1999");
    }

    #[tokio::test]
    async fn overlong_lines_are_skipped_and_the_next_ones_kept() {
        let long = vec![b'x'; MAX_INBOUND + 10];
        // One overlong line that arrives in one piece, one that comes in several reads.
        let mut first = b"PING :1\r\n".to_vec();
        first.extend_from_slice(&long);
        first.extend_from_slice(b"\r\nPING :2\r\n");
        let read = lines_read(vec![
            first,
            long[..5_000].to_vec(),
            long[5_000..].to_vec(),
            b"yy\r\nPING :3\r\n".to_vec(),
        ])
        .await;
        assert_eq!(
            texts(&read),
            [
                "PING :1",
                "PING :2",
                "PING :3",
                "closed: the server closed the connection"
            ]
        );
    }
}
