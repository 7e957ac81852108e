//! Hostile input against the real servers: what one user or peer sends to harm the gateway
//! gets a clear error or is shed, and nobody else's traffic waits for it.

use std::time::{Duration, Instant};

use xmpp_client::parsers::presence::Type as PresenceType;
use xmpp_client::parsers::stanza_error::{DefinedCondition, StanzaError};
use xmpp_client::Stanza;

use crate::harness::irc_server::IrcKind;
use crate::harness::muc::*;
use crate::harness::scene::Scene;

/// A flood of CTCP requests to a puppet is answered a few at a time, and the user's own
/// messages do not queue behind the answers (flood control on, as on a public network).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ctcp_flood_does_not_hold_up_the_users_own_messages() {
    let s = Scene::irc(IrcKind::Ngircd)
        .server_keys("flood_control = true\n")
        .await;
    let (mut bob, mut alice) = s.alice_joins_bob_in("#flood").await;
    let room = Scene::room("#flood");
    for i in 0..40 {
        bob.send("PRIVMSG alice :\u{1}VERSION\u{1}").await;
        bob.send(&format!("PRIVMSG alice :\u{1}PING {i}\u{1}"))
            .await;
    }
    // Give the gateway the flood before alice speaks.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = Instant::now();
    alice.send(groupchat_to(&room, "still here")).await;
    let mut answers = 0;
    bob.expect("alice's message, soon", |l| {
        if l.starts_with(":alice!") && l.contains(" NOTICE bob :\u{1}") {
            answers += 1;
        }
        l.starts_with(":alice!") && l.ends_with("PRIVMSG #flood :still here")
    })
    .await;
    assert!(
        sent.elapsed() < Duration::from_secs(3),
        "alice's message waited {:?} behind CTCP answers",
        sent.elapsed()
    );
    assert!(
        answers <= 4,
        "{answers} CTCP answers before alice's message"
    );
    alice.logout().await;
    s.stop().await;
}

/// Nicks IRC cannot carry are refused with the server's reason, and the channel goes on
/// for the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nicks_irc_cannot_carry_are_refused_clearly() {
    let s = Scene::irc(IrcKind::Ngircd).await;
    let (mut bob, mut alice) = s.alice_joins_bob_in("#nicks").await;
    let room = Scene::room("#nicks");
    let mut carol = s.xmpp_user("carol").await;
    for nick in [
        "#chan",
        ":colon",
        "with space",
        "ünïcödé",
        "a,b",
        "0digit",
        &"n".repeat(200),
    ] {
        carol.send(join(&format!("{room}/{nick}"))).await;
        let error = carol
            .expect("the refusal", |s| match s {
                Stanza::Presence(p) if p.type_ == PresenceType::Error => p
                    .payloads
                    .iter()
                    .find_map(|e| StanzaError::try_from(e.clone()).ok()),
                _ => None,
            })
            .await;
        assert!(
            matches!(
                error.defined_condition,
                DefinedCondition::JidMalformed
                    | DefinedCondition::NotAcceptable
                    | DefinedCondition::BadRequest
            ),
            "{nick:?}: {error:?}"
        );
        assert!(!error.texts.is_empty(), "{nick:?}: the error says why");
    }
    alice.send(groupchat_to(&room, "unaffected")).await;
    bob.expect("alice's message", |l| {
        l.ends_with("PRIVMSG #nicks :unaffected")
    })
    .await;
    alice.logout().await;
    carol.logout().await;
    s.stop().await;
}

/// A Matrix message near the largest a homeserver takes (an event is 64 KiB at most, JSON
/// escapes included; 46,000 bytes of this text are 51 KiB of JSON, and 60,000 were refused
/// as too large), full of what makes text odd — right-to-left overrides, zero-width
/// characters, combining marks, characters XML cannot carry — reaches the XMPP user
/// readable, and the room goes on.
#[tokio::test]
async fn a_64_kib_matrix_message_of_odd_unicode_arrives_and_the_room_goes_on() {
    use crate::matrix::room_jid;

    let scene = Scene::matrix().await;
    let room = scene.public_room("odd", "").await;
    let mut alice = scene.xmpp_user("alice").await;
    enter(&mut alice, &room_jid("odd"), "alice").await;
    let unit = "RTL:\u{202e}olleh\u{202c} zw:a\u{200b}b\u{200d}c\u{feff} comb:e\u{301}\u{302}\u{303} ctl:\u{7}\u{1b} emoji:👩\u{200d}👩\u{200d}👧 ";
    let mut text = String::new();
    while text.len() + unit.len() < 46_000 {
        text.push_str(unit);
    }
    scene.bob.send_text(&room, &text).await;
    let got = alice
        .expect("the odd message", |s| match s {
            Stanza::Message(m) => body(m).filter(|b| b.starts_with("RTL:")).map(str::to_owned),
            _ => None,
        })
        .await;
    // What XML cannot carry (the C0 controls) is replaced; everything else arrives as sent.
    let expected = text.replace(['\u{7}', '\u{1b}'], "\u{fffd}");
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "the text arrives whole");
    scene.bob.send_text(&room, "and after").await;
    alice
        .expect("the next message", |s| match s {
            Stanza::Message(m) => (body(m) == Some("and after")).then_some(()),
            _ => None,
        })
        .await;
}

