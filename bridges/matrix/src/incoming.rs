//! Events the homeserver pushes, turned into bridge events for the XMPP users concerned.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use causeway_bridge::{Event, MessageKind, Peer, Refs, ReplyTo, UserRef};
use ruma::api::client::state;
use ruma::events::room::member::MembershipState;
use ruma::events::room::message::{OriginalRoomMessageEvent, Relation};
use ruma::events::room::redaction::RoomRedactionEvent;
use ruma::events::{
    AnyMessageLikeEvent, AnyStateEvent, AnyTimelineEvent, MessageLikeEvent, StateEvent,
    StateEventType,
};
use ruma::serde::Raw;
use ruma::{EventId, OwnedUserId, RoomId};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::client::{Client, Retry};
use crate::directory::Directory;
use crate::links::{parse_reaction_link, reaction_link, MessageLinks};
use crate::puppets::Puppets;
use crate::rooms::{Change, Membership};
use crate::{ids, text, SharedRooms};

/// How late an event may arrive and still count as live (no XEP-0203 delay).
const LIVE: Duration = Duration::from_secs(10);

/// When the event was sent, if it arrives late enough for clients to show it as delayed
/// (after an outage of the homeserver, the gateway or the link).
fn delayed(sent: ruma::MilliSecondsSinceUnixEpoch) -> Option<SystemTime> {
    let at = SystemTime::UNIX_EPOCH + Duration::from_millis(u64::from(sent.0));
    let late = SystemTime::now().duration_since(at).unwrap_or_default();
    (late > LIVE).then_some(at)
}

/// The transaction side: what happens in the puppets' rooms, for the XMPP users there.
#[derive(Debug)]
pub(crate) struct Incoming {
    /// Fetches the events replies answer.
    pub client: Client,
    /// Tells our puppets (whose messages are reflected, not relayed) from other senders.
    pub puppets: Arc<Puppets>,
    /// Links what arrives, finds what redactions name.
    pub links: Arc<MessageLinks>,
    /// Remembers rooms puppets are invited to; knows the direct rooms.
    pub directory: Arc<Directory>,
    /// Who is seated where, and the members they see.
    pub rooms: SharedRooms,
    /// Events for the core.
    pub emit: mpsc::Sender<Event>,
    /// The events of transactions taken in lately: each is taken once, from a transaction
    /// or a catch-up (a personal login's sync needs none: it resumes where it was).
    pub seen: crate::catch_up::Seen,
    /// Who the homeserver last said was typing where.
    pub typists: crate::signals::Typists,
    /// The links to the files received.
    pub shelf: Arc<crate::media::Shelf>,
    /// The XMPP user of a personal login, whose login fetches its files; `None` for the
    /// appservice.
    pub owner: Option<UserRef>,
    /// The avatars' pictures.
    pub pictures: Arc<crate::pictures::Pictures>,
}

impl Incoming {
    /// One event of a transaction (or of a catch-up): taken in once, however often the
    /// homeserver sends it.
    pub(crate) async fn on_event(&self, raw: Raw<AnyTimelineEvent>) {
        let room = raw.get_field::<ruma::OwnedRoomId>("room_id").ok().flatten();
        let id = raw
            .get_field::<ruma::OwnedEventId>("event_id")
            .ok()
            .flatten();
        let sent = raw
            .get_field::<ruma::MilliSecondsSinceUnixEpoch>("origin_server_ts")
            .ok()
            .flatten();
        if let (Some(room), Some(id), Some(sent)) = (room, id, sent) {
            if !self.seen.first_time(&room, &id, sent) {
                debug!(event = %id, "an event taken in before, skipped");
                return;
            }
        }
        self.on_event_from(raw, false).await;
    }

