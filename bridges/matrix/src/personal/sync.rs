//! A personal login's sync loop: what the homeserver reports for the user's account (already
//! decrypted by matrix-sdk in encrypted rooms), handed to the same incoming side the
//! appservice's transactions use. The homeserver keeps what happened while the loop was
//! away (the sync token is in the user's store), so an outage or a restart loses nothing.

use std::time::Duration;

use causeway_bridge::{Event, UserRef};
use matrix_sdk::config::SyncSettings;
use matrix_sdk::sync::SyncResponse;
use ruma::api::error::ErrorKind;
use ruma::events::room::member::MembershipState;
use ruma::events::{AnyStrippedStateEvent, AnySyncTimelineEvent};
use ruma::serde::Raw;
use ruma::RoomId;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::parts::Parts;
use crate::personal::undecrypted::Undecrypted;

/// How long one sync waits for news.
const LONG_POLL: Duration = Duration::from_secs(30);
/// The first wait between attempts while the homeserver is away, and the shortest.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between attempts while the homeserver is away.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// The longest wait a rate-limiting homeserver is granted: past it, a wrong or hostile
/// answer would keep the user's rooms silent.
const MAX_ASKED_WAIT: Duration = Duration::from_secs(300);

/// Why a sync loop ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ended {
    /// Told to stop (logout, shutdown).
    Stopped,
    /// The homeserver no longer knows the session (logged out from another client).
    Revoked,
}

/// Whether the failure `e` means the session was ended elsewhere: the homeserver no longer
/// knows the token (`M_UNKNOWN_TOKEN`), or — a browser login's — matrix-sdk could not renew
/// it because the authorization server refused the refresh token, which it tells through
/// the session's `changes` (network trouble while renewing does not count).
pub(super) fn ended_elsewhere(
    e: &matrix_sdk::Error,
    changes: &mut tokio::sync::broadcast::Receiver<matrix_sdk::SessionChange>,
) -> bool {
    let told = std::iter::from_fn(|| match changes.try_recv() {
        Ok(change) => Some(Some(change)),
        Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => Some(None),
        Err(_) => None,
    })
    .flatten()
    .any(|change| matches!(change, matrix_sdk::SessionChange::UnknownToken(_)));
    told || matches!(
        e.client_api_error_kind(),
        Some(ErrorKind::UnknownToken { .. })
    )
}

/// What the loop needs.
pub(crate) struct Syncing<'a> {
    /// Whose session.
    pub user: &'a UserRef,
    /// The session.
    pub sdk: &'a matrix_sdk::Client,
    /// Where events go.
    pub parts: &'a Parts,
    /// What the loop is doing, for the status command.
    pub state: &'a watch::Sender<String>,
    /// Notices for the user.
    pub emit: &'a mpsc::Sender<Event>,
    /// The server name notices come from.
    pub server: &'a str,
}

