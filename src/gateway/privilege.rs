//! XEP-0356 (privileged entity): what the XMPP server lets the gateway put into its users'
//! accounts, and the stanzas that do it — a XEP-0402 bookmark for each room a user joins
//! through the gateway (a pubsub publish to their PEP, wrapped as a privileged iq), a roster
//! contact for each person they talk with (a roster set). The server says what it grants in
//! a message from its domain when the component connects (Prosody's `mod_privilege`,
//! ejabberd's `privilege_access`); without a grant nothing is pushed, everything else works,
//! and the log says so once per server.

use std::collections::{HashMap, HashSet};

use tokio_xmpp::jid::{BareJid, Jid};
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::message::Message;
use tokio_xmpp::Stanza;
use tracing::{info, warn};

use super::stanzas::nc;

/// XEP-0356's namespace (version 2: privileged iqs).
pub const NS: &str = "urn:xmpp:privilege:2";
/// Its first version (roster and message permissions only), which servers that have not
/// moved on still send.
const NS_1: &str = "urn:xmpp:privilege:1";
const PUBSUB: &str = "http://jabber.org/protocol/pubsub";
const BOOKMARKS: &str = "urn:xmpp:bookmarks:1";
const ROSTER: &str = "jabber:iq:roster";
const DATA: &str = "jabber:x:data";
/// The ids of the gateway's pushes: an error answering one is logged.
pub const PUSH_ID: &str = "push-";

/// What a server grants the gateway for its users.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// Roster sets (`roster` = `set` or `both`).
    pub roster: bool,
    /// Pubsub sets as the user (`iq` with the pubsub namespace, `set` or `both`).
    pub pubsub: bool,
}

/// Something to put into a user's account.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Push {
    /// A room the user joined: a bookmark, joined automatically, under their nick.
    Bookmark {
        /// Whose.
        user: BareJid,
        /// The room.
        room: BareJid,
        /// Its name.
        name: String,
        /// The user's nick there.
        nick: String,
    },
    /// Someone the user talks with: a contact in a group.
    Contact {
        /// Whose.
        user: BareJid,
        /// The person's JID.
        contact: BareJid,
        /// Their name.
        name: String,
        /// The roster group (`Matrix`, `IRC: irc.libera.chat`).
        group: String,
    },
}

impl Push {
    fn user(&self) -> &BareJid {
        match self {
            Push::Bookmark { user, .. } | Push::Contact { user, .. } => user,
        }
    }

    /// What the store keeps of it: whose, what kind, of what.
    pub fn key(&self) -> (String, &'static str, String) {
        match self {
            Push::Bookmark { user, room, .. } => (user.to_string(), "bookmark", room.to_string()),
            Push::Contact { user, contact, .. } => {
                (user.to_string(), "contact", contact.to_string())
            }
        }
    }
}

/// The grants of the servers, and what was pushed this run.
#[derive(Debug, Default)]
pub struct Privileges {
    /// By server domain.
    granted: HashMap<String, Grant>,
    /// Pushed already (a room joined again, a contact written to again: nothing new).
    done: HashSet<Push>,
    /// Servers without a grant the log has named.
    told: HashSet<String>,
}

/// Pushes remembered at most; past it they start again (a push repeated is harmless).
const REMEMBERED: usize = 100_000;

impl Privileges {
    /// Take a server's advertisement of what it grants: a message from a server's domain
    /// holding `<privilege>`. Whether `msg` was one.
    pub fn advertised(&mut self, from: &Jid, msg: &Message) -> bool {
        let Some(privilege) = msg
            .payloads
            .iter()
            .find(|p| p.is("privilege", NS) || p.is("privilege", NS_1))
        else {
            return false;
        };
        let ns = privilege.ns();
        if from.node().is_some() || from.resource().is_some() {
            // Only a server speaks for its users.
            return true;
        }
        let mut grant = Grant::default();
        for perm in privilege.children().filter(|c| c.is("perm", ns.as_str())) {
            match perm.attr("access") {
                Some("roster") => grant.roster = matches!(perm.attr("type"), Some("set" | "both")),
                Some("iq") => {
                    grant.pubsub |= perm.children().any(|n| {
                        n.is("namespace", ns.as_str())
                            && n.attr("ns") == Some(PUBSUB)
                            && matches!(n.attr("type"), Some("set" | "both"))
                    })
                }
                _ => {}
            }
        }
        info!(server = %from, roster = grant.roster, bookmarks = grant.pubsub, "XEP-0356 privileges granted");
        self.granted.insert(from.domain().to_string(), grant);
        true
    }