    /// One event; `elsewhere` when it is the user's own, sent from another of their
    /// devices (a personal login), and so is shown to them rather than skipped as an echo.
    pub(crate) async fn on_event_from(&self, raw: Raw<AnyTimelineEvent>, elsewhere: bool) {
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
        // Avatars to fetch once the events are told (a new member's picture comes after
        // the member).
        let mut later = Vec::new();
        let events = match event {
            AnyTimelineEvent::State(AnyStateEvent::RoomMember(StateEvent::Original(ev))) => {
                let target = ev.state_key.to_string();
                let content = ev.content;
                match content.membership {
                    MembershipState::Invite => {
                        if let Some(user) = self.puppets.owner(&target) {
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
                        let joined = matches!(membership, Membership::Join { .. });
                        let change = Change {
                            target: &target,
                            sender: &sender,
                            membership,
                            reason: content.reason,
                        };
                        let mut rooms = self.rooms.lock().expect("rooms lock");
                        let mut events = rooms.membership(&room_id, change);
                        if joined {
                            let avatar = content.avatar_url.map(|url| url.to_string());
                            events.extend(avatar_changed(
                                &mut rooms,
                                &room_id,
                                Some(&target),
                                avatar,
                                &mut later,
                            ));
                        }
                        events
                    }
                    _ => return,
                }
            }
            AnyTimelineEvent::State(AnyStateEvent::RoomTopic(StateEvent::Original(ev))) => self
                .rooms
                .lock()
                .expect("rooms lock")
                .topic(&room_id, &sender, ev.content.topic),
            AnyTimelineEvent::State(AnyStateEvent::RoomAvatar(StateEvent::Original(ev))) => {
                let avatar = ev.content.url.map(|url| url.to_string());
                let mut rooms = self.rooms.lock().expect("rooms lock");
                avatar_changed(&mut rooms, &room_id, None, avatar, &mut later)
            }
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
            )) => self.on_message(&room_id, &sender, ev, elsewhere).await,
            AnyTimelineEvent::MessageLike(AnyMessageLikeEvent::Reaction(
                MessageLikeEvent::Original(ev),
            )) => {
                let target = ev.content.relates_to.event_id.to_string();
                let key = ev.content.relates_to.key;
                let link = reaction_link(&target, &key);
                self.links
                    .link(&room_id, &link, ev.event_id.as_str(), &sender)
                    .await;
                self.reactions_of(&room_id, &target, &sender, elsewhere)
                    .await
            }
            AnyTimelineEvent::MessageLike(AnyMessageLikeEvent::RoomRedaction(
                RoomRedactionEvent::Original(ev),
            )) => {
                let Some(redacted) = ev.content.redacts.or(ev.redacts) else {
                    return;
                };
                let reason = ev.content.reason;
                self.on_redaction(&room_id, &sender, redacted.as_str(), reason, elsewhere)
                    .await
            }
            other => {
                debug!(kind = %other.event_type(), room = %room_id, "event not bridged");
                return;
            }
        };
        // Members shown for the first time (a big room's, as they speak) bring their
        // avatars to fetch.
        let shown: Vec<String> = events
            .iter()
            .filter_map(|event| match event {
                Event::MemberJoined { member, .. } if member.picture.is_none() => member.id.clone(),
                _ => None,
            })
            .collect();
        for event in events {
            if self.emit.send(event).await.is_err() {
                return;
            }
        }
        if !shown.is_empty() {
            let rooms = self.rooms.lock().expect("rooms lock");
            for id in shown {
                let wanted = rooms.unfetched_member(&room_id, &id);
                later.extend(wanted.filter(|w| !later.contains(w)));
            }
        }
        self.pictures.fetch(room_id, later);
    }

    async fn on_message(
        &self,
        room_id: &RoomId,
        sender: &str,
        ev: OriginalRoomMessageEvent,
        elsewhere: bool,
    ) -> Vec<Event> {
        let mut refs = Refs::none();
        let content = match &ev.content.relates_to {
            Some(Relation::Replacement(replacement)) => {
                refs.replaces = Some(replacement.event_id.to_string());
                &replacement.new_content.msgtype
            }
            Some(Relation::Reply(reply)) => {
                refs.reply_to = Some(self.answered(room_id, &reply.in_reply_to.event_id).await);
                &ev.content.msgtype
            }
            _ => &ev.content.msgtype,
        };
        // A file: the gateway's link to it, once for everyone who sees it.
        let (body, kind, media) = match crate::media::file_of(content) {
            Some(file) => {
                let event_id = ev.event_id.as_str();
                let (body, media) = self.shelf.offer(self.owner.as_ref(), event_id, &file).await;
                (body, MessageKind::Normal, media)
            }
            None => {
                let (body, kind) = text::readable(content);
                (body, kind, None)
            }
        };
        let time = delayed(ev.origin_server_ts);
        let event_id = ev.event_id.to_string();
        // Our puppets' messages are linked by the worker that sent them, under the XMPP id;
        // what the user sent from another device is known by its event id, like anyone's.
        if refs.replaces.is_none() && (elsewhere || self.puppets.owner(sender).is_none()) {
            // Known by its event id on both sides, for the edits, retractions, reactions and
            // replies that may follow.
            self.links.link(room_id, &event_id, &event_id, sender).await;
        }
        let tracked = self.rooms.lock().expect("rooms lock").is_tracked(room_id);
        if tracked {
            let mut rooms = self.rooms.lock().expect("rooms lock");
            return rooms.spoke_as(elsewhere, room_id, sender, &|user, room, nick| {
                Event::Message {
                    user: user.clone(),
                    peer: Peer::Room(room.clone()),
                    from: nick.to_owned(),
                    body: body.clone(),
                    kind,
                    time,
                    own_id: None,
                    remote_id: Some(event_id.clone()),
                    refs: refs.clone(),
                    media: media.clone(),
                }
            });
        }
        let Some((user, peer)) = self.direct_peer(room_id, sender).await else {
            return vec![];
        };
        let from = self.direct_nick(room_id, sender, &user).await;
        vec![Event::Message {
            user,
            peer,
            from,
            body,
            kind,
            time,
            own_id: None,
            remote_id: Some(event_id),
            refs,
            media,
        }]
    }

    /// The XMPP user whose direct room with `sender` this is, and `sender` as their peer.
    /// What the XMPP user's own puppet or account sends there is theirs already; in a
    /// direct room of two puppets, each one's message is the other's to hear.
    pub(crate) async fn direct_peer(
        &self,
        room_id: &RoomId,
        sender: &str,
    ) -> Option<(UserRef, Peer)> {
        let parties = match self.directory.direct_room_parties(room_id).await {
            Ok(parties) => parties,
            Err(e) => {
                warn!(room = %room_id, error = %e, "cannot look up the direct room");
                return None;
            }
        };
        if parties.is_empty() {
            debug!(room = %room_id, "event in a room no XMPP user is in");
            return None;
        }
        let (puppet, remote) = parties.into_iter().find(|(_, remote)| remote == sender)?;
        let user = self.puppets.owner(&puppet)?;
        let (local, server) = ids::split_user_id(&remote)?;
        let peer = Peer::User {
            server: server.to_owned(),
            nick: local.to_owned(),
        };
        Some((user, peer))
    }

    /// The nick `sender` shows as in a direct room, read as `reader`'s puppet: its display
    /// name there, as the gateway takes display names, else its localpart.
    async fn direct_nick(&self, room_id: &RoomId, sender: &str, reader: &UserRef) -> String {
        let request = state::get_state_event_for_key::v3::Request::new(
            room_id.to_owned(),
            StateEventType::RoomMember,
            sender.to_owned(),
        );
        let puppet = self.puppets.id(reader);
        let display = match self.client.call(request, Some(&puppet), Retry::Once).await {
            Ok(found) => serde_json::from_str::<serde_json::Value>(found.event_or_content.get())
                .ok()
                .and_then(|member| Some(member["displayname"].as_str()?.to_owned())),
            Err(e) => {
                debug!(room = %room_id, %sender, error = %e, "cannot read the member's name");
                None
            }
        };
        let rooms = self.rooms.lock().expect("rooms lock");
        rooms.nick_for(sender, display.as_deref())
    }

    /// What a reply answers: the original's sender and text, fetched from the homeserver
    /// (the original may predate the gateway), for the quote XMPP clients without replies
    /// show.
    async fn answered(&self, room_id: &RoomId, original: &EventId) -> ReplyTo {
        let mut reply = ReplyTo {
            id: original.to_string(),
            ..ReplyTo::default()
        };
        let puppet = {
            let rooms = self.rooms.lock().expect("rooms lock");
            rooms.any_puppet(room_id)
        };
        let Some(puppet) = puppet.and_then(|p| OwnedUserId::try_from(p).ok()) else {
            return reply;
        };
        let request = ruma::api::client::room::get_room_event::v3::Request::new(
            room_id.to_owned(),
            original.to_owned(),
        );
        match self.client.call(request, Some(&puppet), Retry::Once).await {
            Ok(found) => {
                let event: serde_json::Value =
                    serde_json::from_str(found.event.json().get()).unwrap_or_default();
                if let Some(sender) = event["sender"].as_str() {
                    reply.nick = self
                        .rooms
                        .lock()
                        .expect("rooms lock")
                        .nick_of(room_id, sender);
                }
                // The latest edit, which the homeserver bundles, is what readers see.
                let edited = &event["unsigned"]["m.relations"]["m.replace"]["content"];
                let body = edited["m.new_content"]["body"]
                    .as_str()
                    .or(event["content"]["body"].as_str())
                    .unwrap_or_default();
                let body = text::strip_reply_fallback(body);
                reply.quote = (!body.is_empty()).then(|| body.to_owned());
            }
            Err(e) => debug!(error = %e, "cannot fetch the answered event"),
        }
        reply
    }

    /// `sender`'s reactions to `target` now, for every XMPP user in the room but the
    /// sender's own (reflected when it reacted); with `elsewhere` (the user's own, from
    /// another device), for that user alone.
    async fn reactions_of(
        &self,
        room_id: &RoomId,
        target: &str,
        sender: &str,
        elsewhere: bool,
    ) -> Vec<Event> {
        let reactions = match self.links.reactions(room_id, target, sender).await {
            Ok(found) => found.into_iter().map(|(key, _)| key).collect::<Vec<_>>(),
            Err(e) => {
                warn!(error = %e, "cannot look up reactions");
                return vec![];
            }
        };
        let tracked = self.rooms.lock().expect("rooms lock").is_tracked(room_id);
        if !tracked {
            let Some((user, peer)) = self.direct_peer(room_id, sender).await else {
                return vec![];
            };
            return vec![Event::Reactions {
                user,
                peer,
                from: String::new(),
                id: target.to_owned(),
                reactions,
            }];
        }
        let mut rooms = self.rooms.lock().expect("rooms lock");
        rooms.spoke_as(elsewhere, room_id, sender, &|user, room, nick| {
            Event::Reactions {
                user: user.clone(),
                peer: Peer::Room(room.clone()),
                from: nick.to_owned(),
                id: target.to_owned(),
                reactions: reactions.clone(),
            }
        })
    }

    /// A redaction: a reaction taken back, a message retracted by its sender, or a message
    /// removed by a moderator; `elsewhere` as for messages.
    async fn on_redaction(
        &self,
        room_id: &RoomId,
        sender: &str,
        redacted: &str,
        reason: Option<String>,
        elsewhere: bool,
    ) -> Vec<Event> {
        // Whatever it was: a removed file is no longer served.
        self.shelf.withdraw(redacted).await;
        let link = match self.links.find(room_id, redacted).await {
            Ok(Some(link)) if link.event_id == redacted => link,
            Ok(_) => {
                debug!(room = %room_id, redacted, "redaction of an event not bridged");
                return vec![];
            }
            Err(e) => {
                warn!(error = %e, "cannot look up the redacted event");
                return vec![];
            }
        };
        if let Some((target, _)) = parse_reaction_link(&link.xmpp_id) {
            // Forgotten here, not by the worker that redacted it: the link must still be
            // there when the redaction arrives, whichever comes first.
            let target = target.to_owned();
            if let Err(e) = self.links.unlink(room_id, redacted).await {
                warn!(error = %e, "cannot forget a reaction");
            }
            // Their own reaction taken back from another device is theirs to see go; a
            // reaction of someone else's they removed as a moderator is that one's.
            let own = elsewhere && sender == link.sender;
            return self.reactions_of(room_id, &target, &link.sender, own).await;
        }
        let tracked = self.rooms.lock().expect("rooms lock").is_tracked(room_id);
        if !tracked {
            // In a direct room, only the sender takes its own messages back.
            let Some((user, peer)) = self.direct_peer(room_id, sender).await else {
                return vec![];
            };
            if link.sender != sender {
                return vec![];
            }
            return vec![Event::Retracted {
                user,
                peer,
                id: link.event_id.clone(),
                from: String::new(),
                moderator: None,
                reason,
            }];
        }
        let mut rooms = self.rooms.lock().expect("rooms lock");
        let from = rooms
            .nick_of(room_id, &link.sender)
            .unwrap_or_else(|| link.sender.clone());
        let moderator = (sender != link.sender)
            .then(|| rooms.nick_of(room_id, sender))
            .map(|nick| nick.unwrap_or_else(|| sender.to_owned()));
        rooms.spoke_as(elsewhere, room_id, sender, &|user, room, _| {
            Event::Retracted {
                user: user.clone(),
                peer: Peer::Room(room.clone()),
                id: link.event_id.clone(),
                from: from.clone(),
                moderator: moderator.clone(),
                reason: reason.clone(),
            }
        })
    }

    /// A puppet was invited: a direct chat is joined at once and remembered; a room invite
    /// goes to the XMPP user as an invitation.
    pub(crate) async fn invited(
        &self,
        user: UserRef,
        room_id: &RoomId,
        inviter: &str,
        is_direct: Option<bool>,
        reason: Option<String>,
    ) {
        self.directory.remember(room_id).await;
        let by = ids::split_user_id(inviter).map(|(l, s)| (s.to_owned(), l.to_owned()));
        if is_direct == Some(true) {
            self.directory.join_direct(&user, room_id, inviter).await;
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

/// The avatar of a member (`member` none: of the room) is now `avatar`: if it changed, a
/// new one is to be fetched (`later`), and a removed one's picture is gone at once.
fn avatar_changed(
    rooms: &mut crate::rooms::Rooms,
    room: &RoomId,
    member: Option<&str>,
    avatar: Option<String>,
    later: &mut Vec<crate::rooms::Wanted>,
) -> Vec<Event> {
    match (rooms.set_avatar(room, member, avatar.clone()), avatar) {
        (false, _) => vec![],
        (true, Some(avatar)) => {
            let member = member.map(str::to_owned);
            later.push(crate::rooms::Wanted { member, avatar });
            vec![]
        }
        (true, None) => rooms.picture_removed(room, member),
    }
}
