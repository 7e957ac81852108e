//! The servers around the gateway restarted under traffic: Prosody while IRC talks (the
//! gateway keeps archiving and queues for the link; its component is back within 5 s of
//! Prosody), and the IRC server with 200 puppets in its channels (every puppet back in every
//! channel, no faster than the configured pace, each user told once).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use xmpp_client::parsers::ping::Ping;
use xmpp_client::IqResponse;

use super::{archived_in, extra, record, tally, IrcPeer, Row, Seen};
use crate::harness::irc_server::IrcKind;
use crate::harness::muc::enter;
use crate::harness::scene::Scene;

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
        if tally(archive.iter().map(String::as_str), "i").len() == LINES
            || start.elapsed() > Duration::from_secs(10)
        {
            break archive;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    store.close().await;
    let live = tally(seen.live.iter().map(String::as_str), "i");
    let in_archive = tally(archive.iter().map(String::as_str), "i");
    let lost = LINES - in_archive.len();
    record(&[Row {
        case: "Prosody restarted".into(),
        direction: "IRC→XMPP",
        sent: LINES,
        delivered: live.len(),
        archived: in_archive.len(),
        duplicated: extra(&in_archive) + extra(&live),
        lost,
        note: format!(
            "Prosody down from line {said_at_stop} to {said_at_start}; the component back {} ms after Prosody",
            back.as_millis()
        ),
    }]);
    assert_eq!(lost, 0, "IRC lines not archived across the Prosody restart");
    assert_eq!(extra(&in_archive), 0, "IRC lines archived twice");
    assert_eq!(extra(&live), 0, "IRC lines delivered twice");
    assert!(
        back <= Duration::from_secs(5),
        "the component took {back:?} to come back after Prosody"
    );
    s.stop().await;
}
