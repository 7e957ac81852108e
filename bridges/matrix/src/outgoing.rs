//! What XMPP users send: messages (with corrections and replies), retractions and
//! reactions, each as the user's puppet, each reflected to the user's own resources from the
//! homeserver's answer (never from the transaction that brings the event back).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use causeway_bridge::{Event, Media, MessageKind, Peer, Refs, RoomRef, UserRef};
use ruma::api::client::redact;
use ruma::events::MessageLikeEventType;
use ruma::{OwnedEventId, OwnedRoomId, RoomId, TransactionId};
use serde_json::{json, Value};

use crate::client::{CallError, Client, Retry};
use crate::directory::Directory;
use crate::links::{reaction_link, MessageLinks};
use crate::puppets::Puppets;
use crate::{text, SharedRooms};

/// How long a message send keeps retrying while the homeserver is away.
const SEND_PATIENCE: Duration = Duration::from_secs(600);

/// A message from an XMPP user.
#[derive(Debug, Clone)]
pub(crate) struct Message {
    /// The text.
    pub body: String,
    /// How it is meant.
    pub kind: MessageKind,
    /// Its XMPP id.
    pub id: String,
    /// What it corrects or answers.
    pub refs: Refs,
    /// The file it carries, uploaded to the homeserver.
    pub media: Option<Box<Media>>,
}

/// The send side: the puppets' messages, retractions and reactions.
#[derive(Debug)]
pub(crate) struct Outgoing {
    /// Sends as the puppets.
    pub client: Client,
    /// Whose puppet sends.
    pub puppets: Arc<Puppets>,
    /// What a correction, reply, retraction or reaction names; what was sent.
    pub links: Arc<MessageLinks>,
    /// The direct rooms private messages go to.
    pub directory: Arc<Directory>,
    /// The rooms the users are seated in, and their nicks there.
    pub rooms: SharedRooms,
    /// Where the puppets are shown typing.
    pub typing: crate::signals::Typing,
    /// The limits of the files sent.
    pub shelf: Arc<crate::media::Shelf>,
}

fn send_failed(user: &UserRef, peer: Peer, id: String, text: &str) -> Event {
    Event::SendFailed {
        user: user.clone(),
        peer,
        id: Some(id),
        text: text.to_owned(),
    }
}

impl Outgoing {
    /// The room (or direct room) and the user's nick there.
    pub(crate) async fn target(
        &self,
        user: &UserRef,
        to: &Peer,
    ) -> Result<(OwnedRoomId, String), String> {
        match to {
            Peer::Room(room) => {
                let found = self.rooms.lock().expect("rooms lock").joined(user, room);
                found.ok_or_else(|| "not in this room".to_owned())
            }
            Peer::User { server, nick } => {
                let room = self.directory.direct_room(user, server, nick).await?;
                Ok((room, String::new()))
            }
        }
    }

