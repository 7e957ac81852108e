//! IRC channels as MUCs, end to end: a real XMPP client on Prosody, causeway, a real IRC
//! client on ngircd.

use std::time::Duration;

use xmpp_client::parsers::message::{Message, MessageType};
use xmpp_client::parsers::muc::user::Status;
use xmpp_client::parsers::muc::Muc;
use xmpp_client::parsers::presence::Type as PresenceType;
use xmpp_client::parsers::stanza_error::DefinedCondition;
use xmpp_client::Stanza;

use crate::harness::irc_server::IrcKind;
use crate::harness::muc::*;
use crate::harness::scene::Scene;

/// Run one scenario against ngircd and against InspIRCd (with its IRCv3 modules).
macro_rules! on_both_irc_servers {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn ngircd() {
                super::$scenario(IrcKind::Ngircd).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn inspircd() {
                super::$scenario(IrcKind::Inspircd).await
            }
        }
    )*};
}

on_both_irc_servers!(
    channel_life_both_ways,
    nick_in_use_is_a_conflict,
    second_resource_shares_the_puppet,
    private_messages_both_ways,
    nick_changes_and_kicks_both_ways,
    join_errors_map_to_muc_errors,
    text_is_never_lost_or_injected,
    raw_commands_through_the_server_jid,
    puppets_come_back_after_irc_server_restart,
    twenty_users_in_one_channel_see_each_message_once,
    leaving_and_joining_at_once_joins_again
);

/// Ten users in one channel all talk at once: 15,000 stanzas for a gateway whose outbound
/// queue holds 5, and 1,500 coming in, more than the core's inbound queue holds. While the
/// link is up the gateway waits for Prosody instead of dropping, and the link keeps writing
/// while the core is behind: everyone gets every message, once, each sender's in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_far_past_the_queue_size_is_delivered_whole() {
    const USERS: usize = 10;
    const EACH: usize = 150;
    let s = Scene::irc(IrcKind::Ngircd).queue_size(5).await;
    let crowd = "#burst%127.0.0.1@irc.localhost";
    let mut clients = Vec::new();
    for i in 0..USERS {
        let mut client = s.xmpp_user(&format!("user{i}")).await;
        enter(&mut client, crowd, &format!("user{i}")).await;
        clients.push(client);
    }
    for (i, client) in clients.iter_mut().enumerate() {
        for n in 0..EACH {
            client
                .send(groupchat_to(crowd, &format!("burst {i} {n}")))
                .await;
        }
    }
    for (i, client) in clients.iter_mut().enumerate() {
        let mut next = [0; USERS];
        for _ in 0..USERS * EACH {
            let text = client
                .expect("a burst message", |s| match s {
                    Stanza::Message(m) => body(m)
                        .filter(|b| b.starts_with("burst "))
                        .map(str::to_owned),
                    _ => None,
                })
                .await;
            let mut parts = text.split(' ').skip(1).map(|p| p.parse::<usize>().unwrap());
            let (from, n) = (parts.next().unwrap(), parts.next().unwrap());
            assert_eq!(
                n, next[from],
                "user{i}: {text} out of order or after a loss"
            );
            next[from] += 1;
        }
    }
    for client in clients {
        client.logout().await;
    }
    s.stop().await;
}

const ROOM: &str = "#test%127.0.0.1@irc.localhost";

