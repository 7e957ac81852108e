//! The puppet connection itself, end to end: TLS and its verification, fixed-server mode,
//! identities from the database, flood control, dead-connection detection.

use std::time::{Duration, Instant};

use xmpp_client::parsers::message::Message;
use xmpp_client::parsers::muc::user::Status;
use xmpp_client::parsers::presence::Type as PresenceType;
use xmpp_client::parsers::stanza_error::DefinedCondition;
use xmpp_client::Stanza;

use crate::harness::irc_client::IrcClient;
use crate::harness::irc_server::{IrcKind, IrcServer};
use crate::harness::muc::*;
use crate::harness::scene::Scene;

/// TLS is verified by default: a self-signed server is refused with a clear error; with
/// `verify_tls = false` the same server works, over TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_verified_unless_switched_off() {
    let mut s = Scene::irc_on(IrcServer::ngircd_with_tls()).over_tls().await;
    let mut alice = s.xmpp_user("alice").await;

    alice
        .send(join("#test%127.0.0.1@irc.localhost/alice"))
        .await;
    let error = join_error(&mut alice).await;
    assert_eq!(
        error.defined_condition,
        DefinedCondition::RemoteServerNotFound
    );
    let text = error.texts.values().next().cloned().unwrap_or_default();
    assert!(text.contains("certificate"), "{text}");

    s.replace_gateway("tls = true\nverify_tls = false\n").await;
    let mut bob = s.irc_user_in("bob", "#test").await;
    alice
        .send(join("#test%127.0.0.1@irc.localhost/alice"))
        .await;
    self_presence(&mut alice, "alice").await;
    bob.expect("alice over TLS", |l| {
        l.starts_with(":alice!") && l.contains(" JOIN ")
    })
    .await;
    alice.logout().await;
    s.stop().await;
}

/// `[irc] fixed_server`: `#chan@gw` and `nick@gw`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_server_mode() {
    let s = Scene::irc(IrcKind::Ngircd)
        .irc_keys("fixed_server = \"127.0.0.1\"\n")
        .await;
    let mut bob = s.irc_user_in("bob", "#fixed").await;
    let mut alice = s.xmpp_user("alice").await;
    alice.send(join("#fixed@irc.localhost/alice")).await;
    self_presence(&mut alice, "alice").await;
    bob.expect("alice joining", |l| {
        l.starts_with(":alice!") && l.contains(" JOIN ")
    })
    .await;
    let mut pm = Message::chat(Some("bob@irc.localhost".parse().unwrap()));
    pm.bodies.insert(Default::default(), "fixed hello".into());
    alice.send(pm).await;
    bob.expect("private message", |l| {
        l.ends_with("PRIVMSG bob :fixed hello")
    })
    .await;
    bob.send("PRIVMSG #fixed :hi there").await;
    let got = alice
        .expect("room message", |s| match s {
            Stanza::Message(m) if m.bodies.values().any(|b| b == "hi there") => Some(m.clone()),
            _ => None,
        })
        .await;
    assert_eq!(got.from.unwrap().to_string(), "#fixed@irc.localhost/bob");
    alice.logout().await;
    s.stop().await;
}

/// A user's username and realname come from the database (set by ad-hoc commands later;
/// written directly here), applied on connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_comes_from_the_database() {
    let s = Scene::irc(IrcKind::Ngircd)
        .irc_keys("realname = \"via causeway\"\n")
        .await;
    let store = s.store().await;
    let settings = causeway::store::IrcServerSettings {
        username: Some("liddell".into()),
        realname: Some("Alice Liddell".into()),
        ..Default::default()
    };
    store
        .set_irc_server_settings("alice@localhost", "127.0.0.1", &settings)
        .await
        .unwrap();
    let mut bob = s.irc_user("bob").await;
    let mut alice = s.xmpp_user("alice").await;
    alice
        .send(join("#test%127.0.0.1@irc.localhost/alice"))
        .await;
    self_presence(&mut alice, "alice").await;
    // Carol gets the configured default realname.
    let mut carol = s.xmpp_user("carol").await;
    carol
        .send(join("#test%127.0.0.1@irc.localhost/carol"))
        .await;
    self_presence(&mut carol, "carol").await;

    bob.send("WHOIS alice").await;
    let whois = bob
        .expect("WHOIS alice", |l| l.split(' ').nth(1) == Some("311"))
        .await;
    assert!(
        whois.contains(" liddell ") || whois.contains("~liddell "),
        "{whois}"
    );
    assert!(whois.ends_with(":Alice Liddell"), "{whois}");
    bob.send("WHOIS carol").await;
    let whois = bob
        .expect("WHOIS carol", |l| l.split(' ').nth(1) == Some("311"))
        .await;
    assert!(whois.ends_with(":via causeway"), "{whois}");
    store.close().await;
    alice.logout().await;
    carol.logout().await;
    s.stop().await;
}

