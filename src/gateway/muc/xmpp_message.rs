//! Messages from XMPP: to a room (a subject change, a retraction or reactions where the
//! network has them, else a message), to an occupant or remote user, and raw lines to a
//! server JID.

use causeway_bridge::{Action, MessageKind, Peer, Refs, RoomRef, UserRef};
use tokio_xmpp::jid::{BareJid, FullJid, Jid};
use tokio_xmpp::parsers::message::{Message, MessageType};
use tokio_xmpp::parsers::ns;
use tokio_xmpp::parsers::stanza_error::{DefinedCondition, ErrorType};

use super::{new_id, Effects, Muc, OnError, Request};
use crate::address::IrcAddress;
use crate::gateway::stanzas::{error, message_error};
use crate::gateway::{oob, rich};

/// A client's message, taken apart once.
struct Sent {
    /// The rest of the stanza: payloads, subjects, type.
    msg: Message,
    /// The body without a language, else the first.
    body: Option<String>,
    /// The message id.
    id: Option<String>,
    from: FullJid,
    /// The sender's bare JID.
    bare: BareJid,
    to: Jid,
}

impl Sent {
    /// A request whose refusal goes back as an error to this message.
    fn request(&self, action: Action) -> Request {
        Request {
            user: UserRef(self.bare.as_str().to_owned()),
            action,
            on_error: OnError::Message {
                to: self.to.clone(),
                sender: self.from.clone(),
                id: self.id.clone(),
            },
        }
    }

    /// [`Sent::request`] for the one request this message makes, its id now `id`.
    fn into_request(self, action: Action, id: Option<String>) -> Request {
        Request {
            user: UserRef(self.bare.into_inner()),
            action,
            on_error: OnError::Message {
                to: self.to,
                sender: self.from,
                id,
            },
        }
    }

    /// The typing or reading this message signals, when it has no body; never answered
    /// with an error.
    fn signal(&self, to: &Peer) -> Option<Request> {
        if self.body.is_some() {
            return None;
        }
        Some(Request {
            user: UserRef(self.bare.as_str().to_owned()),
            action: super::signals::signal_action(&self.msg, to)?,
            on_error: OnError::Quiet,
        })
    }

    /// An error back to the sender.
    fn refuse(&self, fx: &mut Effects, condition: DefinedCondition, text: String) {
        fx.stanzas.push(message_error(
            self.to.clone(),
            self.from.clone().into(),
            self.id.clone(),
            error(ErrorType::Cancel, condition, text),
        ));
    }

    /// The body, and the id to send it under (one is made up when the client gave none).
    fn take_body(&mut self) -> Option<(String, String)> {
        let body = self.body.take()?;
        Some((body, self.id.take().unwrap_or_else(new_id)))
    }
}

impl Muc {
    /// A message from an allowed user to a room, an occupant or an IRC user.
    pub fn handle_message(
        &mut self,
        mut msg: Message,
        from: FullJid,
        to: Jid,
        address: IrcAddress,
    ) -> Effects {
        let mut fx = Effects::default();
        let id = msg.id.take().map(|i| i.0);
        // The body is taken, as nothing else reads it.
        let body = msg
            .bodies
            .remove("")
            .or_else(|| msg.bodies.pop_first().map(|(_, body)| body));
        let groupchat = msg.type_ == MessageType::Groupchat;
        let sent = Sent {
            msg,
            body,
            id,
            bare: from.to_bare(),
            from,
            to,
        };
        match address {
            IrcAddress::Channel {
                server,
                channel,
                nick: None,
            } if groupchat => {
                let room = RoomRef {
                    server,
                    name: channel,
                };
                self.send_to_room(&mut fx, sent, room);
            }
            IrcAddress::Channel {
                server,
                nick: Some(nick),
                ..
            }
            | IrcAddress::User { server, nick } => {
                if let (Some(_), Some(id)) = (&sent.body, &sent.id) {
                    self.receipts.ask(&sent.msg, &sent.from, &sent.to, id);
                }
                let peer = Peer::User { server, nick };
                fx.requests.extend(self.send_to_person(sent, peer));
            }
            IrcAddress::Server { server } => {
                if let Some(body) = &sent.body {
                    // Each line a raw command for the server.
                    for line in body.lines().filter(|l| !l.trim().is_empty()) {
                        let action = Action::Raw {
                            server: server.clone(),
                            line: line.to_owned(),
                        };
                        fx.requests.push(sent.request(action));
                    }
                }
            }
            IrcAddress::Channel { .. } => {
                if sent.body.is_some() {
                    sent.refuse(
                        &mut fx,
                        DefinedCondition::BadRequest,
                        "messages to a room are of type groupchat".into(),
                    );
                }
            }
            IrcAddress::Gateway => {}
        }
        fx
    }

