//! Each XMPP user's actions, carried out in order by that user's worker task, so the core
//! never waits on the homeserver and a user's messages keep their order through retries.
//! The joins in progress are counted: transactions wait for them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use causeway_bridge::{Action, Event, UserRef};
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
}

impl Performer {
    async fn perform(&self, user: &UserRef, action: Action) -> Vec<Event> {
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
            } => {
                let message = Message {
                    body,
                    kind,
                    id,
                    refs,
                };
                self.outgoing.send(user, to, message).await
            }
            Action::Retract { to, id } => self.outgoing.retract(user, to, id).await,
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

/// One worker per XMPP user who acted.
#[derive(Debug)]
pub(crate) struct Workers {
    queues: Mutex<HashMap<UserRef, mpsc::UnboundedSender<Action>>>,
    performer: Arc<Performer>,
}

impl Workers {
    /// No workers yet; they will carry actions out with `performer`.
    pub(crate) fn new(performer: Performer) -> Workers {
        Workers {
            queues: Mutex::default(),
            performer: Arc::new(performer),
        }
    }

    /// Queue the action for the user's worker, starting one if none runs.
    pub(crate) fn queue(&self, user: &UserRef, action: Action) {
        if let Action::Join { .. } = action {
            self.performer.joins.started();
        }
        let mut queues = self.queues.lock().expect("workers lock");
        if let Some(queue) = queues.get(user) {
            if queue.send(action.clone()).is_ok() {
                return;
            }
        }
        let (tx, rx) = mpsc::unbounded_channel();
        tx.send(action).expect("a fresh channel takes a message");
        queues.insert(user.clone(), tx);
        tokio::spawn(worker(self.performer.clone(), user.clone(), rx));
    }
}

/// Carries out one user's actions in order.
async fn worker(
    performer: Arc<Performer>,
    user: UserRef,
    mut actions: mpsc::UnboundedReceiver<Action>,
) {
    while let Some(action) = actions.recv().await {
        let join = matches!(action, Action::Join { .. });
        let events = performer.perform(&user, action).await;
        if join {
            performer.joins.finished();
        }
        for event in events {
            if performer.emit.send(event).await.is_err() {
                return;
            }
        }
    }
}
