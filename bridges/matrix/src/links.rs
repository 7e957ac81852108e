//! Message links: which XMPP id and which Matrix event are the same message, kept in the
//! [`MatrixStore`] for every bridged message, and `reaction <event> <key>` for each
//! reaction, so that corrections, replies, retractions and reactions from either side find
//! their target, and a redaction is told apart as a reaction taken back.

use std::sync::Arc;

use ruma::{OwnedEventId, RoomId};
use tracing::warn;

use crate::store::{MatrixStore, MessageLink, StoreFailure};

/// How a reaction of `sender`'s to `target` is remembered in the message links.
pub(crate) fn reaction_link(target: &str, key: &str) -> String {
    format!("reaction {target} {key}")
}

/// The (target, key) of a reaction link.
pub(crate) fn parse_reaction_link(link: &str) -> Option<(&str, &str)> {
    link.strip_prefix("reaction ")?.split_once(' ')
}

/// The message links of every room, over the store.
#[derive(Debug)]
pub(crate) struct MessageLinks {
    store: Arc<dyn MatrixStore>,
}

impl MessageLinks {
    /// The links kept in `store`.
    pub(crate) fn new(store: Arc<dyn MatrixStore>) -> MessageLinks {
        MessageLinks { store }
    }

    /// Remember that `xmpp_id` and `event_id`, sent by `sender`, are the same message (a
    /// failure is logged: the message went through, only later references to it miss).
    pub(crate) async fn link(&self, room: &RoomId, xmpp_id: &str, event_id: &str, sender: &str) {
        let link = MessageLink {
            room: room.to_string(),
            xmpp_id: xmpp_id.to_owned(),
            event_id: event_id.to_owned(),
            sender: sender.to_owned(),
        };
        if let Err(e) = self.store.link_message(&link).await {
            warn!(error = %e, "cannot remember the message id");
        }
    }

    /// The message with this event id in the room, else the one with this XMPP id.
    pub(crate) async fn find(
        &self,
        room: &RoomId,
        id: &str,
    ) -> Result<Option<MessageLink>, StoreFailure> {
        self.store.find_message(room.as_str(), id).await
    }

    /// The event an XMPP id (or a stanza-id, which is an event id) names in the room.
    pub(crate) async fn event_for(&self, room: &RoomId, id: &str) -> Option<OwnedEventId> {
        match self.find(room, id).await {
            Ok(Some(link)) => OwnedEventId::try_from(link.event_id).ok(),
            Ok(None) => OwnedEventId::try_from(id).ok(),
            Err(e) => {
                warn!(error = %e, "cannot look up a message id");
                OwnedEventId::try_from(id).ok()
            }
        }
    }

    /// Forget the link of a reaction taken back.
    pub(crate) async fn unlink(&self, room: &RoomId, event_id: &str) -> Result<(), StoreFailure> {
        self.store.unlink(room.as_str(), event_id).await
    }

    /// `sender`'s reactions to `target`: (key, reaction event id).
    pub(crate) async fn reactions(
        &self,
        room: &RoomId,
        target: &str,
        sender: &str,
    ) -> Result<Vec<(String, String)>, StoreFailure> {
        self.store.reactions(room.as_str(), target, sender).await
    }
}