    /// The stanza that makes `push` from `gateway` (the component's domain), when the user's
    /// server grants it and it was not made already this run (the store says whether it
    /// ever was: [`Push::key`]).
    pub fn stanza(&mut self, gateway: &BareJid, push: Push) -> Option<Stanza> {
        let server = push.user().domain().to_string();
        let grant = self.granted.get(&server).copied().unwrap_or_default();
        let allowed = match push {
            Push::Bookmark { .. } => grant.pubsub,
            Push::Contact { .. } => grant.roster,
        };
        if !allowed {
            if self.told.insert(server.clone()) {
                warn!(
                    %server,
                    "the XMPP server grants no XEP-0356 privileges to this gateway: rooms are not bookmarked and contacts not added to users' accounts (README: Bookmarks and contacts)"
                );
            }
            return None;
        }
        if self.done.len() >= REMEMBERED {
            self.done.clear();
        }
        if !self.done.insert(push.clone()) {
            return None;
        }
        let id = format!("{PUSH_ID}{}", super::muc::new_id());
        Some(match push {
            Push::Bookmark {
                user,
                room,
                name,
                nick,
            } => bookmark(gateway, &user, &room, &name, &nick, &id),
            Push::Contact {
                user,
                contact,
                name,
                group,
            } => roster_item(gateway, &user, &contact, &name, &group, &id),
        })
    }
}

/// The stanza taking out of `user`'s account what the gateway put there: `kind`
/// (`bookmark`, `contact`) of `target` — a retraction from their bookmarks, a roster
/// removal.
pub fn removal(gateway: &BareJid, user: &BareJid, kind: &str, target: &str) -> Option<Stanza> {
    let id = format!("{PUSH_ID}{}", super::muc::new_id());
    match kind {
        "bookmark" => {
            let item = Element::builder("item", PUBSUB)
                .attr(nc("id"), target)
                .build();
            let retract = Element::builder("retract", PUBSUB)
                .attr(nc("node"), BOOKMARKS)
                .attr(nc("notify"), "true")
                .append(item)
                .build();
            let pubsub = Element::builder("pubsub", PUBSUB).append(retract).build();
            Some(privileged(gateway, user, &id, pubsub))
        }
        "contact" => {
            let item = Element::builder("item", ROSTER)
                .attr(nc("jid"), target)
                .attr(nc("subscription"), "remove")
                .build();
            let query = Element::builder("query", ROSTER).append(item).build();
            Some(set(gateway, user, &id, query))
        }
        _ => None,
    }
}

/// `payload` sent as `user` to their own account (a privileged iq set).
fn privileged(gateway: &BareJid, user: &BareJid, id: &str, payload: Element) -> Stanza {
    let inner = Element::builder("iq", "jabber:client")
        .attr(nc("type"), "set")
        .attr(nc("from"), user.to_string())
        .attr(nc("to"), user.to_string())
        .attr(nc("id"), format!("{id}-inner"))
        .append(payload)
        .build();
    let wrapped = Element::builder("privileged_iq", NS).append(inner).build();
    set(gateway, user, id, wrapped)
}

/// An iq set from the gateway to `user`'s account.
fn set(gateway: &BareJid, user: &BareJid, id: &str, payload: Element) -> Stanza {
    Iq::Set {
        from: Some(gateway.clone().into()),
        to: Some(user.clone().into()),
        id: id.to_owned(),
        payload,
    }
    .into()
}

/// A data form field with one value.
fn field(var: &str, value: &str) -> Element {
    Element::builder("field", DATA)
        .attr(nc("var"), var)
        .append(Element::builder("value", DATA).append(value).build())
        .build()
}

/// The privileged iq publishing `room` to `user`'s bookmarks (XEP-0402).
fn bookmark(
    gateway: &BareJid,
    user: &BareJid,
    room: &BareJid,
    name: &str,
    nick: &str,
    id: &str,
) -> Stanza {
    let conference = Element::builder("conference", BOOKMARKS)
        .attr(nc("name"), name)
        .attr(nc("autojoin"), "true")
        .append(Element::builder("nick", BOOKMARKS).append(nick).build())
        .build();
    let item = Element::builder("item", PUBSUB)
        .attr(nc("id"), room.to_string())
        .append(conference)
        .build();
    let options = Element::builder("x", DATA)
        .attr(nc("type"), "submit")
        .append(field(
            "FORM_TYPE",
            "http://jabber.org/protocol/pubsub#publish-options",
        ))
        .append(field("pubsub#persist_items", "true"))
        .append(field("pubsub#max_items", "max"))
        .append(field("pubsub#send_last_published_item", "never"))
        .append(field("pubsub#access_model", "whitelist"))
        .build();
    let pubsub = Element::builder("pubsub", PUBSUB)
        .append(
            Element::builder("publish", PUBSUB)
                .attr(nc("node"), BOOKMARKS)
                .append(item)
                .build(),
        )
        .append(
            Element::builder("publish-options", PUBSUB)
                .append(options)
                .build(),
        )
        .build();
    privileged(gateway, user, id, pubsub)
}

