//! IRC channels as MUCs, end to end: a real XMPP client on Prosody, causeway, a real IRC
//! client on ngircd.

use std::time::Duration;

use xmpp_client::parsers::message::{Message, MessageType};
use xmpp_client::parsers::muc::user::{MucUser, Status};
use xmpp_client::parsers::muc::Muc;
use xmpp_client::parsers::presence::{Presence, Type as PresenceType};
use xmpp_client::parsers::stanza_error::{DefinedCondition, StanzaError};
use xmpp_client::Stanza;

use crate::harness::irc_client::IrcClient;
use crate::harness::irc_server::IrcServer;
use crate::harness::{Flavor, Gateway, TestClient, XmppServer};

const ROOM: &str = "#test%127.0.0.1@irc.localhost";

fn join(occupant: &str) -> Presence {
    let mut presence =
        Presence::available().with_to(occupant.parse::<xmpp_client::jid::Jid>().unwrap());
    presence.add_payload(Muc::new());
    presence
}

fn muc_user(p: &Presence) -> Option<MucUser> {
    p.payloads
        .iter()
        .find_map(|e| MucUser::try_from(e.clone()).ok())
}

fn from_str(s: &Stanza) -> String {
    match s {
        Stanza::Presence(p) => p.from.as_ref().map(|j| j.to_string()).unwrap_or_default(),
        Stanza::Message(m) => m.from.as_ref().map(|j| j.to_string()).unwrap_or_default(),
        Stanza::Iq(_) => String::new(),
    }
}

fn body(m: &Message) -> Option<&str> {
    m.bodies.values().next().map(String::as_str)
}

