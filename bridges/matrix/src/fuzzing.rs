//! Entry point for the fuzz target (`fuzz/`) and its corpus test: an appservice
//! transaction body, as a homeserver (or anyone who reached the listener) could send it,
//! through the parsing and the conversions the listener and `incoming` apply to it.

use ruma::api::appservice::event::push_events;
use ruma::api::IncomingRequest;
use ruma::events::{AnyMessageLikeEvent, AnyTimelineEvent, MessageLikeEvent};

use crate::{ids, listener, text};

/// Parse `body` as a transaction, fingerprint it, and read every event in it as the bridge
/// does: sender and room ids taken apart, message content made readable text and back.
pub fn transaction(body: &[u8]) {
    let mut http = http::Request::new(body);
    *http.method_mut() = http::Method::PUT;
    let Ok(request) = push_events::v1::Request::try_from_http_request(http, &["txn"]) else {
        return;
    };
    let fingerprint = listener::fingerprint(&request, body);
    assert_eq!(fingerprint.len(), 64, "a SHA-256 in hex");
    for raw in &request.events {
        let Ok(event) = raw.deserialize() else {
            continue;
        };
        if let Some((local, _server)) = ids::split_user_id(event.sender().as_str()) {
            let _ = ids::puppet_owner("_xmpp_", local);
        }
        let room = ids::room_ref_of_id(event.room_id().as_str());
        let _ = ids::matrix_name(&room);
        if let AnyTimelineEvent::MessageLike(AnyMessageLikeEvent::RoomMessage(
            MessageLikeEvent::Original(message),
        )) = &event
        {
            let (readable, kind) = text::readable(&message.content.msgtype);
            let _ = text::content(&readable, kind);
        }
    }
}
