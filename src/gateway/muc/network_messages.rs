//! What the network reports being said: room and private messages (archived, with their
//! stanza-ids, corrections, replies and delays), subjects, retractions, reactions,
//! invitations, the server's own text, and messages it could not deliver.

use std::time::{SystemTime, UNIX_EPOCH};

use causeway_bridge::{Event, MessageKind, Peer, RoomRef, Said};
use tokio_xmpp::jid::{BareJid, Jid};
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::message::{Message, MessageType};
use tokio_xmpp::parsers::stanza_error::{DefinedCondition, ErrorType};
use tokio_xmpp::Stanza;

use super::{new_id, Effects, Muc, RoomState};
use crate::gateway::mam::{new_stanza_id, stanza_id_element};
use crate::gateway::occupant_id;
use crate::gateway::oob;
use crate::gateway::privilege::Push;
use crate::gateway::rich;
use crate::gateway::stanzas::{delay, error, message, message_error, nc};
use crate::store::ArchivedMessage;

impl Muc {
    /// A message in a room: archived once for the user when the room is recorded, and
    /// shown to every joined resource.
    pub(super) fn room_message(&mut self, fx: &mut Effects, user: &BareJid, event: Event) {
        let Event::Message {
            peer: Peer::Room(room),
            from,
            body,
            kind,
            time,
            own_id,
            remote_id,
            refs,
            media,
            ..
        } = event
        else {
            return;
        };
        let key = Self::key(user, &room);
        let file = media.as_deref().map(oob::element);
        let Some(state) = self.rooms.get_mut(&key) else {
            return;
        };
        let origin = own_id.as_ref().and_then(|id| state.origin_ids.remove(id));
        let text = with_kind(body, kind);
        let recorded = state.joined && state.record;
        // The stanza-id is the network's id of the message, else its id in the
        // archive: one archive entry per user and message, whose id every resource
        // sees, stable across restarts. A message kept nowhere gets none, so that no
        // client pages the archive from an id it does not hold (XEP-0359, XEP-0313).
        let stanza_id = remote_id.or_else(|| recorded.then(new_stanza_id));
        let room_jid = state.jid.clone();
        // The sender's occupant JID and occupant-id once for all resources.
        let sender = state.speaker(&from);
        let sender_id = occupant_id::element(&state.occupant_id(&from));
        if let (true, Some(room_jid), Some(stanza_id)) = (recorded, &room_jid, &stanza_id) {
            fx.archive.push(ArchivedMessage {
                stanza_id: stanza_id.clone(),
                user: user.to_string(),
                room: room_jid.to_string(),
                sender: from.clone(),
                body: text.clone(),
                origin_id: origin
                    .as_ref()
                    .and_then(|o| o.attr("id"))
                    .map(str::to_owned),
                at_ms: unix_ms(time),
            });
        }
        let message_id = own_id
            .clone()
            .or_else(|| stanza_id.clone())
            .or_else(|| Some(new_id()));
        self.broadcast_to(fx, &key, |state, to| {
            let sender = sender.clone()?;
            let mut msg = message(
                MessageType::Groupchat,
                sender,
                to,
                message_id.clone(),
                &text,
            );
            if let Some(origin) = &origin {
                msg.payloads.push(origin.clone());
            }
            let answered = refs.reply_to.as_ref().and_then(|r| r.nick.as_deref());
            let answered = answered.and_then(|nick| state.occupant(nick));
            rich::mark_refs(&mut msg, &text, &refs, answered.as_ref());
            if let (Some(room_jid), Some(stanza_id)) = (&room_jid, &stanza_id) {
                msg.payloads.push(stanza_id_element(stanza_id, room_jid));
            }
            if let Some(delay) = time.and_then(|t| delay(room_jid.clone()?.into(), t)) {
                msg.payloads.push(delay.into());
            }
            msg.payloads.push(sender_id.clone());
            msg.payloads.extend(file.clone());
            Some(msg.into())
        });
    }

    /// What was said in a room before the user joined: into the archive (once per message,
    /// by its network id), where the join history that follows reads it.
    pub(super) fn history(
        &self,
        fx: &mut Effects,
        user: &BareJid,
        room: &RoomRef,
        messages: Vec<Said>,
    ) {
        let Some(state) = self.rooms.get(&Self::key(user, room)) else {
            return;
        };
        let (true, Some(room_jid)) = (state.record, &state.jid) else {
            return;
        };
        for said in messages {
            fx.archive.push(ArchivedMessage {
                stanza_id: said.remote_id,
                user: user.to_string(),
                room: room_jid.to_string(),
                sender: said.from,
                body: with_kind(said.body, said.kind),
                origin_id: None,
                at_ms: unix_ms(Some(said.time)),
            });
        }
    }