/// The whole everyday life of a channel: join sequence, messages both ways with reflection,
/// /me, topic, someone leaving, leaving ourselves.
async fn channel_life_both_ways(kind: IrcKind) {
    let s = Scene::irc(kind).await;
    let mut bob = s.irc_user_in("bob", "#test").await;
    bob.send("TOPIC #test :all about tests").await;
    bob.expect("topic set", |l| l.contains(" TOPIC #test "))
        .await;

    let mut alice = s.xmpp_user("alice").await;
    alice.send(join(&format!("{ROOM}/alice"))).await;

    // Occupants first (bob, an operator as channel creator), then self-presence, then subject.
    let bob_presence = alice
        .expect("bob's presence", |s| match s {
            Stanza::Presence(p) if sender(s).ends_with("/bob") => Some(p.clone()),
            _ => None,
        })
        .await;
    let item = &muc_user(&bob_presence).expect("muc#user").items[0];
    assert_eq!(format!("{:?}", item.role), "Moderator", "{item:?}");
    let own = alice
        .expect("self-presence", |s| match s {
            Stanza::Presence(p) if sender(s).ends_with("/alice") => Some(p.clone()),
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
    // InspIRCd offers server-time: the IRC timestamp travels as an XEP-0203 delay.
    let delayed = got.payloads.iter().any(|p| p.is("delay", "urn:xmpp:delay"));
    assert_eq!(delayed, kind == IrcKind::Inspircd, "{:?}", got.payloads);
    assert_eq!(got.from.unwrap().to_string(), format!("{ROOM}/bob"));
    bob.send("PRIVMSG #test :\u{1}ACTION nods\u{1}").await;
    alice
        .expect("bob's action", |s| match s {
            Stanza::Message(m) if body(m) == Some("/me nods") => Some(()),
            _ => None,
        })
        .await;

    // Subject from XMPP becomes the topic (bob, the operator, makes alice one first: topics
    // may be locked to operators).
    bob.send("MODE #test +o alice").await;
    presence_from(&mut alice, "/alice", PresenceType::None).await;
    let mut subject = Message::groupchat(Some(ROOM.parse().unwrap()));
    subject
        .subjects
        .insert(Default::default(), "set from xmpp".into());
    alice.send(subject).await;
    bob.expect("topic from alice", |l| {
        l.starts_with(":alice!") && l.contains(" TOPIC #test") && l.ends_with("set from xmpp")
    })
    .await;
    alice
        .expect("the subject confirmed", |s| match s {
            Stanza::Message(m) if m.subjects.values().any(|t| t == "set from xmpp") => Some(()),
            _ => None,
        })
        .await;

    // Notices are shown too.
    bob.send("NOTICE #test :heads up").await;
    alice
        .expect("bob's notice", |s| match s {
            Stanza::Message(m) if body(m) == Some("heads up") => Some(()),
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
                if sender(s).ends_with("/bob") && p.type_ == PresenceType::Unavailable =>
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
            Stanza::Presence(p) if sender(s).ends_with("/bob") && p.type_ == PresenceType::None => {
                Some(())
            }
            _ => None,
        })
        .await;

    // Alice leaves: her self-presence goes unavailable, and her puppet quits IRC.
    alice.send(leave(&format!("{ROOM}/alice"))).await;
    let left = alice
        .expect("own unavailable", |s| match s {
            Stanza::Presence(p)
                if sender(s).ends_with("/alice") && p.type_ == PresenceType::Unavailable =>
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
        // (InspIRCd writes the channel as a trailing parameter: `PART :#test`.)
        l.starts_with(":alice!")
            && (l.contains(" PART #test") || l.contains(" PART :#test") || l.contains(" QUIT"))
    })
    .await;
    alice.logout().await;
    s.stop().await;
}

/// A nick already taken on IRC is a MUC conflict, with text — never silence.
async fn nick_in_use_is_a_conflict(kind: IrcKind) {
    let s = Scene::irc(kind).await;
    let _carol = s.irc_user("carol").await;
    let mut alice = s.xmpp_user("alice").await;
    alice.send(join(&format!("{ROOM}/carol"))).await;
    let error = join_error(&mut alice).await;
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
                if sender(s).ends_with("/alice2") && p.type_ == PresenceType::None =>
            {
                Some(())
            }
            _ => None,
        })
        .await;
    alice.logout().await;
    s.stop().await;
}

