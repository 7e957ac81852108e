//! XEP-0184 delivery receipts for private messages: a client asks with `<request/>`, and
//! the contact answers `<received/>` once the network says its server took the message
//! ([`Event::Delivered`]: a Matrix homeserver accepted the event, an IRC server echoed
//! it) — never before, so a receipt means the message left the gateway for good.

use std::collections::{HashMap, VecDeque};

use tokio_xmpp::jid::{BareJid, FullJid, Jid};
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::message::{Message, MessageType};
use tokio_xmpp::Stanza;

use super::{Effects, Muc};
use crate::gateway::stanzas::nc;

/// XEP-0184's namespace.
pub const RECEIPTS: &str = "urn:xmpp:receipts";

/// Receipts waited for at most; past it the oldest are forgotten (a network that never
/// answers must not grow the gateway).
const MOST_WAITING: usize = 10_000;

/// The private messages whose senders asked for a receipt, oldest first.
#[derive(Debug, Default)]
pub(super) struct Waiting {
    /// Who sent it, and the address they sent it to (a contact, or an occupant).
    by_message: HashMap<(BareJid, String), (FullJid, Jid)>,
    order: VecDeque<(BareJid, String)>,
}

impl Waiting {
    /// `from` sent `msg` to `to` as `id`: wait for its delivery if it asks for a receipt.
    pub(super) fn ask(&mut self, msg: &Message, from: &FullJid, to: &Jid, id: &str) {
        if !msg.payloads.iter().any(|p| p.is("request", RECEIPTS)) {
            return;
        }
        let key = (from.to_bare(), id.to_owned());
        let sent = (from.clone(), to.clone());
        if self.by_message.insert(key.clone(), sent).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > MOST_WAITING {
            if let Some(oldest) = self.order.pop_front() {
                self.by_message.remove(&oldest);
            }
        }
    }

    /// Who waits for the receipt of `user`'s message `id`, and where they sent it; no
    /// longer waiting.
    fn answered(&mut self, user: &BareJid, id: &str) -> Option<(FullJid, Jid)> {
        let key = (user.clone(), id.to_owned());
        let sender = self.by_message.remove(&key)?;
        self.order.retain(|k| *k != key);
        Some(sender)
    }

    /// The message will not be delivered: nobody waits for it.
    pub(super) fn forget(&mut self, user: &BareJid, id: &str) {
        self.answered(user, id);
    }
}

impl Muc {
    /// The network's server took `user`'s private message `id`: its receipt, if asked for,
    /// from the address it was sent to, to the resource that sent it.
    pub(super) fn delivered(&mut self, fx: &mut Effects, user: &BareJid, id: &str) {
        let Some((sender, address)) = self.receipts.answered(user, id) else {
            return;
        };
        let mut msg = Message::new(Some(Jid::from(sender)));
        msg.type_ = MessageType::Chat;
        msg.from = Some(address);
        msg.payloads.push(
            Element::builder("received", RECEIPTS)
                .attr(nc("id"), id)
                .build(),
        );
        fx.stanzas.push(Stanza::Message(msg));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asking() -> Message {
        let mut m = Message::new(None);
        m.payloads
            .push(Element::builder("request", RECEIPTS).build());
        m
    }

    #[test]
    fn only_asked_receipts_wait_and_the_oldest_go_past_the_limit() {
        let from: FullJid = "a@x/phone".parse().unwrap();
        let to: Jid = "b%s@gw".parse().unwrap();
        let bare = from.to_bare();
        let mut waiting = Waiting::default();
        waiting.ask(&Message::new(None), &from, &to, "plain");
        assert_eq!(waiting.answered(&bare, "plain"), None);
        waiting.ask(&asking(), &from, &to, "m1");
        assert_eq!(
            waiting.answered(&bare, "m1"),
            Some((from.clone(), to.clone()))
        );
        assert_eq!(waiting.answered(&bare, "m1"), None, "answered once");
        for i in 0..=MOST_WAITING {
            waiting.ask(&asking(), &from, &to, &i.to_string());
        }
        assert_eq!(waiting.by_message.len(), MOST_WAITING);
        assert_eq!(waiting.answered(&bare, "0"), None, "the oldest went");
        assert_eq!(
            waiting.answered(&bare, &MOST_WAITING.to_string()),
            Some((from, to))
        );
    }
}
