//! The life of a session: connect and register (in its turn: see `pacing.rs`), serve,
//! reconnect with backoff when the connection breaks while in channels, give up after the
//! configured attempts, and quit.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use causeway_bridge::{Departure, Event, JoinFailure};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use super::io::Inbound;
use super::kept::{Adopted, Asked};
use super::{stopped, Command, Session, SessionSpec, COMMAND_BURST};
use crate::outgoing::Out;
use crate::state::Channel;
use crate::Inner;

/// How long connecting and registering may take.
const REGISTRATION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a connection with no channel left stays open before it quits.
const LINGER: Duration = Duration::from_secs(3);

/// How a connection ended.
enum Ending {
    /// Shutdown, or the network dropped the session: QUIT with this reason.
    Quit(String),
    /// Shutdown, the connection held by the keeper: it stays there for the next gateway
    /// (with the checkpoint asked last, if any).
    Detach(Option<Asked>),
    /// The connection broke.
    Lost(String),
    /// The link to the keeper broke; the keeper may still hold the connection.
    Unlinked(String),
}

/// Run a session until its last channel is left, shutdown, or the server stays unreachable.
/// A connection that breaks while in channels is re-established with backoff and the
/// channels are joined again.
/// With `adopted`, the session starts on a connection an earlier gateway left with the
/// keeper, registered and in its channels.
pub async fn run(
    spec: SessionSpec,
    inner: Arc<Inner>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    mut shutdown: watch::Receiver<bool>,
    mut adopted: Option<Adopted>,
) {
    let user = spec.user.clone();
    let server = spec.server.clone();
    let id = spec.id;
    let mut session = Session::new(spec, inner.clone());
    let mut delays = reconnect_delays();
    let mut attempts = 0u32;
    let mut detached = None;
    // The connection claimed again after the keeper link broke, to serve on.
    let mut reclaimed = None;
    let quit_reason = loop {
        let reconnecting = attempts > 0;
        let mut lines = if let Some(lines) = reclaimed.take() {
            lines
        } else if let Some(adopted) = adopted.take() {
            session.adopt(adopted).await
        } else {
            // The connection waits for its turn among all connections to the server.
            let settings = session.spec.settings.clone();
            let turn = inner.pacing.turn(&server, &settings);
            let turn = if reconnecting {
                match session.offline(turn, &mut commands, &mut shutdown).await {
                    Ok(turn) => turn,
                    Err(ending) => break ending,
                }
            } else {
                tokio::select! {
                    biased;
                    _ = stopped(&mut shutdown) => {
                        session
                            .fail_waiting_joins(&mut commands, JoinFailure::Unreachable, "causeway is shutting down")
                            .await;
                        inner.forget(&user, &server, id);
                        return;
                    }
                    turn = turn => turn,
                }
            };
            let (lines_tx, mut lines) = flume::bounded(256);
            let registered = tokio::time::timeout(
                REGISTRATION_TIMEOUT,
                session.register(lines_tx, &mut lines, reconnecting),
            )
            .await;
            drop(turn);
            let failure = match registered {
                Ok(Ok(())) => None,
                Ok(Err((failure, text))) => Some((failure, text)),
                Err(_) => Some((
                    JoinFailure::Unreachable,
                    format!("{server} did not complete the registration in time"),
                )),
            };
            if let Some((failure, text)) = failure {
                session.close(Some(Out::Quit(""))).await;
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
                    session.send(Out::Raw(&line));
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
            session.state_changed();
            lines
        };
        let ending = match session
            .serve(&mut lines, &mut commands, &mut shutdown)
            .await
        {
            Ending::Unlinked(reason) => {
                warn!(%user, %server, %reason, "the keeper link broke: waiting to claim the connection again");
                match session.reclaim(&mut commands, &mut shutdown).await {
                    Ok(Some(lines)) => {
                        reclaimed = Some(lines);
                        continue;
                    }
                    // The keeper lost it (it was restarted): a connection lost like any.
                    Ok(None) => Ending::Lost(reason),
                    Err(ending) => break ending,
                }
            }
            ending => ending,
        };
        match ending {
            Ending::Unlinked(_) => unreachable!("taken above"),
            Ending::Quit(reason) => break Some(reason),
            Ending::Detach(last) => {
                detached = Some(last);
                break None;
            }
            Ending::Lost(reason) => {
                session.close(None).await;
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
    match detached {
        Some(last) => {
            session.detach(last).await;
            info!(%user, %server, "irc connection left with the keeper");
        }
        None => {
            session.close(quit_reason.as_deref().map(Out::Quit)).await;
            info!(%user, %server, "irc connection closed");
        }
    }
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
        commands: &mut mpsc::UnboundedReceiver<Command>,
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
        // Through the keeper: the checkpoint asked of the core and not answered yet.
        let mut checkpoint: Option<Asked> = None;
        loop {
            let linger_until = linger.unwrap_or(no_linger);
            if checkpoint.is_none() {
                checkpoint = self.checkpoint_due().await;
            }
            self.save_state();
            tokio::select! {
                biased;
                _ = stopped(shutdown) => {
                    if self.kept.is_some() {
                        return Ending::Detach(checkpoint);
                    }
                    return Ending::Quit("causeway is shutting down".to_owned());
                }
                answer = async { (&mut checkpoint.as_mut().expect("guarded").1).await }, if checkpoint.is_some() => {
                    let (seq, _) = checkpoint.take().expect("answered above");
                    self.checkpoint_answered(seq, answer.is_ok());
                }
                inbound = lines.recv_async() => match inbound {
                    Ok(inbound @ (Inbound::Line(_) | Inbound::Numbered(..))) => {
                        last_read = Instant::now();
                        pinged = false;
                        let (seq, bytes) = match inbound {
                            Inbound::Numbered(seq, bytes) => (Some(seq), bytes),
                            Inbound::Line(bytes) => (None, bytes),
                            Inbound::Closed(_) | Inbound::Unlinked(_) => unreachable!("taken by the arm above"),
                        };
                        if self.seen_before(seq) {
                            continue;
                        }
                        self.handling(seq);
                        let lost = match self.read(&bytes) {
                            Some(line) => self.handle_line(line).await,
                            None => {
                                warn!(line = %String::from_utf8_lossy(&bytes), "unparseable line from the IRC server");
                                None
                            }
                        };
                        self.handled();
                        if let Some(reason) = lost {
                            return Ending::Lost(reason);
                        }
                    }
                    Ok(Inbound::Closed(reason)) => return Ending::Lost(reason),
                    Ok(Inbound::Unlinked(reason)) => return Ending::Unlinked(reason),
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
                    self.tick();
                    let silent = last_read.elapsed();
                    if silent > self.spec.settings.dead_after() {
                        return Ending::Lost(format!("no data from the server for {} s", silent.as_secs()));
                    }
                    if silent > self.spec.settings.ping_after() && !pinged {
                        self.send_urgent(Out::Ping("causeway"));
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
        commands: &mut mpsc::UnboundedReceiver<Command>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Option<Option<String>> {
        self.offline(tokio::time::sleep(delay), commands, shutdown)
            .await
            .err()
    }

    /// Between connections: wait for `ready`, taking commands as well as can be done
    /// offline. `Err` with the QUIT reason when the session should end instead.
    pub(super) async fn offline<T>(
        &mut self,
        ready: impl Future<Output = T>,
        commands: &mut mpsc::UnboundedReceiver<Command>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<T, Option<String>> {
        tokio::pin!(ready);
        loop {
            tokio::select! {
                biased;
                _ = stopped(shutdown) => {
                    self.connection_lost("causeway is shutting down").await;
                    return Err(None);
                }
                done = &mut ready => return Ok(done),
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
                            return Err(None);
                        }
                    }
                    Some(Command::Send { target, id, .. }) => {
                        let peer = self.peer(&target);
                        let text = format!("not connected to {} right now: reconnecting", self.spec.server);
                        self.emit(Event::SendFailed { user: self.user(), peer, id: Some(id), text }).await;
                    }
                    Some(_) => {}
                    None => return Err(Some(String::new())),
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
            self.send(Out::Join {
                channel: &name,
                key: None,
            });
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
        commands: &mut mpsc::UnboundedReceiver<Command>,
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