    /// A message that names members of the room mentions them (`m.mentions`, so their
    /// clients notify them): one it starts by addressing (`nick: …`, with a pill in its
    /// HTML), and any whose nick is a word of it, written as they write it. The sender's
    /// own puppet is never mentioned.
    fn mention_addressed(&self, user: &UserRef, room: &RoomId, body: &str, content: &mut Value) {
        let own = self.puppets.id(user);
        let rooms = self.rooms.lock().expect("rooms lock");
        let addressed = crate::html::addressed(body)
            .and_then(|nick| Some((nick, rooms.member_id(room, nick)?)))
            .filter(|(_, id)| id.as_str() != own.as_str());
        let mut mentioned: Vec<String> = addressed.iter().map(|(_, id)| id.clone()).collect();
        for word in crate::html::words(body) {
            // As written: a member called "test" or "Hi" is not pinged by every "hi".
            let exact = rooms
                .member_id(room, word)
                .filter(|id| rooms.nick_of(room, id).as_deref() == Some(word));
            if let Some(id) = exact {
                if id.as_str() != own.as_str() && !mentioned.contains(&id) {
                    mentioned.push(id);
                }
            }
        }
        drop(rooms);
        if let Some((nick, user_id)) = addressed {
            content["format"] = json!("org.matrix.custom.html");
            content["formatted_body"] = json!(crate::html::addressing(body, nick, &user_id));
        }
        if !mentioned.is_empty() {
            content["m.mentions"] = json!({ "user_ids": mentioned });
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
        let puppet = self.puppets.id(user);
        self.client
            .send_message(
                room,
                &kind.to_string(),
                content,
                &puppet,
                Retry::For(SEND_PATIENCE),
            )
            .await
    }

    /// Redact an event as the user's puppet.
    async fn redact(
        &self,
        user: &UserRef,
        room: &RoomId,
        event: OwnedEventId,
    ) -> Result<(), CallError> {
        let request =
            redact::redact_event::v3::Request::new(room.to_owned(), event, TransactionId::new());
        let puppet = self.puppets.id(user);
        self.client
            .call(request, Some(&puppet), Retry::For(Duration::from_secs(60)))
            .await
            .map(|_| ())
    }

    /// Send the user's message as the puppet; a room message is reflected.
    pub(crate) async fn send(&self, user: &UserRef, to: Peer, message: Message) -> Vec<Event> {
        let Message {
            body,
            kind,
            id,
            refs,
            media,
        } = message;
        let (room, nick) = match self.target(user, &to).await {
            Ok(found) => found,
            Err(text) => return vec![send_failed(user, to, id, &text)],
        };
        // A file goes as a media message; one that cannot goes as the text (its link), and
        // the sender hears why.
        let mut told = vec![];
        let file = match media.as_ref().filter(|_| refs.replaces.is_none()) {
            Some(media) => self.file_content(user, &room, media, &body).await,
            None => Ok(None),
        };
        let mut content = match file {
            Ok(Some(content)) => content,
            Ok(None) | Err(_) => {
                if let Err(why) = file {
                    told.push(Event::SendFailed {
                        user: user.clone(),
                        peer: to.clone(),
                        id: None,
                        text: why,
                    });
                }
                // The link goes, whatever the body says.
                let body = match media.as_ref().filter(|m| !body.contains(&m.url)) {
                    Some(m) => format!("{body}\n{}", m.url),
                    None => body.clone(),
                };
                let mut content = serde_json::to_value(text::content(&body, kind))
                    .expect("message content is JSON");
                if let Peer::Room(_) = &to {
                    self.mention_addressed(user, &room, &body, &mut content);
                }
                content
            }
        };
        self.stopped_typing(user, &room).await;
        if let Some(corrected) = &refs.replaces {
            let Some(original) = self.links.event_for(&room, corrected).await else {
                return vec![send_failed(
                    user,
                    to,
                    id,
                    "the corrected message is unknown",
                )];
            };
            let new_content = content.clone();
            content["body"] = json!(format!("* {body}"));
            // Mentions go in the new content only: a correction notifies nobody again.
            if let Some(fields) = content.as_object_mut() {
                fields.remove("m.mentions");
            }
            content["m.new_content"] = new_content;
            content["m.relates_to"] = json!({"rel_type": "m.replace", "event_id": original});
        } else if let Some(answered) = &refs.reply_to {
            if let Some(original) = self.links.event_for(&room, &answered.id).await {
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
        let puppet = self.puppets.id(user);
        self.links
            .link(&room, &id, sent.as_str(), puppet.as_str())
            .await;
        let media = media.filter(|_| told.is_empty());
        told.insert(
            0,
            match to {
                Peer::Room(_) => Event::Message {
                    user: user.clone(),
                    peer: to,
                    from: nick,
                    body,
                    kind,
                    time: None,
                    own_id: Some(id),
                    remote_id: Some(sent.to_string()),
                    refs,
                    media,
                },
                // The homeserver has it: a receipt, for a client that asked.
                Peer::User { .. } => Event::Delivered {
                    user: user.clone(),
                    peer: to,
                    id,
                },
            },
        );
        told
    }

    /// The media message for the file the user sends, `None` when it is no file (a
    /// correction's); why it could not be made, as the sender reads it.
    async fn file_content(
        &self,
        user: &UserRef,
        room: &RoomId,
        media: &Media,
        body: &str,
    ) -> Result<Option<Value>, String> {
        let puppet = self.puppets.id(user);
        let settings = self.shelf.settings();
        let _turn = self.shelf.sending_turn().await;
        let made =
            crate::media::upload::content(&self.client, settings, room, &puppet, media, body).await;
        made.map(Some)
            .map_err(|why| format!("Your file went to Matrix as a link, not as a file: {why}"))
    }

    /// Retract one of the user's messages (a redaction); reflected in a room.
    pub(crate) async fn retract(&self, user: &UserRef, to: Peer, id: String) -> Vec<Event> {
        let (room, nick) = match self.target(user, &to).await {
            Ok(found) => found,
            Err(text) => return vec![send_failed(user, to, id, &text)],
        };
        // Only one's own messages: a moderator's removal is another request (XEP-0425).
        let puppet = self.puppets.id(user);
        let unknown = "the retracted message is unknown";
        let event = match self.links.find(&room, &id).await {
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

    /// Remove a message from a room as a moderator (XEP-0425): a redaction with the reason,
    /// which the homeserver allows if the puppet's power level does; shown to the user at
    /// once, to the others when the redaction arrives.
    pub(crate) async fn moderate(
        &self,
        user: &UserRef,
        room: RoomRef,
        id: String,
        reason: Option<String>,
    ) -> Vec<Event> {
        let to = Peer::Room(room);
        // A failure names no message: the id is someone else's message, not the user's.
        let moderation_failed = |user: &UserRef, to: Peer, text: &str| Event::SendFailed {
            user: user.clone(),
            peer: to,
            id: None,
            text: text.to_owned(),
        };
        let (room_id, nick) = match self.target(user, &to).await {
            Ok(found) => found,
            Err(text) => return vec![moderation_failed(user, to, &text)],
        };
        let link = match self.links.find(&room_id, &id).await {
            Ok(Some(link)) => link,
            Ok(None) => return vec![moderation_failed(user, to, "the message is unknown")],
            Err(e) => return vec![moderation_failed(user, to, &e.to_string())],
        };
        let Ok(event) = OwnedEventId::try_from(link.event_id.clone()) else {
            return vec![moderation_failed(user, to, "the message is unknown")];
        };
        let mut request =
            redact::redact_event::v3::Request::new(room_id.clone(), event, TransactionId::new());
        request.reason = reason.clone();
        let puppet = self.puppets.id(user);
        let sent = self
            .client
            .call(request, Some(&puppet), Retry::For(Duration::from_secs(60)))
            .await;
        if let Err(e) = sent {
            return vec![moderation_failed(user, to, &format!("not removed: {e}"))];
        }
        let from = self
            .rooms
            .lock()
            .expect("rooms lock")
            .nick_of(&room_id, &link.sender)
            .unwrap_or_else(|| link.sender.clone());
        vec![Event::Retracted {
            user: user.clone(),
            peer: to,
            id: link.event_id,
            from,
            moderator: Some(nick),
            reason,
        }]
    }

    /// Bring the user's reactions to a message to `reactions`: the missing ones are sent,
    /// the others redacted; reflected in a room.
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
        let Some(target) = self.links.event_for(&room, &id).await else {
            return vec![send_failed(
                user,
                to,
                id,
                "the message reacted to is unknown",
            )];
        };
        let puppet = self.puppets.id(user);
        let current = match self
            .links
            .reactions(&room, target.as_str(), puppet.as_str())
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
                    self.links
                        .link(&room, &link, sent.as_str(), puppet.as_str())
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
