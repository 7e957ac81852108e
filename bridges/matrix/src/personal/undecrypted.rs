//! Encrypted events a personal login cannot decrypt yet (its keys have not arrived): shown
//! at once as a notice in their place, kept, and tried again after every sync; once the
//! key is there, the decrypted message replaces the notice (an edit of the same event, so
//! XMPP clients correct it in place). Never silently dropped.

use std::collections::VecDeque;

use matrix_sdk::deserialized_responses::TimelineEvent;
use ruma::events::room::encrypted::OriginalSyncRoomEncryptedEvent;
use ruma::events::AnySyncTimelineEvent;
use ruma::serde::Raw;
use ruma::{OwnedRoomId, RoomId};
use serde_json::{json, Map, Value};
use tracing::debug;

/// How many undecrypted events are kept for another try; the oldest go first.
const KEPT: usize = 1000;

/// What stands in for an event that cannot be decrypted yet.
pub(crate) const NOTICE: &str =
    "🔒 An encrypted message that cannot be decrypted yet; it will show here when its key \
     arrives.";

/// The events waiting for their keys.
#[derive(Debug, Default)]
pub(crate) struct Undecrypted {
    waiting: VecDeque<(OwnedRoomId, Raw<AnySyncTimelineEvent>)>,
}

impl Undecrypted {
    /// Keep `raw` (an `m.room.encrypted` event of `room`) for another try; the notice that
    /// stands in for it meanwhile.
    pub(crate) fn keep(
        &mut self,
        room: &RoomId,
        raw: &Raw<AnySyncTimelineEvent>,
    ) -> Option<Raw<AnySyncTimelineEvent>> {
        if self.waiting.len() == KEPT {
            if let Some((room, dropped)) = self.waiting.pop_front() {
                let id = dropped.get_field::<String>("event_id").ok().flatten();
                debug!(%room, ?id, "no longer waiting for the key of an event");
            }
        }
        self.waiting.push_back((room.to_owned(), raw.clone()));
        let mut event = fields(raw)?;
        event.insert("type".into(), "m.room.message".into());
        event.insert(
            "content".into(),
            json!({"msgtype": "m.notice", "body": NOTICE}),
        );
        to_raw(&event)
    }

    /// Try every waiting event again; the ones decrypted now, as edits of their notices.
    pub(crate) async fn retry(
        &mut self,
        sdk: &matrix_sdk::Client,
    ) -> Vec<(OwnedRoomId, Raw<AnySyncTimelineEvent>)> {
        let mut decrypted = Vec::new();
        let mut still = VecDeque::with_capacity(self.waiting.len());
        for (room_id, raw) in self.waiting.drain(..) {
            let Some(room) = sdk.get_room(&room_id) else {
                continue;
            };
            let encrypted = Raw::<OriginalSyncRoomEncryptedEvent>::from_json(raw.json().to_owned());
            match room.decrypt_event(&encrypted, None).await {
                Ok(event) if !event.kind.is_utd() => {
                    if let Some(edit) = replacing_notice(&event) {
                        decrypted.push((room_id, edit));
                    }
                }
                _ => still.push_back((room_id, raw)),
            }
        }
        self.waiting = still;
        decrypted
    }
}

/// The decrypted event as the edit that replaces its notice: a message's content becomes
/// the new content of an `m.replace` of the same event id; anything else comes as itself.
fn replacing_notice(event: &TimelineEvent) -> Option<Raw<AnySyncTimelineEvent>> {
    let mut fields = fields(event.raw())?;
    if fields.get("type").and_then(Value::as_str) != Some("m.room.message") {
        return to_raw(&fields);
    }
    let id = fields.get("event_id")?.as_str()?.to_owned();
    // The edit's own id, which the archive keeps apart from the original's.
    fields.insert("event_id".into(), format!("{id}-decrypted").into());
    let content = fields.get("content").cloned().unwrap_or_default();
    let mut edit = content.clone();
    if let Some(edit) = edit.as_object_mut() {
        edit.remove("m.relates_to");
        edit.insert("m.new_content".into(), content);
        edit.insert(
            "m.relates_to".into(),
            json!({"rel_type": "m.replace", "event_id": id}),
        );
    }
    fields.insert("content".into(), edit);
    to_raw(&fields)
}

fn fields(raw: &Raw<AnySyncTimelineEvent>) -> Option<Map<String, Value>> {
    serde_json::from_str(raw.json().get()).ok()
}

fn to_raw(fields: &Map<String, Value>) -> Option<Raw<AnySyncTimelineEvent>> {
    serde_json::value::to_raw_value(fields)
        .ok()
        .map(Raw::from_json)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encrypted() -> Raw<AnySyncTimelineEvent> {
        let event = json!({
            "type": "m.room.encrypted", "sender": "@b:hs", "event_id": "$e",
            "origin_server_ts": 5,
            "content": {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "x",
                        "sender_key": "k", "device_id": "D", "session_id": "s"}
        });
        Raw::from_json(serde_json::value::to_raw_value(&event).unwrap())
    }

    #[test]
    fn an_undecrypted_event_stands_as_a_notice_of_the_same_id_and_is_kept() {
        let mut undecrypted = Undecrypted::default();
        let room = <&RoomId>::try_from("!r:hs").unwrap();
        let notice = undecrypted.keep(room, &encrypted()).unwrap();
        assert_eq!(
            notice.get_field::<String>("type").unwrap().as_deref(),
            Some("m.room.message")
        );
        assert_eq!(
            notice.get_field::<String>("event_id").unwrap().as_deref(),
            Some("$e")
        );
        let content: Value = notice.get_field("content").unwrap().unwrap();
        assert_eq!(content["body"], NOTICE);
        assert_eq!(undecrypted.waiting.len(), 1);
        for _ in 0..KEPT + 5 {
            undecrypted.keep(room, &encrypted());
        }
        assert_eq!(undecrypted.waiting.len(), KEPT, "bounded");
    }

    #[test]
    fn a_decrypted_message_edits_its_notice() {
        let event = json!({
            "type": "m.room.message", "sender": "@b:hs", "event_id": "$e",
            "origin_server_ts": 5, "content": {"msgtype": "m.text", "body": "secret"}
        });
        let raw = Raw::from_json(serde_json::value::to_raw_value(&event).unwrap());
        let edit = replacing_notice(&TimelineEvent::from_plaintext(raw)).unwrap();
        let content: Value = edit.get_field("content").unwrap().unwrap();
        assert_eq!(content["m.relates_to"]["rel_type"], "m.replace");
        assert_eq!(content["m.relates_to"]["event_id"], "$e");
        assert_eq!(content["m.new_content"]["body"], "secret");
        let id = edit.get_field::<String>("event_id").unwrap();
        assert_eq!(id.as_deref(), Some("$e-decrypted"), "an id of its own");
    }
}
