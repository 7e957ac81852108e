//! MUC helpers for the end-to-end tests: stanzas to send and what to wait for.

use xmpp_client::parsers::message::{Message, MessageType};
use xmpp_client::parsers::muc::user::{MucUser, Status};
use xmpp_client::parsers::muc::Muc;
use xmpp_client::parsers::presence::{Presence, Type as PresenceType};
use xmpp_client::parsers::stanza_error::StanzaError;
use xmpp_client::Stanza;

use super::TestClient;

/// A MUC join presence to `occupant` (room@domain/nick).
pub fn join(occupant: &str) -> Presence {
    let mut presence =
        Presence::available().with_to(occupant.parse::<xmpp_client::jid::Jid>().unwrap());
    presence.add_payload(Muc::new());
    presence
}

/// A MUC leave presence (unavailable) to `occupant` (room@domain/nick).
pub fn leave(occupant: &str) -> Presence {
    Presence::unavailable().with_to(occupant.parse::<xmpp_client::jid::Jid>().unwrap())
}

/// The muc#user payload of a presence.
pub fn muc_user(p: &Presence) -> Option<MucUser> {
    p.payloads
        .iter()
        .find_map(|e| MucUser::try_from(e.clone()).ok())
}

/// The sender of a stanza, as text.
pub fn sender(s: &Stanza) -> String {
    match s {
        Stanza::Presence(p) => p.from.as_ref().map(|j| j.to_string()).unwrap_or_default(),
        Stanza::Message(m) => m.from.as_ref().map(|j| j.to_string()).unwrap_or_default(),
        Stanza::Iq(_) => String::new(),
    }
}

/// The body of a message.
pub fn body(m: &Message) -> Option<&str> {
    m.bodies.values().next().map(String::as_str)
}

/// Join `room` as `nick` and wait for the self-presence.
pub async fn enter(client: &mut TestClient, room: &str, nick: &str) -> Presence {
    client.send(join(&format!("{room}/{nick}"))).await;
    let suffix = format!("/{nick}");
    client
        .expect("self-presence", |s| match s {
            Stanza::Presence(p)
                if sender(s).ends_with(&suffix) && p.type_ == PresenceType::None =>
            {
                muc_user(p)
                    .filter(|u| u.status.contains(&Status::SelfPresence))
                    .map(|_| p.clone())
            }
            _ => None,
        })
        .await
}

/// Join `occupant` and wait for the self-presence: the senders of the presences that came
/// before it (the occupants, in order), and its own sender.
pub async fn join_listing(client: &mut TestClient, occupant: &str) -> (Vec<String>, String) {
    client.send(join(occupant)).await;
    let mut before = Vec::new();
    let own = client
        .expect("self-presence", |s| {
            let Stanza::Presence(p) = s else { return None };
            if muc_user(p)?.status.contains(&Status::SelfPresence) {
                return Some(sender(s));
            }
            before.push(sender(s));
            None
        })
        .await;
    (before, own)
}

/// The next presence from `from` (an occupant JID suffix) of the given type.
pub async fn presence_from(client: &mut TestClient, suffix: &str, type_: PresenceType) -> Presence {
    client
        .expect(&format!("presence from {suffix}"), |s| match s {
            Stanza::Presence(p) if sender(s).ends_with(suffix) && p.type_ == type_ => {
                Some(p.clone())
            }
            _ => None,
        })
        .await
}

pub async fn self_presence(client: &mut TestClient, nick: &str) -> Presence {
    let suffix = format!("/{nick}");
    client
        .expect("self-presence", |s| match s {
            Stanza::Presence(p)
                if p.from
                    .as_ref()
                    .is_some_and(|f| f.to_string().ends_with(&suffix)) =>
            {
                muc_user(p)
                    .filter(|u| u.status.contains(&Status::SelfPresence))
                    .map(|_| p.clone())
            }
            _ => None,
        })
        .await
}

pub async fn join_error(client: &mut TestClient) -> StanzaError {
    client
        .expect("presence error", |s| match s {
            Stanza::Presence(p) if p.type_ == PresenceType::Error => p
                .payloads
                .iter()
                .find_map(|e| StanzaError::try_from(e.clone()).ok()),
            _ => None,
        })
        .await
}

/// The next groupchat message with a body from `from` (a JID suffix).
pub async fn groupchat_from(client: &mut TestClient, from: &str) -> Message {
    next_groupchat(client, from, true).await
}

