//! Events the homeserver pushes, turned into bridge events for the XMPP users concerned.

use std::time::{Duration, SystemTime};

use causeway_bridge::{Event, Peer, UserRef};
use ruma::events::room::member::MembershipState;
use ruma::events::room::message::OriginalRoomMessageEvent;
use ruma::events::{
    AnyMessageLikeEvent, AnyStateEvent, AnyTimelineEvent, MessageLikeEvent, StateEvent,
};
use ruma::serde::Raw;
use ruma::RoomId;
use tracing::{debug, info, warn};

use crate::client::Retry;
use crate::rooms::{Change, Membership};
use crate::{ids, text, Inner};

/// How late an event may arrive and still count as live (no XEP-0203 delay).
const LIVE: Duration = Duration::from_secs(10);

/// When the event was sent, if it arrives late enough for clients to show it as delayed
/// (after an outage of the homeserver, the gateway or the link).
fn delayed(sent: ruma::MilliSecondsSinceUnixEpoch) -> Option<SystemTime> {
    let at = SystemTime::UNIX_EPOCH + Duration::from_millis(u64::from(sent.0));
    let late = SystemTime::now().duration_since(at).unwrap_or_default();
    (late > LIVE).then_some(at)
}

impl Inner {
    /// One event of a transaction.
    pub(crate) async fn on_event(&self, raw: Raw<AnyTimelineEvent>) {
        let event = match raw.deserialize() {
            Ok(event) => event,
            Err(e) => {
                let kind = raw.get_field::<String>("type").ok().flatten();
                warn!(?kind, error = %e, "skipping an event that does not parse");
                return;
            }
        };
        let room_id = event.room_id().to_owned();
        let sender = event.sender().to_string();
        let events = match event {
            AnyTimelineEvent::State(AnyStateEvent::RoomMember(StateEvent::Original(ev))) => {
                let target = ev.state_key.to_string();
                let content = ev.content;
                match content.membership {
                    MembershipState::Invite => {
                        if let Some(user) = self.puppet_owner(&target) {
                            self.invited(
                                user,
                                &room_id,
                                &sender,
                                content.is_direct,
                                content.reason,
                            )
                            .await;
                        }
                        return;
                    }
                    MembershipState::Join | MembershipState::Leave | MembershipState::Ban => {
                        let membership = match content.membership {
                            MembershipState::Join => Membership::Join {
                                display: content.displayname,
                            },
                            MembershipState::Ban => Membership::Ban,
                            _ => Membership::Leave,
                        };
                        let change = Change {
                            target: &target,
                            sender: &sender,
                            membership,
                            reason: content.reason,
                        };
                        self.rooms
                            .lock()
                            .expect("rooms lock")
                            .membership(&room_id, change)
                    }
                    _ => return,
                }
            }
            AnyTimelineEvent::State(AnyStateEvent::RoomTopic(StateEvent::Original(ev))) => self
                .rooms
                .lock()
                .expect("rooms lock")
                .topic(&room_id, &sender, ev.content.topic),
            AnyTimelineEvent::State(AnyStateEvent::RoomPowerLevels(StateEvent::Original(ev))) => {
                let Ok(power) = serde_json::to_value(&ev.content) else {
                    return;
                };
                self.rooms
                    .lock()
                    .expect("rooms lock")
                    .power(&room_id, &power)
            }
            AnyTimelineEvent::MessageLike(AnyMessageLikeEvent::RoomMessage(
                MessageLikeEvent::Original(ev),
            )) => self.on_message(&room_id, &sender, ev).await,
            other => {
                debug!(kind = %other.event_type(), room = %room_id, "event not bridged");
                return;
            }
        };
        for event in events {
            if self.emit.send(event).await.is_err() {
                return;
            }
        }
    }

    async fn on_message(
        &self,
        room_id: &RoomId,
        sender: &str,
        ev: OriginalRoomMessageEvent,
    ) -> Vec<Event> {
        let (body, kind) = text::readable(&ev.content.msgtype);
        let time = delayed(ev.origin_server_ts);
        let event_id = ev.event_id.to_string();
        let tracked = self.rooms.lock().expect("rooms lock").is_tracked(room_id);
        if tracked {
            return self.rooms.lock().expect("rooms lock").spoke(
                room_id,
                sender,
                |user, room, nick| Event::Message {
                    user: user.clone(),
                    peer: Peer::Room(room.clone()),
                    from: nick.to_owned(),
                    body: body.clone(),
                    kind,
                    time,
                    own_id: None,
                    remote_id: Some(event_id.clone()),
                },
            );
        }
        let parties = match self.store.direct_room_parties(room_id.as_str()).await {
            Ok(parties) => parties,
            Err(e) => {
                warn!(room = %room_id, error = %e, "cannot look up the direct room");
                return vec![];
            }
        };
        let Some((puppet, remote)) = parties else {
            debug!(room = %room_id, "message in a room no XMPP user is in");
            return vec![];
        };
        if sender != remote {
            return vec![];
        }
        let (Some(user), Some((local, server))) =
            (self.puppet_owner(&puppet), ids::split_user_id(&remote))
        else {
            return vec![];
        };
        vec![Event::Message {
            user,
            peer: Peer::User {
                server: server.to_owned(),
                nick: local.to_owned(),
            },
            from: String::new(),
            body,
            kind,
            time,
            own_id: None,
            remote_id: Some(event_id),
        }]
    }

    /// A puppet was invited: a direct chat is joined at once and remembered; a room invite
    /// goes to the XMPP user as an invitation.
    async fn invited(
        &self,
        user: UserRef,
        room_id: &RoomId,
        inviter: &str,
        is_direct: Option<bool>,
        reason: Option<String>,
    ) {
        self.remember_room(room_id).await;
        let by = ids::split_user_id(inviter).map(|(l, s)| (s.to_owned(), l.to_owned()));
        if is_direct == Some(true) {
            let puppet = self.puppet_id(&user);
            let join = ruma::api::client::membership::join_room_by_id::v3::Request::new(
                room_id.to_owned(),
            );
            if let Err(e) = self
                .client
                .call(join, Some(&puppet), Retry::For(Duration::from_secs(60)))
                .await
            {
                warn!(room = %room_id, error = %e, "cannot join the direct room");
                return;
            }
            if let Err(e) = self
                .store
                .set_direct_room(puppet.as_str(), inviter, room_id.as_str())
                .await
            {
                warn!(room = %room_id, error = %e, "cannot remember the direct room");
            }
            info!(room = %room_id, %inviter, "joined a direct room");
            return;
        }
        let event = Event::Invited {
            user,
            room: ids::room_ref_of_id(room_id.as_str()),
            by,
            reason,
        };
        let _ = self.emit.send(event).await;
    }
}
