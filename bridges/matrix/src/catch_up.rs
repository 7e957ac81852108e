//! Catching up after the homeserver restarts. Synapse keeps the events it owes an
//! appservice in memory until it sends them, and loses those not sent yet when it stops
//! (synapse#11637); its transaction ids may start again from 1 too (synapse#14556). So each
//! event taken in is remembered (the last [`REMEMBERED`] per room), events seen before are
//! skipped wherever they come from, and when the homeserver is back from a restart — its
//! transaction ids started again, or the watch found it gone and then back — the tail of
//! every room XMPP users are in is read and what was missed is taken in, oldest first.
//!
//! The watch is an idle TCP connection to the homeserver: a homeserver that stops closes
//! it, however short the restart. When it closes, the homeserver is asked at once whether
//! it answers (`/versions`): a homeserver that stopped does not yet — it takes seconds to
//! start — while one that only dropped an idle connection does, and is not caught up with.
//! (Behind a reverse proxy the connection is the proxy's: there, a restart is seen only
//! by its transaction ids starting again.)

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ruma::api::client::discovery::get_supported_versions;
use ruma::{MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, RoomId, UserId};
use tokio::io::AsyncReadExt;
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use crate::client::{CallError, Retry};
use crate::incoming::Incoming;

/// Events remembered per room: more than a catch-up usually reads ([`TAIL`]), so that
/// every event of the tail that was taken in is still known.
const REMEMBERED: usize = 512;
/// Events read from the end of each room when catching up.
const TAIL: u32 = 100;
/// Events read when the first read did not reach back to before the outage.
const LONG_TAIL: u32 = 1000;
/// How often a homeserver that is gone is asked whether it is back.
const ASK_AGAIN: Duration = Duration::from_millis(500);
/// How long before a homeserver went away the events it lost may have been sent.
const LOST_BEFORE: Duration = Duration::from_secs(5);
/// The catch-ups after the first, each this long after the one before.
const FOLLOW_UPS: [Duration; 3] = [
    Duration::from_secs(3),
    Duration::from_secs(10),
    Duration::from_secs(20),
];
/// A homeserver whose transaction ids start again restarted within this.
const RESTARTED_WITHIN: Duration = Duration::from_secs(60);

/// The events taken in lately, per room.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    rooms: Mutex<HashMap<OwnedRoomId, Recent>>,
}

#[derive(Debug)]
struct Recent {
    order: VecDeque<(OwnedEventId, MilliSecondsSinceUnixEpoch)>,
    ids: HashSet<OwnedEventId>,
    /// When the first event taken in from the room was sent: a catch-up takes nothing older
    /// (that is history from before the gateway watched the room).
    since: MilliSecondsSinceUnixEpoch,
    /// The newest of the events forgotten since (past [`REMEMBERED`]): a catch-up takes
    /// nothing as old, which it could no longer tell from what was taken in.
    forgotten: Option<MilliSecondsSinceUnixEpoch>,
}

impl Seen {
    /// Remember an event; `false` when it was taken in before.
    pub(crate) fn first_time(
        &self,
        room: &RoomId,
        event: &OwnedEventId,
        sent: MilliSecondsSinceUnixEpoch,
    ) -> bool {
        let mut rooms = self.rooms.lock().expect("seen lock");
        let recent = rooms.entry(room.to_owned()).or_insert_with(|| Recent {
            order: VecDeque::new(),
            ids: HashSet::new(),
            since: sent,
            forgotten: None,
        });
        if !recent.ids.insert(event.clone()) {
            return false;
        }
        recent.order.push_back((event.clone(), sent));
        if recent.order.len() > REMEMBERED {
            if let Some((old, at)) = recent.order.pop_front() {
                recent.ids.remove(&old);
                recent.forgotten = Some(recent.forgotten.map_or(at, |f| f.max(at)));
            }
        }
        true
    }

    /// Whether an event of `room` sent at `sent` is one a catch-up should take: sent since
    /// `horizon` (shortly before the homeserver went away: older ones it had sent, or were
    /// sent while no XMPP user was in the room) and after the gateway began to watch the
    /// room, not taken in, and not as old as what was forgotten.
    fn missed(
        &self,
        room: &RoomId,
        event: &OwnedEventId,
        sent: MilliSecondsSinceUnixEpoch,
        horizon: MilliSecondsSinceUnixEpoch,
    ) -> bool {
        let rooms = self.rooms.lock().expect("seen lock");
        rooms.get(room).is_some_and(|r| {
            sent >= horizon
                && sent >= r.since
                && r.forgotten.is_none_or(|f| sent > f)
                && !r.ids.contains(event)
        })
    }

