//! What XMPP users send: messages (with corrections and replies), retractions and
//! reactions, each as the user's puppet, each reflected to the user's own resources from the
//! homeserver's answer (never from the transaction that brings the event back).

use std::collections::BTreeSet;
use std::time::Duration;

use causeway_bridge::{Event, MessageKind, Peer, Refs, UserRef};
use ruma::api::client::{message, redact};
use ruma::events::MessageLikeEventType;
use ruma::serde::Raw;
use ruma::{OwnedEventId, OwnedRoomId, RoomId, TransactionId};
use serde_json::{json, Value};
use tracing::warn;

use crate::client::{CallError, Retry};
use crate::store::MessageLink;
use crate::{send_failed, text, Inner, SEND_PATIENCE};

/// A message from an XMPP user.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The text.
    pub body: String,
    /// How it is meant.
    pub kind: MessageKind,
    /// Its XMPP id.
    pub id: String,
    /// What it corrects or answers.
    pub refs: Refs,
}

/// How a reaction of `sender`'s to `target` is remembered in the message links.
pub(crate) fn reaction_link(target: &str, key: &str) -> String {
    format!("reaction {target} {key}")
}

/// The (target, key) of a reaction link.
pub(crate) fn parse_reaction_link(link: &str) -> Option<(&str, &str)> {
    link.strip_prefix("reaction ")?.split_once(' ')
}

impl Inner {
    /// The room (or direct room) and the user's nick there.
    async fn target(&self, user: &UserRef, to: &Peer) -> Result<(OwnedRoomId, String), String> {
        match to {
            Peer::Room(room) => {
                let found = self.rooms.lock().expect("rooms lock").joined(user, room);
                found.ok_or_else(|| "not in this room".to_owned())
            }
            Peer::User { server, nick } => {
                let room = self.direct_room(user, server, nick).await?;
                Ok((room, String::new()))
            }
        }
    }

    /// The event an XMPP id (or a stanza-id, which is an event id) names in the room.
    pub(crate) async fn event_for(&self, room: &RoomId, id: &str) -> Option<OwnedEventId> {
        match self.store.find_message(room.as_str(), id).await {
            Ok(Some(link)) => OwnedEventId::try_from(link.event_id).ok(),
            Ok(None) => OwnedEventId::try_from(id).ok(),
            Err(e) => {
                warn!(error = %e, "cannot look up a message id");
                OwnedEventId::try_from(id).ok()
            }
        }
    }

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

    /// Send one event as the user's puppet, patiently.
    async fn send_event(
        &self,
        user: &UserRef,
        room: &RoomId,
        kind: MessageLikeEventType,
        content: &Value,
    ) -> Result<OwnedEventId, CallError> {
        let raw = serde_json::value::to_raw_value(content)
            .map_err(|e| CallError::Invalid(e.to_string()))?;
        let request = message::send_message_event::v3::Request::new_raw(
            room.to_owned(),
            TransactionId::new(),
            kind,
            Raw::from_json(raw),
        );
        let puppet = self.puppet_id(user);
        let sent = self
            .client
            .call(request, Some(&puppet), Retry::For(SEND_PATIENCE))
            .await?;
        Ok(sent.event_id)
    }

    async fn redact(
        &self,
        user: &UserRef,
        room: &RoomId,
        event: OwnedEventId,
    ) -> Result<(), CallError> {
        let request =
            redact::redact_event::v3::Request::new(room.to_owned(), event, TransactionId::new());
        let puppet = self.puppet_id(user);
        self.client
            .call(request, Some(&puppet), Retry::For(Duration::from_secs(60)))
            .await
            .map(|_| ())
    }

