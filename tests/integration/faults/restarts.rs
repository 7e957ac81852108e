//! The servers around the gateway restarted under traffic: Prosody while IRC talks (the
//! gateway keeps archiving and queues for the link; its component is back within 5 s of
//! Prosody), and the IRC server with 200 puppets in its channels (every puppet back in every
//! channel, no faster than the configured pace, each user told once).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use xmpp_client::parsers::ping::Ping;
use xmpp_client::IqResponse;

use super::{archived_in, extra, holds_all, record, Incoming, IrcPeer, Row, Seen};
use crate::harness::config_toml_with_irc;
use crate::harness::gateway_process::spawn;
use crate::harness::irc_server::{IrcKind, IrcServer};
use crate::harness::muc::enter;
use crate::harness::scene::Scene;
use crate::harness::xmpp_server::{Flavor, XmppServer};
use crate::harness::TestClient;

/// Lines said on IRC while Prosody restarts: well within the link's queue (10,000).
const LINES: usize = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prosody_restarted_during_irc_traffic() {
    let mut s = Scene::irc(IrcKind::Ngircd)
        .irc_keys("persistent = true\n")
        .await;
    let channel = "#outage";
    let room = Scene::room(channel);
    let bob = Arc::new(IrcPeer::join(s.irc.port, "bob", channel).await);
    let mut alice = s.xmpp_user("alice").await;
    enter(&mut alice, &room, "alice").await;
    bob.wait_for("alice joining", Duration::from_secs(10), |l| {
        l.starts_with(":alice!") && l.contains(" JOIN ")
    })
    .await;

    // IRC talks for four seconds; Prosody goes down after one and comes back.
    let said = Arc::new(AtomicUsize::new(0));
    let flow = tokio::spawn(
        bob.clone()
            .flow(channel, ("i", LINES, 500), said.clone(), None),
    );
    let mut seen = Seen::default();
    seen.read_for(&mut alice, &room, "alice", Duration::from_secs(1))
        .await;
    let said_at_stop = said.load(Ordering::Acquire);
    s.xmpp.stop();
    drop(alice);
    tokio::time::sleep(Duration::from_secs(1)).await;
    s.xmpp.resume();
    let prosody_up = Instant::now();
    let said_at_start = said.load(Ordering::Acquire);

    // The component is back: a client's ping to it is answered.
    let mut alice = s.xmpp_user_again("alice").await;
    let back = loop {
        if let Some(IqResponse::Result(_)) = alice
            .try_get("irc.localhost", Ping, Duration::from_millis(200))
            .await
        {
            break prosody_up.elapsed();
        }
        assert!(
            prosody_up.elapsed() < Duration::from_secs(15),
            "the component never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    enter(&mut alice, &room, "alice").await;
    flow.await.unwrap();
    seen.read_for(&mut alice, &room, "alice", Duration::from_secs(1))
        .await;

    let store = s.store().await;
    let start = Instant::now();
    let archive = loop {
        let archive = archived_in(&store, "alice@localhost", &room).await;
        if holds_all(&archive, "i", LINES) || start.elapsed() > Duration::from_secs(10) {
            break archive;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    store.close().await;
    let incoming = Incoming::count(&seen, &archive, "i");
    let row = incoming.row(
        "Prosody restarted",
        "IRC→XMPP",
        LINES,
        format!(
            "Prosody down from line {said_at_stop} to {said_at_start}; the component back {} ms after Prosody",
            back.as_millis()
        ),
    );
    let lost = row.lost;
    record(&[row]);
    assert_eq!(lost, 0, "IRC lines not archived across the Prosody restart");
    assert_eq!(extra(&incoming.archived), 0, "IRC lines archived twice");
    assert_eq!(extra(&incoming.live), 0, "IRC lines delivered twice");
    assert!(
        back <= Duration::from_secs(5),
        "the component took {back:?} to come back after Prosody"
    );
    s.stop().await;
}

/// Puppets in the IRC server's channels when it restarts.
const PUPPETS: usize = 200;
/// Their reconnections are paced this far apart (at least).
const PACE: Duration = Duration::from_millis(25);
/// Of the puppets, those whose users are online to be told.
const ONLINE: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ngircd_restarted_with_200_puppets_in_channels() {
    let mut irc = IrcServer::ngircd();
    let xmpp = XmppServer::start(Flavor::Prosody);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("causeway.toml");
    let pace = format!(
        "reconnect_interval_ms = {}\nreconnect_concurrency = 4\n",
        PACE.as_millis()
    );
    std::fs::write(
        &config,
        config_toml_with_irc(&xmpp, dir.path(), irc.port, "persistent = true\n", &pace),
    )
    .unwrap();
    // Two persistent channels each, as a gateway that ran before left them: the gateway
    // joins them again at startup.
    let channels = ["#a", "#b"];
    let db = format!("sqlite://{}", dir.path().join("causeway.db").display());
    let store = causeway::store::Store::open(&db, 1).await.unwrap();
    for n in 0..PUPPETS {
        for channel in channels {
            let (user, nick) = (format!("p{n}@localhost"), format!("p{n}"));
            store
                .mark_joined(&user, "127.0.0.1", channel, &nick, true)
                .await
                .unwrap();
        }
    }
    store.close().await;
    let log = dir.path().join("gateway.log");
    let _gateway = spawn(&["run"], &config, &log);
    let watcher = IrcPeer::join(irc.port, "watcher", "#a").await;
    let everyone: BTreeSet<String> = (0..PUPPETS).map(|n| format!("p{n}")).collect();
    let start = Instant::now();
    while missing_from(&watcher, &channels, &everyone).await > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the puppets never all joined\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut online = Vec::new();
    for n in 0..ONLINE {
        let mut user = TestClient::login(&xmpp, &format!("p{n}"), "localhost").await;
        enter(&mut user, &Scene::room("#a"), &format!("p{n}")).await;
        online.push(user);
    }

    // The server goes away for a second and comes back.
    irc.stop();
    let room = Scene::room("#a");
    for user in &mut online {
        user.expect("news of the lost connection", |s| {
            is_notice(s, &room, "Connection to 127.0.0.1 lost").then_some(())
        })
        .await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    irc.resume();
    let resumed = Instant::now();
    let watcher = IrcPeer::join(irc.port, "watcher", "#a").await;
    let mut missing = missing_from(&watcher, &channels, &everyone).await;
    while missing > 0 && resumed.elapsed() < Duration::from_secs(90) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        missing = missing_from(&watcher, &channels, &everyone).await;
    }
    let back = resumed.elapsed();
    // Each online user: told once that it was lost (above), once that it is back.
    let mut told_twice = 0;
    for user in &mut online {
        let mut lost_again = 0;
        let found = user
            .try_expect(Duration::from_secs(10), |s| {
                if is_notice(s, &room, "Connection to 127.0.0.1 lost") {
                    lost_again += 1;
                }
                is_notice(s, &room, "Reconnected to 127.0.0.1").then_some(())
            })
            .await;
        assert!(found.is_ok(), "a user never told the connection is back");
        let more = user
            .quiet_for(Duration::from_millis(500), |s| {
                is_notice(s, &room, "Reconnected") || is_notice(s, &room, "Connection to")
            })
            .await;
        told_twice += lost_again + usize::from(more.is_some());
    }
    let memberships = PUPPETS * channels.len();
    let least = PACE * (PUPPETS as u32 - 1);
    record(&[Row {
        case: format!("ngircd restarted, {PUPPETS} puppets"),
        direction: "IRC connections",
        sent: memberships,
        delivered: memberships - missing,
        archived: None,
        duplicated: told_twice,
        lost: missing,
        note: format!(
            "puppets × channels back within {} ms of ngircd (paced {} ms apart: ≥ {} ms); {ONLINE} users online, each told once (duplicated = extra notices)",
            back.as_millis(),
            PACE.as_millis(),
            least.as_millis()
        ),
    }]);
    assert_eq!(missing, 0, "channel memberships not restored");
    assert!(
        back >= least,
        "{PUPPETS} reconnections in {back:?}: faster than the pace allows ({least:?})"
    );
    assert_eq!(told_twice, 0, "a user was told more than once");
}

fn is_notice(s: &xmpp_client::Stanza, room: &str, starts: &str) -> bool {
    matches!(s, xmpp_client::Stanza::Message(m) if crate::harness::muc::sender(s) == room
        && crate::harness::muc::body(m).is_some_and(|b| b.starts_with(starts)))
}

/// How many of `everyone` are missing from `channels`, channel by channel.
async fn missing_from(watcher: &IrcPeer, channels: &[&str], everyone: &BTreeSet<String>) -> usize {
    let mut missing = 0;
    for channel in channels {
        let names = watcher.names(channel).await;
        missing += everyone.difference(&names).count();
    }
    missing
}