/// Two resources of one user share one IRC connection; the second gets the whole join
/// sequence from the gateway, and both see messages.
async fn second_resource_shares_the_puppet(kind: IrcKind) {
    let s = Scene::irc(kind).await;
    let mut bob = s.irc_user_in("bob", "#test").await;
    let mut phone = s.xmpp_user("alice").await;
    let mut laptop = s.xmpp_user_again("alice").await;
    for client in [&mut phone, &mut laptop] {
        client.send(join(&format!("{ROOM}/alice"))).await;
        client
            .expect("bob's presence", |s| match s {
                Stanza::Presence(_) if sender(s).ends_with("/bob") => Some(()),
                _ => None,
            })
            .await;
        self_presence(client, "alice").await;
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
    s.stop().await;
}

/// Leaving and joining again before the PART came back: a new join, not the old
/// membership answered from memory (the puppet would then be out of the channel while the
/// client thinks it is in).
async fn leaving_and_joining_at_once_joins_again(kind: IrcKind) {
    let s = Scene::irc(kind).await;
    let (mut bob, mut alice) = s.alice_joins_bob_in("#test").await;
    alice.send(leave(&format!("{ROOM}/alice"))).await;
    alice.send(join(&format!("{ROOM}/alice"))).await;
    bob.expect("PART", |l| l.starts_with(":alice!") && l.contains(" PART "))
        .await;
    bob.expect("JOIN again", |l| {
        l.starts_with(":alice!") && l.contains(" JOIN ")
    })
    .await;
    // In the channel for real: bob's words reach alice, and she stays.
    bob.send("PRIVMSG #test :still there?").await;
    alice
        .expect("bob's message", |s| match s {
            Stanza::Message(m) if body(m) == Some("still there?") => Some(()),
            _ => None,
        })
        .await;
    let gone = alice
        .quiet_for(Duration::from_secs(1), |s| {
            matches!(s, Stanza::Presence(p) if p.type_ == PresenceType::Unavailable
                && sender(s).ends_with("/alice"))
        })
        .await;
    assert!(gone.is_none(), "the rejoin was undone: {gone:?}");
    alice.logout().await;
    s.stop().await;
}

/// Private messages both ways, addressed nick%server@gw.
async fn private_messages_both_ways(kind: IrcKind) {
    let s = Scene::irc(kind).await;
    let mut bob = s.irc_user("bob").await;
    let mut alice = s.xmpp_user("alice").await;
    // A PM needs the puppet connected: join a channel first.
    alice.send(join(&format!("{ROOM}/alice"))).await;
    self_presence(&mut alice, "alice").await;
    let mut pm = Message::chat(Some("bob%127.0.0.1@irc.localhost".parse().unwrap()));
    pm.bodies.insert(Default::default(), "psst bob".into());
    alice.send(pm).await;
    bob.expect("private message", |l| {
        l.starts_with(":alice!") && l.ends_with("PRIVMSG bob :psst bob")
    })
    .await;
    // Also through the in-room JID, as clients do from the occupant list.
    let mut in_room = Message::chat(Some(format!("{ROOM}/bob").parse().unwrap()));
    in_room
        .bodies
        .insert(Default::default(), "from the room list".into());
    alice.send(in_room).await;
    bob.expect("private message via the room", |l| {
        l.starts_with(":alice!") && l.ends_with("PRIVMSG bob :from the room list")
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
    s.stop().await;
}

/// Nick changes both ways (303 then the new nick), and kicks both ways (307).
async fn nick_changes_and_kicks_both_ways(kind: IrcKind) {
    let s = Scene::irc(kind).await;
    let (mut bob, mut alice) = s.alice_joins_bob_in("#test").await; // bob is the channel's operator

    // IRC → XMPP: bob becomes robert.
    bob.send("NICK robert").await;
    let old = presence_from(&mut alice, "/bob", PresenceType::Unavailable).await;
    let user = muc_user(&old).unwrap();
    assert!(user.status.contains(&Status::NewNick));
    assert_eq!(user.items[0].nick.as_deref(), Some("robert"));
    presence_from(&mut alice, "/robert", PresenceType::None).await;

    // XMPP → IRC: alice becomes alicia.
    alice.send(join(&format!("{ROOM}/alicia"))).await;
    bob.expect("NICK", |l| {
        l.starts_with(":alice!") && l.contains("NICK") && l.ends_with("alicia")
    })
    .await;
    let old = presence_from(&mut alice, "/alice", PresenceType::Unavailable).await;
    let user = muc_user(&old).unwrap();
    assert!(user.status.contains(&Status::NewNick) && user.status.contains(&Status::SelfPresence));
    let new = presence_from(&mut alice, "/alicia", PresenceType::None).await;
    assert!(muc_user(&new)
        .unwrap()
        .status
        .contains(&Status::SelfPresence));

    // A taken nick: conflict, and alice keeps hers.
    let _carol = s.irc_user("carol").await;
    alice.send(join(&format!("{ROOM}/carol"))).await;
    let refused = join_error(&mut alice).await;
    assert_eq!(refused.defined_condition, DefinedCondition::Conflict);

    // XMPP → IRC moderation: alice is no operator, so she asks the op to op her first.
    bob.send("MODE #test +o alicia").await;
    let opped = presence_from(&mut alice, "/alicia", PresenceType::None).await;
    assert_eq!(
        format!("{:?}", muc_user(&opped).unwrap().items[0].role),
        "Moderator"
    );
    // Voice and kick through muc#admin.
    let mut dave = s.irc_user_in("dave", "#test").await;
    presence_from(&mut alice, "/dave", PresenceType::None).await;
    let voice = admin_item("dave", "role", "participant", None);
    assert!(matches!(
        alice.set(ROOM, voice).await,
        xmpp_client::IqResponse::Result(_)
    ));
    dave.expect("voice", |l| {
        l.contains("MODE #test +v") && l.ends_with("dave")
    })
    .await;
    let voiced = presence_from(&mut alice, "/dave", PresenceType::None).await;
    assert_eq!(
        format!("{:?}", muc_user(&voiced).unwrap().items[0].affiliation),
        "Member"
    );
    let kick = admin_item("dave", "role", "none", Some("be nice"));
    assert!(matches!(
        alice.set(ROOM, kick).await,
        xmpp_client::IqResponse::Result(_)
    ));
    dave.expect("kick", |l| l.contains("KICK #test dave :be nice"))
        .await;
    let kicked = presence_from(&mut alice, "/dave", PresenceType::Unavailable).await;
    assert!(muc_user(&kicked).unwrap().status.contains(&Status::Kicked));

    // IRC → XMPP kick of alice herself.
    bob.send("KICK #test alicia :out").await;
    let out = presence_from(&mut alice, "/alicia", PresenceType::Unavailable).await;
    let user = muc_user(&out).unwrap();
    assert!(user.status.contains(&Status::Kicked) && user.status.contains(&Status::SelfPresence));
    alice.logout().await;
    s.stop().await;
}

fn admin_item(
    nick: &str,
    attr: &str,
    value: &str,
    reason: Option<&str>,
) -> xmpp_client::minidom::Element {
    let ns = "http://jabber.org/protocol/muc#admin";
    use crate::harness::nc;
    let mut item = xmpp_client::minidom::Element::builder("item", ns)
        .attr(nc("nick"), nick)
        .attr(nc(attr), value);
    if let Some(reason) = reason {
        item = item.append(
            xmpp_client::minidom::Element::builder("reason", ns)
                .append(reason)
                .build(),
        );
    }
    xmpp_client::minidom::Element::builder("query", ns)
        .append(item.build())
        .build()
}

/// IRC join errors become the matching MUC errors, with the server's text.
async fn join_errors_map_to_muc_errors(kind: IrcKind) {
    let s = Scene::irc(kind).await;
    let mut bob = s.irc_user("bob").await;
    for (channel, mode) in [
        ("#invite", "+i"),
        ("#key", "+k secret"),
        ("#full", "+l 1"),
        ("#banned", "+b alice!*@*"),
    ] {
        bob.join(channel).await;
        bob.send(&format!("MODE {channel} {mode}")).await;
        bob.expect("mode set", |l| l.contains(" MODE ") && l.contains(channel))
            .await;
    }
    let mut alice = s.xmpp_user("alice").await;
    for (channel, condition) in [
        ("#invite", DefinedCondition::RegistrationRequired),
        ("#key", DefinedCondition::NotAuthorized),
        ("#full", DefinedCondition::ServiceUnavailable),
        ("#banned", DefinedCondition::Forbidden),
    ] {
        let room = format!("{channel}%127.0.0.1@irc.localhost");
        alice.send(join(&format!("{room}/alice"))).await;
        let err = join_error(&mut alice).await;
        assert_eq!(err.defined_condition, condition, "{channel}: {err:?}");
        assert!(!err.texts.is_empty(), "{channel}: no text");
    }
    // With the key, the keyed channel opens.
    let mut with_key = join("#key%127.0.0.1@irc.localhost/alice");
    with_key.payloads.clear();
    let mut muc = Muc::new();
    muc.password = Some("secret".into());
    with_key.add_payload(muc);
    alice.send(with_key).await;
    presence_from(&mut alice, "/alice", PresenceType::None).await;
    alice.logout().await;
    s.stop().await;
}

/// What IRC sends that is not UTF-8 arrives as latin-1; long and multi-line bodies are cut
/// to fit 512 bytes with nothing lost; CR, LF and NUL never inject a command.
async fn text_is_never_lost_or_injected(kind: IrcKind) {
    let s = Scene::irc(kind).await;
    let (mut bob, mut alice) = s.alice_joins_bob_in("#test").await;

    bob.send_bytes(b"PRIVMSG #test :caf\xe9 cr\xe8me\r\n").await;
    alice
        .expect("latin-1 message", |s| match s {
            Stanza::Message(m) if body(m) == Some("café crème") => Some(()),
            _ => None,
        })
        .await;

    // Words: the cuts fall between them, each cut taking the place of one space.
    let long: Vec<String> = (0..300).map(|i| format!("w{i}")).collect();
    alice.send(groupchat_to(ROOM, &long.join(" "))).await;
    let mut got: Vec<String> = Vec::new();
    while got.len() < long.len() {
        let line = bob
            .expect("a part of the long message", |l| {
                l.contains("PRIVMSG #test :")
            })
            .await;
        assert!(line.len() + 2 <= 512, "{} bytes: {line}", line.len() + 2);
        got.extend(
            line.split_once("PRIVMSG #test :")
                .unwrap()
                .1
                .split(' ')
                .map(str::to_owned),
        );
    }
    assert_eq!(got, long);

    // (NUL cannot travel in XML at all; the bridge strips it anyway, see its unit tests.)
    alice.send(groupchat_to(ROOM, "hello\r\nQUIT :pwned")).await;
    bob.expect("first line", |l| l.ends_with("PRIVMSG #test :hello"))
        .await;
    bob.expect("second line, as text", |l| {
        l.ends_with("PRIVMSG #test :QUIT :pwned")
    })
    .await;
    // The puppet is still there to talk.
    alice.send(groupchat_to(ROOM, "still here")).await;
    bob.expect("still here", |l| {
        l.starts_with(":alice!") && l.ends_with("PRIVMSG #test :still here")
    })
    .await;
    alice.logout().await;
    s.stop().await;
}

/// Raw IRC lines sent to the server JID, with the server's replies coming back from it.
async fn raw_commands_through_the_server_jid(kind: IrcKind) {
    let s = Scene::irc(kind).await;
    let _bob = s.irc_user("bob").await;
    let mut alice = s.xmpp_user("alice").await;
    enter(&mut alice, ROOM, "alice").await;
    let mut whois = Message::chat(Some("127.0.0.1@irc.localhost".parse().unwrap()));
    whois.bodies.insert(Default::default(), "WHOIS bob".into());
    alice.send(whois).await;
    let reply = alice
        .expect("WHOIS reply", |s| match s {
            Stanza::Message(m)
                if sender(s) == "127.0.0.1@irc.localhost"
                    && body(m).is_some_and(|b| b.contains("bob")) =>
            {
                Some(m.clone())
            }
            _ => None,
        })
        .await;
    assert_eq!(reply.type_, MessageType::Chat);
    alice.logout().await;
    s.stop().await;
}

/// The IRC server restarts: the puppet reconnects by itself and joins its channels again;
/// the XMPP user is told, stays in the room, and the conversation goes on.
async fn puppets_come_back_after_irc_server_restart(kind: IrcKind) {
    let mut s = Scene::irc(kind).await;
    let (_bob, mut alice) = s.alice_joins_bob_in("#test").await;

    s.irc.stop();
    let lost = alice
        .expect("news of the lost connection", |s| match s {
            Stanza::Message(m)
                if sender(s) == ROOM && body(m).is_some_and(|b| b.contains("reconnecting")) =>
            {
                Some(m.clone())
            }
            _ => None,
        })
        .await;
    assert_eq!(lost.type_, MessageType::Groupchat);
    s.irc.resume();
    alice
        .expect("news of the reconnection", |s| match s {
            Stanza::Message(m)
                if sender(s) == ROOM && body(m).is_some_and(|b| b.starts_with("Reconnected")) =>
            {
                Some(())
            }
            _ => None,
        })
        .await;
    let mut bob = s.irc_user_in("bob", "#test").await;
    presence_from(&mut alice, "/bob", PresenceType::None).await;

    alice.send(groupchat_to(ROOM, "still with you")).await;
    bob.expect("alice after the restart", |l| {
        l.starts_with(":alice!") && l.ends_with("PRIVMSG #test :still with you")
    })
    .await;
    bob.send("PRIVMSG #test :welcome back").await;
    alice
        .expect("bob after the restart", |s| match s {
            Stanza::Message(m) if body(m) == Some("welcome back") => Some(()),
            _ => None,
        })
        .await;
    alice.logout().await;
    s.stop().await;
}

/// Twenty XMPP users, each with their own IRC connection, in one channel: everyone sees
/// everyone's message exactly once (their own as the reflection).
async fn twenty_users_in_one_channel_see_each_message_once(kind: IrcKind) {
    const USERS: usize = 20;
    let s = Scene::irc(kind).await;
    let crowd = "#crowd%127.0.0.1@irc.localhost";
    let mut clients = Vec::new();
    for i in 0..USERS {
        let mut client = s.xmpp_user(&format!("user{i}")).await;
        enter(&mut client, crowd, &format!("user{i}")).await;
        clients.push(client);
    }
    let watcher = s.irc_user_in("watcher", "#crowd").await;
    let names = watcher
        .seen
        .iter()
        .filter(|l| l.split(' ').nth(1) == Some("353"))
        .cloned()
        .collect::<Vec<_>>()
        .join(" ");
    for i in 0..USERS {
        assert!(
            names.contains(&format!("user{i}")),
            "user{i} has no IRC connection in #crowd: {names}"
        );
    }
    for (i, client) in clients.iter_mut().enumerate() {
        let mut m = Message::groupchat(Some(crowd.parse().unwrap()));
        m.bodies
            .insert(Default::default(), format!("hello from user{i}"));
        client.send(m).await;
    }
    for (i, client) in clients.iter_mut().enumerate() {
        let mut seen = std::collections::HashMap::<String, usize>::new();
        while seen.len() < USERS {
            let text = client
                .expect("a crowd message", |s| match s {
                    Stanza::Message(m) => body(m)
                        .filter(|b| b.starts_with("hello from "))
                        .map(str::to_owned),
                    _ => None,
                })
                .await;
            *seen.entry(text).or_default() += 1;
        }
        // Nothing more may come: each message exactly once.
        let extra = client.quiet_for(Duration::from_millis(300), |s| matches!(s, Stanza::Message(m) if body(m).is_some_and(|b| b.starts_with("hello from ")))).await;
        assert!(extra.is_none(), "user{i} got a duplicate: {extra:?}");
        assert!(seen.values().all(|n| *n == 1), "user{i}: {seen:?}");
    }
    for client in clients {
        client.logout().await;
    }
    s.stop().await;
}

/// IRCv3 away-notify (offered by InspIRCd): a member going away or coming back shows as
/// their occupant presence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn away_shows_in_presence() {
    let s = Scene::irc(IrcKind::Inspircd).await;
    let mut bob = s.irc_user_in("bob", "#test").await;
    let mut alice = s.xmpp_user("alice").await;
    enter(&mut alice, ROOM, "alice").await;
    bob.send("AWAY :lunch").await;
    let away = presence_from(&mut alice, "/bob", PresenceType::None).await;
    assert_eq!(format!("{:?}", away.show), "Some(Away)");
    assert_eq!(
        away.statuses.values().next().map(String::as_str),
        Some("lunch")
    );
    bob.send("AWAY").await;
    let back = presence_from(&mut alice, "/bob", PresenceType::None).await;
    assert!(back.show.is_none(), "{:?}", back.show);
    alice.logout().await;
    s.stop().await;
}