/// The roster set adding `contact` to `user`'s roster, named, in `group`.
fn roster_item(
    gateway: &BareJid,
    user: &BareJid,
    contact: &BareJid,
    name: &str,
    group: &str,
    id: &str,
) -> Stanza {
    let item = Element::builder("item", ROSTER)
        .attr(nc("jid"), contact.to_string())
        .attr(nc("name"), name)
        .append(Element::builder("group", ROSTER).append(group).build())
        .build();
    let query = Element::builder("query", ROSTER).append(item).build();
    set(gateway, user, id, query)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid(s: &str) -> BareJid {
        s.parse().unwrap()
    }

    fn advertisement(perms: &str) -> Message {
        let mut msg = Message::new(None);
        let privilege = format!("<privilege xmlns='{NS}'>{perms}</privilege>");
        msg.payloads.push(privilege.parse().unwrap());
        msg
    }

    fn contact_push() -> Push {
        Push::Contact {
            user: jid("alice@example.org"),
            contact: jid("bob%hs@matrix.gw"),
            name: "Bob".into(),
            group: "Matrix".into(),
        }
    }

    #[test]
    fn nothing_is_pushed_without_a_grant() {
        let mut privileges = Privileges::default();
        assert_eq!(privileges.stanza(&jid("matrix.gw"), contact_push()), None);
        // A user claiming to grant is no server.
        let from: Jid = "mallory@example.org".parse().unwrap();
        let claim = advertisement(&format!("<perm xmlns='{NS}' access='roster' type='both'/>"));
        assert!(privileges.advertised(&from, &claim));
        assert_eq!(privileges.stanza(&jid("matrix.gw"), contact_push()), None);
    }

    #[test]
    fn the_first_version_grants_the_roster() {
        let mut privileges = Privileges::default();
        let server: Jid = "example.org".parse().unwrap();
        let mut msg = Message::new(None);
        let privilege =
            format!("<privilege xmlns='{NS_1}'><perm access='roster' type='set'/></privilege>");
        msg.payloads.push(privilege.parse().unwrap());
        assert!(privileges.advertised(&server, &msg));
        assert!(privileges
            .stanza(&jid("matrix.gw"), contact_push())
            .is_some());
    }

    #[test]
    fn a_granted_push_is_made_once() {
        let mut privileges = Privileges::default();
        let perms = format!(
            "<perm xmlns='{NS}' access='roster' type='both'/>\
             <perm xmlns='{NS}' access='iq'><namespace ns='{PUBSUB}' type='set'/></perm>"
        );
        let server: Jid = "example.org".parse().unwrap();
        assert!(privileges.advertised(&server, &advertisement(&perms)));
        let push = privileges.stanza(&jid("matrix.gw"), contact_push());
        let Some(Stanza::Iq(Iq::Set { payload, to, .. })) = push else {
            panic!("a roster set: {push:?}");
        };
        assert_eq!(
            to.map(|t| t.to_string()).as_deref(),
            Some("alice@example.org")
        );
        let item = payload.get_child("item", ROSTER).unwrap();
        assert_eq!(item.attr("jid"), Some("bob%hs@matrix.gw"));
        assert_eq!(item.get_child("group", ROSTER).unwrap().text(), "Matrix");
        assert_eq!(privileges.stanza(&jid("matrix.gw"), contact_push()), None);

        let bookmark = Push::Bookmark {
            user: jid("alice@example.org"),
            room: jid("#room%hs@matrix.gw"),
            name: "#room".into(),
            nick: "alice".into(),
        };
        let Some(Stanza::Iq(Iq::Set { payload, .. })) =
            privileges.stanza(&jid("matrix.gw"), bookmark)
        else {
            panic!("a privileged iq");
        };
        let inner = payload.get_child("iq", "jabber:client").unwrap();
        assert_eq!(inner.attr("from"), Some("alice@example.org"));
        let item = inner
            .get_child("pubsub", PUBSUB)
            .and_then(|p| p.get_child("publish", PUBSUB))
            .and_then(|p| p.get_child("item", PUBSUB))
            .unwrap();
        assert_eq!(item.attr("id"), Some("#room%hs@matrix.gw"));
    }
}
