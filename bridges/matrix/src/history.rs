//! A room's recent history at join: the last messages as the homeserver keeps them (for a
//! personal login, decrypted by its client), reported before the join so that the core
//! archives them once (by event id) and shows them in the join history. What happened while
//! the gateway was away is not lost to the user.

use std::time::{Duration, SystemTime};

use causeway_bridge::{Said, UserRef};
use ruma::events::room::message::Relation;
use ruma::events::{AnyMessageLikeEvent, AnyTimelineEvent, MessageLikeEvent};
use ruma::serde::Raw;
use ruma::{RoomId, UserId};
use tracing::debug;

use crate::client::Client;
use crate::media::{MatrixFile, Shelf};
use crate::{ids, text, SharedRooms};

/// How many events a join looks back over.
pub(crate) const LOOK_BACK: u32 = 50;

/// The last messages of `room`, oldest first, as `user` sees them, with the nicks members
/// show as in `rooms`; files as links on `shelf`, which `owner`'s login fetches (the
/// appservice's when `None`).
pub(crate) async fn recent(
    client: &Client,
    rooms: &SharedRooms,
    room: &RoomId,
    user: &UserId,
    (shelf, owner): (&Shelf, Option<&UserRef>),
) -> Vec<Said> {
    let events = match client.recent_events(room, LOOK_BACK, user).await {
        Ok(events) => events,
        Err(e) => {
            debug!(%room, error = %e, "no history for the join");
            return vec![];
        }
    };
    let mut said = Vec::new();
    for raw in &events {
        if let Some(mut message) = message(raw, rooms, room) {
            if let Some(file) = message.file.take() {
                let event = message.said.remote_id.clone();
                message.said.body = shelf.offer(owner, &event, &file).await.0;
            }
            said.push(message.said);
        }
    }
    said.reverse();
    said
}

/// One message of the history, and the file it carries.
struct Message {
    said: Said,
    file: Option<MatrixFile>,
}

/// A message event as history; edits, other events and what does not parse are left out.
fn message(raw: &Raw<AnyTimelineEvent>, rooms: &SharedRooms, room: &RoomId) -> Option<Message> {
    let AnyTimelineEvent::MessageLike(AnyMessageLikeEvent::RoomMessage(
        MessageLikeEvent::Original(ev),
    )) = raw.deserialize().ok()?
    else {
        return None;
    };
    if matches!(ev.content.relates_to, Some(Relation::Replacement(_))) {
        return None;
    }
    let (body, kind) = text::readable(&ev.content.msgtype);
    let sender = ev.sender.as_str();
    let from = rooms
        .lock()
        .expect("rooms lock")
        .nick_of(room, sender)
        .or_else(|| ids::split_user_id(sender).map(|(local, _)| local.to_owned()))?;
    let time = SystemTime::UNIX_EPOCH + Duration::from_millis(u64::from(ev.origin_server_ts.0));
    let said = Said {
        from,
        body,
        kind,
        time,
        remote_id: ev.event_id.to_string(),
    };
    let file = crate::media::file_of(&ev.content.msgtype);
    Some(Message { said, file })
}
