//! Typing notifications and read receipts, both ways. From XMPP (chat states, displayed
//! markers): the puppet's `m.typing` and `m.read`. From the homeserver: the ephemeral
//! events it pushes to the application service (`receive_ephemeral` in the registration),
//! `m.typing` (who types in a room now: told as who started and who stopped) and
//! `m.receipt` (who read up to which event), for the XMPP users in the room or the direct
//! chat.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use causeway_bridge::{Event, Peer, UserRef};
use ruma::api::client::{receipt::create_receipt, typing::create_typing_event};
use ruma::events::receipt::ReceiptThread;
use ruma::{OwnedEventId, OwnedRoomId, RoomId};
use serde_json::Value;
use tracing::debug;

use crate::client::Retry;
use crate::incoming::Incoming;
use crate::outgoing::Outgoing;

/// How long the homeserver shows a puppet typing without news (XMPP clients say when
/// they pause, and the message ends it).
const TYPING_FOR: Duration = Duration::from_secs(30);

/// Signals are worth one quick try: a late one is wrong.
const SIGNAL_PATIENCE: Duration = Duration::from_secs(5);

/// Where each puppet is shown typing, so that its message ends it (the homeserver does not).
#[derive(Debug, Default)]
pub(crate) struct Typing(Mutex<HashSet<(UserRef, OwnedRoomId)>>);

/// Who the homeserver last said was typing, per room.
#[derive(Debug, Default)]
pub(crate) struct Typists(Mutex<HashMap<OwnedRoomId, BTreeSet<String>>>);

impl Outgoing {
    /// Where a signal goes: a room the user is in, or a direct room that exists already.
    async fn signal_room(&self, user: &UserRef, to: &Peer) -> Option<OwnedRoomId> {
        match to {
            Peer::Room(_) => self.target(user, to).await.ok().map(|(room, _)| room),
            Peer::User { server, nick } => {
                self.directory
                    .existing_direct_room(user, server, nick)
                    .await
            }
        }
    }

    /// The user started or stopped typing.
    pub(crate) async fn typing(&self, user: &UserRef, to: Peer, typing: bool) -> Vec<Event> {
        let Some(room) = self.signal_room(user, &to).await else {
            return vec![];
        };
        let key = (user.clone(), room.clone());
        let changed = {
            let mut shown = self.typing.0.lock().expect("typing lock");
            if typing {
                shown.insert(key)
            } else {
                shown.remove(&key)
            }
        };
        // Composing again while shown typing renews the timeout; paused twice is nothing.
        if changed || typing {
            self.send_typing(user, room, typing).await;
        }
        vec![]
    }

    /// A message of the user's is on its way to `room`: they are no longer typing there.
    pub(crate) async fn stopped_typing(&self, user: &UserRef, room: &RoomId) {
        let was = self
            .typing
            .0
            .lock()
            .expect("typing lock")
            .remove(&(user.clone(), room.to_owned()));
        if was {
            self.send_typing(user, room.to_owned(), false).await;
        }
    }

    async fn send_typing(&self, user: &UserRef, room: OwnedRoomId, typing: bool) {
        let puppet = self.puppets.id(user);
        let state = if typing {
            create_typing_event::v3::Typing::Yes(create_typing_event::v3::TypingInfo::new(
                TYPING_FOR,
            ))
        } else {
            create_typing_event::v3::Typing::No
        };
        let request = create_typing_event::v3::Request::new(puppet.clone(), room, state);
        let sent = self
            .client
            .call(request, Some(&puppet), Retry::For(SIGNAL_PATIENCE))
            .await;
        if let Err(e) = sent {
            debug!(error = %e, "typing not sent");
        }
    }