/// The whole everyday life of a channel: join sequence, messages both ways with reflection,
/// /me, topic, someone leaving, leaving ourselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_life_both_ways() {
    let irc = IrcServer::ngircd();
    let xmpp = XmppServer::start(Flavor::Prosody);
    let gateway = Gateway::start_with_irc(&xmpp, irc.port).await;
    let mut bob = IrcClient::connect(irc.port, "bob").await;
    bob.join("#test").await;
    bob.send("TOPIC #test :all about tests").await;
    bob.expect("topic set", |l| l.contains(" TOPIC #test "))
        .await;

    let mut alice = TestClient::login(&xmpp, "alice", "localhost").await;
    alice.send(join(&format!("{ROOM}/alice"))).await;

    // Occupants first (bob, an operator as channel creator), then self-presence, then subject.
    let bob_presence = alice
        .expect("bob's presence", |s| match s {
            Stanza::Presence(p) if from_str(s).ends_with("/bob") => Some(p.clone()),
            _ => None,
        })
        .await;
    let item = &muc_user(&bob_presence).expect("muc#user").items[0];
    assert_eq!(format!("{:?}", item.role), "Moderator", "{item:?}");
    let own = alice
        .expect("self-presence", |s| match s {
            Stanza::Presence(p) if from_str(s).ends_with("/alice") => Some(p.clone()),
            _ => None,
        })
        .await;
    let own_user = muc_user(&own).unwrap_or_else(|| panic!("no muc#user in {:?}", own.payloads));
    assert!(own_user.status.contains(&Status::SelfPresence));
    let subject = alice
        .expect("subject", |s| match s {
            Stanza::Message(m) if !m.subjects.is_empty() => Some(m.clone()),
            _ => None,
        })
        .await;
    assert_eq!(subject.subjects.values().next().unwrap(), "all about tests");
    bob.expect("alice joining", |l| {
        l.starts_with(":alice!") && l.contains(" JOIN ")
    })
    .await;

    // XMPP → IRC, reflected with the same id.
    let mut hello = Message::groupchat(Some(ROOM.parse().unwrap()));
    hello.id = Some(xmpp_client::parsers::message::Id("hello-1".into()));
    hello
        .bodies
        .insert(Default::default(), "hello from xmpp".into());
    alice.send(hello).await;
    bob.expect("alice's message", |l| {
        l.starts_with(":alice!") && l.ends_with("PRIVMSG #test :hello from xmpp")
    })
    .await;
    let reflected = alice
        .expect("reflection", |s| match s {
            Stanza::Message(m) if body(m) == Some("hello from xmpp") => Some(m.clone()),
            _ => None,
        })
        .await;
    assert_eq!(reflected.id.map(|i| i.0).as_deref(), Some("hello-1"));
    assert_eq!(reflected.from.unwrap().to_string(), format!("{ROOM}/alice"));

    // A multi-line body becomes one PRIVMSG per line; /me becomes CTCP ACTION.
    let mut lines = Message::groupchat(Some(ROOM.parse().unwrap()));
    lines
        .bodies
        .insert(Default::default(), "line one\nline two".into());
    alice.send(lines).await;
    bob.expect("line one", |l| l.ends_with("PRIVMSG #test :line one"))
        .await;
    bob.expect("line two", |l| l.ends_with("PRIVMSG #test :line two"))
        .await;
    let mut me = Message::groupchat(Some(ROOM.parse().unwrap()));
    me.bodies.insert(Default::default(), "/me waves".into());
    alice.send(me).await;
    bob.expect("action", |l| {
        l.ends_with("PRIVMSG #test :\u{1}ACTION waves\u{1}")
    })
    .await;

    // IRC → XMPP.
    bob.send("PRIVMSG #test :hi alice").await;
    let got = alice
        .expect("bob's message", |s| match s {
            Stanza::Message(m) if body(m) == Some("hi alice") => Some(m.clone()),
            _ => None,
        })
        .await;
    assert_eq!(got.type_, MessageType::Groupchat);
    assert_eq!(got.from.unwrap().to_string(), format!("{ROOM}/bob"));
    bob.send("PRIVMSG #test :\u{1}ACTION nods\u{1}").await;
    alice
        .expect("bob's action", |s| match s {
            Stanza::Message(m) if body(m) == Some("/me nods") => Some(()),
            _ => None,
        })
        .await;

    // Topic change from IRC.
    bob.send("TOPIC #test :new topic").await;
    alice
        .expect("new subject", |s| match s {
            Stanza::Message(m) if m.subjects.values().any(|t| t == "new topic") => Some(()),
            _ => None,
        })
        .await;

    // Bob leaves with a reason.
    bob.send("PART #test :lunch").await;
    let gone = alice
        .expect("bob leaving", |s| match s {
            Stanza::Presence(p)
                if from_str(s).ends_with("/bob") && p.type_ == PresenceType::Unavailable =>
            {
                Some(p.clone())
            }
            _ => None,
        })
        .await;
    assert_eq!(
        gone.statuses.values().next().map(String::as_str),
        Some("lunch")
    );
    bob.join("#test").await;
    alice
        .expect("bob back", |s| match s {
            Stanza::Presence(p)
                if from_str(s).ends_with("/bob") && p.type_ == PresenceType::None =>
            {
                Some(())
            }
            _ => None,
        })
        .await;

    // Alice leaves: her self-presence goes unavailable, and her puppet quits IRC.
    alice
        .send(
            Presence::unavailable().with_to(
                format!("{ROOM}/alice")
                    .parse::<xmpp_client::jid::Jid>()
                    .unwrap(),
            ),
        )
        .await;
    let left = alice
        .expect("own unavailable", |s| match s {
            Stanza::Presence(p)
                if from_str(s).ends_with("/alice") && p.type_ == PresenceType::Unavailable =>
            {
                Some(p.clone())
            }
            _ => None,
        })
        .await;
    assert!(muc_user(&left)
        .unwrap()
        .status
        .contains(&Status::SelfPresence));
    bob.expect("alice parting", |l| {
        l.starts_with(":alice!") && (l.contains(" PART #test") || l.contains(" QUIT"))
    })
    .await;
    alice.logout().await;
    gateway.stop().await;
}

/// A nick already taken on IRC is a MUC conflict, with text — never silence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nick_in_use_is_a_conflict() {
    let irc = IrcServer::ngircd();
    let xmpp = XmppServer::start(Flavor::Prosody);
    let gateway = Gateway::start_with_irc(&xmpp, irc.port).await;
    let _carol = IrcClient::connect(irc.port, "carol").await;
    let mut alice = TestClient::login(&xmpp, "alice", "localhost").await;
    alice.send(join(&format!("{ROOM}/carol"))).await;
    let error = alice
        .expect("presence error", |s| match s {
            Stanza::Presence(p) if p.type_ == PresenceType::Error => p
                .payloads
                .iter()
                .find_map(|e| StanzaError::try_from(e.clone()).ok()),
            _ => None,
        })
        .await;
    assert_eq!(error.defined_condition, DefinedCondition::Conflict);
    assert!(
        error.texts.values().any(|t| t.contains("carol")),
        "{:?}",
        error.texts
    );

    // The same user can then join with a free nick.
    alice.send(join(&format!("{ROOM}/alice2"))).await;
    alice
        .expect("self-presence", |s| match s {
            Stanza::Presence(p)
                if from_str(s).ends_with("/alice2") && p.type_ == PresenceType::None =>
            {
                Some(())
            }
            _ => None,
        })
        .await;
    alice.logout().await;
    gateway.stop().await;
}

