//! A session whose connection the keeper holds: it tells the keeper which lines it may
//! forget (only once what they brought is archived: a checkpoint the core answers), leaves
//! its state with the keeper for a successor, takes a connection over from an earlier
//! gateway, and leaves it to the keeper when the gateway stops.

use std::time::Duration;

use causeway_bridge::{Event, Receipt};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, warn};

use super::io::{Inbound, Writer};
use super::{Command, Session};
use crate::keeper::client::KeptIo;
use crate::keeper::state::Adoptable;
use crate::outgoing::Out;
use crate::state::Channel;
use crate::transport::IrcIo;

/// What a session does with the keeper's numbered lines.
#[derive(Debug, Default)]
pub(crate) struct LineBook {
    /// The number of the line being handled.
    current: Option<u64>,
    /// The last line handled.
    handled: u64,
    /// The last line acknowledged.
    acked: u64,
    /// After a checkpoint went unanswered (the database failing), none is asked again
    /// until the next tick.
    held_off: bool,
    /// Whether the state the keeper holds is out of date.
    state_dirty: bool,
    /// Claimed again after the keeper link broke: the lines up to here were handled on the
    /// last link, and come again on this one.
    replayed_through: u64,
}

/// How long a session waits for a broken keeper link to come back before it tells its
/// user that the connection is away.
const QUIET_REATTACH: Duration = Duration::from_secs(10);

/// A checkpoint asked of the core: the last line it covers, and where its answer comes.
pub(super) type Asked = (u64, oneshot::Receiver<()>);

/// A connection an earlier gateway left with the keeper, for a session to take over.
pub(crate) struct Adopted {
    pub state: Adoptable,
    pub io: KeptIo,
    pub lines: flume::Receiver<Inbound>,
    /// Lines the keeper had to drop meanwhile (past its bound).
    pub dropped: u64,
}

impl Session {
    /// A line through the keeper is handled and brought nothing to archive (registration):
    /// the keeper may forget it.
    pub(super) fn ack(&mut self, seq: u64) {
        self.lines.handled = self.lines.handled.max(seq);
        self.send_ack(seq);
    }

    fn send_ack(&mut self, seq: u64) {
        if let (Some(conn), Some(keeper)) = (self.kept, self.inner.keeper()) {
            if seq > self.lines.acked {
                keeper.ack(conn, seq);
                self.lines.acked = seq;
            }
        }
    }

    /// Whether the line numbered `seq` was handled already, on the link before this one.
    pub(super) fn seen_before(&self, seq: Option<u64>) -> bool {
        seq.is_some_and(|seq| seq <= self.lines.replayed_through)
    }

    /// The line numbered `seq` is about to be handled (`None`: not through the keeper).
    pub(super) fn handling(&mut self, seq: Option<u64>) {
        self.lines.current = seq;
    }

    /// The line being handled is done with; what it brought is on its way to the core.
    pub(super) fn handled(&mut self) {
        if let Some(seq) = self.lines.current.take() {
            self.lines.handled = self.lines.handled.max(seq);
        }
    }

    /// The stable id of the line being handled, when it came through the keeper: a line
    /// delivered again after a crash is archived once under it.
    pub(super) fn line_id(&self) -> Option<String> {
        let (conn, seq) = (self.kept?, self.lines.current?);
        Some(format!("irc-{conn:x}-{seq}"))
    }

    /// Ask the core for a checkpoint when lines were handled since the last one answered.
    pub(super) async fn checkpoint_due(&mut self) -> Option<Asked> {
        self.kept?;
        if self.lines.held_off || self.lines.handled <= self.lines.acked {
            return None;
        }
        let (receipt, answer) = Receipt::new();
        self.emit(Event::Checkpoint {
            user: self.user(),
            receipt,
        })
        .await;
        Some((self.lines.handled, answer))
    }

    /// A checkpoint answered (`durable`) or dropped.
    pub(super) fn checkpoint_answered(&mut self, seq: u64, durable: bool) {
        if durable {
            self.send_ack(seq);
        } else {
            self.lines.held_off = true;
        }
    }

    /// A tick: a checkpoint may be asked again.
    pub(super) fn tick(&mut self) {
        self.lines.held_off = false;
    }

    /// What the keeper holds for a successor is out of date.
    pub(super) fn state_changed(&mut self) {
        self.lines.state_dirty = true;
    }

    /// Leave the session's state with the keeper, if it changed.
    pub(super) fn save_state(&mut self) {
        if !std::mem::take(&mut self.lines.state_dirty) {
            return;
        }
        let (Some(conn), Some(keeper)) = (self.kept, self.inner.keeper()) else {
            return;
        };
        let state = Adoptable {
            user: self.spec.user.clone(),
            server: self.spec.server.clone(),
            nick: self.nick.clone(),
            source_len: self.source_len,
            caps: self.caps.clone(),
            rules: self.rules.clone(),
            channels: self
                .channels
                .values()
                .map(|c| (c.name.clone(), c.joined))
                .collect(),
        };
        keeper.save_state(conn, state.encode());
    }