/// Sync until `stop` says so or the session is revoked.
pub(crate) async fn run(syncing: Syncing<'_>, mut stop: watch::Receiver<bool>) -> Ended {
    let Syncing { sdk, state, .. } = syncing;
    let mut delay = FIRST_BACKOFF;
    let mut failing = false;
    let mut undecrypted = Undecrypted::default();
    let mut changes = sdk.subscribe_to_session_changes();
    loop {
        // The first sync of a new login brings recent history of every room: not news.
        let fresh = !synced_before(sdk).await;
        let settings = SyncSettings::default().timeout(LONG_POLL);
        let outcome = tokio::select! {
            outcome = sdk.sync_once(settings) => outcome,
            _ = stop.wait_for(|stop| *stop) => return Ended::Stopped,
        };
        match outcome {
            Ok(response) => {
                if failing {
                    failing = false;
                    info!(user = %syncing.user, "homeserver reachable again");
                    notice(&syncing, "connected to the homeserver again").await;
                }
                state.send_replace("connected".into());
                delay = FIRST_BACKOFF;
                handle(&syncing, response, fresh, &mut undecrypted).await;
            }
            Err(e) => {
                if ended_elsewhere(&e, &mut changes) {
                    return Ended::Revoked;
                }
                let (error, asked) = crate::client::sdk_failure(&e);
                let text = error.to_string();
                let wait = wait_after_failure(delay, asked);
                warn!(user = %syncing.user, error = %text, ?wait, "sync failed; retrying");
                state.send_replace(format!("retrying: {text}"));
                if !failing {
                    failing = true;
                    let words = format!("cannot reach the homeserver ({text}); retrying");
                    notice(&syncing, &words).await;
                }
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    _ = stop.wait_for(|stop| *stop) => return Ended::Stopped,
                }
                delay = (delay * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// How long to wait after a failed sync: what the homeserver asked for when it
/// rate-limits (`M_LIMIT_EXCEEDED`), kept between the first backoff and
/// [`MAX_ASKED_WAIT`]; else the backoff's `delay`.
fn wait_after_failure(delay: Duration, asked: Option<Duration>) -> Duration {
    match asked {
        Some(asked) => asked.clamp(FIRST_BACKOFF, MAX_ASKED_WAIT),
        None => delay,
    }
}

/// Whether the session has synced before (its store has a sync token).
async fn synced_before(sdk: &matrix_sdk::Client) -> bool {
    use matrix_sdk::store::{StateStoreDataKey, StateStoreDataValue};
    matches!(
        sdk.state_store()
            .get_kv_data(StateStoreDataKey::SyncToken)
            .await,
        Ok(Some(StateStoreDataValue::SyncToken(_)))
    )
}

/// A notice to the user from their homeserver's address.
async fn notice(syncing: &Syncing<'_>, text: &str) {
    let event = crate::server_text(syncing.user, syncing.server, text);
    let _ = syncing.emit.send(event).await;
}

/// One sync's news, in order: invitations, then each joined room's timeline, then the
/// events whose keys have arrived since.
async fn handle(
    syncing: &Syncing<'_>,
    response: SyncResponse,
    fresh: bool,
    undecrypted: &mut Undecrypted,
) {
    let own = syncing.sdk.user_id().map(|id| id.to_string());
    for (room_id, invited) in &response.rooms.invited {
        for raw in &invited.invite_state.events {
            invitation(syncing, room_id, raw, own.as_deref()).await;
        }
    }
    if fresh {
        debug!(user = %syncing.user, "first sync: history is not news");
        return;
    }
    // Joins under way first, so that a room's first events find it known.
    syncing.parts.joins.settled().await;
    for (room_id, update) in response.rooms.joined {
        // A room the account has just joined comes with its recent history: not news (the
        // appservice is never sent it either). News starts at the join.
        let events = &update.timeline.events;
        let start = own
            .as_deref()
            .and_then(|own| events.iter().rposition(|e| joins_anew(e.raw(), own)))
            .unwrap_or(0);
        for event in &events[start..] {
            let raw = match event.kind.is_utd() {
                true => match undecrypted.keep(&room_id, event.raw()) {
                    Some(notice) => notice,
                    None => continue,
                },
                false => event.raw().clone(),
            };
            let elsewhere = own.as_deref().is_some_and(|own| sent_elsewhere(&raw, own));
            deliver(syncing, &room_id, &raw, elsewhere).await;
        }
        // Typing and read receipts, after what they may name.
        for raw in &update.ephemeral {
            let Ok(mut event) = raw.deserialize_as::<serde_json::Value>() else {
                continue;
            };
            if let Some(fields) = event.as_object_mut() {
                fields.insert("room_id".into(), room_id.as_str().into());
                syncing.parts.incoming.on_ephemeral(event).await;
            }
        }
    }
    for (room_id, raw) in undecrypted.retry(syncing.sdk).await {
        let elsewhere = own.as_deref().is_some_and(|own| sent_elsewhere(&raw, own));
        deliver(syncing, &room_id, &raw, elsewhere).await;
    }
}

/// One event of a room, to the incoming side.
async fn deliver(
    syncing: &Syncing<'_>,
    room_id: &RoomId,
    raw: &Raw<AnySyncTimelineEvent>,
    elsewhere: bool,
) {
    if let Some(raw) = crate::ids::with_room(raw, room_id) {
        syncing.parts.incoming.on_event_from(raw, elsewhere).await;
    }
}

/// Whether the event is the account `own` joining a room it was not in.
fn joins_anew(raw: &Raw<AnySyncTimelineEvent>, own: &str) -> bool {
    let Ok(event) = raw.deserialize_as::<serde_json::Value>() else {
        return false;
    };
    let before = event["unsigned"]["prev_content"]["membership"].as_str();
    event["type"] == "m.room.member"
        && event["state_key"] == own
        && event["content"]["membership"] == "join"
        && before != Some("join")
}

/// Whether the event is the account's own, sent from another of its devices: the
/// homeserver names the transaction only to the session that sent it.
fn sent_elsewhere(raw: &Raw<AnySyncTimelineEvent>, own: &str) -> bool {
    let sender = raw.get_field::<String>("sender").ok().flatten();
    if sender.as_deref() != Some(own) {
        return false;
    }
    let unsigned = raw
        .get_field::<serde_json::Value>("unsigned")
        .ok()
        .flatten();
    unsigned.is_none_or(|u| u.get("transaction_id").is_none())
}

/// The user's own invitation into a room, from the room's invite state.
async fn invitation(
    syncing: &Syncing<'_>,
    room: &RoomId,
    raw: &Raw<AnyStrippedStateEvent>,
    own: Option<&str>,
) {
    let Ok(AnyStrippedStateEvent::RoomMember(member)) = raw.deserialize() else {
        return;
    };
    if Some(member.state_key.as_str()) != own
        || member.content.membership != MembershipState::Invite
    {
        return;
    }
    syncing
        .parts
        .incoming
        .invited(
            syncing.user.clone(),
            room,
            member.sender.as_str(),
            member.content.is_direct,
            member.content.reason,
        )
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(json: serde_json::Value) -> Raw<AnySyncTimelineEvent> {
        Raw::from_json(serde_json::value::to_raw_value(&json).unwrap())
    }

    #[test]
    fn a_rate_limited_sync_waits_what_the_homeserver_asks_within_bounds() {
        let secs = Duration::from_secs;
        // Not rate-limited: the backoff.
        assert_eq!(wait_after_failure(secs(8), None), secs(8));
        // Asked: that long, shorter or longer than the backoff.
        assert_eq!(wait_after_failure(secs(8), Some(secs(3))), secs(3));
        assert_eq!(wait_after_failure(secs(1), Some(secs(45))), secs(45));
        // Never a busy loop, never silent for long.
        assert_eq!(
            wait_after_failure(secs(4), Some(Duration::ZERO)),
            FIRST_BACKOFF
        );
        assert_eq!(
            wait_after_failure(secs(4), Some(secs(86_400))),
            MAX_ASKED_WAIT
        );
    }

    #[test]
    fn own_events_without_a_transaction_come_from_elsewhere() {
        let mine = raw(serde_json::json!({
            "type": "m.room.message", "sender": "@a:hs", "event_id": "$1",
            "origin_server_ts": 1, "content": {"msgtype": "m.text", "body": "hi"},
            "unsigned": {"transaction_id": "t1"}
        }));
        let phone = raw(serde_json::json!({
            "type": "m.room.message", "sender": "@a:hs", "event_id": "$2",
            "origin_server_ts": 1, "content": {"msgtype": "m.text", "body": "hi"}
        }));
        let other = raw(serde_json::json!({
            "type": "m.room.message", "sender": "@b:hs", "event_id": "$3",
            "origin_server_ts": 1, "content": {"msgtype": "m.text", "body": "hi"}
        }));
        assert!(!sent_elsewhere(&mine, "@a:hs"));
        assert!(sent_elsewhere(&phone, "@a:hs"));
        assert!(!sent_elsewhere(&other, "@a:hs"));
    }

    #[test]
    fn only_a_join_into_a_room_is_joining_anew() {
        let member = |key: &str, membership: &str, before: Option<&str>| {
            let mut event = serde_json::json!({
                "type": "m.room.member", "sender": key, "state_key": key, "event_id": "$1",
                "origin_server_ts": 1, "content": {"membership": membership},
            });
            if let Some(before) = before {
                event["unsigned"] = serde_json::json!({"prev_content": {"membership": before}});
            }
            raw(event)
        };
        assert!(joins_anew(&member("@a:hs", "join", None), "@a:hs"));
        assert!(joins_anew(
            &member("@a:hs", "join", Some("invite")),
            "@a:hs"
        ));
        assert!(joins_anew(&member("@a:hs", "join", Some("leave")), "@a:hs"));
        // A new display name is a join after a join.
        assert!(!joins_anew(&member("@a:hs", "join", Some("join")), "@a:hs"));
        assert!(!joins_anew(&member("@b:hs", "join", None), "@a:hs"));
        assert!(!joins_anew(&member("@a:hs", "invite", None), "@a:hs"));
    }
}