    /// A private message from a remote user.
    pub(super) fn private_message(&self, fx: &mut Effects, user: &BareJid, event: Event) {
        let Event::Message {
            peer: Peer::User { server, nick },
            from,
            body,
            kind,
            time,
            own_id,
            remote_id,
            refs,
            media,
            ..
        } = event
        else {
            return;
        };
        // From the peer's address, not `from`: that is the name the sender shows as, which
        // on Matrix is a display name, not the user id the address is made of.
        let Ok(sender) = self.addressing.user_jid(&server, &nick) else {
            return;
        };
        // Someone the user talks with goes in their contacts, under the name they show as.
        let group = match self.addressing.is_matrix() {
            true => "Matrix".to_owned(),
            false => format!("IRC: {server}"),
        };
        fx.pushes.push(Push::Contact {
            user: user.clone(),
            contact: sender.clone(),
            name: if own_id.is_some() { nick.clone() } else { from },
            group,
        });
        if own_id.is_some() {
            // Our own private message: XEP-0280 carbons are the server's business.
            return;
        }
        // The network's id, where it has one, is the message's id: what corrections,
        // replies, retractions and reactions name.
        let text = with_kind(body, kind);
        let mut msg = message(
            MessageType::Chat,
            sender.clone().into(),
            user.clone().into(),
            remote_id,
            &text,
        );
        rich::mark_refs(&mut msg, &text, &refs, None);
        msg.payloads.extend(media.as_deref().map(oob::element));
        if let Some(delay) = time.and_then(|t| delay(sender.into(), t)) {
            msg.payloads.push(delay.into());
        }
        fx.stanzas.push(msg.into());
    }

    /// A remote user took back a message of a direct chat, or changed their reactions to
    /// one: a chat message from them (XEP-0424, XEP-0444).
    pub(super) fn direct_rich(&self, fx: &mut Effects, user: &BareJid, event: Event) {
        let (server, nick, payloads, text) = match event {
            Event::Retracted {
                peer: Peer::User { server, nick },
                id,
                reason,
                ..
            } => {
                let payloads = rich::retracted(&id, None, reason.as_deref());
                (
                    server,
                    nick,
                    payloads,
                    Some(rich::retracted_fallback(false)),
                )
            }
            Event::Reactions {
                peer: Peer::User { server, nick },
                id,
                reactions,
                ..
            } => (
                server,
                nick,
                rich::reactions_payloads(&id, &reactions),
                None,
            ),
            _ => return,
        };
        let Ok(sender) = self.addressing.user_jid(&server, &nick) else {
            return;
        };
        let mut msg = match text {
            Some(text) => message(
                MessageType::Chat,
                sender.into(),
                user.clone().into(),
                None,
                text,
            ),
            None => {
                let mut msg = Message::chat(Some(user.clone().into()));
                msg.from = Some(sender.into());
                msg
            }
        };
        msg.payloads.extend(payloads);
        fx.stanzas.push(msg.into());
    }

    /// The subject changed, by someone or by the room itself.
    pub(super) fn subject(
        &mut self,
        fx: &mut Effects,
        user: &BareJid,
        room: &RoomRef,
        subject: String,
        by: Option<String>,
    ) {
        if let Some(state) = self.rooms.get_mut(&Self::key(user, room)) {
            state.subject = subject.clone();
        }
        self.broadcast(fx, user, room, |state, to| {
            let from = match &by {
                Some(nick) => state.occupant(nick)?,
                None => state.room_jid()?,
            };
            Some(RoomState::subject_message(from, to, &subject))
        });
    }