/// [`groupchat_from`] skipping the room's history, which entering sends again (delayed).
pub async fn live_groupchat_from(client: &mut TestClient, from: &str) -> Message {
    next_groupchat(client, from, false).await
}

async fn next_groupchat(client: &mut TestClient, from: &str, history_too: bool) -> Message {
    client
        .expect(&format!("groupchat from {from}"), |s| match s {
            Stanza::Message(m)
                if m.type_ == MessageType::Groupchat
                    && sender(s).ends_with(from)
                    && body(m).is_some()
                    && (history_too || payload(m, "delay", "urn:xmpp:delay").is_none()) =>
            {
                Some(m.clone())
            }
            _ => None,
        })
        .await
}

/// The text of the next message from the room itself (`room`, its bare JID): the gateway's
/// notices about it.
pub async fn room_notice(client: &mut TestClient, room: &str) -> String {
    client
        .expect(&format!("a notice from {room}"), |s| match s {
            Stanza::Message(m) if m.type_ == MessageType::Groupchat && sender(s) == room => {
                body(m).map(str::to_owned)
            }
            _ => None,
        })
        .await
}

/// The room JID of the next XEP-0249 invitation.
pub async fn invitation(client: &mut TestClient) -> String {
    client
        .expect("an invitation", |s| match s {
            Stanza::Message(m) => m
                .payloads
                .iter()
                .find(|p| p.is("x", "jabber:x:conference"))
                .and_then(|x| x.attr("jid"))
                .map(str::to_owned),
            _ => None,
        })
        .await
}

/// The next chat message with a body from `from` (a whole JID).
pub async fn chat_from(client: &mut TestClient, from: &str) -> Message {
    client
        .expect(&format!("chat from {from}"), |s| match s {
            Stanza::Message(m)
                if m.type_ == MessageType::Chat && sender(s) == from && body(m).is_some() =>
            {
                Some(m.clone())
            }
            _ => None,
        })
        .await
}

/// The first payload of a message with this name and namespace.
pub fn payload<'a>(
    m: &'a Message,
    name: &str,
    ns: &str,
) -> Option<&'a xmpp_client::minidom::Element> {
    m.payloads.iter().find(|p| p.is(name, ns))
}

/// The next message from `from` (a JID suffix) carrying a `name` payload in `ns`.
pub async fn with_payload(client: &mut TestClient, from: &str, name: &str, ns: &str) -> Message {
    client
        .expect(&format!("{name} from {from}"), |s| match s {
            Stanza::Message(m) if sender(s).ends_with(from) && payload(m, name, ns).is_some() => {
                Some(m.clone())
            }
            _ => None,
        })
        .await
}

/// A groupchat message with a body, to `room`.
pub fn groupchat_to(room: &str, body: &str) -> Message {
    let mut m = Message::groupchat(Some(room.parse().unwrap()));
    m.bodies.insert(Default::default(), body.into());
    m
}

/// Run an ad-hoc `configure` on `to` in one step (execute with the filled form).
pub async fn configure(
    client: &mut TestClient,
    to: &str,
    fields: &[(&str, &str)],
) -> xmpp_client::minidom::Element {
    use super::nc;
    use xmpp_client::minidom::Element;
    let (commands, data) = ("http://jabber.org/protocol/commands", "jabber:x:data");
    let mut form = Element::builder("x", data).attr(nc("type"), "submit");
    for (var, value) in fields {
        form = form.append(
            Element::builder("field", data)
                .attr(nc("var"), *var)
                .append(Element::builder("value", data).append(*value).build())
                .build(),
        );
    }
    let command = Element::builder("command", commands)
        .attr(nc("node"), "configure")
        .attr(nc("action"), "complete")
        .append(form.build())
        .build();
    match client.set(to, command).await {
        xmpp_client::IqResponse::Result(Some(done)) => {
            assert_eq!(done.attr("status"), Some("completed"), "{done:?}");
            done
        }
        other => panic!("configure refused: {other:?}"),
    }
}

/// The XEP-0421 occupant-id a presence or message carries.
pub fn occupant_id(s: &Stanza) -> Option<String> {
    let payloads = match s {
        Stanza::Presence(p) => &p.payloads,
        Stanza::Message(m) => &m.payloads,
        Stanza::Iq(_) => return None,
    };
    payloads
        .iter()
        .find(|e| e.is("occupant-id", "urn:xmpp:occupant-id:0"))
        .and_then(|e| e.attr("id"))
        .map(str::to_owned)
}
