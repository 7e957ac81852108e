//! A puppet's event sent once, even when the homeserver restarts before it answers.
//!
//! A transaction id makes a homeserver keep one copy of an event sent again after a lost
//! answer, but Synapse remembers an appservice's transaction ids only in memory (its lasting
//! record is per device, and puppets have none): an answer lost to a restart, and the
//! attempt after it, made a second copy. So a puppet's event carries its transaction id in
//! its content as well (`org.causeway.txn_id`), and after an attempt that may have been
//! carried out, the next one first looks for it among the puppet's latest events in the
//! room, and sends only if it is not there. A personal login's events are matrix-sdk's: it
//! sends them from the login's own device, whose transaction ids Synapse keeps.

use std::sync::atomic::{AtomicBool, Ordering};

use ruma::api::client::message::{get_message_events, send_message_event};
use ruma::api::IncomingResponse;
use ruma::events::AnyTimelineEvent;
use ruma::serde::Raw;
use ruma::{OwnedEventId, RoomId, TransactionId, UserId};
use serde::Deserialize;
use tracing::debug;

use super::{retrying, CallError, Client, Retry};

/// The content key that carries a puppet event's transaction id.
const TXN_KEY: &str = "org.causeway.txn_id";

/// How many of the puppet's latest events in the room are searched for one that may have
/// been sent. A puppet's events to a room go one after another, so the one in doubt is the
/// last or nearly.
const LOOK_BACK: u32 = 20;

impl Client {
    /// Send an event of `kind` to `room` as the puppet `user`, as transaction `txn`.
    pub(super) async fn send_once(
        &self,
        room: &RoomId,
        kind: &str,
        content: &serde_json::Value,
        user: &UserId,
        txn: &TransactionId,
        retry: Retry,
    ) -> Result<OwnedEventId, CallError> {
        let raw = serde_json::value::to_raw_value(&marked(content, txn))
            .map_err(|e| CallError::Invalid(e.to_string()))?;
        let request = send_message_event::v3::Request::new_raw(
            room.to_owned(),
            txn.to_owned(),
            kind.into(),
            Raw::from_json(raw),
        );
        let (parts, body) = self.build(request, Some(user))?.into_parts();
        let maybe_sent = AtomicBool::new(false);
        retrying(retry, room.as_str(), || async {
            if maybe_sent.load(Ordering::Relaxed) {
                let found = self.sent_before(room, user, txn).await;
                if let Some(event) = found.map_err(|e| (e, None))? {
                    debug!(%room, %event, %txn, "sent before its answer was lost; not again");
                    return Ok(event);
                }
            }
            let answer = self.attempt(&parts, &body).await.map_err(|failed| {
                if failed.maybe_done {
                    maybe_sent.store(true, Ordering::Relaxed);
                }
                (failed.error, failed.wait)
            })?;
            send_message_event::v3::Response::try_from_http_response(answer)
                .map(|sent| sent.event_id)
                .map_err(|e| {
                    (
                        CallError::Invalid(format!("cannot read the answer: {e}")),
                        None,
                    )
                })
        })
        .await
    }

    /// The event of `user`'s in `room` that carries `txn`, if the homeserver has it.
    async fn sent_before(
        &self,
        room: &RoomId,
        user: &UserId,
        txn: &TransactionId,
    ) -> Result<Option<OwnedEventId>, CallError> {
        let mut request = get_message_events::v3::Request::backward(room.to_owned());
        request.limit = LOOK_BACK.into();
        request.filter.senders = Some(vec![user.to_owned()]);
        let page = self.call(request, Some(user), Retry::Once).await?;
        Ok(page.chunk.iter().find_map(|event| carrying(event, txn)))
    }
}

/// `content` with `txn` in it (content that is not an object is sent as it is).
fn marked(content: &serde_json::Value, txn: &TransactionId) -> serde_json::Value {
    let mut content = content.clone();
    if let Some(fields) = content.as_object_mut() {
        fields.insert(TXN_KEY.into(), txn.as_str().into());
    }
    content
}

/// The id of `event` if its content carries `txn`.
fn carrying(event: &Raw<AnyTimelineEvent>, txn: &TransactionId) -> Option<OwnedEventId> {
    #[derive(Deserialize)]
    struct Sent {
        event_id: OwnedEventId,
        content: Marked,
    }
    #[derive(Deserialize)]
    struct Marked {
        #[serde(rename = "org.causeway.txn_id")]
        txn: Option<String>,
    }
    let sent: Sent = event.deserialize_as_unchecked().ok()?;
    (sent.content.txn.as_deref() == Some(txn.as_str())).then_some(sent.event_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(content: serde_json::Value) -> Raw<AnyTimelineEvent> {
        Raw::new(&json!({
            "type": "m.room.message",
            "event_id": "$one:hs",
            "sender": "@_xmpp_a:hs",
            "origin_server_ts": 1,
            "room_id": "!r:hs",
            "content": content,
        }))
        .unwrap()
        .cast_unchecked()
    }

    #[test]
    fn the_mark_carries_the_transaction_id_and_keeps_the_content() {
        let txn: &TransactionId = "t1".into();
        let content = marked(&json!({"msgtype": "m.text", "body": "hi"}), txn);
        assert_eq!(content[TXN_KEY], "t1");
        assert_eq!(content["body"], "hi");
        let sent = event(content);
        assert_eq!(carrying(&sent, txn).unwrap(), "$one:hs");
    }

    #[test]
    fn another_transaction_or_none_is_not_the_event() {
        let sent = event(marked(&json!({"body": "hi"}), "t1".into()));
        assert_eq!(carrying(&sent, "t2".into()), None);
        assert_eq!(carrying(&event(json!({"body": "hi"})), "t1".into()), None);
        // A redacted event has lost its content, mark included.
        assert_eq!(carrying(&event(json!({})), "t1".into()), None);
    }
}