/// Two resources of one user share one IRC connection; the second gets the whole join
/// sequence from the gateway, and both see messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_resource_shares_the_puppet() {
    let irc = IrcServer::ngircd();
    let xmpp = XmppServer::start(Flavor::Prosody);
    let gateway = Gateway::start_with_irc(&xmpp, irc.port).await;
    let mut bob = IrcClient::connect(irc.port, "bob").await;
    bob.join("#test").await;
    let mut phone = TestClient::login(&xmpp, "alice", "localhost").await;
    let mut laptop = TestClient::connect(&xmpp, "alice", "localhost").await;
    for client in [&mut phone, &mut laptop] {
        client.send(join(&format!("{ROOM}/alice"))).await;
        client
            .expect("bob's presence", |s| match s {
                Stanza::Presence(_) if from_str(s).ends_with("/bob") => Some(()),
                _ => None,
            })
            .await;
        client
            .expect("self-presence", |s| match s {
                Stanza::Presence(p) if from_str(s).ends_with("/alice") => {
                    muc_user(p).filter(|u| u.status.contains(&Status::SelfPresence))
                }
                _ => None,
            })
            .await;
    }
    bob.expect("one JOIN", |l| {
        l.starts_with(":alice!") && l.contains(" JOIN ")
    })
    .await;
    bob.send("PRIVMSG #test :both of you?").await;
    for client in [&mut phone, &mut laptop] {
        client
            .expect("message", |s| match s {
                Stanza::Message(m) if body(m) == Some("both of you?") => Some(()),
                _ => None,
            })
            .await;
    }
    // Only one puppet joined: no second JOIN from alice.
    let second = bob
        .nothing_within(Duration::from_millis(500), |l| {
            l.starts_with(":alice") && l.contains(" JOIN ")
        })
        .await;
    assert_eq!(second, Ok(()), "a second puppet joined");
    phone.logout().await;
    laptop.logout().await;
    gateway.stop().await;
}

/// Private messages both ways, addressed nick%server@gw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_messages_both_ways() {
    let irc = IrcServer::ngircd();
    let xmpp = XmppServer::start(Flavor::Prosody);
    let gateway = Gateway::start_with_irc(&xmpp, irc.port).await;
    let mut bob = IrcClient::connect(irc.port, "bob").await;
    let mut alice = TestClient::login(&xmpp, "alice", "localhost").await;
    // A PM needs the puppet connected: join a channel first.
    alice.send(join(&format!("{ROOM}/alice"))).await;
    alice
        .expect("self-presence", |s| match s {
            Stanza::Presence(p) if from_str(s).ends_with("/alice") => {
                muc_user(p).filter(|u| u.status.contains(&Status::SelfPresence))
            }
            _ => None,
        })
        .await;
    let mut pm = Message::chat(Some("bob%127.0.0.1@irc.localhost".parse().unwrap()));
    pm.bodies.insert(Default::default(), "psst bob".into());
    alice.send(pm).await;
    bob.expect("private message", |l| {
        l.starts_with(":alice!") && l.ends_with("PRIVMSG bob :psst bob")
    })
    .await;
    bob.send("PRIVMSG alice :psst alice").await;
    let got = alice
        .expect("private reply", |s| match s {
            Stanza::Message(m) if body(m) == Some("psst alice") => Some(m.clone()),
            _ => None,
        })
        .await;
    assert_eq!(got.type_, MessageType::Chat);
    assert_eq!(
        got.from.unwrap().to_bare().to_string(),
        "bob%127.0.0.1@irc.localhost"
    );
    alice.logout().await;
    gateway.stop().await;
}