/// Flood control holds lines back to the configured rate (here a burst of 2, then 1 a
/// second); the test suite's other scenarios run with it switched off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_control_paces_lines() {
    let keys = "flood_control = true\nflood_burst = 2\nflood_per_second = 1\n";
    let s = Scene::irc(IrcKind::Ngircd).server_keys(keys).await;
    let (mut bob, mut alice) = s.alice_joins_bob_in("#test").await;
    // Let the bucket fill up again after the join.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut burst = Message::groupchat(Some("#test%127.0.0.1@irc.localhost".parse().unwrap()));
    burst
        .bodies
        .insert(Default::default(), "one\ntwo\nthree\nfour\nfive".into());
    alice.send(burst).await;
    let mut arrivals = Vec::new();
    for word in ["one", "two", "three", "four", "five"] {
        bob.expect(word, |l| l.ends_with(&format!("PRIVMSG #test :{word}")))
            .await;
        arrivals.push(Instant::now());
    }
    let paced = arrivals[4] - arrivals[0];
    // Two at once, then one a second: the fifth comes at least ~3 s after the first.
    assert!(
        paced >= Duration::from_millis(2500),
        "five lines in {paced:?}"
    );
    alice.logout().await;
    s.stop().await;
}

/// A server that stops answering is pinged, then given up on: with reconnection off, the
/// user is told with 332 right away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_connections_are_detected() {
    let keys = "ping_interval_secs = 1\nping_timeout_secs = 2\nreconnect_attempts = 0\n";
    let mut s = Scene::irc(IrcKind::Ngircd).server_keys(keys).await;
    let mut alice = s.xmpp_user("alice").await;
    alice
        .send(join("#test%127.0.0.1@irc.localhost/alice"))
        .await;
    self_presence(&mut alice, "alice").await;
    s.irc.freeze(true);
    let gone = alice
        .expect("the room closing", |s| match s {
            Stanza::Presence(p) if p.type_ == PresenceType::Unavailable => muc_user(p)
                .filter(|u| u.status.contains(&Status::ServiceShutdown))
                .map(|_| p.clone()),
            _ => None,
        })
        .await;
    assert!(muc_user(&gone)
        .unwrap()
        .status
        .contains(&Status::SelfPresence));
    let reason = gone.statuses.values().next().cloned().unwrap_or_default();
    assert!(reason.contains("no data from the server"), "{reason}");
    s.irc.stop();
    alice.logout().await;
    s.stop().await;
}

/// SASL PLAIN with the password stored for the user and server (set from the client with the
/// ad-hoc form), against InspIRCd linked to Atheme: the puppet is logged in to its account on
/// the next connection; a wrong password fails the join with the server's words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_plain_with_the_stored_password() {
    let s = Scene::irc_on(IrcServer::inspircd_with_services()).await;
    let mut owner = s.irc_user("alice").await;
    owner
        .send("PRIVMSG NickServ :REGISTER s3cret-pw alice@localhost.test")
        .await;
    owner
        .expect("registration", |l| {
            l.contains("NOTICE alice") && l.contains("registered")
        })
        .await;
    owner.send("QUIT").await;
    owner.expect("the quit", |l| l.starts_with("ERROR")).await;

    let store = s.store().await;
    let with_password = |password: &str| causeway::store::IrcServerSettings {
        sasl_password: Some(password.into()),
        ..Default::default()
    };
    store
        .set_irc_server_settings("mallet@localhost", "127.0.0.1", &with_password("guessed"))
        .await
        .unwrap();

    let mut alice = s.xmpp_user("alice").await;
    // Alice sets her password from her client; mallet's (wrong) one is in the store.
    configure(
        &mut alice,
        "127.0.0.1@irc.localhost",
        &[("sasl_password", "s3cret-pw")],
    )
    .await;
    alice
        .send(join("#test%127.0.0.1@irc.localhost/alice"))
        .await;
    self_presence(&mut alice, "alice").await;
    let mut bob = s.irc_user("bob").await;
    bob.send("WHOIS alice").await;
    let account = bob
        .expect("account line", |l| {
            l.split(' ').nth(1) == Some("330") || l.split(' ').nth(1) == Some("318")
        })
        .await;
    assert!(
        account.contains(" 330 ") && account.contains("alice alice"),
        "not logged in: {account}"
    );

    let mut mallet = s.xmpp_user("mallet").await;
    mallet
        .send(join("#test%127.0.0.1@irc.localhost/mallet"))
        .await;
    let error = join_error(&mut mallet).await;
    let text = error.texts.values().next().cloned().unwrap_or_default();
    assert!(text.contains("SASL"), "{text}");
    store.close().await;
    alice.logout().await;
    mallet.logout().await;
    s.stop().await;
}

