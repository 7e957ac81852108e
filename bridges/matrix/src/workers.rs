//! Each XMPP user's actions, carried out in order by that user's worker task, so the core
//! never waits on the homeserver and a user's messages keep their order through retries.
//! A worker's queue is bounded: past [`QUEUE`] actions waiting, the next is refused with an
//! error the user sees (never dropped unsaid); a worker idle for [`IDLE`] ends, and the
//! next action starts a new one.
//! The joins in progress are counted: transactions wait for them.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use causeway_bridge::{Action, BridgeError, Event, UserRef};
use tokio::sync::{mpsc, watch};

use crate::directory::Directory;
use crate::membership::Memberships;
use crate::outgoing::{Message, Outgoing};
use crate::room_state::RoomState;
use crate::server_text;

/// Joins asked for and not done yet: transactions wait for them (a restart's rejoins),
/// so that what the homeserver kept for a room while we were away is not dropped for
/// arriving before the room is known again.
#[derive(Debug)]
pub(crate) struct JoinsInProgress(watch::Sender<usize>);

impl JoinsInProgress {
    /// None yet.
    pub(crate) fn new() -> JoinsInProgress {
        JoinsInProgress(watch::Sender::new(0))
    }

    fn started(&self) {
        self.0.send_modify(|n| *n += 1);
    }

    fn finished(&self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }

    /// Until no join is in progress.
    pub(crate) async fn settled(&self) {
        let mut joining = self.0.subscribe();
        // The sender lives as long as the network, which outlives every transaction.
        let _ = joining.wait_for(|n| *n == 0).await;
    }
}

/// Carries each action out with the part it belongs to.
#[derive(Debug)]
pub(crate) struct Performer {
    /// Joins, parts, nick changes.
    pub membership: Arc<Memberships>,
    /// Topics and kicks.
    pub room_state: Arc<RoomState>,
    /// Messages, retractions, reactions.
    pub outgoing: Arc<Outgoing>,
    /// The public room list.
    pub directory: Arc<Directory>,
    /// Counted here, waited for by the transactions.
    pub joins: Arc<JoinsInProgress>,
    /// Events for the core.
    pub emit: mpsc::Sender<Event>,
    /// The avatars' pictures, fetched once a user has joined.
    pub pictures: Arc<crate::pictures::Pictures>,
}

/// Actions one user may have waiting before the core waits for their worker.
const QUEUE: usize = 256;
/// How long a worker waits for an action before it ends.
const IDLE: Duration = Duration::from_secs(300);

/// What a worker does with an action (the [`Performer`]; a fake in the tests).
pub(crate) trait Perform: Send + Sync + 'static {
    /// An action is queued (before it is carried out).
    fn queued(&self, _action: &Action) {}

    /// An action counted by [`Perform::queued`] was refused after all.
    fn refused(&self, _action: &Action) {}

    /// Carry it out; `false` once nobody listens any more (the worker then ends).
    fn perform(&self, user: &UserRef, action: Action) -> impl Future<Output = bool> + Send;
}

impl Perform for Performer {
    fn queued(&self, action: &Action) {
        if let Action::Join { .. } = action {
            self.joins.started();
        }
    }

    fn refused(&self, action: &Action) {
        if let Action::Join { .. } = action {
            self.joins.finished();
        }
    }

    async fn perform(&self, user: &UserRef, action: Action) -> bool {
        let join = matches!(action, Action::Join { .. });
        let events = self.carry_out(user, action).await;
        if join {
            self.joins.finished();
        }
        let mut entered = None;
        for event in events {
            if let Event::Joined { room, .. } = &event {
                entered = Some(room.clone());
            }
            if self.emit.send(event).await.is_err() {
                return false;
            }
        }
        // Once the user is in (and told), the pictures: the room's now if known, the
        // others as they come.
        let pictures = entered.map(|room| self.pictures.joined(user, &room));
        for event in pictures.into_iter().flatten() {
            if self.emit.send(event).await.is_err() {
                return false;
            }
        }
        true
    }
}