    /// A groupchat message: a subject change without a body, a retraction or reactions
    /// where the network has them, else a message whose origin-id waits for its reflection.
    fn send_to_room(&mut self, fx: &mut Effects, mut sent: Sent, room: RoomRef) {
        let rich = self.addressing.is_matrix();
        let key = Self::key(&sent.bare, &room);
        let Some(state) = self
            .rooms
            .get_mut(&key)
            .filter(|s| s.resources.contains(&sent.from))
        else {
            sent.refuse(
                fx,
                DefinedCondition::NotAcceptable,
                format!("you are not in {}: join it first", room.name),
            );
            return;
        };
        if let (Some(subject), None) = (sent.msg.subjects.values().next(), &sent.body) {
            let action = Action::SetSubject {
                room: state.room.clone(),
                subject: subject.clone(),
            };
            fx.requests.push(sent.request(action));
            return;
        }
        let peer = Peer::Room(state.room.clone());
        if let Some(action) = rich.then(|| rich_action(&sent.msg, &peer)).flatten() {
            fx.requests.push(sent.request(action));
            return;
        }
        if let Some(signal) = sent.signal(&peer) {
            fx.requests.push(signal);
            return;
        }
        let Some((body, id)) = sent.take_body() else {
            return;
        };
        if let Some(origin) = sent
            .msg
            .payloads
            .iter()
            .find(|p| p.is("origin-id", ns::SID))
        {
            state.origin_ids.insert(id.clone(), origin.clone());
        }
        let action = send_action(rich, &sent.msg, body, peer, id.clone());
        fx.requests.push(sent.into_request(action, Some(id)));
    }

    /// A private message to an occupant or a remote user.
    fn send_to_person(&self, mut sent: Sent, peer: Peer) -> Option<Request> {
        let rich = self.addressing.is_matrix();
        if let Some(action) = rich.then(|| rich_action(&sent.msg, &peer)).flatten() {
            return Some(sent.request(action));
        }
        if let Some(signal) = sent.signal(&peer) {
            return Some(signal);
        }
        let (body, id) = sent.take_body()?;
        let action = send_action(rich, &sent.msg, body, peer, id.clone());
        Some(sent.into_request(action, Some(id)))
    }
}

/// A retraction or a reactions update, for networks that have them.
fn rich_action(msg: &Message, peer: &Peer) -> Option<Action> {
    if let Some(id) = rich::retraction(msg) {
        return Some(Action::Retract {
            to: peer.clone(),
            id,
        });
    }
    let (id, reactions) = rich::reactions(msg)?;
    Some(Action::React {
        to: peer.clone(),
        id,
        reactions,
    })
}

/// The network message for a client's message with `body`: `/me` as an action, and (for
/// networks that have them) what it corrects or answers, the reply fallback cut off.
fn send_action(rich: bool, msg: &Message, body: String, to: Peer, id: String) -> Action {
    let (refs, body) = if rich {
        let refs = rich::refs(msg);
        let body = match refs.reply_to {
            Some(_) => rich::strip_reply_fallback(msg, &body),
            None => body,
        };
        (refs, body)
    } else {
        (Refs::none(), body)
    };
    let (body, kind) = split_me(body);
    Action::Send {
        to,
        body,
        kind,
        id,
        refs,
        media: oob::media(msg).map(Box::new),
    }
}

/// `/me waves` is an action.
fn split_me(mut body: String) -> (String, MessageKind) {
    if body.starts_with("/me ") {
        body.drain(.."/me ".len());
        (body, MessageKind::Action)
    } else {
        (body, MessageKind::Normal)
    }
}