    /// The user has read up to the message `id`: the puppet's read receipt.
    pub(crate) async fn displayed(&self, user: &UserRef, to: Peer, id: String) -> Vec<Event> {
        let Some(room) = self.signal_room(user, &to).await else {
            return vec![];
        };
        let event = match self.links.find(&room, &id).await {
            Ok(Some(link)) => link.event_id,
            // A stanza-id is the event id of a message from Matrix.
            _ => id,
        };
        let Ok(event) = OwnedEventId::try_from(event) else {
            return vec![];
        };
        let mut request =
            create_receipt::v3::Request::new(room, create_receipt::v3::ReceiptType::Read, event);
        request.thread = ReceiptThread::Unthreaded;
        let puppet = self.puppets.id(user);
        let sent = self
            .client
            .call(request, Some(&puppet), Retry::For(SIGNAL_PATIENCE))
            .await;
        if let Err(e) = sent {
            debug!(error = %e, "read receipt not sent");
        }
        vec![]
    }
}

impl Incoming {
    /// One ephemeral event of a transaction.
    pub(crate) async fn on_ephemeral(&self, event: Value) {
        let Some(room) = event["room_id"]
            .as_str()
            .and_then(|r| OwnedRoomId::try_from(r).ok())
        else {
            return;
        };
        let events = match event["type"].as_str() {
            Some("m.typing") => {
                let now: BTreeSet<String> = event["content"]["user_ids"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|u| u.as_str().map(str::to_owned))
                    .filter(|u| self.puppets.owner(u).is_none())
                    .collect();
                let before = self
                    .typists
                    .0
                    .lock()
                    .expect("typists lock")
                    .insert(room.clone(), now.clone())
                    .unwrap_or_default();
                let mut events = Vec::new();
                for (who, typing) in now
                    .difference(&before)
                    .map(|w| (w, true))
                    .chain(before.difference(&now).map(|w| (w, false)))
                {
                    events.extend(self.typing_of(&room, who, typing).await);
                }
                events
            }
            Some("m.receipt") => self.receipts(&room, &event["content"]).await,
            _ => return,
        };
        for event in events {
            let _ = self.emit.send(event).await;
        }
    }

    async fn typing_of(&self, room: &RoomId, who: &str, typing: bool) -> Vec<Event> {
        {
            let rooms = self.rooms.lock().expect("rooms lock");
            if rooms.is_tracked(room) {
                return rooms.signalled(room, who, &|user, room, nick| Event::Typing {
                    user: user.clone(),
                    peer: Peer::Room(room.clone()),
                    from: nick.to_owned(),
                    typing,
                });
            }
        }
        match self.direct_peer(room, who).await {
            Some((user, peer)) => vec![Event::Typing {
                user,
                peer,
                from: String::new(),
                typing,
            }],
            None => vec![],
        }
    }

    /// `m.receipt` content: event → `m.read` → reader → when. Our puppets' own are skipped.
    async fn receipts(&self, room: &RoomId, content: &Value) -> Vec<Event> {
        let mut events = Vec::new();
        let Some(by_event) = content.as_object() else {
            return events;
        };
        for (event_id, kinds) in by_event {
            let Some(readers) = kinds["m.read"].as_object() else {
                continue;
            };
            for reader in readers.keys() {
                if self.puppets.owner(reader).is_some() {
                    continue;
                }
                events.extend(self.read_by(room, reader, event_id).await);
            }
        }
        events
    }

    async fn read_by(&self, room: &RoomId, reader: &str, event_id: &str) -> Vec<Event> {
        {
            let rooms = self.rooms.lock().expect("rooms lock");
            if rooms.is_tracked(room) {
                return rooms.signalled(room, reader, &|user, room, nick| Event::Displayed {
                    user: user.clone(),
                    peer: Peer::Room(room.clone()),
                    from: nick.to_owned(),
                    id: event_id.to_owned(),
                });
            }
        }
        let Some((user, peer)) = self.direct_peer(room, reader).await else {
            return vec![];
        };
        // A message the user sent from XMPP is known there by its XMPP id.
        let id = match self.links.find(room, event_id).await {
            Ok(Some(link)) if self.puppets.owner(&link.sender).is_some() => link.xmpp_id,
            _ => event_id.to_owned(),
        };
        vec![Event::Displayed {
            user,
            peer,
            from: String::new(),
            id,
        }]
    }
}