/// A user's own port, TLS and verification for a server (set with the ad-hoc form) win
/// over the configuration: the configured port here has nothing listening, so only the
/// user's TLS port can work, and only with TLS spoken and the self-signed certificate taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_user_transport_settings_from_the_form() {
    let nothing_there = crate::harness::process::free_port();
    let s = Scene::irc_on(IrcServer::ngircd_with_tls())
        .configured_port(nothing_there)
        .await;
    let tls_port = s.irc.tls_port.unwrap().to_string();
    let mut bob = s.irc_user_in("bob", "#test").await;
    let mut alice = s.xmpp_user("alice").await;
    configure(
        &mut alice,
        "127.0.0.1@irc.localhost",
        &[("port", &tls_port), ("tls", "1"), ("verify_tls", "0")],
    )
    .await;
    alice
        .send(join("#test%127.0.0.1@irc.localhost/alice"))
        .await;
    self_presence(&mut alice, "alice").await;
    bob.expect("alice over TLS", |l| {
        l.starts_with(":alice!") && l.contains(" JOIN ")
    })
    .await;

    // Without the user's settings, the configured (dead) port.
    let mut carol = s.xmpp_user("carol").await;
    carol
        .send(join("#test%127.0.0.1@irc.localhost/carol"))
        .await;
    let error = join_error(&mut carol).await;
    assert_eq!(
        error.defined_condition,
        DefinedCondition::RemoteServerNotFound
    );
    alice.logout().await;
    carol.logout().await;
    s.stop().await;
}

