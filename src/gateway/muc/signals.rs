//! Signals around messages, both ways: XEP-0085 chat states (someone typing) and XEP-0333
//! displayed markers (someone has read up to a message), in rooms and direct chats.
//!
//! From XMPP, a message without a body that carries one becomes [`Action::Typing`] or
//! [`Action::Displayed`]; networks without such things drop them, and a refusal is never
//! shown (clients send them all the time). From the network, [`Event::Typing`] and
//! [`Event::Displayed`] become body-less messages from the occupant or the contact, kept
//! out of archives (`<no-store/>`).

use causeway_bridge::{Action, Event, Peer};
use tokio_xmpp::jid::{BareJid, Jid};
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::message::{Message, MessageType};
use tokio_xmpp::Stanza;

use super::{Effects, Muc};
use crate::gateway::stanzas::nc;

/// XEP-0085's namespace.
pub const CHAT_STATES: &str = "http://jabber.org/protocol/chatstates";
/// XEP-0333's namespace.
pub const CHAT_MARKERS: &str = "urn:xmpp:chat-markers:0";
const HINTS: &str = "urn:xmpp:hints";

/// The signal a body-less message from a client carries to `to`, if any.
pub(super) fn signal_action(msg: &Message, to: &Peer) -> Option<Action> {
    for payload in &msg.payloads {
        if payload.ns() == CHAT_STATES {
            let typing = match payload.name() {
                "composing" => true,
                "paused" | "active" | "inactive" | "gone" => false,
                _ => continue,
            };
            return Some(Action::Typing {
                to: to.clone(),
                typing,
            });
        }
        if payload.is("displayed", CHAT_MARKERS) {
            let id = payload.attr("id").filter(|id| !id.is_empty())?;
            return Some(Action::Displayed {
                to: to.clone(),
                id: id.to_owned(),
            });
        }
    }
    None
}

/// A signal's payloads: the signal, kept out of archives.
fn payloads(signal: Element) -> [Element; 2] {
    [signal, Element::builder("no-store", HINTS).build()]
}

impl Muc {
    /// Someone typing or reading, as the network reports it.
    pub(super) fn signal(&self, fx: &mut Effects, user: &BareJid, event: Event) {
        let (peer, from, signal) = match event {
            Event::Typing {
                peer, from, typing, ..
            } => {
                // Composing, or active again.
                let state = if typing { "composing" } else { "active" };
                (peer, from, Element::builder(state, CHAT_STATES).build())
            }
            Event::Displayed { peer, from, id, .. } => {
                let marker = Element::builder("displayed", CHAT_MARKERS).attr(nc("id"), id);
                (peer, from, marker.build())
            }
            _ => return,
        };
        let payloads = payloads(signal);
        match peer {
            Peer::Room(room) => self.broadcast(fx, user, &room, |state, to| {
                // Our own puppet's signals are the user's own: their clients know.
                if super::fold(&from) == super::fold(&state.nick) {
                    return None;
                }
                let mut msg = Message::new(Some(to));
                msg.type_ = MessageType::Groupchat;
                msg.from = Some(state.occupant(&from)?);
                msg.payloads.extend(payloads.iter().cloned());
                Some(state.stamped(&from, msg.into()))
            }),
            Peer::User { server, nick } => {
                let Ok(sender) = self.addressing.user_jid(&server, &nick) else {
                    return;
                };
                let mut msg = Message::new(Some(Jid::from(user.clone())));
                msg.type_ = MessageType::Chat;
                msg.from = Some(sender.into());
                msg.payloads.extend(payloads);
                fx.stanzas.push(Stanza::Message(msg));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use causeway_bridge::RoomRef;

    fn msg(payload: &str) -> Message {
        let mut m = Message::new(None);
        m.payloads.push(payload.parse().unwrap());
        m
    }

    #[test]
    fn chat_states_and_markers_become_actions() {
        let to = Peer::Room(RoomRef {
            server: "s".into(),
            name: "#r".into(),
        });
        let composing = msg("<composing xmlns='http://jabber.org/protocol/chatstates'/>");
        assert_eq!(
            signal_action(&composing, &to),
            Some(Action::Typing {
                to: to.clone(),
                typing: true
            })
        );
        let paused = msg("<paused xmlns='http://jabber.org/protocol/chatstates'/>");
        assert_eq!(
            signal_action(&paused, &to),
            Some(Action::Typing {
                to: to.clone(),
                typing: false
            })
        );
        let displayed = msg("<displayed xmlns='urn:xmpp:chat-markers:0' id='$e'/>");
        assert_eq!(
            signal_action(&displayed, &to),
            Some(Action::Displayed {
                to: to.clone(),
                id: "$e".into()
            })
        );
        // A marker without an id, or other markers, ask for nothing.
        assert_eq!(
            signal_action(&msg("<displayed xmlns='urn:xmpp:chat-markers:0'/>"), &to),
            None
        );
        assert_eq!(
            signal_action(
                &msg("<received xmlns='urn:xmpp:chat-markers:0' id='x'/>"),
                &to
            ),
            None
        );
    }
}