    /// Take over a connection an earlier gateway left: no registration, no visible
    /// rejoin. Each channel the puppet is in is reported joined at once (so that the lines
    /// kept meanwhile, which come next, are archived), then its members and topic are asked
    /// of the server and reported again once in; a join that was under way is made again.
    pub(super) async fn adopt(&mut self, adopted: Adopted) -> flume::Receiver<Inbound> {
        let Adopted {
            state,
            io,
            lines,
            dropped,
        } = adopted;
        self.kept = Some(io.conn());
        let write = tokio::io::split(Box::new(io) as Box<dyn IrcIo>).1;
        self.writer = Some(Writer::start(write, &self.spec.settings));
        self.nick = state.nick;
        self.source_len = state.source_len;
        self.caps = state.caps;
        self.rules = state.rules;
        self.settled = true;
        // Kept for its channels: with none left (its last PART just before the restart,
        // a LIST) it lingers, then quits, as it would have.
        self.had_channels = true;
        self.lines = LineBook::default();
        info!(user = %self.spec.user, server = %self.spec.server, nick = %self.nick,
            channels = state.channels.len(), dropped, "irc connection taken over from the keeper");
        self.report_dropped(dropped).await;
        for (name, joined) in state.channels {
            let folded = self.rules.fold(&name);
            self.set_channel_encoding(&folded, &name).await;
            if !joined {
                self.channels.insert(folded, Channel::joining(&name));
                self.send(Out::Join {
                    channel: &name,
                    key: None,
                });
                continue;
            }
            let mut channel = Channel::joining(&name);
            channel.joined = true;
            self.channels.insert(folded.clone(), channel);
            self.emit(Event::Joined {
                user: self.user(),
                room: self.room(&name),
                nick: self.nick.clone(),
                members: Vec::new(),
                subject: String::new(),
            })
            .await;
            self.refreshing.insert(folded);
            self.send(Out::Raw(&format!("TOPIC {name}")));
            self.send(Out::Raw(&format!("NAMES {name}")));
        }
        self.state_changed();
        lines
    }

    /// Tell the user how many lines the keeper had to drop while no gateway read them.
    async fn report_dropped(&mut self, dropped: u64) {
        if dropped == 0 {
            return;
        }
        let text = format!(
            "{dropped} lines from {} were lost while causeway was away (more than the connection keeper holds)",
            self.spec.server
        );
        self.emit(Event::ServerText {
            user: self.user(),
            server: self.spec.server.clone(),
            text,
        })
        .await;
    }

    /// The keeper link broke: wait for the next one (taking commands as offline), then
    /// claim the connection again and carry on as if nothing happened — the keeper held it
    /// and kept its lines meanwhile. `Ok(None)` when the keeper no longer holds it (it was
    /// restarted); `Err` with the QUIT reason when the session ends instead.
    pub(super) async fn reclaim(
        &mut self,
        commands: &mut mpsc::UnboundedReceiver<Command>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Option<flume::Receiver<Inbound>>, Option<String>> {
        // The old writer goes without a word: nothing reaches the keeper through a broken
        // link, and a Close must not.
        self.close(None).await;
        let Some(conn) = self.kept else {
            return Ok(None);
        };
        let before: Vec<String> = self.channels.values().map(|c| c.name.clone()).collect();
        let inner = self.inner.clone();
        let attached = inner.attached();
        tokio::pin!(attached);
        let quiet = tokio::time::timeout(QUIET_REATTACH, &mut attached);
        let (link, told) = match self.offline(quiet, commands, shutdown).await? {
            Ok(link) => (link, false),
            Err(_) => {
                self.emit(Event::Disconnected {
                    user: self.user(),
                    server: self.spec.server.clone(),
                    reason: "the link to the connection keeper broke".into(),
                    retrying: true,
                })
                .await;
                (self.offline(&mut attached, commands, shutdown).await?, true)
            }
        };
        let Some((io, lines)) = link.claim(conn) else {
            warn!(user = %self.spec.user, server = %self.spec.server, "the keeper no longer holds the connection");
            return Ok(None);
        };
        let dropped = link
            .held()
            .iter()
            .find(|held| held.conn == conn)
            .map_or(0, |held| held.dropped);
        self.report_dropped(dropped).await;
        let write = tokio::io::split(Box::new(io) as Box<dyn IrcIo>).1;
        self.writer = Some(Writer::start(write, &self.spec.settings));
        // The keeper sends again what it holds since the last acknowledgement it got;
        // those handled already are skipped, and acknowledged on this link.
        self.lines.replayed_through = self.lines.handled;
        self.lines.acked = 0;
        self.lines.held_off = false;
        self.state_changed();
        info!(user = %self.spec.user, server = %self.spec.server, "irc connection claimed again from the keeper");
        if told {
            self.emit(Event::Reconnected {
                user: self.user(),
                server: self.spec.server.clone(),
            })
            .await;
        }
        // What was asked meanwhile: channels left, channels to join.
        for name in before {
            if !self.channels.contains_key(&self.rules.fold(&name)) {
                self.send(Out::Part {
                    channel: &name,
                    reason: None,
                });
            }
        }
        let joining: Vec<String> = self
            .channels
            .values()
            .filter(|c| !c.joined)
            .map(|c| c.name.clone())
            .collect();
        for name in joining {
            self.send(Out::Join {
                channel: &name,
                key: None,
            });
        }
        Ok(Some(lines))
    }

    /// The gateway stops: the connection stays with the keeper, as it is, for the next
    /// one. What was answered last is acknowledged; the rest comes again.
    pub(super) async fn detach(&mut self, last: Option<Asked>) {
        if let Some((seq, mut answer)) = last {
            if answer.try_recv().is_ok() {
                self.send_ack(seq);
            }
        }
        self.save_state();
        if let Some(keeper) = self.inner.keeper() {
            keeper.detach();
        }
        if let Some(writer) = self.writer.take() {
            writer.finish(None).await;
        }
    }
}