/// What a hostile IRC server sends costs its users only the harmful lines: a line of
/// 20 KiB, and one of 1 MiB, are skipped with a warning, the connection stays, and the
/// lines after them arrive. (No real server sends such lines: this one is the test's own,
/// a few lines of script, and the only fake here because it plays the attacker.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlong_lines_from_a_hostile_server_are_skipped_and_the_connection_stays() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let s = Scene::irc(IrcKind::Ngircd).configured_port(port).await;
    let (heard_tx, mut heard) = tokio::sync::mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        let mut nick = String::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            let _ = heard_tx.send(line.clone());
            if line.starts_with("CAP LS") {
                write.write_all(b":evil CAP * LS :\r\n").await.unwrap();
            } else if let Some(n) = line.strip_prefix("NICK ") {
                nick = n.to_owned();
            } else if line.starts_with("USER ") {
                let welcome = format!(
                    ":evil 001 {nick} :Welcome\r\n:evil 005 {nick} CHANTYPES=# :are supported\r\n:evil 376 {nick} :End of MOTD\r\n"
                );
                write.write_all(welcome.as_bytes()).await.unwrap();
            } else if let Some(channel) = line.strip_prefix("JOIN ") {
                let channel = channel.split(' ').next().unwrap();
                let joined = format!(
                    ":{nick}!u@h JOIN {channel}\r\n:evil 353 {nick} = {channel} :{nick} mallory\r\n:evil 366 {nick} {channel} :End of NAMES\r\n"
                );
                write.write_all(joined.as_bytes()).await.unwrap();
                let say = |text: &str| format!(":mallory!m@h PRIVMSG {channel} :{text}\r\n");
                write
                    .write_all(say(&"x".repeat(20 << 10)).as_bytes())
                    .await
                    .unwrap();
                write
                    .write_all(say("after the long one").as_bytes())
                    .await
                    .unwrap();
                write
                    .write_all(say(&"y".repeat(1 << 20)).as_bytes())
                    .await
                    .unwrap();
                write
                    .write_all(say("after the endless one").as_bytes())
                    .await
                    .unwrap();
            } else if let Some(token) = line.strip_prefix("PING ") {
                write
                    .write_all(format!("PONG {token}\r\n").as_bytes())
                    .await
                    .unwrap();
            }
        }
    });
    let mut alice = s.xmpp_user("alice").await;
    let room = Scene::room("#evil");
    enter(&mut alice, &room, "alice").await;
    let mut bodies = Vec::new();
    while bodies.last().map(String::as_str) != Some("after the endless one") {
        let body = alice
            .expect("mallory's lines", |s| match s {
                Stanza::Message(m) if sender(s) == format!("{room}/mallory") => {
                    body(m).map(str::to_owned)
                }
                Stanza::Message(m) if body(m).is_some_and(|b| b.contains("lost")) => {
                    panic!("the connection went: {:?}", body(m))
                }
                _ => None,
            })
            .await;
        bodies.push(body);
    }
    assert_eq!(bodies, ["after the long one", "after the endless one"]);
    // Still connected and in the channel: alice's own message goes out on it.
    alice.send(groupchat_to(&room, "still here")).await;
    let said = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(line) = heard.recv().await {
            if line == "PRIVMSG #evil :still here" {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(said, Ok(true), "alice's message never reached the server");
    s.stop().await;
}

/// A stanza nested deeper than any real payload (200 levels), sent through Prosody into a
/// room, is refused to its sender with `bad-request` and goes no further; the room and the
/// sender's next message go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deeply_nested_stanza_is_refused_and_the_room_goes_on() {
    use xmpp_client::minidom::Element;
    use xmpp_client::parsers::message::MessageType;

    let s = Scene::irc(IrcKind::Ngircd).await;
    let (mut bob, mut alice) = s.alice_joins_bob_in("#deep").await;
    let room = Scene::room("#deep");
    let mut nested = Element::builder("n", "urn:example:deep").build();
    for _ in 0..200 {
        nested = Element::builder("n", "urn:example:deep")
            .append(nested)
            .build();
    }
    let mut deep = groupchat_to(&room, "nested");
    deep.payloads.push(nested);
    alice.send(deep).await;
    let error = alice
        .expect("the refusal", |s| match s {
            Stanza::Message(m) if m.type_ == MessageType::Error => m
                .payloads
                .iter()
                .find_map(|p| StanzaError::try_from(p.clone()).ok()),
            _ => None,
        })
        .await;
    assert_eq!(error.defined_condition, DefinedCondition::BadRequest);
    alice.send(groupchat_to(&room, "and on")).await;
    let next = bob
        .expect("alice's next message", |l| {
            l.starts_with(":alice!") && l.contains(" PRIVMSG #deep :")
        })
        .await;
    assert!(
        next.ends_with(":and on"),
        "the nested one reached IRC: {next}"
    );
    s.stop().await;
}