    /// Whether the event was taken in and sent before `horizon`: a catch-up that reached it
    /// has read back far enough.
    fn known_before(
        &self,
        room: &RoomId,
        event: &OwnedEventId,
        sent: MilliSecondsSinceUnixEpoch,
        horizon: MilliSecondsSinceUnixEpoch,
    ) -> bool {
        let rooms = self.rooms.lock().expect("seen lock");
        sent < horizon && rooms.get(room).is_some_and(|r| r.ids.contains(event))
    }
}

/// Asks for a catch-up, and runs them.
#[derive(Debug, Default)]
pub(crate) struct CatchUp {
    wanted: Notify,
}

impl CatchUp {
    /// The homeserver came back from a restart: catch up soon.
    pub(crate) fn wanted(&self) {
        self.wanted.notify_one();
    }

    /// Watch the homeserver and catch up whenever it comes back, or is said to have
    /// restarted, until `shutdown`.
    pub(crate) async fn run(
        self: Arc<Self>,
        incoming: Arc<Incoming>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let host = incoming.client.appservice_host();
        let mut last: Option<std::time::Instant> = None;
        loop {
            let horizon = tokio::select! {
                _ = async { shutdown.wait_for(|stop| *stop).await.map(|_| ()) } => return,
                // Its ids started again: it restarted within the last transactions. Every
                // transaction up to its old last id says so: one catch-up answers them all.
                _ = self.wanted.notified() => {
                    if last.is_some_and(|at| at.elapsed() < RESTARTED_WITHIN) {
                        continue;
                    }
                    ago(RESTARTED_WITHIN)
                }
                () = watch(host.as_ref()) => {
                    if answers(&incoming).await {
                        // An idle connection dropped; nothing happened.
                        tokio::time::sleep(ASK_AGAIN).await;
                        continue;
                    }
                    // What it lost was sent shortly before it went.
                    let horizon = ago(LOST_BEFORE);
                    info!("the homeserver is gone: catching up once it is back");
                    while !answers(&incoming).await {
                        tokio::time::sleep(ASK_AGAIN).await;
                    }
                    info!("the homeserver is back: catching up with its rooms");
                    horizon
                }
            };
            incoming.catch_up(horizon).await;
            // A homeserver just back may also drop what it stores while its appservice
            // sender starts: read again a few times, back to the same horizon.
            for wait in FOLLOW_UPS {
                tokio::select! {
                    _ = async { shutdown.wait_for(|stop| *stop).await.map(|_| ()) } => return,
                    () = tokio::time::sleep(wait) => incoming.catch_up(horizon).await,
                }
            }
            last = Some(std::time::Instant::now());
        }
    }
}

/// The time `before` now, as the homeserver stamps events.
fn ago(before: Duration) -> MilliSecondsSinceUnixEpoch {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_sub(before);
    MilliSecondsSinceUnixEpoch(ruma::UInt::new_saturating(now.as_millis() as u64))
}

/// Hold an idle connection to the homeserver until it ends (or cannot be made); never
/// ends without one to watch.
async fn watch(host: Option<&(String, u16)>) {
    let Some((host, port)) = host else {
        return std::future::pending().await;
    };
    let Ok(mut stream) = tokio::net::TcpStream::connect((host.as_str(), *port)).await else {
        return;
    };
    let mut byte = [0u8; 1];
    while matches!(stream.read(&mut byte).await, Ok(n) if n > 0) {}
}

/// Whether the homeserver answers (anything but silence or a 5xx).
async fn answers(incoming: &Incoming) -> bool {
    let request = get_supported_versions::Request::new();
    !matches!(
        incoming.client.call(request, None, Retry::Once).await,
        Err(CallError::Unreachable(_)) | Err(CallError::Refused { status: 500.., .. })
    )
}

