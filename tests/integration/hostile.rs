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