/// Encodings: a channel set to KOI8-R (from the client's channel form) is read and written
/// in KOI8-R on IRC, while the user sees and types UTF-8.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_encodings_both_ways() {
    let s = Scene::irc(IrcKind::Ngircd).await;
    let room = "#koi%127.0.0.1@irc.localhost";
    let mut bob = s.irc_user_in("bob", "#koi").await;
    let mut alice = s.xmpp_user("alice").await;
    configure(&mut alice, room, &[("encoding", "koi8-r")]).await;
    alice.send(join(&format!("{room}/alice"))).await;
    self_presence(&mut alice, "alice").await;
    bob.expect("alice joining", |l| {
        l.starts_with(":alice!") && l.contains(" JOIN ")
    })
    .await;

    // "привет" in KOI8-R.
    let privet: &[u8] = &[0xd0, 0xd2, 0xc9, 0xd7, 0xc5, 0xd4];
    let mut line = b"PRIVMSG #koi :".to_vec();
    line.extend_from_slice(privet);
    line.extend_from_slice(b"\r\n");
    bob.send_bytes(&line).await;
    alice
        .expect("the message in UTF-8", |s| match s {
            xmpp_client::Stanza::Message(m) if body(m) == Some("привет") => Some(()),
            _ => None,
        })
        .await;

    alice.send(groupchat_to(room, "привет")).await;
    let raw = bob
        .expect_raw("alice's message in KOI8-R", |l| {
            l.starts_with(b":alice!") && l.ends_with(privet)
        })
        .await;
    assert!(
        std::str::from_utf8(&raw).is_err(),
        "sent as UTF-8, not KOI8-R"
    );

    // The server's encodings, for what is not in a channel (here private messages): set now,
    // they apply on the next connection.
    alice.send(leave(&format!("{room}/alice"))).await;
    bob.expect("alice leaving", |l| {
        l.starts_with(":alice!") && l.contains(" PART ")
    })
    .await;
    // Her connection closes shortly after her last channel: wait until WHOIS says so.
    let gone = std::time::Instant::now();
    loop {
        bob.send("WHOIS alice").await;
        let reply = bob
            .expect("WHOIS reply", |l| {
                matches!(l.split(' ').nth(1), Some("401") | Some("318"))
            })
            .await;
        if reply.contains(" 401 ") {
            break;
        }
        assert!(
            gone.elapsed() < std::time::Duration::from_secs(15),
            "alice's connection stays open"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    configure(
        &mut alice,
        "127.0.0.1@irc.localhost",
        &[("encoding_in", "koi8-r"), ("encoding_out", "koi8-r")],
    )
    .await;
    alice
        .send(join("#other%127.0.0.1@irc.localhost/alice"))
        .await;
    self_presence(&mut alice, "alice").await;
    let mut private = b"PRIVMSG alice :".to_vec();
    private.extend_from_slice(privet);
    private.extend_from_slice(b"\r\n");
    bob.send_bytes(&private).await;
    alice
        .expect("the private message in UTF-8", |s| match s {
            xmpp_client::Stanza::Message(m) if body(m) == Some("привет") => Some(()),
            _ => None,
        })
        .await;
    let mut pm = xmpp_client::parsers::message::Message::chat(Some(
        "bob%127.0.0.1@irc.localhost".parse().unwrap(),
    ));
    pm.bodies.insert(Default::default(), "привет".into());
    alice.send(pm).await;
    bob.expect_raw("alice's private message in KOI8-R", |l| {
        l.starts_with(b":alice!") && l.ends_with(privet)
    })
    .await;

    // A name that is no encoding is refused.
    let refused = alice
        .set(room, {
            use crate::harness::nc;
            let data = "jabber:x:data";
            xmpp_client::minidom::Element::builder("command", "http://jabber.org/protocol/commands")
                .attr(nc("node"), "configure")
                .attr(nc("action"), "complete")
                .append(
                    xmpp_client::minidom::Element::builder("x", data)
                        .attr(nc("type"), "submit")
                        .append(
                            xmpp_client::minidom::Element::builder("field", data)
                                .attr(nc("var"), "encoding")
                                .append(
                                    xmpp_client::minidom::Element::builder("value", data)
                                        .append("klingon")
                                        .build(),
                                )
                                .build(),
                        )
                        .build(),
                )
                .build()
        })
        .await;
    assert!(
        matches!(refused, xmpp_client::IqResponse::Error(_)),
        "{refused:?}"
    );
    alice.logout().await;
    s.stop().await;
}

/// The server password and flood control from the user's server form: a server that wants
/// a password refuses the puppet until the user gives it; with flood control switched on
/// by the user, a burst is paced (the test configuration has it off).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_password_and_throttle_from_the_form() {
    let s = Scene::irc_on(IrcServer::ngircd_with_password("letmein")).await;
    let mut bob = IrcClient::connect_with(s.irc.port, "bob", Some("letmein")).await;
    bob.join("#test").await;
    let mut alice = s.xmpp_user("alice").await;
    alice
        .send(join("#test%127.0.0.1@irc.localhost/alice"))
        .await;
    let refused = join_error(&mut alice).await;
    // ngircd closes with `ERROR :Access denied: Bad password?`: the user reads its words.
    assert!(
        refused.texts.values().any(|t| t.contains("password")),
        "{refused:?}"
    );

    configure(
        &mut alice,
        "127.0.0.1@irc.localhost",
        &[("server_password", "letmein"), ("throttle", "1")],
    )
    .await;
    alice
        .send(join("#test%127.0.0.1@irc.localhost/alice"))
        .await;
    self_presence(&mut alice, "alice").await;
    bob.expect("alice joining", |l| {
        l.starts_with(":alice!") && l.contains(" JOIN ")
    })
    .await;

    // The configured bucket: 10 at once, then 2 a second.
    let lines: Vec<String> = (0..14).map(|i| format!("line {i}")).collect();
    alice
        .send(groupchat_to(
            "#test%127.0.0.1@irc.localhost",
            &lines.join("\n"),
        ))
        .await;
    let mut first = None;
    for line in &lines {
        bob.expect(line, |l| l.ends_with(&format!("PRIVMSG #test :{line}")))
            .await;
        first.get_or_insert_with(Instant::now);
    }
    let paced = first.unwrap().elapsed();
    assert!(
        paced >= Duration::from_millis(1500),
        "14 lines in {paced:?}: not paced"
    );
    alice.logout().await;
    s.stop().await;
}