    pub(crate) async fn send(&self, user: &UserRef, to: Peer, message: Outgoing) -> Vec<Event> {
        let Outgoing {
            body,
            kind,
            id,
            refs,
        } = message;
        let (room, nick) = match self.target(user, &to).await {
            Ok(found) => found,
            Err(text) => return vec![send_failed(user, to, id, &text)],
        };
        let mut content =
            serde_json::to_value(text::content(&body, kind)).expect("message content is JSON");
        if let Some(corrected) = &refs.replaces {
            let Some(original) = self.event_for(&room, corrected).await else {
                return vec![send_failed(
                    user,
                    to,
                    id,
                    "the corrected message is unknown",
                )];
            };
            let new_content = content.clone();
            content["body"] = json!(format!("* {body}"));
            content["m.new_content"] = new_content;
            content["m.relates_to"] = json!({"rel_type": "m.replace", "event_id": original});
        } else if let Some(answered) = &refs.reply_to {
            if let Some(original) = self.event_for(&room, &answered.id).await {
                content["m.relates_to"] = json!({"m.in_reply_to": {"event_id": original}});
            }
        }
        let sent = match self
            .send_event(user, &room, MessageLikeEventType::RoomMessage, &content)
            .await
        {
            Ok(sent) => sent,
            Err(e) => return vec![send_failed(user, to, id, &e.to_string())],
        };
        let puppet = self.puppet_id(user);
        self.link(&room, &id, sent.as_str(), puppet.as_str()).await;
        match to {
            Peer::Room(_) => vec![Event::Message {
                user: user.clone(),
                peer: to,
                from: nick,
                body,
                kind,
                time: None,
                own_id: Some(id),
                remote_id: Some(sent.to_string()),
                refs,
            }],
            Peer::User { .. } => vec![],
        }
    }

    pub(crate) async fn retract(&self, user: &UserRef, to: Peer, id: String) -> Vec<Event> {
        let (room, nick) = match self.target(user, &to).await {
            Ok(found) => found,
            Err(text) => return vec![send_failed(user, to, id, &text)],
        };
        // Only one's own messages: a moderator's removal is another request (XEP-0425).
        let puppet = self.puppet_id(user);
        let unknown = "the retracted message is unknown";
        let event = match self.store.find_message(room.as_str(), &id).await {
            Ok(Some(link)) if link.sender == puppet.as_str() => link.event_id,
            Ok(Some(_)) => {
                let text = "only your own messages can be retracted";
                return vec![send_failed(user, to, id, text)];
            }
            Ok(None) => return vec![send_failed(user, to, id, unknown)],
            Err(e) => return vec![send_failed(user, to, id, &e.to_string())],
        };
        let Ok(event) = OwnedEventId::try_from(event) else {
            return vec![send_failed(user, to, id, unknown)];
        };
        if let Err(e) = self.redact(user, &room, event.clone()).await {
            return vec![send_failed(user, to, id, &format!("not retracted: {e}"))];
        }
        match to {
            Peer::Room(_) => vec![Event::Retracted {
                user: user.clone(),
                peer: to,
                id: event.to_string(),
                from: nick,
                moderator: None,
                reason: None,
            }],
            Peer::User { .. } => vec![],
        }
    }

    pub(crate) async fn react(
        &self,
        user: &UserRef,
        to: Peer,
        id: String,
        reactions: Vec<String>,
    ) -> Vec<Event> {
        let (room, nick) = match self.target(user, &to).await {
            Ok(found) => found,
            Err(text) => return vec![send_failed(user, to, id, &text)],
        };
        let Some(target) = self.event_for(&room, &id).await else {
            return vec![send_failed(
                user,
                to,
                id,
                "the message reacted to is unknown",
            )];
        };
        let puppet = self.puppet_id(user);
        let current = match self
            .store
            .reactions(room.as_str(), target.as_str(), puppet.as_str())
            .await
        {
            Ok(current) => current,
            Err(e) => return vec![send_failed(user, to, id, &e.to_string())],
        };
        let wanted: BTreeSet<&String> = reactions.iter().collect();
        for key in &wanted {
            if current.iter().any(|(k, _)| k == *key) {
                continue;
            }
            let content = json!({"m.relates_to": {
                "rel_type": "m.annotation", "event_id": target, "key": key}});
            match self
                .send_event(user, &room, MessageLikeEventType::Reaction, &content)
                .await
            {
                Ok(sent) => {
                    let link = reaction_link(target.as_str(), key);
                    self.link(&room, &link, sent.as_str(), puppet.as_str())
                        .await;
                }
                Err(e) => return vec![send_failed(user, to, id, &format!("no reaction: {e}"))],
            }
        }
        for (key, event) in current {
            if wanted.contains(&key) {
                continue;
            }
            let Ok(event) = OwnedEventId::try_from(event) else {
                continue;
            };
            // The redaction coming back from the homeserver forgets the link.
            if let Err(e) = self.redact(user, &room, event.clone()).await {
                return vec![send_failed(user, to, id, &format!("reaction kept: {e}"))];
            }
        }
        match to {
            Peer::Room(_) => vec![Event::Reactions {
                user: user.clone(),
                peer: to,
                from: nick,
                id: target.to_string(),
                reactions: wanted.into_iter().cloned().collect(),
            }],
            Peer::User { .. } => vec![],
        }
    }
}