impl Incoming {
    /// Read the end of every room XMPP users are in, back to an event taken in before
    /// `horizon` (when the homeserver went away), and take in what was missed, oldest first.
    pub(crate) async fn catch_up(&self, horizon: MilliSecondsSinceUnixEpoch) {
        let rooms = self.rooms.lock().expect("rooms lock").tracked();
        let mut taken = 0;
        for (room, puppet) in rooms {
            let Ok(puppet) = UserId::parse(puppet) else {
                continue;
            };
            // The usual tail; a longer one when the traffic since the homeserver came back
            // pushed the last event from before it out of the first.
            let mut events = Vec::new();
            for tail in [TAIL, LONG_TAIL] {
                events = match self.client.recent_events(&room, tail, &puppet).await {
                    Ok(events) => events,
                    Err(e) => {
                        warn!(%room, error = %e, "cannot read the room to catch up");
                        break;
                    }
                };
                let reached = events.iter().any(|raw| {
                    let (id, sent) = id_and_time(raw);
                    matches!((id, sent), (Some(id), Some(sent)) if self.seen.known_before(&room, &id, sent, horizon))
                });
                if reached || events.len() < tail as usize {
                    break;
                }
            }
            // Newest first: the missed ones, oldest first.
            let missed: Vec<_> = events
                .into_iter()
                .filter(|raw| {
                    let (id, sent) = id_and_time(raw);
                    matches!((id, sent), (Some(id), Some(sent)) if self.seen.missed(&room, &id, sent, horizon))
                })
                .collect();
            debug!(%room, missed = missed.len(), "a room caught up with");
            for raw in missed.into_iter().rev() {
                taken += 1;
                self.on_event(raw).await;
            }
        }
        match taken {
            0 => debug!("caught up: nothing was missed"),
            n => info!(
                events = n,
                "caught up: events the homeserver had not sent taken in"
            ),
        }
    }
}

/// An event's id and when it was sent.
fn id_and_time(
    raw: &ruma::serde::Raw<ruma::events::AnyTimelineEvent>,
) -> (Option<OwnedEventId>, Option<MilliSecondsSinceUnixEpoch>) {
    (
        raw.get_field("event_id").ok().flatten(),
        raw.get_field("origin_server_ts").ok().flatten(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: usize) -> OwnedEventId {
        format!("$e{n}:hs").try_into().unwrap()
    }

    fn at(ms: u64) -> MilliSecondsSinceUnixEpoch {
        MilliSecondsSinceUnixEpoch(ms.try_into().unwrap())
    }

    #[test]
    fn an_event_is_taken_once_and_a_catch_up_takes_only_what_was_missed() {
        let seen = Seen::default();
        let room: OwnedRoomId = "!r:hs".try_into().unwrap();
        assert!(seen.first_time(&room, &id(1), at(1000)));
        assert!(!seen.first_time(&room, &id(1), at(1000)));
        assert!(seen.first_time(&room, &id(3), at(3000)));
        // Missed: sent after the first one seen, never taken in.
        assert!(seen.missed(&room, &id(2), at(2000), at(0)));
        assert!(!seen.missed(&room, &id(3), at(3000), at(0)));
        // Before the horizon: sent before the homeserver went away, or while nobody watched.
        assert!(!seen.missed(&room, &id(2), at(2000), at(2500)));
        // History from before the gateway watched the room.
        assert!(!seen.missed(&room, &id(0), at(500), at(0)));
        // A room never seen: nothing to compare with, nothing taken.
        let other: OwnedRoomId = "!o:hs".try_into().unwrap();
        assert!(!seen.missed(&other, &id(9), at(9000), at(0)));
    }

    #[test]
    fn the_memory_is_bounded_and_keeps_the_newest() {
        let seen = Seen::default();
        let room: OwnedRoomId = "!r:hs".try_into().unwrap();
        for n in 0..REMEMBERED + 10 {
            assert!(seen.first_time(&room, &id(n), at(1000 + n as u64)));
        }
        {
            let rooms = seen.rooms.lock().unwrap();
            let recent = &rooms[&room];
            assert_eq!(recent.order.len(), REMEMBERED);
            assert_eq!(recent.ids.len(), REMEMBERED);
            assert!(!recent.ids.contains(&id(0)));
            assert!(recent.ids.contains(&id(REMEMBERED + 9)));
        }
        // Forgotten, so not to be taken again by a catch-up that reads back that far.
        assert!(!seen.missed(&room, &id(0), at(1000), at(0)));
        assert!(seen.missed(
            &room,
            &id(100_000),
            at(1000 + REMEMBERED as u64 + 100),
            at(0)
        ));
    }

    #[test]
    fn a_catch_up_reads_back_to_an_event_from_before_the_outage() {
        let seen = Seen::default();
        let room: OwnedRoomId = "!r:hs".try_into().unwrap();
        seen.first_time(&room, &id(1), at(1000));
        seen.first_time(&room, &id(5), at(5000));
        assert!(seen.known_before(&room, &id(1), at(1000), at(3000)));
        // Taken in, but after the homeserver went away: not far enough back.
        assert!(!seen.known_before(&room, &id(5), at(5000), at(3000)));
        assert!(!seen.known_before(&room, &id(2), at(2000), at(3000)));
    }
}