impl Performer {
    async fn carry_out(&self, user: &UserRef, action: Action) -> Vec<Event> {
        match action {
            Action::Join {
                room,
                nick,
                password: _,
            } => self.membership.join(user, room, nick).await,
            Action::Part { room, reason } => self.membership.part(user, room, reason).await,
            Action::Send {
                to,
                body,
                kind,
                id,
                refs,
                media,
            } => {
                let message = Message {
                    body,
                    kind,
                    id,
                    refs,
                    media,
                };
                self.outgoing.send(user, to, message).await
            }
            Action::Retract { to, id } => self.outgoing.retract(user, to, id).await,
            Action::Typing { to, typing } => self.outgoing.typing(user, to, typing).await,
            Action::SetPicture { picture } => {
                let puppets = &self.outgoing.puppets;
                self.pictures.set_own(puppets, user, picture).await;
                vec![]
            }
            Action::Displayed { to, id } => self.outgoing.displayed(user, to, id).await,
            Action::Moderate { room, id, reason } => {
                self.outgoing.moderate(user, room, id, reason).await
            }
            Action::React { to, id, reactions } => {
                self.outgoing.react(user, to, id, reactions).await
            }
            Action::SetSubject { room, subject } => {
                self.room_state.set_subject(user, room, subject).await
            }
            Action::ChangeNick { server, nick, room } => {
                self.membership.change_nick(user, &server, nick, room).await
            }
            Action::Kick { room, nick, reason } => {
                self.room_state.kick(user, room, nick, reason).await
            }
            Action::Disconnect { server, reason } => {
                self.membership.disconnect(user, server, reason).await
            }
            Action::ListRooms { server, within } => {
                self.directory.list_rooms(user, server, within).await
            }
            Action::SetPrivilege { room, .. } => vec![server_text(
                user,
                &room.server,
                "changing power levels from XMPP is not supported yet",
            )],
            Action::Raw { .. } => vec![],
        }
    }
}

/// One worker per XMPP user who acted recently.
#[derive(Debug)]
pub(crate) struct Workers<P = Performer> {
    queues: Arc<Mutex<HashMap<UserRef, mpsc::Sender<Action>>>>,
    performer: Arc<P>,
    idle: Duration,
}

impl<P: Perform> Workers<P> {
    /// No workers yet; they will carry actions out with `performer`.
    pub(crate) fn new(performer: P) -> Workers<P> {
        Workers::with_idle(performer, IDLE)
    }

    fn with_idle(performer: P, idle: Duration) -> Workers<P> {
        Workers {
            queues: Arc::default(),
            performer: Arc::new(performer),
            idle,
        }
    }

    /// Queue the action for the user's worker, starting one if none runs. A user with
    /// [`QUEUE`] actions waiting already is refused with an error that says so: waiting
    /// here would hold up every user's traffic through the core, and could wait for ever on
    /// a worker that itself waits for the core to take its events.
    pub(crate) fn queue(&self, user: &UserRef, action: Action) -> Result<(), BridgeError> {
        self.performer.queued(&action);
        let mut action = action;
        let mut queues = self.queues.lock().expect("workers lock");
        loop {
            let Some(queue) = queues.get(user) else {
                let (tx, rx) = mpsc::channel(QUEUE);
                tx.try_send(action)
                    .expect("a fresh channel takes an action");
                queues.insert(user.clone(), tx);
                tokio::spawn(worker(
                    self.performer.clone(),
                    self.queues.clone(),
                    user.clone(),
                    rx,
                    self.idle,
                ));
                return Ok(());
            };
            match queue.try_send(action) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::TrySendError::Full(back)) => {
                    self.performer.refused(&back);
                    return Err(BridgeError::Unreachable(format!(
                        "{QUEUE} of your actions are still waiting for the homeserver: this one was not taken; try again in a moment"
                    )));
                }
                // A worker that ended (its user's network stopped): start another.
                Err(mpsc::error::TrySendError::Closed(back)) => {
                    queues.remove(user);
                    action = back;
                }
            }
        }
    }

    /// How many users have a worker (for the tests of reaping).
    #[cfg(test)]
    fn running(&self) -> usize {
        self.queues.lock().expect("workers lock").len()
    }
}

/// Carries out one user's actions in order; ends after `idle` without one.
async fn worker<P: Perform>(
    performer: Arc<P>,
    queues: Arc<Mutex<HashMap<UserRef, mpsc::Sender<Action>>>>,
    user: UserRef,
    mut actions: mpsc::Receiver<Action>,
    idle: Duration,
) {
    loop {
        let action = match tokio::time::timeout(idle, actions.recv()).await {
            Ok(Some(action)) => action,
            Ok(None) => return,
            Err(_) => {
                // Idle: leave the map under its lock, unless an action came meanwhile (it
                // was sent under the same lock, so none can slip in after this look).
                let next = {
                    let mut queues = queues.lock().expect("workers lock");
                    let next = actions.try_recv().ok();
                    if next.is_none() {
                        queues.remove(&user);
                    }
                    next
                };
                match next {
                    Some(action) => action,
                    None => {
                        // A sender that waited for room since before the look may still
                        // hold a place: what it sends is carried out, not dropped.
                        actions.close();
                        while let Some(action) = actions.recv().await {
                            if !performer.perform(&user, action).await {
                                return;
                            }
                        }
                        return;
                    }
                }
            }
        };
        if !performer.perform(&user, action).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests;