    /// A message in a room was taken back by its sender, or removed by a moderator.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn retracted(
        &self,
        fx: &mut Effects,
        user: &BareJid,
        room: &RoomRef,
        id: &str,
        from: &str,
        moderator: Option<String>,
        reason: Option<String>,
    ) {
        self.broadcast(fx, user, room, |state, to| {
            let (sender, moderated_by) = match &moderator {
                Some(nick) => (state.room_jid()?, Some(state.occupant(nick)?)),
                None => (state.occupant(from)?, None),
            };
            let text = rich::retracted_fallback(moderated_by.is_some());
            let mut msg = message(MessageType::Groupchat, sender, to, None, text);
            msg.payloads.extend(rich::retracted(
                id,
                moderated_by.as_ref(),
                reason.as_deref(),
            ));
            // A moderator's removal comes from the room itself: no occupant's id.
            Some(match &moderator {
                Some(_) => msg.into(),
                None => state.stamped(from, msg.into()),
            })
        });
    }

    /// Someone's reactions to a message in a room, as the whole set they now hold.
    pub(super) fn reactions(
        &self,
        fx: &mut Effects,
        user: &BareJid,
        room: &RoomRef,
        from: &str,
        id: &str,
        reactions: &[String],
    ) {
        self.broadcast(fx, user, room, |state, to| {
            let sender = state.occupant(from)?;
            let mut msg = Message::groupchat(Some(to));
            msg.from = Some(sender);
            msg.payloads.extend(rich::reactions_payloads(id, reactions));
            Some(state.stamped(from, msg.into()))
        });
    }

    /// A XEP-0249 direct invitation to `room`, from the inviter's JID (or the gateway).
    pub(super) fn invitation(
        &self,
        user: &BareJid,
        room: &RoomRef,
        by: Option<(String, String)>,
        reason: Option<String>,
    ) -> Option<Stanza> {
        let room_jid = self.room_jid(room)?;
        let from = by
            .and_then(|(server, nick)| self.addressing.user_jid(&server, &nick).ok())
            .map(Jid::from)
            .or_else(|| self.addressing.gateway_jid().ok().map(Jid::from))?;
        let mut msg = Message::new(Some(user.clone().into()));
        msg.type_ = MessageType::Normal;
        msg.from = Some(from);
        let mut x =
            Element::builder("x", "jabber:x:conference").attr(nc("jid"), room_jid.to_string());
        if let Some(reason) = reason.filter(|r| !r.is_empty()) {
            x = x.attr(nc("reason"), reason);
        }
        msg.payloads.push(x.build());
        Some(msg.into())
    }

    /// What the server says to the user, from the server's JID.
    pub(super) fn server_text(&self, fx: &mut Effects, user: BareJid, server: &str, text: &str) {
        if let Ok(from) = self.addressing.server_jid(server) {
            fx.stanzas
                .push(message(MessageType::Chat, from.into(), user.into(), None, text).into());
        }
    }

    /// A message the network could not deliver: an error from the room to its joined
    /// resources (servers drop errors addressed to a bare JID), or from the remote user.
    /// Without the message's id, a client has no message to mark (Conversations drops such
    /// an error): the failure is a notice instead, [`Muc::notice`].
    pub(super) fn send_failed(
        &self,
        fx: &mut Effects,
        user: BareJid,
        peer: Peer,
        id: Option<String>,
        text: String,
    ) {
        if id.is_none() {
            return self.notice(fx, user, peer, &text);
        }
        match peer {
            Peer::Room(room) => self.broadcast(fx, &user, &room, |state, to| {
                let err = error(ErrorType::Cancel, DefinedCondition::NotAcceptable, &text);
                Some(message_error(state.room_jid()?, to, id.clone(), err))
            }),
            Peer::User { server, nick } => {
                if let Ok(to) = self.addressing.user_jid(&server, &nick) {
                    let err = error(ErrorType::Cancel, DefinedCondition::NotAcceptable, text);
                    fx.stanzas
                        .push(message_error(to.into(), user.into(), id, err));
                }
            }
        }
    }
}

impl Muc {
    /// The gateway's word about a conversation: in a room, a message from the room itself
    /// (XEP-0045's room messages, which every client shows in the room); about a person, a
    /// message from their network's server JID, which is where the gateway speaks.
    fn notice(&self, fx: &mut Effects, user: BareJid, peer: Peer, text: &str) {
        match peer {
            Peer::Room(room) => self.broadcast(fx, &user, &room, |state, to| {
                let from = state.room_jid()?;
                Some(message(MessageType::Groupchat, from, to, Some(new_id()), text).into())
            }),
            Peer::User { server, nick } => {
                self.server_text(fx, user, &server, &format!("To {nick}: {text}"))
            }
        }
    }
}

/// When a message was sent (now, when the network does not say), in milliseconds since
/// 1970.
fn unix_ms(time: Option<SystemTime>) -> i64 {
    time.unwrap_or_else(SystemTime::now)
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// How an action or notice reads in XMPP.
fn with_kind(body: String, kind: MessageKind) -> String {
    match kind {
        MessageKind::Action => format!("/me {body}"),
        MessageKind::Normal | MessageKind::Notice => body,
    }
}
